//! An empty program: what any program on a tracepoint costs before it does anything (the
//! kernel's dispatch, and `bpf_stats`' own timing). The daemon never attaches it;
//! `cargo xtask bench` attaches it beside the tracer's programs on their tracepoints and
//! prints each program's cost next to it, the floor a filter cannot go under.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

#[raw_tracepoint]
pub fn floor(_ctx: RawTracePointContext) -> i32 {
    0
}
