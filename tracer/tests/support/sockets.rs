//! Connected pairs on loopback, as the scenarios need them.

use std::{
    net::{TcpListener, TcpStream},
    time::Duration,
};

use rustix::net::sockopt;

/// A connected pair on `port`: (client, accepted).
pub fn connected_pair(port: u16) -> (TcpStream, TcpStream) {
    pair(&TcpListener::bind(("127.0.0.1", port)).unwrap())
}

/// A connection to `listener`: (client, accepted).
pub fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    (client, accepted)
}

/// A connected pair on `port` whose client probes after 1 s idle, every 1 s, `count`
/// times: (client, accepted).
pub fn keepalive_pair(port: u16, count: u32) -> (TcpStream, TcpStream) {
    let (client, accepted) = connected_pair(port);
    probe_every_second(&client, count);
    (client, accepted)
}

/// `client` probes after 1 s idle, every 1 s, `count` times.
pub fn probe_every_second(client: &TcpStream, count: u32) {
    sockopt::set_socket_keepalive(client, true).unwrap();
    sockopt::set_tcp_keepidle(client, Duration::from_secs(1)).unwrap();
    sockopt::set_tcp_keepintvl(client, Duration::from_secs(1)).unwrap();
    sockopt::set_tcp_keepcnt(client, count).unwrap();
}
