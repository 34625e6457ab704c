//! The resolver against the running kernel's BTF, cross-checked with pahole where it is
//! installed.

use std::process::Command;
use std::time::Instant;

use super::*;

/// A field as pahole sees it: one `(struct, member)` step per named struct crossed,
/// offsets adding up.
type PaholeSteps = &'static [(&'static str, &'static str)];

/// Every field `kernel::layout::kernel_layout` resolves for the eBPF programs (the
/// `KernelLayout` fields), by the same struct and path: struct, path, and the same
/// field for pahole. `sock.sk_timer` stands for the keepalive timer, which kernels
/// with `inet_connection_sock.icsk_keepalive_timer` keep there instead; `sk_buff.cb`
/// and `tcp_skb_cb` are resolved apart and added, as the layout does. The socket's
/// cgroup and a cgroup's parent are not here: their fields differ before 5.15
/// (`sk_cgrp_data.val`) and from 6.15 (`kernfs_node.__parent`), and the `workloads`
/// integration tests check both in every guest of the kernel matrix.
const FIELDS: &[(&str, &str, PaholeSteps)] = &[
    (
        "sock",
        "__sk_common.skc_daddr",
        &[("sock", "__sk_common"), ("sock_common", "skc_daddr")],
    ),
    (
        "sock",
        "__sk_common.skc_rcv_saddr",
        &[("sock", "__sk_common"), ("sock_common", "skc_rcv_saddr")],
    ),
    (
        "sock",
        "__sk_common.skc_dport",
        &[("sock", "__sk_common"), ("sock_common", "skc_dport")],
    ),
    (
        "sock",
        "__sk_common.skc_num",
        &[("sock", "__sk_common"), ("sock_common", "skc_num")],
    ),
    (
        "sock",
        "__sk_common.skc_family",
        &[("sock", "__sk_common"), ("sock_common", "skc_family")],
    ),
    (
        "sock",
        "__sk_common.skc_state",
        &[("sock", "__sk_common"), ("sock_common", "skc_state")],
    ),
    (
        "sock",
        "__sk_common.skc_v6_daddr",
        &[("sock", "__sk_common"), ("sock_common", "skc_v6_daddr")],
    ),
    (
        "sock",
        "__sk_common.skc_v6_rcv_saddr",
        &[("sock", "__sk_common"), ("sock_common", "skc_v6_rcv_saddr")],
    ),
    (
        "sock",
        "__sk_common.skc_flags",
        &[("sock", "__sk_common"), ("sock_common", "skc_flags")],
    ),
    (
        "sock",
        "__sk_common.skc_net.net",
        &[
            ("sock", "__sk_common"),
            ("sock_common", "skc_net"),
            ("possible_net_t", "net"),
        ],
    ),
    ("sock", "sk_protocol", &[("sock", "sk_protocol")]),
    ("sock", "sk_timer", &[("sock", "sk_timer")]),
    ("inet_sock", "inet_sport", &[("inet_sock", "inet_sport")]),
    (
        "inet_connection_sock",
        "icsk_probes_out",
        &[("inet_connection_sock", "icsk_probes_out")],
    ),
    (
        "tcp_sock",
        "keepalive_time",
        &[("tcp_sock", "keepalive_time")],
    ),
    (
        "tcp_sock",
        "keepalive_intvl",
        &[("tcp_sock", "keepalive_intvl")],
    ),
    (
        "tcp_sock",
        "keepalive_probes",
        &[("tcp_sock", "keepalive_probes")],
    ),
    ("tcp_sock", "bytes_acked", &[("tcp_sock", "bytes_acked")]),
    (
        "tcp_sock",
        "bytes_received",
        &[("tcp_sock", "bytes_received")],
    ),
    (
        "tcp_sock",
        "total_retrans",
        &[("tcp_sock", "total_retrans")],
    ),
    ("tcp_sock", "srtt_us", &[("tcp_sock", "srtt_us")]),
    ("tcp_sock", "segs_out", &[("tcp_sock", "segs_out")]),
    ("tcp_sock", "snd_una", &[("tcp_sock", "snd_una")]),
    ("tcp_sock", "write_seq", &[("tcp_sock", "write_seq")]),
    ("tcp_sock", "snd_nxt", &[("tcp_sock", "snd_nxt")]),
    ("tcp_sock", "rcv_nxt", &[("tcp_sock", "rcv_nxt")]),
    (
        "tcp_sock",
        "first_tx_mstamp",
        &[("tcp_sock", "first_tx_mstamp")],
    ),
    ("sock", "sk_err", &[("sock", "sk_err")]),
    ("sk_buff", "head", &[("sk_buff", "head")]),
    (
        "sk_buff",
        "network_header",
        &[("sk_buff", "network_header")],
    ),
    (
        "sk_buff",
        "transport_header",
        &[("sk_buff", "transport_header")],
    ),
    (
        "net",
        "ipv4.sysctl_tcp_keepalive_time",
        &[("net", "ipv4"), ("netns_ipv4", "sysctl_tcp_keepalive_time")],
    ),
    (
        "net",
        "ipv4.sysctl_tcp_keepalive_intvl",
        &[
            ("net", "ipv4"),
            ("netns_ipv4", "sysctl_tcp_keepalive_intvl"),
        ],
    ),
    (
        "net",
        "ipv4.sysctl_tcp_keepalive_probes",
        &[
            ("net", "ipv4"),
            ("netns_ipv4", "sysctl_tcp_keepalive_probes"),
        ],
    ),
    (
        "inet_timewait_sock",
        "tw_substate",
        &[("inet_timewait_sock", "tw_substate")],
    ),
    ("net", "ns.inum", &[("net", "ns"), ("ns_common", "inum")]),
    ("sk_buff", "cb", &[("sk_buff", "cb")]),
    ("tcp_skb_cb", "tcp_flags", &[("tcp_skb_cb", "tcp_flags")]),
    ("tcp_skb_cb", "seq", &[("tcp_skb_cb", "seq")]),
    ("tcp_skb_cb", "end_seq", &[("tcp_skb_cb", "end_seq")]),
    ("timer_list", "function", &[("timer_list", "function")]),
    ("cgroup", "kn", &[("cgroup", "kn")]),
    ("kernfs_node", "id", &[("kernfs_node", "id")]),
];

fn kernel() -> KernelBtf {
    KernelBtf::from_sys_fs().expect("the kernel running the tests has BTF")
}

/// Resolves [`FIELDS`], timing it: resolving is what the daemon does at start-up.
fn resolve_all(btf: &KernelBtf) -> Vec<Field> {
    let started = Instant::now();
    let fields = FIELDS
        .iter()
        .map(|(s, path, _)| field(btf, s, path))
        .collect();
    println!(
        "kernel BTF: {} fields resolved in {:?}",
        FIELDS.len(),
        started.elapsed()
    );
    fields
}

fn field(btf: &KernelBtf, struct_name: &str, path: &str) -> Field {
    btf.field(struct_name, path).unwrap()
}

fn struct_size(btf: &KernelBtf, name: &str) -> u32 {
    btf.named_struct(name).unwrap().unwrap().size() as u32
}

/// pahole's layout of one struct: member name -> (byte offset, byte size). Members of
/// anonymous structs and unions are listed with offsets from the start of the struct.
/// `None` when pahole is not installed.
fn pahole(struct_name: &str) -> Option<HashMap<String, (u32, u32)>> {
    let output = match Command::new("pahole")
        .args(["-C", struct_name, SYS_FS_PATH])
        .output()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        result => result.expect("running pahole"),
    };
    assert!(output.status.success(), "pahole -C {struct_name} failed");
    let members: HashMap<_, _> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(pahole_member)
        .collect();
    assert!(!members.is_empty(), "pahole knows no struct {struct_name}");
    Some(members)
}

/// One pahole member line, e.g. `__be16 skc_dport; /* 12 2 */`,
/// `u8 repair:1; /* 1463: 0 1 */` or `void (*function)(struct timer_list *); /* 24 8 */`.
fn pahole_member(line: &str) -> Option<(String, (u32, u32))> {
    let (decl, comment) = line.split_once(';')?;
    let numbers = comment.trim().strip_prefix("/*")?.strip_suffix("*/")?;
    let mut numbers = numbers.split_whitespace();
    let offset = numbers.next()?.trim_end_matches(':').parse().ok()?;
    let size = numbers.last()?.parse().ok()?;
    let decl = decl.split(" __attribute__").next()?;
    let name = match decl.split_once("(*") {
        Some((_, rest)) => rest.split(')').next()?,
        None => decl.split_whitespace().last()?,
    };
    let name = name.trim_start_matches('*');
    let name = name.split(['[', ':']).next()?;
    // Closing lines of anonymous structs and unions (`};`) carry offsets too.
    if !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((name.to_string(), (offset, size)))
}

#[test]
fn pahole_member_lines_parse() {
    for (line, name, offset, size) in [
        (
            "\t\t__be16     skc_dport;            /*    12     2 */",
            "skc_dport",
            12,
            2,
        ),
        (
            "\tu8   repair:1;       /*  1463: 0  1 */",
            "repair",
            1463,
            1,
        ),
        (
            "\tvoid   (*function)(struct timer_list *); /*    24     8 */",
            "function",
            24,
            8,
        ),
        (
            "\tu32   segs_out __attribute__((__aligned__(64))); /*  1536     4 */",
            "segs_out",
            1536,
            4,
        ),
        (
            "\tstruct sock *   skc_listener;   /*    96     8 */",
            "skc_listener",
            96,
            8,
        ),
        (
            "\t__u16   skc_u16hashes[2];     /*     8     4 */",
            "skc_u16hashes",
            8,
            4,
        ),
    ] {
        assert_eq!(
            pahole_member(line),
            Some((name.to_string(), (offset, size))),
            "{line}"
        );
    }
    assert_eq!(
        pahole_member("\t/* size: 40, cachelines: 1, members: 4 */"),
        None
    );
    assert_eq!(pahole_member("\t};     /*     0     8 */"), None);
}

#[test]
fn every_field_the_programs_read_matches_pahole() {
    let started = Instant::now();
    let btf = kernel();
    println!("kernel BTF: loaded in {:?}", started.elapsed());
    let resolved = resolve_all(&btf);

    let mut layouts = HashMap::new();
    for ((struct_name, path, steps), got) in FIELDS.iter().zip(&resolved) {
        println!(
            "{struct_name:>20} {path:<34} offset {:>5} size {:>3}",
            got.offset, got.size
        );
        let mut expected = Field { offset: 0, size: 0 };
        for (step_struct, member) in *steps {
            let Some(layout) = layouts
                .entry(*step_struct)
                .or_insert_with(|| pahole(step_struct))
            else {
                panic!(
                    "pahole is not installed, so the offsets cannot be cross-checked: \
                     install Debian's dwarves (cargo xtask setup does)"
                );
            };
            let &(offset, size) = layout
                .get(*member)
                .unwrap_or_else(|| panic!("pahole: struct {step_struct} has no {member}"));
            expected.offset += offset;
            expected.size = size;
        }
        assert_eq!(*got, expected, "{struct_name}.{path}: ours vs pahole");
    }
}

/// The copy in memory, which kernels that cannot mmap their BTF fall back to, finds
/// the same layout as the file itself.
#[test]
fn copied_btf_resolves_like_the_file() {
    let file = KernelBtf::new(Btf::from_file(SYS_FS_PATH).unwrap()).unwrap();
    let started = Instant::now();
    let copy = KernelBtf::new(map_copy(Path::new(SYS_FS_PATH)).unwrap()).unwrap();
    println!("kernel BTF: copied in {:?}", started.elapsed());
    assert_eq!(resolve_all(&copy), resolve_all(&file));
}

#[test]
fn known_layout_facts() {
    let btf = kernel();
    let pointer = size_of::<usize>() as u32;

    let sk_common = field(&btf, "sock", "__sk_common");
    assert_eq!(sk_common.offset, 0);
    assert_eq!(sk_common.size, struct_size(&btf, "sock_common"));
    let sk_timer = field(&btf, "sock", "sk_timer");
    assert_eq!(sk_timer.size, struct_size(&btf, "timer_list"));

    let daddr = field(&btf, "sock_common", "skc_daddr");
    let saddr = field(&btf, "sock_common", "skc_rcv_saddr");
    assert_eq!(
        (daddr.size, saddr.size, saddr.offset),
        (4, 4, daddr.offset + 4)
    );
    let dport = field(&btf, "sock_common", "skc_dport");
    let num = field(&btf, "sock_common", "skc_num");
    assert_eq!((dport.size, num.size, num.offset), (2, 2, dport.offset + 2));
    // sock_common has opened with the address pair, the hash and the port pair, each
    // in an anonymous union, since Linux 3.x.
    assert_eq!(dport.offset, 12);
    assert_eq!(field(&btf, "sock_common", "skc_family").size, 2);
    assert_eq!(field(&btf, "sock_common", "skc_state").size, 1);
    assert_eq!(field(&btf, "sock_common", "skc_v6_daddr").size, 16);
    assert_eq!(field(&btf, "sock_common", "skc_net.net").size, pointer);
    assert_eq!(field(&btf, "timer_list", "function").size, pointer);
    assert_eq!(field(&btf, "net", "ns.inum").size, 4);

    // The same field reached through the embedding chain tcp_sock -> inet_connection_sock
    // -> inet_sock -> sock -> sock_common, each embedded first.
    let nested = field(
        &btf,
        "tcp_sock",
        "inet_conn.icsk_inet.sk.__sk_common.skc_dport",
    );
    assert_eq!(nested, dport);
    assert_eq!(
        field(&btf, "tcp_sock", "inet_conn.icsk_probes_out"),
        field(&btf, "inet_connection_sock", "icsk_probes_out")
    );
}

#[test]
fn missing_structs_and_fields_are_named() {
    let btf = kernel();
    let err = btf.field("tcp_sock", "no_such_field").unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel BTF: struct tcp_sock has no field no_such_field"
    );
    let err = btf.field("net", "ipv4.no_such_sysctl").unwrap_err();
    assert_eq!(
        err.to_string(),
        "kernel BTF: struct net has no field ipv4.no_such_sysctl"
    );
    let err = btf.field("no_such_struct", "x").unwrap_err();
    assert_eq!(err.to_string(), "kernel BTF has no struct no_such_struct");

    assert_eq!(btf.field_opt("tcp_sock", "no_such_field").unwrap(), None);
    assert_eq!(btf.field_opt("no_such_struct", "x").unwrap(), None);
    assert_eq!(
        btf.field_opt("sock", "sk_timer").unwrap(),
        Some(field(&btf, "sock", "sk_timer"))
    );
}

#[test]
fn unreadable_fields_are_errors() {
    let btf = kernel();
    // skc_reuse is a 4-bit bitfield.
    let err = btf
        .field("sock_common", "skc_reuse")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sock_common field skc_reuse: a bitfield"),
        "{err}"
    );
    // Even field_opt: the field exists, the programs just cannot read it.
    assert!(btf.field_opt("sock_common", "skc_reuse").is_err());

    let err = btf
        .field("sock_common", "skc_family.x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("skc_family is not a struct or union"), "{err}");
}

#[test]
fn a_missing_btf_file_says_so() {
    let err = KernelBtf::from_file("/nonexistent/vmlinux").err().unwrap();
    assert!(err.to_string().starts_with("kernel has no BTF"), "{err}");
}
