//! Who closed the connection: FINs, resets and the keepalive timer.

use super::*;
use crate::event::Reset;

#[test]
fn linger_zero_reset_after_close_is_reset_sent() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.summary(2 * MS, None, TOTALS),
        // tcp_disconnect enters CLOSE, then sends the RST.
        c.state_by(2 * MS, Established, Close, curl()),
        c.reset(2 * MS + 2 * US, Direction::Sent),
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
            c.state_by(MS, Close, SynSent, curl()),
            refusing.reset(MS + 10 * US, Direction::Sent),
            c.reset(MS + 20 * US, Direction::Received),
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
fn a_reset_from_the_timewait_socket_counts_for_its_connection() {
    let s = Side::server(0xb, 49320);
    // The socket that replaced the closed one: same ends, its own address.
    let timewait = Side::server(0x7e, 49320);
    let other_timewait = Side::server(0x7f, 49321);
    let from_timewait = |side: &Side, ns: u64| match side.reset(ns, Direction::Sent) {
        TraceEvent::Reset(reset) => TraceEvent::Reset(Reset {
            state: Some(TimeWait),
            ..reset
        }),
        _ => unreachable!(),
    };
    let (outputs, stats) = run_with(
        config(16),
        &[
            s.state(MS, Listen, SynRecv),
            s.state(MS, SynRecv, Established),
            s.state_by(2 * MS, Established, FinWait1, process(9862, "python3")),
            s.state(3 * MS, FinWait1, FinWait2),
            s.state(3 * MS, FinWait2, Close),
            // The peer writes after the FIN; another connection's timewait answers too.
            from_timewait(&timewait, 4 * MS),
            from_timewait(&other_timewait, 4 * MS),
        ],
    );
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(record.close_initiator, CloseInitiator::Local);
    assert_eq!(record.resets_sent, 1);
    assert_eq!(stats.ignored_events, 1);
}

#[test]
fn fin_before_reset_decides() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.state(2 * MS, Established, CloseWait),
        c.reset(3 * MS, Direction::Received),
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
        c.reset(3000 * MS, Direction::Sent),
        c.summary(3000 * MS, None, TOTALS),
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
fn crossing_fins_are_simultaneous_on_both_sides() {
    let c = Side::client(0xa, 49320);
    let s = Side::server(0xb, 49320);
    let mut events = c.connect(MS);
    events.extend([
        s.state(MS, Listen, SynRecv),
        s.established(MS, Some(20), 0),
        // Both close before the other's FIN arrives.
        c.state(5 * MS, Established, FinWait1),
        s.state(5 * MS + US, Established, FinWait1),
        c.state(5 * MS + 10 * US, FinWait1, Closing),
        s.state(5 * MS + 11 * US, FinWait1, Closing),
        c.state(5 * MS + 20 * US, Closing, Close),
        s.state(5 * MS + 21 * US, Closing, Close),
    ]);
    let (outputs, _) = run_with(config(16), &events);
    assert_eq!(outputs.len(), 2);
    for output in outputs {
        let Output::Connection(record) = output else {
            panic!("{output:?}");
        };
        assert_eq!(record.close_initiator, CloseInitiator::Simultaneous);
        assert_eq!(record.idle_before_close_us, None);
    }
}
