//! Attaching each hook by the first of its mechanisms that loads and attaches here, all of
//! a mechanism's programs or none, and reporting why the others could not. A forced mode
//! (`--attach kprobe`) uses that mechanism for every hook that has it and the tracepoint
//! for the others; if the kernel cannot do it, that is an error naming what is missing.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{FEntry, FExit, KProbe, ProgramError, ProgramFd, RawTracePoint, TracePoint},
};
use serde::Serialize;
use tracer_common::{EMIT_COUNTS_MAP, EVENTS_MAP, EmitCounts, MIN_RING_BYTES};

use super::{
    catalogue::{AttachMode, Hook, Mechanism, Program, SOFTIRQ_TRACKING},
    facts::{KernelFacts, describe},
    load::{LoadOptions, load},
    tls::{self, TlsMode, TlsPlan},
};
use crate::kernel::{selector::Selection, units::KernelUnits};

/// How each hook is attached, and why the ones that are not could not be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttachPlan {
    pub attach: BTreeMap<Hook, Mechanism>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unsupported: BTreeMap<Hook, String>,
    /// The TLS libraries hooked.
    pub tls: TlsPlan,
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
        Program::Kprobe { function, .. } | Program::Kretprobe { function, .. } => {
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
        let why = describe(error);
        return Err(match detach_hook(ebpf, hook, mechanism) {
            Ok(()) => why,
            Err(detach) => format!("{why}; then {detach}"),
        });
    }
    Ok(())
}

/// Unloads `program` (which detaches it); `Ok(false)` when it was never loaded.
fn unload_program(ebpf: &mut Ebpf, program: Program) -> Result<bool> {
    let name = program.name();
    let loaded = ebpf
        .program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?;
    let unloaded = match program {
        Program::Tracepoint { .. } => <&mut TracePoint>::try_from(loaded)?.unload(),
        Program::RawTracepoint { .. } => <&mut RawTracePoint>::try_from(loaded)?.unload(),
        Program::Kprobe { .. } | Program::Kretprobe { .. } => {
            <&mut KProbe>::try_from(loaded)?.unload()
        }
        Program::FEntry { .. } => <&mut FEntry>::try_from(loaded)?.unload(),
        Program::FExit { .. } => <&mut FExit>::try_from(loaded)?.unload(),
    };
    match unloaded {
        Ok(()) => Ok(true),
        Err(ProgramError::NotLoaded) => Ok(false),
        Err(error) => Err(anyhow!(error).context(format!("cannot unload the {name} program"))),
    }
}

/// Unloads every program of `hook` by `mechanism` that was loaded; the errors, if any,
/// in one line.
fn detach_hook(ebpf: &mut Ebpf, hook: Hook, mechanism: Mechanism) -> Result<(), String> {
    let errors: Vec<String> = hook
        .programs(mechanism)
        .iter()
        .filter_map(|&program| unload_program(ebpf, program).err().map(describe))
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
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

/// Loads the programs with the selection and attaches each hook as `mode` says. The
/// state-change hook is required; another hook this kernel cannot carry in auto mode is
/// reported in the plan's `unsupported`.
pub fn attach(mode: AttachMode, options: LoadOptions) -> Result<Probes> {
    let facts = KernelFacts::gather()?;
    let mut ebpf = load(&facts, options)?;
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
        .chain(SOFTIRQ_TRACKING)
        .map(|program| program.name());
    let programs = attached
        .map(|name| program_fd(&ebpf, name))
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

/// `program`'s own file descriptor, so its kernel counts stay readable after the object
/// is dropped.
fn program_fd(ebpf: &Ebpf, name: &'static str) -> Result<(&'static str, ProgramFd)> {
    let fd = ebpf
        .program(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .fd()?
        .try_clone()
        .with_context(|| format!("cannot keep the {name} program open"))?;
    Ok((name, fd))
}

impl Probes {
    /// Attaches the TLS hook as `mode` says (`holders`: the processes holding a traced
    /// socket, for `auto`), once the data hook is attached, and adds it to the plan.
    pub fn attach_tls(&mut self, mode: TlsMode, holders: &BTreeSet<u32>) -> Result<()> {
        let with_data = self.plan.attach.contains_key(&Hook::Data);
        self.plan.tls = tls::attach(&mut self.ebpf, mode, with_data, holders)?;
        if !self.plan.tls.libraries.is_empty() {
            for name in tls::PROGRAMS {
                self.programs.push(program_fd(&self.ebpf, name)?);
            }
        }
        Ok(())
    }
}

/// Whether a mechanism can carry a hook here, or why not.
pub type Availability = (Mechanism, Result<(), String>);

/// For `tracer check`: whether each mechanism of each hook loads and attaches here,
/// trying each one and detaching it again.
pub fn probe_all() -> Result<BTreeMap<Hook, Vec<Availability>>> {
    let facts = KernelFacts::gather()?;
    let options = LoadOptions {
        selection: &Selection::default(),
        ring_buffer_bytes: MIN_RING_BYTES,
    };
    let mut ebpf = load(&facts, options)?;
    let mut report = BTreeMap::new();
    for &hook in Hook::ALL {
        let results = hook
            .preference()
            .iter()
            .map(|&mechanism| {
                let result = attach_hook(&mut ebpf, &facts, hook, mechanism);
                if result.is_ok()
                    && let Err(why) = detach_hook(&mut ebpf, hook, mechanism)
                {
                    eprintln!("tracer: warning: {hook} by {mechanism}: {why}");
                }
                (mechanism, result)
            })
            .collect();
        report.insert(hook, results);
    }
    Ok(report)
}

/// For `tracer check`: which TLS library files `--tls all` would attach to here, each
/// attached and detached again.
pub fn probe_tls() -> Result<TlsPlan> {
    let facts = KernelFacts::gather()?;
    let options = LoadOptions {
        selection: &Selection::default(),
        ring_buffer_bytes: MIN_RING_BYTES,
    };
    let mut ebpf = load(&facts, options)?;
    tls::attach(&mut ebpf, TlsMode::All, true, &BTreeSet::new())
}
