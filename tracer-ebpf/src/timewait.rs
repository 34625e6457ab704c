//! How a connection handed to a timewait socket in `FIN_WAIT2` ends: its full socket
//! closed (the application had closed it and the peer acknowledged its FIN), and the
//! kernel left a small timewait socket to take the peer's FIN. No tracepoint reports a
//! timewait socket; `tcp_timewait_state_process(tw, skb, ...)`, which takes every segment
//! that arrives for one, does, by kprobe. (Not by fentry: on 5.10 an fentry program there
//! attached and never ran for the segments the capture showed reaching the timewait
//! socket; the kprobe did, on every kernel of the matrix.) A segment that ends the `FIN_WAIT2`
//! wait is sent as an event: the peer's FIN (the timewait socket moves to TIME_WAIT), an
//! RST, or data (which it refuses with a reset). Anything else (an ACK, a keepalive
//! probe) leaves it waiting, as does every segment once the FIN has come.

use aya_ebpf::{macros::kprobe, programs::ProbeContext};
use tracer_common::{
    EventKind, TIMEWAIT_PEER_DATA, TIMEWAIT_PEER_FIN, TIMEWAIT_PEER_RESET, TimewaitEnd,
};

use crate::{
    kernel::{self, Sock, read_uint},
    output::{EventSocket, emit},
    selector::{Candidate, select},
};

/// The kernel's `TCP_FIN_WAIT2`.
const TCP_FIN_WAIT2: u64 = 5;
/// `TCPHDR_FIN`, `TCPHDR_RST`.
const TCPHDR_FIN: u64 = 0x01;
const TCPHDR_RST: u64 = 0x04;

/// The segment `skb` arrives for the timewait socket `tw`. Its `sock_common` is the
/// head of a timewait socket as of a full one, so [`Sock`] reads its ends.
#[inline(always)]
fn arrives(tw: u64, skb: u64) {
    if read_uint(tw, kernel::field!(tw_substate)) != Some(TCP_FIN_WAIT2) {
        return;
    }
    let sock = Sock::read(tw);
    let Some(endpoints) =
        select(Candidate::Timewait(&sock)).and_then(|ports| sock.endpoints(ports))
    else {
        return;
    };
    // The control block, which the caller filled from the headers before the call.
    let Some(flags) = read_uint(skb, kernel::field!(skb_tcp_flags)) else {
        return;
    };
    let how = if flags & TCPHDR_RST != 0 {
        TIMEWAIT_PEER_RESET
    } else if flags & TCPHDR_FIN != 0 {
        TIMEWAIT_PEER_FIN
    } else {
        let seq = read_uint(skb, kernel::field!(skb_seq)).unwrap_or(0) as u32;
        let end_seq = read_uint(skb, kernel::field!(skb_end_seq)).unwrap_or(0) as u32;
        if end_seq == seq {
            return;
        }
        TIMEWAIT_PEER_DATA
    };
    emit(
        EventKind::TimewaitEnd,
        EventSocket::Mini(tw),
        TimewaitEnd {
            endpoints,
            how,
            _pad: [0; 7],
        },
    );
}

#[kprobe]
pub fn tcp_timewait_state_process_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(tw), Some(skb)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        arrives(tw, skb);
    }
    0
}
