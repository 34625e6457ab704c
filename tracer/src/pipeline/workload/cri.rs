//! Names no cgroup path says, from the container runtime's CRI API (the API the kubelet
//! drives containerd and CRI-O through): a container's name, and its pod's namespace and
//! name. The cgroup path gives the container's id and the pod's uid; the runtime's lists
//! of pod sandboxes and containers (`ListPodSandbox`, `ListContainers`: two calls, the
//! whole node) map them to names.
//!
//! The calls run on a task of their own ([`CriNames::spawn`]), never on the ring buffer's
//! reader: the reader looks names up in the last snapshot the task made ([`Snapshot`]),
//! and asks for a new one when it meets a container the snapshot does not have (a pod
//! just started), at most one a second. Until a snapshot has a container, its records
//! say `null` for the names: nothing is guessed.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ListContainersRequest, ListPodSandboxRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tokio::{
    net::UnixStream,
    sync::{Notify, watch},
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::event::{PodNames, WorkloadNames};

/// The sockets a CRI runtime listens on by default: containerd's, then CRI-O's.
pub const DEFAULT_SOCKETS: &[&str] = &["/run/containerd/containerd.sock", "/run/crio/crio.sock"];

/// The least time between two snapshots asked for by new containers.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A snapshot is also made this often without being asked (renamed or removed pods).
const REFRESH_ANYWAY: Duration = Duration::from_secs(30);

/// How long one call may take before the snapshot is given up (and tried again later).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Which CRI socket to ask, as `--cri-socket` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CriSocket {
    /// The first of [`DEFAULT_SOCKETS`] present; one that does not answer the CRI API is
    /// said once and done without.
    #[default]
    Auto,
    /// This one, which must answer.
    At(PathBuf),
    /// None: no names.
    Off,
}

impl CriSocket {
    /// The socket to ask: the one given, or the first of [`DEFAULT_SOCKETS`] present.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Off => None,
            Self::At(path) => Some(path.clone()),
            Self::Auto => DEFAULT_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists()),
        }
    }
}

/// A pod by its namespace and name, as `--pod` takes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The runtime's containers and pods at one time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Container id to its name and its pod's uid.
    containers: HashMap<String, (String, Option<String>)>,
    /// Pod uid to its names.
    pods: HashMap<String, PodNames>,
    /// The runtime's name, as records name runtimes.
    runtime: Option<&'static str>,
}

impl Snapshot {
    /// Whether the runtime had container `id`.
    pub fn has_container(&self, id: &str) -> bool {
        self.containers.contains_key(id)
    }

    /// The names of container `container` (its id) and pod `pod_uid`, as far as known.
    pub fn names(&self, container: Option<&str>, pod_uid: Option<&str>) -> WorkloadNames {
        let found = container.and_then(|id| self.containers.get(id));
        let pod_uid = pod_uid.or(found.and_then(|(_, pod)| pod.as_deref()));
        WorkloadNames {
            container: found.map(|(name, _)| name.clone()),
            runtime: found.and(self.runtime),
            pod: pod_uid.and_then(|uid| self.pods.get(uid)).cloned(),
        }
    }

    /// The pod named `name` in `namespace`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodNames> {
        (self.pods.values()).find(|pod| pod.namespace == namespace && pod.name == name)
    }
}

/// A connection to a runtime's CRI socket.
pub struct Cri {
    client: RuntimeServiceClient<Channel>,
    pub socket: PathBuf,
    /// What the runtime says it is (`containerd 1.6.20`).
    pub runtime: String,
    /// Its name as records name runtimes (`containerd`, `cri-o`), when it is one of those.
    name: Option<&'static str>,
}

impl Cri {
    /// Connects to the CRI at `socket` and asks its version: an error says why it does
    /// not answer (no such socket, not a CRI runtime, such as Docker's own containerd
    /// without its CRI plugin).
    pub async fn connect(socket: &Path) -> Result<Self> {
        let path = socket.to_path_buf();
        // The URI is not used: every connection goes to the socket.
        let channel =
            Endpoint::from_static("http://localhost")
                .timeout(CALL_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .with_context(|| {
                    format!("cannot connect to the CRI socket {}", socket.display())
                })?;
        let mut client = RuntimeServiceClient::new(channel);
        let version = client
            .version(VersionRequest::default())
            .await
            .map_err(|status| anyhow!("{}", status.message()))
            .with_context(|| format!("{} does not answer the CRI API (v1)", socket.display()))?
            .into_inner();
        let name = ["containerd", "cri-o"]
            .into_iter()
            .find(|name| version.runtime_name == *name);
        Ok(Self {
            client,
            socket: socket.to_path_buf(),
            runtime: format!("{} {}", version.runtime_name, version.runtime_version),
            name,
        })
    }

    /// The runtime `socket` chooses, if any. An error when the one asked for does not
    /// answer; a default one that does not (Docker's own containerd has no CRI plugin) is
    /// said in one warning.
    pub async fn choose(socket: &CriSocket) -> Result<Option<Self>> {
        match socket {
            CriSocket::Off => Ok(None),
            CriSocket::At(path) => Self::connect(path).await.map(Some),
            CriSocket::Auto => {
                let Some(path) = CriSocket::Auto.path() else {
                    return Ok(None);
                };
                match Self::connect(&path).await {
                    Ok(cri) => Ok(Some(cri)),
                    Err(error) => {
                        eprintln!(
                            "tracer: warning: {error:#}: records will not name containers and pods (--cri-socket none says no runtime)"
                        );
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The runtime's pods and containers now.
    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        let sandboxes = self
            .client
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .map_err(|status| anyhow!("ListPodSandbox: {}", status.message()))?
            .into_inner()
            .items;
        let containers = self
            .client
            .list_containers(ListContainersRequest::default())
            .await
            .map_err(|status| anyhow!("ListContainers: {}", status.message()))?
            .into_inner()
            .containers;
        let mut snapshot = Snapshot {
            runtime: self.name,
            ..Snapshot::default()
        };
        let mut sandbox_pods = HashMap::new();
        for sandbox in sandboxes {
            let Some(metadata) = sandbox.metadata else {
                continue;
            };
            sandbox_pods.insert(sandbox.id, metadata.uid.clone());
            let pod = PodNames {
                uid: metadata.uid.clone(),
                namespace: metadata.namespace,
                name: metadata.name,
            };
            snapshot.pods.insert(metadata.uid, pod);
        }
        for container in containers {
            let Some(metadata) = container.metadata else {
                continue;
            };
            let pod = sandbox_pods.get(&container.pod_sandbox_id).cloned();
            snapshot
                .containers
                .insert(container.id, (metadata.name, pod));
        }
        Ok(snapshot)
    }
}

/// The reader's side of the names: the last snapshot, and a way to ask for a new one.
#[derive(Clone)]
pub struct CriNames {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    wanted: Arc<Notify>,
}

impl CriNames {
    /// Makes a first snapshot, then keeps making them on a task of its own: when asked,
    /// at most every [`REFRESH_EVERY`], and every [`REFRESH_ANYWAY`]. A snapshot that
    /// fails (the runtime restarting) is said once on stderr and tried again later; the
    /// last one stays meanwhile.
    pub async fn spawn(mut cri: Cri) -> Result<Self> {
        let first = cri
            .snapshot()
            .await
            .with_context(|| format!("the CRI at {}", cri.socket.display()))?;
        let (send, snapshots) = watch::channel(Arc::new(first));
        let wanted = Arc::new(Notify::new());
        let asked = Arc::clone(&wanted);
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                let _ = tokio::time::timeout(REFRESH_ANYWAY, asked.notified()).await;
                match cri.snapshot().await {
                    Ok(snapshot) => {
                        warned = false;
                        if send.send(Arc::new(snapshot)).is_err() {
                            return;
                        }
                    }
                    Err(error) if !warned => {
                        warned = true;
                        eprintln!(
                            "tracer: warning: the CRI at {} did not answer ({error:#}); container and pod names may be missing until it does",
                            cri.socket.display()
                        );
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
        Ok(Self { snapshots, wanted })
    }

    /// The last snapshot, which becomes the one seen last.
    pub fn latest(&mut self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshots.borrow_and_update())
    }

    /// Whether a snapshot newer than the one seen last was made: one atomic read, for
    /// the reader to ask at every event.
    pub fn changed(&self) -> bool {
        self.snapshots.has_changed().unwrap_or(false)
    }

    /// The uid of each of `pods`, in the last snapshot: an error names one it does not
    /// have.
    pub fn pod_uids(&self, pods: &[PodName]) -> Result<Vec<String>> {
        let snapshot = self.snapshots.borrow();
        (pods.iter())
            .map(|pod| {
                let found = snapshot.pod(&pod.namespace, &pod.name);
                found
                    .map(|names| names.uid.clone())
                    .ok_or_else(|| anyhow!("no pod {pod} in the container runtime (--pod)"))
            })
            .collect()
    }

    /// Asks for a new snapshot (a container the last one does not have).
    pub fn ask(&self) {
        self.wanted.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_container_and_from_its_pod() {
        let mut snapshot = Snapshot::default();
        let pod = PodNames {
            uid: "u1".into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        snapshot.pods.insert("u1".into(), pod.clone());
        snapshot
            .containers
            .insert("c1".into(), ("httpd".into(), Some("u1".into())));
        snapshot.runtime = Some("containerd");
        let both = snapshot.names(Some("c1"), None);
        assert_eq!(both.container.as_deref(), Some("httpd"));
        assert_eq!(both.runtime, Some("containerd"));
        assert_eq!(both.pod.as_ref(), Some(&pod));
        // A pod's own cgroup (no container), and a container the runtime does not have.
        let pod_only = snapshot.names(None, Some("u1"));
        assert_eq!(
            (pod_only.pod.as_ref(), pod_only.runtime),
            (Some(&pod), None)
        );
        assert_eq!(snapshot.names(Some("c2"), None), WorkloadNames::default());
        assert_eq!(snapshot.pod("shop", "web"), Some(&pod));
        assert_eq!(snapshot.pod("shop", "db"), None);
    }
}
