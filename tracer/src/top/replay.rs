//! `tracer top --replay FILE`: a recorded trace shown as it happened. A thread feeds the
//! trace's events into the view's state at the pace they were recorded ([`Pace`]); the
//! person speeds it up or slows it down (`+`, `-`) and pauses it (space).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// How the replay runs, shared by the view (which changes it) and the feeding thread.
#[derive(Debug)]
pub struct Playback {
    /// Trace seconds per second shown.
    speed: AtomicU32,
    paused: AtomicBool,
    /// The view asks the feeding thread to stop.
    stopped: AtomicBool,
}

/// The fastest replay: a day's trace in under a minute and a half.
const MAX_SPEED: u32 = 1024;

impl Default for Playback {
    fn default() -> Self {
        Self {
            speed: AtomicU32::new(1),
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }
}

impl Playback {
    pub fn speed(&self) -> u32 {
        self.speed.load(Ordering::Relaxed)
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn faster(&self) {
        let speed = (self.speed() * 2).min(MAX_SPEED);
        self.speed.store(speed, Ordering::Relaxed);
    }

    pub fn slower(&self) {
        let speed = (self.speed() / 2).max(1);
        self.speed.store(speed, Ordering::Relaxed);
    }

    pub fn toggle_pause(&self) {
        self.paused.fetch_xor(true, Ordering::Relaxed);
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// Waits until each event of the trace is due, as [`Playback`] says.
pub struct Pace {
    playback: Arc<Playback>,
    /// A trace time, when it was shown, and the speed since.
    anchor: Option<(u64, Instant, u32)>,
}

/// The longest single sleep: how soon a pause, a speed change or a stop is noticed.
const STEP: Duration = Duration::from_millis(50);

impl Pace {
    pub fn new(playback: Arc<Playback>) -> Self {
        Self {
            playback,
            anchor: None,
        }
    }

    /// Returns when the event at trace time `ns` is due, or at once when the view stopped
    /// the replay (the rest of the trace then goes through without waiting).
    pub fn wait(&mut self, ns: u64) {
        loop {
            if self.playback.stopped() {
                return;
            }
            if self.playback.paused() {
                // Resumes from this event, as if the pause had not been.
                self.anchor = None;
                thread::sleep(STEP);
                continue;
            }
            let speed = self.playback.speed();
            let (trace_ns, shown, anchored_speed) =
                *self.anchor.get_or_insert((ns, Instant::now(), speed));
            if anchored_speed != speed {
                self.anchor = Some((ns, Instant::now(), speed));
                continue;
            }
            let due = shown + Duration::from_nanos(ns.saturating_sub(trace_ns) / u64::from(speed));
            let now = Instant::now();
            if now >= due {
                return;
            }
            thread::sleep((due - now).min(STEP));
        }
    }
}
