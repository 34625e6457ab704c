//! A record handed to a timewait socket in FIN_WAIT2 waits, where timewait sockets are
//! followed, for how that socket's wait for the peer's FIN ends.

use super::*;
use crate::event::PeerEnd;

/// Following timewait sockets whose wait lasts `fin_timeout_ns`.
fn following(fin_timeout_ns: u64) -> CorrelatorConfig {
    CorrelatorConfig {
        follow_timewait: Some(fin_timeout_ns),
        ..config(16)
    }
}

/// A server that closes an idle connection at 2 ms: the client acknowledges its FIN
/// but sends none, so the closed socket's ends go to a timewait socket in FIN_WAIT2.
fn idle_close(s: &Side) -> Vec<TraceEvent> {
    let totals = Totals {
        fin_received: false,
        ..TOTALS
    };
    vec![
        s.state(MS, Listen, SynRecv),
        s.state(MS, SynRecv, Established),
        s.state(2 * MS, Established, FinWait1),
        s.state(3 * MS, FinWait1, FinWait2),
        s.summary(3 * MS, None, totals),
        s.state(3 * MS, FinWait2, Close),
    ]
}

const TIMEWAIT: u64 = 0x7e;

fn observe_all(correlator: &mut Correlator, events: &[TraceEvent]) -> Vec<ConnectionRecord> {
    let mut records = Vec::new();
    for event in events {
        correlator.observe(event, &mut |output| {
            if let Output::Connection(record) = output {
                records.push(record);
            }
        });
    }
    records
}

#[test]
fn the_peers_fin_to_the_timewait_socket_is_the_records_true_end() {
    let s = Side::server(0xb, 49320);
    let mut events = idle_close(&s);
    // Within the grace period, and long after it: both records wait for it.
    events.push(s.timewait_end(500 * MS, TIMEWAIT, PeerEnd::Fin));
    let late = Side::server(0xc, 49321);
    events.extend(idle_close(&late));
    let mut correlator = Correlator::new(following(60_000 * MS));
    let mut records = observe_all(&mut correlator, &events);
    // The first is out once its grace period ends (the next event's time says so).
    let later = late.timewait_end(20_000 * MS, TIMEWAIT + 1, PeerEnd::Fin);
    records.extend(observe_all(&mut correlator, &[later]));
    let ends: Vec<_> = records
        .iter()
        .map(|r| (r.remote.port(), r.timewait_end))
        .collect();
    assert_eq!(
        ends,
        [
            (
                49320,
                Some(TimewaitEndRecord {
                    how: PeerEnd::Fin,
                    after_us: Some(497_000),
                })
            ),
            (
                49321,
                Some(TimewaitEndRecord {
                    how: PeerEnd::Fin,
                    after_us: Some(19_997_000),
                })
            ),
        ]
    );
    assert_eq!(records[0].end_ns, s.ns(3 * MS), "the socket's own end");
    assert_eq!(correlator.open_connections(), 0);
    assert_eq!(correlator.stats().ignored_events, 0);
}

#[test]
fn a_wait_nothing_ends_is_a_fin_timeout() {
    let s = Side::server(0xb, 49320);
    let mut correlator = Correlator::new(following(30_000 * MS));
    assert!(observe_all(&mut correlator, &idle_close(&s)).is_empty());
    let due = s.ns(3 * MS) + CLOSE_GRACE_NS + 30_000 * MS;
    let mut outputs = Vec::new();
    correlator.reap(due, &mut |o| outputs.push(o));
    assert!(outputs.is_empty(), "waits tcp_fin_timeout after its grace");
    correlator.reap(due + 1, &mut |o| outputs.push(o));
    let records: Vec<_> = outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Connection(record) => Some(record),
            _ => None,
        })
        .collect();
    let [record] = &records[..] else {
        panic!("{records:#?}")
    };
    assert_eq!(
        record.timewait_end,
        Some(TimewaitEndRecord {
            how: PeerEnd::Timeout,
            after_us: None
        })
    );
}

#[test]
fn stopping_releases_the_waiting_records_with_their_end_unknown() {
    let s = Side::server(0xb, 49320);
    let mut correlator = Correlator::new(following(60_000 * MS));
    observe_all(&mut correlator, &idle_close(&s));
    let mut outputs = Vec::new();
    correlator.reap(s.ns(3 * MS) + CLOSE_GRACE_NS + 1, &mut |o| outputs.push(o));
    assert!(outputs.is_empty());
    correlator.release_awaiting(&mut |o| outputs.push(o));
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}")
    };
    assert_eq!(record.handed_to_timewait, Some(FinWait2));
    assert_eq!(record.timewait_end, None);
}

#[test]
fn without_the_timewait_hook_nothing_waits() {
    let s = Side::server(0xb, 49320);
    let mut events = idle_close(&s);
    events.push(s.timewait_end(500 * MS, TIMEWAIT, PeerEnd::Data));
    let (outputs, stats) = run_with(config(16), &events);
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}")
    };
    assert_eq!(record.timewait_end, None);
    assert_eq!(stats.ignored_events, 1);
}

#[test]
fn an_end_for_other_ends_or_a_full_close_belongs_to_no_record() {
    let s = Side::server(0xb, 49320);
    let other = Side::server(0xc, 49399);
    let mut events = idle_close(&s);
    events.push(other.timewait_end(500 * MS, TIMEWAIT, PeerEnd::Reset));
    events.push(s.timewait_end(600 * MS, TIMEWAIT, PeerEnd::Reset));
    let (outputs, stats) = run_with(following(60_000 * MS), &events);
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}")
    };
    assert_eq!(
        record.timewait_end,
        Some(TimewaitEndRecord {
            how: PeerEnd::Reset,
            after_us: Some(597_000)
        })
    );
    assert_eq!(stats.ignored_events, 1);
}

#[test]
fn a_reset_from_the_listener_for_its_ends_means_no_timewait_socket_took_them() {
    let s = Side::server(0xb, 49320);
    let listener = Side::server(0x11, 49320);
    let mut events = idle_close(&s);
    // Past the grace period: the record was waiting.
    events.push(listener.reset_for(2_000 * MS, Direction::Sent, "TCP_FLAGS", Listen));
    let mut correlator = Correlator::new(following(60_000 * MS));
    let records = observe_all(&mut correlator, &events);
    let [record] = &records[..] else {
        panic!("{records:#?}")
    };
    assert_eq!(
        record.timewait_end,
        Some(TimewaitEndRecord {
            how: PeerEnd::NoTimewait,
            after_us: Some(1_997_000)
        })
    );
    assert_eq!(record.resets_sent, 1, "the reset on the wire for its ends");
    assert_eq!(record.handed_to_timewait, Some(FinWait2));
    assert_eq!(correlator.stats().ignored_events, 0);
}

/// A socket still in FIN_WAIT2 (not handed over: the peer's ACK came while its
/// application held it) that takes data aborts with a reset of its own: nothing waits.
#[test]
fn a_socket_that_aborts_with_its_own_reset_hands_nothing_over() {
    let s = Side::server(0xb, 49320);
    let totals = Totals {
        fin_received: false,
        ..TOTALS
    };
    let events = [
        s.state(MS, Listen, SynRecv),
        s.state(MS, SynRecv, Established),
        s.state(2 * MS, Established, FinWait1),
        s.state(3 * MS, FinWait1, FinWait2),
        s.summary(500 * MS, None, totals),
        s.state(500 * MS, FinWait2, Close),
        s.reset_for(500 * MS, Direction::Sent, "TCP_ABORT_ON_DATA", Close),
    ];
    let (outputs, _) = run_with(following(60_000 * MS), &events);
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}")
    };
    assert_eq!(record.handed_to_timewait, None);
    assert_eq!(record.timewait_end, None);
}

/// Where timewait sockets are not followed, the listener's reset for the ends of a
/// record handed over in FIN_WAIT2 still counts for it (it is on the wire for them), and
/// its end stays unknown.
#[test]
fn unfollowed_the_listeners_reset_counts_and_the_end_stays_unknown() {
    let s = Side::server(0xb, 49320);
    let listener = Side::server(0x11, 49320);
    let mut events = idle_close(&s);
    events.push(listener.reset_for(300 * MS, Direction::Sent, "TCP_FLAGS", Listen));
    let (outputs, stats) = run_with(config(16), &events);
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}")
    };
    assert_eq!(record.resets_sent, 1);
    assert_eq!(record.timewait_end, None);
    assert_eq!(stats.ignored_events, 0);
}
