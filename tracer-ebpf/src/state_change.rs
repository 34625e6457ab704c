//! `sock:inet_sock_set_state`: every TCP state transition.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use aya_log_ebpf::warn;
use tracer_common::{
    AF_INET, AF_INET6, EventKind, FIELD_ABSENT, IPPROTO_TCP, SetStateLayout, StateChange,
};

use crate::{filter::is_traced_connection, output::emit};

/// Field offsets of this kernel's tracepoint record, set by the daemon before load.
#[unsafe(no_mangle)]
static SET_STATE_LAYOUT: SetStateLayout = SetStateLayout {
    skaddr: 0,
    oldstate: 0,
    newstate: 0,
    sport: 0,
    dport: 0,
    family: 0,
    protocol: FIELD_ABSENT,
    saddr: 0,
    daddr: 0,
    saddr_v6: 0,
    daddr_v6: 0,
};

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if try_inet_sock_set_state(&ctx).is_err() {
        warn!(
            &ctx,
            "inet_sock_set_state: could not read the tracepoint record"
        );
    }
    0
}

fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: a global the loader wrote before load; volatile so the compiler does not
    // fold the placeholder values.
    let layout = unsafe { core::ptr::read_volatile(&SET_STATE_LAYOUT) };
    let field = |offset: u16| usize::from(offset);
    // SAFETY (all reads): offsets come from this kernel's tracepoint format; read_at
    // goes through bpf_probe_read_kernel.
    unsafe {
        if layout.protocol != FIELD_ABSENT
            && ctx.read_at::<u16>(field(layout.protocol))? != IPPROTO_TCP
        {
            return Ok(());
        }
        let local_port = ctx.read_at::<u16>(field(layout.sport))?;
        let remote_port = ctx.read_at::<u16>(field(layout.dport))?;
        if !is_traced_connection(local_port, remote_port) {
            return Ok(());
        }
        let family = ctx.read_at::<u16>(field(layout.family))?;
        let mut local_addr = [0u8; 16];
        let mut remote_addr = [0u8; 16];
        match family {
            AF_INET => {
                local_addr[..4].copy_from_slice(&ctx.read_at::<[u8; 4]>(field(layout.saddr))?);
                remote_addr[..4].copy_from_slice(&ctx.read_at::<[u8; 4]>(field(layout.daddr))?);
            }
            AF_INET6 => {
                local_addr = ctx.read_at::<[u8; 16]>(field(layout.saddr_v6))?;
                remote_addr = ctx.read_at::<[u8; 16]>(field(layout.daddr_v6))?;
            }
            _ => return Ok(()),
        }
        let sock = ctx.read_at::<u64>(field(layout.skaddr))?;
        let old_state = ctx.read_at::<i32>(field(layout.oldstate))? as u8;
        let new_state = ctx.read_at::<i32>(field(layout.newstate))? as u8;
        emit(
            EventKind::StateChange,
            sock,
            StateChange {
                old_state,
                new_state,
                family,
                local_port,
                remote_port,
                local_addr,
                remote_addr,
            },
        );
    }
    Ok(())
}
