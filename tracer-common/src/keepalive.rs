//! The keepalive hook: probes the keepalive timer sent, and connections it killed.

use crate::Endpoints;

/// The keepalive settings in force for a socket: its own (`TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL`, `TCP_KEEPCNT`) or the namespace's sysctl defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// Idle time before the first probe, in jiffies.
    pub time_jiffies: u32,
    /// Time between probes, in jiffies.
    pub interval_jiffies: u32,
    /// Probes without answer before the connection is killed.
    pub probes: u8,
    pub _pad: [u8; 7],
}

/// The keepalive timer sent a probe (`probe` is its number, 1-based) or killed the
/// connection because `probe` probes went unanswered.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub endpoints: Endpoints,
    pub settings: KeepaliveSettings,
    pub probe: u8,
    pub _pad: [u8; 7],
}
