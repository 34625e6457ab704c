//! `--metrics-addr`: Prometheus metrics of the traced ports' connections and of tracer
//! itself, served at `/metrics` while tracing ([`server`]); docs/metrics.md lists them and
//! says why prometheus-client.
//!
//! The metrics count everything the pipeline produces, whatever `--emit` writes: with
//! metrics on, the pipeline runs in full (the correlator included) into a [`MetricsSink`],
//! which counts each event and record and passes everything on, for the lines to take
//! what `--emit` asks to write (`output::route`), and the eBPF programs' cost, which
//! the daemon samples for every sink ([`Sink::program_costs`]). The connections open now
//! the daemon samples once a second ([`Metrics::sample`]), and the TIME_WAIT sockets less
//! often ([`Metrics::time_wait_sockets`]).

mod exporters;
mod families;
mod labels;
mod otel;
mod programs;
mod server;
mod sink;
mod workload;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use anyhow::Result;
use opentelemetry::metrics::Meter;
use prometheus_client::registry::Registry;

use self::{families::Families, server::Server};
pub use self::{
    sink::MetricsSink,
    workload::{WorkloadLabel, WorkloadLabels},
};
use crate::{
    output::{Sink, exporter::NamedCounters},
    pipeline::correlator::Role,
};

/// `--metrics-addr` and `--metrics-labels`, resolved by `cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics` is served.
    pub addr: SocketAddr,
    /// The workload labels the connection families carry.
    pub labels: WorkloadLabels,
}

/// The metrics, and their endpoint serving until dropped.
pub struct Metrics {
    families: Families,
    /// `None` when only an OTLP exporter reads the metrics.
    _server: Option<Server>,
    /// The TIME_WAIT sockets could not be counted once; said once.
    time_wait_error_reported: bool,
}

impl Metrics {
    /// Registers the metrics for `ports`, served where `config` says from the current
    /// runtime (fails when it cannot listen there), and recorded through `meter` too for
    /// an OTLP exporter.
    pub async fn start(
        config: Option<&MetricsConfig>,
        ports: &[u16],
        meter: Option<&Meter>,
    ) -> Result<Self> {
        let mut registry = Registry::with_prefix("tracer");
        let labels = config.map(|c| c.labels.clone()).unwrap_or_default();
        let families = Families::register(&mut registry, ports, labels, meter);
        let server = match config {
            Some(config) => {
                let server = server::start(config.addr, registry).await?;
                eprintln!(
                    "tracer: serving metrics at http://{}{}",
                    server.addr,
                    server::PATH
                );
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            families,
            _server: server,
            time_wait_error_reported: false,
        })
    }

    /// A sink that counts everything the pipeline makes, then hands it to `sink`.
    pub fn counting<S: Sink>(&self, sink: S) -> MetricsSink<S> {
        MetricsSink::new(sink, self.families.clone())
    }

    /// Reports the outcomes of the items offered to each exporter.
    pub fn watch_exporters(&self, exporters: Vec<NamedCounters>) {
        self.families.exporters(exporters);
    }

    /// Reports the OTLP metrics collections not delivered.
    pub fn watch_otlp_metrics(&self, dropped: Arc<AtomicU64>) {
        self.families.otlp_metrics(dropped);
    }

    /// Samples what no event says: the connections open now, as (role, local end, remote
    /// end).
    pub fn sample(&mut self, open: impl Iterator<Item = (Role, SocketAddr, SocketAddr)>) {
        self.families.open_connections(open);
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
