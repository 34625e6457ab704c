//! Data direction per socket, for counting requests and responses without reading
//! payloads: each send or receive on a traced socket updates its entry in a map, and
//! only a change of direction becomes an event. The entry's last activity time also
//! feeds the close (idle time before close).
//!
//! Data is received when it arrives, not when the application reads it: a request that
//! waits in the socket before its server reads it is part of the server's time to
//! answer. `tcp:tcp_probe` fires for every segment an established socket receives;
//! reads (`sock:sock_recv_length`, or `tcp_cleanup_rbuf` by probe) catch data received
//! in other states (a half-closed connection): a read turns only when `rcv_nxt` is past
//! what arrived at `tcp_probe` (`arrived`), so reading data that came before a send is
//! not taken for a new arrival after it. Data is sent when the application sends
//! it (`tcp_sendmsg` by probe, as it starts), or, where only tracepoints exist,
//! `sock:sock_send_length`, which fires as `sendmsg` *returns*.
//!
//! A send seen only as it returns can be overtaken: the response to a request arrives
//! while its client is still inside `sendmsg` (a large write, or the lock held while
//! the backlog is processed). So the entry also keeps `accounted`, the `write_seq` up to
//! which the application's data is accounted for, and every segment that arrives (a
//! pure ACK too) checks for data beyond it that has left on the wire (`snd_nxt` past
//! it): that is a send under way, and when the last turn was not a send, its turn is
//! reported there, before what arrived, at the time its flight's first segment left
//! (`first_tx_mstamp`, kept between the last data activity and now). A send returning
//! with nothing beyond `accounted` was reported already. The entry starts when the
//! connection is established, so the first request is covered too.
//!
//! These fire for all traffic of the host (the socket tracepoints for every family), so
//! they are raw tracepoints (no record is formatted) and the selector decides first,
//! from one read of the socket.

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_ktime_get_ns},
    macros::{fentry, kprobe, map, raw_tracepoint},
    maps::LruHashMap,
    programs::{FEntryContext, ProbeContext, RawTracePointContext},
};
use tracer_common::{DATA_RECEIVED, DATA_SENT, DataTurn, EventKind, NO_DATA};

use crate::{
    context::in_process_context,
    kernel::{self, Sock, is_tcp, read_uint},
    output::{EventSocket, emit, emit_at},
    selector::{Candidate, select},
    tls,
};

/// `TCPHDR_FIN`.
const TCPHDR_FIN: u32 = 0x01;

/// `Activity::direction` before the first data of a connection.
const NO_DIRECTION: u8 = 2;

/// Explicit padding: older verifiers (5.10) refuse to copy uninitialised stack bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Activity {
    /// The last data sent or received, or [`NO_DATA`].
    pub last_ns: u64,
    /// `tcp_sock.write_seq` up to which the application's data is accounted for: sent
    /// in a reported turn, or not yet on the wire when something arrived.
    pub accounted: u32,
    /// The peer's sequence space that arrived while `tcp_probe` saw it.
    pub arrived: u32,
    /// [`DATA_SENT`], [`DATA_RECEIVED`] or [`NO_DIRECTION`].
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

/// What a data hook saw on a traced socket.
#[derive(Clone, Copy)]
enum Seen {
    /// The application starts a send (entry probes).
    SendStarts,
    /// The application's send returned (`sock_send_length`).
    SendReturned,
    /// A segment arrived (`tcp_probe`), with payload or not, taking the peer's sequence
    /// space from `seq` up to `end_seq`.
    Segment {
        payload: bool,
        seq: u32,
        end_seq: u32,
    },
    /// The application read data.
    Read,
}

/// Sequence number `a` is after `b` (RFC 9293 arithmetic).
#[inline(always)]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline(always)]
fn tcp_seq(sk: u64, field: tracer_common::KernelField) -> Option<u32> {
    read_uint(sk, field).map(|value| value as u32)
}

/// The connection of `sk` (on a traced port) is established (`client`: from
/// SYN_SENT): its entry starts, with the data accounted for and arrived up to where each
/// direction's data starts. Data can move before the handshake completes (TCP Fast
/// Open's data in the SYN): it then counts like data after it.
#[inline(always)]
pub fn track(sk: u64, client: bool) {
    let seq = |field| tcp_seq(sk, field);
    let count = |field| read_uint(sk, field).map(|n| n as u32);
    // The byte counters' start: `bytes_acked` counts a client's SYN, `bytes_received`
    // nothing but data before a FIN.
    if let (Some(snd_una), Some(acked), Some(rcv_nxt), Some(received)) = (
        seq(kernel::field!(snd_una)),
        count(kernel::field!(bytes_acked)),
        seq(kernel::field!(rcv_nxt)),
        count(kernel::field!(bytes_received)),
    ) {
        let _ = ACTIVITY.insert(
            sk,
            Activity {
                last_ns: NO_DATA,
                accounted: snd_una.wrapping_sub(acked).wrapping_add(u32::from(client)),
                arrived: rcv_nxt.wrapping_sub(received),
                direction: NO_DIRECTION,
                _pad: [0; 7],
            },
            0,
        );
    }
}

/// `sk` moved data (a hook without the socket's ports yet).
#[inline(always)]
fn data(sk: u64, seen: Seen) {
    let sock = Sock::read(sk);
    if let Some(ports) = select(Candidate::Socket(&sock)) {
        traced_data(&sock, ports, seen);
    }
}

/// Reports a turn of `sock` to `direction` at `ns`.
#[inline(always)]
fn turn(sock: &Sock, ports: (u16, u16), direction: u8, ns: Option<u64>) {
    if let Some(endpoints) = sock.endpoints(ports) {
        let turn = DataTurn {
            endpoints,
            direction,
            _pad: [0; 7],
        };
        match ns {
            Some(ns) => emit_at(EventKind::DataTurn, EventSocket::Full(sock.sk), turn, ns),
            None => emit(EventKind::DataTurn, EventSocket::Full(sock.sk), turn),
        }
    }
}

/// When the flight carrying the data of a send under way started, on the boot clock,
/// kept between the last data activity and `now`.
#[inline(always)]
fn flight_start_ns(sk: u64, last_ns: u64, now: u64) -> u64 {
    let Some(first_tx_us) = read_uint(sk, kernel::field!(first_tx_mstamp)) else {
        return now;
    };
    // SAFETY: helper without preconditions. The boot clock runs ahead of the monotonic
    // one by the time suspended.
    let suspended = now.saturating_sub(unsafe { bpf_ktime_get_ns() });
    // Not `clamp`: its check that the bounds are in order would be a panic, which the
    // verifier refuses (an endless loop).
    (first_tx_us * 1_000 + suspended).max(last_ns).min(now)
}

/// A segment arrived on the traced `sock`: data the application queued beyond what is
/// accounted for and that has left on the wire is a send under way; reported as a turn
/// when the last turn was not a send.
#[inline(always)]
fn send_under_way(sock: &Sock, ports: (u16, u16), activity: &mut Activity, now: u64) {
    let sk = sock.sk;
    let accounted = activity.accounted;
    if !tcp_seq(sk, kernel::field!(write_seq)).is_some_and(|queued| after(queued, accounted)) {
        return;
    }
    let Some(snd_nxt) = tcp_seq(sk, kernel::field!(snd_nxt)) else {
        return;
    };
    if !after(snd_nxt, accounted) {
        return;
    }
    activity.accounted = snd_nxt;
    if activity.direction != DATA_SENT {
        let at = flight_start_ns(sk, activity.last_ns, now);
        activity.direction = DATA_SENT;
        activity.last_ns = at;
        turn(sock, ports, DATA_SENT, Some(at));
    }
}

/// The traced socket `sock` (with `ports`) moved data, or received a segment.
#[inline(always)]
fn traced_data(sock: &Sock, ports: (u16, u16), seen: Seen) {
    let sk = sock.sk;
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let activity = ACTIVITY.get_ptr_mut(sk);
    // A send or read by the application: inside a TLS library's call, its session's
    // socket is this one. What is read arrived at the socket's last data (`tcp_probe`).
    if !matches!(seen, Seen::Segment { .. }) && in_process_context() {
        // SAFETY: the map's value, read once.
        let arrived = activity.map_or(NO_DATA, |activity| unsafe { (*activity).last_ns });
        let io_ns = match seen {
            Seen::Read if arrived != NO_DATA => arrived,
            _ => now,
        };
        tls::learn(sk, io_ns);
    }
    let Some(activity) = activity else {
        return first_data(sock, ports, seen, now);
    };
    // SAFETY: the map's value, updated in place (a racing update from another CPU can
    // only move the time, mark or direction the same way).
    let activity = unsafe { &mut *activity };
    let direction = match seen {
        Seen::SendStarts => {
            let Some(write_seq) = tcp_seq(sk, kernel::field!(write_seq)) else {
                return;
            };
            if after(write_seq, activity.accounted) {
                activity.accounted = write_seq;
            }
            DATA_SENT
        }
        Seen::SendReturned => {
            activity.last_ns = now;
            let accounted = activity.accounted;
            let Some(write_seq) =
                tcp_seq(sk, kernel::field!(write_seq)).filter(|&n| after(n, accounted))
            else {
                return;
            };
            // What left is accounted for; what waits (Nagle, a full window) goes on the
            // wire later, after what may arrive meanwhile (`send_under_way` sees it).
            // A send with nothing on the wire yet after another direction still turns
            // here, so its turn cannot be lost.
            let on_wire = tcp_seq(sk, kernel::field!(snd_nxt)).filter(|&n| after(n, accounted));
            if activity.direction == DATA_SENT {
                if let Some(snd_nxt) = on_wire {
                    activity.accounted = snd_nxt;
                }
                return;
            }
            activity.accounted = on_wire.unwrap_or(write_seq);
            DATA_SENT
        }
        Seen::Segment {
            payload,
            seq,
            end_seq,
        } => {
            send_under_way(sock, ports, activity, now);
            // Data before this segment that `tcp_probe` did not see arrive (before the
            // connection was established) arrived too.
            let unseen = after(seq, activity.arrived);
            if after(end_seq, activity.arrived) {
                activity.arrived = end_seq;
            }
            if !payload && !unseen {
                return;
            }
            DATA_RECEIVED
        }
        Seen::Read => {
            send_under_way(sock, ports, activity, now);
            let arrived = activity.arrived;
            match tcp_seq(sk, kernel::field!(rcv_nxt)).filter(|&n| after(n, arrived)) {
                Some(rcv_nxt) => activity.arrived = rcv_nxt,
                None => return,
            }
            DATA_RECEIVED
        }
    };
    activity.last_ns = now;
    if activity.direction != direction {
        activity.direction = direction;
        turn(sock, ports, direction, None);
    }
}

/// The first data of a traced socket without an entry (open before tracing, or
/// forgotten by the LRU): its turn, and its entry from here.
#[inline(always)]
fn first_data(sock: &Sock, ports: (u16, u16), seen: Seen, now: u64) {
    let sk = sock.sk;
    let (direction, accounted) = match seen {
        Seen::SendStarts | Seen::SendReturned => (DATA_SENT, kernel::field!(write_seq)),
        Seen::Segment { payload: false, .. } => return,
        Seen::Segment { payload: true, .. } | Seen::Read => {
            (DATA_RECEIVED, kernel::field!(snd_nxt))
        }
    };
    let accounted = tcp_seq(sk, accounted).unwrap_or(0);
    if !is_tcp(sk) {
        return;
    }
    let arrived = match seen {
        Seen::Segment { end_seq, .. } => end_seq,
        _ => tcp_seq(sk, kernel::field!(rcv_nxt)).unwrap_or(0),
    };
    let _ = ACTIVITY.insert(
        sk,
        Activity {
            last_ns: now,
            accounted,
            arrived,
            direction,
            _pad: [0; 7],
        },
        0,
    );
    turn(sock, ports, direction, None);
}

/// The socket's last data time, forgetting the socket (it is closing).
#[inline(always)]
pub fn take_last_data_ns(sk: u64) -> u64 {
    // SAFETY: copied out before the removal.
    let last = unsafe { ACTIVITY.get(sk) }.map_or(NO_DATA, |activity| activity.last_ns);
    let _ = ACTIVITY.remove(sk);
    last
}

/// `TP_PROTO(struct sock *sk, int ret, int flags)`: a send or read returned `ret`.
#[inline(always)]
fn length(ctx: &RawTracePointContext) -> Option<u64> {
    let (sk, ret): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    (ret as i32 > 0).then_some(sk)
}

/// What the segment `skb` carries: whether payload bytes (a FIN takes a sequence
/// number, not a byte), and the end of its sequence space.
#[inline(always)]
fn segment(skb: u64) -> Option<Seen> {
    let seq = read_uint(skb, kernel::field!(skb_seq))? as u32;
    let end_seq = read_uint(skb, kernel::field!(skb_end_seq))? as u32;
    let fin = read_uint(skb, kernel::field!(skb_tcp_flags)).unwrap_or(0) as u32 & TCPHDR_FIN;
    Some(Seen::Segment {
        payload: end_seq.wrapping_sub(seq).wrapping_sub(fin) > 0,
        seq,
        end_seq,
    })
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb)`: a segment arrived on
/// an established socket.
#[raw_tracepoint(tracepoint = "tcp_probe")]
pub fn tcp_probe(ctx: RawTracePointContext) -> i32 {
    let (sk, skb): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    let sock = Sock::read(sk);
    // The segment is read only for a traced socket.
    if let Some(ports) = select(Candidate::Socket(&sock))
        && let Some(segment) = segment(skb)
    {
        traced_data(&sock, ports, segment);
    }
    0
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    if let Some(sk) = length(&ctx) {
        data(sk, Seen::SendReturned);
    }
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    if let Some(sk) = length(&ctx) {
        data(sk, Seen::Read);
    }
    0
}

/// `tcp_sendmsg(sk, msg, size)`: data about to be queued.
#[kprobe]
pub fn tcp_sendmsg_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(1..)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(2)) {
        data(sk, Seen::SendStarts);
    }
    0
}

/// `tcp_cleanup_rbuf(sk, copied)`: runs after every receive with the bytes copied.
#[kprobe]
pub fn tcp_cleanup_rbuf_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(1..)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) {
        data(sk, Seen::Read);
    }
    0
}

#[fentry(function = "tcp_sendmsg")]
pub fn tcp_sendmsg_fentry(ctx: FEntryContext) -> u32 {
    if ctx.arg::<u64>(2) > 0 {
        data(ctx.arg::<u64>(0), Seen::SendStarts);
    }
    0
}

#[fentry(function = "tcp_cleanup_rbuf")]
pub fn tcp_cleanup_rbuf_fentry(ctx: FEntryContext) -> u32 {
    if ctx.arg::<i32>(1) > 0 {
        data(ctx.arg::<u64>(0), Seen::Read);
    }
    0
}
