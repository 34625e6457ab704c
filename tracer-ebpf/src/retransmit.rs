//! Retransmits: `tcp:tcp_retransmit_skb` (a data or control segment) and
//! `tcp:tcp_retransmit_synack` (the SYN-ACK of a pending connection).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{
    EventKind, NO_STATE, RETRANSMIT_SEGMENT, RETRANSMIT_SYNACK, Retransmit, TracepointLayout,
};

use crate::{
    kernel,
    output::{EventSocket, emit},
    record,
    selector::{Candidate, select},
};

#[unsafe(no_mangle)]
static RETRANSMIT_SKB_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;
#[unsafe(no_mangle)]
static RETRANSMIT_SYNACK_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;

#[inline(always)]
fn retransmit(
    ctx: &TracePointContext,
    layout: &TracepointLayout,
    what: u8,
    socket: EventSocket,
    owner: EventSocket,
) {
    if select(Candidate::Record(ctx, &layout.endpoints, owner)).is_none() {
        return;
    }
    let Some(endpoints) = record::endpoints(ctx, &layout.endpoints) else {
        return;
    };
    let tcp_flags = record::field::<u64>(ctx, layout.skbaddr)
        .and_then(|skb| kernel::read_uint(skb, kernel::field!(skb_tcp_flags)))
        .unwrap_or(0) as u8;
    emit(
        EventKind::Retransmit,
        socket,
        Retransmit {
            endpoints,
            what,
            state: record::field::<i32>(ctx, layout.state).map_or(NO_STATE, |s| s as u8),
            tcp_flags,
            _pad: [0; 5],
        },
    );
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let layout = record::layout(&RETRANSMIT_SKB_LAYOUT);
    let sock = EventSocket::Full(record::field::<u64>(&ctx, layout.skaddr).unwrap_or(0));
    retransmit(&ctx, &layout, RETRANSMIT_SEGMENT, sock, sock);
    0
}

/// The connection is still a request socket (`req`), which is its identity until the
/// handshake completes; `skaddr` is the listener.
#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let layout = record::layout(&RETRANSMIT_SYNACK_LAYOUT);
    let request = record::field::<u64>(&ctx, layout.req).unwrap_or(0);
    let listener = record::field::<u64>(&ctx, layout.skaddr).unwrap_or(0);
    retransmit(
        &ctx,
        &layout,
        RETRANSMIT_SYNACK,
        EventSocket::Mini(request),
        EventSocket::Full(listener),
    );
    0
}
