//! `--metrics-labels container,pod,...`: the workload labels the connection families may
//! carry, off by default (a label per container multiplies a port's series by the
//! containers serving it). The ids are read from the connection's socket's cgroup path,
//! the names from what the container runtime said of it (its CRI API), as the records'
//! `container` and `pod` fields are; a connection whose cgroup names none has no such
//! label.

use crate::{
    event::{Cgroup, WorkloadNames},
    pipeline::workload::container::{container_of, pod_of},
    vocabulary::names,
};

/// A workload label `--metrics-labels` can add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadLabel {
    /// `container_id`: the container's full id.
    Container,
    /// `pod_uid`: the Kubernetes pod's uid.
    Pod,
    /// `namespace`: the pod's namespace.
    Namespace,
    /// `pod`: the pod's name.
    PodName,
    /// `container`: the container's name.
    ContainerName,
}

names!(WorkloadLabel as "metrics label" {
    Container => "container",
    Pod => "pod",
    Namespace => "namespace",
    PodName => "pod_name",
    ContainerName => "container_name",
});

impl WorkloadLabel {
    /// The label's name in the exposition.
    fn key(self) -> &'static str {
        match self {
            Self::Container => "container_id",
            Self::Pod => "pod_uid",
            Self::Namespace => "namespace",
            Self::PodName => "pod",
            Self::ContainerName => "container",
        }
    }

    /// Its value for a socket in the cgroup at `path`, which the runtime named `names`,
    /// if they say it.
    fn value(self, path: &str, names: Option<&WorkloadNames>) -> Option<String> {
        let pod = names.and_then(|names| names.pod.as_ref());
        match self {
            Self::Container => container_of(path).map(|container| container.id),
            Self::Pod => pod_of(path).map(|pod| pod.uid),
            Self::Namespace => pod.map(|pod| pod.namespace.clone()),
            Self::PodName => pod.map(|pod| pod.name.clone()),
            Self::ContainerName => names.and_then(|names| names.container.clone()),
        }
    }
}

/// The workload labels of one series: none, unless `--metrics-labels` asks.
pub type Workload = Vec<(&'static str, String)>;

/// The workload labels asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadLabels(pub Vec<WorkloadLabel>);

impl WorkloadLabels {
    /// The labels of a connection whose socket is in `cgroup`: each one asked for that
    /// its cgroup path names.
    pub fn of(&self, cgroup: Option<&Cgroup>) -> Workload {
        let Some(path) = cgroup.and_then(|cgroup| cgroup.path.as_deref()) else {
            return Workload::new();
        };
        let names = cgroup.and_then(|cgroup| cgroup.names.as_deref());
        (self.0.iter())
            .filter_map(|label| Some((label.key(), label.value(path, names)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn labels_are_the_ones_asked_for_that_the_path_names() {
        let id = "3f8d2a1c9b7e4f6a5d0c1b2a3948576f3f8d2a1c9b7e4f6a5d0c1b2a3948576f";
        let uid = "6a1f0b7e-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
            uid.replace('-', "_")
        );
        let cgroup = Cgroup::new(7, Some(Arc::from(path.as_str())));
        let both = WorkloadLabels(vec![WorkloadLabel::Container, WorkloadLabel::Pod]);
        assert_eq!(
            both.of(Some(&cgroup)),
            [("container_id", id.to_owned()), ("pod_uid", uid.to_owned())]
        );
        assert_eq!(
            WorkloadLabels(vec![WorkloadLabel::Pod]).of(Some(&cgroup)),
            [("pod_uid", uid.to_owned())]
        );
        assert!(WorkloadLabels::default().of(Some(&cgroup)).is_empty());
        let service = Cgroup::new(8, Some(Arc::from("/system.slice/nginx.service")));
        assert!(both.of(Some(&service)).is_empty());
        assert!(both.of(None).is_empty());
    }

    #[test]
    fn name_labels_are_what_the_runtime_said() {
        let path = "/kubepods/besteffort/pod6a1f0b7e-2c3d-4e5f-8a9b-0c1d2e3f4a5b/3f8d2a1c9b7e4f6a5d0c1b2a3948576f3f8d2a1c9b7e4f6a5d0c1b2a3948576f";
        let names = WorkloadLabels(vec![
            WorkloadLabel::Namespace,
            WorkloadLabel::PodName,
            WorkloadLabel::ContainerName,
        ]);
        let mut cgroup = Cgroup::new(7, Some(Arc::from(path)));
        assert!(names.of(Some(&cgroup)).is_empty(), "not named: no labels");
        cgroup.names = Some(Arc::new(WorkloadNames {
            container: Some("httpd".into()),
            runtime: Some("containerd"),
            pod: Some(crate::event::PodNames {
                uid: "6a1f0b7e-2c3d-4e5f-8a9b-0c1d2e3f4a5b".into(),
                namespace: "shop".into(),
                name: "web".into(),
            }),
        }));
        assert_eq!(
            names.of(Some(&cgroup)),
            [
                ("namespace", "shop".to_owned()),
                ("pod", "web".to_owned()),
                ("container", "httpd".to_owned())
            ]
        );
    }
}
