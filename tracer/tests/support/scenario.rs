//! A traced scenario with a little of everything, recorded to a file as tracer writes it
//! on a server (all events, so readers have lines to leave out): a kept-alive HTTP
//! connection with two requests closed by its client, a connection from 127.0.0.5 reset
//! by its client, and a connect refused. What the fleet's queries and the report read.

use std::{
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use rustix::{
    net::{AddressFamily, SocketFlags, SocketType, bind, connect, socket_with, sockopt},
    process::{Pid, Signal, kill_process},
};
use serde_json::Value;
use tempfile::TempDir;

use super::{
    Tracer, free_port,
    http::{HttpClient, ServerConfig, start_server},
    lines_of, wait_exit, wait_for_start, wait_until,
};

/// The connections the scenario makes, each seen from both ends but the refused one.
const RECORDS: usize = 5;

/// A process killed when dropped, also when the test fails first.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP connection to `server` from the loopback address `from`.
fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    // Close-on-exec, so no process started meanwhile keeps it open.
    let fd = socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    bind(&fd, &SocketAddr::from((from, 0))).unwrap();
    connect(&fd, &server).unwrap();
    TcpStream::from(fd)
}

/// The recorded trace: its file (in a directory removed when dropped), its lines, and
/// the two traced ports.
pub struct RecordedTrace {
    _dir: TempDir,
    pub file: PathBuf,
    pub lines: Vec<Value>,
    /// The HTTP server's port.
    pub port: u16,
    /// A port nothing listens on.
    pub refused_port: u16,
}

impl RecordedTrace {
    /// The `connection` records.
    pub fn records(&self) -> Vec<&Value> {
        (self.lines.iter())
            .filter(|l| l["event"] == "connection")
            .collect()
    }
}

/// Runs the scenario under tracer (stopped with SIGTERM once every record is written).
pub fn record() -> RecordedTrace {
    record_with(&[], || {})
}

/// [`record`], tracer run with these arguments too, and `before_stop` run once every
/// record is written, before tracer is stopped.
pub fn record_with(args: &[&str], before_stop: impl FnOnce()) -> RecordedTrace {
    record_with_env(args, &[], before_stop)
}

/// [`record_with`], tracer given these environment variables too.
pub fn record_with_env(
    args: &[&str],
    env: &[(String, String)],
    before_stop: impl FnOnce(),
) -> RecordedTrace {
    let (port, refused_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tracer.json");
    let mut tracer = KilledOnDrop(
        Tracer::command(&[port, refused_port])
            .arg("--output")
            .arg(&file)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start tracer"),
    );
    wait_for_start(&file);
    let server = start_server(
        port,
        ServerConfig {
            idle_timeout: Duration::from_secs(30),
            response_delay: Duration::ZERO,
            announce_requests: false,
        },
    );
    // A kept-alive connection with two requests, closed by its client.
    let mut client = HttpClient::connect(server);
    client.get("/").unwrap();
    client.get("/").unwrap();
    drop(client);
    // A connection from 127.0.0.5 reset by its client (SO_LINGER 0): the server's record
    // has a reset received from 127.0.0.5.
    let reset = connect_from([127, 0, 0, 5], server);
    sockopt::set_socket_linger(&reset, Some(Duration::ZERO)).unwrap();
    drop(reset);
    // A connect refused: the client's record has a reset received from the server.
    assert!(TcpStream::connect(("127.0.0.1", refused_port)).is_err());

    let records = || {
        (lines_of(&file).iter())
            .filter(|l| l["event"] == "connection")
            .count()
    };
    wait_until("the five connection records", || records() == RECORDS);
    before_stop();
    kill_process(Pid::from_raw(tracer.0.id() as i32).unwrap(), Signal::TERM).unwrap();
    assert!(wait_exit(&mut tracer.0).success());
    let recorded = RecordedTrace {
        lines: lines_of(&file),
        file,
        _dir: dir,
        port,
        refused_port,
    };
    assert_eq!(recorded.records().len(), RECORDS, "{:#?}", recorded.lines);
    recorded
}
