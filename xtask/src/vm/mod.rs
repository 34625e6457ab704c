//! `cargo xtask vm-test`: the tracer's test binaries on Debian's 5.10, 6.1 and 6.12 cloud
//! kernels under qemu, once per attach mode, because the host kernel lacks the kprobe and
//! fentry hooks and production runs distro kernels from 5.10 upward.
//!
//! Kernels come from the Debian mirror the machine's own apt sources name, through a
//! private apt configuration (the machine's apt state is never touched), and are cached in
//! `.vm-cache/`. Each guest boots an initramfs holding busybox, the tracer, the test
//! binaries with their shared libraries, the host's iproute2/nftables tools and the kernel
//! modules the tests need; its init (`init.sh`) prints `TRACER-VM-*` lines on the
//! serial console, which this module parses into the matrix.

mod guest;
mod initramfs;
mod kernels;
mod report;

use std::{collections::BTreeSet, num::NonZero, sync::Mutex, thread, time::Instant};

use anyhow::{Result, bail};
use clap::ValueEnum;

use self::{
    guest::{Run, boot},
    initramfs::{build_binaries, pack_common, pack_kernel},
    kernels::{Apt, fetch_kernel},
    report::{print_matrix, report_failures},
};
use crate::{setup, workspace_root};

/// Host packages: qemu boots the guests, busybox-static is their userland, cpio packs the
/// initramfs, kmod's depmod orders the modules, xz unpacks 6.12's compressed modules,
/// binutils' strip keeps the initramfs (and so the guest's RAM) small, and dwarves' pahole
/// goes into the guests for the BTF unit tests.
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "binutils",
    "dwarves",
];

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
    // A guest's vCPUs share one host thread (see `guest::qemu`), so guests boot side by
    // side, one per host core. Newest first: the newer the kernel, the longer its run
    // (more hooks to load and verify), and the longest runs should not start last.
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
