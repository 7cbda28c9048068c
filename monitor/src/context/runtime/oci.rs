//! The OCI runtime spec (`config.json` of a bundle) that containerd, CRI-O
//! and Podman write, with each runtime's annotations for names and pods.
use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{
    DEFAULT_CAPABILITIES, HostMount, Limit, MetadataError, Posture, RuntimeMetadata,
    capability_name, first_found, non_empty, parse, read_state_file,
};
use crate::context::cgroup_path::Runtime;

/// An OCI runtime spec `config.json` (the fields read here).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OciSpec {
    #[allow(dead_code, reason = "required: a JSON file without it is no OCI spec")]
    oci_version: String,
    process: Option<OciProcess>,
    root: Option<OciRoot>,
    #[serde(default)]
    mounts: Vec<OciMount>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    linux: Option<OciLinux>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciProcess {
    user: Option<OciUser>,
    capabilities: Option<OciCapabilities>,
    apparmor_profile: Option<String>,
}

#[derive(Deserialize)]
struct OciUser {
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Deserialize)]
struct OciCapabilities {
    #[serde(default)]
    bounding: Vec<String>,
}

#[derive(Deserialize)]
struct OciMount {
    destination: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    source: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Deserialize)]
struct OciRoot {
    readonly: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLinux {
    resources: Option<OciResources>,
    #[serde(default)]
    namespaces: Vec<OciNamespace>,
    #[serde(default)]
    masked_paths: Vec<String>,
    /// Present (whatever it holds) when a seccomp filter is applied.
    seccomp: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct OciResources {
    memory: Option<OciMemory>,
    cpu: Option<OciCpu>,
    /// cgroup v2 files by name (`memory.max`, `cpu.max`).
    #[serde(default)]
    unified: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OciMemory {
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct OciCpu {
    quota: Option<i64>,
    period: Option<u64>,
}

#[derive(Deserialize)]
struct OciNamespace {
    #[serde(rename = "type")]
    kind: String,
}

fn read_oci(path: &Path) -> Result<OciSpec, MetadataError> {
    let bytes = read_state_file(path)?;
    parse(path, &bytes)
}

/// The posture facts every OCI spec states.
pub(super) fn oci_posture(spec: &OciSpec) -> Posture {
    let mut p = Posture::default();
    if let Some(user) = spec.process.as_ref().and_then(|p| p.user.as_ref()) {
        p.uid = user.uid;
        p.user = user.uid.map(|uid| match user.gid {
            Some(gid) => format!("{uid}:{gid}"),
            None => uid.to_string(),
        });
    }
    p.read_only_rootfs = Some(spec.root.as_ref().and_then(|r| r.readonly).unwrap_or(false));
    p.mounts = Some(
        spec.mounts
            .iter()
            .filter(|m| {
                m.kind.as_deref() == Some("bind")
                    || m.options.iter().any(|o| o == "bind" || o == "rbind")
            })
            .filter_map(|m| {
                Some(HostMount {
                    source: m.source.clone()?,
                    destination: m.destination.clone(),
                    read_only: m.options.iter().any(|o| o == "ro"),
                })
            })
            .collect(),
    );
    if let Some(process) = &spec.process {
        p.apparmor_unconfined = process
            .apparmor_profile
            .as_deref()
            .map(|a| a == "unconfined");
        if let Some(caps) = &process.capabilities {
            p.capabilities_added = Some(
                caps.bounding
                    .iter()
                    .map(|c| capability_name(c))
                    .filter(|c| !DEFAULT_CAPABILITIES.contains(&c.as_str()))
                    .collect(),
            );
        }
    }
    if let Some(linux) = &spec.linux {
        let shares = |kind: &str| !linux.namespaces.iter().any(|ns| ns.kind == kind);
        p.host_network = Some(shares("network"));
        p.host_pid = Some(shares("pid"));
        p.host_ipc = Some(shares("ipc"));
        p.seccomp_unconfined = Some(linux.seccomp.is_none());
        if let Some(caps) = spec.process.as_ref().and_then(|p| p.capabilities.as_ref()) {
            let sys_admin = caps.bounding.iter().any(|c| c == "CAP_SYS_ADMIN");
            p.privileged = Some(sys_admin && linux.masked_paths.is_empty());
        }
        let res = linux.resources.as_ref();
        let unified = |key: &str| res.and_then(|r| r.unified.get(key)).map(String::as_str);
        let memory = res.and_then(|r| r.memory.as_ref()).and_then(|m| m.limit);
        p.memory_limit = Some(match (memory, unified("memory.max")) {
            (Some(b), _) if b > 0 => Limit::Set(b as u64),
            (_, Some(v)) => v.parse().map(Limit::Set).unwrap_or(Limit::Unlimited),
            _ => Limit::Unlimited,
        });
        let cpu = res.and_then(|r| r.cpu.as_ref());
        let quota = cpu
            .and_then(|c| c.quota)
            .filter(|&q| q > 0)
            .map(|q| q as u64);
        let period = cpu.and_then(|c| c.period).filter(|&p| p > 0);
        let from_unified = unified("cpu.max").and_then(|v| {
            let mut it = v.split_whitespace();
            let q = it.next()?.parse::<u64>().ok()?; // "max" is no limit
            Some((q, it.next().and_then(|p| p.parse().ok())))
        });
        p.cpu_limit = Some(match (quota, from_unified) {
            (Some(q), _) => Limit::Set(q * 1000 / period.unwrap_or(100_000)),
            (None, Some((q, per))) => {
                Limit::Set(q * 1000 / per.filter(|&p| p > 0).unwrap_or(100_000))
            }
            _ => Limit::Unlimited,
        });
    }
    p
}

/// Reads a containerd task bundle's `config.json` (`<bundle>/config.json`).
pub fn read_containerd(bundle: &Path) -> Result<RuntimeMetadata, MetadataError> {
    let spec = read_oci(&bundle.join("config.json"))?;
    Ok(containerd_metadata(&spec))
}

fn containerd_metadata(spec: &OciSpec) -> RuntimeMetadata {
    let a = |k: &str| non_empty(spec.annotations.get(k));
    let mut m = RuntimeMetadata::new(Runtime::Containerd);
    m.is_sandbox = a("io.kubernetes.cri.container-type").as_deref() == Some("sandbox");
    m.name = a("io.kubernetes.cri.container-name");
    m.image = a("io.kubernetes.cri.image-name");
    if m.is_sandbox {
        // The kubelet's name for a pod's sandbox container, as CRI-O labels it.
        m.name.get_or_insert_with(|| "POD".to_owned());
        m.image = m
            .image
            .or_else(|| a("io.kubernetes.cri.podsandbox.image-name"));
    }
    m.pod = a("io.kubernetes.cri.sandbox-name");
    m.namespace = a("io.kubernetes.cri.sandbox-namespace");
    m.pod_uid = a("io.kubernetes.cri.sandbox-uid");
    m.sandbox_id = a("io.kubernetes.cri.sandbox-id");
    m.posture = oci_posture(spec);
    m
}

/// Reads a CRI-O container's `<userdata>/config.json`.
pub fn read_crio(userdata: &Path) -> Result<RuntimeMetadata, MetadataError> {
    let spec = read_oci(&userdata.join("config.json"))?;
    Ok(crio_metadata(&spec))
}

fn crio_metadata(spec: &OciSpec) -> RuntimeMetadata {
    let ann = &spec.annotations;
    // Labels and metadata are JSON documents inside annotations.
    let labels: BTreeMap<String, String> = ann
        .get("io.kubernetes.cri-o.Labels")
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let get = |k: &str| non_empty(ann.get(k)).or_else(|| non_empty(labels.get(k)));
    let mut m = RuntimeMetadata::new(Runtime::Crio);
    m.is_sandbox = get("io.kubernetes.cri-o.ContainerType").as_deref() == Some("sandbox");
    m.name = get("io.kubernetes.container.name").or_else(|| {
        #[derive(Deserialize)]
        struct Metadata {
            name: Option<String>,
        }
        let meta: Metadata = serde_json::from_str(ann.get("io.kubernetes.cri-o.Metadata")?).ok()?;
        non_empty(meta.name.as_ref())
    });
    m.image = get("io.kubernetes.cri-o.ImageName").or_else(|| get("io.kubernetes.cri-o.Image"));
    m.pod = get("io.kubernetes.pod.name").or_else(|| get("io.kubernetes.cri-o.KubeName"));
    m.namespace =
        get("io.kubernetes.pod.namespace").or_else(|| get("io.kubernetes.cri-o.Namespace"));
    m.pod_uid = get("io.kubernetes.pod.uid");
    m.sandbox_id = get("io.kubernetes.cri-o.SandboxID");
    m.labels = labels;
    m.posture = oci_posture(spec);
    m
}

/// One entry of containers/storage's `containers.json`.
#[derive(Deserialize)]
struct StorageContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    /// A JSON document Podman writes: `{"image-name": ..., "name": ...}`.
    metadata: Option<String>,
}

#[derive(Deserialize)]
struct StorageMetadata {
    #[serde(rename = "image-name")]
    image_name: Option<String>,
    name: Option<String>,
}

/// Reads a Podman container: the OCI spec in its `userdata` (under the graph
/// root, or the run root) and its name and image from the store's `containers.json`.
pub fn read_podman(
    graphroot: &Path,
    runroot: &Path,
    id: &str,
) -> Result<RuntimeMetadata, MetadataError> {
    let spec = first_found([graphroot, runroot], |root| {
        read_oci(
            &root
                .join("overlay-containers")
                .join(id)
                .join("userdata/config.json"),
        )
    })?;
    let mut m = RuntimeMetadata::new(Runtime::Podman);
    m.posture = oci_posture(&spec);
    // Podman says whether it ran the container --privileged.
    if let Some(p) = spec.annotations.get("io.podman.annotations.privileged") {
        m.posture.privileged = Some(p.eq_ignore_ascii_case("true"));
    }
    // --rm containers may live in the volatile list.
    let lists = ["containers.json", "volatile-containers.json"]
        .map(|f| graphroot.join("overlay-containers").join(f));
    let entry = first_found(lists.iter(), |path| {
        let bytes = read_state_file(path)?;
        let all: Vec<StorageContainer> = parse(path, &bytes)?;
        all.into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| MetadataError::NotWritten { path: path.clone() })
    })?;
    let meta: Option<StorageMetadata> = entry
        .metadata
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    m.name = entry
        .names
        .first()
        .cloned()
        .or_else(|| meta.as_ref().and_then(|m| m.name.clone()));
    m.image = meta.and_then(|m| m.image_name).filter(|s| !s.is_empty());
    Ok(m)
}
