//! One alert of every kind and shape the agent emits, through the real
//! alert pipeline: the corpus the alert-contract and output-format tests
//! hold to their schemas.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use monitor::{
    alert::{Alert, AlertKind, AlertPipeline, PipelineConfig, RateLimitConfig, Severity},
    context::{Ancestor, ContainerInfo, MetadataStatus, ProcessInfo},
    event::{ActionTaken, Family, FileInfo, FileOp, NetOp, NetworkInfo, Protocol},
};

pub fn container() -> ContainerInfo {
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

pub fn process(exe: &str) -> ProcessInfo {
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
pub fn alerts() -> Vec<Alert> {
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
            action: None,
            inode: None,
        });
        out.push(a);
    }
    for (i, (op, protocol, addr)) in [
        (NetOp::Connect, Protocol::Tcp, "203.0.113.7"),
        (NetOp::Sendmsg, Protocol::Udp, "2001:db8::7"),
        (NetOp::Bind, Protocol::Other(132), "0.0.0.0"),
        (NetOp::Bind, Protocol::Tcp, "::"),
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
            action: None,
        });
        out.push(a);
    }
    // Enforcement: a denied connect, a killed exec, a dry run's finding.
    let mut denied = out.iter().find(|a| a.network.is_some()).cloned().unwrap();
    denied.summary = "denied".into();
    denied.action_taken = Some(ActionTaken::Denied);
    out.push(denied);
    let mut killed = mk(AlertKind::Process, "miner", "killed".into());
    killed.action_taken = Some(ActionTaken::Killed);
    out.push(killed);
    let mut dry = mk(AlertKind::Process, "miner", "would be killed".into());
    dry.would_deny = true;
    out.push(dry);
    for refused in [false, true] {
        let mut a = mk(AlertKind::Syscall, "namespace-change", "setns".into());
        let args = (!refused).then_some([3, 0x4000_0000, 0, 0, 0, 0]);
        let mut call =
            monitor::event::syscall::describe(libc::SYS_setns as u32, args.as_ref(), -1).unwrap();
        call.refused = refused;
        a.syscall = Some(call);
        out.push(a);
    }
    // A call outside the syscall profile, named and by a number unnamed.
    for nr in [libc::SYS_kexec_load as u32, u32::MAX] {
        let mut a = mk(
            AlertKind::Syscall,
            "unexpected-syscall",
            "kexec_load".into(),
        );
        a.syscall = Some(monitor::event::syscall::unexpected(nr, -1));
        out.push(a);
    }
    out.extend(posture_alerts());
    out.push(Alert::agent(
        "node-1",
        "events-lost",
        Severity::High,
        "12 events lost",
    ));
    // One container's losses: named, with counts by kind and reason.
    let mut lost = Alert::agent(
        "node-1",
        "events-lost",
        Severity::High,
        "the kernel dropped 9000 events of container web (nginx:1.27): 9000 file rate_limited",
    );
    lost.container = Some(container());
    lost.metadata_status = Some(MetadataStatus::Complete);
    lost.lost = Some(monitor::alert::LostSummary {
        cgroup_id: 4242,
        counts: vec![monitor::alert::LostCount {
            kind: "file".into(),
            reason: "rate_limited".into(),
            count: 9000,
            total: 12000,
        }],
    });
    out.push(lost);
    // What a candidate rule set (`--shadow`) would flag: info, marked.
    let mut shadow = out[0].clone();
    shadow.severity = Severity::Info;
    shadow.shadow = true;
    shadow.summary = format!("shadow: {}", shadow.summary);
    out.push(shadow);
    out
}

/// [`alerts`] as the pipeline emits them: each three times, so repeats fold
/// into updates (`update_of`), then through a second pipeline with a small
/// burst, which throttles and raises notices of kind `agent`.
pub fn emitted() -> Vec<Alert> {
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

    emitted
}

/// Posture alerts as the agent raises them: the shipped pack's posture rules
/// over a real dockerd's files of a container started every wrong way, through
/// the watch that `monitor run` uses (its grace over, nothing listening).
pub fn posture_alerts() -> Vec<Alert> {
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
