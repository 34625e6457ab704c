//! `tracer replay FILE`: recorded JSON lines back into events, through the same
//! correlator and sinks as a live trace, so a trace captured on a server can be read
//! elsewhere (for example as timelines, `--format pretty`).
//!
//! Only event lines are read back (`state_change`, `reset`, ...), and the losses the
//! trace recorded (`lost`, `undecodable`: reported again, so a replay says what its trace
//! missed); `tracer_start`, `connection` and the other lines a live trace wrote are
//! skipped, since the replay makes its own. Times are the lines' `ts`, so the replay's output has the same times.
//!
//! A line cut short (a tracer killed mid-write, which a restarted tracer appends after)
//! is reported on stderr and skipped; any other line that is not a tracer's stops the
//! replay.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    str::FromStr,
    time::SystemTime,
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    clock::WallClock,
    event::{
        Accepted, Cgroup, ConnectionSummary, DataTurn, EventKind, EventMeta, Existing,
        HandshakeSample, Keepalive, KeepaliveSettings, Process, Reset, Retransmit, StateChange,
        TcpCounters, TcpFlag, TcpState, TimewaitEnd, TlsHandshake, TraceEvent,
    },
    kernel::{attach::Hook, sysctl::DEFAULT_FIN_TIMEOUT_NS},
    output::{self, Format, Sink, StopSummary},
    pipeline::{Pipeline, PipelineConfig, Traced, reader::LossCause},
    vocabulary::UnknownName,
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

/// An `existing` line's `counters`, `null` or absent in traces from before they existed.
fn counters(object: &Value) -> Result<Option<TcpCounters>> {
    if object.is_null() {
        return Ok(None);
    }
    Ok(Some(TcpCounters {
        bytes_acked: u64_field(object, "bytes_acked")?,
        bytes_received: u64_field(object, "bytes_received")?,
        retransmits: number(object, "retransmits")?,
        rtt_us: number(object, "rtt_us")?,
    }))
}

/// A number that may be `null` or absent.
fn optional_number<T: TryFrom<u64>>(line: &Value, name: &str) -> Result<Option<T>> {
    match &line[name] {
        Value::Null => Ok(None),
        _ => number(line, name).map(Some),
    }
}

fn addr(line: &Value, name: &str) -> Result<SocketAddr> {
    str_field(line, name)?
        .parse()
        .with_context(|| format!("bad {name}"))
}

/// A name of `T`'s vocabulary (the one the lines were written with), read back.
fn named<T: FromStr<Err = UnknownName>>(line: &Value, name: &str) -> Result<T> {
    Ok(str_field(line, name)?.parse()?)
}

fn optional_state(line: &Value, name: &str) -> Result<Option<TcpState>> {
    Ok(line[name].as_str().map(str::parse).transpose()?)
}

/// An event's `cgroup` object, or `null`.
fn cgroup(value: &Value) -> Result<Option<Cgroup>> {
    if value.is_null() {
        return Ok(None);
    }
    Ok(Some(Cgroup::new(
        value["id"].as_u64().context("bad cgroup id")?,
        value["path"].as_str().map(Into::into),
    )))
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
        cgroup: cgroup(&line["cgroup"])?,
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

/// A retransmitted segment's TCP flags, `null` when the kernel did not expose them.
fn tcp_flags(line: &Value) -> Result<Option<Vec<TcpFlag>>> {
    let Some(flags) = line["tcp_flags"].as_array() else {
        return Ok(None);
    };
    let flags = flags.iter().map(|flag| match flag.as_str() {
        Some(name) => Ok(name.parse::<TcpFlag>()?),
        None => bail!("bad tcp_flags {flag}"),
    });
    Ok(Some(flags.collect::<Result<_>>()?))
}

/// The event on `line`, `None` for lines that are not events.
pub fn parse_line(line: &str) -> Result<Option<TraceEvent>> {
    event(&serde_json::from_str(line).context("not JSON")?)
}

/// The event a line's JSON holds, `None` for lines that are not events.
fn event(line: &Value) -> Result<Option<TraceEvent>> {
    let Some(kind) = line["event"].as_str().and_then(|name| name.parse().ok()) else {
        return Ok(None);
    };
    let event = match kind {
        EventKind::StateChange => TraceEvent::StateChange(StateChange {
            meta: meta(line)?,
            old_state: named(line, "old_state")?,
            new_state: named(line, "new_state")?,
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
        EventKind::Reset => TraceEvent::Reset(Reset {
            meta: meta(line)?,
            direction: named(line, "direction")?,
            reason: line["reason"].as_str().map(str::to_owned),
            state: optional_state(line, "state")?,
        }),
        EventKind::Retransmit => TraceEvent::Retransmit(Retransmit {
            meta: meta(line)?,
            kind: named(line, "what")?,
            state: optional_state(line, "state")?,
            tcp_flags: tcp_flags(line)?,
        }),
        EventKind::KeepaliveProbe => TraceEvent::KeepaliveProbe(keepalive(line, "probe")?),
        EventKind::KeepaliveTimeout => {
            TraceEvent::KeepaliveTimeout(keepalive(line, "probes_sent")?)
        }
        EventKind::DataTurn => TraceEvent::DataTurn(DataTurn {
            meta: meta(line)?,
            direction: named(line, "direction")?,
        }),
        EventKind::TlsTurn => TraceEvent::TlsTurn(DataTurn {
            meta: meta(line)?,
            direction: named(line, "direction")?,
        }),
        EventKind::TlsHandshake => TraceEvent::TlsHandshake(TlsHandshake {
            meta: meta(line)?,
            library: named(line, "library")?,
            handshake_us: line["handshake_us"].as_u64(),
        }),
        EventKind::Summary => TraceEvent::Summary(ConnectionSummary {
            meta: meta(line)?,
            bytes_acked: u64_field(line, "bytes_acked")?,
            bytes_received: u64_field(line, "bytes_received")?,
            fin_received: bool_field(line, "fin_received")?,
            fin_acked: bool_field(line, "fin_acked")?,
            retransmits: number(line, "retransmits")?,
            srtt_us: number(line, "srtt_us")?,
            netns: number(line, "netns")?,
            // Traces written before the field existed have none.
            error: line["error"].as_str().map(str::parse).transpose()?,
            last_data_ns: line["last_data_ts"].as_str().map(epoch_ns).transpose()?,
        }),
        EventKind::Accepted => TraceEvent::Accepted(Accepted { meta: meta(line)? }),
        EventKind::Existing => TraceEvent::Existing(Existing {
            meta: meta(line)?,
            state: named(line, "state")?,
            netns: optional_number(line, "netns")?,
            counters: counters(&line["counters"])?,
        }),
        EventKind::TimewaitEnd => TraceEvent::TimewaitEnd(TimewaitEnd {
            meta: meta(line)?,
            how: named(line, "how")?,
        }),
    };
    Ok(Some(event))
}

/// What the replay does with one line of the recorded file.
#[derive(Debug)]
pub enum Line {
    Event(TraceEvent),
    /// Events the recording tracer lost (a `lost` line), which the replay reports again.
    Lost(u64, LossCause),
    /// Records the recording tracer could not decode (an `undecodable` line), reported
    /// again.
    Undecodable(u64, String),
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
    let line: Value = match serde_json::from_str(text) {
        Ok(line) => line,
        Err(error) if error.is_eof() => return Ok(Line::Cut),
        Err(error) => return Err(anyhow!(error).context("not JSON")),
    };
    if let Some(event) = event(&line)? {
        return Ok(Line::Event(event));
    }
    let count = || u64_field(&line, "count");
    Ok(match line["event"].as_str() {
        Some("lost") => Line::Lost(count()?, named(&line, "reason")?),
        Some("undecodable") => Line::Undecodable(count()?, str_field(&line, "reason")?.to_owned()),
        _ => Line::Other,
    })
}

/// What a trace's first line (`tracer_start`) says of the tracing that recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceStart {
    /// The kernel's release, or `(not recorded)`.
    pub kernel: String,
    /// The traced ports, sorted.
    pub ports: Vec<u16>,
    /// When tracing started, as written.
    pub ts: Option<String>,
}

impl TraceStart {
    /// Reads the first line of a trace (`Null` or another line when it has none).
    pub fn read(start: &Value) -> Self {
        let mut ports: Vec<u16> = (start["ports"].as_array().into_iter().flatten())
            .filter_map(|port| u16::try_from(port.as_u64()?).ok())
            .collect();
        ports.sort_unstable();
        Self {
            kernel: start["kernel"]
                .as_str()
                .unwrap_or("(not recorded)")
                .to_owned(),
            ports,
            ts: start["ts"].as_str().map(str::to_owned),
        }
    }
}

/// Replays `file` (`-` for standard input) to standard output.
pub fn run(file: &Path, config: PipelineConfig, format: Format) -> Result<()> {
    feed(file, config, output::open(None, format), |_, _| {})?;
    Ok(())
}

/// Replays `file` (`-` for standard input) into `sink`, and gives it back. `pace` sees the trace's first
/// line (`tracer_start`, or `Null`) and then each event's time (`Some`), before the event
/// goes in: `tracer top --replay` waits there to show the trace at its own pace.
pub fn feed<S: Sink>(
    file: &Path,
    config: PipelineConfig,
    sink: S,
    mut pace: impl FnMut(&Value, Option<u64>),
) -> Result<S> {
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        ))
    };
    // The lines' times are wall-clock already: an offset of zero keeps them.
    let clock = WallClock::from_offset_ns(0);
    let mut lines = input.split(b'\n').enumerate().peekable();
    // What the trace's tracer traced, its first line says: without the data hook it
    // could not count exchanges; with the timewait hook it followed timewait sockets
    // (waiting as long as the kernel's default `tcp_fin_timeout`, as the trace does not
    // say the one it had).
    let start = match lines.peek() {
        Some((_, Ok(first))) => serde_json::from_slice::<Value>(first).unwrap_or_default(),
        _ => Value::Null,
    };
    pace(&start, None);
    let traced = Traced {
        data_turns: start["unsupported"].get("data").is_none(),
        timewait_fin_timeout_ns: start["attach"]
            .get(Hook::Timewait.name())
            .map(|_| DEFAULT_FIN_TIMEOUT_NS),
    };
    let mut pipeline = Pipeline::new(config, traced, sink, clock);
    for (number, line) in lines {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        let location = format!("{}:{}", file.display(), number + 1);
        match read_line(&line).with_context(|| format!("{location}: not a tracer line"))? {
            Line::Event(event) => {
                pace(&start, Some(event.meta().boot_ns));
                pipeline.event(&event)?;
            }
            Line::Lost(count, cause) => pipeline.sink.lost(count, cause)?,
            Line::Undecodable(count, reason) => pipeline.sink.undecodable(count, &reason)?,
            Line::Other => {}
            Line::Cut => eprintln!(
                "tracer: warning: {location}: skipped a line cut short (its tracer was stopped mid-write)"
            ),
        }
    }
    pipeline.finish(StopSummary::default())?;
    Ok(pipeline.sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Direction, PeerEnd, RetransmitKind, TlsLibrary},
        output::{Sink, json::JsonSink},
    };

    /// `events` written as JSON lines, and those lines parsed back.
    fn round_trip(events: &[TraceEvent]) -> (String, Vec<TraceEvent>) {
        let mut sink = JsonSink::new(Vec::new());
        for event in events {
            sink.event(WallClock::from_offset_ns(0), event).unwrap();
        }
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let parsed = text
            .lines()
            .map(|l| parse_line(l).unwrap().unwrap())
            .collect();
        (text, parsed)
    }

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
            cgroup: Some(Cgroup::new(
                4242,
                Some("/system.slice/a \"b\".scope".into()),
            )),
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
                direction: Direction::Sent,
                reason: Some("NO_SOCKET".into()),
                state: None,
            }),
            TraceEvent::Retransmit(Retransmit {
                meta: meta(2),
                kind: RetransmitKind::Segment,
                state: Some(TcpState::Established),
                tcp_flags: Some(vec![TcpFlag::Psh, TcpFlag::Ack]),
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
                direction: Direction::Received,
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
                error: None,
                last_data_ns: Some(1_795_662_245_000_000_001),
            }),
            TraceEvent::Accepted(Accepted { meta: meta(5) }),
            TraceEvent::Existing(Existing {
                meta: meta(6),
                state: TcpState::CloseWait,
                netns: Some(4_026_531_840),
                counters: Some(TcpCounters {
                    bytes_acked: 5,
                    bytes_received: 6,
                    retransmits: 7,
                    rtt_us: 8,
                }),
            }),
            TraceEvent::Existing(Existing {
                meta: meta(7),
                state: TcpState::Listen,
                netns: None,
                counters: None,
            }),
        ];
        assert_eq!(round_trip(&events).1, events);
    }

    /// Every value of every name an event line carries survives write -> replay, the
    /// events cover every kind, and a line with a name outside its vocabulary is refused
    /// (never read as some other value).
    #[test]
    fn every_name_of_the_event_lines_reads_back() {
        let meta = |sock| EventMeta {
            boot_ns: 1_795_662_245_123_456_789,
            sock,
            process: None,
            cgroup: None,
            local: "127.0.0.1:8191".parse().unwrap(),
            remote: "127.0.0.1:5".parse().unwrap(),
        };
        let settings = KeepaliveSettings {
            idle_ms: None,
            interval_ms: Some(75_000),
            probes: 9,
        };
        // Every state the kernel numbers, and one it does not.
        let states = (0..=LAST_STATE_TRIED).map(TcpState::from_kernel);
        let mut events: Vec<TraceEvent> = states
            .flat_map(|state| {
                [
                    TraceEvent::StateChange(StateChange {
                        meta: meta(1),
                        old_state: state,
                        new_state: state,
                        handshake: None,
                    }),
                    TraceEvent::Existing(Existing {
                        meta: meta(2),
                        state,
                        netns: Some(1),
                        counters: None,
                    }),
                ]
            })
            .collect();
        for &direction in Direction::ALL {
            events.push(TraceEvent::Reset(Reset {
                meta: meta(3),
                direction,
                reason: None,
                state: None,
            }));
            events.push(TraceEvent::DataTurn(DataTurn {
                meta: meta(4),
                direction,
            }));
        }
        for &how in PeerEnd::ALL {
            events.push(TraceEvent::TimewaitEnd(TimewaitEnd { meta: meta(9), how }));
        }
        for &kind in RetransmitKind::ALL {
            events.push(TraceEvent::Retransmit(Retransmit {
                meta: meta(5),
                kind,
                state: None,
                tcp_flags: Some(TcpFlag::ALL.to_vec()),
            }));
        }
        events.extend([
            TraceEvent::KeepaliveProbe(Keepalive {
                meta: meta(6),
                probe: 1,
                settings,
            }),
            TraceEvent::KeepaliveTimeout(Keepalive {
                meta: meta(6),
                probe: 9,
                settings,
            }),
            TraceEvent::Summary(ConnectionSummary {
                meta: meta(7),
                bytes_acked: 0,
                fin_received: true,
                fin_acked: true,
                bytes_received: 0,
                retransmits: 0,
                srtt_us: 0,
                netns: 0,
                error: None,
                last_data_ns: None,
            }),
            TraceEvent::Accepted(Accepted { meta: meta(8) }),
            TraceEvent::TlsTurn(DataTurn {
                meta: meta(9),
                direction: Direction::Received,
            }),
            TraceEvent::TlsHandshake(TlsHandshake {
                meta: meta(9),
                library: TlsLibrary::OpenSsl,
                handshake_us: Some(1_250),
            }),
            TraceEvent::TlsHandshake(TlsHandshake {
                meta: meta(9),
                library: TlsLibrary::OpenSsl,
                handshake_us: None,
            }),
        ]);
        let kinds: Vec<EventKind> = EventKind::ALL
            .iter()
            .copied()
            .filter(|kind| events.iter().any(|event| event.kind() == *kind))
            .collect();
        assert_eq!(kinds, EventKind::ALL, "an event kind is missing here");

        let (text, parsed) = round_trip(&events);
        assert_eq!(parsed, events);

        for (written, unknown) in [
            (r#""direction":"sent""#, r#""direction":"both""#),
            (r#""what":"synack""#, r#""what":"syn""#),
            (r#""ACK""#, r#""ACKED""#),
            (r#""state":"ESTABLISHED""#, r#""state":"OPEN""#),
        ] {
            let line = text.lines().find(|l| l.contains(written)).unwrap();
            let error = parse_line(&line.replace(written, unknown)).unwrap_err();
            assert!(format!("{error:#}").contains("is not a"), "{error:#}");
        }
    }

    /// The largest state number the test writes: one past the kernel's last.
    const LAST_STATE_TRIED: u8 = 13;

    /// Replay reads back exactly the event lines: each kind is one of them (a line of that
    /// name without its fields is refused, not skipped as another line).
    #[test]
    fn event_kinds_are_the_event_lines() {
        for kind in EventKind::ALL {
            assert!(
                parse_line(&format!(r#"{{"event":"{kind}"}}"#)).is_err(),
                "{kind}"
            );
        }
        assert!(parse_line(r#"{"event":"connection"}"#).unwrap().is_none());
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

    /// The losses a trace recorded are read back as written, so a replay reports them.
    #[test]
    fn recorded_losses_are_read_back() {
        let mut sink = JsonSink::new(Vec::new());
        sink.lost(7, LossCause::ProgramBusy).unwrap();
        sink.undecodable(2, "too short").unwrap();
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let lines: Vec<Line> = text
            .lines()
            .map(|line| read_line(line.as_bytes()).unwrap())
            .collect();
        assert!(
            matches!(
                lines[..],
                [
                    Line::Lost(7, LossCause::ProgramBusy),
                    Line::Undecodable(2, ref reason)
                ] if reason == "too short"
            ),
            "{lines:?}"
        );
        assert!(read_line(br#"{"event":"lost","count":1,"reason":"no idea"}"#).is_err());
    }
}
