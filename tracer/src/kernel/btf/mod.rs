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
            Err(mapping) => map_copy(path).with_context(|| {
                format!(
                    "reading kernel BTF {} (mapping it failed: {mapping})",
                    path.display()
                )
            })?,
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
mod tests;
