//! Label values, spelled as the JSON lines spell the same things (the tests hold them to
//! it), so a query and a record read alike.

use crate::{
    event::TraceEvent,
    output::RecordEnd,
    pipeline::correlator::{CloseInitiator, Role},
};

pub const ROLES: [Role; 2] = [Role::Client, Role::Server];
pub const CLOSE_INITIATORS: [CloseInitiator; 7] = [
    CloseInitiator::Local,
    CloseInitiator::Remote,
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

pub fn event_kind(event: &TraceEvent) -> &'static str {
    match event {
        TraceEvent::StateChange(_) => "state_change",
        TraceEvent::Reset(_) => "reset",
        TraceEvent::Retransmit(_) => "retransmit",
        TraceEvent::KeepaliveProbe(_) => "keepalive_probe",
        TraceEvent::KeepaliveTimeout(_) => "keepalive_timeout",
        TraceEvent::DataTurn(_) => "data_turn",
        TraceEvent::Summary(_) => "close_summary",
        TraceEvent::Accepted(_) => "accepted",
        TraceEvent::Existing(_) => "existing",
    }
}

pub fn role(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Server => "server",
    }
}

pub fn close_initiator(initiator: CloseInitiator) -> &'static str {
    match initiator {
        CloseInitiator::Local => "local",
        CloseInitiator::Remote => "remote",
        CloseInitiator::Simultaneous => "simultaneous",
        CloseInitiator::ResetSent => "reset_sent",
        CloseInitiator::ResetReceived => "reset_received",
        CloseInitiator::KeepaliveTimeout => "keepalive_timeout",
        CloseInitiator::Aborted => "aborted",
        CloseInitiator::Unknown => "unknown",
    }
}

pub fn record_end(end: RecordEnd) -> &'static str {
    match end {
        RecordEnd::Closed => "closed",
        RecordEnd::Evicted => "evicted",
        RecordEnd::Stale => "stale",
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::replay::parse_line;

    fn json<T: Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn labels_read_as_the_records_do() {
        for r in ROLES {
            assert_eq!(role(r), json(r));
        }
        for initiator in CLOSE_INITIATORS {
            assert_eq!(close_initiator(initiator), json(initiator));
        }
        for end in RECORD_ENDS {
            assert_eq!(record_end(end), json(end));
        }
    }

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
