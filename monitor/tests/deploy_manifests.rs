//! The Kubernetes manifests (`deploy/kubernetes`) parse into the API types and
//! keep the security posture deploy/SECURITY.md describes: a careless edit
//! (privileged, ALL capabilities, a writable host path, a token, no probes,
//! no limits) fails here.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{Container, Namespace, PodSpec, Secret, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        scheduling::v1::PriorityClass,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse<T: DeserializeOwned>(name: &str) -> T {
    serde_saphyr::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn kustomization() -> Value {
    parse("kustomization.yaml")
}

/// Every resource of the kustomization, by kind.
fn resources() -> BTreeMap<String, String> {
    let k = kustomization();
    let mut by_kind = BTreeMap::new();
    for r in k["resources"].as_array().expect("resources") {
        let file = r.as_str().unwrap();
        let v: Value = parse(file);
        let kind = v["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        assert!(
            by_kind.insert(kind.to_owned(), file.to_owned()).is_none(),
            "two {kind} resources"
        );
    }
    by_kind
}

fn daemonset() -> DaemonSet {
    parse(&resources()["DaemonSet"])
}

fn pod() -> PodSpec {
    daemonset().spec.unwrap().template.spec.unwrap()
}

fn agent() -> Container {
    let spec = pod();
    assert_eq!(spec.containers.len(), 1, "one container: the agent");
    assert!(spec.init_containers.is_none(), "no init containers");
    spec.containers.into_iter().next().unwrap()
}

#[test]
fn every_resource_parses_into_its_api_type() {
    let r = resources();
    let want: BTreeSet<&str> = [
        "Namespace",
        "PriorityClass",
        "ServiceAccount",
        "Secret",
        "Service",
        "DaemonSet",
        "NetworkPolicy",
    ]
    .into();
    assert_eq!(r.keys().map(String::as_str).collect::<BTreeSet<_>>(), want);
    let _: Namespace = parse(&r["Namespace"]);
    let _: PriorityClass = parse(&r["PriorityClass"]);
    let _: ServiceAccount = parse(&r["ServiceAccount"]);
    let _: Secret = parse(&r["Secret"]);
    let _: Service = parse(&r["Service"]);
    let _: DaemonSet = parse(&r["DaemonSet"]);
    let _: NetworkPolicy = parse(&r["NetworkPolicy"]);
    // Every generated ConfigMap's files exist.
    for g in kustomization()["configMapGenerator"].as_array().unwrap() {
        for f in g["files"].as_array().unwrap() {
            assert!(dir().join(f.as_str().unwrap()).is_file(), "{f}");
        }
    }
}

#[test]
fn no_privileged_explicit_capabilities_read_only_root() {
    let c = agent();
    let sc = c.security_context.expect("securityContext");
    assert_eq!(sc.privileged, Some(false), "privileged must stay false");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]), "drop ALL first");
    let added: BTreeSet<String> = caps.add.unwrap().into_iter().collect();
    let allowed: BTreeSet<String> = [
        "BPF",
        "PERFMON",
        "NET_ADMIN",
        "SYS_PTRACE",
        "DAC_READ_SEARCH",
        "SYS_ADMIN",
        "SYS_RESOURCE",
    ]
    .map(String::from)
    .into();
    assert!(!added.contains("ALL"), "ALL is never added");
    assert!(
        added.is_subset(&allowed),
        "capabilities beyond the documented set: {:?} (document them in deploy/SECURITY.md and here)",
        added.difference(&allowed).collect::<Vec<_>>()
    );
    for needed in ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"] {
        assert!(added.contains(needed), "{needed} is needed to start");
    }
}

#[test]
fn host_pid_but_no_host_network_ipc_or_token() {
    let spec = pod();
    assert_eq!(spec.host_pid, Some(true), "events carry host pids");
    assert_ne!(spec.host_network, Some(true));
    assert_ne!(spec.host_ipc, Some(true));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let sa: ServiceAccount = parse(&resources()["ServiceAccount"]);
    assert_eq!(sa.automount_service_account_token, Some(false));
    assert_eq!(
        spec.service_account_name.as_deref(),
        sa.metadata.name.as_deref()
    );
    // No API rights: the kustomization holds no RBAC objects (checked in
    // every_resource_parses_into_its_api_type) .
}

#[test]
fn probes_limits_priority_and_tolerations() {
    let spec = pod();
    let c = agent();
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let g = p
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("httpGet probe");
        assert_eq!(g.port, IntOrString::String("metrics".into()));
        g.path.unwrap()
    };
    assert_eq!(probe_path(&c.liveness_probe), "/healthz");
    assert_eq!(probe_path(&c.readiness_probe), "/readyz");
    let ports = c.ports.clone().unwrap();
    assert_eq!(ports[0].name.as_deref(), Some("metrics"));

    let r = c.resources.expect("resources");
    for key in ["cpu", "memory"] {
        assert!(
            r.requests.as_ref().unwrap().contains_key(key),
            "request {key}"
        );
        assert!(r.limits.as_ref().unwrap().contains_key(key), "limit {key}");
    }

    let pc: PriorityClass = parse(&resources()["PriorityClass"]);
    assert_eq!(spec.priority_class_name, pc.metadata.name);
    assert!(pc.value >= 100_000_000, "a high priority: {}", pc.value);

    let t = spec.tolerations.expect("tolerations");
    assert!(
        t.iter().any(|t| t.operator.as_deref() == Some("Exists")
            && t.key.is_none()
            && t.effect.is_none()),
        "tolerate every taint, to run on every node: {t:?}"
    );
}

#[test]
fn host_paths_are_read_only_except_the_spool() {
    let spec = pod();
    let c = agent();
    let volumes: BTreeMap<String, _> = spec
        .volumes
        .unwrap()
        .into_iter()
        .map(|v| (v.name.clone(), v))
        .collect();
    let mounts = c.volume_mounts.unwrap();
    let mut host_paths = BTreeMap::new();
    for m in &mounts {
        let v = volumes
            .get(&m.name)
            .unwrap_or_else(|| panic!("mount {} has no volume", m.name));
        if let Some(hp) = &v.host_path {
            host_paths.insert(hp.path.clone(), (m.mount_path.clone(), m.read_only));
        }
    }
    let spool_host = "/var/lib/monitor";
    for (host, (at, ro)) in &host_paths {
        if host == spool_host {
            assert_ne!(*ro, Some(true), "the spool must be writable");
        } else {
            assert_eq!(*ro, Some(true), "hostPath {host} at {at} must be readOnly");
        }
    }
    // Exactly what the agent needs, where it reads it.
    let want: BTreeMap<&str, &str> = [
        ("/proc", "/host/proc"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/sys/kernel/tracing", "/sys/kernel/tracing"),
        ("/sys/kernel/btf", "/sys/kernel/btf"),
        ("/var/lib/docker", "/host/var/lib/docker"),
        ("/run/containerd", "/host/run/containerd"),
        ("/run/containers", "/host/run/containers"),
        ("/var/lib/containers", "/host/var/lib/containers"),
        (spool_host, spool_host),
    ]
    .into();
    let got: BTreeMap<&str, &str> = host_paths
        .iter()
        .map(|(h, (at, _))| (h.as_str(), at.as_str()))
        .collect();
    assert_eq!(got, want);
    // Every other mount is read-only too, except scratch space.
    for m in &mounts {
        let v = &volumes[&m.name];
        if v.host_path.is_none() && v.empty_dir.is_none() {
            assert_eq!(m.read_only, Some(true), "{} must be readOnly", m.name);
        }
    }
    // Secrets are readable by the owner only.
    let secret = volumes
        .values()
        .find_map(|v| v.secret.clone())
        .expect("secret volume");
    assert_eq!(secret.default_mode, Some(0o400));
}

#[test]
fn config_map_configuration_fits_the_pod() {
    let c = agent();
    let args = c.args.clone().unwrap();
    assert_eq!(args[..2], ["run".to_owned(), "--config".to_owned()]);
    let config_path = PathBuf::from(&args[2]);
    let mounts = c.volume_mounts.clone().unwrap();
    let mounted_at = |p: &Path| {
        mounts
            .iter()
            .find(|m| p.starts_with(&m.mount_path))
            .cloned()
    };
    let m = mounted_at(&config_path).expect("the config file is on a mount");
    assert_eq!(m.name, "config");

    // The generated ConfigMap's file is a valid configuration...
    let text = read("monitor.yaml");
    let cfg = monitor::config::parse(&config_path, &text).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let s = cfg.settings;
    assert_eq!(s.host_root.as_deref(), Some(Path::new("/host")));
    // ...listening where the probes knock...
    let listen = s.listen.expect("listen");
    assert_eq!(
        i32::from(listen.port()),
        c.ports.as_ref().unwrap()[0].container_port
    );
    assert!(
        listen.ip().is_unspecified(),
        "the kubelet probes the pod IP"
    );
    // ...spooling to the writable host path...
    let spool = s.spool_dir.unwrap();
    assert!(mounted_at(&spool).is_some_and(|m| m.read_only != Some(true)));
    // ...with every secret it names in the Secret.
    let secret: Secret = parse(&resources()["Secret"]);
    let keys: BTreeSet<String> = secret.string_data.clone().unwrap().into_keys().collect();
    let secrets_mount = mounts.iter().find(|m| m.name == "secrets").unwrap();
    let mut named = Vec::new();
    for t in s.webhook.unwrap_or_default() {
        if let monitor::config::TextSource::File(p) = t.source() {
            named.push(p.clone());
        }
    }
    named.extend(s.webhook_secret_file);
    // The placeholder signing key cannot be used by mistake: it is not base64.
    let placeholder = &secret.string_data.as_ref().unwrap()["webhook-signing-key"];
    assert!(monitor::sink::Signer::from_secret(placeholder).is_err());
    assert!(!named.is_empty());
    for p in named {
        let key = p
            .strip_prefix(&secrets_mount.mount_path)
            .unwrap_or_else(|_| panic!("{} is not in the secrets mount", p.display()));
        assert!(
            keys.contains(key.to_str().unwrap()),
            "Secret lacks {}",
            key.display()
        );
    }
    // The rule directories are the image's pack and the rules ConfigMap.
    let rules = s.rules.unwrap();
    assert_eq!(rules[0], Path::new("/etc/monitor/rules"));
    assert_eq!(
        mounted_at(&rules[1]).map(|m| m.name),
        Some("rules".to_owned())
    );
}

#[test]
fn rule_additions_load_on_top_of_the_pack() {
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let result = monitor::policy::check_dir(&[pack, dir().join("rules.d")]);
    if let Err(d) = &result {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn metrics_service_selects_the_agent() {
    let svc: Service = parse(&resources()["Service"]);
    let spec = svc.spec.unwrap();
    let ds = daemonset();
    let labels = ds.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    for (k, v) in spec.selector.unwrap() {
        assert_eq!(labels.get(&k), Some(&v), "selector {k}={v}");
    }
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("metrics".into()))
    );
    assert_eq!(port.port, 9464);
}

#[test]
fn namespace_admits_the_agent() {
    let ns: Namespace = parse(&resources()["Namespace"]);
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged"),
        "hostPID, hostPath and added capabilities need the privileged Pod Security level"
    );
    assert_eq!(
        kustomization()["namespace"],
        ns.metadata.name.unwrap().as_str()
    );
}

#[test]
fn the_agent_finds_the_hosts_cgroup2_mount_in_the_pod() {
    use monitor::bpf::cgroupfs::cgroup2_mount_in;
    // The pod as the DaemonSet lays it out on a cgroup v2 node: the host's
    // /sys/fs/cgroup (a hostPath) at /sys/fs/cgroup, seen from the pod's
    // private cgroup namespace (hence the `/../../..` root).
    let daemonset = "\
1200 1100 0:330 / / ro,relatime - overlay overlay rw
1210 1200 0:340 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1220 1200 0:350 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1230 1220 0:30 /../../.. /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
1240 1220 0:12 / /sys/kernel/tracing ro,relatime - tracefs nodev rw
1250 1200 0:22 / /host/proc ro,relatime - proc proc rw
";
    assert_eq!(
        cgroup2_mount_in(daemonset).as_deref(),
        Some(Path::new("/sys/fs/cgroup"))
    );
    // Mounted elsewhere (/host/sys/fs/cgroup), the runtime's own mount of the
    // container's cgroup comes first and would be taken: the agent refuses a
    // mount that is not a hierarchy root (it has cgroup.type), which is why
    // the DaemonSet mounts the host's at /sys/fs/cgroup itself.
    let elsewhere = "\
1230 1220 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
1260 1200 0:30 /../../.. /host/sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw
";
    assert_eq!(
        cgroup2_mount_in(elsewhere).as_deref(),
        Some(Path::new("/sys/fs/cgroup"))
    );
    let ds = pod();
    let cgroup_volume = ds
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| {
            v.host_path
                .as_ref()
                .is_some_and(|h| h.path == "/sys/fs/cgroup")
        })
        .expect("the host's cgroupfs is mounted");
    let m = agent()
        .volume_mounts
        .unwrap()
        .into_iter()
        .find(|m| m.name == cgroup_volume.name)
        .unwrap();
    assert_eq!(m.mount_path, "/sys/fs/cgroup");
}

/// The metrics (per-rule alert and loss counters: an oracle for testing
/// evasions) are readable only from a namespace labelled for it, on the
/// metrics port only, and the listener binds the pod's own IP.
#[test]
fn metrics_port_admits_only_a_labelled_monitoring_namespace() {
    let np: NetworkPolicy = parse(&resources()["NetworkPolicy"]);
    assert_eq!(np.metadata.namespace.as_deref(), Some("monitor"));
    let spec = np.spec.unwrap();
    // It selects the agent pods...
    let labels = daemonset()
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    let selector = spec.pod_selector.unwrap().match_labels.unwrap();
    assert!(!selector.is_empty());
    for (k, v) in &selector {
        assert_eq!(labels.get(k), Some(v), "podSelector {k}={v}");
    }
    // ...isolates them for ingress...
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    // ...and admits one source on one port.
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 1, "one rule");
    let rule = &ingress[0];
    let from = rule.from.as_ref().expect("a source, not everyone");
    assert_eq!(from.len(), 1);
    assert!(from[0].pod_selector.is_none() && from[0].ip_block.is_none());
    let ns = from[0]
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .expect("namespaces by label");
    assert_eq!(
        ns.get("monitor.dev/metrics-access").map(String::as_str),
        Some("true")
    );
    let ports = rule.ports.as_ref().expect("the metrics port only");
    assert_eq!(ports.len(), 1);
    let port = ports[0].port.as_ref().unwrap();
    let metrics = agent().ports.unwrap();
    let named = metrics
        .iter()
        .find(|p| Some(&IntOrString::String(p.name.clone().unwrap_or_default())) == Some(port))
        .expect("the policy names the container's port");
    assert_eq!(named.container_port, 9464);
    // The listener binds the pod's IP (downward API), the port from monitor.yaml.
    let env = agent().env.unwrap();
    let ip = env
        .iter()
        .find(|e| e.name == "MONITOR_LISTEN_IP")
        .expect("MONITOR_LISTEN_IP");
    let field = ip
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .unwrap();
    assert_eq!(field.field_path, "status.podIP");
}
