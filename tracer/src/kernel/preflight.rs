//! Checks that turn the usual reasons tracing cannot start (kernel version, BTF; the
//! capabilities are [`super::privileges`]') into one clear sentence before the kernel
//! answers with a bare errno.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::kernel::btf::SYS_FS_PATH;

/// The oldest kernel with everything the programs use: the BPF ring buffer (5.8) and
/// `bpf_ktime_get_boot_ns` (5.8).
pub const MIN_KERNEL: KernelVersion = KernelVersion { major: 5, minor: 8 };

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

/// The version of kernel `release`, refused by name when tracer cannot run on it.
pub fn check_kernel(release: &str) -> Result<KernelVersion> {
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
    Ok(version)
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
