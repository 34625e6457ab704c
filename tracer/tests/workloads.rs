//! Workloads: every line and record of a connection names its socket's cgroup, from the
//! socket itself, so lines the kernel writes in softirq (a retransmission) name it too.

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{DEADLINE, HelperProcess, PacketDrop, Tracer, free_port, shared};

/// Where cgroup2 is mounted (the first `cgroup2` line of `/proc/self/mountinfo`); a
/// kernel-matrix guest mounts none, so the first test to ask mounts one, as a node
/// running only cgroup2 has it.
fn cgroup2_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(find_or_mount_cgroup2).clone()
}

fn find_or_mount_cgroup2() -> PathBuf {
    let find = || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find_map(|line| {
                let (before, after) = line.split_once(" - ")?;
                after
                    .starts_with("cgroup2 ")
                    .then(|| PathBuf::from(before.split(' ').nth(4).unwrap()))
            })
    };
    if let Some(root) = find() {
        return root;
    }
    let root = PathBuf::from("/run/tracer-test-cgroup2");
    fs::create_dir_all(&root).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success(), "cannot mount cgroup2 at {root:?}");
    find().expect("cgroup2 mounted")
}

/// A cgroup of this test's own, removed when dropped (its processes gone by then).
struct TestCgroup {
    dir: PathBuf,
    /// Its path from the cgroup2 root, as tracer prints it.
    path: String,
}

impl TestCgroup {
    fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            path: format!("/{name}"),
        }
    }

    fn id(&self) -> u64 {
        fs::metadata(&self.dir).unwrap().ino()
    }

    /// [`server_in_a_cgroup_of_its_own`] on `port`, started in this cgroup, listening.
    fn server(&self, port: u16) -> HelperProcess {
        let join = format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
            self.dir.display()
        );
        let mut helper = HelperProcess::spawn(
            &["sh", "-c", &join],
            "workloads::server_in_a_cgroup_of_its_own",
            ("TRACER_CGROUP_SERVER_PORT", port.to_string()),
        );
        assert!(
            helper.said("listening"),
            "the server ended before listening"
        );
        helper
    }
}

/// One request and its answer on a new connection to `port`, then the client's close;
/// the client's end.
fn exchange(port: u16) -> SocketAddr {
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"ping").unwrap();
    client.read_exact(&mut [0u8; 4]).unwrap();
    client.local_addr().unwrap()
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// This process's own cgroup (v2): its path and id.
fn own_cgroup(root: &Path) -> (String, u64) {
    let path = fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        .expect("a cgroup v2 line in /proc/self/cgroup");
    let id = fs::metadata(root.join(path.trim_start_matches('/')))
        .unwrap()
        .ino();
    (path, id)
}

/// A server in a cgroup of its own and a client in this test's: each record, and each
/// event line of its socket (the server's retransmission in softirq among them), names
/// the cgroup of the process that made the socket, by the kernel's id and its path.
#[test]
fn lines_and_records_name_the_sockets_cgroup() {
    let _machine = shared();
    let root = cgroup2_root();
    let cgroup = TestCgroup::new(&root, &format!("tracer-test-{}", std::process::id()));
    let port = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[port]);
    let helper = cgroup.server(port);

    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (local, server) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    {
        // The server's answer is lost until it has been sent again from its timer.
        let _lost = PacketDrop::new(&format!("tcp sport {port}"));
        client.write_all(b"ping").unwrap();
        tracer.wait_for("the server's retransmission", |l| {
            l["event"] == "retransmit" && l["local"] == server.to_string()
        });
    }
    client.read_exact(&mut [0u8; 4]).unwrap();
    drop(client);
    let record_of = |tracer: &mut Tracer, from: SocketAddr, to: SocketAddr| {
        tracer.wait_for("a connection record", |l| {
            l["event"] == "connection"
                && l["local"] == from.to_string()
                && l["remote"] == to.to_string()
        })
    };
    let server_side = record_of(&mut tracer, server, local);
    let client_side = record_of(&mut tracer, local, server);
    drop(helper);

    let named = |path: &str, id: u64| serde_json::json!({"id": id, "path": path});
    assert_eq!(
        server_side["cgroup"],
        named(&cgroup.path, cgroup.id()),
        "{server_side:#}"
    );
    let (own_path, own_id) = own_cgroup(&root);
    assert_eq!(
        client_side["cgroup"],
        named(&own_path, own_id),
        "{client_side:#}"
    );
    for side in [&server_side, &client_side] {
        assert_eq!(
            (&side["container"], &side["pod"]),
            (&Value::Null, &Value::Null)
        );
    }
    // Every event line of each socket names the same cgroup as its record.
    for side in [&server_side, &client_side] {
        let lines: Vec<&Value> = tracer
            .seen
            .iter()
            .filter(|l| l["event"] != "connection" && l["sock"] == side["sock"])
            .collect();
        assert!(lines.len() >= 3, "{lines:#?}");
        for line in lines {
            assert_eq!(line["cgroup"], side["cgroup"], "{line}");
        }
    }
    let retransmit = tracer
        .seen
        .iter()
        .find(|l| l["event"] == "retransmit" && l["local"] == server.to_string())
        .unwrap();
    assert_eq!(
        (&retransmit["pid"], &retransmit["cgroup"]),
        (&Value::Null, &server_side["cgroup"]),
        "sent in softirq, named by the socket: {retransmit}"
    );
}

/// `--cgroup A`: servers in a cgroup below A and in B, a client in neither. Only A's
/// server socket and listener give lines: B's traffic gives none, nor do the client's
/// sockets (of the test's own cgroup), although every port is traced.
#[test]
fn a_cgroup_selection_traces_that_cgroup_only() {
    let _machine = shared();
    let root = cgroup2_root();
    let name = |n: &str| format!("tracer-test-{}-{n}", std::process::id());
    let (a, b) = (
        TestCgroup::new(&root, &name("a")),
        TestCgroup::new(&root, &name("b")),
    );
    // A's server one level below A: the kernel compares the ancestors too.
    let below_a = TestCgroup::new(&root, &format!("{}/below", name("a")));
    let (port_a, port_b) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let mut command = Tracer::command(&[port_a, port_b]);
    command.args(["--cgroup", &a.path]);
    let mut tracer = Tracer::spawn(command);
    let (server_a, server_b) = (below_a.server(port_a), b.server(port_b));
    let client_b = exchange(port_b);
    let client_a = exchange(port_a);
    let record = tracer.wait_for("the record of A's server", |l| {
        l["event"] == "connection" && l["remote"] == client_a.to_string()
    });
    drop((server_a, server_b));
    let (_, lines) = tracer.stop();

    assert_eq!(
        record["cgroup"]["path"],
        below_a.path.as_str(),
        "{record:#}"
    );
    let events: Vec<&Value> = lines
        .iter()
        .filter(|l| !l["event"].as_str().unwrap().starts_with("tracer_"))
        .collect();
    let ports_of = |l: &Value| -> Vec<u16> {
        ["local", "remote"]
            .iter()
            .map(|end| {
                l[end]
                    .as_str()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .unwrap()
                    .port()
            })
            .collect()
    };
    for line in &events {
        assert!(!ports_of(line).contains(&port_b), "B's traffic: {line}");
        assert_ne!(line["local"], client_a.to_string(), "the client's: {line}");
        assert_ne!(line["local"], client_b.to_string(), "the client's: {line}");
        assert_eq!(line["cgroup"]["path"], below_a.path.as_str(), "{line}");
    }
    // A's listener and its accepted socket: at least LISTEN, the handshake, the close.
    assert!(events.len() >= 4, "{events:#?}");
}

/// `--cgroup A` without `--port`: every port of A's workloads is traced (two servers in
/// A on two ports), nothing of B's; `tracer_start` lists no ports (every one).
#[test]
fn a_workload_without_ports_is_traced_on_every_port() {
    let _machine = shared();
    let root = cgroup2_root();
    let name = |n: &str| format!("tracer-test-{}-every-{n}", std::process::id());
    let (a, b) = (
        TestCgroup::new(&root, &name("a")),
        TestCgroup::new(&root, &name("b")),
    );
    let ports = [
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
    ];
    let mut command = Tracer::command(&[]);
    command.args(["--cgroup", &a.path]);
    let mut tracer = Tracer::spawn(command);
    let servers = [a.server(ports[0]), a.server(ports[1]), b.server(ports[2])];
    let clients = ports.map(exchange);
    for (port, client) in ports.iter().zip(&clients).take(2) {
        let record = tracer.wait_for("the record of A's server", |l| {
            l["event"] == "connection" && l["remote"] == client.to_string()
        });
        assert_eq!(record["role"], "server", "{record:#}");
        assert_eq!(record["cgroup"]["path"], a.path.as_str(), "{record:#}");
        let local: SocketAddr = record["local"].as_str().unwrap().parse().unwrap();
        assert_eq!(local.port(), *port);
    }
    drop(servers);
    let (_, lines) = tracer.stop();
    assert_eq!(lines[0]["event"], "tracer_start");
    assert_eq!(lines[0]["ports"], serde_json::json!([]), "{}", lines[0]);
    let b_port = format!(":{}", ports[2]);
    for line in &lines {
        for end in ["local", "remote"] {
            let end = line[end].as_str().unwrap_or_default();
            assert!(!end.ends_with(&b_port), "B's traffic: {line}");
        }
    }
}

/// A connection open before tracing, its server's socket made in cgroup A, the server
/// process then moved to cgroup B, its client in the test's own: found at start, the
/// server's end takes its socket's cgroup (A, as the kernel's events for it say), not its
/// owner's; under `--cgroup A` it is kept and the client's end is left out, as its later
/// events are.
#[test]
fn connections_open_at_start_take_their_sockets_cgroup() {
    let _machine = shared();
    let root = cgroup2_root();
    let a = TestCgroup::new(&root, &format!("tracer-test-{}-open", std::process::id()));
    let b = TestCgroup::new(&root, &format!("tracer-test-{}-moved", std::process::id()));
    let port = free_port("127.0.0.1");
    let server = a.server(port);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"ping").unwrap();
    client.read_exact(&mut [0u8; 4]).unwrap();
    let local = client.local_addr().unwrap().to_string();
    fs::write(b.dir.join("cgroup.procs"), server.0.id().to_string()).unwrap();

    let mut command = Tracer::command(&[port]);
    command.args(["--cgroup", &a.path]);
    let mut tracer = Tracer::spawn(command);
    let found = tracer.wait_for("the server's end, found open", |l| {
        l["event"] == "existing" && l["remote"] == local
    });
    assert_eq!(
        found["cgroup"],
        serde_json::json!({"id": a.id(), "path": a.path}),
        "{found}"
    );
    drop(client);
    let record = tracer.wait_for("its record", |l| {
        l["event"] == "connection" && l["remote"] == local
    });
    assert_eq!(record["cgroup"], found["cgroup"], "{record:#}");
    drop(server);
    let (_, lines) = tracer.stop();
    assert!(
        lines.iter().all(|l| l["local"] != local),
        "the client's end is in the test's cgroup: {lines:#?}"
    );
}

/// A selected cgroup removed and made again (a service restarted) has a new id, which
/// the daemon follows: connections of the new incarnation are traced. Until it has looked
/// again (every second) they may not be, so the test connects until one is.
#[test]
fn a_selected_cgroup_made_again_is_followed() {
    let _machine = shared();
    let root = cgroup2_root();
    let a = TestCgroup::new(&root, &format!("tracer-test-{}-again", std::process::id()));
    let port = free_port("127.0.0.1");
    let mut command = Tracer::command(&[port]);
    command.args(["--cgroup", &a.path]);
    let mut tracer = Tracer::spawn(command);
    let traced = |tracer: &mut Tracer, client: SocketAddr, within: Duration| {
        tracer
            .line_within(within, |l| {
                l["event"] == "state_change" && l["remote"] == client.to_string()
            })
            .is_ok()
    };
    let first_id = a.id();
    {
        let _server = a.server(port);
        let client = exchange(port);
        assert!(
            traced(&mut tracer, client, DEADLINE),
            "the first incarnation's"
        );
    }
    fs::remove_dir(&a.dir).unwrap();
    fs::create_dir(&a.dir).unwrap();
    assert_ne!(a.id(), first_id, "a new cgroup, a new id");
    let _server = a.server(port);
    let deadline = Instant::now() + DEADLINE;
    while !traced(&mut tracer, exchange(port), Duration::from_millis(200)) {
        assert!(
            Instant::now() < deadline,
            "the new incarnation was not followed within {DEADLINE:?}"
        );
    }
}

/// The server of the tests above, started in its cgroup:
/// connections one after the other, one answer each, until the client closes.
#[test]
#[ignore = "started by the tests above"]
fn server_in_a_cgroup_of_its_own() {
    let Ok(port) = std::env::var("TRACER_CGROUP_SERVER_PORT") else {
        return;
    };
    let listener = TcpListener::bind(("127.0.0.1", port.parse().unwrap())).unwrap();
    println!("listening");
    for connection in listener.incoming() {
        let mut connection = connection.unwrap();
        connection.read_exact(&mut [0u8; 4]).unwrap();
        connection.write_all(b"pong").unwrap();
        let _ = connection.read(&mut [0u8; 1]);
    }
}
