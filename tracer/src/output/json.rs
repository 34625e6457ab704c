//! The JSON lines sink: one object per line, `ts` and `event` first. Every field is
//! documented in `docs/events.md`.

use std::{
    io::{self, Write},
    net::SocketAddr,
    time::SystemTime,
};

use serde::Serialize;

use crate::{
    clock::WallClock,
    event::{
        Accepted, ConnectionSummary, DataDirection, DataTurn, EventMeta, Existing, Keepalive,
        KeepaliveSettings, Reset, ResetDirection, Retransmit, RetransmitKind, StateChange,
        TcpState, TraceEvent,
    },
    kernel::attach::AttachPlan,
    output::{RecordEnd, Sink, StopSummary},
    pipeline::correlator::ConnectionRecord,
    pipeline::reader::LossCause,
};

#[derive(Serialize)]
struct TracerStartLine<'a> {
    ts: String,
    event: &'static str,
    version: &'static str,
    kernel: &'a str,
    #[serde(flatten)]
    plan: &'a AttachPlan,
    ports: &'a [u16],
}

/// Fields every event line has, in this order.
#[derive(Serialize)]
struct EventLine<'a, T: Serialize> {
    ts: String,
    event: &'static str,
    sock: String,
    family: &'static str,
    local: SocketAddr,
    remote: SocketAddr,
    #[serde(flatten)]
    details: T,
    pid: Option<u32>,
    comm: Option<&'a str>,
}

#[derive(Serialize)]
struct StateChangeDetails {
    old_state: String,
    new_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handshake: Option<HandshakeJson>,
}

/// On entering ESTABLISHED: what the kernel measured of the handshake.
#[derive(Serialize)]
struct HandshakeJson {
    rtt_us: Option<u32>,
    retransmits: u32,
}

#[derive(Serialize)]
struct ResetDetails<'a> {
    direction: &'static str,
    reason: Option<&'a str>,
    state: Option<String>,
}

#[derive(Serialize)]
struct RetransmitDetails<'a> {
    what: &'static str,
    state: Option<String>,
    tcp_flags: Option<&'a [&'static str]>,
}

#[derive(Serialize)]
struct KeepaliveProbeDetails {
    probe: u8,
    keepalive: KeepaliveSettingsJson,
}

#[derive(Serialize)]
struct KeepaliveTimeoutDetails {
    probes_sent: u8,
    keepalive: KeepaliveSettingsJson,
}

#[derive(Serialize)]
struct KeepaliveSettingsJson {
    idle_ms: Option<u64>,
    interval_ms: Option<u64>,
    probes: u8,
}

impl From<KeepaliveSettings> for KeepaliveSettingsJson {
    fn from(settings: KeepaliveSettings) -> Self {
        Self {
            idle_ms: settings.idle_ms,
            interval_ms: settings.interval_ms,
            probes: settings.probes,
        }
    }
}

#[derive(Serialize)]
struct DataTurnDetails {
    direction: &'static str,
}

#[derive(Serialize)]
struct SummaryDetails {
    bytes_acked: u64,
    bytes_received: u64,
    fin_received: bool,
    fin_acked: bool,
    retransmits: u32,
    srtt_us: u32,
    netns: u32,
    last_data_ts: Option<String>,
}

#[derive(Serialize)]
struct NoDetails {}

#[derive(Serialize)]
struct ExistingDetails {
    state: String,
}

#[derive(Serialize)]
struct ConnectionLine<'a> {
    ts: String,
    event: &'static str,
    record: RecordEnd,
    start: String,
    end: String,
    #[serde(flatten)]
    connection: &'a ConnectionRecord,
}

#[derive(Serialize)]
struct TracerStopLine<'a> {
    ts: String,
    event: &'static str,
    #[serde(flatten)]
    summary: &'a StopSummary,
}

#[derive(Serialize)]
struct CountLine<'a> {
    ts: String,
    event: &'static str,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

fn state_name(state: Option<TcpState>) -> Option<String> {
    state.map(|state| state.to_string())
}

/// Writes JSON lines to `out`; the caller flushes after each batch.
pub struct JsonSink<W: Write> {
    out: W,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, line: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }

    fn event_line<T: Serialize>(
        &mut self,
        clock: WallClock,
        event: &'static str,
        meta: &EventMeta,
        details: T,
    ) -> io::Result<()> {
        let EventMeta {
            boot_ns,
            sock,
            process,
            local,
            remote,
        } = meta;
        self.line(&EventLine {
            ts: clock.rfc3339(*boot_ns),
            event,
            sock: format!("{sock:#018x}"),
            family: if local.is_ipv4() { "ipv4" } else { "ipv6" },
            local: *local,
            remote: *remote,
            details,
            pid: process.as_ref().map(|p| p.pid),
            comm: process.as_ref().map(|p| p.comm.as_str()),
        })
    }

    fn data_turn(&mut self, clock: WallClock, turn: &DataTurn) -> io::Result<()> {
        let direction = match turn.direction {
            DataDirection::Sent => "sent",
            DataDirection::Received => "received",
        };
        self.event_line(
            clock,
            "data_turn",
            &turn.meta,
            DataTurnDetails { direction },
        )
    }

    fn summary(&mut self, clock: WallClock, summary: &ConnectionSummary) -> io::Result<()> {
        let details = SummaryDetails {
            bytes_acked: summary.bytes_acked,
            bytes_received: summary.bytes_received,
            fin_received: summary.fin_received,
            fin_acked: summary.fin_acked,
            retransmits: summary.retransmits,
            srtt_us: summary.srtt_us,
            netns: summary.netns,
            last_data_ts: summary.last_data_ns.map(|ns| clock.rfc3339(ns)),
        };
        self.event_line(clock, "close_summary", &summary.meta, details)
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        self.line(&TracerStartLine {
            ts: now(),
            event: "tracer_start",
            version: env!("CARGO_PKG_VERSION"),
            kernel,
            plan,
            ports,
        })
    }

    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        match event {
            TraceEvent::StateChange(StateChange {
                meta,
                old_state,
                new_state,
                handshake,
            }) => self.event_line(
                clock,
                "state_change",
                meta,
                StateChangeDetails {
                    old_state: old_state.to_string(),
                    new_state: new_state.to_string(),
                    handshake: handshake.map(|h| HandshakeJson {
                        rtt_us: h.rtt_us,
                        retransmits: h.retransmits,
                    }),
                },
            ),
            TraceEvent::Reset(Reset {
                meta,
                direction,
                reason,
                state,
            }) => self.event_line(
                clock,
                "reset",
                meta,
                ResetDetails {
                    direction: match direction {
                        ResetDirection::Sent => "sent",
                        ResetDirection::Received => "received",
                    },
                    reason: reason.as_deref(),
                    state: state_name(*state),
                },
            ),
            TraceEvent::Retransmit(Retransmit {
                meta,
                kind,
                state,
                tcp_flags,
            }) => self.event_line(
                clock,
                "retransmit",
                meta,
                RetransmitDetails {
                    what: match kind {
                        RetransmitKind::Segment => "segment",
                        RetransmitKind::SynAck => "synack",
                    },
                    state: state_name(*state),
                    tcp_flags: tcp_flags.as_deref(),
                },
            ),
            TraceEvent::KeepaliveProbe(Keepalive {
                meta,
                probe,
                settings,
            }) => self.event_line(
                clock,
                "keepalive_probe",
                meta,
                KeepaliveProbeDetails {
                    probe: *probe,
                    keepalive: (*settings).into(),
                },
            ),
            TraceEvent::KeepaliveTimeout(Keepalive {
                meta,
                probe,
                settings,
            }) => self.event_line(
                clock,
                "keepalive_timeout",
                meta,
                KeepaliveTimeoutDetails {
                    probes_sent: *probe,
                    keepalive: (*settings).into(),
                },
            ),
            TraceEvent::DataTurn(turn) => self.data_turn(clock, turn),
            TraceEvent::Summary(summary) => self.summary(clock, summary),
            TraceEvent::Accepted(Accepted { meta }) => {
                self.event_line(clock, "accepted", meta, NoDetails {})
            }
            TraceEvent::Existing(Existing { meta, state }) => self.event_line(
                clock,
                "existing",
                meta,
                ExistingDetails {
                    state: state.to_string(),
                },
            ),
        }
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        self.line(&ConnectionLine {
            ts: clock.rfc3339(record.end_ns),
            event: "connection",
            record: end,
            start: clock.rfc3339(record.start_ns),
            end: clock.rfc3339(record.end_ns),
            connection: record,
        })
    }

    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        self.line(&TracerStopLine {
            ts: now(),
            event: "tracer_stop",
            summary,
        })
    }

    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        self.line(&CountLine {
            ts: now(),
            event: "lost",
            count,
            reason: Some(cause.name()),
        })
    }

    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()> {
        self.line(&CountLine {
            ts: now(),
            event: "undecodable",
            count,
            reason: Some(reason),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{event::Process, output::Sink};

    fn render(event: &TraceEvent) -> Value {
        let mut sink = JsonSink::new(Vec::new());
        sink.event(WallClock::from_offset_ns(1_795_662_245_000_000_000), event)
            .unwrap();
        let text = String::from_utf8(sink.out).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        serde_json::from_str(&text).unwrap()
    }

    fn meta(process: Option<Process>, local: &str, remote: &str) -> EventMeta {
        EventMeta {
            boot_ns: 123_456_789,
            sock: 0xffff_8880_0abc_d000,
            process,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    fn change(process: Option<Process>, local: &str, remote: &str) -> TraceEvent {
        TraceEvent::StateChange(StateChange {
            meta: meta(process, local, remote),
            old_state: TcpState::SynSent,
            new_state: TcpState::Established,
            handshake: None,
        })
    }

    #[test]
    fn renders_the_documented_state_change_line() {
        let event = change(
            Some(Process {
                pid: 1234,
                comm: "curl".into(),
            }),
            "127.0.0.1:43014",
            "127.0.0.1:8191",
        );
        assert_eq!(
            render(&event),
            json!({
                "ts": "2026-11-26T03:04:05.123456789Z",
                "event": "state_change",
                "sock": "0xffff88800abcd000",
                "family": "ipv4",
                "local": "127.0.0.1:43014",
                "remote": "127.0.0.1:8191",
                "old_state": "SYN_SENT",
                "new_state": "ESTABLISHED",
                "pid": 1234,
                "comm": "curl",
            })
        );
    }

    #[test]
    fn ipv6_endpoints_are_bracketed_and_softirq_has_null_process() {
        let line = render(&change(None, "[::1]:8191", "[::1]:50000"));
        assert_eq!(line["family"], "ipv6");
        assert_eq!(line["local"], "[::1]:8191");
        assert_eq!(line["remote"], "[::1]:50000");
        assert_eq!(line["pid"], Value::Null);
        assert_eq!(line["comm"], Value::Null);
    }

    #[test]
    fn hostile_comm_renders_as_valid_json() {
        let comm = "a\"b\\c\n\u{1}\u{fffd}".to_string();
        let line = render(&change(
            Some(Process {
                pid: 1,
                comm: comm.clone(),
            }),
            "127.0.0.1:1",
            "127.0.0.1:2",
        ));
        assert_eq!(line["comm"], comm.as_str());
    }

    #[test]
    fn renders_resets_retransmits_and_keepalive() {
        let reset = render(&TraceEvent::Reset(Reset {
            meta: meta(None, "127.0.0.1:8191", "127.0.0.1:50000"),
            direction: ResetDirection::Sent,
            reason: Some("NO_SOCKET".into()),
            state: None,
        }));
        assert_eq!(
            (
                &reset["event"],
                &reset["direction"],
                &reset["reason"],
                &reset["state"]
            ),
            (
                &json!("reset"),
                &json!("sent"),
                &json!("NO_SOCKET"),
                &Value::Null
            )
        );
        let retransmit = render(&TraceEvent::Retransmit(Retransmit {
            meta: meta(None, "127.0.0.1:8191", "127.0.0.1:50000"),
            kind: RetransmitKind::SynAck,
            state: Some(TcpState::SynRecv),
            tcp_flags: Some(vec!["SYN", "ACK"]),
        }));
        assert_eq!(
            (
                &retransmit["what"],
                &retransmit["state"],
                &retransmit["tcp_flags"]
            ),
            (&json!("synack"), &json!("SYN_RECV"), &json!(["SYN", "ACK"]))
        );
        let settings = KeepaliveSettings {
            idle_ms: Some(1000),
            interval_ms: None,
            probes: 3,
        };
        let probe = render(&TraceEvent::KeepaliveProbe(Keepalive {
            meta: meta(None, "[::1]:1", "[::1]:2"),
            probe: 2,
            settings,
        }));
        assert_eq!(probe["event"], "keepalive_probe");
        assert_eq!(probe["probe"], 2);
        assert_eq!(
            probe["keepalive"],
            json!({"idle_ms": 1000, "interval_ms": null, "probes": 3})
        );
        let timeout = render(&TraceEvent::KeepaliveTimeout(Keepalive {
            meta: meta(None, "[::1]:1", "[::1]:2"),
            probe: 3,
            settings,
        }));
        assert_eq!(
            (&timeout["event"], &timeout["probes_sent"]),
            (&json!("keepalive_timeout"), &json!(3))
        );
    }

    #[test]
    fn renders_lifecycle_inputs() {
        let accepted = render(&TraceEvent::Accepted(Accepted {
            meta: meta(
                Some(Process {
                    pid: 7,
                    comm: "srv".into(),
                }),
                "127.0.0.1:8191",
                "127.0.0.1:5",
            ),
        }));
        assert_eq!(
            (&accepted["event"], &accepted["pid"]),
            (&json!("accepted"), &json!(7))
        );
        let summary = render(&TraceEvent::Summary(ConnectionSummary {
            meta: meta(None, "127.0.0.1:8191", "127.0.0.1:5"),
            bytes_acked: 10,
            fin_received: false,
            fin_acked: false,
            bytes_received: 20,
            retransmits: 1,
            srtt_us: 50,
            netns: 4026531840,
            last_data_ns: Some(123_456_789),
        }));
        assert_eq!(summary["event"], "close_summary");
        assert_eq!(summary["bytes_received"], 20);
        assert_eq!(summary["last_data_ts"], "2026-11-26T03:04:05.123456789Z");
        let turn = render(&TraceEvent::DataTurn(DataTurn {
            meta: meta(None, "127.0.0.1:8191", "127.0.0.1:5"),
            direction: DataDirection::Received,
        }));
        assert_eq!(
            (&turn["event"], &turn["direction"]),
            (&json!("data_turn"), &json!("received"))
        );
    }

    #[test]
    fn counts_render_with_their_reason() {
        let mut sink = JsonSink::new(Vec::new());
        sink.lost(7, LossCause::RingBufferFull).unwrap();
        sink.undecodable(2, "unknown record kind 9").unwrap();
        let text = String::from_utf8(sink.out).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "lost");
        assert_eq!(lines[0]["count"], 7);
        assert_eq!(lines[0]["reason"], "ring_buffer_full");
        assert_eq!(lines[1]["event"], "undecodable");
        assert_eq!(lines[1]["reason"], "unknown record kind 9");
    }
}
