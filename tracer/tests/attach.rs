//! The attach plan and `tracer check` against the running kernel.

use std::process::Command;

use crate::support::{Tracer, free_port, shared, tracer_bin};
use serde_json::Value;

fn check() -> (bool, Value) {
    let output = Command::new(tracer_bin())
        .args(["check", "--json"])
        .output()
        .unwrap();
    (
        output.status.success(),
        serde_json::from_slice(&output.stdout).unwrap(),
    )
}

fn available(report: &Value, hook: &str, mechanism: &str) -> bool {
    report["hooks"][hook]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mechanism"] == mechanism && m["available"] == true)
}

fn chosen(report: &Value, hook: &str) -> String {
    let mechanisms = report["hooks"][hook].as_array().unwrap();
    mechanisms
        .iter()
        .find(|m| m["chosen"] == true)
        .map_or("unsupported".into(), |m| {
            m["mechanism"].as_str().unwrap().into()
        })
}

#[test]
fn auto_picks_what_check_reports() {
    let _machine = shared();
    let (ok, report) = check();
    assert!(ok, "tracing can run here: {report:#}");
    let mut command = Command::new(tracer_bin());
    command.args(["--port", &free_port("127.0.0.1").to_string()]);
    let tracer = Tracer::spawn(command);
    let start = &tracer.seen[0];
    for hook in [
        "state_change",
        "keepalive",
        "reset",
        "retransmit",
        "data",
        "accept",
    ] {
        let attached = start["attach"][hook].as_str().unwrap_or("unsupported");
        assert_eq!(
            attached,
            chosen(&report, hook),
            "{hook}: {start} vs {report:#}"
        );
    }
}

/// `tracer check --attach MODE` says whether `tracer --attach MODE` starts, and it does
/// exactly that: starts with that mechanism where hooks have it, or fails in one line.
#[test]
fn each_mode_starts_exactly_when_check_says_it_can() {
    let _machine = shared();
    for mode in ["auto", "tracepoint", "kprobe", "fentry"] {
        let can = Command::new(tracer_bin())
            .args(["check", "--attach", mode])
            .output()
            .unwrap()
            .status
            .success();
        let port = free_port("127.0.0.1").to_string();
        if can {
            let mut command = Command::new(tracer_bin());
            command.args(["--port", &port, "--attach", mode]);
            let tracer = Tracer::spawn(command);
            let attach = tracer.seen[0]["attach"].as_object().unwrap().clone();
            if mode != "auto" {
                for hook in ["state_change", "keepalive"] {
                    assert_eq!(attach[hook], mode, "{mode}: {attach:?}");
                }
            }
        } else {
            let output = Command::new(tracer_bin())
                .args(["--port", &port, "--attach", mode])
                .output()
                .unwrap();
            let stderr = String::from_utf8(output.stderr).unwrap();
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            let error: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("tracer: warning:"))
                .collect();
            assert_eq!(error.len(), 1, "{stderr}");
            assert!(
                error[0].starts_with(&format!(
                    "tracer: --attach {mode}: cannot attach the state_change hook"
                )),
                "{stderr}"
            );
        }
    }
}

#[test]
fn check_reports_this_kernel() {
    let _machine = shared();
    let (_, report) = check();
    assert_eq!(
        report["kernel"],
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    assert_eq!(
        report["btf"],
        std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
    );
    let has_kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    assert_eq!(report["kprobes"], has_kprobes, "{report:#}");
    assert!(available(&report, "state_change", "tracepoint"));
    assert!(available(&report, "keepalive", "tracepoint"));
    // The cgroup layout as mountinfo has it: v1 controllers, and the first cgroup2 mount.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let types: Vec<(&str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            Some((after.split(' ').next()?, before.split(' ').nth(4)?))
        })
        .collect();
    let cgroup2 = types
        .iter()
        .find(|(kind, _)| *kind == "cgroup2")
        .map(|m| m.1);
    let v1 = types.iter().any(|(kind, _)| *kind == "cgroup");
    let layout = match (cgroup2, v1) {
        (Some(_), false) => "unified",
        (Some(_), true) => "hybrid",
        (None, true) => "v1_only",
        (None, false) => "none",
    };
    assert_eq!(report["cgroups"]["layout"], layout, "{report:#}");
    assert_eq!(report["cgroups"]["cgroup2"].as_str(), cgroup2, "{report:#}");
    let human = Command::new(tracer_bin()).arg("check").output().unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("tracing can run"), "{text}");
}
