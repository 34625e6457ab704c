//! Command-line arguments, resolved at the edge: [`Cli::resolve`] turns them into the plain
//! configuration each stage takes ([`TraceConfig`], [`PipelineConfig`], [`OutputConfig`],
//! [`MetricsConfig`]), so nothing below this module sees the parser. Every option of a
//! trace also reads an environment variable (`TRACER_PORT`, `TRACER_OUTPUT`, ...), for
//! systemd units and containers. Values with names (`--emit`, `--format`, `--attach`) are
//! read through their type's vocabulary, the same one the output writes.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use bytesize::ByteSize;
use clap::{
    Args, Id, Parser, Subcommand,
    builder::{PossibleValuesParser, Resettable, TypedValueParser},
};
use ipnet::IpNet;

use crate::{
    daemon::TraceConfig,
    kernel::{
        attach::{AttachMode, TlsMode},
        selector::Selection,
    },
    output::{
        FileOutput, Format, OutputConfig,
        file::Rotation,
        metrics::{MetricsConfig, WorkloadLabel, WorkloadLabels},
        otlp::{
            OtlpConfig, OtlpProtocol,
            tls::{TlsFile, TlsFiles},
        },
    },
    pipeline::{
        Emit, PipelineConfig,
        correlator::DEFAULT_MAX_CONNECTIONS,
        workload::cri::{CriSocket, PodName},
    },
    vocabulary::Named,
};

/// Parses one of `T`'s names, offering them all in `--help` and in errors.
fn named<T: Named>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::NAMES).try_map(|name| name.parse::<T>())
}

/// Kernel-level TCP event tracer: state changes, resets, retransmits and keepalive
/// probes of the TCP connections on the given ports, as JSON lines.
#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this kernel lets tracer do (hooks, mechanisms, why not); exit 0 when
    /// tracing can run.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,

        /// Report what this mode would attach (exit 0 when it can trace).
        #[arg(long, env = "TRACER_ATTACH", default_value_t = AttachMode::Auto, value_parser = named::<AttachMode>())]
        attach: AttachMode,

        /// The container runtime's CRI socket to report on (default: containerd's or
        /// CRI-O's where present).
        #[arg(long, value_name = "PATH", env = "TRACER_CRI_SOCKET", value_parser = cri_socket)]
        cri_socket: Option<CriSocket>,
    },
    /// Show the traced connections live on this terminal, grouped by port, remote
    /// address, process or workload (keys: g group by, s sort by, Enter drill down, Esc
    /// back, q quit). Takes the same options as a trace, but writes no lines.
    #[command(
        mut_arg("port", |port| {
            port.required(false)
                .required_unless_present_any(["replay", "cgroup", "container", "pod"])
        }),
        mut_arg("bpf_stats", |stats| stats.requires(Resettable::<Id>::Reset))
    )]
    Top {
        /// Show a recorded trace (tracer's JSON lines) instead, at the pace it was recorded:
        /// + and - double and halve the speed, space pauses.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["port", "cgroup", "container", "pod", "net"])]
        replay: Option<PathBuf>,

        #[command(flatten)]
        trace: Box<TraceArgs>,
    },
    /// Make a web page of a recorded trace (its JSON lines, recorded with `--emit all`): the
    /// connections by port and by peer, histograms of handshake, response and idle times,
    /// a timeline, and each connection's flow graph; one file, viewable offline.
    Report {
        /// The recorded trace; `-` for standard input.
        file: PathBuf,

        /// Write the page to FILE instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read recorded JSON lines (a trace's events) and show them through the same
    /// correlator and formats, e.g. a trace captured on a server, read elsewhere.
    Replay {
        /// The recorded trace; `-` for standard input.
        file: PathBuf,

        #[command(flatten)]
        output: OutputArgs,
    },
}

/// What to show, and how.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Kernel events, finished connections (one record each), or both.
    #[arg(long, env = "TRACER_EMIT", default_value_t = Emit::All, value_parser = named::<Emit>())]
    pub emit: Emit,

    /// JSON lines, or a timeline per connection for people (coloured on a terminal).
    #[arg(long, env = "TRACER_FORMAT", default_value_t = Format::Json, value_parser = named::<Format>())]
    pub format: Format,

    /// Open connections tracked at most; beyond, the least recently active is reported
    /// as evicted.
    #[arg(
        long,
        env = "TRACER_MAX_CONNECTIONS",
        default_value_t = DEFAULT_MAX_CONNECTIONS as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
}

impl OutputArgs {
    fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            emit: self.emit,
            max_connections: self.max_connections as usize,
            keep_events: self.format.draws_events(),
        }
    }
}

/// Ports to trace as one argument: `8191`, a range `8000-8100` (both ends included), or
/// several of them separated by commas or spaces (`80,443` or `"80 443"`, handy in
/// `TRACER_PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortList(Vec<u16>);

impl FromStr for PortList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port = |text: &str| match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{text:?} is not a port (1 to 65535)")),
            Ok(port) => Ok(port),
        };
        let mut ports = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            match item.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (port(first)?, port(last)?);
                    if first > last {
                        return Err(format!(
                            "{item:?} is a range upside down (did you mean {last}-{first}?)"
                        ));
                    }
                    ports.extend(first..=last);
                }
                None => ports.push(port(item)?),
            }
        }
        if ports.is_empty() {
            return Err("no port given".to_owned());
        }
        Ok(Self(ports))
    }
}

/// A cgroup (v2) path as `--cgroup` takes it: absolute from the cgroup2 mount, as the
/// `cgroup` field prints it, without `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupPath(String);

impl FromStr for CgroupPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let path = text.trim();
        if !path.starts_with('/') || path.split('/').any(|c| c == "." || c == "..") {
            return Err(format!(
                "{path:?} is not a cgroup path: absolute from the cgroup2 mount, as the cgroup field prints it (e.g. /system.slice/nginx.service)"
            ));
        }
        let trimmed = path.trim_end_matches('/');
        Ok(Self(
            if trimmed.is_empty() { "/" } else { trimmed }.to_owned(),
        ))
    }
}

/// A network as `--net` takes it: a CIDR (`10.0.0.0/8`, `fd00::/8`) without host bits, or
/// one address (a /32 or /128).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network(IpNet);

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                format!("{text:?} is not a network: a CIDR such as 10.0.0.0/8 or fd00::/8, or one address")
            })?,
        };
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set (did you mean {}?)",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

/// A container id as `--container` takes it: 12 to 64 hex digits, lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerId(String);

impl FromStr for ContainerId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let id = text.trim().to_ascii_lowercase();
        if !(12..=64).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{text:?} is not a container id: 12 to 64 hex digits, as `docker ps` or `podman ps` show it (names are not resolved)"
            ));
        }
        Ok(Self(id))
    }
}

/// A pod as `--pod` takes it: `NAMESPACE/NAME`.
fn pod_name(text: &str) -> Result<PodName, String> {
    match text.trim().split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(PodName {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => Err(format!(
            "{text:?} is not a pod: NAMESPACE/NAME, as `kubectl get pods -A` shows them"
        )),
    }
}

/// `--cri-socket`: a path, or `none`.
fn cri_socket(text: &str) -> Result<CriSocket, String> {
    match text {
        "none" => Ok(CriSocket::Off),
        "" => Err("give a socket's path, or none".to_owned()),
        path => Ok(CriSocket::At(path.into())),
    }
}

/// `values`, sorted, without repeats: how every repeatable option is resolved.
fn sorted_unique<T: Ord>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut values: Vec<T> = values.into_iter().collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// A file size such as `64KiB`, `100MB` or `1048576` (bytes), more than zero.
fn file_size(text: &str) -> Result<u64, String> {
    match text.parse::<ByteSize>()?.as_u64() {
        0 => Err("the size must be more than 0 bytes".to_owned()),
        bytes => Ok(bytes),
    }
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace TCP connections with this local or remote port, or a port in this range
    /// (`8000-8100`); repeat, or separate several with commas or spaces. Without it, a
    /// workload selector (--cgroup, --container, --pod) traces every port of its
    /// workloads.
    #[arg(
        long = "port",
        short = 'p',
        value_name = "PORT",
        env = "TRACER_PORT",
        required_unless_present_any = ["cgroup", "container", "pod"]
    )]
    pub port: Vec<PortList>,

    /// Trace only the connections whose socket is in this cgroup (v2) or below it: a path
    /// from the cgroup2 mount, as the `cgroup` field prints it (a service's
    /// `/system.slice/nginx.service`, a pod's `/kubepods.slice/...`); repeat for several.
    /// With --port, both must match. The kernel keeps a socket in the cgroup of the task
    /// that made it (an accepted one: its listener's).
    #[arg(
        long = "cgroup",
        value_name = "PATH",
        env = "TRACER_CGROUP",
        value_delimiter = ',',
        num_args = 1
    )]
    pub cgroup: Vec<CgroupPath>,

    /// Trace only the connections of this container (as --cgroup its cgroup): its id, or
    /// its first 12 or more hex digits (`docker ps`, `podman ps`, `crictl ps`); repeat for
    /// several. Found by the path of its cgroup (Docker, containerd, CRI-O, Podman), which
    /// stays when it restarts. Names are not resolved (that needs the runtime's API).
    #[arg(
        long = "container",
        value_name = "ID",
        env = "TRACER_CONTAINER",
        value_delimiter = ',',
        num_args = 1
    )]
    pub container: Vec<ContainerId>,

    /// Trace only the connections of this Kubernetes pod (as --cgroup its cgroup, so its
    /// containers that start later too): NAMESPACE/NAME, found through the container
    /// runtime's CRI API (--cri-socket); repeat for several.
    #[arg(
        long = "pod",
        value_name = "NAMESPACE/NAME",
        env = "TRACER_POD",
        value_delimiter = ',',
        num_args = 1,
        value_parser = pod_name
    )]
    pub pod: Vec<PodName>,

    /// The container runtime's CRI socket, asked for the names of the containers and pods
    /// of the records (`container.name`, `pod.namespace`, `pod.name`) and for --pod:
    /// default, containerd's or CRI-O's where present; `none` to ask none.
    #[arg(long, value_name = "PATH", env = "TRACER_CRI_SOCKET", value_parser = cri_socket)]
    pub cri_socket: Option<CriSocket>,

    /// Trace only the connections whose local or remote address is in this network: a
    /// CIDR (`10.0.0.0/8`, `fd00::/8`) or one address; repeat, or separate with commas,
    /// for several. An IPv4 network also matches IPv4 peers of IPv6 sockets (`::ffff:...`).
    #[arg(
        long = "net",
        value_name = "CIDR",
        env = "TRACER_NET",
        value_delimiter = ',',
        num_args = 1
    )]
    pub net: Vec<Network>,

    /// How to attach to the kernel: the best each hook can have (auto), or one mechanism
    /// for every hook that has it.
    #[arg(long, env = "TRACER_ATTACH", default_value_t = AttachMode::Auto, value_parser = named::<AttachMode>())]
    pub attach: AttachMode,

    /// Hook OpenSSL's libssl so a TLS connection's requests are the application's: in the
    /// processes holding a traced socket at start (auto), in every process using it, those
    /// started later too, each paying for its calls (all), or nowhere: count the encrypted
    /// records (off).
    #[arg(long, env = "TRACER_TLS", default_value_t = TlsMode::Auto, value_parser = named::<TlsMode>())]
    pub tls: TlsMode,

    /// Append to FILE instead of writing to standard output; SIGHUP reopens it (after
    /// logrotate renamed it).
    #[arg(long, short = 'o', value_name = "FILE", env = "TRACER_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Rotate FILE before it grows past SIZE (e.g. 100MiB): FILE becomes FILE.1, FILE.1
    /// becomes FILE.2, and so on.
    #[arg(
        long,
        value_name = "SIZE",
        env = "TRACER_ROTATE_SIZE",
        requires = "output",
        value_parser = file_size
    )]
    pub rotate_size: Option<u64>,

    /// Rotated files to keep (FILE.1 to FILE.N); the oldest beyond is deleted.
    #[arg(
        long,
        value_name = "N",
        env = "TRACER_ROTATE_KEEP",
        default_value_t = 5,
        requires = "rotate_size",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rotate_keep: u32,

    /// The kernel's buffer of events waiting for tracer (a power of two, at least 4K;
    /// K, M and G suffixes): what absorbs a burst while tracer is not running.
    #[arg(
        long,
        value_name = "SIZE",
        env = "TRACER_RING_BUFFER_SIZE",
        default_value = "16M",
        value_parser = parse_ring_size
    )]
    pub ring_buffer_size: u32,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics while tracing (HOST an IP
    /// address, e.g. 127.0.0.1:9464 or [::]:9464).
    #[arg(long, value_name = "HOST:PORT", env = "TRACER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Label the connection metrics with the workload too: `container` (the container's
    /// id, `container_id`) and `pod` (the Kubernetes pod's uid, `pod_uid`), read from the
    /// socket's cgroup, and `namespace`, `pod_name` (`pod`) and `container_name`
    /// (`container`), as the container runtime's CRI API names them; comma-separated. Off
    /// by default: each container served multiplies a port's series.
    #[arg(
        long,
        value_name = "LABELS",
        env = "TRACER_METRICS_LABELS",
        value_delimiter = ',',
        requires = "metrics_addr",
        value_parser = named::<WorkloadLabel>()
    )]
    pub metrics_labels: Vec<WorkloadLabel>,

    /// Send each connection record to an OpenTelemetry collector as an OTLP log record:
    /// the collector's base URL (`http://localhost:4318` for OTLP/HTTP, `:4317` for gRPC).
    /// Without it, `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` turn
    /// the export on; headers, timeout and TLS come from the `OTEL_EXPORTER_OTLP_*`
    /// variables (`_HEADERS`, `_TIMEOUT`, `_COMPRESSION`, `_CERTIFICATE`,
    /// `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`, and each per signal: `_LOGS_*`, `_METRICS_*`).
    #[arg(long, value_name = "URL", env = "TRACER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// OTLP over HTTP with protobuf bodies (default, or as `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// says), or gRPC.
    #[arg(long, value_name = "PROTOCOL", env = "TRACER_OTLP_PROTOCOL", value_parser = named::<OtlpProtocol>())]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// How often the metrics are sent to the OTLP collector (as a duration: `10s`, `1m`),
    /// and once more at exit.
    #[arg(
        long,
        value_name = "DURATION",
        env = "TRACER_OTLP_METRICS_INTERVAL",
        default_value = "60s",
        value_parser = interval
    )]
    pub otlp_metrics_interval: Duration,

    /// Turn the kernel's BPF statistics on while tracing (back as they were at exit), for
    /// what each eBPF program costs: in the metrics, and in `tracer top`'s header.
    #[arg(long, env = "TRACER_BPF_STATS", requires = "metrics_addr")]
    pub bpf_stats: bool,

    #[command(flatten)]
    pub show: OutputArgs,
}

/// A duration such as `10s` or `1m`, more than zero.
fn interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text).map_err(|e| e.to_string())? {
        Duration::ZERO => Err("the interval must be more than zero".to_owned()),
        interval => Ok(interval),
    }
}

/// A ring buffer size: `16M`, `64K`, `1G` or bytes; a power of two from 4 KiB (a page) to
/// 1 GiB.
fn parse_ring_size(text: &str) -> Result<u32, String> {
    let (digits, unit) = match text.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 16M, 512K)"))?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!(
            "{text} is not a power of two between 4K and 1G (the kernel's ring buffer needs one)"
        ));
    }
    Ok(bytes as u32)
}

impl TraceArgs {
    /// The ports, sorted, without repeats.
    fn ports(&self) -> Vec<u16> {
        sorted_unique(self.port.iter().flat_map(|list| list.0.clone()))
    }

    /// The cgroup paths, sorted, without repeats.
    fn cgroups(&self) -> Vec<String> {
        sorted_unique(self.cgroup.iter().map(|path| path.0.clone()))
    }

    /// The container ids, sorted, without repeats.
    fn containers(&self) -> Vec<String> {
        sorted_unique(self.container.iter().map(|id| id.0.clone()))
    }

    /// The networks, sorted, without repeats.
    fn nets(&self) -> Vec<IpNet> {
        sorted_unique(self.net.iter().map(|net| net.0))
    }

    /// How the output file rotates by size, if it does.
    fn rotation(&self) -> Option<Rotation> {
        self.rotate_size.map(|max_bytes| Rotation {
            max_bytes,
            keep: self.rotate_keep,
        })
    }

    /// The OTLP export, when `--otlp-endpoint` or the standard variables ask for it. The
    /// protocol is `--otlp-protocol`'s, else `OTEL_EXPORTER_OTLP_PROTOCOL`'s (one tracer
    /// does not speak, such as `http/json`, is left to the default).
    fn otlp(&self) -> Option<OtlpConfig> {
        let standard = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        ]
        .iter()
        .any(|variable| std::env::var_os(variable).is_some_and(|v| !v.is_empty()));
        if self.otlp_endpoint.is_none() && !standard {
            return None;
        }
        let protocol = self.otlp_protocol.unwrap_or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
                .ok()
                .and_then(|name| name.parse().ok())
                .unwrap_or(OtlpProtocol::HttpProtobuf)
        });
        Some(OtlpConfig {
            endpoint: self.otlp_endpoint.clone(),
            protocol,
            metrics_interval: self.otlp_metrics_interval,
            logs_tls: otlp_tls_files("LOGS"),
            metrics_tls: otlp_tls_files("METRICS"),
        })
    }

    fn resolve(self) -> TraceConfig {
        TraceConfig {
            selection: Selection {
                ports: self.ports(),
                cgroups: self.cgroups(),
                containers: self.containers(),
                pods: sorted_unique(self.pod.iter().cloned()),
                nets: self.nets(),
            },
            cri: self.cri_socket.clone().unwrap_or_default(),
            attach: self.attach,
            tls: self.tls,
            ring_buffer_bytes: self.ring_buffer_size,
            pipeline: self.show.pipeline(),
            output: OutputConfig {
                format: self.show.format,
                file: self.output.clone().map(|path| FileOutput {
                    path,
                    rotation: self.rotation(),
                }),
            },
            metrics: self.metrics_addr.map(|addr| MetricsConfig {
                addr,
                labels: WorkloadLabels(sorted_unique(self.metrics_labels.iter().copied())),
            }),
            bpf_stats: self.bpf_stats,
            otlp: self.otlp(),
        }
    }
}

/// One signal's TLS files from the specification's variables: the signal's own
/// (`OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE`) before the general one.
fn otlp_tls_files(signal: &str) -> TlsFiles {
    let file = |name: &str| {
        [
            format!("OTEL_EXPORTER_OTLP_{signal}_{name}"),
            format!("OTEL_EXPORTER_OTLP_{name}"),
        ]
        .into_iter()
        .find_map(|variable| {
            let path = std::env::var_os(&variable).filter(|path| !path.is_empty())?;
            Some(TlsFile {
                variable,
                path: path.into(),
            })
        })
    };
    TlsFiles {
        certificate: file("CERTIFICATE"),
        client_certificate: file("CLIENT_CERTIFICATE"),
        client_key: file("CLIENT_KEY"),
    }
}

/// What the command line asks tracer to do, in each stage's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Trace live.
    Trace(TraceConfig),
    /// `tracer top`.
    Top(TraceConfig),
    /// `tracer top --replay FILE`.
    TopReplay(PathBuf),
    /// `tracer check`.
    Check {
        json: bool,
        attach: AttachMode,
        cri: CriSocket,
    },
    /// `tracer report FILE`.
    Report {
        file: PathBuf,
        output: Option<PathBuf>,
    },
    /// `tracer replay FILE`.
    Replay {
        file: PathBuf,
        pipeline: PipelineConfig,
        format: Format,
    },
}

impl Cli {
    pub fn resolve(self) -> Invocation {
        match self.command {
            Some(Command::Check {
                json,
                attach,
                cri_socket,
            }) => Invocation::Check {
                json,
                attach,
                cri: cri_socket.unwrap_or_default(),
            },
            Some(Command::Top {
                replay: Some(file), ..
            }) => Invocation::TopReplay(file),
            Some(Command::Top {
                replay: None,
                trace,
            }) => Invocation::Top(trace.resolve()),
            Some(Command::Report { file, output }) => Invocation::Report { file, output },
            Some(Command::Replay { file, output }) => Invocation::Replay {
                file,
                pipeline: output.pipeline(),
                format: output.format,
            },
            None => Invocation::Trace(self.trace.resolve()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, error::ErrorKind};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tracer").chain(args.iter().copied()))
    }

    #[test]
    fn ports_repeat_and_dedup() {
        let cli = parse(&["--port", "8191", "-p", "80", "--port", "8191"]).unwrap();
        assert_eq!(cli.trace.ports(), vec![80, 8191]);
        assert_eq!(cli.trace.attach, AttachMode::Auto);
    }

    #[test]
    fn a_workload_selector_alone_traces_every_port() {
        for workload in [
            &["--cgroup", "/a"][..],
            &["--pod", "ns/web"],
            &["--container", "3f8d2a1c9b7e"],
        ] {
            let cli = parse(workload).unwrap();
            assert!(cli.trace.ports().is_empty(), "{workload:?}");
        }
        assert_eq!(
            parse(&["--net", "10.0.0.0/8"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument,
            "a network is not a workload"
        );
    }

    #[test]
    fn port_zero_and_out_of_range_are_refused() {
        assert_eq!(
            parse(&["--port", "0"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--port", "65536"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn attach_modes_and_check() {
        assert_eq!(
            parse(&["-p", "1", "--attach", "kprobe"])
                .unwrap()
                .trace
                .attach,
            AttachMode::Kprobe
        );
        assert_eq!(
            parse(&["-p", "1", "--attach", "uprobe"])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidValue
        );
        assert!(matches!(
            parse(&["check", "--json"]).unwrap().command,
            Some(Command::Check {
                json: true,
                attach: AttachMode::Auto,
                cri_socket: None,
            })
        ));
        let Some(Command::Replay { file, output }) = parse(&[
            "replay",
            "trace.json",
            "--format",
            "pretty",
            "--emit",
            "connections",
        ])
        .unwrap()
        .command
        else {
            panic!("not a replay");
        };
        assert_eq!(file, PathBuf::from("trace.json"));
        assert_eq!(
            (output.format, output.emit),
            (Format::Pretty, Emit::Connections)
        );
    }

    #[test]
    fn ports_list_with_commas_and_spaces() {
        let cli = parse(&["--port", "443, 80 8191", "-p", "22"]).unwrap();
        assert_eq!(cli.trace.ports(), vec![22, 80, 443, 8191]);
        let cli = parse(&["--port", "8190-8192,80", "-p", "8191-8191"]).unwrap();
        assert_eq!(cli.trace.ports(), vec![80, 8190, 8191, 8192]);
        for bad in [
            "", " , ", "80,x", "80,0", "90-80", "0-80", "80-", "80,-80", "1-2-3",
        ] {
            assert_eq!(
                parse(&["--port", bad]).unwrap_err().kind(),
                ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn networks_are_cidrs_without_host_bits_or_single_addresses() {
        let cli = parse(&[
            "--port",
            "80",
            "--net",
            "10.0.0.0/8, ::1",
            "--net",
            "127.0.0.2",
            "--net",
            "10.0.0.0/8",
        ])
        .unwrap();
        let nets: Vec<String> = cli.trace.nets().iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "127.0.0.2/32", "::1/128"]);
        for (bad, why) in [
            ("10.0.0.1/8", "has host bits set (did you mean 10.0.0.0/8?)"),
            ("fd00::1/8", "has host bits set (did you mean fd00::/8?)"),
            ("10.0.0.0/33", "is not a network"),
            ("example.com", "is not a network"),
        ] {
            let error = parse(&["--port", "80", "--net", bad]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad:?}");
            assert!(error.to_string().contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn cgroup_paths_are_checked_trimmed_and_deduplicated() {
        let cli = parse(&[
            "--port",
            "80",
            "--cgroup",
            "/system.slice/nginx.service/",
            "--cgroup",
            "/a,/system.slice/nginx.service",
        ])
        .unwrap();
        assert_eq!(
            cli.trace.cgroups(),
            vec!["/a".to_owned(), "/system.slice/nginx.service".to_owned()]
        );
        let cli = parse(&["-p", "80", "--container", "0123456789AB,0123456789ab"]).unwrap();
        assert_eq!(cli.trace.containers(), vec!["0123456789ab".to_owned()]);
        for bad in ["0123456789a", "nginx-web-1", &"0".repeat(65)] {
            assert_eq!(
                parse(&["--port", "80", "--container", bad])
                    .unwrap_err()
                    .kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
        for bad in ["system.slice", "/a/../b", "/./a", ""] {
            assert_eq!(
                parse(&["--port", "80", "--cgroup", bad])
                    .unwrap_err()
                    .kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ring_buffer_sizes_are_powers_of_two_with_units() {
        let size = |text: &str| parse(&["-p", "1", "--ring-buffer-size", text]);
        assert_eq!(
            parse(&["-p", "1"]).unwrap().trace.ring_buffer_size,
            16 << 20
        );
        assert_eq!(size("64K").unwrap().trace.ring_buffer_size, 64 << 10);
        assert_eq!(size("4096").unwrap().trace.ring_buffer_size, 4096);
        assert_eq!(size("1g").unwrap().trace.ring_buffer_size, 1 << 30);
        for bad in ["3M", "2K", "2G", "lots", "16MB", ""] {
            assert_eq!(
                size(bad).unwrap_err().kind(),
                ErrorKind::ValueValidation,
                "{bad}"
            );
        }
    }

    #[test]
    fn rotation_needs_an_output_file_and_a_size() {
        let cli = parse(&["-p", "1", "-o", "t.json", "--rotate-size", "64KiB"]).unwrap();
        assert_eq!(
            cli.trace.rotation(),
            Some(Rotation {
                max_bytes: 64 * 1024,
                keep: 5
            })
        );
        let cli = parse(&[
            "-p",
            "1",
            "-o",
            "t",
            "--rotate-size",
            "2MB",
            "--rotate-keep",
            "9",
        ]);
        assert_eq!(
            cli.unwrap().trace.rotation(),
            Some(Rotation {
                max_bytes: 2_000_000,
                keep: 9
            })
        );
        assert_eq!(
            parse(&["-p", "1", "-o", "t"]).unwrap().trace.rotation(),
            None
        );
        for args in [
            &["-p", "1", "--rotate-size", "1MiB"][..],
            &["-p", "1", "-o", "t", "--rotate-keep", "3"],
        ] {
            assert_eq!(
                parse(args).unwrap_err().kind(),
                ErrorKind::MissingRequiredArgument,
                "{args:?}"
            );
        }
        for size in ["0", "lots", "1 parsec"] {
            assert_eq!(
                parse(&["-p", "1", "-o", "t", "--rotate-size", size])
                    .unwrap_err()
                    .kind(),
                ErrorKind::ValueValidation,
                "{size}"
            );
        }
    }

    /// Units and containers configure the tracer through the environment: every option
    /// of a trace has its `TRACER_` variable.
    #[test]
    fn every_trace_option_has_an_environment_variable() {
        let command = Cli::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let expected = format!("TRACER_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|env| env.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
        }
    }

    #[test]
    fn metrics_address_and_bpf_stats() {
        let cli = parse(&["-p", "1", "--metrics-addr", "[::1]:9464", "--bpf-stats"]).unwrap();
        assert_eq!(cli.trace.metrics_addr, Some("[::1]:9464".parse().unwrap()));
        assert!(cli.trace.bpf_stats);
        assert_eq!(
            parse(&["-p", "1", "--metrics-addr", "localhost"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["-p", "1", "--bpf-stats"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let labels = |args: &[&str]| match parse(args).map(|cli| cli.resolve()) {
            Ok(Invocation::Trace(config)) => Ok(config.metrics.unwrap().labels),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error.kind()),
        };
        let addr = ["-p", "1", "--metrics-addr", "[::1]:9464"];
        assert_eq!(
            labels(&[&addr[..], &["--metrics-labels", "pod,container,pod"]].concat()),
            Ok(WorkloadLabels(vec![
                WorkloadLabel::Container,
                WorkloadLabel::Pod
            ]))
        );
        assert_eq!(
            labels(&[&addr[..], &["--metrics-labels", "deployment"]].concat()),
            Err(ErrorKind::InvalidValue)
        );
        assert_eq!(
            labels(&["-p", "1", "--metrics-labels", "pod"]),
            Err(ErrorKind::MissingRequiredArgument)
        );
        // tracer top shows the programs' cost in its header: no metrics needed.
        match parse(&["top", "-p", "1", "--bpf-stats"]).unwrap().resolve() {
            Invocation::Top(config) => assert!(config.bpf_stats && config.metrics.is_none()),
            other => panic!("{other:?}"),
        }
    }

    /// What the stages are told: the command line, resolved at the edge.
    #[test]
    fn the_command_line_resolves_into_each_stage_configuration() {
        let invocation = parse(&[
            "-p",
            "80,8191",
            "-o",
            "t.json",
            "--rotate-size",
            "1MiB",
            "--format",
            "pretty",
            "--emit",
            "connections",
            "--max-connections",
            "9",
            "--metrics-addr",
            "127.0.0.1:9464",
        ])
        .unwrap()
        .resolve();
        assert_eq!(
            invocation,
            Invocation::Trace(TraceConfig {
                selection: Selection {
                    ports: vec![80, 8191],
                    cgroups: Vec::new(),
                    containers: Vec::new(),
                    pods: Vec::new(),
                    nets: Vec::new(),
                },
                cri: CriSocket::Auto,
                attach: AttachMode::Auto,
                tls: TlsMode::Auto,
                ring_buffer_bytes: 16 << 20,
                pipeline: PipelineConfig {
                    emit: Emit::Connections,
                    max_connections: 9,
                    keep_events: true,
                },
                output: OutputConfig {
                    format: Format::Pretty,
                    file: Some(FileOutput {
                        path: "t.json".into(),
                        rotation: Some(Rotation {
                            max_bytes: 1 << 20,
                            keep: 5
                        }),
                    }),
                },
                metrics: Some(MetricsConfig {
                    addr: "127.0.0.1:9464".parse().unwrap(),
                    labels: WorkloadLabels::default(),
                }),
                bpf_stats: false,
                otlp: None,
            })
        );
        let Invocation::Trace(defaults) = parse(&["-p", "1"]).unwrap().resolve() else {
            panic!("not a trace");
        };
        assert_eq!(
            (defaults.pipeline, defaults.output.file, defaults.metrics),
            (
                PipelineConfig {
                    emit: Emit::All,
                    max_connections: DEFAULT_MAX_CONNECTIONS,
                    keep_events: false,
                },
                None,
                None
            )
        );
        assert_eq!(
            parse(&["replay", "-", "--emit", "events"])
                .unwrap()
                .resolve(),
            Invocation::Replay {
                file: "-".into(),
                pipeline: PipelineConfig {
                    emit: Emit::Events,
                    max_connections: DEFAULT_MAX_CONNECTIONS,
                    keep_events: false,
                },
                format: Format::Json,
            }
        );
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
