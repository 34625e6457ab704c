//! The selection (which connections to trace) and what the kernel is told for it: the
//! one place that turns the first into the second, as the eBPF `selector` module is the
//! one place that reads it back. A new selector rule adds its field to [`Selection`] and
//! its global in [`SelectorGlobals`].

use aya::EbpfLoader;
use tracer_common::{PortFilter, globals};

/// Which connections to trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// A connection is traced when its local or remote port is one of these.
    pub ports: Vec<u16>,
}

/// The globals the selector's rules read in the kernel, built from a [`Selection`]. They
/// live apart from it because the loader borrows them until the object is loaded.
pub struct SelectorGlobals {
    port_filter: PortFilter,
}

impl Selection {
    pub fn globals(&self) -> SelectorGlobals {
        SelectorGlobals {
            port_filter: PortFilter::with_ports(&self.ports),
        }
    }
}

impl SelectorGlobals {
    /// Sets every selector global of the object `loader` will load.
    pub fn set<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader.override_global(globals::PORT_FILTER, &self.port_filter, true);
    }
}
