//! `cargo xtask vm-test`: the tracer's test binaries on Debian's 5.10, 6.1 and 6.12 cloud
//! kernels under qemu, once per attach mode, because the host kernel lacks the kprobe and
//! fentry hooks and production runs distro kernels from 5.10 upward.
//!
//! Kernels come from the Debian mirror the machine's own apt sources name, through a
//! private apt configuration (the machine's apt state is never touched), and are cached in
//! `.vm-cache/`. Each guest boots an initramfs holding busybox, the tracer, the test
//! binaries with their shared libraries, the host's iproute2/nftables tools and the kernel
//! modules the tests need; its init (`vm_init.sh`) prints `TRACER-VM-*` lines on the
//! serial console, which this module parses into the matrix.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read, Write as _},
    num::NonZero,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        mpsc::{RecvTimeoutError, Sender, channel},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use cargo_metadata::{Message, TargetKind};
use clap::ValueEnum;

use crate::{cargo, run, setup, workspace_root};

/// Host packages: qemu boots the guests, busybox-static is their userland, cpio packs the
/// initramfs, kmod's depmod orders the modules, xz unpacks 6.12's compressed modules and
/// binutils' strip keeps the initramfs (and so the guest's RAM) small.
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "binutils",
];

/// Kernel modules loaded in every guest (with their dependencies, from `modules.dep`):
/// the tests build veth pairs, delay or drop packets with netem, and cut traffic with
/// nftables. Modules a kernel has built in are skipped.
const MODULES: &[&str] = &["veth", "sch_netem", "nf_tables", "tcp_diag"];

/// Host tools the tests run in guests, where busybox's `ip` and `tc` lack what they need
/// (netem, nftables). Installed by `setup` (iproute2, nftables).
const GUEST_TOOLS: &[&str] = &["/usr/sbin/ip", "/usr/sbin/tc", "/usr/sbin/nft"];

/// A guest that has not powered off by then is hung. A healthy guest boots in seconds
/// and runs the suite once per mode in well under a minute under TCG.
const TIMEOUT_PER_MODE: Duration = Duration::from_secs(240);
const TIMEOUT_BOOT: Duration = Duration::from_secs(60);

/// How much of the console a failure report shows.
const EXCERPT_LINES: usize = 120;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Kernel {
    #[value(name = "5.10")]
    V5_10,
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
}

impl Kernel {
    const ALL: [Kernel; 3] = [Kernel::V5_10, Kernel::V6_1, Kernel::V6_12];

    fn name(self) -> &'static str {
        match self {
            Kernel::V5_10 => "5.10",
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
        }
    }

    /// The Debian suite and kernel image package. 6.1 names bookworm's metapackage, so
    /// the newest 6.1 is fetched (the cache then keeps it until `.vm-cache` is removed).
    fn package(self) -> (&'static str, &'static str) {
        match self {
            Kernel::V5_10 => ("bullseye", "linux-image-5.10.0-32-cloud-amd64"),
            Kernel::V6_1 => ("bookworm", "linux-image-cloud-amd64"),
            Kernel::V6_12 => ("trixie", "linux-image-6.12.117+deb13-cloud-amd64"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Mode {
    Tracepoint,
    Kprobe,
    Fentry,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Tracepoint, Mode::Kprobe, Mode::Fentry];

    fn name(self) -> &'static str {
        match self {
            Mode::Tracepoint => "tracepoint",
            Mode::Kprobe => "kprobe",
            Mode::Fentry => "fentry",
        }
    }
}

/// Fetches the kernels, builds and packs the tests, boots every kernel, prints
/// the matrix and fails when any cell failed.
pub fn vm_test(kernels: &[Kernel], modes: &[Mode]) -> Result<()> {
    let kernels: BTreeSet<Kernel> = if kernels.is_empty() {
        Kernel::ALL.into()
    } else {
        kernels.iter().copied().collect()
    };
    let modes: Vec<Mode> = modes
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    setup::ensure()?;
    setup::ensure_packages(HOST_PACKAGES)?;

    let started = Instant::now();
    let cache = workspace_root().join(".vm-cache");
    let mut apt = Apt::new(&cache.join("apt"))?;
    let images = kernels
        .iter()
        .map(|&kernel| fetch_kernel(&mut apt, &cache.join("kernels"), kernel))
        .collect::<Result<Vec<_>>>()?;

    let binaries = build_binaries()?;
    let work = workspace_root().join("target/vm");
    let common = pack_common(&work, &binaries, &modes)?;
    let guests = images
        .iter()
        .map(|image| Ok((image, pack_kernel(&work, image, &common)?)))
        .collect::<Result<Vec<_>>>()?;
    // A guest's vCPUs share one host thread (see `qemu`), so guests boot side by side,
    // one per host core. Newest first: the newer the kernel, the longer its run (more
    // hooks to load and verify), and the longest runs should not start last.
    let jobs = thread::available_parallelism().map_or(1, NonZero::get);
    let queue = Mutex::new(guests.iter().rev());
    let mut runs: Vec<Run> = thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut runs = Vec::new();
                    loop {
                        let next = queue.lock().expect("no boot thread panics").next();
                        let Some((image, initrd)) = next else {
                            return Ok(runs);
                        };
                        runs.push(boot(image, initrd, &work, &modes)?);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("no boot thread panics"))
            .collect::<Result<Vec<Vec<Run>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    runs.sort_by_key(|run| run.kernel);

    for run in &runs {
        report_failures(run);
    }
    print_matrix(&runs, &modes, started.elapsed());
    let failed: Vec<&str> = runs
        .iter()
        .filter(|run| !run.passed(&modes))
        .map(|run| run.kernel.name())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the suite failed on kernel {} (details above)",
            failed.join(", ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Kernels

/// apt with its own sources list, state and cache under `.vm-cache/apt`.
struct Apt {
    root: PathBuf,
    updated: bool,
}

impl Apt {
    fn new(root: &Path) -> Result<Self> {
        for dir in [
            "sources.list.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("cannot create {}", root.join(dir).display()))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            updated: false,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        let root = self.root.display();
        for option in [
            format!("Dir::Etc::SourceList={root}/sources.list"),
            format!("Dir::Etc::SourceParts={root}/sources.list.d"),
            format!("Dir::State={root}/state"),
            // Which packages the machine has installed is irrelevant to a download.
            "Dir::State::status=/dev/null".to_owned(),
            format!("Dir::Cache={root}/cache"),
            // The `_apt` user may not write into the workspace.
            "APT::Sandbox::User=root".to_owned(),
            // Only the package lists are needed, not the AppStream metadata.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
        ] {
            command.arg("-o").arg(option);
        }
        command
    }

    /// Downloads the package lists of the kernels' suites, once per run.
    fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        let mirror = debian_mirror()?;
        let sources: String = Kernel::ALL
            .iter()
            .map(|kernel| {
                format!(
                    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {} main\n",
                    kernel.package().0
                )
            })
            .collect();
        let path = self.root.join("sources.list");
        fs::write(&path, sources).with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "xtask: fetching the package lists of bullseye, bookworm and trixie from {mirror}"
        );
        run(self.command("apt-get").args(["update", "-qq"]))?;
        self.updated = true;
        Ok(())
    }

    /// The versioned image package behind `package` in `suite`: a metapackage such as
    /// `linux-image-cloud-amd64` depends on exactly one; a versioned one is itself.
    fn resolve(&self, suite: &str, package: &str) -> Result<String> {
        let output = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", &format!("{package}/{suite}")])
            .output()
            .context("cannot run apt-cache")?;
        if !output.status.success() {
            bail!(
                "{suite} has no package {package}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let image = text
            .lines()
            .filter_map(|line| line.strip_prefix("Depends:"))
            .flat_map(|depends| depends.split([',', '|']))
            .filter_map(|dependency| dependency.split_whitespace().next())
            .find(|name| name.starts_with("linux-image-"));
        Ok(image.unwrap_or(package).to_owned())
    }
}

/// The Debian mirror URL (`http://host/debian`) the machine's own apt sources use.
fn debian_mirror() -> Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut parts: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        parts.sort();
        files.extend(parts);
    }
    for file in files {
        // apt reads only these two formats; other files there (`.disabled`, ...) are off.
        let deb822 = file.extension().is_some_and(|ext| ext == "sources");
        if !deb822 && file.extension().is_none_or(|ext| ext != "list") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        if let Some(mirror) = mirror_in(&text, deb822) {
            return Ok(mirror);
        }
    }
    bail!(
        "no Debian mirror (a URL ending in /debian) in /etc/apt/sources.list or \
         /etc/apt/sources.list.d: vm-test fetches kernels from the machine's own mirror"
    )
}

/// The first Debian mirror URL in an apt sources file, deb822 (`URIs: ...`) or one-line
/// (`deb [options] URL suite components`) format.
fn mirror_in(text: &str, deb822: bool) -> Option<String> {
    text.lines()
        .flat_map(|line| {
            let urls = if deb822 {
                line.strip_prefix("URIs:")
            } else {
                line.trim_start().strip_prefix("deb ")
            };
            // Options and suites hold no "://", URLs always do.
            urls.into_iter()
                .flat_map(str::split_whitespace)
                .filter(|word| word.contains("://"))
        })
        .map(|url| url.trim_end_matches('/'))
        .find(|url| url.ends_with("/debian"))
        .map(str::to_owned)
}

/// An extracted kernel: `vmlinuz` and `lib/modules/<release>` (with `modules.dep`) in `dir`.
struct KernelImage {
    kernel: Kernel,
    release: String,
    dir: PathBuf,
}

impl KernelImage {
    fn modules(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.release)
    }
}

/// The cached kernel, or fetches, extracts and caches it. The cache directory appears
/// only once complete, so an interrupted fetch is redone.
fn fetch_kernel(apt: &mut Apt, kernels: &Path, kernel: Kernel) -> Result<KernelImage> {
    let dir = kernels.join(kernel.name());
    if let Ok(release) = fs::read_to_string(dir.join("release")) {
        let release = release.trim().to_owned();
        if dir.join(format!("boot/config-{release}")).exists() {
            return Ok(KernelImage {
                kernel,
                release,
                dir,
            });
        }
        // Cached by an older xtask that did not keep the configuration.
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    apt.update()?;
    let (suite, package) = kernel.package();
    let image = apt.resolve(suite, package)?;
    println!(
        "xtask: fetching kernel {} ({image} from {suite})",
        kernel.name()
    );

    let partial = kernels.join(format!("{}.partial", kernel.name()));
    if partial.exists() {
        fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    let download = partial.join("download");
    let root = partial.join("root");
    fs::create_dir_all(&download)
        .with_context(|| format!("cannot create {}", download.display()))?;
    // `apt-get download` writes into the current directory.
    run(apt
        .command("apt-get")
        .args(["download", "-qq", &format!("{image}/{suite}")])
        .current_dir(&download))?;
    let deb = only_entry(&download)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;

    let vmlinuz = only_entry_with_prefix(&root.join("boot"), "vmlinuz-")?;
    let release = vmlinuz
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("vmlinuz-"))
        .context("the kernel image has no release in its name")?
        .to_owned();
    rename(&vmlinuz, &partial.join("vmlinuz"))?;
    let config = format!("boot/config-{release}");
    fs::create_dir_all(partial.join("boot"))?;
    rename(&root.join(&config), &partial.join(&config))?;
    // Newer packages (trixie) install modules under /usr/lib.
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|dir| root.join(dir).join(&release))
        .find(|dir| dir.is_dir())
        .with_context(|| format!("{image} has no lib/modules/{release}"))?;
    fs::create_dir_all(partial.join("lib/modules"))?;
    rename(&modules, &partial.join("lib/modules").join(&release))?;
    fs::remove_dir_all(&root)?;
    fs::remove_dir_all(&download)?;
    // The package leaves modules.dep to the installing machine's depmod.
    run(Command::new("depmod").arg("-b").arg(&partial).arg(&release))?;
    fs::write(partial.join("release"), &release)?;
    rename(&partial, &dir)?;
    Ok(KernelImage {
        kernel,
        release,
        dir,
    })
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

fn only_entry(dir: &Path) -> Result<PathBuf> {
    only_entry_with_prefix(dir, "")
}

fn only_entry_with_prefix(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .collect();
    match entries.as_slice() {
        [only] => Ok(only.clone()),
        _ => bail!(
            "expected one {prefix}* file in {}, found {}",
            dir.display(),
            entries.len()
        ),
    }
}

/// The module files (relative to `lib/modules/<release>`) to load for `MODULES`, each
/// after its dependencies.
fn module_load_order(image: &KernelImage) -> Result<Vec<String>> {
    let dir = image.modules();
    let read = |name: &str| {
        fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))
    };
    load_order(&read("modules.dep")?, &read("modules.builtin")?, MODULES)
        .with_context(|| format!("kernel {}", image.release))
}

/// The module files to load for `modules`, given `modules.dep` and `modules.builtin`.
fn load_order(dep: &str, builtin: &str, modules: &[&str]) -> Result<Vec<String>> {
    // `kernel/net/core/foo.ko.xz: kernel/a.ko.xz kernel/b.ko.xz` lists all of foo's
    // dependencies, each after those it depends on: b is loaded first.
    let entries: Vec<(&str, Vec<&str>)> = dep
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(path, deps)| (path, deps.split_whitespace().collect()))
        .collect();
    let module_name = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    let mut order = Vec::new();
    for &module in modules {
        if builtin.lines().any(|path| module_name(path) == module) {
            continue;
        }
        let Some((path, deps)) = entries.iter().find(|(path, _)| module_name(path) == module)
        else {
            bail!("no module {module} in modules.dep");
        };
        for path in deps.iter().rev().chain([path]) {
            if !order.iter().any(|known| known == path) {
                order.push((*path).to_owned());
            }
        }
    }
    Ok(order)
}

// ---------------------------------------------------------------------------------------
// Binaries and initramfs

struct Binaries {
    tracer: PathBuf,
    /// (name in the guest, path)
    tests: Vec<(String, PathBuf)>,
}

/// Builds the tracer and every test executable of the tracer package: the integration
/// tests and the unit tests, which read the running kernel's tracefs and BTF and so mean
/// something in guests too. `cargo test --no-run` builds the tracer binary as well
/// (the integration tests need it), so one command yields both.
fn build_binaries() -> Result<Binaries> {
    println!("xtask: building the tracer and its tests");
    let output = cargo()
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
fn pack_common(work: &Path, binaries: &Binaries, modes: &[Mode]) -> Result<PathBuf> {
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
    fs::write(&init, include_str!("vm_init.sh"))?;
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
fn pack_kernel(work: &Path, image: &KernelImage, common: &Path) -> Result<PathBuf> {
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

// ---------------------------------------------------------------------------------------
// Booting and results

/// What one guest reported.
struct Run {
    kernel: Kernel,
    release: String,
    log: PathBuf,
    elapsed: Duration,
    /// The whole console (and qemu's own messages).
    lines: Vec<String>,
    binaries: Vec<BinaryRun>,
    /// From `TRACER-VM-RESULT` lines.
    cells: Vec<(String, Cell)>,
    /// Why the guest ended without `TRACER-VM-DONE`.
    problem: Option<Problem>,
}

enum Problem {
    Panic,
    Hang(Duration),
    /// qemu exited (with this status) before the guest finished the suite.
    Stopped(String),
}

impl Problem {
    /// For the matrix.
    fn label(&self) -> &'static str {
        match self {
            Problem::Panic => "KERNEL PANIC",
            Problem::Hang(_) => "HUNG",
            Problem::Stopped(_) => "STOPPED EARLY",
        }
    }

    fn describe(&self) -> String {
        match self {
            Problem::Panic => "the kernel panicked".to_owned(),
            Problem::Hang(timeout) => format!(
                "the guest hung: it did not power off within {} s",
                timeout.as_secs()
            ),
            Problem::Stopped(status) => {
                format!("the guest stopped before it finished the suite (qemu {status})")
            }
        }
    }
}

/// One test binary in one mode: where its output starts and ends on the console.
struct BinaryRun {
    mode: String,
    binary: String,
    begin: usize,
    /// (line index, exit status, failed tests), once it ended.
    end: Option<(usize, String, u32)>,
}

enum Cell {
    Counts { passed: u32, failed: u32 },
    Unsupported,
}

impl Run {
    fn cell(&self, mode: Mode) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(name, _)| name == mode.name())
            .map(|(_, cell)| cell)
    }

    /// Every cell passed or is unsupported, and the guest finished.
    fn passed(&self, modes: &[Mode]) -> bool {
        self.problem.is_none()
            && modes.iter().all(|&mode| match self.cell(mode) {
                Some(Cell::Unsupported) => true,
                Some(&Cell::Counts { passed, failed }) => failed == 0 && passed > 0,
                None => false,
            })
    }

    /// The lines from `begin` to `end` (inclusive), at most `EXCERPT_LINES` of the last.
    fn excerpt(&self, begin: usize, end: usize) -> &[String] {
        let end = (end + 1).min(self.lines.len());
        &self.lines[begin.max(end.saturating_sub(EXCERPT_LINES))..end]
    }
}

/// The value of `key=value` in a TRACER-VM line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn count(line: &str, key: &str) -> u32 {
    field(line, key).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Sends every line that `pipe` yields, without its line ending, to `lines`.
fn forward(pipe: impl Read + Send + 'static, lines: Sender<String>) {
    thread::spawn(move || {
        // The console may carry bytes that are not UTF-8; lines are split on bytes.
        for line in BufReader::new(pipe).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

fn qemu(image: &KernelImage, initrd: &Path) -> Result<Child> {
    Command::new("qemu-system-x86_64")
        // KVM is present on these machines but crashes guests: emulate. Multi-threaded
        // TCG lets a vCPU run stale code while the kernel patches a jump label (attaching
        // a tracepoint does) and the guest dies with "Oops: int3"; one thread for both
        // vCPUs keeps code patching atomic for the guest.
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "1024",
        ])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(image.dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        // panic=-1 reboots at once on a panic, and -no-reboot turns that into qemu's exit.
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")
}

/// Boots `image` with `initrd`, logs the console to `work/console-<kernel>.log`, and
/// reads the results from it, killing a guest that outlives its timeout.
fn boot(image: &KernelImage, initrd: &Path, work: &Path, modes: &[Mode]) -> Result<Run> {
    let name = image.kernel.name();
    let log = work.join(format!("console-{name}.log"));
    let mut log_file =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let timeout = TIMEOUT_BOOT + TIMEOUT_PER_MODE * modes.len() as u32;
    println!(
        "xtask: booting kernel {name} ({}), console in {}",
        image.release,
        log.display()
    );
    let started = Instant::now();
    let mut child = qemu(image, initrd)?;
    let (send, receive) = channel();
    forward(
        child.stdout.take().context("qemu has no stdout")?,
        send.clone(),
    );
    forward(child.stderr.take().context("qemu has no stderr")?, send);

    let mut run = Run {
        kernel: image.kernel,
        release: image.release.clone(),
        log,
        elapsed: Duration::ZERO,
        lines: Vec::new(),
        binaries: Vec::new(),
        cells: Vec::new(),
        problem: None,
    };
    let mut done = false;
    loop {
        let line = match receive.recv_timeout(timeout.saturating_sub(started.elapsed())) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                run.problem = Some(Problem::Hang(timeout));
                // Killing qemu ends its pipes, and so the forwarding threads.
                child.kill().context("cannot kill qemu")?;
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        writeln!(log_file, "{line}")
            .with_context(|| format!("cannot write {}", run.log.display()))?;
        let index = run.lines.len();
        // A kernel message may precede a marker on the same console line.
        if let Some(start) = line.find("TRACER-VM-") {
            let marker = &line[start..];
            println!("[{name}] {marker}");
            if marker.starts_with("TRACER-VM-BEGIN") {
                run.binaries.push(BinaryRun {
                    mode: field(marker, "mode").unwrap_or_default().to_owned(),
                    binary: field(marker, "binary").unwrap_or_default().to_owned(),
                    begin: index,
                    end: None,
                });
            } else if marker.starts_with("TRACER-VM-END") {
                if let Some(binary) = run.binaries.last_mut() {
                    binary.end = Some((
                        index,
                        field(marker, "exit").unwrap_or_default().to_owned(),
                        count(marker, "failed"),
                    ));
                }
            } else if marker.starts_with("TRACER-VM-RESULT") {
                let cell = if marker.ends_with(" unsupported") {
                    Cell::Unsupported
                } else {
                    Cell::Counts {
                        passed: count(marker, "passed"),
                        failed: count(marker, "failed"),
                    }
                };
                let mode = field(marker, "mode").unwrap_or_default().to_owned();
                run.cells.push((mode, cell));
            } else if marker.starts_with("TRACER-VM-DONE") {
                done = true;
            }
        }
        run.lines.push(line);
    }
    let status = child.wait().context("cannot wait for qemu")?;
    run.elapsed = started.elapsed();
    if run
        .lines
        .iter()
        .any(|line| line.contains("Kernel panic - not syncing"))
    {
        run.problem = Some(Problem::Panic);
    } else if run.problem.is_none() && !done {
        run.problem = Some(Problem::Stopped(status.to_string()));
    }
    println!(
        "xtask: kernel {name} finished in {} s",
        run.elapsed.as_secs()
    );
    Ok(run)
}

/// The names of the tests libtest reported as failed between two console lines.
fn failed_tests(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .collect()
}

/// Prints, for each failure of `run`, the kernel, mode, binary and tests, and the console
/// around it.
fn report_failures(run: &Run) {
    let kernel = format!("kernel {} ({})", run.kernel.name(), run.release);
    let mut failed = false;
    for binary in &run.binaries {
        let Some((end, exit, failures)) = &binary.end else {
            continue;
        };
        if exit == "0" && *failures == 0 {
            continue;
        }
        failed = true;
        let excerpt = run.excerpt(binary.begin, *end);
        let tests = failed_tests(excerpt);
        let what = if tests.is_empty() {
            format!("exited with status {exit} without a failed test named")
        } else {
            format!("failed {}", tests.join(", "))
        };
        eprintln!(
            "\nvm-test: {kernel}, mode {}, {}: {what}\n{}",
            binary.mode,
            binary.binary,
            excerpt.join("\n")
        );
    }
    if let Some(problem) = &run.problem {
        failed = true;
        let running = match run.binaries.last() {
            Some(binary) if binary.end.is_none() => {
                let output = &run.lines[binary.begin..];
                let slow: Vec<&str> = output
                    .iter()
                    .filter_map(|line| {
                        line.strip_prefix("test ")?
                            .strip_suffix(" has been running for over 60 seconds")
                    })
                    .collect();
                let slow = if slow.is_empty() {
                    String::new()
                } else {
                    format!("; still running: {}", slow.join(", "))
                };
                format!(
                    " while running {} in mode {}{slow}",
                    binary.binary, binary.mode
                )
            }
            _ => String::new(),
        };
        let last = run.lines.len().saturating_sub(1);
        eprintln!(
            "\nvm-test: {kernel}: {}{running}; the console's last lines:\n{}",
            problem.describe(),
            run.excerpt(0, last).join("\n")
        );
    }
    if failed {
        eprintln!(
            "vm-test: the whole console of {kernel} is in {}",
            run.log.display()
        );
    }
}

fn print_matrix(runs: &[Run], modes: &[Mode], total: Duration) {
    let mut rows = vec![{
        let mut header = vec!["kernel".to_owned()];
        header.extend(modes.iter().map(|mode| mode.name().to_owned()));
        header.extend(["guest".to_owned(), "time".to_owned()]);
        header
    }];
    for run in runs {
        let mut row = vec![format!("{} ({})", run.kernel.name(), run.release)];
        for &mode in modes {
            row.push(match run.cell(mode) {
                Some(Cell::Unsupported) => "unsupported".to_owned(),
                Some(&Cell::Counts { passed, failed: 0 }) if passed > 0 => {
                    format!("passed {passed}")
                }
                Some(&Cell::Counts { passed, failed }) => {
                    format!("FAILED {failed} of {}", passed + failed)
                }
                None => "NO RESULT".to_owned(),
            });
        }
        row.push(run.problem.as_ref().map_or("ok", Problem::label).to_owned());
        row.push(format!("{} s", run.elapsed.as_secs()));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    println!("\nvm-test matrix (tests passed per kernel and attach mode):");
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("  {}", cells.join("  ").trim_end());
    }
    println!("total {} s", total.as_secs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_debian_mirror_in_both_source_formats() {
        let deb822 = "Types: deb\n\
                      # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://deb.debian.org/debian\n\
                      Suites: bookworm bookworm-updates\n\n\
                      Types: deb\n\
                      URIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_in(deb822, true).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let list = "deb http://security.debian.org/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://ftp.de.debian.org/debian/ bookworm main\n";
        assert_eq!(
            mirror_in(list, false).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(
            mirror_in("deb https://example.org/apt stable main\n", false),
            None
        );
    }

    #[test]
    fn loads_dependencies_first_and_skips_builtin_modules() {
        let dep = "kernel/drivers/net/veth.ko.xz:\n\
                   kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz kernel/lib/libcrc32c.ko.xz\n\
                   kernel/net/sched/sch_netem.ko.xz:\n";
        let builtin = "kernel/net/ipv6/ipv6.ko\n";
        assert_eq!(
            load_order(dep, builtin, &["nf_tables", "ipv6", "veth"]).unwrap(),
            [
                "kernel/lib/libcrc32c.ko.xz",
                "kernel/net/netfilter/nfnetlink.ko.xz",
                "kernel/net/netfilter/nf_tables.ko.xz",
                "kernel/drivers/net/veth.ko.xz",
            ]
        );
        let error = load_order(dep, builtin, &["vxlan"]).unwrap_err();
        assert_eq!(error.to_string(), "no module vxlan in modules.dep");
    }

    #[test]
    fn reads_the_guest_result_lines() {
        let line = "TRACER-VM-END mode=kprobe binary=test-state_changes exit=101 passed=5 failed=2";
        assert_eq!(field(line, "binary"), Some("test-state_changes"));
        assert_eq!(field(line, "exit"), Some("101"));
        assert_eq!(count(line, "failed"), 2);
        assert_eq!(field(line, "mod"), None);
        let output: Vec<String> = [
            "test a ... ok",
            "test b::c ... FAILED",
            "test d has been running for over 60 seconds",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(failed_tests(&output), ["b::c"]);
    }
}
