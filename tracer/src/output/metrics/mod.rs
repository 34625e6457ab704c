//! `--metrics-addr`: Prometheus metrics of the traced ports' connections and of tracer
//! itself, served at `/metrics` while tracing ([`server`]); docs/metrics.md lists them and
//! says why prometheus-client.
//!
//! The metrics count everything the pipeline produces, whatever `--emit` writes: with
//! metrics on, the pipeline runs in full (the correlator included) into a [`MetricsSink`],
//! which counts each event and record and passes everything on, for the lines to take
//! what `--emit` asks to write (`output::route`). What no event says, the connections open now and the eBPF
//! programs' cost, the daemon samples once a second ([`Metrics::sample`]), and the
//! TIME_WAIT sockets it counts less often ([`Metrics::time_wait_sockets`]).

mod exporters;
mod families;
mod programs;
mod server;
mod sink;

use std::{collections::BTreeMap, net::SocketAddr, os::fd::AsFd as _};

use anyhow::{Context as _, Result};
use aya::programs::ProgramFd;
use prometheus_client::registry::Registry;

pub use self::sink::MetricsSink;
use self::{families::Families, server::Server};
use crate::{
    kernel::program_stats,
    output::{Sink, exporter::NamedCounters},
    pipeline::correlator::Role,
};

/// `--metrics-addr` and `--bpf-stats`, resolved by `cli`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics` is served.
    pub addr: SocketAddr,
    /// Turn the kernel's BPF statistics on while tracing, for the programs' cost.
    pub bpf_stats: bool,
}

/// The metrics and their endpoint, serving until dropped.
pub struct Metrics {
    families: Families,
    _server: Server,
    /// The attached programs, by name, whose cost the kernel counts.
    programs: Vec<(&'static str, ProgramFd)>,
    /// A program's cost could not be read once; said once.
    cost_error_reported: bool,
    /// The TIME_WAIT sockets could not be counted once; said once.
    time_wait_error_reported: bool,
}

impl Metrics {
    /// Registers the metrics for `ports` and serves them at `addr` from the current
    /// runtime. Fails when it cannot listen there.
    pub async fn start(addr: SocketAddr, ports: &[u16]) -> Result<Self> {
        let mut registry = Registry::with_prefix("tracer");
        let families = Families::register(&mut registry, ports);
        let server = server::start(addr, registry).await?;
        eprintln!(
            "tracer: serving metrics at http://{}{}",
            server.addr,
            server::PATH
        );
        Ok(Self {
            families,
            _server: server,
            programs: Vec::new(),
            cost_error_reported: false,
            time_wait_error_reported: false,
        })
    }

    /// Reports what `programs` cost (descriptors of their own: the programs' counts stay
    /// readable after they are detached).
    pub fn watch_programs(&mut self, programs: &[(&'static str, ProgramFd)]) -> Result<()> {
        for (name, fd) in programs {
            let fd = fd
                .try_clone()
                .with_context(|| format!("cannot keep a descriptor of the {name} program"))?;
            self.programs.push((name, fd));
        }
        Ok(())
    }

    /// A sink that counts everything the pipeline makes, then hands it to `sink`.
    pub fn counting<S: Sink>(&self, sink: S) -> MetricsSink<S> {
        MetricsSink::new(sink, self.families.clone())
    }

    /// Reports the outcomes of the items offered to each exporter.
    pub fn watch_exporters(&self, exporters: Vec<NamedCounters>) {
        self.families.exporters(exporters);
    }

    /// Samples what no event says: the connections open now, as (role, local end, remote
    /// end), and the programs' cost.
    pub fn sample(&mut self, open: impl Iterator<Item = (Role, SocketAddr, SocketAddr)>) {
        self.families.open_connections(open);
        let mut costs = Vec::with_capacity(self.programs.len());
        for (name, fd) in &self.programs {
            match program_stats::read(fd.as_fd()) {
                Ok(stats) => costs.push((*name, stats)),
                Err(error) if !self.cost_error_reported => {
                    self.cost_error_reported = true;
                    eprintln!(
                        "tracer: warning: cannot read what the {name} program costs ({error}): tracer_bpf_* leave it out"
                    );
                }
                Err(_) => {}
            }
        }
        self.families.program_costs(costs);
    }

    /// The TIME_WAIT sockets counted for each traced port (the daemon counts them with
    /// sock_diag every few seconds). A failure is said once, and the gauge keeps its last
    /// values.
    pub fn time_wait_sockets(&mut self, counts: Result<BTreeMap<u16, u64>>) {
        match counts {
            Ok(counts) => self.families.time_wait_sockets(&counts),
            Err(error) if !self.time_wait_error_reported => {
                self.time_wait_error_reported = true;
                eprintln!(
                    "tracer: warning: cannot count the TIME_WAIT sockets ({error:#}): tracer_time_wait_sockets keeps its last values"
                );
            }
            Err(_) => {}
        }
    }
}
