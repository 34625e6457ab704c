//! Keepalive probes and their fate.

use super::*;

#[test]
fn keepalive_probes_answered_by_restart_and_by_data() {
    // The seed's story 3: the request hangs, the client's probes are answered, then
    // the response comes and the connection closes normally.
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.extend([
        c.turn(2 * MS, Direction::Sent),
        c.probe(1000 * MS, 1),
        c.probe(2000 * MS, 1),
        c.probe(3000 * MS, 1),
        c.turn(3500 * MS, Direction::Received),
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
    assert_eq!((record.requests, record.responses), (Some(1), Some(1)));
    // Story 3's wait for the response, while the probes flowed.
    assert_eq!(record.response_time_us.map(|r| r.max_us), Some(3_498_000));
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
        c.reset(2100 * MS, Direction::Received),
        c.state(2100 * MS, Established, Close),
    ]);
    let record = one(&events);
    assert_eq!(record.keepalive.probes_sent, 3);
    assert_eq!(record.keepalive.probes_answered, 1);
    assert_eq!(record.close_initiator, CloseInitiator::ResetReceived);
}
