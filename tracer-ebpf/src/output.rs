//! The ring buffer to userspace, the header every event starts with, and the count of
//! events lost when the ring buffer is full.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_ktime_get_boot_ns},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tracer_common::{Event, EventHeader, EventKind, FLAG_PROCESS_CONTEXT};

use crate::context::in_process_context;

/// Default size; the daemon may resize it before load.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

#[map(name = "LOST")]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn header(kind: EventKind, sock: u64) -> EventHeader {
    let process_context = in_process_context();
    let (pid_tgid, comm) = if process_context {
        (
            bpf_get_current_pid_tgid(),
            bpf_get_current_comm().unwrap_or_default(),
        )
    } else {
        (0, [0; 16])
    };
    EventHeader {
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_boot_ns() },
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
    }
}

/// Sends one event, or counts it as lost when the ring buffer has no room.
#[inline(always)]
pub fn emit<T: 'static>(kind: EventKind, sock: u64, payload: T) {
    match EVENTS.reserve::<Event<T>>(0) {
        Some(mut entry) => {
            // Field by field into the reservation: building the whole event first would
            // put a second copy on the 512-byte BPF stack.
            let event = entry.as_mut_ptr();
            // SAFETY: `event` points to a reservation sized for Event<T>.
            unsafe {
                (&raw mut (*event).header).write(header(kind, sock));
                (&raw mut (*event).payload).write(payload);
            }
            entry.submit(0);
        }
        None => {
            if let Some(lost) = LOST.get_ptr_mut(0) {
                // SAFETY: per-CPU slot; this program cannot be preempted on this CPU.
                unsafe { *lost += 1 };
            }
        }
    }
}
