//! The soak's load: a steady, paced stream of loopback connections, short ones (one
//! request) mixed with keep-alive ones (several requests), the way HTTP clients connect.
//! The server side counts every connection it accepted: the number of records the tracer
//! owes (one per side).

use std::{
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};

const REQUEST: [u8; 64] = [b'q'; 64];
/// Tells a server thread to stop after answering it.
const LAST_REQUEST: [u8; 64] = [b'!'; 64];
const RESPONSE: [u8; 256] = [b'r'; 256];

/// Every `KEEP_ALIVE_EVERY`th connection carries `KEEP_ALIVE_REQUESTS` requests; the
/// others carry one.
const KEEP_ALIVE_EVERY: u64 = 4;
const KEEP_ALIVE_REQUESTS: u64 = 10;

/// Client threads: each has at most one connection open, so this bounds the connections
/// open at once (and one server thread each answers them).
pub const CLIENTS: u64 = 8;

#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub connections: u64,
    pub requests: u64,
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, other: Counts) -> Counts {
        Counts {
            connections: self.connections + other.connections,
            requests: self.requests + other.requests,
        }
    }
}

pub struct Load {
    port: u16,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<io::Result<Counts>>>,
    servers: Vec<JoinHandle<io::Result<Counts>>>,
}

/// Answers the requests of one connection until the client closes it. Returns the
/// requests answered and whether the last was [`LAST_REQUEST`].
fn serve(mut stream: TcpStream) -> io::Result<(u64, bool)> {
    let mut request = [0; REQUEST.len()];
    let mut answered = 0;
    loop {
        match stream.read_exact(&mut request) {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok((answered, false));
            }
            result => result?,
        }
        stream.write_all(&RESPONSE)?;
        answered += 1;
        if request == LAST_REQUEST {
            return Ok((answered, true));
        }
    }
}

fn server(listener: TcpListener) -> io::Result<Counts> {
    let mut counts = Counts::default();
    loop {
        let (stream, _) = listener.accept()?;
        let (requests, last) = serve(stream)?;
        counts = counts
            + Counts {
                connections: 1,
                requests,
            };
        if last {
            return Ok(counts);
        }
    }
}

/// One connection carrying `requests` requests (the last one `last`), closed by the
/// client as HTTP clients do.
fn connect(port: u16, requests: u64, last: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let mut response = [0; RESPONSE.len()];
    for n in 1..=requests {
        stream.write_all(if n == requests { last } else { &REQUEST })?;
        stream.read_exact(&mut response)?;
    }
    Ok(())
}

/// Connects at `rate` per second (its share of the total) until `stop`, catching up
/// when behind rather than drifting.
fn client(port: u16, rate: f64, stop: &AtomicBool) -> io::Result<Counts> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut counts = Counts::default();
    while !stop.load(Ordering::Relaxed) {
        let due = started + interval.mul_f64(counts.connections as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let requests = if counts.connections % KEEP_ALIVE_EVERY == 0 {
            KEEP_ALIVE_REQUESTS
        } else {
            1
        };
        connect(port, requests, &REQUEST)?;
        counts = counts
            + Counts {
                connections: 1,
                requests,
            };
    }
    Ok(counts)
}

fn join(threads: Vec<JoinHandle<io::Result<Counts>>>, what: &str) -> Result<Counts> {
    threads
        .into_iter()
        .try_fold(Counts::default(), |sum, thread| {
            let counts = thread
                .join()
                .map_err(|_| anyhow!("a {what} thread panicked"))?
                .with_context(|| format!("a {what} failed"))?;
            Ok(sum + counts)
        })
}

impl Load {
    /// Starts serving on 127.0.0.1:`port` and connecting at `rate` connections/s.
    pub fn start(port: u16, rate: u32) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("cannot listen on port {port}"))?;
        let servers = (0..CLIENTS)
            .map(|_| {
                let listener = listener.try_clone()?;
                Ok(thread::spawn(move || server(listener)))
            })
            .collect::<io::Result<_>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let share = f64::from(rate) / CLIENTS as f64;
        let clients = (0..CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || client(port, share, &stop))
            })
            .collect();
        Ok(Self {
            port,
            stop,
            clients,
            servers,
        })
    }

    /// Stops connecting; returns what the clients did and what the servers saw (every
    /// connection accepted, the servers' stop requests included), all closed.
    pub fn stop(self) -> Result<(Counts, Counts)> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = join(self.clients, "client")?;
        // One last connection for each server thread, each of which stops after one.
        for _ in 0..CLIENTS {
            connect(self.port, 1, &LAST_REQUEST).context("cannot stop the servers")?;
        }
        let seen = join(self.servers, "server")?;
        Ok((sent, seen))
    }
}
