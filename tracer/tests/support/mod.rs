//! Drives the real `tracer` binary against real sockets: start it on a port, wait for the
//! lines it prints, stop it. Everything waits on a condition with a deadline, never on a
//! fixed sleep.

use std::{
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
        mpsc::{Receiver, RecvTimeoutError, channel},
    },
    thread,
    time::{Duration, Instant},
};

pub mod capture;
pub mod cri;
pub mod flow_graph;
pub mod http;
pub mod load;
pub mod otlp;
pub mod prometheus;
pub mod scenario;
pub mod sockets;

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

/// Generous: the host may be busy building, and guests run under TCG.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The machine the tests share. They run as threads of one process, so a test that loads
/// the machine or changes what other tests see holds it alone: [`exclusive`]; every other
/// test holds it [`shared`] for as long as it runs. A test waits for its turn; it never
/// sleeps.
static MACHINE: RwLock<()> = RwLock::new(());

/// For a test that runs beside others: held until it ends (`let _machine = shared();`).
pub fn shared() -> RwLockReadGuard<'static, ()> {
    // A test that failed while holding the lock poisoned it; the machine is still fine.
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

/// For a test that must have the machine to itself: one that drives heavy connection
/// churn (its timing and its ephemeral ports would disturb the others), changes state
/// that is global to the process or the kernel, or must not be disturbed itself.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

/// The workspace's root: where `target/` and `docs/` are.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// The tracer binary: `TRACER_BIN` when set (the VM suite), else the one cargo built.
pub fn tracer_bin() -> PathBuf {
    std::env::var_os("TRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tracer").into())
}

/// Where [`free_port`] hands out ports: below the kernel's ephemeral range (32768-60999 by
/// default), so no test's `connect()` can be given a port another test is about to bind.
/// Asking the kernel for port 0 raced exactly so: the port it named was free when asked
/// and some other test's client had it a moment later (`AddrInUse` in a 6.12 guest).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// The next port [`free_port`] tries; each process starts at its own place in the range,
/// so runs close together do not meet each other's TIME_WAIT sockets.
static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// A port nobody listens on right now, on `ip`, that no other test of this process has
/// been given and that no outgoing connection can take.
pub fn free_port(ip: &str) -> u16 {
    use std::sync::atomic::Ordering::Relaxed;
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let _ = NEXT_PORT.compare_exchange(
        0,
        (std::process::id() % u32::from(span)) as u16 + 1,
        Relaxed,
        Relaxed,
    );
    for _ in 0..span {
        let port = TEST_PORTS.start + NEXT_PORT.fetch_add(1, Relaxed) % span;
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?} on {ip}");
}

/// A listener on a port [`free_port`] gives, for a test that listens before tracing:
/// another is tried when the port was taken between the check and this bind (seen once
/// in a guest of the kernel matrix).
pub fn listen_on_free_port(ip: &str) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind((ip, free_port(ip))) {
            Ok(listener) => return listener,
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && tries < 10 => {
                tries += 1;
            }
            Err(error) => panic!("cannot listen on {ip}: {error}"),
        }
    }
}

pub struct Tracer {
    child: Child,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
    /// Every line received so far, in order.
    pub seen: Vec<Value>,
}

impl Tracer {
    /// Starts `tracer --port P ...` and waits for its `tracer_start` line.
    pub fn start(ports: &[u16]) -> Self {
        Self::spawn(Self::command(ports))
    }

    /// `tracer --port P ...`, for more arguments. With `TRACER_TEST_ATTACH` set (the kernel
    /// matrix), the tracer runs with `--attach` that mode.
    pub fn command(ports: &[u16]) -> Command {
        let mut command = Command::new(tracer_bin());
        for port in ports {
            command.args(["--port", &port.to_string()]);
        }
        if let Some(mode) = std::env::var_os("TRACER_TEST_ATTACH") {
            command.arg("--attach").arg(mode);
        }
        command
    }

    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start tracer");
        let (send, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("tracer printed invalid JSON ({e}): {line}"));
                if send.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut tracer = Self {
            child,
            lines,
            stderr,
            seen: Vec::new(),
        };
        tracer.wait_for("the tracer_start line", |line| {
            line["event"] == "tracer_start"
        });
        tracer
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until one satisfies `condition`, and returns it.
    pub fn wait_for(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        match self.line_within(DEADLINE, condition) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "no line with {what} within {DEADLINE:?}\nlines: {:#?}\nstderr: {}",
                self.seen,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "tracer exited before printing {what} ({:?})\nlines: {:#?}\nstderr: {}",
                self.child.wait(),
                self.seen,
                self.stderr()
            ),
        }
    }

    /// The first line, seen or read within `timeout`, that satisfies `condition`.
    pub fn line_within(
        &mut self,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Result<Value, RecvTimeoutError> {
        if let Some(line) = self.seen.iter().find(|line| condition(line)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left)?;
            self.seen.push(line.clone());
            if condition(&line) {
                return Ok(line);
            }
        }
    }

    /// Sends SIGTERM, collects the remaining lines and returns the exit status.
    pub fn stop(mut self) -> (ExitStatus, Vec<Value>) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("child pid");
        kill_process(pid, Signal::TERM).expect("cannot signal tracer");
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }

    /// State changes seen so far of the socket with this `sock` id.
    pub fn transitions_of(&self, sock: &Value) -> Vec<(String, String)> {
        state_changes(&self.seen)
            .filter(|line| &line["sock"] == sock)
            .map(|line| {
                (
                    line["old_state"].as_str().unwrap().to_owned(),
                    line["new_state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a file tracer writes (`--output`) as they are now: none before it exists.
/// A line being written may be cut: read once tracer has written what is waited for.
pub fn lines_of(file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()))
        })
        .collect()
}

/// Waits for the `tracer_start` line in `file` (a text search: the line after it may be
/// cut, being written).
pub fn wait_for_start(file: &std::path::Path) {
    wait_until("tracer_start in the file", || {
        std::fs::read_to_string(file).is_ok_and(|text| text.contains("\"tracer_start\""))
    });
}

/// Polls `condition` until it holds; panics naming `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "no {what} within {DEADLINE:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process playing a part in a test (a server that gets killed, sockets in another
/// network namespace): this test binary running one ignored test of its own, killed when
/// dropped, also when the test fails first.
pub struct HelperProcess(pub Child);

impl HelperProcess {
    /// The command running the ignored test `name` (`module::test`) after `wrapper` (a
    /// program and its arguments, e.g. `unshare --net`; none if empty), with `env` set.
    /// Its stdout is piped: libtest's lines and what the test prints.
    pub fn spawn(wrapper: &[&str], name: &str, env: (&str, String)) -> Self {
        let test = std::env::current_exe().unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(test);
                command
            }
            None => Command::new(test),
        };
        command
            .args([
                name,
                "--exact",
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(env.0, env.1)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Self(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {wrapper:?} {name}: {e}")),
        )
    }

    /// Waits until the helper prints a line ending in `word` (libtest may have begun the
    /// line with its own `test name ... `); false if it ended first. What it prints
    /// after is read and dropped: a closed pipe would fail its last lines.
    pub fn said(&mut self, word: &str) -> bool {
        let mut out = BufReader::new(self.0.stdout.take().unwrap());
        let found = (&mut out)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.ends_with(word));
        thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        found
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit by itself; kills it and panics after [`DEADLINE`].
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn state_changes(lines: &[Value]) -> impl Iterator<Item = &Value> {
    lines.iter().filter(|line| line["event"] == "state_change")
}

/// Is `line` a state change of a socket at `local` -> `remote` into `new_state`?
pub fn is_change(line: &Value, local: SocketAddr, remote: SocketAddr, new_state: &str) -> bool {
    line["event"] == "state_change"
        && line["local"] == local.to_string()
        && line["remote"] == remote.to_string()
        && line["new_state"] == new_state
}

pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Is `line` an `event` line for the connection `local` -> `remote`?
pub fn is_event(line: &Value, event: &str, local: SocketAddr, remote: SocketAddr) -> bool {
    line["event"] == event
        && line["local"] == local.to_string()
        && line["remote"] == remote.to_string()
}

/// An nftables table of this test's own that drops loopback segments matching `rule`
/// (e.g. `tcp sport 8191`) on input, so the sender has sent them and must retransmit
/// (dropped on output, TCP would see the send fail). Removed on drop, also when the test
/// fails.
pub struct PacketDrop {
    table: String,
}

fn nft(script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("cannot run nft (install nftables)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft failed on:\n{script}");
}

impl PacketDrop {
    pub fn new(rule: &str) -> Self {
        Self::with_verdict(rule, "drop")
    }

    /// Segments matching `rule` get `verdict` instead (e.g. `reject with icmpx type
    /// host-unreachable`).
    pub fn with_verdict(rule: &str, verdict: &str) -> Self {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = format!("tracer_test_{}_{n}", std::process::id());
        nft(&format!(
            "table inet {table} {{\n chain input {{\n type filter hook input priority 0; policy accept;\n {rule} {verdict}\n }}\n}}\n"
        ));
        Self { table }
    }
}

impl Drop for PacketDrop {
    fn drop(&mut self) {
        nft(&format!("delete table inet {}\n", self.table));
    }
}

/// Runs `command`, expecting tracer to refuse: a failure exit and one line of stderr,
/// which it returns.
pub fn refusal(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "{command:?} succeeded");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}
