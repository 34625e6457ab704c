//! The metric families, registered once with their help text and buckets, and what fills
//! them: connection records, events, and what the daemon samples each second (open
//! connections, the programs' cost) or every few seconds (TIME_WAIT sockets). Every family is declared in every scrape from the
//! start, observed or not, so dashboards and alerts find it. Their labels (`labels`) keep
//! the number of series bounded by the ports traced. With more than [`DECLARED_PORTS`]
//! ports (a range), the
//! per-port series appear with a port's first connection instead of at start, so a range of
//! thousands of ports does not declare tens of thousands of zeros. docs/metrics.md lists the
//! families.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    hash::Hash,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{
        MetricType,
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};

use opentelemetry::metrics::Meter;

use super::{
    exporters::ExporterOutcomes,
    labels::{
        BuildLabels, ConnectionLabels, FailureLabels, HookLabels, KindLabel, PortLabel, PortRole,
        ProbeLabels, RecordLabel, ResetLabels,
    },
    otel::{Attributes, HistogramBuckets, OtelFamilies},
    programs::ProgramCosts,
    workload::{Workload, WorkloadLabels},
};
use crate::{
    event::{EventKind, TraceEvent},
    kernel::{attach::AttachPlan, program_stats::Costs, selector::matched_port},
    output::RecordEnd,
    output::exporter::NamedCounters,
    pipeline::{
        correlator::{CloseInitiator, ConnectionRecord, Outcome, ProbeFate, ResponseTime, Role},
        sock_diag::TIME_WAIT_PERIOD,
    },
};

/// Handshakes: microseconds on loopback and in a data centre, up to seconds when SYNs are
/// sent again (after 1, 3 and 7 s: the 2, 4 and 8 s bounds count one, two, three).
const HANDSHAKE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0,
];
/// Lifetimes: from a one-request connection to a keep-alive one held for a day.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];
/// Response times per exchange: the usual range of HTTP latencies.
const RESPONSE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Idle time before the close: keep-alive idle timeouts are seconds to minutes (Node 5 s,
/// nginx 75 s); a connection closed by a timeout of T lands in the first bucket above T.
const IDLE_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];
/// Requests per connection: none and one (no reuse) apart, then 1-2-5 steps.
const REQUEST_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];

/// Up to this many traced ports, every per-port series is declared (zero) at start.
pub const DECLARED_PORTS: usize = 16;

/// A gauge family set from a whole sample at a time: a series the last sample had and this
/// one lacks goes back to zero (it stays in the scrape, as a declared series would).
#[derive(Clone, Debug)]
struct SampledGauges<L> {
    family: Family<L, Gauge>,
    sampled: Arc<Mutex<BTreeSet<L>>>,
}

impl<L: Clone + Ord + Hash + EncodeLabelSet + fmt::Debug + Send + Sync + 'static> SampledGauges<L> {
    fn new(family: Family<L, Gauge>) -> Self {
        Self {
            family,
            sampled: Arc::default(),
        }
    }

    /// A series at 0 before its first sample, in the twin too.
    fn declare(&self, labels: L, otel: Option<&opentelemetry::metrics::Gauge<i64>>)
    where
        L: Attributes,
    {
        if let Some(gauge) = otel {
            gauge.record(0, &labels.attributes());
        }
        self.family.get_or_create_owned(&labels);
    }

    /// Sets each series of `sample`, and to 0 those sampled before and not now; the
    /// OpenTelemetry twin, when there is one, the same.
    fn set(&self, sample: BTreeMap<L, i64>, otel: Option<&opentelemetry::metrics::Gauge<i64>>)
    where
        L: Attributes,
    {
        let mut sampled = self.sampled.lock().unwrap_or_else(|e| e.into_inner());
        let gone = sampled.iter().filter(|labels| !sample.contains_key(labels));
        for (labels, value) in gone
            .map(|labels| (labels, 0))
            .chain(sample.iter().map(|(l, v)| (l, *v)))
        {
            self.family.get_or_create(labels).set(value);
            if let Some(gauge) = otel {
                gauge.record(value, &labels.attributes());
            }
        }
        *sampled = sample.into_keys().collect();
    }
}

/// How a family learns its histograms' buckets.
#[derive(Clone, Copy, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms = Family<PortRole, Histogram, Buckets>;

/// A family declared (`# HELP`, `# TYPE`) in every scrape, also before its first series:
/// prometheus-client leaves empty families out, as Go's client does, and would hide a
/// family until its first observation.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Registers `metric` (a handle: the registry keeps a clone) and returns it.
fn declare<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, Declared(metric.clone()));
    metric
}

fn histograms(
    registry: &mut Registry,
    name: &str,
    help: &str,
    buckets: &'static [f64],
) -> Histograms {
    declare(
        registry,
        name,
        help,
        Family::new_with_constructor(Buckets(buckets)),
    )
}

/// The traced ports, sorted: the `port` label is the one a connection matched.
#[derive(Clone, Debug)]
struct TracedPorts(Arc<[u16]>);

impl TracedPorts {
    fn matched(&self, local: SocketAddr, remote: SocketAddr) -> u16 {
        matched_port(&self.0, local, remote)
    }
}

/// Handles on every family; clones share the series.
#[derive(Clone, Debug)]
pub struct Families {
    ports: TracedPorts,
    workload: WorkloadLabels,
    connections: Family<ConnectionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    open_connections: SampledGauges<PortRole>,
    time_wait_sockets: SampledGauges<PortLabel>,
    handshake: Histograms,
    duration: Histograms,
    idle_before_close: Histograms,
    requests: Histograms,
    response: Histograms,
    resets: Family<ResetLabels, Counter>,
    retransmits: Family<PortLabel, Counter>,
    keepalive_probes: Family<ProbeLabels, Counter>,
    keepalive_timeouts: Family<PortLabel, Counter>,
    events: Family<KindLabel, Counter>,
    events_lost: Counter,
    records: Family<RecordLabel, Counter>,
    undecodable: Counter,
    build_info: Family<BuildLabels, Gauge>,
    hook_info: Family<HookLabels, Gauge>,
    program_costs: ProgramCosts,
    exporters: ExporterOutcomes,
    /// The OpenTelemetry twins of the families, with `--otlp-endpoint`.
    otel: Option<OtelFamilies>,
}

/// `tracer_resets_total`'s reason when the kernel gives none (received resets, kernels
/// before 6.10).
const NO_REASON: &str = "none";

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Families {
    /// Registers every family with `registry` (prefixed `tracer_`) for `ports`, with a
    /// zero series for every label set known in advance (so that the first increment of a
    /// counter shows in `rate()` and `increase()`).
    pub fn register(
        registry: &mut Registry,
        ports: &[u16],
        workload: WorkloadLabels,
        meter: Option<&Meter>,
    ) -> Self {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        let r = registry;
        let families = Self {
            ports: TracedPorts(ports.into()),
            workload,
            connections: declare(
                r,
                "connections",
                "Connection records written (closed, evicted or stale), by traced port, role and who closed the connection",
                Family::default(),
            ),
            failures: declare(
                r,
                "connection_failures",
                "Connections that failed (every closed record's outcome but completed), by traced port, role and outcome",
                Family::default(),
            ),
            open_connections: SampledGauges::new(declare(
                r,
                "open_connections",
                "Connections open now, by traced port and role",
                Family::default(),
            )),
            time_wait_sockets: SampledGauges::new(declare(
                r,
                "time_wait_sockets",
                &format!(
                    "Sockets in TIME_WAIT with a traced port, by the port matched (local if traced, else remote), counted every {} s",
                    TIME_WAIT_PERIOD.as_secs()
                ),
                Family::default(),
            )),
            handshake: histograms(
                r,
                "handshake_seconds",
                "Handshake time of the connections that had one observed: client SYN to ESTABLISHED, server the kernel's SYN-ACK round trip",
                HANDSHAKE_BUCKETS,
            ),
            duration: histograms(
                r,
                "connection_duration_seconds",
                "Lifetime of the closed connections, first state to CLOSE",
                DURATION_BUCKETS,
            ),
            idle_before_close: histograms(
                r,
                "idle_before_close_seconds",
                "Time from the last data to the first FIN or RST of the closed connections that carried data",
                IDLE_BUCKETS,
            ),
            requests: histograms(
                r,
                "requests_per_connection",
                "Requests (client-to-server data bursts) per closed connection (when the data hook is attached)",
                REQUEST_BUCKETS,
            ),
            resets: declare(
                r,
                "resets",
                "TCP resets sent and received, by traced port, direction and the kernel's reason (none when it gives none)",
                Family::default(),
            ),
            retransmits: declare(
                r,
                "retransmits",
                "Segments and SYN-ACKs sent again, by traced port",
                Family::default(),
            ),
            keepalive_probes: declare(
                r,
                "keepalive_probes",
                "Keepalive probes of the connections written as records, by traced port and whether the peer answered",
                Family::default(),
            ),
            keepalive_timeouts: declare(
                r,
                "keepalive_timeouts",
                "Connections the keepalive timer killed after unanswered probes, by traced port",
                Family::default(),
            ),
            events: declare(
                r,
                "events",
                "Kernel events decoded, by kind (the event lines' names)",
                Family::default(),
            ),
            events_lost: declare(
                r,
                "events_lost",
                "Events lost, for either cause of the lost lines: the ring buffer was full, or the kernel skipped a program run",
                Counter::default(),
            ),
            records: declare(
                r,
                "records",
                "Connection records written, by how they ended: closed, evicted (--max-connections) or stale",
                Family::default(),
            ),
            undecodable: declare(
                r,
                "undecodable",
                "Records from the kernel that could not be decoded (a bug worth reporting)",
                Counter::default(),
            ),
            build_info: declare(
                r,
                "build_info",
                "tracer's version and the kernel it runs on; always 1",
                Family::default(),
            ),
            hook_info: declare(
                r,
                "hook_info",
                "The mechanism carrying each hook (unsupported: not attached on this kernel); always 1",
                Family::default(),
            ),
            response: histograms(
                r,
                "response_seconds",
                "Response time of each answered request: its first byte to the response's first byte as this host saw them",
                RESPONSE_BUCKETS,
            ),
            program_costs: ProgramCosts::default(),
            exporters: ExporterOutcomes::default(),
            otel: meter.map(|meter| {
                let buckets = HistogramBuckets {
                    handshake: HANDSHAKE_BUCKETS,
                    duration: DURATION_BUCKETS,
                    idle: IDLE_BUCKETS,
                    requests: REQUEST_BUCKETS,
                    response: RESPONSE_BUCKETS,
                };
                OtelFamilies::new(meter, buckets)
            }),
        };
        r.register_collector(Box::new(families.program_costs.clone()));
        if let Some(meter) = meter {
            families.program_costs.observe(meter);
        }
        r.register_collector(Box::new(families.exporters.clone()));
        families.zero_series();
        families
    }

    /// Updates the OpenTelemetry twins, when there are.
    fn otel(&self, update: impl FnOnce(&OtelFamilies)) {
        if let Some(otel) = &self.otel {
            update(otel);
        }
    }

    fn zero_series(&self) {
        let declared: &[u16] = if self.ports.0.len() <= DECLARED_PORTS {
            &self.ports.0
        } else {
            &[]
        };
        for &port in declared {
            for connection_role in Role::ALL {
                let role = connection_role.name();
                for initiator in CloseInitiator::ALL {
                    let close_initiator = initiator.name();
                    let labels = ConnectionLabels {
                        port,
                        role,
                        close_initiator,
                        workload: Workload::new(),
                    };
                    self.connections.get_or_create_owned(&labels);
                }
                for failure in Outcome::failures() {
                    let outcome = failure.name();
                    let labels = FailureLabels {
                        port,
                        role,
                        outcome,
                        workload: Workload::new(),
                    };
                    self.failures.get_or_create_owned(&labels);
                }
            }
            let port_label = PortLabel {
                port,
                workload: Workload::new(),
            };
            self.retransmits.get_or_create_owned(&port_label);
            let otel = self.otel.as_ref();
            (self.time_wait_sockets)
                .declare(port_label.clone(), otel.map(|o| &o.time_wait_sockets));
            for connection_role in Role::ALL {
                let role = connection_role.name();
                let labels = PortRole {
                    port,
                    role,
                    workload: Workload::new(),
                };
                (self.open_connections).declare(labels, otel.map(|o| &o.open_connections));
            }
            self.keepalive_timeouts.get_or_create_owned(&port_label);
            for fate in ProbeFate::ALL {
                let outcome = fate.name();
                self.keepalive_probes.get_or_create_owned(&ProbeLabels {
                    port,
                    outcome,
                    workload: Workload::new(),
                });
            }
        }
        for kind in EventKind::ALL {
            let kind = kind.name();
            self.events.get_or_create_owned(&KindLabel { kind });
        }
        for end in RecordEnd::ALL {
            self.records
                .get_or_create_owned(&RecordLabel { record: end.name() });
        }
    }

    /// Tracing started: the build and the hooks.
    pub fn started(&self, kernel: &str, plan: &AttachPlan) {
        let version = env!("CARGO_PKG_VERSION");
        let build = BuildLabels {
            version,
            kernel: kernel.to_owned(),
        };
        self.build_info.get_or_create(&build).set(1);
        let hooks = plan
            .attach
            .iter()
            .map(|(hook, mechanism)| (hook, mechanism.name()));
        let unsupported = plan.unsupported.keys().map(|hook| (hook, "unsupported"));
        for (hook, mechanism) in hooks.chain(unsupported) {
            let labels = HookLabels {
                hook: hook.name(),
                mechanism,
            };
            self.hook_info.get_or_create(&labels).set(1);
        }
    }

    pub fn event(&self, event: &TraceEvent) {
        let kind = event.name();
        self.events.get_or_create(&KindLabel { kind }).inc();
        self.otel(|o| o.events.add(1, &KindLabel { kind }.attributes()));
        let meta = event.meta();
        let port = self.ports.matched(meta.local, meta.remote);
        let workload = || self.workload.of(meta.cgroup.as_ref());
        match event {
            TraceEvent::Reset(reset) => {
                let direction = reset.direction.name();
                let reason = reset.reason.clone().unwrap_or_else(|| NO_REASON.to_owned());
                let labels = ResetLabels {
                    port,
                    direction,
                    reason,
                    workload: workload(),
                };
                self.resets.get_or_create(&labels).inc();
                self.otel(|o| o.resets.add(1, &labels.attributes()));
            }
            TraceEvent::Retransmit(_) => {
                let labels = PortLabel {
                    port,
                    workload: workload(),
                };
                self.retransmits.get_or_create(&labels).inc();
                self.otel(|o| o.retransmits.add(1, &labels.attributes()));
            }
            _ => {}
        }
    }

    /// A connection record written (or, with `--emit events`, made and not written).
    /// Every record counts; only closed ones tell a lifetime, idle time and requests.
    pub fn record(&self, record: &ConnectionRecord, end: RecordEnd) {
        let port = self.ports.matched(record.local, record.remote);
        let role = record.role.name();
        let close_initiator = record.close_initiator.name();
        let workload = self.workload.of(record.cgroup.as_deref());
        let record_label = RecordLabel { record: end.name() };
        self.records.get_or_create(&record_label).inc();
        self.otel(|o| o.records.add(1, &record_label.attributes()));
        let labels = ConnectionLabels {
            port,
            role,
            close_initiator,
            workload: workload.clone(),
        };
        self.connections.get_or_create(&labels).inc();
        self.otel(|o| o.connections.add(1, &labels.attributes()));
        if record.outcome.failed() {
            let outcome = record.outcome.name();
            let labels = FailureLabels {
                port,
                role,
                outcome,
                workload: workload.clone(),
            };
            self.failures.get_or_create(&labels).inc();
            self.otel(|o| o.failures.add(1, &labels.attributes()));
        }
        let series = PortRole {
            port,
            role,
            workload: workload.clone(),
        };
        let observe = |histograms: &Histograms,
                       twin: fn(&OtelFamilies) -> &opentelemetry::metrics::Histogram<f64>,
                       value: f64| {
            histograms.get_or_create(&series).observe(value);
            self.otel(|o| twin(o).record(value, &series.attributes()));
        };
        if let Some(us) = record.handshake_us {
            observe(&self.handshake, |o| &o.handshake, seconds(us));
        }
        if end == RecordEnd::Closed {
            observe(&self.duration, |o| &o.duration, seconds(record.duration_us));
            if let Some(us) = record.idle_before_close_us {
                observe(
                    &self.idle_before_close,
                    |o| &o.idle_before_close,
                    seconds(us),
                );
            }
            if let Some(requests) = record.requests {
                observe(&self.requests, |o| &o.requests, requests.into());
            }
        }
        let keepalive = record.keepalive;
        let probes = |fate: ProbeFate, count: u32| {
            let outcome = fate.name();
            let labels = ProbeLabels {
                port,
                outcome,
                workload: workload.clone(),
            };
            self.keepalive_probes
                .get_or_create(&labels)
                .inc_by(count.into());
            if count > 0 {
                self.otel(|o| o.keepalive_probes.add(count.into(), &labels.attributes()));
            }
        };
        probes(ProbeFate::Answered, keepalive.probes_answered);
        probes(
            ProbeFate::Unanswered,
            keepalive
                .probes_sent
                .saturating_sub(keepalive.probes_answered),
        );
        if keepalive.timed_out {
            let labels = PortLabel { port, workload };
            self.keepalive_timeouts.get_or_create(&labels).inc();
            self.otel(|o| o.keepalive_timeouts.add(1, &labels.attributes()));
        }
    }

    /// A response answered a request.
    pub fn response(&self, response: &ResponseTime) {
        let series = PortRole {
            port: self.ports.matched(response.local, response.remote),
            role: response.role.name(),
            workload: Workload::new(),
        };
        let value = seconds(response.micros);
        self.response.get_or_create(&series).observe(value);
        self.otel(|o| o.response.record(value, &series.attributes()));
    }

    pub fn lost(&self, count: u64) {
        self.events_lost.inc_by(count);
        self.otel(|o| o.events_lost.add(count, &[]));
    }

    pub fn undecodable(&self, count: u64) {
        self.undecodable.inc_by(count);
        self.otel(|o| o.undecodable.add(count, &[]));
    }

    /// The connections open now, as (role, local end, remote end).
    pub fn open_connections(&self, open: impl Iterator<Item = (Role, SocketAddr, SocketAddr)>) {
        let mut counts: BTreeMap<PortRole, i64> = BTreeMap::new();
        for (connection_role, local, remote) in open {
            let port = self.ports.matched(local, remote);
            *counts
                .entry(PortRole {
                    port,
                    role: connection_role.name(),
                    workload: Workload::new(),
                })
                .or_default() += 1;
        }
        let otel = self.otel.as_ref().map(|o| &o.open_connections);
        self.open_connections.set(counts, otel);
    }

    /// The TIME_WAIT sockets of each traced port now (ports without any left out).
    pub fn time_wait_sockets(&self, counts: &BTreeMap<u16, u64>) {
        self.time_wait_sockets.set(
            counts
                .iter()
                .map(|(&port, &count)| {
                    let labels = PortLabel {
                        port,
                        workload: Workload::new(),
                    };
                    (labels, i64::try_from(count).unwrap_or(i64::MAX))
                })
                .collect(),
            self.otel.as_ref().map(|o| &o.time_wait_sockets),
        );
    }

    /// The programs' cost as the kernel counts it now.
    pub fn program_costs(&self, costs: &Costs) {
        self.program_costs.set(costs.clone());
    }

    /// Reports what becomes of the items offered to these exporters.
    pub fn exporters(&self, exporters: Vec<NamedCounters>) {
        self.exporters.watch(exporters);
    }

    /// Reports the OTLP metrics collections not delivered.
    pub fn otlp_metrics(&self, dropped: Arc<AtomicU64>) {
        self.exporters.watch_otlp_metrics(dropped);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text;

    use super::*;
    use crate::kernel::program_stats::ProgramStats;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn samples_become_series_by_traced_port() {
        let mut registry = Registry::with_prefix("tracer");
        let families =
            Families::register(&mut registry, &[8191, 80], WorkloadLabels::default(), None);
        let ends = |local: &str, remote: &str| (local.parse().unwrap(), remote.parse().unwrap());
        let (client_local, client_remote) = ends("127.0.0.1:41000", "127.0.0.1:8191");
        let (server_local, server_remote) = ends("[::1]:80", "[::1]:41001");
        families.open_connections(
            [
                (Role::Client, client_local, client_remote),
                (Role::Server, server_local, server_remote),
            ]
            .into_iter(),
        );
        let stats = ProgramStats {
            run_time_ns: 1_500_000,
            run_count: 12,
            recursion_misses: 0,
        };
        families.program_costs(&vec![("inet_sock_set_state", stats)]);
        let text = exposition(&registry);
        for line in [
            r#"tracer_open_connections{port="8191",role="client"} 1"#,
            r#"tracer_open_connections{port="8191",role="server"} 0"#,
            r#"tracer_open_connections{port="80",role="server"} 1"#,
            r#"tracer_bpf_run_seconds_total{program="inet_sock_set_state"} 0.0015"#,
            r#"tracer_bpf_runs_total{program="inet_sock_set_state"} 12"#,
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }

        // Nothing open any more: back to zero, not gone.
        families.open_connections(std::iter::empty());
        let text = exposition(&registry);
        assert!(text.contains("tracer_open_connections{port=\"8191\",role=\"client\"} 0\n"));
    }

    #[test]
    fn time_wait_counts_become_a_gauge_by_traced_port() {
        let mut registry = Registry::with_prefix("tracer");
        let families =
            Families::register(&mut registry, &[8191, 80], WorkloadLabels::default(), None);
        let text = exposition(&registry);
        assert!(
            text.contains("# TYPE tracer_time_wait_sockets gauge\n"),
            "{text}"
        );
        for port in [8191, 80] {
            let line = format!("tracer_time_wait_sockets{{port=\"{port}\"}} 0\n");
            assert!(
                text.contains(&line),
                "a zero series from the start: {line} in\n{text}"
            );
        }

        families.time_wait_sockets(&BTreeMap::from([(8191, 31_000), (80, 2)]));
        let text = exposition(&registry);
        assert!(
            text.contains("tracer_time_wait_sockets{port=\"8191\"} 31000\n"),
            "{text}"
        );
        assert!(
            text.contains("tracer_time_wait_sockets{port=\"80\"} 2\n"),
            "{text}"
        );

        // All gone: back to zero, not gone.
        families.time_wait_sockets(&BTreeMap::from([(8191, 0), (80, 0)]));
        let text = exposition(&registry);
        assert!(
            text.contains("tracer_time_wait_sockets{port=\"8191\"} 0\n"),
            "{text}"
        );
    }

    /// A range of ports declares no per-port series at start; a port's series appear with
    /// its first sample and go back to zero, not away, when the next sample lacks it.
    #[test]
    fn a_range_of_ports_declares_series_as_they_are_seen() {
        let mut registry = Registry::with_prefix("tracer");
        let ports: Vec<u16> = (8000..=8100).collect();
        let families = Families::register(&mut registry, &ports, WorkloadLabels::default(), None);
        let text = exposition(&registry);
        assert!(!text.contains("port=\"8000\""), "{text}");
        assert!(
            text.contains("# TYPE tracer_time_wait_sockets gauge\n"),
            "{text}"
        );

        families.time_wait_sockets(&BTreeMap::from([(8050, 3)]));
        let ends = |local: &str, remote: &str| (local.parse().unwrap(), remote.parse().unwrap());
        let (local, remote) = ends("127.0.0.1:41000", "127.0.0.1:8077");
        families.open_connections([(Role::Client, local, remote)].into_iter());
        let text = exposition(&registry);
        assert!(
            text.contains("tracer_time_wait_sockets{port=\"8050\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("tracer_open_connections{port=\"8077\",role=\"client\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("port=\"8051\""), "{text}");

        families.time_wait_sockets(&BTreeMap::new());
        families.open_connections(std::iter::empty());
        let text = exposition(&registry);
        assert!(
            text.contains("tracer_time_wait_sockets{port=\"8050\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("tracer_open_connections{port=\"8077\",role=\"client\"} 0\n"),
            "{text}"
        );
    }

    /// The exporters' family is declared before any exporter runs, and then has a series
    /// for each outcome of each exporter.
    #[test]
    fn exporter_outcomes_are_declared_then_counted() {
        let mut registry = Registry::with_prefix("tracer");
        let families = Families::register(&mut registry, &[8191], WorkloadLabels::default(), None);
        let family = "# TYPE tracer_exporter_items_total counter\n";
        assert!(exposition(&registry).contains(family));
        families.exporters(vec![("otlp", Arc::default())]);
        let text = exposition(&registry);
        for outcome in ["exported", "queue_full", "failed", "unsent"] {
            let line = format!(
                "tracer_exporter_items_total{{exporter=\"otlp\",outcome=\"{outcome}\"}} 0\n"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
