//! `--format pretty`: each connection's flow graph ([`super::flow`]) drawn as text, this
//! host on the left, the peer on the right, in ANSI colours on a terminal; and one line
//! per event for `--emit events|all`. `tracer top` draws the same text.

use std::io::{self, Write};

use super::flow::{Arrow, Kind, flag_list, lines, offset, summary};
use crate::{
    clock::WallClock,
    event::{RetransmitKind, TraceEvent},
    kernel::attach::AttachPlan,
    output::{RecordEnd, Sink, StopSummary},
    pipeline::{
        correlator::{ConnectionRecord, KEPT_EVENTS},
        reader::LossCause,
    },
};

/// Width of the graph between its two bars.
const GRAPH: usize = 36;
/// Width of the time column (`+12345.678 ms`).
const TIME: usize = 13;

/// The ANSI colour of a line of `kind`.
fn ansi(kind: Kind) -> &'static str {
    match kind {
        Kind::Handshake => "\x1b[32m",
        Kind::Data => "\x1b[36m",
        Kind::Keepalive => "\x1b[33m",
        Kind::Fin => "\x1b[35m",
        Kind::Reset => "\x1b[1;31m",
        Kind::Note => "\x1b[2m",
    }
}

const RESET_ANSI: &str = "\x1b[0m";

/// Writes `record`'s timeline, from its kept events (see
/// [`CorrelatorConfig::keep_events`](crate::pipeline::correlator::CorrelatorConfig)); with `colour`,
/// in ANSI colours.
pub fn write_timeline(
    out: &mut impl Write,
    record: &ConnectionRecord,
    colour: bool,
) -> io::Result<()> {
    let paint = |kind: Kind, text: &str| {
        if colour && !text.is_empty() {
            format!("{}{text}{RESET_ANSI}", ansi(kind))
        } else {
            text.to_owned()
        }
    };
    let owner = match (&record.comm, record.pid) {
        (Some(comm), Some(pid)) => format!(", {comm} (pid {pid})"),
        _ => String::new(),
    };
    let title = format!("connection {}: {}{owner}", record.conn_id, record.role);
    writeln!(
        out,
        "{}",
        if colour {
            format!("\x1b[1m{title}{RESET_ANSI}")
        } else {
            title
        }
    )?;
    let local = record.local.to_string();
    let remote = record.remote.to_string();
    let width = (GRAPH + 2)
        .saturating_sub(local.len())
        .max(remote.len() + 1);
    writeln!(out, "{:TIME$}  {local}{remote:>width$}", "")?;

    // Where the omitted events were: after the lines of the kept first half.
    let omitted_at = lines(record, KEPT_EVENTS / 2).len();
    for (index, line) in lines(record, record.events.len()).iter().enumerate() {
        if record.events_omitted > 0 && index == omitted_at {
            let note = format!("... {} events not kept ...", record.events_omitted);
            writeln!(out, "{:TIME$}  {}", "", paint(Kind::Note, &note))?;
        }
        let time = line.at.map(offset).unwrap_or_default();
        let graph = match &line.arrow {
            Some((direction, label)) => paint(line.kind, &arrow(*direction, label)),
            None => " ".repeat(GRAPH),
        };
        let note = if line.note.is_empty() {
            String::new()
        } else {
            format!("  {}", paint(Kind::Note, &line.note))
        };
        writeln!(out, "{time:>TIME$}  |{graph}|{note}")?;
    }
    writeln!(out, "{:TIME$}  {}", "", summary(record))
}

/// `label` centred on a shaft of `GRAPH` characters with its head towards `direction`.
fn arrow(direction: Arrow, label: &str) -> String {
    let label = format!(" {label} ");
    let shaft = GRAPH.saturating_sub(label.chars().count() + 1);
    let (left, right) = (shaft / 2, shaft - shaft / 2);
    match direction {
        Arrow::Out => format!("{}{label}{}>", "-".repeat(left), "-".repeat(right)),
        Arrow::In => format!("<{}{label}{}", "-".repeat(left), "-".repeat(right)),
    }
}

/// One line about an event, for `--format pretty --emit events|all`.
fn describe(event: &TraceEvent) -> String {
    match event {
        TraceEvent::StateChange(change) => format!("{} -> {}", change.old_state, change.new_state),
        TraceEvent::Reset(reset) => {
            let direction = reset.direction;
            match &reset.reason {
                Some(reason) => format!("RST {direction} ({reason})"),
                None => format!("RST {direction}"),
            }
        }
        TraceEvent::Retransmit(retransmit) => match retransmit.kind {
            RetransmitKind::SynAck => "retransmit SYN-ACK".to_owned(),
            RetransmitKind::Segment => match &retransmit.tcp_flags {
                Some(flags) => format!("retransmit [{}]", flag_list(flags)),
                None => "retransmit".to_owned(),
            },
        },
        TraceEvent::KeepaliveProbe(probe) => format!("keepalive probe #{}", probe.probe),
        TraceEvent::KeepaliveTimeout(timeout) => {
            format!(
                "keepalive timeout after {} unanswered probes",
                timeout.probe
            )
        }
        TraceEvent::DataTurn(turn) => format!("data {}", turn.direction),
        TraceEvent::TlsTurn(turn) => format!("TLS data {}", turn.direction),
        TraceEvent::TlsHandshake(handshake) => match handshake.handshake_us {
            Some(us) => format!("{} TLS handshake done in {us} us", handshake.library),
            None => format!("{} TLS handshake done", handshake.library),
        },
        TraceEvent::Summary(summary) => {
            let error = summary
                .error
                .map(|error| format!(", error {error}"))
                .unwrap_or_default();
            format!(
                "closing: {} bytes sent, {} received, {} retransmits, srtt {} us{error}",
                summary.bytes_acked, summary.bytes_received, summary.retransmits, summary.srtt_us
            )
        }
        TraceEvent::Accepted(_) => "accepted".to_owned(),
        TraceEvent::Existing(existing) => format!("already open ({})", existing.state),
        TraceEvent::TimewaitEnd(end) => format!("timewait socket in FIN_WAIT2: {}", end.how),
    }
}

/// `--format pretty`: a timeline per finished connection, one line per event.
pub struct PrettySink<W: Write> {
    out: W,
    colour: bool,
}

impl<W: Write> PrettySink<W> {
    pub fn new(out: W, colour: bool) -> Self {
        Self { out, colour }
    }
}

impl<W: Write> Sink for PrettySink<W> {
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        writeln!(
            self.out,
            "tracing TCP port(s) {} on kernel {kernel}",
            ports.join(", ")
        )?;
        for (hook, why) in &plan.unsupported {
            writeln!(self.out, "  no {hook} events: {why}")?;
        }
        Ok(())
    }

    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        let meta = event.meta();
        let process = meta
            .process
            .as_ref()
            .map_or(String::new(), |p| format!("  [{} {}]", p.pid, p.comm));
        writeln!(
            self.out,
            "{}  {} -> {}  {}{process}",
            clock.rfc3339(meta.boot_ns),
            meta.local,
            meta.remote,
            describe(event)
        )
    }

    fn connection(
        &mut self,
        _clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        writeln!(self.out)?;
        write_timeline(&mut self.out, record, self.colour)?;
        match end {
            RecordEnd::Closed => Ok(()),
            RecordEnd::Evicted => writeln!(
                self.out,
                "  (evicted by --max-connections: the connection may still be open)"
            ),
            RecordEnd::Stale => writeln!(self.out, "  (its close was never seen)"),
            RecordEnd::Ended => writeln!(
                self.out,
                "  (ended unseen: its socket began another connection)"
            ),
        }
    }

    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        let why = match cause {
            LossCause::RingBufferFull => "the ring buffer was full",
            LossCause::ProgramBusy => "the kernel skipped a program already running on its CPU",
        };
        writeln!(self.out, "! {count} events lost: {why}")
    }

    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()> {
        writeln!(self.out, "! {count} records could not be decoded: {reason}")
    }

    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        writeln!(
            self.out,
            "stopped: {} connections still open, {} evicted, {} stale, {} events without a connection",
            summary.open_connections, summary.evicted, summary.stale, summary.unmatched_events
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Direction, KeepaliveSettings, TcpState},
        fixture::events::{MS, Side, Totals, US},
        pipeline::correlator::{Correlator, CorrelatorConfig, Output},
    };
    use TcpState::*;

    const START: u64 = 5_000 * MS;

    /// curl's client socket, times in µs from `START`, probing three times.
    fn client() -> Side {
        let side = Side::client(0xffff8881046d6f00, 49320).timed(START, US);
        Side {
            keepalive: KeepaliveSettings {
                probes: 3,
                ..side.keepalive
            },
            ..side
        }
    }

    /// What its close summary counts.
    const TOTALS: Totals = Totals {
        bytes_acked: 156,
        fin_received: false,
        fin_acked: false,
        bytes_received: 2048,
        retransmits: 0,
        srtt_us: 40,
        netns: 4026531840,
        error: None,
    };

    fn timeline(events: &[TraceEvent]) -> String {
        let (plain, coloured) = timelines(events);
        assert_eq!(strip_ansi(&coloured), plain);
        assert_ne!(coloured, plain);
        plain
    }

    fn strip_ansi(text: &str) -> String {
        let mut plain = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('\x1b') {
            plain.push_str(&rest[..start]);
            let end = rest[start..].find('m').unwrap();
            rest = &rest[start + end + 1..];
        }
        plain + rest
    }

    /// `events`' one record, plain and in colour.
    fn timelines(events: &[TraceEvent]) -> (String, String) {
        let mut correlator = Correlator::new(CorrelatorConfig {
            keep_events: true,
            data_turns: true,
            ..CorrelatorConfig::default()
        });
        let mut records = Vec::new();
        for event in events {
            correlator.observe(event, &mut |output| records.push(output));
        }
        correlator.reap(u64::MAX, &mut |output| records.push(output));
        records.retain(|output| !matches!(output, Output::Response(_)));
        let [Output::Connection(record)] = &records[..] else {
            panic!("{records:#?}");
        };
        let render = |colour| {
            let mut text = Vec::new();
            write_timeline(&mut text, record, colour).unwrap();
            String::from_utf8(text).unwrap()
        };
        (render(false), render(true))
    }

    #[test]
    fn client_keep_alive_story() {
        use Direction::*;
        let c = client();
        let mut events = c.connect(0);
        events.extend([
            c.turn(200, Sent),
            c.turn(1_200, Received),
            c.turn(10_000, Sent),
            c.probe(1_010_000, 1),
            c.turn(1_500_000, Received),
            // The server closes the idle connection; the client follows.
            c.state(6_500_000, Established, CloseWait),
            c.summary(6_500_100, Some(1_500_000), TOTALS),
            c.state(6_500_100, CloseWait, LastAck),
            c.state(6_500_150, LastAck, Close),
        ]);
        let text = timeline(&events);
        let expected = "\
connection 1: client, curl (pid 9904)
               127.0.0.1:49320         127.0.0.1:8191
    +0.000 ms  |--------------- SYN --------------->|  SYN_SENT
    +0.150 ms  |<------------- SYN-ACK -------------|
    +0.150 ms  |--------------- ACK --------------->|  ESTABLISHED
    +0.200 ms  |------------- request ------------->|
    +1.200 ms  |<-------- response 1.000 ms --------|
   +10.000 ms  |------------- request ------------->|
 +1010.000 ms  |---------- keepalive #1 ----------->|
               |<--------------- ACK ---------------|  answered
 +1500.000 ms  |<------ response 1490.000 ms -------|
 +6500.000 ms  |<--------------- FIN ---------------|  CLOSE_WAIT
               |--------------- ACK --------------->|  time not seen: delayed, alone or with the next segment
 +6500.100 ms  |--------------- FIN --------------->|  LAST_ACK
 +6500.150 ms  |<--------------- ACK ---------------|  CLOSE
               [completed] closed by the peer (FIN), lasted 6500.150 ms, handshake 0.150 ms, 2 requests, 2 responses, response time 745.500 ms (min 1.000 ms, max 1490.000 ms), idle 5000.000 ms before close, 155 bytes sent, 2048 received
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn reset_story() {
        use Direction::*;
        // The server dies with the request unread: its kernel answers with an RST.
        let c = client();
        let mut events = c.connect(0);
        events.extend([
            c.turn(200, Sent),
            c.probe(2_000_000, 1),
            c.probe(3_000_000, 2),
            c.reset_for(3_000_050, Received, "NOT_SPECIFIED", Established),
            c.state(3_000_050, Established, Close),
        ]);
        let text = timeline(&events);
        let expected = "\
connection 1: client, curl (pid 9904)
               127.0.0.1:49320         127.0.0.1:8191
    +0.000 ms  |--------------- SYN --------------->|  SYN_SENT
    +0.150 ms  |<------------- SYN-ACK -------------|
    +0.150 ms  |--------------- ACK --------------->|  ESTABLISHED
    +0.200 ms  |------------- request ------------->|  never answered (waited 2999.850 ms)
 +2000.000 ms  |---------- keepalive #1 ----------->|  no answer
 +3000.000 ms  |---------- keepalive #2 ----------->|  no answer
 +3000.050 ms  |<--------------- RST ---------------|  NOT_SPECIFIED
 +3000.050 ms  |                                    |  CLOSE
               [reset] reset by the peer, lasted 3000.050 ms, handshake 0.150 ms, 1 request, 0 responses, a request never answered (waited 2999.850 ms), idle 2999.850 ms before close
";
        assert_eq!(text, expected, "\n{text}");
    }

    /// A reset that closes a socket in LAST_ACK is no ACK, though the close summary
    /// comes between the reset and the CLOSE.
    #[test]
    fn a_reset_in_last_ack_draws_no_ack() {
        use Direction::*;
        let c = client();
        let mut events = c.connect(0);
        events.extend([
            c.state(1_000, Established, CloseWait),
            c.state(2_000, CloseWait, LastAck),
            c.reset_for(3_000, Received, "NOT_SPECIFIED", LastAck),
            c.summary(3_010, None, TOTALS),
            c.state(3_010, LastAck, Close),
        ]);
        let text = timeline(&events);
        let tail: Vec<&str> = text.lines().rev().skip(1).take(2).collect();
        assert_eq!(
            tail,
            [
                "    +3.010 ms  |                                    |  CLOSE",
                "    +3.000 ms  |<--------------- RST ---------------|  NOT_SPECIFIED",
            ],
            "\n{text}"
        );
    }

    /// A server's socket is made when the handshake's last ACK arrives: its SYN and
    /// SYN-ACK came before, at times the events do not tell (the SYN-ACK's distance from
    /// the ACK is the kernel's measure); the ACK of the client's FIN is delayed.
    #[test]
    fn a_servers_handshake_and_passive_close_draw_untimed_segments_as_such() {
        use Direction::*;
        let s = Side::server(0xffff8881046d7000, 49320).timed(START, US);
        let events = [
            s.state(0, Listen, SynRecv),
            s.established(5, Some(28), 0),
            s.turn(40, Received),
            s.turn(900, Sent),
            s.state(3_000, Established, CloseWait),
            s.summary(3_100, Some(900), TOTALS),
            s.state(3_100, CloseWait, LastAck),
            s.state(3_150, LastAck, Close),
        ];
        let text = timeline(&events);
        let expected = "\
connection 1: server
               127.0.0.1:8191         127.0.0.1:49320
               |<--------------- SYN ---------------|  time not seen: the socket is made at the last ACK
               |------------- SYN-ACK ------------->|  0.028 ms before that ACK (the kernel's measure)
    +0.000 ms  |                                    |  SYN_RECV
    +0.005 ms  |<--------------- ACK ---------------|  ESTABLISHED
    +0.040 ms  |<------------- request -------------|
    +0.900 ms  |-------- response 0.860 ms -------->|
    +3.000 ms  |<--------------- FIN ---------------|  CLOSE_WAIT
               |--------------- ACK --------------->|  time not seen: delayed, alone or with the next segment
    +3.100 ms  |--------------- FIN --------------->|  LAST_ACK
    +3.150 ms  |<--------------- ACK ---------------|  CLOSE
               [completed] closed by the peer (FIN), lasted 3.150 ms, handshake 0.028 ms, 1 request, 1 response, response time 0.860 ms (min 0.860 ms, max 0.860 ms), idle 2.100 ms before close, 156 bytes sent, 2048 received
";
        assert_eq!(text, expected, "\n{text}");
    }

    /// The client (the connection's peer here) closes the idle connection after this host
    /// did, and its socket was handed over in FIN_WAIT2: no FIN is drawn, the line says
    /// what happened.
    #[test]
    fn a_close_handed_over_in_fin_wait2_draws_no_fin() {
        let c = client();
        let mut events = c.connect(0);
        events.extend([
            c.state(1_000_000, Established, FinWait1),
            c.state(1_000_040, FinWait1, FinWait2),
            c.summary(1_000_041, None, TOTALS),
            c.state(1_000_041, FinWait2, Close),
        ]);
        let text = timeline(&events);
        let expected = "\
connection 1: client, curl (pid 9904)
               127.0.0.1:49320         127.0.0.1:8191
    +0.000 ms  |--------------- SYN --------------->|  SYN_SENT
    +0.150 ms  |<------------- SYN-ACK -------------|
    +0.150 ms  |--------------- ACK --------------->|  ESTABLISHED
 +1000.000 ms  |--------------- FIN --------------->|  FIN_WAIT1
 +1000.040 ms  |<--------------- ACK ---------------|  FIN_WAIT2
 +1000.041 ms  |                                    |  CLOSE: handed to a timewait socket in FIN_WAIT2, waiting for the peer's FIN
               [completed] closed by this host (FIN), lasted 1000.041 ms, handed to a timewait socket before the peer's FIN, handshake 0.150 ms, 0 requests, 0 responses, 155 bytes sent, 2048 received
";
        assert_eq!(text, expected, "\n{text}");
    }
}
