//! Who ended the connection (`close_initiator`), from the first sign of the close the
//! connection showed; the rules are in the module docs of the correlator.

use std::num::NonZeroU64;

use super::record::CloseInitiator;
use crate::event::TcpState;

/// The first sign of the close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    None,
    FinLocal,
    FinRemote,
    /// Both FINs crossed: this side's FIN was out when the peer's arrived (CLOSING).
    Simultaneous,
    ResetSent,
    ResetReceived,
    KeepaliveTimeout,
}

/// What the connection showed of its close so far.
#[derive(Clone, Copy, Debug)]
pub(super) struct CloseFacts {
    closer: Closer,
    /// The first FIN or RST, when its time is known.
    first_ns: Option<NonZeroU64>,
}

impl Default for CloseFacts {
    fn default() -> Self {
        Self {
            closer: Closer::None,
            first_ns: None,
        }
    }
}

pub(super) fn nonzero(ns: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(ns.max(1))
}

impl CloseFacts {
    /// Whether a FIN or RST was seen: data after it is not activity before the close.
    pub(super) fn started(&self) -> bool {
        self.closer != Closer::None
    }

    /// When the close started (the first FIN or RST), if known.
    pub(super) fn first_ns(&self) -> Option<u64> {
        self.first_ns.map(NonZeroU64::get)
    }

    fn mark(&mut self, closer: Closer, ns: Option<u64>) {
        if self.closer == Closer::None {
            self.closer = closer;
            self.first_ns = ns.and_then(nonzero);
        }
    }

    /// What a state tells, whether entered at `ns` or found already (`Existing`, no
    /// time).
    pub(super) fn state(&mut self, state: TcpState, ns: Option<u64>) {
        use TcpState::*;
        match state {
            FinWait1 | FinWait2 | TimeWait => self.mark(Closer::FinLocal, ns),
            Closing if self.closer == Closer::FinLocal => self.closer = Closer::Simultaneous,
            Closing => self.mark(Closer::Simultaneous, ns),
            CloseWait | LastAck => self.mark(Closer::FinRemote, ns),
            _ => {}
        }
    }

    pub(super) fn reset_sent(&mut self, ns: u64) {
        self.mark(Closer::ResetSent, Some(ns));
    }

    pub(super) fn reset_received(&mut self, ns: u64) {
        self.mark(Closer::ResetReceived, Some(ns));
    }

    /// The keepalive timer gave up: it replaces the RST it sent as it did.
    pub(super) fn keepalive_timeout(&mut self, ns: u64) {
        if matches!(self.closer, Closer::None | Closer::ResetSent) {
            self.closer = Closer::KeepaliveTimeout;
            self.first_ns = self.first_ns.or(nonzero(ns));
        }
    }

    /// Whether a FIN started the close, from either side.
    pub(super) fn by_fin(&self) -> bool {
        matches!(
            self.closer,
            Closer::FinLocal | Closer::FinRemote | Closer::Simultaneous
        )
    }

    /// `closed`: the kernel reported CLOSE.
    pub(super) fn initiator(&self, closed: bool) -> CloseInitiator {
        match self.closer {
            Closer::FinLocal => CloseInitiator::Local,
            Closer::FinRemote => CloseInitiator::Remote,
            Closer::Simultaneous => CloseInitiator::Simultaneous,
            Closer::ResetSent => CloseInitiator::ResetSent,
            Closer::ResetReceived => CloseInitiator::ResetReceived,
            Closer::KeepaliveTimeout => CloseInitiator::KeepaliveTimeout,
            Closer::None if closed => CloseInitiator::Aborted,
            Closer::None => CloseInitiator::Unknown,
        }
    }
}
