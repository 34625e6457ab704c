//! The way events reach the daemon: the ring buffer, when the programs wake the daemon,
//! and the per-CPU counts that make a loss visible.

/// Name of the BPF ring buffer carrying events to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU [`EmitCounts`]: events the programs tried to send, and those the
/// ring buffer had no room for.
pub const EMIT_COUNTS_MAP: &str = "EMIT_COUNTS";
/// The smallest ring buffer the kernel takes: one page (its size must be a power of two
/// and a multiple of the page size).
pub const MIN_RING_BYTES: u32 = 4096;

/// Per CPU: events reserved or attempted, and those lost because the ring buffer was
/// full. `sent == received + lost` once userspace has drained the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitCounts {
    pub sent: u64,
    pub lost: u64,
}

// SAFETY: plain `#[repr(C)]` data, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for EmitCounts {}

/// When the programs wake the daemon, set before load: events are submitted without a
/// wakeup until `wakeup_bytes` wait in the ring buffer, so the daemon reads them in
/// batches (it also drains on a short timer, which bounds the latency).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    pub wakeup_bytes: u64,
}

// SAFETY: plain `#[repr(C)]` data, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for RingConfig {}
