//! A real container runtime with its CRI API: Debian's containerd (1.6, its CRI plugin)
//! run by the test with a configuration, state and socket of its own, and pods run
//! through the CRI API as the kubelet runs them (host network, the kubelet's cgroupfs
//! layout `/kubepods/besteffort/pod<uid>/<container id>`), from an image imported
//! offline (a root file system of `busybox-static`).
//!
//! Two settings this host needs: `restrict_oom_score_adj` (the CRI lowers a sandbox's
//! `oom_score_adj`, which root here may not: it lacks CAP_SYS_RESOURCE), and empty CNI
//! directories (host-network pods need no network plugin; the CRI plugin says it is not
//! ready for others, and runs these).

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tempfile::TempDir;
use tokio::{net::UnixStream, runtime::Runtime};
use tonic::transport::{Channel, Endpoint, Uri};

use super::wait_until;

/// The image: the sandbox's (its command sleeps) and the containers'.
const IMAGE: &str = "localhost/tracer-test-busybox:1";

/// An OCI image layout of `rootfs.tar` (in the current directory) named `$1`, written to
/// `image.tar`: its layer, config, manifest and index, by their digests.
const MAKE_IMAGE: &str = r#"set -eu
mkdir -p oci/blobs/sha256
L=$(sha256sum rootfs.tar | cut -d' ' -f1); cp rootfs.tar oci/blobs/sha256/$L; LS=$(stat -c %s rootfs.tar)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sleep","1000000"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$L" > c.json
C=$(sha256sum c.json | cut -d' ' -f1); CS=$(stat -c %s c.json); mv c.json oci/blobs/sha256/$C
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$C" "$CS" "$L" "$LS" > m.json
M=$(sha256sum m.json | cut -d' ' -f1); MS=$(stat -c %s m.json); mv m.json oci/blobs/sha256/$M
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"1"}}]}' "$M" "$MS" "$1" > oci/index.json
echo '{"imageLayoutVersion":"1.0.0"}' > oci/oci-layout
tar -C oci -cf image.tar oci-layout index.json blobs
"#;

/// A running containerd; stopped, with its pods and their cgroups, when dropped.
pub struct Containerd {
    dir: TempDir,
    child: Child,
    runtime: Runtime,
    client: RuntimeServiceClient<Channel>,
    pods: Vec<Pod>,
}

/// A pod run through the CRI, with one container.
#[derive(Clone, Debug)]
pub struct Pod {
    pub uid: String,
    pub sandbox_id: String,
    pub container_id: String,
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Containerd {
    /// Starts containerd and imports [`IMAGE`] into its `k8s.io` namespace.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        for sub in ["root", "state", "cni/bin", "cni/conf", "logs"] {
            fs::create_dir_all(at(sub)).unwrap();
        }
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.opt"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
"#,
            root = at("root").display(),
            state = at("state").display(),
            sock = at("containerd.sock").display(),
            cni = at("cni").display(),
        );
        fs::write(at("containerd.toml"), config).unwrap();
        let log = fs::File::create(at("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(at("containerd.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start containerd (cargo xtask setup installs it)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = at("containerd.sock");
        let mut client = None;
        wait_until("containerd's CRI answering", || {
            client = runtime.block_on(connect(&socket));
            client.is_some()
        });
        make_image(dir.path());
        run(Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(at("image.tar")));
        Self {
            dir,
            child,
            runtime,
            client: client.unwrap(),
            pods: Vec::new(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Runs pod `namespace/name` on the host's network, with one container `container`
    /// running `command`, as the kubelet would (its cgroup under the kubelet's cgroupfs
    /// layout).
    pub fn run_pod(
        &mut self,
        namespace: &str,
        name: &str,
        container: &str,
        command: &[&str],
    ) -> Pod {
        let uid = uuid_v4();
        let logs = self.dir.path().join("logs").join(&uid);
        fs::create_dir_all(&logs).unwrap();
        let host_network = || NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let sandbox = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            log_directory: logs.display().to_string(),
            labels: HashMap::new(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let client = &mut self.client;
        let (sandbox_id, container_id) = self.runtime.block_on(async {
            let sandbox_id = client
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(sandbox.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .expect("RunPodSandbox")
                .into_inner()
                .pod_sandbox_id;
            let config = ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: container.into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: command.iter().map(|s| s.to_string()).collect(),
                log_path: format!("{container}.log"),
                linux: Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options: Some(host_network()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let container_id = client
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    config: Some(config),
                    sandbox_config: Some(sandbox),
                })
                .await
                .expect("CreateContainer")
                .into_inner()
                .container_id;
            client
                .start_container(StartContainerRequest {
                    container_id: container_id.clone(),
                })
                .await
                .expect("StartContainer");
            (sandbox_id, container_id)
        });
        let pod = Pod {
            uid,
            sandbox_id,
            container_id,
        };
        self.pods.push(pod.clone());
        pod
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let client = &mut self.client;
        let pods = std::mem::take(&mut self.pods);
        self.runtime.block_on(async {
            for pod in &pods {
                let id = pod.sandbox_id.clone();
                let _ = client
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let _ = client
                    .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await;
            }
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The kubelet removes a pod's cgroups; here the test does, in every hierarchy.
        for pod in &pods {
            for hierarchy in fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let pod_dir = hierarchy
                    .path()
                    .join(format!("kubepods/besteffort/pod{}", pod.uid));
                remove_cgroups(&pod_dir);
            }
        }
        // containerd's mounts under its root go with it; unmount what a kill left.
        let _ = Command::new("umount")
            .arg("--recursive")
            .arg("--lazy")
            .arg(self.dir.path().join("state"))
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the cgroup directory `dir` and those below it, deepest first.
fn remove_cgroups(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroups(&entry.path());
            }
        }
        let _ = fs::remove_dir(dir);
    }
}

/// The CRI client, once containerd answers.
async fn connect(socket: &Path) -> Option<RuntimeServiceClient<Channel>> {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .ok()?;
    let mut client = RuntimeServiceClient::new(channel);
    client.version(VersionRequest::default()).await.ok()?;
    Some(client)
}

/// The image's layout, from a root file system of busybox with its `sh`, `sleep` and
/// `httpd`, written to `dir/image.tar`.
fn make_image(dir: &Path) {
    let root = dir.join("rootfs");
    for sub in ["bin", "tmp", "proc", "sys", "dev", "etc", "www"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "httpd"] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("www/index.html"), "pong\n").unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf", "rootfs.tar", "."])
        .current_dir(dir));
    run(Command::new("sh")
        .args(["-c", MAKE_IMAGE, "make-image", IMAGE])
        .current_dir(dir));
}

/// A random pod uid, as the API server makes them.
fn uuid_v4() -> String {
    let bytes = fs::read("/proc/sys/kernel/random/uuid").unwrap();
    String::from_utf8(bytes).unwrap().trim().to_owned()
}
