//! What the kernel counts of each program: runs and run time (while
//! `kernel.bpf_stats_enabled` is on) and recursion misses, the runs it skipped because
//! the program was already running on that CPU (a softirq interrupting it, or a task
//! preempting it): events that were never even sent, reported as such.
//!
//! aya reads program info without the misses, so this asks the kernel itself
//! (`BPF_OBJ_GET_INFO_BY_FD`), with aya-obj's bindings of the UAPI structs.
//!
//! Counting run time costs each run about 20 ns, so the kernel does it only while its BPF
//! statistics are on. `--bpf-stats` turns them on for the run ([`enable_run_stats`]) with
//! `BPF_ENABLE_STATS`, as bpftop does: the kernel counts while the descriptor it returns
//! is open and goes back to the previous setting when it closes, whichever way tracer
//! exits; there is no sysctl to restore.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
};

use anyhow::{Context as _, Result};
use aya::{
    programs::ProgramFd,
    sys::{Stats, enable_stats},
};
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// Keeps the kernel's BPF run statistics on while it lives.
pub struct RunStatsOn {
    _descriptor: OwnedFd,
}

/// Turns the kernel's BPF run statistics on until the result is dropped.
pub fn enable_run_stats() -> Result<RunStatsOn> {
    let descriptor = enable_stats(Stats::RunTime)
        .context("--bpf-stats: cannot turn the kernel's BPF statistics on (needs CAP_SYS_ADMIN)")?;
    Ok(RunStatsOn {
        _descriptor: descriptor,
    })
}

/// One program's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub run_time_ns: u64,
    pub run_count: u64,
    pub recursion_misses: u64,
}

/// The kernel's counts for the program behind `fd`.
pub fn read(fd: BorrowedFd<'_>) -> io::Result<ProgramStats> {
    // SAFETY: plain C structs, valid zeroed.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_prog_info>() as u32;
    attr.info.info = (&raw mut info) as u64;
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info_len` bytes into `info`, which
    // lives until the call returns.
    let status = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_int,
            &raw mut attr,
            size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if status < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ProgramStats {
        run_time_ns: info.run_time_ns,
        run_count: info.run_cnt,
        recursion_misses: info.recursion_misses,
    })
}

/// Each program's name and counts, as sampled.
pub type Costs = Vec<(&'static str, ProgramStats)>;

/// The attached programs, by name, read for their counts: what they cost (sampled for
/// the metrics and `tracer top`) and the runs the kernel skipped (lost events).
pub struct Programs {
    programs: Vec<(&'static str, ProgramFd)>,
    /// Whether skipped runs of this program are lost events.
    losing: fn(&str) -> bool,
    error_reported: bool,
}

impl Programs {
    pub fn new(programs: Vec<(&'static str, ProgramFd)>, losing: fn(&str) -> bool) -> Self {
        Self {
            programs,
            losing,
            error_reported: false,
        }
    }

    /// The runs the kernel skipped of the programs whose runs are events; programs the
    /// kernel will not describe count none.
    pub fn misses(&self) -> u64 {
        (self.programs.iter())
            .filter(|(name, _)| (self.losing)(name))
            .filter_map(|(_, fd)| read(fd.as_fd()).ok())
            .map(|stats| stats.recursion_misses)
            .sum()
    }

    /// Each program's counts; one the kernel will not describe is left out, and said once.
    pub fn costs(&mut self) -> Costs {
        let mut costs = Vec::with_capacity(self.programs.len());
        for (name, fd) in &self.programs {
            match read(fd.as_fd()) {
                Ok(stats) => costs.push((*name, stats)),
                Err(error) if !self.error_reported => {
                    self.error_reported = true;
                    eprintln!(
                        "tracer: warning: cannot read what the {name} program costs ({error}): its cost is left out"
                    );
                }
                Err(_) => {}
            }
        }
        costs
    }
}
