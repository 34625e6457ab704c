//! The output file rotated while connections stream through: renamed by logrotate and
//! reopened on SIGHUP, or rotated by size. Every line of every file is whole JSON, and
//! every connection driven has its two records (client and server side).
//!
//! The tests under load have the machine to itself ([`exclusive`]): their connection
//! churn takes the cores and many ephemeral ports, which would slow and disturb the
//! other tests.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::support::{
    Tracer, exclusive, free_port, load::Load, shared, tracer_bin, wait_exit, wait_for_start,
    wait_until,
};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

/// A directory of this test's own, empty.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-rotation-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), signal).unwrap();
}

/// Starts `tracer --port PORT --emit connections --output FILE ARGS` and waits for its
/// `tracer_start` line in FILE.
fn start_to_file(port: u16, file: &Path, args: &[&str]) -> Child {
    let child = Tracer::command(&[port])
        .args(["--emit", "connections", "--output"])
        .arg(file)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start tracer");
    wait_for_start(file);
    child
}

/// Every line of every file in `dir` once the tracer has exited, parsed: panics on a line
/// that is not whole JSON.
fn lines_in(dir: &Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            path.display()
        );
        for line in text.lines() {
            lines.push(serde_json::from_str(line).unwrap_or_else(|error| {
                panic!("{}: a split line ({error}): {line}", path.display())
            }));
        }
    }
    lines
}

fn records(lines: &[Value]) -> usize {
    lines.iter().filter(|l| l["event"] == "connection").count()
}

/// Connection records in `dir` while the tracer still writes and rotates: a file can end
/// mid-line or be renamed while read, so this is a rough count to wait on.
fn records_so_far(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .map(|text| text.matches("\"event\":\"connection\"").count())
        .sum()
}

fn size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// Stops the load, waits for both records of every connection it made, stops the tracer
/// and checks the files it wrote.
fn finish(load: Load, tracer: &mut Child, dir: &Path) -> Vec<Value> {
    let connections = load.stop() as usize;
    wait_until("a record of each connection's two sides", || {
        records_so_far(dir) >= 2 * connections
    });
    signal(tracer, Signal::TERM);
    assert!(wait_exit(tracer).success());
    let lines = lines_in(dir);
    assert_eq!(records(&lines), 2 * connections);
    let stops: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "tracer_stop")
        .collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["open_connections"], 0, "{stops:?}");
    assert!(!lines.iter().any(|l| l["event"] == "lost"));
    lines
}

#[test]
fn logrotate_renames_and_sighups_lose_and_split_nothing() {
    let _machine = exclusive();
    let dir = scratch("sighup");
    let file = dir.join("trace.json");
    let port = free_port("127.0.0.1");
    let mut tracer = start_to_file(port, &file, &[]);
    let load = Load::start(port, 3);
    for rotation in 1..=5 {
        // Records flow into this file before it is moved.
        wait_until("records in the file", || size(&file) > 4096);
        fs::rename(&file, dir.join(format!("trace.json.moved-{rotation}"))).unwrap();
        signal(&tracer, Signal::HUP);
        wait_until("the reopened file", || file.exists());
    }
    let lines = finish(load, &mut tracer, &dir);
    // Each of the six files holds records.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 6);
    assert!(lines.len() > 6);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn size_rotation_loses_and_splits_nothing() {
    let _machine = exclusive();
    const MAX_BYTES: u64 = 16 * 1024;
    let dir = scratch("size");
    let file = dir.join("trace.json");
    let port = free_port("127.0.0.1");
    let mut tracer = start_to_file(
        port,
        &file,
        &["--rotate-size", "16KiB", "--rotate-keep", "1000"],
    );
    let load = Load::start(port, 3);
    wait_until("five rotations", || dir.join("trace.json.5").exists());
    finish(load, &mut tracer, &dir);
    let files = fs::read_dir(&dir).unwrap().count();
    for n in 1..files {
        let rotated = dir.join(format!("trace.json.{n}"));
        // A file ends at the first line boundary past the limit, at most a line more.
        assert!(
            size(&rotated) <= MAX_BYTES + 2048,
            "{} has {} bytes",
            rotated.display(),
            size(&rotated)
        );
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sighup_keeps_tracing_to_stdout() {
    let _machine = exclusive();
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    kill_process(Pid::from_raw(tracer.pid() as i32).unwrap(), Signal::HUP).unwrap();
    let load = Load::start(port, 1);
    let connections = load.stop() as usize;
    let seen = std::cell::Cell::new(0);
    tracer.wait_for("a record of each connection's two sides", |line| {
        seen.set(seen.get() + usize::from(line["event"] == "connection"));
        seen.get() == 2 * connections
    });
    let (status, lines) = tracer.stop();
    assert!(status.success(), "{status}");
    assert_eq!(records(&lines), 2 * connections);
    assert!(lines.iter().any(|l| l["event"] == "tracer_stop"));
}

#[test]
fn write_errors_name_the_file() {
    let _machine = shared();
    let mut tracer = Command::new(tracer_bin())
        .args(["--port", &free_port("127.0.0.1").to_string()])
        .args(["--output", "/dev/full"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(!wait_exit(&mut tracer).success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut tracer.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.ends_with(
            "tracer: cannot write to /dev/full: No space left on device (os error 28)\n"
        ),
        "{stderr}"
    );
}
