//! The tracer's state-change events for real loopback connections, on the running kernel.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::support::{Tracer, free_port, is_change, pairs, shared, state_changes, tracer_bin};

/// The kernel's transitions for a connection the client closes first.
const CLIENT: &[(&str, &str)] = &[
    ("CLOSE", "SYN_SENT"),
    ("SYN_SENT", "ESTABLISHED"),
    ("ESTABLISHED", "FIN_WAIT1"),
    ("FIN_WAIT1", "FIN_WAIT2"),
    // The full socket closes when TIME_WAIT begins; the timewait socket is not traced.
    ("FIN_WAIT2", "CLOSE"),
];
/// The accepted socket is cloned from the listener, hence LISTEN as its first old state.
const SERVER: &[(&str, &str)] = &[
    ("LISTEN", "SYN_RECV"),
    ("SYN_RECV", "ESTABLISHED"),
    ("ESTABLISHED", "CLOSE_WAIT"),
    ("CLOSE_WAIT", "LAST_ACK"),
    ("LAST_ACK", "CLOSE"),
];
const LISTENER: &[(&str, &str)] = &[("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")];

/// One request/response exchange; the client closes first, the server after seeing EOF.
/// Returns (listener, client, server-side) addresses.
fn exchange(ip: &str, port: u16) -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind((ip, port)).unwrap();
    let server_addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(server_addr).unwrap();
    let client_addr = client.local_addr().unwrap();
    let (mut accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer, client_addr);

    let mut buffer = [0u8; 4];
    client.write_all(b"ping").unwrap();
    accepted.read_exact(&mut buffer).unwrap();
    accepted.write_all(b"pong").unwrap();
    client.read_exact(&mut buffer).unwrap();
    drop(client);
    assert_eq!(
        accepted.read(&mut buffer).unwrap(),
        0,
        "the client's FIN arrives"
    );
    drop(accepted);
    drop(listener);
    (server_addr, client_addr)
}

fn assert_connection_traced(ip: &str, family: &str) {
    let port = free_port(ip);
    let mut tracer = Tracer::start(&[port]);
    let (server, client) = exchange(ip, port);
    let unspecified: SocketAddr = SocketAddr::new(
        if ip.contains(':') {
            "::".parse().unwrap()
        } else {
            "0.0.0.0".parse().unwrap()
        },
        0,
    );

    let client_close = tracer.wait_for("the client's CLOSE", |l| {
        is_change(l, client, server, "CLOSE")
    });
    let server_close = tracer.wait_for("the server side's CLOSE", |l| {
        is_change(l, server, client, "CLOSE")
    });
    let listener_close = tracer.wait_for("the listener's CLOSE", |l| {
        is_change(l, server, unspecified, "CLOSE")
    });

    assert_eq!(tracer.transitions_of(&client_close["sock"]), pairs(CLIENT));
    assert_eq!(tracer.transitions_of(&server_close["sock"]), pairs(SERVER));
    assert_eq!(
        tracer.transitions_of(&listener_close["sock"]),
        pairs(LISTENER)
    );

    let me = std::process::id();
    for line in state_changes(&tracer.seen) {
        assert_eq!(line["family"], family, "{line}");
        let sock = &line["sock"];
        if sock == &client_close["sock"] {
            assert_eq!(line["remote"], server.to_string(), "{line}");
            // connect() enters SYN_SENT before the kernel picks the local port.
            if line["new_state"] != "SYN_SENT" {
                assert_eq!(line["local"], client.to_string(), "{line}");
            }
        } else if sock == &server_close["sock"] {
            assert_eq!(line["local"], server.to_string(), "{line}");
            // Before 6.x the kernel clones the listener into SYN_RECV before it copies the
            // peer's address in: that first line still has the listener's remote.
            let remotes = if line["new_state"] == "SYN_RECV" {
                vec![client.to_string(), unspecified.to_string()]
            } else {
                vec![client.to_string()]
            };
            assert!(remotes.iter().any(|r| line["remote"] == *r), "{line}");
        } else {
            assert_eq!(
                sock, &listener_close["sock"],
                "a line for a socket of another test: {line}"
            );
        }
        // Transitions in process context name this test process; softirq ones name none.
        match line["pid"].as_u64() {
            Some(pid) => assert_eq!(pid, u64::from(me), "{line}"),
            None => assert!(line["comm"].is_null(), "{line}"),
        }
    }
    // connect() and listen() run in this process.
    let connect = state_changes(&tracer.seen)
        .find(|l| l["new_state"] == "SYN_SENT")
        .unwrap();
    assert_eq!(connect["pid"].as_u64(), Some(u64::from(me)));
    let listen = state_changes(&tracer.seen)
        .find(|l| l["new_state"] == "LISTEN")
        .unwrap();
    assert_eq!(listen["pid"].as_u64(), Some(u64::from(me)));

    let (status, _) = tracer.stop();
    assert!(
        status.success(),
        "SIGTERM ends the tracer cleanly: {status}"
    );
}

#[test]
fn ipv4_connection_states_in_order() {
    let _machine = shared();
    assert_connection_traced("127.0.0.1", "ipv4");
}

#[test]
fn ipv6_connection_states_in_order() {
    let _machine = shared();
    assert_connection_traced("::1", "ipv6");
}

#[test]
fn untraced_ports_yield_no_line() {
    let _machine = shared();
    let traced = free_port("127.0.0.1");
    let other = free_port("127.0.0.1");
    let mut tracer = Tracer::start(&[traced]);
    exchange("127.0.0.1", other);
    // A connection on the traced port, after the other one, marks the end of the window.
    let (server, client) = exchange("127.0.0.1", traced);
    tracer.wait_for("the traced connection's CLOSE", |l| {
        is_change(l, client, server, "CLOSE")
    });
    let (_, lines) = tracer.stop();
    let other = format!(":{other}\"");
    for line in &lines {
        assert!(
            !line.to_string().contains(&other),
            "untraced port in {line}"
        );
    }
}

#[test]
fn several_ports_are_traced() {
    let _machine = shared();
    let (first, second) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let mut tracer = Tracer::start(&[first, second]);
    let mut ports = [first, second];
    ports.sort_unstable();
    assert_eq!(tracer.seen[0]["ports"], serde_json::json!(ports));
    for port in [first, second] {
        let (server, client) = exchange("127.0.0.1", port);
        tracer.wait_for("the client's CLOSE", |l| {
            is_change(l, client, server, "CLOSE")
        });
    }
}

/// `--port FIRST-LAST` traces every port of the range, and not the port after it.
#[test]
fn a_port_range_is_traced_whole_and_alone() {
    let _machine = shared();
    // Three free ports in a row: the range's two and the one just beyond.
    let (first, last, beyond) = loop {
        let first = free_port("127.0.0.1");
        let (last, beyond) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        if (last, beyond) == (first + 1, first + 2) {
            break (first, last, beyond);
        }
    };
    let mut command = Tracer::command(&[]);
    command.args(["--port", &format!("{first}-{last}")]);
    let mut tracer = Tracer::spawn(command);
    assert_eq!(tracer.seen[0]["ports"], serde_json::json!([first, last]));
    exchange("127.0.0.1", beyond);
    for port in [first, last] {
        let (server, client) = exchange("127.0.0.1", port);
        tracer.wait_for("the client's CLOSE", |l| {
            is_change(l, client, server, "CLOSE")
        });
    }
    let (_, lines) = tracer.stop();
    let beyond = format!(":{beyond}\"");
    for line in &lines {
        assert!(
            !line.to_string().contains(&beyond),
            "the port after the range in {line}"
        );
    }
}

/// `--net` selects a connection by either end's address, IPv4 and IPv6: on loopback,
/// 127.0.0.2/32 and ::1/128 are traced, 127.0.0.3 is not.
#[test]
fn networks_select_by_either_address() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut command = Tracer::command(&[port]);
    command.args(["--net", "127.0.0.2/32", "--net", "::1/128"]);
    let mut tracer = Tracer::spawn(command);
    exchange("127.0.0.3", port);
    for ip in ["127.0.0.2", "::1"] {
        let (server, client) = exchange(ip, port);
        tracer.wait_for("the client's CLOSE", |l| {
            is_change(l, client, server, "CLOSE")
        });
        tracer.wait_for("the server side's CLOSE", |l| {
            l["event"] == "state_change"
                && l["local"] == server.to_string()
                && l["remote"] == client.to_string()
                && l["new_state"] == "CLOSE"
        });
    }
    let (_, lines) = tracer.stop();
    for line in &lines {
        assert!(
            !line.to_string().contains("127.0.0.3"),
            "a connection outside the networks in {line}"
        );
    }
}

#[test]
fn closed_stdout_ends_the_tracer_quietly() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut child = Command::new(tracer_bin())
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("tracer_start"), "{first}");
    drop(stdout); // as `tracer ... | head -1` does
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // Traffic makes the tracer write into the closed pipe.
    let deadline = Instant::now() + crate::support::DEADLINE;
    let status = loop {
        assert!(
            Instant::now() < deadline,
            "the tracer kept running with a closed stdout"
        );
        // One listener for all rounds: rebinding the port each round can race the
        // previous round's server socket still closing on a slow machine.
        drop(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        drop(listener.accept().unwrap());
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panic"), "{stderr}");
}

/// Runs tracer with `args`, which must fail with `code` (2: a bad command line, 1: bad
/// input found later), and returns what it wrote to stderr.
fn run_failing(args: &[&str], as_nobody: bool, code: i32) -> String {
    let mut command = Command::new(tracer_bin());
    command.args(args);
    if as_nobody {
        std::os::unix::process::CommandExt::uid(&mut command, 65534);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_is_one_clear_error() {
    let _machine = shared();
    let stderr = run_failing(&["--port", "0"], false, 2);
    assert!(
        stderr.contains("invalid value '0' for '--port <PORT>'"),
        "{stderr}"
    );
    let stderr = run_failing(&["--port", "8100-8000"], false, 2);
    assert!(
        stderr.contains("\"8100-8000\" is a range upside down (did you mean 8000-8100?)"),
        "{stderr}"
    );

    let stderr = run_failing(
        &["--port", "8191", "--output", "/nonexistent/dir/out.json"],
        false,
        1,
    );
    assert_eq!(
        stderr,
        "tracer: cannot open /nonexistent/dir/out.json: No such file or directory (os error 2)\n"
    );

    let stderr = run_failing(&["--port", "8191", "--cgroup", "/no/such/cgroup"], false, 1);
    // Where cgroup2 is not mounted (a matrix guest before a test mounts it), the error
    // says that instead.
    assert!(
        stderr.lines().count() == 1
            && ((stderr.starts_with("tracer: no cgroup /no/such/cgroup under /")
                && stderr.ends_with("(--cgroup): No such file or directory (os error 2)\n"))
                || stderr.contains("this host has no cgroup2 mount")),
        "{stderr}"
    );

    let stderr = run_failing(&["--port", "8191"], true, 1);
    assert_eq!(
        stderr,
        "tracer: missing CAP_BPF and CAP_PERFMON: tracer needs CAP_BPF to load its eBPF programs and CAP_PERFMON to attach them; run it as root or grant them (see docs/deploy.md)\n"
    );
}

#[test]
fn output_file_receives_the_lines() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let dir = std::env::temp_dir().join(format!("tracer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.json");
    let mut command = Command::new(tracer_bin());
    command.args([
        "--port",
        &port.to_string(),
        "--output",
        path.to_str().unwrap(),
    ]);
    let mut child = command.stderr(Stdio::null()).spawn().unwrap();
    let read_lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let deadline = Instant::now() + crate::support::DEADLINE;
    let (server, client) = loop {
        assert!(
            Instant::now() < deadline,
            "no tracer_start in {}",
            path.display()
        );
        if read_lines()
            .first()
            .is_some_and(|l| l["event"] == "tracer_start")
        {
            break exchange("127.0.0.1", port);
        }
        thread::sleep(Duration::from_millis(20)); // polling a file: nothing to block on
    };
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    // SIGTERM drains: everything up to the client's CLOSE is in the file.
    let lines = read_lines();
    assert!(
        lines.iter().any(|l| is_change(l, client, server, "CLOSE")),
        "{lines:#?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
