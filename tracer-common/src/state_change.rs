//! The state-change hook: a socket's TCP state transitions, and its counters as it closes.

use crate::Endpoints;

/// `TCP_CLOSE` in the kernel's `include/net/tcp_states.h`.
pub const TCP_CLOSE: u8 = 7;
/// A state field the kernel did not provide.
pub const NO_STATE: u8 = 0;

/// A TCP socket changed state (to any state but CLOSE: see [`Close`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub endpoints: Endpoints,
    /// `TCP_*` state numbers as in the kernel's `include/net/tcp_states.h`.
    pub old_state: u8,
    pub new_state: u8,
    pub _pad: [u8; 2],
    /// On entering ESTABLISHED, `srtt_us` (eight times the smoothed RTT in microseconds,
    /// 0 before any sample): for a server, the kernel's measure of its SYN-ACK's round
    /// trip; 0 in other states.
    pub srtt_us_x8: u32,
    /// On entering ESTABLISHED, `total_retrans`: for a server, SYN-ACKs sent again.
    pub retransmits: u32,
    pub _pad2: u32,
}

/// `Close::last_data_ns` when the socket never carried data.
pub const NO_DATA: u64 = 0;

/// `Close::flags`: the peer's FIN arrived (`SOCK_DONE`), so `bytes_received` counts it.
pub const CLOSE_FIN_RECEIVED: u8 = 1;
/// `Close::flags`: everything this side queued was acknowledged (`snd_una == write_seq`),
/// its FIN included if it sent one.
pub const CLOSE_ALL_ACKED: u8 = 2;

/// A socket entered CLOSE: its state change and its `tcp_sock` counters, in one record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    pub endpoints: Endpoints,
    /// RFC 4898 counters: sequence space acknowledged by the peer and received, SYN and
    /// FIN included where they were.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Boot-clock time of the last data sent or received, or [`NO_DATA`].
    pub last_data_ns: u64,
    pub total_retrans: u32,
    /// `srtt_us` as the kernel keeps it: eight times the smoothed RTT in microseconds.
    pub srtt_us_x8: u32,
    pub netns: u32,
    /// The state the socket left.
    pub old_state: u8,
    /// `CLOSE_*` bits.
    pub flags: u8,
    /// `sock.sk_err` as the socket closed: the error its application is given (an errno
    /// such as `ECONNREFUSED` or `ETIMEDOUT`), 0 for none, 255 when larger.
    pub error: u8,
    pub _pad: u8,
}
