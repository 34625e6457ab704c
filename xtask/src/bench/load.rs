//! Connection churn on loopback, as fast as it goes: client threads connect, write one
//! byte and close; server threads accept, read and close. The load the overhead
//! benchmark measures the tracer under (issue 11's generator).

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// The server's accept queue: the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// A listening server that accepts, reads and closes until dropped.
pub struct ChurnServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl ChurnServer {
    pub fn start(port: u16, threads: usize) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        // std listens with a backlog of 128, which the clients overflow whenever the
        // accepting threads are not scheduled: each overflow costs a client a 1 s SYN
        // retransmission. Listening again sets a larger one.
        // SAFETY: listen(2) on a socket this function owns.
        if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot set the listen backlog");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let listener = listener.try_clone().expect("a listener clones");
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut byte = [0u8; 1];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((mut stream, _)) = listener.accept() {
                            let _ = stream.read(&mut byte);
                        }
                    }
                })
            })
            .collect();
        Ok(Self {
            port,
            stop,
            threads,
        })
    }
}

impl Drop for ChurnServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake each blocked accept() with a connection of its own.
        for _ in &self.threads {
            let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What a churn run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Churned {
    pub connections: u64,
    pub failures: u64,
    pub elapsed: Duration,
}

impl Churned {
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64()
    }
}

/// Connects to `port` from `clients` threads for `duration`: connect, write a byte, close.
pub fn churn(port: u16, clients: usize, duration: Duration) -> Churned {
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let connections = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (connections, failures) = (connections.clone(), failures.clone());
            thread::spawn(move || {
                while started.elapsed() < duration {
                    match TcpStream::connect(target).and_then(|mut s| s.write_all(b"x")) {
                        Ok(()) => connections.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Churned {
        connections: connections.load(Ordering::Relaxed),
        failures: failures.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}
