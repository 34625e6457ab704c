//! The selection (which connections to trace) and what the kernel is told for it: the
//! one place that turns the first into the second, as the eBPF `selector` module is the
//! one place that reads it back. A new selector rule adds its field to [`Selection`] and
//! its global in [`SelectorGlobals`].
//!
//! The net rule is an LPM trie of networks, IPv4 ones as IPv4-mapped IPv6
//! ([`tracer_common::net_key_v4`]), filled once after load ([`Selection::fill_nets`]).
//!
//! The cgroup rule names cgroups by path, and the kernel compares ids: a path's id is its
//! directory's inode, which changes when the cgroup is removed and made again (a service
//! or a container restarted). [`SelectedCgroups`] keeps the kernel's set current by
//! looking at the paths again every second; a connection made in the first second of a
//! new incarnation may be missed.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        HashMap, MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use ipnet::IpNet;
use tracer_common::{
    NET_KEY_V4_PREFIX, PortFilter, SELECTED_CGROUPS_MAP, SELECTED_NETS, SELECTED_NETS_MAP,
    SelectorRules, globals, net_key_v4,
};

use crate::pipeline::workload::{
    cgroups::{all_paths, cgroup2_mount},
    container::{container_cgroup, pod_cgroup},
    cri::PodName,
};

/// Which connections to trace: all its rules must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// A connection is traced when its local or remote port is one of these (sorted);
    /// every port when empty, which only a workload rule allows.
    pub ports: Vec<u16>,
    /// When not empty, its socket's cgroup must be one of these (paths from the cgroup2
    /// mount, as the `cgroup` field prints them) or below one...
    pub cgroups: Vec<String>,
    /// ...or the cgroup of one of these containers (ids, or their first 12 or more hex
    /// digits), found by its path at start...
    pub containers: Vec<String>,
    /// ...or the cgroup of one of these pods, found by the container runtime (CRI).
    pub pods: Vec<PodName>,
    /// When not empty, its local or remote address must be in one of these networks.
    pub nets: Vec<IpNet>,
}

/// Whether `port` is traced, `ports` sorted (every port when empty).
pub fn traces_port(ports: &[u16], port: u16) -> bool {
    ports.is_empty() || ports.binary_search(&port).is_ok()
}

/// The traced port a connection matched, `ports` sorted: its local port if traced, else
/// its remote one (the kernel reports only connections with a traced port). What the
/// metrics label, and what `tracer top` and `tracer report` group by. When every port is
/// traced, the lower of the two: the service's, next to a client's ephemeral port (Linux
/// takes those from 32768 up), so a client's connections do not make a group each.
pub fn matched_port(ports: &[u16], local: SocketAddr, remote: SocketAddr) -> u16 {
    if ports.is_empty() {
        local.port().min(remote.port())
    } else if ports.binary_search(&local.port()).is_ok() {
        local.port()
    } else {
        remote.port()
    }
}

/// The globals the selector's rules read in the kernel, built from a [`Selection`]. They
/// live apart from it because the loader borrows them until the object is loaded.
pub struct SelectorGlobals {
    port_filter: PortFilter,
    rules: SelectorRules,
}

impl Selection {
    /// Whether the socket's cgroup decides too.
    pub fn has_cgroup_rule(&self) -> bool {
        !(self.cgroups.is_empty() && self.containers.is_empty() && self.pods.is_empty())
    }

    pub fn globals(&self) -> SelectorGlobals {
        SelectorGlobals {
            port_filter: if self.ports.is_empty() {
                PortFilter::ALL
            } else {
                PortFilter::with_ports(&self.ports)
            },
            rules: SelectorRules {
                cgroups: u8::from(self.has_cgroup_rule()),
                nets: u8::from(!self.nets.is_empty()),
                _pad: [0; 6],
            },
        }
    }

    /// Whether the net rule lets a connection between `local` and `remote` through (as the
    /// kernel's rule decides: for the connections found open at start).
    pub fn nets_select(&self, local: IpAddr, remote: IpAddr) -> bool {
        self.nets.is_empty()
            || [local, remote].iter().any(|addr| {
                self.nets
                    .iter()
                    .any(|net| net.contains(&addr.to_canonical()))
            })
    }

    /// Fills the kernel's trie of the selected networks in the loaded `ebpf`.
    pub fn fill_nets(&self, ebpf: &mut Ebpf) -> Result<()> {
        if self.nets.is_empty() {
            return Ok(());
        }
        if self.nets.len() > SELECTED_NETS as usize {
            return Err(anyhow!(
                "{} networks given with --net; tracer selects at most {SELECTED_NETS}",
                self.nets.len()
            ));
        }
        let map = ebpf
            .map_mut(SELECTED_NETS_MAP)
            .ok_or_else(|| anyhow!("the eBPF object has no {SELECTED_NETS_MAP} map"))?;
        let mut trie: LpmTrie<&mut MapData, [u8; 16], u8> = LpmTrie::try_from(map)?;
        for net in &self.nets {
            let (bits, data) = match net {
                IpNet::V4(v4) => (
                    NET_KEY_V4_PREFIX + u32::from(v4.prefix_len()),
                    net_key_v4(v4.network().octets()),
                ),
                IpNet::V6(v6) => (u32::from(v6.prefix_len()), v6.network().octets()),
            };
            trie.insert(&Key::new(bits, data), 1, 0)
                .with_context(|| format!("cannot select the network {net}"))?;
        }
        Ok(())
    }
}

impl SelectorGlobals {
    /// Sets every selector global of the object `loader` will load.
    pub fn set<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader.override_global(globals::PORT_FILTER, &self.port_filter, true);
        loader.override_global(globals::SELECTOR_RULES, &self.rules, true);
    }
}

/// The selection's cgroups, found under the cgroup2 mount before anything is loaded.
pub struct CgroupRule {
    mount: PathBuf,
    paths: Vec<String>,
}

impl CgroupRule {
    /// The cgroup rule of `selection`, its containers found by their cgroups' paths, its
    /// pods by their uids (`pod_uids`, in the order of `selection.pods`, which the
    /// runtime gave); `None` without one. Every path, container and pod must be there
    /// now: a typo should not trace nothing in silence.
    pub fn find(selection: &Selection, pod_uids: &[String]) -> Result<Option<Self>> {
        if !selection.has_cgroup_rule() {
            return Ok(None);
        }
        let mount = cgroup2_mount().ok_or_else(|| {
            anyhow!(
                "--cgroup, --container and --pod need cgroup v2, and this host has no cgroup2 mount"
            )
        })?;
        for path in &selection.cgroups {
            id_of(&mount, path).with_context(|| {
                format!("no cgroup {path} under {} (--cgroup)", mount.display())
            })?;
        }
        let mut paths = selection.cgroups.clone();
        if !(selection.containers.is_empty() && pod_uids.is_empty()) {
            let all = all_paths(&mount);
            for id in &selection.containers {
                let path =
                    container_cgroup(id, &all).map_err(|why| anyhow!("{why} (--container)"))?;
                paths.push(path.to_owned());
            }
            for (pod, uid) in selection.pods.iter().zip(pod_uids) {
                let path = pod_cgroup(uid, &all).ok_or_else(|| {
                    anyhow!("the pod {pod} (uid {uid}) has no cgroup on this host (--pod)")
                })?;
                paths.push(path.to_owned());
            }
        }
        paths.sort_unstable();
        paths.dedup();
        Ok(Some(Self { mount, paths }))
    }

    /// The selected cgroups' paths.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Fills the kernel's map of the selected cgroups in the loaded `ebpf`. A container's
    /// path stays when it restarts (its id does), so it is followed like any path.
    pub fn fill(self, ebpf: &mut Ebpf) -> Result<SelectedCgroups> {
        let map = ebpf
            .take_map(SELECTED_CGROUPS_MAP)
            .ok_or_else(|| anyhow!("the eBPF object has no {SELECTED_CGROUPS_MAP} map"))?;
        let mut selected = SelectedCgroups {
            mount: self.mount,
            ids: self.paths.into_iter().map(|path| (path, 0)).collect(),
            map: HashMap::try_from(map)?,
        };
        selected.refresh()?;
        Ok(selected)
    }
}

/// The cgroups of the selection, as the kernel's map of their ids holds them.
pub struct SelectedCgroups {
    mount: PathBuf,
    /// Each selected path's id when last looked at (0: no such cgroup then).
    ids: BTreeMap<String, u64>,
    map: HashMap<MapData, u64, u8>,
}

impl SelectedCgroups {
    /// Looks at the paths again: a cgroup made again has a new id, a removed one none.
    pub fn refresh(&mut self) -> Result<()> {
        for (path, known) in &mut self.ids {
            let now = id_of(&self.mount, path).unwrap_or(0);
            if now == *known {
                continue;
            }
            if *known != 0 {
                // Gone already when the kernel removed it with its cgroup's last socket.
                let _ = self.map.remove(known);
            }
            if now != 0 {
                self.map
                    .insert(now, 1, 0)
                    .with_context(|| format!("cannot select the cgroup {path}"))?;
            }
            *known = now;
        }
        Ok(())
    }
}

/// The id of the cgroup at `path` under `mount`: its directory's inode.
fn id_of(mount: &Path, path: &str) -> Result<u64> {
    Ok(fs::metadata(mount.join(path.trim_start_matches('/')))?.ino())
}
