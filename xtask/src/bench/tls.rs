//! What the TLS hook costs. Its uprobes are on the library file, so every process using
//! OpenSSL's `libssl` traps into them, traced or not. The load: HTTPS through OpenSSL on
//! both ends, nginx and curl clients making requests on keep-alive connections as fast as
//! they go. The rounds, interleaved: no tracer; tracer on another port with `--tls off`
//! and with `--tls auto` (the load untraced: what any process using the library pays);
//! tracer on the load's port with `--tls auto` (traced). Then the kernel's statistics of
//! the TLS programs, untraced and traced.

use std::{
    collections::BTreeMap,
    fs,
    io::Read as _,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    BenchArgs, OTHER_PORT, bpf_stats, median, observer, observer::Observer, print_programs,
    work_dir,
};

/// The HTTPS load's port, outside the ephemeral range the benchmark sets.
const TLS_PORT: u16 = 61003;

/// Requests each curl asks for: more than it makes in a round (it is stopped first).
const URLS: &str = "[1-100000000]";

/// nginx serving HTTPS on [`TLS_PORT`] from `dir`, with a self-signed certificate.
struct Nginx(Child);

impl Nginx {
    fn start(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let path = |name: &str| dir.join(name).display().to_string();
        crate::run(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &path("key.pem"),
            "-out",
            &path("cert.pem"),
        ]))?;
        let config = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {pid};\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
               client_body_temp_path {dir}/body;\n\
               server {{\n    listen 127.0.0.1:{TLS_PORT} ssl;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 location / {{ return 200 \"pong\\n\"; }}\n  }}\n}}\n",
            pid = path("nginx.pid"),
            dir = dir.display(),
            cert = path("cert.pem"),
            key = path("key.pem"),
        );
        fs::write(path("nginx.conf"), config)?;
        let child = Command::new("/usr/sbin/nginx")
            .args([
                "-e",
                &path("error.log"),
                "-p",
                &path(""),
                "-c",
                &path("nginx.conf"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run nginx")?;
        let nginx = Nginx(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", TLS_PORT)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nginx did not listen on {TLS_PORT}: see {}",
                    path("error.log")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `clients` curls making requests for `seconds`: requests answered per second.
fn load(clients: usize, seconds: u64) -> Result<f64> {
    let url = format!("https://127.0.0.1:{TLS_PORT}/{URLS}");
    let mut curls = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..clients {
        let mut child = Command::new("curl")
            .args(["-sk", "--http1.1", "-o", "/dev/null", "-w", "\\n", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run curl")?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        // One line per answered request.
        counters.push(thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            let mut lines = 0u64;
            while let Ok(n @ 1..) = stdout.read(&mut buffer) {
                lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
            lines
        }));
        curls.push(child);
    }
    let started = Instant::now();
    // The round's length is what is measured: a timed load, not a wait for an event.
    thread::sleep(Duration::from_secs(seconds));
    for curl in &mut curls {
        let _ = curl.kill();
    }
    let elapsed = started.elapsed();
    for mut curl in curls {
        let _ = curl.wait();
    }
    let requests: u64 = counters
        .into_iter()
        .map(|counter| counter.join().unwrap_or(0))
        .sum();
    Ok(requests as f64 / elapsed.as_secs_f64())
}

/// Tracer with `--tls MODE` on `port`.
fn tracer(mode: &str) -> Observer {
    Observer::Tracer {
        binary: None,
        emit: "connections",
        extra: vec!["--tls".to_owned(), mode.to_owned()],
    }
}

/// One round of `observer` watching `port`: requests per second, and the TLS programs'
/// kernel statistics when `stats`.
fn measure(
    observer: &Observer,
    tracer_binary: &Path,
    port: u16,
    args: &BenchArgs,
    stats: bool,
) -> Result<(f64, BTreeMap<String, bpf_stats::ProgramRuns>)> {
    let output: PathBuf = work_dir()?.join("tls-observer.out");
    let _ = fs::remove_file(&output);
    let running = observer::start(observer, tracer_binary, port, &output)?;
    let before = match (stats, running.pid()) {
        (true, Some(pid)) => bpf_stats::snapshot(pid)?,
        _ => BTreeMap::new(),
    };
    let rate = load(args.threads, args.seconds)?;
    let programs = match (stats, running.pid()) {
        (true, Some(pid)) => bpf_stats::delta(&before, &bpf_stats::snapshot(pid)?),
        _ => BTreeMap::new(),
    };
    running.stop()?;
    Ok((rate, programs))
}

pub fn overhead(args: &BenchArgs, tracer_binary: &Path) -> Result<()> {
    let _nginx = Nginx::start(&work_dir()?.join("nginx"))?;
    let observers = [
        (Observer::None, OTHER_PORT),
        (tracer("off"), OTHER_PORT),
        (tracer("auto"), OTHER_PORT),
        (tracer("auto"), TLS_PORT),
    ];
    let label = |(observer, port): &(Observer, u16)| match observer {
        Observer::None => "no tracer".to_owned(),
        _ if *port == TLS_PORT => format!("{}, the load traced", observer.name()),
        _ => format!("{}, the load untraced", observer.name()),
    };
    println!(
        "bench: HTTPS through OpenSSL on 127.0.0.1:{TLS_PORT} (nginx, {} curl clients), {} s rounds",
        args.threads, args.seconds
    );
    load(args.threads, 1)?;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); observers.len()];
    for round in 0..args.rounds as usize {
        for i in 0..observers.len() {
            let index = (i + round) % observers.len();
            let (observer, port) = &observers[index];
            let (rate, _) = measure(observer, tracer_binary, *port, args, false)?;
            println!(
                "bench: round {} {:<48} {rate:>8.0} requests/s",
                round + 1,
                label(&observers[index])
            );
            rates[index].push(rate);
        }
    }
    let baseline = median(rates[0].clone());
    println!();
    println!("| observer | HTTPS requests/s (median) | vs no tracer |");
    println!("|---|---|---|");
    for (observer, rates) in observers.iter().zip(&rates) {
        let rate = median(rates.clone());
        println!(
            "| {} | {rate:.0} | {:.2}x |",
            label(observer),
            rate / baseline
        );
    }
    println!();
    let _stats = bpf_stats::StatsEnabled::on()?;
    for (what, port) in [("untraced", OTHER_PORT), ("traced", TLS_PORT)] {
        let (_, programs) = measure(&tracer("auto"), tracer_binary, port, args, true)?;
        let tls: BTreeMap<_, _> = programs
            .into_iter()
            .filter(|(name, _)| name.starts_with("ssl_"))
            .collect();
        print_programs(&format!("tracer --tls auto, the HTTPS load {what}"), &tls);
    }
    Ok(())
}
