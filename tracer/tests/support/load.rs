//! A steady stream of short loopback connections for the tests that need traffic while
//! something else happens (rotations): each client connects, sends a request, reads the
//! answer and closes, again and again; one server thread answers and counts, until a
//! last connection asks it to stop.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

const REQUEST: &[u8] = b"ping";
const LAST: &[u8] = b"stop";
const ANSWER: &[u8] = b"pong";

pub struct Load {
    port: u16,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
    server: JoinHandle<u64>,
}

/// One connection from the client's side.
fn exchange(port: u16, request: &[u8]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("cannot connect");
    stream.write_all(request).unwrap();
    stream.read_exact(&mut [0; ANSWER.len()]).unwrap();
}

/// One connection from the server's side: answer, then wait for the client's close.
/// Returns whether it was the last.
fn serve(mut stream: TcpStream) -> bool {
    let mut request = [0; REQUEST.len()];
    stream.read_exact(&mut request).unwrap();
    stream.write_all(ANSWER).unwrap();
    assert_eq!(stream.read(&mut [0; 1]).unwrap(), 0, "the client closes");
    request == LAST
}

impl Load {
    /// Starts `clients` client threads against a server on 127.0.0.1:`port`.
    pub fn start(port: u16, clients: usize) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = thread::spawn(move || {
            let mut served = 1;
            while !serve(listener.accept().unwrap().0) {
                served += 1;
            }
            served
        });
        let clients = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        exchange(port, REQUEST);
                    }
                })
            })
            .collect();
        Self {
            port,
            stop,
            clients,
            server,
        }
    }

    /// Stops the clients and returns how many connections the server served, all of them
    /// closed on both sides.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().expect("a client failed");
        }
        exchange(self.port, LAST);
        self.server.join().expect("the server failed")
    }
}
