//! Who a connection belongs to (`pid`/`comm`), by the preference of the correlator's
//! module docs: the process that accepted or connected it, its listener's owner, or
//! the first process seen on it. Processes, and the cgroups of sockets, are shared by the
//! records that name them.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
};

use crate::event::{Cgroup, EventMeta, Process};

/// Listeners remembered for the owner fallback; past that the oldest is forgotten.
const LISTENERS: usize = 1024;

/// How sure an owner is, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum OwnerRank {
    None,
    /// Some process-context event of the connection.
    Seen,
    Listener,
    /// connect() or accept().
    Direct,
}

struct Listener {
    sock: u64,
    addr: SocketAddr,
    /// Its network namespace, when known (a listener found at start).
    netns: Option<u32>,
    owner: Option<Arc<Process>>,
}

/// Sockets in LISTEN with their owners, most recent last.
#[derive(Default)]
pub(super) struct Listeners(VecDeque<Listener>);

impl Listeners {
    /// A listener at `meta`, in network namespace `netns` when known. A socket that
    /// listens again replaces its entry (those found at start have no `sock`).
    pub(super) fn add(&mut self, meta: &EventMeta, netns: Option<u32>, processes: &mut Processes) {
        if meta.sock != 0 {
            self.remove(meta.sock);
        }
        if self.0.len() == LISTENERS {
            self.0.pop_front();
        }
        let owner = meta
            .process
            .as_ref()
            .map(|process| processes.intern(process.pid.into(), process));
        self.0.push_back(Listener {
            sock: meta.sock,
            addr: meta.local,
            netns,
            owner,
        });
    }

    pub(super) fn remove(&mut self, sock: u64) {
        self.0.retain(|listener| listener.sock != sock);
    }

    /// The listener a server socket with local address `local` (in network namespace
    /// `netns`, when known) was accepted from: same port, same address or a wildcard,
    /// exact address first, then the most recent; in the same namespace where both are
    /// known.
    fn find(&self, local: SocketAddr, netns: Option<u32>) -> Option<&Listener> {
        let same_port = || {
            self.0.iter().rev().filter(|l| {
                l.addr.port() == local.port()
                    && (l.netns.is_none() || netns.is_none() || l.netns == netns)
            })
        };
        same_port()
            .find(|l| l.addr.ip() == local.ip())
            .or_else(|| same_port().find(|l| l.addr.ip().is_unspecified()))
    }

    /// A server is a socket whose local port has a listener.
    pub(super) fn serves(&self, local: SocketAddr, netns: Option<u32>) -> bool {
        self.find(local, netns).is_some()
    }

    pub(super) fn owner(&self, local: SocketAddr) -> Option<&Arc<Process>> {
        self.find(local, None)
            .and_then(|listener| listener.owner.as_ref())
    }
}

/// Values shared by the records that name them, by a key (a pid, a cgroup id), so a
/// record holds a pointer.
pub(super) struct Shared<T> {
    by_key: HashMap<u64, Arc<T>>,
    /// Table size that triggers the next sweep: twice what the last one kept, so
    /// sweeping is amortized O(1) and the table at most twice the live values.
    sweep_at: usize,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            sweep_at: 0,
        }
    }
}

impl<T: Clone + PartialEq> Shared<T> {
    pub(super) fn intern(&mut self, key: u64, value: &T) -> Arc<T> {
        if let Some(known) = self.by_key.get(&key)
            && **known == *value
        {
            return Arc::clone(known);
        }
        if self.by_key.len() >= self.sweep_at {
            // Forget values no record or listener names any more.
            self.by_key.retain(|_, known| Arc::strong_count(known) > 1);
            self.sweep_at = 2 * self.by_key.len() + 64;
        }
        let interned = Arc::new(value.clone());
        self.by_key.insert(key, Arc::clone(&interned));
        interned
    }
}

pub(super) type Processes = Shared<Process>;
pub(super) type Cgroups = Shared<Cgroup>;
