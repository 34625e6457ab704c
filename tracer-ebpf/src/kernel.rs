//! Reading kernel structs (socket, network namespace, skb) at the offsets the daemon
//! resolved from the running kernel's BTF: nothing here knows a struct layout.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};
use tracer_common::{
    AF_INET, AF_INET6, Endpoints, IPPROTO_TCP, KeepaliveSettings, KernelField, KernelLayout,
    SOCK_HEAD,
};

/// Set by the daemon before load.
#[unsafe(no_mangle)]
pub(crate) static KERNEL_LAYOUT: KernelLayout = KernelLayout {
    sock_head: ABSENT,
    skc_family: ABSENT,
    skc_state: ABSENT,
    inet_sport: ABSENT,
    skc_dport: ABSENT,
    skc_num: ABSENT,
    skc_rcv_saddr: ABSENT,
    skc_daddr: ABSENT,
    skc_v6_rcv_saddr: ABSENT,
    skc_v6_daddr: ABSENT,
    skc_net: ABSENT,
    sk_protocol: ABSENT,
    keepalive_timer: ABSENT,
    icsk_probes_out: ABSENT,
    segs_out: ABSENT,
    keepalive_time: ABSENT,
    keepalive_intvl: ABSENT,
    keepalive_probes: ABSENT,
    net_keepalive_time: ABSENT,
    net_keepalive_intvl: ABSENT,
    net_keepalive_probes: ABSENT,
    skb_tcp_flags: ABSENT,
    skb_seq: ABSENT,
    skb_head: ABSENT,
    skb_network_header: ABSENT,
    skb_transport_header: ABSENT,
    skb_end_seq: ABSENT,
    bytes_acked: ABSENT,
    bytes_received: ABSENT,
    total_retrans: ABSENT,
    srtt_us: ABSENT,
    snd_una: ABSENT,
    write_seq: ABSENT,
    snd_nxt: ABSENT,
    rcv_nxt: ABSENT,
    first_tx_mstamp: ABSENT,
    sk_err: ABSENT,
    sk_flags: ABSENT,
    tw_substate: ABSENT,
    net_inum: ABSENT,
    timer_function: ABSENT,
    sock_done_mask: 0,
    sk_cgroup: ABSENT,
    sk_cgroup_data_bits: 0,
    cgroup_kn: ABSENT,
    kernfs_node_id: ABSENT,
    kernfs_node_parent: ABSENT,
};

const ABSENT: KernelField = KernelField { offset: 0, size: 0 };

/// One field of the kernel layout. Read field by field, not as a whole: a copy of the
/// whole layout would take a large share of the 512-byte BPF stack.
macro_rules! field {
    ($name:ident) => {
        // SAFETY: a global the loader wrote before load; volatile so the compiler does
        // not fold the placeholder values.
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::KERNEL_LAYOUT.$name) }
    };
}
pub(crate) use field;

/// An unsigned integer field of the struct at `base`; `None` when absent or unreadable.
///
/// One read of `size` bytes into the low bytes of a zeroed u64 (BPF is little-endian
/// here), rather than a typed read per size: LLVM merged those branches into code that
/// used a register the failed-read path never set, which the verifier rejects.
#[inline(always)]
pub fn read_uint(base: u64, field: KernelField) -> Option<u64> {
    let size = field.size & 0xf;
    if size == 0 || size > 8 {
        return None;
    }
    let mut value: u64 = 0;
    let at = (base + u64::from(field.offset)) as *const c_void;
    // SAFETY: `value` has room for `size` <= 8 bytes; the helper checks `at`.
    let status = unsafe { generated::bpf_probe_read_kernel((&raw mut value).cast(), size, at) };
    (status == 0).then_some(value)
}

/// The id of a full socket's cgroup (v2): the cgroup its `sk_cgrp_data` holds, that
/// cgroup's kernfs node's id. `None` where the kernel keeps net_cls/net_prio data there
/// instead (before 5.15, on a host using those v1 controllers) or has no cgroups.
#[inline(always)]
pub fn sock_cgroup_id(sk: u64) -> Option<u64> {
    cgroup_node_id(sock_cgroup_node(sk)?)
}

/// The kernfs node of a full socket's cgroup (see [`sock_cgroup_id`]).
#[inline(always)]
pub fn sock_cgroup_node(sk: u64) -> Option<u64> {
    let cgroup = read_uint(sk, field!(sk_cgroup))?;
    if cgroup == 0 || cgroup & field!(sk_cgroup_data_bits) != 0 {
        return None;
    }
    read_uint(cgroup, field!(cgroup_kn)).filter(|&kn| kn != 0)
}

/// A cgroup's id, from its kernfs node.
#[inline(always)]
pub fn cgroup_node_id(kn: u64) -> Option<u64> {
    read_uint(kn, field!(kernfs_node_id)).filter(|&id| id != 0)
}

/// The kernfs node of a cgroup's parent, `None` at the root.
#[inline(always)]
pub fn cgroup_node_parent(kn: u64) -> Option<u64> {
    read_uint(kn, field!(kernfs_node_parent)).filter(|&parent| parent != 0)
}

#[inline(always)]
fn read_bytes<const N: usize>(base: u64, field: KernelField) -> Option<[u8; N]> {
    let at = (base + u64::from(field.offset)) as *const [u8; N];
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(at).ok() }
}

/// The ends of the connection a received segment belongs to, from this host's side:
/// local is its destination, remote its source. Read from its IP and TCP headers, whose
/// layouts are the wire's (RFC 791, 8200, 9293), not the kernel's.
#[inline(always)]
pub fn segment_endpoints(skb: u64) -> Option<Endpoints> {
    let head = read_uint(skb, field!(skb_head))?;
    let network = head + read_uint(skb, field!(skb_network_header))?;
    let transport = head + read_uint(skb, field!(skb_transport_header))?;
    let at = |offset: u64| KernelField {
        offset: offset as u32,
        size: 0,
    };
    // SAFETY: bpf_probe_read_kernel checks the address.
    let ports: [u8; 4] = unsafe { bpf_probe_read_kernel(transport as *const [u8; 4]).ok()? };
    let version: [u8; 1] = read_bytes(network, at(0))?;
    let mut endpoints = Endpoints {
        family: AF_INET,
        remote_port: u16::from_be_bytes([ports[0], ports[1]]),
        local_port: u16::from_be_bytes([ports[2], ports[3]]),
        ..Endpoints::default()
    };
    match version[0] >> 4 {
        4 => {
            let addrs: [u8; 8] = read_bytes(network, at(12))?;
            endpoints.remote_addr[..4].copy_from_slice(&addrs[..4]);
            endpoints.local_addr[..4].copy_from_slice(&addrs[4..]);
        }
        6 => {
            endpoints.family = AF_INET6;
            endpoints.remote_addr = read_bytes(network, at(8))?;
            endpoints.local_addr = read_bytes(network, at(24))?;
        }
        _ => return None,
    }
    Some(endpoints)
}

const HEAD_WORDS: usize = SOCK_HEAD / 8;

/// A socket, with the head of its `sock_common` read in one go: the ports the selector
/// tests, the family and the IPv4 addresses come from there instead of a read each.
pub struct Sock {
    pub sk: u64,
    /// The head as little-endian words. A field is shifted out of them, never indexed
    /// at a runtime offset: 5.10's verifier refuses variable-offset stack reads and
    /// 6.12's refused the bounds LLVM left on them.
    head: [u64; HEAD_WORDS],
    /// Fields at `field.offset - head_offset` are in the head (when `head_len` > 0).
    head_offset: u32,
    head_len: u32,
}

impl Sock {
    #[inline(always)]
    pub fn read(sk: u64) -> Self {
        let field = field!(sock_head);
        let mut sock = Self {
            sk,
            head: [0; HEAD_WORDS],
            head_offset: field.offset,
            head_len: 0,
        };
        if field.size != 0 {
            let at = (sk + u64::from(field.offset)) as *const c_void;
            // SAFETY: `sock.head` has room for SOCK_HEAD bytes; the helper checks `at`.
            let status = unsafe {
                generated::bpf_probe_read_kernel(
                    sock.head.as_mut_ptr().cast(),
                    SOCK_HEAD as u32,
                    at,
                )
            };
            if status == 0 {
                sock.head_len = field.size;
            }
        }
        sock
    }

    /// The `N` (at most 4) bytes of `field`, whose size the daemon checked is `N`, as the
    /// low bytes of a little-endian integer: from the head when they are in it, else read.
    #[inline(always)]
    fn uint<const N: u32>(&self, field: KernelField) -> Option<u32> {
        let at = field.offset.wrapping_sub(self.head_offset);
        if at >= SOCK_HEAD as u32 || at + N > self.head_len {
            return read_uint(self.sk, field).map(|value| value as u32);
        }
        let [w0, w1, w2] = self.head;
        let (low, high) = match at / 8 {
            0 => (w0, w1),
            1 => (w1, w2),
            _ => (w2, 0),
        };
        let shift = (at % 8) * 8;
        let value = match shift {
            0 => low,
            _ => (low >> shift) | (high << (64 - shift)),
        };
        Some((value & ((1u64 << (N * 8)) - 1)) as u32)
    }

    /// The socket's `TCP_*` state.
    #[inline(always)]
    pub fn state(&self) -> Option<u8> {
        self.uint::<1>(field!(skc_state)).map(|state| state as u8)
    }

    /// The (local, remote) ports, host order. A closing socket has given its local port
    /// back (`skc_num` 0) before it enters CLOSE; `inet_sport` still has it.
    #[inline(always)]
    pub fn ports(&self) -> Option<(u16, u16)> {
        let remote = u16::from_be(self.uint::<2>(field!(skc_dport))? as u16);
        let local = match self.uint::<2>(field!(skc_num))? as u16 {
            0 => u16::from_be(read_uint(self.sk, field!(inet_sport))? as u16),
            local => local,
        };
        Some((local, remote))
    }

    /// The socket's ends, with its `ports` already known.
    #[inline(always)]
    pub fn endpoints(&self, (local_port, remote_port): (u16, u16)) -> Option<Endpoints> {
        let family = self.uint::<2>(field!(skc_family))? as u16;
        let mut endpoints = Endpoints {
            family,
            local_port,
            remote_port,
            ..Endpoints::default()
        };
        match family {
            AF_INET => {
                let local = self.uint::<4>(field!(skc_rcv_saddr))?;
                let remote = self.uint::<4>(field!(skc_daddr))?;
                endpoints.local_addr[..4].copy_from_slice(&local.to_le_bytes());
                endpoints.remote_addr[..4].copy_from_slice(&remote.to_le_bytes());
            }
            AF_INET6 => {
                endpoints.local_addr = read_bytes(self.sk, field!(skc_v6_rcv_saddr))?;
                endpoints.remote_addr = read_bytes(self.sk, field!(skc_v6_daddr))?;
            }
            _ => return None,
        }
        Some(endpoints)
    }
}

/// Whether the socket is TCP: both hooks that fire for it serve every inet protocol.
/// Unknown (`sk_protocol` a bitfield, before 5.6) counts as TCP.
#[inline(always)]
pub fn is_tcp(sk: u64) -> bool {
    read_uint(sk, field!(sk_protocol)).is_none_or(|protocol| protocol == u64::from(IPPROTO_TCP))
}

/// The socket's keepalive settings: its own where set (non-zero), else its network
/// namespace's sysctls, as the kernel's `keepalive_time_when()` and friends decide.
#[inline(always)]
pub fn keepalive_settings(sk: u64) -> KeepaliveSettings {
    let net = read_uint(sk, field!(skc_net)).unwrap_or(0);
    let own_or_default = |own: KernelField, default: KernelField| match read_uint(sk, own) {
        Some(value) if value != 0 => value,
        _ => read_uint(net, default).unwrap_or(0),
    };
    KeepaliveSettings {
        time_jiffies: own_or_default(field!(keepalive_time), field!(net_keepalive_time)) as u32,
        interval_jiffies: own_or_default(field!(keepalive_intvl), field!(net_keepalive_intvl))
            as u32,
        probes: own_or_default(field!(keepalive_probes), field!(net_keepalive_probes)) as u8,
        _pad: [0; 7],
    }
}

/// The socket's network namespace inode, 0 when unreadable.
#[inline(always)]
pub fn netns(sk: u64) -> u32 {
    read_uint(sk, field!(skc_net))
        .and_then(|net| read_uint(net, field!(net_inum)))
        .unwrap_or(0) as u32
}
