//! `tracer --port N`: attach, then move every ring buffer record through decode and the
//! sinks until SIGINT or SIGTERM, then drain what is left and exit.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    os::fd::AsRawFd,
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    attach::{self, Probes},
    cli::TraceArgs,
    clock::WallClock,
    decode::Decoder,
    json::JsonSink,
    preflight,
    reader::{LossCounter, drain},
};

/// How often the loss counter is read and the wall-clock offset resampled.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

fn open_output(args: &TraceArgs) -> Result<Box<dyn Write>> {
    Ok(match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot write to {}", path.display()))?,
        ),
        None => Box::new(io::stdout()),
    })
}

/// Decodes records and writes them out, counting the ones that cannot be decoded.
struct Pipeline<W: Write> {
    decoder: Decoder,
    sink: JsonSink<W>,
    clock: WallClock,
}

impl<W: Write> Pipeline<W> {
    fn drain(&mut self, ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> io::Result<()> {
        let mut result = Ok(());
        let mut undecodable: BTreeMap<String, u64> = BTreeMap::new();
        drain(ring, |record| {
            if result.is_err() {
                return;
            }
            match self.decoder.decode(record) {
                Ok(event) => result = self.sink.event(self.clock, &event),
                Err(error) => *undecodable.entry(error.to_string()).or_default() += 1,
            }
        });
        result?;
        for (reason, count) in undecodable {
            self.sink.undecodable(count, &reason)?;
        }
        self.sink.flush()
    }

    fn report_lost(&mut self, losses: &mut LossCounter) -> Result<()> {
        let lost = losses.take_new()?;
        if lost > 0 {
            self.sink.lost(lost)?;
            self.sink.flush()?;
        }
        Ok(())
    }
}

/// Registers a map's file descriptor with tokio to await readability.
fn watch<T: AsRawFd>(map: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `map` owns its file descriptor, and AsyncFd owns `map` until it is dropped,
    // so the descriptor stays open and unreplaced while registered.
    unsafe { AsyncFd::register_with_interest(map, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

pub async fn run(args: TraceArgs) -> Result<()> {
    let ports = args.ports();
    let out = open_output(&args)?;
    preflight::check_privileges()?;
    let kernel = preflight::kernel_release();
    preflight::check_kernel(&kernel)?;

    let Probes {
        events,
        lost,
        logger,
        plan,
        units,
        ebpf: _attached,
    } = attach::attach(args.attach, &ports)?;
    let mut losses = LossCounter::new(lost);
    let mut ring = watch(events)?;
    let mut logger = logger.map(watch).transpose()?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);

    let plan_text: Vec<String> = plan
        .attach
        .iter()
        .map(|(hook, how)| format!("{hook}: {how}"))
        .chain(
            plan.unsupported
                .keys()
                .map(|hook| format!("{hook}: unsupported")),
        )
        .collect();
    eprintln!(
        "tracer: tracing TCP port(s) {} on kernel {kernel} ({})",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        plan_text.join(", ")
    );
    for (hook, why) in &plan.unsupported {
        eprintln!("tracer: warning: no {hook} events on this kernel ({why})");
    }
    let mut pipeline = Pipeline {
        decoder: Decoder::new(units),
        sink: JsonSink::new(BufWriter::new(out)),
        clock: WallClock::sample(),
    };
    pipeline.sink.tracer_start(&kernel, &plan, &ports)?;
    pipeline.sink.flush()?;

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                pipeline.drain(guard.get_inner_mut())?;
                guard.clear_ready();
            }
            guard = async {
                match logger.as_mut() {
                    Some(logger) => logger.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                let mut guard = guard?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = housekeeping.tick() => {
                pipeline.clock = WallClock::sample();
                pipeline.report_lost(&mut losses)?;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    pipeline.drain(ring.get_mut())?;
    pipeline.report_lost(&mut losses)
}
