//! What became of a connection (`outcome`): the one word a person reading its capture
//! would use, decided from what the kernel showed of it. Each outcome's wire pattern is in
//! docs/events.md; the rules, in order:
//!
//! 1. The keepalive timer gave up: `keepalive_timeout`.
//! 2. The handshake never completed (no state past it was seen):
//!    - the peer answered the SYN with a reset (`SYN_SENT` reset, or the kernel's
//!      `ECONNREFUSED`, which an ICMP port unreachable also gives): `refused`;
//!    - any other reset (in `SYN_RECV`, or one this side sent): `handshake_reset`;
//!    - the kernel gave up on its SYNs (`ETIMEDOUT`): `connect_timeout`;
//!    - an ICMP error ended it (`EHOSTUNREACH`, `ENETUNREACH`, ...): `unreachable`;
//!    - no error: the application closed the socket while it was still connecting
//!      (a connect timeout of its own, or the loser of a happy-eyeballs race):
//!      `connect_abandoned`.
//! 3. It was established:
//!    - a reset received at any time, even after FINs (a request written after the
//!      peer's FIN is answered with one): `reset`;
//!    - a reset sent as the first sign of the close: this side's application closed
//!      with unread data or `SO_LINGER` 0, or aborted it (`ss -K`): `aborted_locally`.
//!      A reset sent after a FIN is the kernel answering a segment that came after the
//!      close (a request sent to a closed connection): the close itself was orderly;
//!      the peer's record carries the failure;
//!    - the kernel gave up retransmitting (`ETIMEDOUT`: `tcp_retries2` or
//!      `TCP_USER_TIMEOUT`): `retransmit_timeout`;
//!    - the kernel's error says reset (`ECONNRESET`, `EPIPE`) though no reset was seen:
//!      `reset`;
//!    - closed by FINs, whichever side first: `completed`, however short or idle;
//!    - closed with neither (nothing on the wire said goodbye): `aborted_locally`.
//!
//! Records not closed take their record's end (`ended`, `evicted`, `stale`).

use crate::{event::SocketError, vocabulary::names};

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Reset,
    AbortedLocally,
    Refused,
    ConnectTimeout,
    ConnectAbandoned,
    Unreachable,
    HandshakeReset,
    KeepaliveTimeout,
    RetransmitTimeout,
    /// Not closed: see `RecordEnd`.
    Ended,
    Evicted,
    Stale,
}

names!(Outcome as "outcome" {
    Completed => "completed",
    Reset => "reset",
    AbortedLocally => "aborted_locally",
    Refused => "refused",
    ConnectTimeout => "connect_timeout",
    ConnectAbandoned => "connect_abandoned",
    Unreachable => "unreachable",
    HandshakeReset => "handshake_reset",
    KeepaliveTimeout => "keepalive_timeout",
    RetransmitTimeout => "retransmit_timeout",
    Ended => "ended",
    Evicted => "evicted",
    Stale => "stale",
});

impl Outcome {
    /// A connection that failed (what `tracer_connection_failures_total` counts): neither
    /// completed nor a record tracer could not finish.
    pub fn failed(self) -> bool {
        !matches!(
            self,
            Self::Completed | Self::Ended | Self::Evicted | Self::Stale
        )
    }

    /// The failed outcomes, for the metrics' zero series.
    pub fn failures() -> impl Iterator<Item = Self> {
        Self::ALL.iter().copied().filter(|o| o.failed())
    }
}

/// What a closed connection showed, as [`outcome`] needs it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ending {
    /// A state past the handshake was seen (or the connection was found in one).
    pub(super) established: bool,
    /// The socket was in SYN_SENT when it closed, never having been in SYN_RECV: a
    /// client's connect.
    pub(super) connecting: bool,
    pub(super) keepalive_timed_out: bool,
    /// A FIN was sent or received.
    pub(super) fin: bool,
    /// The close started with a reset this side sent.
    pub(super) reset_sent_first: bool,
    pub(super) resets_sent: u32,
    pub(super) resets_received: u32,
    pub(super) error: Option<SocketError>,
}

/// The outcome of a closed connection (the rules are in the module docs).
pub(super) fn outcome(ending: Ending) -> Outcome {
    use Outcome::*;
    let error = ending.error.map(|e| i32::from(e.0));
    if ending.keepalive_timed_out {
        return KeepaliveTimeout;
    }
    if !ending.established {
        return if (ending.connecting && ending.resets_received > 0)
            || error == Some(libc::ECONNREFUSED)
        {
            Refused
        } else if ending.resets_received + ending.resets_sent > 0 {
            HandshakeReset
        } else if error == Some(libc::ETIMEDOUT) {
            ConnectTimeout
        } else if error.is_some() {
            Unreachable
        } else {
            ConnectAbandoned
        };
    }
    match error {
        _ if ending.resets_received > 0 => Reset,
        _ if ending.reset_sent_first => AbortedLocally,
        Some(libc::ETIMEDOUT) => RetransmitTimeout,
        Some(libc::ECONNRESET | libc::EPIPE) => Reset,
        _ if ending.fin => Completed,
        _ => AbortedLocally,
    }
}

#[cfg(test)]
mod tests {
    use super::{Ending, Outcome, outcome};
    use crate::event::SocketError;

    fn errno(n: i32) -> Option<SocketError> {
        Some(SocketError(n as u8))
    }

    #[test]
    fn a_connect_ends_by_what_answered_it() {
        let connect = Ending {
            connecting: true,
            ..Ending::default()
        };
        let cases = [
            (connect, Outcome::ConnectAbandoned),
            (
                Ending {
                    resets_received: 1,
                    error: errno(libc::ECONNREFUSED),
                    ..connect
                },
                Outcome::Refused,
            ),
            (
                Ending {
                    error: errno(libc::ECONNREFUSED),
                    ..connect
                },
                Outcome::Refused,
            ),
            (
                Ending {
                    error: errno(libc::ETIMEDOUT),
                    ..connect
                },
                Outcome::ConnectTimeout,
            ),
            (
                Ending {
                    error: errno(libc::EHOSTUNREACH),
                    ..connect
                },
                Outcome::Unreachable,
            ),
            (
                Ending {
                    resets_sent: 1,
                    ..Ending::default()
                },
                Outcome::HandshakeReset,
            ),
            (
                Ending {
                    resets_received: 1,
                    ..Ending::default()
                },
                Outcome::HandshakeReset,
            ),
        ];
        for (ending, expected) in cases {
            assert_eq!(outcome(ending), expected, "{ending:?}");
        }
    }

    #[test]
    fn an_established_connection_ends_by_its_fins_resets_and_errors() {
        let open = Ending {
            established: true,
            ..Ending::default()
        };
        let fin = Ending { fin: true, ..open };
        let cases = [
            (fin, Outcome::Completed),
            (open, Outcome::AbortedLocally),
            (
                Ending {
                    resets_received: 1,
                    ..fin
                },
                Outcome::Reset,
            ),
            (
                Ending {
                    reset_sent_first: true,
                    resets_sent: 1,
                    ..open
                },
                Outcome::AbortedLocally,
            ),
            (
                Ending {
                    resets_sent: 1,
                    ..fin
                },
                Outcome::Completed,
            ),
            (
                Ending {
                    reset_sent_first: true,
                    resets_sent: 1,
                    resets_received: 1,
                    ..open
                },
                Outcome::Reset,
            ),
            (
                Ending {
                    error: errno(libc::ETIMEDOUT),
                    ..open
                },
                Outcome::RetransmitTimeout,
            ),
            (
                Ending {
                    error: errno(libc::EPIPE),
                    ..fin
                },
                Outcome::Reset,
            ),
            (
                Ending {
                    keepalive_timed_out: true,
                    resets_sent: 1,
                    error: errno(libc::ETIMEDOUT),
                    ..open
                },
                Outcome::KeepaliveTimeout,
            ),
        ];
        for (ending, expected) in cases {
            assert_eq!(outcome(ending), expected, "{ending:?}");
        }
    }

    #[test]
    fn only_failures_are_failed() {
        let failed: Vec<_> = Outcome::failures().map(Outcome::name).collect();
        assert!(!failed.contains(&"completed"), "{failed:?}");
        assert!(!failed.contains(&"stale"), "{failed:?}");
        assert!(failed.contains(&"refused"), "{failed:?}");
    }
}
