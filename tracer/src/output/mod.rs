//! Where the pipeline's output goes: the [`Sink`] trait, and its JSON lines
//! ([`json::JsonSink`]) and timelines for people ([`pretty::PrettySink`]), written to
//! standard output or to a rotating [`file::LogFile`]; with `--metrics-addr`, Prometheus
//! [`metrics`] in front of either.

pub mod exporter;
pub mod file;
pub mod flow;
pub mod json;
pub mod metrics;
pub mod otlp;
pub mod pretty;
pub mod route;

use std::{
    collections::BTreeMap,
    io::{self, BufWriter, IsTerminal as _, Write},
    path::PathBuf,
};

use serde::Serialize;

use self::{
    exporter::ExportCounts,
    file::{LogFile, Rotation},
    json::JsonSink,
    pretty::PrettySink,
};
use crate::{
    clock::WallClock,
    event::TraceEvent,
    kernel::{attach::AttachPlan, program_stats::Costs},
    pipeline::{
        correlator::{ConnectionRecord, ResponseTime},
        reader::{EventCounts, LossCause},
    },
    vocabulary::names,
};

/// How the lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON lines, for machines.
    Json,
    /// A flow graph per connection, for people.
    Pretty,
}

names!(Format as "format" {
    Json => "json",
    Pretty => "pretty",
});

impl Format {
    /// Whether the format draws each connection's events, which records then keep.
    pub fn draws_events(self) -> bool {
        self == Self::Pretty
    }
}

/// Where the lines go, and how: resolved from the command line by `cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputConfig {
    pub format: Format,
    /// Standard output when `None`.
    pub file: Option<FileOutput>,
}

/// An output file, and how it rotates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOutput {
    pub path: PathBuf,
    pub rotation: Option<Rotation>,
}

/// Why a connection record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordEnd {
    /// The kernel reported its close.
    Closed,
    /// Pushed out by `--max-connections`: the connection may still be open.
    Evicted,
    /// No event for a long time: its close was never seen.
    Stale,
    /// Its socket's address began another connection: it ended, without the close the
    /// kernel reports.
    Ended,
}

names!(RecordEnd as "record end" {
    Closed => "closed",
    Evicted => "evicted",
    Stale => "stale",
    Ended => "ended",
});

/// The last line: what tracing saw and did not turn into records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StopSummary {
    /// Connections still open when tracing stopped (no record written).
    pub open_connections: usize,
    /// Events for sockets without a connection record (see `correlator`).
    pub unmatched_events: u64,
    pub evicted: u64,
    pub stale: u64,
    /// Records written `ended` (see [`RecordEnd::Ended`]).
    pub ended: u64,
    /// What the kernel sent, tracer received and the ring buffer lost (live traces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventCounts>,
    /// What became of the items offered to each exporter, by name (live traces with
    /// exporters).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exporters: BTreeMap<&'static str, ExportCounts>,
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
    /// A response answered a request on an open connection (what metrics observe per
    /// exchange; the lines have it in the connection's record).
    fn response(&mut self, _response: &ResponseTime) -> io::Result<()> {
        Ok(())
    }
    /// What the eBPF programs cost the kernel so far (run time only while its BPF
    /// statistics are on), sampled about once a second while tracing live.
    fn program_costs(&mut self, _costs: &Costs) -> io::Result<()> {
        Ok(())
    }
    /// `count` events lost since the last report, and why.
    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()>;
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
    fn response(&mut self, response: &ResponseTime) -> io::Result<()> {
        (**self).response(response)
    }
    fn program_costs(&mut self, costs: &Costs) -> io::Result<()> {
        (**self).program_costs(costs)
    }
    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        (**self).lost(count, cause)
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

/// Bytes of output gathered before a write.
const OUTPUT_BUFFER: usize = 256 * 1024;

/// The sink for `format`, writing to `file` or standard output (buffered: the caller
/// flushes after each batch, so the writer below sees whole lines at each flush). Pretty
/// output is coloured on a terminal only.
pub fn open(file: Option<LogFile>, format: Format) -> Box<dyn Sink> {
    let (out, terminal): (Box<dyn Write>, bool) = match file {
        Some(file) => (Box::new(file), false),
        None => (Box::new(io::stdout()), io::stdout().is_terminal()),
    };
    // Large enough that a batch of lines costs few write calls.
    let out = BufWriter::with_capacity(OUTPUT_BUFFER, out);
    match format {
        Format::Json => Box::new(JsonSink::new(out)),
        Format::Pretty => Box::new(PrettySink::new(out, terminal)),
    }
}
