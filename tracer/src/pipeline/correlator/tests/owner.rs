//! Who a connection belongs to.

use super::*;

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
