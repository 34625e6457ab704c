//! TLS: the application's reads and writes through OpenSSL's `libssl`, and its handshake,
//! seen by uprobes on the library's functions (attached per library file, so every
//! process mapping it is covered, those started later too). Payloads are never read.
//!
//! A call is tied to its socket by the socket I/O the same thread does inside it: each
//! entry probe keeps the thread's call (`SSL_CALLS`), and the data hooks, for a traced
//! socket in process context, learn that the call's `SSL *` is that socket's session
//! (`TLS_SESSIONS`, keyed by process and `SSL *`: both are reused, so `SSL_free` forgets
//! a session). A call can move no bytes on the socket (the record it returns was read
//! with an earlier one), so the session, once learnt, is what later calls find. A
//! session is only ever learnt for a traced socket: calls of untraced processes and
//! connections leave nothing behind them and send nothing.
//!
//! Like the socket's data hooks, only a change of direction of the application's data is
//! an event (a TLS turn): a write turns as the application starts it (the call's entry),
//! a read as the library returns it. The handshake is reported once, when a handshake
//! call returns success, timed by the socket as the wire sees it: from the first data the
//! handshake calls moved (the ClientHello sent, or its arrival) to the last (the last
//! message this side sent, or the arrival of the last it read), so neither the library's
//! work before its first message nor a late wake-up of the process counts.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_boot_ns},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{DATA_RECEIVED, DATA_SENT, DataTurn, EventKind, TLS_OPENSSL, TlsHandshake};

use crate::{
    kernel::Sock,
    output::{EventSocket, emit_at},
    selector::{Candidate, select},
};

/// `SslCall::kind`.
const CALL_HANDSHAKE: u8 = 0;
const CALL_READ: u8 = 1;
const CALL_WRITE: u8 = 2;

/// `Session::direction` before the first application data.
const NO_DIRECTION: u8 = 2;

/// A thread's call into the library, from its entry to its return.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslCall {
    /// The call's `SSL *`.
    pub ssl: u64,
    /// Boot clock at the entry.
    pub started_ns: u64,
    /// A `CALL_*`.
    pub kind: u8,
    /// Calls of the library into itself through an exported function (`SSL_connect`
    /// and `SSL_accept` call `SSL_do_handshake`): their returns are not the outer call's.
    pub depth: u8,
    pub _pad: [u8; 6],
}

/// A session of a process (`tgid`) on a traced socket.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SessionKey {
    pub tgid: u64,
    pub ssl: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Session {
    pub sk: u64,
    /// The handshake's first data on the socket (the ClientHello sent, or arrived), 0
    /// when the handshake was not seen.
    pub handshake_started_ns: u64,
    /// The latest data the handshake calls moved (sent then, or that arrived then).
    pub handshake_last_ns: u64,
    /// `DATA_SENT`, `DATA_RECEIVED` or `NO_DIRECTION`: the application data's last.
    pub direction: u8,
    /// The handshake was reported (or not seen: a session learnt in a data call).
    pub handshake_done: u8,
    pub _pad: [u8; 6],
}

/// Threads inside a call at once; LRU, so a thread that never returned (killed inside a
/// call) cannot hold its entry forever.
#[map(name = "SSL_CALLS")]
static SSL_CALLS: LruHashMap<u64, SslCall> = LruHashMap::with_max_entries(16384, 0);

/// Sessions on traced sockets; LRU, so a session whose `SSL_free` was missed is
/// forgotten in time.
#[map(name = "TLS_SESSIONS")]
static TLS_SESSIONS: LruHashMap<SessionKey, Session> = LruHashMap::with_max_entries(65536, 0);

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// A library call of `kind` on `ssl` starts on this thread.
#[inline(always)]
fn enter(ctx: &ProbeContext, kind: u8) {
    let Some(ssl) = ctx.arg::<u64>(0) else {
        return;
    };
    let thread = bpf_get_current_pid_tgid();
    if let Some(call) = SSL_CALLS.get_ptr_mut(thread) {
        // SAFETY: this thread's entry, updated in place by this thread only.
        let call = unsafe { &mut *call };
        // Only the handshake functions call each other through their exported names.
        if call.ssl == ssl && call.kind == CALL_HANDSHAKE && kind == CALL_HANDSHAKE {
            call.depth = call.depth.saturating_add(1);
            return;
        }
    }
    // Any other call still kept never returned (its thread left it another way): replaced.
    let call = SslCall {
        ssl,
        started_ns: now(),
        kind,
        depth: 0,
        _pad: [0; 6],
    };
    let _ = SSL_CALLS.insert(thread, call, 0);
}

/// The data hooks saw this thread move data on the traced socket `sk` (data sent at
/// `io_ns`, or read that arrived then): if it is inside a library call, that call's
/// session is `sk`'s, and inside a handshake call, the handshake's data went then.
#[inline(always)]
pub fn learn(sk: u64, io_ns: u64) {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: copied out at once.
    let Some(call) = (unsafe { SSL_CALLS.get(thread) }).copied() else {
        return;
    };
    let key = SessionKey {
        tgid: thread >> 32,
        ssl: call.ssl,
    };
    let handshake = call.kind == CALL_HANDSHAKE;
    if let Some(session) = TLS_SESSIONS.get_ptr_mut(key) {
        // SAFETY: the map's value, used by one thread at a time (OpenSSL's rule for an
        // `SSL *`); the session's socket changes only with its fd.
        let session = unsafe { &mut *session };
        session.sk = sk;
        if handshake && session.handshake_done == 0 {
            session.handshake_last_ns = io_ns;
        }
        return;
    }
    let session = Session {
        sk,
        handshake_started_ns: if handshake { io_ns } else { 0 },
        handshake_last_ns: io_ns,
        direction: NO_DIRECTION,
        handshake_done: u8::from(!handshake),
        _pad: [0; 6],
    };
    let _ = TLS_SESSIONS.insert(key, session, 0);
}

/// Sends a TLS event of `sk` (while its connection is traced).
#[inline(always)]
fn report<T: 'static>(
    kind: EventKind,
    sk: u64,
    payload: impl FnOnce(&Sock, (u16, u16)) -> Option<T>,
    ns: u64,
) {
    let sock = Sock::read(sk);
    if let Some(ports) = select(Candidate::Socket(&sock))
        && let Some(payload) = payload(&sock, ports)
    {
        emit_at(kind, EventSocket::Full(sk), payload, ns);
    }
}

/// `SSL_do_handshake(ssl)`, `SSL_connect(ssl)`, `SSL_accept(ssl)`.
#[uprobe]
pub fn ssl_handshake_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, CALL_HANDSHAKE);
    0
}

/// `SSL_read(ssl, buf, num)`, `SSL_read_ex(ssl, buf, num, readbytes)`.
#[uprobe]
pub fn ssl_read_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, CALL_READ);
    0
}

/// `SSL_write(ssl, buf, num)`, `SSL_write_ex(ssl, buf, num, written)`.
#[uprobe]
pub fn ssl_write_entry(ctx: ProbeContext) -> u32 {
    enter(&ctx, CALL_WRITE);
    0
}

/// The return of every function above. Success is a return above 0: the bytes of
/// `SSL_read`/`SSL_write`, 1 for the `_ex` forms (at least one byte moved) and for a
/// handshake done.
#[uretprobe]
pub fn ssl_call_return(ctx: RetProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    let Some(entry) = SSL_CALLS.get_ptr_mut(thread) else {
        return 0;
    };
    // SAFETY: this thread's entry, updated in place by this thread only.
    let call = unsafe { &mut *entry };
    if call.depth > 0 {
        call.depth -= 1;
        return 0;
    }
    let call = *call;
    let _ = SSL_CALLS.remove(thread);
    if ctx.ret::<i64>() as i32 <= 0 {
        return 0;
    }
    let key = SessionKey {
        tgid: thread >> 32,
        ssl: call.ssl,
    };
    let Some(session) = TLS_SESSIONS.get_ptr_mut(key) else {
        return 0;
    };
    // SAFETY: the map's value; a session is used by one thread at a time (OpenSSL's
    // rule for an `SSL *`).
    let session = unsafe { &mut *session };
    let sk = session.sk;
    if call.kind == CALL_HANDSHAKE {
        if session.handshake_done == 0 {
            session.handshake_done = 1;
            let started_ns = session.handshake_started_ns;
            let handshake = |sock: &Sock, ports| {
                Some(TlsHandshake {
                    endpoints: sock.endpoints(ports)?,
                    started_ns,
                    library: TLS_OPENSSL,
                    _pad: [0; 7],
                })
            };
            report(
                EventKind::TlsHandshake,
                sk,
                handshake,
                session.handshake_last_ns,
            );
        }
        return 0;
    }
    let (direction, ns) = if call.kind == CALL_WRITE {
        (DATA_SENT, call.started_ns)
    } else {
        (DATA_RECEIVED, now())
    };
    if session.direction != direction {
        session.direction = direction;
        let turn = |sock: &Sock, ports| {
            Some(DataTurn {
                endpoints: sock.endpoints(ports)?,
                direction,
                _pad: [0; 7],
            })
        };
        report(EventKind::TlsTurn, sk, turn, ns);
    }
    0
}

/// `SSL_free(ssl)`: the session ends (its `SSL *` may be the next one's).
#[uprobe]
pub fn ssl_free_entry(ctx: ProbeContext) -> u32 {
    if let Some(ssl) = ctx.arg::<u64>(0) {
        let key = SessionKey {
            tgid: bpf_get_current_pid_tgid() >> 32,
            ssl,
        };
        let _ = TLS_SESSIONS.remove(key);
    }
    0
}
