//! Kernel struct field offsets, read from the running kernel's BTF.
//!
//! aya builds the eBPF programs without CO-RE relocations, so they cannot have the loader
//! fix up `sk->__sk_common.skc_dport` for the running kernel. Instead the daemon reads
//! `/sys/kernel/btf/vmlinux` at start-up, resolves every field the programs read to a byte
//! offset and size, and hands those to the programs as globals before load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use btf_rs::{Backend, Btf, Member, Struct, Type};
use rustix::fs::{MemfdFlags, memfd_create};

/// Where the kernel exposes its own BTF (`CONFIG_DEBUG_INFO_BTF=y`).
pub const SYS_FS_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Where a field lives, in bytes from the start of the struct it was resolved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// The parsed BTF of a kernel.
pub struct KernelBtf {
    btf: Btf,
    /// Structs looked up so far, by name: finding a name scans the whole BTF (see
    /// [`KernelBtf::from_file`]), and the programs' fields share a handful of structs.
    structs: RefCell<HashMap<String, Option<Struct>>>,
    pointer_size: u32,
}

/// `path` copied into an anonymous memory file and mapped from there.
fn map_copy(path: &Path) -> Result<Btf> {
    let mut copy = File::from(memfd_create("kernel-btf", MemfdFlags::CLOEXEC)?);
    io::copy(&mut File::open(path)?, &mut copy)?;
    // btf-rs maps only files it opens by path; its mapping outlives this descriptor.
    let reopened = format!("/proc/self/fd/{}", copy.as_raw_fd());
    Ok(Btf::from_file_with_backend(reopened, Backend::Mmap)?)
}

/// A lookup that found nothing is an error for [`KernelBtf::field`] but a plain `None` for
/// [`KernelBtf::field_opt`]; anything else that goes wrong is an error for both.
enum Lookup {
    Found(Field),
    Missing(String),
}

impl KernelBtf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self> {
        Self::from_file(SYS_FS_PATH)
    }

    /// BTF from a file: `/sys/kernel/btf/vmlinux` or a copy of another kernel's.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Mapping the file makes start-up cheap (milliseconds; each name lookup then scans
        // the types), where btf-rs's parsing backend takes ~0.4 s natively and many seconds
        // under emulation. Kernels before 6.16 cannot mmap /sys/kernel/btf/vmlinux: those
        // get a mapped copy in memory.
        let btf = match Btf::from_file_with_backend(path, Backend::Mmap) {
            Err(btf_rs::Error::IO(e)) if e.kind() == ErrorKind::NotFound => bail!(
                "kernel has no BTF ({} is missing; the kernel needs CONFIG_DEBUG_INFO_BTF=y)",
                path.display()
            ),
            Ok(btf) => btf,
            Err(_) => {
                map_copy(path).with_context(|| format!("reading kernel BTF {}", path.display()))?
            }
        };
        Self::new(btf)
    }

    fn new(btf: Btf) -> Result<Self> {
        // BTF does not record the width of pointers; like libbpf, take it from the
        // kernel's `long`, which is pointer-sized on every architecture Linux supports.
        let pointer_size = btf
            .resolve_types_by_name("long unsigned int")?
            .into_iter()
            .find_map(|ty| match ty {
                Type::Int(t) => u32::try_from(t.size()).ok(),
                _ => None,
            })
            .ok_or_else(|| anyhow!("kernel BTF has no `long unsigned int` to size pointers by"))?;
        Ok(Self {
            btf,
            structs: RefCell::default(),
            pointer_size,
        })
    }

    /// The field at `path` in `struct struct_name`. `path` names members separated by dots
    /// (`"__sk_common.skc_dport"`); members of anonymous structs and unions are found
    /// without naming them, as in C.
    pub fn field(&self, struct_name: &str, path: &str) -> Result<Field> {
        match self.lookup(struct_name, path)? {
            Lookup::Found(field) => Ok(field),
            Lookup::Missing(why) => Err(anyhow!(why)),
        }
    }

    /// Like [`Self::field`], but a struct or field this kernel does not have is `None`, for
    /// fields the programs can do without.
    pub fn field_opt(&self, struct_name: &str, path: &str) -> Result<Option<Field>> {
        Ok(match self.lookup(struct_name, path)? {
            Lookup::Found(field) => Some(field),
            Lookup::Missing(_) => None,
        })
    }

    /// The names and values of `enum enum_name` (e.g. `sk_rst_reason`), in declaration
    /// order; an error when this kernel has no such enum.
    pub fn enum_values(&self, enum_name: &str) -> Result<Vec<(String, u32)>> {
        let found = self
            .btf
            .resolve_types_by_name(enum_name)?
            .into_iter()
            .find_map(|ty| match ty {
                Type::Enum(e) => Some(e),
                _ => None,
            });
        let Some(found) = found else {
            bail!("kernel BTF has no enum {enum_name}");
        };
        found
            .members
            .iter()
            .map(|member| Ok((self.btf.resolve_name(member)?, member.val())))
            .collect()
    }

    /// The arguments a raw tracepoint's programs receive, as C types without qualifiers
    /// (`["struct sock *", "int", "int"]` for `inet_sock_set_state`), from the kernel's
    /// `btf_trace_<name>` typedef; an error when this kernel has no such tracepoint.
    pub fn tracepoint_args(&self, tracepoint: &str) -> Result<Vec<String>> {
        let typedef = format!("btf_trace_{tracepoint}");
        let proto = self
            .btf
            .resolve_types_by_name(&typedef)?
            .into_iter()
            .find_map(|ty| match ty {
                Type::Typedef(t) => Some(t),
                _ => None,
            })
            .map(|t| self.strip_qualifiers(Type::Typedef(t)))
            .transpose()?;
        let Some(Type::Ptr(pointer)) = proto else {
            bail!("this kernel has no tracepoint {tracepoint} (no {typedef} in its BTF)");
        };
        let Type::FuncProto(proto) = self.btf.resolve_chained_type(&pointer)? else {
            bail!("kernel BTF: {typedef} is not a function pointer");
        };
        // The first parameter is the tracepoint's private data, not an argument.
        proto
            .parameters
            .iter()
            .skip(1)
            .map(|parameter| self.c_type(self.btf.resolve_chained_type(parameter)?))
            .collect()
    }

    /// A type as C writes it, without qualifiers: `struct sock *`, `int`.
    fn c_type(&self, ty: Type) -> Result<String> {
        Ok(match self.strip_qualifiers(ty)? {
            Type::Ptr(pointer) => format!(
                "{} *",
                self.c_type(self.btf.resolve_chained_type(&pointer)?)?
            ),
            Type::Struct(s) => format!("struct {}", self.btf.resolve_name(&s)?),
            Type::Union(u) => format!("union {}", self.btf.resolve_name(&u)?),
            Type::Enum(e) => format!("enum {}", self.btf.resolve_name(&e)?),
            Type::Int(i) => self.btf.resolve_name(&i)?,
            Type::Void => "void".to_owned(),
            other => other.name().to_owned(),
        })
    }

    fn lookup(&self, struct_name: &str, path: &str) -> Result<Lookup> {
        let Some(mut container) = self.named_struct(struct_name)? else {
            return Ok(Lookup::Missing(format!(
                "kernel BTF has no struct {struct_name}"
            )));
        };
        let missing = || {
            Lookup::Missing(format!(
                "kernel BTF: struct {struct_name} has no field {path}"
            ))
        };
        let what = || format!("kernel BTF: struct {struct_name} field {path}");
        let (parents, last) = match path.rsplit_once('.') {
            Some((parents, last)) => (Some(parents), last),
            None => (None, path),
        };

        let mut bit_offset = 0;
        for name in parents.into_iter().flat_map(|p| p.split('.')) {
            let Some((member, offset)) = self.find_member(&container, name)? else {
                return Ok(missing());
            };
            bit_offset += offset;
            container = match self.strip_qualifiers(self.btf.resolve_chained_type(&member)?)? {
                Type::Struct(s) | Type::Union(s) => s,
                other => bail!(
                    "{}: {name} is not a struct or union (it is {})",
                    what(),
                    other.name()
                ),
            };
        }

        let Some((member, offset)) = self.find_member(&container, last)? else {
            return Ok(missing());
        };
        bit_offset += offset;
        let size = match member.bitfield_size() {
            // Only structs with bitfields set the kind flag that carries their widths
            // (pahole always sets it when it emits a bitfield).
            Some(bits) if bits != 0 => {
                if bit_offset % 8 != 0 || bits % 8 != 0 {
                    bail!(
                        "{}: a bitfield ({bits} bits at bit {bit_offset}), which the eBPF \
                         programs cannot read",
                        what()
                    );
                }
                bits / 8
            }
            _ => self
                .size_of(self.btf.resolve_chained_type(&member)?)
                .with_context(what)?,
        };
        if bit_offset % 8 != 0 {
            bail!("{}: not byte aligned (bit {bit_offset})", what());
        }
        Ok(Lookup::Found(Field {
            offset: bit_offset / 8,
            size,
        }))
    }

    fn named_struct(&self, name: &str) -> Result<Option<Struct>> {
        if let Some(known) = self.structs.borrow().get(name) {
            return Ok(known.clone());
        }
        // Deduplicated vmlinux BTF has one struct per name; the same name may also belong
        // to a function or a forward declaration, which are skipped.
        let found = self
            .btf
            .resolve_types_by_name(name)?
            .into_iter()
            .find_map(|ty| match ty {
                Type::Struct(s) => Some(s),
                _ => None,
            });
        self.structs
            .borrow_mut()
            .insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// The member called `name` and its offset in bits from the start of `container`,
    /// looking inside anonymous structs and unions: the kernel wraps many fields in them
    /// (`sock_common`'s address and port unions, `tcp_sock`'s cacheline groups).
    fn find_member(&self, container: &Struct, name: &str) -> Result<Option<(Member, u32)>> {
        for member in &container.members {
            let member_name = self.btf.resolve_name(member)?;
            if member_name == name {
                return Ok(Some((member.clone(), member.bit_offset())));
            }
            if member_name.is_empty() {
                let ty = self.strip_qualifiers(self.btf.resolve_chained_type(member)?)?;
                if let Type::Struct(inner) | Type::Union(inner) = ty
                    && let Some((found, offset)) = self.find_member(&inner, name)?
                {
                    return Ok(Some((found, member.bit_offset() + offset)));
                }
            }
        }
        Ok(None)
    }

    /// The type behind typedefs and qualifiers, which do not change the layout.
    fn strip_qualifiers(&self, mut ty: Type) -> Result<Type> {
        loop {
            ty = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t)?,
                Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                    self.btf.resolve_chained_type(t)?
                }
                Type::TypeTag(t) => self.btf.resolve_chained_type(t)?,
                _ => return Ok(ty),
            };
        }
    }

    fn size_of(&self, ty: Type) -> Result<u32> {
        let size = match self.strip_qualifiers(ty)? {
            Type::Int(t) => t.size(),
            Type::Ptr(_) => self.pointer_size as usize,
            Type::Array(a) => {
                let element = self.btf.resolve_chained_type(&a)?;
                a.len() * self.size_of(element)? as usize
            }
            Type::Struct(s) | Type::Union(s) => s.size(),
            Type::Enum(e) => e.size(),
            Type::Enum64(e) => e.size(),
            Type::Float(f) => f.size(),
            other => bail!("a {} has no size", other.name()),
        };
        u32::try_from(size).context("size does not fit in 32 bits")
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Instant;

    use super::*;

    /// A field as pahole sees it: one `(struct, member)` step per named struct crossed,
    /// offsets adding up.
    type PaholeSteps = &'static [(&'static str, &'static str)];

    /// Every field the eBPF programs read: struct, path, and the same field for pahole.
    const FIELDS: &[(&str, &str, PaholeSteps)] = &[
        ("sock_common", "skc_daddr", &[("sock_common", "skc_daddr")]),
        (
            "sock_common",
            "skc_rcv_saddr",
            &[("sock_common", "skc_rcv_saddr")],
        ),
        ("sock_common", "skc_dport", &[("sock_common", "skc_dport")]),
        ("sock_common", "skc_num", &[("sock_common", "skc_num")]),
        (
            "sock_common",
            "skc_family",
            &[("sock_common", "skc_family")],
        ),
        ("sock_common", "skc_state", &[("sock_common", "skc_state")]),
        (
            "sock_common",
            "skc_v6_daddr",
            &[("sock_common", "skc_v6_daddr")],
        ),
        (
            "sock_common",
            "skc_v6_rcv_saddr",
            &[("sock_common", "skc_v6_rcv_saddr")],
        ),
        ("sock_common", "skc_net", &[("sock_common", "skc_net")]),
        (
            "sock_common",
            "skc_net.net",
            &[("sock_common", "skc_net"), ("possible_net_t", "net")],
        ),
        ("net", "ns.inum", &[("net", "ns"), ("ns_common", "inum")]),
        ("sock", "__sk_common", &[("sock", "__sk_common")]),
        ("sock", "sk_timer", &[("sock", "sk_timer")]),
        (
            "inet_connection_sock",
            "icsk_probes_out",
            &[("inet_connection_sock", "icsk_probes_out")],
        ),
        (
            "inet_connection_sock",
            "icsk_retransmits",
            &[("inet_connection_sock", "icsk_retransmits")],
        ),
        (
            "inet_connection_sock",
            "icsk_user_timeout",
            &[("inet_connection_sock", "icsk_user_timeout")],
        ),
        (
            "tcp_sock",
            "inet_conn.icsk_probes_out",
            &[
                ("tcp_sock", "inet_conn"),
                ("inet_connection_sock", "icsk_probes_out"),
            ],
        ),
        (
            "tcp_sock",
            "inet_conn.icsk_retransmits",
            &[
                ("tcp_sock", "inet_conn"),
                ("inet_connection_sock", "icsk_retransmits"),
            ],
        ),
        (
            "tcp_sock",
            "inet_conn.icsk_user_timeout",
            &[
                ("tcp_sock", "inet_conn"),
                ("inet_connection_sock", "icsk_user_timeout"),
            ],
        ),
        (
            "tcp_sock",
            "inet_conn.icsk_inet.sk.sk_timer",
            &[
                ("tcp_sock", "inet_conn"),
                ("inet_connection_sock", "icsk_inet"),
                ("inet_sock", "sk"),
                ("sock", "sk_timer"),
            ],
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
        ("tcp_sock", "segs_in", &[("tcp_sock", "segs_in")]),
        ("tcp_sock", "segs_out", &[("tcp_sock", "segs_out")]),
        ("tcp_sock", "data_segs_in", &[("tcp_sock", "data_segs_in")]),
        (
            "tcp_sock",
            "data_segs_out",
            &[("tcp_sock", "data_segs_out")],
        ),
        ("timer_list", "function", &[("timer_list", "function")]),
        (
            "net",
            "ipv4.sysctl_tcp_keepalive_time",
            &[("net", "ipv4"), ("netns_ipv4", "sysctl_tcp_keepalive_time")],
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
            "net",
            "ipv4.sysctl_tcp_keepalive_intvl",
            &[
                ("net", "ipv4"),
                ("netns_ipv4", "sysctl_tcp_keepalive_intvl"),
            ],
        ),
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
}
