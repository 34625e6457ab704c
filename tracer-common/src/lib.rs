//! Types shared by the eBPF programs (`tracer-ebpf`) and the daemon (`tracer`).
//!
//! Every record in the ring buffer is an [`Event`]: an [`EventHeader`] whose `kind` says
//! which payload follows. The `*Layout` types carry what the programs must know about the
//! running kernel (tracepoint record offsets from tracefs, struct field offsets from
//! BTF); the daemon sets them as read-only globals before load. All types are
//! `#[repr(C)]` with explicit padding so both sides agree byte for byte.
#![no_std]

/// Name of the BPF ring buffer carrying events to userspace.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU [`EmitCounts`]: events the programs tried to send, and those the
/// ring buffer had no room for.
pub const EMIT_COUNTS_MAP: &str = "EMIT_COUNTS";
/// Words in [`PortFilter`]: one bit for each of the 65536 ports.
pub const PORTS_WORDS: usize = 65536 / 64;

/// Per CPU: events reserved or attempted, and those lost because the ring buffer was
/// full. `sent == received + lost` once userspace has drained the ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitCounts {
    pub sent: u64,
    pub lost: u64,
}

/// The traced ports, set before load as a read-only global: bit `port % 64` of word
/// `port / 64`. Read-only data needs no map lookup: checking a port is one load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortFilter {
    pub words: [u64; PORTS_WORDS],
}

impl PortFilter {
    pub const EMPTY: Self = Self {
        words: [0; PORTS_WORDS],
    };

    pub fn with_ports(ports: &[u16]) -> Self {
        let mut filter = Self::EMPTY;
        for &port in ports {
            filter.words[usize::from(port / 64)] |= 1 << (port % 64);
        }
        filter
    }

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        self.words[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

/// When the programs wake the daemon, set before load: events are submitted without a
/// wakeup until `wakeup_bytes` wait in the ring buffer, so the daemon reads them in
/// batches (it also drains on a short timer, which bounds the latency).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    pub wakeup_bytes: u64,
}

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `TCP_CLOSE` in the kernel's `include/net/tcp_states.h`.
pub const TCP_CLOSE: u8 = 7;

/// What follows the header.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    StateChange = 1,
    Reset = 2,
    Retransmit = 3,
    KeepaliveProbe = 4,
    KeepaliveTimeout = 5,
    DataTurn = 6,
    Close = 7,
    Accepted = 8,
}

impl EventKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::StateChange,
            2 => Self::Reset,
            3 => Self::Retransmit,
            4 => Self::KeepaliveProbe,
            5 => Self::KeepaliveTimeout,
            6 => Self::DataTurn,
            7 => Self::Close,
            8 => Self::Accepted,
            _ => return None,
        })
    }
}

/// `EventHeader::flags`: the event was produced in process context, so `pid_tgid` and
/// `comm` name the process that caused it. Without it the kernel was serving a softirq
/// and the current task is whatever it interrupted.
pub const FLAG_PROCESS_CONTEXT: u8 = 1;

/// The envelope of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// `CLOCK_BOOTTIME` in nanoseconds (`bpf_ktime_get_boot_ns`).
    pub timestamp_ns: u64,
    /// Kernel address of the `struct sock`: the socket's identity while it lives; 0 when
    /// the kernel acted without a socket (a reset answering a segment for no socket).
    pub sock: u64,
    /// `bpf_get_current_pid_tgid()`: tgid in the high 32 bits, thread id in the low.
    pub pid_tgid: u64,
    /// `bpf_get_current_comm()`: NUL-padded, not necessarily UTF-8.
    pub comm: [u8; 16],
    /// An [`EventKind`].
    pub kind: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    pub _pad: [u8; 6],
}

/// Both ends of a connection, from the socket's point of view.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    /// IPv4 in the first 4 bytes (network order), or IPv6.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

/// A TCP socket changed state (to any state but CLOSE: see [`Close`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub endpoints: Endpoints,
    /// `TCP_*` state numbers as in the kernel's `include/net/tcp_states.h`.
    pub old_state: u8,
    pub new_state: u8,
    pub _pad: [u8; 2],
    /// On entering ESTABLISHED, `srtt_us` (eight times the smoothed RTT in microseconds,
    /// 0 before any sample): for a server, the kernel's measure of its SYN-ACK's round
    /// trip; 0 in other states.
    pub srtt_us_x8: u32,
    /// On entering ESTABLISHED, `total_retrans`: for a server, SYN-ACKs sent again.
    pub retransmits: u32,
    pub _pad2: u32,
}

/// `Reset::direction`.
pub const RESET_SENT: u8 = 0;
pub const RESET_RECEIVED: u8 = 1;
/// `Reset::reason` when the kernel gives none.
pub const NO_REASON: u32 = u32::MAX;
/// A state field the kernel did not provide.
pub const NO_STATE: u8 = 0;

/// A TCP reset sent (`tcp:tcp_send_reset`) or received (`tcp:tcp_receive_reset`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    pub endpoints: Endpoints,
    /// `enum sk_rst_reason` where the tracepoint has it, else [`NO_REASON`].
    pub reason: u32,
    /// [`RESET_SENT`] or [`RESET_RECEIVED`].
    pub direction: u8,
    /// The socket's state, or [`NO_STATE`].
    pub state: u8,
    pub _pad: [u8; 2],
}

/// `Retransmit::what`.
pub const RETRANSMIT_SEGMENT: u8 = 0;
pub const RETRANSMIT_SYNACK: u8 = 1;

/// A segment retransmitted (`tcp:tcp_retransmit_skb`, `tcp:tcp_retransmit_synack`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmit {
    pub endpoints: Endpoints,
    /// [`RETRANSMIT_SEGMENT`] or [`RETRANSMIT_SYNACK`].
    pub what: u8,
    /// The socket's state, or [`NO_STATE`].
    pub state: u8,
    /// TCP header flags of the segment (`TCPHDR_*`), 0 when unknown.
    pub tcp_flags: u8,
    pub _pad: [u8; 5],
}

/// The keepalive settings in force for a socket: its own (`TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL`, `TCP_KEEPCNT`) or the namespace's sysctl defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// Idle time before the first probe, in jiffies.
    pub time_jiffies: u32,
    /// Time between probes, in jiffies.
    pub interval_jiffies: u32,
    /// Probes without answer before the connection is killed.
    pub probes: u8,
    pub _pad: [u8; 7],
}

/// The keepalive timer sent a probe (`probe` is its number, 1-based) or killed the
/// connection because `probe` probes went unanswered.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub endpoints: Endpoints,
    pub settings: KeepaliveSettings,
    pub probe: u8,
    pub _pad: [u8; 7],
}

/// `DataTurn::direction`.
pub const DATA_SENT: u8 = 0;
pub const DATA_RECEIVED: u8 = 1;

/// The socket's data changed direction (or flowed for the first time).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataTurn {
    pub endpoints: Endpoints,
    /// [`DATA_SENT`] or [`DATA_RECEIVED`].
    pub direction: u8,
    pub _pad: [u8; 7],
}

/// `Close::last_data_ns` when the socket never carried data.
pub const NO_DATA: u64 = 0;

/// `Close::flags`: the peer's FIN arrived (`SOCK_DONE`), so `bytes_received` counts it.
pub const CLOSE_FIN_RECEIVED: u8 = 1;
/// `Close::flags`: everything this side queued was acknowledged (`snd_una == write_seq`),
/// its FIN included if it sent one.
pub const CLOSE_ALL_ACKED: u8 = 2;

/// A socket entered CLOSE: its state change and its `tcp_sock` counters, in one record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    pub endpoints: Endpoints,
    /// RFC 4898 counters: sequence space acknowledged by the peer and received, SYN and
    /// FIN included where they were.
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// Boot-clock time of the last data sent or received, or [`NO_DATA`].
    pub last_data_ns: u64,
    pub total_retrans: u32,
    /// `srtt_us` as the kernel keeps it: eight times the smoothed RTT in microseconds.
    pub srtt_us_x8: u32,
    pub netns: u32,
    /// The state the socket left.
    pub old_state: u8,
    /// `CLOSE_*` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
}

/// A process accepted the socket: the header names it; the payload is the socket's ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub endpoints: Endpoints,
}

/// A ring buffer record: header plus payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<T> {
    pub header: EventHeader,
    pub payload: T,
}

/// A layout offset for a field the running kernel does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// `EndpointLayout::style`: `sport`, `dport`, `family`, `saddr[4]`, `daddr[4]`,
/// `saddr_v6[16]`, `daddr_v6[16]` fields, ports in host order.
pub const ENDPOINTS_SPLIT: u16 = 0;
/// `saddr`/`daddr` each a `struct sockaddr_in6`-sized copy of the address (6.8+
/// `tcp_send_reset`): family, port in network order, then the IPv4 or IPv6 address.
pub const ENDPOINTS_SOCKADDR: u16 = 1;

/// Where a tracepoint record keeps the connection's addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLayout {
    pub style: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
}

/// Byte offsets of a TCP tracepoint record's fields (the reset and retransmit
/// tracepoints, whose records carry the connection's ends even without a socket), read
/// from tracefs at start-up because they differ between kernels. Fields a tracepoint
/// lacks are [`FIELD_ABSENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    pub skaddr: u16,
    pub skbaddr: u16,
    pub state: u16,
    pub reason: u16,
    /// `tcp_retransmit_synack`'s request socket.
    pub req: u16,
    pub _pad: [u16; 3],
    pub endpoints: EndpointLayout,
}

impl TracepointLayout {
    /// Every field absent: what the programs see before the daemon sets the layout.
    pub const ABSENT: Self = Self {
        skaddr: FIELD_ABSENT,
        skbaddr: FIELD_ABSENT,
        state: FIELD_ABSENT,
        reason: FIELD_ABSENT,
        req: FIELD_ABSENT,
        _pad: [0; 3],
        endpoints: EndpointLayout {
            style: ENDPOINTS_SPLIT,
            sport: FIELD_ABSENT,
            dport: FIELD_ABSENT,
            family: FIELD_ABSENT,
            saddr: FIELD_ABSENT,
            daddr: FIELD_ABSENT,
            saddr_v6: FIELD_ABSENT,
            daddr_v6: FIELD_ABSENT,
        },
    };
}

/// A kernel struct field the programs read: byte offset and size (1, 2, 4 or 8 for
/// integers), resolved from BTF. `size == 0` means absent on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelField {
    pub offset: u32,
    pub size: u32,
}

/// Offsets of the kernel struct fields the programs read, from the running kernel's BTF.
/// All offsets are from the start of `struct sock` (which starts `inet_connection_sock`
/// and `tcp_sock`), except `net_*` (from `struct net`) and the timer and skb ones.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    /// The start of `sock_common` that holds the fields below up to `skc_state`, read in
    /// one go (`size` 0 when they are too far apart: then each is read).
    pub sock_head: KernelField,
    pub skc_family: KernelField,
    pub skc_state: KernelField,
    /// `inet_sock.inet_sport` (network order), as the tracepoint reports the local port:
    /// `skc_num` is already 0 when a closing socket enters CLOSE.
    pub inet_sport: KernelField,
    /// `skc_dport` (network order) and `skc_num` (host order) share `skc_portpair`:
    /// both ports in one read where they are adjacent.
    pub skc_dport: KernelField,
    pub skc_num: KernelField,
    pub skc_rcv_saddr: KernelField,
    pub skc_daddr: KernelField,
    pub skc_v6_rcv_saddr: KernelField,
    pub skc_v6_daddr: KernelField,
    /// `sock.__sk_common.skc_net.net`: the `struct net *`.
    pub skc_net: KernelField,
    pub sk_protocol: KernelField,
    /// The keepalive timer (`timer_list`) inside the socket: `sock.sk_timer`, or
    /// `inet_connection_sock.icsk_keepalive_timer` where the kernel has it.
    pub keepalive_timer: KernelField,
    pub icsk_probes_out: KernelField,
    pub keepalive_time: KernelField,
    pub keepalive_intvl: KernelField,
    pub keepalive_probes: KernelField,
    pub net_keepalive_time: KernelField,
    pub net_keepalive_intvl: KernelField,
    pub net_keepalive_probes: KernelField,
    /// `sk_buff.cb` + `tcp_skb_cb.tcp_flags`: a segment's TCP flags.
    pub skb_tcp_flags: KernelField,
    /// `sk_buff.cb` + `tcp_skb_cb.seq`/`end_seq`: the sequence space a segment takes.
    pub skb_seq: KernelField,
    pub skb_end_seq: KernelField,
    pub bytes_acked: KernelField,
    pub bytes_received: KernelField,
    pub total_retrans: KernelField,
    pub srtt_us: KernelField,
    pub snd_una: KernelField,
    pub write_seq: KernelField,
    /// `sock.sk_flags`: its `SOCK_DONE` bit is set when the peer's FIN arrived.
    pub sk_flags: KernelField,
    /// `net.ns.inum`: the network namespace's inode number.
    pub net_inum: KernelField,
    /// `timer_list.function`: the keepalive timer's callback, for the timer tracepoints.
    pub timer_function: KernelField,
    /// `1 << SOCK_DONE` (from BTF's `enum sock_flags`), 0 when unknown.
    pub sock_done_mask: u64,
}

/// What the timer tracepoints compare a timer's callback with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerLayout {
    /// Address of `tcp_keepalive_timer` (from `/proc/kallsyms`).
    pub keepalive_timer_fn: u64,
}

/// Names of the globals the daemon sets before load.
pub mod globals {
    pub const SEND_RESET: &str = "SEND_RESET_LAYOUT";
    pub const RECEIVE_RESET: &str = "RECEIVE_RESET_LAYOUT";
    pub const RETRANSMIT_SKB: &str = "RETRANSMIT_SKB_LAYOUT";
    pub const RETRANSMIT_SYNACK: &str = "RETRANSMIT_SYNACK_LAYOUT";
    pub const TIMER: &str = "TIMER_LAYOUT";
    pub const KERNEL: &str = "KERNEL_LAYOUT";
    pub const PORT_FILTER: &str = "PORT_FILTER";
    pub const RING: &str = "RING_CONFIG";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::TracepointLayout {}
    unsafe impl aya::Pod for super::KernelLayout {}
    unsafe impl aya::Pod for super::TimerLayout {}
    unsafe impl aya::Pod for super::PortFilter {}
    unsafe impl aya::Pod for super::RingConfig {}
    unsafe impl aya::Pod for super::EmitCounts {}
}
