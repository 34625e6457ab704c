//! The attach plan: for each hook (state changes, keepalive, resets, retransmits), which
//! mechanism carries it on this kernel, then loading and attaching those programs.
//!
//! `--attach auto` tries each hook's mechanisms in a fixed order and keeps the first that
//! loads and attaches:
//! - state changes: tracepoint (`sock:inet_sock_set_state`, a stable ABI), then fentry,
//!   then kprobe (on `inet_sk_state_store` and `inet_sk_set_state`, the functions that
//!   fire the tracepoint);
//! - keepalive: fentry/fexit, then kprobe/kretprobe on `tcp_keepalive_timer`, then the
//!   `timer:timer_expire_entry`/`exit` tracepoints (they fire for every timer in the
//!   system, so they are the fallback);
//! - resets and retransmits: their `tcp:` tracepoints, the only mechanism they have.
//!
//! A forced mode (`--attach kprobe`) uses that mechanism for every hook that has it and
//! the tracepoint for the others; if the kernel cannot do it, that is an error naming
//! what is missing.
//!
//! The tracepoints that fire for all traffic (state changes, sends and receives,
//! softirqs, timers) are attached raw: the program gets the tracepoint's arguments, and
//! the kernel formats no record for it. Their arguments are checked against the kernel's
//! BTF (`btf_trace_<name>`) first. The reset and retransmit tracepoints fire only for
//! resets and retransmits, and their records carry the connection's ends even when no
//! socket does, so they stay classic, read at the offsets tracefs gives.

use std::{cell::OnceCell, collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfError, EbpfLoader,
    maps::{MapData, MapError, PerCpuArray, RingBuf},
    programs::{FEntry, FExit, KProbe, ProgramFd, RawTracePoint, TracePoint},
};
use serde::Serialize;
use tracer_common::{
    EMIT_COUNTS_MAP, EVENTS_MAP, EmitCounts, KernelLayout, PortFilter, RingConfig, TimerLayout,
    TracepointLayout, globals,
};

use crate::kernel::{
    btf::KernelBtf,
    layout::{kernel_layout, timer_layout, tracepoint_layout},
    preflight, privileges,
    tracefs::{self, TracepointFormat},
    units::KernelUnits,
};
use crate::vocabulary::names;

/// The eBPF object built by `build.rs`, embedded so the binary is self-contained.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// `--attach`: the best mechanism each hook has here, or one for every hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Tracepoint,
    Kprobe,
    Fentry,
}

names!(AttachMode as "attach mode" {
    Auto => "auto",
    Tracepoint => "tracepoint",
    Kprobe => "kprobe",
    Fentry => "fentry",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    StateChange,
    Keepalive,
    Reset,
    Retransmit,
    /// Data direction turns, for exchanges and idle time.
    Data,
    /// Who accepted a connection.
    Accept,
}

names!(Hook as "hook" {
    StateChange => "state_change",
    Keepalive => "keepalive",
    Reset => "reset",
    Retransmit => "retransmit",
    Data => "data",
    Accept => "accept",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Tracepoint,
    Kprobe,
    Fentry,
}

names!(Mechanism as "attach mechanism" {
    Tracepoint => "tracepoint",
    Kprobe => "kprobe",
    Fentry => "fentry",
});

/// One program of the eBPF object and where it attaches.
#[derive(Clone, Copy, Debug)]
enum Program {
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint.
    RawTracepoint {
        program: &'static str,
        name: &'static str,
    },
    Kprobe {
        program: &'static str,
        function: &'static str,
    },
    FEntry {
        program: &'static str,
        function: &'static str,
    },
    FExit {
        program: &'static str,
        function: &'static str,
    },
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Self::RawTracepoint { program, .. }
            | Self::Tracepoint { program, .. }
            | Self::Kprobe { program, .. }
            | Self::FEntry { program, .. }
            | Self::FExit { program, .. } => program,
        }
    }
}

const fn tp(program: &'static str, category: &'static str) -> Program {
    Program::Tracepoint {
        program,
        category,
        name: program,
    }
}

const fn raw(name: &'static str) -> Program {
    Program::RawTracepoint {
        program: name,
        name,
    }
}

const SOFTIRQ_TRACKING: &[Program] = &[raw("softirq_entry"), raw("softirq_exit")];

/// The raw tracepoints and the leading arguments their programs read, as the kernel's
/// BTF declares them (qualifiers aside).
const RAW_ARGUMENTS: &[(&str, &[&str])] = &[
    ("softirq_entry", &[]),
    ("softirq_exit", &[]),
    ("inet_sock_set_state", &["struct sock *", "int", "int"]),
    ("sock_send_length", &["struct sock *", "int"]),
    ("sock_recv_length", &["struct sock *", "int"]),
    ("tcp_probe", &["struct sock *", "struct sk_buff *"]),
    ("timer_expire_entry", &["struct timer_list *"]),
    ("timer_expire_exit", &["struct timer_list *"]),
];

impl Hook {
    /// `--attach auto`'s order of preference (see the module docs for why).
    pub fn preference(self) -> &'static [Mechanism] {
        use Mechanism::*;
        match self {
            Hook::StateChange => &[Tracepoint, Fentry, Kprobe],
            Hook::Keepalive => &[Fentry, Kprobe, Tracepoint],
            Hook::Reset | Hook::Retransmit => &[Tracepoint],
            Hook::Data => &[Tracepoint, Fentry, Kprobe],
            Hook::Accept => &[Kprobe],
        }
    }

    /// The mechanisms to try for this hook in `mode`.
    /// The mechanisms to try for this hook in `mode`: a forced mechanism where the hook
    /// has it, else the tracepoint where it has one (the stable baseline a forced mode
    /// never avoids), else none.
    pub fn candidates(self, mode: AttachMode) -> Vec<Mechanism> {
        let forced = match mode {
            AttachMode::Auto => return self.preference().to_vec(),
            AttachMode::Tracepoint => Mechanism::Tracepoint,
            AttachMode::Kprobe => Mechanism::Kprobe,
            AttachMode::Fentry => Mechanism::Fentry,
        };
        [forced, Mechanism::Tracepoint]
            .into_iter()
            .find(|mechanism| self.preference().contains(mechanism))
            .into_iter()
            .collect()
    }

    /// Whether tracing refuses to start without this hook: state changes always; in a
    /// forced mode also the keepalive timer, whose mechanisms are what forcing is for.
    pub fn required(self, mode: AttachMode) -> bool {
        self == Hook::StateChange || (self == Hook::Keepalive && mode != AttachMode::Auto)
    }

    fn programs(self, mechanism: Mechanism) -> &'static [Program] {
        use Mechanism::*;
        match (self, mechanism) {
            (Hook::StateChange, Tracepoint) => STATE_CHANGE_TRACEPOINT,
            (Hook::StateChange, Kprobe) => STATE_CHANGE_KPROBE,
            (Hook::StateChange, Fentry) => STATE_CHANGE_FENTRY,
            (Hook::Keepalive, Tracepoint) => KEEPALIVE_TRACEPOINT,
            (Hook::Keepalive, Kprobe) => KEEPALIVE_KPROBE,
            (Hook::Keepalive, Fentry) => KEEPALIVE_FENTRY,
            (Hook::Reset, _) => RESET_TRACEPOINT,
            (Hook::Retransmit, _) => RETRANSMIT_TRACEPOINT,
            (Hook::Data, Tracepoint) => DATA_TRACEPOINT,
            (Hook::Data, Kprobe) => DATA_KPROBE,
            (Hook::Data, Fentry) => DATA_FENTRY,
            (Hook::Accept, _) => ACCEPT_KPROBE,
        }
    }
}

/// The state changes, and those the first misses, attached in this order: the kernel runs
/// a tracepoint's programs in the order they were attached (see the eBPF side).
const STATE_CHANGE_TRACEPOINT: &[Program] = &[
    raw("inet_sock_set_state"),
    Program::RawTracepoint {
        program: "inet_sock_set_state_nested",
        name: "inet_sock_set_state",
    },
];
const STATE_CHANGE_KPROBE: &[Program] = &[
    Program::Kprobe {
        program: "inet_sk_state_store_kprobe",
        function: "inet_sk_state_store",
    },
    Program::Kprobe {
        program: "inet_sk_set_state_kprobe",
        function: "inet_sk_set_state",
    },
];
const STATE_CHANGE_FENTRY: &[Program] = &[
    Program::FEntry {
        program: "inet_sk_state_store_fentry",
        function: "inet_sk_state_store",
    },
    Program::FEntry {
        program: "inet_sk_set_state_fentry",
        function: "inet_sk_set_state",
    },
];
const KEEPALIVE_TRACEPOINT: &[Program] = &[raw("timer_expire_entry"), raw("timer_expire_exit")];
const KEEPALIVE_KPROBE: &[Program] = &[
    Program::Kprobe {
        program: "tcp_keepalive_timer_kprobe",
        function: "tcp_keepalive_timer",
    },
    Program::Kprobe {
        program: "tcp_keepalive_timer_kretprobe",
        function: "tcp_keepalive_timer",
    },
];
const KEEPALIVE_FENTRY: &[Program] = &[
    Program::FEntry {
        program: "tcp_keepalive_timer_fentry",
        function: "tcp_keepalive_timer",
    },
    Program::FExit {
        program: "tcp_keepalive_timer_fexit",
        function: "tcp_keepalive_timer",
    },
];
const RESET_TRACEPOINT: &[Program] = &[tp("tcp_send_reset", "tcp"), tp("tcp_receive_reset", "tcp")];
const RETRANSMIT_TRACEPOINT: &[Program] = &[
    tp("tcp_retransmit_skb", "tcp"),
    tp("tcp_retransmit_synack", "tcp"),
];

/// Every data mechanism also watches arrivals at `tcp:tcp_probe` (see the eBPF side).
const DATA_TRACEPOINT: &[Program] = &[
    raw("sock_send_length"),
    raw("sock_recv_length"),
    raw("tcp_probe"),
];
const DATA_KPROBE: &[Program] = &[
    Program::Kprobe {
        program: "tcp_sendmsg_kprobe",
        function: "tcp_sendmsg",
    },
    Program::Kprobe {
        program: "tcp_cleanup_rbuf_kprobe",
        function: "tcp_cleanup_rbuf",
    },
    raw("tcp_probe"),
];
const DATA_FENTRY: &[Program] = &[
    Program::FEntry {
        program: "tcp_sendmsg_fentry",
        function: "tcp_sendmsg",
    },
    Program::FEntry {
        program: "tcp_cleanup_rbuf_fentry",
        function: "tcp_cleanup_rbuf",
    },
    raw("tcp_probe"),
];
const ACCEPT_KPROBE: &[Program] = &[Program::Kprobe {
    program: "inet_csk_accept_kretprobe",
    function: "inet_csk_accept",
}];

/// How each hook is attached, and why the ones that are not could not be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttachPlan {
    pub attach: BTreeMap<Hook, Mechanism>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unsupported: BTreeMap<Hook, String>,
}

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

fn describe(error: anyhow::Error) -> String {
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

    fn fentry_btf(&self) -> Result<&Btf, String> {
        self.fentry_btf
            .get_or_init(|| Btf::from_sys_fs().map_err(|e| describe(e.into())))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn tracepoint(&self, global: &str) -> Result<TracepointLayout, String> {
        self.tracepoints[global].clone()
    }

    /// Why these raw tracepoints cannot be attached, if they cannot.
    fn raw_missing(&self, programs: &[Program]) -> Option<String> {
        programs.iter().find_map(|program| match program {
            Program::RawTracepoint { name, .. } => self.raw_tracepoints[name].clone().err(),
            _ => None,
        })
    }

    /// Why `mechanism` cannot carry `hook` before even trying, if the kernel lacks
    /// something it needs.
    fn missing(&self, hook: Hook, mechanism: Mechanism) -> Option<String> {
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
        }
    }
}

fn has_kprobes(tracefs: &Path) -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
        || tracefs.join("kprobe_events").exists()
}

/// Loads the eBPF object with every layout set (placeholders for what this kernel
/// lacks: the hooks that need those are not attached).
/// What the programs are loaded with, besides what the kernel tells.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions<'a> {
    /// The traced ports.
    pub ports: &'a [u16],
    /// The ring buffer's size: a power of two, a multiple of the page size.
    pub ring_buffer_bytes: u32,
}

/// The programs wake the daemon once this fraction of the ring buffer waits to be read
/// (the daemon also drains it on a short timer).
const WAKEUP_FRACTION: u32 = 8;

fn load(facts: &KernelFacts, options: LoadOptions) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    // The programs read kernel structs at offsets resolved here (`layout`), not through
    // CO-RE relocations, so the loader needs no kernel BTF (and would parse it).
    loader.btf(None);
    let tracepoint_layouts: Vec<(&str, TracepointLayout)> = facts
        .tracepoints
        .iter()
        .map(|(global, layout)| (*global, layout.clone().unwrap_or(TracepointLayout::ABSENT)))
        .collect();
    for (global, layout) in &tracepoint_layouts {
        loader.override_global(global, layout, true);
    }
    let kernel = facts.kernel.clone().unwrap_or_default();
    loader.override_global(globals::KERNEL, &kernel, true);
    let timer = facts.timer.clone().unwrap_or_default();
    loader.override_global(globals::TIMER, &timer, true);
    let filter = PortFilter::with_ports(options.ports);
    loader.override_global(globals::PORT_FILTER, &filter, true);
    let ring = RingConfig {
        wakeup_bytes: u64::from(options.ring_buffer_bytes / WAKEUP_FRACTION),
    };
    loader.override_global(globals::RING, &ring, true);
    loader.map_max_entries(EVENTS_MAP, options.ring_buffer_bytes);
    loader.load(EBPF_OBJECT).map_err(|error| {
        let map_refused = matches!(
            &error,
            EbpfError::MapError(MapError::CreateError { io_error, .. })
                if io_error.kind() == std::io::ErrorKind::PermissionDenied
        );
        let error = anyhow!(error).context("the kernel refused the eBPF object");
        match privileges::memlock_hint().filter(|_| map_refused) {
            Some(hint) => error.context(hint),
            None => error,
        }
    })
}

fn attach_program(ebpf: &mut Ebpf, btf: Option<&Btf>, program: Program) -> Result<()> {
    let name = program.name();
    let loaded = ebpf
        .program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?;
    let no_btf = || anyhow!("fentry needs the kernel's BTF");
    match program {
        Program::RawTracepoint { name, .. } => {
            let tracepoint: &mut RawTracePoint = loaded.try_into()?;
            tracepoint
                .load()
                .with_context(|| format!("the kernel refused the {name} program"))?;
            tracepoint
                .attach(name)
                .with_context(|| format!("cannot attach to the raw tracepoint {name}"))?;
        }
        Program::Tracepoint { category, name, .. } => {
            let tracepoint: &mut TracePoint = loaded.try_into()?;
            tracepoint
                .load()
                .with_context(|| format!("the kernel refused the {category}:{name} program"))?;
            tracepoint
                .attach(category, name)
                .with_context(|| format!("cannot attach to {category}:{name}"))?;
        }
        Program::Kprobe { function, .. } => {
            let kprobe: &mut KProbe = loaded.try_into()?;
            kprobe
                .load()
                .with_context(|| format!("the kernel refused the {name} program"))?;
            kprobe
                .attach(function, 0)
                .with_context(|| format!("cannot attach a kprobe to {function}"))?;
        }
        Program::FEntry { function, .. } => {
            let fentry: &mut FEntry = loaded.try_into()?;
            fentry
                .load(function, btf.ok_or_else(no_btf)?)
                .with_context(|| format!("the kernel refused the fentry program for {function}"))?;
            fentry
                .attach()
                .with_context(|| format!("cannot attach fentry to {function}"))?;
        }
        Program::FExit { function, .. } => {
            let fexit: &mut FExit = loaded.try_into()?;
            fexit
                .load(function, btf.ok_or_else(no_btf)?)
                .with_context(|| format!("the kernel refused the fexit program for {function}"))?;
            fexit
                .attach()
                .with_context(|| format!("cannot attach fexit to {function}"))?;
        }
    }
    Ok(())
}

/// Attaches every program of `hook` by `mechanism`, or none of them.
fn attach_hook(
    ebpf: &mut Ebpf,
    facts: &KernelFacts,
    hook: Hook,
    mechanism: Mechanism,
) -> Result<(), String> {
    if let Some(why) = facts.missing(hook, mechanism) {
        return Err(why);
    }
    let btf = match mechanism {
        Mechanism::Fentry => facts.fentry_btf().ok(),
        Mechanism::Tracepoint | Mechanism::Kprobe => None,
    };
    let result = hook
        .programs(mechanism)
        .iter()
        .try_for_each(|&program| attach_program(ebpf, btf, program));
    if let Err(error) = result {
        detach_hook(ebpf, hook, mechanism);
        return Err(describe(error));
    }
    Ok(())
}

/// Unloads `program` (which detaches it), if it was loaded.
fn unload_program(ebpf: &mut Ebpf, program: Program) -> Result<()> {
    let loaded = ebpf
        .program_mut(program.name())
        .context("no such program")?;
    match program {
        Program::Tracepoint { .. } => <&mut TracePoint>::try_from(loaded)?.unload()?,
        Program::RawTracepoint { .. } => <&mut RawTracePoint>::try_from(loaded)?.unload()?,
        Program::Kprobe { .. } => <&mut KProbe>::try_from(loaded)?.unload()?,
        Program::FEntry { .. } => <&mut FEntry>::try_from(loaded)?.unload()?,
        Program::FExit { .. } => <&mut FExit>::try_from(loaded)?.unload()?,
    }
    Ok(())
}

fn detach_hook(ebpf: &mut Ebpf, hook: Hook, mechanism: Mechanism) {
    for &program in hook.programs(mechanism) {
        // A program that never loaded has nothing to unload.
        let _ = unload_program(ebpf, program);
    }
}

/// Whether the kernel's recursion misses of `program` are lost events. Not for the two
/// state-change programs on the tracepoint: each takes what the other misses.
pub fn misses_are_lost_events(program: &str) -> bool {
    !STATE_CHANGE_TRACEPOINT.iter().any(|p| p.name() == program)
}

/// The programs, loaded and attached, and the maps the daemon reads. Dropping it detaches
/// everything.
pub struct Probes {
    pub events: RingBuf<MapData>,
    /// Events the programs sent and lost, per CPU.
    pub counts: PerCpuArray<MapData, EmitCounts>,
    /// The attached programs by name, each with a file descriptor of its own, so their
    /// kernel counts stay readable after `ebpf` is dropped (which detaches them).
    pub programs: Vec<(&'static str, ProgramFd)>,
    pub plan: AttachPlan,
    pub units: KernelUnits,
    /// Keeps the programs attached while it lives.
    pub ebpf: Ebpf,
}

/// Loads the programs, sets the port filter and attaches each hook as `mode` says. The
/// state-change hook is required; another hook this kernel cannot carry in auto mode is
/// reported in the plan's `unsupported`.
pub fn attach(mode: AttachMode, options: LoadOptions) -> Result<Probes> {
    let facts = KernelFacts::gather()?;
    let mut ebpf = load(&facts, options)?;
    // Before any hook, so the first events already know their context.
    for &program in SOFTIRQ_TRACKING {
        attach_program(&mut ebpf, None, program)?;
    }

    let mut plan = AttachPlan::default();
    for &hook in Hook::ALL {
        let mut why_not = Vec::new();
        for mechanism in hook.candidates(mode) {
            match attach_hook(&mut ebpf, &facts, hook, mechanism) {
                Ok(()) => {
                    plan.attach.insert(hook, mechanism);
                    break;
                }
                Err(why) => why_not.push(format!("{mechanism}: {why}")),
            }
        }
        if plan.attach.contains_key(&hook) {
            continue;
        }
        let why_not = if why_not.is_empty() {
            format!("it has no {mode} mechanism")
        } else {
            why_not.join("; ")
        };
        match (hook.required(mode), mode) {
            (true, AttachMode::Auto) => {
                bail!("cannot attach the {hook} hook on this kernel ({why_not})")
            }
            (true, _) => bail!("--attach {mode}: cannot attach the {hook} hook ({why_not})"),
            (false, _) => {
                plan.unsupported.insert(hook, why_not);
            }
        }
    }

    let events = RingBuf::try_from(
        ebpf.take_map(EVENTS_MAP)
            .context("the eBPF object has no ring buffer")?,
    )?;
    let counts = PerCpuArray::try_from(
        ebpf.take_map(EMIT_COUNTS_MAP)
            .context("the eBPF object has no event counters")?,
    )?;
    let attached = plan
        .attach
        .iter()
        .flat_map(|(hook, mechanism)| hook.programs(*mechanism))
        .chain(SOFTIRQ_TRACKING);
    let programs = attached
        .map(|program| {
            let name = program.name();
            let fd = ebpf
                .program(name)
                .with_context(|| format!("the eBPF object has no program {name}"))?
                .fd()?
                .try_clone()
                .with_context(|| format!("cannot keep the {name} program open"))?;
            Ok((name, fd))
        })
        .collect::<Result<_>>()?;
    Ok(Probes {
        events,
        counts,
        programs,
        plan,
        units: facts.units,
        ebpf,
    })
}

/// Whether a mechanism can carry a hook here, or why not.
pub type Availability = (Mechanism, Result<(), String>);

/// For `tracer check`: whether each mechanism of each hook loads and attaches here,
/// trying each one and detaching it again.
pub fn probe_all() -> Result<BTreeMap<Hook, Vec<Availability>>> {
    let facts = KernelFacts::gather()?;
    let options = LoadOptions {
        ports: &[],
        ring_buffer_bytes: 4096,
    };
    let mut ebpf = load(&facts, options)?;
    let mut report = BTreeMap::new();
    for &hook in Hook::ALL {
        let results = hook
            .preference()
            .iter()
            .map(|&mechanism| {
                let result = attach_hook(&mut ebpf, &facts, hook, mechanism);
                detach_hook(&mut ebpf, hook, mechanism);
                (mechanism, result)
            })
            .collect();
        report.insert(hook, results);
    }
    Ok(report)
}
