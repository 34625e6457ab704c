//! The kernel side: whether this kernel can run tracer ([`preflight`]) and with which
//! capabilities, dropped once attached ([`privileges`]), what it offers
//! (BTF, tracefs, kallsyms, its build configuration), the layouts the eBPF programs need
//! ([`layout`]) and units the decoder needs ([`units`]), the selection the programs are told
//! ([`selector`]), the TCP settings records depend on ([`sysctl`]) and the attach plan that
//! loads and attaches them ([`attach`]).

pub mod attach;
pub mod btf;
pub mod kallsyms;
pub mod kconfig;
pub mod layout;
pub mod preflight;
pub mod privileges;
pub mod program_stats;
pub mod selector;
pub mod sysctl;
pub mod tracefs;
pub mod units;
