//! What the selector rules in the programs read, set by the daemon before load. Each
//! rule's data lives here beside the others, so a new rule (cgroup, address range) adds
//! its global here and its test in `tracer-ebpf`'s `selector`.

/// Port numbers: 0 to 65535.
pub const PORTS: usize = 1 << u16::BITS;
/// Ports in one word of [`PortFilter`].
const PORTS_PER_WORD: u16 = u64::BITS as u16;
/// Words in [`PortFilter`]: one bit for each port.
pub const PORTS_WORDS: usize = PORTS / PORTS_PER_WORD as usize;

/// The traced ports, set before load as a read-only global: bit `port % 64` of word
/// `port / 64` (see [`PortFilter::bit`]). Read-only data needs no map lookup: checking a
/// port is one load.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortFilter {
    pub words: [u64; PORTS_WORDS],
}

impl PortFilter {
    pub const EMPTY: Self = Self {
        words: [0; PORTS_WORDS],
    };

    /// Every port: the ports of a workload selection without `--port`.
    pub const ALL: Self = Self {
        words: [u64::MAX; PORTS_WORDS],
    };

    /// Where `port`'s bit is: the index of its word, and the bit within that word. The
    /// programs read that one word themselves (volatile, so the compiler cannot fold the
    /// placeholder global), so this is all the filter's layout there is to share.
    #[inline(always)]
    pub const fn bit(port: u16) -> (usize, u64) {
        (
            (port / PORTS_PER_WORD) as usize,
            1 << (port % PORTS_PER_WORD),
        )
    }

    pub fn with_ports(ports: &[u16]) -> Self {
        let mut filter = Self::EMPTY;
        for &port in ports {
            let (word, bit) = Self::bit(port);
            filter.words[word] |= bit;
        }
        filter
    }
}

// SAFETY: plain `#[repr(C)]` data, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortFilter {}

/// The rules beyond the ports, set before load: which are on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectorRules {
    /// 1: the connection's socket must be in a cgroup of [`SELECTED_CGROUPS_MAP`] or
    /// below one (up to [`CGROUP_DEPTH`] levels).
    pub cgroups: u8,
    /// 1: the connection's local or remote address must be in a network of
    /// [`SELECTED_NETS_MAP`].
    pub nets: u8,
    pub _pad: [u8; 6],
}

// SAFETY: plain `#[repr(C)]` data with explicit padding, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SelectorRules {}

/// The selected cgroups' ids (value unused), kept current by the daemon as cgroups are
/// removed and made again.
pub const SELECTED_CGROUPS_MAP: &str = "SELECTED_CGROUPS";
/// Cgroups the selection names at most.
pub const SELECTED_CGROUPS: u32 = 256;
/// Levels of a socket's cgroup and its ancestors compared with the selection: deeper
/// than a Kubernetes container's cgroup (six below the root with the systemd driver).
pub const CGROUP_DEPTH: usize = 12;

/// The selected networks, an LPM trie keyed by [`net_key`] addresses (value unused).
pub const SELECTED_NETS_MAP: &str = "SELECTED_NETS";
/// Networks the selection names at most.
pub const SELECTED_NETS: u32 = 256;
/// Bits of a [`net_key`] address.
pub const NET_KEY_BITS: u32 = 128;
/// Where an IPv4 address sits in a [`net_key`]: after the 96 bits of `::ffff:0:0/96`.
pub const NET_KEY_V4_PREFIX: u32 = 96;

/// An address as the net rule's trie keys it: IPv6 as it is, IPv4 mapped to IPv6
/// (`::ffff:a.b.c.d`, RFC 4291), so one trie holds both families and an IPv4 peer of an
/// IPv6 socket matches its IPv4 network.
#[inline(always)]
pub const fn net_key_v4(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}
