//! Which container a cgroup v2 path belongs to, from the path alone.
//!
//! Runtimes name a container's cgroup after its id, in one of two styles:
//! the systemd driver makes a scope unit (`docker-<id>.scope`,
//! `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`), the
//! cgroupfs driver a plain directory (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`,
//! `crio-<id>`, `libpod-<id>`). Kubernetes adds the pod's UID and QoS class in
//! the parent slices. Runtime helpers that live beside a container
//! (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are not containers.
use std::fmt;

use serde::Serialize;

/// The container engine that made a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker Engine (dockerd), also behind cri-dockerd.
    Docker,
    /// containerd, through its CRI plugin (Kubernetes) or directly.
    Containerd,
    /// CRI-O.
    Crio,
    /// Podman (libpod), rootful or rootless.
    Podman,
}

impl Runtime {
    /// The name the alert record's `container.runtime` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
        }
    }

    /// Whether the runtime serves Kubernetes through the CRI, so that a
    /// container's pod and namespace are part of knowing it.
    pub fn is_cri(self) -> bool {
        matches!(self, Runtime::Containerd | Runtime::Crio)
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes pod's quality-of-service class, from its parent slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    /// Requests equal limits; the pod's slice sits directly under `kubepods`.
    Guaranteed,
    /// Some requests or limits set.
    Burstable,
    /// No requests or limits.
    BestEffort,
}

/// How the cgroup was named: as a systemd unit or as a plain directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// `*.scope` units in `*.slice`s.
    Systemd,
    /// Plain directories.
    Cgroupfs,
}

/// What a container cgroup's path says about the container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CgroupIdentity {
    /// The runtime the path names (see `runtime_inferred`).
    pub runtime: Runtime,
    /// The full container id: 64 lowercase hex digits.
    pub container_id: String,
    /// The Kubernetes pod UID, with dashes (`1b4e28ba-2fa1-11d2-883f-0016d3cca427`);
    /// static pods have a 32-hex-digit UID.
    pub pod_uid: Option<String>,
    /// The Kubernetes pod's QoS class.
    pub qos: Option<Qos>,
    /// How the runtime named the cgroup.
    pub driver: CgroupDriver,
    /// True when the path names no runtime (a bare id under `kubepods` with the
    /// cgroupfs driver, as containerd and cri-dockerd both make) and `runtime`
    /// is the likelier one, containerd; the metadata reader then also looks
    /// for Docker's files.
    pub runtime_inferred: bool,
    /// The uid whose systemd user instance (`user@<uid>.service`) owns the
    /// cgroup: a rootless container, whose state lives in that user's home.
    pub rootless_uid: Option<u32>,
}

/// Parses a cgroup v2 path, relative to the cgroup2 mount (`/system.slice/docker-<id>.scope`).
///
/// Returns `None` for the host's own cgroups. A path below a container's
/// cgroup at any depth (`.../docker-<id>.scope/init.scope`, or systemd inside
/// a container making `.../system.slice/foo.service`) belongs to the innermost
/// container above it: its processes are inside that container.
pub fn parse_cgroup_path(path: &str) -> Option<CgroupIdentity> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // Innermost first: a container inside a container (a kind node's pods,
    // docker-in-docker) belongs to the inner one.
    for i in (0..parts.len()).rev() {
        let Some((runtime, id, driver, inferred)) = container_part(&parts[..=i]) else {
            continue;
        };
        let parents = &parts[..i];
        let (pod_uid, qos) = pod_of(parents);
        return Some(CgroupIdentity {
            runtime,
            container_id: id.to_owned(),
            pod_uid,
            qos,
            driver,
            runtime_inferred: inferred,
            rootless_uid: parents.iter().rev().find_map(|p| user_service_uid(p)),
        });
    }
    None
}

/// Whether the last of `parts` is a container's own cgroup, and whose.
fn container_part<'a>(parts: &[&'a str]) -> Option<(Runtime, &'a str, CgroupDriver, bool)> {
    let (&last, parents) = parts.split_last()?;
    if let Some(unit) = last.strip_suffix(".scope") {
        // conmon and other helpers have their own scopes beside the container's.
        const SCOPES: [(&str, Runtime); 4] = [
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::Crio),
            ("libpod-", Runtime::Podman),
        ];
        return SCOPES.iter().find_map(|&(prefix, runtime)| {
            let id = unit.strip_prefix(prefix)?;
            is_container_id(id).then_some((runtime, id, CgroupDriver::Systemd, false))
        });
    }
    if let Some(id) = last.strip_prefix("crio-") {
        return is_container_id(id).then_some((Runtime::Crio, id, CgroupDriver::Cgroupfs, false));
    }
    if let Some(id) = last.strip_prefix("libpod-") {
        return is_container_id(id).then_some((Runtime::Podman, id, CgroupDriver::Cgroupfs, false));
    }
    if !is_container_id(last) {
        return None;
    }
    match parents.last() {
        Some(&"docker") => Some((Runtime::Docker, last, CgroupDriver::Cgroupfs, false)),
        Some(parent) if pod_dir_uid(parent).is_some() && under_kubepods(parents) => {
            Some((Runtime::Containerd, last, CgroupDriver::Cgroupfs, true))
        }
        _ => None,
    }
}

/// The pod UID and QoS class from the slices above a container.
fn pod_of(parents: &[&str]) -> (Option<String>, Option<Qos>) {
    for (i, part) in parents.iter().enumerate().rev() {
        // systemd: kubepods-burstable-pod<uid_with_underscores>.slice
        if let Some(unit) = part.strip_suffix(".slice")
            && let Some(at) = unit.rfind("-pod")
            && unit[..at].contains("kubepods")
            && let Some(uid) = normalize_uid(&unit[at + 4..])
        {
            let class = &unit[..at];
            let qos = if class.ends_with("-burstable") {
                Qos::Burstable
            } else if class.ends_with("-besteffort") {
                Qos::BestEffort
            } else {
                Qos::Guaranteed
            };
            return (Some(uid), Some(qos));
        }
        // cgroupfs: /kubepods/burstable/pod<uid>, /kubepods/pod<uid>
        if let Some(uid) = pod_dir_uid(part)
            && under_kubepods(&parents[..i])
        {
            let qos = match i.checked_sub(1).map(|p| parents[p]) {
                Some("burstable") => Qos::Burstable,
                Some("besteffort") => Qos::BestEffort,
                _ => Qos::Guaranteed,
            };
            return (Some(uid), Some(qos));
        }
    }
    (None, None)
}

/// `pod<uid>` as the cgroupfs driver names a pod's directory.
fn pod_dir_uid(part: &str) -> Option<String> {
    normalize_uid(part.strip_prefix("pod")?)
}

fn under_kubepods(parents: &[&str]) -> bool {
    parents.iter().any(|p| p.contains("kubepods"))
}

/// A pod UID as systemd escapes it (`_` for `-`) or as written, with dashes;
/// 36 characters (a UUID) or 32 hex digits (a static pod's hash).
fn normalize_uid(uid: &str) -> Option<String> {
    let valid = (uid.len() == 36 || uid.len() == 32)
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    valid.then(|| uid.replace('_', "-").to_ascii_lowercase())
}

/// `user@1000.service`: the systemd user instance of uid 1000.
fn user_service_uid(part: &str) -> Option<u32> {
    part.strip_prefix("user@")?
        .strip_suffix(".service")?
        .parse()
        .ok()
}

/// A full container id: 64 lowercase hex digits, as all four runtimes make them.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f9c2a7b1e8d4c6f0a5b9e2d7c1f8a3b6e0d4c9f2a7b5e1d8c3f6a0b9e4d2c7f";
    const UID: &str = "360bb2ad-193e-4b6e-9c6d-61107fb0a803";
    const UID_: &str = "360bb2ad_193e_4b6e_9c6d_61107fb0a803";

    struct Case {
        path: String,
        runtime: Runtime,
        driver: CgroupDriver,
        pod_uid: Option<&'static str>,
        qos: Option<Qos>,
        inferred: bool,
        rootless: Option<u32>,
    }

    fn case(path: String, runtime: Runtime, driver: CgroupDriver) -> Case {
        Case {
            path,
            runtime,
            driver,
            pod_uid: None,
            qos: None,
            inferred: false,
            rootless: None,
        }
    }

    fn pod(mut c: Case, qos: Qos) -> Case {
        c.pod_uid = Some(UID);
        c.qos = Some(qos);
        c
    }

    #[test]
    fn container_paths_of_every_runtime_and_driver_parse() {
        use CgroupDriver::*;
        use Runtime::*;
        let cases = [
            // Docker, systemd and cgroupfs drivers.
            case(format!("/system.slice/docker-{ID}.scope"), Docker, Systemd),
            case(format!("/docker/{ID}"), Docker, Cgroupfs),
            // Nested cgroups inside a container belong to it.
            case(
                format!("/system.slice/docker-{ID}.scope/init.scope"),
                Docker,
                Systemd,
            ),
            case(format!("/docker/{ID}/child"), Docker, Cgroupfs),
            case(
                format!("/system.slice/docker-{ID}.scope/system.slice/nginx.service"),
                Docker,
                Systemd,
            ),
            // Rootless Docker under the user's systemd instance.
            Case {
                rootless: Some(1000),
                ..case(
                    format!(
                        "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"
                    ),
                    Docker,
                    Systemd,
                )
            },
            // containerd outside Kubernetes (systemd driver) and in kubepods.
            case(
                format!("/system.slice/cri-containerd-{ID}.scope"),
                Containerd,
                Systemd,
            ),
            pod(
                case(
                    format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
                    ),
                    Containerd,
                    Systemd,
                ),
                Qos::Burstable,
            ),
            pod(
                case(
                    format!(
                        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
                    ),
                    Containerd,
                    Systemd,
                ),
                Qos::BestEffort,
            ),
            pod(
                case(
                    format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                    Containerd,
                    Systemd,
                ),
                Qos::Guaranteed,
            ),
            // cgroupfs driver: a bare id, the runtime inferred.
            Case {
                inferred: true,
                ..pod(
                    case(
                        format!("/kubepods/burstable/pod{UID}/{ID}"),
                        Containerd,
                        Cgroupfs,
                    ),
                    Qos::Burstable,
                )
            },
            Case {
                inferred: true,
                ..pod(
                    case(
                        format!("/kubepods/besteffort/pod{UID}/{ID}"),
                        Containerd,
                        Cgroupfs,
                    ),
                    Qos::BestEffort,
                )
            },
            Case {
                inferred: true,
                ..pod(
                    case(format!("/kubepods/pod{UID}/{ID}"), Containerd, Cgroupfs),
                    Qos::Guaranteed,
                )
            },
            // A kind node: a pod inside a Docker container; the pod's container wins.
            pod(
                case(
                    format!(
                        "/system.slice/docker-{}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope",
                        "a".repeat(64)
                    ),
                    Containerd,
                    Systemd,
                ),
                Qos::BestEffort,
            ),
            // CRI-O, systemd and cgroupfs drivers.
            case(format!("/system.slice/crio-{ID}.scope"), Crio, Systemd),
            pod(
                case(
                    format!(
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
                    ),
                    Crio,
                    Systemd,
                ),
                Qos::Burstable,
            ),
            pod(
                case(
                    format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                    Crio,
                    Cgroupfs,
                ),
                Qos::Burstable,
            ),
            // cri-dockerd: Docker scopes in kubepods.
            pod(
                case(
                    format!(
                        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope"
                    ),
                    Docker,
                    Systemd,
                ),
                Qos::BestEffort,
            ),
            // Podman: rootful, in a pod, cgroupfs, rootless.
            case(format!("/machine.slice/libpod-{ID}.scope"), Podman, Systemd),
            case(
                format!(
                    "/machine.slice/machine-libpod_pod_{}.slice/libpod-{ID}.scope",
                    "b".repeat(64)
                ),
                Podman,
                Systemd,
            ),
            case(
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Podman,
                Systemd,
            ),
            case(format!("/libpod_parent/libpod-{ID}"), Podman, Cgroupfs),
            Case {
                rootless: Some(1000),
                ..case(
                    format!(
                        "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
                    ),
                    Podman,
                    Systemd,
                )
            },
        ];
        for c in cases {
            let got =
                parse_cgroup_path(&c.path).unwrap_or_else(|| panic!("{} did not parse", c.path));
            let want = CgroupIdentity {
                runtime: c.runtime,
                container_id: ID.to_owned(),
                pod_uid: c.pod_uid.map(str::to_owned),
                qos: c.qos,
                driver: c.driver,
                runtime_inferred: c.inferred,
                rootless_uid: c.rootless,
            };
            assert_eq!(got, want, "{}", c.path);
        }
    }

    #[test]
    fn static_pod_uids_keep_their_hash() {
        let hash = "5e8f4c8f3a2b1d0c9e7f6a5b4c3d2e1f";
        let got = parse_cgroup_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope"
        ))
        .unwrap();
        assert_eq!(got.pod_uid.as_deref(), Some(hash));
    }

    #[test]
    fn host_and_helper_paths_do_not_parse() {
        let short = &ID[..12];
        let upper = ID.to_ascii_uppercase();
        let not_hex = format!("{}g", &ID[..63]);
        let long = format!("{ID}0");
        let paths = [
            "/".to_owned(),
            "".to_owned(),
            "/init.scope".to_owned(),
            "/system.slice".to_owned(),
            "/system.slice/docker.service".to_owned(),
            "/system.slice/containerd.service".to_owned(),
            "/system.slice/crio.service".to_owned(),
            "/system.slice/docker.socket".to_owned(),
            "/system.slice/systemd-journald.service".to_owned(),
            "/user.slice/user-1000.slice/session-3.scope".to_owned(),
            "/user.slice/user-1000.slice/user@1000.service/init.scope".to_owned(),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/podman.service".to_owned(),
            "/docker".to_owned(),
            "/kubepods.slice".to_owned(),
            "/kubepods.slice/kubepods-burstable.slice".to_owned(),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
            format!("/kubepods/burstable/pod{UID}"),
            // conmon watches a container from beside it; it is not the container.
            format!("/system.slice/crio-conmon-{ID}.scope"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
            ),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{ID}.scope"
            ),
            "/libpod_parent/conmon".to_owned(),
            // Short, upper-case, non-hex and over-long ids.
            format!("/system.slice/docker-{short}.scope"),
            format!("/docker/{short}"),
            format!("/system.slice/docker-{upper}.scope"),
            format!("/system.slice/docker-{not_hex}.scope"),
            format!("/system.slice/docker-{long}.scope"),
            format!("/system.slice/cri-containerd-{short}.scope"),
            // A bare id outside docker/ and kubepods is no runtime's.
            format!("/system.slice/{ID}"),
            format!("/{ID}"),
            format!("/pod{UID}/{ID}"),
        ];
        for p in paths {
            assert_eq!(parse_cgroup_path(&p), None, "{p} parsed");
        }
    }

    #[test]
    fn runtime_names_match_the_alert_record() {
        let names: Vec<&str> = [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::Crio,
            Runtime::Podman,
        ]
        .iter()
        .map(|r| r.as_str())
        .collect();
        assert_eq!(names, ["docker", "containerd", "crio", "podman"]);
        assert_eq!(serde_json::to_string(&Runtime::Crio).unwrap(), "\"crio\"");
        assert_eq!(
            serde_json::to_string(&Qos::BestEffort).unwrap(),
            "\"besteffort\""
        );
    }
}
