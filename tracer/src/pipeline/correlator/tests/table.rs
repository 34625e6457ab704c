//! The table of open records: eviction, reaping and memory.

use std::mem::size_of;

use super::*;

#[test]
fn full_correlator_evicts_the_least_recently_active() {
    let a = Side::client(0xa, 1);
    let b = Side::client(0xb, 2);
    let c = Side::client(0xc, 3);
    let mut events = a.connect(MS);
    events.extend(b.connect(2 * MS));
    events.push(a.turn(3 * MS, Direction::Sent));
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
    correlator.observe(&b.turn(5 * MS, Direction::Sent), &mut |o| outputs.push(o));
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
