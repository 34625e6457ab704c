//! Installs the build and test prerequisites, each only when missing, so `cargo xtask
//! test` and `cargo xtask run` work on a fresh Debian/Ubuntu machine.

use std::{
    env,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// bpf-linker links the eBPF object; 0.13 builds against LLVM 22, the LLVM of the
/// nightly toolchain installed here.
const BPF_LINKER_VERSION: &str = "0.13";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// Debian packages: LLVM 22 for building bpf-linker; iproute2 and nftables for the tests
/// that cut a connection's traffic.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "nftables",
];

fn cargo_bin() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Puts cargo's bin directory (bpf-linker) on PATH for this process and its children.
pub fn with_tool_path() -> Result<()> {
    let mut paths: Vec<PathBuf> =
        env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect();
    if !paths.contains(&cargo_bin()) {
        paths.insert(0, cargo_bin());
    }
    let joined = env::join_paths(paths).context("PATH cannot hold cargo's bin directory")?;
    // SAFETY: single-threaded at this point (called first thing in main).
    unsafe { env::set_var("PATH", joined) };
    Ok(())
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn missing_packages(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .is_ok_and(|out| {
                    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
                })
        })
        .collect()
}

/// Installs those of `packages` (Debian packages) that are missing, saying which.
pub fn ensure_packages(packages: &[&'static str]) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: install them as root (apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_nightly() -> Result<()> {
    let has_rust_src = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("rust-src"))
        });
    if has_rust_src {
        return Ok(());
    }
    println!("xtask: installing the nightly toolchain's rust-src (eBPF builds core from source)");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
        "--component",
        "rust-src,clippy",
    ]))
}

fn ensure_bpf_linker() -> Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if version.is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {BPF_LINKER_VERSION}."))
    }) {
        return Ok(());
    }
    println!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes, once)"
    );
    let path = format!("{LLVM_BIN}:{}", env::var("PATH").unwrap_or_default());
    run(
        Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                &format!("~{BPF_LINKER_VERSION}"),
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", path),
    )
}

/// Installs whatever is missing; quick when nothing is.
pub fn ensure() -> Result<()> {
    ensure_packages(APT_PACKAGES)?;
    ensure_nightly()?;
    ensure_bpf_linker()?;
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker is installed but does not run");
    }
    Ok(())
}
