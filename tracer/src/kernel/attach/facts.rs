//! What the running kernel offers the programs, gathered once before anything loads, so
//! that a hook whose mechanism cannot work here is refused with a reason instead of a
//! verifier error.

use std::{cell::OnceCell, collections::BTreeMap, path::Path};

use anyhow::{Result, bail};
use aya::Btf;
use tracer_common::{KernelLayout, TimerLayout, TracepointLayout, globals};

use super::catalogue::{Hook, Mechanism, Program, RAW_ARGUMENTS};
use crate::kernel::{
    btf::KernelBtf,
    layout::{kernel_layout, timer_layout, tracepoint_layout},
    preflight,
    tracefs::{self, TracepointFormat},
    units::KernelUnits,
};

/// What the running kernel offers the programs: layouts, BTF, symbol addresses. Each is
/// a result, so a hook that does not need a missing piece still attaches.
pub struct KernelFacts {
    /// For the decoder: HZ and reset reason names.
    pub units: KernelUnits,
    pub kernel: Result<KernelLayout, String>,
    pub tracepoints: BTreeMap<&'static str, Result<TracepointLayout, String>>,
    /// Whether each raw tracepoint exists with the arguments its program reads.
    raw_tracepoints: BTreeMap<&'static str, Result<(), String>>,
    pub timer: Result<TimerLayout, String>,
    /// aya's parse of the kernel's BTF, which only fentry programs need: made on first
    /// use, since it takes tens of milliseconds natively and most of a second in an
    /// emulated guest.
    fentry_btf: OnceCell<Result<Btf, String>>,
    tracefs: std::path::PathBuf,
}

/// The layout global of each classic TCP tracepoint, with the fields its program needs.
const TCP_TRACEPOINTS: &[(&str, &str, &str, &[&str])] = &[
    (globals::SEND_RESET, "tcp", "tcp_send_reset", &["endpoints"]),
    (
        globals::RECEIVE_RESET,
        "tcp",
        "tcp_receive_reset",
        &["skaddr", "endpoints"],
    ),
    (
        globals::RETRANSMIT_SKB,
        "tcp",
        "tcp_retransmit_skb",
        &["skaddr", "endpoints"],
    ),
    (
        globals::RETRANSMIT_SYNACK,
        "tcp",
        "tcp_retransmit_synack",
        &["req", "endpoints"],
    ),
];

/// An error as one line with its causes, as the attach plan reports it.
pub(super) fn describe(error: anyhow::Error) -> String {
    format!("{error:#}")
}

/// Whether the kernel's `tracepoint` takes `expected` as its first arguments.
fn check_raw_arguments(btf: &KernelBtf, tracepoint: &str, expected: &[&str]) -> Result<()> {
    let arguments = btf.tracepoint_args(tracepoint)?;
    if arguments.len() < expected.len()
        || arguments
            .iter()
            .zip(expected)
            .any(|(found, wanted)| found != wanted)
    {
        bail!(
            "the {tracepoint} tracepoint takes ({}) on this kernel, tracer reads ({})",
            arguments.join(", "),
            expected.join(", ")
        );
    }
    Ok(())
}

impl KernelFacts {
    pub fn gather() -> Result<Self> {
        let tracefs = tracefs::root()?;
        let tracepoints = TCP_TRACEPOINTS
            .iter()
            .map(|&(global, category, name, required)| {
                let layout = TracepointFormat::read(&tracefs, category, name)
                    .and_then(|format| {
                        tracepoint_layout(&format!("{category}:{name}"), &format, required)
                    })
                    .map_err(describe);
                (global, layout)
            })
            .collect();
        let kernel_btf = KernelBtf::from_sys_fs();
        let kernel = match &kernel_btf {
            Ok(btf) => kernel_layout(btf).map_err(describe),
            Err(error) => Err(format!("{error:#}")),
        };
        let raw_tracepoints = RAW_ARGUMENTS
            .iter()
            .map(|&(name, expected)| {
                let available = match &kernel_btf {
                    Ok(btf) => check_raw_arguments(btf, name, expected).map_err(describe),
                    Err(error) => Err(format!("{error:#}")),
                };
                (name, available)
            })
            .collect();
        let units = KernelUnits::read(kernel_btf.as_ref().ok(), &preflight::kernel_release());
        Ok(Self {
            units,
            kernel,
            tracepoints,
            raw_tracepoints,
            timer: timer_layout().map_err(describe),
            fentry_btf: OnceCell::new(),
            tracefs,
        })
    }

    pub(super) fn fentry_btf(&self) -> Result<&Btf, String> {
        self.fentry_btf
            .get_or_init(|| Btf::from_sys_fs().map_err(|e| describe(e.into())))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn tracepoint(&self, global: &str) -> Result<TracepointLayout, String> {
        self.tracepoints
            .get(global)
            .cloned()
            .unwrap_or_else(|| Err(format!("tracer reads no tracepoint for {global}")))
    }

    /// Why these raw tracepoints cannot be attached, if they cannot.
    fn raw_missing(&self, programs: &[Program]) -> Option<String> {
        programs.iter().find_map(|program| match program {
            Program::RawTracepoint { name, .. } => match self.raw_tracepoints.get(name) {
                Some(available) => available.clone().err(),
                None => Some(format!("tracer does not check the raw tracepoint {name}")),
            },
            _ => None,
        })
    }

    /// Why `mechanism` cannot carry `hook` before even trying, if the kernel lacks
    /// something it needs.
    pub(super) fn missing(&self, hook: Hook, mechanism: Mechanism) -> Option<String> {
        // Only the classic tracepoints, whose records carry the connection's ends, do
        // without BTF offsets.
        let needs_kernel_layout = !matches!(
            (hook, mechanism),
            (Hook::Reset | Hook::Retransmit, Mechanism::Tracepoint)
        );
        if needs_kernel_layout && let Err(why) = &self.kernel {
            return Some(why.clone());
        }
        if let Some(why) = self.raw_missing(hook.programs(mechanism)) {
            return Some(why);
        }
        match (hook, mechanism) {
            (Hook::Keepalive, Mechanism::Tracepoint) => self.timer.as_ref().err().cloned(),
            (Hook::StateChange | Hook::Data, Mechanism::Tracepoint) => None,
            (Hook::Reset, _) => self
                .tracepoint(globals::SEND_RESET)
                .and(self.tracepoint(globals::RECEIVE_RESET))
                .err(),
            (Hook::Retransmit, _) => self
                .tracepoint(globals::RETRANSMIT_SKB)
                .and(self.tracepoint(globals::RETRANSMIT_SYNACK))
                .err(),
            (_, Mechanism::Kprobe) => (!has_kprobes(&self.tracefs)).then(|| {
                "this kernel has no kprobes (no kprobe PMU and no kprobe_events)".to_owned()
            }),
            (_, Mechanism::Fentry) => self.fentry_btf().err(),
            (Hook::Accept, Mechanism::Tracepoint) => {
                Some("no tracepoint fires on accept".to_owned())
            }
            (Hook::Timewait, Mechanism::Tracepoint) => {
                Some("no tracepoint reports timewait sockets".to_owned())
            }
        }
    }
}

fn has_kprobes(tracefs: &Path) -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
        || tracefs.join("kprobe_events").exists()
}
