//! The attach plan and `tracer check` against the running kernel.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{Tracer, free_port, tracer_bin};

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

#[test]
fn forced_modes_the_kernel_lacks_are_one_line_errors() {
    let (_, report) = check();
    for (mode, hook) in [("kprobe", "keepalive"), ("fentry", "keepalive")] {
        if available(&report, hook, mode) {
            continue; // this kernel can: the matrix runs the suite in that mode instead
        }
        let output = Command::new(tracer_bin())
            .args(["--port", "8191", "--attach", mode])
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "tracer: --attach {mode}: cannot attach the state_change hook"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn check_reports_this_kernel() {
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
    let human = Command::new(tracer_bin()).arg("check").output().unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("tracing can run"), "{text}");
}
