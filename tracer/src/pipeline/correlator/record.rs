//! What the correlator writes: one [`ConnectionRecord`] per connection lifecycle, as the
//! `connection` line shows it (every field is in `docs/events.md`), and the events kept
//! with it for the pretty timeline.

use std::{net::SocketAddr, sync::Arc};

use super::{exchanges::TlsSeen, outcome::Outcome};
use crate::{
    event::{Cgroup, PeerEnd, SocketError, TcpState, TraceEvent},
    vocabulary::names,
};

/// Events kept per record for [`CorrelatorConfig::keep_events`](super::CorrelatorConfig::keep_events):
/// the first half and the most recent half, the middle is dropped and counted.
pub const KEPT_EVENTS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

names!(Role as "role" {
    Client => "client",
    Server => "server",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

names!(Family as "address family" {
    Ipv4 => "ipv4",
    Ipv6 => "ipv6",
});

/// Who ended the connection; the rules are in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseInitiator {
    Local,
    Remote,
    /// Both sides sent their FIN before receiving the other's.
    Simultaneous,
    ResetSent,
    ResetReceived,
    KeepaliveTimeout,
    Aborted,
    Unknown,
}

names!(CloseInitiator as "close initiator" {
    Local => "local",
    Remote => "remote",
    Simultaneous => "simultaneous",
    ResetSent => "reset_sent",
    ResetReceived => "reset_received",
    KeepaliveTimeout => "keepalive_timeout",
    Aborted => "aborted",
    Unknown => "unknown",
});

/// Connections counted by how they closed: by a FIN of this host, of the peer, of both
/// at once, or any other way (resets, keepalive timeouts, aborts), as `tracer top` and
/// `tracer report` count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Closes {
    pub local: u64,
    pub remote: u64,
    pub simultaneous: u64,
    pub other: u64,
}

impl Closes {
    pub fn count(&mut self, initiator: CloseInitiator) {
        match initiator {
            CloseInitiator::Local => self.local += 1,
            CloseInitiator::Remote => self.remote += 1,
            CloseInitiator::Simultaneous => self.simultaneous += 1,
            _ => self.other += 1,
        }
    }
}

/// A state entered, `offset_us` after the record's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateEntry {
    pub state: TcpState,
    pub offset_us: u64,
}

/// Response times of a connection's answered requests, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseTimes {
    pub count: u32,
    pub min_us: u32,
    pub max_us: u32,
    pub total_us: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepaliveCounts {
    pub probes_sent: u32,
    pub probes_answered: u32,
    pub timed_out: bool,
}

/// What the kernel had counted of a connection found open when tracing started: what
/// happened before tracing (the record's own counts are totals since it began).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtStart {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    pub rtt_us: u32,
}

/// How the timewait socket a connection was handed to in FIN_WAIT2 ended its wait for
/// the peer's FIN: the connection's true end on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimewaitEndRecord {
    pub how: PeerEnd,
    /// From the handover (the record's `end`) to the peer's segment; `None` for a
    /// timeout, which no event reports.
    pub after_us: Option<u64>,
}

/// One connection lifecycle, as the `connection` line shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionRecord {
    pub conn_id: u64,
    /// The socket's kernel address, as event lines show it.
    pub sock: u64,
    pub role: Role,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// From the close summary.
    pub netns: Option<u32>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// The socket's cgroup (v2), from its events.
    pub cgroup: Option<Arc<Cgroup>>,
    /// Boot clock, nanoseconds: the first state observed.
    pub start_ns: u64,
    /// The CLOSE, or the last event of a record evicted or reaped.
    pub end_ns: u64,
    pub handshake_us: Option<u64>,
    pub duration_us: u64,
    pub states: Vec<StateEntry>,
    pub close_initiator: CloseInitiator,
    /// How it ended, in one word (see [`Outcome`]).
    pub outcome: Outcome,
    /// The error its socket held as it closed: what the application was told.
    pub error: Option<SocketError>,
    /// The peer's FIN had arrived when the socket closed (from the close summary).
    pub fin_received: Option<bool>,
    /// The state a timewait socket took over the connection's ends in, when the kernel
    /// handed them over as the socket closed (`TIME_WAIT` or `FIN_WAIT2`).
    pub handed_to_timewait: Option<TcpState>,
    /// After a handover in FIN_WAIT2, where tracer follows timewait sockets: how and
    /// when the wait for the peer's FIN ended.
    pub timewait_end: Option<TimewaitEndRecord>,
    pub resets_sent: u32,
    pub resets_received: u32,
    /// The larger of the retransmits seen and the close summary's count.
    pub retransmits: u32,
    pub keepalive: KeepaliveCounts,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    /// A connection found open at start: its counts then.
    pub at_start: Option<AtStart>,
    /// Client-to-server and server-to-client data bursts (the same on both sides'
    /// records); null without the data hook.
    pub requests: Option<u32>,
    pub responses: Option<u32>,
    /// From each answered request's first byte to its response's first byte.
    pub response_time_us: Option<ResponseTimes>,
    /// A request left waiting when the connection closed: how long it had waited.
    pub unanswered_request_us: Option<u64>,
    pub idle_before_close_us: Option<u64>,
    /// A TLS library carried the connection: `requests` and the rest are the
    /// application's through it.
    pub tls: Option<TlsSeen>,
    pub observed_from_start: bool,
    /// The record's events, when [`CorrelatorConfig::keep_events`](super::CorrelatorConfig::keep_events); at most
    /// [`KEPT_EVENTS`], the first half and the last.
    pub events: Vec<TraceEvent>,
    /// Events dropped from the middle of `events` (they were after `KEPT_EVENTS / 2`).
    pub events_omitted: u32,
}

/// A record's events, for `keep_events`.
#[derive(Default)]
pub(super) struct KeptEvents {
    pub(super) events: Vec<TraceEvent>,
    pub(super) omitted: u32,
}

impl KeptEvents {
    pub(super) fn push(&mut self, event: &TraceEvent) {
        if self.events.len() == KEPT_EVENTS {
            self.events.remove(KEPT_EVENTS / 2);
            self.omitted += 1;
        }
        self.events.push(event.clone());
    }
}
