//! Data direction per socket, for counting requests and responses without reading
//! payloads: each send or receive on a traced socket updates its entry in a map, and
//! only a change of direction becomes an event. The entry's last activity time also
//! feeds the close (idle time before close).
//!
//! Data is received when it arrives, not when the application reads it: a request that
//! waits in the socket before its server reads it is part of the server's time to
//! answer. `tcp:tcp_probe` fires for every segment an established socket receives;
//! reads (`sock:sock_recv_length`, or `tcp_cleanup_rbuf` by probe) catch data received
//! in other states (a half-closed connection). Data is sent when the application sends
//! it (`sock:sock_send_length` or `tcp_sendmsg`).
//!
//! These fire for all traffic of the host (the socket tracepoints for every family), so
//! they are raw tracepoints (no record is formatted) and the selector decides first,
//! from one read of the socket.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::{fentry, kprobe, map, raw_tracepoint},
    maps::LruHashMap,
    programs::{FEntryContext, ProbeContext, RawTracePointContext},
};
use tracer_common::{DATA_RECEIVED, DATA_SENT, DataTurn, EventKind, NO_DATA};

use crate::{
    kernel::{self, Sock, is_tcp, read_uint},
    output::emit,
    selector::{Candidate, select},
};

/// `TCPHDR_FIN`.
const TCPHDR_FIN: u32 = 0x01;

/// Explicit padding: older verifiers (5.10) refuse to copy uninitialised stack bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Activity {
    pub last_ns: u64,
    pub direction: u8,
    pub _pad: [u8; 7],
}

/// Traced sockets whose data direction is kept at once; beyond, the least recently active
/// one is forgotten (its next data counts as a turn, its close has no last data time).
const ACTIVITY_SOCKETS: u32 = 65536;

/// Traced sockets that carried data. LRU: a socket whose close was missed cannot leak an
/// entry forever.
#[map(name = "DATA_ACTIVITY")]
static ACTIVITY: LruHashMap<u64, Activity> = LruHashMap::with_max_entries(ACTIVITY_SOCKETS, 0);

/// `sk` moved data in `direction`.
#[inline(always)]
fn data(sk: u64, direction: u8) {
    let sock = Sock::read(sk);
    if let Some(ports) = select(Candidate::Socket(&sock)) {
        traced_data(&sock, ports, direction);
    }
}

/// The traced socket `sock` (with `ports`) moved data in `direction`.
#[inline(always)]
fn traced_data(sock: &Sock, ports: (u16, u16), direction: u8) {
    let sk = sock.sk;
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(activity) = ACTIVITY.get_ptr_mut(sk) {
        // SAFETY: the map's value, updated in place (a racing update from another CPU
        // can only move the time or direction the same way).
        let activity = unsafe { &mut *activity };
        activity.last_ns = now;
        if activity.direction == direction {
            return;
        }
        activity.direction = direction;
    } else {
        if !is_tcp(sk) {
            return;
        }
        let _ = ACTIVITY.insert(
            sk,
            Activity {
                last_ns: now,
                direction,
                _pad: [0; 7],
            },
            0,
        );
    }
    if let Some(endpoints) = sock.endpoints(ports) {
        emit(
            EventKind::DataTurn,
            sk,
            DataTurn {
                endpoints,
                direction,
                _pad: [0; 7],
            },
        );
    }
}

/// The socket's last data time, forgetting the socket (it is closing).
#[inline(always)]
pub fn take_last_data_ns(sk: u64) -> u64 {
    // SAFETY: copied out before the removal.
    let last = unsafe { ACTIVITY.get(sk) }.map_or(NO_DATA, |activity| activity.last_ns);
    let _ = ACTIVITY.remove(sk);
    last
}

/// `TP_PROTO(struct sock *sk, int ret, int flags)` for both.
#[inline(always)]
fn length(ctx: &RawTracePointContext, direction: u8) {
    let (sk, ret): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    if ret as i32 > 0 {
        data(sk, direction);
    }
}

/// The payload bytes of the segment `skb` (a FIN takes a sequence number, not a byte).
#[inline(always)]
fn payload(skb: u64) -> Option<u32> {
    let seq = read_uint(skb, kernel::field!(skb_seq))? as u32;
    let end_seq = read_uint(skb, kernel::field!(skb_end_seq))? as u32;
    let fin = read_uint(skb, kernel::field!(skb_tcp_flags)).unwrap_or(0) as u32 & TCPHDR_FIN;
    Some(end_seq.wrapping_sub(seq).wrapping_sub(fin))
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb)`: a segment arrived on
/// an established socket.
#[raw_tracepoint(tracepoint = "tcp_probe")]
pub fn tcp_probe(ctx: RawTracePointContext) -> i32 {
    let (sk, skb): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    let sock = Sock::read(sk);
    if let Some(ports) = select(Candidate::Socket(&sock))
        && payload(skb).is_some_and(|bytes| bytes > 0)
    {
        traced_data(&sock, ports, DATA_RECEIVED);
    }
    0
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    length(&ctx, DATA_SENT);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    length(&ctx, DATA_RECEIVED);
    0
}

/// `tcp_sendmsg(sk, msg, size)`: data about to be queued.
#[kprobe]
pub fn tcp_sendmsg_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(1..)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(2)) {
        data(sk, DATA_SENT);
    }
    0
}

/// `tcp_cleanup_rbuf(sk, copied)`: runs after every receive with the bytes copied.
#[kprobe]
pub fn tcp_cleanup_rbuf_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(1..)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) {
        data(sk, DATA_RECEIVED);
    }
    0
}

#[fentry(function = "tcp_sendmsg")]
pub fn tcp_sendmsg_fentry(ctx: FEntryContext) -> u32 {
    if ctx.arg::<u64>(2) > 0 {
        data(ctx.arg::<u64>(0), DATA_SENT);
    }
    0
}

#[fentry(function = "tcp_cleanup_rbuf")]
pub fn tcp_cleanup_rbuf_fentry(ctx: FEntryContext) -> u32 {
    if ctx.arg::<i32>(1) > 0 {
        data(ctx.arg::<u64>(0), DATA_RECEIVED);
    }
    0
}
