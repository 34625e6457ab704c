//! The selector: the one place that decides whether a connection is traced, called first
//! by every hook. Its rules are cheapest first and reject early: traffic it does not
//! select costs one read of the socket's head and a bit test, with no map update, no
//! clock and no address copy.
//!
//! A new rule (a cgroup, an address range) goes in [`select`], after the port rule, reading
//! what it needs from the [`Candidate`] and a read-only global the daemon sets before load
//! (beside [`PORT_FILTER`], from the daemon's `kernel/selector.rs`).

use tracer_common::PortFilter;

use crate::kernel::Sock;

/// Set by the daemon before load: the traced ports.
#[unsafe(no_mangle)]
static PORT_FILTER: PortFilter = PortFilter::EMPTY;

/// What a hook knows about the connection it fires for: what the rules may look at.
pub enum Candidate<'a> {
    /// The socket (its head already read): every hook but the reset and retransmit
    /// tracepoints.
    Socket(&'a Sock),
    /// Only the (local, remote) ports of a tracepoint record (resets, retransmits), which
    /// carries the connection's ends even when no socket does.
    Record((u16, u16)),
}

/// The connection's (local, remote) ports when it is traced, `None` when not.
#[inline(always)]
pub fn select(candidate: Candidate) -> Option<(u16, u16)> {
    let ports = match candidate {
        Candidate::Socket(sock) => sock.ports()?,
        Candidate::Record(ports) => ports,
    };
    // Rule 1, the cheapest: either end's port is traced.
    if !(port_traced(ports.0) || port_traced(ports.1)) {
        return None;
    }
    Some(ports)
}

#[inline(always)]
fn port_traced(port: u16) -> bool {
    let (word, bit) = PortFilter::bit(port);
    // SAFETY: a read-only global the loader wrote before load; volatile so the compiler
    // does not fold the placeholder. `word` is below `PORTS_WORDS`.
    unsafe { core::ptr::read_volatile(&raw const PORT_FILTER.words[word]) & bit != 0 }
}
