//! Names of the globals the daemon sets before load: each is a `#[no_mangle]` static of
//! the same name in `tracer-ebpf`.

pub const SEND_RESET: &str = "SEND_RESET_LAYOUT";
pub const RECEIVE_RESET: &str = "RECEIVE_RESET_LAYOUT";
pub const RETRANSMIT_SKB: &str = "RETRANSMIT_SKB_LAYOUT";
pub const RETRANSMIT_SYNACK: &str = "RETRANSMIT_SYNACK_LAYOUT";
pub const TIMER: &str = "TIMER_LAYOUT";
pub const KERNEL: &str = "KERNEL_LAYOUT";
pub const PORT_FILTER: &str = "PORT_FILTER";
pub const SELECTOR_RULES: &str = "SELECTOR_RULES";
pub const RING: &str = "RING_CONFIG";
