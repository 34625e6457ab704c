//! The timewait hook: how a connection handed to a timewait socket in `FIN_WAIT2` ends.
//! Its full socket closed before the peer's FIN; the timewait socket takes what comes.

use crate::Endpoints;

/// `TimewaitEnd::how`: the peer's FIN arrived (the connection closed; TIME_WAIT follows).
pub const TIMEWAIT_PEER_FIN: u8 = 0;
/// The peer reset the connection.
pub const TIMEWAIT_PEER_RESET: u8 = 1;
/// The peer sent data after this side's close: the timewait socket refuses it with a
/// reset and is gone.
pub const TIMEWAIT_PEER_DATA: u8 = 2;

/// A segment that ended a timewait socket's `FIN_WAIT2` (`tcp_timewait_state_process`);
/// the header's `sock` is the timewait socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimewaitEnd {
    pub endpoints: Endpoints,
    /// [`TIMEWAIT_PEER_FIN`], [`TIMEWAIT_PEER_RESET`] or [`TIMEWAIT_PEER_DATA`].
    pub how: u8,
    pub _pad: [u8; 7],
}
