//! What a report is drawn from, collected from the replay of a recorded trace
//! ([`Collector`]): every connection record, each response's time, and what the trace
//! and its replay could not turn into records.

use std::{collections::BTreeMap, io};

use crate::{
    clock::WallClock,
    event::TraceEvent,
    kernel::attach::AttachPlan,
    output::{RecordEnd, Sink, StopSummary},
    pipeline::{
        correlator::{ConnectionRecord, ResponseTime},
        reader::LossCause,
    },
};

/// Connections drawn (a flow graph each, a bar on the timeline): the first written.
/// Those beyond are counted, tabled and listed, without their events.
pub const DRAWN: usize = 1_000;

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Collected {
    /// In the order they were written (as they ended); the first [`DRAWN`] keep their
    /// events.
    pub records: Vec<ConnectionRecord>,
    pub responses: Vec<ResponseTime>,
    /// Events the recording tracer lost, by cause (its `lost` lines).
    pub lost: BTreeMap<&'static str, u64>,
    /// Kernel records it could not decode (its `undecodable` lines).
    pub undecodable: u64,
    /// Events of the trace (each became part of a record, or is counted in `stop`).
    pub events: u64,
    /// What the replay left without a record.
    pub stop: StopSummary,
}

/// The sink of a report's replay.
#[derive(Debug, Default)]
pub struct Collector(pub Collected);

impl Sink for Collector {
    fn tracer_start(&mut self, _: &str, _: &AttachPlan, _: &[u16]) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, _clock: WallClock, _event: &TraceEvent) -> io::Result<()> {
        self.0.events += 1;
        Ok(())
    }

    fn connection(
        &mut self,
        _clock: WallClock,
        record: &ConnectionRecord,
        _end: RecordEnd,
    ) -> io::Result<()> {
        let mut record = record.clone();
        if self.0.records.len() >= DRAWN {
            record.events = Vec::new();
        }
        self.0.records.push(record);
        Ok(())
    }

    fn response(&mut self, response: &ResponseTime) -> io::Result<()> {
        self.0.responses.push(*response);
        Ok(())
    }

    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        *self.0.lost.entry(cause.name()).or_default() += count;
        Ok(())
    }

    fn undecodable(&mut self, count: u64, _reason: &str) -> io::Result<()> {
        self.0.undecodable += count;
        Ok(())
    }

    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        self.0.stop = summary.clone();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
