//! The TLS hook: what a TLS library's application reads and writes and its handshake
//! show of a traced connection, seen by uprobes on the library's functions, never its
//! payload. The socket a call belongs to is learnt from the socket I/O the same thread
//! does inside the call (see the eBPF side).

use crate::Endpoints;

/// `TlsHandshake::library`: OpenSSL's `libssl`.
pub const TLS_OPENSSL: u8 = 1;

/// The library finished a handshake on the socket (the handshake function returned
/// success): the header's time is the socket's last data before that return.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsHandshake {
    pub endpoints: Endpoints,
    /// Boot clock, nanoseconds: the socket's first data of the handshake.
    pub started_ns: u64,
    /// A `TLS_*` library.
    pub library: u8,
    pub _pad: [u8; 7],
}
