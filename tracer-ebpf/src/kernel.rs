//! Reading kernel structs (socket, network namespace, skb) at the offsets the daemon
//! resolved from the running kernel's BTF: nothing here knows a struct layout.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};
use tracer_common::{AF_INET, AF_INET6, Endpoints, KeepaliveSettings, KernelField, KernelLayout};

/// Set by the daemon before load.
#[unsafe(no_mangle)]
pub(crate) static KERNEL_LAYOUT: KernelLayout = KernelLayout {
    skc_family: ABSENT,
    skc_state: ABSENT,
    inet_sport: ABSENT,
    skc_dport: ABSENT,
    skc_rcv_saddr: ABSENT,
    skc_daddr: ABSENT,
    skc_v6_rcv_saddr: ABSENT,
    skc_v6_daddr: ABSENT,
    skc_net: ABSENT,
    sk_protocol: ABSENT,
    keepalive_timer: ABSENT,
    icsk_probes_out: ABSENT,
    keepalive_time: ABSENT,
    keepalive_intvl: ABSENT,
    keepalive_probes: ABSENT,
    net_keepalive_time: ABSENT,
    net_keepalive_intvl: ABSENT,
    net_keepalive_probes: ABSENT,
    skb_tcp_flags: ABSENT,
    bytes_acked: ABSENT,
    bytes_received: ABSENT,
    total_retrans: ABSENT,
    srtt_us: ABSENT,
    net_inum: ABSENT,
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

#[inline(always)]
fn read_bytes<const N: usize>(base: u64, field: KernelField) -> Option<[u8; N]> {
    let at = (base + u64::from(field.offset)) as *const [u8; N];
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(at).ok() }
}

/// The socket's `TCP_*` state.
#[inline(always)]
pub fn sock_state(sk: u64) -> Option<u8> {
    read_uint(sk, field!(skc_state)).map(|state| state as u8)
}

/// The socket's addresses and ports.
#[inline(always)]
pub fn sock_endpoints(sk: u64) -> Option<Endpoints> {
    let family = read_uint(sk, field!(skc_family))? as u16;
    let mut endpoints = Endpoints {
        family,
        local_port: u16::from_be(read_uint(sk, field!(inet_sport))? as u16),
        remote_port: u16::from_be(read_uint(sk, field!(skc_dport))? as u16),
        ..Endpoints::default()
    };
    match family {
        AF_INET => {
            endpoints.local_addr[..4].copy_from_slice(&read_bytes::<4>(sk, field!(skc_rcv_saddr))?);
            endpoints.remote_addr[..4].copy_from_slice(&read_bytes::<4>(sk, field!(skc_daddr))?);
        }
        AF_INET6 => {
            endpoints.local_addr = read_bytes(sk, field!(skc_v6_rcv_saddr))?;
            endpoints.remote_addr = read_bytes(sk, field!(skc_v6_daddr))?;
        }
        _ => return None,
    }
    Some(endpoints)
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
