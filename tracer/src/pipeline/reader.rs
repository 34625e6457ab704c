//! The ring buffer side of the daemon: records as they arrive, and the kernel's count of
//! records it had to drop.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};

/// Sums the per-CPU `LOST` counters and hands out what is new since the last call.
pub struct LossCounter {
    map: PerCpuArray<MapData, u64>,
    reported: u64,
}

impl LossCounter {
    pub fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Self { map, reported: 0 }
    }

    /// Events lost since the previous call.
    pub fn take_new(&mut self) -> Result<u64> {
        let total: u64 = self
            .map
            .get(&0, 0)
            .context("cannot read the lost-event counter")?
            .iter()
            .sum();
        let new = total.saturating_sub(self.reported);
        self.reported = total;
        Ok(new)
    }
}

/// Calls `handle` on every record waiting in the ring buffer.
pub fn drain(ring: &mut RingBuf<MapData>, mut handle: impl FnMut(&[u8])) {
    while let Some(record) = ring.next() {
        handle(&record);
    }
}
