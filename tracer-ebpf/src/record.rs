//! Reading tracepoint records (the reset and retransmit tracepoints) at the offsets the
//! daemon found in tracefs.

use aya_ebpf::programs::TracePointContext;
use tracer_common::{
    AF_INET, AF_INET6, ENDPOINTS_SOCKADDR, EndpointLayout, Endpoints, FIELD_ABSENT,
    SOCKADDR_IN6_BYTES, TracepointLayout,
};

/// Reads a global layout the loader wrote before load.
#[inline(always)]
pub fn layout(global: &'static TracepointLayout) -> TracepointLayout {
    // SAFETY: volatile so the compiler does not fold the placeholder values.
    unsafe { core::ptr::read_volatile(global) }
}

/// A field of the record; `None` when the tracepoint lacks it or it cannot be read.
#[inline(always)]
pub fn field<T>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == FIELD_ABSENT {
        return None;
    }
    // SAFETY: the offset comes from this kernel's tracepoint format; read_at goes through
    // bpf_probe_read_kernel.
    unsafe { ctx.read_at::<T>(usize::from(offset)).ok() }
}

/// IPv4 as an IPv6 v4-mapped address (`::ffff:a.b.c.d`), as the kernel stores IPv4
/// connections in the `*_v6` fields.
#[inline(always)]
fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..10].iter().all(|&b| b == 0) && addr[10] == 0xff && addr[11] == 0xff
}

/// The connection's (local, remote) ports as the record gives them: read before the
/// rest, so a connection on another port costs two small reads.
#[inline(always)]
pub fn ports(ctx: &TracePointContext, layout: &EndpointLayout) -> Option<(u16, u16)> {
    if layout.style == ENDPOINTS_SOCKADDR {
        // `sockaddr_in`/`sockaddr_in6`: the port, network order, at byte 2.
        let local: u16 = field(ctx, layout.saddr.wrapping_add(2))?;
        let remote: u16 = field(ctx, layout.daddr.wrapping_add(2))?;
        return Some((u16::from_be(local), u16::from_be(remote)));
    }
    Some((field(ctx, layout.sport)?, field(ctx, layout.dport)?))
}

/// The connection's endpoints as the record gives them.
#[inline(always)]
pub fn endpoints(ctx: &TracePointContext, layout: &EndpointLayout) -> Option<Endpoints> {
    if layout.style == ENDPOINTS_SOCKADDR {
        return sockaddr_endpoints(ctx, layout);
    }
    let local_v6: [u8; 16] = field(ctx, layout.saddr_v6)?;
    let remote_v6: [u8; 16] = field(ctx, layout.daddr_v6)?;
    // Older kernels' records have no family: their v6 fields hold IPv4 v4-mapped.
    let family = field::<u16>(ctx, layout.family).unwrap_or(if is_v4_mapped(&local_v6) {
        AF_INET
    } else {
        AF_INET6
    });
    let mut endpoints = Endpoints {
        family,
        local_port: field(ctx, layout.sport)?,
        remote_port: field(ctx, layout.dport)?,
        ..Endpoints::default()
    };
    match family {
        AF_INET => {
            endpoints.local_addr[..4].copy_from_slice(&field::<[u8; 4]>(ctx, layout.saddr)?);
            endpoints.remote_addr[..4].copy_from_slice(&field::<[u8; 4]>(ctx, layout.daddr)?);
        }
        AF_INET6 => {
            endpoints.local_addr = local_v6;
            endpoints.remote_addr = remote_v6;
        }
        _ => return None,
    }
    Some(endpoints)
}

/// `struct sockaddr_in`/`sockaddr_in6` copies: family (host order) at 0, port (network
/// order) at 2, IPv4 address at 4 or IPv6 address at 8.
#[inline(always)]
fn sockaddr_endpoints(ctx: &TracePointContext, layout: &EndpointLayout) -> Option<Endpoints> {
    let local: [u8; SOCKADDR_IN6_BYTES] = field(ctx, layout.saddr)?;
    let remote: [u8; SOCKADDR_IN6_BYTES] = field(ctx, layout.daddr)?;
    let family = u16::from_ne_bytes([local[0], local[1]]);
    let mut endpoints = Endpoints {
        family,
        local_port: u16::from_be_bytes([local[2], local[3]]),
        remote_port: u16::from_be_bytes([remote[2], remote[3]]),
        ..Endpoints::default()
    };
    match family {
        AF_INET => {
            endpoints.local_addr[..4].copy_from_slice(&local[4..8]);
            endpoints.remote_addr[..4].copy_from_slice(&remote[4..8]);
        }
        AF_INET6 => {
            endpoints.local_addr.copy_from_slice(&local[8..24]);
            endpoints.remote_addr.copy_from_slice(&remote[8..24]);
        }
        _ => return None,
    }
    Some(endpoints)
}
