//! The families as OpenTelemetry instruments, for `--otlp-endpoint`: the same counts and
//! observations, made by the same calls of [`Families`](super::families::Families) that
//! make the Prometheus series, with the same attributes as the series' labels, under
//! OpenTelemetry's names (dots, the unit apart, no `_total`). An OTLP exporter
//! (`output::otlp::metrics`) collects them on its own schedule, cumulative as the
//! Prometheus counters are. docs/metrics.md lists each family's OpenTelemetry name.

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Gauge, Histogram, Meter},
};

/// A label set's attributes: each label, named and valued as in the exposition.
pub trait Attributes {
    fn attributes(&self) -> Vec<KeyValue>;
}

/// The instruments, one per family that has an OpenTelemetry twin.
#[derive(Clone, Debug)]
pub struct OtelFamilies {
    pub connections: Counter<u64>,
    pub failures: Counter<u64>,
    pub handshake: Histogram<f64>,
    pub duration: Histogram<f64>,
    pub idle_before_close: Histogram<f64>,
    pub requests: Histogram<f64>,
    pub response: Histogram<f64>,
    pub resets: Counter<u64>,
    pub retransmits: Counter<u64>,
    pub keepalive_probes: Counter<u64>,
    pub keepalive_timeouts: Counter<u64>,
    pub events: Counter<u64>,
    pub events_lost: Counter<u64>,
    pub records: Counter<u64>,
    pub undecodable: Counter<u64>,
    pub open_connections: Gauge<i64>,
    pub time_wait_sockets: Gauge<i64>,
}

fn counter(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Counter<u64> {
    meter
        .u64_counter(name)
        .with_unit(unit)
        .with_description(help)
        .build()
}

fn gauge(meter: &Meter, name: &'static str, unit: &'static str, help: &'static str) -> Gauge<i64> {
    meter
        .i64_gauge(name)
        .with_unit(unit)
        .with_description(help)
        .build()
}

fn histogram(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    help: &'static str,
    buckets: &[f64],
) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit(unit)
        .with_description(help)
        .with_boundaries(buckets.to_vec())
        .build()
}

/// The buckets of each histogram, as the Prometheus ones have them.
pub struct HistogramBuckets<'a> {
    pub handshake: &'a [f64],
    pub duration: &'a [f64],
    pub idle: &'a [f64],
    pub requests: &'a [f64],
    pub response: &'a [f64],
}

impl OtelFamilies {
    pub fn new(meter: &Meter, buckets: HistogramBuckets) -> Self {
        Self {
            connections: counter(
                meter,
                "tracer.connections",
                "{connection}",
                "Connection records written, by traced port, role and who closed the connection",
            ),
            failures: counter(
                meter,
                "tracer.connection.failures",
                "{connection}",
                "Connections that failed, by traced port, role and outcome",
            ),
            handshake: histogram(
                meter,
                "tracer.handshake.duration",
                "s",
                "Handshake time of the connections that had one observed",
                buckets.handshake,
            ),
            duration: histogram(
                meter,
                "tracer.connection.duration",
                "s",
                "Lifetime of the closed connections",
                buckets.duration,
            ),
            idle_before_close: histogram(
                meter,
                "tracer.connection.idle_before_close",
                "s",
                "Time from the last data to the first FIN or RST of the closed connections that carried data",
                buckets.idle,
            ),
            requests: histogram(
                meter,
                "tracer.connection.requests",
                "{request}",
                "Requests per closed connection",
                buckets.requests,
            ),
            response: histogram(
                meter,
                "tracer.response.duration",
                "s",
                "Response time of each answered request",
                buckets.response,
            ),
            resets: counter(
                meter,
                "tracer.resets",
                "{reset}",
                "TCP resets sent and received, by traced port, direction and the kernel's reason",
            ),
            retransmits: counter(
                meter,
                "tracer.retransmits",
                "{segment}",
                "Segments and SYN-ACKs sent again, by traced port",
            ),
            keepalive_probes: counter(
                meter,
                "tracer.keepalive.probes",
                "{probe}",
                "Keepalive probes, by traced port and whether the peer answered",
            ),
            keepalive_timeouts: counter(
                meter,
                "tracer.keepalive.timeouts",
                "{connection}",
                "Connections the keepalive timer killed, by traced port",
            ),
            events: counter(
                meter,
                "tracer.events",
                "{event}",
                "Kernel events decoded, by kind",
            ),
            events_lost: counter(
                meter,
                "tracer.events.lost",
                "{event}",
                "Events lost: the ring buffer was full, or the kernel skipped a program run",
            ),
            records: counter(
                meter,
                "tracer.records",
                "{record}",
                "Connection records written, by how they ended",
            ),
            undecodable: counter(
                meter,
                "tracer.undecodable",
                "{record}",
                "Records from the kernel that could not be decoded",
            ),
            open_connections: gauge(
                meter,
                "tracer.connections.open",
                "{connection}",
                "Connections open now, by traced port and role",
            ),
            time_wait_sockets: gauge(
                meter,
                "tracer.time_wait.sockets",
                "{socket}",
                "Sockets in TIME_WAIT with a traced port, by traced port",
            ),
        }
    }
}
