//! The keepalive timer: `tcp_keepalive_timer` runs, and either sends a probe (the
//! socket's `icsk_probes_out` goes up by one), kills the connection because its probes
//! went unanswered (the socket enters CLOSE), or finds the connection was not idle long
//! enough and does nothing. A probe answered resets `icsk_probes_out` to 0, so the next
//! probe is number 1 again. On loopback (and on any fast path) the answer can arrive on
//! another CPU between the callback's unlocking the socket and the hook after it, and
//! reset `icsk_probes_out` before it is compared: a probe is therefore also one more
//! segment sent (`segs_out`) by a callback that left the socket open.
//!
//! The socket is compared before and after the callback, by whichever pair of hooks the
//! kernel allows: fentry/fexit or kprobe/kretprobe on `tcp_keepalive_timer`, or the
//! `timer:timer_expire_entry`/`timer_expire_exit` tracepoints filtered on the
//! callback's address. All three share [`begin`] and [`end`], so their events are the
//! same. The tracepoints fire for every timer on the host, so they are raw (no record is
//! formatted) and compare the callback before anything else.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, map, raw_tracepoint},
    maps::PerCpuArray,
    programs::{FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext},
};
use tracer_common::{EventKind, Keepalive, TCP_CLOSE, TimerLayout};

use crate::{
    kernel::{self, Sock, keepalive_settings, read_uint},
    output::{EventSocket, emit},
    selector::{Candidate, select},
};

#[unsafe(no_mangle)]
static TIMER_LAYOUT: TimerLayout = TimerLayout {
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
    _pad: [u8; 2],
    segs_out: u32,
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
    let head = Sock::read(sock);
    let Some(endpoints) = select(Candidate::Socket(&head)).and_then(|ports| head.endpoints(ports))
    else {
        return;
    };
    let (Some(probes_out), Some(state)) = (
        read_uint(sock, kernel::field!(icsk_probes_out)),
        head.state(),
    ) else {
        return;
    };
    let segs_out = read_uint(sock, kernel::field!(segs_out)).unwrap_or(0) as u32;
    if let Some(slot) = PENDING.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; no other program runs on this CPU meanwhile.
        unsafe {
            *slot = Pending {
                timer,
                sock,
                probes_out: probes_out as u8,
                state,
                _pad: [0; 2],
                segs_out,
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
    let segs_out = read_uint(pending.sock, kernel::field!(segs_out)).unwrap_or(0) as u32;
    let state = Sock::read(pending.sock).state().unwrap_or(pending.state);
    let (kind, probe) = if pending.state != TCP_CLOSE && state == TCP_CLOSE {
        (EventKind::KeepaliveTimeout, pending.probes_out)
    } else if probes_out > pending.probes_out || segs_out != pending.segs_out {
        // Counted from before: the answer may have reset the count already.
        (
            EventKind::KeepaliveProbe,
            pending.probes_out.saturating_add(1),
        )
    } else {
        return;
    };
    pending.event.probe = probe;
    emit(kind, EventSocket::Full(pending.sock), pending.event);
}

/// `TP_PROTO(struct timer_list *timer, unsigned long baseclk)`.
#[raw_tracepoint(tracepoint = "timer_expire_entry")]
pub fn timer_expire_entry(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    let function = read_uint(timer, kernel::field!(timer_function));
    if function.is_some_and(|function| function == timer_layout().keepalive_timer_fn) {
        begin(timer);
    }
    0
}

/// `TP_PROTO(struct timer_list *timer)`.
#[raw_tracepoint(tracepoint = "timer_expire_exit")]
pub fn timer_expire_exit(ctx: RawTracePointContext) -> i32 {
    end(Some(ctx.arg(0)));
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
