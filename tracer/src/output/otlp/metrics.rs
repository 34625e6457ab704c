//! The metrics over OTLP: the families' OpenTelemetry twins (`output::metrics::otel`),
//! collected from a manual reader every `--otlp-metrics-interval` and at exit, and sent
//! by the `opentelemetry-otlp` crate's exporter with cumulative temporality, on a task of
//! the daemon's runtime. A collection the collector does not take is not tried again:
//! the next one carries the same cumulative totals. Each one not delivered is counted
//! (`tracer_otlp_dropped_total{signal="metrics"}`).

use std::{
    fmt, io,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::ResourceMetrics, exporter::PushMetricExporter as _, reader::MetricReader,
    },
};
use tokio::{sync::oneshot, task::JoinHandle};

use super::{OtlpConfig, attributes, build_exporter};
use crate::output::exporter;

/// The manual reader, shared by the meter provider (which registers it) and the task
/// that collects from it.
#[derive(Clone)]
struct SharedReader(Arc<ManualReader>);

impl fmt::Debug for SharedReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The meter the families record through, and what sends their collections.
pub struct OtlpMetrics {
    provider: SdkMeterProvider,
    reader: SharedReader,
    exporter: MetricExporter,
    interval: Duration,
    /// Collections not delivered.
    dropped: Arc<AtomicU64>,
}

impl OtlpMetrics {
    pub fn new(config: &OtlpConfig, kernel: &str) -> Result<Self> {
        let builder = MetricExporter::builder().with_temporality(Temporality::Cumulative);
        // Made in the exporters' runtime: the client's tasks run there.
        let exporter = {
            let _exporters = exporter::runtime()?.enter();
            build_exporter!(builder, config, &config.metrics_tls, "/v1/metrics")?
        };
        let reader = SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ));
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .with_resource(attributes::resource(kernel))
            .build();
        Ok(Self {
            provider,
            reader,
            exporter,
            interval: config.metrics_interval,
            dropped: Arc::default(),
        })
    }

    /// What the families record through.
    pub fn meter(&self) -> Meter {
        self.provider.meter("tracer")
    }

    /// The count of collections not delivered, shared with the metrics.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    async fn send(&self) {
        let mut collected = ResourceMetrics::default();
        let delivered = match self.reader.collect(&mut collected) {
            Ok(()) => self.exporter.export(&collected).await.is_ok(),
            Err(_) => false,
        };
        if !delivered {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends a collection every interval on a task of the exporters' runtime, and a last
    /// one when the returned handle finishes.
    pub fn spawn(self) -> io::Result<OtlpMetricsTask> {
        let (finish, mut finishing) = oneshot::channel::<()>();
        let task = exporter::runtime()?.spawn(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => self.send().await,
                    _ = &mut finishing => break,
                }
            }
            self.send().await;
        });
        Ok(OtlpMetricsTask { finish, task })
    }
}

/// The task sending the metrics.
pub struct OtlpMetricsTask {
    finish: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl OtlpMetricsTask {
    /// Sends the last collection, within `deadline`.
    pub async fn finish(mut self, deadline: Duration) {
        let _ = self.finish.send(());
        if tokio::time::timeout(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
