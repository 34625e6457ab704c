//! The ring buffer to userspace, the header every event starts with, and the count of
//! events sent and lost.
//!
//! Events are submitted without waking the daemon until enough wait in the ring buffer
//! (`RING_CONFIG`): the daemon reads them in batches, and on a short timer of its own,
//! instead of once per event.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    },
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tracer_common::{
    EmitCounts, Event, EventHeader, EventKind, FLAG_PROCESS_CONTEXT, MIN_RING_BYTES, RingConfig,
};

use crate::{context::in_process_context, kernel::sock_cgroup_id};

/// The socket an event is about, as its header names it.
#[derive(Clone, Copy)]
pub enum EventSocket {
    /// A full socket: the header carries its cgroup.
    Full(u64),
    /// A request or timewait socket, or none (0): no cgroup of its own.
    Mini(u64),
}

/// Placeholder size; the daemon sets the real one (`--ring-buffer-size`) before load.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(MIN_RING_BYTES, 0);

#[map(name = "EMIT_COUNTS")]
static EMIT_COUNTS: PerCpuArray<EmitCounts> = PerCpuArray::with_max_entries(1, 0);

/// Set by the daemon before load.
#[unsafe(no_mangle)]
static RING_CONFIG: RingConfig = RingConfig { wakeup_bytes: 0 };

#[inline(always)]
fn header(kind: EventKind, socket: EventSocket, timestamp_ns: u64) -> EventHeader {
    let process_context = in_process_context();
    let (sock, cgroup_id) = match socket {
        EventSocket::Full(sock) => {
            // Where the socket's is unreadable, the task's in process context.
            let task = || {
                if process_context {
                    // SAFETY: helper without preconditions.
                    unsafe { bpf_get_current_cgroup_id() }
                } else {
                    0
                }
            };
            (sock, sock_cgroup_id(sock).unwrap_or_else(task))
        }
        EventSocket::Mini(sock) => (sock, 0),
    };
    let (pid_tgid, comm) = if process_context {
        (
            bpf_get_current_pid_tgid(),
            bpf_get_current_comm().unwrap_or_default(),
        )
    } else {
        (0, [0; 16])
    };
    EventHeader {
        timestamp_ns,
        sock,
        pid_tgid,
        comm,
        kind: kind as u8,
        flags: if process_context {
            FLAG_PROCESS_CONTEXT
        } else {
            0
        },
        _pad: [0; 6],
        cgroup_id,
    }
}

/// Wake the daemon only once enough waits for a batch.
#[inline(always)]
fn wakeup() -> u64 {
    // SAFETY: a read-only global the loader wrote before load.
    let threshold = unsafe { core::ptr::read_volatile(&raw const RING_CONFIG.wakeup_bytes) };
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= threshold {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Adds one, atomically (BPF's atomic add: the target has no compare-and-swap, so
/// `AtomicU64` offers no `fetch_add`).
///
/// # Safety
/// `counter` points to a u64 in a map value.
#[inline(always)]
unsafe fn count(counter: *mut u64) {
    // SAFETY: as the caller promises.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
}

/// Sends one event, counting it as sent, and as lost when the ring buffer has no room.
#[inline(always)]
pub fn emit<T: 'static>(kind: EventKind, socket: EventSocket, payload: T) {
    // SAFETY: helper without preconditions.
    emit_at(kind, socket, payload, unsafe { bpf_ktime_get_boot_ns() });
}

/// [`emit`] for something that happened at `timestamp_ns` (boot clock), before now.
#[inline(always)]
pub fn emit_at<T: 'static>(kind: EventKind, socket: EventSocket, payload: T, timestamp_ns: u64) {
    // Atomic adds: a program on this CPU can be interrupted or preempted by another of
    // tracer's programs counting into the same slot.
    let counts = EMIT_COUNTS.get_ptr_mut(0);
    if let Some(counts) = counts {
        // SAFETY: this CPU's slot of the map, aligned for a u64.
        unsafe { count(&raw mut (*counts).sent) };
    }
    match EVENTS.reserve::<Event<T>>(0) {
        Some(mut entry) => {
            // Field by field into the reservation: building the whole event first would
            // put a second copy on the 512-byte BPF stack.
            let event = entry.as_mut_ptr();
            // SAFETY: `event` points to a reservation sized for Event<T>.
            unsafe {
                (&raw mut (*event).header).write(header(kind, socket, timestamp_ns));
                (&raw mut (*event).payload).write(payload);
            }
            entry.submit(wakeup());
        }
        None => {
            if let Some(counts) = counts {
                // SAFETY: as above.
                unsafe { count(&raw mut (*counts).lost) };
            }
        }
    }
}
