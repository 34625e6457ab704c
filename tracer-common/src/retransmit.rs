//! The retransmit hook: segments and SYN-ACKs sent again.

use crate::Endpoints;

/// `Retransmit::what`.
pub const RETRANSMIT_SEGMENT: u8 = 0;
pub const RETRANSMIT_SYNACK: u8 = 1;

/// A segment retransmitted (`tcp:tcp_retransmit_skb`, `tcp:tcp_retransmit_synack`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmit {
    pub endpoints: Endpoints,
    /// [`RETRANSMIT_SEGMENT`] or [`RETRANSMIT_SYNACK`].
    pub what: u8,
    /// The socket's state, or [`NO_STATE`](crate::NO_STATE).
    pub state: u8,
    /// TCP header flags of the segment (`TCPHDR_*`), 0 when unknown.
    pub tcp_flags: u8,
    pub _pad: [u8; 5],
}
