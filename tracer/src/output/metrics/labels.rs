//! The label values known in advance (every family is declared with a zero series for
//! each), spelled by the same `name()`s the JSON lines use, so a query and a record read
//! alike.

use crate::{
    output::RecordEnd,
    pipeline::correlator::{CloseInitiator, Role},
};

pub const ROLES: [Role; 2] = [Role::Client, Role::Server];
pub const CLOSE_INITIATORS: [CloseInitiator; 8] = [
    CloseInitiator::Local,
    CloseInitiator::Remote,
    CloseInitiator::Simultaneous,
    CloseInitiator::ResetSent,
    CloseInitiator::ResetReceived,
    CloseInitiator::KeepaliveTimeout,
    CloseInitiator::Aborted,
    CloseInitiator::Unknown,
];
pub const RECORD_ENDS: [RecordEnd; 3] = [RecordEnd::Closed, RecordEnd::Evicted, RecordEnd::Stale];

/// `tracer_events_total`'s kinds: the event lines' names.
pub const EVENT_KINDS: [&str; 9] = [
    "state_change",
    "reset",
    "retransmit",
    "keepalive_probe",
    "keepalive_timeout",
    "data_turn",
    "close_summary",
    "accepted",
    "existing",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parse_line;

    /// Replay reads back exactly the event lines: each kind is one of them (a line of that
    /// name without its fields is refused, not skipped as another line).
    #[test]
    fn event_kinds_are_the_event_lines() {
        for kind in EVENT_KINDS {
            assert!(
                parse_line(&format!(r#"{{"event":"{kind}"}}"#)).is_err(),
                "{kind}"
            );
        }
        assert!(parse_line(r#"{"event":"connection"}"#).unwrap().is_none());
    }
}
