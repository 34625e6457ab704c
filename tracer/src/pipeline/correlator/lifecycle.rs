//! A lifecycle's states and when each was entered, and the handshake's time: what the
//! kernel measured of it (see [`Handshake`]).

use crate::event::{HandshakeSample, TcpState};

/// States remembered per record, CLOSE included. A lifecycle enters at most 6 (a
/// simultaneous open and close: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, CLOSING,
/// CLOSE); past that the last slot holds the latest state.
const STATES: usize = 6;

/// The kernel's first retransmission timeout (`TCP_TIMEOUT_INIT`, RFC 6298's 1 s): a
/// SYN-ACK sent again was first sent this long before.
pub const INITIAL_RTO_NS: u64 = 1_000_000_000;

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

/// A time after the record's start in 32 bits: microseconds up to 2^31 (35 minutes),
/// then milliseconds (to 24 days) with the top bit set. Keeps records small; the precision
/// lost is below what a state that late needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Offset(u32);

impl Offset {
    const MILLIS: u32 = 1 << 31;

    pub(super) fn new(ns: u64) -> Self {
        let us = ns / 1_000;
        if us < u64::from(Self::MILLIS) {
            return Self(us as u32);
        }
        let ms = (ns / 1_000_000).min(u64::from(Self::MILLIS - 1));
        Self(ms as u32 | Self::MILLIS)
    }

    pub(super) fn ns(self) -> u64 {
        if self.0 & Self::MILLIS == 0 {
            u64::from(self.0) * 1_000
        } else {
            u64::from(self.0 & !Self::MILLIS) * 1_000_000
        }
    }
}

/// The states entered, with their times.
pub(super) struct States {
    start_ns: u64,
    offsets: [Offset; STATES],
    states: [u8; STATES],
    len: u8,
}

impl States {
    /// No state yet; `start_ns` is the record's start.
    pub(super) fn new(start_ns: u64) -> Self {
        Self {
            start_ns,
            offsets: [Offset::default(); STATES],
            states: [0; STATES],
            len: 0,
        }
    }

    pub(super) fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// Records `state` entered at `ns`, never before the previous state (events from
    /// different CPUs can be slightly out of order).
    pub(super) fn enter(&mut self, state: TcpState, ns: u64) {
        let n = usize::from(self.len);
        let previous = self.last_ns().unwrap_or(self.start_ns);
        let ns = ns.max(previous);
        let slot = n.min(STATES - 1);
        self.states[slot] = state_number(state);
        self.offsets[slot] = Offset::new(ns - self.start_ns);
        self.len = (slot + 1) as u8;
    }

    /// The latest state's time, if any state was entered.
    pub(super) fn last_ns(&self) -> Option<u64> {
        usize::from(self.len)
            .checked_sub(1)
            .map(|last| self.start_ns + self.offsets[last].ns())
    }

    /// When `state` was first entered.
    pub(super) fn first_entry(&self, state: TcpState) -> Option<u64> {
        self.iter().find(|&(s, _)| s == state).map(|(_, ns)| ns)
    }

    /// The states and their times, in order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (TcpState, u64)> + '_ {
        (0..usize::from(self.len)).map(|i| {
            (
                TcpState::from_kernel(self.states[i]),
                self.start_ns + self.offsets[i].ns(),
            )
        })
    }
}

/// How long a handshake took, as far as the events tell.
///
/// The kernel measures the round trip of a SYN (client) or SYN-ACK (server) sent once,
/// as the wire sees it: the client's `CLOSE -> SYN_SENT` comes before the kernel picks
/// a local port and sends the SYN, which on a busy or emulated machine takes longer
/// than the round trip itself. A SYN-ACK sent again was first sent [`INITIAL_RTO_NS`]
/// before its first retransmission; a client whose SYN was sent again falls back to
/// its states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Handshake {
    /// Microseconds, or [`Handshake::UNKNOWN`].
    measured_us: u32,
}

impl Default for Handshake {
    fn default() -> Self {
        Self {
            measured_us: Self::UNKNOWN,
        }
    }
}

impl Handshake {
    const UNKNOWN: u32 = u32::MAX;

    /// The socket entered ESTABLISHED at `established_ns` with the kernel's `sample`;
    /// for a server, `first_synack_retransmit_ns` is when its SYN-ACK was first sent
    /// again, if it was and the event was seen.
    pub(super) fn established(
        &mut self,
        established_ns: u64,
        sample: HandshakeSample,
        first_synack_retransmit_ns: Option<u64>,
        client: bool,
    ) {
        let us = match (sample.retransmits, client) {
            (0, _) => sample.rtt_us.map(u64::from),
            (_, true) => None,
            (_, false) => first_synack_retransmit_ns.map(|first| {
                established_ns.saturating_sub(first.saturating_sub(INITIAL_RTO_NS)) / 1_000
            }),
        };
        self.measured_us = us.map_or(Self::UNKNOWN, |us| {
            us.min(u64::from(Self::UNKNOWN - 1)) as u32
        });
    }

    /// The handshake's time in microseconds: the kernel's measure, else a client's
    /// from its states.
    pub(super) fn micros(&self, states: &States, client: bool) -> Option<u64> {
        if self.measured_us != Self::UNKNOWN {
            return Some(u64::from(self.measured_us));
        }
        if !client {
            return None;
        }
        let from = states.first_entry(TcpState::SynSent)?;
        let to = states.first_entry(TcpState::Established)?;
        Some(to.saturating_sub(from) / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_keep_microseconds_then_milliseconds() {
        for (ns, kept) in [
            (0, 0),
            (1_999, 1_000),
            (150_000, 150_000),
            // 35 minutes and a bit: milliseconds from there.
            (2_200_000_123_456, 2_200_000_000_000),
            // Beyond 24 days: the latest time kept.
            (u64::MAX, (u64::from(Offset::MILLIS) - 1) * 1_000_000),
        ] {
            assert_eq!(Offset::new(ns).ns(), kept, "{ns}");
        }
    }
}
