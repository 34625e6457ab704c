//! `tracer report FILE`: a recorded trace as one HTML page to share, readable without
//! tracer and without a network: the connections by port and by peer, histograms of
//! handshake, response and idle times, a timeline, and each connection's flow graph.
//!
//! The trace is replayed through the same correlator as `tracer replay` ([`collect`]), so
//! the page's records are the ones tracer writes; it needs the trace's events (a trace
//! recorded with `--emit all`, the default, or `--emit events`): a trace of records only
//! has no flow graphs to draw and is refused, saying so.

mod collect;
mod figures;
mod page;
mod svg;

use std::{
    fs,
    io::{self, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use self::{collect::Collected, figures::Figures};
use crate::{
    pipeline::{Emit, PipelineConfig, correlator::DEFAULT_MAX_CONNECTIONS},
    replay::{self, TraceStart},
};

/// What the page shows.
pub struct Report {
    /// The trace's file name.
    pub source: String,
    pub start: TraceStart,
    pub collected: Collected,
    pub figures: Figures,
}

impl Report {
    /// Replays `trace` (`-` for standard input) into a report.
    pub fn of(trace: &Path) -> Result<Self> {
        let config = PipelineConfig {
            emit: Emit::All,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            keep_events: true,
        };
        let mut start = TraceStart::default();
        let collector = replay::feed(trace, config, collect::Collector::default(), |line, at| {
            if at.is_none() {
                start = TraceStart::read(line);
            }
        })?;
        let collected = collector.0;
        if collected.events == 0 {
            bail!(
                "{} has no events to draw connections from: record the trace with --emit all (the default) or --emit events",
                trace.display()
            );
        }
        let figures = Figures::of(&collected, &start.ports);
        let source = match trace.file_name() {
            Some(name) => name.to_string_lossy().into_owned(),
            None => "standard input".to_owned(),
        };
        Ok(Self {
            source,
            start,
            collected,
            figures,
        })
    }

    pub fn html(&self) -> String {
        page::page(self)
    }
}

/// Writes the report of `trace` to `out`, or to standard output.
pub fn run(trace: &Path, out: Option<&Path>) -> Result<()> {
    let html = Report::of(trace)?.html();
    match out {
        Some(path) => {
            fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))
        }
        None => Ok(io::stdout().lock().write_all(html.as_bytes())?),
    }
}
