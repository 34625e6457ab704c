//! What the soak watches in the running tracer: its resident memory and CPU time (from
//! /proc) and how many entries its eBPF hash maps hold (bpftool, on the maps that the
//! tracer's own file descriptors name, so other tracers on the machine do not count).

use std::{collections::BTreeMap, fs, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// `BPF_MAP_TYPE_HASH`, `PERCPU_HASH`, `LRU_HASH`, `LRU_PERCPU_HASH`: the maps whose
/// entry count changes (arrays and ring buffers have a fixed size).
const HASH_MAP_TYPES: [u32; 4] = [1, 5, 9, 10];

/// The kernel's clock ticks per second in /proc/PID/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// The tracer's resident memory, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status: did the tracer exit?"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib.trim().parse()?)
}

/// The tracer's CPU time so far, user and system.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(Duration::from_secs_f64(ticks / USER_HZ))
}

/// The tracer's hash maps: (id, name), from its file descriptors' fdinfo.
pub fn hash_maps(pid: u32) -> Result<Vec<(u32, String)>> {
    let mut maps = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u32> {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse().ok())
        };
        if let (Some(id), Some(kind)) = (field("map_id:"), field("map_type:"))
            && HASH_MAP_TYPES.contains(&kind)
        {
            maps.push((
                id,
                bpftool(&["map", "show", "id", &id.to_string()])?["name"].to_string(),
            ));
        }
    }
    if maps.is_empty() {
        bail!("the tracer (pid {pid}) holds no eBPF hash map");
    }
    Ok(maps)
}

/// Entries in each of `maps`, by name.
pub fn map_entries(maps: &[(u32, String)]) -> Result<BTreeMap<String, u64>> {
    maps.iter()
        .map(|(id, name)| {
            let dump = bpftool(&["map", "dump", "id", &id.to_string()])?;
            let entries = dump
                .as_array()
                .context("bpftool map dump gave no list")?
                .len();
            Ok((name.trim_matches('"').to_owned(), entries as u64))
        })
        .collect()
}

fn bpftool(args: &[&str]) -> Result<Value> {
    let output = Command::new("bpftool")
        .arg("--json")
        .args(args)
        .output()
        .context("cannot run bpftool")?;
    if !output.status.success() {
        bail!(
            "bpftool {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
