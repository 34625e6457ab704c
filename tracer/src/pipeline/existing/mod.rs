//! Connections already open when tracing starts, read from the kernel with sock_diag
//! (the netlink interface `ss` uses), so their later events belong to a connection
//! instead of arriving out of nowhere: in every network namespace a process is in
//! ([`netns`]: pods and containers have their own), each with the process holding it
//! ([`owners`]).
//!
//! sock_diag does not give the kernel's socket address that events carry (`sock`), so
//! these come with `sock` 0 and are matched to later events by their addresses.
//!
//! Listeners come first: they are not connections, but they tell the correlator which of
//! the connections found is the server's side (its local port has a listener in the same
//! namespace), and who owns it. TIME_WAIT sockets are what is left of connections
//! already closed: no event of theirs follows that a record could take, so a busy port's
//! tens of thousands would only count as `unmatched_events`. The request leaves them
//! out, so the kernel does not even send them; the `tracer_time_wait_sockets` gauge
//! counts them instead ([`super::sock_diag::time_wait_counts`]).
//!
//! Entering another namespace takes CAP_SYS_ADMIN, reading another user's descriptors
//! CAP_SYS_PTRACE: the daemon reads all this before it drops its capabilities, and says
//! on stderr what it could not read.

pub mod netns;
pub mod owners;

use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::sock_diag::{self, Detail, DiagSocket, StateFlags};
use crate::{
    event::{Cgroup, EventMeta, Existing, TcpState},
    kernel::selector::traces_port,
};

/// How long looking for the sockets' owners may take at most.
const OWNER_SEARCH: Duration = Duration::from_secs(2);

/// The states asked for: all but TIME_WAIT.
fn wanted_states() -> StateFlags {
    StateFlags::all() - StateFlags::TIME_WAIT
}

/// What was found open at start, and what could not be read (one line each).
#[derive(Debug, Default)]
pub struct OpenAtStart {
    pub connections: Vec<Existing>,
    /// Every process holding one of them (listeners included), when asked for.
    pub holders: BTreeSet<u32>,
    pub warnings: Vec<String>,
}

/// The traced sockets of the calling thread's network namespace.
fn traced_sockets(ports: &[u16]) -> Result<Vec<DiagSocket>> {
    let mut found = Vec::new();
    sock_diag::each_tcp_socket(wanted_states(), Detail::Counters, |socket| {
        let traced = [socket.local.port(), socket.remote.port()]
            .into_iter()
            .any(|port| traces_port(ports, port));
        // The kernel already left these out; kept here so the filter stands on its own.
        if traced && socket.state != TcpState::TimeWait {
            found.push(socket);
        }
    })?;
    Ok(found)
}

/// Listeners and open TCP connections with a local or remote port in `ports` (sorted; TIME_WAIT
/// sockets excluded), in every network namespace, stamped `boot_ns`: the listeners first;
/// with `holders`, every process holding one. Fails only when tracer's own namespace
/// cannot be read.
pub fn connections(ports: &[u16], boot_ns: u64, holders: bool) -> Result<OpenAtStart> {
    let namespaces = netns::all()?;
    let mut found = Vec::new();
    let mut not_entered = (0, None);
    for namespace in &namespaces.all {
        match namespace.visit(|| traced_sockets(ports)) {
            Ok(sockets) => found.extend(sockets.into_iter().map(|s| (namespace.inode, s))),
            Err(error) if namespace.pid.is_none() => return Err(error),
            Err(error) => {
                not_entered.0 += 1;
                not_entered.1.get_or_insert(error);
            }
        }
    }
    let inodes: HashSet<u32> = found
        .iter()
        .map(|(_, socket)| socket.inode)
        .filter(|&inode| inode != 0)
        .collect();
    let owners = owners::find(&inodes, Instant::now() + OWNER_SEARCH, holders);
    let mut open = OpenAtStart {
        holders: owners.holders,
        ..OpenAtStart::default()
    };
    if let (count, Some(error)) = not_entered {
        open.warnings.push(format!(
            "cannot read the connections open at start in {count} of {} network namespaces ({error:#}; entering one takes CAP_SYS_ADMIN): they will have no connection record",
            namespaces.all.len()
        ));
    }
    if namespaces.hidden > 0 {
        open.warnings.push(format!(
            "cannot see the network namespace of {} processes (that takes CAP_SYS_PTRACE): connections open at start there, if any, will have no connection record",
            namespaces.hidden
        ));
    }
    if owners.cut_short {
        // With `holders` the search goes on after every socket has an owner: then only
        // the holders' list is short (the processes `--tls auto` hooks).
        let without = inodes.len() - owners.by_inode.len();
        open.warnings.push(if without > 0 {
            format!(
                "looking for the processes holding the connections open at start took over {} s: {without} of {} have no pid",
                OWNER_SEARCH.as_secs(),
                inodes.len()
            )
        } else {
            format!(
                "looking for every process holding a traced socket took over {} s: some may not have their TLS library hooked",
                OWNER_SEARCH.as_secs()
            )
        });
    }
    open.connections = found
        .into_iter()
        .map(|(netns, socket)| Existing {
            meta: EventMeta {
                boot_ns,
                sock: 0,
                process: owners.by_inode.get(&socket.inode).cloned(),
                cgroup: socket.cgroup_id.map(|id| Cgroup::new(id, None)),
                local: socket.local,
                remote: socket.remote,
            },
            state: socket.state,
            netns: Some(netns),
            counters: socket.counters,
        })
        .collect();
    // Stable: the kernel's order otherwise.
    open.connections
        .sort_by_key(|existing| existing.state != TcpState::Listen);
    Ok(open)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        net::{TcpListener, TcpStream},
        thread,
        time::{Duration, Instant},
    };

    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn finds_an_open_loopback_connection_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let open = connections(&[port], 7, true).unwrap();
        // This process holds all three sockets.
        assert_eq!(open.holders, BTreeSet::from([std::process::id()]));
        let found = open.connections;
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
        // Held by this process, in its namespace.
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        for existing in &found {
            assert_eq!(existing.netns, Some(own), "{existing:?}");
            assert_eq!(
                existing.meta.process.as_ref().map(|p| p.pid),
                Some(std::process::id()),
                "{existing:?}"
            );
        }
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
        while sock_diag::time_wait_counts(&[port]).unwrap().get(&port) != Some(&1) {
            assert!(Instant::now() < deadline, "no TIME_WAIT socket on {port}");
            thread::sleep(Duration::from_millis(20));
        }
        let found = connections(&[port], 0, false).unwrap().connections;
        assert!(
            found.iter().all(|e| e.state == TcpState::Listen),
            "only the listener: {found:?}"
        );
    }
}
