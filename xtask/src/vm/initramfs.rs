//! The guests' initramfs: the tracer and its tests, built once and packed with busybox, the
//! init, the host tools and their libraries, then each kernel's modules appended.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use cargo_metadata::{Message, TargetKind};

use super::{
    Mode,
    kernels::{KernelImage, module_load_order},
};
use crate::{cargo, run, workspace_root};

/// Host tools the tests run in guests, where busybox's `ip` and `tc` lack what they need
/// (netem, nftables), ss, which busybox lacks (the TIME_WAIT gauge is compared with what
/// it lists), tcpdump for the captures the records are compared with, setpriv and
/// unshare, which busybox lacks too (the privilege tests run the tracer as an
/// unprivileged user in a mount namespace), and pahole, which the BTF unit tests check
/// the guest kernel's offsets against. Installed by `setup` (iproute2, nftables,
/// tcpdump; util-linux is essential in Debian) and by `vm-test` itself (dwarves).
const GUEST_TOOLS: &[&str] = &[
    "/usr/sbin/ip",
    "/usr/sbin/tc",
    "/usr/sbin/nft",
    "/usr/bin/ss",
    "/usr/bin/tcpdump",
    "/usr/bin/setpriv",
    "/usr/bin/unshare",
    "/usr/bin/pahole",
    // The TLS tests' server and client (their libssl is the library the uprobes hook).
    "/usr/sbin/nginx",
    "/usr/bin/curl",
];

pub(super) struct Binaries {
    tracer: PathBuf,
    /// (name in the guest, path)
    tests: Vec<(String, PathBuf)>,
}

/// Builds the tracer and every test executable of the tracer package: the integration
/// tests and the unit tests, which read the running kernel's tracefs and BTF and so mean
/// something in guests too. `cargo test --no-run` builds the tracer binary as well
/// (the integration tests need it), so one command yields both.
pub(super) fn build_binaries() -> Result<Binaries> {
    println!("xtask: building the tracer and its tests");
    let output = cargo()?
        .args([
            "test",
            "--package",
            "tracer",
            "--no-run",
            // Under TCG a debug tracer takes many seconds to parse the kernel's BTF at
            // each start; release binaries keep the guests' suite within its time.
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the tracer's tests failed ({})", output.status);
    }
    let mut tracer = None;
    let mut tests = Vec::new();
    for message in Message::parse_stream(&output.stdout[..]) {
        let Message::CompilerArtifact(artifact) =
            message.context("cannot read cargo's JSON output")?
        else {
            continue;
        };
        let Some(executable) = artifact.executable else {
            continue;
        };
        let kind = artifact
            .target
            .kind
            .first()
            .map_or_else(String::new, TargetKind::to_string);
        if artifact.profile.test {
            tests.push((
                format!("{kind}-{}", artifact.target.name),
                executable.into(),
            ));
        } else if artifact.target.name == "tracer" && artifact.target.is_kind(TargetKind::Bin) {
            tracer = Some(executable.into());
        }
    }
    tests.sort();
    Ok(Binaries {
        tracer: tracer.context("cargo built no tracer binary")?,
        tests,
    })
}

/// Packs what all guests share (busybox, init, tracer, tests, tools and their libraries)
/// into `work/common.cpio`.
pub(super) fn pack_common(work: &Path, binaries: &Binaries, modes: &[Mode]) -> Result<PathBuf> {
    let stage = work.join("common");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    for dir in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "etc/tracer-vm",
        "opt/tracer/tests",
    ] {
        fs::create_dir_all(stage.join(dir))?;
    }
    set_mode(&stage.join("tmp"), 0o1777)?;

    let busybox = Path::new("/bin/busybox");
    copy(busybox, &stage.join("bin/busybox"))?;
    let init = stage.join("init");
    fs::write(&init, include_str!("init.sh"))?;
    set_mode(&init, 0o755)?;
    let modes: Vec<&str> = modes.iter().map(|mode| mode.name()).collect();
    fs::write(
        stage.join("etc/tracer-vm/config"),
        format!("MODES=\"{}\"\n", modes.join(" ")),
    )?;

    let mut dynamic = Vec::new();
    strip(&binaries.tracer, &stage.join("opt/tracer/tracer"))?;
    dynamic.push(binaries.tracer.clone());
    for (name, path) in &binaries.tests {
        strip(path, &stage.join("opt/tracer/tests").join(name))?;
        dynamic.push(path.clone());
    }
    for tool in GUEST_TOOLS {
        let tool = Path::new(tool);
        copy(tool, &stage.join(tool.strip_prefix("/")?))?;
        dynamic.push(tool.to_path_buf());
    }
    // Copying the host's libraries (and its dynamic loader) keeps the normal glibc
    // build: a static build would need another target and a second build of everything.
    for library in shared_libraries(&dynamic)? {
        copy(&library, &stage.join(library.strip_prefix("/")?))?;
    }

    let archive = work.join("common.cpio");
    cpio(&stage, &archive)?;
    Ok(archive)
}

/// Packs the kernel's modules and their load order, appended to the common archive (the
/// kernel unpacks concatenated cpio archives in order), into the guest's initramfs.
pub(super) fn pack_kernel(work: &Path, image: &KernelImage, common: &Path) -> Result<PathBuf> {
    let stage = work.join(image.kernel.name());
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    let modules = stage.join("lib/modules").join(&image.release);
    fs::create_dir_all(stage.join("etc/tracer-vm"))?;
    let mut load_order = String::new();
    for path in module_load_order(image)? {
        let source = image.modules().join(&path);
        // busybox insmod takes uncompressed modules only.
        let (path, compressed) = match path.strip_suffix(".xz") {
            Some(path) => (path.to_owned(), true),
            None => (path, false),
        };
        let target = modules.join(&path);
        fs::create_dir_all(target.parent().context("a module path has a directory")?)?;
        if compressed {
            let unpacked = Command::new("xz")
                .arg("-dc")
                .arg(&source)
                .output()
                .context("cannot run xz")?;
            if !unpacked.status.success() {
                bail!("xz cannot unpack {}", source.display());
            }
            fs::write(&target, unpacked.stdout)?;
        } else {
            copy(&source, &target)?;
        }
        writeln!(load_order, "{path}")?;
    }
    fs::write(stage.join("etc/tracer-vm/modules"), load_order)?;
    // The kernel's build configuration: the tracer reads CONFIG_HZ from it, as it would on
    // the distribution's own installation.
    let config = format!("boot/config-{}", image.release);
    copy(&image.dir.join(&config), &stage.join(&config))?;

    let archive = work.join(format!("{}.cpio", image.kernel.name()));
    cpio(&stage, &archive)?;
    let initrd = work.join(format!("initrd-{}.cpio", image.kernel.name()));
    let mut bytes =
        fs::read(common).with_context(|| format!("cannot read {}", common.display()))?;
    bytes.extend(fs::read(&archive)?);
    fs::write(&initrd, bytes).with_context(|| format!("cannot write {}", initrd.display()))?;
    Ok(initrd)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Copies `from` without its debug info (symbols stay, for backtraces).
fn strip(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from))
}

/// The shared libraries (with the dynamic loader) that `binaries` load, from `ldd`.
fn shared_libraries(binaries: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut libraries = BTreeSet::new();
    for binary in binaries {
        let output = Command::new("ldd")
            .arg(binary)
            .output()
            .context("cannot run ldd")?;
        if !output.status.success() {
            bail!("ldd cannot list the libraries of {}", binary.display());
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no path.
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let path = line
                .split("=>")
                .last()
                .and_then(|right| right.split_whitespace().next())
                .filter(|path| path.starts_with('/'));
            if let Some(path) = path {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    Ok(libraries)
}

/// Writes the tree under `stage` as a newc cpio archive owned by root.
fn cpio(stage: &Path, archive: &Path) -> Result<()> {
    let mut paths = Vec::new();
    list_tree(stage, Path::new(""), &mut paths)?;
    let output = fs::File::create(archive)
        .with_context(|| format!("cannot create {}", archive.display()))?;
    let mut child = Command::new("cpio")
        .args(["--create", "--format=newc", "--owner=0:0", "--quiet"])
        .current_dir(stage)
        .stdin(Stdio::piped())
        .stdout(output)
        .spawn()
        .context("cannot run cpio")?;
    let mut stdin = child.stdin.take().context("cpio has no stdin")?;
    for path in paths {
        writeln!(stdin, "{}", path.display())?;
    }
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed to pack {} ({status})", stage.display());
    }
    Ok(())
}

/// Every path under `root/dir`, relative to `root`, each directory before its contents.
fn list_tree(root: &Path, dir: &Path, paths: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(dir))
        .with_context(|| format!("cannot read {}", root.join(dir).display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = dir.join(entry.file_name());
        paths.push(path.clone());
        if entry.file_type()?.is_dir() {
            list_tree(root, &path, paths)?;
        }
    }
    Ok(())
}
