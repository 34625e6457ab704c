//! TCP keepalive probes, answered and unanswered, on real loopback connections.

use std::io::{ErrorKind, Read};

use crate::support::{PacketDrop, Tracer, free_port, is_event, shared, sockets::keepalive_pair};

#[test]
fn answered_probes_restart_at_one() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let (client, _accepted) = keepalive_pair(port, 5);
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());

    let probe = |l: &serde_json::Value| is_event(l, "keepalive_probe", client_addr, server_addr);
    let first = tracer.wait_for("a keepalive probe", probe);
    tracer.wait_for("a second keepalive probe", |l| {
        probe(l) && l["ts"] != first["ts"]
    });
    let probes: Vec<_> = tracer.seen.iter().filter(|l| probe(l)).collect();
    for line in &probes {
        assert_eq!(line["probe"], 1, "each probe was answered: {line}");
        assert_eq!(line["keepalive"]["probes"], 5, "{line}");
        assert_eq!(line["keepalive"]["idle_ms"], 1000, "{line}");
        assert_eq!(line["keepalive"]["interval_ms"], 1000, "{line}");
    }
    assert!(
        !tracer
            .seen
            .iter()
            .any(|l| l["event"] == "keepalive_timeout")
    );
    // Only the socket with SO_KEEPALIVE probes.
    assert!(
        !tracer
            .seen
            .iter()
            .any(|l| l["event"] == "keepalive_probe" && l["local"] == server_addr.to_string())
    );
}

#[test]
fn unanswered_probes_time_the_connection_out() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let (mut client, _accepted) = keepalive_pair(port, 3);
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    // The server's answers (its ACKs) never reach the client.
    let _silence = PacketDrop::new(&format!("tcp sport {port}"));

    let timeout = tracer.wait_for("the keepalive timeout", |l| {
        is_event(l, "keepalive_timeout", client_addr, server_addr)
    });
    assert_eq!(timeout["probes_sent"], 3);
    let probes: Vec<_> = tracer
        .seen
        .iter()
        .filter(|l| is_event(l, "keepalive_probe", client_addr, server_addr))
        .map(|l| l["probe"].as_u64().unwrap())
        .collect();
    assert_eq!(probes, [1, 2, 3]);
    let closed = tracer.wait_for("the client's CLOSE", |l| {
        is_event(l, "state_change", client_addr, server_addr) && l["new_state"] == "CLOSE"
    });
    assert_eq!(closed["sock"], timeout["sock"]);
    assert_eq!(
        client.read(&mut [0u8; 1]).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
}
