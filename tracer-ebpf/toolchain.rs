//! The toolchains, pinned and verified: the nightly that builds the eBPF programs, named in
//! `rust-toolchain.toml` beside this file (the only place it is named), the stable one
//! that builds the rest, named in `xtask/rust-toolchain.toml`, and bpf-linker at an exact
//! version, built on the LLVM major that nightly reports. rustc hands bpf-linker
//! LLVM bitcode, which an older LLVM cannot read ("Invalid record"), so the two must agree.
//!
//! tracer's build script verifies before it builds, and says in one line what to run when
//! something is missing or mismatched; `cargo xtask setup` installs and repairs. Both
//! include this file (`#[path]`): the workspace has exactly four crates, and this is too
//! small to be a fifth.
//!
//! bpf-linker is installed in a directory of its own per version and LLVM major
//! (`$CARGO_HOME/tracer-tools/bpf-linker-0.13.0-llvm22/`), so a bpf-linker the user
//! installed for another project is neither used nor replaced.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, Result, bail};

/// bpf-linker's exact version.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM majors bpf-linker 0.13.0 can be built on (its `llvm-21` .. `llvm-23` features).
pub const BPF_LINKER_LLVM: std::ops::RangeInclusive<u32> = 21..=23;

/// A toolchain pinned by the `rust-toolchain.toml` of a directory: the eBPF crate's
/// (the nightly) or xtask's (the stable toolchain).
pub struct PinnedToolchain {
    /// e.g. `nightly-2026-05-19`: what `rustup run` takes.
    pub channel: String,
    /// Components the toolchain file asks for (`rust-src`, `clippy`, `rustfmt`).
    pub components: Vec<String>,
}

impl PinnedToolchain {
    pub fn pinned(dir: &Path) -> Result<Self> {
        let path = dir.join("rust-toolchain.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let toolchain = file.get("toolchain").and_then(toml::Value::as_table);
        let channel = toolchain
            .and_then(|t| t.get("channel"))
            .and_then(toml::Value::as_str)
            .with_context(|| format!("{} names no [toolchain] channel", path.display()))?;
        let components = toolchain
            .and_then(|t| t.get("components"))
            .and_then(toml::Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(toml::Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            channel: channel.to_owned(),
            components,
        })
    }

    fn rustc(&self, args: &[&str]) -> Result<String> {
        let output = Command::new("rustup")
            .args(["run", &self.channel, "rustc"])
            .args(args)
            .output()
            .context("cannot run rustup")?;
        if !output.status.success() {
            bail!(
                "the toolchain {} is not installed ({}): run `cargo xtask setup`",
                self.channel,
                first_line(&output)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `rustc -vV` of the installed toolchain: fails when it is not installed.
    pub fn version(&self) -> Result<String> {
        self.rustc(&["-vV"])
    }

    /// The LLVM major of the installed toolchain, after checking it has `rust-src` (the
    /// eBPF build compiles `core` from source).
    pub fn llvm_major(&self) -> Result<u32> {
        let version = self.rustc(&["-vV"])?;
        let llvm = version
            .lines()
            .find_map(|line| line.strip_prefix("LLVM version: "))
            .with_context(|| format!("`rustc -vV` of {} names no LLVM version", self.channel))?;
        let sysroot = PathBuf::from(self.rustc(&["--print", "sysroot"])?.trim());
        if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
            bail!(
                "the eBPF toolchain {} has no rust-src component: run `cargo xtask setup`",
                self.channel
            );
        }
        major(llvm).with_context(|| format!("{} reports LLVM {llvm:?}", self.channel))
    }

    /// Components of the toolchain file that are not installed.
    pub fn missing_components(&self) -> Vec<String> {
        let installed = Command::new("rustup")
            .args([
                "component",
                "list",
                "--installed",
                "--toolchain",
                &self.channel,
            ])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        self.components
            .iter()
            .filter(|component| {
                // `rust-src`, or `clippy-x86_64-unknown-linux-gnu`: the name, then a triple.
                !installed.lines().any(|line| {
                    line.strip_prefix(component.as_str()).is_some_and(|rest| {
                        rest.is_empty() || (rest.starts_with('-') && rest.matches('-').count() >= 3)
                    })
                })
            })
            .cloned()
            .collect()
    }
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

fn first_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout)
    } else {
        text
    };
    text.lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

/// Where `cargo install --root` puts bpf-linker built on `llvm_major`.
pub fn bpf_linker_root(llvm_major: u32) -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("tracer-tools")
        .join(format!("bpf-linker-{BPF_LINKER_VERSION}-llvm{llvm_major}"))
}

/// The bpf-linker for `nightly`, verified: its version, and the LLVM it runs on (asked
/// of LLVM itself) against the nightly's `llvm_major`.
pub fn bpf_linker(nightly: &PinnedToolchain, llvm_major: u32) -> Result<PathBuf> {
    let path = bpf_linker_root(llvm_major).join("bin/bpf-linker");
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION} built on LLVM {llvm_major}");
    if !path.exists() {
        bail!(
            "{wanted} (the LLVM of {}) is not installed at {}: run `cargo xtask setup`",
            nightly.channel,
            path.display()
        );
    }
    let run = |args: &[&str]| {
        Command::new(&path)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", path.display()))
    };
    let version = run(&["--version"])?;
    let reported = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.status.success() || reported != format!("bpf-linker {BPF_LINKER_VERSION}") {
        bail!(
            "{} is not {wanted} ({}): run `cargo xtask setup`",
            path.display(),
            if version.status.success() {
                reported
            } else {
                first_line(&version)
            }
        );
    }
    // LLVM's own `--version`, through bpf-linker: the library it really loads.
    let llvm = run(&["--llvm-args=--version", "-o", "/dev/null", "/dev/null"])?;
    let text = String::from_utf8_lossy(&llvm.stdout);
    let linked = text
        .lines()
        .find_map(|line| line.split("LLVM version ").nth(1))
        .and_then(major);
    if linked != Some(llvm_major) {
        bail!(
            "{} does not run on LLVM {llvm_major}, the LLVM of {} ({}): run `cargo xtask setup`",
            path.display(),
            nightly.channel,
            match linked {
                Some(found) => format!("it runs on LLVM {found}"),
                None => first_line(&llvm),
            }
        );
    }
    Ok(path)
}
