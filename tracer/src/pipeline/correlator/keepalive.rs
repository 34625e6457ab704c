//! Keepalive probes and their fate: answered or not, by the rule of the correlator's
//! module docs ([`probe_fate`], shared with the pretty timeline).

use super::record::KeepaliveCounts;
use crate::{
    event::{Direction, StateChange, TcpState, TraceEvent},
    vocabulary::names,
};

/// What an event says about the keepalive probe sent before it, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeFate {
    Answered,
    Unanswered,
}

names!(ProbeFate as "probe fate" {
    Answered => "answered",
    Unanswered => "unanswered",
});

/// The rule of the module docs, shared with the pretty timeline.
pub fn probe_fate(event: &TraceEvent) -> Option<ProbeFate> {
    use TcpState::*;
    match event {
        TraceEvent::KeepaliveProbe(probe) if probe.probe <= 1 => Some(ProbeFate::Answered),
        TraceEvent::KeepaliveProbe(_) | TraceEvent::KeepaliveTimeout(_) => {
            Some(ProbeFate::Unanswered)
        }
        TraceEvent::Reset(reset) if reset.direction == Direction::Received => {
            Some(ProbeFate::Unanswered)
        }
        TraceEvent::DataTurn(turn) if turn.direction == Direction::Received => {
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

/// Probes sent and answered, and whether one waits for its fate.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Probes {
    sent: u16,
    answered: u16,
    pending: bool,
    timed_out: bool,
}

impl Probes {
    /// Applies what `event` says about the probe before it, then about probes.
    pub(super) fn observe(&mut self, event: &TraceEvent) {
        if self.pending
            && let Some(fate) = probe_fate(event)
        {
            self.pending = false;
            if fate == ProbeFate::Answered {
                self.answered = self.answered.saturating_add(1);
            }
        }
        match event {
            TraceEvent::KeepaliveProbe(_) => {
                self.sent = self.sent.saturating_add(1);
                self.pending = true;
            }
            TraceEvent::KeepaliveTimeout(_) => self.timed_out = true,
            _ => {}
        }
    }

    pub(super) fn counts(&self) -> KeepaliveCounts {
        KeepaliveCounts {
            probes_sent: self.sent.into(),
            probes_answered: self.answered.into(),
            timed_out: self.timed_out,
        }
    }
}
