//! The fleet path of docs/deploy.md, run with real parts: the records of a traced
//! scenario loaded into the real ClickHouse engine (chdb, installed by `cargo xtask
//! setup`) by the documented table and load command, and every documented query run over
//! them. `support/clickhouse.py` takes the statements from the doc itself, so an edit
//! that breaks one fails here; the answers are checked against the records. Not run in
//! the kernel matrix's guests (no Python there).

use std::{collections::BTreeMap, net::SocketAddr, process::Command};

use serde_json::Value;

use crate::support::{scenario, shared, workspace};

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
    let trace = scenario::record();
    let (file, port, records) = (&trace.file, trace.port, trace.records());
    let python = workspace().join("target/deploy-tools/bin/python");
    let output = Command::new(&python)
        .arg(workspace().join("tracer/tests/support/clickhouse.py"))
        .arg(workspace().join("docs/deploy.md"))
        .arg(file)
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
