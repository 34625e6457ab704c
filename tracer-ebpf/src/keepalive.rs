//! The keepalive timer: `tcp_keepalive_timer` runs, and either sends a probe (the
//! socket's `icsk_probes_out` goes up by one), kills the connection because its probes
//! went unanswered (the socket enters CLOSE), or finds the connection was not idle long
//! enough and does nothing. A probe answered resets `icsk_probes_out` to 0, so the next
//! probe is number 1 again.
//!
//! The socket is compared before and after the callback, by whichever pair of hooks the
//! kernel allows: fentry/fexit or kprobe/kretprobe on `tcp_keepalive_timer`, or the
//! `timer:timer_expire_entry`/`timer_expire_exit` tracepoints filtered on the
//! callback's address. All three share [`begin`] and [`end`], so their events are the
//! same.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::PerCpuArray,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use tracer_common::{EventKind, Keepalive, TCP_CLOSE, TimerLayout};

use crate::{
    filter::is_traced_connection,
    kernel::{self, keepalive_settings, read_uint, sock_endpoints, sock_state},
    output::emit,
};

#[unsafe(no_mangle)]
static TIMER_LAYOUT: TimerLayout = TimerLayout {
    entry_timer: 0,
    entry_function: 0,
    exit_timer: 0,
    _pad: 0,
    keepalive_timer_fn: 0,
};

/// The socket as it was when the callback began. Timer callbacks do not nest on a CPU,
/// so one slot per CPU is enough. Explicit padding: older verifiers (5.10) refuse
/// programs that copy uninitialised stack bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    /// The `timer_list` being run, 0 when the slot is free.
    timer: u64,
    sock: u64,
    probes_out: u8,
    state: u8,
    _pad: [u8; 6],
    /// The event to send, but for its probe number.
    event: Keepalive,
}

#[map(name = "KEEPALIVE_PENDING")]
static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn timer_layout() -> TimerLayout {
    // SAFETY: a global the loader wrote before load.
    unsafe { core::ptr::read_volatile(&TIMER_LAYOUT) }
}

/// `tcp_keepalive_timer(timer)` is starting.
#[inline(always)]
fn begin(timer: u64) {
    let sock = timer - u64::from(kernel::field!(keepalive_timer).offset);
    let Some(endpoints) = sock_endpoints(sock) else {
        return;
    };
    if !is_traced_connection(&endpoints) {
        return;
    }
    let (Some(probes_out), Some(state)) = (
        read_uint(sock, kernel::field!(icsk_probes_out)),
        sock_state(sock),
    ) else {
        return;
    };
    if let Some(slot) = PENDING.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; no other program runs on this CPU meanwhile.
        unsafe {
            *slot = Pending {
                timer,
                sock,
                probes_out: probes_out as u8,
                state,
                _pad: [0; 6],
                event: Keepalive {
                    endpoints,
                    settings: keepalive_settings(sock),
                    probe: 0,
                    _pad: [0; 7],
                },
            }
        };
    }
}

/// The callback of `timer` (or, from a kretprobe that cannot see it, of whatever
/// [`begin`] recorded) has returned.
#[inline(always)]
fn end(timer: Option<u64>) {
    let Some(slot) = PENDING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, read in place rather than copied to the small stack.
    let pending = unsafe { &mut *slot };
    if pending.timer == 0 || timer.is_some_and(|timer| timer != pending.timer) {
        return;
    }
    pending.timer = 0;
    // The socket stays allocated: the timer holds a reference until after this point.
    let probes_out = read_uint(pending.sock, kernel::field!(icsk_probes_out)).unwrap_or(0) as u8;
    let state = sock_state(pending.sock).unwrap_or(pending.state);
    let (kind, probe) = if pending.state != TCP_CLOSE && state == TCP_CLOSE {
        (EventKind::KeepaliveTimeout, pending.probes_out)
    } else if probes_out > pending.probes_out {
        (EventKind::KeepaliveProbe, probes_out)
    } else {
        return;
    };
    pending.event.probe = probe;
    emit(kind, pending.sock, pending.event);
}

#[tracepoint]
pub fn timer_expire_entry(ctx: TracePointContext) -> u32 {
    let layout = timer_layout();
    // SAFETY (both reads): offsets from this kernel's tracepoint format.
    let function = unsafe { ctx.read_at::<u64>(usize::from(layout.entry_function)) };
    if function == Ok(layout.keepalive_timer_fn)
        && let Ok(timer) = unsafe { ctx.read_at::<u64>(usize::from(layout.entry_timer)) }
    {
        begin(timer);
    }
    0
}

#[tracepoint]
pub fn timer_expire_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from this kernel's tracepoint format.
    if let Ok(timer) = unsafe { ctx.read_at::<u64>(usize::from(timer_layout().exit_timer)) } {
        end(Some(timer));
    }
    0
}

#[kprobe]
pub fn tcp_keepalive_timer_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(timer) = ctx.arg::<u64>(0) {
        begin(timer);
    }
    0
}

#[kretprobe]
pub fn tcp_keepalive_timer_kretprobe(_ctx: RetProbeContext) -> u32 {
    end(None);
    0
}

#[fentry(function = "tcp_keepalive_timer")]
pub fn tcp_keepalive_timer_fentry(ctx: FEntryContext) -> u32 {
    begin(ctx.arg::<u64>(0));
    0
}

#[fexit(function = "tcp_keepalive_timer")]
pub fn tcp_keepalive_timer_fexit(ctx: FExitContext) -> u32 {
    end(Some(ctx.arg::<u64>(0)));
    0
}
