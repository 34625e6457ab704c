//! Connection records beyond the stories: connections open before tracing started, and
//! the bound on open records.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
};

use crate::support::{Tracer, free_port, shared, sockets::pair, tracer_bin};

/// Closes `client` first and waits for the server side to see it, then closes that too.
fn close(client: TcpStream, mut server: TcpStream) {
    drop(client);
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn connections_open_before_tracing_get_records() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut client, mut server) = pair(&listener);
    let local = client.local_addr().unwrap().to_string();
    let mut tracer = Tracer::start(&[port]);
    let existing = tracer.wait_for("the connection read from the kernel", |l| {
        l["event"] == "existing" && l["local"] == local
    });
    assert_eq!(
        (&existing["state"], &existing["sock"]),
        (&"ESTABLISHED".into(), &"0x0000000000000000".into())
    );
    client.write_all(b"late").unwrap();
    server.read_exact(&mut [0u8; 4]).unwrap();
    close(client, server);

    let record = tracer.wait_for("its record", |l| {
        l["event"] == "connection" && l["local"] == local
    });
    assert_eq!(record["observed_from_start"], false, "{record:#}");
    assert_eq!(record["close_initiator"], "local", "{record:#}");
    assert_eq!(record["handshake_us"], serde_json::Value::Null);
    assert_ne!(
        record["sock"], "0x0000000000000000",
        "bound to the kernel's socket by its first event"
    );
}

#[test]
fn records_beyond_max_connections_are_evicted_in_band() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut command = Command::new(tracer_bin());
    command.args([
        "--port",
        &port.to_string(),
        "--max-connections",
        "1",
        "--emit",
        "connections",
    ]);
    let mut tracer = Tracer::spawn(command);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (first_client, first_server) = pair(&listener);
    let first = first_client.local_addr().unwrap().to_string();
    // The second connection's sockets push the first connection's records out.
    let (second_client, second_server) = pair(&listener);
    let evicted = tracer.wait_for("an evicted record", |l| {
        l["event"] == "connection" && l["record"] == "evicted"
    });
    assert!(
        evicted["local"] == first || evicted["remote"] == first,
        "{evicted:#}"
    );
    close(first_client, first_server);
    close(second_client, second_server);
    let (status, lines) = tracer.stop();
    assert!(status.success());
    let stop = lines.last().unwrap();
    assert_eq!(stop["event"], "tracer_stop");
    let evictions = lines.iter().filter(|l| l["record"] == "evicted").count() as u64;
    assert_eq!(stop["evicted"], evictions, "{stop}");
    assert!(
        lines.iter().all(|l| l["event"] != "state_change"),
        "--emit connections writes no events"
    );
}
