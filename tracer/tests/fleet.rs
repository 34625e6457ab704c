//! The fleet path of docs/deploy.md, run with real parts: the records of a traced
//! scenario loaded into the real ClickHouse engine (chdb, installed by `cargo xtask
//! setup`) by the documented table and load command, and every documented query run over
//! them. `support/clickhouse.py` takes the statements from the doc itself, so an edit
//! that breaks one fails here; the answers are checked against the records. Not run in
//! the kernel matrix's guests (no Python there).

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rustix::{
    net::{AddressFamily, SocketType, bind, connect, socket, sockopt},
    process::{Pid, Signal, kill_process},
};
use serde_json::Value;

use crate::support::{
    Tracer, free_port,
    http::{HttpClient, ServerConfig, start_server},
    lines_of, shared, wait_exit, wait_for_start, wait_until,
};

/// A process killed when dropped, also when the test fails first.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// A TCP connection to `server` from the loopback address `from`.
fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddr::from((from, 0))).unwrap();
    connect(&fd, &server).unwrap();
    TcpStream::from(fd)
}

/// The IP address of an `ADDRESS:PORT` field, as the table's `remote_ip` column has it.
fn ip(end: &Value) -> String {
    let end: SocketAddr = end.as_str().unwrap().parse().unwrap();
    end.ip().to_string()
}

/// The rows of the documented query whose comment begins with `comment`.
fn answer<'a>(answers: &'a Value, comment: &str) -> &'a Vec<Value> {
    answers["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["comment"].as_str().unwrap().starts_with(comment))
        .unwrap_or_else(|| panic!("docs/deploy.md has no query \"-- {comment}...\": {answers:#}"))
        ["rows"]
        .as_array()
        .unwrap()
}

/// The records `keep` keeps, counted by their field `key` and their remote IP.
fn count_by(
    records: &[&Value],
    keep: impl Fn(&Value) -> bool,
    key: &str,
) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for record in records.iter().filter(|r| keep(r)) {
        let key = record[key].as_str().unwrap_or_default().to_owned();
        *counts.entry((key, ip(&record["remote"]))).or_default() += 1;
    }
    counts
}

#[test]
fn clickhouse_answers_the_documented_queries_from_the_records() {
    let _machine = shared();
    let (port, refused_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    // tracer writes its file as on a server: all events, so the load's filter has lines
    // to leave out.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tracer.json");
    let mut tracer = KilledOnDrop(
        Tracer::command(&[port, refused_port])
            .arg("--output")
            .arg(&file)
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start tracer"),
    );
    let lines = || lines_of(&file);
    wait_for_start(&file);
    let server = start_server(
        port,
        ServerConfig {
            idle_timeout: Duration::from_secs(30),
            response_delay: Duration::ZERO,
            announce_requests: false,
        },
    );
    // A kept-alive connection with two requests, closed by its client.
    let mut client = HttpClient::connect(server);
    client.get("/").unwrap();
    client.get("/").unwrap();
    drop(client);
    // A connection from 127.0.0.5 reset by its client (SO_LINGER 0): the server's record
    // has a reset received from 127.0.0.5.
    let reset = connect_from([127, 0, 0, 5], server);
    sockopt::set_socket_linger(&reset, Some(Duration::ZERO)).unwrap();
    drop(reset);
    // A connect refused: the client's record has a reset received from the server.
    assert!(TcpStream::connect(("127.0.0.1", refused_port)).is_err());

    wait_until("the five connection records", || {
        lines()
            .iter()
            .filter(|l| l["event"] == "connection")
            .count()
            == 5
    });
    kill_process(Pid::from_raw(tracer.0.id() as i32).unwrap(), Signal::TERM).unwrap();
    assert!(wait_exit(&mut tracer.0).success());
    let lines = lines();
    let records: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "connection")
        .collect();
    assert_eq!(records.len(), 5, "{records:#?}");
    let python = workspace().join("target/deploy-tools/bin/python");
    let output = Command::new(&python)
        .arg(workspace().join("tracer/tests/support/clickhouse.py"))
        .arg(workspace().join("docs/deploy.md"))
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?} ({e}): run cargo xtask setup"));
    assert!(
        output.status.success(),
        "the documented ClickHouse statements failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answers["loaded"], 5, "{answers:#}");

    // Who resets our connections: the records' resets received, by peer.
    let resets: BTreeMap<String, u64> = count_by(
        &records,
        |r| r["close_initiator"] == "reset_received",
        "close_initiator",
    )
    .into_iter()
    .map(|((_, ip), n)| (ip, n))
    .collect();
    assert_eq!(resets.get("127.0.0.5"), Some(&1), "{records:#?}");
    let rows: BTreeMap<String, u64> = answer(&answers, "Who resets our connections")
        .iter()
        .map(|row| {
            (
                row["remote_ip"].as_str().unwrap().to_owned(),
                row["resets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, resets);

    // Failed connections: the records' outcomes but completed, by peer.
    let failed = count_by(&records, |r| r["outcome"] != "completed", "outcome");
    assert!(
        failed.contains_key(&("refused".to_owned(), "127.0.0.1".to_owned())),
        "{failed:?}"
    );
    let rows: BTreeMap<(String, String), u64> = answer(&answers, "Failed connections by outcome")
        .iter()
        .map(|row| {
            let text = |f: &str| row[f].as_str().unwrap().to_owned();
            (
                (text("outcome"), text("remote_ip")),
                row["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, failed);

    // Requests per connection of the client process: this test's.
    let clients: Vec<&&Value> = records.iter().filter(|r| r["role"] == "client").collect();
    let requests: u64 = clients
        .iter()
        .map(|r| r["requests"].as_u64().unwrap_or(0))
        .sum();
    let rows = answer(&answers, "Connection reuse");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["count()"], clients.len(), "{rows:?}");
    let mean = rows[0]["avg(requests)"].as_f64().unwrap();
    assert!(
        (mean - requests as f64 / clients.len() as f64).abs() < 1e-9,
        "{rows:?}"
    );

    // Response times of the server's port: the server records' totals.
    let served: Vec<&&Value> = records
        .iter()
        .filter(|r| r["role"] == "server" && r["response_time_us"]["count"].as_u64() > Some(0))
        .collect();
    let total: u64 = served
        .iter()
        .map(|r| r["response_time_us"]["total"].as_u64().unwrap())
        .sum();
    let count: u64 = served
        .iter()
        .map(|r| r["response_time_us"]["count"].as_u64().unwrap())
        .sum();
    let rows = answer(&answers, "Response times by server port");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["port"], port.to_string(), "{rows:?}");
    assert!((rows[0]["mean_us"].as_f64().unwrap() - total as f64 / count as f64).abs() < 1e-6);
}
