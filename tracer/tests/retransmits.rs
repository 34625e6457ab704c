//! Retransmits, made by dropping a connection's segments for a moment.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
};

use crate::support::{PacketDrop, Tracer, free_port, is_event, shared};

#[test]
fn dropped_data_is_retransmitted() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());

    let drop_to_server = PacketDrop::new(&format!("tcp dport {port}"));
    client.write_all(b"hello").unwrap();
    let first = tracer.wait_for("a retransmit", |l| {
        is_event(l, "retransmit", client_addr, server_addr)
    });
    tracer.wait_for("a second retransmit", |l| {
        is_event(l, "retransmit", client_addr, server_addr) && l["ts"] != first["ts"]
    });
    drop(drop_to_server);

    let mut buffer = [0u8; 5];
    accepted.read_exact(&mut buffer).unwrap();
    assert_eq!(
        &buffer, b"hello",
        "the data arrives once the path is open again"
    );
    assert_eq!(
        (&first["what"], &first["state"]),
        (&"segment".into(), &"ESTABLISHED".into())
    );
    assert_eq!(
        first["sock"],
        tracer
            .seen
            .iter()
            .find(|l| l["event"] == "state_change" && l["local"] == client_addr.to_string())
            .unwrap()["sock"]
    );
    let flags = first["tcp_flags"].as_array().expect("flags from the skb");
    assert!(
        flags.contains(&"PSH".into()) && flags.contains(&"ACK".into()),
        "{first}"
    );
}
