//! Records -> events -> connection records: [`reader`] takes the ring buffer's records,
//! [`decode`] turns them into events ([`existing`] adds the connections open before
//! tracing), and [`Pipeline`] moves events through the [`correlator`] to a sink. The
//! live daemon and `tracer replay` share [`Pipeline`].

pub mod correlator;
pub mod decode;
pub mod existing;
pub mod reader;
pub mod sock_diag;
pub mod workload;

use std::{io, net::SocketAddr};

use self::correlator::{
    CLOSE_GRACE_NS, Correlator, CorrelatorConfig, Output, Role, STALE_AFTER_NS,
};
use crate::{
    clock::WallClock,
    event::TraceEvent,
    output::{RecordEnd, Sink, StopSummary},
    vocabulary::names,
};

/// What reaches the sink: the kernel's events, the connection records, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    Events,
    Connections,
    All,
}

names!(Emit as "kind of output" {
    Events => "events",
    Connections => "connections",
    All => "all",
});

impl Emit {
    pub fn events(self) -> bool {
        self != Emit::Connections
    }

    pub fn connections(self) -> bool {
        self != Emit::Events
    }
}

/// What the pipeline makes of the events: resolved from the command line by `cli`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    pub emit: Emit,
    /// Open connections tracked at most (at least 1).
    pub max_connections: usize,
    /// Records keep their events, for a view that draws them.
    pub keep_events: bool,
}

/// What the kernel side traces, which the records depend on: from the attach plan when
/// live, from a trace's `tracer_start` line in a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traced {
    /// The data hook is attached, so connection records can count exchanges.
    pub data_turns: bool,
    /// The timewait hook is attached: `net.ipv4.tcp_fin_timeout`, nanoseconds, how long
    /// a timewait socket in FIN_WAIT2 waits for the peer's FIN.
    pub timewait_fin_timeout_ns: Option<u64>,
}

pub struct Pipeline<S: Sink> {
    pub sink: S,
    pub clock: WallClock,
    emit_events: bool,
    correlator: Option<Correlator>,
    last_boot_ns: u64,
}

impl<S: Sink> Pipeline<S> {
    pub fn new(config: PipelineConfig, traced: Traced, sink: S, clock: WallClock) -> Self {
        let correlator = config.emit.connections().then(|| {
            Correlator::new(CorrelatorConfig {
                max_connections: config.max_connections,
                stale_after_ns: STALE_AFTER_NS,
                keep_events: config.keep_events,
                data_turns: traced.data_turns,
                follow_timewait: traced.timewait_fin_timeout_ns,
            })
        });
        Self {
            sink,
            clock,
            emit_events: config.emit.events(),
            correlator,
            last_boot_ns: 0,
        }
    }

    fn write(sink: &mut S, clock: WallClock, output: Output) -> io::Result<()> {
        match output {
            Output::Connection(record) => sink.connection(clock, &record, RecordEnd::Closed),
            Output::Evicted(record) => sink.connection(clock, &record, RecordEnd::Evicted),
            Output::Reaped(record) => sink.connection(clock, &record, RecordEnd::Stale),
            Output::Ended(record) => sink.connection(clock, &record, RecordEnd::Ended),
            Output::Response(response) => sink.response(&response),
        }
    }

    /// Feeds `outputs`' records to the sink, keeping the first error.
    fn collect(
        &mut self,
        run: impl FnOnce(&mut Correlator, &mut dyn FnMut(Output)),
    ) -> io::Result<()> {
        let Some(correlator) = self.correlator.as_mut() else {
            return Ok(());
        };
        let (sink, clock) = (&mut self.sink, self.clock);
        let mut result = Ok(());
        run(correlator, &mut |output| {
            if result.is_ok() {
                result = Self::write(sink, clock, output);
            }
        });
        result
    }

    pub fn event(&mut self, event: &TraceEvent) -> io::Result<()> {
        self.last_boot_ns = self.last_boot_ns.max(event.meta().boot_ns);
        if self.emit_events {
            self.sink.event(self.clock, event)?;
        }
        self.collect(|correlator, out| correlator.observe(event, &mut |o| out(o)))
    }

    /// The connections open now, as (role, local end, remote end); none without a
    /// correlator.
    pub fn open_connections(&self) -> impl Iterator<Item = (Role, SocketAddr, SocketAddr)> {
        self.correlator.iter().flat_map(Correlator::open)
    }

    /// Writes the records that are due by boot-clock time `now_ns`: closed ones past their
    /// grace period, stale ones.
    pub fn reap(&mut self, now_ns: u64) -> io::Result<()> {
        self.collect(|correlator, out| correlator.reap(now_ns, &mut |o| out(o)))
    }

    /// Writes the records that are due after the last event: the closed ones still in
    /// their grace period.
    pub fn reap_last(&mut self) -> io::Result<()> {
        self.reap(self.last_boot_ns.saturating_add(CLOSE_GRACE_NS + 1))
    }

    /// Writes what is due after the last event (and the records waiting for a timewait
    /// socket's end, which will not be seen now) and the closing summary line, with what
    /// a live trace adds to it: the kernel's event counts, the exporters' outcomes.
    pub fn finish(&mut self, live: StopSummary) -> io::Result<()> {
        self.reap_last()?;
        self.collect(|correlator, out| correlator.release_awaiting(&mut |o| out(o)))?;
        let summary = match &self.correlator {
            Some(correlator) => {
                let stats = correlator.stats();
                StopSummary {
                    open_connections: correlator.open_connections(),
                    unmatched_events: stats.ignored_events,
                    evicted: stats.evicted,
                    stale: stats.reaped,
                    ended: stats.ended,
                    ..live
                }
            }
            None => live,
        };
        self.sink.tracer_stop(&summary)?;
        self.sink.flush()
    }
}
