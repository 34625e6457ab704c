//! The correlator's rules, one scenario a test, by part, and any interleaving of whole
//! lifecycles; the fixtures that make their events are here.

mod close;
mod exchanges;
mod keepalive;
mod lifecycle;
mod owner;
mod stories;
mod table;

use super::*;
use crate::event::{
    Accepted, ConnectionSummary, DataTurn, Direction, Existing, HandshakeSample, Keepalive,
    KeepaliveSettings, Process, Reset, Retransmit, RetransmitKind,
};
use TcpState::*;

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

fn process(pid: u32, comm: &str) -> Option<Process> {
    Some(Process {
        pid,
        comm: comm.into(),
    })
}

/// One socket's side of a connection, producing its events.
#[derive(Clone)]
struct Side {
    sock: u64,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Side {
    fn client(sock: u64, port: u16) -> Self {
        Self {
            sock,
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: "127.0.0.1:8191".parse().unwrap(),
        }
    }

    fn server(sock: u64, port: u16) -> Self {
        Self {
            sock,
            local: "127.0.0.1:8191".parse().unwrap(),
            remote: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }

    fn meta(&self, ns: u64, process: Option<Process>) -> EventMeta {
        EventMeta {
            boot_ns: ns,
            sock: self.sock,
            process,
            local: self.local,
            remote: self.remote,
        }
    }

    fn state_by(&self, ns: u64, old: TcpState, new: TcpState, p: Option<Process>) -> TraceEvent {
        TraceEvent::StateChange(StateChange {
            meta: self.meta(ns, p),
            old_state: old,
            new_state: new,
            handshake: None,
        })
    }

    fn state(&self, ns: u64, old: TcpState, new: TcpState) -> TraceEvent {
        self.state_by(ns, old, new, None)
    }

    /// A server's SYN_RECV -> ESTABLISHED with the kernel's SYN-ACK round trip and
    /// SYN-ACKs sent again (a client's SYN_SENT -> ESTABLISHED with its SYN's).
    fn established(&self, ns: u64, rtt_us: Option<u32>, retransmits: u32) -> TraceEvent {
        let client = self.local.port() != 8191;
        TraceEvent::StateChange(StateChange {
            meta: self.meta(ns, None),
            old_state: if client { SynSent } else { SynRecv },
            new_state: Established,
            handshake: Some(HandshakeSample {
                rtt_us,
                retransmits,
            }),
        })
    }

    /// The kernel sent this connection's SYN-ACK again (keyed by its request socket).
    fn synack_retransmit(&self, ns: u64) -> TraceEvent {
        TraceEvent::Retransmit(Retransmit {
            meta: EventMeta {
                sock: 0xdead,
                ..self.meta(ns, None)
            },
            kind: RetransmitKind::SynAck,
            state: Some(NewSynRecv),
            tcp_flags: None,
        })
    }

    fn reset(&self, ns: u64, direction: Direction) -> TraceEvent {
        TraceEvent::Reset(Reset {
            meta: self.meta(ns, None),
            direction,
            reason: None,
            state: None,
        })
    }

    fn keepalive(&self, ns: u64, probe: u8) -> Keepalive {
        Keepalive {
            meta: self.meta(ns, None),
            probe,
            settings: KeepaliveSettings {
                idle_ms: Some(1000),
                interval_ms: Some(1000),
                probes: 2,
            },
        }
    }

    fn probe(&self, ns: u64, probe: u8) -> TraceEvent {
        TraceEvent::KeepaliveProbe(self.keepalive(ns, probe))
    }

    fn keepalive_timeout(&self, ns: u64, probe: u8) -> TraceEvent {
        TraceEvent::KeepaliveTimeout(self.keepalive(ns, probe))
    }

    fn turn(&self, ns: u64, direction: Direction) -> TraceEvent {
        TraceEvent::DataTurn(DataTurn {
            meta: self.meta(ns, None),
            direction,
        })
    }

    fn summary(&self, ns: u64, last_data_ns: Option<u64>) -> TraceEvent {
        TraceEvent::Summary(ConnectionSummary {
            meta: self.meta(ns, None),
            // 78 payload bytes, and a client's SYN and its FIN, both acknowledged.
            bytes_acked: 80,
            fin_received: true,
            fin_acked: true,
            // 1024 payload bytes and the peer's FIN.
            bytes_received: 1025,
            retransmits: 2,
            srtt_us: 50,
            netns: 4026531840,
            last_data_ns,
        })
    }

    fn accepted(&self, ns: u64, p: Option<Process>) -> TraceEvent {
        TraceEvent::Accepted(Accepted {
            meta: self.meta(ns, p),
        })
    }

    fn retransmit(&self, ns: u64) -> TraceEvent {
        TraceEvent::Retransmit(Retransmit {
            meta: self.meta(ns, None),
            kind: RetransmitKind::Segment,
            state: Some(Established),
            tcp_flags: None,
        })
    }

    fn existing(&self, ns: u64, state: TcpState) -> TraceEvent {
        TraceEvent::Existing(Existing {
            meta: self.meta(ns, None),
            state,
        })
    }

    /// CLOSE -> SYN_SENT by curl at `ns`, ESTABLISHED 150 µs later.
    fn connect(&self, ns: u64) -> Vec<TraceEvent> {
        vec![
            self.state_by(ns, Close, SynSent, process(9904, "curl")),
            self.state(ns + 150 * US, SynSent, Established),
        ]
    }
}

fn config(max_connections: usize) -> CorrelatorConfig {
    CorrelatorConfig {
        max_connections,
        stale_after_ns: 60_000 * MS,
        keep_events: false,
        data_turns: true,
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
