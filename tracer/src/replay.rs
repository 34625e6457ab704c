//! `tracer replay FILE`: recorded JSON lines back into events, through the same
//! correlator and sinks as a live trace, so a trace captured on a server can be read
//! elsewhere (for example as timelines, `--format pretty`).
//!
//! Only event lines are read back (`state_change`, `reset`, ...); `tracer_start`,
//! `connection` and the other lines a live trace wrote are skipped, since the replay
//! makes its own. Times are the lines' `ts`, so the replay's output has the same times.
//!
//! A line cut short (a tracer killed mid-write, which a restarted tracer appends after)
//! is reported on stderr and skipped; any other line that is not a tracer's stops the
//! replay.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    time::SystemTime,
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    cli::OutputArgs,
    clock::WallClock,
    event::{
        Accepted, ConnectionSummary, DataDirection, DataTurn, EventMeta, Existing, HandshakeSample,
        Keepalive, KeepaliveSettings, Process, Reset, ResetDirection, Retransmit, RetransmitKind,
        StateChange, TcpState, TraceEvent,
    },
    output,
    pipeline::Pipeline,
};

/// Nanoseconds since the epoch of an RFC 3339 time.
fn epoch_ns(text: &str) -> Result<u64> {
    let time = humantime::parse_rfc3339(text).with_context(|| format!("bad time {text:?}"))?;
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("time before 1970")?;
    u64::try_from(since.as_nanos()).context("time too far ahead")
}

fn str_field<'a>(line: &'a Value, name: &str) -> Result<&'a str> {
    line[name].as_str().ok_or_else(|| anyhow!("no {name}"))
}

fn bool_field(line: &Value, name: &str) -> Result<bool> {
    line[name].as_bool().ok_or_else(|| anyhow!("no {name}"))
}

fn u64_field(line: &Value, name: &str) -> Result<u64> {
    line[name].as_u64().ok_or_else(|| anyhow!("no {name}"))
}

fn number<T: TryFrom<u64>>(line: &Value, name: &str) -> Result<T> {
    T::try_from(u64_field(line, name)?).map_err(|_| anyhow!("{name} out of range"))
}

fn addr(line: &Value, name: &str) -> Result<SocketAddr> {
    str_field(line, name)?
        .parse()
        .with_context(|| format!("bad {name}"))
}

/// A state name as the JSON lines write it, back to the state.
fn state(name: &str) -> Result<TcpState> {
    if let Some(number) = name.strip_prefix("UNKNOWN_") {
        return Ok(TcpState::Unknown(number.parse()?));
    }
    (1..=12)
        .map(TcpState::from_kernel)
        .find(|state| state.name() == name)
        .ok_or_else(|| anyhow!("unknown state {name}"))
}

fn optional_state(line: &Value, name: &str) -> Result<Option<TcpState>> {
    line[name].as_str().map(state).transpose()
}

fn meta(line: &Value) -> Result<EventMeta> {
    let sock = str_field(line, "sock")?;
    let process = match line["pid"].as_u64() {
        Some(pid) => Some(Process {
            pid: u32::try_from(pid)?,
            comm: line["comm"].as_str().unwrap_or_default().to_owned(),
        }),
        None => None,
    };
    Ok(EventMeta {
        boot_ns: epoch_ns(str_field(line, "ts")?)?,
        sock: u64::from_str_radix(sock.trim_start_matches("0x"), 16).context("bad sock")?,
        process,
        local: addr(line, "local")?,
        remote: addr(line, "remote")?,
    })
}

fn keepalive(line: &Value, probe_field: &str) -> Result<Keepalive> {
    let settings = &line["keepalive"];
    Ok(Keepalive {
        meta: meta(line)?,
        probe: number(line, probe_field)?,
        settings: KeepaliveSettings {
            idle_ms: settings["idle_ms"].as_u64(),
            interval_ms: settings["interval_ms"].as_u64(),
            probes: number(settings, "probes")?,
        },
    })
}

/// TCP flag names as the JSON lines write them, back to the names `decode` uses.
fn tcp_flags(line: &Value) -> Option<Vec<&'static str>> {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    let flags = line["tcp_flags"].as_array()?;
    Some(
        flags
            .iter()
            .filter_map(|f| NAMES.iter().find(|n| Some(**n) == f.as_str()).copied())
            .collect(),
    )
}

/// The event on `line`, `None` for lines that are not events.
pub fn parse_line(line: &str) -> Result<Option<TraceEvent>> {
    let line: Value = serde_json::from_str(line).context("not JSON")?;
    let event = match line["event"].as_str() {
        Some("state_change") => TraceEvent::StateChange(StateChange {
            meta: meta(&line)?,
            old_state: state(str_field(&line, "old_state")?)?,
            new_state: state(str_field(&line, "new_state")?)?,
            handshake: match &line["handshake"] {
                Value::Null => None,
                handshake => Some(HandshakeSample {
                    rtt_us: handshake["rtt_us"]
                        .as_u64()
                        .map(|us| u32::try_from(us).map_err(|_| anyhow!("rtt_us out of range")))
                        .transpose()?,
                    retransmits: number(handshake, "retransmits")?,
                }),
            },
        }),
        Some("reset") => TraceEvent::Reset(Reset {
            meta: meta(&line)?,
            direction: match str_field(&line, "direction")? {
                "sent" => ResetDirection::Sent,
                "received" => ResetDirection::Received,
                other => bail!("bad direction {other}"),
            },
            reason: line["reason"].as_str().map(str::to_owned),
            state: optional_state(&line, "state")?,
        }),
        Some("retransmit") => TraceEvent::Retransmit(Retransmit {
            meta: meta(&line)?,
            kind: match str_field(&line, "what")? {
                "synack" => RetransmitKind::SynAck,
                _ => RetransmitKind::Segment,
            },
            state: optional_state(&line, "state")?,
            tcp_flags: tcp_flags(&line),
        }),
        Some("keepalive_probe") => TraceEvent::KeepaliveProbe(keepalive(&line, "probe")?),
        Some("keepalive_timeout") => TraceEvent::KeepaliveTimeout(keepalive(&line, "probes_sent")?),
        Some("data_turn") => TraceEvent::DataTurn(DataTurn {
            meta: meta(&line)?,
            direction: match str_field(&line, "direction")? {
                "sent" => DataDirection::Sent,
                _ => DataDirection::Received,
            },
        }),
        Some("close_summary") => TraceEvent::Summary(ConnectionSummary {
            meta: meta(&line)?,
            bytes_acked: u64_field(&line, "bytes_acked")?,
            bytes_received: u64_field(&line, "bytes_received")?,
            fin_received: bool_field(&line, "fin_received")?,
            fin_acked: bool_field(&line, "fin_acked")?,
            retransmits: number(&line, "retransmits")?,
            srtt_us: number(&line, "srtt_us")?,
            netns: number(&line, "netns")?,
            last_data_ns: line["last_data_ts"].as_str().map(epoch_ns).transpose()?,
        }),
        Some("accepted") => TraceEvent::Accepted(Accepted { meta: meta(&line)? }),
        Some("existing") => TraceEvent::Existing(Existing {
            meta: meta(&line)?,
            state: state(str_field(&line, "state")?)?,
        }),
        _ => return Ok(None),
    };
    Ok(Some(event))
}

/// What the replay does with one line of the recorded file.
#[derive(Debug)]
pub enum Line {
    Event(TraceEvent),
    /// Not an event (`tracer_start`, `connection`, blank...): the replay makes its own.
    Other,
    /// The line ends before its JSON does: written by a tracer stopped mid-write.
    Cut,
}

/// Reads one line of a recorded trace (without its newline).
pub fn read_line(bytes: &[u8]) -> Result<Line> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // Cut inside a character.
        Err(error) if error.error_len().is_none() => return Ok(Line::Cut),
        Err(error) => bail!("not UTF-8 text ({error})"),
    };
    if text.trim().is_empty() {
        return Ok(Line::Other);
    }
    match parse_line(text) {
        Ok(event) => Ok(event.map_or(Line::Other, Line::Event)),
        Err(error)
            if error
                .downcast_ref::<serde_json::Error>()
                .is_some_and(serde_json::Error::is_eof) =>
        {
            Ok(Line::Cut)
        }
        Err(error) => Err(error),
    }
}

/// Replays `file` (`-` for standard input) to standard output.
pub fn run(file: &Path, show: &OutputArgs) -> Result<()> {
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        ))
    };
    let sink = output::open(None, show.format);
    // The lines' times are wall-clock already: an offset of zero keeps them.
    let clock = WallClock::from_offset_ns(0);
    let mut lines = input.split(b'\n').enumerate().peekable();
    // A trace whose tracer had no data hook cannot count exchanges: its first line says.
    let data_turns = match lines.peek() {
        Some((_, Ok(first))) => serde_json::from_slice::<Value>(first)
            .map_or(true, |line| line["unsupported"].get("data").is_none()),
        _ => true,
    };
    let mut pipeline = Pipeline::new(show, data_turns, sink, clock);
    for (number, line) in lines {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        let location = format!("{}:{}", file.display(), number + 1);
        match read_line(&line).with_context(|| format!("{location}: not a tracer line"))? {
            Line::Event(event) => pipeline.event(&event)?,
            Line::Other => {}
            Line::Cut => eprintln!(
                "tracer: warning: {location}: skipped a line cut short (its tracer was stopped mid-write)"
            ),
        }
    }
    Ok(pipeline.finish(None)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Sink, json::JsonSink};

    /// Every kind of event survives rendering and parsing unchanged.
    #[test]
    fn json_lines_parse_back_to_the_same_events() {
        let meta = |sock| EventMeta {
            boot_ns: 1_795_662_245_123_456_789,
            sock,
            process: Some(Process {
                pid: 42,
                comm: "a \"b\"".into(),
            }),
            local: "127.0.0.1:8191".parse().unwrap(),
            remote: "[::ffff:127.0.0.1]:5".parse().unwrap(),
        };
        let settings = KeepaliveSettings {
            idle_ms: Some(1000),
            interval_ms: None,
            probes: 3,
        };
        let events = [
            TraceEvent::StateChange(StateChange {
                meta: meta(1),
                old_state: TcpState::Listen,
                new_state: TcpState::Unknown(77),
                handshake: None,
            }),
            TraceEvent::Reset(Reset {
                meta: meta(0),
                direction: ResetDirection::Sent,
                reason: Some("NO_SOCKET".into()),
                state: None,
            }),
            TraceEvent::Retransmit(Retransmit {
                meta: meta(2),
                kind: RetransmitKind::Segment,
                state: Some(TcpState::Established),
                tcp_flags: Some(vec!["PSH", "ACK"]),
            }),
            TraceEvent::KeepaliveProbe(Keepalive {
                meta: meta(3),
                probe: 2,
                settings,
            }),
            TraceEvent::KeepaliveTimeout(Keepalive {
                meta: meta(3),
                probe: 3,
                settings,
            }),
            TraceEvent::DataTurn(DataTurn {
                meta: meta(4),
                direction: DataDirection::Received,
            }),
            TraceEvent::Summary(ConnectionSummary {
                meta: meta(4),
                bytes_acked: 1,
                fin_received: false,
                fin_acked: false,
                bytes_received: 2,
                retransmits: 3,
                srtt_us: 4,
                netns: 5,
                last_data_ns: Some(1_795_662_245_000_000_001),
            }),
            TraceEvent::Accepted(Accepted { meta: meta(5) }),
            TraceEvent::Existing(Existing {
                meta: meta(6),
                state: TcpState::CloseWait,
            }),
        ];
        let mut sink = JsonSink::new(Vec::new());
        for event in &events {
            sink.event(WallClock::from_offset_ns(0), event).unwrap();
        }
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let parsed: Vec<TraceEvent> = text
            .lines()
            .map(|l| parse_line(l).unwrap().unwrap())
            .collect();
        assert_eq!(parsed, events);
    }

    #[test]
    fn other_lines_are_skipped_and_bad_ones_named() {
        assert_eq!(
            parse_line(r#"{"event":"tracer_start","ts":"x"}"#).unwrap(),
            None
        );
        assert!(parse_line("not json").is_err());
        let err =
            parse_line(r#"{"event":"state_change","ts":"2026-11-26T03:04:05Z"}"#).unwrap_err();
        assert!(format!("{err:#}").contains("no sock"), "{err:#}");
    }

    #[test]
    fn cut_lines_are_told_apart_from_bad_ones() {
        let whole = r#"{"event":"tracer_stop","comm":"é"}"#.as_bytes();
        assert!(matches!(read_line(whole).unwrap(), Line::Other));
        assert!(matches!(read_line(b"  ").unwrap(), Line::Other));
        // Cut anywhere, inside a character too.
        for end in 1..whole.len() - 1 {
            assert!(
                matches!(read_line(&whole[..end]).unwrap(), Line::Cut),
                "{:?}",
                String::from_utf8_lossy(&whole[..end])
            );
        }
        for bad in [&b"not json"[..], b"{\"a\":1}}", b"\xff\xfe{}"] {
            assert!(read_line(bad).is_err(), "{bad:?}");
        }
    }
}
