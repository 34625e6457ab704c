//! `tracer --port N`: attach, drop every capability, then move every ring buffer record
//! through decode, the correlator and the sink until SIGINT or SIGTERM; then detach, drain
//! what is left and exit with the kernel's count of what it sent. SIGHUP reopens the
//! output file (logrotate) and keeps tracing; under `tracer top` it is the terminal
//! hanging up, and ends tracing as SIGTERM does.
//!
//! The programs wake the daemon only when a batch waits (see `tracer-ebpf`'s output), so
//! it also drains on a short timer: that bounds how late a line can be. Each batch ends
//! with one flush of the output.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    time::MissedTickBehavior,
};

use crate::{
    clock::{self, WallClock},
    event::{Existing, TcpState, TraceEvent},
    kernel::{
        attach::{self, AttachMode, Hook, LoadOptions, Probes, TlsMode},
        preflight, privileges,
        program_stats::{self, Programs},
        selector::{CgroupRule, Selection},
        sysctl,
    },
    output::{
        self, OutputConfig, Sink, StopSummary,
        exporter::{self, Exporters},
        file::{LogFile, ReopenRequest},
        metrics::{Metrics, MetricsConfig},
        otlp::{self, OtlpConfig, logs::OtlpLogs, metrics::OtlpMetrics},
        route,
    },
    pipeline::{
        Pipeline, PipelineConfig, Traced,
        decode::Decoder,
        existing,
        reader::{EmitCounter, EventCounts, LossCause, drain},
        sock_diag,
        workload::{
            CgroupPaths,
            cgroups::{cgroup2_mount, process_cgroup, within},
            cri::{Cri, CriNames, CriSocket},
        },
    },
};

/// A live trace, as the command line asked for it (resolved by `cli`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// Which connections are traced.
    pub selection: Selection,
    pub attach: AttachMode,
    /// Whether TLS libraries are hooked.
    pub tls: TlsMode,
    /// The kernel's ring buffer: a power of two, a multiple of the page size.
    pub ring_buffer_bytes: u32,
    pub pipeline: PipelineConfig,
    pub output: OutputConfig,
    pub metrics: Option<MetricsConfig>,
    /// Turn the kernel's BPF statistics on while tracing, for the programs' run time.
    pub bpf_stats: bool,
    /// Send the connection records to an OpenTelemetry collector too.
    pub otlp: Option<OtlpConfig>,
    /// The container runtime asked for workload names and pods.
    pub cri: CriSocket,
}

/// How often the wall-clock offset is resampled, losses reported and finished
/// connections written out.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

/// How long the exporters have at exit to send what they were given.
const EXPORTER_DEADLINE: Duration = Duration::from_secs(5);

/// The longest an event waits in the ring buffer before the daemon reads it.
const DRAIN_PERIOD: Duration = Duration::from_millis(50);

type LivePipeline = Pipeline<Box<dyn Sink>>;

/// The ring buffer, its decoder, and the counts of what came through it and what did
/// not.
struct Ring {
    ring: AsyncFd<RingBuf<MapData>>,
    decoder: Decoder,
    /// Gives the events' cgroups their paths, before the correlator sees them.
    cgroups: CgroupPaths,
    counter: EmitCounter,
    /// The attached programs: their recursion misses (lost events) and their cost.
    programs: Programs,
    received: u64,
    reported: EventCounts,
}

impl Ring {
    /// Decodes a batch of waiting records into the pipeline (see [`reader::DRAIN_BATCH`](crate::pipeline::reader::DRAIN_BATCH));
    /// undecodable ones are counted by reason and reported after the batch, which ends
    /// with one flush. Returns whether the ring was left empty.
    fn drain(&mut self, pipeline: &mut LivePipeline) -> io::Result<bool> {
        let mut result = Ok(());
        let mut undecodable: BTreeMap<String, u64> = BTreeMap::new();
        let (decoder, cgroups) = (&self.decoder, &mut self.cgroups);
        let (records, emptied) = drain(self.ring.get_mut(), |record| {
            if result.is_err() {
                return;
            }
            match decoder.decode(record) {
                Ok(events) => {
                    for mut event in events {
                        cgroups.resolve(&mut event);
                        if result.is_ok() {
                            result = pipeline.event(&event);
                        }
                    }
                }
                Err(error) => *undecodable.entry(error.to_string()).or_default() += 1,
            }
        });
        self.received += records;
        result?;
        for (reason, count) in undecodable {
            pipeline.sink.undecodable(count, &reason)?;
        }
        if records > 0 {
            pipeline.sink.flush()?;
        }
        Ok(emptied)
    }

    /// Drains until the ring is empty: at the end, when nothing more is sent.
    fn drain_all(&mut self, pipeline: &mut LivePipeline) -> io::Result<()> {
        while !self.drain(pipeline)? {}
        Ok(())
    }

    /// Reports the events lost since the last report, by cause.
    fn report_lost(&mut self, pipeline: &mut LivePipeline) -> Result<EventCounts> {
        let counts = self.counter.read()?;
        let now = EventCounts {
            sent: counts.sent,
            received: self.received,
            lost: counts.lost,
            missed: self.programs.misses(),
        };
        for (cause, count, before) in [
            (LossCause::RingBufferFull, now.lost, self.reported.lost),
            (LossCause::ProgramBusy, now.missed, self.reported.missed),
        ] {
            if count > before {
                pipeline.sink.lost(count - before, cause)?;
            }
        }
        self.reported = now;
        Ok(now)
    }
}

/// Registers a map's file descriptor with tokio to await readability.
fn watch<T: AsRawFd>(map: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `map` owns its file descriptor, and AsyncFd owns `map` until it is dropped,
    // so the descriptor stays open and unreplaced while registered.
    unsafe { AsyncFd::register_with_interest(map, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Connections open before tracing started become records too. Read once the programs
/// are attached (nothing opened in between is missed) and before the capabilities are
/// dropped (other network namespaces and processes are read with them). Without
/// sock_diag their later events are reported as events but form no record, which is
/// worth a warning, not a refusal to trace.
///
/// Each connection takes its socket's cgroup (sock_diag gives its id, 5.7+), resolved to a
/// path by `cgroups`, or else its owner's; under a cgroup rule (`selected`) only those in
/// a selected cgroup are kept. The net rule applies as in the kernel.
/// The connections open at start that the selection traces, and, with `holders`, the
/// processes holding a traced socket (in the selected cgroups, when some are).
fn open_at_start(
    selection: &Selection,
    selected: Option<&[String]>,
    cgroups: &mut CgroupPaths,
    holders: bool,
) -> (Vec<Existing>, BTreeSet<u32>) {
    match existing::connections(&selection.ports, clock::boot_now_ns(), holders) {
        Ok(open) => {
            let mut holders = open.holders;
            if let (Some(selected), Some(mount)) = (selected, cgroup2_mount()) {
                holders.retain(|&pid| {
                    process_cgroup(pid, &mount)
                        .and_then(|cgroup| cgroup.path)
                        .is_some_and(|path| within(&path, selected))
                });
            }
            for warning in &open.warnings {
                eprintln!("tracer: warning: {warning}");
            }
            let mount = cgroup2_mount();
            let mut connections = open.connections;
            // Listeners stay: the roles of the connections on their ports need them.
            connections.retain(|existing| {
                existing.state == TcpState::Listen
                    || selection.nets_select(existing.meta.local.ip(), existing.meta.remote.ip())
            });
            let now = Instant::now();
            for existing in &mut connections {
                let meta = &mut existing.meta;
                match &mut meta.cgroup {
                    Some(cgroup) => cgroup.path = cgroups.path(cgroup.id, now),
                    None => {
                        meta.cgroup = (meta.process.as_ref())
                            .zip(mount.as_deref())
                            .and_then(|(owner, mount)| process_cgroup(owner.pid, mount));
                    }
                }
            }
            if let Some(selected) = selected {
                connections.retain(|existing| {
                    let path = existing
                        .meta
                        .cgroup
                        .as_ref()
                        .and_then(|c| c.path.as_deref());
                    path.is_some_and(|path| within(path, selected))
                });
            }
            (connections, holders)
        }
        Err(error) => {
            eprintln!(
                "tracer: warning: cannot read the connections already open ({error:#}): they will have no connection record"
            );
            (Vec::new(), BTreeSet::new())
        }
    }
}

/// Traces, writing the lines where `config.output` says, until SIGINT or SIGTERM.
pub fn run(config: TraceConfig) -> Result<()> {
    let reopen = ReopenRequest::default();
    let file = (config.output.file.as_ref())
        .map(|file| LogFile::open(&file.path, file.rotation, reopen.clone()))
        .transpose()?;
    let sink = output::open(file, config.output.format);
    block_on(trace(config, sink, Hangup::Reopen(reopen)))
}

/// Traces into `sink` instead of the lines (`tracer top`'s view), until SIGINT, SIGTERM
/// or SIGHUP (its terminal gone).
pub fn run_into(config: TraceConfig, sink: Box<dyn Sink>) -> Result<()> {
    block_on(trace(config, sink, Hangup::Stop))
}

/// What SIGHUP means.
enum Hangup {
    /// Reopen the output file (logrotate renamed it).
    Reopen(ReopenRequest),
    /// Stop tracing: the terminal the view was on is gone.
    Stop,
}

/// Runs `tracing` on a runtime of its own, on this thread: the reader, its timers and its
/// signals share it.
fn block_on(tracing: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tracing)
}

async fn trace(config: TraceConfig, sink: Box<dyn Sink>, hangup: Hangup) -> Result<()> {
    let ports = &config.selection.ports;
    let (cri_names, cri_said) = match Cri::choose(&config.cri).await? {
        Some(cri) => {
            let said = format!("{} ({})", cri.socket.display(), cri.runtime);
            (Some(CriNames::spawn(cri).await?), Some(said))
        }
        None => (None, None),
    };
    let pod_uids = match (&cri_names, config.selection.pods.as_slice()) {
        (_, []) => Vec::new(),
        (Some(names), pods) => names.pod_uids(pods)?,
        (None, _) => bail!(
            "--pod needs the container runtime's CRI API to find a pod, and no CRI socket answers (--cri-socket)"
        ),
    };
    let cgroup_rule = CgroupRule::find(&config.selection, &pod_uids)?;
    privileges::check_can_attach()?;
    let kernel = preflight::kernel_release();
    let version = preflight::check_kernel(&kernel)?;
    // The exporters are made before anything is attached: a configuration they refuse
    // (a TLS file unreadable) stops tracer in one line, before it says it is tracing.
    let otlp_metrics = (config.otlp.as_ref())
        .map(|otlp| OtlpMetrics::new(otlp, &kernel))
        .transpose()?;
    let otlp_logs = (config.otlp.as_ref())
        .map(|otlp| OtlpLogs::new(otlp, &kernel))
        .transpose()?;
    let meter = otlp_metrics.as_ref().map(OtlpMetrics::meter);
    let mut metrics = match (&config.metrics, &meter) {
        (None, None) => None,
        (config, meter) => Some(Metrics::start(config.as_ref(), ports, meter.as_ref()).await?),
    };
    if let (Some(metrics), Some(otlp)) = (&metrics, &otlp_metrics) {
        metrics.watch_otlp_metrics(otlp.dropped());
    }
    let otlp_metrics = otlp_metrics.map(OtlpMetrics::spawn).transpose()?;
    let _run_stats = config
        .bpf_stats
        .then(program_stats::enable_run_stats)
        .transpose()?;

    let options = LoadOptions {
        selection: &config.selection,
        ring_buffer_bytes: config.ring_buffer_bytes,
    };
    let mut probes = attach::attach(config.attach, options)?;
    config.selection.fill_nets(&mut probes.ebpf)?;
    let mut cgroups = CgroupPaths::new(cgroup2_mount());
    if let Some(names) = cri_names {
        cgroups = cgroups.with_cri(names);
    }
    let (open_at_start, holders) = open_at_start(
        &config.selection,
        cgroup_rule.as_ref().map(CgroupRule::paths),
        &mut cgroups,
        config.tls == TlsMode::Auto,
    );
    probes.attach_tls(config.tls, &holders)?;
    let Probes {
        events,
        counts,
        programs,
        plan,
        units,
        mut ebpf,
    } = probes;
    let mut selected_cgroups = cgroup_rule.map(|rule| rule.fill(&mut ebpf)).transpose()?;
    privileges::drop_all(version)?;
    let mut ring = Ring {
        ring: watch(events)?,
        decoder: Decoder::new(units),
        cgroups,
        counter: EmitCounter::new(counts),
        programs: Programs::new(programs, attach::misses_are_lost_events),
        received: 0,
        reported: EventCounts::default(),
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);
    let mut drain_timer = tokio::time::interval(DRAIN_PERIOD);
    drain_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut time_wait_timer = tokio::time::interval(sock_diag::TIME_WAIT_PERIOD);
    time_wait_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let hooks: Vec<String> = plan
        .attach
        .iter()
        .map(|(hook, how)| format!("{hook}: {how}"))
        .chain(
            plan.unsupported
                .keys()
                .map(|hook| format!("{hook}: unsupported")),
        )
        .collect();
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let traced = match port_list.as_slice() {
        [] => "every TCP port of the selected workloads".to_owned(),
        listed => format!("TCP port(s) {}", listed.join(", ")),
    };
    eprintln!(
        "tracer: tracing {traced} on kernel {kernel} ({})",
        hooks.join(", ")
    );
    for (hook, why) in &plan.unsupported {
        eprintln!("tracer: warning: no {hook} events on this kernel ({why})");
    }
    if let Some(cri) = cri_said {
        eprintln!("tracer: container and pod names from the CRI at {cri}");
    }
    let traced = Traced {
        data_turns: plan.attach.contains_key(&Hook::Data),
        timewait_fin_timeout_ns: plan
            .attach
            .contains_key(&Hook::Timewait)
            .then(sysctl::fin_timeout_ns),
    };
    // Exporters start here, each on its own task: its sink in `queues`, its handle in
    // `exporters`.
    let mut queues = Vec::new();
    let mut exporters = Exporters::default();
    if let Some(otlp_logs) = otlp_logs {
        let (queue, handle) = exporter::spawn(otlp_logs, otlp::QUEUE)?;
        queues.push(queue);
        exporters.add(handle);
    }
    if let Some(metrics) = &metrics {
        metrics.watch_exporters(exporters.counters());
    }
    let (emit, sink) = route::route(sink, config.pipeline.emit, queues, metrics.as_ref());
    let pipeline_config = PipelineConfig {
        emit,
        ..config.pipeline
    };
    let mut pipeline = Pipeline::new(pipeline_config, traced, sink, WallClock::sample());
    pipeline.sink.tracer_start(&kernel, &plan, ports)?;
    for connection in open_at_start {
        pipeline.event(&TraceEvent::Existing(connection))?;
    }
    pipeline.sink.flush()?;

    // Records left in the ring by a full batch: read on after yielding, which lets the
    // runtime poll its driver first (signals and timers arrive through it; a task that is
    // always ready would starve them).
    let mut backlog = false;
    loop {
        tokio::select! {
            guard = ring.ring.readable_mut() => {
                guard?.clear_ready();
                backlog = !ring.drain(&mut pipeline)?;
            }
            _ = tokio::task::yield_now(), if backlog => backlog = !ring.drain(&mut pipeline)?,
            _ = drain_timer.tick() => backlog = !ring.drain(&mut pipeline)?,
            _ = housekeeping.tick() => {
                pipeline.clock = WallClock::sample();
                backlog = !ring.drain(&mut pipeline)?;
                ring.report_lost(&mut pipeline)?;
                pipeline.reap(clock::boot_now_ns())?;
                pipeline.sink.flush()?;
                pipeline.sink.program_costs(&ring.programs.costs())?;
                if let Some(metrics) = &mut metrics {
                    metrics.sample(pipeline.open_connections());
                }
                if let Some(selected) = &mut selected_cgroups {
                    selected.refresh()?;
                }
            }
            _ = time_wait_timer.tick(), if metrics.is_some() => {
                if let Some(metrics) = &mut metrics {
                    metrics.time_wait_sockets(sock_diag::time_wait_counts(ports));
                }
            }
            _ = sighup.recv() => match &hangup {
                Hangup::Reopen(reopen) => {
                    reopen.request();
                    pipeline.sink.flush()?;
                }
                Hangup::Stop => break,
            },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Detached first, so nothing is sent after the last drain and the counts add up.
    drop(ebpf);
    ring.drain_all(&mut pipeline)?;
    let counts = ring.report_lost(&mut pipeline)?;
    // The exporters get the last records before they finish, and the stop line says what
    // became of everything they were offered.
    pipeline.reap_last()?;
    let exporters = exporters.finish(EXPORTER_DEADLINE).await;
    if let Some(otlp_metrics) = otlp_metrics {
        otlp_metrics.finish(EXPORTER_DEADLINE).await;
    }
    Ok(pipeline.finish(StopSummary {
        events: Some(counts),
        exporters,
        ..StopSummary::default()
    })?)
}
