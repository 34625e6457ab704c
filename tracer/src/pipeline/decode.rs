//! Ring buffer records -> [`TraceEvent`]s, in human units: kernel numbers (jiffies, enum
//! values, flag bits) become milliseconds and names here. A record that cannot be
//! decoded is an error the daemon counts and reports, never a panic.

use std::{
    fmt,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tracer_common as raw;

use crate::event::{
    Accepted, Cgroup, ConnectionSummary, DataTurn, Direction, EventMeta, HandshakeSample,
    Keepalive, KeepaliveSettings, PeerEnd, Process, Reset, Retransmit, RetransmitKind, SocketError,
    StateChange, TcpFlag, TcpState, TimewaitEnd, TlsHandshake, TlsLibrary, TraceEvent,
};
use crate::kernel::units::KernelUnits;

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its kind's layout.
    Truncated { kind: u8, len: usize },
    /// A kind this daemon does not know (eBPF object and daemon out of step).
    UnknownKind(u8),
    /// An address family other than IPv4 or IPv6.
    UnknownFamily(u16),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { kind, len } => {
                write!(f, "record of kind {kind} truncated to {len} bytes")
            }
            Self::UnknownKind(kind) => write!(f, "unknown record kind {kind}"),
            Self::UnknownFamily(family) => write!(f, "unknown address family {family}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads a `T` from the start of `bytes` (ring buffer records are only 8-byte aligned
/// by luck, so never by reference).
fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>())
        // SAFETY: length checked; T is a plain #[repr(C)] type from tracer-common, valid
        // for any bit pattern.
        .then(|| unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// The bytes before the first NUL, lossily decoded.
fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn ip(family: u16, raw: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        raw::AF_INET => Ok(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()),
        raw::AF_INET6 => Ok(Ipv6Addr::from(*raw).into()),
        other => Err(DecodeError::UnknownFamily(other)),
    }
}

fn meta(header: &raw::EventHeader, endpoints: &raw::Endpoints) -> Result<EventMeta, DecodeError> {
    let process = (header.flags & raw::FLAG_PROCESS_CONTEXT != 0).then(|| Process {
        pid: (header.pid_tgid >> 32) as u32,
        comm: comm(&header.comm),
    });
    Ok(EventMeta {
        boot_ns: header.timestamp_ns,
        sock: header.sock,
        process,
        cgroup: (header.cgroup_id != 0).then_some(Cgroup::new(header.cgroup_id, None)),
        local: SocketAddr::new(
            ip(endpoints.family, &endpoints.local_addr)?,
            endpoints.local_port,
        ),
        remote: SocketAddr::new(
            ip(endpoints.family, &endpoints.remote_addr)?,
            endpoints.remote_port,
        ),
    })
}

fn state(value: u8) -> Option<TcpState> {
    (value != raw::NO_STATE).then(|| TcpState::from_kernel(value))
}

/// One record's events: one, or for a close two, the socket's close summary and then its
/// state change to CLOSE (the kernel sends them as one record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    first: TraceEvent,
    second: Option<TraceEvent>,
}

impl IntoIterator for Decoded {
    type Item = TraceEvent;
    type IntoIter =
        std::iter::Chain<std::iter::Once<TraceEvent>, std::option::IntoIter<TraceEvent>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.second)
    }
}

impl From<TraceEvent> for Decoded {
    fn from(first: TraceEvent) -> Self {
        Self {
            first,
            second: None,
        }
    }
}

/// The states in which a socket has sent its FIN.
fn fin_sent(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing | TcpState::LastAck
    )
}

/// Decodes records with this kernel's units.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    units: KernelUnits,
}

impl Decoder {
    pub fn new(units: KernelUnits) -> Self {
        Self { units }
    }

    /// Decodes one ring buffer record.
    pub fn decode(&self, record: &[u8]) -> Result<Decoded, DecodeError> {
        let header: raw::EventHeader = read(record).ok_or(DecodeError::Truncated {
            kind: record
                .get(std::mem::offset_of!(raw::EventHeader, kind))
                .copied()
                .unwrap_or(0),
            len: record.len(),
        })?;
        let kind =
            raw::EventKind::from_u8(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
        let truncated = DecodeError::Truncated {
            kind: header.kind,
            len: record.len(),
        };
        Ok(Decoded::from(match kind {
            raw::EventKind::DataTurn | raw::EventKind::TlsTurn => {
                let event: raw::Event<raw::DataTurn> = read(record).ok_or(truncated)?;
                let turn = DataTurn {
                    meta: meta(&event.header, &event.payload.endpoints)?,
                    direction: if event.payload.direction == raw::DATA_RECEIVED {
                        Direction::Received
                    } else {
                        Direction::Sent
                    },
                };
                match kind {
                    raw::EventKind::TlsTurn => TraceEvent::TlsTurn(turn),
                    _ => TraceEvent::DataTurn(turn),
                }
            }
            raw::EventKind::TlsHandshake => {
                let event: raw::Event<raw::TlsHandshake> = read(record).ok_or(truncated)?;
                let (started, ended) = (event.payload.started_ns, event.header.timestamp_ns);
                TraceEvent::TlsHandshake(TlsHandshake {
                    meta: meta(&event.header, &event.payload.endpoints)?,
                    // The only library the programs hook.
                    library: TlsLibrary::OpenSsl,
                    handshake_us: (started != 0).then(|| ended.saturating_sub(started) / 1_000),
                })
            }
            raw::EventKind::Close => {
                let event: raw::Event<raw::Close> = read(record).ok_or(truncated)?;
                let p = event.payload;
                let meta = meta(&event.header, &p.endpoints)?;
                let old_state = TcpState::from_kernel(p.old_state);
                let summary = TraceEvent::Summary(ConnectionSummary {
                    meta: meta.clone(),
                    bytes_acked: p.bytes_acked,
                    bytes_received: p.bytes_received,
                    fin_received: p.flags & raw::CLOSE_FIN_RECEIVED != 0,
                    fin_acked: fin_sent(old_state) && p.flags & raw::CLOSE_ALL_ACKED != 0,
                    retransmits: p.total_retrans,
                    srtt_us: p.srtt_us_x8 >> 3,
                    netns: p.netns,
                    error: SocketError::from_kernel(p.error),
                    last_data_ns: (p.last_data_ns != raw::NO_DATA).then_some(p.last_data_ns),
                });
                let change = TraceEvent::StateChange(StateChange {
                    meta,
                    old_state,
                    new_state: TcpState::Close,
                    handshake: None,
                });
                return Ok(Decoded {
                    first: summary,
                    second: Some(change),
                });
            }
            raw::EventKind::TimewaitEnd => {
                let event: raw::Event<raw::TimewaitEnd> = read(record).ok_or(truncated)?;
                TraceEvent::TimewaitEnd(TimewaitEnd {
                    meta: meta(&event.header, &event.payload.endpoints)?,
                    how: match event.payload.how {
                        raw::TIMEWAIT_PEER_FIN => PeerEnd::Fin,
                        raw::TIMEWAIT_PEER_RESET => PeerEnd::Reset,
                        _ => PeerEnd::Data,
                    },
                })
            }
            raw::EventKind::Accepted => {
                let event: raw::Event<raw::Accepted> = read(record).ok_or(truncated)?;
                TraceEvent::Accepted(Accepted {
                    meta: meta(&event.header, &event.payload.endpoints)?,
                })
            }
            raw::EventKind::StateChange => {
                let event: raw::Event<raw::StateChange> = read(record).ok_or(truncated)?;
                let p = event.payload;
                let new_state = TcpState::from_kernel(p.new_state);
                TraceEvent::StateChange(StateChange {
                    meta: meta(&event.header, &p.endpoints)?,
                    old_state: TcpState::from_kernel(p.old_state),
                    new_state,
                    handshake: (new_state == TcpState::Established).then_some(HandshakeSample {
                        rtt_us: (p.srtt_us_x8 > 0).then_some(p.srtt_us_x8 >> 3),
                        retransmits: p.retransmits,
                    }),
                })
            }
            raw::EventKind::Reset => {
                let event: raw::Event<raw::Reset> = read(record).ok_or(truncated)?;
                let p = event.payload;
                TraceEvent::Reset(Reset {
                    meta: meta(&event.header, &p.endpoints)?,
                    direction: if p.direction == raw::RESET_RECEIVED {
                        Direction::Received
                    } else {
                        Direction::Sent
                    },
                    reason: (p.reason != raw::NO_REASON).then(|| {
                        self.units
                            .reset_reasons
                            .get(&p.reason)
                            .cloned()
                            .unwrap_or_else(|| p.reason.to_string())
                    }),
                    state: state(p.state),
                })
            }
            raw::EventKind::Retransmit => {
                let event: raw::Event<raw::Retransmit> = read(record).ok_or(truncated)?;
                let p = event.payload;
                TraceEvent::Retransmit(Retransmit {
                    meta: meta(&event.header, &p.endpoints)?,
                    kind: if p.what == raw::RETRANSMIT_SYNACK {
                        RetransmitKind::SynAck
                    } else {
                        RetransmitKind::Segment
                    },
                    state: state(p.state),
                    tcp_flags: (p.tcp_flags != 0).then(|| TcpFlag::from_bits(p.tcp_flags)),
                })
            }
            raw::EventKind::KeepaliveProbe | raw::EventKind::KeepaliveTimeout => {
                let event: raw::Event<raw::Keepalive> = read(record).ok_or(truncated)?;
                let p = event.payload;
                let keepalive = Keepalive {
                    meta: meta(&event.header, &p.endpoints)?,
                    probe: p.probe,
                    settings: self.settings(&p.settings),
                };
                if kind == raw::EventKind::KeepaliveProbe {
                    TraceEvent::KeepaliveProbe(keepalive)
                } else {
                    TraceEvent::KeepaliveTimeout(keepalive)
                }
            }
        }))
    }

    fn settings(&self, settings: &raw::KeepaliveSettings) -> KeepaliveSettings {
        let ms = |jiffies: u32| {
            self.units
                .hz
                .map(|hz| u64::from(jiffies) * 1000 / u64::from(hz.max(1)))
        };
        KeepaliveSettings {
            idle_ms: ms(settings.time_jiffies),
            interval_ms: ms(settings.interval_jiffies),
            probes: settings.probes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::SocketAddrV4};

    use raw::{Endpoints, Event, EventHeader, EventKind, FLAG_PROCESS_CONTEXT};

    use super::*;
    use crate::fixture::{
        loopback,
        records::{Socket, bytes as record},
    };

    /// When every record here was written.
    const AT: u64 = 42;

    /// The socket of these records, 127.0.0.1:43014 to 10.1.2.3:8191, in the task of pid
    /// 1234 (thread 1240) named `comm`.
    fn socket(comm: &[u8]) -> Socket {
        let remote = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 8191);
        Socket::v4(0xffff_8880_1234_5678, loopback(43014), remote)
            .in_task((1234 << 32) | 1240, comm)
    }

    fn v4_state_change(flags: u8) -> Event<raw::StateChange> {
        let mut event = socket(b"curl").state_change(AT, 2, 1);
        event.header.flags = flags;
        event.payload.srtt_us_x8 = 248;
        event.payload.retransmits = 1;
        event
    }

    /// The one event a record decodes to.
    fn only(decoded: Decoded) -> TraceEvent {
        assert_eq!(decoded.second, None, "one event expected");
        decoded.first
    }

    fn decode(record: &[u8]) -> Result<TraceEvent, DecodeError> {
        Decoder::default().decode(record).map(only)
    }

    #[test]
    fn decodes_an_ipv4_state_change_in_process_context() {
        let TraceEvent::StateChange(change) =
            decode(&record(&v4_state_change(FLAG_PROCESS_CONTEXT))).unwrap()
        else {
            panic!("not a state change");
        };
        assert_eq!(change.meta.local, "127.0.0.1:43014".parse().unwrap());
        assert_eq!(change.meta.remote, "10.1.2.3:8191".parse().unwrap());
        assert_eq!(change.old_state, TcpState::SynSent);
        assert_eq!(change.new_state, TcpState::Established);
        assert_eq!(
            change.handshake,
            Some(HandshakeSample {
                rtt_us: Some(31),
                retransmits: 1
            })
        );
        assert_eq!(change.meta.boot_ns, 42);
        assert_eq!(change.meta.sock, 0xffff_8880_1234_5678);
        assert_eq!(
            change.meta.process,
            Some(Process {
                pid: 1234,
                comm: "curl".into()
            })
        );
    }

    #[test]
    fn a_close_is_its_summary_then_its_state_change() {
        let socket = socket(b"");
        let close = |old_state: u8, flags: u8| Event {
            header: socket.header(EventKind::Close, 0, AT),
            payload: raw::Close {
                endpoints: socket.endpoints,
                bytes_acked: 81,
                bytes_received: 1025,
                last_data_ns: 40,
                total_retrans: 2,
                srtt_us_x8: 400,
                netns: 7,
                old_state,
                flags,
                error: 0,
                _pad: 0,
            },
        };
        let events: Vec<TraceEvent> = Decoder::default()
            .decode(&record(&close(
                5,
                raw::CLOSE_FIN_RECEIVED | raw::CLOSE_ALL_ACKED,
            )))
            .unwrap()
            .into_iter()
            .collect();
        let [
            TraceEvent::Summary(summary),
            TraceEvent::StateChange(change),
        ] = &events[..]
        else {
            panic!("not a summary and a state change: {events:?}");
        };
        assert_eq!(
            (summary.bytes_acked, summary.bytes_received, summary.srtt_us),
            (81, 1025, 50)
        );
        assert_eq!((summary.fin_received, summary.fin_acked), (true, true));
        assert_eq!(summary.last_data_ns, Some(40));
        assert_eq!(
            (change.old_state, change.new_state),
            (TcpState::FinWait2, TcpState::Close)
        );
        // Everything acknowledged, but no FIN was sent from ESTABLISHED (an abort).
        let Ok(aborted) = Decoder::default().decode(&record(&close(1, raw::CLOSE_ALL_ACKED)))
        else {
            panic!("does not decode");
        };
        let Some(TraceEvent::Summary(summary)) = aborted.into_iter().next() else {
            panic!("no summary first");
        };
        assert_eq!((summary.fin_received, summary.fin_acked), (false, false));
    }

    #[test]
    fn softirq_events_name_no_process() {
        let event = decode(&record(&v4_state_change(0))).unwrap();
        assert_eq!(event.meta().process, None);
    }

    #[test]
    fn decodes_ipv6_addresses() {
        let mut event = v4_state_change(0);
        event.payload.endpoints.family = raw::AF_INET6;
        event.payload.endpoints.local_addr = "::1".parse::<Ipv6Addr>().unwrap().octets();
        event.payload.endpoints.remote_addr = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
        let event = decode(&record(&event)).unwrap();
        assert_eq!(event.meta().local.to_string(), "[::1]:43014");
        assert_eq!(event.meta().remote.to_string(), "[fe80::1]:8191");
    }

    #[test]
    fn invalid_utf8_comm_is_decoded_lossily() {
        let mut event = v4_state_change(FLAG_PROCESS_CONTEXT);
        event.header = socket(b"a\xffb").header(EventKind::StateChange, FLAG_PROCESS_CONTEXT, AT);
        let event = decode(&record(&event)).unwrap();
        assert_eq!(event.meta().process.as_ref().unwrap().comm, "a\u{fffd}b");
    }

    /// A header's cgroup id names the event's cgroup, its path left to the workload stage;
    /// 0 names none.
    #[test]
    fn the_cgroup_id_is_decoded_and_zero_is_none() {
        let mut event = v4_state_change(0);
        event.header = socket(b"curl")
            .in_cgroup(7777)
            .header(EventKind::StateChange, 0, AT);
        let decoded = decode(&record(&event)).unwrap();
        assert_eq!(decoded.meta().cgroup, Some(Cgroup::new(7777, None)));
        let none = decode(&record(&v4_state_change(0))).unwrap();
        assert_eq!(none.meta().cgroup, None);
    }

    #[test]
    fn rejects_truncated_unknown_and_foreign_records() {
        let bytes = record(&v4_state_change(0));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated {
                kind: 1,
                len: bytes.len() - 1
            })
        );
        assert!(matches!(
            decode(&bytes[..3]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[]),
            Err(DecodeError::Truncated { kind: 0, len: 0 })
        ));

        let mut unknown = v4_state_change(0);
        unknown.header.kind = 200;
        assert_eq!(
            decode(&record(&unknown)),
            Err(DecodeError::UnknownKind(200))
        );

        let mut unix = v4_state_change(0);
        unix.payload.endpoints.family = 1;
        assert_eq!(decode(&record(&unix)), Err(DecodeError::UnknownFamily(1)));
    }

    #[test]
    fn unknown_states_are_kept_by_number() {
        let mut event = v4_state_change(0);
        event.payload.new_state = 77;
        let TraceEvent::StateChange(change) = decode(&record(&event)).unwrap() else {
            panic!("not a state change");
        };
        assert_eq!(change.new_state, TcpState::Unknown(77));
        assert_eq!(change.new_state.to_string(), "UNKNOWN_77");
    }

    #[test]
    fn resets_name_their_reason_from_btf_or_by_number() {
        let units = KernelUnits {
            hz: None,
            reset_reasons: BTreeMap::from([(2, "NO_SOCKET".to_owned())]),
        };
        let socket = socket(b"");
        let reset = |reason: u32, direction: u8| Event {
            header: socket.header(EventKind::Reset, 0, AT),
            payload: raw::Reset {
                endpoints: socket.endpoints,
                reason,
                direction,
                state: raw::NO_STATE,
                _pad: [0; 2],
            },
        };
        let decoder = Decoder::new(units);
        let decoded = |event| match only(decoder.decode(&record(&event)).unwrap()) {
            TraceEvent::Reset(reset) => reset,
            other => panic!("not a reset: {other:?}"),
        };
        let sent = decoded(reset(2, raw::RESET_SENT));
        assert_eq!(
            (sent.direction, sent.reason.as_deref(), sent.state),
            (Direction::Sent, Some("NO_SOCKET"), None)
        );
        let received = decoded(reset(raw::NO_REASON, raw::RESET_RECEIVED));
        assert_eq!(
            (received.direction, received.reason),
            (Direction::Received, None)
        );
        assert_eq!(
            decoded(reset(99, raw::RESET_SENT)).reason.as_deref(),
            Some("99")
        );
    }

    #[test]
    fn retransmits_list_their_tcp_flags() {
        let socket = socket(b"");
        let event = Event {
            header: socket.header(EventKind::Retransmit, 0, AT),
            payload: raw::Retransmit {
                endpoints: socket.endpoints,
                what: raw::RETRANSMIT_SEGMENT,
                state: 1,
                tcp_flags: 0x18,
                _pad: [0; 5],
            },
        };
        let TraceEvent::Retransmit(retransmit) = decode(&record(&event)).unwrap() else {
            panic!("not a retransmit");
        };
        assert_eq!(retransmit.kind, RetransmitKind::Segment);
        assert_eq!(retransmit.state, Some(TcpState::Established));
        assert_eq!(retransmit.tcp_flags, Some(vec![TcpFlag::Psh, TcpFlag::Ack]));
    }

    #[test]
    fn keepalive_settings_convert_jiffies_with_hz() {
        let socket = socket(b"");
        let event = |kind| Event {
            header: socket.header(kind, 0, AT),
            payload: raw::Keepalive {
                endpoints: socket.endpoints,
                settings: raw::KeepaliveSettings {
                    time_jiffies: 250,
                    interval_jiffies: 500,
                    probes: 9,
                    _pad: [0; 7],
                },
                probe: 3,
                _pad: [0; 7],
            },
        };
        let decoder = Decoder::new(KernelUnits {
            hz: Some(250),
            ..KernelUnits::default()
        });
        let TraceEvent::KeepaliveProbe(probe) = only(
            decoder
                .decode(&record(&event(EventKind::KeepaliveProbe)))
                .unwrap(),
        ) else {
            panic!("not a probe");
        };
        assert_eq!(probe.probe, 3);
        assert_eq!(
            probe.settings,
            KeepaliveSettings {
                idle_ms: Some(1000),
                interval_ms: Some(2000),
                probes: 9
            }
        );
        let TraceEvent::KeepaliveTimeout(timeout) =
            decode(&record(&event(EventKind::KeepaliveTimeout))).unwrap()
        else {
            panic!("not a timeout");
        };
        assert_eq!(
            timeout.settings.idle_ms, None,
            "unknown HZ gives no milliseconds"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(
            mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            // Mostly known kinds and families, so that records decode too.
            kind in proptest::prop_oneof![1u8..=8, proptest::num::u8::ANY],
            family in proptest::prop_oneof![
                proptest::strategy::Just(raw::AF_INET),
                proptest::strategy::Just(raw::AF_INET6),
                proptest::num::u16::ANY,
            ],
        ) {
            let kind_at = std::mem::offset_of!(EventHeader, kind);
            if let Some(byte) = bytes.get_mut(kind_at) {
                *byte = kind;
            }
            let family_at = size_of::<EventHeader>() + std::mem::offset_of!(Endpoints, family);
            if let Some(field) = bytes.get_mut(family_at..family_at + 2) {
                field.copy_from_slice(&family.to_ne_bytes());
            }
            let decoded = Decoder::default().decode(&bytes);
            let len = bytes.len();
            let Some(header) = read::<EventHeader>(&bytes) else {
                let kind = bytes.get(kind_at).copied().unwrap_or(0);
                proptest::prop_assert_eq!(decoded, Err(DecodeError::Truncated { kind, len }));
                return Ok(());
            };
            let kind = header.kind;
            let Some(event_kind) = EventKind::from_u8(kind) else {
                proptest::prop_assert_eq!(decoded, Err(DecodeError::UnknownKind(kind)));
                return Ok(());
            };
            let layout = match event_kind {
                EventKind::StateChange => size_of::<Event<raw::StateChange>>(),
                EventKind::Reset => size_of::<Event<raw::Reset>>(),
                EventKind::Retransmit => size_of::<Event<raw::Retransmit>>(),
                EventKind::KeepaliveProbe | EventKind::KeepaliveTimeout => {
                    size_of::<Event<raw::Keepalive>>()
                }
                EventKind::DataTurn | EventKind::TlsTurn => size_of::<Event<raw::DataTurn>>(),
                EventKind::TlsHandshake => size_of::<Event<raw::TlsHandshake>>(),
                EventKind::Close => size_of::<Event<raw::Close>>(),
                EventKind::Accepted => size_of::<Event<raw::Accepted>>(),
                EventKind::TimewaitEnd => size_of::<Event<raw::TimewaitEnd>>(),
            };
            if len < layout {
                proptest::prop_assert_eq!(decoded, Err(DecodeError::Truncated { kind, len }));
                return Ok(());
            }
            // Every payload starts with its endpoints.
            let endpoints: Endpoints = read(&bytes[size_of::<EventHeader>()..]).unwrap();
            let address = |raw: [u8; 16]| -> IpAddr {
                match endpoints.family {
                    raw::AF_INET => Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into(),
                    _ => Ipv6Addr::from(raw).into(),
                }
            };
            if ![raw::AF_INET, raw::AF_INET6].contains(&endpoints.family) {
                proptest::prop_assert_eq!(decoded, Err(DecodeError::UnknownFamily(endpoints.family)));
                return Ok(());
            }
            let events: Vec<TraceEvent> = decoded.unwrap().into_iter().collect();
            // A close is two events, its summary and its state change to CLOSE.
            proptest::prop_assert_eq!(events.len(), if event_kind == EventKind::Close { 2 } else { 1 });
            for event in &events {
                let meta = event.meta();
                proptest::prop_assert_eq!(meta.boot_ns, header.timestamp_ns);
                proptest::prop_assert_eq!(meta.sock, header.sock);
                proptest::prop_assert_eq!(
                    meta.local,
                    SocketAddr::new(address(endpoints.local_addr), endpoints.local_port)
                );
                proptest::prop_assert_eq!(
                    meta.remote,
                    SocketAddr::new(address(endpoints.remote_addr), endpoints.remote_port)
                );
                let process = (header.flags & FLAG_PROCESS_CONTEXT != 0).then(|| Process {
                    pid: (header.pid_tgid >> 32) as u32,
                    comm: String::from_utf8_lossy(header.comm.split(|&b| b == 0).next().unwrap())
                        .into_owned(),
                });
                proptest::prop_assert_eq!(&meta.process, &process);
            }
        }
    }
}
