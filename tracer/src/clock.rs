//! Kernel boot-clock timestamps -> wall-clock time.
//!
//! eBPF stamps events with `CLOCK_BOOTTIME` (monotonic, counts suspend). The offset to
//! `CLOCK_REALTIME` moves when NTP steps or slews the wall clock, so the daemon samples it
//! at start and again every second ([`WallClock::sample`]).

use std::time::{Duration, SystemTime};

use rustix::time::{ClockId, clock_gettime};

/// Clock reads per [`WallClock::sample`]: a few microseconds in all, once a second.
const SAMPLE_TRIES: usize = 8;

/// Maps boot-clock nanoseconds to wall-clock time with one sampled offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Realtime minus boottime, nanoseconds.
    offset_ns: i128,
}

fn nanos(clock: ClockId) -> i128 {
    let ts = clock_gettime(clock);
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// The boot clock now, as eBPF's `bpf_ktime_get_boot_ns` reads it.
pub fn boot_now_ns() -> u64 {
    nanos(ClockId::Boottime) as u64
}

impl WallClock {
    /// Reads both clocks now. Each realtime read sits between two boottime reads and is
    /// paired with their midpoint; of [`SAMPLE_TRIES`] such reads the one with the
    /// narrowest window is kept: a read preempted between its boottime reads (a busy
    /// machine: a millisecond was seen) would shift every `ts` until the next sample.
    pub fn sample() -> Self {
        let (_, offset_ns) = (0..SAMPLE_TRIES)
            .map(|_| {
                let before = nanos(ClockId::Boottime);
                let real = nanos(ClockId::Realtime);
                let after = nanos(ClockId::Boottime);
                (after - before, real - (before + after) / 2)
            })
            .min_by_key(|&(window, _)| window)
            .expect("at least one try");
        Self::from_offset_ns(offset_ns)
    }

    pub fn from_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// The wall-clock time of a boot-clock instant (clamped to the epoch).
    pub fn to_system_time(self, boot_ns: u64) -> SystemTime {
        let unix_ns = (i128::from(boot_ns) + self.offset_ns).max(0);
        let secs = (unix_ns / 1_000_000_000) as u64;
        let nanos = (unix_ns % 1_000_000_000) as u32;
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// RFC 3339 UTC with nanoseconds, e.g. `2026-11-26T03:04:05.123456789Z`.
    pub fn rfc3339(self, boot_ns: u64) -> String {
        humantime::format_rfc3339_nanos(self.to_system_time(boot_ns)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_offset_with_nanosecond_precision() {
        // 2026-11-26T03:04:05Z is 1795662245 s after the epoch.
        let clock = WallClock::from_offset_ns(1_795_662_245_000_000_000 - 1_000);
        assert_eq!(clock.rfc3339(123_457_789), "2026-11-26T03:04:05.123456789Z");
    }

    #[test]
    fn sampled_clock_maps_now_to_now() {
        let clock = WallClock::sample();
        let boot_now = nanos(ClockId::Boottime) as u64;
        let wall = clock.to_system_time(boot_now);
        let skew = SystemTime::now()
            .duration_since(wall)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_millis(100), "skew {skew:?}");
    }
}
