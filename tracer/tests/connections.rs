//! Connection records beyond the stories: connections open before tracing started (and
//! TIME_WAIT sockets, which are not listed but counted), and the bound on open records.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
};

use crate::support::{
    Tracer, free_port,
    prometheus::{poll_until, scrape},
    shared,
    sockets::pair,
    tracer_bin, wait_until,
};

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
    let server_side = tracer.wait_for("the server side's record", |l| {
        l["event"] == "connection" && l["remote"] == local
    });
    // The listener, open before tracing too, makes the accepted side the server.
    assert_eq!(
        (&record["role"], &server_side["role"]),
        (&"client".into(), &"server".into()),
        "{record:#}\n{server_side:#}"
    );
    assert_eq!(record["observed_from_start"], false, "{record:#}");
    assert_eq!(record["close_initiator"], "local", "{record:#}");
    assert_eq!(record["handshake_us"], serde_json::Value::Null);
    assert_ne!(
        record["sock"], "0x0000000000000000",
        "bound to the kernel's socket by its first event"
    );
}

/// The TIME_WAIT sockets with `port` as their local or remote port, as `ss` lists them.
fn ss_time_wait(port: u16) -> usize {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let output = Command::new("ss")
        .args(["-Htan", "state", "time-wait", &filter])
        .output()
        .expect("cannot run ss");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().lines().count()
}

/// `tracer_time_wait_sockets{port="P"}` in a scrape of `addr`.
fn time_wait_gauge(addr: SocketAddr, port: u16) -> (Option<f64>, String) {
    let (_, text) = scrape(addr, None);
    let series = format!("tracer_time_wait_sockets{{port=\"{port}\"}} ");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().unwrap());
    (value, text)
}

#[test]
fn time_wait_sockets_are_counted_not_listed() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // The side that closes first holds TIME_WAIT (60 s): twice the server (its local port
    // is the traced one), once the client (its remote port).
    for server_first in [true, true, false] {
        let (client, server) = pair(&listener);
        if server_first {
            close(server, client);
        } else {
            close(client, server);
        }
    }
    wait_until("3 TIME_WAIT sockets listed by ss", || {
        ss_time_wait(port) == 3
    });

    let addr = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")));
    let mut command = Tracer::command(&[port]);
    command.arg("--metrics-addr").arg(addr.to_string());
    let tracer = Tracer::spawn(command);
    // Counted as tracing starts, not 10 s later.
    poll_until(
        "tracer_time_wait_sockets equal to what ss lists",
        || {
            let (value, text) = time_wait_gauge(addr, port);
            let listed = ss_time_wait(port);
            format!("ss lists {listed}, the gauge is {value:?} in\n{text}")
        },
        || {
            let (value, _) = time_wait_gauge(addr, port);
            (value == Some(ss_time_wait(port) as f64)).then_some(())
        },
    );

    let (status, lines) = tracer.stop();
    assert!(status.success());
    let listed: Vec<_> = lines.iter().filter(|l| l["event"] == "existing").collect();
    assert!(
        listed.iter().all(|l| l["state"] != "TIME_WAIT"),
        "TIME_WAIT sockets are not connections: {listed:#?}"
    );
    let stop = lines.last().unwrap();
    assert_eq!(stop["event"], "tracer_stop");
    assert_eq!(
        stop["unmatched_events"], 0,
        "nothing else happened on the port: {stop}"
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
