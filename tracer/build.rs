//! Compiles `tracer-ebpf` for the BPF target into OUT_DIR, where `src/kernel/attach.rs`
//! embeds it, with the nightly pinned in `tracer-ebpf/rust-toolchain.toml` and the bpf-linker
//! built for that nightly's LLVM. Both are verified first (`tracer-ebpf/toolchain.rs`): a
//! missing or mismatched tool is one line naming the fix, never an LLVM error from inside
//! the link.

use std::{env, path::Path, process::ExitCode};

use anyhow::{Context as _, Result, anyhow};
use aya_build::Toolchain;

#[path = "../tracer-ebpf/toolchain.rs"]
#[allow(
    dead_code,
    reason = "what installs and repairs is `cargo xtask setup`'s half"
)]
mod toolchain;

fn build() -> Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("the tracer-ebpf package is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;

    let nightly = toolchain::PinnedToolchain::pinned(root_dir.as_std_path())?;
    let llvm_major = nightly.llvm_major()?;
    let linker = toolchain::bpf_linker(&nightly, llvm_major)?;
    println!("cargo::rerun-if-changed={}", linker.display());
    // rustc finds `bpf-linker` on PATH: put the verified one first for the eBPF build.
    let linker_dir = linker.parent().unwrap_or(Path::new("."));
    let path = env::join_paths(
        std::iter::once(linker_dir.to_path_buf())
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )
    .context("PATH cannot hold bpf-linker's directory")?;
    // SAFETY: the build script is single-threaded.
    unsafe { env::set_var("PATH", path) };

    // The nested cargo's progress would reach the user as one warning a line.
    // SAFETY: as above.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(&nightly.channel),
    )
}

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, as cargo shows it; never a backtrace (RUST_BACKTRACE is set on
            // some machines), which says nothing to someone building tracer.
            // cargo fails the build on `cargo::error` by itself.
            println!("cargo::error={error:#}");
            ExitCode::SUCCESS
        }
    }
}
