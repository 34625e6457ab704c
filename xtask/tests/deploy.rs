//! The deployment files in `deploy/` are valid for the tools that read them: the systemd
//! unit for `systemd-analyze verify`, the logrotate configuration for logrotate, the
//! Kubernetes manifests for the Kubernetes schema (`kubernetes-validate`, installed by
//! `cargo xtask setup`). Each grants the same capabilities.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn deploy(file: &str) -> PathBuf {
    workspace().join("deploy").join(file)
}

/// Runs `command`, asserting success; returns its stdout and stderr.
fn check(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?} ({error}): run cargo xtask setup"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// The words after `key=` on the unit's line for it.
fn unit_setting(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = fs::read_to_string(deploy("tracer.service")).unwrap();
    // verify checks that ExecStart's program exists: point it at one that does.
    let installed = "/usr/local/bin/tracer";
    assert!(unit.contains(&format!("ExecStart={installed}\n")));
    let here = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!("tracer-unit-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("tracer.service");
    fs::write(&copy, unit.replace(installed, &here.to_string_lossy())).unwrap();
    let report = check(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(
        report.trim().is_empty(),
        "systemd-analyze has remarks:\n{report}"
    );
    fs::remove_dir_all(dir).unwrap();

    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "LogsDirectory=tracer",
        "Restart=on-failure",
        "DynamicUser=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|line| line == setting), "{setting}");
    }
    let ambient = unit_setting(&unit, "AmbientCapabilities");
    assert_eq!(ambient, unit_setting(&unit, "CapabilityBoundingSet"));
    // The last two are optional: the connections open at start in other network
    // namespaces, and their owners (docs/deploy.md).
    assert_eq!(
        ambient,
        [
            "CAP_BPF",
            "CAP_PERFMON",
            "CAP_DAC_READ_SEARCH",
            "CAP_SYSLOG",
            "CAP_SYS_PTRACE",
            "CAP_SYS_ADMIN"
        ]
    );
    assert!(unit.lines().any(|line| line == "RestrictNamespaces=net"));
}

#[test]
fn the_logrotate_configuration_parses() {
    // -d: read the configuration and say what would happen, rotating nothing.
    let state = std::env::temp_dir().join(format!("tracer-logrotate-{}", std::process::id()));
    let report = check(
        Command::new("logrotate")
            .arg("-d")
            .arg("-s")
            .arg(&state)
            .arg(deploy("logrotate")),
    );
    assert!(!report.contains("error:"), "{report}");
    assert!(report.contains("/var/log/tracer/tracer.json"), "{report}");
}

#[test]
fn the_kubernetes_manifests_match_the_schema() {
    let validator = workspace().join("target/deploy-tools/bin/kubernetes-validate");
    let manifests: Vec<PathBuf> = fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    let report = check(Command::new(validator).arg("--strict").args(&manifests));
    assert_eq!(
        report.matches(" passed for resource ").count(),
        2,
        "{report}"
    );

    // The container gets the unit's capabilities, as Kubernetes names them.
    let unit = fs::read_to_string(deploy("tracer.service")).unwrap();
    let expected: Vec<String> = unit_setting(&unit, "AmbientCapabilities")
        .iter()
        .map(|cap| format!("\"{}\"", cap.trim_start_matches("CAP_")))
        .collect();
    let daemonset = fs::read_to_string(deploy("kubernetes/daemonset.yaml")).unwrap();
    assert!(
        daemonset.contains(&format!("add: [{}]", expected.join(", "))),
        "the DaemonSet adds {expected:?}"
    );
    assert!(daemonset.contains("drop: [\"ALL\"]"));
    assert!(daemonset.contains("privileged: false"));
}
