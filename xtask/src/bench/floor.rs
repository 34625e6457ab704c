//! The floor: tracer-ebpf's empty program ([`FLOOR`]) attached by this process to each
//! tracepoint the tracer's hot programs run on, for the rounds that read the kernel's
//! statistics. What it costs a run (the kernel's dispatch, `bpf_stats`' own timing) is
//! what no filter can go under; each program's cost is printed beside it.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, programs::RawTracePoint};
use cargo_metadata::Message;
use tracer_common::programs::FLOOR;

use super::bpf_stats::{self, ProgramRuns};
use crate::cargo;

/// The raw tracepoints the floor is measured on: those of the programs that fire for
/// all of the host's TCP traffic.
const TRACEPOINTS: &[&str] = &[
    "inet_sock_set_state",
    "sock_send_length",
    "sock_recv_length",
    "tcp_probe",
    "softirq_entry",
    "softirq_exit",
];

/// The floor's programs, attached until dropped: one load of the object per tracepoint,
/// so each has statistics of its own.
pub struct Floor {
    loaded: Vec<(&'static str, u32, Ebpf)>,
}

impl Floor {
    pub fn attach() -> Result<Self> {
        let object = ebpf_object()?;
        let bytes =
            fs::read(&object).with_context(|| format!("cannot read {}", object.display()))?;
        let loaded = TRACEPOINTS
            .iter()
            .map(|&tracepoint| {
                let mut ebpf = Ebpf::load(&bytes).context("cannot load the eBPF object")?;
                let program: &mut RawTracePoint = ebpf
                    .program_mut(FLOOR)
                    .ok_or_else(|| anyhow!("the eBPF object has no `{FLOOR}` program"))?
                    .try_into()?;
                program.load()?;
                program
                    .attach(tracepoint)
                    .with_context(|| format!("cannot attach the floor to {tracepoint}"))?;
                let id = program.info()?.id();
                Ok((tracepoint, id, ebpf))
            })
            .collect::<Result<_>>()?;
        Ok(Self { loaded })
    }

    /// Each floor's runs so far, named by [`Floor::name`].
    pub fn snapshot(&self) -> Result<BTreeMap<String, ProgramRuns>> {
        let ids: BTreeMap<u64, String> = self
            .loaded
            .iter()
            .map(|&(tracepoint, id, _)| (u64::from(id), Self::name(tracepoint)))
            .collect();
        bpf_stats::runs(&ids)
    }

    /// The floor's name on the tracepoint `program` runs on (`_nested`: the second
    /// program on a tracepoint).
    pub fn name(program: &str) -> String {
        format!("floor on {}", program.trim_end_matches("_nested"))
    }

    pub fn is_floor(name: &str) -> bool {
        name.starts_with("floor on ")
    }
}

/// The eBPF object the release build embeds in tracer: where its build script left it,
/// as cargo reports.
fn ebpf_object() -> Result<PathBuf> {
    let output = cargo()?
        .args(["build", "--release", "--package", "tracer"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    Message::parse_stream(output.stdout.as_slice())
        .filter_map(Result::ok)
        .find_map(|message| match message {
            Message::BuildScriptExecuted(script) if script.package_id.repr.contains("/tracer#") => {
                Some(script.out_dir.join("tracer").into_std_path_buf())
            }
            _ => None,
        })
        .filter(|path| Path::new(path).is_file())
        .ok_or_else(|| anyhow!("cargo did not report where tracer's build put its eBPF object"))
}
