//! Real containers: Debian's podman (with the runc runtime, which this host's hybrid
//! cgroups need) runs two containers from an image imported offline (a root file system
//! holding `busybox-static`), each serving HTTP on the same port in its own network
//! namespace. Each record names its container as podman does, `--container` traces
//! one container's connections and none of the other's, and `--metrics-labels` tells
//! their metrics apart. tracer's own image (built by
//! `cargo xtask image`, which `cargo xtask test` runs first) runs with what the DaemonSet
//! grants and traces the host. Not run in the kernel matrix's
//! guests, which carry no container runtime; the cgroup attribution and selection it
//! relies on are checked there by `workloads`.

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    os::unix::fs::symlink,
    process::{Command, Stdio},
    sync::OnceLock,
};

use serde_json::Value;

use crate::support::{
    Tracer, exclusive, free_port, http::pong, lines_of, prometheus, shared, wait_for_start,
    wait_until,
};

/// The image, imported once per test process.
const IMAGE: &str = "localhost/tracer-test-busybox:latest";
/// The port the containers' servers listen on, inside their network namespaces.
const PORT: u16 = 8080;

/// `podman --runtime runc ARGS`, its output; panics with podman's error.
fn podman(args: &[&str]) -> String {
    let output = Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .expect("cannot run podman (cargo xtask setup installs it)");
    assert!(
        output.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Imports [`IMAGE`]: a root file system of `/bin/busybox` (static) with its `httpd` and
/// `sh`, and a page to serve. No registry is reachable, nor needed.
fn image() -> &'static str {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("tracer-test-rootfs-{}", std::process::id()));
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "httpd"] {
            let _ = fs::remove_file(bin.join(applet));
            symlink("busybox", bin.join(applet)).unwrap();
        }
        fs::create_dir_all(root.join("www")).unwrap();
        fs::write(root.join("www/index.html"), "pong\n").unwrap();
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let imported = Command::new("podman")
            .args(["import", "-", IMAGE])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success());
        assert!(
            imported.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
        let _ = fs::remove_dir_all(&root);
    });
    IMAGE
}

/// A container serving [`PORT`], published on the host's loopback at `host_port`;
/// removed when dropped.
struct Container {
    id: String,
    host_port: u16,
}

impl Container {
    fn start(host_port: u16) -> Self {
        let publish = format!("127.0.0.1:{host_port}:{PORT}");
        let id = podman(&[
            "run",
            "-d",
            // Root here lacks CAP_SYS_RESOURCE: the default limits cannot be set.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "-p",
            &publish,
            image(),
            "/bin/httpd",
            "-f",
            "-p",
            &PORT.to_string(),
            "-h",
            "/www",
        ]);
        let container = Self { id, host_port };
        wait_until("the container's server", || container.request().is_some());
        container
    }

    /// One HTTP request through the published port: the client's end, when answered.
    fn request(&self) -> Option<SocketAddr> {
        pong(self.host_port)
    }

    /// The cgroup path of its process, as podman made it.
    fn cgroup(&self) -> String {
        let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &self.id]);
        let lines = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        lines
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .unwrap()
            .to_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["--runtime", "runc", "rm", "-f", "-t", "0", &self.id])
            .output();
    }
}

/// Two containers serving the same port. A tracer of that port names each server's
/// container in its record (the id podman reports, runtime `podman`); a tracer started
/// with `--container` and the first container's short id gives lines of that container
/// only.
#[test]
fn records_name_their_container_and_a_container_selection_keeps_to_it() {
    let _machine = shared();
    let (a, b) = (
        Container::start(free_port("127.0.0.1")),
        Container::start(free_port("127.0.0.1")),
    );
    assert_eq!(a.id.len(), 64, "podman run -d prints the full id: {}", a.id);
    let mut all = Tracer::start(&[PORT]);
    let mut command = Tracer::command(&[PORT]);
    command.args(["--container", &a.id[..12]]);
    let mut only_a = Tracer::spawn(command);
    b.request().expect("B answers");
    a.request().expect("A answers");

    let server_record = |tracer: &mut Tracer, container: &Container| {
        tracer.wait_for("a record of the container's server", |l| {
            l["event"] == "connection"
                && l["role"] == "server"
                && l["container"]["id"] == container.id.as_str()
        })
    };
    for container in [&a, &b] {
        let record = server_record(&mut all, container);
        assert_eq!(
            (&record["container"]["runtime"], &record["cgroup"]["path"]),
            (&Value::from("podman"), &Value::from(container.cgroup())),
            "{record:#}"
        );
        assert_eq!(
            record["local"].as_str().unwrap().rsplit(':').next(),
            Some("8080")
        );
    }
    server_record(&mut only_a, &a);
    let (_, lines) = only_a.stop();
    for line in lines
        .iter()
        .filter(|l| l["event"] != "tracer_start" && l["event"] != "tracer_stop")
    {
        let path = line["cgroup"]["path"].as_str().unwrap_or_default();
        assert!(path.contains(&a.id), "a line not of A's: {line}");
    }
}

/// The value of each series of `family` in a scrape whose labels include all of
/// `labels` (`name="value"` each).
fn series(scrape: &str, family: &str, labels: &[&str]) -> Vec<(String, f64)> {
    (scrape.lines())
        .filter_map(|line| {
            let rest = line.strip_prefix(family)?.strip_prefix('{')?;
            let (set, value) = rest.rsplit_once("} ")?;
            labels
                .iter()
                .all(|label| set.split(',').any(|l| l == *label))
                .then(|| (set.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

/// `--metrics-labels container,pod`: the connection families carry each server's
/// container id, so two containers serving the same port are told apart; a container
/// outside Kubernetes has no pod label.
#[test]
fn metrics_labels_tell_the_containers_apart() {
    // Alone: every server connection on the port is checked below, and other tests'
    // containers serve the same port (one made in the 200 ms after a walk of the cgroup
    // tree would be counted without its path: docs/events.md).
    let _machine = exclusive();
    let (a, b) = (
        Container::start(free_port("127.0.0.1")),
        Container::start(free_port("127.0.0.1")),
    );
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let mut command = Tracer::command(&[PORT]);
    command.args(["--metrics-addr", &metrics.to_string()]);
    command.args(["--metrics-labels", "container,pod"]);
    let tracer = Tracer::spawn(command);
    for container in [&a, &a, &b] {
        container.request().expect("the container answers");
    }
    let served = |scrape: &str, container: &Container| -> f64 {
        let id = format!("container_id=\"{}\"", container.id);
        let labels = ["role=\"server\"", "port=\"8080\"", id.as_str()];
        (series(scrape, "tracer_connections_total", &labels).iter())
            .map(|(_, value)| value)
            .sum()
    };
    let mut scrape = String::new();
    wait_until("each container's connections in the metrics", || {
        scrape = prometheus::scrape(metrics, None).1;
        served(&scrape, &a) == 2.0 && served(&scrape, &b) == 1.0
    });
    // Every server connection counted is labelled with its container.
    let servers = series(&scrape, "tracer_connections_total", &["role=\"server\""]);
    for (labels, value) in &servers {
        assert!(
            *value == 0.0 || labels.contains("container_id="),
            "{labels} {value}"
        );
    }
    let handshakes = series(
        &scrape,
        "tracer_handshake_seconds_count",
        &["role=\"server\"", &format!("container_id=\"{}\"", a.id)],
    );
    assert_eq!(handshakes.len(), 1, "{scrape}");
    assert!(!scrape.contains("pod_uid="), "no pod here: {scrape}");
    drop(tracer);
}

/// The image `cargo xtask image` builds (deploy/Dockerfile), as `cargo xtask test` builds
/// it before the tests.
const TRACER_IMAGE: &str = "localhost/tracer:0.1.0";

/// What the DaemonSet grants its container, read from the manifest: the capabilities it
/// adds (it drops all others) and whether it shares the host's network and pids.
fn daemonset_grants() -> (Vec<String>, bool, bool) {
    let manifest = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/daemonset.yaml"
    ))
    .unwrap();
    let setting = |key: &str| {
        manifest
            .lines()
            .find_map(|line| line.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("the DaemonSet has no {key}"))
            .trim()
            .to_owned()
    };
    assert_eq!(setting("drop:"), r#"["ALL"]"#);
    let added: Vec<String> = serde_json::from_str(&setting("add:")).unwrap();
    (
        added,
        setting("hostNetwork:") == "true",
        setting("hostPID:") == "true",
    )
}

/// The image runs as the DaemonSet runs it: the manifest's capabilities and host
/// namespaces (not `--privileged`), a read-only root, no new privileges, tracefs and BTF
/// mounted read-only, the log directory from the host. It traces a port of the host: the
/// records arrive in the file, the metrics endpoint answers, tracer holds no capability
/// once attached, and SIGTERM (`podman stop`) ends it with a `tracer_stop` line and exit 0.
#[test]
fn the_image_runs_as_the_daemonset_runs_it() {
    let _machine = shared();
    let present = Command::new("podman")
        .args(["image", "exists", TRACER_IMAGE])
        .status()
        .unwrap();
    assert!(
        present.success(),
        "no image {TRACER_IMAGE}: run cargo xtask image"
    );
    let (capabilities, host_network, host_pid) = daemonset_grants();
    assert!(
        host_network && host_pid,
        "the test reaches the tracer through both"
    );
    let (port, metrics_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let logs = tempfile::tempdir().unwrap();
    let volume = |host: &str, inside: &str, mode: &str| format!("{host}:{inside}:{mode}");
    let id = podman(&[
        "run",
        "-d",
        "--network",
        "host",
        "--pid",
        "host",
        "--read-only",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "all",
        "--cap-add",
        &capabilities.join(","),
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        "-v",
        &volume("/sys/kernel/tracing", "/sys/kernel/tracing", "ro"),
        "-v",
        &volume("/sys/kernel/btf", "/sys/kernel/btf", "ro"),
        "-v",
        &volume(logs.path().to_str().unwrap(), "/var/log/tracer", "rw"),
        "-e",
        &format!("TRACER_PORT={port}"),
        "-e",
        &format!("TRACER_METRICS_ADDR=127.0.0.1:{metrics_port}"),
        "-e",
        "TRACER_EMIT=connections",
        "-e",
        "TRACER_OUTPUT=/var/log/tracer/tracer.json",
        TRACER_IMAGE,
    ]);
    let container = Container { id, host_port: 0 };
    let file = logs.path().join("tracer.json");
    let lines = || lines_of(&file);
    wait_for_start(&file);

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let client_end = client.local_addr().unwrap().to_string();
    drop(client);
    drop(server);
    wait_until("both records in the file", || {
        lines()
            .iter()
            .filter(|l| {
                l["event"] == "connection"
                    && (l["local"] == client_end.as_str() || l["remote"] == client_end.as_str())
            })
            .count()
            == 2
    });
    let metrics = ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "tracer_connections_total{{port=\"{port}\",role=\"client\""
        )),
        "{metrics}"
    );
    let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &container.id]);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l == "CapEff:\t0000000000000000"),
        "tracer keeps capabilities after attaching:\n{status}"
    );

    podman(&["stop", "-t", "10", &container.id]);
    assert_eq!(
        podman(&["inspect", "--format", "{{.State.ExitCode}}", &container.id]),
        "0"
    );
    let last = lines().pop().unwrap();
    assert_eq!(last["event"], "tracer_stop", "{last}");
}
