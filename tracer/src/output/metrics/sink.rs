//! The sink in front of the others when metrics are on: the pipeline hands it every event
//! and every connection record, whatever `--emit` says, so the metrics count everything;
//! it passes everything on (`output::route` filters what the lines write).

use std::io;

use super::families::Families;
use crate::{
    clock::WallClock,
    event::TraceEvent,
    kernel::{attach::AttachPlan, program_stats::Costs},
    output::{RecordEnd, Sink, StopSummary},
    pipeline::{
        correlator::{ConnectionRecord, ResponseTime},
        reader::LossCause,
    },
};

pub struct MetricsSink<S> {
    inner: S,
    families: Families,
}

impl<S: Sink> MetricsSink<S> {
    pub fn new(inner: S, families: Families) -> Self {
        Self { inner, families }
    }
}

impl<S: Sink> Sink for MetricsSink<S> {
    fn tracer_start(&mut self, kernel: &str, plan: &AttachPlan, ports: &[u16]) -> io::Result<()> {
        self.families.started(kernel, plan);
        self.inner.tracer_start(kernel, plan, ports)
    }

    fn event(&mut self, clock: WallClock, event: &TraceEvent) -> io::Result<()> {
        self.families.event(event);
        self.inner.event(clock, event)
    }

    fn connection(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> io::Result<()> {
        self.families.record(record, end);
        self.inner.connection(clock, record, end)
    }

    fn response(&mut self, response: &ResponseTime) -> io::Result<()> {
        self.families.response(response);
        self.inner.response(response)
    }

    fn program_costs(&mut self, costs: &Costs) -> io::Result<()> {
        self.families.program_costs(costs);
        self.inner.program_costs(costs)
    }

    fn lost(&mut self, count: u64, cause: LossCause) -> io::Result<()> {
        self.families.lost(count);
        self.inner.lost(count, cause)
    }

    fn undecodable(&mut self, count: u64, reason: &str) -> io::Result<()> {
        self.families.undecodable(count);
        self.inner.undecodable(count, reason)
    }

    fn tracer_stop(&mut self, summary: &StopSummary) -> io::Result<()> {
        self.inner.tracer_stop(summary)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
