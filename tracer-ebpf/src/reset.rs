//! Resets: `tcp:tcp_send_reset` (this host sent an RST, with or without a socket) and
//! `tcp:tcp_receive_reset` (an RST arrived for a socket). A listener's reset has its
//! peer read from the segment it answers.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    EventKind, NO_REASON, NO_STATE, RESET_RECEIVED, RESET_SENT, Reset, TracepointLayout,
};

use crate::{
    kernel::{self, Sock},
    output::{EventSocket, emit},
    record,
    selector::{Candidate, select},
};

/// `TCP_TIME_WAIT` and `TCP_NEW_SYN_RECV` in `include/net/tcp_states.h`: the states of the
/// kernel's small sockets, which have no `sk_cgrp_data`.
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

#[unsafe(no_mangle)]
static SEND_RESET_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;
#[unsafe(no_mangle)]
static RECEIVE_RESET_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;

#[inline(always)]
fn reset(ctx: &TracePointContext, layout: &TracepointLayout, direction: u8) {
    let sock = record::field::<u64>(ctx, layout.skaddr).unwrap_or(0);
    // Resets are few: the state is read before the selector, which needs to know whether
    // the socket is a full one (a timewait or request socket, or none, has no cgroup).
    let state = match record::field::<i32>(ctx, layout.state) {
        Some(state) => state as u8,
        None if sock != 0 => Sock::read(sock).state().unwrap_or(NO_STATE),
        None => NO_STATE,
    };
    let socket = if sock == 0 || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        EventSocket::Mini(sock)
    } else {
        EventSocket::Full(sock)
    };
    if select(Candidate::Record(ctx, &layout.endpoints, socket)).is_none() {
        return;
    }
    let Some(mut endpoints) = record::endpoints(ctx, &layout.endpoints) else {
        return;
    };
    // A listener answering a segment that has no connection (a client writing to a
    // connection whose server socket is gone): the record names the listener's ends,
    // without a peer; the segment it answers names both.
    if direction == RESET_SENT
        && endpoints.remote_port == 0
        && let Some(segment) =
            record::field::<u64>(ctx, layout.skbaddr).and_then(kernel::segment_endpoints)
    {
        endpoints = segment;
    }
    emit(
        EventKind::Reset,
        socket,
        Reset {
            endpoints,
            reason: record::field::<u32>(ctx, layout.reason).unwrap_or(NO_REASON),
            direction,
            state,
            _pad: [0; 2],
        },
    );
}

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    reset(&ctx, &record::layout(&SEND_RESET_LAYOUT), RESET_SENT);
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    reset(&ctx, &record::layout(&RECEIVE_RESET_LAYOUT), RESET_RECEIVED);
    0
}
