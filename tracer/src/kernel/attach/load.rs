//! Loading the eBPF object with its globals set: the kernel's layouts, the selection and
//! the ring buffer's configuration. The programs have no CO-RE relocations, so every
//! kernel-dependent offset reaches them this way, before the verifier sees them.

use anyhow::{Result, anyhow};
use aya::{Ebpf, EbpfError, EbpfLoader, maps::MapError};
use tracer_common::{EVENTS_MAP, RingConfig, TracepointLayout, globals};

use super::facts::KernelFacts;
use crate::kernel::{privileges, selector::Selection};

/// The eBPF object built by `build.rs`, embedded so the binary is self-contained.
pub(super) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// What the programs are loaded with, besides what the kernel tells.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions<'a> {
    /// Which connections the programs report.
    pub selection: &'a Selection,
    /// The ring buffer's size: a power of two, a multiple of the page size.
    pub ring_buffer_bytes: u32,
}

/// The programs wake the daemon once this fraction of the ring buffer waits to be read
/// (the daemon also drains it on a short timer).
const WAKEUP_FRACTION: u32 = 8;

/// Loads the eBPF object with every layout set (placeholders for what this kernel
/// lacks: the hooks that need those are not attached).
pub(super) fn load(facts: &KernelFacts, options: LoadOptions) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    // The programs read kernel structs at offsets resolved here (`layout`), not through
    // CO-RE relocations, so the loader needs no kernel BTF (and would parse it).
    loader.btf(None);
    let tracepoint_layouts: Vec<(&str, TracepointLayout)> = facts
        .tracepoints
        .iter()
        .map(|(global, layout)| (*global, layout.clone().unwrap_or(TracepointLayout::ABSENT)))
        .collect();
    for (global, layout) in &tracepoint_layouts {
        loader.override_global(global, layout, true);
    }
    let kernel = facts.kernel.clone().unwrap_or_default();
    loader.override_global(globals::KERNEL, &kernel, true);
    let timer = facts.timer.clone().unwrap_or_default();
    loader.override_global(globals::TIMER, &timer, true);
    let selector = options.selection.globals();
    selector.set(&mut loader);
    let ring = RingConfig {
        wakeup_bytes: u64::from(options.ring_buffer_bytes / WAKEUP_FRACTION),
    };
    loader.override_global(globals::RING, &ring, true);
    loader.map_max_entries(EVENTS_MAP, options.ring_buffer_bytes);
    loader.load(EBPF_OBJECT).map_err(|error| {
        let map_refused = matches!(
            &error,
            EbpfError::MapError(MapError::CreateError { io_error, .. })
                if io_error.kind() == std::io::ErrorKind::PermissionDenied
        );
        let error = anyhow!(error).context("the kernel refused the eBPF object");
        match privileges::memlock_hint().filter(|_| map_refused) {
            Some(hint) => error.context(hint),
            None => error,
        }
    })
}
