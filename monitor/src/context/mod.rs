//! Who and where: the process table and the cgroup-to-container registry turn
//! an [`Event`](crate::event::Event) into an [`EnrichedEvent`].
use serde::Serialize;

use crate::event::Event;

pub mod cgroup_path;
pub mod process;
pub mod registry;
pub mod runtime;

pub use cgroup_path::{CgroupDriver, CgroupIdentity, Qos, Runtime, parse_cgroup_path};
pub use process::{ProcessEntry, ProcessTable};
pub use registry::{CgroupEntry, CgroupRegistry, RegistryStats, RetryPolicy};
pub use runtime::{Limit, MetadataError, Posture, RuntimeMetadata, RuntimePaths, read_metadata};

/// The alert record's `container` object. Unknown parts are `None` (JSON `null`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// The full container id (64 hex digits for Docker, containerd and CRI-O).
    pub id: Option<String>,
    /// `docker`, `containerd`, `crio`, `podman`.
    pub runtime: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// The cgroup v2 path, relative to the cgroup2 mount.
    pub cgroup: Option<String>,
}

/// One ancestor in [`ProcessInfo::ancestry`], nearest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: Option<String>,
}

/// The alert record's `process` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub args: Vec<String>,
    pub ancestry: Vec<Ancestor>,
}

/// How much of the container context is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataStatus {
    /// Runtime state files were read: name, image (and pod, where Kubernetes) known.
    Complete,
    /// The container is known from its cgroup, but some state could not be read.
    Partial,
    /// The state files are not written yet; the registry keeps trying.
    Pending,
    /// Not in a container.
    #[default]
    Host,
}

/// An event with its process and container context attached.
#[derive(Clone, Debug)]
pub struct EnrichedEvent {
    pub event: Event,
    pub process: ProcessInfo,
    pub container: Option<ContainerInfo>,
    pub metadata_status: MetadataStatus,
}
