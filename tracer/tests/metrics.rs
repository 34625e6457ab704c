//! `--metrics-addr`: a real Prometheus scrapes the tracer every second while a scenario
//! drives a known set of connections (an exchange, a refused connect, a reset,
//! retransmits, keepalive probes answered and a keepalive timeout), and its answers to
//! PromQL queries are the counts the tracer's own lines show (the scenario runs once;
//! one test per group of families checks it); `promtool check metrics` accepts real
//! scrapes; `--emit events` counts the records it does not write; bad addresses fail in
//! one line.

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    panic,
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use crate::support::{
    PacketDrop, Tracer, exclusive, free_port, is_event,
    prometheus::{PROMETHEUS_ACCEPT, Prometheus, poll_until, scrape},
    shared,
    sockets::{connected_pair, keepalive_pair},
    tracer_bin,
};
use serde_json::Value;

/// Every family and its type, as the classic text format declares them.
const FAMILIES: [(&str, &str); 22] = [
    ("tracer_connections_total", "counter"),
    ("tracer_connection_failures_total", "counter"),
    ("tracer_open_connections", "gauge"),
    ("tracer_time_wait_sockets", "gauge"),
    ("tracer_handshake_seconds", "histogram"),
    ("tracer_connection_duration_seconds", "histogram"),
    ("tracer_response_seconds", "histogram"),
    ("tracer_idle_before_close_seconds", "histogram"),
    ("tracer_requests_per_connection", "histogram"),
    ("tracer_resets_total", "counter"),
    ("tracer_retransmits_total", "counter"),
    ("tracer_keepalive_probes_total", "counter"),
    ("tracer_keepalive_timeouts_total", "counter"),
    ("tracer_events_total", "counter"),
    ("tracer_events_lost_total", "counter"),
    ("tracer_records_total", "counter"),
    ("tracer_undecodable_total", "counter"),
    ("tracer_build_info", "gauge"),
    ("tracer_hook_info", "gauge"),
    ("tracer_bpf_run_seconds_total", "counter"),
    ("tracer_bpf_runs_total", "counter"),
    ("tracer_exporter_items_total", "counter"),
];

/// The lines that are not kernel events.
const NOT_EVENTS: [&str; 5] = [
    "tracer_start",
    "connection",
    "tracer_stop",
    "lost",
    "undecodable",
];

/// `tracer --port P... --metrics-addr 127.0.0.1:<free port>` with more `args`, and that
/// address.
fn start_with_metrics(ports: &[u16], args: &[&str]) -> (Tracer, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")));
    let mut command = Tracer::command(ports);
    command
        .arg("--metrics-addr")
        .arg(addr.to_string())
        .args(args);
    (Tracer::spawn(command), addr)
}

/// Values by label values, zeros left out.
type Series = BTreeMap<Vec<String>, f64>;

/// `sum by (labels) (metric)`.
fn promql(metric: &str, labels: &[&str]) -> String {
    format!("sum by ({}) ({metric})", labels.join(","))
}

/// What Prometheus answers to `sum by (labels) (metric)` at `at`.
fn prometheus_sums(prometheus: &Prometheus, at: f64, metric: &str, labels: &[&str]) -> Series {
    prometheus
        .query(&promql(metric, labels), at)
        .into_iter()
        .filter(|(_, value)| *value != 0.0)
        .map(|(series, value)| {
            let key = labels.iter().map(|label| series[*label].clone()).collect();
            (key, value)
        })
        .collect()
}

/// What the lines say the series are: `values` summed by key, zeros left out.
fn tally(values: impl IntoIterator<Item = (Vec<String>, f64)>) -> Series {
    let mut tally = Series::new();
    for (key, value) in values {
        *tally.entry(key).or_default() += value;
    }
    tally.retain(|_, value| *value != 0.0);
    tally
}

fn assert_agree(what: &str, prometheus: &Series, lines: &Series) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(
        prometheus.len() == lines.len()
            && prometheus
                .iter()
                .zip(lines)
                .all(|((ka, a), (kb, b))| ka == kb && close(*a, *b)),
        "{what}: Prometheus says {prometheus:#?}\nthe lines say {lines:#?}"
    );
}

/// The traced port a line's connection matched, as the `port` label says it.
fn traced_port(line: &Value, traced: &[u16]) -> String {
    let port = |field: &str| -> u16 {
        let addr: SocketAddr = line[field].as_str().unwrap().parse().unwrap();
        addr.port()
    };
    let local = port("local");
    if traced.contains(&local) {
        local
    } else {
        port("remote")
    }
    .to_string()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap().to_owned()
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap()
}

/// Closes `client` first and waits for the server to read the end, then closes it.
fn close(client: TcpStream, mut server: TcpStream) {
    drop(client);
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
}

fn ends(client: &TcpStream) -> (SocketAddr, SocketAddr) {
    (client.local_addr().unwrap(), client.peer_addr().unwrap())
}

/// Every query the scenario's tests ask Prometheus: the metric and the labels it is summed
/// by.
const QUERIES: [(&str, &[&str]); 24] = [
    (
        "tracer_connections_total",
        &["port", "role", "close_initiator"],
    ),
    ("tracer_records_total", &["record"]),
    ("tracer_open_connections", &["port", "role"]),
    ("tracer_handshake_seconds_count", &["port", "role"]),
    ("tracer_handshake_seconds_sum", &["port", "role"]),
    (
        "tracer_connection_duration_seconds_count",
        &["port", "role"],
    ),
    ("tracer_connection_duration_seconds_sum", &["port", "role"]),
    ("tracer_idle_before_close_seconds_count", &["port", "role"]),
    ("tracer_idle_before_close_seconds_sum", &["port", "role"]),
    ("tracer_requests_per_connection_count", &["port", "role"]),
    ("tracer_requests_per_connection_sum", &["port", "role"]),
    ("tracer_response_seconds_count", &["port", "role"]),
    ("tracer_response_seconds_sum", &["port", "role"]),
    ("tracer_resets_total", &["port", "direction", "reason"]),
    ("tracer_retransmits_total", &["port"]),
    ("tracer_keepalive_probes_total", &["port", "outcome"]),
    ("tracer_keepalive_timeouts_total", &["port"]),
    ("tracer_events_total", &["kind"]),
    ("tracer_events_lost_total", &[]),
    ("tracer_undecodable_total", &[]),
    ("tracer_build_info", &["version", "kernel"]),
    ("tracer_hook_info", &["hook", "mechanism"]),
    ("tracer_bpf_runs_total", &[]),
    ("tracer_bpf_run_seconds_total", &[]),
];

/// What the scenario leaves for its tests to check: the traced ports, the tracer's lines
/// and Prometheus' answers to [`QUERIES`], all at one scrape made after the scenario.
struct Scenario {
    traced: [u16; 4],
    lines: Vec<Value>,
    answers: BTreeMap<String, Series>,
}

/// The scenario, run once for all the tests that check it, with the machine to itself
/// (`--bpf-stats`, a real Prometheus). When it fails, each of those tests fails with its
/// message.
fn scenario() -> &'static Scenario {
    static SCENARIO: OnceLock<Result<Scenario, String>> = OnceLock::new();
    SCENARIO
        .get_or_init(|| {
            let _machine = exclusive();
            panic::catch_unwind(run_scenario).map_err(|payload| {
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            })
        })
        .as_ref()
        .unwrap_or_else(|message| panic!("the metrics scenario failed: {message}"))
}

/// Drives a known set of connections on four traced ports while Prometheus scrapes the
/// tracer: an exchange, a refused connect, a reset, retransmits, keepalive probes
/// answered and a keepalive timeout.
fn run_scenario() -> Scenario {
    let traced: [u16; 4] = std::array::from_fn(|_| free_port("127.0.0.1"));
    let [port, refused, lossy, timeout] = traced;
    let (mut tracer, metrics) = start_with_metrics(&traced, &["--bpf-stats"]);
    let prometheus = Prometheus::start(metrics);
    // Every socket's local address: each has a record to wait for.
    let mut sockets = Vec::new();

    // One exchange, seen open by Prometheus, then the client closes first.
    let (mut client, mut server) = connected_pair(port);
    client.write_all(b"ping").unwrap();
    server.read_exact(&mut [0u8; 4]).unwrap();
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut [0u8; 4]).unwrap();
    for role in ["client", "server"] {
        let open = format!("tracer_open_connections{{port=\"{port}\",role=\"{role}\"}}");
        prometheus.wait_for_value(&open, 1.0);
    }
    sockets.extend([ends(&client).0, ends(&server).0]);
    close(client, server);

    // Nobody listens on `refused`: the kernel refuses with a reset.
    let error = TcpStream::connect(("127.0.0.1", refused)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);

    // SO_LINGER 0: the client resets the connection.
    let (client, mut server) = connected_pair(port);
    sockets.extend([ends(&client).0, ends(&server).0]);
    rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);
    let error = server.read(&mut [0u8; 1]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);

    // The data to the server dropped for a while: retransmitted.
    let (mut client, mut server) = connected_pair(lossy);
    let (client_addr, server_addr) = ends(&client);
    sockets.extend([client_addr, server_addr]);
    let to_server = PacketDrop::new(&format!("tcp dport {lossy}"));
    client.write_all(b"again").unwrap();
    tracer.wait_for("a retransmit", |l| {
        is_event(l, "retransmit", client_addr, server_addr)
    });
    drop(to_server);
    server.read_exact(&mut [0u8; 5]).unwrap();
    close(client, server);

    // Keepalive probes, answered, then a normal close.
    let (client, server) = keepalive_pair(port, 5);
    let (client_addr, server_addr) = ends(&client);
    sockets.extend([client_addr, server_addr]);
    let probe = |l: &Value| is_event(l, "keepalive_probe", client_addr, server_addr);
    let first = tracer.wait_for("a keepalive probe", probe);
    tracer.wait_for("a second keepalive probe", |l| {
        probe(l) && l["ts"] != first["ts"]
    });
    close(client, server);

    // The server's answers to the probes never arrive: the keepalive timer gives up.
    let (mut client, server) = keepalive_pair(timeout, 3);
    let (client_addr, server_addr) = ends(&client);
    sockets.extend([client_addr, server_addr]);
    let silence = PacketDrop::new(&format!("tcp sport {timeout}"));
    tracer.wait_for("the keepalive timeout", |l| {
        is_event(l, "keepalive_timeout", client_addr, server_addr)
    });
    drop(silence);
    let error = client.read(&mut [0u8; 1]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TimedOut);
    drop(server);

    for socket in &sockets {
        tracer.wait_for(&format!("the record of {socket}"), |l| {
            l["event"] == "connection" && l["local"] == socket.to_string()
        });
    }
    tracer.wait_for("the refused connection's record", |l| {
        l["event"] == "connection" && l["remote"] == format!("127.0.0.1:{refused}")
    });
    // Every query at the time of one scrape made after all that.
    let at = prometheus.scrape_after(SystemTime::now());
    let (status, lines) = tracer.stop();
    assert!(status.success());
    let answers = QUERIES
        .iter()
        .map(|(metric, labels)| {
            let sums = prometheus_sums(&prometheus, at, metric, labels);
            (promql(metric, labels), sums)
        })
        .collect();
    Scenario {
        traced,
        lines,
        answers,
    }
}

impl Scenario {
    /// Prometheus' answer to `sum by (labels) (metric)`, one of [`QUERIES`].
    fn sums(&self, metric: &str, labels: &[&str]) -> &Series {
        let promql = promql(metric, labels);
        self.answers
            .get(&promql)
            .unwrap_or_else(|| panic!("{promql} is not among the QUERIES"))
    }

    /// The connection records.
    fn records(&self) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["event"] == "connection")
            .collect()
    }

    /// The records of closed connections.
    fn closed(&self) -> Vec<&Value> {
        self.records()
            .into_iter()
            .filter(|r| r["record"] == "closed")
            .collect()
    }

    fn port(&self, line: &Value) -> String {
        traced_port(line, &self.traced)
    }

    fn port_role(&self, record: &Value) -> Vec<String> {
        vec![self.port(record), text(&record["role"])]
    }

    /// The kernel events among the lines.
    fn events(&self) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| !NOT_EVENTS.contains(&l["event"].as_str().unwrap()))
            .collect()
    }
}

#[test]
fn prometheus_counts_connections_and_records_as_the_lines_show() {
    let scenario = scenario();
    let records = scenario.records();
    let connections = tally(records.iter().map(|r| {
        let initiator = text(&r["close_initiator"]);
        ([scenario.port_role(r), vec![initiator]].concat(), 1.0)
    }));
    for initiator in [
        "local",
        "remote",
        "reset_sent",
        "reset_received",
        "keepalive_timeout",
    ] {
        assert!(
            connections.keys().any(|key| key[2] == initiator),
            "the scenario has a {initiator} close: {connections:#?}"
        );
    }
    assert_agree(
        "tracer_connections_total",
        scenario.sums(
            "tracer_connections_total",
            &["port", "role", "close_initiator"],
        ),
        &connections,
    );
    assert_agree(
        "tracer_records_total",
        scenario.sums("tracer_records_total", &["record"]),
        &tally(records.iter().map(|r| (vec![text(&r["record"])], 1.0))),
    );
    assert_agree(
        "tracer_open_connections",
        scenario.sums("tracer_open_connections", &["port", "role"]),
        &Series::new(),
    );
}

/// The histograms: how many observations, and their sum.
#[test]
fn prometheus_histograms_count_and_sum_what_the_records_say() {
    let scenario = scenario();
    let (records, closed) = (scenario.records(), scenario.closed());
    let by = ["port", "role"];
    let histograms: [(&str, &[&Value], &str, f64); 4] = [
        ("tracer_handshake_seconds", &records, "handshake_us", 1e-6),
        (
            "tracer_connection_duration_seconds",
            &closed,
            "duration_us",
            1e-6,
        ),
        (
            "tracer_idle_before_close_seconds",
            &closed,
            "idle_before_close_us",
            1e-6,
        ),
        ("tracer_requests_per_connection", &closed, "requests", 1.0),
    ];
    for (family, observed, field, unit) in histograms {
        let observed: Vec<&Value> = observed
            .iter()
            .copied()
            .filter(|r| !r[field].is_null())
            .collect();
        assert_agree(
            &format!("{family}_count"),
            scenario.sums(&format!("{family}_count"), &by),
            &tally(observed.iter().map(|r| (scenario.port_role(r), 1.0))),
        );
        assert_agree(
            &format!("{family}_sum"),
            scenario.sums(&format!("{family}_sum"), &by),
            &tally(
                observed
                    .iter()
                    .map(|r| (scenario.port_role(r), number(&r[field]) * unit)),
            ),
        );
    }
    // Response times, one observation per answered request: as the closed records
    // count and sum them.
    let answered: Vec<&Value> = closed
        .iter()
        .copied()
        .filter(|r| !r["response_time_us"].is_null())
        .collect();
    assert!(!answered.is_empty(), "no record answered a request");
    assert_agree(
        "tracer_response_seconds_count",
        scenario.sums("tracer_response_seconds_count", &by),
        &tally(answered.iter().map(|r| {
            let count = number(&r["response_time_us"]["count"]);
            (scenario.port_role(r), count)
        })),
    );
    assert_agree(
        "tracer_response_seconds_sum",
        scenario.sums("tracer_response_seconds_sum", &by),
        &tally(answered.iter().map(|r| {
            let total = number(&r["response_time_us"]["total"]) * 1e-6;
            (scenario.port_role(r), total)
        })),
    );
}

/// Resets and retransmits, as the event lines tell them.
#[test]
fn prometheus_counts_resets_and_retransmits_as_the_events_show() {
    let scenario = scenario();
    let lines = &scenario.lines;
    let resets = tally(lines.iter().filter(|l| l["event"] == "reset").map(|l| {
        let reason = l["reason"].as_str().unwrap_or("none").to_owned();
        let key = vec![scenario.port(l), text(&l["direction"]), reason];
        (key, 1.0)
    }));
    assert!(
        resets.keys().any(|key| key[1] == "sent") && resets.keys().any(|key| key[1] == "received"),
        "{resets:#?}"
    );
    assert_agree(
        "tracer_resets_total",
        scenario.sums("tracer_resets_total", &["port", "direction", "reason"]),
        &resets,
    );
    let retransmits = tally(
        lines
            .iter()
            .filter(|l| l["event"] == "retransmit")
            .map(|l| (vec![scenario.port(l)], 1.0)),
    );
    let [_, _, lossy, _] = scenario.traced;
    assert!(retransmits.contains_key(&vec![lossy.to_string()]));
    assert_agree(
        "tracer_retransmits_total",
        scenario.sums("tracer_retransmits_total", &["port"]),
        &retransmits,
    );
}

/// Keepalive, as the records count it.
#[test]
fn prometheus_counts_keepalive_as_the_records_show() {
    let scenario = scenario();
    let records = scenario.records();
    let probes = tally(records.iter().flat_map(|r| {
        let sent = number(&r["keepalive"]["probes_sent"]);
        let answered = number(&r["keepalive"]["probes_answered"]);
        let port = scenario.port(r);
        [
            (vec![port.clone(), "answered".to_owned()], answered),
            (vec![port, "unanswered".to_owned()], sent - answered),
        ]
    }));
    // The scenario's probes: answered on `port`, unanswered before the timeout.
    let [port, _, _, timeout] = scenario.traced;
    for (port, outcome) in [(port, "answered"), (timeout, "unanswered")] {
        let key = vec![port.to_string(), outcome.to_owned()];
        assert!(probes.contains_key(&key), "{key:?}: {records:#?}");
    }
    assert_agree(
        "tracer_keepalive_probes_total",
        scenario.sums("tracer_keepalive_probes_total", &["port", "outcome"]),
        &probes,
    );
    assert_agree(
        "tracer_keepalive_timeouts_total",
        scenario.sums("tracer_keepalive_timeouts_total", &["port"]),
        &tally(
            records
                .iter()
                .filter(|r| r["keepalive"]["timed_out"] == true)
                .map(|r| (vec![scenario.port(r)], 1.0)),
        ),
    );
}

/// tracer itself: its events, losses, build and hooks.
#[test]
fn prometheus_counts_the_tracers_own_events_and_hooks() {
    let scenario = scenario();
    let lines = &scenario.lines;
    assert_agree(
        "tracer_events_total",
        scenario.sums("tracer_events_total", &["kind"]),
        &tally(
            scenario
                .events()
                .iter()
                .map(|l| (vec![text(&l["event"])], 1.0)),
        ),
    );
    for (family, event) in [
        ("tracer_events_lost_total", "lost"),
        ("tracer_undecodable_total", "undecodable"),
    ] {
        assert_agree(
            family,
            scenario.sums(family, &[]),
            &tally(
                lines
                    .iter()
                    .filter(|l| l["event"] == event)
                    .map(|l| (vec![], number(&l["count"]))),
            ),
        );
    }
    let start = &lines[0];
    assert_agree(
        "tracer_build_info",
        scenario.sums("tracer_build_info", &["version", "kernel"]),
        &tally([(vec![text(&start["version"]), text(&start["kernel"])], 1.0)]),
    );
    let attached = start["attach"].as_object().unwrap().iter();
    let unsupported = start["unsupported"].as_object().into_iter().flatten();
    let hooks = attached
        .map(|(hook, how)| (vec![hook.clone(), text(how)], 1.0))
        .chain(unsupported.map(|(hook, _)| (vec![hook.clone(), "unsupported".to_owned()], 1.0)));
    assert_agree(
        "tracer_hook_info",
        scenario.sums("tracer_hook_info", &["hook", "mechanism"]),
        &tally(hooks),
    );
}

/// --bpf-stats: each event came from a program's run (the existing ones from sock_diag
/// excepted); the kernel counts every run, other ports' included.
#[test]
fn bpf_stats_count_every_run_of_the_programs() {
    let scenario = scenario();
    let runs = scenario.sums("tracer_bpf_runs_total", &[]);
    let from_programs = scenario
        .events()
        .iter()
        .filter(|l| l["event"] != "existing")
        .count();
    assert!(
        runs[&vec![]] >= from_programs as f64,
        "{runs:?} < {from_programs}"
    );
    assert!(scenario.sums("tracer_bpf_run_seconds_total", &[])[&vec![]] > 0.0);
}

/// `promtool check metrics` on an exposition: its complaints, if any.
fn promtool(exposition: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run promtool (Debian's prometheus package: cargo xtask setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (!output.status.success() || !said.is_empty()).then_some(said)
}

#[test]
fn scrapes_declare_every_family_and_pass_promtool() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let (mut tracer, metrics) = start_with_metrics(&[port], &[]);
    let (content_type, before) = scrape(metrics, None);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for (family, kind) in FAMILIES {
        assert!(
            before.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} is not declared as a {kind}:\n{before}"
        );
    }
    assert_eq!(promtool(&before), None, "{before}");

    let (client, server) = connected_pair(port);
    let sockets = [ends(&client).0, ends(&server).0];
    close(client, server);
    for socket in sockets {
        tracer.wait_for("its record", |l| {
            l["event"] == "connection" && l["local"] == socket.to_string()
        });
    }
    let (_, after) = scrape(metrics, None);
    assert!(
        after.contains(&format!(
            "tracer_connections_total{{port=\"{port}\",role=\"client\",close_initiator=\"local\"}} 1\n"
        )),
        "{after}"
    );
    assert_eq!(promtool(&after), None, "{after}");

    // What Prometheus asks for is what it gets.
    let (content_type, openmetrics) = scrape(metrics, Some(PROMETHEUS_ACCEPT));
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
}

#[test]
fn emit_events_counts_the_records_it_does_not_write() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let (tracer, metrics) = start_with_metrics(&[port], &["--emit", "events"]);
    let (client, server) = connected_pair(port);
    close(client, server);
    let closed = "tracer_records_total{record=\"closed\"} 2\n";
    poll_until(
        "two records counted",
        || tracer.stderr(),
        || scrape(metrics, None).1.contains(closed).then_some(()),
    );
    let (_, exposition) = scrape(metrics, None);
    for (role, initiator) in [("client", "local"), ("server", "remote")] {
        let series = format!(
            "tracer_connections_total{{port=\"{port}\",role=\"{role}\",close_initiator=\"{initiator}\"}} 1\n"
        );
        assert!(exposition.contains(&series), "{series}in{exposition}");
    }
    let (status, lines) = tracer.stop();
    assert!(status.success());
    assert!(lines.iter().any(|l| l["event"] == "state_change"));
    assert!(
        lines.iter().all(|l| l["event"] != "connection"),
        "--emit events writes no records"
    );
}

/// Runs `tracer ARGS` to its end: (exit code, standard error).
fn fail(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(tracer_bin()).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_metrics_addresses_fail_in_one_line() {
    let _machine = shared();
    let port = free_port("127.0.0.1").to_string();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let (code, stderr) = fail(&["--port", &port, "--metrics-addr", &taken]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "tracer: --metrics-addr {taken}: cannot listen there: Address already in use (os error 98)\n"
        )
    );

    let (code, stderr) = fail(&["--port", &port, "--metrics-addr", "localhost"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: invalid value 'localhost' for '--metrics-addr <HOST:PORT>': invalid socket address syntax\n"
        ),
        "{stderr}"
    );
    let (code, stderr) = fail(&["--port", &port, "--bpf-stats"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--metrics-addr"), "{stderr}");
}

/// The dashboard's queries are PromQL (as `promtool check rules` parses it) on these
/// families.
#[test]
fn dashboard_queries_are_promql_on_the_families() {
    let _machine = shared();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana-dashboard.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .map(|target| {
            text(&target["expr"])
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$port", ".*")
        })
        .collect();
    assert!(queries.len() >= 15, "{queries:?}");
    for query in &queries {
        let names = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("tracer_"));
        for name in names {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                FAMILIES.iter().any(|(known, _)| *known == family),
                "{name} in {query}"
            );
        }
    }
    // JSON is YAML: a rules file promtool reads.
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(n, query)| serde_json::json!({ "record": format!("dashboard:query{n}"), "expr": query }))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    let groups = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(file.path(), groups.to_string()).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(file.path())
        .output()
        .expect("cannot run promtool (Debian's prometheus package: cargo xtask setup)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// docs/metrics.md's alert rules, as the doc prints them: `promtool check rules` accepts
/// them, and `promtool test rules` fires them on series taken from a real scrape. One
/// traced port sees a completed connection, another only refused connects: with those
/// series repeating each minute, `TcpResetsHigh` fires for the second port's clients
/// alone, and the alerts on timeouts and lost events stay quiet.
#[test]
fn the_documented_alert_rules_fire_on_a_real_scrape() {
    let _machine = shared();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .unwrap();
    let rules = doc
        .split("## What to alert on")
        .nth(1)
        .and_then(|section| section.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/metrics.md has a yaml block under \"What to alert on\"");

    let (completed, refused) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let (mut tracer, metrics) = start_with_metrics(&[completed, refused], &[]);
    let (client, server) = connected_pair(completed);
    let client_end = ends(&client).0;
    close(client, server);
    assert!(TcpStream::connect(("127.0.0.1", refused)).is_err());
    for (what, port) in [
        ("the completed client's record", client_end.port()),
        ("the refused record", 0),
    ] {
        tracer.wait_for(what, |l| {
            l["event"] == "connection"
                && if port == 0 {
                    l["remote"] == format!("127.0.0.1:{refused}")
                } else {
                    l["local"] == client_end.to_string()
                }
        });
    }
    let (_, exposition) = scrape(metrics, None);
    // Each counter's sample from the scrape, growing by as much again every minute.
    let series: Vec<Value> = exposition
        .lines()
        .filter(|line| {
            [
                "tracer_connections_total{",
                "tracer_keepalive_timeouts_total{",
                "tracer_events_lost_total ",
            ]
            .iter()
            .any(|family| line.starts_with(family))
        })
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: u64 = value.parse().unwrap();
            serde_json::json!({ "series": series, "values": format!("0+{value}x40") })
        })
        .collect();
    assert!(
        series
            .iter()
            .any(|s| s["series"].as_str().unwrap().contains("reset_received")),
        "no reset in the scrape:\n{exposition}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let alert = |name: &str, alerts: Value| serde_json::json!({ "eval_time": "30m", "alertname": name, "exp_alerts": alerts });
    let tests = serde_json::json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                alert("TcpResetsHigh", serde_json::json!([
                    { "exp_labels": { "port": refused.to_string(), "role": "client" } }
                ])),
                alert("TcpKeepaliveTimeouts", serde_json::json!([])),
                alert("TracerLosingEvents", serde_json::json!([])),
            ],
        }],
    });
    std::fs::write(dir.path().join("tests.yml"), tests.to_string()).unwrap();
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "tests.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("cannot run promtool (Debian's prometheus package: cargo xtask setup)");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
