//! Loading and attaching the eBPF programs, in four parts: the programs each hook has by
//! each mechanism and the order `auto` tries them in ([`catalogue`]), what this kernel
//! offers them ([`facts`]), the globals they are loaded with ([`load`]), and attaching
//! each hook by the first mechanism that works ([`fallback`]); the TLS libraries' uprobes,
//! attached per library file, are apart ([`tls`]).

mod catalogue;
mod facts;
mod fallback;
mod load;
#[cfg(test)]
mod tests;
mod tls;

pub use catalogue::{AttachMode, Hook, Mechanism, misses_are_lost_events};
pub use fallback::{AttachPlan, Availability, Probes, attach, probe_all, probe_tls};
pub use load::LoadOptions;
pub use tls::{TlsMode, TlsPlan};
