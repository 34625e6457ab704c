//! `tracer_exporter_items_total{exporter,outcome}`: what became of the items offered to
//! each exporter (see `output::exporter`), read from the exporters' own counters at each
//! scrape, so nothing is added up twice.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter},
};

use crate::output::exporter::{ExportOutcome, NamedCounters};

/// The running exporters' counters, by name; clones share them.
#[derive(Clone, Debug, Default)]
pub struct ExporterOutcomes(Arc<Mutex<Vec<NamedCounters>>>);

impl ExporterOutcomes {
    pub fn watch(&self, exporters: Vec<NamedCounters>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(exporters);
    }
}

impl Collector for ExporterOutcomes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let exporters = self.0.lock().unwrap_or_else(PoisonError::into_inner);
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
                ConstCounter::new(counts.get(outcome)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
