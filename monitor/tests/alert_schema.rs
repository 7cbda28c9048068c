//! The alert record's contract (`docs/alert.schema.json`, described in
//! `docs/ALERTS.md`) holds for every kind of alert the agent emits, as a sink
//! writes it: alerts of each kind and shape go through the real alert
//! pipeline (dedup, folded updates, throttling notices) and a real file sink,
//! and every line the sink wrote is validated. The schema also refuses
//! records that break the contract, so this test can fail.
use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use monitor::{
    alert::{Alert, AlertKind, AlertPipeline, PipelineConfig, RateLimitConfig, Severity},
    context::{Ancestor, ContainerInfo, MetadataStatus, ProcessInfo},
    event::{Family, FileInfo, FileOp, NetOp, NetworkInfo, Protocol},
    metrics::Metrics,
    sink::{FileConfig, SinkConfig, SinkKind, Sinks, SinksOptions},
};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alert.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema is a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, record: &Value) -> Vec<String> {
    v.iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn container() -> ContainerInfo {
    ContainerInfo {
        id: Some("3f9c".repeat(16)),
        runtime: Some("containerd".into()),
        name: Some("web".into()),
        image: Some("nginx:1.27".into()),
        pod: Some("web-7d9f".into()),
        namespace: Some("shop".into()),
        cgroup: Some("/kubepods.slice/cri-containerd-3f9c.scope".into()),
    }
}

fn process(exe: &str) -> ProcessInfo {
    ProcessInfo {
        pid: 4242,
        ppid: Some(4200),
        uid: 0,
        comm: "sshd".into(),
        exe: Some(exe.into()),
        args: vec![exe.into(), "-D".into()],
        ancestry: vec![
            Ancestor {
                pid: 4200,
                exe: Some("/bin/sh".into()),
            },
            Ancestor { pid: 1, exe: None },
        ],
    }
}

/// One alert of every kind and shape the rules and the agent raise.
fn alerts() -> Vec<Alert> {
    let mk = |kind, rule: &str, summary: String| {
        let mut a = Alert::new(
            "node-1",
            rule,
            "default/containers",
            // Medium: high and critical alerts are never throttled, and the
            // second pass needs throttling notices.
            Severity::Medium,
            kind,
            summary,
        );
        a.container = Some(container());
        a.metadata_status = Some(MetadataStatus::Complete);
        a.process = Some(process("/usr/sbin/sshd"));
        a
    };
    let mut out = Vec::new();
    out.push(mk(AlertKind::Process, "unexpected-process", "sshd".into()));
    let mut host = mk(AlertKind::Process, "shell", "host shell".into());
    host.container = None;
    host.metadata_status = Some(MetadataStatus::Host);
    let mut p = process("/bin/bash");
    p.ppid = None;
    p.exe = None;
    p.args.clear();
    host.process = Some(p);
    out.push(host);
    let mut pending = mk(AlertKind::Process, "unexpected-process", "pending".into());
    pending.container = Some(ContainerInfo {
        id: Some("ab".repeat(32)),
        ..Default::default()
    });
    pending.metadata_status = Some(MetadataStatus::Pending);
    out.push(pending);
    for (i, op) in [
        FileOp::Open,
        FileOp::Creat,
        FileOp::Rename,
        FileOp::Unlink,
        FileOp::Chmod,
        FileOp::Truncate,
        FileOp::Link,
        FileOp::Symlink,
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = mk(AlertKind::File, "protected-write", format!("file {i}"));
        a.file = Some(FileInfo {
            op,
            path: format!("/etc/file-{i}"),
            target: matches!(op, FileOp::Rename | FileOp::Link | FileOp::Symlink)
                .then(|| "/etc/passwd".to_owned()),
            flags: if op == FileOp::Open {
                vec!["O_WRONLY", "O_CREAT", "O_TRUNC"]
            } else {
                vec![]
            },
            mode: matches!(op, FileOp::Open | FileOp::Chmod).then_some(0o644),
            result: if i == 3 { -13 } else { 3 },
            requested_path: (i == 0).then(|| "../etc/file-0".to_owned()),
            truncated: i == 1,
        });
        out.push(a);
    }
    for (i, (op, protocol, addr)) in [
        (NetOp::Connect, Protocol::Tcp, "203.0.113.7"),
        (NetOp::Sendmsg, Protocol::Udp, "2001:db8::7"),
        (NetOp::Bind, Protocol::Other(132), "0.0.0.0"),
        (NetOp::Listen, Protocol::Tcp, "::"),
    ]
    .into_iter()
    .enumerate()
    {
        let daddr: std::net::IpAddr = addr.parse().unwrap();
        let mut a = mk(AlertKind::Network, "unexpected-egress", format!("net {i}"));
        a.network = Some(NetworkInfo {
            op,
            protocol,
            family: if daddr.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            daddr,
            dport: [443, 53, 0, 65535][i],
            dns: (i == 0).then(|| "example.com".to_owned()),
        });
        out.push(a);
    }
    for refused in [false, true] {
        let mut a = mk(AlertKind::Syscall, "namespace-change", "setns".into());
        let args = (!refused).then_some([3, 0x4000_0000, 0, 0, 0, 0]);
        let mut call =
            monitor::event::syscall::describe(libc::SYS_setns as u32, args.as_ref(), -1).unwrap();
        call.refused = refused;
        a.syscall = Some(call);
        out.push(a);
    }
    out.extend(posture_alerts());
    out.push(Alert::agent(
        "node-1",
        "events-lost",
        Severity::High,
        "12 events lost",
    ));
    out
}

/// Posture alerts as the agent raises them: the shipped pack's posture rules
/// over a real dockerd's files of a container started every wrong way, through
/// the watch that `monitor run` uses (its grace over, nothing listening).
fn posture_alerts() -> Vec<Alert> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = monitor::policy::check_dir(&[manifest.join("../rules")]).unwrap();
    let mut registry = monitor::context::CgroupRegistry::new(
        monitor::context::RuntimePaths::with_host_root(manifest.join("testdata/runtime/host")),
    );
    let t0 = Instant::now();
    let mut watch = monitor::policy::PostureWatch::new();
    let mut raised = Vec::new();
    let nothing = |_: &str| Some(Vec::new());
    // The agent's first tick, then the container starts (every bind of it is seen).
    watch.tick(&rules, &registry, t0, &nothing, &mut raised);
    registry.on_mkdir(
        7,
        "/docker/2978717dda3c653752a539e9d36d2be99b073d48bafe49383f91e2b5d0f1e489",
        t0,
    );
    watch.tick(&rules, &registry, t0, &nothing, &mut raised);
    watch.tick(
        &rules,
        &registry,
        t0 + Duration::from_secs(60),
        &nothing,
        &mut raised,
    );
    assert_eq!(raised.len(), 16, "every finding but ssh-port");
    raised
        .into_iter()
        .map(|p| {
            Alert::from_posture(
                &p.finding,
                p.container,
                p.status,
                std::time::SystemTime::now(),
                "node-1",
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_alert_kind_matches_the_schema() {
    let v = schema();
    // The pipeline folds repeats into updates (`update_of`); a second one,
    // with a small burst, throttles and raises notices of kind `agent`.
    let t0 = Instant::now();
    let pipeline = |burst| {
        AlertPipeline::new(
            PipelineConfig {
                dedup_window: Duration::from_secs(10),
                dedup_max_keys: 1000,
                rate_limit: RateLimitConfig {
                    per_second: 1.0,
                    burst,
                },
                ..PipelineConfig::default()
            },
            "node-1",
            None,
        )
    };
    let mut emitted = Vec::new();
    for burst in [10_000, 3] {
        let mut p = pipeline(burst);
        for a in alerts() {
            for _ in 0..3 {
                emitted.extend(p.push(a.clone(), t0));
            }
        }
        emitted.extend(p.flush(t0 + Duration::from_secs(11)));
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = Sinks::start(
        vec![SinkConfig::new(
            "file",
            SinkKind::File(FileConfig::new(path.clone())),
        )],
        SinksOptions {
            host: "node-1".into(),
            spool_dir: dir.path().join("spool"),
        },
        metrics.clone(),
    )
    .unwrap();
    for a in &emitted {
        sinks.dispatch(a);
    }
    sinks.shutdown(Duration::from_secs(2)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), emitted.len());

    let mut kinds = BTreeSet::new();
    let mut updates = 0;
    for record in &lines {
        let e = errors(&v, record);
        assert!(e.is_empty(), "{record}\n{}", e.join("\n"));
        kinds.insert(record["kind"].as_str().unwrap().to_owned());
        updates += usize::from(!record["update_of"].is_null());
    }
    let all: BTreeSet<String> = ["process", "file", "network", "syscall", "posture", "agent"]
        .map(String::from)
        .into();
    assert_eq!(kinds, all, "every kind went through");
    assert!(updates > 0, "folded updates went through");
    assert!(
        lines.iter().any(|r| r["rule"] == "alerts-throttled"),
        "a throttling notice went through"
    );
}

/// Records that break the contract are refused: the schema is not vacuous.
#[test]
fn the_schema_refuses_what_breaks_the_contract() {
    let v = schema();
    let good = serde_json::to_value(&alerts()[3]).unwrap();
    assert!(errors(&v, &good).is_empty(), "{:?}", errors(&v, &good));
    type Breakage = Box<dyn Fn(&mut Value)>;
    let broken: Vec<(&str, Breakage)> = vec![
        (
            "no id",
            Box::new(|a| {
                a.as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "unknown severity",
            Box::new(|a| a["severity"] = "urgent".into()),
        ),
        ("unknown kind", Box::new(|a| a["kind"] = "vibes".into())),
        (
            "file alert without file",
            Box::new(|a| a["file"] = Value::Null),
        ),
        (
            "empty string for unknown",
            Box::new(|a| a["container"]["name"] = "".into()),
        ),
        (
            "relative path",
            Box::new(|a| a["file"]["path"] = "etc/passwd".into()),
        ),
        (
            "time without micros",
            Box::new(|a| a["time"] = "2026-11-29T15:50:00Z".into()),
        ),
        ("count 0", Box::new(|a| a["count"] = 0.into())),
        (
            "other schema",
            Box::new(|a| a["schema"] = "monitor.alert/v2".into()),
        ),
        (
            "port out of range",
            Box::new(|a| {
                a["kind"] = "network".into();
                a["network"] = serde_json::json!({"op": "connect", "protocol": "tcp", "family": "ipv4",
                "daddr": "203.0.113.7", "dport": 70000, "dns": null});
            }),
        ),
        (
            "address not an IP",
            Box::new(|a| {
                a["kind"] = "network".into();
                a["network"] = serde_json::json!({"op": "connect", "protocol": "tcp", "family": "ipv4",
                "daddr": "example.com", "dport": 443, "dns": null});
            }),
        ),
    ];
    for (what, breakit) in broken {
        let mut a = good.clone();
        breakit(&mut a);
        assert!(!errors(&v, &a).is_empty(), "accepted: {what}: {a}");
    }
    let posture = serde_json::to_value(&posture_alerts()[0]).unwrap();
    assert!(
        errors(&v, &posture).is_empty(),
        "{:?}",
        errors(&v, &posture)
    );
    let broken: Vec<(&str, Breakage)> = vec![
        (
            "posture alert without posture",
            Box::new(|a| {
                a.as_object_mut().unwrap().remove("posture");
            }),
        ),
        (
            "posture without a finding",
            Box::new(|a| {
                a["posture"].as_object_mut().unwrap().remove("finding");
            }),
        ),
        (
            "posture with an empty fact",
            Box::new(|a| a["posture"]["fact"] = "".into()),
        ),
        (
            "posture alert with a process",
            Box::new(|a| a["process"] = serde_json::json!({"pid": 1})),
        ),
    ];
    for (what, breakit) in broken {
        let mut a = posture.clone();
        breakit(&mut a);
        assert!(!errors(&v, &a).is_empty(), "accepted: {what}: {a}");
    }
    // What a colleague's branch adds (ATT&CK tags, attempt, scan) and any
    // future additive field pass.
    let mut a = good.clone();
    a["tags"] = serde_json::json!(["T1059.004"]);
    a["attempt"] = true.into();
    a["scan"] = serde_json::json!({"ports": 100});
    a["some_future_field"] = 1.into();
    assert!(errors(&v, &a).is_empty(), "{:?}", errors(&v, &a));
}
