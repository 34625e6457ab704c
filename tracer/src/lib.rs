//! tracer: TCP connections seen from inside the kernel.
//!
//! Data flow, one module a stage: [`attach`] (the attach plan: load and attach the eBPF
//! programs, with [`layout`] from [`tracefs`] and [`btf`]) -> [`reader`] (ring buffer
//! records) -> [`decode`] (records to [`event`]s; [`existing`] adds the connections open
//! at start) -> [`pipeline`]: [`correlator`] (events to connection records) -> [`sink`]s
//! ([`json`] lines, [`pretty`] timelines). [`daemon`] runs the loop live; [`replay`] runs
//! the pipeline on recorded lines; [`check`] reports what the kernel allows.

pub mod attach;
pub mod btf;
pub mod check;
pub mod cli;
pub mod clock;
pub mod correlator;
pub mod daemon;
pub mod decode;
pub mod event;
pub mod existing;
pub mod json;
pub mod kallsyms;
pub mod kconfig;
pub mod layout;
pub mod pipeline;
pub mod preflight;
pub mod pretty;
pub mod reader;
pub mod replay;
pub mod sink;
pub mod tracefs;
