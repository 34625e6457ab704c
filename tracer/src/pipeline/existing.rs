//! Connections already open when tracing starts, read from the kernel with sock_diag
//! (the netlink interface `ss` uses), so their later events belong to a connection
//! instead of arriving out of nowhere.
//!
//! sock_diag does not give the kernel's socket address that events carry (`sock`), so
//! these come with `sock` 0 and are matched to later events by their addresses.
//!
//! Listeners come first: they are not connections, but they tell the correlator which of
//! the connections found is the server's side (its local port has a listener), and who
//! owns it. TIME_WAIT sockets are what is left of connections already closed: no event of
//! theirs follows that a record could take, so a busy port's tens of thousands would only
//! count as `unmatched_events`. The request leaves them out, so the kernel does not even
//! send them; the `tracer_time_wait_sockets` gauge counts them instead
//! ([`super::sock_diag::time_wait_counts`]).

use anyhow::Result;

use super::sock_diag::{self, StateFlags};
use crate::event::{EventMeta, Existing, TcpState};

/// The states asked for: all but TIME_WAIT.
fn wanted_states() -> StateFlags {
    StateFlags::all() - StateFlags::TIME_WAIT
}

/// Listeners and open TCP connections of this network namespace with a local or remote
/// port in `ports` (TIME_WAIT sockets excluded), stamped `boot_ns`: the listeners first.
pub fn connections(ports: &[u16], boot_ns: u64) -> Result<Vec<Existing>> {
    let mut found = Vec::new();
    sock_diag::each_tcp_socket(wanted_states(), |state, local, remote| {
        let traced = ports.contains(&local.port()) || ports.contains(&remote.port());
        // The kernel already left these out; kept here so the filter stands on its own.
        if traced && state != TcpState::TimeWait {
            let meta = EventMeta {
                boot_ns,
                sock: 0,
                process: None,
                local,
                remote,
            };
            found.push(Existing { meta, state });
        }
    })?;
    // Stable: the kernel's order otherwise.
    found.sort_by_key(|existing| existing.state != TcpState::Listen);
    Ok(found)
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
        let listener = (listener.local_addr().unwrap(), "0.0.0.0:0".parse().unwrap());
        assert_eq!(
            found
                .first()
                .map(|e| (e.meta.local, e.meta.remote, e.state)),
            Some((listener.0, listener.1, TcpState::Listen)),
            "the listener first: {ends:?}"
        );
        assert_eq!(found.len(), 3, "{ends:?}");
        assert!(
            found
                .iter()
                .all(|e| e.meta.boot_ns == 7 && e.meta.sock == 0)
        );
    }

    #[test]
    fn leaves_out_connections_in_time_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // The client closes first and holds TIME_WAIT.
        drop(client);
        assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        while sock_diag::time_wait_counts(&[port]).unwrap()[&port] != 1 {
            assert!(Instant::now() < deadline, "no TIME_WAIT socket on {port}");
            thread::sleep(Duration::from_millis(20));
        }
        let found = connections(&[port], 0).unwrap();
        assert!(
            found.iter().all(|e| e.state == TcpState::Listen),
            "only the listener: {found:?}"
        );
    }
}
