//! What the daemon knows about a kernel event once decoded: plain Rust values, with the
//! kernel's boot-clock timestamp (wall-clock conversion belongs to the sinks).

use std::{fmt, net::SocketAddr};

/// A TCP state, numbered as in the kernel's `include/net/tcp_states.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    /// A number this tracer does not know (a newer kernel's state).
    Unknown(u8),
}

impl TcpState {
    pub fn from_kernel(value: u8) -> Self {
        match value {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            12 => Self::NewSynRecv,
            other => Self::Unknown(other),
        }
    }

    /// The kernel's name without the `TCP_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(value) => write!(f, "UNKNOWN_{value}"),
            known => f.write_str(known.name()),
        }
    }
}

/// The process an event ran on behalf of: known only in process context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Thread group id (what `ps` calls the pid).
    pub pid: u32,
    /// The task's `comm`, lossily decoded: it need not be UTF-8.
    pub comm: String,
}

/// Fields every event has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// `CLOCK_BOOTTIME`, nanoseconds.
    pub boot_ns: u64,
    /// Kernel address of the socket.
    pub sock: u64,
    /// `None` when the kernel was serving a softirq.
    pub process: Option<Process>,
}

/// A TCP socket changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub meta: EventMeta,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub old_state: TcpState,
    pub new_state: TcpState,
}

/// One decoded kernel event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    StateChange(StateChange),
}
