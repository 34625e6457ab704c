//! The data hook: the data of a socket changing direction, without its payload.

use crate::Endpoints;

/// `DataTurn::direction`.
pub const DATA_SENT: u8 = 0;
pub const DATA_RECEIVED: u8 = 1;

/// The socket's data changed direction (or flowed for the first time).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataTurn {
    pub endpoints: Endpoints,
    /// [`DATA_SENT`] or [`DATA_RECEIVED`].
    pub direction: u8,
    pub _pad: [u8; 7],
}
