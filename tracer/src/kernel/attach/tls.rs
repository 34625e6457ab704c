//! The TLS hook: uprobes on OpenSSL's `libssl`, so a TLS connection's requests are the
//! application's, not its encrypted records (see the eBPF side's `tls`).
//!
//! A uprobe costs a trap into the kernel at every call of the hooked function in every
//! process it is installed in, traced or not (docs/performance.md has the figures). So
//! by default (`--tls auto`) they are installed only in the processes that hold a socket
//! of the traced ports when tracing starts (the servers, and the clients connected then),
//! each in the `libssl` it maps: other processes pay nothing. `--tls all` attaches per
//! library *file* instead, and the kernel then keeps the uprobe for every process that
//! maps it, now or later: clients started after tracer are seen too, and every process
//! using the library pays. The files are those processes map when tracing starts (their
//! `/proc/PID/maps`, reached through `/proc/PID/root`, so a container's own copy is found
//! too) and the host's usual library directories. Neither mode follows what starts later
//! with a library file not hooked (or, in `auto`, a new process): tracer gives up the
//! capabilities to attach anything once it is tracing.

use std::{
    collections::BTreeSet,
    fs,
    num::NonZeroU32,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{UProbe, uprobe::UProbeScope},
};
use serde::Serialize;
use tracer_common::programs as name;

use super::facts::describe;
use crate::vocabulary::names;

/// `--tls`: which processes' TLS library is hooked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// The processes holding a traced socket at start.
    Auto,
    /// Every process mapping a `libssl` file found at start, those started later too.
    All,
    Off,
}

names!(TlsMode as "TLS mode" {
    Auto => "auto",
    All => "all",
    Off => "off",
});

/// The entry programs, by the library function each is attached to; every one but
/// `SSL_free` also gets the return program.
const ENTRIES: &[(&str, &str)] = &[
    ("SSL_do_handshake", name::SSL_HANDSHAKE_ENTRY),
    ("SSL_connect", name::SSL_HANDSHAKE_ENTRY),
    ("SSL_accept", name::SSL_HANDSHAKE_ENTRY),
    ("SSL_read", name::SSL_READ_ENTRY),
    ("SSL_read_ex", name::SSL_READ_ENTRY),
    ("SSL_write", name::SSL_WRITE_ENTRY),
    ("SSL_write_ex", name::SSL_WRITE_ENTRY),
    ("SSL_free", name::SSL_FREE_ENTRY),
];

/// Every TLS program, for the catalogue's check against the eBPF object and for the
/// programs' kernel costs.
pub const PROGRAMS: &[&str] = &[
    name::SSL_HANDSHAKE_ENTRY,
    name::SSL_READ_ENTRY,
    name::SSL_WRITE_ENTRY,
    name::SSL_FREE_ENTRY,
    name::SSL_CALL_RETURN,
];

/// The directories a distribution keeps its shared libraries in.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/lib64",
    "/lib",
];

/// What the TLS hook attached to, and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsPlan {
    /// The `libssl` files hooked, as tracer found them.
    pub libraries: Vec<String>,
    /// In `auto` mode, the processes hooked (each in the libraries it maps); `None` when
    /// every process mapping a library is (`all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<u32>>,
    /// Files that could not be hooked, each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhooked: Vec<Unhooked>,
    /// Why no library was hooked at all, when the hook could not work here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unhooked {
    pub library: String,
    pub why: String,
}

impl TlsPlan {
    /// One line for `tracer check`.
    pub fn describe(&self) -> String {
        if let Some(why) = &self.unsupported {
            return format!("not hooked: {why}");
        }
        let mut parts: Vec<String> = Vec::new();
        if !self.libraries.is_empty() {
            parts.push(format!(
                "uprobes attach to OpenSSL in {}",
                self.libraries.join(", ")
            ));
        }
        parts.extend(
            self.unhooked
                .iter()
                .map(|unhooked| format!("{} not hooked: {}", unhooked.library, unhooked.why)),
        );
        if parts.is_empty() {
            return "no libssl found: TLS connections count their encrypted records".to_owned();
        }
        parts.join("; ")
    }
}

/// Whether `file_name` is OpenSSL's `libssl` (`libssl.so.3`, `libssl.so.1.1`).
fn is_libssl(file_name: &str) -> bool {
    file_name.starts_with("libssl.so.")
}

/// The `libssl` files processes map now, and those in the usual directories, one path
/// per file (a file is known by its device and inode: `/lib` and `/usr/lib` are often
/// one directory).
fn libraries() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for dir in LIBRARY_DIRS {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        candidates.extend(
            entries
                .flatten()
                .filter(|entry| entry.file_name().to_str().is_some_and(is_libssl))
                .map(|entry| entry.path()),
        );
    }
    candidates.extend(mapped_libraries());
    let mut seen = BTreeSet::new();
    candidates
        .into_iter()
        .filter(|path| {
            fs::metadata(path)
                .is_ok_and(|meta| meta.is_file() && seen.insert((meta.dev(), meta.ino())))
        })
        .collect()
}

/// The `libssl` files mapped by running processes, each through its process's root.
fn mapped_libraries() -> Vec<PathBuf> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids = processes
        .flatten()
        .filter_map(|process| process.file_name().to_str()?.parse::<u32>().ok());
    let found: BTreeSet<PathBuf> = pids.flat_map(libraries_of).collect();
    found.into_iter().collect()
}

/// The `libssl` files process `pid` maps, through its root; none when it is gone or may
/// not be read.
fn libraries_of(pid: u32) -> BTreeSet<PathBuf> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return BTreeSet::new();
    };
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .filter(|library| {
            library
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(is_libssl)
        })
        .map(|library| root.join(library.strip_prefix("/").unwrap_or(library)))
        .collect()
}

/// Loads the TLS programs and attaches them as `mode` says: in `auto`, in each process of
/// `holders` (those holding a traced socket at start) that maps a `libssl`; in `all`, to
/// every `libssl` file found. A library that cannot be hooked (no such symbols: a build
/// without them) is reported in the plan. The programs learn a call's socket from the
/// data hook (`with_data`): without it, nothing is hooked and the plan says why.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    mode: TlsMode,
    with_data: bool,
    holders: &BTreeSet<u32>,
) -> Result<TlsPlan> {
    let mut plan = TlsPlan::default();
    if mode == TlsMode::Off {
        return Ok(plan);
    }
    if !with_data {
        plan.unsupported = Some(
            "the data hook, which ties a library call to its socket, is not attached".to_owned(),
        );
        return Ok(plan);
    }
    for program in PROGRAMS {
        uprobe(ebpf, program)?
            .load()
            .with_context(|| format!("the kernel refused the {program} program"))?;
    }
    let targets: Vec<(PathBuf, UProbeScope)> = match mode {
        TlsMode::All => libraries()
            .into_iter()
            .map(|library| (library, UProbeScope::AllProcesses))
            .collect(),
        _ => holders
            .iter()
            .filter_map(|&pid| Some((pid, NonZeroU32::new(pid)?)))
            .flat_map(|(pid, scope)| {
                libraries_of(pid)
                    .into_iter()
                    .map(move |library| (library, UProbeScope::OneProcess(scope)))
            })
            .collect(),
    };
    let mut libraries = BTreeSet::new();
    let mut processes = BTreeSet::new();
    for (library, scope) in targets {
        // A process's library as the process names it (inside its root).
        let shown = match scope {
            UProbeScope::OneProcess(pid) => {
                let root = PathBuf::from(format!("/proc/{pid}/root"));
                Path::new("/")
                    .join(library.strip_prefix(&root).unwrap_or(&library))
                    .display()
                    .to_string()
            }
            _ => library.display().to_string(),
        };
        match attach_library(ebpf, &library, scope) {
            Ok(()) => {
                if let UProbeScope::OneProcess(pid) = scope {
                    processes.insert(pid.get());
                }
                libraries.insert(shown);
            }
            Err(error) => plan.unhooked.push(Unhooked {
                library: shown,
                why: describe(error),
            }),
        }
    }
    plan.libraries = libraries.into_iter().collect();
    plan.processes = (mode == TlsMode::Auto).then(|| processes.into_iter().collect());
    Ok(plan)
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> Result<&'a mut UProbe> {
    let found = ebpf
        .program_mut(program)
        .with_context(|| format!("the eBPF object has no program {program}"))?;
    Ok(found.try_into()?)
}

/// Attaches every entry and return program to `library` for `scope`, or none: a library
/// is hooked whole (a return without its entry, or the reverse, would count nothing
/// right).
fn attach_library(ebpf: &mut Ebpf, library: &Path, scope: UProbeScope) -> Result<()> {
    let mut links = Vec::new();
    let attached = ENTRIES.iter().try_for_each(|&(function, program)| {
        let mut attach = |program: &str| -> Result<()> {
            let link = uprobe(ebpf, program)?
                .attach(function, library, scope)
                .with_context(|| format!("cannot attach a uprobe to {function}"))?;
            links.push((program.to_owned(), link));
            Ok(())
        };
        attach(program)?;
        if program != name::SSL_FREE_ENTRY {
            attach(name::SSL_CALL_RETURN)?;
        }
        Ok(())
    });
    if attached.is_err() {
        for (program, link) in links {
            if let Ok(probe) = uprobe(ebpf, &program) {
                let _ = probe.detach(link);
            }
        }
    }
    attached
}
