//! The JSON lines sink: one object per line, `ts` and `event` first. Every field is
//! documented in `docs/events.md`.
//!
//! Event and connection lines, one per kernel event or connection at full load, are
//! written field by field ([`line`]); the few other lines (start, stop, counts) through
//! serde.

pub mod line;

use std::{
    io::{self, Write},
    time::SystemTime,
};

use serde::Serialize;

use self::line::{Object, Timestamps};
use crate::{
    clock::WallClock,
    event::{
        Cgroup, ConnectionSummary, EventMeta, Keepalive, KeepaliveSettings, TcpState, TraceEvent,
    },
    kernel::attach::AttachPlan,
    output::{RecordEnd, Sink, StopSummary},
    pipeline::{
        correlator::ConnectionRecord,
        reader::LossCause,
        workload::container::{container_of, pod_of},
    },
};

/// Lines gathered before they are handed to the writer.
const BATCH: usize = 64 * 1024;

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

/// A state as the lines spell it (its `Display`): the kernel's name, or
/// `UNKNOWN_<number>`.
fn write_state(object: &mut Object<'_>, key: &str, state: TcpState) {
    match state {
        TcpState::Unknown(_) => object.text(key, &state.to_string()),
        known => object.name(key, known.name()),
    };
}

fn write_optional_state(object: &mut Object<'_>, key: &str, state: Option<TcpState>) {
    match state {
        Some(state) => write_state(object, key, state),
        None => {
            object.null(key);
        }
    }
}

fn write_settings(object: &mut Object<'_>, settings: &KeepaliveSettings) {
    object.object("keepalive", |o| {
        o.optional_number("idle_ms", settings.idle_ms)
            .optional_number("interval_ms", settings.interval_ms)
            .number("probes", settings.probes);
    });
}

/// Writes `record`'s `connection` line (without its newline): the one definition of the
/// record's fields, for the lines and for the exporters that carry the record.
pub fn write_record(
    out: &mut Vec<u8>,
    timestamps: &mut Timestamps,
    clock: WallClock,
    record: &ConnectionRecord,
    end: RecordEnd,
) {
    let mut line = Object::new(out);
    let end_time = clock.to_system_time(record.end_ns);
    line.time("ts", timestamps, end_time)
        .name("event", "connection")
        .name("record", end.name())
        .time("start", timestamps, clock.to_system_time(record.start_ns))
        .time("end", timestamps, end_time)
        .number("conn_id", record.conn_id)
        .hex("sock", record.sock)
        .name("role", record.role.name())
        .name("family", record.family.name())
        .addr("local", record.local)
        .addr("remote", record.remote)
        .optional_number("netns", record.netns)
        .optional_number("pid", record.pid)
        .optional_text("comm", record.comm.as_deref());
    workload(&mut line, record.cgroup.as_deref());
    line.number("start_ns", record.start_ns)
        .number("end_ns", record.end_ns)
        .optional_number("handshake_us", record.handshake_us)
        .number("duration_us", record.duration_us)
        .objects("states", &record.states, |o, entry| {
            write_state(o, "state", entry.state);
            o.number("offset_us", entry.offset_us);
        })
        .name("close_initiator", record.close_initiator.name())
        .name("outcome", record.outcome.name())
        .optional_name("error", record.error.map(|e| e.to_string()).as_deref())
        .optional_bool("fin_received", record.fin_received);
    write_optional_state(&mut line, "handed_to_timewait", record.handed_to_timewait);
    line.optional_object("timewait_end", record.timewait_end, |o, end| {
        o.name("how", end.how.name())
            .optional_number("after_us", end.after_us);
    })
    .number("resets_sent", record.resets_sent)
    .number("resets_received", record.resets_received)
    .number("retransmits", record.retransmits)
    .object("keepalive", |o| {
        o.number("probes_sent", record.keepalive.probes_sent)
            .number("probes_answered", record.keepalive.probes_answered)
            .bool("timed_out", record.keepalive.timed_out);
    })
    .optional_number("bytes_sent", record.bytes_sent)
    .optional_number("bytes_received", record.bytes_received)
    .optional_object("at_start", record.at_start, |o, then| {
        o.number("bytes_sent", then.bytes_sent)
            .number("bytes_received", then.bytes_received)
            .number("retransmits", then.retransmits)
            .number("rtt_us", then.rtt_us);
    })
    .optional_number("requests", record.requests)
    .optional_number("responses", record.responses)
    .optional_object("response_time_us", record.response_time_us, |o, times| {
        o.number("count", times.count)
            .number("min", times.min_us)
            .number("max", times.max_us)
            .number("total", times.total_us);
    });
    line.optional_number("unanswered_request_us", record.unanswered_request_us)
        .optional_number("idle_before_close_us", record.idle_before_close_us)
        .optional_object("tls", record.tls, |o, tls| {
            o.name("library", tls.library.name())
                .optional_number("handshake_us", tls.handshake_us);
        })
        .bool("observed_from_start", record.observed_from_start);
    line.end();
}

/// Writes JSON lines to `out`; the caller flushes after each batch.
pub struct JsonSink<W: Write> {
    out: W,
    /// Lines not yet handed to `out`.
    lines: Vec<u8>,
    timestamps: Timestamps,
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            lines: Vec::with_capacity(BATCH),
            timestamps: Timestamps::default(),
        }
    }

    /// The writer, with every line handed to it.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.write_lines()?;
        Ok(self.out)
    }

    fn write_lines(&mut self) -> io::Result<()> {
        self.out.write_all(&self.lines)?;
        self.lines.clear();
        Ok(())
    }

    /// Ends the line just written, handing the batch over when it is full.
    fn end_line(&mut self) -> io::Result<()> {
        self.lines.push(b'\n');
        if self.lines.len() >= BATCH {
            self.write_lines()?;
        }
        Ok(())
    }

    fn line(&mut self, line: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.lines, line)?;
        self.end_line()
    }

    /// An event line: the fields every event has, `details`, then the process.
    fn event_line(
        &mut self,
        clock: WallClock,
        event: &str,
        meta: &EventMeta,
        details: impl FnOnce(&mut Object<'_>),
    ) -> io::Result<()> {
        let mut line = Object::new(&mut self.lines);
        line.time(
            "ts",
            &mut self.timestamps,
            clock.to_system_time(meta.boot_ns),
        )
        .name("event", event)
        .hex("sock", meta.sock)
        .name("family", if meta.local.is_ipv4() { "ipv4" } else { "ipv6" })
        .addr("local", meta.local)
        .addr("remote", meta.remote);
        details(&mut line);
        match &meta.process {
            Some(process) => line.number("pid", process.pid).text("comm", &process.comm),
            None => line.null("pid").null("comm"),
        };
        cgroup(&mut line, meta.cgroup.as_ref());
        line.end();
        self.end_line()
    }

    fn keepalive(
        &mut self,
        clock: WallClock,
        event: &str,
        count: &str,
        keepalive: &Keepalive,
    ) -> io::Result<()> {
        self.event_line(clock, event, &keepalive.meta, |line| {
            line.number(count, keepalive.probe);
            write_settings(line, &keepalive.settings);
        })
    }

    fn summary(
        &mut self,
        clock: WallClock,
        event: &str,
        summary: &ConnectionSummary,
    ) -> io::Result<()> {
        let last_data = summary.last_data_ns.map(|ns| clock.to_system_time(ns));
        let mut timestamps = std::mem::take(&mut self.timestamps);
        let result = self.event_line(clock, event, &summary.meta, |line| {
            line.number("bytes_acked", summary.bytes_acked)
                .number("bytes_received", summary.bytes_received)
                .bool("fin_received", summary.fin_received)
                .bool("fin_acked", summary.fin_acked)
                .number("retransmits", summary.retransmits)
                .number("srtt_us", summary.srtt_us)
                .number("netns", summary.netns);
            line.optional_name("error", summary.error.map(|e| e.to_string()).as_deref());
            match last_data {
                Some(time) => line.time("last_data_ts", &mut timestamps, time),
                None => line.null("last_data_ts"),
            };
        });
        self.timestamps = timestamps;
        result
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
            TraceEvent::StateChange(change) => {
                self.event_line(clock, event.name(), &change.meta, |line| {
                    write_state(line, "old_state", change.old_state);
                    write_state(line, "new_state", change.new_state);
                    if let Some(handshake) = change.handshake {
                        line.object("handshake", |o| {
                            o.optional_number("rtt_us", handshake.rtt_us)
                                .number("retransmits", handshake.retransmits);
                        });
                    }
                })
            }
            TraceEvent::Reset(reset) => self.event_line(clock, event.name(), &reset.meta, |line| {
                line.name("direction", reset.direction.name())
                    .optional_text("reason", reset.reason.as_deref());
                write_optional_state(line, "state", reset.state);
            }),
            TraceEvent::Retransmit(retransmit) => {
                self.event_line(clock, event.name(), &retransmit.meta, |line| {
                    line.name("what", retransmit.kind.name());
                    write_optional_state(line, "state", retransmit.state);
                    match &retransmit.tcp_flags {
                        Some(flags) => line.names("tcp_flags", flags.iter().map(|f| f.name())),
                        None => line.null("tcp_flags"),
                    };
                })
            }
            TraceEvent::KeepaliveProbe(probe) => {
                self.keepalive(clock, event.name(), "probe", probe)
            }
            TraceEvent::KeepaliveTimeout(timeout) => {
                self.keepalive(clock, event.name(), "probes_sent", timeout)
            }
            TraceEvent::DataTurn(turn) | TraceEvent::TlsTurn(turn) => {
                self.event_line(clock, event.name(), &turn.meta, |line| {
                    line.name("direction", turn.direction.name());
                })
            }
            TraceEvent::TlsHandshake(handshake) => {
                self.event_line(clock, event.name(), &handshake.meta, |line| {
                    line.name("library", handshake.library.name())
                        .optional_number("handshake_us", handshake.handshake_us);
                })
            }
            TraceEvent::Summary(summary) => self.summary(clock, event.name(), summary),
            TraceEvent::Accepted(accepted) => {
                self.event_line(clock, event.name(), &accepted.meta, |_| {})
            }
            TraceEvent::TimewaitEnd(end) => {
                self.event_line(clock, event.name(), &end.meta, |line| {
                    line.name("how", end.how.name());
                })
            }
            TraceEvent::Existing(existing) => {
                self.event_line(clock, event.name(), &existing.meta, |line| {
                    write_state(line, "state", existing.state);
                    line.optional_number("netns", existing.netns);
                    line.optional_object("counters", existing.counters, |o, counters| {
                        o.number("bytes_acked", counters.bytes_acked)
                            .number("bytes_received", counters.bytes_received)
                            .number("retransmits", counters.retransmits)
                            .number("rtt_us", counters.rtt_us);
                    });
                })
            }
        }
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        write_record(&mut self.lines, &mut self.timestamps, clock, record, end);
        self.end_line()
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
        self.write_lines()?;
        self.out.flush()
    }
}

/// The `cgroup` object: the socket's cgroup id and path, or `null`.
fn cgroup(line: &mut Object<'_>, cgroup: Option<&Cgroup>) {
    line.optional_object("cgroup", cgroup, |o, cgroup| {
        o.number("id", cgroup.id)
            .optional_text("path", cgroup.path.as_deref());
    });
}

/// A record's `cgroup`, and the `container` and `pod` its path names (`null` when none),
/// with their names when the runtime gave them.
fn workload(line: &mut Object<'_>, cgroup_of: Option<&Cgroup>) {
    cgroup(line, cgroup_of);
    let path = cgroup_of.and_then(|c| c.path.as_deref());
    let names = cgroup_of.and_then(|c| c.names.as_deref());
    let pod_names = names.and_then(|n| n.pod.as_ref());
    line.optional_object("container", path.and_then(container_of), |o, container| {
        o.text("id", &container.id)
            .optional_text(
                "runtime",
                container.runtime.or(names.and_then(|n| n.runtime)),
            )
            .optional_text("name", names.and_then(|n| n.container.as_deref()));
    })
    .optional_object("pod", path.and_then(pod_of), |o, pod| {
        o.text("uid", &pod.uid)
            .optional_text("namespace", pod_names.map(|p| p.namespace.as_str()))
            .optional_text("name", pod_names.map(|p| p.name.as_str()));
    });
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        event::{Accepted, DataTurn, Direction, Reset, Retransmit, RetransmitKind, TcpFlag},
        fixture::events::{MS, Side, US, curl, process},
        output::Sink,
        pipeline::correlator::{Correlator, CorrelatorConfig, Output},
    };
    use TcpState::{Established, SynSent};

    const CLOCK: u128 = 1_795_662_245_000_000_000;

    fn render(event: &TraceEvent) -> Value {
        let mut sink = JsonSink::new(Vec::new());
        sink.event(WallClock::from_offset_ns(1_795_662_245_000_000_000), event)
            .unwrap();
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        serde_json::from_str(&text).unwrap()
    }

    const SOCK: u64 = 0xffff_8880_0abc_d000;
    const CONTAINER: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    /// The socket of these lines, its events at time 0 123_456_789 ns after boot.
    fn side(local: &str, remote: &str) -> Side {
        Side::new(SOCK, local.parse().unwrap(), remote.parse().unwrap()).timed(123_456_789, 1)
    }

    #[test]
    fn renders_the_documented_state_change_line() {
        let owner = process(1234, "curl");
        let socket = Side {
            cgroup: Some(Cgroup::new(
                4242,
                Some("/user.slice/user-1000.slice/session-2.scope".into()),
            )),
            ..side("127.0.0.1:43014", "127.0.0.1:8191")
        };
        let event = socket.state_by(0, SynSent, Established, owner);
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
                "cgroup": {"id": 4242, "path": "/user.slice/user-1000.slice/session-2.scope"},
            })
        );
    }

    #[test]
    fn ipv6_endpoints_are_bracketed_and_softirq_has_null_process() {
        let line = render(&side("[::1]:8191", "[::1]:50000").state(0, SynSent, Established));
        assert_eq!(line["family"], "ipv6");
        assert_eq!(line["local"], "[::1]:8191");
        assert_eq!(line["remote"], "[::1]:50000");
        assert_eq!(line["pid"], Value::Null);
        assert_eq!(line["comm"], Value::Null);
    }

    #[test]
    fn hostile_comm_renders_as_valid_json() {
        let comm = "a\"b\\c\n\u{1}\u{fffd}".to_string();
        let hostile = process(1, &comm);
        let line =
            render(&side("127.0.0.1:1", "127.0.0.1:2").state_by(0, SynSent, Established, hostile));
        assert_eq!(line["comm"], comm.as_str());
    }

    #[test]
    fn renders_resets_retransmits_and_keepalive() {
        let reset = render(&TraceEvent::Reset(Reset {
            meta: side("127.0.0.1:8191", "127.0.0.1:50000").meta(0, None),
            direction: Direction::Sent,
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
            meta: side("127.0.0.1:8191", "127.0.0.1:50000").meta(0, None),
            kind: RetransmitKind::SynAck,
            state: Some(TcpState::SynRecv),
            tcp_flags: Some(vec![TcpFlag::Syn, TcpFlag::Ack]),
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
            meta: side("[::1]:1", "[::1]:2").meta(0, None),
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
            meta: side("[::1]:1", "[::1]:2").meta(0, None),
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
            meta: side("127.0.0.1:8191", "127.0.0.1:5").meta(0, process(7, "srv")),
        }));
        assert_eq!(
            (&accepted["event"], &accepted["pid"]),
            (&json!("accepted"), &json!(7))
        );
        let summary = render(&TraceEvent::Summary(ConnectionSummary {
            meta: side("127.0.0.1:8191", "127.0.0.1:5").meta(0, None),
            bytes_acked: 10,
            fin_received: false,
            fin_acked: false,
            bytes_received: 20,
            retransmits: 1,
            srtt_us: 50,
            netns: 4026531840,
            error: None,
            last_data_ns: Some(123_456_789),
        }));
        assert_eq!(summary["event"], "close_summary");
        assert_eq!(summary["bytes_received"], 20);
        assert_eq!(summary["last_data_ts"], "2026-11-26T03:04:05.123456789Z");
        let turn = render(&TraceEvent::DataTurn(DataTurn {
            meta: side("127.0.0.1:8191", "127.0.0.1:5").meta(0, None),
            direction: Direction::Received,
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
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
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

    #[test]
    fn renders_the_documented_connection_line() {
        let client = Side {
            cgroup: Some(Cgroup::new(
                4243,
                Some(format!("/libpod_parent/libpod-{CONTAINER}").into()),
            )),
            ..Side::client(SOCK, 49320)
        };
        let at = |ns, old, new| client.state_by(ns, old, new, curl());
        let mut correlator = Correlator::new(CorrelatorConfig::default());
        let mut records = Vec::new();
        for event in [
            at(MS, TcpState::Close, TcpState::SynSent),
            at(MS + 150 * US, TcpState::SynSent, TcpState::Established),
            at(2 * MS, TcpState::Established, TcpState::Close),
        ] {
            correlator.observe(&event, &mut |output| records.push(output));
        }
        correlator.reap(u64::MAX, &mut |output| records.push(output));
        let [Output::Connection(record)] = &records[..] else {
            panic!("{records:?}");
        };
        let mut sink = JsonSink::new(Vec::new());
        let clock = WallClock::from_offset_ns(CLOCK as i128);
        sink.connection(clock, record, RecordEnd::Closed).unwrap();
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            line,
            json!({
                "ts": "2026-11-26T03:04:05.002000000Z",
                "event": "connection",
                "record": "closed",
                "start": "2026-11-26T03:04:05.001000000Z",
                "end": "2026-11-26T03:04:05.002000000Z",
                "conn_id": 1,
                "sock": "0xffff88800abcd000",
                "role": "client",
                "family": "ipv4",
                "local": "127.0.0.1:49320",
                "remote": "127.0.0.1:8191",
                "netns": null,
                "pid": 9904,
                "comm": "curl",
                "cgroup": {"id": 4243, "path": format!("/libpod_parent/libpod-{CONTAINER}")},
                "container": {"id": CONTAINER, "runtime": "podman", "name": null},
                "pod": null,
                "start_ns": 1_000_000,
                "end_ns": 2_000_000,
                "handshake_us": 150,
                "duration_us": 1000,
                "states": [
                    {"state": "SYN_SENT", "offset_us": 0},
                    {"state": "ESTABLISHED", "offset_us": 150},
                    {"state": "CLOSE", "offset_us": 1000}
                ],
                "close_initiator": "aborted",
                "outcome": "aborted_locally",
                "error": null,
                "fin_received": null,
                "handed_to_timewait": null,
                "timewait_end": null,
                "resets_sent": 0,
                "resets_received": 0,
                "retransmits": 0,
                "keepalive": {"probes_sent": 0, "probes_answered": 0, "timed_out": false},
                "bytes_sent": null,
                "bytes_received": null,
                "at_start": null,
                "requests": 0,
                "responses": 0,
                "response_time_us": null,
                "unanswered_request_us": null,
                "idle_before_close_us": null,
                "tls": null,
                "observed_from_start": true
            }),
            "{text}"
        );
        // Field order: as documented, `ts` and `event` first.
        assert!(
            text.starts_with("{\"ts\":\"2026-11-26T03:04:05.002000000Z\",\"event\":\"connection\"")
        );
    }

    #[test]
    fn timestamps_follow_the_second_they_are_in() {
        let mut timestamps = line::Timestamps::default();
        let mut out = Vec::new();
        for ns in [5, 999_999_999, 1_000_000_000, 61_000_000_007] {
            out.clear();
            timestamps.write(
                &mut out,
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
            );
            let expected = humantime::format_rfc3339_nanos(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
            )
            .to_string();
            assert_eq!(String::from_utf8_lossy(&out), expected);
        }
    }
}
