//! The seed article's four stories, and the other ways connections end, told by the
//! tracer's connection records: a real HTTP/1.1 server and client on loopback, the tracer
//! watching their port, and a packet capture of the same traffic as the truth every
//! record is compared with (`support::capture`).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use crate::support::{
    DEADLINE, HelperProcess, PacketDrop, Tracer,
    capture::{Capture, Wire, epoch_ns, wire_tolerance_ns},
    flow_graph, free_port,
    http::{HttpClient, ServerConfig, request, serve, start_server},
    shared,
    sockets::{connected_pair, pair},
};
use rustix::net::sockopt;
use serde_json::Value;

const QUICK: ServerConfig = ServerConfig {
    idle_timeout: Duration::from_secs(1),
    response_delay: Duration::ZERO,
    announce_requests: false,
};

/// What a record's `requests` (or `responses`) should be after `n`: unknown (null) when
/// the kernel has no data hook for this attach mode (tracer_start lists it unsupported).
/// A data program the kernel refused is a bug, not a kernel without the hook.
fn bursts(lines: &[Value], n: u64) -> Value {
    match lines[0]["unsupported"].get("data") {
        Some(why) => {
            assert!(
                !why.to_string().contains("refused"),
                "the data programs do not load: {why}"
            );
            Value::Null
        }
        None => n.into(),
    }
}

/// A free port, the tracer watching it and a capture of its traffic.
pub(crate) fn traced_port() -> (u16, Tracer, Capture) {
    let port = free_port("127.0.0.1");
    let tracer = Tracer::start(&[port]);
    let capture = Capture::start(port);
    (port, tracer, capture)
}

/// The records of a connection agree with the capture, and so do the flow graphs the
/// tracer draws of them from the events it printed.
pub(crate) fn assert_wire_agrees(capture: Capture, tracer: &Tracer, records: &[&Value]) -> Wire {
    let wire = capture.finish();
    assert_agrees_with(&wire, &tracer.seen, records);
    wire
}

/// [`assert_wire_agrees`] with a capture already finished and the tracer's `lines`.
fn assert_agrees_with(wire: &Wire, lines: &[Value], records: &[&Value]) {
    let drawn = flow_graph::draw(lines);
    for record in records {
        wire.assert_agrees(record);
        let ends = |field: &str| -> SocketAddr { record[field].as_str().unwrap().parse().unwrap() };
        let connection = wire.connection(ends("local"), ends("remote"), epoch_ns(record, "start"));
        flow_graph::assert_drawn_from_wire(connection, record, &flow_graph::arrows(&drawn, record));
    }
}

/// The `connection` record of the socket at `local` -> `remote`.
pub(crate) fn record(tracer: &mut Tracer, local: SocketAddr, remote: SocketAddr) -> Value {
    tracer.wait_for("a connection record", is_record(local, remote))
}

/// Whether a line is the `connection` record of the socket at `local` -> `remote`.
fn is_record(local: SocketAddr, remote: SocketAddr) -> impl Fn(&Value) -> bool {
    move |l| {
        l["event"] == "connection"
            && l["local"] == local.to_string()
            && l["remote"] == remote.to_string()
    }
}

/// [`record`], or `None` when it did not come and tracer reported events lost (the kernel
/// skipped a program already running on that CPU, or the ring was full): tracer said so,
/// and a record missing its events cannot be held to the wire.
fn record_unless_lost(tracer: &mut Tracer, local: SocketAddr, remote: SocketAddr) -> Option<Value> {
    if let Ok(record) = tracer.line_within(DEADLINE, is_record(local, remote)) {
        return Some(record);
    }
    let lost: Vec<&Value> = tracer
        .seen
        .iter()
        .filter(|l| l["event"] == "lost")
        .collect();
    assert!(
        !lost.is_empty(),
        "no record of {local} -> {remote} within {DEADLINE:?}, and nothing reported lost\nlines: {:#?}\nstderr: {}",
        tracer.seen,
        tracer.stderr()
    );
    eprintln!("excused: no record of {local} -> {remote}; tracer reported {lost:?}");
    None
}

fn states(record: &Value) -> Vec<&str> {
    record["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect()
}

/// Story 1: several requests on one kept-alive connection, then the server closes it
/// after its idle timeout.
#[test]
fn keep_alive_reuse_then_server_idle_close() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server = start_server(port, QUICK);
    let mut client = HttpClient::connect(server);
    for _ in 0..3 {
        client.get("/").unwrap();
    }
    // The server's idle timeout closes the connection: the client sees EOF.
    assert_eq!(client.stream.read(&mut [0u8; 1]).unwrap(), 0);
    let local = client.stream.local_addr().unwrap();
    drop(client);

    let server_side = record(&mut tracer, server, local);
    let client_side = record(&mut tracer, local, server);
    assert_eq!(
        (&server_side["role"], &client_side["role"]),
        (&"server".into(), &"client".into())
    );
    assert_eq!(server_side["close_initiator"], "local", "{server_side:#}");
    assert_eq!(client_side["close_initiator"], "remote", "{client_side:#}");
    for side in [&server_side, &client_side] {
        assert_eq!(
            (&side["requests"], &side["responses"]),
            (&bursts(&tracer.seen, 3), &bursts(&tracer.seen, 3)),
            "{side:#}"
        );
    }
    // No FIN between the requests: the connection stayed ESTABLISHED until the end.
    assert_eq!(
        states(&server_side)[..3],
        ["SYN_RECV", "ESTABLISHED", "FIN_WAIT1"],
        "{server_side:#}"
    );
    assert_eq!(
        states(&client_side)[..3],
        ["SYN_SENT", "ESTABLISHED", "CLOSE_WAIT"],
        "{client_side:#}"
    );
    assert_eq!(client_side["pid"], std::process::id());
    assert!(client_side["handshake_us"].as_u64().is_some());
    assert_wire_agrees(capture, &tracer, &[&server_side, &client_side]);
    if bursts(&tracer.seen, 0).is_null() {
        // No data hook in this mode: no data times either.
        assert_eq!(server_side["idle_before_close_us"], Value::Null);
    } else {
        let idle = server_side["idle_before_close_us"].as_u64().unwrap();
        assert!(
            (900_000..5_000_000).contains(&idle),
            "idle {idle} us vs the 1 s timeout"
        );
    }
}

/// A server that keeps connections open, and a client that made one request to it:
/// (server, client, client's address).
fn one_request(port: u16) -> (SocketAddr, HttpClient, SocketAddr) {
    let server = start_server(
        port,
        ServerConfig {
            idle_timeout: Duration::from_secs(30),
            ..QUICK
        },
    );
    let mut client = HttpClient::connect(server);
    client.get("/").unwrap();
    let local = client.stream.local_addr().unwrap();
    (server, client, local)
}

/// Story 2: the client goes away right after its response.
#[test]
fn client_closes_after_its_response() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let (server, client, local) = one_request(port);
    drop(client);

    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    assert_eq!(client_side["close_initiator"], "local", "{client_side:#}");
    assert_eq!(server_side["close_initiator"], "remote", "{server_side:#}");
    assert_eq!(client_side["requests"], bursts(&tracer.seen, 1));
    assert_eq!(client_side["keepalive"]["probes_sent"], 0);
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// Story 3: the request hangs on the server longer than the client's keepalive idle
/// time; the client's kernel probes, the server's kernel answers, the response arrives.
#[test]
fn slow_response_keepalive_probes_answered() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server = start_server(
        port,
        ServerConfig {
            idle_timeout: Duration::from_secs(30),
            response_delay: Duration::from_secs(4),
            announce_requests: false,
        },
    );
    let mut client = HttpClient::connect(server);
    sockopt::set_socket_keepalive(&client.stream, true).unwrap();
    sockopt::set_tcp_keepidle(&client.stream, Duration::from_secs(1)).unwrap();
    sockopt::set_tcp_keepintvl(&client.stream, Duration::from_secs(1)).unwrap();
    client.get("/").unwrap();
    let local = client.stream.local_addr().unwrap();
    drop(client);

    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    let (_, lines) = tracer.stop();
    let wire = capture.finish();
    let connection = wire.connection(local, server, epoch_ns(&client_side, "start"));
    let on_wire = u64::from(connection.to_server.keepalive_probes);
    let keepalive = &client_side["keepalive"];
    let sent = keepalive["probes_sent"].as_u64().unwrap();
    if sent != on_wire {
        for line in lines.iter().filter(|l| l["local"] == local.to_string()) {
            eprintln!("client event: {line}");
        }
        for segment in connection.segments_from(local) {
            eprintln!("client segment: {segment}");
        }
        let stop = lines.last().unwrap();
        assert_eq!(stop["event"], "tracer_stop", "{stop}");
        let events = &stop["events"];
        let lost = events["lost"].as_u64().unwrap() + events["missed"].as_u64().unwrap();
        // Known and not yet understood: with the keepalive hook on the timer tracepoints
        // (this host's only mechanism), a probe is now and then not reported although
        // nothing was lost or missed (about 1 CI run in 5; never with fentry or kprobes so
        // far). Tolerated there, one probe at most, until it is found; otherwise only a
        // loss the tracer reports excuses a probe the record does not count.
        let timer_tracepoints = lines[0]["attach"]["keepalive"] == "tracepoint";
        assert!(
            (lost > 0 || timer_tracepoints) && sent < on_wire && on_wire - sent == 1,
            "{sent} probes recorded, {on_wire} on the wire, and no loss reported: {stop}"
        );
        eprintln!("{on_wire} probes on the wire, {sent} recorded: {stop}");
        return;
    }
    assert!(sent >= 1, "{client_side:#}");
    assert_eq!(keepalive["probes_answered"], sent, "{client_side:#}");
    assert_eq!(keepalive["timed_out"], false);
    assert_eq!(client_side["close_initiator"], "local");
    assert_eq!(client_side["responses"], bursts(&lines, 1));
    assert_eq!(
        server_side["keepalive"]["probes_sent"], 0,
        "only the client probes"
    );
    // The wait for the response is a number: 4 s on both sides, within the tolerance.
    assert_agrees_with(&wire, &lines, &[&client_side, &server_side]);
}

/// The server process of story 4, started by that test in its own process so it can be
/// killed.
#[test]
#[ignore = "started by killed_server_while_request_hangs"]
fn story_server_process() {
    let Ok(port) = std::env::var("TRACER_STORY_SERVER_PORT") else {
        return;
    };
    let listener = TcpListener::bind(("127.0.0.1", port.parse().unwrap())).unwrap();
    serve(
        listener,
        ServerConfig {
            idle_timeout: Duration::from_secs(120),
            response_delay: Duration::from_secs(120),
            announce_requests: true,
        },
    );
}

/// Story 4: the server process is killed while a request hangs. The kernel closes the
/// dead process's socket like close() would: a FIN, since the request was read. The
/// client reads the end of the stream; when it then sends another request, the server's
/// kernel answers with a reset: the socket has no process left to read it.
#[test]
fn killed_server_while_request_hangs() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let mut child = HelperProcess::spawn(
        &[],
        "stories::story_server_process",
        ("TRACER_STORY_SERVER_PORT", port.to_string()),
    );
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    tracer.wait_for("the server's listen", |l| {
        l["event"] == "state_change" && l["new_state"] == "LISTEN" && l["pid"] == child.0.id()
    });
    let mut client = HttpClient::connect(server);
    let local = client.stream.local_addr().unwrap();
    let request = std::thread::spawn(move || {
        let first = client.get("/").unwrap_err().kind();
        let second = client.get("/").unwrap_err().kind();
        (first, second)
    });
    // The server process says when it has read the request.
    assert!(
        child.said("request"),
        "the server process ended without reading the request"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let (first, second) = request.join().unwrap();
    assert_eq!(
        first,
        ErrorKind::UnexpectedEof,
        "the server's FIN ends the first response"
    );
    assert!(
        matches!(
            second,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
        ),
        "{second:?}"
    );

    // Killing the server closes its sockets while segments arrive: under emulation the
    // kernel has been seen to skip a state-change program already running on that CPU
    // (fentry, 6.1), which tracer reports as lost.
    let (Some(server_side), Some(client_side)) = (
        record_unless_lost(&mut tracer, server, local),
        record_unless_lost(&mut tracer, local, server),
    ) else {
        return;
    };
    assert_eq!(server_side["close_initiator"], "local", "{server_side:#}");
    assert_eq!(client_side["close_initiator"], "remote", "{client_side:#}");
    // The request the process never answered, and how long it waited.
    if !bursts(&tracer.seen, 0).is_null() {
        assert_eq!(server_side["responses"], 0, "{server_side:#}");
        assert!(
            server_side["unanswered_request_us"].is_u64(),
            "{server_side:#}"
        );
    }
    assert_wire_agrees(capture, &tracer, &[&server_side, &client_side]);
    // Which socket answers the second request depends on timing: the orphaned socket,
    // still in FIN_WAIT2 (its reset is traced), or the timewait socket that replaced it
    // (traced only by kernels that trace resets sent without a full socket, 6.10+). The
    // records count what the kernel reported.
    let resets = tracer.seen.iter().filter(|l| l["event"] == "reset").count();
    if resets > 0 {
        assert_eq!(client_side["resets_received"], 1, "{client_side:#}");
    }
}

/// A connection refused: the client's record ends with the reset it received.
#[test]
fn refused_connection_record() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(std::net::TcpStream::connect(server).is_err());
    let client_side = tracer.wait_for("the client's record", |l| {
        l["event"] == "connection" && l["remote"] == server.to_string()
    });
    assert_eq!(
        client_side["close_initiator"], "reset_received",
        "{client_side:#}"
    );
    assert_eq!(states(&client_side), ["SYN_SENT", "CLOSE"]);
    assert_eq!(client_side["handshake_us"], Value::Null);
    assert_wire_agrees(capture, &tracer, &[&client_side]);
}

/// A connection reset by the client with `SO_LINGER` 0.
#[test]
fn linger_zero_reset_records() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let (server, client, local) = one_request(port);
    sockopt::set_socket_linger(&client.stream, Some(Duration::ZERO)).unwrap();
    drop(client);

    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    assert_eq!(
        client_side["close_initiator"], "reset_sent",
        "{client_side:#}"
    );
    assert_eq!(
        server_side["close_initiator"], "reset_received",
        "{server_side:#}"
    );
    assert_eq!(
        (&client_side["resets_sent"], &server_side["resets_received"]),
        (&1.into(), &1.into())
    );
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// A pipelining client: three requests in one write, three responses back to back. On
/// the wire and in the records that is one burst each way.
#[test]
fn pipelined_requests_are_one_request_burst() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server = start_server(port, QUICK);
    let mut stream = std::net::TcpStream::connect(server).unwrap();
    let request = "GET / HTTP/1.1\r\nHost: tracer-test\r\n\r\n";
    stream.write_all(request.repeat(3).as_bytes()).unwrap();
    // Three responses, then the server's idle close.
    let mut responses = Vec::new();
    stream.read_to_end(&mut responses).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&responses)
            .matches("200 OK")
            .count(),
        3
    );
    let local = stream.local_addr().unwrap();
    drop(stream);

    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    for side in [&client_side, &server_side] {
        assert_eq!(
            (&side["requests"], &side["responses"]),
            (&bursts(&tracer.seen, 1), &bursts(&tracer.seen, 1)),
            "{side:#}"
        );
    }
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// A response that arrives while its client is still inside `sendmsg`: a kept-alive
/// client pipelines two uploads in one write through small buffers (its send buffer, the
/// server's receive buffer), so the server answers the first while the client is still
/// sending the second. On the wire: a
/// request and its response, then the first upload with the start of the second, the
/// first's response interleaved with the rest of the second (the server writes its head
/// and body apart), and the second's response; the capture counts the bursts. Where a
/// send is seen only as `sendmsg` returns (tracepoint mode), the responses used to be
/// taken for more of the first (two requests and two responses, where the wire has
/// four of each).
#[test]
fn a_response_while_sendmsg_runs_follows_its_request() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    sockopt::set_socket_recv_buffer_size(&listener, 16 * 1024).unwrap();
    let server = listener.local_addr().unwrap();
    std::thread::spawn(move || serve(listener, QUICK));
    let mut client = HttpClient::connect(server);
    sockopt::set_socket_send_buffer_size(&client.stream, 16 * 1024).unwrap();
    client.get("/").unwrap();
    // Large enough that the second is still being sent when the first is answered, small
    // enough for tcpdump to keep every segment.
    let upload = vec![b'x'; 256 * 1024];
    let uploads = [request("/a", &upload), request("/b", &upload)].concat();
    client.stream.write_all(&uploads).unwrap();
    for _ in 0..2 {
        client.response().unwrap();
    }
    let local = client.stream.local_addr().unwrap();
    drop(client);

    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    let data_traced = !bursts(&tracer.seen, 0).is_null();
    for side in [&client_side, &server_side]
        .into_iter()
        .filter(|_| data_traced)
    {
        let requests = side["requests"].as_u64().unwrap();
        assert!(requests >= 3, "{side:#}");
        assert_eq!(side["responses"], requests, "{side:#}");
        assert_eq!(side["response_time_us"]["count"], requests, "{side:#}");
        assert_eq!(side["unanswered_request_us"], Value::Null, "{side:#}");
    }
    // The same number of bursts, and response times, as the wire.
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// An abortive close with data still unsent: the server reads the start of an upload and
/// stops, the client fills the server's receive buffer and its own send buffer, then
/// resets the connection (`SO_LINGER` 0). What never reached the server is not counted
/// as sent.
#[test]
fn abortive_close_with_unsent_data_counts_what_was_acknowledged() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let (mut client, mut accepted) = connected_pair(port);
    let server = accepted.local_addr().unwrap();
    client.write_all(b"upload\n").unwrap();
    accepted.read_exact(&mut [0u8; 7]).unwrap();
    client.set_nonblocking(true).unwrap();
    let chunk = [b'x'; 64 * 1024];
    let mut written = 0u64;
    loop {
        match client.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let local = client.local_addr().unwrap();
    sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);

    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    drop(accepted);
    assert_eq!(
        client_side["close_initiator"], "reset_sent",
        "{client_side:#}"
    );
    let sent = client_side["bytes_sent"].as_u64().unwrap();
    assert!(
        0 < sent && sent < written,
        "{sent} bytes acknowledged of {written} written: some were never sent"
    );
    // The server took in at least what it acknowledged (its last ACKs may not have gone
    // out before the reset).
    let received = server_side["bytes_received"].as_u64().unwrap();
    assert!(received >= sent, "{received} received, {sent} acknowledged");
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// A simultaneous close: both sides close before the other's FIN arrives. On loopback a
/// FIN arrives before the peer can close, so the client's FIN is dropped on input until
/// the server has sent its own: the server's FIN reaches the client in FIN_WAIT1, whose
/// own FIN is not acknowledged, so the client goes FIN_WAIT1 -> CLOSING and says
/// `simultaneous`; its FIN, sent again from its timer, then reaches the server, whose FIN
/// was acknowledged (FIN_WAIT2): the server's close looks sequential to its kernel
/// (`local`), and to the wire as the server saw it. (Dropping both FINs made the order of
/// the two retransmissions a race, and some orders sent a FIN to a socket already gone.)
/// Both records agree with the capture.
#[test]
fn crossing_fins_are_a_simultaneous_close() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = listener.local_addr().unwrap();
    let (client, accepted) = pair(&listener);
    let local = client.local_addr().unwrap();
    {
        let fin = "tcp flags & fin == fin";
        let _to_server = PacketDrop::new(&format!("tcp dport {port} {fin}"));
        // Each close sends its FIN before returning (nothing is left to send).
        drop(client);
        drop(accepted);
    }
    let client_side = record(&mut tracer, local, server);
    let server_side = record(&mut tracer, server, local);
    assert_eq!(
        client_side["close_initiator"], "simultaneous",
        "{client_side:#}"
    );
    assert!(states(&client_side).contains(&"CLOSING"), "{client_side:#}");
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// A server that closes an idle connection while its client lingers (nginx's
/// `keepalive_timeout`): the server's socket, closed by its application, is acknowledged
/// in FIN_WAIT2 and handed at once to a timewait socket, which waits for the client's FIN
/// (sent here 300 ms later). The server's record ends at the handover and says so: no FIN
/// received, handed over in FIN_WAIT2; where tracer follows timewait sockets (with
/// kprobes), it also says when the client's FIN came, as the wire does: to the timewait
/// socket, or, where the kernel kept none (its table of timewait sockets full, as the
/// matrix's small guests often have it after the tests before), to the listener, which
/// answers with a reset.
#[test]
fn an_idle_close_while_the_peer_lingers_ends_in_fin_wait2() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut client, mut accepted) = pair(&listener);
    let (local, server) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    client.write_all(b"request\n").unwrap();
    accepted.read_exact(&mut [0u8; 8]).unwrap();
    accepted.write_all(b"response\n").unwrap();
    client.read_exact(&mut [0u8; 9]).unwrap();
    drop(accepted);
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "the server's FIN");
    tracer.wait_for("the server's handover", |l| {
        l["event"] == "state_change"
            && l["local"] == server.to_string()
            && l["old_state"] == "FIN_WAIT2"
            && l["new_state"] == "CLOSE"
    });
    // The client lingers: the scenario itself, not a wait for anything.
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    let server_side = record(&mut tracer, server, local);
    let client_side = record(&mut tracer, local, server);

    assert_eq!(
        (
            &server_side["fin_received"],
            &server_side["handed_to_timewait"]
        ),
        (&false.into(), &"FIN_WAIT2".into()),
        "{server_side:#}"
    );
    assert_eq!(
        (
            &client_side["fin_received"],
            &client_side["handed_to_timewait"]
        ),
        (&true.into(), &Value::Null),
        "a passive close ends for good: {client_side:#}"
    );
    let wire = assert_wire_agrees(capture, &tracer, &[&server_side, &client_side]);
    let end_ns = epoch_ns(&server_side, "end");
    let connection = wire.connection(local, server, end_ns);
    let client_fin = connection
        .to_server
        .fin_ns
        .expect("the client's FIN on the wire");
    assert!(
        client_fin > end_ns + 200_000_000,
        "the server's record ended at its handover, before the client's FIN"
    );
    let followed = tracer.seen[0]["attach"].get("timewait").is_some();
    if followed {
        let end = &server_side["timewait_end"];
        let refused = connection.to_client.resets > 0;
        assert_eq!(
            end["how"],
            if refused { "no_timewait" } else { "peer_fin" },
            "{server_side:#}"
        );
        let after_ns = end["after_us"].as_u64().unwrap() * 1_000;
        assert!(
            (end_ns + after_ns).abs_diff(client_fin) <= wire_tolerance_ns(),
            "the client's FIN {after_ns} ns after the handover, the wire's {} ns: {server_side:#}",
            client_fin - end_ns
        );
    } else {
        assert_eq!(server_side["timewait_end"], Value::Null, "{server_side:#}");
    }
}
