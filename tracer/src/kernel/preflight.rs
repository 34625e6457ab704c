//! Checks that turn the usual reasons tracing cannot start (privileges, kernel version,
//! BTF) into one clear sentence before the kernel answers with a bare errno.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::kernel::btf::SYS_FS_PATH;

/// The oldest kernel with everything the programs use: the BPF ring buffer (5.8) and
/// `bpf_ktime_get_boot_ns` (5.8).
pub const MIN_KERNEL: KernelVersion = KernelVersion { major: 5, minor: 8 };

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses the start of a release string such as `6.18.44-fc-v782`.
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Effective capabilities of this process, from `/proc/self/status`.
fn effective_capabilities() -> Result<u64> {
    let status =
        fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .context("/proc/self/status has no CapEff line")?;
    u64::from_str_radix(hex.trim(), 16).context("/proc/self/status has a malformed CapEff line")
}

/// Loading tracing programs takes CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN on kernels
/// older than 5.8 and as the catch-all.
pub fn check_privileges() -> Result<()> {
    let caps = effective_capabilities()?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        bail!("tracer must run as root (or with CAP_BPF and CAP_PERFMON) to load eBPF programs")
    }
}

pub fn check_kernel(release: &str) -> Result<()> {
    let version = KernelVersion::parse(release)
        .with_context(|| format!("cannot read the kernel version from {release:?}"))?;
    if version < MIN_KERNEL {
        bail!(
            "kernel {release} is too old: tracer needs {}.{} or newer (BPF ring buffer)",
            MIN_KERNEL.major,
            MIN_KERNEL.minor
        );
    }
    if !Path::new(SYS_FS_PATH).exists() {
        bail!(
            "kernel {release} has no BTF ({SYS_FS_PATH} is missing): tracer needs CONFIG_DEBUG_INFO_BTF=y"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distro_release_strings() {
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v782"),
            Some(KernelVersion {
                major: 6,
                minor: 18
            })
        );
        assert_eq!(
            KernelVersion::parse("5.10.0-32-cloud-amd64"),
            Some(KernelVersion {
                major: 5,
                minor: 10
            })
        );
        assert_eq!(
            KernelVersion::parse("6.1"),
            Some(KernelVersion { major: 6, minor: 1 })
        );
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn old_kernels_are_refused_by_name() {
        let err = check_kernel("4.19.0-27-amd64").unwrap_err().to_string();
        assert_eq!(
            err,
            "kernel 4.19.0-27-amd64 is too old: tracer needs 5.8 or newer (BPF ring buffer)"
        );
        assert!(check_kernel(&kernel_release()).is_ok());
    }
}
