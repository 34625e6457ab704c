//! Requests, responses and the time between them, from the turns of the data direction
//! ([`TraceEvent::DataTurn`](crate::event::TraceEvent)): the kernel reports the first
//! data of each burst, never payloads.
//!
//! A request is a burst from client to server, a response one from server to client, the
//! same on both sides' records. A response time runs from a request's first byte to the
//! response's first byte as this host saw them (on a server, the application's time to
//! answer; on a client, that plus the network). Pipelined requests are one burst, so one
//! request. A request still waiting when the connection closes was never answered; how
//! long it waited is kept.
//!
//! On a connection a TLS library carries, the socket's bursts are the library's records
//! (the handshake's among them), not the application's requests: from the first sign of
//! the library (its handshake, or the application's first data through it) only the
//! application's turns through the library count ([`Layer::Tls`]), and what the
//! socket's turns had counted before is dropped (the handshake's bursts, or the
//! application's own seen a second time).

use std::num::NonZeroU64;

use super::{
    close::nonzero,
    record::{ResponseTimes, Role},
};
use crate::event::{Direction, TlsLibrary};

/// Which turns a turn is: the socket's data, or the application's through a TLS library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layer {
    Socket,
    Tls,
}

/// What a TLS library showed of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsSeen {
    pub library: TlsLibrary,
    /// From the first handshake call to the one that finished it; `None` when the
    /// handshake was not seen (before tracing, or its socket learnt later).
    pub handshake_us: Option<u32>,
}

/// The data turns of one connection, seen from one side.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Exchanges {
    requests: u32,
    responses: u32,
    /// The first byte of the request that waits for its response.
    waiting_since_ns: Option<NonZeroU64>,
    answered: u32,
    min_us: u32,
    max_us: u32,
    total_us: u64,
    /// The latest data activity before the close started.
    last_data_ns: Option<NonZeroU64>,
    /// Set once a TLS library showed the connection: its turns count, the socket's not.
    tls: TlsMark,
}

/// [`TlsSeen`] in the four bytes the struct had spare (see `memory_per_connection`): 0
/// for none, 1 for a TLS connection whose handshake was not seen, `2 + us` for one whose
/// handshake took `us`. OpenSSL is the only library hooked, so the library is implied.
#[derive(Clone, Copy, Debug, Default)]
struct TlsMark(u32);

impl TlsMark {
    const NO_HANDSHAKE: u32 = 1;

    fn get(self) -> Option<TlsSeen> {
        (self.0 != 0).then(|| TlsSeen {
            library: TlsLibrary::OpenSsl,
            handshake_us: self.0.checked_sub(2),
        })
    }
}

impl Exchanges {
    /// Data started flowing in `direction` at `ns` on a socket of `role`. Data after the
    /// close started (`closing`) still counts, but is not activity before the close.
    /// Returns the response time, microseconds, when this answers a request.
    pub(super) fn turn(
        &mut self,
        role: Role,
        direction: Direction,
        layer: Layer,
        ns: u64,
        closing: bool,
    ) -> Option<u64> {
        let to_server = match role {
            Role::Server => Direction::Received,
            Role::Client => Direction::Sent,
        };
        if !closing {
            self.data_activity(ns);
        }
        match (layer, self.tls.get()) {
            (Layer::Socket, Some(_)) => return None,
            (Layer::Tls, None) => self.tls_seen(),
            _ => {}
        }
        if direction == to_server {
            self.requests = self.requests.saturating_add(1);
            self.waiting_since_ns = self.waiting_since_ns.or(nonzero(ns));
            return None;
        }
        self.responses = self.responses.saturating_add(1);
        let since = self.waiting_since_ns.take()?;
        let us = u32::try_from(ns.saturating_sub(since.get()) / 1_000).unwrap_or(u32::MAX);
        self.min_us = if self.answered == 0 {
            us
        } else {
            self.min_us.min(us)
        };
        self.max_us = self.max_us.max(us);
        self.total_us += u64::from(us);
        self.answered = self.answered.saturating_add(1);
        Some(u64::from(us))
    }

    /// A TLS library finished the connection's handshake, taking `handshake_us`.
    pub(super) fn tls_handshake(&mut self, library: TlsLibrary, handshake_us: Option<u64>) {
        let TlsLibrary::OpenSsl = library;
        self.tls_seen();
        if let Some(us) = handshake_us {
            self.tls = TlsMark(u32::try_from(us).unwrap_or(u32::MAX - 2).saturating_add(2));
        }
    }

    /// The connection is the library's from now: what the socket's turns counted goes.
    fn tls_seen(&mut self) {
        if self.tls.get().is_none() {
            *self = Self {
                last_data_ns: self.last_data_ns,
                tls: TlsMark(TlsMark::NO_HANDSHAKE),
                ..Self::default()
            };
        }
    }

    pub(super) fn tls(&self) -> Option<TlsSeen> {
        self.tls.get()
    }

    /// Data moved at `ns` before the close started (the close summary's last activity).
    pub(super) fn data_activity(&mut self, ns: u64) {
        self.last_data_ns = self.last_data_ns.max(nonzero(ns));
    }

    pub(super) fn last_data_ns(&self) -> Option<u64> {
        self.last_data_ns.map(NonZeroU64::get)
    }

    pub(super) fn requests(&self) -> u32 {
        self.requests
    }

    pub(super) fn responses(&self) -> u32 {
        self.responses
    }

    /// The answered requests' response times, when there were any.
    pub(super) fn response_times(&self) -> Option<ResponseTimes> {
        (self.answered > 0).then_some(ResponseTimes {
            count: self.answered,
            min_us: self.min_us,
            max_us: self.max_us,
            total_us: self.total_us,
        })
    }

    /// How long a request still waiting at `end_ns` had waited.
    pub(super) fn unanswered_for_us(&self, end_ns: u64) -> Option<u64> {
        self.waiting_since_ns
            .map(|since| end_ns.saturating_sub(since.get()) / 1_000)
    }
}
