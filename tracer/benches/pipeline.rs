//! `cargo xtask bench`: the daemon's userspace cost per event, measured on a generated
//! stream of ring buffer records shaped like HTTP connections (handshake, one exchange,
//! close, on both sides), with many connections open at once.
//!
//! Figures are events per second on one core, best of several rounds, each next to a
//! baseline measured in the same run (one pass summing the records' bytes), because
//! these machines are noisy: the ratio is what to compare between runs. Memory per open
//! connection is counted by a counting allocator, so it includes the map's overhead.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    io,
    sync::atomic::{AtomicIsize, Ordering},
    time::Instant,
};

use tracer::{
    clock::WallClock,
    fixture::{
        loopback,
        records::{Socket, bytes},
    },
    output::{RecordEnd, Sink, json::JsonSink},
    pipeline::{
        correlator::{Correlator, CorrelatorConfig, Output},
        decode::Decoder,
    },
};
use tracer_common::{Close, DATA_RECEIVED, DATA_SENT, DataTurn, Event, EventKind};

struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Connections open at once while the stream plays.
const CONCURRENT: u32 = 10_000;
/// Connection pairs in the stream (each 14 records: 16 events).
const PAIRS: u32 = 100_000;
const ROUNDS: usize = 5;

/// One side's lifecycle: (time offset, record).
fn side(socket: Socket, states: &[(u8, u8)], turns: [u8; 2], start: u64) -> Vec<(u64, Vec<u8>)> {
    let mut records = Vec::new();
    let mut at = start;
    for (i, &(old, new)) in states.iter().enumerate() {
        at += 1_000;
        if i == 2 {
            for direction in turns {
                at += 1_000;
                records.push((
                    at,
                    bytes(&Event {
                        header: socket.header(EventKind::DataTurn, 0, at),
                        payload: DataTurn {
                            endpoints: socket.endpoints,
                            direction,
                            _pad: [0; 7],
                        },
                    }),
                ));
            }
        }
        if new == 7 {
            let close = Close {
                endpoints: socket.endpoints,
                bytes_acked: 100,
                bytes_received: 200,
                last_data_ns: at,
                total_retrans: 0,
                srtt_us_x8: 80,
                netns: 1,
                old_state: old,
                flags: 0,
                error: 0,
                _pad: 0,
            };
            records.push((
                at,
                bytes(&Event {
                    header: socket.header(EventKind::Close, 0, at),
                    payload: close,
                }),
            ));
        } else {
            records.push((at, bytes(&socket.state_change(at, old, new))));
        }
    }
    records
}

/// The stream: `PAIRS` client/server pairs, `CONCURRENT` of them overlapping.
fn stream() -> Vec<Vec<u8>> {
    let mut timed = Vec::new();
    for pair in 0..PAIRS {
        let start = u64::from(pair) * 20_000_000 / u64::from(CONCURRENT) * 1_000;
        let port = 10_000 + (pair % 50_000) as u16;
        let sock = 0xffff_8880_0000_0000 + u64::from(pair % (CONCURRENT * 4)) * 0x1000;
        let client = Socket::v4(sock, loopback(port), loopback(8191));
        let server = Socket::v4(sock + 0x800, loopback(8191), loopback(port));
        timed.extend(side(
            client,
            &[(7, 2), (2, 1), (1, 4), (4, 5), (5, 7)],
            [DATA_SENT, DATA_RECEIVED],
            start,
        ));
        timed.extend(side(
            server,
            &[(10, 3), (3, 1), (1, 8), (8, 9), (9, 7)],
            [DATA_RECEIVED, DATA_SENT],
            start + 500,
        ));
    }
    timed.sort_by_key(|(at, _)| *at);
    timed.into_iter().map(|(_, record)| record).collect()
}

fn best(mut run: impl FnMut() -> u64) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            black_box(run());
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn correlator() -> Correlator {
    Correlator::new(CorrelatorConfig {
        max_connections: 1 << 20,
        stale_after_ns: u64::MAX,
        keep_events: false,
        data_turns: true,
        follow_timewait: None,
    })
}

fn main() {
    let records = stream();
    let events = records.len() as f64;
    let decoder = Decoder::default();
    let clock = WallClock::from_offset_ns(0);

    let baseline = best(|| {
        records
            .iter()
            .map(|r| r.iter().map(|&b| u64::from(b)).sum::<u64>())
            .sum()
    });
    let decode = best(|| records.iter().filter(|r| decoder.decode(r).is_ok()).count() as u64);
    let correlate = best(|| {
        let mut correlator = correlator();
        let mut records_out = 0;
        for record in &records {
            for event in decoder.decode(record).unwrap() {
                correlator.observe(&event, &mut |_| records_out += 1);
            }
        }
        records_out
    });
    let json = best(|| {
        let mut correlator = correlator();
        let mut sink = JsonSink::new(io::sink());
        for record in &records {
            for event in decoder.decode(record).unwrap() {
                sink.event(clock, &event).unwrap();
                correlator.observe(&event, &mut |output| {
                    if let Output::Connection(record) = output {
                        sink.connection(clock, &record, RecordEnd::Closed).unwrap();
                    }
                });
            }
        }
        0
    });

    // Memory: open connections only (their first two states), counted by the allocator.
    let open = 100_000u64;
    let mut correlator = correlator();
    let before = ALLOCATED.load(Ordering::Relaxed);
    for i in 0..open {
        let sock = 0xffff_8880_0000_0000 + i * 0x1000;
        let socket = Socket::v4(sock, loopback((i % 60_000) as u16 + 1024), loopback(8191));
        for (old, new) in [(7, 2), (2, 1)] {
            let record = bytes(&socket.state_change(i * 1000, old, new));
            for event in decoder.decode(&record).unwrap() {
                correlator.observe(&event, &mut |_| {});
            }
        }
    }
    let per_connection = (ALLOCATED.load(Ordering::Relaxed) - before) as f64 / open as f64;
    assert_eq!(correlator.open_connections(), open as usize);

    let rate = |seconds: f64| events / seconds;
    println!(
        "events: {events} ({PAIRS} connection pairs, {CONCURRENT} open at once), best of {ROUNDS} rounds, one core"
    );
    println!(
        "baseline (sum the record bytes)      {:>8.2} M events/s",
        rate(baseline) / 1e6
    );
    println!(
        "decode                               {:>8.2} M events/s  ({:.1}x baseline time)",
        rate(decode) / 1e6,
        decode / baseline
    );
    println!(
        "decode + correlate                   {:>8.2} M events/s  ({:.1}x baseline time)",
        rate(correlate) / 1e6,
        correlate / baseline
    );
    println!(
        "decode + correlate + JSON lines      {:>8.2} M events/s  ({:.1}x baseline time)",
        rate(json) / 1e6,
        json / baseline
    );
    println!(
        "memory per open connection           {per_connection:>8.0} bytes ({open} open, allocator-counted)"
    );
}
