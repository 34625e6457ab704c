//! Installs and verifies the build and test prerequisites, so `cargo xtask test` and
//! `cargo xtask run` work on a fresh Debian/Ubuntu machine: the pinned toolchains (the
//! stable one of `xtask/rust-toolchain.toml`, the eBPF nightly and bpf-linker of
//! `tracer-ebpf/toolchain.rs`), checked rather than assumed, and repaired when they do
//! not match. The user's own `nightly`, default toolchain and bpf-linker are never touched.
//! What only the tests use (deployment checkers, the fuzzer, bpftool for the soak) is
//! installed by [`ensure_test_tools`], so a build alone does not pull it in.

use std::{
    env,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{run, toolchain, workspace_root};

/// Debian packages the tests use: iproute2 and nftables cut a connection's traffic;
/// prometheus (the server and `promtool`) scrapes and checks `--metrics-addr`; tcpdump
/// captures the traffic the records are compared with; util-linux's setpriv and unshare
/// run the tracer unprivileged; podman with runc (this host's hybrid cgroups refuse
/// crun), the CNI plugins its port publishing uses and busybox-static (the image's only
/// program) run real containers; containerd runs pods through its CRI API; nginx and curl
/// speak TLS through OpenSSL, and tshark decrypts their capture with the key log. And one the
/// build needs: protobuf-compiler, whose `protoc` turns the CRI API's definition into
/// tracer's client (the k8s-cri crate's build script).
const TEST_PACKAGES: &[&str] = &[
    "protobuf-compiler",
    "containerd",
    "iproute2",
    "nftables",
    "prometheus",
    "tcpdump",
    "util-linux",
    "podman",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "busybox-static",
    "nginx",
    "curl",
    "tshark",
];

/// Debian packages only the test suite's other checks use: systemd-analyze verifies the
/// unit, logrotate reads its configuration, python3-venv holds the Kubernetes validator and
/// chdb, bpftool counts the soak's eBPF map entries, g++ builds libFuzzer, dwarves' pahole
/// cross-checks the offsets the BTF unit tests resolve, mmdebstrap (with Debian's keyring)
/// makes the root file system that systemd-nspawn boots for the unit's test, tmux is the
/// terminal `tracer top` is tested in, chromium the browser that loads `tracer report`'s
/// page (with a font for its screenshot).
const CHECK_PACKAGES: &[&str] = &[
    "systemd",
    "logrotate",
    "python3-venv",
    "bpftool",
    "g++",
    "dwarves",
    "systemd-container",
    "mmdebstrap",
    "debian-archive-keyring",
    "tmux",
    "chromium",
    "fonts-dejavu-core",
];

/// The Debian release of the root file system the unit's test boots, and what it holds
/// beyond `minbase`: systemd as init, logrotate, and procps (`/bin/kill`, which the unit's
/// `ExecReload` runs, as every Debian server has it).
const SYSTEMD_ROOTFS: (&str, &str) = ("bookworm", "systemd,systemd-sysv,dbus,logrotate,procps");

/// cargo-fuzz (crates.io), which builds and runs the fuzz targets.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The Python packages the deployment tests run, from PyPI, pinned: the Kubernetes schema
/// validator (the schemas inside: works offline) and chdb (the ClickHouse engine, in
/// process, for the documented table and queries).
const DEPLOY_TOOLS: &[(&str, &str)] = &[("kubernetes-validate", "1.37.0"), ("chdb", "4.4.0")];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn missing_packages(packages: &[String]) -> Vec<String> {
    packages
        .iter()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .is_ok_and(|out| {
                    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
                })
        })
        .cloned()
        .collect()
}

/// Installs those of `packages` (Debian packages) that are missing, saying which.
pub fn ensure_packages<S: AsRef<str>>(packages: &[S]) -> Result<()> {
    let packages: Vec<String> = packages.iter().map(|p| p.as_ref().to_owned()).collect();
    let missing = missing_packages(&packages);
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

/// The toolchain pinned in `dir` (`what` it builds), installed with its components when
/// it or one of them is missing, or when `check` fails on it.
fn ensure_toolchain(
    dir: &str,
    what: &str,
    check: impl Fn(&toolchain::PinnedToolchain) -> Result<()>,
) -> Result<toolchain::PinnedToolchain> {
    let pinned = toolchain::PinnedToolchain::pinned(&workspace_root().join(dir))?;
    let missing = pinned.missing_components();
    let problem = match check(&pinned) {
        Err(error) => Some(format!("{error:#}")),
        Ok(()) if !missing.is_empty() => Some(format!("missing {}", missing.join(", "))),
        Ok(()) => None,
    };
    if let Some(problem) = problem {
        println!(
            "xtask: installing the toolchain that builds {what}, {} with {} ({problem})",
            pinned.channel,
            pinned.components.join(", ")
        );
        run(Command::new("rustup")
            .args([
                "toolchain",
                "install",
                &pinned.channel,
                "--profile",
                "minimal",
            ])
            .args(["--component", &pinned.components.join(",")]))?;
    }
    Ok(pinned)
}

/// The pinned stable toolchain, which builds everything but the eBPF programs.
fn ensure_stable() -> Result<()> {
    ensure_toolchain("xtask", "the daemon", |stable| stable.version().map(drop))?;
    Ok(())
}

/// The pinned nightly, installed with its components; returns it with its LLVM major.
fn ensure_nightly() -> Result<(toolchain::PinnedToolchain, u32)> {
    let nightly = ensure_toolchain("tracer-ebpf", "the eBPF programs", |nightly| {
        nightly.llvm_major().map(drop)
    })?;
    let llvm_major = nightly.llvm_major()?;
    Ok((nightly, llvm_major))
}

/// bpf-linker at the pinned version, built on the nightly's LLVM major in its own
/// directory (see `toolchain`), rebuilt when what is there does not verify.
fn ensure_bpf_linker(nightly: &toolchain::PinnedToolchain, llvm_major: u32) -> Result<()> {
    let Err(problem) = toolchain::bpf_linker(nightly, llvm_major) else {
        return Ok(());
    };
    if !toolchain::BPF_LINKER_LLVM.contains(&llvm_major) {
        bail!(
            "{} has LLVM {llvm_major}, but bpf-linker {} builds only on LLVM {}..={}: pin another nightly in tracer-ebpf/rust-toolchain.toml",
            nightly.channel,
            toolchain::BPF_LINKER_VERSION,
            toolchain::BPF_LINKER_LLVM.start(),
            toolchain::BPF_LINKER_LLVM.end()
        );
    }
    println!(
        "xtask: {problem:#}\nxtask: building bpf-linker {} on LLVM {llvm_major} (Debian's llvm-{llvm_major}; a few minutes, once)",
        toolchain::BPF_LINKER_VERSION
    );
    ensure_packages(&[
        format!("llvm-{llvm_major}-dev"),
        format!("libpolly-{llvm_major}-dev"),
        "libzstd-dev".to_owned(),
        "zlib1g-dev".to_owned(),
    ])?;
    // llvm-sys finds libLLVM through llvm-config, which must be the one of that major.
    let path = format!(
        "/usr/lib/llvm-{llvm_major}/bin:{}",
        env::var("PATH").unwrap_or_default()
    );
    let root = toolchain::bpf_linker_root(llvm_major);
    run(crate::cargo()?
        .args(["install", "bpf-linker", "--locked", "--force"])
        .args(["--version", &format!("={}", toolchain::BPF_LINKER_VERSION)])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .arg("--root")
        .arg(&root)
        .env("PATH", path))?;
    toolchain::bpf_linker(nightly, llvm_major).map(|_| ())
}

/// The deployment tests' Python packages ([`DEPLOY_TOOLS`]), in a virtual environment of
/// their own under `target/deploy-tools`.
fn ensure_deploy_tools() -> Result<()> {
    let venv = workspace_root().join("target/deploy-tools");
    let pip = venv.join("bin/pip");
    let wanted: Vec<String> = DEPLOY_TOOLS
        .iter()
        .map(|(package, version)| format!("{package}=={version}"))
        .collect();
    // `pip freeze` lists what is installed as `name==version`.
    let installed = Command::new(&pip)
        .arg("freeze")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_lowercase())
        .unwrap_or_default();
    if wanted
        .iter()
        .all(|w| installed.lines().any(|line| line == w))
    {
        return Ok(());
    }
    println!(
        "xtask: installing {} (PyPI) into target/deploy-tools",
        wanted.join(", ")
    );
    if !pip.exists() {
        // Debian's Python (python3-venv), whatever else is first on PATH.
        run(Command::new("/usr/bin/python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))?;
    }
    run(Command::new(&pip)
        .args(["install", "--quiet"])
        .args(&wanted))
}

/// The root file system of [`SYSTEMD_ROOTFS`], made once with mmdebstrap as a tarball under
/// `target/deploy-tools` (`tracer/tests/systemd.rs` boots it).
fn ensure_systemd_rootfs() -> Result<()> {
    let (release, packages) = SYSTEMD_ROOTFS;
    let tarball =
        workspace_root().join(format!("target/deploy-tools/debian-{release}-systemd.tar"));
    if tarball.exists() {
        return Ok(());
    }
    println!("xtask: making a Debian {release} root file system with systemd (mmdebstrap)");
    let partial = tarball.with_extension("partial.tar");
    run(Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase"])
        .arg(format!("--include={packages}"))
        .arg(release)
        .arg(&partial)
        .arg("http://deb.debian.org/debian"))?;
    std::fs::rename(&partial, &tarball)?;
    Ok(())
}

pub fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION)
        });
    if installed {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (crates.io)");
    run(crate::cargo()?.args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        &format!("={CARGO_FUZZ_VERSION}"),
    ]))
}

/// What the test suite needs beyond building: the deployment checkers, the fuzzer and
/// bpftool.
pub fn ensure_test_tools() -> Result<()> {
    ensure_packages(CHECK_PACKAGES)?;
    ensure_deploy_tools()?;
    ensure_systemd_rootfs()?;
    ensure_cargo_fuzz()
}

/// Installs whatever is missing and verifies the rest; quick when nothing is.
pub fn ensure() -> Result<()> {
    let started = Instant::now();
    ensure_packages(TEST_PACKAGES)?;
    ensure_stable()?;
    let (nightly, llvm_major) = ensure_nightly()?;
    ensure_bpf_linker(&nightly, llvm_major)?;
    let took = started.elapsed();
    if took > Duration::from_secs(5) {
        println!("xtask: set-up done in {:.0} s", took.as_secs_f64());
    }
    Ok(())
}
