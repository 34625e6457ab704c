//! Types shared by the eBPF programs (`tracer-ebpf`) and the daemon (`tracer`).
//!
//! Every record in the ring buffer starts with an [`EventHeader`]; its `kind` says which
//! payload follows. All types are `#[repr(C)]` with explicit padding so both sides agree
//! on the layout byte for byte.
#![no_std]

/// Name of the BPF ring buffer carrying events to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU counter of ring buffer reservations that failed (events lost).
pub const LOST_MAP: &str = "LOST";
/// Name of the bitmap of traced ports: bit `port % 64` of word `port / 64`.
pub const PORTS_MAP: &str = "PORTS";
/// Words in [`PORTS_MAP`]: one bit for each of the 65536 ports.
pub const PORTS_WORDS: u32 = 65536 / 64;
/// Name of the per-CPU flag set while the CPU serves a softirq.
pub const IN_SOFTIRQ_MAP: &str = "IN_SOFTIRQ";

/// Name of the global holding [`SetStateLayout`].
pub const SET_STATE_LAYOUT_GLOBAL: &str = "SET_STATE_LAYOUT";

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;

/// What follows the header.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    StateChange = 1,
}

impl EventKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::StateChange),
            _ => None,
        }
    }
}

/// `EventHeader::flags`: the event was produced in process context, so `pid_tgid` and
/// `comm` name the process that caused it. Without it the kernel was serving a softirq
/// and the current task is whatever it interrupted.
pub const FLAG_PROCESS_CONTEXT: u8 = 1;

/// The envelope of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// `CLOCK_BOOTTIME` in nanoseconds (`bpf_ktime_get_boot_ns`).
    pub timestamp_ns: u64,
    /// Kernel address of the `struct sock`: the socket's identity while it lives.
    pub sock: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the high 32 bits, thread id in the low.
    pub pid_tgid: u64,
    /// `bpf_get_current_comm()`: NUL-padded, not necessarily UTF-8.
    pub comm: [u8; 16],
    /// An [`EventKind`].
    pub kind: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    pub _pad: [u8; 6],
}

/// A TCP socket changed state (`sock:inet_sock_set_state`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// `TCP_*` state numbers as in the kernel's `include/net/tcp_states.h`.
    pub old_state: u8,
    pub new_state: u8,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    /// IPv4 in the first 4 bytes (network order), or IPv6.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// A ring buffer record: header plus payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<T> {
    pub header: EventHeader,
    pub payload: T,
}

/// Byte offsets of the `sock:inet_sock_set_state` fields in the tracepoint record, read
/// from tracefs at start-up because they differ between kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetStateLayout {
    pub skaddr: u16,
    pub oldstate: u16,
    pub newstate: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    /// [`FIELD_ABSENT`] on kernels whose tracepoint has no `protocol` field (TCP only).
    pub protocol: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
}

/// A layout offset for a field the running kernel does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::SetStateLayout {}
}
