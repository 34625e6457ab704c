//! Types shared by the eBPF programs (`tracer-ebpf`) and the daemon (`tracer`).
//!
//! One module per hook, each with its record type, constants and `Pod` impls, so a new
//! hook adds a module rather than growing a list. Every record in the ring buffer is an
//! [`Event`]: an [`EventHeader`] whose `kind` says which payload follows. The `layout`
//! types carry what the programs must know about the running kernel; the daemon sets them,
//! the selection and the ring's configuration as read-only [`globals`] before load. All
//! types are `#[repr(C)]` with explicit padding so both sides agree byte for byte.
#![no_std]

pub mod accept;
pub mod data;
pub mod endpoints;
pub mod globals;
pub mod header;
pub mod keepalive;
pub mod layout;
pub mod programs;
pub mod reset;
pub mod retransmit;
pub mod ring;
pub mod selector;
pub mod state_change;
pub mod timewait;
pub mod tls;

pub use accept::Accepted;
pub use data::{DATA_RECEIVED, DATA_SENT, DataTurn};
pub use endpoints::{AF_INET, AF_INET6, Endpoints, IPPROTO_TCP};
pub use header::{Event, EventHeader, EventKind, FLAG_PROCESS_CONTEXT};
pub use keepalive::{Keepalive, KeepaliveSettings};
pub use layout::{
    ENDPOINTS_SOCKADDR, ENDPOINTS_SPLIT, EndpointLayout, FIELD_ABSENT, KernelField, KernelLayout,
    SOCK_HEAD, SOCKADDR_IN6_BYTES, TimerLayout, TracepointLayout,
};
pub use reset::{NO_REASON, RESET_RECEIVED, RESET_SENT, Reset};
pub use retransmit::{RETRANSMIT_SEGMENT, RETRANSMIT_SYNACK, Retransmit};
pub use ring::{EMIT_COUNTS_MAP, EVENTS_MAP, EmitCounts, MIN_RING_BYTES, RingConfig};
pub use selector::{
    CGROUP_DEPTH, NET_KEY_BITS, NET_KEY_V4_PREFIX, PORTS, PORTS_WORDS, PortFilter,
    SELECTED_CGROUPS, SELECTED_CGROUPS_MAP, SELECTED_NETS, SELECTED_NETS_MAP, SelectorRules,
    net_key_v4,
};
pub use state_change::{
    CLOSE_ALL_ACKED, CLOSE_FIN_RECEIVED, Close, NO_DATA, NO_STATE, StateChange, TCP_CLOSE,
};
pub use timewait::{TIMEWAIT_PEER_DATA, TIMEWAIT_PEER_FIN, TIMEWAIT_PEER_RESET, TimewaitEnd};
pub use tls::{TLS_OPENSSL, TlsHandshake};
