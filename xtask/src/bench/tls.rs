//! What the TLS hook costs. A uprobe traps into the kernel at every call of its function
//! in every process it is installed in: with `--tls all` every process using OpenSSL's
//! `libssl`, with `--tls auto` only those holding a traced socket at start. The load: HTTPS through OpenSSL on
//! both ends, nginx and curl clients making requests on keep-alive connections as fast as
//! they go. The rounds, interleaved: no tracer; tracer on another port with `--tls off`,
//! `auto` and `all` (the load untraced: with `all`, what any process using the library
//! pays); tracer on the load's port with `--tls auto` and `all` (traced). Then the
//! kernel's statistics of the TLS programs.

use std::{
    collections::BTreeMap,
    fs,
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
    /// SIGTERM, which the master passes on to its workers (SIGKILL would leave them).
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child this value owns, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// `clients` curls each making `requests` on keep-alive connections: requests answered
/// per second, from the first start to the last exit.
fn load(clients: usize, requests: u64) -> Result<f64> {
    let url = format!("https://127.0.0.1:{TLS_PORT}/[1-{requests}]");
    let started = Instant::now();
    let curls = (0..clients)
        .map(|_| {
            Command::new("curl")
                .args(["-sSfk", "--http1.1", "-o", "/dev/null", &url])
                .stdout(Stdio::null())
                .spawn()
                .context("cannot run curl")
        })
        .collect::<Result<Vec<_>>>()?;
    for mut curl in curls {
        let status = curl.wait()?;
        if !status.success() {
            bail!("curl failed: {status}");
        }
    }
    Ok((clients as u64 * requests) as f64 / started.elapsed().as_secs_f64())
}

/// Tracer with `--tls MODE` on `port`.
fn tracer(mode: &str) -> Observer {
    Observer::Tracer {
        binary: None,
        emit: "connections",
        extra: vec!["--tls".to_owned(), mode.to_owned()],
    }
}

/// One round of `observer` watching `port` (`clients` each making `requests`): requests
/// per second, and the TLS programs' kernel statistics when `stats`.
fn measure(
    observer: &Observer,
    tracer_binary: &Path,
    port: u16,
    (clients, requests): (usize, u64),
    stats: bool,
) -> Result<(f64, BTreeMap<String, bpf_stats::ProgramRuns>)> {
    let output: PathBuf = work_dir()?.join("tls-observer.out");
    let _ = fs::remove_file(&output);
    let running = observer::start(observer, tracer_binary, port, &output)?;
    let before = match (stats, running.pid()) {
        (true, Some(pid)) => bpf_stats::snapshot(pid)?,
        _ => BTreeMap::new(),
    };
    let rate = load(clients, requests)?;
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
        (tracer("all"), OTHER_PORT),
        (tracer("auto"), TLS_PORT),
        (tracer("all"), TLS_PORT),
    ];
    let label = |(observer, port): &(Observer, u16)| match observer {
        Observer::None => "no tracer".to_owned(),
        _ if *port == TLS_PORT => format!("{}, the load traced", observer.name()),
        _ => format!("{}, the load untraced", observer.name()),
    };
    println!(
        "bench: HTTPS through OpenSSL on 127.0.0.1:{TLS_PORT} (nginx, {} curl clients)",
        args.threads
    );
    // Requests per client for a round of about `seconds` without a tracer.
    let warm = load(args.threads, 2_000)?;
    let requests = (warm / args.threads as f64 * args.seconds as f64).max(1_000.0) as u64;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); observers.len()];
    for round in 0..args.rounds as usize {
        for i in 0..observers.len() {
            let index = (i + round) % observers.len();
            let (observer, port) = &observers[index];
            let (rate, _) = measure(
                observer,
                tracer_binary,
                *port,
                (args.threads, requests),
                false,
            )?;
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
    for (mode, what, port) in [
        ("all", "untraced", OTHER_PORT),
        ("auto", "traced", TLS_PORT),
        ("all", "traced", TLS_PORT),
    ] {
        let load = (args.threads, requests);
        let (_, programs) = measure(&tracer(mode), tracer_binary, port, load, true)?;
        let tls: BTreeMap<_, _> = programs
            .into_iter()
            .filter(|(name, _)| name.starts_with("ssl_"))
            .collect();
        print_programs(&format!("tracer --tls {mode}, the HTTPS load {what}"), &tls);
    }
    Ok(())
}
