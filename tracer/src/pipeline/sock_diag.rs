//! The kernel's sock_diag (the netlink interface `ss` uses): the TCP sockets of the
//! network namespace the calling thread is in, in the states asked for. The request carries a state mask, so the
//! kernel does not even serialize the sockets in other states. Two readers: the
//! connections open when tracing starts ([`super::existing`]) and the TIME_WAIT gauge
//! ([`time_wait_counts`]).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Nla as _, Parseable as _,
};
pub use netlink_packet_sock_diag::inet::StateFlags;
use netlink_packet_sock_diag::{
    SOCK_DIAG_BY_FAMILY, SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, InetResponse, InetResponseHeader, SocketId, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use crate::event::{TcpCounters, TcpState};

/// Bytes read from the netlink socket at a time: a page of the kernel's sock_diag dump is
/// at most 32 KiB (it sizes its messages to the reader's buffer, up to that), so this
/// never cuts a message.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// How often, at most, the daemon counts the TIME_WAIT sockets for the
/// `tracer_time_wait_sockets` gauge (with metrics on; the first count as tracing starts).
/// A busy port has tens of thousands of them, and each count is a dump of them all on
/// the thread that reads the ring buffer: once a second (the other samples' pace) would
/// not be cheap, and the gauge moves slowly anyway (a socket stays in TIME_WAIT for 60 s).
pub const TIME_WAIT_PERIOD: Duration = Duration::from_secs(10);

/// Netlink messages start on 4-byte boundaries.
const NLMSG_ALIGN: usize = 4;

/// A TCP socket as sock_diag lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The socket's inode, as `/proc/PID/fd` links name it (`socket:[INODE]`); 0 for a
    /// socket no file holds (a timewait or orphaned socket).
    pub inode: u32,
    /// Its counters so far (`tcp_info`), when asked for and the kernel gave them.
    pub counters: Option<TcpCounters>,
    /// The id of the socket's cgroup (v2), with its counters: the one the kernel's
    /// events carry (`INET_DIAG_CGROUP_ID`, 5.7+; `None` before, and for sockets without one).
    pub cgroup_id: Option<u64>,
}

/// What to ask of each socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Its state and addresses.
    Ends,
    /// Those and its counters (`tcp_info`).
    Counters,
}

/// Calls `visit` for every TCP socket of the calling thread's network namespace, IPv4
/// then IPv6, whose state is in `states`. With [`Detail::Ends`] nothing is allocated per
/// socket: each is read in place from the kernel's reply.
pub fn each_tcp_socket(
    states: StateFlags,
    detail: Detail,
    mut visit: impl FnMut(DiagSocket),
) -> Result<()> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("cannot open a sock_diag socket")?;
    socket
        .bind_auto()
        .context("cannot bind the sock_diag socket")?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .context("cannot connect the sock_diag socket")?;
    let mut receive = vec![0; RECEIVE_BUFFER];
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        request(&mut socket, family, id, states.clone(), detail)?;
        read_dump(&mut socket, &mut receive, detail, &mut visit)?;
    }
    Ok(())
}

/// The number of TIME_WAIT sockets of this network namespace for each traced port of
/// `ports` (sorted) that has any. A socket counts for the traced port it matched, as the
/// metrics' `port` label: its local port if traced, else its remote port. None when every
/// port is traced (a workload's): a TIME_WAIT socket has no cgroup to tell whose it is.
pub fn time_wait_counts(ports: &[u16]) -> Result<BTreeMap<u16, u64>> {
    let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
    if ports.is_empty() {
        return Ok(counts);
    }
    each_tcp_socket(StateFlags::TIME_WAIT, Detail::Ends, |socket| {
        let matched = [socket.local.port(), socket.remote.port()]
            .into_iter()
            .find(|port| ports.binary_search(port).is_ok());
        if let Some(port) = matched {
            *counts.entry(port).or_default() += 1;
        }
    })?;
    Ok(counts)
}

/// Asks for a dump of the TCP sockets of `family` in `states`.
fn request(
    socket: &mut Socket,
    family: u8,
    socket_id: SocketId,
    states: StateFlags,
    detail: Detail,
) -> Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: match detail {
                Detail::Ends => ExtensionFlags::empty(),
                Detail::Counters => ExtensionFlags::INFO,
            },
            states,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut buffer = vec![0; request.buffer_len()];
    request.serialize(&mut buffer);
    socket
        .send(&buffer, 0)
        .context("cannot send the sock_diag request")?;
    Ok(())
}

/// Reads the reply to [`request`] up to its end, handing each socket to `visit`.
fn read_dump(
    socket: &mut Socket,
    receive: &mut [u8],
    detail: Detail,
    visit: &mut impl FnMut(DiagSocket),
) -> Result<()> {
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .context("cannot read the sock_diag reply")?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkBuffer::new_checked(&receive[offset..size])
                .context("malformed sock_diag reply")?;
            match message.message_type() {
                SOCK_DIAG_BY_FAMILY => {
                    let header = InetResponseHeader::parse(message.payload())
                        .context("malformed sock_diag reply")?;
                    let id = &header.socket_id;
                    let (counters, cgroup_id) = match detail {
                        Detail::Counters => attributes(message.payload()),
                        Detail::Ends => (None, None),
                    };
                    visit(DiagSocket {
                        state: TcpState::from_kernel(header.state),
                        local: SocketAddr::new(id.source_address, id.source_port),
                        remote: SocketAddr::new(id.destination_address, id.destination_port),
                        inode: header.inode,
                        counters,
                        cgroup_id,
                    });
                }
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let message =
                        <NetlinkMessage<SockDiagMessage>>::deserialize(&receive[offset..size])
                            .context("malformed sock_diag error")?;
                    if let NetlinkPayload::Error(error) = message.payload {
                        bail!("sock_diag refused the dump: {error:?}");
                    }
                }
                _ => {}
            }
            let length = message.length() as usize;
            if length == 0 {
                break;
            }
            offset += length.next_multiple_of(NLMSG_ALIGN);
        }
    }
}

/// `INET_DIAG_CGROUP_ID` in `include/uapi/linux/inet_diag.h`: sent with every full
/// socket (5.7+), asked for or not.
const INET_DIAG_CGROUP_ID: u16 = 21;

/// The counters in a reply's `tcp_info` attribute (a kernel whose `tcp_info` is shorter
/// than the one the parser knows, before 5.4, gives none), and the socket's cgroup id.
fn attributes(payload: &[u8]) -> (Option<TcpCounters>, Option<u64>) {
    let Ok(response) = InetResponse::parse(payload) else {
        return (None, None);
    };
    let (mut counters, mut cgroup_id) = (None, None);
    for nla in &response.nlas {
        match nla {
            Nla::TcpInfo(info) => {
                counters = Some(TcpCounters {
                    bytes_acked: info.bytes_acked,
                    bytes_received: info.bytes_received,
                    retransmits: info.total_retrans,
                    rtt_us: info.rtt,
                });
            }
            Nla::Other(other) if other.kind() == INET_DIAG_CGROUP_ID => {
                let mut value = [0u8; 8];
                if other.value_len() == value.len() {
                    other.emit_value(&mut value);
                    cgroup_id = Some(u64::from_ne_bytes(value));
                }
            }
            _ => {}
        }
    }
    (counters, cgroup_id)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        net::{TcpListener, TcpStream},
        thread,
        time::{Duration, Instant},
    };

    use super::*;

    /// Closes `first`, waits for `second` to see the FIN, then closes `second`: `first`
    /// ends in TIME_WAIT.
    fn close_first(first: TcpStream, mut second: TcpStream) {
        drop(first);
        assert_eq!(second.read(&mut [0u8; 1]).unwrap(), 0);
    }

    #[test]
    fn counts_time_wait_sockets_for_the_traced_port_they_matched() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let quiet = TcpListener::bind("127.0.0.1:0").unwrap();
        let quiet_port = quiet.local_addr().unwrap().port();
        let pair = || {
            let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
            (client, listener.accept().unwrap().0)
        };
        // Two servers close first (TIME_WAIT on the local port), one client does (on the
        // remote port).
        for _ in 0..2 {
            let (client, server) = pair();
            close_first(server, client);
        }
        let (client, server) = pair();
        close_first(client, server);

        let mut ports = [port, quiet_port];
        ports.sort_unstable();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut counts = time_wait_counts(&ports).unwrap();
        while counts.get(&port) < Some(&3) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            counts = time_wait_counts(&ports).unwrap();
        }
        assert_eq!(counts, BTreeMap::from([(port, 3)]));
    }
}
