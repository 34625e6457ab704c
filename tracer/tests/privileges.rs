//! Least privilege: the tracer runs as an unprivileged user with exactly the systemd unit's
//! capabilities (`deploy/tracer.service`), keepalive and metrics included, and holds none
//! once attached; with fewer, it names the missing one and exits.
//!
//! Each test has the machine to itself ([`exclusive`]): it copies the tracer binary, which
//! a process another test forked meanwhile could hold open for writing (running the copy
//! would then fail with ETXTBSY), and it raises this process's RLIMIT_MEMLOCK, which
//! every process the tests start afterwards inherits.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::Command,
};

use crate::support::{
    Tracer, exclusive, free_port, is_event,
    prometheus::scrape,
    refusal,
    sockets::{connected_pair, keepalive_pair},
    tracer_bin,
};
use rustix::process::{Resource, Rlimit, setrlimit};
use serde_json::Value;
use tempfile::TempDir;

const UNIT: &str = include_str!("../../deploy/tracer.service");
const NOBODY: &str = "65534";

/// The capabilities the unit grants (`AmbientCapabilities=`), e.g. `["bpf", "perfmon"]`.
fn unit_capabilities() -> Vec<String> {
    let line = UNIT
        .lines()
        .find_map(|line| line.strip_prefix("AmbientCapabilities="))
        .expect("the unit grants AmbientCapabilities=");
    line.split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// The tracer binary copied where user nobody can run it (the build tree may not be
/// reachable), into a directory of the test's own that is removed on drop, also when the
/// test fails.
struct NobodyBinary {
    dir: TempDir,
}

impl NobodyBinary {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tracer-privileges-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::copy(tracer_bin(), dir.path().join("tracer")).unwrap();
        Self { dir }
    }

    /// `tracer ARGS` as user nobody with exactly `capabilities` (setpriv, util-linux).
    fn as_nobody(&self, capabilities: &[String], args: &[String]) -> Command {
        let caps: String = std::iter::once("-all".to_owned())
            .chain(capabilities.iter().map(|cap| format!("+{cap}")))
            .collect::<Vec<_>>()
            .join(",");
        // The unit's LimitMEMLOCK=infinity: kernels before 5.11 charge the maps to it, and
        // nobody cannot raise it. This test process is root and setpriv inherits the
        // limit; a container that denies root the raise runs a kernel that no longer
        // needs it (the tracer names the limit when it does).
        let unlimited = Rlimit {
            current: None,
            maximum: None,
        };
        let _ = setrlimit(Resource::Memlock, unlimited);
        // By its path: a busybox shell (the guests') would run its own smaller applet.
        let mut command = Command::new(on_path("setpriv"));
        command
            .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(self.dir.path().join("tracer"))
            .args(args);
        command
    }
}

/// Where `program` is on PATH.
fn on_path(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

fn port_args(port: u16) -> Vec<String> {
    let mut args = vec!["--port".to_owned(), port.to_string()];
    if let Ok(mode) = std::env::var("TRACER_TEST_ATTACH") {
        args.extend(["--attach".to_owned(), mode]);
    }
    args
}

/// A capability line of /proc/PID/task/TID/status, as a number.
fn capability_set(status: &str, name: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

/// What the tracer may still hold: nothing, or CAP_BPF alone where the kernel checks it on
/// map reads (before 5.19, with unprivileged BPF disabled).
fn allowed_after_attach() -> u64 {
    const CAP_BPF: u64 = 1 << 39;
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let version: (u32, u32) = (
        numbers.next().unwrap().parse().unwrap(),
        numbers.next().unwrap().parse().unwrap(),
    );
    let disabled = fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .is_ok_and(|value| value.trim() != "0");
    if version < (5, 19) && disabled {
        CAP_BPF
    } else {
        0
    }
}

#[test]
fn traces_unprivileged_with_the_units_capabilities_and_then_holds_none() {
    let _machine = exclusive();
    let binary = NobodyBinary::new();
    let port = free_port("127.0.0.1");
    // Open before tracing: sock_diag reads it after the capabilities are gone.
    let (before, _before_accepted) = connected_pair(port);

    // The DaemonSet serves metrics, which read the programs' counts after the drop.
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let mut args = port_args(port);
    args.extend(["--metrics-addr".to_owned(), metrics.to_string()]);
    let mut tracer = Tracer::spawn(binary.as_nobody(&unit_capabilities(), &args));
    let start = tracer.seen[0].clone();
    assert!(
        start["attach"].get("keepalive").is_some(),
        "keepalive attached: {start}"
    );
    let allowed = allowed_after_attach();
    let tasks = format!("/proc/{}/task", tracer.pid());
    for task in fs::read_dir(&tasks).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        assert_eq!(uid.split_whitespace().next(), Some(NOBODY), "{status}");
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(
                capability_set(&status, set) & !allowed,
                0,
                "{set}: {status}"
            );
        }
    }
    let (_, scraped) = scrape(metrics, None);
    assert!(
        scraped.contains("tracer_bpf_run_seconds_total{program=\"inet_sock_set_state\"}"),
        "{scraped}"
    );
    let local = before.local_addr().unwrap();
    tracer.wait_for("the connection open before tracing", |line| {
        line["event"] == "existing" && line["local"] == local.to_string()
    });

    // Keepalive probes come after a second: the loop's housekeeping (reading the
    // lost-event counter through its map) has run without capabilities by then.
    let (mut client, mut server) = keepalive_pair(port, 5);
    let (client_addr, server_addr) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    tracer.wait_for("a keepalive probe", |line| {
        is_event(line, "keepalive_probe", client_addr, server_addr)
    });
    client.write_all(b"bye").unwrap();
    server.read_exact(&mut [0; 3]).unwrap();
    drop(client);
    drop(server);
    let record = tracer.wait_for("the client's record", |line| {
        line["event"] == "connection" && line["local"] == client_addr.to_string()
    });
    assert_eq!(
        record["keepalive"]["probes_sent"].as_u64().map(|n| n > 0),
        Some(true),
        "{record}"
    );
    let (status, _) = tracer.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn a_missing_capability_is_named_with_its_purpose() {
    let _machine = exclusive();
    let binary = NobodyBinary::new();
    let args = port_args(free_port("127.0.0.1"));
    let none = refusal(&mut binary.as_nobody(&[], &args));
    assert!(
        none.starts_with("tracer: missing CAP_BPF and CAP_PERFMON: tracer needs CAP_BPF to load"),
        "{none}"
    );
    let bpf_only = refusal(&mut binary.as_nobody(&["bpf".into()], &args));
    assert!(
        bpf_only.starts_with("tracer: missing CAP_PERFMON:"),
        "{bpf_only}"
    );
    let no_tracefs = refusal(&mut binary.as_nobody(&["bpf".into(), "perfmon".into()], &args));
    assert!(
        no_tracefs.contains("tracer needs CAP_DAC_READ_SEARCH to read the tracepoints' formats"),
        "{no_tracefs}"
    );
}

#[test]
fn an_unmounted_tracefs_asks_for_cap_sys_admin() {
    let _machine = exclusive();
    let binary = NobodyBinary::new();
    // The unit's capabilities but CAP_SYS_ADMIN (optional there), which would mount it.
    let capabilities: Vec<String> = unit_capabilities()
        .into_iter()
        .filter(|cap| cap != "sys_admin")
        .collect();
    // In a mount namespace of its own, so the host's tracefs stays mounted.
    let tracer = binary.as_nobody(&capabilities, &port_args(free_port("127.0.0.1")));
    let script = format!(
        "umount /sys/kernel/tracing; umount -l /sys/kernel/debug 2>/dev/null; exec {} {}",
        tracer.get_program().to_string_lossy(),
        tracer
            .get_args()
            .map(|arg| format!("'{}'", arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let stderr = refusal(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(script),
    );
    assert_eq!(
        stderr,
        "tracer: tracefs is not mounted: mount it (mount -t tracefs nodev /sys/kernel/tracing) or give tracer CAP_SYS_ADMIN to mount it\n"
    );
}

#[test]
fn without_cap_syslog_the_keepalive_fallback_says_why() {
    let _machine = exclusive();
    let binary = NobodyBinary::new();
    let capabilities: Vec<String> = unit_capabilities()
        .into_iter()
        .filter(|cap| cap != "syslog")
        .collect();
    let args = port_args(free_port("127.0.0.1"));
    if std::env::var("TRACER_TEST_ATTACH").is_ok_and(|mode| mode == "tracepoint") {
        // Held to the timer tracepoints, the keepalive hook has no other way: a refusal.
        let stderr = refusal(&mut binary.as_nobody(&capabilities, &args));
        assert!(stderr.contains("tracer needs CAP_SYSLOG"), "{stderr}");
        return;
    }
    let tracer = Tracer::spawn(binary.as_nobody(&capabilities, &args));
    let start: &Value = &tracer.seen[0];
    // Where fentry or kprobes carry keepalive, kallsyms is not needed.
    if start["attach"].get("keepalive").is_none() {
        let why = start["unsupported"]["keepalive"].as_str().unwrap();
        assert!(why.contains("tracer needs CAP_SYSLOG"), "{start}");
    }
    assert!(tracer.stop().0.success());
}
