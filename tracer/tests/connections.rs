//! Connection records beyond the stories: connections open before tracing started, in
//! tracer's network namespace and another (and TIME_WAIT sockets, which are not listed
//! but counted), and the bound on open records.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    process::Command,
};

use crate::support::{
    HelperProcess, Tracer,
    capture::{Capture, epoch_ns},
    free_port, listen_on_free_port,
    prometheus::{poll_until, scrape},
    shared,
    sockets::pair,
    tracer_bin, wait_until,
};

/// Closes `client` first and waits for the server side to see it, then closes that too.
fn close(client: TcpStream, mut server: TcpStream) {
    drop(client);
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn connections_open_before_tracing_get_records() {
    let _machine = shared();
    let listener = listen_on_free_port("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let (mut client, mut server) = pair(&listener);
    let local = client.local_addr().unwrap().to_string();
    let mut tracer = Tracer::start(&[port]);
    let existing = tracer.wait_for("the connection read from the kernel", |l| {
        l["event"] == "existing" && l["local"] == local
    });
    assert_eq!(
        (&existing["state"], &existing["sock"]),
        (&"ESTABLISHED".into(), &"0x0000000000000000".into())
    );
    client.write_all(b"late").unwrap();
    server.read_exact(&mut [0u8; 4]).unwrap();
    close(client, server);

    let record = tracer.wait_for("its record", |l| {
        l["event"] == "connection" && l["local"] == local
    });
    let server_side = tracer.wait_for("the server side's record", |l| {
        l["event"] == "connection" && l["remote"] == local
    });
    // The listener, open before tracing too, makes the accepted side the server.
    assert_eq!(
        (&record["role"], &server_side["role"]),
        (&"client".into(), &"server".into()),
        "{record:#}\n{server_side:#}"
    );
    // Both ends held by this process, found from the sockets' inodes.
    assert_eq!(
        (&record["pid"], &server_side["pid"]),
        (&std::process::id().into(), &std::process::id().into()),
        "{record:#}\n{server_side:#}"
    );
    assert_eq!(record["observed_from_start"], false, "{record:#}");
    assert_eq!(record["close_initiator"], "local", "{record:#}");
    assert_eq!(record["handshake_us"], serde_json::Value::Null);
    assert_ne!(
        record["sock"], "0x0000000000000000",
        "bound to the kernel's socket by its first event"
    );
}

/// A connection open before tracing, with its listener, both held by another process in
/// a network namespace of its own (`unshare --net`): what a pod's long-lived connection
/// is to a tracer started on its node. The records name that process, that namespace,
/// the right roles, and what the connection carried before tracing and in all.
#[test]
fn connections_open_before_tracing_in_another_network_namespace_get_records() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut helper = HelperProcess::spawn(
        &[
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ],
        "connections::pair_in_a_network_namespace_of_its_own",
        ("TRACER_NETNS_PAIR_PORT", port.to_string()),
    );
    assert!(
        helper.said("ready"),
        "the helper ended before its connection was open"
    );
    let pid = helper.0.id();
    let netns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_ne!(netns, own, "the helper has a network namespace of its own");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();

    let mut tracer = Tracer::start(&[port]);
    let server = format!("127.0.0.1:{port}");
    let found = tracer.wait_for(
        "the connection found open, in the helper's namespace",
        |l| l["event"] == "existing" && l["remote"] == server,
    );
    assert_eq!(
        (&found["netns"], &found["pid"], &found["comm"]),
        (&netns.into(), &pid.into(), &comm.trim_end().into()),
        "{found:#}"
    );
    // The helper closes its connection, client first.
    helper
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(b"close\n")
        .unwrap();
    let client = tracer.wait_for("the client's record", |l| {
        l["event"] == "connection" && l["remote"] == server
    });
    let server_side = tracer.wait_for("the server's record", |l| {
        l["event"] == "connection" && l["local"] == server
    });
    for (record, role) in [(&client, "client"), (&server_side, "server")] {
        assert_eq!(
            (&record["role"], &record["netns"], &record["pid"]),
            (&role.into(), &netns.into(), &pid.into()),
            "{record:#}"
        );
        assert_eq!(record["observed_from_start"], false, "{record:#}");
        // One exchange before tracing, one after: the record's bytes are totals since
        // the connection began, `at_start` what had passed before.
        assert_eq!(
            (&record["bytes_sent"], &record["bytes_received"]),
            (&8.into(), &8.into()),
            "{record:#}"
        );
        assert_eq!(
            (
                &record["at_start"]["bytes_sent"],
                &record["at_start"]["bytes_received"]
            ),
            (&4.into(), &4.into()),
            "{record:#}"
        );
        assert!(
            record["at_start"]["rtt_us"].as_u64().unwrap() > 0,
            "{record:#}"
        );
    }
    assert_eq!(client["close_initiator"], "local", "{client:#}");
    assert!(helper.0.wait().unwrap().success());
}

/// The helper process of the test above, in its own network namespace: a listener, a
/// connection to it with a request answered; `ready` on stdout; then, on a line on
/// stdin, one more exchange and the client's close.
#[test]
#[ignore = "started by connections_open_before_tracing_in_another_network_namespace_get_records"]
fn pair_in_a_network_namespace_of_its_own() {
    let Ok(port) = std::env::var("TRACER_NETNS_PAIR_PORT") else {
        return;
    };
    let listener = TcpListener::bind(("127.0.0.1", port.parse().unwrap())).unwrap();
    let (mut client, mut server) = pair(&listener);
    exchange(&mut client, &mut server);
    println!("ready");
    std::io::stdin().lines().next();
    exchange(&mut client, &mut server);
    close(client, server);
}

/// One request and its answer on a kept-alive connection: 4 bytes each way.
fn exchange(client: &mut TcpStream, server: &mut TcpStream) {
    client.write_all(b"ping").unwrap();
    server.read_exact(&mut [0u8; 4]).unwrap();
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut [0u8; 4]).unwrap();
}

/// The `closed` records in `lines` of the socket at `local` -> `remote`.
fn closed_records(
    lines: &[serde_json::Value],
    local: SocketAddr,
    remote: SocketAddr,
) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|l| {
            l["event"] == "connection"
                && l["record"] == "closed"
                && l["local"] == local.to_string()
                && l["remote"] == remote.to_string()
        })
        .collect()
}

/// A restart in the middle of keep-alive traffic: the new tracer starts while the old
/// one still runs, then the old one stops. Connections closed before the restart have
/// their record from the old tracer, those closed after it from the new one (which
/// found them open: `at_start` says what they carried before), those closed in between
/// from both; none is lost, and no tracer writes two records of one connection. Every
/// record's bytes are the totals a capture started before the connections counts.
#[test]
fn a_restart_amid_keep_alive_traffic_loses_no_connection() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let capture = Capture::start(port);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut pairs: Vec<(TcpStream, TcpStream)> = (0..15).map(|_| pair(&listener)).collect();
    let ends: Vec<(SocketAddr, SocketAddr)> = pairs
        .iter()
        .map(|(client, _)| (client.local_addr().unwrap(), client.peer_addr().unwrap()))
        .collect();
    let mut exchanges = vec![0u64; pairs.len()];
    let round = |pairs: &mut [(TcpStream, TcpStream)], exchanges: &mut [u64]| {
        for ((client, server), count) in pairs.iter_mut().zip(exchanges.iter_mut()) {
            exchange(client, server);
            *count += 1;
        }
    };
    round(&mut pairs, &mut exchanges);
    let old = Tracer::start(&[port]);
    round(&mut pairs, &mut exchanges);
    // Five close while only the old tracer runs.
    let mut open: Vec<_> = pairs.drain(5..).collect();
    for (client, server) in pairs {
        close(client, server);
    }
    let mut new = Tracer::start(&[port]);
    let last_found = ends[14].0.to_string();
    new.wait_for("the connections found open", |l| {
        l["event"] == "existing" && l["local"] == last_found
    });
    let at_restart = exchanges.clone();
    round(&mut open, &mut exchanges[5..]);
    // Five close while both run, five after the old one stopped.
    let mut rest: Vec<_> = open.drain(5..).collect();
    for (client, server) in open {
        close(client, server);
    }
    let (status, old_lines) = old.stop();
    assert!(status.success());
    round(&mut rest, &mut exchanges[10..]);
    for (client, server) in rest {
        close(client, server);
    }
    let last = ends[14].1.to_string();
    new.wait_for("the last server record", |l| {
        l["event"] == "connection" && l["local"] == last && l["remote"] == last_found
    });
    let (_, new_lines) = new.stop();
    let wire = capture.finish();

    for (i, &(client, server)) in ends.iter().enumerate() {
        for (local, remote, role) in [(client, server, "client"), (server, client, "server")] {
            let by_old = closed_records(&old_lines, local, remote);
            let by_new = closed_records(&new_lines, local, remote);
            let expected = (usize::from(i < 10), usize::from(i >= 5));
            assert_eq!(
                (by_old.len(), by_new.len()),
                expected,
                "connection {i}, {role} side: old {by_old:#?} new {by_new:#?}"
            );
            for record in by_old.iter().chain(&by_new) {
                assert_eq!(record["role"], role, "{record:#}");
                let on_wire = wire.connection(local, remote, epoch_ns(record, "start"));
                assert_eq!(
                    (&record["bytes_sent"], &record["bytes_received"]),
                    (
                        &on_wire.payload(local).0.into(),
                        &on_wire.payload(local).1.into()
                    ),
                    "{record:#}"
                );
                assert_eq!(record["bytes_sent"], 4 * exchanges[i], "{record:#}");
            }
            if let Some(record) = by_new.first() {
                assert_eq!(record["observed_from_start"], false, "{record:#}");
                assert_eq!(
                    record["at_start"]["bytes_sent"],
                    4 * at_restart[i],
                    "{record:#}"
                );
            }
        }
    }
}

/// The TIME_WAIT sockets with `port` as their local or remote port, as `ss` lists them.
fn ss_time_wait(port: u16) -> usize {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let output = Command::new("ss")
        .args(["-Htan", "state", "time-wait", &filter])
        .output()
        .expect("cannot run ss");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().lines().count()
}

/// `tracer_time_wait_sockets{port="P"}` in a scrape of `addr`.
fn time_wait_gauge(addr: SocketAddr, port: u16) -> (Option<f64>, String) {
    let (_, text) = scrape(addr, None);
    let series = format!("tracer_time_wait_sockets{{port=\"{port}\"}} ");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().unwrap());
    (value, text)
}

#[test]
fn time_wait_sockets_are_counted_not_listed() {
    let _machine = shared();
    let listener = listen_on_free_port("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    // The side that closes first holds TIME_WAIT (60 s): twice the server (its local port
    // is the traced one), once the client (its remote port).
    for server_first in [true, true, false] {
        let (client, server) = pair(&listener);
        if server_first {
            close(server, client);
        } else {
            close(client, server);
        }
    }
    wait_until("3 TIME_WAIT sockets listed by ss", || {
        ss_time_wait(port) == 3
    });

    let addr = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")));
    let mut command = Tracer::command(&[port]);
    command.arg("--metrics-addr").arg(addr.to_string());
    let tracer = Tracer::spawn(command);
    // Counted as tracing starts, not 10 s later.
    poll_until(
        "tracer_time_wait_sockets equal to what ss lists",
        || {
            let (value, text) = time_wait_gauge(addr, port);
            let listed = ss_time_wait(port);
            format!("ss lists {listed}, the gauge is {value:?} in\n{text}")
        },
        || {
            let (value, _) = time_wait_gauge(addr, port);
            (value == Some(ss_time_wait(port) as f64)).then_some(())
        },
    );

    let (status, lines) = tracer.stop();
    assert!(status.success());
    let listed: Vec<_> = lines.iter().filter(|l| l["event"] == "existing").collect();
    assert!(
        listed.iter().all(|l| l["state"] != "TIME_WAIT"),
        "TIME_WAIT sockets are not connections: {listed:#?}"
    );
    let stop = lines.last().unwrap();
    assert_eq!(stop["event"], "tracer_stop");
    assert_eq!(
        stop["unmatched_events"], 0,
        "nothing else happened on the port: {stop}"
    );
}

#[test]
fn records_beyond_max_connections_are_evicted_in_band() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let mut command = Command::new(tracer_bin());
    command.args([
        "--port",
        &port.to_string(),
        "--max-connections",
        "1",
        "--emit",
        "connections",
    ]);
    let mut tracer = Tracer::spawn(command);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (first_client, first_server) = pair(&listener);
    let first = first_client.local_addr().unwrap().to_string();
    // The second connection's sockets push the first connection's records out.
    let (second_client, second_server) = pair(&listener);
    let evicted = tracer.wait_for("an evicted record", |l| {
        l["event"] == "connection" && l["record"] == "evicted"
    });
    assert!(
        evicted["local"] == first || evicted["remote"] == first,
        "{evicted:#}"
    );
    close(first_client, first_server);
    close(second_client, second_server);
    let (status, lines) = tracer.stop();
    assert!(status.success());
    let stop = lines.last().unwrap();
    assert_eq!(stop["event"], "tracer_stop");
    let evictions = lines.iter().filter(|l| l["record"] == "evicted").count() as u64;
    assert_eq!(stop["evicted"], evictions, "{stop}");
    assert!(
        lines.iter().all(|l| l["event"] != "state_change"),
        "--emit connections writes no events"
    );
}
