//! `tracer replay`: a recorded trace read back tells the same connection stories.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
};

use crate::support::{Tracer, free_port, shared, tracer_bin};
use serde_json::Value;

/// What a connection record says, without its clock-dependent fields.
fn story(record: &Value) -> Value {
    let mut story = record.clone();
    for clock_field in ["ts", "start", "end", "start_ns", "end_ns"] {
        story.as_object_mut().unwrap().remove(clock_field);
    }
    story
}

/// `tracer replay FILE --emit connections`: its records' stories, and its stderr.
fn replay_records(trace: &Path) -> (Vec<Value>, String) {
    let output = Command::new(tracer_bin())
        .arg("replay")
        .arg(trace)
        .args(["--emit", "connections"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    let records = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "connection")
        .map(|l| story(&l))
        .collect();
    (records, stderr)
}

/// Microseconds a replayed time may differ from the live one: the lines carry wall-clock
/// times, converted from the kernel's boot clock with an offset the daemon samples again
/// every second, and two samples differ by their own jitter (10 µs seen in a TCG guest).
const RESAMPLE_JITTER_US: u64 = 100;

/// `a` and `b` are the same, except that times in microseconds (`*_us` fields and what
/// they hold) may differ by [`RESAMPLE_JITTER_US`].
fn same_story(a: &Value, b: &Value, in_micros: bool) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(key, value)| {
                    b.get(key).is_some_and(|other| {
                        same_story(value, other, in_micros || key.ends_with("_us"))
                    })
                })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_story(a, b, in_micros))
        }
        (Value::Number(a), Value::Number(b)) if in_micros => {
            a.as_u64().unwrap().abs_diff(b.as_u64().unwrap()) <= RESAMPLE_JITTER_US
        }
        (a, b) => a == b,
    }
}

#[test]
fn replayed_events_give_the_live_connection_records() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"request").unwrap();
    server.read_exact(&mut [0u8; 7]).unwrap();
    server.write_all(b"response").unwrap();
    client.read_exact(&mut [0u8; 8]).unwrap();
    let local = client.local_addr().unwrap().to_string();
    drop(client);
    server.read_exact(&mut [0u8; 1]).unwrap_err();
    drop(server);
    tracer.wait_for("the client's record", |l| {
        l["event"] == "connection" && l["local"] == local
    });
    let (status, lines) = tracer.stop();
    assert!(status.success());
    let live: Vec<Value> = lines
        .iter()
        .filter(|l| l["event"] == "connection")
        .map(story)
        .collect();
    assert_eq!(live.len(), 2, "{lines:#?}");

    let trace = std::env::temp_dir().join(format!("tracer-replay-{}.json", std::process::id()));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&trace, &text).unwrap();
    let (replayed, stderr) = replay_records(&trace);
    assert!(
        same_story(
            &Value::from(replayed.clone()),
            &Value::from(live.clone()),
            false
        ),
        "replayed {replayed:#?}\nlive {live:#?}"
    );
    assert_eq!(stderr, "");

    // A tracer killed mid-write leaves a cut last line: warned about, and the rest replays.
    let last = text.lines().last().unwrap();
    std::fs::write(&trace, format!("{text}{}", &last[..last.len() / 2])).unwrap();
    let (replayed_cut, stderr) = replay_records(&trace);
    assert_eq!(
        stderr,
        format!(
            "tracer: warning: {}:{}: skipped a line cut short (its tracer was stopped mid-write)\n",
            trace.display(),
            text.lines().count() + 1
        )
    );
    assert_eq!(replayed_cut, replayed, "the cut line loses nothing else");

    let pretty = Command::new(tracer_bin())
        .arg("replay")
        .arg(&trace)
        .args(["--format", "pretty", "--emit", "connections"])
        .output()
        .unwrap();
    let pretty = String::from_utf8(pretty.stdout).unwrap();
    assert!(
        pretty.contains(&local) && pretty.contains("SYN-ACK") && pretty.contains("FIN"),
        "{pretty}"
    );
    std::fs::remove_file(trace).unwrap();
}

/// A trace recorded on a 6.18 host (re-recorded with issue 18's `outcome` and `error`; `golden/scenario.py` drives it: keep-alive requests,
/// a refused connect, keepalive probes answered and timed out, an abortive close, an IPv6
/// reset, retransmits) and what the tracer of that day replayed from it. A change that
/// alters a byte of the lines shows here: a deliberate one regenerates the files with
/// `tracer replay` and says why in its commit.
const GOLDEN_TRACE: &str = include_str!("golden/trace.jsonl");

/// `tracer replay` of the golden trace with `args`, its stdout with the stop line's time
/// (the replay's own clock) left out.
fn replay_golden(args: &[&str]) -> String {
    without_stop_time(&replay_text(GOLDEN_TRACE, args))
}

fn without_stop_time(lines: &str) -> String {
    lines
        .lines()
        .map(|line| match line.split_once(r#"","event":"tracer_stop""#) {
            Some((_, rest)) => format!(r#"{{"event":"tracer_stop"{rest}"#),
            None => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect()
}

#[test]
fn the_golden_trace_replays_byte_for_byte() {
    let _machine = shared();
    assert_eq!(
        replay_golden(&[]),
        without_stop_time(include_str!("golden/replay-all.jsonl"))
    );
    assert_eq!(
        replay_golden(&["--format", "pretty"]),
        include_str!("golden/replay-pretty.txt")
    );
    assert_eq!(
        replay_golden(&["--format", "pretty", "--emit", "events"]),
        include_str!("golden/replay-pretty-events.txt")
    );
    // The events written back are the recorded ones, less the start and stop lines.
    let events: String = GOLDEN_TRACE
        .lines()
        .filter(|line| !line.contains(r#""event":"tracer_st"#))
        .map(|line| format!("{line}\n"))
        .collect();
    let replayed = replay_golden(&["--emit", "events"]);
    let (replayed_events, stop) = replayed.rsplit_once(r#"{"event":"tracer_stop""#).unwrap();
    assert_eq!(replayed_events, events);
    assert!(stop.starts_with(r#","open_connections":0,"#), "{stop}");
}

/// `tracer replay FILE args` of the trace `text`, its stdout.
fn replay_text(text: &str, args: &[&str]) -> String {
    let trace = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(trace.path(), text).unwrap();
    let output = Command::new(tracer_bin())
        .arg("replay")
        .arg(trace.path())
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The trace docs/events.md takes its examples from (with the golden trace).
const DOCS_TRACE: &str = include_str!("../../docs/examples/trace.jsonl");
/// nginx over TLS and curl's two requests, for the TLS examples.
const DOCS_TLS_TRACE: &str = include_str!("../../docs/examples/tls-trace.jsonl");
const EVENTS_DOC: &str = include_str!("../../docs/events.md");

/// Every example line of docs/events.md is a line of one of the two recorded traces or
/// of what this build's `tracer replay` prints for them, and the flow graph drawn there is
/// what `--format pretty` draws: a change to the output that leaves the docs behind fails
/// here. `lost` and `undecodable` are illustrations (a healthy run prints neither).
#[test]
fn the_docs_examples_are_what_tracer_prints() {
    let _machine = shared();
    let mut printed: Vec<String> = Vec::new();
    for trace in [DOCS_TRACE, DOCS_TLS_TRACE, GOLDEN_TRACE] {
        printed.extend(trace.lines().map(str::to_owned));
        printed.extend(replay_text(trace, &[]).lines().map(str::to_owned));
    }
    let mut examples = 0;
    let mut in_json = false;
    for line in EVENTS_DOC.lines() {
        match line {
            "```json" => in_json = true,
            "```" => in_json = false,
            example if in_json => {
                let event: serde_json::Value = serde_json::from_str(example).unwrap();
                if event["event"] == "lost" || event["event"] == "undecodable" {
                    continue;
                }
                assert!(
                    printed.iter().any(|line| line == example),
                    "docs/events.md shows a line tracer does not print:\n{example}"
                );
                examples += 1;
            }
            _ => {}
        }
    }
    assert!(examples >= 15, "only {examples} examples found");
    let drawn = EVENTS_DOC
        .split("```\n")
        .find(|block| block.starts_with("connection "))
        .expect("a flow graph in docs/events.md");
    let pretty = replay_text(DOCS_TRACE, &["--format", "pretty"]);
    assert!(
        pretty.contains(drawn),
        "docs/events.md draws:\n{drawn}\ntracer draws:\n{pretty}"
    );
}
