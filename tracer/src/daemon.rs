//! `tracer --port N`: attach, drop every capability, then move every ring buffer record
//! through decode, the correlator and the sink until SIGINT or SIGTERM, then drain what
//! is left and exit. SIGHUP reopens the output file (logrotate) and keeps tracing.

use std::{collections::BTreeMap, io, os::fd::AsRawFd, time::Duration};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::TraceArgs,
    clock::{self, WallClock},
    event::TraceEvent,
    kernel::{
        attach::{self, Hook, Probes},
        preflight, privileges,
    },
    output::{
        self, Sink,
        file::{LogFile, ReopenRequest},
    },
    pipeline::{
        Pipeline,
        decode::Decoder,
        existing,
        reader::{LossCounter, drain},
    },
};

/// How often the loss counter is read, the wall-clock offset resampled and finished
/// connections written out.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

type LivePipeline = Pipeline<Box<dyn Sink>>;

/// Decodes every waiting record into the pipeline; undecodable ones are counted by reason
/// and reported after the batch.
fn drain_ring(
    pipeline: &mut LivePipeline,
    decoder: &Decoder,
    ring: &mut RingBuf<MapData>,
) -> io::Result<()> {
    let mut result = Ok(());
    let mut undecodable: BTreeMap<String, u64> = BTreeMap::new();
    drain(ring, |record| {
        if result.is_err() {
            return;
        }
        match decoder.decode(record) {
            Ok(event) => result = pipeline.event(&event),
            Err(error) => *undecodable.entry(error.to_string()).or_default() += 1,
        }
    });
    result?;
    for (reason, count) in undecodable {
        pipeline.sink.undecodable(count, &reason)?;
    }
    pipeline.sink.flush()
}

fn report_lost(pipeline: &mut LivePipeline, losses: &mut LossCounter) -> Result<()> {
    let lost = losses.take_new()?;
    if lost > 0 {
        pipeline.sink.lost(lost)?;
    }
    Ok(())
}

/// Registers a map's file descriptor with tokio to await readability.
fn watch<T: AsRawFd>(map: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `map` owns its file descriptor, and AsyncFd owns `map` until it is dropped,
    // so the descriptor stays open and unreplaced while registered.
    unsafe { AsyncFd::register_with_interest(map, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Connections open before tracing started become records too. Without sock_diag their
/// later events are reported as events but form no record, which is worth a warning, not
/// a refusal to trace.
fn read_existing(pipeline: &mut LivePipeline, ports: &[u16]) -> io::Result<()> {
    match existing::connections(ports, clock::boot_now_ns()) {
        Ok(connections) => {
            for connection in connections {
                pipeline.event(&TraceEvent::Existing(connection))?;
            }
        }
        Err(error) => eprintln!(
            "tracer: warning: cannot read the connections already open ({error:#}): they will have no connection record"
        ),
    }
    Ok(())
}

pub async fn run(args: TraceArgs) -> Result<()> {
    let ports = args.ports();
    let reopen = ReopenRequest::default();
    let file = (args.output.as_deref())
        .map(|path| LogFile::open(path, args.rotation(), reopen.clone()))
        .transpose()?;
    let sink = output::open(file, args.show.format);
    privileges::check_can_attach()?;
    let kernel = preflight::kernel_release();
    let version = preflight::check_kernel(&kernel)?;

    let Probes {
        events,
        lost,
        plan,
        units,
        ebpf: _attached,
    } = attach::attach(args.attach, &ports)?;
    privileges::drop_all(version)?;
    let decoder = Decoder::new(units);
    let mut losses = LossCounter::new(lost);
    let mut ring = watch(events)?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);

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
    eprintln!(
        "tracer: tracing TCP port(s) {} on kernel {kernel} ({})",
        port_list.join(", "),
        hooks.join(", ")
    );
    for (hook, why) in &plan.unsupported {
        eprintln!("tracer: warning: no {hook} events on this kernel ({why})");
    }
    let data_turns = plan.attach.contains_key(&Hook::Data);
    let mut pipeline = Pipeline::new(&args.show, data_turns, sink, WallClock::sample());
    pipeline.sink.tracer_start(&kernel, &plan, &ports)?;
    read_existing(&mut pipeline, &ports)?;
    pipeline.sink.flush()?;

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain_ring(&mut pipeline, &decoder, guard.get_inner_mut())?;
                guard.clear_ready();
            }
            _ = housekeeping.tick() => {
                pipeline.clock = WallClock::sample();
                report_lost(&mut pipeline, &mut losses)?;
                pipeline.reap(clock::boot_now_ns())?;
                pipeline.sink.flush()?;
            }
            _ = sighup.recv() => {
                reopen.request();
                pipeline.sink.flush()?;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    drain_ring(&mut pipeline, &decoder, ring.get_mut())?;
    report_lost(&mut pipeline, &mut losses)?;
    Ok(pipeline.finish()?)
}
