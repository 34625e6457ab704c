//! Cgroup ids to paths. A cgroup's id is the inode number of its directory in the
//! cgroup2 file system, so a walk of that tree (readable without privileges, which the
//! daemon has dropped by then) finds every id at once. Paths are cached; an id not in
//! the cache starts a new walk, at most one per [`WALK_EVERY`], so a burst of new
//! cgroups (a node starting pods) costs one walk and cannot stall the ring buffer's
//! reader. An id still unknown after a walk (its cgroup already removed) has no path.
//! With a container runtime to ask ([`CriNames`]), each cgroup's workload names are
//! looked up once per snapshot of the runtime's, and cached beside its path.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    container::{container_of, pod_of},
    cri::{CriNames, Snapshot},
};
use crate::event::{Cgroup, TraceEvent, WorkloadNames};

/// The least time between two walks of the cgroup tree.
pub const WALK_EVERY: Duration = Duration::from_millis(200);

/// Directories a walk visits at most: a bound on its time on a host with very many.
const WALK_LIMIT: usize = 100_000;

/// Cached paths kept at most; past that the cache starts again from the next walk.
const CACHED: usize = 65_536;

/// How this host mounts cgroups, from `/proc/self/mountinfo`: what workload attribution
/// can resolve here (`tracer check` says it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum CgroupLayout {
    /// cgroup2 alone (current distributions, Kubernetes nodes).
    Unified { cgroup2: PathBuf },
    /// v1 controllers beside a cgroup2 mount (`/sys/fs/cgroup/unified`): every process
    /// still has a v2 cgroup, which is the one a socket keeps.
    Hybrid { cgroup2: PathBuf },
    /// v1 only: sockets still carry a v2 cgroup id, but no path resolves it.
    V1Only,
    /// No cgroup file system mounted.
    None,
}

impl CgroupLayout {
    pub fn of_this_host() -> Self {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let v1 = mounts.lines().any(|line| {
            line.split_once(" - ")
                .is_some_and(|(_, after)| after.starts_with("cgroup "))
        });
        match (cgroup2_mount(), v1) {
            (Some(cgroup2), false) => Self::Unified { cgroup2 },
            (Some(cgroup2), true) => Self::Hybrid { cgroup2 },
            (None, true) => Self::V1Only,
            (None, false) => Self::None,
        }
    }

    /// One line for people: the layout and what it allows.
    pub fn describe(&self) -> String {
        match self {
            Self::Unified { cgroup2 } => format!(
                "cgroup v2 at {}: cgroup paths, containers, pods and --cgroup/--container work",
                cgroup2.display()
            ),
            Self::Hybrid { cgroup2 } => format!(
                "hybrid (v1 controllers, cgroup2 at {}): sockets keep their v2 cgroup; paths, containers, pods and --cgroup/--container work",
                cgroup2.display()
            ),
            Self::V1Only => "cgroup v1 only: records carry cgroup ids without paths; no containers, pods or --cgroup/--container".to_owned(),
            Self::None => "no cgroup file system: no workload attribution".to_owned(),
        }
    }
}

/// Where the cgroup2 file system is mounted, from `/proc/self/mountinfo`: the first
/// `cgroup2` mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE ...`
        let (before, after) = line.split_once(" - ")?;
        (after.split(' ').next()? == "cgroup2")
            .then(|| before.split(' ').nth(4).map(unescape))
            .flatten()
    })
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// Cgroup ids to their paths under the cgroup2 mount (`/` for its root), and to their
/// workloads' names when a runtime is asked.
pub struct CgroupPaths {
    root: Option<PathBuf>,
    paths: HashMap<u64, Arc<str>>,
    last_walk: Option<Instant>,
    cri: Option<Cri>,
}

/// The runtime's names: its last snapshot, and each cgroup's names in it.
struct Cri {
    names: CriNames,
    snapshot: Arc<Snapshot>,
    of: HashMap<u64, Option<Arc<WorkloadNames>>>,
}

impl CgroupPaths {
    /// Paths of the cgroups under `root`, the cgroup2 mount; none without one.
    pub fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            last_walk: None,
            cri: None,
        }
    }

    /// Names each cgroup's workload too, from `names`' snapshots.
    pub fn with_cri(mut self, mut names: CriNames) -> Self {
        let snapshot = names.latest();
        self.cri = Some(Cri {
            names,
            snapshot,
            of: HashMap::new(),
        });
        self
    }

    /// Gives `event`'s cgroup its path and names, when known.
    pub fn resolve(&mut self, event: &mut TraceEvent) {
        let Some(cgroup) = &mut event.meta_mut().cgroup else {
            return;
        };
        if cgroup.path.is_none() {
            cgroup.path = self.path(cgroup.id, Instant::now());
        }
        if cgroup.names.is_none()
            && let Some(cri) = &mut self.cri
        {
            cgroup.names = cri.names(cgroup.id, cgroup.path.as_deref());
        }
    }

    /// The path of cgroup `id`, walking the tree (if one is due at `now`) when unknown.
    pub fn path(&mut self, id: u64, now: Instant) -> Option<Arc<str>> {
        if let Some(path) = self.paths.get(&id) {
            return Some(Arc::clone(path));
        }
        let due = self
            .last_walk
            .is_none_or(|last| now.duration_since(last) >= WALK_EVERY);
        if !due {
            return None;
        }
        self.last_walk = Some(now);
        if self.paths.len() >= CACHED {
            self.paths.clear();
        }
        if let Some(root) = &self.root {
            walk(root, &mut self.paths);
        }
        self.paths.get(&id).cloned()
    }
}

impl Cri {
    /// The names of cgroup `id` at `path` in the runtime's last snapshot. A container the
    /// snapshot does not have asks for a new one (it may have just started).
    fn names(&mut self, id: u64, path: Option<&str>) -> Option<Arc<WorkloadNames>> {
        if self.names.changed() {
            self.snapshot = self.names.latest();
            self.of.clear();
        }
        if let Some(names) = self.of.get(&id) {
            return names.clone();
        }
        // Not cached without a path: the next walk may find it.
        let path = path?;
        let container = container_of(path);
        let pod = pod_of(path);
        let id_of_container = container.as_ref().map(|c| c.id.as_str());
        let names = self
            .snapshot
            .names(id_of_container, pod.as_ref().map(|p| p.uid.as_str()));
        if id_of_container.is_some_and(|c| !self.snapshot.has_container(c)) {
            self.names.ask();
        }
        let names = (names != WorkloadNames::default()).then(|| Arc::new(names));
        if self.of.len() >= CACHED {
            self.of.clear();
        }
        self.of.insert(id, names.clone());
        names
    }
}

/// The cgroup (v2) of process `pid`, from `/proc/PID/cgroup`, with its id under `mount`:
/// for the connections found open at start, whose sockets' own the dump does not give.
pub fn process_cgroup(pid: u32, mount: &Path) -> Option<Cgroup> {
    let lines = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = lines.lines().find_map(|line| line.strip_prefix("0::"))?;
    let id = fs::metadata(mount.join(path.trim_start_matches('/')))
        .ok()?
        .ino();
    Some(Cgroup::new(id, Some(path.into())))
}

/// Whether the cgroup at `path` is one of `selected` or below one.
pub fn within(path: &str, selected: &[String]) -> bool {
    selected.iter().any(|top| {
        top == "/"
            || path == top
            || path
                .strip_prefix(top.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The paths of every cgroup under `root` (the cgroup2 mount).
pub fn all_paths(root: &Path) -> Vec<Arc<str>> {
    let mut paths = HashMap::new();
    walk(root, &mut paths);
    paths.into_values().collect()
}

/// Adds every cgroup under `root` to `paths`, by the inode of its directory.
fn walk(root: &Path, paths: &mut HashMap<u64, Arc<str>>) {
    let mut pending = vec![root.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = pending.pop() {
        visited += 1;
        if visited > WALK_LIMIT {
            break;
        }
        let Ok(metadata) = fs::metadata(&dir) else {
            continue;
        };
        paths.entry(metadata.ino()).or_insert_with(|| {
            let relative = dir.strip_prefix(root).unwrap_or(&dir);
            format!("/{}", relative.display()).into()
        });
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        pending.extend(
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                .map(|entry| entry.path()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_is_within_itself_and_its_ancestors_only() {
        let selected = ["/system.slice/nginx.service".to_owned()];
        assert!(within("/system.slice/nginx.service", &selected));
        assert!(within("/system.slice/nginx.service/worker", &selected));
        assert!(!within("/system.slice/nginx.service2", &selected));
        assert!(!within("/system.slice", &selected));
        assert!(within("/anything", &["/".to_owned()]));
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(
            unescape(r"/sys/fs/cgroup/a\040b\134c"),
            PathBuf::from(r"/sys/fs/cgroup/a b\c")
        );
    }

    /// The host's own cgroup2 tree: every directory's inode is the id of a cgroup whose
    /// path the walk gives back.
    #[test]
    fn ids_of_this_host_resolve_to_their_directories() {
        let Some(root) = cgroup2_mount() else {
            panic!("this host has no cgroup2 mount");
        };
        let mut paths = CgroupPaths::new(Some(root.clone()));
        let now = Instant::now();
        let root_id = fs::metadata(&root).unwrap().ino();
        assert_eq!(paths.path(root_id, now).as_deref(), Some("/"));
        // An unknown id walks again only after WALK_EVERY.
        assert_eq!(paths.path(u64::MAX, now), None);
        assert!(paths.last_walk == Some(now));
        let child = fs::read_dir(&root)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_type().unwrap().is_dir());
        if let Some(child) = child {
            let id = child.metadata().unwrap().ino();
            let name = child.file_name();
            assert_eq!(
                paths.path(id, now + WALK_EVERY).as_deref(),
                Some(format!("/{}", name.to_string_lossy()).as_str())
            );
        }
    }
}
