//! The network namespaces of the host's processes. sock_diag lists the sockets of the
//! namespace its netlink socket was made in, and pods and containers each have their own:
//! to find every connection open at start, tracer visits each namespace a process is in,
//! once, on a thread of its own (`setns` moves only the calling thread, and the thread
//! ends with the visit).

use std::{
    collections::BTreeSet,
    fs::{self, File},
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::PathBuf,
    thread,
};

use anyhow::{Context as _, Result, anyhow};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// A network namespace, named by its inode (what `netns` fields and `ip netns identify`
/// show), with a process in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkNamespace {
    pub inode: u32,
    /// A process in it (`None`: this process's own).
    pub pid: Option<u32>,
}

impl NetworkNamespace {
    fn link(&self) -> PathBuf {
        match self.pid {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            None => PathBuf::from("/proc/self/ns/net"),
        }
    }

    /// Runs `visit` with the calling thread in this namespace: this thread for tracer's
    /// own, another otherwise.
    pub fn visit<T: Send>(&self, visit: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        if self.pid.is_none() {
            return visit();
        }
        let link = self.link();
        let namespace =
            File::open(&link).with_context(|| format!("cannot open {}", link.display()))?;
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::Network))
                        .with_context(|| format!("cannot enter {}", link.display()))?;
                    visit()
                })
                .join()
                .map_err(|_| anyhow!("the visit of {} panicked", link.display()))?
        })
    }
}

/// The inode of the namespace `link` names.
fn inode(link: &str) -> std::io::Result<u32> {
    fs::metadata(link).map(|meta| meta.ino() as u32)
}

/// The network namespaces of the host's processes.
#[derive(Debug)]
pub struct Namespaces {
    /// Each once: tracer's own first, then by the lowest pid in each.
    pub all: Vec<NetworkNamespace>,
    /// Processes whose namespace this process may not see (another user's, without
    /// CAP_SYS_PTRACE). Processes that ended meanwhile are not counted.
    pub hidden: usize,
}

/// Every network namespace some process is in.
pub fn all() -> Result<Namespaces> {
    let own = inode("/proc/self/ns/net").context("cannot read /proc/self/ns/net")?;
    let mut hidden = 0;
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .context("cannot list /proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut seen = BTreeSet::from([own]);
    let mut namespaces = vec![NetworkNamespace {
        inode: own,
        pid: None,
    }];
    for pid in pids {
        match inode(&format!("/proc/{pid}/ns/net")) {
            Ok(inode) if seen.insert(inode) => namespaces.push(NetworkNamespace {
                inode,
                pid: Some(pid),
            }),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => hidden += 1,
            Err(_) => {}
        }
    }
    Ok(Namespaces {
        all: namespaces,
        hidden,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_this_process_namespace_first_and_each_once() {
        let namespaces = all().unwrap().all;
        assert_eq!(
            namespaces.first(),
            Some(&NetworkNamespace {
                inode: inode("/proc/self/ns/net").unwrap(),
                pid: None
            })
        );
        let inodes: BTreeSet<u32> = namespaces.iter().map(|n| n.inode).collect();
        assert_eq!(inodes.len(), namespaces.len(), "{namespaces:?}");
    }

    #[test]
    fn a_visit_runs_in_the_namespace_it_names() {
        // Any namespace of the list: the visit sees that namespace's own inode.
        for namespace in all().unwrap().all {
            let seen = namespace.visit(|| {
                // The thread's own view: /proc/self is the thread group's.
                let tid = rustix::thread::gettid().as_raw_nonzero();
                Ok(inode(&format!("/proc/self/task/{tid}/ns/net"))?)
            });
            if let Ok(seen) = seen {
                assert_eq!(seen, namespace.inode, "{namespace:?}");
            }
        }
    }
}
