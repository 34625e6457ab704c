//! tracer's eBPF programs: they watch TCP sockets in the kernel, keep only those on the
//! traced ports, and send one record per event through the `EVENTS` ring buffer.
//!
//! Each hook comes in the variants the daemon's attach plan chooses from: a tracepoint
//! (stable, always there) and, where the kernel allows, a kprobe or fentry program.
//!
//! Every helper function is `#[inline(always)]`: calls between BPF functions add up
//! their stack frames, and older verifiers (6.1) refuse a program whose frames together
//! pass 512 bytes even when each fits.
#![no_std]
#![no_main]
// For BPF's atomic add (see `output::count`).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod accept;
mod context;
mod data;
mod floor;
mod keepalive;
mod kernel;
mod output;
mod record;
mod reset;
mod retransmit;
mod selector;
mod state_change;
mod timewait;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL: the tracepoints and helpers used here are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
