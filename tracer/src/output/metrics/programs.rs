//! `tracer_bpf_run_seconds_total` and `tracer_bpf_runs_total`: the kernel's own counts of
//! the eBPF programs' runs and run time, as the daemon last sampled them (see
//! `kernel::program_stats`), written as they are at each scrape: the kernel's counters are
//! the counters, nothing is added up here.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

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
