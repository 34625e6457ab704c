//! The systemd unit for real: a Debian root file system (made by `cargo xtask setup` with
//! mmdebstrap) boots with systemd as init under systemd-nspawn, in the host's network
//! namespace so the host's connections are its own; tracer, deploy/tracer.service and
//! deploy/logrotate are installed as docs/deploy.md says, and the test does what an
//! operator does: `systemctl start`, traffic, logrotate (whose postrotate runs `systemctl
//! reload`), traffic, `systemctl stop`. Not run in the kernel matrix's guests (no
//! systemd-nspawn there).

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use crate::support::{
    exclusive, free_port, lines_of, tracer_bin, wait_for_start, wait_until, workspace,
};

/// The root file system `cargo xtask setup` makes.
const ROOTFS: &str = "target/deploy-tools/debian-bookworm-systemd.tar";

/// A Debian system booted by systemd-nspawn; powered off and removed when dropped.
struct Machine {
    nspawn: Child,
    /// Its init (systemd), as the host sees it: what `nsenter` enters.
    init: u32,
    root: tempfile::TempDir,
}

impl Machine {
    /// Boots the root file system with tracer and its unit installed, and `defaults` as
    /// /etc/default/tracer. The machine gets the capabilities and system calls tracing
    /// needs, and the host's tracefs and BTF.
    fn boot(defaults: &str) -> Self {
        let tarball = workspace().join(ROOTFS);
        assert!(tarball.exists(), "no {ROOTFS}: run cargo xtask setup");
        let root = tempfile::tempdir().unwrap();
        let extracted = Command::new("tar")
            .arg("-C")
            .arg(root.path())
            .arg("-xf")
            .arg(&tarball)
            .status()
            .unwrap();
        assert!(extracted.success());
        let install = |from: &Path, to: &str| {
            fs::copy(from, root.path().join(to)).unwrap();
        };
        install(&tracer_bin(), "usr/local/bin/tracer");
        install(
            &workspace().join("deploy/tracer.service"),
            "etc/systemd/system/tracer.service",
        );
        install(
            &workspace().join("deploy/logrotate"),
            "etc/logrotate.d/tracer",
        );
        fs::write(root.path().join("etc/default/tracer"), defaults).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .arg("--boot")
            .arg("--directory")
            .arg(root.path())
            .arg(format!("--machine=tracer-test-{}", std::process::id()))
            .args(["--register=no", "--keep-unit", "--console=read-only"])
            .arg("--capability=CAP_BPF,CAP_PERFMON,CAP_SYSLOG,CAP_DAC_READ_SEARCH,CAP_SYS_PTRACE")
            .arg("--system-call-filter=bpf perf_event_open")
            .args(["--bind-ro=/sys/kernel/tracing", "--bind-ro=/sys/kernel/btf"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run systemd-nspawn (cargo xtask setup installs it)");
        let mut init = 0;
        // nspawn's child becomes the machine's systemd (after a child of its own).
        wait_until("the machine's init", || {
            init = (children(nspawn.id()).into_iter())
                .find(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "systemd\n")
                })
                .unwrap_or(0);
            init != 0
        });
        let machine = Self { nspawn, init, root };
        // Until the boot is done: `running`, or `degraded` for a unit a container lacks
        // (before its bus is up, systemctl cannot ask).
        wait_until("the machine's boot", || {
            let state = machine.run(&["systemctl", "is-system-running"]).1;
            matches!(state.trim(), "running" | "degraded")
        });
        machine
    }

    /// Runs `command` inside: (success, stdout and stderr).
    fn run(&self, command: &[&str]) -> (bool, String) {
        let output = Command::new("nsenter")
            .args(["--target", &self.init.to_string(), "--all", "--"])
            .args(command)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Runs `command` inside, which must succeed; its output.
    fn must(&self, command: &[&str]) -> String {
        let (ok, text) = self.run(command);
        assert!(ok, "{command:?}: {text}");
        text
    }

    /// The unit's logs directory, as the host sees it (`LogsDirectory=` with
    /// `DynamicUser=` puts it under /var/log/private).
    fn logs(&self) -> PathBuf {
        self.root.path().join("var/log/private/tracer")
    }

    /// The lines of a file in the logs directory.
    fn lines(&self, file: &str) -> Vec<Value> {
        lines_of(&self.logs().join(file))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.run(&["systemctl", "poweroff"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.nspawn.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.nspawn.kill();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|child| child.parse().unwrap())
        .collect()
}

/// A connection on `port` of the host's loopback, closed by its client; the client's end.
fn connection(port: u16) -> String {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let end = client.local_addr().unwrap().to_string();
    drop(client);
    drop(server);
    end
}

/// Whether `lines` hold both records of the connection whose client end is `end`.
fn both_records(lines: &[Value], end: &str) -> bool {
    lines
        .iter()
        .filter(|l| l["event"] == "connection" && (l["local"] == end || l["remote"] == end))
        .count()
        == 2
}

#[test]
fn the_unit_runs_reloads_and_stops_under_systemd() {
    // A whole system beside the tests: one at a time.
    let _machine = exclusive();
    let port = free_port("127.0.0.1");
    let machine = Machine::boot(&format!("TRACER_PORT={port}\n"));
    machine.must(&["systemctl", "start", "tracer"]);
    wait_for_start(&machine.logs().join("tracer.json"));
    let first = connection(port);
    wait_until("the first connection's records", || {
        both_records(&machine.lines("tracer.json"), &first)
    });
    let pid = machine.must(&[
        "systemctl",
        "show",
        "--property=MainPID",
        "--value",
        "tracer",
    ]);
    let status = machine.must(&["cat", &format!("/proc/{}/status", pid.trim())]);
    assert!(
        status.lines().any(|l| l == "CapEff:\t0000000000000000"),
        "the service keeps capabilities after attaching:\n{status}"
    );

    // logrotate renames the file, and its postrotate's reload makes tracer reopen it.
    machine.must(&["logrotate", "--force", "/etc/logrotate.d/tracer"]);
    assert!(both_records(&machine.lines("tracer.json.1"), &first));
    wait_until("the reopened file", || {
        machine.logs().join("tracer.json").exists()
    });
    let second = connection(port);
    wait_until("the second connection's records", || {
        both_records(&machine.lines("tracer.json"), &second)
    });

    // The exposure docs/deploy.md records, or less.
    let security = machine.must(&[
        "systemd-analyze",
        "security",
        "--no-pager",
        "tracer.service",
    ]);
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.strip_prefix("→ Overall exposure level for tracer.service: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{security}"));
    let doc = fs::read_to_string(workspace().join("docs/deploy.md")).unwrap();
    let documented: f64 = doc
        .split("rates the unit's exposure **")
        .nth(1)
        .and_then(|rest| rest.split("**").next())
        .and_then(|score| score.parse().ok())
        .expect("docs/deploy.md records the unit's exposure");
    assert!(
        exposure <= documented,
        "exposure {exposure} > {documented}:\n{security}"
    );
    machine.must(&["systemctl", "stop", "tracer"]);
    let result = machine.must(&[
        "systemctl",
        "show",
        "--property=Result,ExecMainStatus",
        "tracer",
    ]);
    assert_eq!(result, "Result=success\nExecMainStatus=0\n");
    let last = machine.lines("tracer.json").pop().unwrap();
    assert_eq!(last["event"], "tracer_stop", "{last}");
    // What the service and systemd said of it: no failure, no error.
    let journal = machine.must(&["journalctl", "--unit=tracer", "--no-pager", "--output=cat"]);
    for line in journal.lines() {
        let lower = line.to_lowercase();
        assert!(
            !(lower.contains("error") || lower.contains("fail") || lower.contains("panic")),
            "{line}\nin the journal:\n{journal}"
        );
    }
}
