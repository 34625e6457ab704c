//! `--otlp-endpoint`: the connection records sent to a collector as OTLP log records,
//! received by a test collector that decodes the real requests (`support::otlp`, with
//! opentelemetry-proto's messages) over HTTP and over gRPC. Each record arrives once,
//! its body equal to the record's JSON line, its attributes and resource as documented;
//! a collector down for 10 s under load loses nothing silently: delivered and dropped add
//! up to the records written. Over TLS, with the specification's certificate and header
//! variables, to a collector that requires a client certificate. Not run in the kernel matrix's guests: what it checks does
//! not depend on the kernel beyond the records the other tests check there.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::Stdio,
    thread,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    metrics::v1::{NumberDataPoint, number_data_point},
};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Map, Value};

use crate::support::{
    Tracer, exclusive, free_port, lines_of,
    load::Load,
    otlp::{Collector, Pki, ReceivedLog, Transport},
    refusal, scenario, shared, wait_exit, wait_for_start, wait_until,
};

/// An OTLP value as JSON, for comparing with the record's line.
pub(crate) fn json(value: &AnyValue) -> Value {
    match value.value.as_ref() {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::from(s.clone()),
        Some(Any::BoolValue(b)) => Value::from(*b),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => Value::from(*d),
        Some(Any::ArrayValue(list)) => Value::Array(list.values.iter().map(json).collect()),
        Some(Any::KvlistValue(map)) => Value::Object(attributes(&map.values)),
        Some(Any::BytesValue(bytes)) => Value::from(format!("{bytes:?}")),
        Some(Any::StringValueStrindex(index)) => Value::from(format!("string #{index}")),
    }
}

pub(crate) fn attributes(list: &[KeyValue]) -> Map<String, Value> {
    list.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
        .collect()
}

/// `line` without its `null` fields, at every depth (the log record's body leaves them
/// out: OpenTelemetry values have no null).
fn without_nulls(line: &Value) -> Value {
    match line {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn nanos(ts: &Value) -> u64 {
    let time = humantime::parse_rfc3339(ts.as_str().unwrap()).unwrap();
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Each record of `lines` and the log record that carries it (by `conn_id`), checked
/// field by field.
fn check_logs(lines: &[Value], logs: &[ReceivedLog]) {
    let records: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "connection")
        .collect();
    let bodies: BTreeMap<u64, (Value, &ReceivedLog)> = logs
        .iter()
        .map(|log| {
            let body = json(log.record.body.as_ref().expect("a body"));
            (body["conn_id"].as_u64().unwrap(), (body, log))
        })
        .collect();
    assert_eq!(logs.len(), records.len(), "each record once: {logs:#?}");
    assert_eq!(bodies.len(), records.len(), "distinct records");
    for record in records {
        let (body, log) = &bodies[&record["conn_id"].as_u64().unwrap()];
        assert_eq!(
            body,
            &without_nulls(record),
            "the body is the record's line"
        );
        assert_eq!(log.record.time_unix_nano, nanos(&record["end"]), "{record}");
        assert_eq!(log.record.event_name, "tcp.connection");
        let attributes = attributes(&log.record.attributes);
        let end = |field: &str| {
            record[field]
                .as_str()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
        };
        let (local, remote) = (end("local"), end("remote"));
        let (server, client) = match record["role"].as_str() {
            Some("server") => (local, remote),
            _ => (remote, local),
        };
        let expected = [
            ("network.transport", Value::from("tcp")),
            ("network.type", record["family"].clone()),
            ("network.peer.address", Value::from(remote.ip().to_string())),
            ("network.peer.port", Value::from(remote.port())),
            ("server.port", Value::from(server.port())),
            ("client.address", Value::from(client.ip().to_string())),
            ("tcp.outcome", record["outcome"].clone()),
            ("tcp.close_initiator", record["close_initiator"].clone()),
            ("process.pid", record["pid"].clone()),
        ];
        for (key, value) in expected {
            assert_eq!(attributes.get(key), Some(&value), "{key} of {record}");
        }
        let resource = self::attributes(&log.resource);
        assert_eq!(resource["service.name"], "tracer");
        assert_eq!(resource["os.type"], "linux");
        assert!(resource["host.name"].is_string(), "{resource:?}");
    }
}

/// The scenario's records over OTLP/HTTP, then over OTLP/gRPC: each arrives once, equal
/// to its line, and `tracer_stop` counts them exported.
#[test]
fn records_arrive_as_log_records_over_http_and_grpc() {
    let _machine = shared();
    for (transport, protocol) in [
        (Transport::Http, "http/protobuf"),
        (Transport::Grpc, "grpc"),
    ] {
        let collector = Collector::start(transport);
        let endpoint = collector.endpoint();
        let args = ["--otlp-endpoint", &endpoint, "--otlp-protocol", protocol];
        let trace = scenario::record_with(&args, || {});
        let logs = collector.logs();
        check_logs(&trace.lines, &logs);
        let stop = trace.lines.last().unwrap();
        assert_eq!(stop["event"], "tracer_stop");
        let counts = &stop["exporters"]["otlp"];
        assert_eq!(counts["exported"], logs.len() as u64, "{protocol}: {stop}");
        assert_eq!(counts["failed"], 0, "{protocol}: {stop}");
    }
}

/// Over TLS to a collector with a private CA that requires a client certificate, both
/// given by the specification's variables (`OTEL_EXPORTER_OTLP_CERTIFICATE`,
/// `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`), and headers by `OTEL_EXPORTER_OTLP_HEADERS`
/// (values URL-encoded, as the specification says): over HTTP and gRPC, every record
/// arrives as it does in the clear, the metrics arrive too, and every request carries
/// the headers.
#[test]
fn records_and_metrics_arrive_over_tls_with_a_client_certificate_and_headers() {
    let _machine = shared();
    let pki = Pki::new();
    let mut env = pki.variables();
    env.push((
        "OTEL_EXPORTER_OTLP_HEADERS".into(),
        "authorization=Bearer%20s3cret,x-tenant=blue".into(),
    ));
    for (transport, protocol) in [
        (Transport::Http, "http/protobuf"),
        (Transport::Grpc, "grpc"),
    ] {
        let collector = Collector::start_tls(transport, &pki);
        let endpoint = collector.endpoint();
        assert!(endpoint.starts_with("https://"), "{endpoint}");
        let args = [
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            protocol,
            "--otlp-metrics-interval",
            "1s",
        ];
        let trace = scenario::record_with_env(&args, &env, || {});
        check_logs(&trace.lines, &collector.logs());
        assert!(!collector.metrics().is_empty(), "{protocol}: no metrics");
        let headers = collector.headers();
        assert!(headers.len() >= 2, "{protocol}: {headers:?}");
        for request in &headers {
            let header = |name: &str| request.get(name).map(String::as_str);
            assert_eq!(header("authorization"), Some("Bearer s3cret"), "{protocol}");
            assert_eq!(header("x-tenant"), Some("blue"), "{protocol}");
        }
    }
}

/// A TLS file that cannot be read stops tracer at start, in one line naming the variable
/// and the file; so does a client certificate without its key.
#[test]
fn an_unreadable_tls_file_is_named_in_one_line() {
    let _machine = shared();
    let pki = Pki::new();
    let missing = pki.dir.path().join("missing.pem");
    let client = pki.dir.path().join("client.pem");
    let cases = [
        (
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
            missing.display().to_string(),
            "cannot read OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            client.display().to_string(),
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without its pair",
        ),
    ];
    for protocol in ["http/protobuf", "grpc"] {
        for (variable, value, says) in &cases {
            let stderr = refusal(
                Tracer::command(&[free_port("127.0.0.1")])
                    .args(["--otlp-endpoint", "https://127.0.0.1:4318"])
                    .args(["--otlp-protocol", protocol])
                    .env(variable, value),
            );
            assert!(stderr.contains(says), "{protocol}: {stderr}");
            if *variable == "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE" {
                assert!(stderr.contains(value.as_str()), "the file named: {stderr}");
            }
        }
    }
}

/// A collector down for 10 s while connections churn: the exporter's queue fills and
/// drops, its batch is tried again; once the collector is back, delivery resumes. What
/// the collector received is what tracer counts exported, and exported plus dropped
/// (queue full, failed, unsent) is every record written.
#[test]
fn a_collector_down_for_10_s_under_load_loses_nothing_silently() {
    let _machine = exclusive();
    let mut collector = Collector::start(Transport::Http);
    let port = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tracer.json");
    let prometheus: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let mut tracer = Tracer::command(&[port])
        .args(["--emit", "connections"])
        .args(["--otlp-endpoint", &collector.endpoint()])
        .args(["--otlp-metrics-interval", "1s"])
        .args(["--metrics-addr", &prometheus.to_string()])
        .arg("--output")
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_start(&file);
    let load = Load::start(port, 1);
    wait_until("records delivered", || !collector.logs().is_empty());
    collector.pause();
    let down = Instant::now();
    thread::sleep(Duration::from_secs(10));
    collector.resume();
    println!("collector down for {:?}", down.elapsed());
    let before = collector.logs().len();
    wait_until("delivery resumed", || collector.logs().len() > before);
    let served = load.stop();
    let count = || {
        (lines_of(&file).iter())
            .filter(|l| l["event"] == "connection")
            .count() as u64
    };
    wait_until("every connection's two records", || count() == 2 * served);
    // No record comes after this one: what the queue dropped, it has dropped by now.
    let scrape = crate::support::prometheus::scrape(prometheus, None).1;
    let dropped_total = |signal: &str| -> u64 {
        let series = format!("tracer_otlp_dropped_total{{signal=\"{signal}\"}} ");
        let line = scrape.lines().find(|l| l.starts_with(&series));
        line.unwrap_or_else(|| panic!("no {series} in\n{scrape}"))[series.len()..]
            .parse()
            .unwrap()
    };
    kill_process(Pid::from_raw(tracer.id() as i32).unwrap(), Signal::TERM).unwrap();
    assert!(wait_exit(&mut tracer).success());
    let lines = lines_of(&file);
    let written = count();
    let stop = &lines.last().unwrap()["exporters"]["otlp"];
    let outcome = |name: &str| stop[name].as_u64().unwrap();
    let dropped = outcome("queue_full") + outcome("failed") + outcome("unsent");
    println!("written {written}, {stop}");
    assert_eq!(outcome("exported"), collector.logs().len() as u64, "{stop}");
    assert_eq!(outcome("exported") + dropped, written, "{stop}");
    assert!(
        dropped > 0,
        "the outage dropped nothing: make the load heavier ({stop})"
    );
    // The metric counts the same (what is still queued at exit is counted then).
    assert_eq!(
        dropped_total("logs"),
        outcome("queue_full") + outcome("failed"),
        "{stop}"
    );
    assert!(
        dropped_total("metrics") > 0,
        "no metrics collection was lost in 10 s"
    );
}

/// A Prometheus exposition's samples: (name, labels, value).
fn samples(scrape: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    (scrape.lines())
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = (labels.split(','))
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().unwrap())
        })
        .collect()
}

/// An OTLP data point's attributes as label values.
fn labels(list: &[KeyValue]) -> BTreeMap<String, String> {
    (attributes(list).into_iter())
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect()
}

/// A data point's number, integer or not.
fn number(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => f64::NAN,
    }
}

/// The metrics sent over OTLP equal the Prometheus scrape of the same run: every
/// counter series (its value by its labels), every sampled gauge's series and every
/// histogram's count and sum, the
/// last collection sent at exit against a scrape after the last record.
#[test]
fn metrics_over_otlp_equal_the_prometheus_scrape() {
    let _machine = shared();
    for (transport, protocol) in [
        (Transport::Http, "http/protobuf"),
        (Transport::Grpc, "grpc"),
    ] {
        metrics_equal_the_scrape(transport, protocol);
    }
}

fn metrics_equal_the_scrape(transport: Transport, protocol: &str) {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let collector = Collector::start(transport);
    let endpoint = collector.endpoint();
    let prometheus: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let addr = prometheus.to_string();
    let args = [
        "--otlp-endpoint",
        &endpoint,
        "--otlp-metrics-interval",
        "1s",
        "--metrics-addr",
        &addr,
        "--otlp-protocol",
        protocol,
    ];
    let mut scrape = String::new();
    scenario::record_with(&args, || {
        // Once every record is written, the open connections' next sample is 0 each, and
        // stays so: a scrape from then on agrees with the collection sent at exit.
        wait_until("no connection sampled open", || {
            scrape = crate::support::prometheus::scrape(prometheus, None).1;
            (samples(&scrape).iter())
                .all(|(name, _, value)| name != "tracer_open_connections" || *value == 0.0)
        });
    });
    let requests = collector.metrics();
    assert!(
        requests.len() >= 2,
        "sent every second and at exit: {}",
        requests.len()
    );
    let last = requests.last().unwrap();
    let metrics: BTreeMap<String, &Data> = (last.resource_metrics.iter())
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| (m.name.clone(), m.data.as_ref().unwrap()))
        .collect();
    let samples = samples(&scrape);
    let series = |name: &str| -> BTreeMap<BTreeMap<String, String>, f64> {
        (samples.iter())
            .filter(|(n, _, value)| n == name && *value != 0.0)
            .map(|(_, labels, value)| (labels.clone(), *value))
            .collect()
    };
    let counters = [
        ("tracer_connections_total", "tracer.connections"),
        (
            "tracer_connection_failures_total",
            "tracer.connection.failures",
        ),
        ("tracer_resets_total", "tracer.resets"),
        ("tracer_events_total", "tracer.events"),
        ("tracer_records_total", "tracer.records"),
    ];
    for (prometheus, otel) in counters {
        let Some(Data::Sum(sum)) = metrics.get(otel) else {
            panic!("no sum {otel} in {:#?}", metrics.keys());
        };
        assert_eq!(sum.aggregation_temporality, 2, "cumulative");
        let sent: BTreeMap<BTreeMap<String, String>, f64> = (sum.data_points.iter())
            .map(|p| (labels(&p.attributes), number(p)))
            .filter(|(_, value)| *value != 0.0)
            .collect();
        let scraped = series(prometheus);
        assert!(!scraped.is_empty(), "{prometheus} counted nothing");
        assert_eq!(sent, scraped, "{protocol}: {otel} against {prometheus}");
    }
    // The programs' costs, as the kernel counts them: the same programs, and each count
    // sent at exit at least the one scraped (the kernel's counters only grow, and a
    // sample may come between the scrape and the exit).
    for (prometheus, otel) in [
        ("tracer_bpf_runs_total", "tracer.bpf.runs"),
        ("tracer_bpf_run_seconds_total", "tracer.bpf.run_time"),
    ] {
        let Some(Data::Sum(sum)) = metrics.get(otel) else {
            panic!("no sum {otel} in {:#?}", metrics.keys());
        };
        assert!(sum.is_monotonic, "{otel}");
        let sent: BTreeMap<BTreeMap<String, String>, f64> = (sum.data_points.iter())
            .map(|p| (labels(&p.attributes), number(p)))
            .collect();
        let scraped: BTreeMap<BTreeMap<String, String>, f64> = (samples.iter())
            .filter(|(name, ..)| name == prometheus)
            .map(|(_, labels, value)| (labels.clone(), *value))
            .collect();
        assert!(!scraped.is_empty(), "no {prometheus} series");
        assert_eq!(
            sent.keys().collect::<Vec<_>>(),
            scraped.keys().collect::<Vec<_>>(),
            "{protocol}: {otel}'s programs"
        );
        for (program, value) in &scraped {
            assert!(sent[program] >= *value, "{protocol}: {otel} {program:?}");
        }
    }
    // The sampled gauges: every series, 0 included (each is declared at 0 on both sides).
    for (prometheus, otel) in [
        ("tracer_open_connections", "tracer.connections.open"),
        ("tracer_time_wait_sockets", "tracer.time_wait.sockets"),
    ] {
        let Some(Data::Gauge(gauge)) = metrics.get(otel) else {
            panic!("no gauge {otel} in {:#?}", metrics.keys());
        };
        let sent: BTreeMap<BTreeMap<String, String>, f64> = (gauge.data_points.iter())
            .map(|p| (labels(&p.attributes), number(p)))
            .filter(|(_, value)| *value != 0.0)
            .collect();
        assert_eq!(
            sent,
            series(prometheus),
            "{protocol}: {otel} against {prometheus}"
        );
    }
    for (prometheus, otel) in [
        ("tracer_handshake_seconds", "tracer.handshake.duration"),
        ("tracer_response_seconds", "tracer.response.duration"),
    ] {
        let Some(Data::Histogram(histogram)) = metrics.get(otel) else {
            panic!("no histogram {otel}");
        };
        let count = series(&format!("{prometheus}_count"));
        let sum = series(&format!("{prometheus}_sum"));
        assert!(!count.is_empty(), "{prometheus} observed nothing");
        for point in &histogram.data_points {
            let labels = labels(&point.attributes);
            assert_eq!(
                count.get(&labels),
                Some(&(point.count as f64)),
                "{otel} {labels:?}"
            );
            let scraped = sum[&labels];
            let sent = point.sum.unwrap();
            assert!(
                (scraped - sent).abs() < 1e-9,
                "{otel} {labels:?}: {sent} against {scraped}"
            );
        }
        assert_eq!(histogram.data_points.len(), count.len(), "{otel}");
    }
}
