//! Ring buffer records -> [`TraceEvent`]s. A record that cannot be decoded is an error
//! the daemon counts and reports, never a panic.

use std::{
    fmt,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tracer_common::{
    AF_INET, AF_INET6, Event, EventHeader, EventKind, FLAG_PROCESS_CONTEXT,
    StateChange as RawStateChange,
};

use crate::event::{EventMeta, Process, StateChange, TcpState, TraceEvent};

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

/// Decodes one ring buffer record.
pub fn decode(record: &[u8]) -> Result<TraceEvent, DecodeError> {
    let header: EventHeader = read(record).ok_or(DecodeError::Truncated {
        kind: record.first().copied().unwrap_or(0),
        len: record.len(),
    })?;
    let truncated = DecodeError::Truncated {
        kind: header.kind,
        len: record.len(),
    };
    match EventKind::from_u8(header.kind) {
        Some(EventKind::StateChange) => {
            let event: Event<RawStateChange> = read(record).ok_or(truncated)?;
            decode_state_change(&event).map(TraceEvent::StateChange)
        }
        None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

fn meta(header: &EventHeader) -> EventMeta {
    let process = (header.flags & FLAG_PROCESS_CONTEXT != 0).then(|| Process {
        pid: (header.pid_tgid >> 32) as u32,
        comm: comm(&header.comm),
    });
    EventMeta {
        boot_ns: header.timestamp_ns,
        sock: header.sock,
        process,
    }
}

/// The bytes before the first NUL, lossily decoded.
fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn ip(family: u16, raw: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()),
        AF_INET6 => Ok(Ipv6Addr::from(*raw).into()),
        other => Err(DecodeError::UnknownFamily(other)),
    }
}

fn decode_state_change(event: &Event<RawStateChange>) -> Result<StateChange, DecodeError> {
    let raw = &event.payload;
    Ok(StateChange {
        meta: meta(&event.header),
        local: SocketAddr::new(ip(raw.family, &raw.local_addr)?, raw.local_port),
        remote: SocketAddr::new(ip(raw.family, &raw.remote_addr)?, raw.remote_port),
        old_state: TcpState::from_kernel(raw.old_state),
        new_state: TcpState::from_kernel(raw.new_state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the eBPF side would write for `event`.
    pub(crate) fn record<T: Copy>(event: &Event<T>) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain #[repr(C)] value with explicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (event as *const Event<T>).cast::<u8>(),
                size_of::<Event<T>>(),
            )
        }
        .to_vec()
    }

    fn header(flags: u8, comm: &[u8]) -> EventHeader {
        let mut raw_comm = [0u8; 16];
        raw_comm[..comm.len()].copy_from_slice(comm);
        EventHeader {
            timestamp_ns: 42,
            sock: 0xffff_8880_1234_5678,
            pid_tgid: (1234 << 32) | 1240,
            comm: raw_comm,
            kind: EventKind::StateChange as u8,
            flags,
            _pad: [0; 6],
        }
    }

    fn v4_state_change(flags: u8) -> Event<RawStateChange> {
        let mut local_addr = [0u8; 16];
        local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut remote_addr = [0u8; 16];
        remote_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        Event {
            header: header(flags, b"curl"),
            payload: RawStateChange {
                old_state: 2,
                new_state: 1,
                family: AF_INET,
                local_port: 43014,
                remote_port: 8191,
                local_addr,
                remote_addr,
            },
        }
    }

    #[test]
    fn decodes_an_ipv4_state_change_in_process_context() {
        let event = decode(&record(&v4_state_change(FLAG_PROCESS_CONTEXT))).unwrap();
        let TraceEvent::StateChange(change) = event;
        assert_eq!(change.local, "127.0.0.1:43014".parse().unwrap());
        assert_eq!(change.remote, "10.1.2.3:8191".parse().unwrap());
        assert_eq!(change.old_state, TcpState::SynSent);
        assert_eq!(change.new_state, TcpState::Established);
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
    fn softirq_events_name_no_process() {
        let TraceEvent::StateChange(change) = decode(&record(&v4_state_change(0))).unwrap();
        assert_eq!(change.meta.process, None);
    }

    #[test]
    fn decodes_ipv6_addresses() {
        let mut event = v4_state_change(0);
        event.payload.family = AF_INET6;
        event.payload.local_addr = "::1".parse::<Ipv6Addr>().unwrap().octets();
        event.payload.remote_addr = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
        let TraceEvent::StateChange(change) = decode(&record(&event)).unwrap();
        assert_eq!(change.local.to_string(), "[::1]:43014");
        assert_eq!(change.remote.to_string(), "[fe80::1]:8191");
    }

    #[test]
    fn invalid_utf8_comm_is_decoded_lossily() {
        let mut event = v4_state_change(FLAG_PROCESS_CONTEXT);
        event.header = header(FLAG_PROCESS_CONTEXT, b"a\xffb");
        let TraceEvent::StateChange(change) = decode(&record(&event)).unwrap();
        assert_eq!(change.meta.process.unwrap().comm, "a\u{fffd}b");
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
        unix.payload.family = 1;
        assert_eq!(decode(&record(&unix)), Err(DecodeError::UnknownFamily(1)));
    }

    #[test]
    fn unknown_states_are_kept_by_number() {
        let mut event = v4_state_change(0);
        event.payload.new_state = 77;
        let TraceEvent::StateChange(change) = decode(&record(&event)).unwrap();
        assert_eq!(change.new_state, TcpState::Unknown(77));
        assert_eq!(change.new_state.to_string(), "UNKNOWN_77");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
