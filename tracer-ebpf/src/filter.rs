//! The in-kernel port filter, decided first and cheaply: the traced ports are a read-only
//! bitmap the daemon sets before load, so testing a port is one load, and a socket's two
//! ports come from one read. Traffic on other ports costs that and nothing more: no map
//! update, no clock, no address copy.

use tracer_common::PortFilter;

use crate::kernel::Sock;

/// Set by the daemon before load.
#[unsafe(no_mangle)]
static PORT_FILTER: PortFilter = PortFilter::EMPTY;

#[inline(always)]
fn is_traced(port: u16) -> bool {
    // SAFETY: a read-only global the loader wrote before load; volatile so the compiler
    // does not fold the placeholder. `port / 64` is below the 1024 words.
    let word =
        unsafe { core::ptr::read_volatile(&raw const PORT_FILTER.words[usize::from(port / 64)]) };
    word & (1 << (port % 64)) != 0
}

/// A connection is traced when either end's port is.
#[inline(always)]
pub fn is_traced_pair(local: u16, remote: u16) -> bool {
    is_traced(local) || is_traced(remote)
}

/// The socket's (local, remote) ports when its connection is traced.
#[inline(always)]
pub fn traced_ports(sock: &Sock) -> Option<(u16, u16)> {
    sock.ports()
        .filter(|&(local, remote)| is_traced_pair(local, remote))
}
