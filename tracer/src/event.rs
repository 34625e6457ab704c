//! What the daemon knows about a kernel event once decoded: plain Rust values, with the
//! kernel's boot-clock timestamp (wall-clock conversion belongs to the sinks).

use std::{fmt, net::SocketAddr, str::FromStr, sync::Arc};

use crate::vocabulary::{UnknownName, names};

/// A TCP state, numbered as in the kernel's `include/net/tcp_states.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    /// A number this tracer does not know (a newer kernel's state).
    Unknown(u8),
}

impl TcpState {
    pub fn from_kernel(value: u8) -> Self {
        match value {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            12 => Self::NewSynRecv,
            other => Self::Unknown(other),
        }
    }

    /// The kernel's name without the `TCP_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

/// As the lines spell a state: the kernel's name, or `UNKNOWN_<number>`.
impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(value) => write!(f, "{UNKNOWN_PREFIX}{value}"),
            known => f.write_str(known.name()),
        }
    }
}

/// How the lines spell a state number this tracer does not know.
const UNKNOWN_PREFIX: &str = "UNKNOWN_";

/// The largest state number the kernel has (`TCP_NEW_SYN_RECV`).
const LAST_KNOWN_STATE: u8 = 12;

impl FromStr for TcpState {
    type Err = UnknownName;

    /// Reads back what [`fmt::Display`] wrote.
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        let unknown = || UnknownName {
            what: "TCP state",
            name: name.to_owned(),
            expected: &[],
        };
        if let Some(number) = name.strip_prefix(UNKNOWN_PREFIX) {
            return number.parse().map(Self::Unknown).map_err(|_| unknown());
        }
        (1..=LAST_KNOWN_STATE)
            .map(Self::from_kernel)
            .find(|state| state.name() == name)
            .ok_or_else(unknown)
    }
}

/// The error a socket held as it closed (`sk_err`): what its application is told by its
/// next call, `ECONNREFUSED` for a refused connect, `ETIMEDOUT` when the kernel gave up
/// retransmitting. Spelled as C names it; a number this tracer has no name for is
/// written `errno <number>`, and read back so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketError(pub u8);

/// The errors the kernel's TCP leaves on a socket (`tcp_reset`, `tcp_write_err`, ICMP
/// errors through `icmp_err_convert`, `tcp_abort`), by number, as C names them.
const SOCKET_ERRORS: &[(i32, &str)] = &[
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::EPIPE, "EPIPE"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::EHOSTDOWN, "EHOSTDOWN"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ENONET, "ENONET"),
    (libc::ENOPROTOOPT, "ENOPROTOOPT"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::EACCES, "EACCES"),
    (libc::EPROTO, "EPROTO"),
];

/// How the lines spell an error without a name.
const ERRNO_PREFIX: &str = "errno ";

impl SocketError {
    /// The kernel's `sk_err`; `None` for 0, no error.
    pub fn from_kernel(errno: u8) -> Option<Self> {
        (errno != 0).then_some(Self(errno))
    }
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SOCKET_ERRORS.iter().find(|(n, _)| *n == i32::from(self.0)) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "{ERRNO_PREFIX}{}", self.0),
        }
    }
}

impl FromStr for SocketError {
    type Err = UnknownName;

    /// Reads back what [`fmt::Display`] wrote.
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        let known = SOCKET_ERRORS.iter().find(|(_, known)| *known == name);
        let number = || name.strip_prefix(ERRNO_PREFIX)?.parse().ok();
        known
            .map(|(n, _)| Self(*n as u8))
            .or_else(|| number().map(Self))
            .ok_or_else(|| UnknownName {
                what: "socket error",
                name: name.to_owned(),
                expected: &[],
            })
    }
}

impl serde::Serialize for SocketError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The process an event ran on behalf of: known only in process context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Thread group id (what `ps` calls the pid).
    pub pid: u32,
    /// The task's `comm`, lossily decoded: it need not be UTF-8.
    pub comm: String,
}

/// The cgroup (v2) of the socket an event is about: its id from the kernel, its path
/// (from the cgroup2 mount's root) resolved by the pipeline's workload stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// The kernel's cgroup id: the inode number of the cgroup's directory.
    pub id: u64,
    /// `None` when it could not be resolved (a cgroup removed before it was looked up).
    pub path: Option<Arc<str>>,
    /// What the container runtime (its CRI API) names the workload of this cgroup: `None`
    /// without a runtime to ask, or when it does not know the cgroup's container or pod.
    pub names: Option<Arc<WorkloadNames>>,
}

impl Cgroup {
    /// A cgroup by its id and path, its names not (yet) asked.
    pub fn new(id: u64, path: Option<Arc<str>>) -> Self {
        Self {
            id,
            path,
            names: None,
        }
    }
}

/// A pod's names, from the CRI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNames {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// The names of a cgroup's workload, as far as the container runtime knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadNames {
    /// The container's name (as in the pod's spec, `kubectl get pod` shows it).
    pub container: Option<String>,
    /// The runtime that runs the container (`containerd`, `cri-o`), when it was found.
    pub runtime: Option<&'static str>,
    pub pod: Option<PodNames>,
}

/// Fields every event has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// `CLOCK_BOOTTIME`, nanoseconds.
    pub boot_ns: u64,
    /// Kernel address of the socket; 0 for a reset sent without one.
    pub sock: u64,
    /// `None` when the kernel was serving a softirq.
    pub process: Option<Process>,
    /// `None` when the kernel knew none (see `tracer_common::EventHeader::cgroup_id`).
    pub cgroup: Option<Cgroup>,
    /// The connection's ends from this host's side.
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// A TCP socket changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub meta: EventMeta,
    pub old_state: TcpState,
    pub new_state: TcpState,
    /// On entering ESTABLISHED, what the kernel measured of the handshake.
    pub handshake: Option<HandshakeSample>,
}

/// The kernel's view of a handshake as the socket enters ESTABLISHED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeSample {
    /// The socket's RTT so far, microseconds, when the kernel took a sample. For a
    /// server, the round trip of its SYN-ACK: from sending it to the client's ACK.
    pub rtt_us: Option<u32>,
    /// Segments sent again so far: for a server, SYN-ACKs (the kernel takes no RTT
    /// sample from a retransmitted SYN-ACK); for a client, SYNs.
    pub retransmits: u32,
}

/// Which way a reset or a data turn went, from this host's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Sent,
    Received,
}

names!(Direction as "direction" {
    Sent => "sent",
    Received => "received",
});

/// A reset sent or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    pub meta: EventMeta,
    pub direction: Direction,
    /// The kernel's `enum sk_rst_reason` name without its prefix (6.10+), or its number
    /// when BTF does not name it.
    pub reason: Option<String>,
    /// The socket's state when it happened, where known.
    pub state: Option<TcpState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetransmitKind {
    /// A data or control segment of a connection.
    Segment,
    /// The SYN-ACK of a connection still in its handshake.
    SynAck,
}

names!(RetransmitKind as "retransmitted segment kind" {
    Segment => "segment",
    SynAck => "synack",
});

/// A TCP header flag, as the kernel's `TCPHDR_*` bits number them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpFlag {
    Fin,
    Syn,
    Rst,
    Psh,
    Ack,
    Urg,
    Ece,
    Cwr,
}

names!(TcpFlag as "TCP flag" {
    Fin => "FIN",
    Syn => "SYN",
    Rst => "RST",
    Psh => "PSH",
    Ack => "ACK",
    Urg => "URG",
    Ece => "ECE",
    Cwr => "CWR",
});

impl TcpFlag {
    /// Its bit in the flags byte of the TCP header (`TCPHDR_*`).
    pub fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The flags set in `bits`, in bit order.
    pub fn from_bits(bits: u8) -> Vec<TcpFlag> {
        Self::ALL
            .iter()
            .copied()
            .filter(|flag| bits & flag.bit() != 0)
            .collect()
    }
}

/// A retransmitted segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retransmit {
    pub meta: EventMeta,
    pub kind: RetransmitKind,
    pub state: Option<TcpState>,
    /// The segment's TCP flags, e.g. SYN and ACK, where the kernel exposes them.
    pub tcp_flags: Option<Vec<TcpFlag>>,
}

/// The keepalive settings in force for a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// Idle time before the first probe and time between probes, in milliseconds; `None`
    /// when the kernel's HZ is unknown (the kernel counts them in jiffies).
    pub idle_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    /// Unanswered probes before the connection is killed.
    pub probes: u8,
}

/// A keepalive probe sent (`probe` counts from 1; back at 1 means the previous one was
/// answered), or the connection killed after `probe` unanswered probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub meta: EventMeta,
    pub probe: u8,
    pub settings: KeepaliveSettings,
}

/// The socket's data changed direction: the first data in `direction` after data went
/// the other way (or the first data at all). The kernel aggregates per socket and sends
/// only these boundaries, so a request/response exchange costs two events however many
/// segments it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataTurn {
    pub meta: EventMeta,
    pub direction: Direction,
}

/// The TLS library whose calls tracer saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsLibrary {
    /// OpenSSL's `libssl`.
    OpenSsl,
}

names!(TlsLibrary as "TLS library" {
    OpenSsl => "openssl",
});

/// A TLS library finished the handshake of the connection (`meta.boot_ns`: the
/// handshake call that succeeded returned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsHandshake {
    pub meta: EventMeta,
    pub library: TlsLibrary,
    /// From the first handshake call's entry to the return that finished it,
    /// microseconds; `None` when the start was not seen.
    pub handshake_us: Option<u64>,
}

/// What the kernel's `tcp_sock` says about a connection as it closes (the kernel sends
/// it with the state change to CLOSE, which follows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSummary {
    pub meta: EventMeta,
    /// `bytes_acked`: sequence space the peer acknowledged, that is the payload, plus a
    /// client's SYN, plus this side's FIN once acknowledged (`fin_acked`).
    pub bytes_acked: u64,
    /// `bytes_received`: sequence space received, the payload plus the peer's FIN
    /// (`fin_received`).
    pub bytes_received: u64,
    /// The peer's FIN arrived.
    pub fin_received: bool,
    /// This side sent a FIN and the peer acknowledged it.
    pub fin_acked: bool,
    /// `total_retrans`.
    pub retransmits: u32,
    /// Smoothed round-trip time, microseconds.
    pub srtt_us: u32,
    /// Network namespace inode number (as in `/proc/PID/ns/net`).
    pub netns: u32,
    /// The error the socket held as it closed, if any.
    pub error: Option<SocketError>,
    /// Boot-clock time of the last data sent or received, if any.
    pub last_data_ns: Option<u64>,
}

/// A process accepted the connection (`meta.process` is the acceptor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub meta: EventMeta,
}

/// A socket's counters since its connection began, as `tcp_info` gives them (the units
/// of the close summary: `bytes_acked` counts a client's SYN and an acknowledged FIN,
/// `bytes_received` the peer's FIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpCounters {
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
}

/// A connection already open when tracing started, read from the kernel (sock_diag).
/// `meta.boot_ns` is when it was read; `meta.process` the process holding the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    pub meta: EventMeta,
    pub state: TcpState,
    /// The network namespace it was found in (inode); `None` in traces from before it
    /// was recorded.
    pub netns: Option<u32>,
    /// Its counters when found: what happened before tracing.
    pub counters: Option<TcpCounters>,
}

/// What ended the wait of a timewait socket in FIN_WAIT2 for the peer's FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEnd {
    /// The peer's FIN came: the connection closed (TIME_WAIT follows).
    Fin,
    /// The peer reset the connection.
    Reset,
    /// The peer sent data after this side's close: refused with a reset.
    Data,
    /// The peer's segment found no timewait socket (the kernel had not kept one) and
    /// was answered with a reset. From the `reset` event, never a `timewait_end`'s.
    NoTimewait,
    /// Nothing came within `net.ipv4.tcp_fin_timeout`: the kernel dropped the timewait
    /// socket. Inferred by the correlator, never an event's.
    Timeout,
}

names!(PeerEnd as "timewait end" {
    Fin => "peer_fin",
    Reset => "peer_reset",
    Data => "peer_data",
    NoTimewait => "no_timewait",
    Timeout => "fin_timeout",
});

/// A segment from the peer ended a timewait socket's FIN_WAIT2 (`meta.sock` is the
/// timewait socket, not the connection's closed one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimewaitEnd {
    pub meta: EventMeta,
    pub how: PeerEnd,
}

/// One decoded kernel event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    StateChange(StateChange),
    Reset(Reset),
    Retransmit(Retransmit),
    KeepaliveProbe(Keepalive),
    KeepaliveTimeout(Keepalive),
    DataTurn(DataTurn),
    /// The application's data through a TLS library changed direction.
    TlsTurn(DataTurn),
    TlsHandshake(TlsHandshake),
    Summary(ConnectionSummary),
    Accepted(Accepted),
    Existing(Existing),
    TimewaitEnd(TimewaitEnd),
}

/// Which [`TraceEvent`] an event is: its name in the lines (`event`) and metrics
/// (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    StateChange,
    Reset,
    Retransmit,
    KeepaliveProbe,
    KeepaliveTimeout,
    DataTurn,
    TlsTurn,
    TlsHandshake,
    Summary,
    Accepted,
    Existing,
    TimewaitEnd,
}

names!(EventKind as "event" {
    StateChange => "state_change",
    Reset => "reset",
    Retransmit => "retransmit",
    KeepaliveProbe => "keepalive_probe",
    KeepaliveTimeout => "keepalive_timeout",
    DataTurn => "data_turn",
    TlsTurn => "tls_turn",
    TlsHandshake => "tls_handshake",
    Summary => "close_summary",
    Accepted => "accepted",
    Existing => "existing",
    TimewaitEnd => "timewait_end",
});

/// The `meta` of any event, borrowed as the event is.
macro_rules! meta_of {
    ($event:expr) => {
        match $event {
            TraceEvent::StateChange(StateChange { meta, .. })
            | TraceEvent::Reset(Reset { meta, .. })
            | TraceEvent::Retransmit(Retransmit { meta, .. })
            | TraceEvent::KeepaliveProbe(Keepalive { meta, .. })
            | TraceEvent::KeepaliveTimeout(Keepalive { meta, .. })
            | TraceEvent::DataTurn(DataTurn { meta, .. })
            | TraceEvent::TlsTurn(DataTurn { meta, .. })
            | TraceEvent::TlsHandshake(TlsHandshake { meta, .. })
            | TraceEvent::Summary(ConnectionSummary { meta, .. })
            | TraceEvent::Accepted(Accepted { meta })
            | TraceEvent::Existing(Existing { meta, .. })
            | TraceEvent::TimewaitEnd(TimewaitEnd { meta, .. }) => meta,
        }
    };
}

impl TraceEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::StateChange(_) => EventKind::StateChange,
            Self::Reset(_) => EventKind::Reset,
            Self::Retransmit(_) => EventKind::Retransmit,
            Self::KeepaliveProbe(_) => EventKind::KeepaliveProbe,
            Self::KeepaliveTimeout(_) => EventKind::KeepaliveTimeout,
            Self::DataTurn(_) => EventKind::DataTurn,
            Self::TlsTurn(_) => EventKind::TlsTurn,
            Self::TlsHandshake(_) => EventKind::TlsHandshake,
            Self::Summary(_) => EventKind::Summary,
            Self::Accepted(_) => EventKind::Accepted,
            Self::Existing(_) => EventKind::Existing,
            Self::TimewaitEnd(_) => EventKind::TimewaitEnd,
        }
    }

    /// The event's name in the lines (`event`) and metrics (`kind`).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    pub fn meta(&self) -> &EventMeta {
        meta_of!(self)
    }

    pub fn meta_mut(&mut self) -> &mut EventMeta {
        meta_of!(self)
    }
}
