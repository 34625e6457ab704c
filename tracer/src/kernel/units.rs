//! What turning kernel numbers into units and names takes, read once at start-up from
//! the running kernel: its tick rate (keepalive times are kept in jiffies) and the names
//! of its reset reasons. The decoder applies them; they belong to the kernel side.

use std::collections::BTreeMap;

use crate::kernel::{btf::KernelBtf, kconfig};

/// What turning kernel numbers into units and names takes, read once at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelUnits {
    /// The kernel's `CONFIG_HZ` (jiffies per second), when known.
    pub hz: Option<u32>,
    /// `enum sk_rst_reason` from BTF: value -> name without `SK_RST_REASON_`.
    pub reset_reasons: BTreeMap<u32, String>,
}

impl KernelUnits {
    /// The running kernel's: HZ from its build configuration, reset reasons from BTF.
    /// Both are conveniences, so what is missing is a warning: keepalive times are then
    /// null, reset reasons numbers.
    pub fn read(btf: Option<&KernelBtf>, release: &str) -> Self {
        let hz = kconfig::hz(release);
        if hz.is_none() {
            eprintln!(
                "tracer: warning: the kernel's CONFIG_HZ is unknown (no /proc/config.gz or /boot/config-{release}): keepalive times will be null"
            );
        }
        // Kernels before 6.10 have no reasons; their resets carry none to name.
        let reset_reasons = btf
            .and_then(|btf| btf.enum_values("sk_rst_reason").ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| {
                (
                    value,
                    name.strip_prefix("SK_RST_REASON_")
                        .unwrap_or(&name)
                        .to_owned(),
                )
            })
            .collect();
        Self { hz, reset_reasons }
    }
}
