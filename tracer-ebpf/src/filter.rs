//! The in-kernel port filter: events on other ports never reach the ring buffer.

use aya_ebpf::{macros::map, maps::Array};
use tracer_common::{Endpoints, PORTS_WORDS};

/// Bit `port % 64` of word `port / 64` is set for every traced port.
#[map(name = "PORTS")]
static PORTS: Array<u64> = Array::with_max_entries(PORTS_WORDS, 0);

#[inline(always)]
fn is_traced(port: u16) -> bool {
    PORTS
        .get(u32::from(port / 64))
        .is_some_and(|word| word & (1 << (port % 64)) != 0)
}

/// A connection is traced when either end's port is.
#[inline(always)]
pub fn is_traced_connection(endpoints: &Endpoints) -> bool {
    is_traced(endpoints.local_port) || is_traced(endpoints.remote_port)
}
