//! The kernel's own statistics of BPF programs (`kernel.bpf_stats_enabled`): run time and
//! run count per program, read with bpftool before and after a round. Statistics add
//! about 20 ns to every run, so they are on only in the rounds that report them.

use std::{collections::BTreeMap, fs, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns the statistics on until dropped, then restores the previous setting.
pub struct StatsEnabled {
    previous: String,
}

impl StatsEnabled {
    pub fn on() -> Result<Self> {
        let previous =
            fs::read_to_string(SYSCTL).context("cannot read kernel.bpf_stats_enabled")?;
        fs::write(SYSCTL, "1").context("cannot enable kernel.bpf_stats_enabled")?;
        Ok(Self { previous })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = fs::write(SYSCTL, self.previous.trim());
    }
}

/// Run time and count of one program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramRuns {
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
}

impl ProgramRuns {
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.run_cnt > 0).then(|| self.run_time_ns as f64 / self.run_cnt as f64)
    }
}

/// The ids of the BPF programs process `pid` holds open (its fds' `prog_id`).
fn program_ids(pid: u32) -> Result<Vec<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let info = fs::read_to_string(entry?.path()).unwrap_or_default();
        ids.extend(
            info.lines()
                .filter_map(|line| line.strip_prefix("prog_id:"))
                .filter_map(|id| id.trim().parse::<u64>().ok()),
        );
    }
    Ok(ids)
}

/// The programs process `pid` holds, by name.
pub fn snapshot(pid: u32) -> Result<BTreeMap<String, ProgramRuns>> {
    let ids = program_ids(pid)?;
    Ok(programs()?
        .into_iter()
        .filter(|(id, _, _)| ids.contains(id))
        .map(|(_, name, runs)| (name, runs))
        .collect())
}

/// The runs of the programs `ids` names, by the names it gives them.
pub fn runs(ids: &BTreeMap<u64, String>) -> Result<BTreeMap<String, ProgramRuns>> {
    Ok(programs()?
        .into_iter()
        .filter_map(|(id, _, runs)| Some((ids.get(&id)?.clone(), runs)))
        .collect())
}

/// Every BPF program loaded: id, name and runs.
fn programs() -> Result<Vec<(u64, String, ProgramRuns)>> {
    let output = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .context("cannot run bpftool (apt-get install bpftool)")?;
    if !output.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let programs: Vec<Value> = serde_json::from_slice(&output.stdout)?;
    Ok(programs
        .iter()
        .filter_map(|program| {
            let field = |name: &str| program[name].as_u64().unwrap_or(0);
            Some((
                program["id"].as_u64()?,
                program["name"].as_str().unwrap_or("?").to_owned(),
                ProgramRuns {
                    run_time_ns: field("run_time_ns"),
                    run_cnt: field("run_cnt"),
                    recursion_misses: field("recursion_misses"),
                },
            ))
        })
        .collect())
}

/// What ran between two snapshots.
pub fn delta(
    before: &BTreeMap<String, ProgramRuns>,
    after: &BTreeMap<String, ProgramRuns>,
) -> BTreeMap<String, ProgramRuns> {
    after
        .iter()
        .map(|(name, runs)| {
            let was = before.get(name).copied().unwrap_or_default();
            (
                name.clone(),
                ProgramRuns {
                    run_time_ns: runs.run_time_ns - was.run_time_ns,
                    run_cnt: runs.run_cnt - was.run_cnt,
                    recursion_misses: runs.recursion_misses - was.recursion_misses,
                },
            )
        })
        .filter(|(_, runs)| runs.run_cnt > 0 || runs.recursion_misses > 0)
        .collect()
}
