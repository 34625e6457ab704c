//! The exporter of `connection` records as OTLP log records: one log record per
//! connection, its timestamp the connection's end, its body the record as the lines write
//! it, its attributes [`attributes::of`] it. Batches of up to [`BATCH`] records are sent
//! with the `opentelemetry-otlp` crate's exporter; a batch the collector does not take is
//! tried again with a doubling wait for up to [`RETRY_FOR`], then counted as failed. Its
//! queue meanwhile fills and drops what does not fit, counted too; delivery resumes with
//! the next batch once the collector answers.

use std::{
    io,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;
use opentelemetry::{
    InstrumentationScope,
    logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity},
};
use opentelemetry_otlp::LogExporter;
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider,
};
use serde_json::Value;

use super::{BATCH, OtlpConfig, RETRY_FOR, attributes, build_exporter};
use crate::{
    clock::WallClock,
    output::{
        RecordEnd,
        exporter::{self, Export, Exporter},
        json::{line::Timestamps, write_record},
    },
    pipeline::{Emit, correlator::ConnectionRecord},
};

/// Connection records to OTLP log records, and their delivery.
pub struct OtlpLogs {
    exporter: LogExporter,
    /// Makes the SDK's log records; it has no processor: the records are handed to
    /// `exporter` here, so every one's fate is known and counted.
    logger: SdkLogger,
    _provider: SdkLoggerProvider,
    scope: InstrumentationScope,
    timestamps: Timestamps,
    line: Vec<u8>,
    /// A failed delivery has been said on stderr (once: the counts say the rest).
    warned: bool,
}

impl OtlpLogs {
    /// The exporter `config` asks for, its resource naming this host and `kernel`.
    pub fn new(config: &OtlpConfig, kernel: &str) -> Result<Self> {
        // Made in the exporters' runtime: the client's tasks run there.
        let mut exporter = {
            let _exporters = exporter::runtime()?.enter();
            build_exporter!(LogExporter::builder(), config, &config.logs_tls, "/v1/logs")?
        };
        exporter.set_resource(&attributes::resource(kernel));
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("tracer");
        let scope = InstrumentationScope::builder("tracer")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Self {
            exporter,
            logger,
            _provider: provider,
            scope,
            timestamps: Timestamps::default(),
            line: Vec::new(),
            warned: false,
        })
    }

    fn log_record(
        &mut self,
        clock: WallClock,
        record: &ConnectionRecord,
        end: RecordEnd,
    ) -> SdkLogRecord {
        let mut log = self.logger.create_log_record();
        log.set_event_name("tcp.connection");
        log.set_timestamp(clock.to_system_time(record.end_ns));
        log.set_observed_timestamp(SystemTime::now());
        let (severity, text) = match record.outcome.failed() {
            true => (Severity::Warn, "WARN"),
            false => (Severity::Info, "INFO"),
        };
        log.set_severity_number(severity);
        log.set_severity_text(text);
        self.line.clear();
        write_record(&mut self.line, &mut self.timestamps, clock, record, end);
        let body = serde_json::from_slice::<Value>(&self.line).ok();
        if let Some(body) = body.as_ref().and_then(attributes::any_value) {
            log.set_body(body);
        }
        for (key, value) in attributes::of(record) {
            log.add_attribute(key, value);
        }
        log
    }
}

impl Exporter for OtlpLogs {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn wants(&self) -> Emit {
        Emit::Connections
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn export(&mut self, batch: Vec<Export>) -> io::Result<()> {
        let logs: Vec<SdkLogRecord> = batch
            .into_iter()
            .filter_map(|item| match item {
                Export::Connection { clock, record, end } => {
                    Some(self.log_record(clock, &record, end))
                }
                Export::Event { .. } => None,
            })
            .collect();
        let scoped: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            logs.iter().map(|log| (log, &self.scope)).collect();
        let started = Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            // The crate's own batch type (documented as meant for its processors): the
            // pinned version takes it from exporters' callers too.
            let error = match self.exporter.export(LogBatch::new(&scoped)).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if !self.warned {
                self.warned = true;
                eprintln!(
                    "tracer: warning: the OTLP collector did not take a batch ({error}): retrying; what cannot be delivered is counted in tracer_exporter_items_total and tracer_stop"
                );
            }
            if started.elapsed() + wait > RETRY_FOR {
                return Err(io::Error::other(error.to_string()));
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
