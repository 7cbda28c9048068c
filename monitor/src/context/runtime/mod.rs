//! A container's name, image, pod and posture, read from its runtime's own
//! state files under a host root (`/`, or `/host` in a DaemonSet). Read-only:
//! nothing here asks a runtime's API or writes anything.
//!
//! | runtime    | files (under the host root) |
//! | ---------- | --------------------------- |
//! | Docker     | `var/lib/docker/containers/<id>/config.v2.json` and `hostconfig.json` |
//! | containerd | `run/containerd/io.containerd.runtime.v2.task/{k8s.io,moby}/<id>/config.json` (OCI, `io.kubernetes.cri.*` annotations) |
//! | CRI-O      | `run/containers/storage/overlay-containers/<id>/userdata/config.json` (OCI, `io.kubernetes.cri-o.*` annotations) |
//! | Podman     | `var/lib/containers/storage/overlay-containers/<id>/userdata/config.json` and the store's `containers.json` |
//!
//! Rootless Docker and Podman keep the same files under the user's home
//! (`~/.local/share/docker`, `~/.local/share/containers/storage`), found
//! through the host's `etc/passwd`.
//!
//! This file holds what every runtime yields ([`RuntimeMetadata`],
//! [`Posture`]) and how state files are read safely; `docker` and `oci`
//! each parse one family of formats.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::cgroup_path::{CgroupIdentity, Runtime};

mod docker;
mod oci;

pub use docker::read_docker;
pub use oci::{read_containerd, read_crio, read_podman};

/// The largest state file read; `containers.json` lists every container of a store.
const MAX_STATE_FILE: u64 = 16 << 20;

/// Where the runtimes keep their state, relative to `host_root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimePaths {
    /// The host's `/` as the agent sees it: `/`, or `/host` in a DaemonSet.
    pub host_root: PathBuf,
    /// Docker's data root (`data-root` in `daemon.json`).
    pub docker_root: PathBuf,
    /// containerd's state directory (`state` in `config.toml`).
    pub containerd_state: PathBuf,
    /// The containerd namespaces whose task bundles are searched, in order.
    pub containerd_namespaces: Vec<String>,
    /// The containers/storage run root CRI-O keeps `userdata` in.
    pub storage_runroot: PathBuf,
    /// The containers/storage graph root Podman keeps `userdata` and `containers.json` in.
    pub storage_graphroot: PathBuf,
}

impl Default for RuntimePaths {
    fn default() -> Self {
        RuntimePaths::with_host_root("/")
    }
}

impl RuntimePaths {
    /// The runtimes' default locations under `host_root`.
    pub fn with_host_root(host_root: impl Into<PathBuf>) -> Self {
        RuntimePaths {
            host_root: host_root.into(),
            docker_root: "var/lib/docker".into(),
            containerd_state: "run/containerd".into(),
            containerd_namespaces: vec!["k8s.io".into(), "moby".into()],
            storage_runroot: "run/containers/storage".into(),
            storage_graphroot: "var/lib/containers/storage".into(),
        }
    }

    /// An absolute host path (or one relative to the host's `/`) under `host_root`.
    fn host(&self, path: &Path) -> PathBuf {
        self.host_root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The home directory of `uid`, from the host's `etc/passwd`.
    fn home_of(&self, uid: u32) -> Option<PathBuf> {
        let passwd = std::fs::read_to_string(self.host(Path::new("etc/passwd"))).ok()?;
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| self.host(Path::new(f[5])))
        })
    }

    fn docker_roots(&self, rootless_uid: Option<u32>) -> Vec<PathBuf> {
        match rootless_uid {
            Some(uid) => self
                .home_of(uid)
                .map(|home| home.join(".local/share/docker"))
                .into_iter()
                .collect(),
            None => vec![self.host(&self.docker_root)],
        }
    }

    /// Podman's (graph root, run root) pairs to search.
    fn storage_roots(&self, rootless_uid: Option<u32>) -> Vec<(PathBuf, PathBuf)> {
        match rootless_uid {
            Some(uid) => self
                .home_of(uid)
                .map(|home| {
                    (
                        home.join(".local/share/containers/storage"),
                        self.host(Path::new(&format!("run/user/{uid}/containers"))),
                    )
                })
                .into_iter()
                .collect(),
            None => vec![(
                self.host(&self.storage_graphroot),
                self.host(&self.storage_runroot),
            )],
        }
    }
}

/// A resource limit as the runtime configured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// No limit: the container may use all the host has.
    Unlimited,
    /// Bytes for memory, millicores (1000 = one CPU) for CPU.
    Set(u64),
}

/// Facts about how a container runs that the posture rules judge.
/// Each is `None` when the runtime's files do not say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Posture {
    /// Docker's and Podman's `--privileged`; for CRI runtimes inferred from the
    /// spec as they write it for privileged containers (`CAP_SYS_ADMIN` in the
    /// bounding set and no masked paths).
    pub privileged: Option<bool>,
    /// Shares the host's network namespace (Docker `--network host`, a pod's
    /// `hostNetwork`: an OCI spec without a network namespace).
    pub host_network: Option<bool>,
    /// Docker's network mode as written (`bridge`, `host`, `none`, `container:<id>`, ...).
    pub network_mode: Option<String>,
    /// The root filesystem is mounted read-only.
    pub read_only_rootfs: Option<bool>,
    /// The memory limit in bytes.
    pub memory_limit: Option<Limit>,
    /// The CPU limit in millicores.
    pub cpu_limit: Option<Limit>,
    /// Docker's restart policy: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub restart_policy: Option<String>,
    /// The user the main process runs as, as configured (`nginx`, `1000:1000`, `0`).
    pub user: Option<String>,
    /// The numeric uid, where the files give it.
    pub uid: Option<u32>,
    /// Shares the host's pid namespace (Docker `--pid host`, a pod's
    /// `hostPID`: an OCI spec without a pid namespace).
    pub host_pid: Option<bool>,
    /// Shares the host's IPC namespace (Docker `--ipc host`, a pod's `hostIPC`).
    pub host_ipc: Option<bool>,
    /// Capabilities added to the runtime's default set, without `CAP_`
    /// (`SYS_ADMIN`; `ALL` for Docker's `--cap-add ALL`): Docker's `CapAdd`
    /// as written, for OCI runtimes the bounding set minus the default set
    /// Docker, containerd and CRI-O give a container.
    pub capabilities_added: Option<Vec<String>>,
    /// The seccomp filter is off (Docker `--security-opt seccomp=unconfined`;
    /// an OCI spec without `linux.seccomp`).
    pub seccomp_unconfined: Option<bool>,
    /// AppArmor confinement is off (`apparmor=unconfined`, or the spec's
    /// profile is `unconfined`). `None` when the files do not say (an OCI
    /// spec without a profile, on a host without AppArmor).
    pub apparmor_unconfined: Option<bool>,
    /// SELinux labelling is off (Docker `--security-opt label=disable`).
    pub selinux_disabled: Option<bool>,
    /// Host paths mounted into the container (bind mounts).
    pub mounts: Option<Vec<HostMount>>,
    /// Ports the container exposes or publishes (Docker: the image's and
    /// `--expose`'s `ExposedPorts`, and `-p`'s `PortBindings`).
    pub exposed_ports: Option<Vec<ExposedPort>>,
}

/// A host path mounted into a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostMount {
    /// The host path.
    pub source: String,
    /// Where the container sees it.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A port a container exposes (and perhaps publishes on the host).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ExposedPort {
    /// The container's port.
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The host port it is published on (`-p 8080:80`), if any.
    pub published: Option<u16>,
}

/// The capabilities Docker, containerd and CRI-O give a container by default
/// (moby's `oci/caps/defaults.go`; CRI-O's default lacks a few of them,
/// none dangerous).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// `cap_sys_admin`, `CAP_SYS_ADMIN` and `SYS_ADMIN` to `SYS_ADMIN`.
pub fn capability_name(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_owned).unwrap_or(up)
}

/// What the runtime's state files say about one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeMetadata {
    /// Whose files were read (may differ from the path's guess, see
    /// [`CgroupIdentity::runtime_inferred`]).
    pub runtime: Runtime,
    /// The container's name: Docker's without the leading `/`, the Kubernetes container name.
    pub name: Option<String>,
    /// The image as the user asked for it (`nginx:1.27`, `docker.io/library/nginx:1.27`).
    pub image: Option<String>,
    /// The Kubernetes pod's name.
    pub pod: Option<String>,
    /// The Kubernetes namespace.
    pub namespace: Option<String>,
    /// The Kubernetes pod's UID.
    pub pod_uid: Option<String>,
    /// The pod sandbox the container runs in (CRI runtimes).
    pub sandbox_id: Option<String>,
    /// The pod's sandbox ("pause") container itself, not a workload.
    pub is_sandbox: bool,
    /// Docker's container labels, CRI-O's container labels.
    pub labels: BTreeMap<String, String>,
    /// How the container runs.
    pub posture: Posture,
}

impl RuntimeMetadata {
    fn new(runtime: Runtime) -> Self {
        RuntimeMetadata {
            runtime,
            name: None,
            image: None,
            pod: None,
            namespace: None,
            pod_uid: None,
            sandbox_id: None,
            is_sandbox: false,
            labels: BTreeMap::new(),
            posture: Posture::default(),
        }
    }

    /// Name and image known, and for CRI runtimes pod and namespace too.
    pub fn is_complete(&self) -> bool {
        self.name.is_some()
            && self.image.is_some()
            && (!self.runtime.is_cri() || (self.pod.is_some() && self.namespace.is_some()))
    }
}

/// Why a container's metadata could not be read.
#[derive(Debug, Error)]
pub enum MetadataError {
    /// The runtime has not written the file yet (or the container is already
    /// gone); worth trying again shortly.
    #[error("{} is not there (not written yet, or the container is gone)", path.display())]
    NotWritten {
        /// The file looked for.
        path: PathBuf,
    },
    #[error(
        "cannot read {}: {source}; give the agent read access to the runtime's state under the host root",
        path.display()
    )]
    /// The file is there but cannot be read (permissions, not a regular
    /// file, a symlink, too large).
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    #[error("{} is not in the format the runtime writes: {source}", path.display())]
    /// The file is not the JSON the runtime writes (or is still being written,
    /// see [`MetadataError::is_retryable`]).
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
}

impl MetadataError {
    /// Whether trying again later may succeed: the file is missing, or ends
    /// early as a file being written does.
    pub fn is_retryable(&self) -> bool {
        match self {
            MetadataError::NotWritten { .. } => true,
            MetadataError::Malformed { source, .. } => source.is_eof(),
            MetadataError::Unreadable { .. } => false,
        }
    }
}

/// Reads the metadata of the container `identity` names from its runtime's files.
pub fn read_metadata(
    paths: &RuntimePaths,
    identity: &CgroupIdentity,
) -> Result<RuntimeMetadata, MetadataError> {
    let id = identity.container_id.as_str();
    let uid = identity.rootless_uid;
    match identity.runtime {
        Runtime::Docker => first_found(paths.docker_roots(uid), |root| read_docker(&root, id)),
        Runtime::Containerd => {
            let found = first_found(paths.containerd_namespaces.iter(), |ns| {
                read_containerd(
                    &paths
                        .host(&paths.containerd_state)
                        .join("io.containerd.runtime.v2.task")
                        .join(ns)
                        .join(id),
                )
            });
            match found {
                // A bare id under kubepods may be cri-dockerd's.
                Err(e @ MetadataError::NotWritten { .. }) if identity.runtime_inferred => {
                    first_found(paths.docker_roots(uid), |root| read_docker(&root, id))
                        .map_err(|_| e)
                }
                other => other,
            }
        }
        Runtime::Crio => {
            let candidates = [
                paths.host(&paths.storage_runroot),
                paths.host(&paths.storage_graphroot),
            ];
            first_found(candidates, |root| {
                read_crio(&root.join("overlay-containers").join(id).join("userdata"))
            })
        }
        Runtime::Podman => first_found(paths.storage_roots(uid), |(graph, run)| {
            read_podman(&graph, &run, id)
        }),
    }
}

/// The first candidate whose files exist, or the first "not written" error.
fn first_found<T, I: IntoIterator>(
    candidates: I,
    mut read: impl FnMut(I::Item) -> Result<T, MetadataError>,
) -> Result<T, MetadataError> {
    let mut missing = None;
    for c in candidates {
        match read(c) {
            Err(e @ MetadataError::NotWritten { .. }) => {
                missing.get_or_insert(e);
            }
            other => return other,
        }
    }
    Err(missing.unwrap_or_else(|| MetadataError::NotWritten {
        // No candidate at all: a rootless user without a home in etc/passwd.
        path: PathBuf::from("etc/passwd"),
    }))
}

/// Reads a runtime state file: a regular file, not through a symlink, bounded
/// in size, never blocking (a FIFO planted in a rootless user's store must not
/// stall the agent).
fn read_state_file(path: &Path) -> Result<Vec<u8>, MetadataError> {
    let unreadable = |source| MetadataError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MetadataError::NotWritten {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(unreadable(io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_STATE_FILE {
        return Err(unreadable(io::Error::other(format!(
            "larger than {MAX_STATE_FILE} bytes"
        ))));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_STATE_FILE)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    Ok(buf)
}

fn parse<'a, T: Deserialize<'a>>(path: &Path, bytes: &'a [u8]) -> Result<T, MetadataError> {
    serde_json::from_slice(bytes).map_err(|source| MetadataError::Malformed {
        path: path.to_owned(),
        source,
    })
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::context::cgroup_path::parse_cgroup_path;

    /// The fixtures: a host root holding each runtime's real state files.
    pub(crate) fn fixture_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/runtime/host")
    }

    pub(crate) const DOCKER_WEB: &str =
        "8ad700d1f7115aba42de87ce088d3f16808a1ac54e2d7f562c499bdef8d0a0d4";
    pub(crate) const DOCKER_PRIV: &str =
        "43f0f7a7161b170c4666003296a36c6faae295016849ff5416d67a524e17703c";
    /// Real files of Docker 20.10 on this kind of machine: `docker run
    /// --privileged --network host --pid host --ipc host --cap-add SYS_ADMIN
    /// --cap-add NET_ADMIN --restart always --security-opt seccomp=unconfined
    /// --security-opt apparmor=unconfined --security-opt label=disable -v
    /// <sock>:/var/run/docker.sock -v /etc:/host/etc:ro -v /:/host --expose 8080`.
    pub(crate) const DOCKER_BAD: &str =
        "2978717dda3c653752a539e9d36d2be99b073d48bafe49383f91e2b5d0f1e489";
    /// `docker run --read-only --user 1000:1000 --memory 64m --cpus 0.5
    /// --restart no --cap-drop ALL --network none --security-opt no-new-privileges`.
    pub(crate) const DOCKER_GOOD: &str =
        "1be9239cd6ebb0e1ec90f915f9c32c33aaaa6b63ff1a9ac307007e63cf2b77e2";
    /// `docker run --restart on-failure --network none --expose 9000/udp -p 127.0.0.1:8081:80`.
    pub(crate) const DOCKER_ONFAIL: &str =
        "df87e56387b4547bcee6f521c353ece885f93712a4cfebfddf7dbbe34640ff55";
    pub(crate) const CONTAINERD_APP: &str =
        "7be7ca56452ce0f69575654683e3b8cdc61d8898d06caf92fbf5ffffcd856bd7";
    pub(crate) const CONTAINERD_SANDBOX: &str =
        "2f8ce2bd696584bcc7d7c107135a38354d6766bc7ea7dd137bb4acfc92592268";
    pub(crate) const CRIO_APP: &str =
        "438e2ba9d5970597608a7df68ae72f6085a1460f976f964ed5f369c793eaa4fe";
    pub(crate) const PODMAN_WEB: &str =
        "2ce0d2ad61e6c6f318b83c01ca2f4f8fdef947a0345a5734c9fa885e5e963f0b";
    pub(crate) const PODMAN_ROOTLESS: &str =
        "57656b20fb883085861e0047f87e29302bfb811ca3e13ab9308650b7070f2fd5";

    fn read(path: &str) -> Result<RuntimeMetadata, MetadataError> {
        let identity = parse_cgroup_path(path).expect("a container path");
        read_metadata(&RuntimePaths::with_host_root(fixture_root()), &identity)
    }

    #[test]
    fn docker_container_with_limits() {
        let m = read(&format!("/system.slice/docker-{DOCKER_WEB}.scope")).unwrap();
        assert_eq!(m.runtime, Runtime::Docker);
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(m.pod, None);
        assert_eq!(
            m.labels
                .get("com.docker.compose.service")
                .map(String::as_str),
            Some("web")
        );
        assert!(m.is_complete());
        let p = m.posture;
        assert_eq!(p.privileged, Some(false));
        assert_eq!(p.host_network, Some(false));
        assert_eq!(p.network_mode.as_deref(), Some("bridge"));
        assert_eq!(p.read_only_rootfs, Some(true));
        assert_eq!(p.memory_limit, Some(Limit::Set(268_435_456)));
        assert_eq!(p.cpu_limit, Some(Limit::Set(500)));
        assert_eq!(p.restart_policy.as_deref(), Some("on-failure:5"));
        assert_eq!(p.user.as_deref(), Some("101:101"));
        assert_eq!(p.uid, Some(101));
    }

    #[test]
    fn docker_privileged_host_network_unbounded_root() {
        let m = read(&format!("/docker/{DOCKER_PRIV}")).unwrap();
        assert_eq!(m.name.as_deref(), Some("debug"));
        assert_eq!(m.image.as_deref(), Some("alpine:3.20"));
        let p = m.posture;
        assert_eq!(p.privileged, Some(true));
        assert_eq!(p.host_network, Some(true));
        assert_eq!(p.read_only_rootfs, Some(false));
        assert_eq!(p.memory_limit, Some(Limit::Unlimited));
        assert_eq!(p.cpu_limit, Some(Limit::Unlimited));
        assert_eq!(p.restart_policy.as_deref(), Some("always"));
        assert_eq!(p.user.as_deref(), Some("0"));
        assert_eq!(p.uid, Some(0));
    }

    #[test]
    fn docker_every_unsafe_practice_from_real_files() {
        let m = read(&format!("/docker/{DOCKER_BAD}")).unwrap();
        assert_eq!(m.name.as_deref(), Some("bad"));
        let p = m.posture;
        assert_eq!(p.privileged, Some(true));
        assert_eq!(p.host_network, Some(true));
        assert_eq!(p.host_pid, Some(true));
        assert_eq!(p.host_ipc, Some(true));
        assert_eq!(
            p.capabilities_added,
            Some(vec!["SYS_ADMIN".into(), "NET_ADMIN".into()])
        );
        assert_eq!(p.seccomp_unconfined, Some(true));
        assert_eq!(p.apparmor_unconfined, Some(true));
        assert_eq!(p.selinux_disabled, Some(true));
        assert_eq!(p.read_only_rootfs, Some(false));
        assert_eq!(p.memory_limit, Some(Limit::Unlimited));
        assert_eq!(p.cpu_limit, Some(Limit::Unlimited));
        assert_eq!(p.restart_policy.as_deref(), Some("always"));
        assert_eq!(p.uid, Some(0));
        let mounts = p.mounts.unwrap();
        let m = |src: &str, dst: &str, ro: bool| HostMount {
            source: src.into(),
            destination: dst.into(),
            read_only: ro,
        };
        assert_eq!(
            mounts,
            vec![
                m("/", "/host", false),
                m("/etc", "/host/etc", true),
                m("/tmp/pd/docker.sock", "/var/run/docker.sock", false),
            ]
        );
        assert_eq!(
            p.exposed_ports,
            Some(vec![ExposedPort {
                port: 8080,
                protocol: "tcp".into(),
                published: None
            }])
        );
    }

    #[test]
    fn docker_every_practice_followed_from_real_files() {
        let p = read(&format!("/docker/{DOCKER_GOOD}")).unwrap().posture;
        assert_eq!(p.privileged, Some(false));
        assert_eq!(p.host_network, Some(false));
        assert_eq!(p.network_mode.as_deref(), Some("none"));
        assert_eq!(p.host_pid, Some(false));
        assert_eq!(p.host_ipc, Some(false));
        assert_eq!(p.capabilities_added, Some(vec![]));
        assert_eq!(p.seccomp_unconfined, Some(false));
        assert_eq!(p.apparmor_unconfined, Some(false));
        assert_eq!(p.selinux_disabled, Some(false));
        assert_eq!(p.read_only_rootfs, Some(true));
        assert_eq!(p.memory_limit, Some(Limit::Set(64 << 20)));
        assert_eq!(p.cpu_limit, Some(Limit::Set(500)));
        assert_eq!(p.restart_policy.as_deref(), Some("no"));
        assert_eq!(p.uid, Some(1000));
        assert_eq!(p.mounts, Some(vec![]));
        assert_eq!(p.exposed_ports, Some(vec![]));
    }

    #[test]
    fn docker_on_failure_without_cap_and_published_ports() {
        let p = read(&format!("/docker/{DOCKER_ONFAIL}")).unwrap().posture;
        assert_eq!(p.restart_policy.as_deref(), Some("on-failure"));
        let port = |port, protocol: &str, published| ExposedPort {
            port,
            protocol: protocol.into(),
            published,
        };
        assert_eq!(
            p.exposed_ports,
            Some(vec![port(80, "tcp", Some(8081)), port(9000, "udp", None)])
        );
        // The older fixture: published 80/tcp, capped retries.
        let web = read(&format!("/docker/{DOCKER_WEB}")).unwrap().posture;
        assert_eq!(web.exposed_ports, Some(vec![port(80, "tcp", Some(8080))]));
        assert_eq!(web.seccomp_unconfined, Some(false));
        assert_eq!(web.apparmor_unconfined, Some(false));
    }

    #[test]
    fn oci_namespaces_capabilities_seccomp_and_binds() {
        let spec: oci::OciSpec = serde_json::from_str(
            r#"{"ociVersion":"1.1.0",
                "process":{"apparmorProfile":"unconfined","capabilities":{"bounding":["CAP_CHOWN","CAP_KILL","CAP_SYS_PTRACE","CAP_BPF"]}},
                "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                          {"destination":"/var/run/docker.sock","type":"bind","source":"/run/docker.sock","options":["rbind","rw"]},
                          {"destination":"/host","source":"/etc","options":["rbind","ro"]}],
                "linux":{"maskedPaths":["/proc/kcore"],"namespaces":[{"type":"network"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        let p = oci::oci_posture(&spec);
        assert_eq!(p.host_network, Some(false));
        assert_eq!(p.host_pid, Some(true));
        assert_eq!(p.host_ipc, Some(true));
        assert_eq!(p.seccomp_unconfined, Some(true));
        assert_eq!(p.apparmor_unconfined, Some(true));
        assert_eq!(
            p.capabilities_added,
            Some(vec!["SYS_PTRACE".into(), "BPF".into()])
        );
        let mounts = p.mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].source, "/run/docker.sock");
        assert!(!mounts[0].read_only);
        assert_eq!(mounts[1].destination, "/host");
        assert!(mounts[1].read_only);
        // containerd's real spec of a Kubernetes container: its namespaces
        // are the pod's and a filter is set.
        let m = read(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod01b4b887_7635_4346_9c20_58a294bbb034.slice/cri-containerd-{CONTAINERD_APP}.scope"
        ))
        .unwrap();
        assert_eq!(m.posture.host_pid, Some(false));
        assert_eq!(m.posture.host_ipc, Some(false));
    }

    #[test]
    fn containerd_kubernetes_container() {
        let m = read(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod01b4b887_7635_4346_9c20_58a294bbb034.slice/cri-containerd-{CONTAINERD_APP}.scope"
        ))
        .unwrap();
        assert_eq!(m.runtime, Runtime::Containerd);
        assert_eq!(m.name.as_deref(), Some("coredns"));
        assert_eq!(
            m.image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.11.1")
        );
        assert_eq!(m.pod.as_deref(), Some("coredns-6d4b75cb6d-w4b72"));
        assert_eq!(m.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("01b4b887-7635-4346-9c20-58a294bbb034")
        );
        assert_eq!(m.sandbox_id.as_deref(), Some(CONTAINERD_SANDBOX));
        assert!(!m.is_sandbox);
        assert!(m.is_complete());
        let p = m.posture;
        assert_eq!(p.privileged, Some(false));
        assert_eq!(p.host_network, Some(false));
        assert_eq!(p.read_only_rootfs, Some(true));
        assert_eq!(p.memory_limit, Some(Limit::Set(178_257_920)));
        assert_eq!(p.cpu_limit, Some(Limit::Set(100)));
        assert_eq!(p.user.as_deref(), Some("65532:65532"));
        assert_eq!(p.restart_policy, None);
    }

    #[test]
    fn containerd_sandbox_found_by_a_bare_id() {
        let m = read(&format!(
            "/kubepods/burstable/pod01b4b887-7635-4346-9c20-58a294bbb034/{CONTAINERD_SANDBOX}"
        ))
        .unwrap();
        assert!(m.is_sandbox);
        assert_eq!(m.name.as_deref(), Some("POD"));
        assert_eq!(m.image.as_deref(), Some("registry.k8s.io/pause:3.9"));
        assert_eq!(m.pod.as_deref(), Some("coredns-6d4b75cb6d-w4b72"));
        assert!(m.is_complete());
        // The sandbox owns the pod's network namespace; it is not the host's.
        assert_eq!(m.posture.host_network, Some(false));
        assert_eq!(m.posture.cpu_limit, Some(Limit::Unlimited));
    }

    #[test]
    fn crio_kubernetes_container() {
        let m = read(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5b5e07db_f1b9_4530_81ef_b7d04d66b83e.slice/crio-{CRIO_APP}.scope"
        ))
        .unwrap();
        assert_eq!(m.runtime, Runtime::Crio);
        assert_eq!(m.name.as_deref(), Some("coredns"));
        assert_eq!(
            m.image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.11.1")
        );
        assert_eq!(m.pod.as_deref(), Some("coredns-6d4b75cb6d-4mtdm"));
        assert_eq!(m.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("5b5e07db-f1b9-4530-81ef-b7d04d66b83e")
        );
        assert_eq!(
            m.sandbox_id.as_deref(),
            Some("500027715b8ab8cdb7871c0894b8a7d3eea199c7a8f458351952f44a6ad6cc14")
        );
        assert_eq!(
            m.labels
                .get("io.kubernetes.container.name")
                .map(String::as_str),
            Some("coredns")
        );
        assert!(m.is_complete());
        let p = m.posture;
        assert_eq!(p.privileged, Some(false));
        assert_eq!(p.host_network, Some(false));
        assert_eq!(p.read_only_rootfs, Some(true));
        assert_eq!(p.memory_limit, Some(Limit::Set(178_257_920)));
        assert_eq!(p.cpu_limit, Some(Limit::Unlimited));
        assert_eq!(p.uid, Some(0));
    }

    #[test]
    fn podman_rootful_privileged_from_its_annotation() {
        let m = read(&format!("/machine.slice/libpod-{PODMAN_WEB}.scope")).unwrap();
        assert_eq!(m.runtime, Runtime::Podman);
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image.as_deref(), Some("docker.io/library/nginx:1.27.4"));
        assert!(m.is_complete());
        let p = m.posture;
        assert_eq!(p.privileged, Some(true));
        assert_eq!(p.host_network, Some(false));
        assert_eq!(p.memory_limit, Some(Limit::Set(536_870_912)));
        assert_eq!(p.cpu_limit, Some(Limit::Set(1500)));
        assert_eq!(p.read_only_rootfs, Some(false));
    }

    #[test]
    fn podman_rootless_found_through_passwd() {
        let m = read(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{PODMAN_ROOTLESS}.scope"
        ))
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("sleepy_ramanujan"));
        assert_eq!(m.image.as_deref(), Some("docker.io/library/nginx:1.27.4"));
        assert_eq!(m.posture.privileged, Some(false));
        assert_eq!(m.posture.host_network, Some(true));
        assert_eq!(m.posture.uid, Some(0));
    }

    #[test]
    fn rootless_docker_and_cri_dockerd_bare_ids_read_docker_files() {
        let root = tempfile::tempdir().unwrap();
        let id = "9".repeat(64);
        let write = |docker_root: &Path, labels: &str| {
            let dir = docker_root.join("containers").join(&id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("config.v2.json"),
                format!(
                    r#"{{"ID":"{id}","Name":"/k8s_app_shop-0_shop_5b5e07db-f1b9-4530-81ef-b7d04d66b83e_0","Config":{{"Image":"shop:2","User":"1000","Labels":{labels}}}}}"#
                ),
            )
            .unwrap();
            std::fs::write(
                dir.join("hostconfig.json"),
                r#"{"NetworkMode":"container:abc"}"#,
            )
            .unwrap();
        };
        let paths = RuntimePaths::with_host_root(root.path());

        // Rootless: under the user's home, found through etc/passwd.
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        )
        .unwrap();
        write(&root.path().join("home/bob/.local/share/docker"), "null");
        let rootless = parse_cgroup_path(&format!(
            "/user.slice/user-1001.slice/user@1001.service/user.slice/docker-{id}.scope"
        ))
        .unwrap();
        let m = read_metadata(&paths, &rootless).unwrap();
        assert_eq!(m.image.as_deref(), Some("shop:2"));
        assert_eq!(m.posture.uid, Some(1000));
        assert_eq!(m.posture.host_network, Some(false));
        // Rootful Docker has no such container.
        let rootful = parse_cgroup_path(&format!("/docker/{id}")).unwrap();
        assert!(matches!(
            read_metadata(&paths, &rootful),
            Err(MetadataError::NotWritten { .. })
        ));

        // A bare id under kubepods: containerd's bundle is missing, cri-dockerd's files are there.
        write(
            &root.path().join("var/lib/docker"),
            r#"{"io.kubernetes.container.name":"app","io.kubernetes.pod.name":"shop-0","io.kubernetes.pod.namespace":"shop","io.kubernetes.pod.uid":"5b5e07db-f1b9-4530-81ef-b7d04d66b83e"}"#,
        );
        let bare = parse_cgroup_path(&format!(
            "/kubepods/besteffort/pod5b5e07db-f1b9-4530-81ef-b7d04d66b83e/{id}"
        ))
        .unwrap();
        assert_eq!(
            (bare.runtime, bare.runtime_inferred),
            (Runtime::Containerd, true)
        );
        let m = read_metadata(&paths, &bare).unwrap();
        assert_eq!(m.runtime, Runtime::Docker);
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.pod.as_deref(), Some("shop-0"));
        assert_eq!(m.namespace.as_deref(), Some("shop"));
        assert!(m.is_complete());
        // A scope that names containerd is not looked for in Docker's files.
        let named = parse_cgroup_path(&format!("/system.slice/cri-containerd-{id}.scope")).unwrap();
        assert!(matches!(
            read_metadata(&paths, &named),
            Err(MetadataError::NotWritten { .. })
        ));
    }

    #[test]
    fn missing_files_are_not_written_yet_and_retryable() {
        let absent = "0".repeat(64);
        for path in [
            format!("/system.slice/docker-{absent}.scope"),
            format!("/system.slice/cri-containerd-{absent}.scope"),
            format!("/system.slice/crio-{absent}.scope"),
            format!("/machine.slice/libpod-{absent}.scope"),
            format!("/kubepods/pod01b4b887-7635-4346-9c20-58a294bbb034/{absent}"),
            // uid 4242 has no passwd entry.
            format!(
                "/user.slice/user-4242.slice/user@4242.service/user.slice/libpod-{absent}.scope"
            ),
        ] {
            let err = read(&path).unwrap_err();
            assert!(
                matches!(err, MetadataError::NotWritten { .. }),
                "{path}: {err}"
            );
            assert!(err.is_retryable());
        }
    }

    #[test]
    fn malformed_and_truncated_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let id = "1".repeat(64);
        let c = dir.path().join("containers").join(&id);
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("hostconfig.json"), br#"{"Privileged":false}"#).unwrap();

        // Half-written: retry.
        std::fs::write(c.join("config.v2.json"), br#"{"ID":"11"#).unwrap();
        let err = read_docker(dir.path(), &id).unwrap_err();
        assert!(matches!(err, MetadataError::Malformed { .. }));
        assert!(err.is_retryable(), "{err}");

        // Wrong shape: give up.
        std::fs::write(c.join("config.v2.json"), br#"{"Name":"/x"}"#).unwrap();
        let err = read_docker(dir.path(), &id).unwrap_err();
        assert!(matches!(err, MetadataError::Malformed { .. }));
        assert!(!err.is_retryable(), "{err}");

        // Another container's file.
        std::fs::write(
            c.join("config.v2.json"),
            format!(r#"{{"ID":"{}"}}"#, "2".repeat(64)),
        )
        .unwrap();
        assert!(matches!(
            read_docker(dir.path(), &id),
            Err(MetadataError::Malformed { .. })
        ));

        // Not an OCI spec at all.
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), b"{}").unwrap();
        assert!(matches!(
            read_containerd(&bundle),
            Err(MetadataError::Malformed { .. })
        ));
    }

    #[test]
    fn unreadable_state_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let id = "3".repeat(64);
        let c = dir.path().join("containers").join(&id);
        std::fs::create_dir_all(&c).unwrap();
        // A directory where a file should be, and a symlink: neither is followed.
        std::fs::create_dir(c.join("config.v2.json")).unwrap();
        std::fs::write(c.join("hostconfig.json"), b"{}").unwrap();
        let err = read_docker(dir.path(), &id).unwrap_err();
        assert!(matches!(err, MetadataError::Unreadable { .. }), "{err}");
        assert!(!err.is_retryable());

        std::fs::remove_dir(c.join("config.v2.json")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", c.join("config.v2.json")).unwrap();
        let err = read_docker(dir.path(), &id).unwrap_err();
        assert!(matches!(err, MetadataError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn a_fifo_does_not_block_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_containerd(dir.path()).unwrap_err();
        assert!(matches!(err, MetadataError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn oci_unified_cgroup_limits_are_read() {
        let spec: oci::OciSpec = serde_json::from_str(
            r#"{"ociVersion":"1.1.0","process":{"user":{"uid":1000,"gid":1000}},"root":{"path":"rootfs"},
                "linux":{"resources":{"unified":{"memory.max":"134217728","cpu.max":"50000 100000"}},
                "namespaces":[{"type":"pid"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        let p = oci::oci_posture(&spec);
        assert_eq!(p.memory_limit, Some(Limit::Set(134_217_728)));
        assert_eq!(p.cpu_limit, Some(Limit::Set(500)));
        assert_eq!(p.host_network, Some(true));
        assert_eq!(p.read_only_rootfs, Some(false));
        assert_eq!(p.privileged, None);
        assert_eq!(p.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn cri_privileged_is_inferred_from_caps_and_masked_paths() {
        let spec = |caps: &str, masked: &str| -> oci::OciSpec {
            serde_json::from_str(&format!(
                r#"{{"ociVersion":"1.1.0","process":{{"capabilities":{{"bounding":[{caps}]}}}},
                    "linux":{{"namespaces":[{{"type":"network"}}]{masked}}}}}"#
            ))
            .unwrap()
        };
        // containerd's privileged: every capability, nothing masked.
        let all = r#""CAP_CHOWN","CAP_SYS_ADMIN","CAP_SYS_MODULE","CAP_NET_ADMIN""#;
        assert_eq!(oci::oci_posture(&spec(all, "")).privileged, Some(true));
        // CAP_SYS_ADMIN added to a confined container is not --privileged.
        let masked = r#","maskedPaths":["/proc/kcore"]"#;
        assert_eq!(oci::oci_posture(&spec(all, masked)).privileged, Some(false));
        assert_eq!(
            oci::oci_posture(&spec(r#""CAP_CHOWN""#, "")).privileged,
            Some(false)
        );
    }

    #[test]
    fn completeness_needs_pod_and_namespace_only_for_cri() {
        let mut m = RuntimeMetadata::new(Runtime::Docker);
        m.name = Some("web".into());
        assert!(!m.is_complete());
        m.image = Some("nginx".into());
        assert!(m.is_complete());
        m.runtime = Runtime::Containerd;
        assert!(!m.is_complete());
        m.pod = Some("web-1".into());
        assert!(!m.is_complete());
        m.namespace = Some("shop".into());
        assert!(m.is_complete());
    }
}
