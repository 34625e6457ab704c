//! One connection lifecycle while it is open ([`Conn`]): what each event changes (states
//! and their times, close facts, owner, keepalive probes and their fate, data turns, the
//! close summary) and the [`ConnectionRecord`] it becomes. Kept small: see the
//! `memory_per_connection` test.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU64,
    sync::Arc,
};

use super::{
    record::{
        CloseInitiator, ConnectionRecord, Family, KeepaliveCounts, KeptEvents, Role, StateEntry,
    },
    table::{NIL, Processes},
};
use crate::event::{
    DataDirection, EventMeta, Process, ResetDirection, StateChange, TcpState, TraceEvent,
};

/// States remembered per record, CLOSE included. A lifecycle enters at most 6 (a
/// simultaneous open and close: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, CLOSING,
/// CLOSE); past that the last slot holds the latest state.
const STATES: usize = 6;
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
pub(super) enum OwnerRank {
    None,
    /// Some process-context event of the connection.
    Seen,
    Listener,
    /// connect() or accept().
    Direct,
}

/// An address in 18 bytes instead of `SocketAddr`'s 32; IPv4 as its mapped IPv6 form.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Endpoint {
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

    pub(super) fn get(self, v4: bool) -> SocketAddr {
        let ip = Ipv6Addr::from(self.ip);
        match ip.to_ipv4_mapped() {
            Some(ip4) if v4 => SocketAddr::new(ip4.into(), self.port),
            _ => SocketAddr::new(ip.into(), self.port),
        }
    }
}

/// The state of an open record, kept small: see `memory_per_connection`.
pub(super) struct Conn {
    /// 0 when the slot is free.
    pub(super) sock: u64,
    pub(super) conn_id: u64,
    /// Latest event time, for reaping.
    pub(super) last_ns: u64,
    state_ns: [u64; STATES],
    /// Latest data activity before the first FIN or RST.
    last_data_ns: Option<NonZeroU64>,
    /// The first FIN or RST, when its time is known.
    first_close_ns: Option<NonZeroU64>,
    bytes_sent: u64,
    bytes_received: u64,
    pub(super) owner: Option<Arc<Process>>,
    pub(super) local: Endpoint,
    pub(super) remote: Endpoint,
    /// LRU neighbours (older, newer), or the free list's next in `next`.
    pub(super) prev: u32,
    pub(super) next: u32,
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
    pub(super) role: Role,
    closer: Closer,
    owner_rank: OwnerRank,
    pub(super) v4: bool,
    probe_pending: bool,
    timed_out: bool,
    observed_from_start: bool,
    /// The kernel reported CLOSE; waiting out the grace period.
    pub(super) closed: bool,
    has_summary: bool,
}

fn nonzero(ns: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(ns.max(1))
}

impl Conn {
    /// A record starting with `meta`'s event; its slot links are set by the table.
    pub(super) fn new(
        meta: &EventMeta,
        conn_id: u64,
        role: Role,
        observed_from_start: bool,
    ) -> Self {
        Self {
            sock: meta.sock,
            conn_id,
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
        }
    }

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

    pub(super) fn end_ns(&self) -> u64 {
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

    pub(super) fn set_owner(
        &mut self,
        process: Option<&Process>,
        rank: OwnerRank,
        table: &mut Processes,
    ) {
        if let Some(process) = process
            && rank > self.owner_rank
        {
            self.owner = Some(table.intern(process));
            self.owner_rank = rank;
        }
    }

    pub(super) fn set_owner_arc(&mut self, owner: Option<&Arc<Process>>, rank: OwnerRank) {
        if let Some(owner) = owner
            && rank > self.owner_rank
        {
            self.owner = Some(Arc::clone(owner));
            self.owner_rank = rank;
        }
    }

    /// Everything but the lifecycle bookkeeping the correlator does around it.
    pub(super) fn apply(&mut self, event: &TraceEvent, processes: &mut Processes) {
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
                self.bytes_sent = summary.bytes_acked;
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

    pub(super) fn record(&self, kept: KeptEvents) -> ConnectionRecord {
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
