//! Events -> one [`ConnectionRecord`] per connection lifecycle.
//!
//! Pure: no I/O and no clock. Time comes only from the events' `boot_ns` and from the
//! `now` given to [`Correlator::reap`], so a recorded trace replays to the same records.
//!
//! # Identity
//!
//! The kernel reuses socket addresses, so a record is one *lifecycle* of a socket: it
//! starts on the transition out of CLOSE (client: `CLOSE -> SYN_SENT`; server: the
//! accepted child's first transition, `LISTEN -> SYN_RECV`, because the child is cloned
//! from the listener) and ends on `-> CLOSE`. A lifecycle start on an address that still
//! has a record starts a new record. Sockets entering LISTEN are listeners, not
//! connections: they are remembered with their owner (see below). [`TraceEvent::Existing`]
//! starts a record for a connection open before tracing (`observed_from_start: false`), and
//! so does any other state change of a socket without a record (its start was missed).
//!
//! # Closing
//!
//! A record is not emitted at its CLOSE but [`CLOSE_GRACE_NS`] of event time later: the
//! kernel reports some facts about a close *after* the socket's transition to CLOSE.
//! `tcp_disconnect` (`SO_LINGER` 0) and a close with unread data enter CLOSE before they
//! send their RST, the keepalive timer's timeout event is taken when its callback
//! returns, after the CLOSE it caused, and a connection reset in the accept queue can be
//! accepted after its CLOSE. A closed record takes only these; any other event for its
//! socket belongs to a later lifecycle (a state change starts it, the rest are ignored).
//!
//! # Owner
//!
//! `pid`/`comm` name, in this order of preference: the process that accepted the
//! connection ([`TraceEvent::Accepted`]) or, for a client, the one whose `connect()` took it
//! out of CLOSE; for a server, the owner of the listener with the same local port (its
//! address equal or a wildcard; the most recent such listener); otherwise the first
//! process seen in process context on the connection. Null when none was seen.
//!
//! # `close_initiator`
//!
//! Decided when the record is emitted, from the first of these the connection showed:
//! - a FIN: the first transition to FIN_WAIT1, FIN_WAIT2, CLOSING or TIME_WAIT means this
//!   host sent the first FIN (`local`); to CLOSE_WAIT or LAST_ACK, the peer did (`remote`).
//!   A connection already closing when tracing started counts its state at that time.
//! - an RST before any FIN: `reset_sent` or `reset_received` (in either order around the
//!   CLOSE, see above).
//! - a keepalive timeout before any FIN: `keepalive_timeout`; it replaces `reset_sent`,
//!   because the keepalive timer sends an RST as it gives up.
//! - none of these but the kernel reported CLOSE: `aborted` (a connect or handshake that
//!   timed out, a retransmission timeout, `ss -K`).
//! - none of these and no CLOSE (evicted or reaped): `unknown`.
//!
//! # Keepalive probes
//!
//! A probe is answered when, before the next probe, the connection shows the peer is
//! alive: the next probe is number 1 again (the kernel resets its count on any ACK), data
//! is received, or a close step that needs a segment from the peer happens (entering
//! CLOSE_WAIT, FIN_WAIT2 or CLOSING, or LAST_ACK -> CLOSE). It is unanswered when the next
//! probe has a higher number, the keepalive timer gives up, or an RST arrives. A probe
//! whose fate the connection never showed counts as unanswered. See [`probe_fate`].
//!
//! # Exchanges and idleness
//!
//! `exchanges` counts turns of the data direction ([`TraceEvent::DataTurn`]) towards the
//! answer: on a server each turn to sent that follows received data (a response), on a
//! client each turn to received that follows sent data. Pipelined requests are one turn.
//! `idle_before_close_us` runs from the last data activity before the first FIN or RST
//! (the summary's `last_data_ns` or the last turn) to that FIN or RST.
//!
//! # Orphans
//!
//! Events that belong to no record are counted in [`Stats::ignored_events`] and otherwise
//! dropped: resets without a socket (`sock` 0, e.g. the kernel refusing a connection to a
//! port without listener), SYN-ACK retransmits (keyed by the request socket, which is
//! never a record), events other than state changes of a connection whose record was
//! evicted or whose start was lost (its next state change starts a partial record),
//! events of a later lifecycle reaching a closed record (see Closing), transitions to
//! CLOSE of sockets without a record, and `Existing` events for known sockets or for
//! states nothing follows (CLOSE, TIME_WAIT, NEW_SYN_RECV).
//!
//! # Memory
//!
//! At most `max_connections` records are held (closing ones included); a new one evicts
//! the least recently active, emitted as [`Output::Evicted`] and counted. An open record
//! takes 200 bytes plus 17 for its map entry (the `memory_per_connection` test holds it
//! to issue 4's 256), in a slab that grows by an eighth, with an intrusive LRU list;
//! processes are shared through an interning table.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU64,
    sync::Arc,
};

use serde::{Serialize, Serializer};

use crate::event::{
    DataDirection, EventMeta, Process, ResetDirection, StateChange, TcpState, TraceEvent,
};

/// How long a closed record waits for the facts the kernel reports after the CLOSE. They
/// come from the same kernel call, microseconds later, but that call can be preempted
/// between the two (seen for tens of milliseconds on a loaded 2-CPU guest) while the
/// daemon reaps by the clock: a second covers that at the price of records written a
/// second later.
pub const CLOSE_GRACE_NS: u64 = 1_000_000_000;

/// States remembered per record, CLOSE included. A lifecycle enters at most 6 (a
/// simultaneous open and close: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, CLOSING,
/// CLOSE); past that the last slot holds the latest state.
const STATES: usize = 6;

/// Events kept per record for [`CorrelatorConfig::keep_events`]: the first half and the
/// most recent half, the middle is dropped and counted.
pub const KEPT_EVENTS: usize = 256;

/// Listeners remembered for the owner fallback; past that the oldest is forgotten.
const LISTENERS: usize = 1024;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorrelatorConfig {
    /// Records held at most (at least 1).
    pub max_connections: usize,
    /// A record without events for longer than this is reaped by [`Correlator::reap`].
    pub stale_after_ns: u64,
    /// Keep each record's events in [`ConnectionRecord::events`] (for the pretty timeline).
    pub keep_events: bool,
    /// Data turns are traced (the `data` hook is attached). Without them a record's
    /// `exchanges` is unknown (`None`), not zero.
    pub data_turns: bool,
}

impl Default for CorrelatorConfig {
    /// A healthy idle keep-alive connection sends nothing (TCP keepalive defaults to 2
    /// hours), so a record is stale only after a day without events.
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            stale_after_ns: 24 * 3600 * 1_000_000_000,
            keep_events: false,
            data_turns: true,
        }
    }
}

/// What the correlator emits.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The kernel reported the connection's close.
    Connection(ConnectionRecord),
    /// Pushed out to make room for a new record: the connection may still be open.
    Evicted(ConnectionRecord),
    /// Its close was never seen: no events for longer than `stale_after_ns`, or its
    /// socket address started a new lifecycle (an event was lost).
    Reaped(ConnectionRecord),
}

/// Counters of what the correlator could not turn into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events for a socket without a record (see the module docs).
    pub ignored_events: u64,
    pub evicted: u64,
    pub reaped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// Who ended the connection; the rules are in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseInitiator {
    Local,
    Remote,
    ResetSent,
    ResetReceived,
    KeepaliveTimeout,
    Aborted,
    Unknown,
}

/// A state entered, `offset_us` after the record's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StateEntry {
    #[serde(serialize_with = "display")]
    pub state: TcpState,
    pub offset_us: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeepaliveCounts {
    pub probes_sent: u32,
    pub probes_answered: u32,
    pub timed_out: bool,
}

/// One connection lifecycle, as the `connection` line shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionRecord {
    pub conn_id: u64,
    /// The socket's kernel address, as event lines show it.
    #[serde(serialize_with = "hex")]
    pub sock: u64,
    pub role: Role,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// From the close summary.
    pub netns: Option<u32>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// Boot clock, nanoseconds: the first state observed.
    pub start_ns: u64,
    /// The CLOSE, or the last event of a record evicted or reaped.
    pub end_ns: u64,
    pub handshake_us: Option<u64>,
    pub duration_us: u64,
    pub states: Vec<StateEntry>,
    pub close_initiator: CloseInitiator,
    pub resets_sent: u32,
    pub resets_received: u32,
    /// The larger of the retransmits seen and the close summary's count.
    pub retransmits: u32,
    pub keepalive: KeepaliveCounts,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub exchanges: Option<u32>,
    pub idle_before_close_us: Option<u64>,
    pub observed_from_start: bool,
    /// The record's events, when [`CorrelatorConfig::keep_events`]; at most
    /// [`KEPT_EVENTS`], the first half and the last.
    #[serde(skip)]
    pub events: Vec<TraceEvent>,
    /// Events dropped from the middle of `events` (they were after `KEPT_EVENTS / 2`).
    #[serde(skip)]
    pub events_omitted: u32,
}

fn display<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn hex<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:#018x}"))
}

/// What an event says about the keepalive probe sent before it, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeFate {
    Answered,
    Unanswered,
}

/// The rule of the module docs, shared with the pretty timeline.
pub fn probe_fate(event: &TraceEvent) -> Option<ProbeFate> {
    use TcpState::*;
    match event {
        TraceEvent::KeepaliveProbe(probe) if probe.probe <= 1 => Some(ProbeFate::Answered),
        TraceEvent::KeepaliveProbe(_) | TraceEvent::KeepaliveTimeout(_) => {
            Some(ProbeFate::Unanswered)
        }
        TraceEvent::Reset(reset) if reset.direction == ResetDirection::Received => {
            Some(ProbeFate::Unanswered)
        }
        TraceEvent::DataTurn(turn) if turn.direction == DataDirection::Received => {
            Some(ProbeFate::Answered)
        }
        TraceEvent::StateChange(StateChange {
            old_state,
            new_state,
            ..
        }) => matches!(
            (old_state, new_state),
            (_, CloseWait | FinWait2 | Closing) | (LastAck, Close)
        )
        .then_some(ProbeFate::Answered),
        _ => None,
    }
}

fn state_number(state: TcpState) -> u8 {
    use TcpState::*;
    match state {
        Established => 1,
        SynSent => 2,
        SynRecv => 3,
        FinWait1 => 4,
        FinWait2 => 5,
        TimeWait => 6,
        Close => 7,
        CloseWait => 8,
        LastAck => 9,
        Listen => 10,
        Closing => 11,
        NewSynRecv => 12,
        Unknown(value) => value,
    }
}

/// The first sign of the close, in the order the module docs give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    None,
    FinLocal,
    FinRemote,
    ResetSent,
    ResetReceived,
    KeepaliveTimeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OwnerRank {
    None,
    /// Some process-context event of the connection.
    Seen,
    Listener,
    /// connect() or accept().
    Direct,
}

/// An address in 18 bytes instead of `SocketAddr`'s 32; IPv4 as its mapped IPv6 form.
#[derive(Clone, Copy, Debug, Default)]
struct Endpoint {
    ip: [u8; 16],
    port: u16,
}

impl Endpoint {
    fn new(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            IpAddr::V6(ip) => ip,
        };
        Self {
            ip: ip.octets(),
            port: addr.port(),
        }
    }

    fn get(self, v4: bool) -> SocketAddr {
        let ip = Ipv6Addr::from(self.ip);
        match ip.to_ipv4_mapped() {
            Some(ip4) if v4 => SocketAddr::new(ip4.into(), self.port),
            _ => SocketAddr::new(ip.into(), self.port),
        }
    }
}

/// The state of an open record, kept small: see `memory_per_connection`.
struct Conn {
    /// 0 when the slot is free.
    sock: u64,
    conn_id: u64,
    /// Latest event time, for reaping.
    last_ns: u64,
    state_ns: [u64; STATES],
    /// Latest data activity before the first FIN or RST.
    last_data_ns: Option<NonZeroU64>,
    /// The first FIN or RST, when its time is known.
    first_close_ns: Option<NonZeroU64>,
    bytes_sent: u64,
    bytes_received: u64,
    owner: Option<Arc<Process>>,
    local: Endpoint,
    remote: Endpoint,
    /// LRU neighbours (older, newer), or the free list's next in `next`.
    prev: u32,
    next: u32,
    netns: u32,
    retransmits: u32,
    exchanges: u32,
    resets_sent: u16,
    resets_received: u16,
    probes_sent: u16,
    probes_answered: u16,
    states: [u8; STATES],
    n_states: u8,
    last_turn: Option<DataDirection>,
    role: Role,
    closer: Closer,
    owner_rank: OwnerRank,
    v4: bool,
    probe_pending: bool,
    timed_out: bool,
    observed_from_start: bool,
    /// The kernel reported CLOSE; waiting out the grace period.
    closed: bool,
    has_summary: bool,
}

fn nonzero(ns: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(ns.max(1))
}

impl Conn {
    fn start_ns(&self) -> u64 {
        self.state_ns[0]
    }

    /// Records `state` entered at `ns`, never before the previous state (events from
    /// different CPUs can be slightly out of order).
    fn enter(&mut self, state: TcpState, ns: u64) {
        let n = usize::from(self.n_states);
        let ns = if n == 0 {
            ns
        } else {
            ns.max(self.state_ns[n - 1])
        };
        let slot = n.min(STATES - 1);
        self.states[slot] = state_number(state);
        self.state_ns[slot] = ns;
        self.n_states = (slot + 1) as u8;
    }

    fn state_at(&self, index: usize) -> TcpState {
        TcpState::from_kernel(self.states[index])
    }

    fn first_entry(&self, state: TcpState) -> Option<u64> {
        (0..usize::from(self.n_states))
            .find(|&i| self.state_at(i) == state)
            .map(|i| self.state_ns[i])
    }

    fn end_ns(&self) -> u64 {
        if self.closed {
            self.state_ns[usize::from(self.n_states) - 1]
        } else {
            self.last_ns.max(self.start_ns())
        }
    }

    fn mark_close(&mut self, closer: Closer, ns: Option<u64>) {
        if self.closer == Closer::None {
            self.closer = closer;
            self.first_close_ns = ns.and_then(nonzero);
        }
    }

    /// Close facts a state tells, whether entered or found already (`Existing`).
    fn state_close_facts(&mut self, state: TcpState, ns: Option<u64>) {
        use TcpState::*;
        match state {
            FinWait1 | FinWait2 | Closing | TimeWait => self.mark_close(Closer::FinLocal, ns),
            CloseWait | LastAck => self.mark_close(Closer::FinRemote, ns),
            _ => {}
        }
    }

    fn set_owner(&mut self, process: Option<&Process>, rank: OwnerRank, table: &mut Processes) {
        if let Some(process) = process
            && rank > self.owner_rank
        {
            self.owner = Some(table.intern(process));
            self.owner_rank = rank;
        }
    }

    fn set_owner_arc(&mut self, owner: Option<&Arc<Process>>, rank: OwnerRank) {
        if let Some(owner) = owner
            && rank > self.owner_rank
        {
            self.owner = Some(Arc::clone(owner));
            self.owner_rank = rank;
        }
    }

    /// Everything but the lifecycle bookkeeping the correlator does around it.
    fn apply(&mut self, event: &TraceEvent, processes: &mut Processes) {
        let meta = event.meta();
        self.last_ns = self.last_ns.max(meta.boot_ns);
        if self.probe_pending
            && let Some(fate) = probe_fate(event)
        {
            self.probe_pending = false;
            if fate == ProbeFate::Answered {
                self.probes_answered = self.probes_answered.saturating_add(1);
            }
        }
        if self.owner_rank == OwnerRank::None {
            self.set_owner(meta.process.as_ref(), OwnerRank::Seen, processes);
        }
        match event {
            TraceEvent::StateChange(change) => {
                if change.meta.local.port() != 0 {
                    self.local = Endpoint::new(change.meta.local);
                    self.remote = Endpoint::new(change.meta.remote);
                }
                self.enter(change.new_state, meta.boot_ns);
                self.state_close_facts(change.new_state, Some(meta.boot_ns));
            }
            TraceEvent::Reset(reset) => match reset.direction {
                ResetDirection::Sent => {
                    self.resets_sent = self.resets_sent.saturating_add(1);
                    self.mark_close(Closer::ResetSent, Some(meta.boot_ns));
                }
                ResetDirection::Received => {
                    self.resets_received = self.resets_received.saturating_add(1);
                    self.mark_close(Closer::ResetReceived, Some(meta.boot_ns));
                }
            },
            TraceEvent::Retransmit(_) => self.retransmits = self.retransmits.saturating_add(1),
            TraceEvent::KeepaliveProbe(_) => {
                self.probes_sent = self.probes_sent.saturating_add(1);
                self.probe_pending = true;
            }
            TraceEvent::KeepaliveTimeout(_) => {
                self.timed_out = true;
                if matches!(self.closer, Closer::None | Closer::ResetSent) {
                    self.closer = Closer::KeepaliveTimeout;
                    self.first_close_ns = self.first_close_ns.or(nonzero(meta.boot_ns));
                }
            }
            TraceEvent::DataTurn(turn) => {
                let answer = match self.role {
                    Role::Server => DataDirection::Sent,
                    Role::Client => DataDirection::Received,
                };
                // A turn towards the answer, after data the other way.
                if turn.direction == answer && self.last_turn.is_some_and(|last| last != answer) {
                    self.exchanges = self.exchanges.saturating_add(1);
                }
                self.last_turn = Some(turn.direction);
                if self.closer == Closer::None {
                    self.last_data_ns = self.last_data_ns.max(nonzero(meta.boot_ns));
                }
            }
            TraceEvent::Summary(summary) => {
                self.has_summary = true;
                self.bytes_sent = summary.bytes_sent;
                self.bytes_received = summary.bytes_received;
                self.retransmits = self.retransmits.max(summary.retransmits);
                self.netns = summary.netns;
                let before_close =
                    |ns: &u64| self.first_close_ns.is_none_or(|close| *ns <= close.get());
                if let Some(ns) = summary.last_data_ns.filter(before_close) {
                    self.last_data_ns = self.last_data_ns.max(nonzero(ns));
                }
            }
            TraceEvent::Accepted(accepted) => {
                self.set_owner(accepted.meta.process.as_ref(), OwnerRank::Direct, processes)
            }
            TraceEvent::Existing(existing) => {
                self.enter(existing.state, meta.boot_ns);
                self.state_close_facts(existing.state, None);
            }
        }
    }

    fn close_initiator(&self) -> CloseInitiator {
        match self.closer {
            Closer::FinLocal => CloseInitiator::Local,
            Closer::FinRemote => CloseInitiator::Remote,
            Closer::ResetSent => CloseInitiator::ResetSent,
            Closer::ResetReceived => CloseInitiator::ResetReceived,
            Closer::KeepaliveTimeout => CloseInitiator::KeepaliveTimeout,
            Closer::None if self.closed => CloseInitiator::Aborted,
            Closer::None => CloseInitiator::Unknown,
        }
    }

    fn record(&self, kept: KeptEvents) -> ConnectionRecord {
        let start = self.start_ns();
        let end = self.end_ns();
        let us = |from: u64, to: u64| to.saturating_sub(from) / 1000;
        let opening = match self.role {
            Role::Client => TcpState::SynSent,
            Role::Server => TcpState::SynRecv,
        };
        // A record started late saw at most the end of its handshake.
        let handshake_us = self
            .first_entry(opening)
            .zip(self.first_entry(TcpState::Established))
            .filter(|_| self.observed_from_start)
            .map(|(from, to)| us(from, to));
        let idle_before_close_us = self
            .last_data_ns
            .zip(self.first_close_ns)
            .map(|(data, close)| us(data.get(), close.get()));
        let (pid, comm) = match &self.owner {
            Some(owner) => (Some(owner.pid), Some(owner.comm.clone())),
            None => (None, None),
        };
        ConnectionRecord {
            conn_id: self.conn_id,
            sock: self.sock,
            role: self.role,
            family: if self.v4 { Family::Ipv4 } else { Family::Ipv6 },
            local: self.local.get(self.v4),
            remote: self.remote.get(self.v4),
            netns: self.has_summary.then_some(self.netns),
            pid,
            comm,
            start_ns: start,
            end_ns: end,
            handshake_us,
            duration_us: us(start, end),
            states: (0..usize::from(self.n_states))
                .map(|i| StateEntry {
                    state: self.state_at(i),
                    offset_us: us(start, self.state_ns[i]),
                })
                .collect(),
            close_initiator: self.close_initiator(),
            resets_sent: self.resets_sent.into(),
            resets_received: self.resets_received.into(),
            retransmits: self.retransmits,
            keepalive: KeepaliveCounts {
                probes_sent: self.probes_sent.into(),
                probes_answered: self.probes_answered.into(),
                timed_out: self.timed_out,
            },
            bytes_sent: self.has_summary.then_some(self.bytes_sent),
            bytes_received: self.has_summary.then_some(self.bytes_received),
            exchanges: Some(self.exchanges),
            idle_before_close_us,
            observed_from_start: self.observed_from_start,
            events: kept.events,
            events_omitted: kept.omitted,
        }
    }
}

/// A record's events, for `keep_events`.
#[derive(Default)]
struct KeptEvents {
    events: Vec<TraceEvent>,
    omitted: u32,
}

impl KeptEvents {
    fn push(&mut self, event: &TraceEvent) {
        if self.events.len() == KEPT_EVENTS {
            self.events.remove(KEPT_EVENTS / 2);
            self.omitted += 1;
        }
        self.events.push(event.clone());
    }
}

/// Hashes socket addresses: kernel pointers, not chosen by an attacker, so a
/// multiply-shift hash does instead of SipHash, for a fraction of the cost.
#[derive(Default)]
struct SockHasher(u64);

impl Hasher for SockHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    /// The product's high bits mixed into the low ones, which pick the bucket.
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// Processes shared by the records that name them, so a record holds a pointer.
#[derive(Default)]
struct Processes {
    by_pid: HashMap<u32, Arc<Process>>,
    /// Table size that triggers the next sweep: twice what the last one kept, so
    /// sweeping is amortized O(1) and the table at most twice the live processes.
    sweep_at: usize,
}

impl Processes {
    fn intern(&mut self, process: &Process) -> Arc<Process> {
        if let Some(known) = self.by_pid.get(&process.pid)
            && known.comm == process.comm
        {
            return Arc::clone(known);
        }
        if self.by_pid.len() >= self.sweep_at {
            // Forget processes no record or listener names any more.
            self.by_pid.retain(|_, known| Arc::strong_count(known) > 1);
            self.sweep_at = 2 * self.by_pid.len() + 64;
        }
        let interned = Arc::new(process.clone());
        self.by_pid.insert(process.pid, Arc::clone(&interned));
        interned
    }
}

struct Listener {
    sock: u64,
    addr: SocketAddr,
    owner: Option<Arc<Process>>,
}

/// Turns [`TraceEvent`]s into [`ConnectionRecord`]s; see the module docs.
pub struct Correlator {
    config: CorrelatorConfig,
    slab: Vec<Conn>,
    /// Parallel to `slab` when `keep_events`, else empty.
    kept: Vec<KeptEvents>,
    by_sock: HashMap<u64, u32, BuildHasherDefault<SockHasher>>,
    /// Records of connections read from sock_diag, which gives no kernel socket address:
    /// by (local, remote) until their first event names the socket.
    unbound: HashMap<(SocketAddr, SocketAddr), u32>,
    /// Least recently active first.
    lru_head: u32,
    lru_tail: u32,
    free_head: u32,
    open: usize,
    /// Closed records waiting out [`CLOSE_GRACE_NS`], oldest first: (slot, conn_id).
    closing: VecDeque<(u32, u64)>,
    listeners: VecDeque<Listener>,
    processes: Processes,
    next_conn_id: u64,
    stats: Stats,
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Self {
        Self {
            config: CorrelatorConfig {
                max_connections: config.max_connections.clamp(1, NIL as usize),
                ..config
            },
            slab: Vec::new(),
            kept: Vec::new(),
            by_sock: HashMap::default(),
            unbound: HashMap::new(),
            lru_head: NIL,
            lru_tail: NIL,
            free_head: NIL,
            open: 0,
            closing: VecDeque::new(),
            listeners: VecDeque::new(),
            processes: Processes::default(),
            next_conn_id: 1,
            stats: Stats::default(),
        }
    }

    /// Records held: open connections and closed ones waiting out the grace period.
    pub fn open_connections(&self) -> usize {
        self.open
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Takes one event, in the order the kernel produced them.
    pub fn observe(&mut self, event: &TraceEvent, out: &mut impl FnMut(Output)) {
        let meta = event.meta();
        self.flush_closed(meta.boot_ns, out);
        if meta.sock != 0 && !self.unbound.is_empty() && !self.by_sock.contains_key(&meta.sock) {
            self.bind(meta);
        }
        match event {
            TraceEvent::StateChange(change) => self.state_change(event, change, out),
            TraceEvent::Existing(existing) => {
                if existing.state == TcpState::Listen {
                    self.add_listener(meta);
                } else if self.by_sock.contains_key(&meta.sock)
                    || self.unbound.contains_key(&(meta.local, meta.remote))
                    || matches!(
                        existing.state,
                        TcpState::Close | TcpState::TimeWait | TcpState::NewSynRecv
                    )
                {
                    // Already known from its events, or nothing will follow.
                    self.stats.ignored_events += 1;
                } else {
                    let role = self.guess_role(meta.local);
                    let slot = self.start(meta, role, false, out);
                    self.apply(slot, event);
                }
            }
            _ => match self.by_sock.get(&meta.sock) {
                Some(&slot) if !self.slab[slot as usize].closed || reported_after_close(event) => {
                    self.apply(slot, event)
                }
                _ => self.stats.ignored_events += 1,
            },
        }
    }

    /// Gives an existing connection's record the kernel address its first event names.
    fn bind(&mut self, meta: &EventMeta) {
        if let Some(slot) = self.unbound.remove(&(meta.local, meta.remote)) {
            self.slab[slot as usize].sock = meta.sock;
            self.by_sock.insert(meta.sock, slot);
        }
    }

    /// Emits records without events for longer than `stale_after_ns` as
    /// [`Output::Reaped`], and closed records past their grace period. `reap(u64::MAX)`
    /// emits everything held (the end of a replay) unless `stale_after_ns` is `u64::MAX`.
    pub fn reap(&mut self, now_boot_ns: u64, out: &mut impl FnMut(Output)) {
        self.flush_closed(now_boot_ns, out);
        while self.lru_head != NIL {
            let conn = &self.slab[self.lru_head as usize];
            if now_boot_ns.saturating_sub(conn.last_ns) <= self.config.stale_after_ns {
                break;
            }
            let slot = self.lru_head;
            self.finish(slot, Unfinished::Reaped, out);
        }
    }

    fn state_change(
        &mut self,
        event: &TraceEvent,
        change: &StateChange,
        out: &mut impl FnMut(Output),
    ) {
        use TcpState::*;
        let meta = &change.meta;
        if meta.sock == 0 {
            self.stats.ignored_events += 1;
            return;
        }
        let (old, new) = (change.old_state, change.new_state);
        let known = self.by_sock.get(&meta.sock).copied();
        let lifecycle_start = (old == Close && new != Close) || (old == Listen && new == SynRecv);
        // A closed record takes late facts, never another state: a state means a new
        // lifecycle, whose start was lost if it is not one.
        if let Some(slot) = known
            && (lifecycle_start || self.slab[slot as usize].closed)
        {
            self.finish(slot, Unfinished::Reaped, out);
        }
        if new == Listen {
            self.add_listener(meta);
            return;
        }
        if old == Listen && new != SynRecv {
            self.listeners.retain(|listener| listener.sock != meta.sock);
            return;
        }
        let slot = match self.by_sock.get(&meta.sock) {
            Some(&slot) => slot,
            None if new == Close => {
                self.stats.ignored_events += 1;
                return;
            }
            None => {
                let role = match (old, new) {
                    (Close, SynSent) => Role::Client,
                    (Listen, SynRecv) => Role::Server,
                    _ => self.guess_role(meta.local),
                };
                self.start(meta, role, lifecycle_start, out)
            }
        };
        self.apply(slot, event);
        if new == Close {
            let conn = &mut self.slab[slot as usize];
            conn.closed = true;
            self.closing.push_back((slot, conn.conn_id));
        }
    }

    fn apply(&mut self, slot: u32, event: &TraceEvent) {
        self.slab[slot as usize].apply(event, &mut self.processes);
        self.touch(slot);
        if self.config.keep_events {
            self.kept[slot as usize].push(event);
        }
    }

    /// A server is a socket whose local port has a listener.
    fn guess_role(&self, local: SocketAddr) -> Role {
        if listener_owner_entry(&self.listeners, local).is_some() {
            Role::Server
        } else {
            Role::Client
        }
    }

    fn add_listener(&mut self, meta: &EventMeta) {
        self.listeners.retain(|listener| listener.sock != meta.sock);
        if self.listeners.len() == LISTENERS {
            self.listeners.pop_front();
        }
        let owner = meta
            .process
            .as_ref()
            .map(|process| self.processes.intern(process));
        self.listeners.push_back(Listener {
            sock: meta.sock,
            addr: meta.local,
            owner,
        });
    }

    /// A new record, evicting the least recently active one when full. A client
    /// observed from its start is owned by the process of its `connect()`, a server
    /// (until accepted) by its listener's owner.
    fn start(
        &mut self,
        meta: &EventMeta,
        role: Role,
        observed_from_start: bool,
        out: &mut impl FnMut(Output),
    ) -> u32 {
        if self.open >= self.config.max_connections {
            let victim = self.lru_head;
            self.finish(victim, Unfinished::Evicted, out);
        }
        let conn = Conn {
            sock: meta.sock,
            conn_id: self.next_conn_id,
            last_ns: meta.boot_ns,
            state_ns: [meta.boot_ns; STATES],
            last_data_ns: None,
            first_close_ns: None,
            bytes_sent: 0,
            bytes_received: 0,
            owner: None,
            local: Endpoint::new(meta.local),
            remote: Endpoint::new(meta.remote),
            prev: NIL,
            next: NIL,
            netns: 0,
            retransmits: 0,
            exchanges: 0,
            resets_sent: 0,
            resets_received: 0,
            probes_sent: 0,
            probes_answered: 0,
            states: [0; STATES],
            n_states: 0,
            last_turn: None,
            role,
            closer: Closer::None,
            owner_rank: OwnerRank::None,
            v4: meta.local.is_ipv4(),
            probe_pending: false,
            timed_out: false,
            observed_from_start,
            closed: false,
            has_summary: false,
        };
        self.next_conn_id += 1;
        let slot = if self.free_head != NIL {
            let slot = self.free_head;
            self.free_head = self.slab[slot as usize].next;
            self.slab[slot as usize] = conn;
            slot
        } else {
            // Grow by an eighth, not double: the slab's slack is memory per connection.
            let len = self.slab.len();
            if len == self.slab.capacity() {
                let more = (len / 8).max(16).min(self.config.max_connections - len);
                self.slab.reserve_exact(more);
            }
            self.slab.push(conn);
            if self.config.keep_events {
                self.kept.push(KeptEvents::default());
            }
            len as u32
        };
        let conn = &mut self.slab[slot as usize];
        match role {
            Role::Client if observed_from_start => conn.set_owner(
                meta.process.as_ref(),
                OwnerRank::Direct,
                &mut self.processes,
            ),
            Role::Client => {}
            Role::Server => {
                let owner = listener_owner(&self.listeners, meta.local);
                conn.set_owner_arc(owner, OwnerRank::Listener);
            }
        }
        if meta.sock == 0 {
            self.unbound.insert((meta.local, meta.remote), slot);
        } else {
            self.by_sock.insert(meta.sock, slot);
        }
        self.link_newest(slot);
        self.open += 1;
        slot
    }

    /// Emits the record in `slot` and frees it: a closed record as a connection, any
    /// other as `unfinished` says.
    fn finish(&mut self, slot: u32, unfinished: Unfinished, out: &mut impl FnMut(Output)) {
        let kept = if self.config.keep_events {
            std::mem::take(&mut self.kept[slot as usize])
        } else {
            KeptEvents::default()
        };
        let conn = &mut self.slab[slot as usize];
        let mut record = conn.record(kept);
        if !self.config.data_turns {
            record.exchanges = None;
        }
        let closed = conn.closed;
        let sock = conn.sock;
        conn.sock = 0;
        conn.owner = None;
        self.unlink(slot);
        self.slab[slot as usize].next = self.free_head;
        self.free_head = slot;
        if sock == 0 {
            self.unbound.remove(&(record.local, record.remote));
        } else {
            self.by_sock.remove(&sock);
        }
        self.open -= 1;
        out(match (closed, unfinished) {
            (true, _) => Output::Connection(record),
            (false, Unfinished::Evicted) => {
                self.stats.evicted += 1;
                Output::Evicted(record)
            }
            (false, Unfinished::Reaped) => {
                self.stats.reaped += 1;
                Output::Reaped(record)
            }
        });
    }

    /// Emits the closed records whose grace period ended before `now`.
    fn flush_closed(&mut self, now: u64, out: &mut impl FnMut(Output)) {
        while let Some(&(slot, conn_id)) = self.closing.front() {
            let conn = &self.slab[slot as usize];
            // An entry whose record was already emitted (its slot freed or reused).
            if conn.sock == 0 || conn.conn_id != conn_id {
                self.closing.pop_front();
                continue;
            }
            if now.saturating_sub(conn.end_ns()) <= CLOSE_GRACE_NS {
                break;
            }
            self.closing.pop_front();
            self.finish(slot, Unfinished::Reaped, out);
        }
    }

    /// Marks `slot` the most recently active.
    fn touch(&mut self, slot: u32) {
        if self.lru_tail != slot {
            self.unlink(slot);
            self.link_newest(slot);
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let conn = &mut self.slab[slot as usize];
        conn.prev = self.lru_tail;
        conn.next = NIL;
        match self.lru_tail {
            NIL => self.lru_head = slot,
            tail => self.slab[tail as usize].next = slot,
        }
        self.lru_tail = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let conn = &self.slab[slot as usize];
            (conn.prev, conn.next)
        };
        match prev {
            NIL => self.lru_head = next,
            prev => self.slab[prev as usize].next = next,
        }
        match next {
            NIL => self.lru_tail = prev,
            next => self.slab[next as usize].prev = prev,
        }
    }
}

/// Facts the kernel reports after a socket's CLOSE: the RST of `tcp_disconnect` or of a
/// close with unread data, the keepalive timer's timeout, and an accept of a connection
/// reset while it waited in the accept queue. Anything else for a closed record belongs
/// to a later lifecycle whose start was lost.
fn reported_after_close(event: &TraceEvent) -> bool {
    match event {
        TraceEvent::Reset(reset) => reset.direction == ResetDirection::Sent,
        TraceEvent::KeepaliveTimeout(_) | TraceEvent::Accepted(_) => true,
        _ => false,
    }
}

/// How a record that never saw its CLOSE leaves.
#[derive(Clone, Copy)]
enum Unfinished {
    Evicted,
    Reaped,
}

/// The listener a server socket with local address `local` was accepted from: same
/// port, same address or a wildcard, exact address first, then the most recent.
fn listener_owner_entry(listeners: &VecDeque<Listener>, local: SocketAddr) -> Option<&Listener> {
    let same_port = || {
        listeners
            .iter()
            .rev()
            .filter(|l| l.addr.port() == local.port())
    };
    same_port()
        .find(|l| l.addr.ip() == local.ip())
        .or_else(|| same_port().find(|l| l.addr.ip().is_unspecified()))
}

fn listener_owner(listeners: &VecDeque<Listener>, local: SocketAddr) -> Option<&Arc<Process>> {
    listener_owner_entry(listeners, local).and_then(|listener| listener.owner.as_ref())
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use proptest::prelude::*;

    use super::*;
    use crate::event::{
        Accepted, ConnectionSummary, DataTurn, Existing, Keepalive, KeepaliveSettings, Reset,
        Retransmit, RetransmitKind,
    };
    use TcpState::*;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;

    fn process(pid: u32, comm: &str) -> Option<Process> {
        Some(Process {
            pid,
            comm: comm.into(),
        })
    }

    /// One socket's side of a connection, producing its events.
    #[derive(Clone)]
    struct Side {
        sock: u64,
        local: SocketAddr,
        remote: SocketAddr,
    }

    impl Side {
        fn client(sock: u64, port: u16) -> Self {
            Self {
                sock,
                local: format!("127.0.0.1:{port}").parse().unwrap(),
                remote: "127.0.0.1:8191".parse().unwrap(),
            }
        }

        fn server(sock: u64, port: u16) -> Self {
            Self {
                sock,
                local: "127.0.0.1:8191".parse().unwrap(),
                remote: format!("127.0.0.1:{port}").parse().unwrap(),
            }
        }

        fn meta(&self, ns: u64, process: Option<Process>) -> EventMeta {
            EventMeta {
                boot_ns: ns,
                sock: self.sock,
                process,
                local: self.local,
                remote: self.remote,
            }
        }

        fn state_by(
            &self,
            ns: u64,
            old: TcpState,
            new: TcpState,
            p: Option<Process>,
        ) -> TraceEvent {
            TraceEvent::StateChange(StateChange {
                meta: self.meta(ns, p),
                old_state: old,
                new_state: new,
            })
        }

        fn state(&self, ns: u64, old: TcpState, new: TcpState) -> TraceEvent {
            self.state_by(ns, old, new, None)
        }

        fn reset(&self, ns: u64, direction: ResetDirection) -> TraceEvent {
            TraceEvent::Reset(Reset {
                meta: self.meta(ns, None),
                direction,
                reason: None,
                state: None,
            })
        }

        fn keepalive(&self, ns: u64, probe: u8) -> Keepalive {
            Keepalive {
                meta: self.meta(ns, None),
                probe,
                settings: KeepaliveSettings {
                    idle_ms: Some(1000),
                    interval_ms: Some(1000),
                    probes: 2,
                },
            }
        }

        fn probe(&self, ns: u64, probe: u8) -> TraceEvent {
            TraceEvent::KeepaliveProbe(self.keepalive(ns, probe))
        }

        fn keepalive_timeout(&self, ns: u64, probe: u8) -> TraceEvent {
            TraceEvent::KeepaliveTimeout(self.keepalive(ns, probe))
        }

        fn turn(&self, ns: u64, direction: DataDirection) -> TraceEvent {
            TraceEvent::DataTurn(DataTurn {
                meta: self.meta(ns, None),
                direction,
            })
        }

        fn summary(&self, ns: u64, last_data_ns: Option<u64>) -> TraceEvent {
            TraceEvent::Summary(ConnectionSummary {
                meta: self.meta(ns, None),
                bytes_sent: 78,
                bytes_received: 1024,
                retransmits: 2,
                srtt_us: 50,
                netns: 4026531840,
                last_data_ns,
            })
        }

        fn accepted(&self, ns: u64, p: Option<Process>) -> TraceEvent {
            TraceEvent::Accepted(Accepted {
                meta: self.meta(ns, p),
            })
        }

        fn retransmit(&self, ns: u64) -> TraceEvent {
            TraceEvent::Retransmit(Retransmit {
                meta: self.meta(ns, None),
                kind: RetransmitKind::Segment,
                state: Some(Established),
                tcp_flags: None,
            })
        }

        fn existing(&self, ns: u64, state: TcpState) -> TraceEvent {
            TraceEvent::Existing(Existing {
                meta: self.meta(ns, None),
                state,
            })
        }

        /// CLOSE -> SYN_SENT by curl at `ns`, ESTABLISHED 150 µs later.
        fn connect(&self, ns: u64) -> Vec<TraceEvent> {
            vec![
                self.state_by(ns, Close, SynSent, process(9904, "curl")),
                self.state(ns + 150 * US, SynSent, Established),
            ]
        }
    }

    fn config(max_connections: usize) -> CorrelatorConfig {
        CorrelatorConfig {
            max_connections,
            stale_after_ns: 60_000 * MS,
            keep_events: false,
            data_turns: true,
        }
    }

    /// Everything the correlator emits for `events`, then for `reap(u64::MAX)`.
    fn run_with(config: CorrelatorConfig, events: &[TraceEvent]) -> (Vec<Output>, Stats) {
        let mut correlator = Correlator::new(config);
        let mut outputs = Vec::new();
        for event in events {
            correlator.observe(event, &mut |output| outputs.push(output));
        }
        correlator.reap(u64::MAX, &mut |output| outputs.push(output));
        assert_eq!(correlator.open_connections(), 0);
        (outputs, correlator.stats())
    }

    /// The one connection record `events` make.
    fn one(events: &[TraceEvent]) -> ConnectionRecord {
        let (mut outputs, _) = run_with(config(16), events);
        assert_eq!(outputs.len(), 1, "{outputs:#?}");
        match outputs.remove(0) {
            Output::Connection(record) => record,
            other => panic!("not a connection: {other:?}"),
        }
    }

    fn states(record: &ConnectionRecord) -> Vec<(TcpState, u64)> {
        record
            .states
            .iter()
            .map(|entry| (entry.state, entry.offset_us))
            .collect()
    }

    #[test]
    fn client_closing_first_is_local_with_handshake_and_times() {
        let c = Side::client(0xa, 49320);
        let t = 1000 * MS;
        let mut events = c.connect(t);
        events.extend([
            c.turn(t + 200 * US, DataDirection::Sent),
            c.turn(t + MS, DataDirection::Received),
            c.summary(t + 5 * MS, Some(t + 2 * MS)),
            c.state_by(t + 5 * MS, Established, FinWait1, process(9904, "curl")),
            c.state(t + 5 * MS + 30 * US, FinWait1, FinWait2),
            c.state(t + 6 * MS, FinWait2, Close),
        ]);
        let record = one(&events);
        assert_eq!(record.role, Role::Client);
        assert_eq!(record.family, Family::Ipv4);
        assert_eq!(record.local.to_string(), "127.0.0.1:49320");
        assert_eq!(
            (record.pid, record.comm.as_deref()),
            (Some(9904), Some("curl"))
        );
        assert_eq!((record.start_ns, record.end_ns), (t, t + 6 * MS));
        assert_eq!(record.handshake_us, Some(150));
        assert_eq!(record.duration_us, 6000);
        assert_eq!(
            states(&record),
            [
                (SynSent, 0),
                (Established, 150),
                (FinWait1, 5000),
                (FinWait2, 5030),
                (Close, 6000)
            ]
        );
        assert_eq!(record.close_initiator, CloseInitiator::Local);
        assert_eq!(record.exchanges, Some(1));
        assert_eq!(record.idle_before_close_us, Some(3000));
        assert_eq!(
            (record.bytes_sent, record.bytes_received),
            (Some(78), Some(1024))
        );
        assert_eq!(record.netns, Some(4026531840));
        assert_eq!(record.retransmits, 2);
        assert!(record.observed_from_start);
    }

    #[test]
    fn server_closed_by_peer_is_remote_owned_by_listener() {
        let listener = Side {
            sock: 0x1,
            local: "0.0.0.0:8191".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
        };
        let s = Side::server(0xb, 49320);
        // Kernels before 6.x report the child's first state with the listener's remote.
        let cloned = Side {
            remote: listener.remote,
            ..s.clone()
        };
        let t = 1000 * MS;
        let record = one(&[
            listener.state_by(t - MS, Close, Listen, process(9862, "python3")),
            cloned.state(t, Listen, SynRecv),
            s.state(t + 8 * US, SynRecv, Established),
            s.turn(t + 100 * US, DataDirection::Received),
            s.turn(t + 300 * US, DataDirection::Sent),
            s.state(t + 2 * MS, Established, CloseWait),
            s.state_by(t + 3 * MS, CloseWait, LastAck, process(9862, "python3")),
            s.state(t + 3 * MS + 40 * US, LastAck, Close),
        ]);
        assert_eq!(record.role, Role::Server);
        assert_eq!(record.remote, s.remote);
        assert_eq!(
            (record.pid, record.comm.as_deref()),
            (Some(9862), Some("python3"))
        );
        assert_eq!(record.handshake_us, Some(8));
        assert_eq!(record.close_initiator, CloseInitiator::Remote);
        assert_eq!(record.exchanges, Some(1));
        // No summary: no byte counts, the last turn is the last data.
        assert_eq!(record.bytes_sent, None);
        assert_eq!(record.netns, None);
        assert_eq!(record.idle_before_close_us, Some(1700));
    }

    #[test]
    fn accept_names_the_owner_over_the_listener() {
        let listener = Side::server(0x1, 0);
        let s = Side::server(0xb, 49320);
        let record = one(&[
            listener.state_by(MS, Close, Listen, process(1, "supervisor")),
            s.state(2 * MS, Listen, SynRecv),
            s.state(2 * MS, SynRecv, Established),
            s.accepted(3 * MS, process(42, "worker")),
            s.state(4 * MS, Established, FinWait1),
            s.state(5 * MS, FinWait1, Close),
        ]);
        assert_eq!(
            (record.pid, record.comm.as_deref()),
            (Some(42), Some("worker"))
        );
    }

    #[test]
    fn listener_owner_needs_the_same_port_and_forgets_closed_listeners() {
        let other_port = Side::server(0x1, 0);
        let other_port = Side {
            local: "127.0.0.1:9000".parse().unwrap(),
            ..other_port
        };
        let closed = Side::server(0x2, 0);
        let s = Side::server(0xb, 49320);
        let record = one(&[
            other_port.state_by(MS, Close, Listen, process(1, "other")),
            closed.state_by(MS, Close, Listen, process(2, "gone")),
            closed.state(2 * MS, Listen, Close),
            s.state(3 * MS, Listen, SynRecv),
            s.state(3 * MS, SynRecv, Close),
        ]);
        assert_eq!(record.pid, None);
        assert_eq!(record.close_initiator, CloseInitiator::Aborted);
    }

    #[test]
    fn linger_zero_reset_after_close_is_reset_sent() {
        let c = Side::client(0xa, 49320);
        let mut events = c.connect(MS);
        events.extend([
            c.summary(2 * MS, None),
            // tcp_disconnect enters CLOSE, then sends the RST.
            c.state_by(2 * MS, Established, Close, process(9904, "curl")),
            c.reset(2 * MS + 2 * US, ResetDirection::Sent),
        ]);
        let record = one(&events);
        assert_eq!(record.close_initiator, CloseInitiator::ResetSent);
        assert_eq!(record.resets_sent, 1);
        assert_eq!(record.idle_before_close_us, None);
    }

    #[test]
    fn refused_connection_is_reset_received_and_the_socketless_reset_ignored() {
        let c = Side::client(0xa, 49320);
        let refusing = Side::server(0, 49320);
        let (outputs, stats) = run_with(
            config(16),
            &[
                c.state_by(MS, Close, SynSent, process(9904, "curl")),
                refusing.reset(MS + 10 * US, ResetDirection::Sent),
                c.reset(MS + 20 * US, ResetDirection::Received),
                c.state(MS + 20 * US, SynSent, Close),
            ],
        );
        let [Output::Connection(record)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(record.close_initiator, CloseInitiator::ResetReceived);
        assert_eq!(record.resets_received, 1);
        assert_eq!(record.handshake_us, None);
        assert_eq!(stats.ignored_events, 1);
    }

    #[test]
    fn fin_before_reset_decides() {
        let c = Side::client(0xa, 49320);
        let mut events = c.connect(MS);
        events.extend([
            c.state(2 * MS, Established, CloseWait),
            c.reset(3 * MS, ResetDirection::Received),
            c.state(3 * MS, CloseWait, Close),
        ]);
        let record = one(&events);
        assert_eq!(record.close_initiator, CloseInitiator::Remote);
        assert_eq!(record.resets_received, 1);
    }

    #[test]
    fn keepalive_timeout_replaces_its_reset_and_counts_unanswered_probes() {
        let c = Side::client(0xa, 49320);
        let mut events = c.connect(MS);
        events.extend([
            c.probe(1000 * MS, 1),
            c.probe(2000 * MS, 2),
            // Inside the timer callback: RST, summary, CLOSE; the timeout when it returns.
            c.reset(3000 * MS, ResetDirection::Sent),
            c.summary(3000 * MS, None),
            c.state(3000 * MS, Established, Close),
            c.keepalive_timeout(3000 * MS + US, 2),
        ]);
        let record = one(&events);
        assert_eq!(record.close_initiator, CloseInitiator::KeepaliveTimeout);
        assert_eq!(
            record.keepalive,
            KeepaliveCounts {
                probes_sent: 2,
                probes_answered: 0,
                timed_out: true
            }
        );
    }

    #[test]
    fn connect_timeout_is_aborted() {
        let c = Side::client(0xa, 49320);
        let record = one(&[
            c.state_by(MS, Close, SynSent, process(9904, "curl")),
            c.retransmit(1000 * MS),
            c.state(3000 * MS, SynSent, Close),
        ]);
        assert_eq!(record.close_initiator, CloseInitiator::Aborted);
        assert_eq!(record.retransmits, 1);
        assert_eq!(record.handshake_us, None);
    }

    #[test]
    fn keepalive_probes_answered_by_restart_and_by_data() {
        // The seed's story 3: the request hangs, the client's probes are answered, then
        // the response comes and the connection closes normally.
        let c = Side::client(0xa, 49320);
        let mut events = c.connect(MS);
        events.extend([
            c.turn(2 * MS, DataDirection::Sent),
            c.probe(1000 * MS, 1),
            c.probe(2000 * MS, 1),
            c.probe(3000 * MS, 1),
            c.turn(3500 * MS, DataDirection::Received),
            c.state(3600 * MS, Established, FinWait1),
            c.state(3600 * MS, FinWait1, FinWait2),
            c.state(3601 * MS, FinWait2, Close),
        ]);
        let record = one(&events);
        assert_eq!(
            record.keepalive,
            KeepaliveCounts {
                probes_sent: 3,
                probes_answered: 3,
                timed_out: false
            }
        );
        assert_eq!(record.exchanges, Some(1));
        assert_eq!(record.close_initiator, CloseInitiator::Local);
    }

    #[test]
    fn probe_lost_then_answered_counts_one_answer() {
        let c = Side::client(0xa, 49320);
        let mut events = c.connect(MS);
        events.extend([
            c.probe(1000 * MS, 1),
            c.probe(1100 * MS, 2),
            c.probe(2000 * MS, 1),
            // The last probe's fate is never shown.
            c.reset(2100 * MS, ResetDirection::Received),
            c.state(2100 * MS, Established, Close),
        ]);
        let record = one(&events);
        assert_eq!(record.keepalive.probes_sent, 3);
        assert_eq!(record.keepalive.probes_answered, 1);
        assert_eq!(record.close_initiator, CloseInitiator::ResetReceived);
    }

    #[test]
    fn keep_alive_exchanges_count_requests_on_both_sides() {
        let c = Side::client(0xa, 49320);
        let s = Side::server(0xb, 49320);
        let mut events = c.connect(MS);
        events.extend([
            s.state(MS + 100 * US, Listen, SynRecv),
            s.state(MS + 110 * US, SynRecv, Established),
        ]);
        for request in 0..3 {
            let t = (10 + request * 10) * MS;
            events.extend([
                c.turn(t, DataDirection::Sent),
                s.turn(t + 10 * US, DataDirection::Received),
                s.turn(t + 500 * US, DataDirection::Sent),
                c.turn(t + 510 * US, DataDirection::Received),
            ]);
        }
        // The server closes the idle connection 5 s after the last response.
        let close = 30 * MS + 500 * US + 5000 * MS;
        events.extend([
            s.state(close, Established, FinWait1),
            c.state(close + 10 * US, Established, CloseWait),
            s.state(close + 20 * US, FinWait1, FinWait2),
            c.state(close + 100 * US, CloseWait, LastAck),
            s.state(close + 110 * US, FinWait2, Close),
            c.state(close + 120 * US, LastAck, Close),
        ]);
        let (outputs, _) = run_with(config(16), &events);
        let records: Vec<_> = outputs
            .into_iter()
            .map(|output| match output {
                Output::Connection(record) => record,
                other => panic!("{other:?}"),
            })
            .collect();
        let [server, client] = &records[..] else {
            panic!("{records:#?}");
        };
        assert_eq!((server.role, client.role), (Role::Server, Role::Client));
        assert_eq!((server.exchanges, client.exchanges), (Some(3), Some(3)));
        assert_eq!(server.close_initiator, CloseInitiator::Local);
        assert_eq!(client.close_initiator, CloseInitiator::Remote);
        assert_eq!(server.idle_before_close_us, Some(5_000_000));
        assert_eq!(client.idle_before_close_us, Some(5_000_000));
        assert_ne!(server.conn_id, client.conn_id);
    }

    #[test]
    fn reused_socket_address_starts_a_new_record() {
        let first = Side::client(0xa, 49320);
        let second = Side::client(0xa, 49321);
        let mut events = first.connect(MS);
        events.push(first.state(2 * MS, Established, FinWait1));
        events.push(first.state(2 * MS, FinWait1, Close));
        // The same address, reused within the grace period and after it.
        events.extend(second.connect(3 * MS));
        events.push(second.state(4 * MS, Established, Close));
        events.extend(first.connect(100 * MS));
        events.push(first.state(101 * MS, Established, CloseWait));
        events.push(first.state(101 * MS, CloseWait, Close));
        let (outputs, stats) = run_with(config(16), &events);
        let records: Vec<_> = outputs
            .iter()
            .map(|output| match output {
                Output::Connection(record) => {
                    (record.conn_id, record.local.port(), record.close_initiator)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            records,
            [
                (1, 49320, CloseInitiator::Local),
                (2, 49321, CloseInitiator::Aborted),
                (3, 49320, CloseInitiator::Remote)
            ]
        );
        assert_eq!(stats, Stats::default());
    }

    #[test]
    fn lost_close_then_reuse_reaps_the_old_record() {
        let first = Side::client(0xa, 49320);
        let second = Side::client(0xa, 49321);
        let mut events = first.connect(MS);
        events.extend(second.connect(2 * MS));
        events.push(second.state(3 * MS, Established, FinWait1));
        events.push(second.state(3 * MS, FinWait1, Close));
        let (outputs, stats) = run_with(config(16), &events);
        let [Output::Reaped(old), Output::Connection(new)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(old.local.port(), 49320);
        assert_eq!(old.close_initiator, CloseInitiator::Unknown);
        assert_eq!(old.end_ns, MS + 150 * US);
        assert_eq!(new.local.port(), 49321);
        assert_eq!(stats.reaped, 1);
    }

    #[test]
    fn a_closed_record_waits_out_its_grace_period() {
        let c = Side::client(0xa, 49320);
        let other = Side::client(0xb, 1);
        let mut correlator = Correlator::new(config(16));
        let mut outputs = Vec::new();
        let mut events = c.connect(MS);
        events.push(c.state(2 * MS, Established, Close));
        events.push(other.state(2 * MS + CLOSE_GRACE_NS, Close, SynSent));
        for event in &events {
            correlator.observe(event, &mut |output| outputs.push(output));
        }
        assert!(outputs.is_empty());
        assert_eq!(correlator.open_connections(), 2);
        let later = other.state(3 * MS + CLOSE_GRACE_NS, SynSent, Close);
        correlator.observe(&later, &mut |output| outputs.push(output));
        assert_eq!(outputs.len(), 1);
        // The other one's grace, for reap.
        let mut reaped = Vec::new();
        correlator.reap(3 * MS + 2 * CLOSE_GRACE_NS + 1, &mut |output| {
            reaped.push(output)
        });
        assert!(matches!(&reaped[..], [Output::Connection(r)] if r.local.port() == 1));
        assert_eq!(correlator.open_connections(), 0);
    }

    #[test]
    fn full_correlator_evicts_the_least_recently_active() {
        let a = Side::client(0xa, 1);
        let b = Side::client(0xb, 2);
        let c = Side::client(0xc, 3);
        let mut events = a.connect(MS);
        events.extend(b.connect(2 * MS));
        events.push(a.turn(3 * MS, DataDirection::Sent));
        events.extend(c.connect(4 * MS));
        let mut correlator = Correlator::new(config(2));
        let mut outputs = Vec::new();
        for event in &events {
            correlator.observe(event, &mut |output| outputs.push(output));
            assert!(correlator.open_connections() <= 2);
        }
        let [Output::Evicted(evicted)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(evicted.local.port(), 2);
        assert_eq!(evicted.close_initiator, CloseInitiator::Unknown);
        assert_eq!(correlator.stats().evicted, 1);
        // The evicted connection's later events: a state starts a partial record, the
        // rest are ignored.
        outputs.clear();
        correlator.observe(&b.turn(5 * MS, DataDirection::Sent), &mut |o| {
            outputs.push(o)
        });
        assert_eq!(correlator.stats().ignored_events, 1);
        correlator.observe(&b.state(6 * MS, Established, FinWait1), &mut |o| {
            outputs.push(o)
        });
        let [Output::Evicted(evicted)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(evicted.local.port(), 1);
    }

    #[test]
    fn stale_records_are_reaped() {
        let a = Side::client(0xa, 1);
        let b = Side::client(0xb, 2);
        let mut correlator = Correlator::new(config(16));
        let mut outputs = Vec::new();
        for event in a.connect(MS).iter().chain(&b.connect(30_000 * MS)) {
            correlator.observe(event, &mut |output| outputs.push(output));
        }
        correlator.reap(61_000 * MS, &mut |output| outputs.push(output));
        let [Output::Reaped(reaped)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(reaped.local.port(), 1);
        assert_eq!(reaped.close_initiator, CloseInitiator::Unknown);
        assert_eq!(reaped.end_ns, MS + 150 * US);
        assert_eq!(correlator.open_connections(), 1);
        assert_eq!(correlator.stats().reaped, 1);
    }

    #[test]
    fn existing_connections_start_partial_records() {
        let listener = Side::server(0x1, 0);
        let s = Side::server(0xb, 49320);
        let c = Side::client(0xa, 49320);
        let (outputs, stats) = run_with(
            config(16),
            &[
                listener.existing(MS, Listen),
                s.existing(MS, CloseWait),
                c.existing(MS, SynSent),
                c.existing(MS, SynSent),
                c.state(MS + 500 * US, SynSent, Established),
                s.state(2 * MS, CloseWait, LastAck),
                s.state(3 * MS, LastAck, Close),
                c.state(4 * MS, Established, FinWait1),
                c.state(4 * MS, FinWait1, FinWait2),
                c.state(5 * MS, FinWait2, Close),
            ],
        );
        let [Output::Connection(server), Output::Connection(client)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(server.role, Role::Server);
        assert!(!server.observed_from_start);
        assert_eq!(server.close_initiator, CloseInitiator::Remote);
        assert_eq!(
            states(server),
            [(CloseWait, 0), (LastAck, 1000), (Close, 2000)]
        );
        assert_eq!(client.role, Role::Client);
        assert_eq!(client.handshake_us, None);
        assert_eq!(client.close_initiator, CloseInitiator::Local);
        assert_eq!(client.idle_before_close_us, None);
        assert_eq!(stats.ignored_events, 1);
    }

    #[test]
    fn sock_diag_connections_bind_to_their_first_event_by_address() {
        let c = Side::client(0xa, 49320);
        let other = Side::client(0xc, 49321);
        let unbound = |side: &Side| {
            let mut event = side.existing(MS, Established);
            let TraceEvent::Existing(existing) = &mut event else {
                unreachable!()
            };
            existing.meta.sock = 0;
            event
        };
        let (outputs, stats) = run_with(
            config(16),
            &[
                unbound(&c),
                unbound(&other),
                unbound(&c),
                c.state(4 * MS, Established, FinWait1),
                c.state(4 * MS, FinWait1, FinWait2),
                c.state(5 * MS, FinWait2, Close),
            ],
        );
        let [Output::Connection(client), Output::Reaped(still_open)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!((still_open.sock, still_open.local), (0, other.local));
        assert_eq!(client.sock, 0xa);
        assert!(!client.observed_from_start);
        assert_eq!(client.close_initiator, CloseInitiator::Local);
        assert_eq!(stats.ignored_events, 1, "the repeated existing connection");
    }

    #[test]
    fn kept_events_keep_both_ends() {
        let c = Side::client(0xa, 49320);
        let mut events = c.connect(MS);
        for i in 0..KEPT_EVENTS as u64 {
            events.push(c.retransmit(2 * MS + i));
        }
        events.push(c.state(3 * MS, Established, Close));
        let (outputs, _) = run_with(
            CorrelatorConfig {
                keep_events: true,
                data_turns: true,
                ..config(16)
            },
            &events,
        );
        let [Output::Connection(record)] = &outputs[..] else {
            panic!("{outputs:#?}");
        };
        assert_eq!(record.events.len(), KEPT_EVENTS);
        assert_eq!(record.events_omitted, 3);
        assert_eq!(record.events[0], events[0]);
        assert_eq!(record.events.last(), events.last());
    }

    /// Issue 4's budget: at most 256 bytes per open connection, map entry included.
    #[test]
    fn memory_per_connection() {
        // The map's entry plus hashbrown's control byte.
        let entry = size_of::<(u64, u32)>() + 1;
        let total = size_of::<Conn>() + entry;
        println!(
            "Conn {} + map entry {entry} = {total} bytes",
            size_of::<Conn>()
        );
        assert!(total <= 256, "{total}");
    }

    #[test]
    fn records_serialize_as_documented() {
        let c = Side::client(0xffff8881046d6f00, 49320);
        let mut events = c.connect(MS);
        events.push(c.state(2 * MS, Established, Close));
        let value = serde_json::to_value(one(&events)).unwrap();
        assert_eq!(value["sock"], "0xffff8881046d6f00");
        assert_eq!(value["role"], "client");
        assert_eq!(value["family"], "ipv4");
        assert_eq!(value["local"], "127.0.0.1:49320");
        assert_eq!(value["close_initiator"], "aborted");
        assert_eq!(
            value["states"][1],
            serde_json::json!({"state": "ESTABLISHED", "offset_us": 150})
        );
        assert_eq!(
            value["keepalive"],
            serde_json::json!({"probes_sent": 0, "probes_answered": 0, "timed_out": false})
        );
        assert_eq!(value["bytes_sent"], serde_json::Value::Null);
        assert!(value.get("events").is_none());
    }

    /// Lifecycles the kernel produces, with the record each must give.
    #[derive(Clone, Copy, Debug)]
    enum Story {
        ClientLocal,
        ClientRemote,
        Server,
        Refused,
        Linger0,
        KeepaliveTimeout,
        ConnectTimeout,
    }

    impl Story {
        fn events(self, side: &Side) -> (Vec<TraceEvent>, Vec<TcpState>, CloseInitiator) {
            use DataDirection::*;
            let s = |old, new| side.state(0, old, new);
            let (events, initiator) = match self {
                Self::ClientLocal => (
                    vec![
                        s(Close, SynSent),
                        s(SynSent, Established),
                        side.turn(0, Sent),
                        side.turn(0, Received),
                        s(Established, FinWait1),
                        s(FinWait1, FinWait2),
                        s(FinWait2, Close),
                    ],
                    CloseInitiator::Local,
                ),
                Self::ClientRemote => (
                    vec![
                        s(Close, SynSent),
                        s(SynSent, Established),
                        side.probe(0, 1),
                        s(Established, CloseWait),
                        s(CloseWait, LastAck),
                        s(LastAck, Close),
                    ],
                    CloseInitiator::Remote,
                ),
                Self::Server => (
                    vec![
                        s(Listen, SynRecv),
                        s(SynRecv, Established),
                        side.accepted(0, process(7, "server")),
                        side.turn(0, Received),
                        side.turn(0, Sent),
                        side.summary(0, None),
                        s(Established, FinWait1),
                        s(FinWait1, Close),
                    ],
                    CloseInitiator::Local,
                ),
                Self::Refused => (
                    vec![
                        s(Close, SynSent),
                        side.reset(0, ResetDirection::Received),
                        s(SynSent, Close),
                    ],
                    CloseInitiator::ResetReceived,
                ),
                Self::Linger0 => (
                    vec![
                        s(Close, SynSent),
                        s(SynSent, Established),
                        side.retransmit(0),
                        s(Established, Close),
                        side.reset(0, ResetDirection::Sent),
                    ],
                    CloseInitiator::ResetSent,
                ),
                Self::KeepaliveTimeout => (
                    vec![
                        s(Close, SynSent),
                        s(SynSent, Established),
                        side.probe(0, 1),
                        side.probe(0, 2),
                        side.reset(0, ResetDirection::Sent),
                        side.summary(0, None),
                        s(Established, Close),
                        side.keepalive_timeout(0, 2),
                    ],
                    CloseInitiator::KeepaliveTimeout,
                ),
                Self::ConnectTimeout => (
                    vec![s(Close, SynSent), s(SynSent, Close)],
                    CloseInitiator::Aborted,
                ),
            };
            let states = events
                .iter()
                .filter_map(|event| match event {
                    TraceEvent::StateChange(change) => Some(change.new_state),
                    _ => None,
                })
                .collect();
            (events, states, initiator)
        }
    }

    fn story() -> impl Strategy<Value = Story> {
        prop_oneof![
            Just(Story::ClientLocal),
            Just(Story::ClientRemote),
            Just(Story::Server),
            Just(Story::Refused),
            Just(Story::Linger0),
            Just(Story::KeepaliveTimeout),
            Just(Story::ConnectTimeout),
        ]
    }

    fn set_time(event: &mut TraceEvent, ns: u64) {
        match event {
            TraceEvent::StateChange(StateChange { meta, .. })
            | TraceEvent::Reset(Reset { meta, .. })
            | TraceEvent::Retransmit(Retransmit { meta, .. })
            | TraceEvent::KeepaliveProbe(Keepalive { meta, .. })
            | TraceEvent::KeepaliveTimeout(Keepalive { meta, .. })
            | TraceEvent::DataTurn(DataTurn { meta, .. })
            | TraceEvent::Summary(ConnectionSummary { meta, .. })
            | TraceEvent::Accepted(Accepted { meta })
            | TraceEvent::Existing(Existing { meta, .. }) => meta.boot_ns = ns,
        }
    }

    const SOCKS: u64 = 3;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Lifecycles on a few socket addresses (so addresses are reused), each socket's
        /// in order, interleaved across sockets, some events dropped, timestamps jittered
        /// as across CPUs.
        #[test]
        fn any_interleaving_is_handled(
            lifecycles in prop::collection::vec((story(), 0..SOCKS), 1..10),
            picks in prop::collection::vec(any::<u8>(), 100),
            drops in prop::collection::vec(prop::bool::weighted(0.08), 100),
            jitter in prop::collection::vec(0..5_000u64, 100),
            max_connections in 1..6usize,
        ) {
            // Per socket, its lifecycles' events in order, tagged with the lifecycle.
            let mut queues: Vec<VecDeque<(usize, TraceEvent)>> = vec![VecDeque::new(); SOCKS as usize];
            let mut expected = Vec::new();
            for (index, &(story, sock)) in lifecycles.iter().enumerate() {
                let side = Side::client(0x100 + sock, 10_000 + index as u16);
                let (events, states, initiator) = story.events(&side);
                queues[sock as usize].extend(events.into_iter().map(|event| (index, event)));
                expected.push((states, initiator));
            }
            let mut stream = Vec::new();
            let mut n = 0;
            while queues.iter().any(|queue| !queue.is_empty()) {
                let ready: Vec<usize> = (0..queues.len()).filter(|&q| !queues[q].is_empty()).collect();
                let q = ready[usize::from(picks[n % picks.len()]) % ready.len()];
                let (lifecycle, mut event) = queues[q].pop_front().unwrap();
                set_time(&mut event, 1_000_000 + n as u64 * 1_000 + jitter[n % jitter.len()]);
                stream.push((lifecycle, drops[n % drops.len()], event));
                n += 1;
            }
            // Well formed: nothing of it dropped, nor the first event of the next
            // lifecycle on its socket (else that one's late facts could join it).
            let mut well_formed = vec![true; lifecycles.len()];
            for (lifecycle, dropped, _) in &stream {
                if *dropped {
                    well_formed[*lifecycle] = false;
                }
            }
            for (index, &(_, sock)) in lifecycles.iter().enumerate() {
                let next = (index + 1..lifecycles.len()).find(|&later| lifecycles[later].1 == sock);
                if let Some(next) = next {
                    let first = stream.iter().find(|(lifecycle, ..)| *lifecycle == next).unwrap();
                    if first.1 {
                        well_formed[index] = false;
                    }
                }
            }

            let mut correlator = Correlator::new(CorrelatorConfig {
                max_connections,
                stale_after_ns: 50_000,
                keep_events: true,
                data_turns: true,
            });
            let mut outputs = Vec::new();
            for (i, (_, dropped, event)) in stream.iter().enumerate() {
                if !dropped {
                    correlator.observe(event, &mut |output| outputs.push(output));
                }
                prop_assert!(correlator.open_connections() <= max_connections);
                if i % 7 == 0 {
                    correlator.reap(event.meta().boot_ns, &mut |output| outputs.push(output));
                }
            }
            correlator.reap(u64::MAX, &mut |output| outputs.push(output));
            prop_assert_eq!(correlator.open_connections(), 0);

            let mut records_of = vec![Vec::new(); lifecycles.len()];
            for output in &outputs {
                let (record, closed) = match output {
                    Output::Connection(record) => (record, true),
                    Output::Evicted(record) | Output::Reaped(record) => (record, false),
                };
                prop_assert!(record.end_ns >= record.start_ns);
                prop_assert!(record.states.windows(2).all(|w| w[0].offset_us <= w[1].offset_us));
                prop_assert!(record.states.last().is_none_or(|last| last.offset_us <= record.duration_us));
                records_of[usize::from(record.local.port() - 10_000)].push((record, closed));
            }
            // Enough room: each well-formed lifecycle is exactly one connection record,
            // telling its story.
            if max_connections >= SOCKS as usize {
                for (index, (states, initiator)) in expected.iter().enumerate() {
                    if !well_formed[index] {
                        continue;
                    }
                    let records = &records_of[index];
                    prop_assert_eq!(records.len(), 1, "lifecycle {}: {:#?}", index, records);
                    let (record, closed) = records[0];
                    prop_assert!(closed);
                    prop_assert!(record.observed_from_start);
                    let got: Vec<TcpState> = record.states.iter().map(|entry| entry.state).collect();
                    prop_assert_eq!(&got, states);
                    prop_assert_eq!(record.close_initiator, *initiator);
                }
            }
        }
    }
}
