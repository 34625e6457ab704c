//! The tracer's metrics as Prometheus sees them: a scrape of the endpoint, and a real
//! Prometheus server (Debian's `prometheus` package) scraping it every second, with its
//! configuration and storage in a directory of its own, answering PromQL queries through
//! its HTTP API.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use tempfile::TempDir;

use super::{DEADLINE, free_port};

/// How often a condition on Prometheus is checked again.
const POLL: Duration = Duration::from_millis(200);

/// What Prometheus 2.42 sends as `Accept` when it scrapes.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Tries `attempt` until it gives a value, for at most [`DEADLINE`]; on failure the panic
/// shows `diagnostics`.
pub fn poll_until<T>(
    what: &str,
    diagnostics: impl Fn() -> String,
    mut attempt: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}\n{}",
            diagnostics()
        );
        thread::sleep(POLL);
    }
}

/// `time` in seconds since the epoch, as Prometheus counts time.
pub fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `GET http://addr/metrics` with this `Accept` (none when `None`): (content type, body).
pub fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut request = ureq::get(format!("http://{addr}/metrics"));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request
        .call()
        .unwrap_or_else(|e| panic!("cannot scrape {addr}: {e}"));
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.body_mut().read_to_string().unwrap())
}

/// A Prometheus server scraping one target every second; stopped on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free port, scraping `target` every second, and waits until
    /// it is ready.
    pub fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tracer\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .unwrap();
        let log = File::create(dir.path().join("log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot run prometheus (Debian's prometheus package: cargo xtask setup)");
        let prometheus = Self { child, addr, dir };
        prometheus.wait_until("Prometheus is ready", || {
            ureq::get(format!("http://{addr}/-/ready")).call().is_ok()
        });
        prometheus
    }

    fn log(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        format!("Prometheus' log:\n{log}")
    }

    fn wait_until(&self, what: &str, condition: impl Fn() -> bool) {
        poll_until(what, || self.log(), || condition().then_some(()));
    }

    /// The instant vector `promql` evaluated at `at` (seconds since the epoch, as
    /// [`epoch_seconds`]): each series' labels and value.
    pub fn query(&self, promql: &str, at: f64) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut response = ureq::get(format!("http://{}/api/v1/query", self.addr))
            .query("query", promql)
            .query("time", at.to_string())
            .call()
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let answer: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{promql} is not a vector: {answer}"))
            .iter()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone()).unwrap();
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// Waits for a scrape of the target that started after `after`, and returns its time,
    /// at which queries see what the target served then.
    pub fn scrape_after(&self, after: SystemTime) -> f64 {
        poll_until(
            "a scrape of the tracer",
            || self.log(),
            || {
                // `timestamp()` of a selector, not of an expression (that would be the
                // query's time).
                let [(_, time)] = self.query("timestamp(up)", epoch_seconds(SystemTime::now()))[..]
                else {
                    return None;
                };
                let succeeded = matches!(self.query("up", time)[..], [(_, up)] if up == 1.0);
                (time > epoch_seconds(after) && succeeded).then_some(time)
            },
        )
    }

    /// Waits until `promql` (one series) is `expected`: for what is sampled, not counted.
    pub fn wait_for_value(&self, promql: &str, expected: f64) {
        self.wait_until(&format!("{promql} == {expected}"), || {
            let answer = self.query(promql, epoch_seconds(SystemTime::now()));
            matches!(answer[..], [(_, value)] if value == expected)
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
