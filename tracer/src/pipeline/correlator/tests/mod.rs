//! The correlator's rules, one scenario a test, by part, and any interleaving of whole
//! lifecycles, with events from [`crate::fixture::events`].

mod close;
mod exchanges;
mod keepalive;
mod lifecycle;
mod owner;
mod stories;
mod table;
mod timewait;

use super::*;
use crate::event::{Direction, TlsLibrary};
use crate::fixture::events::{MS, SERVER_PORT, Side, Totals, US, curl, process};
use crate::fixture::loopback;
use TcpState::*;

/// What [`Side::summary`]s count here.
const TOTALS: Totals = Totals {
    // 78 payload bytes, and a client's SYN and its FIN, both acknowledged.
    bytes_acked: 80,
    fin_received: true,
    fin_acked: true,
    // 1024 payload bytes and the peer's FIN.
    bytes_received: 1025,
    retransmits: 2,
    srtt_us: 50,
    netns: 4026531840,
    error: None,
};

fn config(max_connections: usize) -> CorrelatorConfig {
    CorrelatorConfig {
        max_connections,
        stale_after_ns: 60_000 * MS,
        keep_events: false,
        data_turns: true,
        follow_timewait: None,
    }
}

/// Everything the correlator emits for `events`, then for `reap(u64::MAX)`.
fn run_all(config: CorrelatorConfig, events: &[TraceEvent]) -> (Vec<Output>, Stats) {
    let mut correlator = Correlator::new(config);
    let mut outputs = Vec::new();
    for event in events {
        correlator.observe(event, &mut |output| outputs.push(output));
    }
    correlator.reap(u64::MAX, &mut |output| outputs.push(output));
    assert_eq!(correlator.open_connections(), 0);
    (outputs, correlator.stats())
}

/// The records the correlator emits for `events` (see [`run_all`]), responses aside.
fn run_with(config: CorrelatorConfig, events: &[TraceEvent]) -> (Vec<Output>, Stats) {
    let (mut outputs, stats) = run_all(config, events);
    outputs.retain(|output| !matches!(output, Output::Response(_)));
    (outputs, stats)
}

/// The one connection record `events` make.
fn one(events: &[TraceEvent]) -> ConnectionRecord {
    let (mut outputs, _) = run_with(config(16), events);
    assert_eq!(outputs.len(), 1, "{outputs:#?}");
    match outputs.remove(0) {
        Output::Connection(record) => record,
        other => panic!("not a connection: {other:?}"),
    }
}

fn states(record: &ConnectionRecord) -> Vec<(TcpState, u64)> {
    record
        .states
        .iter()
        .map(|entry| (entry.state, entry.offset_us))
        .collect()
}
