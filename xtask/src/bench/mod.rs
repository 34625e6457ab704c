//! `cargo xtask bench`: what tracing costs.
//!
//! Two parts. The pipeline part (`tracer/benches/pipeline.rs`) measures the daemon's
//! userspace work per event on a generated stream. The overhead part measures the whole
//! tracer under real load: loopback connection churn ([`load`]) as fast as the machine
//! goes, with nothing watching, the tracer in each mode, `tcpdump -w` and a bpftrace
//! tcpstates one-liner taking turns ([`observer`]), interleaved round by round because
//! these machines are noisy; then the kernel's own statistics ([`bpf_stats`]) of each
//! eBPF program with the traced port under load, and with another port under load (what
//! untraced traffic costs). Then the TLS hook's cost under an HTTPS load ([`tls`]).
//! Figures to record go to docs/performance.md by hand, with the date and the machine.

mod bpf_stats;
mod floor;
mod load;
mod observer;
mod tls;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use self::{
    bpf_stats::{ProgramRuns, StatsEnabled},
    floor::Floor,
    load::{ChurnServer, Churned, churn},
    observer::{Observer, TracerOutput},
};
use crate::{cargo, run, setup};

/// Debian packages the overhead part compares with or reads statistics through.
const BENCH_PACKAGES: &[&str] = &[
    "bpftool", "tcpdump", "bpftrace", "iproute2", "nginx", "curl", "openssl",
];

/// The churn's server port and a port nobody sends to (the untraced measurement), both
/// outside the ephemeral range the benchmark sets.
const PORT: u16 = 61001;
const OTHER_PORT: u16 = 61002;
const EPHEMERAL_RANGE: &str = "10000 60999";

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Interleaved rounds of the overhead part.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Seconds of load per round.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    /// Client threads of the churn (and as many server threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Only the overhead part (skip the userspace pipeline benchmark).
    #[arg(long)]
    overhead_only: bool,
    /// Only the TLS hook's cost under an HTTPS load.
    #[arg(long, conflicts_with = "overhead_only")]
    tls_only: bool,
    /// Extra tracer arguments for the tracer rounds (e.g. `--ring-buffer-size 64K`).
    #[arg(long = "tracer-arg", allow_hyphen_values = true)]
    tracer_args: Vec<String>,
    /// Another tracer binary (e.g. an earlier release) to measure in the same rounds.
    #[arg(long, value_name = "PATH")]
    compare_with: Option<PathBuf>,
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    setup::ensure()?;
    if !args.overhead_only && !args.tls_only {
        run(cargo()?.args(["bench", "--package", "tracer", "--bench", "pipeline"]))?;
    }
    setup::ensure_packages(BENCH_PACKAGES)?;
    let tracer = crate::build()?;
    if !args.tls_only {
        overhead(args, &tracer)?;
    }
    tls::overhead(args, &tracer)
}

/// Sets sysctls for the run and restores them when dropped.
struct Sysctls(Vec<(PathBuf, String)>);

impl Sysctls {
    fn set(values: &[(&str, &str)]) -> Result<Self> {
        let mut saved = Sysctls(Vec::new());
        for (name, value) in values {
            let path = Path::new("/proc/sys").join(name.replace('.', "/"));
            let previous =
                fs::read_to_string(&path).with_context(|| format!("cannot read sysctl {name}"))?;
            fs::write(&path, value).with_context(|| format!("cannot set sysctl {name}"))?;
            saved.0.push((path, previous.trim().to_owned()));
        }
        Ok(saved)
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (path, value) in self.0.iter().rev() {
            let _ = fs::write(path, value);
        }
    }
}

/// One observer's round.
struct Round {
    churned: Churned,
    cpu: Duration,
    tracer: Option<TracerOutput>,
}

fn work_dir() -> Result<PathBuf> {
    let dir = crate::workspace_root().join("target/bench");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Waits until no connection on `port` is left between SYN and CLOSE (TIME_WAIT aside).
fn await_quiet(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let filter = format!("( sport = :{port} or dport = :{port} )");
    loop {
        let output = Command::new("ss")
            .args([
                "-Htan",
                "state",
                "established",
                "state",
                "syn-sent",
                "state",
                "syn-recv",
            ])
            .args([
                "state",
                "fin-wait-1",
                "state",
                "fin-wait-2",
                "state",
                "close-wait",
            ])
            .args(["state", "last-ack", "state", "closing", &filter])
            .output()
            .context("cannot run ss")?;
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("connections on port {port} did not finish closing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn measure(
    observer: &Observer,
    tracer: &Path,
    traced_port: u16,
    args: &BenchArgs,
    stats: Option<&Floor>,
) -> Result<(Round, BTreeMap<String, ProgramRuns>)> {
    let output = work_dir()?.join("observer.out");
    let _ = fs::remove_file(&output);
    let running = observer::start(observer, tracer, traced_port, &output)?;
    // The observer's programs, and the floor's beside them.
    let snapshot = || -> Result<BTreeMap<String, ProgramRuns>> {
        match (stats, running.pid()) {
            (Some(floor), Some(pid)) => {
                let mut programs = bpf_stats::snapshot(pid)?;
                programs.extend(floor.snapshot()?);
                Ok(programs)
            }
            _ => Ok(BTreeMap::new()),
        }
    };
    let before = snapshot()?;
    let churned = churn(PORT, args.threads, Duration::from_secs(args.seconds));
    await_quiet(PORT)?;
    let programs = bpf_stats::delta(&before, &snapshot()?);
    let cpu = running.stop()?;
    let tracer = matches!(observer, Observer::Tracer { .. })
        .then(|| TracerOutput::read(&output))
        .transpose()?;
    Ok((
        Round {
            churned,
            cpu,
            tracer,
        },
        programs,
    ))
}

/// This process's cgroup (v2), as `--cgroup` takes it: where the churn's sockets are.
fn own_cgroup() -> Result<String> {
    let cgroups = fs::read_to_string("/proc/self/cgroup")?;
    cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
        .context("this process has no cgroup v2 (no 0:: line in /proc/self/cgroup)")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn overhead(args: &BenchArgs, tracer: &Path) -> Result<()> {
    let _sysctls = Sysctls::set(&[
        ("net.ipv4.ip_local_port_range", EPHEMERAL_RANGE),
        ("net.ipv4.tcp_tw_reuse", "1"),
    ])?;
    // This tracer, and the one to compare with, in both modes.
    let tracers = std::iter::once(None)
        .chain(args.compare_with.clone().map(Some))
        .flat_map(|binary| {
            ["connections", "all"].map(|emit| Observer::Tracer {
                binary: binary.clone(),
                emit,
                extra: args.tracer_args.clone(),
            })
        });
    // The baseline first: the ratios are against `observers[0]`.
    let observers: Vec<Observer> = std::iter::once(Observer::None)
        .chain(tracers)
        .chain([Observer::Tcpdump, Observer::Bpftrace])
        .filter(Observer::available)
        .collect();
    let _server = ChurnServer::start(PORT, args.threads)?;
    println!(
        "bench: churn on 127.0.0.1:{PORT}, {} client and server threads, {} s rounds",
        args.threads, args.seconds
    );
    churn(PORT, args.threads, Duration::from_secs(1));
    await_quiet(PORT)?;

    let mut rounds: BTreeMap<usize, Vec<Round>> = BTreeMap::new();
    for round in 0..args.rounds as usize {
        // Each round starts with another observer, so none always runs first.
        for i in 0..observers.len() {
            let index = (i + round) % observers.len();
            let (measured, _) = measure(&observers[index], tracer, PORT, args, None)?;
            println!(
                "bench: round {} {:<24} {:>8.0} connections/s ({} failed)",
                round + 1,
                observers[index].name(),
                measured.churned.per_second(),
                measured.churned.failures
            );
            rounds.entry(index).or_default().push(measured);
        }
    }
    print_overhead(&observers, &rounds);

    let all = |extra: &[String]| Observer::Tracer {
        binary: None,
        emit: "all",
        extra: args.tracer_args.iter().chain(extra).cloned().collect(),
    };
    // The selector's other rules active too: a network the churn is in, and the churn's
    // cgroup (this process's). The port rule decides first, so untraced traffic should
    // not pay for them.
    let rules = [
        "--net".to_owned(),
        "127.0.0.0/8".to_owned(),
        "--cgroup".to_owned(),
        own_cgroup()?,
    ];
    let _stats = StatsEnabled::on()?;
    let floor = Floor::attach()?;
    for (what, port, extra) in [
        ("traced port", PORT, &[][..]),
        (
            "traced port, with --net and --cgroup rules",
            PORT,
            &rules[..],
        ),
        ("untraced port (tracer on another)", OTHER_PORT, &[][..]),
        (
            "untraced port, with --net and --cgroup rules",
            OTHER_PORT,
            &rules[..],
        ),
    ] {
        let (_, programs) = measure(&all(extra), tracer, port, args, Some(&floor))?;
        print_programs(&format!("tracer all, {what}"), &programs);
    }
    let (_, programs) = measure(&Observer::Bpftrace, tracer, PORT, args, Some(&floor))?;
    print_programs("bpftrace tcpstates, traced port", &programs);
    Ok(())
}

fn print_overhead(observers: &[Observer], rounds: &BTreeMap<usize, Vec<Round>>) {
    let rate = |index: usize| {
        median(
            rounds[&index]
                .iter()
                .map(|r| r.churned.per_second())
                .collect(),
        )
    };
    let baseline = rate(0);
    println!();
    println!(
        "| observer | connections/s (median) | vs no tracer | tracer CPU per event | events lost | records exact |"
    );
    println!("|---|---|---|---|---|---|");
    for (index, observer) in observers.iter().enumerate() {
        let runs = &rounds[&index];
        let (cpu, lost, exact) = match runs
            .iter()
            .map(|r| r.tracer.as_ref())
            .collect::<Option<Vec<_>>>()
        {
            Some(outputs) => {
                let events: u64 = outputs.iter().map(|o| received(o)).sum();
                let cpu: Duration = runs.iter().map(|r| r.cpu).sum();
                let lost: u64 = outputs.iter().map(|o| o.lost).sum();
                let exact = runs.iter().zip(&outputs).all(|(r, o)| {
                    o.inexact_records == 0
                        && o.client_records == r.churned.connections
                        && o.server_records == r.churned.connections
                });
                let inexact: u64 = outputs.iter().map(|o| o.inexact_records).sum();
                (
                    format!(
                        "{:.2} µs ({events} events)",
                        cpu.as_secs_f64() * 1e6 / events.max(1) as f64
                    ),
                    lost.to_string(),
                    if exact {
                        "yes".to_owned()
                    } else {
                        let short: Vec<String> = runs
                            .iter()
                            .zip(&outputs)
                            .map(|(r, o)| {
                                format!(
                                    "{}c/{}s of {}",
                                    o.client_records, o.server_records, r.churned.connections
                                )
                            })
                            .collect();
                        format!("no: {inexact} inexact; {}", short.join(", "))
                    },
                )
            }
            None => ("".into(), "".into(), "".into()),
        };
        println!(
            "| {} | {:.0} | {:.2}x | {cpu} | {lost} | {exact} |",
            observer.name(),
            rate(index),
            rate(index) / baseline
        );
    }
    println!();
}

/// Events the tracer took from the ring buffer: its own count where `tracer_stop` has
/// it, else the event lines it wrote.
fn received(output: &TracerOutput) -> u64 {
    output.stop["events"]["received"]
        .as_u64()
        .unwrap_or(output.events)
}

/// Each program's runs, beside the floor on its tracepoint where there is one.
fn print_programs(title: &str, programs: &BTreeMap<String, ProgramRuns>) {
    let ns = |runs: &ProgramRuns| runs.ns_per_run().unwrap_or(f64::NAN);
    println!("{title}:");
    println!(
        "| program | runs | ns per run | floor: empty program, ns per run | above the floor | recursion misses |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, runs) in programs.iter().filter(|(name, _)| !Floor::is_floor(name)) {
        let (floor, above) = match programs.get(&Floor::name(name)) {
            Some(floor) => (
                format!("{:.0}", ns(floor)),
                format!("{:+.0}", ns(runs) - ns(floor)),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "| {name} | {} | {:.0} | {floor} | {above} | {} |",
            runs.run_cnt,
            ns(runs),
            runs.recursion_misses
        );
    }
    println!();
}
