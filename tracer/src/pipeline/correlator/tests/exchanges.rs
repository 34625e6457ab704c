//! Requests, responses, response times and payload bytes.

use super::*;

#[test]
fn keep_alive_exchanges_count_requests_on_both_sides() {
    let c = Side::client(0xa, 49320);
    let s = Side::server(0xb, 49320);
    let mut events = c.connect(MS);
    events.extend([
        s.state(MS + 100 * US, Listen, SynRecv),
        s.state(MS + 110 * US, SynRecv, Established),
    ]);
    for request in 0..3 {
        let t = (10 + request * 10) * MS;
        events.extend([
            c.turn(t, Direction::Sent),
            s.turn(t + 10 * US, Direction::Received),
            s.turn(t + 500 * US, Direction::Sent),
            c.turn(t + 510 * US, Direction::Received),
        ]);
    }
    // The server closes the idle connection 5 s after the last response.
    let close = 30 * MS + 500 * US + 5000 * MS;
    events.extend([
        s.state(close, Established, FinWait1),
        c.state(close + 10 * US, Established, CloseWait),
        s.state(close + 20 * US, FinWait1, FinWait2),
        c.state(close + 100 * US, CloseWait, LastAck),
        s.state(close + 110 * US, FinWait2, Close),
        c.state(close + 120 * US, LastAck, Close),
    ]);
    let (outputs, _) = run_with(config(16), &events);
    let records: Vec<_> = outputs
        .into_iter()
        .map(|output| match output {
            Output::Connection(record) => record,
            other => panic!("{other:?}"),
        })
        .collect();
    let [server, client] = &records[..] else {
        panic!("{records:#?}");
    };
    assert_eq!((server.role, client.role), (Role::Server, Role::Client));
    // Each response time also as it happens (what metrics observe), as the records sum up.
    let (outputs, _) = run_all(config(16), &events);
    let responses: Vec<(Role, u64)> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Response(response) => Some((response.role, response.micros)),
            _ => None,
        })
        .collect();
    assert_eq!(
        responses,
        [
            (Role::Server, 490),
            (Role::Client, 510),
            (Role::Server, 490),
            (Role::Client, 510),
            (Role::Server, 490),
            (Role::Client, 510)
        ]
    );
    for record in [server, client] {
        assert_eq!((record.requests, record.responses), (Some(3), Some(3)));
        assert_eq!(record.unanswered_request_us, None);
    }
    // From the request's first byte to the response's, as each side saw them.
    let times = |min_us, max_us| ResponseTimes {
        count: 3,
        min_us,
        max_us,
        total_us: 3 * u64::from(min_us),
    };
    assert_eq!(server.response_time_us, Some(times(490, 490)));
    assert_eq!(client.response_time_us, Some(times(510, 510)));
    assert_eq!(server.close_initiator, CloseInitiator::Local);
    assert_eq!(client.close_initiator, CloseInitiator::Remote);
    assert_eq!(server.idle_before_close_us, Some(5_000_000));
    assert_eq!(client.idle_before_close_us, Some(5_000_000));
    assert_ne!(server.conn_id, client.conn_id);
}

#[test]
fn a_request_left_unanswered_says_how_long_it_waited() {
    // The seed's story 4: the request arrives, the server process dies 2.49 s later and
    // its kernel closes the connection.
    let s = Side::server(0xb, 49320);
    let record = one(&[
        s.state(MS, Listen, SynRecv),
        s.established(MS, Some(20), 0),
        s.turn(10 * MS, Direction::Received),
        s.state(2500 * MS, Established, FinWait1),
        s.state(2500 * MS + 50 * US, FinWait1, FinWait2),
        s.state(2501 * MS, FinWait2, Close),
    ]);
    assert_eq!((record.requests, record.responses), (Some(1), Some(0)));
    assert_eq!(record.response_time_us, None);
    assert_eq!(record.unanswered_request_us, Some(2_490_000));
}

#[test]
fn a_server_speaking_first_has_a_response_without_a_request() {
    let s = Side::server(0xb, 49320);
    let record = one(&[
        s.state(MS, Listen, SynRecv),
        s.established(MS, Some(20), 0),
        s.turn(2 * MS, Direction::Sent),
        s.turn(3 * MS, Direction::Received),
        s.turn(4 * MS, Direction::Sent),
        s.state(5 * MS, Established, Close),
    ]);
    assert_eq!((record.requests, record.responses), (Some(1), Some(2)));
    assert_eq!(
        record.response_time_us.map(|r| (r.count, r.total_us)),
        Some((1, 1000))
    );
}

#[test]
fn without_the_data_hook_requests_are_unknown() {
    let c = Side::client(0xa, 49320);
    let mut events = c.connect(MS);
    events.push(c.state(2 * MS, Established, Close));
    let (outputs, _) = run_with(
        CorrelatorConfig {
            data_turns: false,
            ..config(16)
        },
        &events,
    );
    let [Output::Connection(record)] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert_eq!((record.requests, record.responses), (None, None));
}

/// Payload only, as a capture counts it: the kernel's counts of sequence space include
/// a client's SYN and each side's FIN.
#[test]
fn bytes_are_payload_without_syn_and_fin() {
    let summary = |side: &Side, bytes_acked, bytes_received, fin_received, fin_acked| {
        let totals = Totals {
            bytes_acked,
            bytes_received,
            fin_received,
            fin_acked,
            retransmits: 0,
            srtt_us: 30,
            netns: 1,
            error: None,
        };
        side.summary(3 * MS, None, totals)
    };
    let c = Side::client(0xa, 49320);
    let s = Side::server(0xb, 49320);
    let client = |summary| {
        let mut events = c.connect(MS);
        events.extend([summary, c.state(3 * MS, FinWait2, Close)]);
        one(&events)
    };
    let server = |summary| {
        one(&[
            s.state(MS, Listen, SynRecv),
            s.established(MS, Some(20), 0),
            summary,
            s.state(3 * MS, LastAck, Close),
        ])
    };
    // curl sent 79 bytes and received 992; the server the other way round.
    let sent_received = |r: ConnectionRecord| (r.bytes_sent, r.bytes_received);
    assert_eq!(
        sent_received(client(summary(&c, 81, 993, true, true))),
        (Some(79), Some(992))
    );
    assert_eq!(
        sent_received(server(summary(&s, 993, 80, true, true))),
        (Some(992), Some(79))
    );
    // An abortive close: no FIN either way, 10 bytes still unacknowledged are not sent.
    assert_eq!(
        sent_received(client(summary(&c, 70, 0, false, false))),
        (Some(69), Some(0))
    );
}

#[test]
fn over_tls_the_applications_turns_count_not_the_handshakes_records() {
    // curl's two requests over TLS 1.3, as nginx's socket and library show them.
    let s = Side::server(0xb, 49320);
    let mut events = vec![s.state(MS, Listen, SynRecv), s.established(MS, Some(20), 0)];
    // The handshake's records: ClientHello in, ServerHello.. out, Finished in.
    events.extend([
        s.turn(2 * MS, Direction::Received),
        s.turn(2 * MS + 400 * US, Direction::Sent),
        s.turn(3 * MS, Direction::Received),
        s.tls_handshake(3 * MS + 100 * US, Some(1_050)),
        // The session tickets, then each request and response (socket and library).
        s.turn(3 * MS + 120 * US, Direction::Sent),
    ]);
    for request in 0..2 {
        let t = (10 + request * 10) * MS;
        events.extend([
            s.turn(t, Direction::Received),
            s.tls_turn(t + 20 * US, Direction::Received),
            s.tls_turn(t + 60 * US, Direction::Sent),
            s.turn(t + 70 * US, Direction::Sent),
        ]);
    }
    events.extend([
        s.state(40 * MS, Established, CloseWait),
        s.state(40 * MS + 10 * US, CloseWait, LastAck),
        s.state(40 * MS + 50 * US, LastAck, Close),
    ]);
    let record = one(&events);
    assert_eq!((record.requests, record.responses), (Some(2), Some(2)));
    let times = record.response_time_us.unwrap();
    assert_eq!((times.count, times.min_us, times.max_us), (2, 40, 40));
    let tls = record.tls.unwrap();
    assert_eq!(
        (tls.library, tls.handshake_us),
        (TlsLibrary::OpenSsl, Some(1_050))
    );
    // The last data is the socket's, whichever layer turned.
    assert_eq!(record.idle_before_close_us, Some(40_000 - 20_070));
}

#[test]
fn a_session_met_after_its_handshake_counts_from_its_first_application_data() {
    // Tracing started after the handshake: the library shows itself with data.
    let s = Side::server(0xb, 49320);
    let record = one(&[
        s.state(MS, Listen, SynRecv),
        s.established(MS, Some(20), 0),
        s.turn(10 * MS, Direction::Received),
        s.tls_turn(10 * MS + 20 * US, Direction::Received),
        s.tls_turn(10 * MS + 90 * US, Direction::Sent),
        s.turn(10 * MS + 95 * US, Direction::Sent),
        s.state(20 * MS, Established, CloseWait),
        s.state(20 * MS + 10 * US, CloseWait, LastAck),
        s.state(20 * MS + 50 * US, LastAck, Close),
    ]);
    assert_eq!((record.requests, record.responses), (Some(1), Some(1)));
    assert_eq!(record.response_time_us.unwrap().max_us, 70);
    let tls = record.tls.unwrap();
    assert_eq!(tls.handshake_us, None);
}
