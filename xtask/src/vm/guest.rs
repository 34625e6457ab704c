//! A guest's run: qemu boots a kernel with its initramfs, and the `TRACER-VM-*` lines on
//! its console become a `Run`.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{RecvTimeoutError, Sender, channel},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{Kernel, Mode, kernels::KernelImage};

/// A guest that has not powered off by then is hung. A healthy guest boots in seconds;
/// under TCG its first mode runs every test module (about 300 s on a busy host), each
/// further mode three of them (under a minute).
const TIMEOUT_FIRST_MODE: Duration = Duration::from_secs(480);
const TIMEOUT_PER_MODE: Duration = Duration::from_secs(240);
const TIMEOUT_BOOT: Duration = Duration::from_secs(60);

/// What one guest reported.
pub(super) struct Run {
    pub(super) kernel: Kernel,
    pub(super) release: String,
    pub(super) log: PathBuf,
    pub(super) elapsed: Duration,
    /// The whole console (and qemu's own messages).
    pub(super) lines: Vec<String>,
    pub(super) binaries: Vec<BinaryRun>,
    /// From `TRACER-VM-RESULT` lines.
    cells: Vec<(String, Cell)>,
    /// (hook, mechanism) that `--attach auto` picks, from the `TRACER-VM-AUTO` line.
    pub(super) auto: Vec<(String, String)>,
    /// Why the guest ended without `TRACER-VM-DONE`.
    pub(super) problem: Option<Problem>,
}

pub(super) enum Problem {
    Panic,
    Hang(Duration),
    /// qemu exited (with this status) before the guest finished the suite.
    Stopped(String),
}

/// One test binary in one mode: where its output starts and ends on the console.
pub(super) struct BinaryRun {
    pub(super) mode: String,
    pub(super) binary: String,
    pub(super) begin: usize,
    /// (line index, exit status, failed tests), once it ended.
    pub(super) end: Option<(usize, String, u32)>,
}

pub(super) enum Cell {
    Counts { passed: u32, failed: u32 },
    Unsupported,
}

impl Run {
    pub(super) fn cell(&self, mode: Mode) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(name, _)| name == mode.name())
            .map(|(_, cell)| cell)
    }

    /// Every cell passed or is unsupported, and the guest finished.
    pub(super) fn passed(&self, modes: &[Mode]) -> bool {
        self.problem.is_none()
            && modes.iter().all(|&mode| match self.cell(mode) {
                Some(Cell::Unsupported) => true,
                Some(&Cell::Counts { passed, failed }) => failed == 0 && passed > 0,
                None => false,
            })
    }
}

/// The value of `key=value` in a TRACER-VM line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Every `key=value` in a TRACER-VM line, in order.
fn pairs(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn count(line: &str, key: &str) -> u32 {
    field(line, key).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Sends every line that `pipe` yields, without its line ending, to `lines`.
fn forward(pipe: impl Read + Send + 'static, lines: Sender<String>) {
    thread::spawn(move || {
        // The console may carry bytes that are not UTF-8; lines are split on bytes.
        for line in BufReader::new(pipe).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

fn qemu(image: &KernelImage, initrd: &Path) -> Result<Child> {
    Command::new("qemu-system-x86_64")
        // KVM is present on these machines but crashes guests: emulate. Multi-threaded
        // TCG lets a vCPU run stale code while the kernel patches a jump label (attaching
        // a tracepoint does) and the guest dies with "Oops: int3"; one thread for both
        // vCPUs keeps code patching atomic for the guest.
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "1024",
        ])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(image.dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        // panic=-1 reboots at once on a panic, and -no-reboot turns that into qemu's exit.
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")
}

/// Boots `image` with `initrd`, logs the console to `work/console-<kernel>.log`, and
/// reads the results from it, killing a guest that outlives its timeout.
pub(super) fn boot(image: &KernelImage, initrd: &Path, work: &Path, modes: &[Mode]) -> Result<Run> {
    let name = image.kernel.name();
    let log = work.join(format!("console-{name}.log"));
    let mut log_file =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let timeout =
        TIMEOUT_BOOT + TIMEOUT_FIRST_MODE + TIMEOUT_PER_MODE * modes.len().saturating_sub(1) as u32;
    println!(
        "xtask: booting kernel {name} ({}), console in {}",
        image.release,
        log.display()
    );
    let started = Instant::now();
    let mut child = qemu(image, initrd)?;
    let (send, receive) = channel();
    forward(
        child.stdout.take().context("qemu has no stdout")?,
        send.clone(),
    );
    forward(child.stderr.take().context("qemu has no stderr")?, send);

    let mut run = Run {
        kernel: image.kernel,
        release: image.release.clone(),
        log,
        elapsed: Duration::ZERO,
        lines: Vec::new(),
        binaries: Vec::new(),
        cells: Vec::new(),
        auto: Vec::new(),
        problem: None,
    };
    let mut done = false;
    loop {
        let line = match receive.recv_timeout(timeout.saturating_sub(started.elapsed())) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                run.problem = Some(Problem::Hang(timeout));
                // Killing qemu ends its pipes, and so the forwarding threads.
                child.kill().context("cannot kill qemu")?;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        writeln!(log_file, "{line}")
            .with_context(|| format!("cannot write {}", run.log.display()))?;
        let index = run.lines.len();
        // A kernel message may precede a marker on the same console line.
        if let Some(start) = line.find("TRACER-VM-") {
            let marker = &line[start..];
            println!("[{name}] {marker}");
            if marker.starts_with("TRACER-VM-BEGIN") {
                run.binaries.push(BinaryRun {
                    mode: field(marker, "mode").unwrap_or_default().to_owned(),
                    binary: field(marker, "binary").unwrap_or_default().to_owned(),
                    begin: index,
                    end: None,
                });
            } else if marker.starts_with("TRACER-VM-END") {
                if let Some(binary) = run.binaries.last_mut() {
                    binary.end = Some((
                        index,
                        field(marker, "exit").unwrap_or_default().to_owned(),
                        count(marker, "failed"),
                    ));
                }
            } else if marker.starts_with("TRACER-VM-RESULT") {
                let cell = if marker.ends_with(" unsupported") {
                    Cell::Unsupported
                } else {
                    Cell::Counts {
                        passed: count(marker, "passed"),
                        failed: count(marker, "failed"),
                    }
                };
                let mode = field(marker, "mode").unwrap_or_default().to_owned();
                run.cells.push((mode, cell));
            } else if let Some(picks) = marker.strip_prefix("TRACER-VM-AUTO") {
                run.auto = pairs(picks);
            } else if marker.starts_with("TRACER-VM-DONE") {
                done = true;
            }
        }
        run.lines.push(line);
    }
    let status = child.wait().context("cannot wait for qemu")?;
    run.elapsed = started.elapsed();
    if run
        .lines
        .iter()
        .any(|line| line.contains("Kernel panic - not syncing"))
    {
        run.problem = Some(Problem::Panic);
    } else if run.problem.is_none() && !done {
        run.problem = Some(Problem::Stopped(status.to_string()));
    }
    println!(
        "xtask: kernel {name} finished in {} s",
        run.elapsed.as_secs()
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guest_result_lines() {
        let line = "TRACER-VM-END mode=kprobe binary=test-integration exit=101 passed=5 failed=2";
        assert_eq!(field(line, "binary"), Some("test-integration"));
        assert_eq!(field(line, "exit"), Some("101"));
        assert_eq!(count(line, "failed"), 2);
        assert_eq!(field(line, "mod"), None);
        assert_eq!(
            pairs(" state_change=tracepoint accept=none"),
            [
                ("state_change".to_owned(), "tracepoint".to_owned()),
                ("accept".to_owned(), "none".to_owned())
            ]
        );
    }
}
