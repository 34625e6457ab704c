//! The guests' kernels: Debian's cloud images fetched through a private apt configuration
//! and cached in `.vm-cache/kernels`, and the order in which a guest loads their modules.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::Kernel;
use crate::run;

/// Kernel modules loaded in every guest (with their dependencies, from `modules.dep`):
/// the tests build veth pairs, delay or drop packets with netem, and cut traffic with
/// nftables (and reject with an ICMP error). Modules a kernel has built in are skipped.
const MODULES: &[&str] = &[
    "veth",
    "sch_netem",
    "nf_tables",
    "nft_reject_inet",
    "tcp_diag",
];

/// apt with its own sources list, state and cache under `.vm-cache/apt`.
pub(super) struct Apt {
    root: PathBuf,
    updated: bool,
}

impl Apt {
    pub(super) fn new(root: &Path) -> Result<Self> {
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
pub(super) struct KernelImage {
    pub(super) kernel: Kernel,
    pub(super) release: String,
    pub(super) dir: PathBuf,
}

impl KernelImage {
    pub(super) fn modules(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.release)
    }
}

/// The cached kernel, or fetches, extracts and caches it. The cache directory appears
/// only once complete, so an interrupted fetch is redone.
pub(super) fn fetch_kernel(apt: &mut Apt, kernels: &Path, kernel: Kernel) -> Result<KernelImage> {
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
pub(super) fn module_load_order(image: &KernelImage) -> Result<Vec<String>> {
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
}
