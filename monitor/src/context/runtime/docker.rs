//! Docker's state: `config.v2.json` (name, image, labels, mounts) and
//! `hostconfig.json` (the posture: privileged, network mode, read-only root,
//! limits, restart policy) under `containers/<id>/` of the Docker root.
use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{
    ExposedPort, HostMount, Limit, MetadataError, RuntimeMetadata, capability_name, non_empty,
    parse, read_state_file,
};
use crate::context::cgroup_path::Runtime;

/// `config.v2.json`: the container as dockerd keeps it (the fields read here).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerContainer {
    #[serde(rename = "ID")]
    id: String,
    name: Option<String>,
    config: Option<DockerConfig>,
    #[serde(default)]
    mount_points: Option<BTreeMap<String, DockerMountPoint>>,
    app_armor_profile: Option<String>,
    seccomp_profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerMountPoint {
    source: Option<String>,
    destination: Option<String>,
    #[serde(rename = "RW")]
    rw: Option<bool>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerConfig {
    image: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

/// `hostconfig.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerHostConfig {
    privileged: Option<bool>,
    network_mode: Option<String>,
    readonly_rootfs: Option<bool>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    restart_policy: Option<DockerRestartPolicy>,
    pid_mode: Option<String>,
    ipc_mode: Option<String>,
    cap_add: Option<Vec<String>>,
    security_opt: Option<Vec<String>>,
    port_bindings: Option<BTreeMap<String, Option<Vec<DockerPortBinding>>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerPortBinding {
    host_port: Option<String>,
}

/// `80/tcp` to (80, "tcp").
fn port_key(key: &str) -> Option<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    Some((port.parse().ok()?, proto.to_ascii_lowercase()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerRestartPolicy {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

/// Reads `<docker_root>/containers/<id>/config.v2.json` and `hostconfig.json`.
pub fn read_docker(docker_root: &Path, id: &str) -> Result<RuntimeMetadata, MetadataError> {
    let dir = docker_root.join("containers").join(id);
    let config_path = dir.join("config.v2.json");
    let host_path = dir.join("hostconfig.json");
    let config = read_state_file(&config_path)?;
    let host = read_state_file(&host_path)?;
    let container: DockerContainer = parse(&config_path, &config)?;
    let host: DockerHostConfig = parse(&host_path, &host)?;
    if container.id != id {
        return Err(MetadataError::Malformed {
            path: config_path,
            source: serde::de::Error::custom(format!("holds container {}", container.id)),
        });
    }
    Ok(docker_metadata(container, host))
}

fn docker_metadata(c: DockerContainer, h: DockerHostConfig) -> RuntimeMetadata {
    let mut m = RuntimeMetadata::new(Runtime::Docker);
    m.name = c
        .name
        .map(|n| n.trim_start_matches('/').to_owned())
        .filter(|n| !n.is_empty());
    let config = c.config.unwrap_or(DockerConfig {
        image: None,
        labels: None,
        user: None,
        exposed_ports: None,
    });
    m.image = non_empty(config.image.as_ref());
    m.labels = config.labels.unwrap_or_default();
    // cri-dockerd labels a pod's containers the way the kubelet's dockershim did.
    m.pod = non_empty(m.labels.get("io.kubernetes.pod.name"));
    m.namespace = non_empty(m.labels.get("io.kubernetes.pod.namespace"));
    m.pod_uid = non_empty(m.labels.get("io.kubernetes.pod.uid"));
    if let Some(name) = non_empty(m.labels.get("io.kubernetes.container.name")) {
        m.is_sandbox = name == "POD";
        m.name = Some(name);
    }
    // The config is merged with the image's: an empty user is root.
    let user = config.user.unwrap_or_default();
    m.posture.uid = if user.is_empty() {
        Some(0)
    } else {
        user.split(':').next().and_then(|u| u.parse().ok())
    };
    m.posture.user = Some(if user.is_empty() {
        "0".to_owned()
    } else {
        user
    });

    let p = &mut m.posture;
    p.privileged = h.privileged;
    p.network_mode = h.network_mode.clone();
    p.host_network = h.network_mode.as_deref().map(|mode| mode == "host");
    p.read_only_rootfs = h.readonly_rootfs;
    p.memory_limit = h.memory.map(|bytes| match bytes {
        b if b > 0 => Limit::Set(b as u64),
        _ => Limit::Unlimited,
    });
    p.cpu_limit = match (h.nano_cpus, h.cpu_quota) {
        (Some(n), _) if n > 0 => Some(Limit::Set(n as u64 / 1_000_000)),
        (_, Some(q)) if q > 0 => {
            let period = h.cpu_period.filter(|&p| p > 0).unwrap_or(100_000);
            Some(Limit::Set(q as u64 * 1000 / period as u64))
        }
        (None, None) => None,
        _ => Some(Limit::Unlimited),
    };
    p.host_pid = h.pid_mode.as_deref().map(|m| m == "host");
    p.host_ipc = h.ipc_mode.as_deref().map(|m| m == "host");
    p.capabilities_added = Some(
        h.cap_add
            .iter()
            .flatten()
            .map(|c| capability_name(c))
            .collect(),
    );
    // `seccomp=unconfined` (also the old `seccomp:unconfined`), as written.
    let opts: Vec<(String, String)> = h
        .security_opt
        .iter()
        .flatten()
        .filter_map(|o| {
            let (k, v) = o.split_once(['=', ':'])?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let opt = |key: &str, value: &str| opts.iter().any(|(k, v)| k == key && v == value);
    p.seccomp_unconfined =
        Some(opt("seccomp", "unconfined") || c.seccomp_profile.as_deref() == Some("unconfined"));
    p.apparmor_unconfined =
        Some(opt("apparmor", "unconfined") || c.app_armor_profile.as_deref() == Some("unconfined"));
    p.selinux_disabled = Some(opt("label", "disable"));
    p.mounts = Some(
        c.mount_points
            .iter()
            .flatten()
            .filter(|(_, m)| m.kind.as_deref().is_none_or(|k| k == "bind"))
            .filter_map(|(dest, m)| {
                Some(HostMount {
                    source: m.source.clone().filter(|s| !s.is_empty())?,
                    destination: m.destination.clone().unwrap_or_else(|| dest.clone()),
                    read_only: !m.rw.unwrap_or(true),
                })
            })
            .collect(),
    );
    let mut ports: BTreeMap<(u16, String), Option<u16>> = BTreeMap::new();
    for key in config.exposed_ports.iter().flat_map(|e| e.keys()) {
        if let Some(k) = port_key(key) {
            ports.entry(k).or_default();
        }
    }
    for (key, bindings) in h.port_bindings.iter().flatten() {
        if let Some(k) = port_key(key) {
            let host = bindings
                .iter()
                .flatten()
                .find_map(|b| b.host_port.as_deref()?.parse().ok());
            let slot = ports.entry(k).or_default();
            *slot = slot.or(host);
        }
    }
    p.exposed_ports = Some(
        ports
            .into_iter()
            .map(|((port, protocol), published)| ExposedPort {
                port,
                protocol,
                published,
            })
            .collect(),
    );
    p.restart_policy = h.restart_policy.map(|r| {
        let name = r
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "no".into());
        match r.maximum_retry_count {
            Some(n) if n > 0 && name == "on-failure" => format!("{name}:{n}"),
            _ => name,
        }
    });
    m
}
