//! The accept hook: which process accepted a connection.

use crate::Endpoints;

/// A process accepted the socket: the header names it; the payload is the socket's ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub endpoints: Endpoints,
}
