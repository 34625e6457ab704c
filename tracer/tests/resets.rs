//! Resets sent and received, on real loopback connections.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::support::{PacketDrop, Tracer, free_port, is_event, shared, sockets::connected_pair};

/// Whether this kernel's `tcp_send_reset` also fires for resets sent without a socket
/// (6.10+, the version whose record holds sockaddr-sized addresses).
fn traces_socketless_resets() -> bool {
    let format =
        std::fs::read_to_string("/sys/kernel/tracing/events/tcp/tcp_send_reset/format").unwrap();
    format.contains("saddr[28]")
}

#[test]
fn connecting_to_a_closed_port_is_refused_by_reset() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let error = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);

    let received = tracer.wait_for("the client's reset", |l| {
        l["event"] == "reset"
            && l["direction"] == "received"
            && l["remote"] == format!("127.0.0.1:{port}")
    });
    assert_eq!(received["state"], "SYN_SENT");
    if traces_socketless_resets() {
        let sent = tracer.wait_for("the kernel's reset", |l| {
            l["event"] == "reset" && l["direction"] == "sent"
        });
        assert_eq!(sent["local"], format!("127.0.0.1:{port}"));
        assert_eq!(sent["remote"], received["local"]);
        assert_eq!(sent["sock"], "0x0000000000000000", "no socket sent it");
        assert!(sent["reason"].is_string(), "{sent}");
    }
}

/// The client sent a reset and the server received it. The kernel enters CLOSE before it
/// sends an application's reset (tcp_disconnect() for SO_LINGER 0, tcp_close() with
/// unread data), so that is the state the reset reports.
fn assert_client_reset_the_server(
    tracer: &mut Tracer,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
) {
    let sent = tracer.wait_for("the client's reset", |l| {
        is_event(l, "reset", client_addr, server_addr)
    });
    assert_eq!(
        (&sent["direction"], &sent["state"]),
        (&"sent".into(), &"CLOSE".into())
    );
    let received = tracer.wait_for("the server's reset", |l| {
        is_event(l, "reset", server_addr, client_addr)
    });
    assert_eq!(received["direction"], "received");
}

#[test]
fn linger_zero_close_sends_a_reset() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let (client, mut accepted) = connected_pair(port);
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);
    let error = accepted.read(&mut [0u8; 1]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    assert_client_reset_the_server(&mut tracer, client_addr, server_addr);
}

#[test]
fn closing_with_unread_data_sends_a_reset() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let (client, mut accepted) = connected_pair(port);
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    accepted.write_all(b"never read").unwrap();
    // The data is in the client's receive queue once the client has ACKed it.
    let mut peek = [0u8; 1];
    client.peek(&mut peek).unwrap();
    drop(client);

    assert_client_reset_the_server(&mut tracer, client_addr, server_addr);
}

/// The server's socket is gone without the client hearing of it (its reset dropped on
/// the way), and the client writes: the segment finds only the listener, which answers
/// with a reset. The tracepoint names the listener's ends (no peer); the line names the
/// client, read from the segment the listener answered.
#[test]
fn a_listeners_reset_names_the_peer_it_answers() {
    let _machine = shared();
    let listener = crate::support::listen_on_free_port("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let mut tracer = Tracer::start(&[port]);
    let (mut client, accepted) = crate::support::sockets::pair(&listener);
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    {
        let _lost = PacketDrop::new(&format!("tcp sport {port} tcp flags & rst == rst"));
        rustix::net::sockopt::set_socket_linger(&accepted, Some(Duration::ZERO)).unwrap();
        drop(accepted);
        tracer.wait_for("the server's own reset", |l| {
            is_event(l, "reset", server_addr, client_addr) && l["state"] == "CLOSE"
        });
    }
    client.write_all(b"anyone there?").unwrap();
    let error = client.read(&mut [0u8; 1]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    let sent = tracer.wait_for("the listener's reset", |l| {
        l["event"] == "reset" && l["direction"] == "sent" && l["state"] == "LISTEN"
    });
    assert_eq!(
        (&sent["local"], &sent["remote"]),
        (
            &server_addr.to_string().into(),
            &client_addr.to_string().into()
        ),
        "{sent}"
    );
    tracer.wait_for("the client's reset", |l| {
        is_event(l, "reset", client_addr, server_addr) && l["direction"] == "received"
    });
}
