//! `tracer top` as a person uses it: in a real terminal (tmux), against real traffic, keys
//! typed with `send-keys`, the screen read with `capture-pane`. Not run in the kernel
//! matrix's guests (no tmux there); what it draws comes from the events every guest checks.

use std::{
    net::{TcpListener, TcpStream},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use rustix::{net::sockopt, process::Pid};

use crate::support::{DEADLINE, free_port, shared, tracer_bin};

/// A tmux server of the test's own, with one window running a command; killed when
/// dropped.
struct Terminal {
    socket: String,
}

impl Terminal {
    /// `command` in a `columns` x `rows` window; its exit status is printed after it.
    fn start(command: &str, columns: u16, rows: u16) -> Self {
        static TERMINALS: AtomicU32 = AtomicU32::new(0);
        let number = TERMINALS.fetch_add(1, Ordering::Relaxed);
        let terminal = Self {
            socket: format!("tracer-test-{}-{number}", std::process::id()),
        };
        terminal.tmux(&[
            "new-session",
            "-d",
            "-x",
            &columns.to_string(),
            "-y",
            &rows.to_string(),
            &format!("{command}; echo EXITED $?; sleep 60"),
        ]);
        terminal
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("cannot run tmux (cargo xtask setup installs it)");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The process the window runs (under the shell the pane runs).
    fn tracer(&self) -> Pid {
        let pid = self.tmux(&["list-panes", "-F", "#{pane_pid}"]);
        let shell: i32 = pid.trim().parse().unwrap();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        let tracer: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
        Pid::from_raw(tracer).unwrap()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", keys]);
    }

    /// Waits until the screen has a line that `wanted` accepts; returns that line.
    fn line(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if let Some(line) = screen.lines().find(|line| wanted(line)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {DEADLINE:?}:\n{screen}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The cells of a table row (the selected one marked `>`).
fn cells(line: &str) -> Vec<&str> {
    line.trim_start_matches('>').split_whitespace().collect()
}

/// Three connections on a traced port, one closed by its client and one reset: the port's
/// row counts what is open (the third's two sockets) and the resets, the header the
/// records (two for each connection); Enter lists the port's connections and draws one's
/// flow graph; `g` groups by remote address, then by process, then by workload (the
/// sockets' cgroup); `q` leaves the terminal as it was.
#[test]
fn top_shows_the_traffic_and_leaves_the_terminal_clean() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let command = format!("{} top --port {port}", tracer_bin().display());
    let terminal = Terminal::start(&command, 100, 24);
    terminal.line("the header", |l| l.starts_with("tracer top"));

    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut pairs: Vec<(TcpStream, TcpStream)> = (0..3)
        .map(|_| {
            let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
            (client, listener.accept().unwrap().0)
        })
        .collect();
    // One closed by its client, one reset by its client (SO_LINGER 0).
    let (client, server) = pairs.remove(0);
    drop(client);
    drop(server);
    let (client, server) = pairs.remove(0);
    sockopt::set_socket_linger(&client, Some(Duration::ZERO)).unwrap();
    drop(client);
    drop(server);

    // One connection open: two sockets; four records; a reset sent and received.
    let row = terminal.line("the port's row with a connection open", |l| {
        let cells = cells(l);
        cells.first() == Some(&port.to_string().as_str()) && cells.get(1) == Some(&"2")
    });
    assert_eq!(cells(&row)[5], "1/1", "RST s/r: {row}");
    terminal.line("four records", |l| l.contains("closed 4 "));

    // Enter lists the port's recent connections, Enter on the latest draws its flow graph
    // (as --format pretty does), Esc goes back.
    terminal.keys("Enter");
    terminal.line("the port's connections", |l| {
        l.starts_with(&format!("recent connections of port {port}"))
    });
    terminal.line("a reset connection", |l| l.contains("reset_received"));
    terminal.keys("Enter");
    terminal.line("a flow graph", |l| {
        l.starts_with("connection ") && l.contains(": ")
    });
    terminal.keys("Escape");
    terminal.line("the port's connections", |l| {
        l.starts_with("recent connections")
    });
    terminal.keys("Escape");
    terminal.line("the table", |l| l.trim_start().starts_with("PORT"));

    terminal.keys("g");
    terminal.line("the remote address's row", |l| {
        cells(l).first() == Some(&"127.0.0.1") && cells(l).get(1) == Some(&"2")
    });
    terminal.keys("g");
    terminal.line("grouped by process", |l| {
        l.trim_start().starts_with("PROCESS")
    });
    // The sockets' cgroup: this process's (the column cuts a long path).
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_owned();
    terminal.keys("g");
    terminal.line("the workload's row", |l| {
        cells(l).first().is_some_and(|key| own.starts_with(key)) && cells(l).get(1) == Some(&"2")
    });

    drop(pairs);
    terminal.line("the last two records", |l| l.contains("closed 6 "));
    terminal.keys("q");
    terminal.line("tracer's exit", |l| l == "EXITED 0");
    let screen = terminal.screen();
    assert!(
        !screen.contains("tracer top") && !screen.contains("g group by"),
        "the view is still on the terminal:\n{screen}"
    );
}

/// In 80 columns the table keeps its first columns and leaves out those that do not fit.
#[test]
fn top_fits_80_columns() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let command = format!("{} top --port {port}", tracer_bin().display());
    let terminal = Terminal::start(&command, 80, 24);
    let heading = terminal.line("the table's heading", |l| {
        l.trim_start().starts_with("PORT")
    });
    assert!(
        heading.contains("OPEN") && heading.contains("RST s/r"),
        "{heading}"
    );
    assert!(
        !heading.contains("RSP p50/99"),
        "a column beyond 80: {heading}"
    );
    assert!(heading.trim_end().len() <= 80, "{heading}");
    terminal.keys("q");
    terminal.line("tracer's exit", |l| l == "EXITED 0");
}

/// With `--bpf-stats` the header says what tracer's programs cost the kernel in the last
/// interval, from the kernel's own counts: a share of a CPU and the time per run, which
/// traffic makes more than nothing.
#[test]
fn top_shows_the_kernel_cost_with_bpf_stats() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let command = format!("{} top --port {port} --bpf-stats", tracer_bin().display());
    let terminal = Terminal::start(&command, 100, 24);
    terminal.line("the header", |l| l.starts_with("tracer top"));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let header = terminal.line("the programs' cost", |l| {
        // Traffic in every interval until one shows its cost.
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        drop(listener.accept().unwrap());
        drop(client);
        let words: Vec<&str> = l.split_whitespace().collect();
        words.windows(5).any(|w| {
            w[0] == "bpf"
                && w[2] == "cpu"
                && w[4] == "ns/run"
                && w[3].parse::<u64>().is_ok_and(|ns| ns > 0)
        })
    });
    assert!(header.starts_with("tracer top"), "{header}");
    terminal.keys("q");
    terminal.line("tracer's exit", |l| l == "EXITED 0");
}

/// `--replay` shows a recorded trace at its pace, faster with `+`: at its end the header
/// counts its records, as `tracer replay` writes them.
#[test]
fn top_replays_a_recorded_trace() {
    let _machine = shared();
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let records = std::fs::read_to_string(format!("{golden}/replay-all.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| line.contains("\"event\":\"connection\""))
        .count();
    let command = format!(
        "{} top --replay {golden}/trace.jsonl",
        tracer_bin().display()
    );
    let terminal = Terminal::start(&command, 100, 24);
    terminal.line("the header", |l| l.contains("replay: x1"));
    terminal.keys("+");
    terminal.line("a faster replay", |l| l.contains("replay: x2"));
    terminal.keys("+");
    terminal.line("the end of the trace", |l| {
        l.contains("replay: the end of the trace")
    });
    terminal.line("every record", |l| {
        l.contains(&format!("closed {records} "))
    });
    terminal.keys("q");
    terminal.line("tracer's exit", |l| l == "EXITED 0");
}

/// SIGTERM (a service manager stopping it) ends `tracer top` as `q` does: exit status 0
/// and the terminal as it was.
#[test]
fn top_ends_on_sigterm_and_leaves_the_terminal_clean() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let command = format!("{} top --port {port}", tracer_bin().display());
    let terminal = Terminal::start(&command, 100, 24);
    terminal.line("the header", |l| l.starts_with("tracer top"));
    rustix::process::kill_process(terminal.tracer(), rustix::process::Signal::TERM).unwrap();
    terminal.line("tracer's exit", |l| l == "EXITED 0");
    let screen = terminal.screen();
    assert!(
        !screen.contains("tracer top"),
        "the view is still on the terminal:\n{screen}"
    );
}

/// A terminal that goes away (its window closed, an SSH session dropped) hangs up: tracer
/// top ends, as it would on SIGTERM, instead of tracing on for nobody.
#[test]
fn top_ends_when_its_terminal_hangs_up() {
    let _machine = shared();
    let port = free_port("127.0.0.1");
    let command = format!("{} top --port {port}", tracer_bin().display());
    let terminal = Terminal::start(&command, 100, 24);
    terminal.line("the header", |l| l.starts_with("tracer top"));
    let tracer = terminal.tracer();
    drop(terminal);
    let gone = Instant::now() + DEADLINE;
    while rustix::process::test_kill_process(tracer).is_ok() {
        assert!(
            Instant::now() < gone,
            "tracer top still runs without its terminal"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
