//! Who holds the sockets found open at start: the process with a file descriptor on the
//! socket's inode (`/proc/PID/fd/N` -> `socket:[INODE]`), what `ss -p` shows. Every
//! process's descriptors are read once, lowest pid first, until each socket has an
//! owner or the time allowed runs out: a host with many processes and descriptors must
//! not hold up the start of tracing. A socket several processes hold (a listener shared
//! by a server's workers) gets the lowest pid, usually the one that opened it; every
//! process holding one is listed too when asked for (for `--tls auto`).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs,
    time::Instant,
};

use crate::event::Process;

/// The owners found, and whether every process was read.
#[derive(Debug, Default)]
pub struct Owners {
    pub by_inode: HashMap<u32, Process>,
    /// Every process holding one of the sockets (a listener's workers too), when asked
    /// for: the processes whose TLS library `--tls auto` hooks.
    pub holders: BTreeSet<u32>,
    /// The time allowed ran out before every process was read.
    pub cut_short: bool,
}

/// The socket inode a descriptor's link names, `socket:[INODE]`.
fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The processes holding the sockets `inodes`, read until `deadline`; with `all_holders`,
/// every process is read (not only until each socket has an owner) for `holders`.
/// Processes whose descriptors this process may not read (another user's, without
/// CAP_SYS_PTRACE) are passed over: their sockets keep no owner.
pub fn find(inodes: &HashSet<u32>, deadline: Instant, all_holders: bool) -> Owners {
    let mut owners = Owners::default();
    let Ok(entries) = fs::read_dir("/proc") else {
        return owners;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        if owners.by_inode.len() == inodes.len() && !all_holders {
            break;
        }
        if Instant::now() >= deadline {
            owners.cut_short = true;
            break;
        }
        let Ok(descriptors) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm = None;
        for descriptor in descriptors.filter_map(Result::ok) {
            let Some(inode) = fs::read_link(descriptor.path())
                .ok()
                .and_then(|link| socket_inode(link.to_str()?))
            else {
                continue;
            };
            if inodes.contains(&inode) && all_holders {
                owners.holders.insert(pid);
            }
            if inodes.contains(&inode) && !owners.by_inode.contains_key(&inode) {
                let comm = comm.get_or_insert_with(|| {
                    fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|comm| comm.trim_end_matches('\n').to_owned())
                        .unwrap_or_default()
                });
                owners.by_inode.insert(
                    inode,
                    Process {
                        pid,
                        comm: comm.clone(),
                    },
                );
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream},
        os::unix::fs::MetadataExt as _,
        time::Duration,
    };

    use super::*;

    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u32 {
        fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino() as u32
    }

    #[test]
    fn finds_this_process_holding_its_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let inodes = HashSet::from([inode_of(&listener), inode_of(&client)]);
        let owners = find(&inodes, Instant::now() + Duration::from_secs(30), true);
        let me = Process {
            pid: std::process::id(),
            comm: fs::read_to_string("/proc/self/comm")
                .unwrap()
                .trim_end()
                .to_owned(),
        };
        assert!(!owners.cut_short);
        for inode in &inodes {
            assert_eq!(owners.by_inode.get(inode), Some(&me), "{owners:?}");
        }
        assert_eq!(owners.holders, BTreeSet::from([me.pid]));
    }

    #[test]
    fn stops_when_the_time_allowed_ran_out() {
        let owners = find(&HashSet::from([1]), Instant::now(), false);
        assert!(owners.cut_short && owners.by_inode.is_empty(), "{owners:?}");
    }

    #[test]
    fn reads_socket_links_only() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
