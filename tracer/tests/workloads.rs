//! Workloads: every line and record of a connection names its socket's cgroup, from the
//! socket itself, so lines the kernel writes in softirq (a retransmission) name it too.

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::support::{HelperProcess, PacketDrop, Tracer, free_port, shared};

/// Where cgroup2 is mounted (the first `cgroup2` line of `/proc/self/mountinfo`); a
/// kernel-matrix guest mounts none, so the test mounts one, as a node running only
/// cgroup2 has it.
fn cgroup2_root() -> PathBuf {
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
    let join = format!(
        "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
        cgroup.dir.display()
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

/// The server of `lines_and_records_name_the_sockets_cgroup`, started in its cgroup:
/// one connection, one answer, until the client closes.
#[test]
#[ignore = "started by lines_and_records_name_the_sockets_cgroup"]
fn server_in_a_cgroup_of_its_own() {
    let Ok(port) = std::env::var("TRACER_CGROUP_SERVER_PORT") else {
        return;
    };
    let listener = TcpListener::bind(("127.0.0.1", port.parse().unwrap())).unwrap();
    println!("listening");
    let (mut connection, _) = listener.accept().unwrap();
    connection.read_exact(&mut [0u8; 4]).unwrap();
    connection.write_all(b"pong").unwrap();
    let _ = connection.read(&mut [0u8; 1]);
}
