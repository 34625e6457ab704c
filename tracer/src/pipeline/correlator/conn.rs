//! One connection lifecycle while it is open ([`Conn`]): its identity and ends, and the
//! parts each kept by a module of its own (states and handshake, owner, close facts,
//! keepalive probes, exchanges); what each event changes, and the [`ConnectionRecord`] it
//! becomes. Kept small: see the `memory_per_connection` test.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use super::{
    close::CloseFacts,
    exchanges::{Exchanges, Layer},
    keepalive::Probes,
    lifecycle::{Handshake, Offset, States},
    outcome::{Ending, Outcome, outcome},
    owner::{Cgroups, OwnerRank, Processes},
    record::{AtStart, CloseInitiator, ConnectionRecord, Family, KeptEvents, Role, StateEntry},
    table::NIL,
};
use crate::event::{
    Cgroup, ConnectionSummary, Direction, EventMeta, Process, SocketError, TcpCounters, TcpState,
    TraceEvent,
};

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

/// What the kernel's close summary says, in its own units (`seen` false until it came).
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    bytes_acked: u64,
    bytes_received: u64,
    netns: u32,
    fin_received: bool,
    fin_acked: bool,
    seen: bool,
    /// The errno, 0 for none: an `Option` would cost the record 8 bytes.
    errno: u8,
}

impl Summary {
    /// Payload bytes sent and acknowledged, as a capture counts them: the kernel's count
    /// of sequence space includes a client's SYN (acknowledged first, so counted
    /// whenever anything is) and this side's FIN once acknowledged.
    fn payload_sent(&self, role: Role) -> u64 {
        let syn = u64::from(role == Role::Client && self.bytes_acked > 0);
        let fin = u64::from(self.fin_acked);
        self.bytes_acked.saturating_sub(syn + fin)
    }

    /// Payload bytes received: the kernel's count includes the peer's FIN.
    fn payload_received(&self) -> u64 {
        self.bytes_received
            .saturating_sub(u64::from(self.fin_received))
    }
}

/// What a connection found open at start (in `state`, with `counters`) had carried by
/// then, in the record's units: the state says which FINs the kernel's counts include.
pub(super) fn at_start(counters: TcpCounters, state: TcpState, role: Role) -> AtStart {
    let then = Summary {
        bytes_acked: counters.bytes_acked,
        bytes_received: counters.bytes_received,
        fin_received: matches!(
            state,
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing
        ),
        fin_acked: state == TcpState::FinWait2,
        ..Summary::default()
    };
    AtStart {
        bytes_sent: then.payload_sent(role),
        bytes_received: then.payload_received(),
        retransmits: counters.retransmits,
        rtt_us: counters.rtt_us,
    }
}

/// The state of an open record, kept small: see `memory_per_connection`.
pub(super) struct Conn {
    /// 0 when the slot is free.
    pub(super) sock: u64,
    pub(super) conn_id: u64,
    /// Latest event, after the start: for reaping.
    last: Offset,
    states: States,
    close: CloseFacts,
    exchanges: Exchanges,
    probes: Probes,
    handshake: Handshake,
    /// The owner so far, and how sure it is (a rank of its own field: beside the other
    /// small fields it costs no padding).
    owner: Option<Arc<Process>>,
    owner_rank: OwnerRank,
    /// The socket's cgroup, from the latest event that named one.
    cgroup: Option<Arc<Cgroup>>,
    summary: Summary,
    pub(super) local: Endpoint,
    pub(super) remote: Endpoint,
    /// LRU neighbours (older, newer), or the free list's next in `next`.
    pub(super) prev: u32,
    pub(super) next: u32,
    retransmits: u32,
    resets_sent: u16,
    resets_received: u16,
    pub(super) role: Role,
    pub(super) v4: bool,
    pub(super) observed_from_start: bool,
    /// The kernel reported CLOSE; waiting out the grace period.
    pub(super) closed: bool,
    /// The socket itself sent a reset (not a timewait socket or listener after it): it
    /// aborted, and handed nothing over.
    reset_by_socket: bool,
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
            last: Offset::default(),
            states: States::new(meta.boot_ns),
            close: CloseFacts::default(),
            exchanges: Exchanges::default(),
            probes: Probes::default(),
            handshake: Handshake::default(),
            owner: None,
            owner_rank: OwnerRank::None,
            cgroup: None,
            summary: Summary::default(),
            local: Endpoint::new(meta.local),
            remote: Endpoint::new(meta.remote),
            prev: NIL,
            next: NIL,
            retransmits: 0,
            resets_sent: 0,
            resets_received: 0,
            role,
            v4: meta.local.is_ipv4(),
            observed_from_start,
            closed: false,
            reset_by_socket: false,
        }
    }

    /// The latest event's time.
    pub(super) fn last_ns(&self) -> u64 {
        self.states.start_ns() + self.last.ns()
    }

    /// The CLOSE, or the last event of a record that has none.
    pub(super) fn end_ns(&self) -> u64 {
        match self.states.last_ns() {
            Some(closed) if self.closed => closed,
            _ => self.last_ns(),
        }
    }

    /// The handshake completed with the kernel's `sample` (see
    /// [`Handshake::established`]).
    pub(super) fn established(
        &mut self,
        ns: u64,
        sample: crate::event::HandshakeSample,
        first_synack_retransmit_ns: Option<u64>,
    ) {
        let client = self.role == Role::Client;
        self.handshake
            .established(ns, sample, first_synack_retransmit_ns, client);
    }

    /// The events a server socket the kernel made for a handshake and then discarded has
    /// had, when this is one: it entered SYN_RECV and then CLOSE, and nothing else
    /// happened to it. (Two CPUs taking the client's ACK and its first data at once each
    /// make a socket for the connection; the kernel keeps one and closes the other.)
    pub(super) fn discarded_child_events(&self) -> Option<u64> {
        // Checked at every CLOSE: cheapest first, and without allocating.
        let discarded = self.role == Role::Server
            && self.resets_sent == 0
            && self.resets_received == 0
            && self.retransmits == 0
            && self.exchanges.last_data_ns().is_none()
            && (self.states.iter().map(|(state, _)| state))
                .eq([TcpState::SynRecv, TcpState::Close]);
        discarded.then(|| 2 + u64::from(self.summary.seen))
    }

    /// Lets go of what it shares with other records (its owner, its cgroup), so a freed
    /// slot keeps neither alive in the interning tables.
    pub(super) fn release_shared(&mut self) {
        self.owner = None;
        self.cgroup = None;
    }

    /// Takes `process` as the owner if it ranks above the current one.
    pub(super) fn offer_owner(
        &mut self,
        process: Option<&Process>,
        rank: OwnerRank,
        processes: &mut Processes,
    ) {
        if let Some(process) = process
            && rank > self.owner_rank
        {
            self.owner = Some(processes.intern(process.pid.into(), process));
            self.owner_rank = rank;
        }
    }

    /// Like [`Self::offer_owner`], with a process already interned.
    pub(super) fn offer_shared_owner(&mut self, process: Option<&Arc<Process>>, rank: OwnerRank) {
        if let Some(process) = process
            && rank > self.owner_rank
        {
            self.owner = Some(Arc::clone(process));
            self.owner_rank = rank;
        }
    }

    /// Takes the cgroup `meta` names, if any (a socket's stays; one read where the
    /// socket's was unreadable may differ).
    pub(super) fn cgroup_seen(&mut self, meta: &EventMeta, cgroups: &mut Cgroups) {
        if let Some(cgroup) = &meta.cgroup
            && self.cgroup.as_deref() != Some(cgroup)
        {
            self.cgroup = Some(cgroups.intern(cgroup.id, cgroup));
        }
    }

    /// Everything but the lifecycle bookkeeping the correlator does around it. Returns
    /// the response time, microseconds, when the event is a response to a request.
    pub(super) fn apply(&mut self, event: &TraceEvent, processes: &mut Processes) -> Option<u64> {
        let meta = event.meta();
        let ns = meta.boot_ns;
        let start = self.states.start_ns();
        self.last = self.last.max(Offset::new(ns.saturating_sub(start)));
        self.probes.observe(event);
        if self.owner_rank == OwnerRank::None {
            self.offer_owner(meta.process.as_ref(), OwnerRank::Seen, processes);
        }
        match event {
            TraceEvent::StateChange(change) => {
                if change.meta.local.port() != 0 {
                    self.local = Endpoint::new(change.meta.local);
                    self.remote = Endpoint::new(change.meta.remote);
                }
                self.states.enter(change.new_state, ns);
                self.close.state(change.new_state, Some(ns));
            }
            TraceEvent::Reset(reset) => match reset.direction {
                Direction::Sent => {
                    self.resets_sent = self.resets_sent.saturating_add(1);
                    self.close.reset_sent(ns);
                    self.reset_by_socket |= reset.meta.sock == self.sock;
                }
                Direction::Received => {
                    self.resets_received = self.resets_received.saturating_add(1);
                    self.close.reset_received(ns);
                }
            },
            TraceEvent::Retransmit(_) => self.retransmits = self.retransmits.saturating_add(1),
            TraceEvent::KeepaliveProbe(_) => {}
            TraceEvent::KeepaliveTimeout(_) => self.close.keepalive_timeout(ns),
            TraceEvent::DataTurn(turn) => {
                let closing = self.close.started();
                return self
                    .exchanges
                    .turn(self.role, turn.direction, Layer::Socket, ns, closing);
            }
            TraceEvent::TlsTurn(turn) => {
                let closing = self.close.started();
                return self
                    .exchanges
                    .turn(self.role, turn.direction, Layer::Tls, ns, closing);
            }
            TraceEvent::TlsHandshake(handshake) => self
                .exchanges
                .tls_handshake(handshake.library, handshake.handshake_us),
            TraceEvent::Summary(summary) => self.summary(summary),
            TraceEvent::Accepted(accepted) => {
                self.offer_owner(accepted.meta.process.as_ref(), OwnerRank::Direct, processes)
            }
            // Kept by the correlator, for the few records that have one.
            TraceEvent::TimewaitEnd(_) => {}
            TraceEvent::Existing(existing) => {
                self.states.enter(existing.state, ns);
                self.close.state(existing.state, None);
                // The process holding the socket when it was found.
                self.offer_owner(existing.meta.process.as_ref(), OwnerRank::Direct, processes);
            }
        }
        None
    }

    fn summary(&mut self, summary: &ConnectionSummary) {
        self.summary = Summary {
            bytes_acked: summary.bytes_acked,
            bytes_received: summary.bytes_received,
            netns: summary.netns,
            fin_received: summary.fin_received,
            fin_acked: summary.fin_acked,
            seen: true,
            errno: summary.error.map_or(0, |e| e.0),
        };
        self.retransmits = self.retransmits.max(summary.retransmits);
        let before_close = |ns: &u64| self.close.first_ns().is_none_or(|close| *ns <= close);
        if let Some(ns) = summary.last_data_ns.filter(before_close) {
            self.exchanges.data_activity(ns);
        }
    }

    /// The timewait socket the kernel handed the connection's ends to as its socket
    /// closed, by the state it took them in: `TIME_WAIT` once both FINs were exchanged,
    /// `FIN_WAIT2` when this side's FIN was acknowledged and the peer's had not come (an
    /// application's socket closed and orphaned: the kernel keeps only a timewait socket,
    /// for up to `tcp_fin_timeout`, to wait for it). `None` when the socket closed for
    /// good (the last ACK of a passive close, a reset).
    pub(super) fn handed_to_timewait(&self) -> Option<TcpState> {
        use TcpState::*;
        if !self.closed
            || !self.summary.seen
            || !self.close.by_fin()
            || self.resets_received > 0
            || self.reset_by_socket
        {
            return None;
        }
        // The state the socket left for CLOSE (the kernel moves a socket it hands over from
        // FIN_WAIT2, CLOSING or FIN_WAIT1 straight to CLOSE).
        let (before_close, _) = self.states.iter().rev().nth(1)?;
        match (before_close, self.summary.fin_received) {
            (FinWait2, false) => Some(FinWait2),
            (FinWait1 | FinWait2 | Closing, true) => Some(TimeWait),
            _ => None,
        }
    }

    /// What the connection showed of its end, for its [`Outcome`].
    fn ending(&self) -> Ending {
        use TcpState::*;
        let seen = |wanted: &[TcpState]| self.states.iter().any(|(s, _)| wanted.contains(&s));
        let past_handshake = [
            Established,
            FinWait1,
            FinWait2,
            TimeWait,
            CloseWait,
            LastAck,
            Closing,
        ];
        let established = !self.observed_from_start || seen(&past_handshake);
        Ending {
            established,
            connecting: seen(&[SynSent]) && !seen(&[SynRecv]),
            keepalive_timed_out: self.probes.counts().timed_out,
            fin: self.close.by_fin() || self.summary.fin_received,
            reset_sent_first: self.close.initiator(true) == CloseInitiator::ResetSent,
            resets_sent: self.resets_sent.into(),
            resets_received: self.resets_received.into(),
            error: SocketError::from_kernel(self.summary.errno),
        }
    }

    /// The record as it stands. `data_turns`: the data hook was attached, so requests
    /// and responses are known (else they are null, not zero). `unfinished`: its outcome
    /// unless the kernel reported its close.
    pub(super) fn record(
        &self,
        kept: KeptEvents,
        data_turns: bool,
        unfinished: Outcome,
    ) -> ConnectionRecord {
        let start = self.states.start_ns();
        let end = self.end_ns();
        let us = |from: u64, to: u64| to.saturating_sub(from) / 1000;
        // A record started late saw at most the end of its handshake.
        let handshake_us = self
            .handshake
            .micros(&self.states, self.role == Role::Client)
            .filter(|_| self.observed_from_start || self.role == Role::Server);
        let close_started = self.close.first_ns();
        let idle_before_close_us = self
            .exchanges
            .last_data_ns()
            .zip(close_started)
            .map(|(data, close)| us(data, close));
        let exchanges = data_turns.then_some(&self.exchanges);
        let process = self.owner.as_deref();
        let summary = self.summary.seen.then_some(self.summary);
        ConnectionRecord {
            conn_id: self.conn_id,
            sock: self.sock,
            role: self.role,
            family: if self.v4 { Family::Ipv4 } else { Family::Ipv6 },
            local: self.local.get(self.v4),
            remote: self.remote.get(self.v4),
            netns: summary.map(|s| s.netns),
            pid: process.map(|p| p.pid),
            cgroup: self.cgroup.clone(),
            comm: process.map(|p| p.comm.clone()),
            start_ns: start,
            end_ns: end,
            handshake_us,
            duration_us: us(start, end),
            states: self
                .states
                .iter()
                .map(|(state, ns)| StateEntry {
                    state,
                    offset_us: us(start, ns),
                })
                .collect(),
            close_initiator: self.close.initiator(self.closed),
            outcome: if self.closed {
                outcome(self.ending())
            } else {
                unfinished
            },
            error: summary.and_then(|s| SocketError::from_kernel(s.errno)),
            fin_received: summary.map(|s| s.fin_received),
            handed_to_timewait: self.handed_to_timewait(),
            // Filled by the correlator, as `at_start`.
            timewait_end: None,
            resets_sent: self.resets_sent.into(),
            resets_received: self.resets_received.into(),
            retransmits: self.retransmits,
            keepalive: self.probes.counts(),
            bytes_sent: summary.map(|s| s.payload_sent(self.role)),
            bytes_received: summary.map(|s| s.payload_received()),
            // Filled by the correlator, which keeps them for the few records that have them.
            at_start: None,
            requests: exchanges.map(Exchanges::requests),
            responses: exchanges.map(Exchanges::responses),
            response_time_us: exchanges.and_then(Exchanges::response_times),
            unanswered_request_us: exchanges
                .and_then(|e| e.unanswered_for_us(close_started.unwrap_or(end))),
            idle_before_close_us,
            tls: self.exchanges.tls(),
            observed_from_start: self.observed_from_start,
            events: kept.events,
            events_omitted: kept.omitted,
        }
    }
}
