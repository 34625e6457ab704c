//! What the programs must know about the running kernel, found by the daemon at start-up
//! and set as globals before load: tracepoint record offsets (from tracefs), kernel
//! struct field offsets (from BTF) and the keepalive callback's address (from kallsyms).
//! Nothing is compiled in, because all three differ between kernels.

/// A layout offset for a field the running kernel does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// `EndpointLayout::style`: `sport`, `dport`, `family`, `saddr[4]`, `daddr[4]`,
/// `saddr_v6[16]`, `daddr_v6[16]` fields, ports in host order.
pub const ENDPOINTS_SPLIT: u16 = 0;
/// `saddr`/`daddr` each a `struct sockaddr_in6`-sized copy of the address (6.8+
/// `tcp_send_reset`): family, port in network order, then the IPv4 or IPv6 address.
pub const ENDPOINTS_SOCKADDR: u16 = 1;
/// `sizeof(struct sockaddr_in6)`: the size of each address in an [`ENDPOINTS_SOCKADDR`]
/// record, whichever the family.
pub const SOCKADDR_IN6_BYTES: usize = 28;

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

// SAFETY: plain `#[repr(C)]` data with explicit padding, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TracepointLayout {}

/// A kernel struct field the programs read: byte offset and size (1, 2, 4 or 8 for
/// integers), resolved from BTF. `size == 0` means absent on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelField {
    pub offset: u32,
    pub size: u32,
}

/// Bytes the programs read at once from the head of `sock_common`
/// (`KernelLayout::sock_head`), three whole words. Its IPv4 addresses, ports, family and
/// state take its first 19 bytes on every kernel so far; where they span more than this,
/// `sock_head` is absent and the programs read each field alone.
pub const SOCK_HEAD: usize = 24;

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
    /// `tcp_sock.segs_out`: segments sent, a keepalive probe among them. A probe answered
    /// before its timer callback has returned resets `icsk_probes_out` already.
    pub segs_out: KernelField,
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
    /// `sk_buff.head`, `network_header`, `transport_header`: where a received segment's
    /// IP and TCP headers are, for a reset a listener sends (its socket has no peer; the
    /// segment it answers has).
    pub skb_head: KernelField,
    pub skb_network_header: KernelField,
    pub skb_transport_header: KernelField,
    pub bytes_acked: KernelField,
    pub bytes_received: KernelField,
    pub total_retrans: KernelField,
    pub srtt_us: KernelField,
    pub snd_una: KernelField,
    pub write_seq: KernelField,
    /// `tcp_sock.snd_nxt`: how far the socket's data has gone on the wire.
    pub snd_nxt: KernelField,
    /// `tcp_sock.rcv_nxt`: how far the peer's data has arrived.
    pub rcv_nxt: KernelField,
    /// `tcp_sock.first_tx_mstamp`: when the current flight's first segment left
    /// (monotonic clock, microseconds).
    pub first_tx_mstamp: KernelField,
    /// `sock.sk_err`: the pending error a closing socket leaves its application.
    pub sk_err: KernelField,
    /// `sock.sk_flags`: its `SOCK_DONE` bit is set when the peer's FIN arrived.
    pub sk_flags: KernelField,
    /// `inet_timewait_sock.tw_substate`: `FIN_WAIT2` until the peer's FIN, then
    /// `TIME_WAIT` (the socket's own state is always `TIME_WAIT`).
    pub tw_substate: KernelField,
    /// `net.ns.inum`: the network namespace's inode number.
    pub net_inum: KernelField,
    /// `timer_list.function`: the keepalive timer's callback, for the timer tracepoints.
    pub timer_function: KernelField,
    /// `1 << SOCK_DONE` (from BTF's `enum sock_flags`), 0 when unknown.
    pub sock_done_mask: u64,
    /// `sock.sk_cgrp_data.cgroup` (5.15 on), or before it `sk_cgrp_data.val`, which
    /// holds net_cls/net_prio data instead of the pointer when a bit of
    /// [`Self::sk_cgroup_data_bits`] is set; absent without cgroups.
    pub sk_cgroup: KernelField,
    pub sk_cgroup_data_bits: u64,
    /// `cgroup.kn` and `kernfs_node.id`: a cgroup's id, the inode of its directory;
    /// `kernfs_node.parent`, its parent's node.
    pub cgroup_kn: KernelField,
    pub kernfs_node_id: KernelField,
    pub kernfs_node_parent: KernelField,
}

// SAFETY: plain `#[repr(C)]` data with explicit padding, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelLayout {}

/// What the timer tracepoints compare a timer's callback with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerLayout {
    /// Address of `tcp_keepalive_timer` (from `/proc/kallsyms`).
    pub keepalive_timer_fn: u64,
}

// SAFETY: plain `#[repr(C)]` data, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TimerLayout {}
