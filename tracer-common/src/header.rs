//! The envelope of every ring buffer record: who and when, and which payload follows.

/// What follows the header.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    StateChange = 1,
    Reset = 2,
    Retransmit = 3,
    KeepaliveProbe = 4,
    KeepaliveTimeout = 5,
    DataTurn = 6,
    Close = 7,
    Accepted = 8,
    TimewaitEnd = 9,
    /// The application's data through a TLS library changed direction ([`crate::DataTurn`]).
    TlsTurn = 10,
    TlsHandshake = 11,
}

impl EventKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::StateChange,
            2 => Self::Reset,
            3 => Self::Retransmit,
            4 => Self::KeepaliveProbe,
            5 => Self::KeepaliveTimeout,
            6 => Self::DataTurn,
            7 => Self::Close,
            8 => Self::Accepted,
            9 => Self::TimewaitEnd,
            10 => Self::TlsTurn,
            11 => Self::TlsHandshake,
            _ => return None,
        })
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
    /// Kernel address of the `struct sock`: the socket's identity while it lives; 0 when
    /// the kernel acted without a socket (a reset answering a segment for no socket).
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
    /// The id of the socket's cgroup (v2), which it keeps from the task that created it,
    /// so it is right in softirq too; else, in process context, the current task's; 0
    /// when neither is known (a request or timewait socket, or no socket).
    pub cgroup_id: u64,
}

/// A ring buffer record: header plus payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<T> {
    pub header: EventHeader,
    pub payload: T,
}
