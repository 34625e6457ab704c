//! tracer: TCP connections seen from inside the kernel.
//!
//! Data flow, one module a stage: [`probes`] (load and attach the eBPF programs) ->
//! [`reader`] (ring buffer records) -> [`decode`] (records to [`event`]s) -> [`json`]
//! (the JSON lines sink). [`daemon`] runs the loop.

pub mod cli;
pub mod clock;
pub mod daemon;
pub mod decode;
pub mod event;
pub mod json;
pub mod preflight;
pub mod probes;
pub mod reader;
pub mod tracefs;
