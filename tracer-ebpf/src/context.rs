//! Whether the CPU is serving a softirq. TCP runs most transitions from the network
//! receive softirq, where the current task is whatever the softirq interrupted: its pid
//! and comm say nothing about the socket. eBPF cannot read `preempt_count` portably, so
//! the `irq:softirq_entry`/`irq:softirq_exit` tracepoints keep a per-CPU flag instead.
//! They fire for every softirq on the host, so they are raw tracepoints (no record is
//! formatted for them) that store one flag.

use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};

#[map(name = "IN_SOFTIRQ")]
static IN_SOFTIRQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn set_in_softirq(value: u32) {
    if let Some(flag) = IN_SOFTIRQ.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, and softirqs do not nest on one CPU.
        unsafe { *flag = value };
    }
}

#[raw_tracepoint(tracepoint = "softirq_entry")]
pub fn softirq_entry(_ctx: RawTracePointContext) -> i32 {
    set_in_softirq(1);
    0
}

#[raw_tracepoint(tracepoint = "softirq_exit")]
pub fn softirq_exit(_ctx: RawTracePointContext) -> i32 {
    set_in_softirq(0);
    0
}

/// True when this CPU runs in process context (not serving a softirq).
#[inline(always)]
pub fn in_process_context() -> bool {
    IN_SOFTIRQ.get(0).is_none_or(|flag| *flag == 0)
}
