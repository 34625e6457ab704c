//! What watches the benchmark's traffic in a round: nothing (the baseline), the tracer in
//! one of its modes, `tcpdump -w`, or a bpftrace tcpstates one-liner. Each is started and
//! awaited until it is attached, then stopped with SIGTERM and reaped with its CPU time.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// How long an observer may take to attach.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observer {
    None,
    /// A tracer binary (this one's when `binary` is `None`) with `--emit` this and these
    /// extra arguments.
    Tracer {
        binary: Option<PathBuf>,
        emit: &'static str,
        extra: Vec<String>,
    },
    Tcpdump,
    Bpftrace,
}

impl Observer {
    pub fn name(&self) -> String {
        match self {
            Observer::None => "no tracer".to_owned(),
            Observer::Tracer {
                binary,
                emit,
                extra,
            } => {
                let which = binary
                    .as_ref()
                    .map_or(String::new(), |path| format!(" ({})", path.display()));
                format!("tracer {emit}{which} {}", extra.join(" "))
                    .trim_end()
                    .to_owned()
            }
            Observer::Tcpdump => "tcpdump -w".to_owned(),
            Observer::Bpftrace => "bpftrace tcpstates".to_owned(),
        }
    }

    /// Whether this machine can run it (tcpdump and bpftrace are optional).
    pub fn available(&self) -> bool {
        match self {
            Observer::Tcpdump => which("tcpdump"),
            Observer::Bpftrace => which("bpftrace"),
            _ => true,
        }
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running observer.
pub struct Running {
    child: Option<Child>,
    stderr: Receiver<String>,
}

/// Starts `observer` on traffic to `port`, writing what it records to `output`, and
/// waits until it is attached.
pub fn start(observer: &Observer, tracer: &Path, port: u16, output: &Path) -> Result<Running> {
    let mut command = match observer {
        Observer::None => {
            return Ok(Running {
                child: None,
                stderr: mpsc::channel().1,
            });
        }
        Observer::Tracer {
            binary,
            emit,
            extra,
        } => {
            let mut command = Command::new(binary.as_deref().unwrap_or(tracer));
            command
                .args(["--port", &port.to_string(), "--emit", emit, "--output"])
                .arg(output)
                .args(extra);
            command
        }
        Observer::Tcpdump => {
            let mut command = Command::new("tcpdump");
            command.args(["-i", "lo", "-n", "-w"]).arg(output).args([
                "tcp",
                "port",
                &port.to_string(),
            ]);
            command
        }
        Observer::Bpftrace => {
            let mut command = Command::new("bpftrace");
            command.args([
                "-o",
                &output.display().to_string(),
                "-e",
                &format!(
                    "tracepoint:sock:inet_sock_set_state /args->sport == {port} || args->dport == {port}/ {{ printf(\"%llx %d %d\\n\", args->skaddr, args->oldstate, args->newstate); }}"
                ),
            ]);
            command
        }
    };
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", observer.name()))?;
    let (send, stderr) = mpsc::channel();
    let pipe = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let running = Running {
        child: Some(child),
        stderr,
    };
    running.await_ready(observer)?;
    Ok(running)
}

impl Running {
    fn await_ready(&self, observer: &Observer) -> Result<()> {
        let ready = |line: &str| match observer {
            Observer::Tracer { .. } => line.starts_with("tracer: tracing TCP port"),
            Observer::Tcpdump => line.contains("listening on"),
            _ => false,
        };
        if let Observer::Bpftrace = observer {
            return self.await_bpftrace();
        }
        let mut said = Vec::new();
        loop {
            match self.stderr.recv_timeout(READY_TIMEOUT) {
                Ok(line) if ready(&line) => return Ok(()),
                Ok(line) => said.push(line),
                Err(_) => bail!(
                    "{} did not attach within {READY_TIMEOUT:?}: {}",
                    observer.name(),
                    said.join(" / ")
                ),
            }
        }
    }

    /// bpftrace says nothing once attached (its BEGIN output sits in a buffer): ready
    /// when the kernel lists its program attached to the tracepoint.
    fn await_bpftrace(&self) -> Result<()> {
        let pid = self.pid().expect("bpftrace runs");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let output = Command::new("bpftool")
                .args(["perf", "show", "--json"])
                .output()?;
            let attached: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
            if attached
                .iter()
                .any(|a| a["pid"] == pid && a["tracepoint"] == "inet_sock_set_state")
            {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!("bpftrace did not attach within {READY_TIMEOUT:?}")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it (SIGTERM) and returns its CPU time (user + system).
    pub fn stop(mut self) -> Result<Duration> {
        let Some(child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain syscalls on our own child's pid, which is not reaped before wait4.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            let mut status = 0;
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::wait4(pid, &mut status, 0, &mut usage) != pid {
                bail!("cannot reap the observer {pid}");
            }
            let time = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            Ok(time(usage.ru_utime) + time(usage.ru_stime))
        }
    }
}

/// An observer left running by an error on the way is killed, never left attached.
impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a tracer's output file says, read after it stopped.
#[derive(Clone, Debug, Default)]
pub struct TracerOutput {
    /// Event lines (everything but the start, stop, record and accounting lines).
    pub events: u64,
    /// `lost` lines' counts, summed.
    pub lost: u64,
    /// Closed records by role.
    pub client_records: u64,
    pub server_records: u64,
    /// Records written `evicted`, `stale` or `ended`, or with an `unknown` close.
    pub inexact_records: u64,
    pub stop: Value,
}

impl TracerOutput {
    pub fn read(path: &Path) -> Result<Self> {
        let file =
            fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut output = Self::default();
        for line in BufReader::new(file).lines() {
            let line = line?;
            // Most lines are events: only the few others are parsed.
            let kind = [
                "\"event\":\"connection\"",
                "\"event\":\"lost\"",
                "\"event\":\"tracer_",
            ]
            .iter()
            .position(|tag| line.contains(tag));
            let Some(kind) = kind else {
                output.events += 1;
                continue;
            };
            let value: Value = serde_json::from_str(&line)?;
            match kind {
                0 => {
                    let exact =
                        value["record"] == "closed" && value["close_initiator"] != "unknown";
                    if !exact {
                        output.inexact_records += 1;
                    } else if value["role"] == "client" {
                        output.client_records += 1;
                    } else {
                        output.server_records += 1;
                    }
                }
                1 => output.lost += value["count"].as_u64().unwrap_or(0),
                _ if value["event"] == "tracer_stop" => output.stop = value,
                _ => {}
            }
        }
        Ok(output)
    }
}
