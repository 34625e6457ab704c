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
//! has a record ends that record ([`Output::Ended`]: its socket is gone, its close was
//! not reported) and starts a new one. Sockets entering LISTEN are listeners, not
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
//! A socket this side closed first that the kernel handed to a timewait socket in
//! FIN_WAIT2 (the peer acknowledged its FIN but sent none) has not really ended: the
//! timewait socket waits for the peer's FIN. Where that socket is followed
//! (`follow_timewait`), its record waits too, past its grace period, for the
//! [`TraceEvent::TimewaitEnd`] with its ends, or for `tcp_fin_timeout` (then the kernel
//! dropped the timewait socket: a timeout). Resets a timewait socket sends count for the
//! record held with their ends, and so do, for a record handed over in FIN_WAIT2, those
//! the listener sends for them (the kernel had kept no timewait socket).
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
//! - a FIN: the first transition to FIN_WAIT1, FIN_WAIT2 or TIME_WAIT means this host sent
//!   the first FIN (`local`); to CLOSE_WAIT or LAST_ACK, the peer did (`remote`); CLOSING
//!   means both FINs crossed (`simultaneous`: each side had sent its FIN before the
//!   other's arrived). A connection already closing when tracing started counts its
//!   state at that time.
//! - an RST before any FIN: `reset_sent` or `reset_received` (in either order around the
//!   CLOSE, see above).
//! - a keepalive timeout before any FIN: `keepalive_timeout`; it replaces `reset_sent`,
//!   because the keepalive timer sends an RST as it gives up.
//! - none of these but the kernel reported CLOSE: `aborted` (a connect or handshake that
//!   timed out, a retransmission timeout, `ss -K`).
//! - none of these and no CLOSE (evicted, reaped or ended): `unknown`.
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
//! # Handshake
//!
//! The handshake's time is what the kernel measured (first sample of `srtt_us` as the
//! socket enters ESTABLISHED): for a client the round trip of its SYN, for a server of
//! its SYN-ACK (a server's socket only exists once the handshake is done). The
//! client's `CLOSE -> SYN_SENT` is no start: the kernel sets it before it picks a
//! local port and sends the SYN. The kernel takes no sample from a segment it sent
//! again: a client whose SYN was sent again is timed from its states; a server's first
//! SYN-ACK went out the initial retransmission timeout (1 s) before the first SYN-ACK
//! retransmit event with the same ends, and the handshake runs from there.
//!
//! # Requests, responses and idleness
//!
//! See [`exchanges`]: bursts of data each way from the turns of the data direction
//! ([`TraceEvent::DataTurn`]), response times, and a request left unanswered.
//! `idle_before_close_us` runs from the last data activity before the first FIN or RST
//! (the summary's `last_data_ns` or the last turn) to that FIN or RST.
//!
//! # Orphans
//!
//! Events that belong to no record are counted in [`Stats::ignored_events`] and otherwise
//! dropped: resets without a socket (`sock` 0, e.g. the kernel refusing a connection to a
//! port without listener), SYN-ACK retransmits (keyed by the request socket, which is
//! never a record; their time is kept for the handshake, see above), events other than state changes of a connection whose record was
//! evicted or whose start was lost (its next state change starts a partial record),
//! events of a later lifecycle reaching a closed record (see Closing), transitions to
//! CLOSE of sockets without a record, timewait ends for no record waiting for one, and
//! `Existing` events for known sockets or for
//! states nothing follows (CLOSE, TIME_WAIT, NEW_SYN_RECV; the live start-up dump no
//! longer lists TIME_WAIT, traces recorded by earlier versions may).
//!
//! # Memory
//!
//! At most `max_connections` records are held (closing ones included); a new one evicts
//! the least recently active, emitted as [`Output::Evicted`] and counted. An open record
//! is held to 256 bytes with its map entry (the `memory_per_connection` test), in a slab
//! that grows by an eighth, with an intrusive LRU list; processes are shared through an
//! interning table.

mod close;
mod conn;
pub mod exchanges;
mod keepalive;
mod lifecycle;
mod outcome;
mod owner;
mod record;
mod table;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

use self::{
    conn::Conn,
    owner::{Cgroups, Listeners, OwnerRank, Processes},
    table::{NIL, Table},
};
pub use self::{
    keepalive::{ProbeFate, probe_fate},
    outcome::Outcome,
    record::{
        AtStart, CloseInitiator, Closes, ConnectionRecord, Family, KEPT_EVENTS, KeepaliveCounts,
        ResponseTimes, Role, StateEntry, TimewaitEndRecord,
    },
};
use crate::event::{
    Direction, EventMeta, PeerEnd, RetransmitKind, StateChange, TcpCounters, TcpState, TimewaitEnd,
    TraceEvent,
};

/// SYN-ACK retransmits remembered until their connection's server socket is established;
/// past that the oldest is forgotten.
const SYNACK_RETRANSMITS: usize = 1024;

/// How long a closed record waits for the facts the kernel reports after the CLOSE. They
/// come from the same kernel call, microseconds later, but that call can be preempted
/// between the two (seen for tens of milliseconds on a loaded 2-CPU guest) while the
/// daemon reaps by the clock: a second covers that at the price of records written a
/// second later.
pub const CLOSE_GRACE_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorrelatorConfig {
    /// Records held at most (at least 1).
    pub max_connections: usize,
    /// A record without events for longer than this is reaped by [`Correlator::reap`].
    pub stale_after_ns: u64,
    /// Keep each record's events in [`ConnectionRecord::events`] (for the pretty timeline).
    pub keep_events: bool,
    /// Data turns are traced (the `data` hook is attached). Without them a record's
    /// requests and responses are unknown (`None`), not zero.
    pub data_turns: bool,
    /// Timewait sockets in FIN_WAIT2 are followed (the `timewait` hook is attached): how
    /// long one waits for the peer's FIN (`net.ipv4.tcp_fin_timeout`), nanoseconds. A
    /// record handed over in FIN_WAIT2 then waits as long, after its grace period, for
    /// how that wait ends (see the module docs).
    pub follow_timewait: Option<u64>,
}

/// Records without any event for a day are reaped as stale (their close was lost). A
/// healthy idle keep-alive connection sends nothing, and TCP keepalive's default idle
/// time is 2 hours.
pub const STALE_AFTER_NS: u64 = 24 * 3600 * 1_000_000_000;

/// Open connections tracked at most unless told otherwise (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 65_536;

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            stale_after_ns: STALE_AFTER_NS,
            keep_events: false,
            data_turns: true,
            follow_timewait: None,
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
    /// Its close was never seen: no events for longer than `stale_after_ns`.
    Reaped(ConnectionRecord),
    /// It ended without the close the kernel reports: its socket's address began
    /// another connection, so its socket was gone.
    Ended(ConnectionRecord),
    /// A response answered a request on an open connection (its record will count it).
    Response(ResponseTime),
}

/// One request's response time, as it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseTime {
    pub role: Role,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub micros: u64,
}

/// Counters of what the correlator could not turn into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events for a socket without a record (see the module docs).
    pub ignored_events: u64,
    pub evicted: u64,
    pub reaped: u64,
    pub ended: u64,
}

/// Turns [`TraceEvent`]s into [`ConnectionRecord`]s; see the module docs.
pub struct Correlator {
    config: CorrelatorConfig,
    table: Table,
    /// Closed records waiting out [`CLOSE_GRACE_NS`], oldest first: (slot, conn_id).
    closing: VecDeque<(u32, u64)>,
    listeners: Listeners,
    processes: Processes,
    cgroups: Cgroups,
    /// The first SYN-ACK retransmit of each pending handshake: (local, remote, time).
    synack_retransmits: VecDeque<(SocketAddr, SocketAddr, u64)>,
    /// The counters and state of records found open at start, by `conn_id`: kept here,
    /// not in every open record, for the few that have them.
    at_start: HashMap<u64, (TcpCounters, TcpState)>,
    /// Closed records handed to a timewait socket in FIN_WAIT2, past their grace period,
    /// waiting for how the timewait socket's wait ends (`follow_timewait`), oldest
    /// first: (slot, conn_id).
    awaiting_peer: VecDeque<(u32, u64)>,
    /// How those waits ended, and when (boot clock; none for a timeout), by `conn_id`.
    timewait_ends: HashMap<u64, (PeerEnd, Option<u64>)>,
    next_conn_id: u64,
    stats: Stats,
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Self {
        let config = CorrelatorConfig {
            max_connections: config.max_connections.clamp(1, NIL as usize),
            ..config
        };
        Self {
            table: Table::new(config.max_connections, config.keep_events),
            config,
            closing: VecDeque::new(),
            listeners: Listeners::default(),
            processes: Processes::default(),
            cgroups: Cgroups::default(),
            synack_retransmits: VecDeque::new(),
            at_start: HashMap::new(),
            awaiting_peer: VecDeque::new(),
            timewait_ends: HashMap::new(),
            next_conn_id: 1,
            stats: Stats::default(),
        }
    }

    /// Records held: open connections and closed ones waiting out the grace period.
    pub fn open_connections(&self) -> usize {
        self.table.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The connections open now, as (role, local end, remote end): the records held but
    /// those closed and waiting out their grace period.
    pub fn open(&self) -> impl Iterator<Item = (Role, SocketAddr, SocketAddr)> {
        self.table
            .iter()
            .filter(|conn| !conn.closed)
            .map(|conn| (conn.role, conn.local.get(conn.v4), conn.remote.get(conn.v4)))
    }

    /// Takes one event, in the order the kernel produced them.
    pub fn observe(&mut self, event: &TraceEvent, out: &mut impl FnMut(Output)) {
        let meta = event.meta();
        self.flush_closed(meta.boot_ns, out);
        if meta.sock != 0 && self.table.has_unbound() {
            self.settle_existing(event);
        }
        match event {
            TraceEvent::StateChange(change) => self.state_change(event, change, out),
            TraceEvent::Existing(existing) => {
                if existing.state == TcpState::Listen {
                    self.listeners
                        .add(meta, existing.netns, &mut self.processes);
                } else if self.table.slot(meta.sock).is_some()
                    || self.table.has_unbound_ends(meta.local, meta.remote)
                    || matches!(
                        existing.state,
                        TcpState::Close | TcpState::TimeWait | TcpState::NewSynRecv
                    )
                {
                    // Already known from its events, or nothing will follow.
                    self.stats.ignored_events += 1;
                } else {
                    let role = self.guess_role(meta.local, existing.netns);
                    let slot = self.start(meta, role, false, out);
                    if let Some(counters) = existing.counters {
                        let conn_id = self.table.conn(slot).conn_id;
                        self.at_start.insert(conn_id, (counters, existing.state));
                    }
                    self.apply(slot, event, out);
                }
            }
            TraceEvent::Retransmit(retransmit) if retransmit.kind == RetransmitKind::SynAck => {
                self.synack_retransmit(meta);
            }
            TraceEvent::TimewaitEnd(end) => self.timewait_end(end, event, out),
            _ => match self
                .table
                .slot(meta.sock)
                .or_else(|| self.reset_after_close(event))
            {
                Some(slot) if !self.table.conn(slot).closed || reported_after_close(event) => {
                    self.apply(slot, event, out);
                    self.release_if_ended(slot, meta.boot_ns, out);
                }
                _ => self.stats.ignored_events += 1,
            },
        }
    }

    /// Emits records without events for longer than `stale_after_ns` as
    /// [`Output::Reaped`], and closed records past their grace period. `reap(u64::MAX)`
    /// emits everything held (the end of a replay) unless `stale_after_ns` is `u64::MAX`.
    pub fn reap(&mut self, now_boot_ns: u64, out: &mut impl FnMut(Output)) {
        self.flush_closed(now_boot_ns, out);
        while let Some(slot) = self.table.oldest() {
            let conn = self.table.conn(slot);
            if now_boot_ns.saturating_sub(conn.last_ns()) <= self.config.stale_after_ns {
                break;
            }
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
        let known = self.table.slot(meta.sock);
        let lifecycle_start = (old == Close && new != Close) || (old == Listen && new == SynRecv);
        // A closed record takes late facts, never another state: a state means a new
        // lifecycle, whose start was lost if it is not one.
        if let Some(slot) = known
            && (lifecycle_start || self.table.conn(slot).closed)
        {
            self.finish(slot, Unfinished::Ended, out);
        }
        if new == Listen {
            self.listeners.add(meta, None, &mut self.processes);
            return;
        }
        if old == Listen && new != SynRecv {
            self.listeners.remove(meta.sock);
            return;
        }
        let slot = match self.table.slot(meta.sock) {
            Some(slot) => slot,
            None if new == Close => {
                self.stats.ignored_events += 1;
                return;
            }
            None => {
                let role = match (old, new) {
                    (Close, SynSent) => Role::Client,
                    (Listen, SynRecv) => Role::Server,
                    _ => self.guess_role(meta.local, None),
                };
                self.start(meta, role, lifecycle_start, out)
            }
        };
        self.apply(slot, event, out);
        if let Some(sample) = change.handshake {
            let first_retransmit = match self.table.conn(slot).role {
                Role::Server => self.take_synack_retransmit(meta.local, meta.remote),
                Role::Client => None,
            };
            self.table
                .conn_mut(slot)
                .established(meta.boot_ns, sample, first_retransmit);
        }
        if new == Close {
            if let Some(events) = self.table.conn(slot).discarded_child_events()
                && self.table.iter().any(|other| {
                    other.sock != meta.sock
                        && !other.closed
                        && other.role == Role::Server
                        && other.local.get(other.v4) == meta.local
                        && other.remote.get(other.v4) == meta.remote
                })
            {
                // The connection is the other socket's: this one is not a record.
                self.table.take_kept(slot);
                self.table.remove(slot);
                self.stats.ignored_events += events;
                return;
            }
            let conn = self.table.conn_mut(slot);
            conn.closed = true;
            self.closing.push_back((slot, conn.conn_id));
        }
    }

    /// A SYN-ACK sent again: its time is kept for the handshake (see the module docs),
    /// the event itself belongs to no record.
    fn synack_retransmit(&mut self, meta: &EventMeta) {
        self.stats.ignored_events += 1;
        let known = self
            .synack_retransmits
            .iter()
            .any(|&(local, remote, _)| (local, remote) == (meta.local, meta.remote));
        if !known {
            if self.synack_retransmits.len() == SYNACK_RETRANSMITS {
                self.synack_retransmits.pop_front();
            }
            self.synack_retransmits
                .push_back((meta.local, meta.remote, meta.boot_ns));
        }
    }

    fn take_synack_retransmit(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
        let at = self
            .synack_retransmits
            .iter()
            .position(|&(l, r, _)| (l, r) == (local, remote))?;
        self.synack_retransmits.remove(at).map(|(_, _, ns)| ns)
    }

    fn apply(&mut self, slot: u32, event: &TraceEvent, out: &mut impl FnMut(Output)) {
        let conn = self.table.conn_mut(slot);
        conn.cgroup_seen(event.meta(), &mut self.cgroups);
        if let Some(micros) = conn.apply(event, &mut self.processes) {
            out(Output::Response(ResponseTime {
                role: conn.role,
                local: conn.local.get(conn.v4),
                remote: conn.remote.get(conn.v4),
                micros,
            }));
        }
        self.table.touch(slot);
        self.table.keep(slot, event);
    }

    fn guess_role(&self, local: SocketAddr, netns: Option<u32>) -> Role {
        if self.listeners.serves(local, netns) {
            Role::Server
        } else {
            Role::Client
        }
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
        if self.table.is_full()
            && let Some(victim) = self.table.oldest()
        {
            self.finish(victim, Unfinished::Evicted, out);
        }
        let mut conn = Conn::new(meta, self.next_conn_id, role, observed_from_start);
        self.next_conn_id += 1;
        match role {
            Role::Client if observed_from_start => conn.offer_owner(
                meta.process.as_ref(),
                OwnerRank::Direct,
                &mut self.processes,
            ),
            Role::Client => {}
            Role::Server => {
                conn.offer_shared_owner(self.listeners.owner(meta.local), OwnerRank::Listener)
            }
        }
        self.table.insert(conn, meta.local, meta.remote)
    }

    /// Emits the record in `slot` and frees it: a closed record as a connection, any
    /// other as `unfinished` says.
    fn finish(&mut self, slot: u32, unfinished: Unfinished, out: &mut impl FnMut(Output)) {
        let kept = self.table.take_kept(slot);
        let conn = self.table.conn(slot);
        let unfinished_outcome = match unfinished {
            Unfinished::Evicted => Outcome::Evicted,
            Unfinished::Reaped => Outcome::Stale,
            Unfinished::Ended => Outcome::Ended,
        };
        let mut record = conn.record(kept, self.config.data_turns, unfinished_outcome);
        record.at_start = (self.at_start.remove(&record.conn_id))
            .map(|(counters, state)| conn::at_start(counters, state, record.role));
        record.timewait_end =
            self.timewait_ends
                .remove(&record.conn_id)
                .map(|(how, at)| TimewaitEndRecord {
                    how,
                    after_us: at.map(|ns| ns.saturating_sub(record.end_ns) / 1_000),
                });
        let closed = conn.closed;
        self.table.remove(slot);
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
            (false, Unfinished::Ended) => {
                self.stats.ended += 1;
                Output::Ended(record)
            }
        });
    }

    /// An event for a connection read from sock_diag (found by its ends) gives its
    /// record the kernel address the event names. sock_diag also lists connections that
    /// open while tracing starts, whose events are traced from their first: such a
    /// connection's record from sock_diag is a copy and is dropped.
    fn settle_existing(&mut self, event: &TraceEvent) {
        let meta = event.meta();
        let Some(existing) = self.table.unbound_slot(meta.local, meta.remote) else {
            return;
        };
        let traced_from_start = match self.table.slot(meta.sock) {
            Some(slot) => self.table.conn(slot).observed_from_start,
            None => starts_lifecycle(event),
        };
        if traced_from_start {
            self.table.remove(existing);
            self.stats.ignored_events += 1;
        } else if self.table.slot(meta.sock).is_none() {
            self.table.bind(meta);
        }
    }

    /// The closed record a reset belongs to that no socket of its own sent: one sent by
    /// the timewait socket that took over its ends (at another address, answering late
    /// segments: a peer writing after the FIN), or, for a record handed over in FIN_WAIT2,
    /// one sent by the listener or for no socket (the peer's segment found no timewait
    /// socket: the kernel had not kept one, which ends the wait of a record waiting for
    /// it). Found by its ends among the records still held.
    fn reset_after_close(&mut self, event: &TraceEvent) -> Option<u32> {
        let TraceEvent::Reset(reset) = event else {
            return None;
        };
        if reset.direction != Direction::Sent {
            return None;
        }
        if reset.state == Some(TcpState::TimeWait) {
            return self
                .closed_with_ends(&reset.meta, |_, _| true)
                .map(|(slot, _)| slot);
        }
        // The first such reset ends the wait; any later one is on the wire too.
        let (slot, conn_id) = self.closed_with_ends(&reset.meta, |slot, conn_id| {
            self.table.conn(slot).handed_to_timewait() == Some(TcpState::FinWait2)
                && self
                    .timewait_ends
                    .get(&conn_id)
                    .is_none_or(|&(how, _)| how == PeerEnd::NoTimewait)
        })?;
        if self.config.follow_timewait.is_some() {
            let end = (PeerEnd::NoTimewait, Some(reset.meta.boot_ns));
            self.timewait_ends.entry(conn_id).or_insert(end);
        }
        Some(slot)
    }

    /// Emits the record in `slot` if it was waiting past its grace period for its
    /// timewait socket's end, which it now has.
    fn release_if_ended(&mut self, slot: u32, now: u64, out: &mut impl FnMut(Output)) {
        let conn = self.table.conn(slot);
        if conn.closed
            && self.timewait_ends.contains_key(&conn.conn_id)
            && now.saturating_sub(conn.end_ns()) > CLOSE_GRACE_NS
        {
            self.finish(slot, Unfinished::Reaped, out);
        }
    }

    /// The newest closed record still held (in its grace period, or waiting for its
    /// timewait socket's end) with `meta`'s ends, of those `wanted` accepts: (slot,
    /// conn_id).
    fn closed_with_ends(
        &self,
        meta: &EventMeta,
        wanted: impl Fn(u32, u64) -> bool,
    ) -> Option<(u32, u64)> {
        self.awaiting_peer
            .iter()
            .chain(&self.closing)
            .rev()
            .copied()
            .find(|&(slot, conn_id)| {
                self.table.holds(slot, conn_id) && {
                    let conn = self.table.conn(slot);
                    conn.local.get(conn.v4) == meta.local
                        && conn.remote.get(conn.v4) == meta.remote
                        && wanted(slot, conn_id)
                }
            })
    }

    /// Emits the closed records whose grace period ended before `now`, but those that
    /// wait for their timewait socket's end; and those whose wait outlasted
    /// `tcp_fin_timeout` (the kernel dropped the timewait socket).
    fn flush_closed(&mut self, now: u64, out: &mut impl FnMut(Output)) {
        while let Some((slot, conn_id)) =
            take_due(&self.table, &mut self.closing, now, CLOSE_GRACE_NS)
        {
            if self.awaits_peer(slot, conn_id) {
                self.awaiting_peer.push_back((slot, conn_id));
            } else {
                self.finish(slot, Unfinished::Reaped, out);
            }
        }
        let Some(fin_timeout) = self.config.follow_timewait else {
            return;
        };
        let wait = CLOSE_GRACE_NS + fin_timeout;
        while let Some((slot, conn_id)) = take_due(&self.table, &mut self.awaiting_peer, now, wait)
        {
            self.timewait_ends.insert(conn_id, (PeerEnd::Timeout, None));
            self.finish(slot, Unfinished::Reaped, out);
        }
    }

    /// Whether the closed record in `slot` waits for its timewait socket's end: it was
    /// handed over in FIN_WAIT2, that end has not come, and tracer follows timewait
    /// sockets.
    fn awaits_peer(&self, slot: u32, conn_id: u64) -> bool {
        self.config.follow_timewait.is_some()
            && !self.timewait_ends.contains_key(&conn_id)
            && self.table.conn(slot).handed_to_timewait() == Some(TcpState::FinWait2)
    }

    /// A timewait socket in FIN_WAIT2 took the peer's FIN, reset or data: the closed
    /// record of the connection it took over, found by its ends, has its true end. One
    /// past its grace period, waiting only for this, is emitted now.
    fn timewait_end(
        &mut self,
        end: &TimewaitEnd,
        event: &TraceEvent,
        out: &mut impl FnMut(Output),
    ) {
        let meta = &end.meta;
        let found = self.closed_with_ends(meta, |slot, conn_id| self.awaits_peer(slot, conn_id));
        let Some((slot, conn_id)) = found else {
            self.stats.ignored_events += 1;
            return;
        };
        self.timewait_ends
            .insert(conn_id, (end.how, Some(meta.boot_ns)));
        self.table.keep(slot, event);
        self.release_if_ended(slot, meta.boot_ns, out);
    }

    /// Emits the closed records still waiting for their timewait socket's end, which
    /// tracing, as it stops, will not see: their `timewait_end` stays unknown.
    pub fn release_awaiting(&mut self, out: &mut impl FnMut(Output)) {
        while let Some((slot, _)) = take_due(&self.table, &mut self.awaiting_peer, u64::MAX, 0) {
            self.finish(slot, Unfinished::Reaped, out);
        }
    }
}

/// Takes the first entry of `queue` (closed records, oldest first) if its record closed
/// more than `wait` before `now`, dropping on the way entries whose record was already
/// emitted (its slot freed or reused).
fn take_due(
    table: &Table,
    queue: &mut VecDeque<(u32, u64)>,
    now: u64,
    wait: u64,
) -> Option<(u32, u64)> {
    while let Some(&(slot, conn_id)) = queue.front() {
        if !table.holds(slot, conn_id) {
            queue.pop_front();
            continue;
        }
        if now.saturating_sub(table.conn(slot).end_ns()) <= wait {
            return None;
        }
        return queue.pop_front();
    }
    None
}

/// Facts the kernel reports after a socket's CLOSE: the RST of `tcp_disconnect` or of a
/// close with unread data, the keepalive timer's timeout, and an accept of a connection
/// reset while it waited in the accept queue. Anything else for a closed record belongs
/// to a later lifecycle whose start was lost.
fn reported_after_close(event: &TraceEvent) -> bool {
    match event {
        TraceEvent::Reset(reset) => reset.direction == Direction::Sent,
        TraceEvent::KeepaliveTimeout(_) | TraceEvent::Accepted(_) => true,
        _ => false,
    }
}

/// A state change that begins a lifecycle: a connect's, or a new server socket's.
fn starts_lifecycle(event: &TraceEvent) -> bool {
    matches!(event, TraceEvent::StateChange(change)
        if matches!((change.old_state, change.new_state),
            (TcpState::Close, TcpState::SynSent) | (TcpState::Listen, TcpState::SynRecv)))
}

/// How a record that never saw its CLOSE leaves.
#[derive(Clone, Copy)]
enum Unfinished {
    Evicted,
    Reaped,
    Ended,
}
