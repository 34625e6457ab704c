//! A connection's story as a flow graph in the style of Wireshark's: this host on one
//! side, the peer on the other, one arrow per segment the events imply, with times
//! relative to the connection's start. Derived here once; `--format pretty` and `tracer
//! top` draw it as text ([`super::pretty`]), `tracer report` as SVG.
//!
//! The kernel reports states, not segments, so the arrows are derived, and each is one
//! of two kinds. An arrow with a time crossed the wire then (within the moments between
//! a hook and the wire): the kernel changes the state, or reports the reset, the
//! retransmission, the probe or the data, as it sends or takes that segment. An arrow
//! without a time is a segment the events prove was sent but not when, and its note says
//! so. A client's `CLOSE -> SYN_SENT` is a SYN out, its `SYN_SENT -> ESTABLISHED` a
//! SYN-ACK in and an ACK out. A server's socket is made when the handshake's last ACK
//! arrives (`LISTEN -> SYN_RECV`, then `ESTABLISHED`): its SYN and SYN-ACK came before, so
//! they have no time. FINs and their ACKs follow the close states; a FIN is drawn in only
//! when one came (the close summary's `fin_received`), and the ACK of a FIN taken in
//! `ESTABLISHED` has no time: the kernel delays it, and it leaves alone or with this
//! side's next segment. A transition to CLOSE next to an RST draws no FIN: the RST
//! explains it. Data turns are drawn as the request or the response, keepalive probes
//! with their answer (an ACK without a time: it is inferred, see [`probe_fate`]) or "no
//! answer". `tests/support/flow_graph.rs` holds every arrow against a capture.

use crate::{
    event::{Direction, PeerEnd, RetransmitKind, TcpFlag, TcpState, TraceEvent},
    pipeline::correlator::{CloseInitiator, ConnectionRecord, ProbeFate, Role, probe_fate},
};

/// Which way an arrow points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrow {
    /// From this host to the peer.
    Out,
    In,
}

/// What a line is about, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Data,
    Keepalive,
    Fin,
    Reset,
    Note,
}

/// One line of the graph: an arrow, or only a note between empty bars.
pub struct Line {
    /// Offset from the start in ns; `None` for an inferred segment.
    pub at: Option<u64>,
    pub arrow: Option<(Arrow, String)>,
    pub note: String,
    pub kind: Kind,
}

impl Line {
    fn arrow(at: u64, direction: Arrow, label: &str, kind: Kind) -> Self {
        Self {
            at: Some(at),
            arrow: Some((direction, label.to_owned())),
            note: String::new(),
            kind,
        }
    }

    /// A segment the events imply without its time.
    fn inferred(direction: Arrow, label: &str, kind: Kind) -> Self {
        Self {
            at: None,
            ..Self::arrow(0, direction, label, kind)
        }
    }

    fn note(at: u64, note: String) -> Self {
        Self {
            at: Some(at),
            arrow: None,
            note,
            kind: Kind::Note,
        }
    }

    fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// The lines of the first `count` kept events (each makes one or more).
pub fn lines(record: &ConnectionRecord, count: usize) -> Vec<Line> {
    use Arrow::{In, Out};
    use Kind::*;
    use TcpState::*;
    let events = &record.events;
    let mut lines = Vec::new();
    // The request waiting for its response: (its time, its line).
    let mut waiting: Option<(u64, usize)> = None;
    // Whether the peer's FIN had arrived, from the close summary (sent just before CLOSE):
    // a FIN is drawn only when one came.
    let mut fin_received: Option<bool> = None;
    let tls = events
        .iter()
        .any(|event| matches!(event, TraceEvent::TlsTurn(_) | TraceEvent::TlsHandshake(_)));
    for (index, event) in events.iter().take(count).enumerate() {
        let at = event.meta().boot_ns.saturating_sub(record.start_ns);
        match event {
            TraceEvent::StateChange(change) => {
                // The reset beside it, the close summary (sent with the CLOSE) aside.
                let is_reset = |event: &&TraceEvent| matches!(event, TraceEvent::Reset(_));
                let not_summary = |event: &&TraceEvent| !matches!(event, TraceEvent::Summary(_));
                let by_reset = events[..index]
                    .iter()
                    .rev()
                    .find(not_summary)
                    .is_some_and(|e| is_reset(&e))
                    || events[index + 1..]
                        .iter()
                        .find(not_summary)
                        .is_some_and(|e| is_reset(&e));
                if (change.old_state, change.new_state) == (Listen, SynRecv) {
                    lines.push(
                        Line::inferred(In, "SYN", Handshake)
                            .with_note("time not seen: the socket is made at the last ACK"),
                    );
                    let synack = match record.handshake_us {
                        Some(us) => format!("{} before that ACK (the kernel's measure)", ms(us)),
                        None => "time not seen".to_owned(),
                    };
                    lines.push(Line::inferred(Out, "SYN-ACK", Handshake).with_note(synack));
                }
                let segments: &[(Arrow, &str, Kind)] = match (change.old_state, change.new_state) {
                    // The kernel setting the state it is in (close() after shutdown()).
                    (old, new) if old == new => &[],
                    (Close, SynSent) => &[(Out, "SYN", Handshake)],
                    (SynSent, Established) => {
                        &[(In, "SYN-ACK", Handshake), (Out, "ACK", Handshake)]
                    }
                    // A simultaneous open: the SYN came now.
                    (SynSent, SynRecv) => &[(In, "SYN", Handshake), (Out, "SYN-ACK", Handshake)],
                    (SynRecv, Established) => &[(In, "ACK", Handshake)],
                    (_, FinWait1) | (CloseWait, LastAck) => &[(Out, "FIN", Fin)],
                    (FinWait1, FinWait2) | (Closing | LastAck, Close | TimeWait) if !by_reset => {
                        &[(In, "ACK", Fin)]
                    }
                    // Its ACK follows, without a time: see below.
                    (Established | SynRecv, CloseWait) => &[(In, "FIN", Fin)],
                    (FinWait1, Closing) => &[(In, "FIN", Fin), (Out, "ACK", Fin)],
                    (FinWait2, Close | TimeWait) if !by_reset && fin_received != Some(false) => {
                        &[(In, "FIN", Fin), (Out, "ACK", Fin)]
                    }
                    (FinWait1, Close | TimeWait) if !by_reset && fin_received != Some(false) => {
                        &[(In, "FIN-ACK", Fin), (Out, "ACK", Fin)]
                    }
                    _ => &[],
                };
                let state = match (change.old_state, change.new_state) {
                    (FinWait2, Close) if !by_reset && fin_received == Some(false) => {
                        "CLOSE: handed to a timewait socket in FIN_WAIT2, waiting for the peer's FIN"
                            .to_owned()
                    }
                    _ => change.new_state.to_string(),
                };
                match segments.split_last() {
                    None => lines.push(Line::note(at, state)),
                    Some((last, first)) => {
                        for &(direction, label, kind) in first {
                            lines.push(Line::arrow(at, direction, label, kind));
                        }
                        let (direction, label, kind) = *last;
                        lines.push(Line::arrow(at, direction, label, kind).with_note(state));
                    }
                }
                if change.new_state == CloseWait {
                    lines.push(
                        Line::inferred(Out, "ACK", Fin)
                            .with_note("time not seen: delayed, alone or with the next segment"),
                    );
                }
            }
            TraceEvent::Reset(reset) => {
                let direction = match reset.direction {
                    Direction::Sent => Out,
                    Direction::Received => In,
                };
                let line = Line::arrow(at, direction, "RST", Reset);
                lines.push(match &reset.reason {
                    Some(reason) => line.with_note(reason.clone()),
                    None => line,
                });
            }
            TraceEvent::Retransmit(retransmit) => {
                let label = match (retransmit.kind, &retransmit.tcp_flags) {
                    (RetransmitKind::SynAck, _) => "SYN-ACK".to_owned(),
                    (RetransmitKind::Segment, Some(flags)) if !flags.is_empty() => flag_list(flags),
                    (RetransmitKind::Segment, _) => "segment".to_owned(),
                };
                lines.push(Line::arrow(at, Out, &label, Note).with_note("retransmission"));
            }
            TraceEvent::KeepaliveProbe(probe) => {
                let label = format!("keepalive #{}", probe.probe);
                let fate = events[index + 1..].iter().find_map(probe_fate);
                let line = Line::arrow(at, Out, &label, Keepalive);
                if fate == Some(ProbeFate::Answered) {
                    lines.push(line);
                    lines.push(Line::inferred(In, "ACK", Keepalive).with_note("answered"));
                } else {
                    lines.push(line.with_note("no answer"));
                }
            }
            TraceEvent::KeepaliveTimeout(timeout) => lines.push(Line::note(
                at,
                format!("keepalive timeout after {} probes", timeout.probe),
            )),
            // On a TLS connection the socket's bursts are the library's records, the
            // handshake's among them: the application's turns are the TLS turns.
            TraceEvent::DataTurn(turn) if tls => {
                let direction = match turn.direction {
                    Direction::Sent => Out,
                    Direction::Received => In,
                };
                lines.push(Line::arrow(at, direction, "TLS records", Data));
            }
            TraceEvent::TlsHandshake(handshake) => {
                let took = handshake
                    .handshake_us
                    .map(|us| format!(" in {}", ms(us)))
                    .unwrap_or_default();
                lines.push(Line::note(
                    at,
                    format!("{} TLS handshake done{took}", handshake.library),
                ));
            }
            TraceEvent::DataTurn(turn) | TraceEvent::TlsTurn(turn) => {
                let (direction, request) = match (record.role, turn.direction) {
                    (Role::Client, Direction::Sent) => (Out, true),
                    (Role::Client, Direction::Received) => (In, false),
                    (Role::Server, Direction::Received) => (In, true),
                    (Role::Server, Direction::Sent) => (Out, false),
                };
                let label = match (request, waiting.take()) {
                    (true, still) => {
                        waiting = still.or(Some((at, lines.len())));
                        "request".to_owned()
                    }
                    // The response time on its arrow.
                    (false, Some((since, _))) => format!("response {}", ms((at - since) / 1_000)),
                    (false, None) => "response".to_owned(),
                };
                lines.push(Line::arrow(at, direction, &label, Data));
            }
            TraceEvent::Accepted(accepted) => {
                let by = match &accepted.meta.process {
                    Some(process) => format!(" by {} (pid {})", process.comm, process.pid),
                    None => String::new(),
                };
                lines.push(Line::note(at, format!("accepted{by}")));
            }
            TraceEvent::Existing(existing) => lines.push(Line::note(
                at,
                format!("{} when tracing started", existing.state),
            )),
            // The timewait socket answers at once: an ACK, or a reset refusing data.
            TraceEvent::TimewaitEnd(end) => {
                let to_timewait = "to the timewait socket";
                match end.how {
                    PeerEnd::Fin => {
                        lines.push(Line::arrow(at, In, "FIN", Fin).with_note(to_timewait));
                        lines.push(Line::arrow(at, Out, "ACK", Fin).with_note("TIME_WAIT"));
                    }
                    PeerEnd::Reset => {
                        lines.push(Line::arrow(at, In, "RST", Reset).with_note(to_timewait))
                    }
                    PeerEnd::Data | PeerEnd::NoTimewait | PeerEnd::Timeout => {
                        lines.push(Line::arrow(at, In, "data", Reset).with_note(to_timewait));
                        lines.push(
                            Line::arrow(at, Out, "RST", Reset)
                                .with_note("refused: the timewait socket is gone"),
                        );
                    }
                }
            }
            // Its figures are in the summary line.
            TraceEvent::Summary(summary) => fin_received = Some(summary.fin_received),
        }
    }
    if let (Some((_, line)), Some(waited)) = (waiting, record.unanswered_request_us) {
        let note = format!("never answered (waited {})", ms(waited));
        lines[line].note = note;
        lines[line].kind = Kind::Reset;
    }
    lines
}

/// `+12.345 ms` after the start, `ns` after it.
pub fn offset(ns: u64) -> String {
    format!("+{}.{:03} ms", ns / 1_000_000, ns / 1_000 % 1_000)
}

/// `12.345 ms`.
pub fn ms(us: u64) -> String {
    format!("{}.{:03} ms", us / 1_000, us % 1_000)
}

/// The record's figures in one line.
pub fn summary(record: &ConnectionRecord) -> String {
    let closed = match record.close_initiator {
        CloseInitiator::Local => "closed by this host (FIN)",
        CloseInitiator::Remote => "closed by the peer (FIN)",
        CloseInitiator::Simultaneous => "closed by both at once (the FINs crossed)",
        CloseInitiator::ResetSent => "reset by this host",
        CloseInitiator::ResetReceived => "reset by the peer",
        CloseInitiator::KeepaliveTimeout => "killed by keepalive timeout",
        CloseInitiator::Aborted => "aborted",
        CloseInitiator::Unknown => "close not seen",
    };
    let outcome = match record.error {
        Some(error) => format!("[{} {error}]", record.outcome),
        None => format!("[{}]", record.outcome),
    };
    let mut parts = vec![
        format!("{outcome} {closed}"),
        format!("lasted {}", ms(record.duration_us)),
    ];
    if record.handed_to_timewait == Some(TcpState::FinWait2) {
        parts.push("handed to a timewait socket before the peer's FIN".to_owned());
    }
    if let Some(end) = record.timewait_end {
        let after = end.after_us.map(ms).unwrap_or_default();
        parts.push(match end.how {
            PeerEnd::Fin => format!("the peer's FIN came {after} later"),
            PeerEnd::Reset => format!("the peer reset it {after} later"),
            PeerEnd::Data => format!("the peer's data {after} later was refused"),
            PeerEnd::NoTimewait => {
                format!("no timewait socket took the peer's segment {after} later")
            }
            PeerEnd::Timeout => "no FIN from the peer within tcp_fin_timeout".to_owned(),
        });
    }
    if let Some(handshake) = record.handshake_us {
        parts.push(format!("handshake {}", ms(handshake)));
    }
    if let Some(tls) = record.tls {
        parts.push(match tls.handshake_us {
            Some(us) => format!("TLS ({}), its handshake {}", tls.library, ms(u64::from(us))),
            None => format!("TLS ({})", tls.library),
        });
    }
    if let (Some(requests), Some(responses)) = (record.requests, record.responses) {
        let plural = |n: u32, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        parts.push(format!(
            "{}, {}",
            plural(requests, "request"),
            plural(responses, "response")
        ));
    }
    if let Some(times) = record.response_time_us {
        let mean = times.total_us / u64::from(times.count.max(1));
        parts.push(format!(
            "response time {} (min {}, max {})",
            ms(mean),
            ms(u64::from(times.min_us)),
            ms(u64::from(times.max_us))
        ));
    }
    if let Some(waited) = record.unanswered_request_us {
        parts.push(format!("a request never answered (waited {})", ms(waited)));
    }
    if let Some(idle) = record.idle_before_close_us {
        parts.push(format!("idle {} before close", ms(idle)));
    }
    if let (Some(sent), Some(received)) = (record.bytes_sent, record.bytes_received) {
        parts.push(format!("{sent} bytes sent, {received} received"));
    }
    if record.retransmits > 0 {
        parts.push(format!("{} retransmits", record.retransmits));
    }
    parts.join(", ")
}

/// `SYN,ACK`.
pub fn flag_list(flags: &[TcpFlag]) -> String {
    let names: Vec<&str> = flags.iter().map(|flag| flag.name()).collect();
    names.join(",")
}
