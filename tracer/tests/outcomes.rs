//! Each connection's `outcome`, made to happen on real sockets and judged by a packet
//! capture (`WireConnection::outcomes` in `support::capture`: what the wire allows) and by
//! what the application itself was told (`error`, the errno its calls returned). The
//! stories' records are checked the same way; here are the outcomes they do not reach,
//! and the successes other tracers call failures.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use rustix::net::{AddressFamily, SocketAddrV4, SocketFlags, SocketType, sockopt};
use serde_json::Value;

use crate::{
    stories::{assert_wire_agrees, record, traced_port},
    support::{
        PacketDrop, Tracer,
        capture::epoch_ns,
        prometheus::{poll_until, scrape},
        shared,
        sockets::pair,
    },
};

/// The record of the client connecting to `server` (its local port is not known when
/// `connect` fails).
fn client_record(tracer: &mut Tracer, server: SocketAddr) -> Value {
    tracer.wait_for("the client's record", |l| {
        l["event"] == "connection" && l["remote"] == server.to_string() && l["role"] == "client"
    })
}

/// Sets the TCP socket option `option` (named `name`, an int) of `fd` to `value`: the
/// options rustix has no call for.
fn set_tcp_option(fd: &impl AsRawFd, option: i32, name: &str, value: i32) {
    // SAFETY: a valid socket and a pointer to an int of the size given, as the TCP
    // options set here take.
    let status = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            option,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(status, 0, "{name}: {}", std::io::Error::last_os_error());
}

/// A TCP socket to `server` whose kernel sends the SYN `1 + syn_retries` times.
fn connecting_socket(flags: SocketFlags, syn_retries: i32) -> OwnedFd {
    // Close-on-exec, as std's sockets are: a process another test starts meanwhile would
    // otherwise inherit it and keep it open past its `drop` (seen: a connect "abandoned"
    // that went on sending SYNs).
    let flags = flags | SocketFlags::CLOEXEC;
    let fd =
        rustix::net::socket_with(AddressFamily::INET, SocketType::STREAM, flags, None).unwrap();
    set_tcp_option(&fd, libc::TCP_SYNCNT, "TCP_SYNCNT", syn_retries);
    fd
}

fn v4(server: SocketAddr) -> SocketAddrV4 {
    match server {
        SocketAddr::V4(addr) => SocketAddrV4::new(*addr.ip(), addr.port()),
        SocketAddr::V6(_) => unreachable!("the tests connect over IPv4"),
    }
}

/// SYNs to `port` never arrive.
fn syns_dropped(port: u16) -> PacketDrop {
    PacketDrop::new(&format!("tcp dport {port} tcp flags & (syn | ack) == syn"))
}

/// Nobody listens: the peer's kernel answers the SYN with a reset, and the application
/// is told `ECONNREFUSED`.
#[test]
fn a_refused_connect_is_refused() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let error = TcpStream::connect(server).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    let client = client_record(&mut tracer, server);
    assert_eq!(
        (&client["outcome"], &client["error"]),
        (&"refused".into(), &"ECONNREFUSED".into()),
        "{client:#}"
    );
    assert_wire_agrees(capture, &tracer, &[&client]);
}

/// SYNs unanswered until the kernel gives up (after one retry: `TCP_SYNCNT` 1, about
/// 3 s): the application is told `ETIMEDOUT`.
#[test]
fn a_connect_the_kernel_gave_up_on_is_a_connect_timeout() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let _listener = TcpListener::bind(server).unwrap();
    let _drop = syns_dropped(port);
    let fd = connecting_socket(SocketFlags::empty(), 1);
    let error = rustix::net::connect(&fd, &v4(server)).unwrap_err();
    assert_eq!(error, rustix::io::Errno::TIMEDOUT);
    let client = client_record(&mut tracer, server);
    assert_eq!(
        (&client["outcome"], &client["error"]),
        (&"connect_timeout".into(), &"ETIMEDOUT".into()),
        "{client:#}"
    );
    let wire = assert_wire_agrees(capture, &tracer, &[&client]);
    let local = client["local"].as_str().unwrap().parse().unwrap();
    let connection = wire.connection(local, server, epoch_ns(&client, "start"));
    // The kernel gives up when the time its SYN retries take has passed (1 + 2 s for
    // one retry), and may have sent one more SYN by then.
    assert!(connection.syns >= 2, "the SYN sent again: {connection:#?}");
    assert_eq!(connection.synack_ns, None, "{connection:#?}");
}

/// The application closes a socket still connecting (a connect timeout of its own, the
/// losing half of a happy-eyeballs race): no error, nothing refused, nothing timed out.
#[test]
fn a_connect_the_application_gave_up_on_is_abandoned() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let _listener = TcpListener::bind(server).unwrap();
    let _drop = syns_dropped(port);
    let fd = connecting_socket(SocketFlags::NONBLOCK, 6);
    let error = rustix::net::connect(&fd, &v4(server)).unwrap_err();
    assert_eq!(error, rustix::io::Errno::INPROGRESS);
    let local = rustix::net::getsockname(&fd).unwrap();
    let local = SocketAddr::try_from(local).unwrap();
    // The kernel enters SYN_SENT before it picks the local port: the line has port 0.
    tracer.wait_for("SYN_SENT", |l| {
        l["event"] == "state_change"
            && l["remote"] == server.to_string()
            && l["new_state"] == "SYN_SENT"
    });
    drop(fd);
    let client = record(&mut tracer, local, server);
    assert_eq!(
        (&client["outcome"], &client["error"]),
        (&"connect_abandoned".into(), &Value::Null),
        "{client:#}"
    );
    assert_wire_agrees(capture, &tracer, &[&client]);
}

/// An ICMP host unreachable answers the SYN (nftables rejects it so): the kernel ends the
/// connect at once and tells the application `EHOSTUNREACH`.
#[test]
fn a_connect_answered_by_an_icmp_error_is_unreachable() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let _listener = TcpListener::bind(server).unwrap();
    let _reject = PacketDrop::with_verdict(
        &format!("tcp dport {port} tcp flags & (syn | ack) == syn"),
        "reject with icmpx type host-unreachable",
    );
    let error = TcpStream::connect(server).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::HostUnreachable, "{error}");
    let client = client_record(&mut tracer, server);
    assert_eq!(
        (&client["outcome"], &client["error"]),
        (&"unreachable".into(), &"EHOSTUNREACH".into()),
        "{client:#}"
    );
    assert_wire_agrees(capture, &tracer, &[&client]);
}

/// `net.ipv4.tcp_fastopen` set for a test (client and server on, no cookies needed)
/// and put back as it was.
struct FastOpen {
    was: String,
}

const TCP_FASTOPEN_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_fastopen";

impl FastOpen {
    fn enable() -> Self {
        let was = std::fs::read_to_string(TCP_FASTOPEN_SYSCTL).unwrap();
        // 0x1 client, 0x2 server, 0x4 client without cookie, 0x200 server without one.
        std::fs::write(TCP_FASTOPEN_SYSCTL, "519").unwrap();
        Self { was }
    }
}

impl Drop for FastOpen {
    fn drop(&mut self) {
        std::fs::write(TCP_FASTOPEN_SYSCTL, self.was.trim()).unwrap();
    }
}

/// A reset while the server's socket is still in the handshake. A server socket exists
/// before the handshake's last ACK only with TCP Fast Open (the SYN's data makes the
/// kernel create it at once, in SYN_RECV). Here the client's ACK of the SYN-ACK never
/// arrives (nftables drops it), and the client aborts (`SO_LINGER` 0): the server's
/// socket is reset before it was established. The client, established by the SYN-ACK,
/// aborted its connection.
#[test]
fn a_reset_before_the_servers_handshake_completes_is_a_handshake_reset() {
    let _machine = shared();
    let _fast_open = FastOpen::enable();
    let (port, mut tracer, capture) = traced_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    set_tcp_option(&listener, libc::TCP_FASTOPEN, "TCP_FASTOPEN", 16);
    let server = listener.local_addr().unwrap();
    let _acks_lost = PacketDrop::new(&format!(
        "tcp dport {port} tcp flags & (fin | syn | rst | ack) == ack"
    ));
    let client = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    // Connects with the data in the SYN, and returns once the SYN-ACK came.
    let request = b"GET / HTTP/1.1\r\n\r\n";
    let sent = rustix::net::sendto(
        &client,
        request,
        rustix::net::SendFlags::from_bits_retain(libc::MSG_FASTOPEN as u32),
        &v4(server),
    )
    .unwrap();
    assert_eq!(sent, request.len());
    let local = rustix::net::getsockname(&client).unwrap();
    let local = SocketAddr::try_from(local).unwrap();
    sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);

    let server_side = record(&mut tracer, server, local);
    let client_side = record(&mut tracer, local, server);
    assert_eq!(
        (
            &server_side["outcome"],
            &server_side["error"],
            &server_side["handshake_us"]
        ),
        (
            &"handshake_reset".into(),
            &"ECONNRESET".into(),
            &Value::Null
        ),
        "{server_side:#}"
    );
    assert_eq!(server_side["resets_received"], 1, "{server_side:#}");
    assert_eq!(
        (&client_side["outcome"], &client_side["resets_sent"]),
        (&"aborted_locally".into(), &1.into()),
        "{client_side:#}"
    );
    drop(listener);
    // The wire: the SYN with the request, the SYN-ACK, the client's ACK (captured as it
    // was sent, dropped before the server's TCP saw it), then the client's reset.
    let wire = assert_wire_agrees(capture, &tracer, &[&client_side]);
    let connection = wire.connection(local, server, epoch_ns(&client_side, "start"));
    assert_eq!(
        (
            connection.syns,
            connection.synack_ns.is_some(),
            connection.to_server.resets
        ),
        (1, true, 1),
        "{connection:#?}"
    );
}

/// The server's application closes with a request unread: its kernel resets the
/// connection. The server aborted it; the client was reset.
#[test]
fn a_close_with_unread_data_is_aborted_locally_and_reset_for_the_peer() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut client, accepted) = pair(&listener);
    let (local, server) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    client.write_all(b"never read\n").unwrap();
    // Waits for it to arrive, and leaves it unread.
    accepted.peek(&mut [0u8; 1]).unwrap();
    drop(accepted);
    let error = client.read(&mut [0u8; 1]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    let server_side = record(&mut tracer, server, local);
    let client_side = record(&mut tracer, local, server);
    assert_eq!(server_side["outcome"], "aborted_locally", "{server_side:#}");
    assert_eq!(
        (&client_side["outcome"], &client_side["error"]),
        (&"reset".into(), &"ECONNRESET".into()),
        "{client_side:#}"
    );
    assert_wire_agrees(capture, &tracer, &[&client_side, &server_side]);
}

/// Data sent and never acknowledged (every segment to the server dropped), until the
/// client's `TCP_USER_TIMEOUT` of 1 s: the kernel gives up, tells the application
/// `ETIMEDOUT` and sends nothing more.
#[test]
fn data_never_acknowledged_is_a_retransmit_timeout() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut client, accepted) = pair(&listener);
    let (local, server) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    sockopt::set_tcp_user_timeout(&client, 1_000).unwrap();
    {
        let _drop = PacketDrop::new(&format!("tcp dport {port}"));
        client.write_all(b"lost\n").unwrap();
        let error = client.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
    }
    let client_side = record(&mut tracer, local, server);
    assert_eq!(
        (&client_side["outcome"], &client_side["error"]),
        (&"retransmit_timeout".into(), &"ETIMEDOUT".into()),
        "{client_side:#}"
    );
    assert!(
        client_side["retransmits"].as_u64().unwrap() > 0,
        "{client_side:#}"
    );
    // Judged before the server closes: its FIN would meet the client's port with no
    // socket, and the reset answering it is not this connection's.
    assert_wire_agrees(capture, &tracer, &[&client_side]);
    drop(accepted);
}

/// Keepalive probes unanswered (every segment to the client dropped): the kernel resets
/// the connection after the last and tells the application `ETIMEDOUT`.
#[test]
fn unanswered_keepalive_probes_are_a_keepalive_timeout() {
    let _machine = shared();
    let (port, mut tracer, capture) = traced_port();
    let (client, accepted) = crate::support::sockets::keepalive_pair(port, 2);
    let (local, server) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    {
        let _drop = PacketDrop::new(&format!("tcp sport {port}"));
        tracer.wait_for("the keepalive timeout", |l| {
            l["event"] == "keepalive_timeout" && l["local"] == local.to_string()
        });
    }
    let client_side = record(&mut tracer, local, server);
    drop((client, accepted));
    assert_eq!(
        (&client_side["outcome"], &client_side["error"]),
        (&"keepalive_timeout".into(), &"ETIMEDOUT".into()),
        "{client_side:#}"
    );
    assert_wire_agrees(capture, &tracer, &[&client_side]);
}

/// What other tracers call failures and are not: a connection opened and closed at once
/// (no data), and an idle connection closed by this host after a while. Both sides of
/// each are `completed`, and no failure is counted.
#[test]
fn short_lived_and_idle_closed_connections_are_completed() {
    let _machine = shared();
    let port = crate::support::free_port("127.0.0.1");
    let metrics = SocketAddr::from(([127, 0, 0, 1], crate::support::free_port("127.0.0.1")));
    let mut command = Tracer::command(&[port]);
    command.arg("--metrics-addr").arg(metrics.to_string());
    let mut tracer = Tracer::spawn(command);
    let capture = crate::support::capture::Capture::start(port);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();

    let (short, short_accepted) = pair(&listener);
    let short_ends = (short.local_addr().unwrap(), short.peer_addr().unwrap());
    drop(short);
    drop(short_accepted);

    let (mut idle, mut idle_accepted) = pair(&listener);
    let idle_ends = (idle.local_addr().unwrap(), idle.peer_addr().unwrap());
    idle.write_all(b"one request\n").unwrap();
    idle_accepted.read_exact(&mut [0u8; 12]).unwrap();
    idle_accepted.write_all(b"answer\n").unwrap();
    idle.read_exact(&mut [0u8; 7]).unwrap();
    // Idle for a while: the scenario itself, not a wait for anything.
    std::thread::sleep(Duration::from_millis(300));
    drop(idle);
    assert_eq!(idle_accepted.read(&mut [0u8; 1]).unwrap(), 0);
    drop(idle_accepted);

    let mut records = Vec::new();
    for (client, server) in [short_ends, idle_ends] {
        records.push(record(&mut tracer, client, server));
        records.push(record(&mut tracer, server, client));
    }
    for side in &records {
        assert_eq!(
            (&side["outcome"], &side["error"]),
            (&"completed".into(), &Value::Null),
            "{side:#}"
        );
    }
    assert_eq!(records[2]["close_initiator"], "local", "{:#}", records[2]);

    // And a failure beside them, counted as one.
    drop(listener);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let earlier: Vec<String> = records.iter().map(|r| r["local"].to_string()).collect();
    let refused = tracer.wait_for("the refused client's record", |l| {
        l["event"] == "connection"
            && l["remote"] == format!("127.0.0.1:{port}")
            && !earlier.contains(&l["local"].to_string())
    });
    assert_eq!(refused["outcome"], "refused", "{refused:#}");
    let port_label = format!("port=\"{port}\"");
    let sum = |text: &str, family: &str, labels: &[&str]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .filter(|l| l.contains(&port_label) && labels.iter().all(|label| l.contains(label)))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    poll_until(
        "five records counted, one of them a failure: the refused client",
        || scrape(metrics, None).1,
        || {
            let text = scrape(metrics, None).1;
            let refused = [r#"role="client""#, r#"outcome="refused""#];
            (sum(&text, "tracer_connections_total", &[]) == 5.0
                && sum(&text, "tracer_connection_failures_total", &[]) == 1.0
                && sum(&text, "tracer_connection_failures_total", &refused) == 1.0)
                .then_some(())
        },
    );
    assert_wire_agrees(capture, &tracer, &records.iter().collect::<Vec<_>>());
}
