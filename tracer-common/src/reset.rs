//! The reset hook: RSTs sent and received (`tcp:tcp_send_reset`, `tcp:tcp_receive_reset`).

use crate::Endpoints;

/// `Reset::direction`.
pub const RESET_SENT: u8 = 0;
pub const RESET_RECEIVED: u8 = 1;
/// `Reset::reason` when the kernel gives none.
pub const NO_REASON: u32 = u32::MAX;

/// A TCP reset sent (`tcp:tcp_send_reset`) or received (`tcp:tcp_receive_reset`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    pub endpoints: Endpoints,
    /// `enum sk_rst_reason` where the tracepoint has it, else [`NO_REASON`].
    pub reason: u32,
    /// [`RESET_SENT`] or [`RESET_RECEIVED`].
    pub direction: u8,
    /// The socket's state, or [`NO_STATE`](crate::NO_STATE).
    pub state: u8,
    pub _pad: [u8; 2],
}
