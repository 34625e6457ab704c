//! The flow graph held against the wire. `tracer replay --format pretty` draws each
//! record from the events the tracer printed, and every arrow it draws must be a segment
//! of the capture: with a time, the segment crossed the wire then (within the wire
//! tolerance), and without one, it crossed later than the arrow before it; the arrows in
//! the wire's order. The other way round, every SYN, SYN-ACK, FIN and RST that crossed
//! before the record ended is drawn (but resets the kernel does not trace: a timewait
//! socket's, before 6.10); a FIN received counts from when this side acknowledged it, as
//! the capture also holds copies a test's nftables rule dropped on the way in, and not at
//! all for a socket handed to a timewait socket in FIN_WAIT2 (which took the FIN).
//!
//! A segment a timer sends (a keepalive probe, a retransmission) may reach the capture
//! point later than the tolerance: on loopback the capture stamps a segment as the
//! receive softirq takes it, which the kernel defers to its ksoftirqd thread when a timer
//! softirq ran long; on a busy machine that thread waits (1 ms seen on the host). Such an
//! arrow may precede its segment by [`TIMER_SENT_LAG_NS`] more, never follow it.

use std::{net::SocketAddr, process::Command};

use serde_json::Value;

use super::{
    capture::{Segment, WireConnection, epoch_ns, wire_tolerance_ns},
    tracer_bin,
};

/// How much later than the tolerance a segment a timer sent may reach the capture.
const TIMER_SENT_LAG_NS: u64 = 5_000_000;

/// One arrow of a flow graph.
#[derive(Debug)]
pub struct Arrow {
    /// Its time on the capture's clock; `None` when drawn without one.
    at_ns: Option<u64>,
    /// From this host to the peer.
    out: bool,
    label: String,
    note: String,
}

impl Arrow {
    /// Whether the segment at `segment_ns` may be this arrow's, by their times.
    fn near(&self, segment_ns: u64, tolerance_ns: u64) -> bool {
        let Some(ns) = self.at_ns else {
            return true;
        };
        let timer_sent = self.label.starts_with("keepalive #") || self.note == "retransmission";
        let lag = if timer_sent { TIMER_SENT_LAG_NS } else { 0 };
        ns.saturating_sub(tolerance_ns) <= segment_ns && segment_ns <= ns + tolerance_ns + lag
    }

    /// Whether `segment`, sent from `local` or to it, is what this arrow draws.
    fn draws(&self, segment: &Segment, local: SocketAddr) -> bool {
        if (segment.from == local) != self.out {
            return false;
        }
        let label = self.label.as_str();
        if self.note == "retransmission" {
            return segment.retransmission;
        }
        match label {
            "SYN" => segment.syn && !segment.ack_flag,
            "SYN-ACK" => segment.syn && segment.ack_flag,
            "ACK" => segment.ack_flag && !segment.syn && !segment.rst,
            "FIN" => segment.fin,
            "FIN-ACK" => segment.fin && segment.ack_flag,
            "RST" => segment.rst,
            "data" => segment.len > 0 && !segment.probe,
            _ if label.starts_with("request") || label.starts_with("response") => {
                segment.len > 0 && !segment.probe && !segment.retransmission
            }
            _ if label.starts_with("keepalive #") => segment.probe,
            _ => panic!("an arrow this test does not know: {self:?}"),
        }
    }
}

/// The flow graphs of the connections in `lines` (a tracer's output), as
/// `tracer replay --format pretty` draws them.
pub fn draw(lines: &[Value]) -> String {
    let trace = std::env::temp_dir().join(format!(
        "tracer-test-flow-{}-{:?}.jsonl",
        std::process::id(),
        std::thread::current().id()
    ));
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&trace, text).unwrap();
    let output = Command::new(tracer_bin())
        .arg("replay")
        .arg(&trace)
        .args(["--format", "pretty", "--emit", "connections"])
        .output()
        .unwrap();
    std::fs::remove_file(&trace).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tracer replay: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// The graph of `record` (a `connection` line) in `drawn`: its arrows, times on the
/// capture's clock, and the graph's text.
pub fn arrows(drawn: &str, record: &Value) -> (Vec<Arrow>, String) {
    let ends = format!(
        "{} {}",
        record["local"].as_str().unwrap(),
        record["remote"].as_str().unwrap()
    );
    let graphs: Vec<&str> = drawn
        .split("\n\n")
        .map(str::trim_start)
        .filter(|graph| {
            graph
                .lines()
                .nth(1)
                .is_some_and(|line| line.split_whitespace().collect::<Vec<_>>().join(" ") == ends)
        })
        .collect();
    let [graph] = graphs[..] else {
        panic!("not one flow graph of {ends} in:\n{drawn}");
    };
    let start_ns = epoch_ns(record, "start");
    let arrows = graph
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (time, rest) = line.split_once('|')?;
            let (shaft, note) = rest.split_once('|')?;
            let label = shaft.trim_matches(['<', '>', '-', ' ']);
            if label.is_empty() {
                return None;
            }
            let at_ns = time.trim().strip_suffix(" ms").map(|ms| {
                let (whole, micros) = ms.trim_start_matches('+').split_once('.').unwrap();
                let us = whole.parse::<u64>().unwrap() * 1_000 + micros.parse::<u64>().unwrap();
                start_ns + us * 1_000
            });
            Some(Arrow {
                at_ns,
                out: shaft.ends_with('>'),
                label: label.to_owned(),
                note: note.trim().to_owned(),
            })
        })
        .collect();
    (arrows, graph.to_owned())
}

/// Asserts that `arrows`, the graph of `record` (see [`arrows`]), draws the segments of
/// `wire` as the module's doc says.
pub fn assert_drawn_from_wire(
    wire: &WireConnection,
    record: &Value,
    (arrows, graph): &(Vec<Arrow>, String),
) {
    let local: SocketAddr = record["local"].as_str().unwrap().parse().unwrap();
    let tolerance_ns = wire_tolerance_ns();
    let context = || {
        let segments: Vec<String> = wire
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i:3} {s:?}"))
            .collect();
        format!("graph:\n{graph}\nwire:\n{}", segments.join("\n"))
    };
    // The segment the last arrow drew: the next draws that one or a later, or, with a
    // time, one at most the tolerance earlier (two hooks a few microseconds apart may see
    // two segments in the other order than the capture point).
    let (mut at, mut last_ns) = (0, 0);
    for arrow in arrows {
        let mut candidates = wire
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| arrow.draws(segment, local));
        let found = match arrow.at_ns {
            Some(ns) => candidates
                .filter(|(_, segment)| {
                    arrow.near(segment.ns, tolerance_ns) && segment.ns + tolerance_ns >= last_ns
                })
                .min_by_key(|&(i, segment)| (i < at, segment.ns.abs_diff(ns))),
            None => candidates.find(|&(i, _)| i >= at),
        };
        let (i, segment) = found.unwrap_or_else(|| {
            panic!(
                "{arrow:?} is no segment of the wire after segment {at} ({} us tolerance)\n{}",
                tolerance_ns / 1_000,
                context()
            )
        });
        (at, last_ns) = (i, segment.ns);
    }
    // What must be drawn: the first SYN, SYN-ACK, FIN and RST each way before the end.
    let end_ns = epoch_ns(record, "end") + tolerance_ns;
    let observed_from_start = record["observed_from_start"] == true;
    for out in [true, false] {
        for kind in ["SYN", "SYN-ACK", "FIN", "RST"] {
            let untraced = kind == "RST" && out && wire.sends_untraced_resets(local);
            if (kind.starts_with("SYN") && !observed_from_start) || untraced {
                continue;
            }
            let wanted = Arrow {
                at_ns: None,
                out,
                label: kind.to_owned(),
                note: String::new(),
            };
            // A FIN this side received is one it acknowledged: a copy dropped on the way in
            // (as a test's nftables rule drops them, after the capture saw it) never arrived.
            // A socket handed to a timewait socket in FIN_WAIT2 received none: the timewait
            // socket takes the peer's FIN, maybe within the tolerance of the handover.
            if kind == "FIN" && !out && record["handed_to_timewait"] == "FIN_WAIT2" {
                continue;
            }
            let arrived_ns = if kind == "FIN" && !out {
                peer_fin_acknowledged_ns(wire, local)
            } else {
                wire.segments
                    .iter()
                    .find(|s| wanted.draws(s, local))
                    .map(|s| s.ns)
            };
            if arrived_ns.is_none_or(|ns| ns > end_ns) {
                continue;
            }
            // A FIN that acknowledges the peer's is drawn FIN-ACK.
            let drawn_as = |label: &str| label == kind || (kind == "FIN" && label == "FIN-ACK");
            assert!(
                arrows.iter().any(|arrow| arrow.out == out
                    && arrow.note != "retransmission"
                    && drawn_as(&arrow.label)),
                "the wire's first {kind} {} is not drawn\n{}",
                if out { "sent" } else { "received" },
                context()
            );
        }
    }
}

/// When `local` first acknowledged the peer's FIN (an ACK past the FIN's sequence number):
/// the wire's proof that the FIN arrived.
fn peer_fin_acknowledged_ns(wire: &WireConnection, local: SocketAddr) -> Option<u64> {
    let fin = wire.segments.iter().find(|s| s.from != local && s.fin)?;
    let fin_seq = fin.seq.wrapping_add(fin.len);
    wire.segments
        .iter()
        .find(|s| s.from == local && s.ack_flag && (s.ack.wrapping_sub(fin_seq) as i32) > 0)
        .map(|s| s.ns)
}
