//! `tracer_exporter_items_total{exporter,outcome}`: what became of the items offered to
//! each exporter (see `output::exporter`), read from the exporters' own counters at each
//! scrape, so nothing is added up twice; and, with `--otlp-endpoint`,
//! `tracer_otlp_dropped_total{signal}`: the records the OTLP exporter did not deliver
//! (its items not exported) and the metrics collections it did not.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter},
};

use crate::output::exporter::{ExportOutcome, NamedCounters};

/// The name of the OTLP logs exporter (`output::otlp::logs`).
const OTLP: &str = "otlp";

#[derive(Debug, Default)]
struct Watched {
    exporters: Vec<NamedCounters>,
    /// The OTLP metrics collections not delivered.
    otlp_metrics_dropped: Option<Arc<AtomicU64>>,
}

/// The running exporters' counters, by name; clones share them.
#[derive(Clone, Debug, Default)]
pub struct ExporterOutcomes(Arc<Mutex<Watched>>);

impl ExporterOutcomes {
    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn watch(&self, exporters: Vec<NamedCounters>) {
        self.watched().exporters.extend(exporters);
    }

    pub fn watch_otlp_metrics(&self, dropped: Arc<AtomicU64>) {
        self.watched().otlp_metrics_dropped = Some(dropped);
    }
}

impl Collector for ExporterOutcomes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let watched = self.watched();
        let exporters = &watched.exporters;
        {
            let mut family = encoder.encode_descriptor(
                "exporter_items",
                "Items offered to each exporter, by what became of them: exported, dropped because its queue was full, failed to send, or still queued at exit (unsent).",
                None,
                MetricType::Counter,
            )?;
            for (exporter, counters) in exporters.iter() {
                let counts = counters.snapshot();
                for &outcome in ExportOutcome::ALL {
                    let labels = [("exporter", *exporter), ("outcome", outcome.name())];
                    ConstCounter::new(counts.get(outcome))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let logs = exporters.iter().find(|(name, _)| *name == OTLP);
        if logs.is_none() && watched.otlp_metrics_dropped.is_none() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "otlp_dropped",
            "What the OTLP exporter did not deliver: connection records (logs: its queue was full, the collector did not take them, or they were still queued at exit) and metrics collections (metrics).",
            None,
            MetricType::Counter,
        )?;
        if let Some((_, counters)) = logs {
            let counts = counters.snapshot();
            let dropped = counts.queue_full + counts.failed + counts.unsent;
            ConstCounter::new(dropped).encode(family.encode_family(&[("signal", "logs")])?)?;
        }
        if let Some(dropped) = &watched.otlp_metrics_dropped {
            let dropped = dropped.load(Ordering::Relaxed);
            ConstCounter::new(dropped).encode(family.encode_family(&[("signal", "metrics")])?)?;
        }
        Ok(())
    }
}
