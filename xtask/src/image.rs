//! The container image (`deploy/Dockerfile`), built here without any registry: tracer as
//! one static binary (glibc linked in, `+crt-static`; the eBPF object is inside it) on an
//! empty base (`FROM scratch`). The build context is a directory holding only that binary,
//! so nothing else of the repository reaches the image.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{cargo, run, setup, workspace_root};

/// The image's name, as the tests run it and the DaemonSet names it.
pub const IMAGE: &str = "localhost/tracer:0.1.0";
/// The target the static binary is built for.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the static binary and the image from it with podman; returns the image's size
/// in bytes.
pub fn image() -> Result<u64> {
    setup::ensure()?;
    let target_dir = workspace_root().join("target/static");
    run(cargo()?
        .args([
            "build",
            "--release",
            "--package",
            "tracer",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // The target's flags only: the eBPF object, built for its own target, keeps its own.
        .env(
            format!(
                "CARGO_TARGET_{}_RUSTFLAGS",
                TARGET.to_uppercase().replace('-', "_")
            ),
            "-C target-feature=+crt-static",
        )
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols"))?;
    let context = workspace_root().join("target/image");
    fs::create_dir_all(&context)?;
    let binary: PathBuf = target_dir.join(TARGET).join("release/tracer");
    fs::copy(&binary, context.join("tracer"))
        .with_context(|| format!("cannot copy {}", binary.display()))?;
    run(Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "build",
            "--quiet",
            "--tag",
            IMAGE,
            "--file",
        ])
        .arg(workspace_root().join("deploy/Dockerfile"))
        .arg(&context))?;
    let output = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Size}}", IMAGE])
        .output()
        .context("cannot run podman image inspect")?;
    let size = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<u64>()?;
    println!("xtask: built {IMAGE} ({:.1} MB)", size as f64 / 1e6);
    Ok(size)
}
