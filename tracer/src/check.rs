//! `tracer check`: what this kernel lets tracer do, found by trying. Each hook's
//! mechanisms are loaded and attached for a moment, so the report says what `--attach`
//! (auto by default) will choose and why the others were not.

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::Result;
use serde::Serialize;

use crate::{
    kernel::{
        attach::{self, AttachMode, Hook, Mechanism, TlsPlan},
        btf, preflight, privileges, tracefs,
    },
    pipeline::workload::{
        cgroups::CgroupLayout,
        cri::{Cri, CriSocket},
    },
};

#[derive(Serialize)]
struct MechanismReport {
    mechanism: Mechanism,
    available: bool,
    chosen: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    why_not: Option<String>,
}

/// A CRI socket, and what answered there.
#[derive(Serialize)]
struct CriReport {
    socket: String,
    #[serde(flatten)]
    answer: CriAnswer,
}

/// What the socket said: a runtime's name and version (`containerd 1.6.20`), or why
/// nothing answered the CRI API.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum CriAnswer {
    Runtime(String),
    Problem(String),
}

impl CriReport {
    /// Asks the runtime at `socket`'s path for its version.
    fn ask(socket: &CriSocket) -> Option<Self> {
        let path = socket.path()?;
        let answer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(Cri::connect(&path)));
        let answer = match answer {
            Ok(cri) => CriAnswer::Runtime(cri.runtime),
            Err(error) => CriAnswer::Problem(format!("{error:#}")),
        };
        Some(Self {
            socket: path.display().to_string(),
            answer,
        })
    }

    fn describe(report: Option<&Self>) -> String {
        const WITHOUT: &str = "containers by id, pods by uid, no --pod";
        match report.map(|report| (&report.socket, &report.answer)) {
            None => format!("no CRI socket: {WITHOUT}"),
            Some((socket, CriAnswer::Runtime(runtime))) => {
                format!("{runtime} at {socket}: pod and container names, --pod")
            }
            Some((_, CriAnswer::Problem(problem))) => format!("{problem}: {WITHOUT}"),
        }
    }
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    /// The mode the report is for: `chosen` and `can_trace` are what `--attach` this mode
    /// would do.
    attach: AttachMode,
    btf: bool,
    tracefs: Option<String>,
    kprobes: bool,
    fentry: bool,
    /// How cgroups are mounted: what workload attribution resolves here.
    cgroups: CgroupLayout,
    /// The container runtime asked for pod and container names; `None` without a socket.
    cri: Option<CriReport>,
    /// The TLS libraries `--tls auto` would hook here; `None` when it could not be tried.
    tls: Option<TlsPlan>,
    hooks: BTreeMap<Hook, Vec<MechanismReport>>,
    /// Tracing runs when every hook this mode requires can attach.
    can_trace: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

fn report(mode: AttachMode, cri: &CriSocket) -> Report {
    let kernel = preflight::kernel_release();
    let mut report = Report {
        attach: mode,
        btf: Path::new(btf::SYS_FS_PATH).exists(),
        tracefs: tracefs::root().ok().map(|p| p.display().to_string()),
        kernel,
        kprobes: false,
        fentry: false,
        cgroups: CgroupLayout::of_this_host(),
        cri: CriReport::ask(cri),
        tls: None,
        hooks: BTreeMap::new(),
        can_trace: false,
        problem: None,
    };
    let probed = privileges::check_can_attach()
        .and_then(|()| preflight::check_kernel(&report.kernel))
        .and_then(|_| attach::probe_all());
    let results = match probed {
        Ok(results) => results,
        Err(error) => {
            report.problem = Some(format!("{error:#}"));
            return report;
        }
    };
    report.can_trace = true;
    report.tls = Some(attach::probe_tls().unwrap_or_else(|error| TlsPlan {
        unsupported: Some(format!("{error:#}")),
        ..TlsPlan::default()
    }));
    for (hook, mechanisms) in results {
        // The first available mechanism in the order this mode tries them.
        let chosen = hook.candidates(mode).into_iter().find(|candidate| {
            mechanisms
                .iter()
                .any(|(mechanism, result)| mechanism == candidate && result.is_ok())
        });
        report.can_trace &= chosen.is_some() || !hook.required(mode);
        let entries = mechanisms
            .into_iter()
            .map(|(mechanism, result)| {
                let available = result.is_ok();
                report.kprobes |= available && mechanism == Mechanism::Kprobe;
                report.fentry |= available && mechanism == Mechanism::Fentry;
                MechanismReport {
                    mechanism,
                    available,
                    chosen: chosen == Some(mechanism),
                    why_not: result.err(),
                }
            })
            .collect();
        report.hooks.insert(hook, entries);
    }
    report
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn write_human(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "kernel   {}", report.kernel)?;
    writeln!(out, "attach   {}", report.attach)?;
    writeln!(out, "BTF      {}", yes_no(report.btf))?;
    writeln!(
        out,
        "tracefs  {}",
        report
            .tracefs
            .as_deref()
            .unwrap_or("not mounted, cannot mount")
    )?;
    writeln!(out, "kprobes  {}", yes_no(report.kprobes))?;
    writeln!(out, "fentry   {}", yes_no(report.fentry))?;
    writeln!(out, "cgroups  {}", report.cgroups.describe())?;
    writeln!(out, "cri      {}", CriReport::describe(report.cri.as_ref()))?;
    if let Some(tls) = &report.tls {
        writeln!(out, "tls      {}", tls.describe())?;
    }
    for (hook, mechanisms) in &report.hooks {
        writeln!(out, "{hook}:")?;
        for m in mechanisms {
            let status = match (m.chosen, m.available) {
                (true, _) => "chosen".to_owned(),
                (false, true) => "available".to_owned(),
                (false, false) => format!("unavailable: {}", m.why_not.as_deref().unwrap_or("")),
            };
            writeln!(out, "  {:<11} {status}", m.mechanism.to_string())?;
        }
    }
    if let Some(problem) = &report.problem {
        writeln!(out, "problem: {problem}")?;
    }
    let verdict = if report.can_trace {
        "can run"
    } else {
        "cannot run"
    };
    writeln!(out, "tracing {verdict} with --attach {}", report.attach)
}

/// Prints the report for `mode`; `Ok(false)` when tracing cannot run here in that mode.
pub fn run(json: bool, mode: AttachMode, cri: &CriSocket) -> Result<bool> {
    let report = report(mode, cri);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_human(&report, &mut out)?;
    }
    Ok(report.can_trace)
}
