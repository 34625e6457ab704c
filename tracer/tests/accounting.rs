//! Nothing is lost silently: with a ring buffer far too small for the load, the kernel's
//! own count of the events its programs sent adds up, exactly, to what tracer received
//! and what it reported lost.
//!
//! The test has the machine to itself ([`exclusive`]): its connection churn takes both
//! cores and many ephemeral ports, which would slow and disturb the other tests.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
};

use crate::support::{Tracer, exclusive, free_port};
use serde_json::Value;

/// Connections each of the client threads makes, as fast as it can.
const CONNECTIONS: usize = 400;
const CLIENTS: usize = 3;

fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

#[test]
fn overload_is_counted_exactly() {
    let _machine = exclusive();
    let port = free_port("127.0.0.1");
    let mut command = Tracer::command(&[port]);
    // One page: the smallest ring buffer the kernel takes, and a 512-byte wakeup mark.
    command.args(["--ring-buffer-size", "4K", "--emit", "events"]);
    let tracer = Tracer::spawn(command);
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = thread::spawn(move || {
        for _ in 0..CONNECTIONS * CLIENTS {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.read(&mut [0u8; 1]);
        }
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..CONNECTIONS {
                    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    stream.write_all(b"x").unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    server.join().unwrap();

    let (status, lines) = tracer.stop();
    assert!(status.success(), "{status}");
    let stop = lines.last().unwrap();
    assert_eq!(stop["event"], "tracer_stop", "{stop}");
    let events = &stop["events"];
    let (sent, received, lost) = (
        count(&events["sent"]),
        count(&events["received"]),
        count(&events["lost"]),
    );
    assert!(lost > 0, "a 4K ring buffer lost nothing of {sent} events");
    assert_eq!(sent, received + lost, "{stop}");
    // The lost lines tell the same count as it happened.
    let reported: u64 = lines
        .iter()
        .filter(|l| l["event"] == "lost" && l["reason"] == "ring_buffer_full")
        .map(|l| count(&l["count"]))
        .sum();
    assert_eq!(reported, lost);
    // Every record received is an event line (a close is two: its summary and its state
    // change).
    let event_lines = lines
        .iter()
        .filter(|l| {
            !matches!(
                l["event"].as_str(),
                Some("tracer_start" | "tracer_stop" | "lost" | "existing")
            )
        })
        .count() as u64;
    let closes = lines
        .iter()
        .filter(|l| l["event"] == "close_summary")
        .count() as u64;
    assert_eq!(event_lines - closes, received);
}
