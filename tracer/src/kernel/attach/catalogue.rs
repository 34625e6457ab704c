//! The programs of the eBPF object, by hook and mechanism, and the order `--attach auto`
//! tries the mechanisms in:
//! - state changes: tracepoint (`sock:inet_sock_set_state`, a stable ABI), then fentry,
//!   then kprobe (on `inet_sk_state_store` and `inet_sk_set_state`, the functions that
//!   fire the tracepoint);
//! - keepalive: fentry/fexit, then kprobe/kretprobe on `tcp_keepalive_timer`, then the
//!   `timer:timer_expire_entry`/`exit` tracepoints (they fire for every timer in the
//!   system, so they are the fallback);
//! - resets and retransmits: their `tcp:` tracepoints, the only mechanism they have;
//! - timewait sockets in FIN_WAIT2 (how a connection closed first by this side ends):
//!   kprobe on `tcp_timewait_state_process` (no tracepoint reports them; see the eBPF
//!   side for why not fentry);
//! - accept: kretprobe on `inet_csk_accept`.
//!
//! The tracepoints that fire for all traffic (state changes, sends and receives,
//! softirqs, timers) are attached raw: the program gets the tracepoint's arguments, and
//! the kernel formats no record for it. The reset and retransmit tracepoints fire only
//! for resets and retransmits, and their records carry the connection's ends even when
//! no socket does, so they stay classic, read at the offsets tracefs gives.

use tracer_common::programs as name;

use crate::vocabulary::names;

/// `--attach`: the best mechanism each hook has on this kernel, or one for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Tracepoint,
    Kprobe,
    Fentry,
}

names!(AttachMode as "attach mode" {
    Auto => "auto",
    Tracepoint => "tracepoint",
    Kprobe => "kprobe",
    Fentry => "fentry",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    StateChange,
    Keepalive,
    Reset,
    Retransmit,
    /// Data direction turns, for exchanges and idle time.
    Data,
    /// Who accepted a connection.
    Accept,
    /// The peer's FIN (or reset, or data) reaching a timewait socket in FIN_WAIT2.
    Timewait,
}

names!(Hook as "hook" {
    StateChange => "state_change",
    Keepalive => "keepalive",
    Reset => "reset",
    Retransmit => "retransmit",
    Data => "data",
    Accept => "accept",
    Timewait => "timewait",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Tracepoint,
    Kprobe,
    Fentry,
}

names!(Mechanism as "attach mechanism" {
    Tracepoint => "tracepoint",
    Kprobe => "kprobe",
    Fentry => "fentry",
});

/// One program of the eBPF object (`program`, a name from `tracer_common::programs`) and
/// where it attaches.
#[derive(Clone, Copy, Debug)]
pub(super) enum Program {
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint.
    RawTracepoint {
        program: &'static str,
        name: &'static str,
    },
    Kprobe {
        program: &'static str,
        function: &'static str,
    },
    Kretprobe {
        program: &'static str,
        function: &'static str,
    },
    FEntry {
        program: &'static str,
        function: &'static str,
    },
    FExit {
        program: &'static str,
        function: &'static str,
    },
}

impl Program {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::RawTracepoint { program, .. }
            | Self::Tracepoint { program, .. }
            | Self::Kprobe { program, .. }
            | Self::Kretprobe { program, .. }
            | Self::FEntry { program, .. }
            | Self::FExit { program, .. } => program,
        }
    }
}

/// A classic tracepoint whose program is named after it.
const fn tp(program: &'static str, category: &'static str) -> Program {
    Program::Tracepoint {
        program,
        category,
        name: program,
    }
}

/// A raw tracepoint whose program is named after it.
const fn raw(name: &'static str) -> Program {
    Program::RawTracepoint {
        program: name,
        name,
    }
}

/// Attached before any hook, so the first events already know their context.
pub(super) const SOFTIRQ_TRACKING: &[Program] =
    &[raw(name::SOFTIRQ_ENTRY), raw(name::SOFTIRQ_EXIT)];

/// The raw tracepoints and the leading arguments their programs read, as the kernel's
/// BTF declares them (qualifiers aside).
pub(super) const RAW_ARGUMENTS: &[(&str, &[&str])] = &[
    (name::SOFTIRQ_ENTRY, &[]),
    (name::SOFTIRQ_EXIT, &[]),
    (name::INET_SOCK_SET_STATE, &["struct sock *", "int", "int"]),
    (name::SOCK_SEND_LENGTH, &["struct sock *", "int"]),
    (name::SOCK_RECV_LENGTH, &["struct sock *", "int"]),
    (name::TCP_PROBE, &["struct sock *", "struct sk_buff *"]),
    (name::TIMER_EXPIRE_ENTRY, &["struct timer_list *"]),
    (name::TIMER_EXPIRE_EXIT, &["struct timer_list *"]),
];

impl Hook {
    /// `--attach auto`'s order of preference (see the module docs for why).
    pub fn preference(self) -> &'static [Mechanism] {
        use Mechanism::*;
        match self {
            Hook::StateChange => &[Tracepoint, Fentry, Kprobe],
            Hook::Keepalive => &[Fentry, Kprobe, Tracepoint],
            Hook::Reset | Hook::Retransmit => &[Tracepoint],
            Hook::Data => &[Tracepoint, Fentry, Kprobe],
            Hook::Accept => &[Kprobe],
            Hook::Timewait => &[Kprobe],
        }
    }

    /// The mechanisms to try for this hook in `mode`: a forced mechanism where the hook
    /// has it, else the tracepoint where it has one (the stable baseline a forced mode
    /// never avoids), else none.
    pub fn candidates(self, mode: AttachMode) -> Vec<Mechanism> {
        let forced = match mode {
            AttachMode::Auto => return self.preference().to_vec(),
            AttachMode::Tracepoint => Mechanism::Tracepoint,
            AttachMode::Kprobe => Mechanism::Kprobe,
            AttachMode::Fentry => Mechanism::Fentry,
        };
        [forced, Mechanism::Tracepoint]
            .into_iter()
            .find(|mechanism| self.preference().contains(mechanism))
            .into_iter()
            .collect()
    }

    /// Whether tracing refuses to start without this hook: state changes always; in a
    /// forced mode also the keepalive timer, whose mechanisms are what forcing is for.
    pub fn required(self, mode: AttachMode) -> bool {
        self == Hook::StateChange || (self == Hook::Keepalive && mode != AttachMode::Auto)
    }

    /// The programs that carry this hook by `mechanism`, attached in this order.
    pub(super) fn programs(self, mechanism: Mechanism) -> &'static [Program] {
        use Mechanism::*;
        match (self, mechanism) {
            (Hook::StateChange, Tracepoint) => STATE_CHANGE_TRACEPOINT,
            (Hook::StateChange, Kprobe) => STATE_CHANGE_KPROBE,
            (Hook::StateChange, Fentry) => STATE_CHANGE_FENTRY,
            (Hook::Keepalive, Tracepoint) => KEEPALIVE_TRACEPOINT,
            (Hook::Keepalive, Kprobe) => KEEPALIVE_KPROBE,
            (Hook::Keepalive, Fentry) => KEEPALIVE_FENTRY,
            (Hook::Reset, _) => RESET_TRACEPOINT,
            (Hook::Retransmit, _) => RETRANSMIT_TRACEPOINT,
            (Hook::Data, Tracepoint) => DATA_TRACEPOINT,
            (Hook::Data, Kprobe) => DATA_KPROBE,
            (Hook::Data, Fentry) => DATA_FENTRY,
            (Hook::Accept, _) => ACCEPT_KPROBE,
            (Hook::Timewait, _) => TIMEWAIT_KPROBE,
        }
    }
}

/// The state changes, and those the first misses, attached in this order: the kernel runs
/// a tracepoint's programs in the order they were attached (see the eBPF side).
const STATE_CHANGE_TRACEPOINT: &[Program] = &[
    raw(name::INET_SOCK_SET_STATE),
    Program::RawTracepoint {
        program: name::INET_SOCK_SET_STATE_NESTED,
        name: "inet_sock_set_state",
    },
];
const STATE_CHANGE_KPROBE: &[Program] = &[
    Program::Kprobe {
        program: name::INET_SK_STATE_STORE_KPROBE,
        function: "inet_sk_state_store",
    },
    Program::Kprobe {
        program: name::INET_SK_SET_STATE_KPROBE,
        function: "inet_sk_set_state",
    },
];
const STATE_CHANGE_FENTRY: &[Program] = &[
    Program::FEntry {
        program: name::INET_SK_STATE_STORE_FENTRY,
        function: "inet_sk_state_store",
    },
    Program::FEntry {
        program: name::INET_SK_SET_STATE_FENTRY,
        function: "inet_sk_set_state",
    },
];
const KEEPALIVE_TRACEPOINT: &[Program] =
    &[raw(name::TIMER_EXPIRE_ENTRY), raw(name::TIMER_EXPIRE_EXIT)];
const KEEPALIVE_KPROBE: &[Program] = &[
    Program::Kprobe {
        program: name::TCP_KEEPALIVE_TIMER_KPROBE,
        function: "tcp_keepalive_timer",
    },
    Program::Kretprobe {
        program: name::TCP_KEEPALIVE_TIMER_KRETPROBE,
        function: "tcp_keepalive_timer",
    },
];
const KEEPALIVE_FENTRY: &[Program] = &[
    Program::FEntry {
        program: name::TCP_KEEPALIVE_TIMER_FENTRY,
        function: "tcp_keepalive_timer",
    },
    Program::FExit {
        program: name::TCP_KEEPALIVE_TIMER_FEXIT,
        function: "tcp_keepalive_timer",
    },
];
const RESET_TRACEPOINT: &[Program] = &[
    tp(name::TCP_SEND_RESET, "tcp"),
    tp(name::TCP_RECEIVE_RESET, "tcp"),
];
const RETRANSMIT_TRACEPOINT: &[Program] = &[
    tp(name::TCP_RETRANSMIT_SKB, "tcp"),
    tp(name::TCP_RETRANSMIT_SYNACK, "tcp"),
];

/// Every data mechanism also watches arrivals at `tcp:tcp_probe` (see the eBPF side).
const DATA_TRACEPOINT: &[Program] = &[
    raw(name::SOCK_SEND_LENGTH),
    raw(name::SOCK_RECV_LENGTH),
    raw(name::TCP_PROBE),
];
const DATA_KPROBE: &[Program] = &[
    Program::Kprobe {
        program: name::TCP_SENDMSG_KPROBE,
        function: "tcp_sendmsg",
    },
    Program::Kprobe {
        program: name::TCP_CLEANUP_RBUF_KPROBE,
        function: "tcp_cleanup_rbuf",
    },
    raw(name::TCP_PROBE),
];
const DATA_FENTRY: &[Program] = &[
    Program::FEntry {
        program: name::TCP_SENDMSG_FENTRY,
        function: "tcp_sendmsg",
    },
    Program::FEntry {
        program: name::TCP_CLEANUP_RBUF_FENTRY,
        function: "tcp_cleanup_rbuf",
    },
    raw(name::TCP_PROBE),
];
const ACCEPT_KPROBE: &[Program] = &[Program::Kretprobe {
    program: name::INET_CSK_ACCEPT_KRETPROBE,
    function: "inet_csk_accept",
}];

const TIMEWAIT_KPROBE: &[Program] = &[Program::Kprobe {
    program: name::TCP_TIMEWAIT_STATE_PROCESS_KPROBE,
    function: "tcp_timewait_state_process",
}];

/// Whether the kernel's recursion misses of `program` are lost events. Not for the two
/// state-change programs on the tracepoint: each takes what the other misses.
pub fn misses_are_lost_events(program: &str) -> bool {
    !STATE_CHANGE_TRACEPOINT.iter().any(|p| p.name() == program)
}
