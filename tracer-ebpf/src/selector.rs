//! The selector: the one place that decides whether a connection is traced, called first
//! by every hook. Its rules are cheapest first and reject early: traffic it does not
//! select costs one read of the socket's head and a bit test, with no map update, no
//! clock and no address copy.
//!
//! A new rule goes in [`select`], after the port rule, reading what it needs from the
//! [`Candidate`] and a read-only global the daemon sets before load (beside
//! [`PORT_FILTER`], from the daemon's `kernel/selector.rs`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
    programs::TracePointContext,
};
use tracer_common::{
    AF_INET, CGROUP_DEPTH, EndpointLayout, Endpoints, NET_KEY_BITS, PortFilter, SELECTED_CGROUPS,
    SELECTED_NETS, SelectorRules, net_key_v4,
};

use crate::{
    kernel::{Sock, cgroup_node_id, cgroup_node_parent, sock_cgroup_node},
    output::EventSocket,
    record,
};

/// Set by the daemon before load: the traced ports.
#[unsafe(no_mangle)]
static PORT_FILTER: PortFilter = PortFilter::EMPTY;

/// Set by the daemon before load: which rules beyond the ports are on.
#[unsafe(no_mangle)]
static SELECTOR_RULES: SelectorRules = SelectorRules {
    cgroups: 0,
    nets: 0,
    _pad: [0; 6],
};

/// The selected cgroups, by id; kept current by the daemon.
#[map(name = "SELECTED_CGROUPS")]
static SELECTED: HashMap<u64, u8> = HashMap::with_max_entries(SELECTED_CGROUPS, 0);

/// The selected networks, keyed by `net_key` addresses; filled by the daemon after load.
#[map(name = "SELECTED_NETS")]
static NETS: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(SELECTED_NETS, 0);

/// What a hook knows about the connection it fires for: what the rules may look at.
pub enum Candidate<'a> {
    /// A full socket (its head already read): every hook but the reset, retransmit and
    /// timewait ones.
    Socket(&'a Sock),
    /// A timewait socket (its head already read), which keeps no cgroup: not selected
    /// under a cgroup rule.
    Timewait(&'a Sock),
    /// A tracepoint record (resets, retransmits), which carries the connection's ends
    /// even when no socket does, and the socket whose cgroup it belongs to (a SYN-ACK's:
    /// its listener's).
    Record(&'a TracePointContext, &'a EndpointLayout, EventSocket),
}

impl Candidate<'_> {
    /// The connection's (local, remote) ports: read before anything else.
    #[inline(always)]
    fn ports(&self) -> Option<(u16, u16)> {
        match self {
            Self::Socket(sock) | Self::Timewait(sock) => sock.ports(),
            Self::Record(ctx, layout, _) => record::ports(ctx, layout),
        }
    }

    /// The full socket whose cgroup the connection is in; 0 for a socket without one,
    /// which belongs to no selected workload.
    #[inline(always)]
    fn cgroup_socket(&self) -> u64 {
        match self {
            Self::Socket(sock) => sock.sk,
            Self::Record(_, _, EventSocket::Full(sk)) => *sk,
            Self::Timewait(_) | Self::Record(_, _, EventSocket::Mini(_)) => 0,
        }
    }

    #[inline(always)]
    fn endpoints(&self, ports: (u16, u16)) -> Option<Endpoints> {
        match self {
            Self::Socket(sock) | Self::Timewait(sock) => sock.endpoints(ports),
            Self::Record(ctx, layout, _) => record::endpoints(ctx, layout),
        }
    }
}

/// The connection's (local, remote) ports when it is traced, `None` when not.
#[inline(always)]
pub fn select(candidate: Candidate) -> Option<(u16, u16)> {
    let ports = candidate.ports()?;
    // Rule 1, the cheapest: either end's port is traced.
    if !(port_traced(ports.0) || port_traced(ports.1)) {
        return None;
    }
    let rules = rules();
    // Rule 2: the socket's cgroup is a selected one or below one.
    if rules.cgroups != 0 && !in_selected_cgroup(candidate.cgroup_socket()) {
        return None;
    }
    // Rule 3: either end's address is in a selected network.
    if rules.nets != 0
        && !candidate
            .endpoints(ports)
            .is_some_and(|e| in_selected_net(&e))
    {
        return None;
    }
    Some(ports)
}

#[inline(always)]
fn rules() -> SelectorRules {
    // SAFETY: a read-only global the loader wrote before load; volatile so the compiler
    // does not fold the placeholder.
    unsafe { core::ptr::read_volatile(&raw const SELECTOR_RULES) }
}

#[inline(always)]
fn port_traced(port: u16) -> bool {
    let (word, bit) = PortFilter::bit(port);
    // SAFETY: a read-only global the loader wrote before load; volatile so the compiler
    // does not fold the placeholder. `word` is below `PORTS_WORDS`.
    unsafe { core::ptr::read_volatile(&raw const PORT_FILTER.words[word]) & bit != 0 }
}

/// Whether `sk`'s cgroup, or one of its ancestors, is selected.
#[inline(always)]
fn in_selected_cgroup(sk: u64) -> bool {
    let Some(mut node) = (sk != 0).then(|| sock_cgroup_node(sk)).flatten() else {
        return false;
    };
    for _ in 0..CGROUP_DEPTH {
        let Some(id) = cgroup_node_id(node) else {
            return false;
        };
        // SAFETY: the value is not read.
        if unsafe { SELECTED.get(id) }.is_some() {
            return true;
        }
        match cgroup_node_parent(node) {
            Some(parent) => node = parent,
            None => return false,
        }
    }
    false
}

/// Whether either end of `endpoints` is in a selected network.
#[inline(always)]
fn in_selected_net(endpoints: &Endpoints) -> bool {
    let key = |addr: &[u8; 16]| {
        let data = if endpoints.family == AF_INET {
            net_key_v4([addr[0], addr[1], addr[2], addr[3]])
        } else {
            *addr
        };
        Key::new(NET_KEY_BITS, data)
    };
    NETS.get(key(&endpoints.local_addr)).is_some()
        || NETS.get(key(&endpoints.remote_addr)).is_some()
}
