//! Least privilege: the capabilities tracing needs, checked before starting, and all of
//! them dropped once the programs are attached.
//!
//! Starting takes CAP_BPF (load the programs, create their maps) and CAP_PERFMON (attach
//! them), or CAP_SYS_ADMIN which covers both; as a user other than root also
//! CAP_DAC_READ_SEARCH (tracefs, where the tracepoints' formats are, is readable by root
//! only) and CAP_SYSLOG (kernel addresses in /proc/kallsyms, for the keepalive timer
//! fallback). Those two are reported where they are missed (`tracefs`, `kallsyms`), since
//! a differently mounted tracefs or a kernel with fentry does without them.
//!
//! Two more are optional, used before the drop: CAP_SYS_ADMIN to enter other network
//! namespaces and CAP_SYS_PTRACE to read other processes' namespaces and descriptors, for
//! the connections open at start there and their owners (`pipeline::existing`).
//!
//! Once attached, tracing needs no capability: the ring buffer is mapped into memory, maps
//! are read through file descriptors opened while privileged (since 5.19 the kernel checks
//! capabilities when a BPF object is created, not when it is used), sock_diag lists TCP
//! sockets to anyone, and the output file is reopened with the user's own permissions.

use std::fs;

use anyhow::{Context as _, Result, bail};
use rustix::thread::{
    CapabilitySet, CapabilitySets, capabilities, clear_ambient_capability_set, set_capabilities,
};

use crate::kernel::preflight::{KernelVersion, kernel_release};

/// The first kernel that charges BPF maps to the memory cgroup instead of the process's
/// locked-memory limit (RLIMIT_MEMLOCK), which aya raises only with CAP_SYS_RESOURCE.
const MAPS_OUTSIDE_MEMLOCK: KernelVersion = KernelVersion {
    major: 5,
    minor: 11,
};

/// Why the kernel may have refused to create the maps: before 5.11 they count against a
/// locked-memory limit that an unprivileged process cannot raise itself. `None` on later
/// kernels or without a limit.
pub fn memlock_hint() -> Option<String> {
    let version = KernelVersion::parse(&kernel_release())?;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current?;
    (version < MAPS_OUTSIDE_MEMLOCK).then(|| {
        format!(
            "kernels before 5.11 charge eBPF maps to the locked-memory limit, here {} KiB: raise it (LimitMEMLOCK=infinity in a systemd unit, ulimit -l unlimited) or give tracer CAP_SYS_RESOURCE",
            limit / 1024
        )
    })
}

/// The first kernel that lets a process without CAP_BPF read a map through a file
/// descriptor it has while `kernel.unprivileged_bpf_disabled` is set (Debian sets 2).
const FD_READS_WITHOUT_CAP_BPF: KernelVersion = KernelVersion {
    major: 5,
    minor: 19,
};

const UNPRIVILEGED_BPF_DISABLED: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

/// Loading and attaching the programs takes CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
pub fn check_can_attach() -> Result<()> {
    let effective = capabilities(None)
        .context("cannot read this process's capabilities")?
        .effective;
    let has = |capability| effective.intersects(capability | CapabilitySet::SYS_ADMIN);
    let missing: Vec<&str> = [
        (CapabilitySet::BPF, "CAP_BPF"),
        (CapabilitySet::PERFMON, "CAP_PERFMON"),
    ]
    .into_iter()
    .filter(|&(capability, _)| !has(capability))
    .map(|(_, name)| name)
    .collect();
    if !missing.is_empty() {
        bail!(
            "missing {}: tracer needs CAP_BPF to load its eBPF programs and CAP_PERFMON to attach them; run it as root or grant them (see docs/deploy.md)",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// `kernel.unprivileged_bpf_disabled`; set unless it reads 0.
fn unprivileged_bpf_disabled() -> Option<String> {
    let value = fs::read_to_string(UNPRIVILEGED_BPF_DISABLED)
        .map_or_else(|_| "unreadable".to_owned(), |text| text.trim().to_owned());
    (value != "0").then_some(value)
}

/// Drops every capability (effective, permitted, inheritable and ambient), so nothing
/// the daemon does from now on runs privileged. Kernels before 5.19 with
/// `kernel.unprivileged_bpf_disabled` set refuse map reads without CAP_BPF, so there the
/// daemon keeps CAP_BPF alone for the lost-event counter, and says so.
pub fn drop_all(kernel: KernelVersion) -> Result<()> {
    let held = capabilities(None).context("cannot read this process's capabilities")?;
    let mut keep = CapabilitySet::empty();
    if kernel < FD_READS_WITHOUT_CAP_BPF
        && let Some(setting) = unprivileged_bpf_disabled()
        && held.permitted.contains(CapabilitySet::BPF)
    {
        keep = CapabilitySet::BPF;
        eprintln!(
            "tracer: keeping CAP_BPF: kernels before 5.19 with kernel.unprivileged_bpf_disabled={setting} check it on each map read (the lost-event counter)"
        );
    }
    clear_ambient_capability_set().context("cannot clear the ambient capabilities")?;
    set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )
    .context("cannot drop capabilities")
}
