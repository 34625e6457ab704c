//! `cargo xtask fuzz [--seconds N]`: runs each cargo-fuzz target of `fuzz/` (the two
//! parsers of outside input: ring buffer records and replayed lines) for N seconds with
//! libFuzzer, on the pinned eBPF nightly (sanitizers need a nightly). A crash fails the
//! run and leaves its input in `fuzz/artifacts/`; the corpus grows in `fuzz/corpus/`.

use std::fs;

use anyhow::{Context as _, Result, bail};

use crate::{ebpf_cargo, setup, workspace_root};

const TARGETS: &[&str] = &["decode", "replay_line"];

/// Longest input tried: ring records are under 200 bytes, lines under 2 KiB.
const MAX_LEN: &str = "4096";

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// How long each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

impl FuzzArgs {
    /// The short run of `cargo xtask test`.
    pub fn short() -> Self {
        Self { seconds: 60 }
    }
}

/// libFuzzer's closing line, `Done 123456 runs in 60 second(s)`.
fn runs(output: &str) -> Option<&str> {
    output.lines().rev().find(|line| line.starts_with("Done "))
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    setup::ensure_cargo_fuzz()?;
    let dir = workspace_root().join("fuzz");
    for target in TARGETS {
        let corpus = dir.join("corpus").join(target);
        fs::create_dir_all(&corpus)?;
        let seeds = dir.join("seeds").join(target);
        let mut command = ebpf_cargo()?;
        command
            .current_dir(&dir)
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .args(seeds.is_dir().then_some(&seeds))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-max_len={MAX_LEN}"));
        println!("xtask: fuzzing {target} for {} s", args.seconds);
        let output = command
            .output()
            .with_context(|| format!("cannot run {command:?}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzzing {target} failed ({}):\n{}",
                output.status,
                tail.join("\n")
            );
        }
        let inputs = fs::read_dir(&corpus)?.count();
        println!(
            "xtask: fuzz {target}: {}, 0 crashes, {inputs} inputs in the corpus",
            runs(&log).unwrap_or("no run count")
        );
    }
    Ok(())
}
