//! Where the pipeline's output goes: the [`Sink`] trait, and its JSON lines
//! ([`json::JsonSink`]) and timelines for people ([`pretty::PrettySink`]), written to
//! standard output or to a rotating [`file::LogFile`].

pub mod file;
pub mod json;
pub mod pretty;

use std::io::{self, BufWriter, IsTerminal as _, Write};

use serde::Serialize;

use self::{file::LogFile, json::JsonSink, pretty::PrettySink};
use crate::{
    cli::Format, clock::WallClock, event::TraceEvent, kernel::attach::AttachPlan,
    pipeline::correlator::ConnectionRecord,
};

/// Why a connection record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordEnd {
    /// The kernel reported its close.
    Closed,
    /// Pushed out by `--max-connections`: the connection may still be open.
    Evicted,
    /// No event for a long time, or its socket was reused: its close was never seen.
    Stale,
}

/// The last line: what tracing saw and did not turn into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StopSummary {
    /// Connections still open when tracing stopped (no record written).
    pub open_connections: usize,
    /// Events for sockets without a connection record (see `correlator`).
    pub unmatched_events: u64,
    pub evicted: u64,
    pub stale: u64,
}

pub trait Sink {
    /// Tracing started: what is attached how, on which kernel, for which ports.
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()>;
    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()>;
    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()>;
    /// `count` events the kernel could not queue since the last report.
    fn lost(&mut self, count: u64) -> io::Result<()>;
    /// `count` records that reached tracer but could not be decoded.
    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()>;
    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        (**self).tracer_start(kernel, plan, ports)
    }
    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        (**self).event(clock, event)
    }
    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        (**self).connection(clock, record, end)
    }
    fn lost(&mut self, count: u64) -> io::Result<()> {
        (**self).lost(count)
    }
    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()> {
        (**self).undecodable(count, reason)
    }
    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        (**self).tracer_stop(summary)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

/// The sink for `format`, writing to `file` or standard output (buffered: the caller
/// flushes after each batch, so the writer below sees whole lines at each flush). Pretty
/// output is coloured on a terminal only.
pub fn open(file: Option<LogFile>, format: Format) -> Box<dyn Sink> {
    let (out, terminal): (Box<dyn Write>, bool) = match file {
        Some(file) => (Box::new(file), false),
        None => (Box::new(io::stdout()), io::stdout().is_terminal()),
    };
    let out = BufWriter::new(out);
    match format {
        Format::Json => Box::new(JsonSink::new(out)),
        Format::Pretty => Box::new(PrettySink::new(out, terminal)),
    }
}
