//! `cargo xtask`: set up, build, run and test tracer on a fresh Debian/Ubuntu machine.

mod bench;
mod fuzz;
mod image;
mod setup;
mod soak;
#[path = "../../tracer-ebpf/toolchain.rs"]
mod toolchain;
mod vm;

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent; says what it installs).
    Setup,
    /// Build the eBPF object and the release binary `target/release/tracer`.
    Build,
    /// Build the container image `localhost/tracer:0.1.0` (deploy/Dockerfile) with podman:
    /// a static binary on an empty base, no registry needed.
    Image,
    /// Build, then run the tracer with ARGS (e.g. `cargo xtask run -- --port 8191`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What tracing costs: the userspace pipeline per event, then the whole tracer under
    /// connection churn beside tcpdump and bpftrace, and each eBPF program's run time
    /// (needs root; see docs/performance.md).
    Bench(bench::BenchArgs),
    /// The release tracer under a steady connection load for a while, writing to a file
    /// it rotates: memory and eBPF maps stay flat, every connection has its records.
    Soak(soak::SoakArgs),
    /// Fuzz the ring-record decoder and replay's line reader (cargo-fuzz, libFuzzer).
    Fuzz(fuzz::FuzzArgs),
    /// Everything CI checks: formatting, clippy on both toolchains, unit and integration
    /// tests against the running kernel (needs root), the deployment files' checks, the
    /// fuzzers and a one-minute soak, then the kernel matrix (`vm-test`).
    Test {
        /// Stop after the running kernel's tests: skip the kernel matrix.
        #[arg(long)]
        host_only: bool,
    },
    /// Boot Debian's 5.10, 6.1 and 6.12 cloud kernels under qemu and run the tracer's
    /// tests in each, once per attach mode; prints a kernel x mode matrix.
    VmTest {
        /// A kernel to test (repeat for several; default: all).
        #[arg(long = "kernel", value_enum)]
        kernels: Vec<vm::Kernel>,
        /// An attach mode to test (repeat for several; default: all).
        #[arg(long = "mode", value_enum, default_values_t = vm::Mode::ALL)]
        modes: Vec<vm::Mode>,
    },
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `command` (in the workspace root unless it names a directory), failing with its
/// command line when it fails.
pub fn run(command: &mut Command) -> Result<()> {
    if command.get_current_dir().is_none() {
        command.current_dir(workspace_root());
    }
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// `rustup run` with a toolchain pinned by the `rust-toolchain.toml` of `dir`.
fn pinned_cargo(dir: &str) -> Result<Command> {
    let pinned = toolchain::PinnedToolchain::pinned(&workspace_root().join(dir))?;
    let mut command = Command::new("rustup");
    command.args(["run", &pinned.channel, "cargo"]);
    Ok(command)
}

/// cargo of the pinned stable toolchain, for the workspace's builds and checks.
fn cargo() -> Result<Command> {
    pinned_cargo("xtask")
}

fn build() -> Result<PathBuf> {
    setup::ensure()?;
    run(cargo()?.args(["build", "--release", "--package", "tracer"]))?;
    Ok(workspace_root().join("target/release/tracer"))
}

/// cargo of the pinned eBPF nightly, for the eBPF crate's own checks.
fn ebpf_cargo() -> Result<Command> {
    pinned_cargo("tracer-ebpf")
}

fn test(host_only: bool) -> Result<()> {
    setup::ensure()?;
    setup::ensure_test_tools()?;
    // Each crate formatted and linted by the toolchain that builds it.
    run(cargo()?
        .args(["fmt", "--package", "tracer", "--package", "tracer-common"])
        .args(["--package", "xtask", "--", "--check"]))?;
    run(ebpf_cargo()?.args(["fmt", "--package", "tracer-ebpf", "--", "--check"]))?;
    run(cargo()?.args([
        "clippy",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(ebpf_cargo()?.args([
        "clippy",
        "--package",
        "tracer-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The containers tests run the image.
    image::image()?;
    // No doc tests (there are none): CI reads the runner's last summary, which must count
    // the tests that ran.
    run(cargo()?.args([
        "test",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--lib",
        "--bins",
        "--tests",
    ]))?;
    fuzz::fuzz(&fuzz::FuzzArgs::short())?;
    soak::soak(&soak::SoakArgs::short())?;
    if host_only {
        return Ok(());
    }
    vm::vm_test(&[], &vm::Mode::ALL)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::ensure().and_then(|()| setup::ensure_test_tools()),
        Task::Build => build().map(|binary| println!("built {}", binary.display())),
        Task::Image => image::image().map(|_| ()),
        Task::Run { args } => build().and_then(|binary| {
            // Replace this process so Ctrl-C and the exit status belong to the tracer.
            Err(Command::new(&binary).args(args).exec())
                .with_context(|| format!("cannot run {}", binary.display()))
        }),
        Task::Test { host_only } => test(host_only),
        Task::Bench(args) => bench::bench(&args),
        Task::Soak(args) => soak::soak(&args),
        Task::Fuzz(args) => fuzz::fuzz(&args),
        Task::VmTest { kernels, modes } => vm::vm_test(&kernels, &modes),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
