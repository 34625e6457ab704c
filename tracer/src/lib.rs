//! tracer: TCP connections seen from inside the kernel.
//!
//! The folders follow the data, top to bottom:
//! - [`kernel`]: what the running kernel offers and how tracer hooks into it: the attach
//!   plan ([`kernel::attach`]) loads the eBPF programs with the layouts found in tracefs
//!   and BTF;
//! - [`pipeline`]: ring buffer records ([`pipeline::reader`]) become [`event`]s
//!   ([`pipeline::decode`], plus the connections already open, [`pipeline::existing`]),
//!   and events become connection records ([`pipeline::correlator`]);
//! - [`output`]: the sinks that write them ([`output::json`] lines, [`output::pretty`]
//!   timelines) and count them ([`output::metrics`], for Prometheus).
//!
//! [`daemon`] runs that flow live, [`replay`] on recorded lines, and [`check`] reports what
//! the kernel allows; [`top`] shows it live to a person, [`report`] as a web page made
//! from a recorded trace. [`event`] and [`clock`] are shared by every stage, [`quantile`]
//! by the two views, and [`vocabulary`] spells every name the output carries. [`cli`] resolves the command line
//! into each stage's plain configuration: nothing below it sees the parser. `fixture`
//! (hidden) builds the inputs of the unit tests and the bench; the daemon does not use it.
// The documented connection line's test spells the whole line in one `json!`.
#![cfg_attr(test, recursion_limit = "256")]

pub mod check;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod event;
#[doc(hidden)]
pub mod fixture;
pub mod kernel;
pub mod output;
pub mod pipeline;
pub mod quantile;
pub mod replay;
pub mod report;
pub mod top;
pub mod vocabulary;
