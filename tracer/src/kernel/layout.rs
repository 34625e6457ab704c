//! What the eBPF programs must know about the running kernel, found at start-up: the
//! record layout of each tracepoint (from tracefs) and the offsets of the kernel struct
//! fields they read (from BTF). Nothing is compiled in.

use anyhow::{Context as _, Result, bail};
use tracer_common::{
    ENDPOINTS_SOCKADDR, ENDPOINTS_SPLIT, EndpointLayout, FIELD_ABSENT, KernelField, KernelLayout,
    SOCK_HEAD, SOCKADDR_IN6_BYTES, TimerLayout, TracepointLayout,
};

use crate::kernel::{btf::KernelBtf, kallsyms, tracefs::TracepointFormat};

/// An address field of an [`ENDPOINTS_SOCKADDR`] record.
const SOCKADDR: u16 = SOCKADDR_IN6_BYTES as u16;

/// Record fields the programs read, with the sizes they expect.
const KNOWN_FIELDS: &[(&str, &[u16])] = &[
    ("skaddr", &[8]),
    ("skbaddr", &[8]),
    ("req", &[8]),
    ("state", &[4]),
    ("reason", &[4]),
    ("sport", &[2]),
    ("dport", &[2]),
    ("family", &[2]),
    // IPv4 in split records; a `sockaddr_in6`-sized copy in 6.8+ tcp_send_reset.
    ("saddr", &[4, SOCKADDR]),
    ("daddr", &[4, SOCKADDR]),
    ("saddr_v6", &[16]),
    ("daddr_v6", &[16]),
];

/// Offsets of a tracepoint's fields, by name.
struct Fields<'a> {
    tracepoint: &'a str,
    format: &'a TracepointFormat,
}

impl Fields<'_> {
    fn optional(&self, name: &str) -> Result<u16> {
        let Some(field) = self.format.field(name) else {
            return Ok(FIELD_ABSENT);
        };
        let sizes = KNOWN_FIELDS
            .iter()
            .find_map(|(known, sizes)| (*known == name).then_some(*sizes))
            .with_context(|| format!("{name} is not a field tracer reads"))?;
        if !sizes.contains(&field.size) {
            bail!(
                "{} field {name} is {} bytes on this kernel, expected {}",
                self.tracepoint,
                field.size,
                sizes
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
        }
        Ok(field.offset)
    }

    fn required(&self, name: &str) -> Result<u16> {
        match self.optional(name)? {
            FIELD_ABSENT => bail!("{} has no {name} field on this kernel", self.tracepoint),
            offset => Ok(offset),
        }
    }

    fn size(&self, name: &str) -> Option<u16> {
        self.format.field(name).map(|field| field.size)
    }

    fn endpoints(&self) -> Result<EndpointLayout> {
        if self.size("saddr") == Some(SOCKADDR) {
            return Ok(EndpointLayout {
                style: ENDPOINTS_SOCKADDR,
                saddr: self.required("saddr")?,
                daddr: self.required("daddr")?,
                ..TracepointLayout::ABSENT.endpoints
            });
        }
        Ok(EndpointLayout {
            style: ENDPOINTS_SPLIT,
            sport: self.required("sport")?,
            dport: self.required("dport")?,
            // Older kernels' records have no family; the programs infer it.
            family: self.optional("family")?,
            saddr: self.required("saddr")?,
            daddr: self.required("daddr")?,
            saddr_v6: self.required("saddr_v6")?,
            daddr_v6: self.required("daddr_v6")?,
        })
    }
}

/// The layout of a TCP tracepoint's record: `required` names the fields this hook cannot
/// do without (`"endpoints"` for the connection's addresses); every other known field is
/// taken when present.
pub fn tracepoint_layout(
    tracepoint: &str,
    format: &TracepointFormat,
    required: &[&str],
) -> Result<TracepointLayout> {
    let fields = Fields { tracepoint, format };
    let field = |name: &str| {
        if required.contains(&name) {
            fields.required(name)
        } else {
            fields.optional(name)
        }
    };
    Ok(TracepointLayout {
        skaddr: field("skaddr")?,
        skbaddr: field("skbaddr")?,
        state: field("state")?,
        reason: field("reason")?,
        req: field("req")?,
        _pad: [0; 3],
        endpoints: if required.contains(&"endpoints") {
            fields.endpoints()?
        } else {
            TracepointLayout::ABSENT.endpoints
        },
    })
}

/// What the timer tracepoints compare callbacks with: the keepalive callback's address.
pub fn timer_layout() -> Result<TimerLayout> {
    Ok(TimerLayout {
        keepalive_timer_fn: kallsyms::address_of("tcp_keepalive_timer")?,
    })
}

/// Resolves `path` in `struct_name`, checking it has one of `sizes` (bytes).
fn kernel_field(
    btf: &KernelBtf,
    struct_name: &str,
    path: &str,
    sizes: &[u32],
) -> Result<KernelField> {
    let field = btf.field(struct_name, path)?;
    if !sizes.contains(&field.size) {
        bail!(
            "kernel BTF: {struct_name}.{path} is {} bytes, tracer reads {sizes:?}",
            field.size
        );
    }
    Ok(KernelField {
        offset: field.offset,
        size: field.size,
    })
}

const INTEGER: &[u32] = &[1, 2, 4, 8];

/// Where the keepalive timer (`timer_list`) sits in the socket: `sock.sk_timer`, or
/// `inet_connection_sock.icsk_keepalive_timer` on kernels with "tcp: introduce
/// icsk->icsk_keepalive_timer" (backported to stable kernels, e.g. Debian's 6.12).
fn keepalive_timer(btf: &KernelBtf) -> Result<KernelField> {
    let field = match btf.field_opt("inet_connection_sock", "icsk_keepalive_timer")? {
        Some(field) => field,
        None => btf.field("sock", "sk_timer")?,
    };
    Ok(KernelField {
        offset: field.offset,
        size: field.size,
    })
}

/// The span of `fields` when they fit in one read of the socket's head, else absent (the
/// programs then read them one by one).
fn sock_head(fields: &[KernelField]) -> KernelField {
    let start = fields.iter().map(|f| f.offset).min().unwrap_or(0);
    let end = fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0);
    if end - start > SOCK_HEAD as u32 {
        return KernelField::default();
    }
    KernelField {
        offset: start,
        size: SOCK_HEAD as u32,
    }
}

/// The struct fields the programs read, from the running kernel's BTF. A missing field
/// is an error naming it, except the two documented as optional (reported absent with
/// `size == 0`): `sock.sk_protocol` (a bitfield before 5.6; state changes by probe then
/// skip the protocol check) and the segment flags of retransmits.
pub fn kernel_layout(btf: &KernelBtf) -> Result<KernelLayout> {
    let sock = |path: &str, sizes: &[u32]| kernel_field(btf, "sock", path, sizes);
    let common = |name: &str, sizes: &[u32]| sock(&format!("__sk_common.{name}"), sizes);
    let tcp = |path: &str| kernel_field(btf, "tcp_sock", path, INTEGER);
    let net = |name: &str| kernel_field(btf, "net", &format!("ipv4.{name}"), INTEGER);
    // A segment's control block (`sk_buff.cb` as `struct tcp_skb_cb`).
    let skb_cb = |name: &str| {
        btf.field("sk_buff", "cb")
            .and_then(|cb| Ok((cb, btf.field("tcp_skb_cb", name)?)))
            .map(|(cb, field)| KernelField {
                offset: cb.offset + field.offset,
                size: field.size,
            })
    };
    let skb_tcp_flags = skb_cb("tcp_flags").unwrap_or_default();
    let (sk_cgroup, sk_cgroup_data_bits) = sock_cgroup(btf)?;
    let head_fields = [
        common("skc_family", &[2])?,
        common("skc_state", &[1])?,
        common("skc_dport", &[2])?,
        common("skc_num", &[2])?,
        common("skc_rcv_saddr", &[4])?,
        common("skc_daddr", &[4])?,
    ];
    let [
        skc_family,
        skc_state,
        skc_dport,
        skc_num,
        skc_rcv_saddr,
        skc_daddr,
    ] = head_fields;
    Ok(KernelLayout {
        sock_head: sock_head(&head_fields),
        skc_family,
        skc_state,
        inet_sport: kernel_field(btf, "inet_sock", "inet_sport", &[2])?,
        skc_dport,
        skc_num,
        skc_rcv_saddr,
        skc_daddr,
        skc_v6_rcv_saddr: common("skc_v6_rcv_saddr", &[16])?,
        skc_v6_daddr: common("skc_v6_daddr", &[16])?,
        skc_net: common("skc_net.net", &[8])?,
        sk_protocol: sock("sk_protocol", &[1, 2]).unwrap_or_default(),
        keepalive_timer: keepalive_timer(btf)?,
        icsk_probes_out: kernel_field(btf, "inet_connection_sock", "icsk_probes_out", INTEGER)?,
        segs_out: tcp("segs_out")?,
        keepalive_time: tcp("keepalive_time")?,
        keepalive_intvl: tcp("keepalive_intvl")?,
        keepalive_probes: tcp("keepalive_probes")?,
        net_keepalive_time: net("sysctl_tcp_keepalive_time")?,
        net_keepalive_intvl: net("sysctl_tcp_keepalive_intvl")?,
        net_keepalive_probes: net("sysctl_tcp_keepalive_probes")?,
        skb_tcp_flags,
        skb_seq: skb_cb("seq")?,
        skb_end_seq: skb_cb("end_seq")?,
        skb_head: kernel_field(btf, "sk_buff", "head", &[8])?,
        skb_network_header: kernel_field(btf, "sk_buff", "network_header", &[2])?,
        skb_transport_header: kernel_field(btf, "sk_buff", "transport_header", &[2])?,
        bytes_acked: tcp("bytes_acked")?,
        bytes_received: tcp("bytes_received")?,
        total_retrans: tcp("total_retrans")?,
        srtt_us: tcp("srtt_us")?,
        snd_una: tcp("snd_una")?,
        write_seq: tcp("write_seq")?,
        snd_nxt: tcp("snd_nxt")?,
        rcv_nxt: tcp("rcv_nxt")?,
        first_tx_mstamp: tcp("first_tx_mstamp")?,
        sk_err: sock("sk_err", &[4])?,
        sk_flags: common("skc_flags", &[8])?,
        tw_substate: kernel_field(btf, "inet_timewait_sock", "tw_substate", &[1])?,
        net_inum: kernel_field(btf, "net", "ns.inum", INTEGER)?,
        timer_function: kernel_field(btf, "timer_list", "function", &[8])?,
        // Without it, bytes received count the peer's FIN (documented).
        sock_done_mask: btf
            .enum_values("sock_flags")
            .ok()
            .and_then(|values| values.into_iter().find(|(name, _)| name == "SOCK_DONE"))
            .map_or(0, |(_, bit)| 1 << bit),
        sk_cgroup,
        sk_cgroup_data_bits,
        cgroup_kn: optional(btf, "cgroup", "kn")?,
        kernfs_node_id: optional(btf, "kernfs_node", "id")?,
        kernfs_node_parent: kernfs_node_parent(btf)?,
    })
}

/// A pointer or 64-bit id the programs can do without (absent when this kernel lacks it).
fn optional(btf: &KernelBtf, struct_name: &str, path: &str) -> Result<KernelField> {
    Ok(match btf.field_opt(struct_name, path)? {
        Some(field) if field.size == 8 => KernelField {
            offset: field.offset,
            size: field.size,
        },
        _ => KernelField::default(),
    })
}

/// `kernfs_node.parent`, renamed `__parent` in 6.15 (now read under RCU, which a
/// program's reads are).
fn kernfs_node_parent(btf: &KernelBtf) -> Result<KernelField> {
    let renamed = optional(btf, "kernfs_node", "__parent")?;
    if renamed.size != 0 {
        return Ok(renamed);
    }
    optional(btf, "kernfs_node", "parent")
}

/// Where a socket keeps its cgroup (v2): `sock.sk_cgrp_data.cgroup` from 5.15, before
/// that the word `sk_cgrp_data.val`, which holds the pointer unless one of its two low
/// bits says it holds net_cls/net_prio data (`sock_cgroup_ptr()` then gives the root).
/// Absent in a kernel without cgroups: events then carry the task's cgroup, in process
/// context only.
fn sock_cgroup(btf: &KernelBtf) -> Result<(KernelField, u64)> {
    let pointer = optional(btf, "sock", "sk_cgrp_data.cgroup")?;
    if pointer.size != 0 {
        return Ok((pointer, 0));
    }
    Ok((optional(btf, "sock", "sk_cgrp_data.val")?, 0b11))
}
