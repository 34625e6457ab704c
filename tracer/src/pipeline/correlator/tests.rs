//! The correlator's rules, one scenario a test, and any interleaving of whole stories.

use std::mem::size_of;

use proptest::prelude::*;

use super::*;
use crate::event::{
    Accepted, ConnectionSummary, DataDirection, DataTurn, Existing, Keepalive, KeepaliveSettings,
    Process, Reset, Retransmit, RetransmitKind,
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

    fn reset(&self, ns: u64, direction: ResetDirection) -> TraceEvent {
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

    fn turn(&self, ns: u64, direction: DataDirection) -> TraceEvent {
        TraceEvent::DataTurn(DataTurn {
            meta: self.meta(ns, None),
            direction,
        })
    }

    fn summary(&self, ns: u64, last_data_ns: Option<u64>) -> TraceEvent {
        TraceEvent::Summary(ConnectionSummary {
            meta: self.meta(ns, None),
            bytes_acked: 78,
            fin_received: false,
            fin_acked: false,
            bytes_received: 1024,
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
fn run_with(config: CorrelatorConfig, events: &[TraceEvent]) -> (Vec<Output>, Stats) {
    let mut correlator = Correlator::new(config);
    let mut outputs = Vec::new();
    for event in events {
        correlator.observe(event, &mut |output| outputs.push(output));
    }
    correlator.reap(u64::MAX, &mut |output| outputs.push(output));
    assert_eq!(correlator.open_connections(), 0);
    (outputs, correlator.stats())
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

#[test]
fn client_closing_first_is_local_with_handshake_and_times() {
    let c = Side::client(0xa, 49320);
    let t = 1000 * MS;
    let mut events = c.connect(t);
    events.extend([
        c.turn(t + 200 * US, DataDirection::Sent),
        c.turn(t + MS, DataDirection::Received),
        c.summary(t + 5 * MS, Some(t + 2 * MS)),
        c.state_by(t + 5 * MS, Established, FinWait1, process(9904, "curl")),
        c.state(t + 5 * MS + 30 * US, FinWait1, FinWait2),
        c.state(t + 6 * MS, FinWait2, Close),
    ]);
    let record = one(&events);
    assert_eq!(record.role, Role::Client);
    assert_eq!(record.family, Family::Ipv4);
    assert_eq!(record.local.to_string(), "127.0.0.1:49320");
    assert_eq!(
        (record.pid, record.comm.as_deref()),
        (Some(9904), Some("curl"))
    );
    assert_eq!((record.start_ns, record.end_ns), (t, t + 6 * MS));
    assert_eq!(record.handshake_us, Some(150));
    assert_eq!(record.duration_us, 6000);
    assert_eq!(
        states(&record),
        [
            (SynSent, 0),
            (Established, 150),
            (FinWait1, 5000),
            (FinWait2, 5030),
            (Close, 6000)
        ]
    );
    assert_eq!(record.close_initiator, CloseInitiator::Local);
    assert_eq!(record.exchanges, Some(1));
    assert_eq!(record.idle_before_close_us, Some(3000));
    assert_eq!(
        (record.bytes_sent, record.bytes_received),
        (Some(78), Some(1024))
    );
    assert_eq!(record.netns, Some(4026531840));
    assert_eq!(record.retransmits, 2);
    assert!(record.observed_from_start);
}

#[test]
fn server_closed_by_peer_is_remote_owned_by_listener() {
    let listener = Side {
        sock: 0x1,
        local: "0.0.0.0:8191".parse().unwrap(),
        remote: "0.0.0.0:0".parse().unwrap(),
    };
    let s = Side::server(0xb, 49320);
    // Kernels before 6.x report the child's first state with the listener's remote.
    let cloned = Side {
        remote: listener.remote,
        ..s.clone()
    };
    let t = 1000 * MS;
    let record = one(&[
        listener.state_by(t - MS, Close, Listen, process(9862, "python3")),
        cloned.state(t, Listen, SynRecv),
        s.state(t + 8 * US, SynRecv, Established),
        s.turn(t + 100 * US, DataDirection::Received),
        s.turn(t + 300 * US, DataDirection::Sent),
        s.state(t + 2 * MS, Established, CloseWait),
        s.state_by(t + 3 * MS, CloseWait, LastAck, process(9862, "python3")),
        s.state(t + 3 * MS + 40 * US, LastAck, Close),
    ]);
    assert_eq!(record.role, Role::Server);
    assert_eq!(record.remote, s.remote);
    assert_eq!(
        (record.pid, record.comm.as_deref()),
        (Some(9862), Some("python3"))
    );
    assert_eq!(record.handshake_us, Some(8));
    assert_eq!(record.close_initiator, CloseInitiator::Remote);
    assert_eq!(record.exchanges, Some(1));
    // No summary: no byte counts, the last turn is the last data.
    assert_eq!(record.bytes_sent, None);
    assert_eq!(record.netns, None);
    assert_eq!(record.idle_before_close_us, Some(1700));
}

#[test]
fn accept_names_the_owner_over_the_listener() {
    let listener = Side::server(0x1, 0);
    let s = Side::server(0xb, 49320);
    let record = one(&[
        listener.state_by(MS, Close, Listen, process(1, "supervisor")),
        s.state(2 * MS, Listen, SynRecv),
        s.state(2 * MS, SynRecv, Established),
        s.accepted(3 * MS, process(42, "worker")),
        s.state(4 * MS, Established, FinWait1),
        s.state(5 * MS, FinWait1, Close),
    ]);
    assert_eq!(
        (record.pid, record.comm.as_deref()),
        (Some(42), Some("worker"))
    );
}

#[test]
fn listener_owner_needs_the_same_port_and_forgets_closed_listeners() {
    let other_port = Side::server(0x1, 0);
    let other_port = Side {
        local: "127.0.0.1:9000".parse().unwrap(),
        ..other_port
    };
    let closed = Side::server(0x2, 0);
    let s = Side::server(0xb, 49320);
    let record = one(&[
        other_port.state_by(MS, Close, Listen, process(1, "other")),
        closed.state_by(MS, Close, Listen, process(2, "gone")),
        closed.state(2 * MS, Listen, Close),
        s.state(3 * MS, Listen, SynRecv),
        s.state(3 * MS, SynRecv, Close),
    ]);
    assert_eq!(record.pid, None);
    assert_eq!(record.close_initiator, CloseInitiator::Aborted);
}

#[test]
fn linger_zero_reset_after_close_is_reset_sent() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.summary(2 * MS, None),
        // tcp_disconnect enters CLOSE, then sends the RST.
        c.state_by(2 * MS, Established, Close, process(9904, "curl")),
        c.reset(2 * MS + 2 * US, ResetDirection::Sent),
    ]);
    let record = one(&events);
    assert_eq!(record.close_initiator, CloseInitiator::ResetSent);
    assert_eq!(record.resets_sent, 1);
    assert_eq!(record.idle_before_close_us, None);
}

#[test]
fn refused_connection_is_reset_received_and_the_socketless_reset_ignored() {
    let c = Side::client(0xa, 49320);
    let refusing = Side::server(0, 49320);
    let (outputs, stats) = run_with(
        config(16),
        &[
            c.state_by(MS, Close, SynSent, process(9904, "curl")),
            refusing.reset(MS + 10 * US, ResetDirection::Sent),
            c.reset(MS + 20 * US, ResetDirection::Received),
            c.state(MS + 20 * US, SynSent, Close),
        ],
    );
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(record.close_initiator, CloseInitiator::ResetReceived);
    assert_eq!(record.resets_received, 1);
    assert_eq!(record.handshake_us, None);
    assert_eq!(stats.ignored_events, 1);
}

#[test]
fn fin_before_reset_decides() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.state(2 * MS, Established, CloseWait),
        c.reset(3 * MS, ResetDirection::Received),
        c.state(3 * MS, CloseWait, Close),
    ]);
    let record = one(&events);
    assert_eq!(record.close_initiator, CloseInitiator::Remote);
    assert_eq!(record.resets_received, 1);
}

#[test]
fn keepalive_timeout_replaces_its_reset_and_counts_unanswered_probes() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.probe(1000 * MS, 1),
        c.probe(2000 * MS, 2),
        // Inside the timer callback: RST, summary, CLOSE; the timeout when it returns.
        c.reset(3000 * MS, ResetDirection::Sent),
        c.summary(3000 * MS, None),
        c.state(3000 * MS, Established, Close),
        c.keepalive_timeout(3000 * MS + US, 2),
    ]);
    let record = one(&events);
    assert_eq!(record.close_initiator, CloseInitiator::KeepaliveTimeout);
    assert_eq!(
        record.keepalive,
        KeepaliveCounts {
            probes_sent: 2,
            probes_answered: 0,
            timed_out: true
        }
    );
}

#[test]
fn connect_timeout_is_aborted() {
    let c = Side::client(0xa, 49320);
    let record = one(&[
        c.state_by(MS, Close, SynSent, process(9904, "curl")),
        c.retransmit(1000 * MS),
        c.state(3000 * MS, SynSent, Close),
    ]);
    assert_eq!(record.close_initiator, CloseInitiator::Aborted);
    assert_eq!(record.retransmits, 1);
    assert_eq!(record.handshake_us, None);
}

#[test]
fn keepalive_probes_answered_by_restart_and_by_data() {
    // The seed's story 3: the request hangs, the client's probes are answered, then
    // the response comes and the connection closes normally.
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.turn(2 * MS, DataDirection::Sent),
        c.probe(1000 * MS, 1),
        c.probe(2000 * MS, 1),
        c.probe(3000 * MS, 1),
        c.turn(3500 * MS, DataDirection::Received),
        c.state(3600 * MS, Established, FinWait1),
        c.state(3600 * MS, FinWait1, FinWait2),
        c.state(3601 * MS, FinWait2, Close),
    ]);
    let record = one(&events);
    assert_eq!(
        record.keepalive,
        KeepaliveCounts {
            probes_sent: 3,
            probes_answered: 3,
            timed_out: false
        }
    );
    assert_eq!(record.exchanges, Some(1));
    assert_eq!(record.close_initiator, CloseInitiator::Local);
}

#[test]
fn probe_lost_then_answered_counts_one_answer() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.probe(1000 * MS, 1),
        c.probe(1100 * MS, 2),
        c.probe(2000 * MS, 1),
        // The last probe's fate is never shown.
        c.reset(2100 * MS, ResetDirection::Received),
        c.state(2100 * MS, Established, Close),
    ]);
    let record = one(&events);
    assert_eq!(record.keepalive.probes_sent, 3);
    assert_eq!(record.keepalive.probes_answered, 1);
    assert_eq!(record.close_initiator, CloseInitiator::ResetReceived);
}

#[test]
fn keep_alive_exchanges_count_requests_on_both_sides() {
    let c = Side::client(0xa, 49320);
    let s = Side::server(0xb, 49320);
    let mut events = c.connect(MS);
    events.extend([
        s.state(MS + 100 * US, Listen, SynRecv),
        s.state(MS + 110 * US, SynRecv, Established),
    ]);
    for request in 0..3 {
        let t = (10 + request * 10) * MS;
        events.extend([
            c.turn(t, DataDirection::Sent),
            s.turn(t + 10 * US, DataDirection::Received),
            s.turn(t + 500 * US, DataDirection::Sent),
            c.turn(t + 510 * US, DataDirection::Received),
        ]);
    }
    // The server closes the idle connection 5 s after the last response.
    let close = 30 * MS + 500 * US + 5000 * MS;
    events.extend([
        s.state(close, Established, FinWait1),
        c.state(close + 10 * US, Established, CloseWait),
        s.state(close + 20 * US, FinWait1, FinWait2),
        c.state(close + 100 * US, CloseWait, LastAck),
        s.state(close + 110 * US, FinWait2, Close),
        c.state(close + 120 * US, LastAck, Close),
    ]);
    let (outputs, _) = run_with(config(16), &events);
    let records: Vec<_> = outputs
        .into_iter()
        .map(|output| match output {
            Output::Connection(record) => record,
            other => panic!("{other:?}"),
        })
        .collect();
    let [server, client] = &records[..] else {
        panic!("{records:#?}");
    };
    assert_eq!((server.role, client.role), (Role::Server, Role::Client));
    assert_eq!((server.exchanges, client.exchanges), (Some(3), Some(3)));
    assert_eq!(server.close_initiator, CloseInitiator::Local);
    assert_eq!(client.close_initiator, CloseInitiator::Remote);
    assert_eq!(server.idle_before_close_us, Some(5_000_000));
    assert_eq!(client.idle_before_close_us, Some(5_000_000));
    assert_ne!(server.conn_id, client.conn_id);
}

#[test]
fn reused_socket_address_starts_a_new_record() {
    let first = Side::client(0xa, 49320);
    let second = Side::client(0xa, 49321);
    let mut events = first.connect(MS);
    events.push(first.state(2 * MS, Established, FinWait1));
    events.push(first.state(2 * MS, FinWait1, Close));
    // The same address, reused within the grace period and after it.
    events.extend(second.connect(3 * MS));
    events.push(second.state(4 * MS, Established, Close));
    events.extend(first.connect(100 * MS));
    events.push(first.state(101 * MS, Established, CloseWait));
    events.push(first.state(101 * MS, CloseWait, Close));
    let (outputs, stats) = run_with(config(16), &events);
    let records: Vec<_> = outputs
        .iter()
        .map(|output| match output {
            Output::Connection(record) => {
                (record.conn_id, record.local.port(), record.close_initiator)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        records,
        [
            (1, 49320, CloseInitiator::Local),
            (2, 49321, CloseInitiator::Aborted),
            (3, 49320, CloseInitiator::Remote)
        ]
    );
    assert_eq!(stats, Stats::default());
}

#[test]
fn lost_close_then_reuse_reaps_the_old_record() {
    let first = Side::client(0xa, 49320);
    let second = Side::client(0xa, 49321);
    let mut events = first.connect(MS);
    events.extend(second.connect(2 * MS));
    events.push(second.state(3 * MS, Established, FinWait1));
    events.push(second.state(3 * MS, FinWait1, Close));
    let (outputs, stats) = run_with(config(16), &events);
    let [Output::Reaped(old), Output::Connection(new)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(old.local.port(), 49320);
    assert_eq!(old.close_initiator, CloseInitiator::Unknown);
    assert_eq!(old.end_ns, MS + 150 * US);
    assert_eq!(new.local.port(), 49321);
    assert_eq!(stats.reaped, 1);
}

#[test]
fn a_closed_record_waits_out_its_grace_period() {
    let c = Side::client(0xa, 49320);
    let other = Side::client(0xb, 1);
    let mut correlator = Correlator::new(config(16));
    let mut outputs = Vec::new();
    let mut events = c.connect(MS);
    events.push(c.state(2 * MS, Established, Close));
    events.push(other.state(2 * MS + CLOSE_GRACE_NS, Close, SynSent));
    for event in &events {
        correlator.observe(event, &mut |output| outputs.push(output));
    }
    assert!(outputs.is_empty());
    assert_eq!(correlator.open_connections(), 2);
    // Held, but over: only the other one is open.
    assert_eq!(
        correlator.open().collect::<Vec<_>>(),
        [(Role::Client, other.local, other.remote)]
    );
    let later = other.state(3 * MS + CLOSE_GRACE_NS, SynSent, Close);
    correlator.observe(&later, &mut |output| outputs.push(output));
    assert_eq!(outputs.len(), 1);
    // The other one's grace, for reap.
    let mut reaped = Vec::new();
    correlator.reap(3 * MS + 2 * CLOSE_GRACE_NS + 1, &mut |output| {
        reaped.push(output)
    });
    assert!(matches!(&reaped[..], [Output::Connection(r)] if r.local.port() == 1));
    assert_eq!(correlator.open_connections(), 0);
}

#[test]
fn full_correlator_evicts_the_least_recently_active() {
    let a = Side::client(0xa, 1);
    let b = Side::client(0xb, 2);
    let c = Side::client(0xc, 3);
    let mut events = a.connect(MS);
    events.extend(b.connect(2 * MS));
    events.push(a.turn(3 * MS, DataDirection::Sent));
    events.extend(c.connect(4 * MS));
    let mut correlator = Correlator::new(config(2));
    let mut outputs = Vec::new();
    for event in &events {
        correlator.observe(event, &mut |output| outputs.push(output));
        assert!(correlator.open_connections() <= 2);
    }
    let [Output::Evicted(evicted)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(evicted.local.port(), 2);
    assert_eq!(evicted.close_initiator, CloseInitiator::Unknown);
    assert_eq!(correlator.stats().evicted, 1);
    // The evicted connection's later events: a state starts a partial record, the
    // rest are ignored.
    outputs.clear();
    correlator.observe(&b.turn(5 * MS, DataDirection::Sent), &mut |o| {
        outputs.push(o)
    });
    assert_eq!(correlator.stats().ignored_events, 1);
    correlator.observe(&b.state(6 * MS, Established, FinWait1), &mut |o| {
        outputs.push(o)
    });
    let [Output::Evicted(evicted)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(evicted.local.port(), 1);
}

#[test]
fn stale_records_are_reaped() {
    let a = Side::client(0xa, 1);
    let b = Side::client(0xb, 2);
    let mut correlator = Correlator::new(config(16));
    let mut outputs = Vec::new();
    for event in a.connect(MS).iter().chain(&b.connect(30_000 * MS)) {
        correlator.observe(event, &mut |output| outputs.push(output));
    }
    correlator.reap(61_000 * MS, &mut |output| outputs.push(output));
    let [Output::Reaped(reaped)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(reaped.local.port(), 1);
    assert_eq!(reaped.close_initiator, CloseInitiator::Unknown);
    assert_eq!(reaped.end_ns, MS + 150 * US);
    assert_eq!(correlator.open_connections(), 1);
    assert_eq!(correlator.stats().reaped, 1);
}

#[test]
fn existing_connections_start_partial_records() {
    let listener = Side::server(0x1, 0);
    let s = Side::server(0xb, 49320);
    let c = Side::client(0xa, 49320);
    let (outputs, stats) = run_with(
        config(16),
        &[
            listener.existing(MS, Listen),
            s.existing(MS, CloseWait),
            c.existing(MS, SynSent),
            c.existing(MS, SynSent),
            c.state(MS + 500 * US, SynSent, Established),
            s.state(2 * MS, CloseWait, LastAck),
            s.state(3 * MS, LastAck, Close),
            c.state(4 * MS, Established, FinWait1),
            c.state(4 * MS, FinWait1, FinWait2),
            c.state(5 * MS, FinWait2, Close),
        ],
    );
    let [Output::Connection(server), Output::Connection(client)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(server.role, Role::Server);
    assert!(!server.observed_from_start);
    assert_eq!(server.close_initiator, CloseInitiator::Remote);
    assert_eq!(
        states(server),
        [(CloseWait, 0), (LastAck, 1000), (Close, 2000)]
    );
    assert_eq!(client.role, Role::Client);
    assert_eq!(client.handshake_us, None);
    assert_eq!(client.close_initiator, CloseInitiator::Local);
    assert_eq!(client.idle_before_close_us, None);
    assert_eq!(stats.ignored_events, 1);
}

#[test]
fn sock_diag_connections_bind_to_their_first_event_by_address() {
    let c = Side::client(0xa, 49320);
    let other = Side::client(0xc, 49321);
    let unbound = |side: &Side| {
        let mut event = side.existing(MS, Established);
        let TraceEvent::Existing(existing) = &mut event else {
            unreachable!()
        };
        existing.meta.sock = 0;
        event
    };
    let (outputs, stats) = run_with(
        config(16),
        &[
            unbound(&c),
            unbound(&other),
            unbound(&c),
            c.state(4 * MS, Established, FinWait1),
            c.state(4 * MS, FinWait1, FinWait2),
            c.state(5 * MS, FinWait2, Close),
        ],
    );
    let [Output::Connection(client), Output::Reaped(still_open)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!((still_open.sock, still_open.local), (0, other.local));
    assert_eq!(client.sock, 0xa);
    assert!(!client.observed_from_start);
    assert_eq!(client.close_initiator, CloseInitiator::Local);
    assert_eq!(stats.ignored_events, 1, "the repeated existing connection");
}

#[test]
fn kept_events_keep_both_ends() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    for i in 0..KEPT_EVENTS as u64 {
        events.push(c.retransmit(2 * MS + i));
    }
    events.push(c.state(3 * MS, Established, Close));
    let (outputs, _) = run_with(
        CorrelatorConfig {
            keep_events: true,
            data_turns: true,
            ..config(16)
        },
        &events,
    );
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(record.events.len(), KEPT_EVENTS);
    assert_eq!(record.events_omitted, 3);
    assert_eq!(record.events[0], events[0]);
    assert_eq!(record.events.last(), events.last());
}

/// Issue 4's budget: at most 256 bytes per open connection, map entry included.
#[test]
fn memory_per_connection() {
    // The map's entry plus hashbrown's control byte.
    let entry = size_of::<(u64, u32)>() + 1;
    let total = size_of::<Conn>() + entry;
    println!(
        "Conn {} + map entry {entry} = {total} bytes",
        size_of::<Conn>()
    );
    assert!(total <= 256, "{total}");
}

#[test]
fn records_serialize_as_documented() {
    let c = Side::client(0xffff8881046d6f00, 49320);
    let mut events = c.connect(MS);
    events.push(c.state(2 * MS, Established, Close));
    let value = serde_json::to_value(one(&events)).unwrap();
    assert_eq!(value["sock"], "0xffff8881046d6f00");
    assert_eq!(value["role"], "client");
    assert_eq!(value["family"], "ipv4");
    assert_eq!(value["local"], "127.0.0.1:49320");
    assert_eq!(value["close_initiator"], "aborted");
    assert_eq!(
        value["states"][1],
        serde_json::json!({"state": "ESTABLISHED", "offset_us": 150})
    );
    assert_eq!(
        value["keepalive"],
        serde_json::json!({"probes_sent": 0, "probes_answered": 0, "timed_out": false})
    );
    assert_eq!(value["bytes_sent"], serde_json::Value::Null);
    assert!(value.get("events").is_none());
}

/// Lifecycles the kernel produces, with the record each must give.
#[derive(Clone, Copy, Debug)]
enum Story {
    ClientLocal,
    ClientRemote,
    Server,
    Refused,
    Linger0,
    KeepaliveTimeout,
    ConnectTimeout,
}

impl Story {
    fn events(self, side: &Side) -> (Vec<TraceEvent>, Vec<TcpState>, CloseInitiator) {
        use DataDirection::*;
        let s = |old, new| side.state(0, old, new);
        let (events, initiator) = match self {
            Self::ClientLocal => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.turn(0, Sent),
                    side.turn(0, Received),
                    s(Established, FinWait1),
                    s(FinWait1, FinWait2),
                    s(FinWait2, Close),
                ],
                CloseInitiator::Local,
            ),
            Self::ClientRemote => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.probe(0, 1),
                    s(Established, CloseWait),
                    s(CloseWait, LastAck),
                    s(LastAck, Close),
                ],
                CloseInitiator::Remote,
            ),
            Self::Server => (
                vec![
                    s(Listen, SynRecv),
                    s(SynRecv, Established),
                    side.accepted(0, process(7, "server")),
                    side.turn(0, Received),
                    side.turn(0, Sent),
                    side.summary(0, None),
                    s(Established, FinWait1),
                    s(FinWait1, Close),
                ],
                CloseInitiator::Local,
            ),
            Self::Refused => (
                vec![
                    s(Close, SynSent),
                    side.reset(0, ResetDirection::Received),
                    s(SynSent, Close),
                ],
                CloseInitiator::ResetReceived,
            ),
            Self::Linger0 => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.retransmit(0),
                    s(Established, Close),
                    side.reset(0, ResetDirection::Sent),
                ],
                CloseInitiator::ResetSent,
            ),
            Self::KeepaliveTimeout => (
                vec![
                    s(Close, SynSent),
                    s(SynSent, Established),
                    side.probe(0, 1),
                    side.probe(0, 2),
                    side.reset(0, ResetDirection::Sent),
                    side.summary(0, None),
                    s(Established, Close),
                    side.keepalive_timeout(0, 2),
                ],
                CloseInitiator::KeepaliveTimeout,
            ),
            Self::ConnectTimeout => (
                vec![s(Close, SynSent), s(SynSent, Close)],
                CloseInitiator::Aborted,
            ),
        };
        let states = events
            .iter()
            .filter_map(|event| match event {
                TraceEvent::StateChange(change) => Some(change.new_state),
                _ => None,
            })
            .collect();
        (events, states, initiator)
    }
}

fn story() -> impl Strategy<Value = Story> {
    prop_oneof![
        Just(Story::ClientLocal),
        Just(Story::ClientRemote),
        Just(Story::Server),
        Just(Story::Refused),
        Just(Story::Linger0),
        Just(Story::KeepaliveTimeout),
        Just(Story::ConnectTimeout),
    ]
}

fn set_time(event: &mut TraceEvent, ns: u64) {
    match event {
        TraceEvent::StateChange(StateChange { meta, .. })
        | TraceEvent::Reset(Reset { meta, .. })
        | TraceEvent::Retransmit(Retransmit { meta, .. })
        | TraceEvent::KeepaliveProbe(Keepalive { meta, .. })
        | TraceEvent::KeepaliveTimeout(Keepalive { meta, .. })
        | TraceEvent::DataTurn(DataTurn { meta, .. })
        | TraceEvent::Summary(ConnectionSummary { meta, .. })
        | TraceEvent::Accepted(Accepted { meta })
        | TraceEvent::Existing(Existing { meta, .. }) => meta.boot_ns = ns,
    }
}

const SOCKS: u64 = 3;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Lifecycles on a few socket addresses (so addresses are reused), each socket's
    /// in order, interleaved across sockets, some events dropped, timestamps jittered
    /// as across CPUs.
    #[test]
    fn any_interleaving_is_handled(
        lifecycles in prop::collection::vec((story(), 0..SOCKS), 1..10),
        picks in prop::collection::vec(any::<u8>(), 100),
        drops in prop::collection::vec(prop::bool::weighted(0.08), 100),
        jitter in prop::collection::vec(0..5_000u64, 100),
        max_connections in 1..6usize,
    ) {
        // Per socket, its lifecycles' events in order, tagged with the lifecycle.
        let mut queues: Vec<VecDeque<(usize, TraceEvent)>> = vec![VecDeque::new(); SOCKS as usize];
        let mut expected = Vec::new();
        for (index, &(story, sock)) in lifecycles.iter().enumerate() {
            let side = Side::client(0x100 + sock, 10_000 + index as u16);
            let (events, states, initiator) = story.events(&side);
            queues[sock as usize].extend(events.into_iter().map(|event| (index, event)));
            expected.push((states, initiator));
        }
        let mut stream = Vec::new();
        let mut n = 0;
        while queues.iter().any(|queue| !queue.is_empty()) {
            let ready: Vec<usize> = (0..queues.len()).filter(|&q| !queues[q].is_empty()).collect();
            let q = ready[usize::from(picks[n % picks.len()]) % ready.len()];
            let (lifecycle, mut event) = queues[q].pop_front().unwrap();
            set_time(&mut event, 1_000_000 + n as u64 * 1_000 + jitter[n % jitter.len()]);
            stream.push((lifecycle, drops[n % drops.len()], event));
            n += 1;
        }
        // Well formed: nothing of it dropped, nor the first event of the next
        // lifecycle on its socket (else that one's late facts could join it).
        let mut well_formed = vec![true; lifecycles.len()];
        for (lifecycle, dropped, _) in &stream {
            if *dropped {
                well_formed[*lifecycle] = false;
            }
        }
        for (index, &(_, sock)) in lifecycles.iter().enumerate() {
            let next = (index + 1..lifecycles.len()).find(|&later| lifecycles[later].1 == sock);
            if let Some(next) = next {
                let first = stream.iter().find(|(lifecycle, ..)| *lifecycle == next).unwrap();
                if first.1 {
                    well_formed[index] = false;
                }
            }
        }

        let mut correlator = Correlator::new(CorrelatorConfig {
            max_connections,
            stale_after_ns: 50_000,
            keep_events: true,
            data_turns: true,
        });
        let mut outputs = Vec::new();
        for (i, (_, dropped, event)) in stream.iter().enumerate() {
            if !dropped {
                correlator.observe(event, &mut |output| outputs.push(output));
            }
            prop_assert!(correlator.open_connections() <= max_connections);
            if i % 7 == 0 {
                correlator.reap(event.meta().boot_ns, &mut |output| outputs.push(output));
            }
        }
        correlator.reap(u64::MAX, &mut |output| outputs.push(output));
        prop_assert_eq!(correlator.open_connections(), 0);

        let mut records_of = vec![Vec::new(); lifecycles.len()];
        for output in &outputs {
            let (record, closed) = match output {
                Output::Connection(record) => (record, true),
                Output::Evicted(record) | Output::Reaped(record) => (record, false),
            };
            prop_assert!(record.end_ns >= record.start_ns);
            prop_assert!(record.states.windows(2).all(|w| w[0].offset_us <= w[1].offset_us));
            prop_assert!(record.states.last().is_none_or(|last| last.offset_us <= record.duration_us));
            records_of[usize::from(record.local.port() - 10_000)].push((record, closed));
        }
        // Enough room: each well-formed lifecycle is exactly one connection record,
        // telling its story.
        if max_connections >= SOCKS as usize {
            for (index, (states, initiator)) in expected.iter().enumerate() {
                if !well_formed[index] {
                    continue;
                }
                let records = &records_of[index];
                prop_assert_eq!(records.len(), 1, "lifecycle {}: {:#?}", index, records);
                let (record, closed) = records[0];
                prop_assert!(closed);
                prop_assert!(record.observed_from_start);
                let got: Vec<TcpState> = record.states.iter().map(|entry| entry.state).collect();
                prop_assert_eq!(&got, states);
                prop_assert_eq!(record.close_initiator, *initiator);
            }
        }
    }
}
