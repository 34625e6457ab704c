//! The ring buffer side of the daemon: records as they arrive, and the kernel's counts of
//! the events its programs sent and could not queue.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use serde::Serialize;
use tracer_common::EmitCounts;

use crate::vocabulary::names;

/// Kernel events: what the programs tried to send, what reached tracer, and what the
/// ring buffer had no room for. Once the programs are detached and the ring buffer
/// drained, `sent == received + lost`. `missed` counts the program runs the kernel
/// skipped (see `kernel::program_stats`): their events were never sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub missed: u64,
}

/// Why events were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossCause {
    /// The ring buffer had no room: tracer did not read fast enough.
    RingBufferFull,
    /// The kernel skipped a program run because the program was already running on
    /// that CPU (interrupted or preempted): the event was never sent.
    ProgramBusy,
}

names!(LossCause as "loss cause" {
    RingBufferFull => "ring_buffer_full",
    ProgramBusy => "program_busy",
});

/// Sums the programs' per-CPU counts.
pub struct EmitCounter {
    map: PerCpuArray<MapData, EmitCounts>,
}

impl EmitCounter {
    pub fn new(map: PerCpuArray<MapData, EmitCounts>) -> Self {
        Self { map }
    }

    /// Events sent and lost so far, over all CPUs.
    pub fn read(&self) -> Result<EmitCounts> {
        let per_cpu = self
            .map
            .get(&0, 0)
            .context("cannot read the kernel's event counters")?;
        Ok(per_cpu
            .iter()
            .fold(EmitCounts::default(), |sum, cpu| EmitCounts {
                sent: sum.sent + cpu.sent,
                lost: sum.lost + cpu.lost,
            }))
    }
}

/// Records read from the ring buffer in one batch at most: a ring that fills as fast as
/// it is read must still let the daemon answer its signals and timers between batches
/// (a SIGHUP from logrotate waited for minutes under full churn when a batch ran until
/// the ring was empty).
pub const DRAIN_BATCH: u64 = 16_384;

/// Calls `handle` on the records waiting in the ring buffer, at most [`DRAIN_BATCH`];
/// returns how many, and whether the ring was left empty.
pub fn drain(ring: &mut RingBuf<MapData>, mut handle: impl FnMut(&[u8])) -> (u64, bool) {
    let mut records = 0;
    while records < DRAIN_BATCH {
        let Some(record) = ring.next() else {
            return (records, true);
        };
        handle(&record);
        records += 1;
    }
    (records, false)
}
