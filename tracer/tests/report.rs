//! `tracer report` of a real recorded trace, opened in a real browser: headless Chromium
//! (Debian's `chromium`, installed by `cargo xtask setup`) loads the page from a file with
//! no network, its script runs, and the test reads the DOM Chromium gives back: the
//! counts on the page equal the trace's records, each connection has its flow graph, the
//! search filters by address, and the console stays silent. A screenshot is kept in
//! `target/test-artifacts/report.png`. Not run in the kernel matrix's guests (no browser
//! there).

use std::{collections::BTreeMap, fs, net::SocketAddr, path::Path, process::Command};

use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

use crate::support::{scenario, shared, tracer_bin, workspace};

/// What Chromium gives back for `url`: the DOM after the page's script ran, and what it
/// logged.
struct Loaded {
    dom: Html,
    log: String,
}

/// Headless Chromium's arguments for this machine: no sandbox (the tests run as root),
/// no GPU, a profile of its own, its log on stderr (console messages among it).
fn chromium(profile: &Path) -> Command {
    let mut command = Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

fn load(profile: &Path, url: &str) -> Loaded {
    let output = chromium(profile)
        .args(["--dump-dom", url])
        .output()
        .expect("cannot run chromium (cargo xtask setup installs it)");
    assert!(output.status.success(), "chromium --dump-dom: {output:?}");
    Loaded {
        dom: Html::parse_document(&String::from_utf8_lossy(&output.stdout)),
        log: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn select<'a>(dom: &'a Html, selector: &str) -> Vec<ElementRef<'a>> {
    dom.select(&Selector::parse(selector).unwrap()).collect()
}

fn text(element: &ElementRef) -> String {
    element.text().collect::<String>().trim().to_owned()
}

/// The table `id`'s rows as (first cell, cells).
fn table(dom: &Html, id: &str) -> BTreeMap<String, Vec<String>> {
    select(dom, &format!("#{id} tbody tr"))
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .select(&Selector::parse("td").unwrap())
                .map(|cell| text(&cell))
                .collect();
            (cells[0].clone(), cells)
        })
        .collect()
}

fn end(record: &Value, field: &str) -> SocketAddr {
    record[field].as_str().unwrap().parse().unwrap()
}

/// The records' counts per group `key`: connections, resets sent and received (as the
/// page writes them, `sent/received`).
fn counts_by(
    records: &[&Value],
    key: impl Fn(&Value) -> String,
) -> BTreeMap<String, (u64, String)> {
    let mut counts: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for record in records {
        let entry = counts.entry(key(record)).or_default();
        entry.0 += 1;
        entry.1 += record["resets_sent"].as_u64().unwrap();
        entry.2 += record["resets_received"].as_u64().unwrap();
    }
    counts
        .into_iter()
        .map(|(key, (n, sent, received))| (key, (n, format!("{sent}/{received}"))))
        .collect()
}

#[test]
fn the_report_shows_the_records_in_a_browser() {
    let _machine = shared();
    let trace = scenario::record();
    let records = trace.records();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let status = Command::new(tracer_bin())
        .arg("report")
        .arg(&trace.file)
        .arg("-o")
        .arg(&page)
        .status()
        .unwrap();
    assert!(status.success(), "tracer report: {status}");
    let html = fs::read_to_string(&page).unwrap();
    // Self-contained: nothing on the page is fetched.
    for fetching in ["src=", "<link rel=\"stylesheet\"", "http://", "https://"] {
        assert!(
            !html.contains(fetching),
            "the page fetches something: {fetching}"
        );
    }
    let url = format!("file://{}", page.display());
    let profile = dir.path().join("chromium");
    let loaded = load(&profile, &url);
    let dom = &loaded.dom;
    let console: Vec<&str> = (loaded.log.lines())
        .filter(|line| line.contains("CONSOLE"))
        .collect();
    assert!(
        console.is_empty(),
        "the page wrote to the console: {console:#?}"
    );
    assert_eq!(
        select(dom, "body[data-ready=yes]").len(),
        1,
        "the page's script did not finish"
    );

    // Every record is on the page, with its flow graph.
    let connections = select(dom, "#connections .connection");
    assert_eq!(connections.len(), records.len());
    assert_eq!(text(&select(dom, "#records")[0]), records.len().to_string());
    assert_eq!(
        text(&select(dom, "#shown")[0]),
        format!("{0} of {0} connections shown", records.len())
    );
    assert_eq!(select(dom, ".timeline a.bar").len(), records.len());
    let arrows = |connection: &ElementRef, label: &str, direction: &str| {
        let selector = format!("svg.flow g.arrow[data-direction={direction}]");
        (connection.select(&Selector::parse(&selector).unwrap()))
            .filter(|arrow| arrow.attr("data-label").unwrap().starts_with(label))
            .count()
    };
    for record in &records {
        let id = format!("c{}", record["conn_id"]);
        let connection = (connections.iter())
            .find(|c| c.attr("id") == Some(&id))
            .unwrap_or_else(|| panic!("no connection {id} on the page for {record}"));
        assert_eq!(connection.attr("data-outcome"), record["outcome"].as_str());
        let (sent, received) = match record["role"].as_str() {
            Some("client") => ("request", "response"),
            _ => ("response", "request"),
        };
        let requests = record["requests"].as_u64().unwrap_or(0) as usize;
        assert_eq!(arrows(connection, sent, "out"), requests, "{record}");
        assert_eq!(arrows(connection, received, "in"), requests, "{record}");
        let resets_received = record["resets_received"].as_u64().unwrap() as usize;
        assert_eq!(arrows(connection, "RST", "in"), resets_received, "{record}");
        if record["role"] == "client" {
            assert_eq!(arrows(connection, "SYN", "out"), 1, "{record}");
        }
    }

    // The tables count what the records count.
    let by_port = table(dom, "by-port");
    let by_peer = table(dom, "by-peer");
    let ports = [trace.port, trace.refused_port];
    let port_of = |record: &Value| {
        let (local, remote) = (end(record, "local"), end(record, "remote"));
        let port = if ports.contains(&local.port()) {
            local.port()
        } else {
            remote.port()
        };
        port.to_string()
    };
    let peer_of = |record: &Value| end(record, "remote").ip().to_canonical().to_string();
    for (table, expected) in [
        (&by_port, counts_by(&records, port_of)),
        (&by_peer, counts_by(&records, peer_of)),
    ] {
        assert_eq!(table.len(), expected.len(), "{table:?}");
        for (key, (connections, resets)) in expected {
            let row = &table[&key];
            assert_eq!(row[1], connections.to_string(), "{key}: {row:?}");
            assert_eq!(row[4], resets, "{key}: {row:?}");
        }
    }
    assert_eq!(
        by_port[&trace.refused_port.to_string()][2],
        "1",
        "the refused connect failed"
    );

    // The histograms count every handshake and every response.
    let total = |id: &str| {
        select(dom, &format!("svg#{id}"))[0]
            .attr("data-total")
            .unwrap()
            .to_owned()
    };
    let handshakes = records
        .iter()
        .filter(|r| r["handshake_us"].is_u64())
        .count();
    assert_eq!(total("handshakes"), handshakes.to_string());
    let responses: u64 = (records.iter())
        .filter_map(|r| r["response_time_us"]["count"].as_u64())
        .sum();
    assert_eq!(responses, 4, "two requests answered, seen from both ends");
    assert_eq!(total("responses"), responses.to_string());

    // The search, from the address: only the connections of 127.0.0.5 stay.
    let searched = load(&profile, &format!("{url}#search=127.0.0.5"));
    let shown: Vec<String> = select(&searched.dom, "#connections .connection:not(.filtered)")
        .iter()
        .map(|c| c.attr("id").unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (records.iter())
        .filter(|r| {
            r["local"].as_str().unwrap().contains("127.0.0.5")
                || r["remote"].as_str().unwrap().contains("127.0.0.5")
        })
        .map(|r| format!("c{}", r["conn_id"]))
        .collect();
    assert_eq!(expected.len(), 2, "the reset connection's two ends");
    let (mut shown, mut expected) = (shown, expected);
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected);
    assert_eq!(
        select(&searched.dom, "#by-peer tbody tr:not(.filtered)").len(),
        1,
        "the peer table keeps 127.0.0.5's row"
    );

    // A screenshot for people to look at.
    let artifacts = workspace().join("target/test-artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("report.png");
    let _ = fs::remove_file(&screenshot);
    let output = chromium(&profile)
        .arg("--window-size=1280,2000")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(output.status.success(), "chromium --screenshot: {output:?}");
    let png = fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn a_trace_without_events_is_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("records.json");
    fs::write(
        &trace,
        "{\"event\":\"tracer_start\",\"ts\":\"2026-12-07T10:00:00Z\",\"kernel\":\"6.1\",\"ports\":[80]}\n",
    )
    .unwrap();
    let output = Command::new(tracer_bin())
        .arg("report")
        .arg(&trace)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no events") && stderr.contains("--emit all"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
