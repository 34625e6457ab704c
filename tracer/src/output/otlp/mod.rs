//! `--otlp-endpoint URL`: each connection record sent as an OpenTelemetry log record
//! ([`logs::OtlpLogs`]) to a collector or a vendor's endpoint, over OTLP/HTTP (protobuf)
//! or OTLP/gRPC, with the `opentelemetry-otlp` crate's exporter. It runs as one of the
//! pipeline's exporters (`output::exporter`): behind a bounded queue, on a task of its
//! own, so a slow or absent collector never stalls the ring buffer's reader; what it
//! could not deliver is counted (`tracer_exporter_items_total{exporter="otlp"}`,
//! `tracer_stop`'s `exporters`).
//!
//! The endpoint is a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` is: over HTTP the logs go
//! to its `/v1/logs`. Without `--otlp-endpoint` the standard variables decide
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`), and export is on
//! when one of them is set; headers, timeout and compression are read by the crate from
//! the `OTEL_EXPORTER_OTLP_*` variables of the specification, and the TLS files by
//! [`tls`].

mod attributes;
pub mod logs;
pub mod metrics;
pub mod tls;

/// Builds one signal's `opentelemetry-otlp` exporter from its builder (`LogExporter::
/// builder()`, ...) as an [`OtlpConfig`] asks, with the signal's [`tls::TlsFiles`]: over
/// HTTP to the endpoint's `path` (`/v1/logs`), or over gRPC to the endpoint; without an
/// endpoint, to the standard variables' (the crate reads them). A macro: each signal's
/// builder is a type of its own. Evaluates to `anyhow::Result` of the exporter.
macro_rules! build_exporter {
    ($builder:expr, $config:expr, $tls:expr, $path:literal) => {{
        use anyhow::Context as _;
        use opentelemetry_otlp::{
            Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
        };
        let config: &$crate::output::otlp::OtlpConfig = $config;
        let tls: &$crate::output::otlp::tls::TlsFiles = $tls;
        let exporter = match config.protocol {
            $crate::output::otlp::OtlpProtocol::HttpProtobuf => {
                let mut http = $builder.with_http().with_protocol(Protocol::HttpBinary);
                if let Some(endpoint) = &config.endpoint {
                    let url = format!("{}{}", endpoint.trim_end_matches('/'), $path);
                    http = http.with_endpoint(url);
                }
                if let Some(client) = tls.http_client()? {
                    http = http.with_http_client(client);
                }
                http.build()
            }
            $crate::output::otlp::OtlpProtocol::Grpc => {
                let mut grpc = $builder.with_tonic().with_tls_config(tls.grpc()?);
                if let Some(endpoint) = &config.endpoint {
                    grpc = grpc.with_endpoint(endpoint.clone());
                }
                grpc.build()
            }
        };
        exporter.context(concat!("cannot make the OTLP exporter for ", $path))
    }};
}
use build_exporter;

use std::time::Duration;

use crate::vocabulary::names;

/// How the records travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (the specification's default).
    HttpProtobuf,
    /// OTLP/gRPC.
    Grpc,
}

names!(OtlpProtocol as "OTLP protocol" {
    HttpProtobuf => "http/protobuf",
    Grpc => "grpc",
});

/// The OTLP export, resolved by `cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's base URL; `None` to take the standard variables'.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// How often the metrics are sent.
    pub metrics_interval: Duration,
    /// Each signal's TLS files.
    pub logs_tls: tls::TlsFiles,
    pub metrics_tls: tls::TlsFiles,
}

/// Records waiting for the exporter at most; beyond, they are dropped and counted.
pub const QUEUE: usize = 8192;

/// Records sent in one request at most.
pub const BATCH: usize = 512;

/// How long the exporter tries to deliver a batch before it gives up on it: the first
/// retry after 500 ms, each next after twice as long.
pub const RETRY_FOR: Duration = Duration::from_secs(16);
