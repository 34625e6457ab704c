//! The container and the pod a cgroup path names, by the layouts of the runtimes and of
//! the kubelet, with the systemd and the cgroupfs cgroup drivers. Nothing is guessed: a
//! path that matches no layout names no container.
//!
//! | runtime | systemd driver | cgroupfs driver |
//! |---|---|---|
//! | Docker | `…/docker-ID.scope` | `/docker/ID` |
//! | containerd (CRI) | `…/cri-containerd-ID.scope` | `…/podUID/ID` |
//! | CRI-O | `…/crio-ID.scope` | `…/podUID/crio-ID` |
//! | Podman | `…/libpod-ID.scope` | `/libpod_parent/libpod-ID` |
//!
//! A pod's cgroup is `kubepods[-QOS]-podUID.slice` (systemd, the uid's dashes written as
//! underscores) or `kubepods/[QOS/]podUID` (cgroupfs). A bare ID under a pod is the
//! kubelet's cgroupfs layout, whose runtime the path does not say.

/// A container, as its cgroup names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The full id (64 hex digits), as `docker ps --no-trunc` or `crictl ps` show it.
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman`; `None` where the layout does not say.
    pub runtime: Option<&'static str>,
}

/// A Kubernetes pod, as its cgroup names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// The pod's uid (`kubectl get pod -o jsonpath='{.metadata.uid}'`).
    pub uid: String,
}

/// Prefixes of a container's cgroup (after an optional `.scope`) and their runtimes.
const PREFIXES: &[(&str, &str)] = &[
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container of the cgroup at `path`: its deepest component that names one (a
/// container may make cgroups of its own below it).
pub fn container_of(path: &str) -> Option<Container> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    components
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, component)| {
            let name = component.strip_suffix(".scope").unwrap_or(component);
            if let Some((id, runtime)) = PREFIXES
                .iter()
                .find_map(|(prefix, runtime)| Some((name.strip_prefix(prefix)?, *runtime)))
            {
                return is_container_id(id).then(|| Container {
                    id: id.to_owned(),
                    runtime: Some(runtime),
                });
            }
            if !is_container_id(name) {
                return None;
            }
            // A bare id: Docker's cgroupfs layout, or the kubelet's under a pod.
            let parent = i.checked_sub(1).map(|p| components[p]);
            let runtime = match parent {
                Some("docker") => Some("docker"),
                Some(parent) if pod_uid(parent).is_some() => None,
                _ => return None,
            };
            Some(Container {
                id: name.to_owned(),
                runtime,
            })
        })
}

/// The cgroup of the container whose id is, or starts with, `id` (at least 12 hex
/// digits, as `docker ps` and `podman ps` show it) among `paths`: the shallowest path
/// naming it (the container may have cgroups of its own below). An error names the
/// cause: no such container, or a prefix that names several.
pub fn container_cgroup<'p>(id: &str, paths: &'p [impl AsRef<str>]) -> Result<&'p str, String> {
    let mut found: Vec<(&str, String)> = paths
        .iter()
        .map(AsRef::as_ref)
        .filter_map(|path| {
            let container = container_of(path)?;
            container.id.starts_with(id).then_some((path, container.id))
        })
        .collect();
    found.sort_by_key(|(path, _)| path.matches('/').count());
    let ids: std::collections::BTreeSet<&String> = found.iter().map(|(_, id)| id).collect();
    match (found.first(), ids.len()) {
        (None, _) => Err(format!("no container {id} has a cgroup on this host")),
        (Some((path, _)), 1) => Ok(path),
        (Some(_), n) => Err(format!("{id} is the start of {n} containers' ids")),
    }
}

/// The cgroup of the pod `uid` among `paths`: the shallowest naming it (its containers'
/// are below).
pub fn pod_cgroup<'p>(uid: &str, paths: &'p [impl AsRef<str>]) -> Option<&'p str> {
    (paths.iter().map(AsRef::as_ref))
        .filter(|path| pod_of(path).is_some_and(|pod| pod.uid == uid))
        .min_by_key(|path| path.matches('/').count())
}

/// The pod of the cgroup at `path`.
pub fn pod_of(path: &str) -> Option<Pod> {
    if !path.split('/').any(|c| c.starts_with("kubepods")) {
        return None;
    }
    path.split('/').find_map(pod_uid).map(|uid| Pod { uid })
}

/// The pod uid a kubepods component names: `kubepods-burstable-pod<uid>.slice` (dashes
/// as underscores) or `pod<uid>`.
fn pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let uid = match name.rfind("-pod") {
        Some(at) if name.starts_with("kubepods") => &name[at + 4..],
        _ => name.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-");
    let groups: Vec<usize> = uid.split('-').map(str::len).collect();
    let hex = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (hex && groups == [8, 4, 4, 4, 12]).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f8d2a1c9b7e4f6a5d0c1b2a3948576f3f8d2a1c9b7e4f6a5d0c1b2a3948576f";
    const UID: &str = "6a1f0b7e-2c3d-4e5f-8a9b-0c1d2e3f4a5b";

    fn container(path: &str) -> Option<(String, Option<&'static str>)> {
        container_of(path).map(|c| (c.id, c.runtime))
    }

    #[test]
    fn each_runtime_and_driver_layout_names_its_container() {
        let uid_ = UID.replace('-', "_");
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), Some("docker")),
            (format!("/docker/{ID}"), Some("docker")),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some("containerd"),
            ),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), None),
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope"),
                Some("cri-o"),
            ),
            (format!("/kubepods/pod{UID}/crio-{ID}"), Some("cri-o")),
            (format!("/machine.slice/libpod-{ID}.scope"), Some("podman")),
            (format!("/libpod_parent/libpod-{ID}"), Some("podman")),
            // A cgroup the container made below its own.
            (
                format!("/system.slice/docker-{ID}.scope/init.scope"),
                Some("docker"),
            ),
        ];
        for (path, runtime) in cases {
            assert_eq!(container(&path), Some((ID.to_owned(), runtime)), "{path}");
        }
    }

    #[test]
    fn paths_of_no_container_name_none() {
        for path in [
            "/",
            "/user.slice/user-1000.slice/session-2.scope",
            "/system.slice/nginx.service",
            // podman's monitor, not the container.
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            // An id too short, or a bare id outside docker and pods.
            "/system.slice/docker-3f8d2a1c.scope",
            &format!("/something/{ID}"),
        ] {
            assert_eq!(container(path), None, "{path}");
        }
    }

    #[test]
    fn a_container_id_or_its_start_names_its_own_cgroup() {
        let other = format!("{}{}", &ID[..12], "0".repeat(52));
        let paths = [
            "/".to_owned(),
            format!("/system.slice/docker-{ID}.scope/init.scope"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/machine.slice/libpod-{other}.scope"),
        ];
        let own = format!("/system.slice/docker-{ID}.scope");
        assert_eq!(container_cgroup(ID, &paths), Ok(own.as_str()));
        assert_eq!(container_cgroup(&ID[..13], &paths), Ok(own.as_str()));
        assert_eq!(
            container_cgroup(&ID[..12], &paths),
            Err(format!("{} is the start of 2 containers' ids", &ID[..12]))
        );
        assert_eq!(
            container_cgroup("abcdefabcdef", &paths),
            Err("no container abcdefabcdef has a cgroup on this host".to_owned())
        );
    }

    #[test]
    fn pods_are_named_by_both_drivers_layouts() {
        let uid_ = UID.replace('-', "_");
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice"),
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}"),
        ] {
            assert_eq!(
                pod_of(&path),
                Some(Pod {
                    uid: UID.to_owned()
                }),
                "{path}"
            );
        }
        assert_eq!(pod_of(&format!("/system.slice/pod{UID}")), None);
        assert_eq!(pod_of("/kubepods.slice/kubepods-burstable.slice"), None);
    }
}
