//! Who a connection belongs to (`pid`/`comm`), by the preference of the correlator's
//! module docs: the process that accepted or connected it, its listener's owner, or
//! the first process seen on it. Processes are shared by the records that name them.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
};

use crate::event::{EventMeta, Process};

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

/// A connection's owner so far.
#[derive(Clone, Debug)]
pub(super) struct Owner {
    process: Option<Arc<Process>>,
    rank: OwnerRank,
}

impl Default for Owner {
    fn default() -> Self {
        Self {
            process: None,
            rank: OwnerRank::None,
        }
    }
}

impl Owner {
    /// Takes `process` as the owner if it ranks above the current one.
    pub(super) fn offer(
        &mut self,
        process: Option<&Process>,
        rank: OwnerRank,
        processes: &mut Processes,
    ) {
        if let Some(process) = process
            && rank > self.rank
        {
            self.process = Some(processes.intern(process));
            self.rank = rank;
        }
    }

    /// Like [`Self::offer`], with a process already interned.
    pub(super) fn offer_shared(&mut self, process: Option<&Arc<Process>>, rank: OwnerRank) {
        if let Some(process) = process
            && rank > self.rank
        {
            self.process = Some(Arc::clone(process));
            self.rank = rank;
        }
    }

    pub(super) fn rank(&self) -> OwnerRank {
        self.rank
    }

    pub(super) fn process(&self) -> Option<&Process> {
        self.process.as_deref()
    }
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
            .map(|process| processes.intern(process));
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

/// Processes shared by the records that name them, so a record holds a pointer.
#[derive(Default)]
pub(super) struct Processes {
    by_pid: HashMap<u32, Arc<Process>>,
    /// Table size that triggers the next sweep: twice what the last one kept, so
    /// sweeping is amortized O(1) and the table at most twice the live processes.
    sweep_at: usize,
}

impl Processes {
    pub(super) fn intern(&mut self, process: &Process) -> Arc<Process> {
        if let Some(known) = self.by_pid.get(&process.pid)
            && known.comm == process.comm
        {
            return Arc::clone(known);
        }
        if self.by_pid.len() >= self.sweep_at {
            // Forget processes no record or listener names any more.
            self.by_pid.retain(|_, known| Arc::strong_count(known) > 1);
            self.sweep_at = 2 * self.by_pid.len() + 64;
        }
        let interned = Arc::new(process.clone());
        self.by_pid.insert(process.pid, Arc::clone(&interned));
        interned
    }
}
