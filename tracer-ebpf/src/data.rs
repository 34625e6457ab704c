//! Data direction per socket, for counting request/response exchanges without reading
//! payloads: each send or receive updates the socket's entry in a map, and only a change
//! of direction becomes an event. The entry's last activity time also feeds the close
//! summary (idle time before close).

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::{fentry, kprobe, map, tracepoint},
    maps::LruHashMap,
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use tracer_common::{
    DATA_RECEIVED, DATA_SENT, DataTurn, EventKind, IPPROTO_TCP, NO_DATA, TracepointLayout,
};

use crate::{filter::is_traced_connection, kernel::sock_endpoints, output::emit, record};

#[unsafe(no_mangle)]
static SEND_LENGTH_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;
#[unsafe(no_mangle)]
static RECV_LENGTH_LAYOUT: TracepointLayout = TracepointLayout::ABSENT;

#[derive(Clone, Copy)]
pub struct Activity {
    pub last_ns: u64,
    pub direction: u8,
}

/// Traced sockets that carried data. LRU: a socket whose close was missed cannot leak an
/// entry forever.
#[map(name = "DATA_ACTIVITY")]
static ACTIVITY: LruHashMap<u64, Activity> = LruHashMap::with_max_entries(65536, 0);

/// `sk` moved data in `direction`.
#[inline(always)]
fn data(sk: u64, direction: u8) {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: the value is copied out before anything else touches the map.
    let previous = unsafe { ACTIVITY.get(sk) }.copied();
    let turned = match previous {
        Some(activity) => activity.direction != direction,
        None => {
            // The first data on this socket: is it a traced connection at all?
            let Some(endpoints) = sock_endpoints(sk) else {
                return;
            };
            if !is_traced_connection(&endpoints) {
                return;
            }
            true
        }
    };
    let _ = ACTIVITY.insert(
        sk,
        Activity {
            last_ns: now,
            direction,
        },
        0,
    );
    if turned && let Some(endpoints) = sock_endpoints(sk) {
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

#[inline(always)]
fn length_tracepoint(ctx: &TracePointContext, global: &'static TracepointLayout, direction: u8) {
    let layout = record::layout(global);
    if record::field::<u16>(ctx, layout.protocol) != Some(IPPROTO_TCP) {
        return;
    }
    if let (Some(sk), Some(1..)) = (
        record::field::<u64>(ctx, layout.sk),
        record::field::<i32>(ctx, layout.ret),
    ) {
        data(sk, direction);
    }
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    length_tracepoint(&ctx, &SEND_LENGTH_LAYOUT, DATA_SENT);
    0
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    length_tracepoint(&ctx, &RECV_LENGTH_LAYOUT, DATA_RECEIVED);
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
