//! State changes: the `sock:inet_sock_set_state` tracepoint (raw: its arguments, the
//! socket and both states, with no record formatted), or probes on the two kernel
//! functions that fire it: `inet_sk_state_store` (what `tcp_set_state` and `listen()`
//! call) and `inet_sk_set_state` (a new child socket entering SYN_RECV). Probing
//! `tcp_set_state` itself would miss `CLOSE -> LISTEN`.
//!
//! The selector comes first: a socket on another port costs one read.

use aya_ebpf::{
    macros::{fentry, kprobe, map, raw_tracepoint},
    maps::PerCpuArray,
    programs::{FEntryContext, ProbeContext, RawTracePointContext},
};
use tracer_common::{
    CLOSE_ALL_ACKED, CLOSE_FIN_RECEIVED, Close, Endpoints, EventKind, StateChange, TCP_CLOSE,
};

use crate::{
    context::in_process_context,
    data::{take_last_data_ns, track},
    kernel::{self, Sock, is_tcp, netns, read_uint},
    output::{EventSocket, emit},
    selector::{Candidate, select},
};

/// `TCP_ESTABLISHED`, `TCP_SYN_SENT`.
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;

/// A socket entering CLOSE: its counters with the state change, in one event.
#[inline(always)]
fn report_close(sk: u64, endpoints: Endpoints, old_state: u8) {
    let counter = |field| read_uint(sk, field).unwrap_or(0);
    let mut flags = 0;
    if counter(kernel::field!(sk_flags)) & kernel::field!(sock_done_mask) != 0 {
        flags |= CLOSE_FIN_RECEIVED;
    }
    let (snd_una, write_seq) = (
        read_uint(sk, kernel::field!(snd_una)),
        read_uint(sk, kernel::field!(write_seq)),
    );
    if snd_una.is_some() && snd_una == write_seq {
        flags |= CLOSE_ALL_ACKED;
    }
    emit(
        EventKind::Close,
        EventSocket::Full(sk),
        Close {
            endpoints,
            bytes_acked: counter(kernel::field!(bytes_acked)),
            bytes_received: counter(kernel::field!(bytes_received)),
            last_data_ns: take_last_data_ns(sk),
            total_retrans: counter(kernel::field!(total_retrans)) as u32,
            srtt_us_x8: counter(kernel::field!(srtt_us)) as u32,
            netns: netns(sk),
            old_state,
            flags,
            error: counter(kernel::field!(sk_err)).min(255) as u8,
            _pad: 0,
        },
    );
}

/// `sk` (on a traced port, TCP) enters `new_state` from `old_state`.
#[inline(always)]
fn report(sk: u64, endpoints: Endpoints, old_state: u8, new_state: u8) {
    if new_state == TCP_CLOSE {
        return report_close(sk, endpoints, old_state);
    }
    // The first RTT sample and retransmits as the handshake completes: for a server, the
    // kernel's own measurement of its SYN-ACK's round trip, and SYN-ACKs sent again.
    let (srtt_us_x8, retransmits) = if new_state == TCP_ESTABLISHED {
        track(sk, old_state == TCP_SYN_SENT);
        (
            read_uint(sk, kernel::field!(srtt_us)).unwrap_or(0) as u32,
            read_uint(sk, kernel::field!(total_retrans)).unwrap_or(0) as u32,
        )
    } else {
        (0, 0)
    };
    emit(
        EventKind::StateChange,
        EventSocket::Full(sk),
        StateChange {
            endpoints,
            old_state,
            new_state,
            _pad: [0; 2],
            srtt_us_x8,
            retransmits,
            _pad2: 0,
        },
    );
}

/// What the tracepoint reports, for `sk` entering `new_state`; `old_state` is taken
/// only once the socket passed the selector.
#[inline(always)]
fn state_change(sk: u64, old_state: impl FnOnce(&Sock) -> Option<u8>, new_state: u8) {
    let sock = Sock::read(sk);
    let Some(ports) = select(Candidate::Socket(&sock)) else {
        return;
    };
    if !is_tcp(sk) {
        return;
    }
    if let (Some(endpoints), Some(old_state)) = (sock.endpoints(ports), old_state(&sock)) {
        report(sk, endpoints, old_state, new_state);
    }
}

/// `TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)`.
#[inline(always)]
fn raw_state_change(ctx: &RawTracePointContext) {
    let sk: u64 = ctx.arg(0);
    let (old_state, new_state): (u64, u64) = (ctx.arg(1), ctx.arg(2));
    state_change(sk, |_| Some(old_state as u8), new_state as u8);
}

// Two programs on the one tracepoint, attached in this order. The kernel does not run a
// program inside itself: a softirq that interrupts one on its CPU has its state changes
// skip that one (a recursion miss), and softirqs on a busy server carry hundreds of
// state changes at a time. `inet_sock_set_state` takes every state change it runs for,
// and first leaves a token naming it, one per context (process, softirq: the nested run
// has its own). `inet_sock_set_state_nested` runs after it in the same call and takes a
// state change only when the token is not that state change's, that is when
// `inet_sock_set_state` was skipped. Nothing nests inside a softirq, so at most one of the
// two is skipped for any state change, and the pair loses none.

/// The state change `inet_sock_set_state` last took in each context (0: process, 1:
/// softirq), per CPU.
#[map(name = "STATE_CHANGE_TAKEN")]
static STATE_CHANGE_TAKEN: PerCpuArray<StateChangeToken> = PerCpuArray::with_max_entries(2, 0);

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct StateChangeToken {
    sk: u64,
    old_state: u32,
    new_state: u32,
}

impl StateChangeToken {
    #[inline(always)]
    fn of(ctx: &RawTracePointContext) -> Self {
        let (old_state, new_state): (u64, u64) = (ctx.arg(1), ctx.arg(2));
        Self {
            sk: ctx.arg(0),
            old_state: old_state as u32,
            new_state: new_state as u32,
        }
    }
}

#[inline(always)]
fn context_slot() -> u32 {
    u32::from(!in_process_context())
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    if let Some(taken) = STATE_CHANGE_TAKEN.get_ptr_mut(context_slot()) {
        // SAFETY: this CPU's slot for this context; the other program only reads it.
        unsafe { *taken = StateChangeToken::of(&ctx) };
    }
    raw_state_change(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state_nested(ctx: RawTracePointContext) -> i32 {
    if STATE_CHANGE_TAKEN
        .get(context_slot())
        .is_none_or(|taken| *taken != StateChangeToken::of(&ctx))
    {
        raw_state_change(&ctx);
    }
    0
}

#[kprobe]
pub fn inet_sk_state_store_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(state)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) {
        state_change(sk, Sock::state, state as u8);
    }
    0
}

#[kprobe]
pub fn inet_sk_set_state_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(state)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) {
        state_change(sk, Sock::state, state as u8);
    }
    0
}

#[fentry(function = "inet_sk_state_store")]
pub fn inet_sk_state_store_fentry(ctx: FEntryContext) -> u32 {
    let sk = ctx.arg::<u64>(0);
    state_change(sk, Sock::state, ctx.arg::<i32>(1) as u8);
    0
}

#[fentry(function = "inet_sk_set_state")]
pub fn inet_sk_set_state_fentry(ctx: FEntryContext) -> u32 {
    let sk = ctx.arg::<u64>(0);
    state_change(sk, Sock::state, ctx.arg::<i32>(1) as u8);
    0
}
