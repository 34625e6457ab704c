//! Lifecycles: states and their times, handshakes, records started late or ended by a
//! reused socket, the grace period after CLOSE, and the record's JSON.

use super::*;

#[test]
fn client_closing_first_is_local_with_handshake_and_times() {
    let c = Side::client(0xa, 49320);
    let t = 1000 * MS;
    let mut events = c.connect(t);
    events.extend([
        c.turn(t + 200 * US, Direction::Sent),
        c.turn(t + MS, Direction::Received),
        c.summary(t + 5 * MS, Some(t + 2 * MS), TOTALS),
        c.state_by(t + 5 * MS, Established, FinWait1, curl()),
        c.state(t + 5 * MS + 30 * US, FinWait1, FinWait2),
        c.state(t + 6 * MS, FinWait2, Close),
    ]);
    let record = one(&events);
    assert_eq!(record.role, Role::Client);
    assert_eq!(record.family, Family::Ipv4);
    assert_eq!(record.local.to_string(), "127.0.0.1:49320");
    assert_eq!(
        (record.pid, record.comm.as_deref()),
        (Some(9904), Some("curl"))
    );
    assert_eq!((record.start_ns, record.end_ns), (t, t + 6 * MS));
    assert_eq!(record.handshake_us, Some(150));
    assert_eq!(record.duration_us, 6000);
    assert_eq!(
        states(&record),
        [
            (SynSent, 0),
            (Established, 150),
            (FinWait1, 5000),
            (FinWait2, 5030),
            (Close, 6000)
        ]
    );
    assert_eq!(record.close_initiator, CloseInitiator::Local);
    assert_eq!((record.requests, record.responses), (Some(1), Some(1)));
    assert_eq!(
        record.response_time_us,
        Some(ResponseTimes {
            count: 1,
            min_us: 800,
            max_us: 800,
            total_us: 800
        })
    );
    assert_eq!(record.unanswered_request_us, None);
    assert_eq!(record.idle_before_close_us, Some(3000));
    assert_eq!(
        (record.bytes_sent, record.bytes_received),
        (Some(78), Some(1024))
    );
    assert_eq!(record.netns, Some(4026531840));
    assert_eq!(record.retransmits, 2);
    assert!(record.observed_from_start);
}

#[test]
fn server_closed_by_peer_is_remote_owned_by_listener() {
    let listener = Side::new(
        0x1,
        "0.0.0.0:8191".parse().unwrap(),
        "0.0.0.0:0".parse().unwrap(),
    );
    let s = Side::server(0xb, 49320);
    // Kernels before 6.x report the child's first state with the listener's remote.
    let cloned = Side {
        remote: listener.remote,
        ..s.clone()
    };
    let t = 1000 * MS;
    let record = one(&[
        listener.state_by(t - MS, Close, Listen, process(9862, "python3")),
        cloned.state(t, Listen, SynRecv),
        s.established(t + 8 * US, Some(23), 0),
        s.turn(t + 100 * US, Direction::Received),
        s.turn(t + 300 * US, Direction::Sent),
        s.state(t + 2 * MS, Established, CloseWait),
        s.state_by(t + 3 * MS, CloseWait, LastAck, process(9862, "python3")),
        s.state(t + 3 * MS + 40 * US, LastAck, Close),
    ]);
    assert_eq!(record.role, Role::Server);
    assert_eq!(record.remote, s.remote);
    assert_eq!(
        (record.pid, record.comm.as_deref()),
        (Some(9862), Some("python3"))
    );
    // The kernel's measure of the SYN-ACK's round trip, not SYN_RECV -> ESTABLISHED.
    assert_eq!(record.handshake_us, Some(23));
    assert_eq!(record.close_initiator, CloseInitiator::Remote);
    assert_eq!((record.requests, record.responses), (Some(1), Some(1)));
    assert_eq!(record.response_time_us.map(|r| r.total_us), Some(200));
    // No summary: no byte counts, the last turn is the last data.
    assert_eq!(record.bytes_sent, None);
    assert_eq!(record.netns, None);
    assert_eq!(record.idle_before_close_us, Some(1700));
}

#[test]
fn connect_timeout_is_aborted() {
    let c = Side::client(0xa, 49320);
    let record = one(&[
        c.state_by(MS, Close, SynSent, curl()),
        c.retransmit(1000 * MS),
        c.state(3000 * MS, SynSent, Close),
    ]);
    assert_eq!(record.close_initiator, CloseInitiator::Aborted);
    assert_eq!(record.retransmits, 1);
    assert_eq!(record.handshake_us, None);
}

#[test]
fn reused_socket_address_starts_a_new_record() {
    let first = Side::client(0xa, 49320);
    let second = Side::client(0xa, 49321);
    let mut events = first.connect(MS);
    events.push(first.state(2 * MS, Established, FinWait1));
    events.push(first.state(2 * MS, FinWait1, Close));
    // The same address, reused within the grace period and after it.
    events.extend(second.connect(3 * MS));
    events.push(second.state(4 * MS, Established, Close));
    events.extend(first.connect(100 * MS));
    events.push(first.state(101 * MS, Established, CloseWait));
    events.push(first.state(101 * MS, CloseWait, Close));
    let (outputs, stats) = run_with(config(16), &events);
    let records: Vec<_> = outputs
        .iter()
        .map(|output| match output {
            Output::Connection(record) => {
                (record.conn_id, record.local.port(), record.close_initiator)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        records,
        [
            (1, 49320, CloseInitiator::Local),
            (2, 49321, CloseInitiator::Aborted),
            (3, 49320, CloseInitiator::Remote)
        ]
    );
    assert_eq!(stats, Stats::default());
}

#[test]
fn a_reused_socket_ends_the_record_its_close_was_not_reported_for() {
    let first = Side::client(0xa, 49320);
    let second = Side::client(0xa, 49321);
    let mut events = first.connect(MS);
    events.extend(second.connect(2 * MS));
    events.push(second.state(3 * MS, Established, FinWait1));
    events.push(second.state(3 * MS, FinWait1, Close));
    let (outputs, stats) = run_with(config(16), &events);
    let [Output::Ended(old), Output::Connection(new)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(old.local.port(), 49320);
    assert_eq!(old.close_initiator, CloseInitiator::Unknown);
    // Its last event: when between that and the reuse it ended is not known.
    assert_eq!(old.end_ns, MS + 150 * US);
    assert_eq!(new.local.port(), 49321);
    assert_eq!((stats.ended, stats.reaped), (1, 0));
}

#[test]
fn a_closed_record_waits_out_its_grace_period() {
    let c = Side::client(0xa, 49320);
    let other = Side::client(0xb, 1);
    let mut correlator = Correlator::new(config(16));
    let mut outputs = Vec::new();
    let mut events = c.connect(MS);
    events.push(c.state(2 * MS, Established, Close));
    events.push(other.state(2 * MS + CLOSE_GRACE_NS, Close, SynSent));
    for event in &events {
        correlator.observe(event, &mut |output| outputs.push(output));
    }
    assert!(outputs.is_empty());
    assert_eq!(correlator.open_connections(), 2);
    let later = other.state(3 * MS + CLOSE_GRACE_NS, SynSent, Close);
    correlator.observe(&later, &mut |output| outputs.push(output));
    assert_eq!(outputs.len(), 1);
    // The other one's grace, for reap.
    let mut reaped = Vec::new();
    correlator.reap(3 * MS + 2 * CLOSE_GRACE_NS + 1, &mut |output| {
        reaped.push(output)
    });
    assert!(matches!(&reaped[..], [Output::Connection(r)] if r.local.port() == 1));
    assert_eq!(correlator.open_connections(), 0);
}

#[test]
fn existing_connections_start_partial_records() {
    let listener = Side::server(0x1, 0);
    let s = Side::server(0xb, 49320);
    let c = Side::client(0xa, 49320);
    let (outputs, stats) = run_with(
        config(16),
        &[
            listener.existing(MS, Listen),
            s.existing(MS, CloseWait),
            c.existing(MS, SynSent),
            c.existing(MS, SynSent),
            c.state(MS + 500 * US, SynSent, Established),
            s.state(2 * MS, CloseWait, LastAck),
            s.state(3 * MS, LastAck, Close),
            c.state(4 * MS, Established, FinWait1),
            c.state(4 * MS, FinWait1, FinWait2),
            c.state(5 * MS, FinWait2, Close),
        ],
    );
    let [Output::Connection(server), Output::Connection(client)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(server.role, Role::Server);
    assert!(!server.observed_from_start);
    assert_eq!(server.close_initiator, CloseInitiator::Remote);
    assert_eq!(
        states(server),
        [(CloseWait, 0), (LastAck, 1000), (Close, 2000)]
    );
    assert_eq!(client.role, Role::Client);
    assert_eq!(client.handshake_us, None);
    assert_eq!(client.close_initiator, CloseInitiator::Local);
    assert_eq!(client.idle_before_close_us, None);
    assert_eq!(stats.ignored_events, 1);
}

#[test]
fn a_connection_sock_diag_lists_as_tracing_starts_is_one_record() {
    // sock_diag reads the connections while their events are already traced: one
    // opening then appears both ways, and its record from sock_diag is dropped.
    let c = Side::client(0xa, 49320);
    let s = Side::server(0xb, 49320);
    let unbound = |side: &Side, state| {
        let mut event = side.existing(MS, state);
        let TraceEvent::Existing(existing) = &mut event else {
            unreachable!()
        };
        existing.meta.sock = 0;
        event
    };
    // As the kernel reports a connect: no local port yet at SYN_SENT.
    let connecting = Side {
        local: "127.0.0.1:0".parse().unwrap(),
        ..c.clone()
    };
    let mut events = vec![unbound(&c, Established), unbound(&s, Established)];
    events.extend([
        connecting.state_by(MS, Close, SynSent, curl()),
        c.state(MS + 150 * US, SynSent, Established),
        s.state(MS + 100 * US, Listen, SynRecv),
        s.state(MS + 120 * US, SynRecv, Established),
        c.state(2 * MS, Established, FinWait1),
        s.state(2 * MS, Established, CloseWait),
        c.state(2 * MS, FinWait1, FinWait2),
        s.state(3 * MS, CloseWait, LastAck),
        s.state(3 * MS, LastAck, Close),
        c.state(3 * MS, FinWait2, Close),
    ]);
    let (outputs, stats) = run_with(config(16), &events);
    let [Output::Connection(first), Output::Connection(second)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert!(first.observed_from_start && second.observed_from_start);
    assert_eq!(stats.ignored_events, 2, "the two copies from sock_diag");
}

#[test]
fn sock_diag_connections_bind_to_their_first_event_by_address() {
    let c = Side::client(0xa, 49320);
    let other = Side::client(0xc, 49321);
    let unbound = |side: &Side| {
        let mut event = side.existing(MS, Established);
        let TraceEvent::Existing(existing) = &mut event else {
            unreachable!()
        };
        existing.meta.sock = 0;
        event
    };
    let (outputs, stats) = run_with(
        config(16),
        &[
            unbound(&c),
            unbound(&other),
            unbound(&c),
            c.state(4 * MS, Established, FinWait1),
            c.state(4 * MS, FinWait1, FinWait2),
            c.state(5 * MS, FinWait2, Close),
        ],
    );
    let [Output::Connection(client), Output::Reaped(still_open)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!((still_open.sock, still_open.local), (0, other.local));
    assert_eq!(client.sock, 0xa);
    assert!(!client.observed_from_start);
    assert_eq!(client.close_initiator, CloseInitiator::Local);
    assert_eq!(stats.ignored_events, 1, "the repeated existing connection");
}

#[test]
fn kept_events_keep_both_ends() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    for i in 0..KEPT_EVENTS as u64 {
        events.push(c.retransmit(2 * MS + i));
    }
    events.push(c.state(3 * MS, Established, Close));
    let (outputs, _) = run_with(
        CorrelatorConfig {
            keep_events: true,
            data_turns: true,
            ..config(16)
        },
        &events,
    );
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(record.events.len(), KEPT_EVENTS);
    assert_eq!(record.events_omitted, 3);
    assert_eq!(record.events[0], events[0]);
    assert_eq!(record.events.last(), events.last());
}

#[test]
fn a_retransmitted_synack_times_the_handshake_from_the_first_synack() {
    let s = Side::server(0xb, 49320);
    let t = 1000 * MS;
    // The first SYN-ACK went out at t and was lost; the kernel sent it again 1 s later.
    let record = one(&[
        s.synack_retransmit(t + 1000 * MS),
        s.state(t + 1050 * MS, Listen, SynRecv),
        // No RTT sample from a retransmitted SYN-ACK.
        s.established(t + 1050 * MS, None, 1),
        s.state(t + 1100 * MS, Established, Close),
    ]);
    assert_eq!(record.handshake_us, Some(1_050_000));
    assert_eq!(
        record.retransmits, 0,
        "the SYN-ACK's retransmit is not the child's"
    );
}

#[test]
fn a_clients_handshake_is_its_syns_round_trip_or_its_states_after_a_retransmit() {
    let c = Side::client(0xa, 49320);
    let t = 1000 * MS;
    // The local port and the route took 2 ms after SYN_SENT; the SYN's round trip 30 us.
    let record = one(&[
        c.state_by(t, Close, SynSent, curl()),
        c.established(t + 2 * MS, Some(30), 0),
        c.state(t + 3 * MS, Established, Close),
    ]);
    assert_eq!(record.handshake_us, Some(30));
    // The SYN was sent again: no sample from it, the states tell.
    let record = one(&[
        c.state_by(t, Close, SynSent, curl()),
        c.retransmit(t + 1000 * MS),
        c.established(t + 1002 * MS, Some(30), 1),
        c.state(t + 1003 * MS, Established, Close),
    ]);
    assert_eq!(record.handshake_us, Some(1_002_000));
}

#[test]
fn a_server_handshake_without_the_kernels_measure_is_unknown() {
    let s = Side::server(0xb, 49320);
    let record = one(&[
        s.state(MS, Listen, SynRecv),
        s.established(MS, None, 0),
        s.state(2 * MS, Established, Close),
    ]);
    assert_eq!(record.handshake_us, None);
}

#[test]
fn listeners_found_at_start_decide_roles_in_their_own_network_namespace() {
    // Found at start, all without a socket address: the listeners of two ports in one
    // namespace (both kept), then a connection of the first port in that namespace and
    // one in a namespace whose port has no listener.
    const HOST: u32 = 4_026_531_840;
    const POD: u32 = 4_026_532_000;
    let found = |side: &Side, state, netns: u32, owner: Option<crate::event::Process>| {
        let mut event = side.existing(MS, state);
        let TraceEvent::Existing(existing) = &mut event else {
            unreachable!()
        };
        existing.meta.sock = 0;
        existing.meta.process = owner;
        existing.netns = Some(netns);
        event
    };
    let listener = Side::new(
        0,
        loopback(SERVER_PORT).into(),
        "0.0.0.0:0".parse().unwrap(),
    );
    let other_listener = Side::new(0, loopback(9000).into(), "0.0.0.0:0".parse().unwrap());
    let server = Side::server(0xb, 49320);
    let pod_side = Side::server(0xc, 49321);
    let nginx = process(42, "nginx");
    let (outputs, _) = run_with(
        config(16),
        &[
            found(&listener, Listen, HOST, nginx.clone()),
            found(&other_listener, Listen, HOST, None),
            {
                let mut event = found(&server, Established, HOST, nginx.clone());
                if let TraceEvent::Existing(existing) = &mut event {
                    existing.counters = Some(crate::event::TcpCounters {
                        bytes_acked: 120,
                        bytes_received: 80,
                        retransmits: 1,
                        rtt_us: 30,
                    });
                }
                event
            },
            found(&pod_side, Established, POD, None),
            server.state(4 * MS, Established, Close),
            pod_side.state(4 * MS, Established, Close),
        ],
    );
    let [Output::Connection(host), Output::Connection(pod)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!((host.role, pod.role), (Role::Server, Role::Client));
    assert_eq!(host.pid, Some(42));
    // A server's acknowledged bytes count no SYN; nothing to say for the pod's.
    assert_eq!(
        host.at_start,
        Some(AtStart {
            bytes_sent: 120,
            bytes_received: 80,
            retransmits: 1,
            rtt_us: 30
        })
    );
    assert_eq!(pod.at_start, None);
}

/// Two CPUs took the client's ACK and its first data at once, and each made a server
/// socket for the connection: the kernel kept one and closed the other (SYN_RECV ->
/// CLOSE). The discarded one is no connection of its own: one record, the kept socket's,
/// and the other's three events counted as matching no record.
#[test]
fn a_server_socket_the_kernel_discarded_for_its_twin_is_no_record() {
    let kept = Side::server(0xb, 49320);
    let discarded = Side::server(0xc, 49320);
    let t = 1000 * MS;
    let (outputs, stats) = run_with(
        config(16),
        &[
            kept.state(t, Listen, SynRecv),
            discarded.state(t + 2 * US, Listen, SynRecv),
            kept.established(t + 3 * US, Some(23), 0),
            discarded.summary(
                t + 5 * US,
                None,
                Totals {
                    bytes_acked: 0,
                    bytes_received: 0,
                    retransmits: 0,
                    ..TOTALS
                },
            ),
            discarded.state(t + 5 * US, SynRecv, Close),
            kept.turn(t + 100 * US, Direction::Received),
            kept.summary(t + 2 * MS, None, TOTALS),
            kept.state(t + 2 * MS, Established, Close),
        ],
    );
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:#?}");
    };
    assert_eq!(record.sock, 0xb);
    assert_eq!(stats.ignored_events, 3);
    // Alone, the same socket's SYN_RECV -> CLOSE is a record (its listener closed, say).
    let alone = one(&[
        discarded.state(t, Listen, SynRecv),
        discarded.state(t + 5 * US, SynRecv, Close),
    ]);
    assert_eq!(alone.sock, 0xc);
}
