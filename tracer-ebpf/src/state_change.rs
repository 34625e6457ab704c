//! State changes: the `sock:inet_sock_set_state` tracepoint, or probes on the two kernel
//! functions that fire it: `inet_sk_state_store` (what `tcp_set_state` and `listen()`
//! call) and `inet_sk_set_state` (a new child socket entering SYN_RECV). Probing
//! `tcp_set_state` itself would miss `CLOSE -> LISTEN`.

use aya_ebpf::{
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use tracer_common::{
    Endpoints, EventKind, IPPROTO_TCP, StateChange, Summary, TCP_CLOSE, TracepointLayout,
};

use crate::{
    data::take_last_data_ns,
    filter::is_traced_connection,
    kernel::{self, netns, read_uint, sock_endpoints, sock_state},
    output::emit,
    record,
};

/// Emits the state change, preceded by the socket's summary when it is closing.
#[inline(always)]
fn report(sk: u64, endpoints: Endpoints, old_state: u8, new_state: u8) {
    if new_state == TCP_CLOSE {
        let counter = |field| read_uint(sk, field).unwrap_or(0);
        emit(
            EventKind::Summary,
            sk,
            Summary {
                endpoints,
                bytes_acked: counter(kernel::field!(bytes_acked)),
                bytes_received: counter(kernel::field!(bytes_received)),
                last_data_ns: take_last_data_ns(sk),
                total_retrans: counter(kernel::field!(total_retrans)) as u32,
                srtt_us_x8: counter(kernel::field!(srtt_us)) as u32,
                netns: netns(sk),
                _pad: 0,
            },
        );
    }
    emit(
        EventKind::StateChange,
        sk,
        StateChange {
            endpoints,
            old_state,
            new_state,
            _pad: [0; 6],
        },
    );
}

#[unsafe(no_mangle)]
static SET_STATE_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let layout = record::layout(&SET_STATE_LAYOUT);
    if record::field::<u16>(&ctx, layout.protocol).is_some_and(|p| p != IPPROTO_TCP) {
        return 0;
    }
    let Some(endpoints) = record::endpoints(&ctx, &layout.endpoints) else {
        return 0;
    };
    if !is_traced_connection(&endpoints) {
        return 0;
    }
    let (Some(sock), Some(old_state), Some(new_state)) = (
        record::field::<u64>(&ctx, layout.skaddr),
        record::field::<i32>(&ctx, layout.oldstate),
        record::field::<i32>(&ctx, layout.newstate),
    ) else {
        return 0;
    };
    report(sock, endpoints, old_state as u8, new_state as u8);
    0
}

/// What the tracepoint would report for `sk` about to enter `new_state`.
#[inline(always)]
fn state_change(sk: u64, new_state: i32) {
    // Both functions serve every inet protocol (SCTP, MPTCP too), as the tracepoint does.
    if read_uint(sk, kernel::field!(sk_protocol)).is_some_and(|p| p != u64::from(IPPROTO_TCP)) {
        return;
    }
    let (Some(endpoints), Some(old_state)) = (sock_endpoints(sk), sock_state(sk)) else {
        return;
    };
    if is_traced_connection(&endpoints) {
        report(sk, endpoints, old_state, new_state as u8);
    }
}

#[kprobe]
pub fn inet_sk_state_store_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(state)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) {
        state_change(sk, state);
    }
    0
}

#[kprobe]
pub fn inet_sk_set_state_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(state)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) {
        state_change(sk, state);
    }
    0
}

#[fentry(function = "inet_sk_state_store")]
pub fn inet_sk_state_store_fentry(ctx: FEntryContext) -> u32 {
    state_change(ctx.arg::<u64>(0), ctx.arg::<i32>(1));
    0
}

#[fentry(function = "inet_sk_set_state")]
pub fn inet_sk_set_state_fentry(ctx: FEntryContext) -> u32 {
    state_change(ctx.arg::<u64>(0), ctx.arg::<i32>(1));
    0
}
