//! tracer's eBPF programs: they watch TCP sockets in the kernel, keep only those on the
//! traced ports, and send one record per event through the `EVENTS` ring buffer.
#![no_std]
#![no_main]

mod context;
mod filter;
mod output;
mod state_change;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL: the tracepoints and helpers used here are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
