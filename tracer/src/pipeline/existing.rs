//! Connections already open when tracing starts, read from the kernel with sock_diag
//! (the netlink interface `ss` uses), so their later events belong to a connection
//! instead of arriving out of nowhere.
//!
//! sock_diag does not give the kernel's socket address that events carry (`sock`), so
//! these come with `sock` 0 and are matched to later events by their addresses.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use crate::event::{EventMeta, Existing, TcpState};

/// Bytes read from the netlink socket at a time: a page of the kernel's sock_diag dump is
/// at most 32 KiB (it sizes its messages to the reader's buffer, up to that), so this
/// never cuts a message.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Open TCP connections of this network namespace with a local or remote port in
/// `ports` (listeners excluded: they are not connections), stamped `boot_ns`.
pub fn connections(ports: &[u16], boot_ns: u64) -> Result<Vec<Existing>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("cannot open a sock_diag socket")?;
    socket
        .bind_auto()
        .context("cannot bind the sock_diag socket")?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .context("cannot connect the sock_diag socket")?;
    let mut found = Vec::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        for (state, local, remote) in dump(&mut socket, family, id)? {
            let traced = ports.contains(&local.port()) || ports.contains(&remote.port());
            if traced && state != TcpState::Listen {
                let meta = EventMeta {
                    boot_ns,
                    sock: 0,
                    process: None,
                    local,
                    remote,
                };
                found.push(Existing { meta, state });
            }
        }
    }
    Ok(found)
}

/// Every TCP socket of `family`: (state, local, remote).
fn dump(
    socket: &mut Socket,
    family: u8,
    socket_id: SocketId,
) -> Result<Vec<(TcpState, SocketAddr, SocketAddr)>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
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

    let mut sockets = Vec::new();
    let mut receive = vec![0; RECEIVE_BUFFER];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .context("cannot read the sock_diag reply")?;
        let mut offset = 0;
        while offset < size {
            let message = <NetlinkMessage<SockDiagMessage>>::deserialize(&receive[offset..size])
                .context("malformed sock_diag reply")?;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let id = &response.header.socket_id;
                    sockets.push((
                        TcpState::from_kernel(response.header.state),
                        SocketAddr::new(id.source_address, id.source_port),
                        SocketAddr::new(id.destination_address, id.destination_port),
                    ));
                }
                NetlinkPayload::Done(_) => return Ok(sockets),
                NetlinkPayload::Error(error) => bail!("sock_diag refused the dump: {error:?}"),
                _ => {}
            }
            if message.header.length == 0 {
                break;
            }
            offset += message.header.length as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn finds_an_open_loopback_connection_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let found = connections(&[port], 7).unwrap();
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let ends: Vec<_> = found
            .iter()
            .map(|e| (e.meta.local, e.meta.remote, e.state))
            .collect();
        assert!(
            ends.contains(&(local, remote, TcpState::Established)),
            "{ends:?}"
        );
        assert!(
            ends.contains(&(remote, local, TcpState::Established)),
            "{ends:?}"
        );
        assert_eq!(found.len(), 2, "the listener is not a connection: {ends:?}");
        assert!(
            found
                .iter()
                .all(|e| e.meta.boot_ns == 7 && e.meta.sock == 0)
        );
    }
}
