//! `tracer_bpf_run_seconds_total` and `tracer_bpf_runs_total`: the kernel's own counts of
//! the eBPF programs' runs and run time, as the daemon last sampled them (see
//! `kernel::program_stats`), written as they are at each scrape: the kernel's counters are
//! the counters, nothing is added up here. Over OTLP the same sample is read at each
//! collection ([`ProgramCosts::observe`]).

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use opentelemetry::{KeyValue, metrics::Meter};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter},
};

use crate::kernel::program_stats::{Costs, ProgramStats};

/// The programs' costs as last sampled; clones share them.
#[derive(Clone, Debug, Default)]
pub struct ProgramCosts(Arc<Mutex<Costs>>);

impl ProgramCosts {
    pub fn set(&self, costs: Costs) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = costs;
    }

    /// Each program's stats as last sampled.
    fn each(&self, mut each: impl FnMut(&'static str, &ProgramStats)) {
        let costs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (program, stats) in costs.iter() {
            each(program, stats);
        }
    }

    /// The same counters as OpenTelemetry observable counters (`tracer.bpf.run_time`,
    /// `tracer.bpf.runs`, attribute `program`), read from the last sample at each
    /// collection.
    pub fn observe(&self, meter: &Meter) {
        let costs = self.clone();
        meter
            .f64_observable_counter("tracer.bpf.run_time")
            .with_unit("s")
            .with_description("Time the kernel spent running each of tracer's eBPF programs")
            .with_callback(move |observer| {
                costs.each(|program, stats| {
                    let seconds = stats.run_time_ns as f64 / 1e9;
                    observer.observe(seconds, &[KeyValue::new("program", program)]);
                });
            })
            .build();
        let costs = self.clone();
        meter
            .u64_observable_counter("tracer.bpf.runs")
            .with_unit("{run}")
            .with_description("Runs of each of tracer's eBPF programs")
            .with_callback(move |observer| {
                costs.each(|program, stats| {
                    observer.observe(stats.run_count, &[KeyValue::new("program", program)]);
                });
            })
            .build();
    }
}

/// One counter family with a series per program: `value` of each program's cost.
fn encode_per_program<N: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    costs: &Costs,
    value: impl Fn(&ProgramStats) -> N,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (program, stats) in costs {
        let labels = [("program", *program)];
        ConstCounter::new(value(stats)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ProgramCosts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let costs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        encode_per_program(
            &mut encoder,
            "bpf_run_seconds",
            "Time the kernel spent running each of tracer's eBPF programs while BPF statistics were on (--bpf-stats).",
            &costs,
            |stats| stats.run_time_ns as f64 / 1e9,
        )?;
        encode_per_program(
            &mut encoder,
            "bpf_runs",
            "Runs of each of tracer's eBPF programs counted while BPF statistics were on (--bpf-stats).",
            &costs,
            |stats| stats.run_count,
        )
    }
}
