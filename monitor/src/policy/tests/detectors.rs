//! Egress, drift, fileless exec, port scans and the container engine's files.
use super::*;

#[test]
fn egress_outside_the_cluster() {
    let mut ev = shipped_evaluator();
    let out = run(
        &mut ev,
        &[web()
            .by("/usr/bin/curl")
            .connect("8.8.8.8", 443, Protocol::Tcp)],
    );
    assert_eq!(rules_of(&out), ["egress"]);
    assert_eq!(out[0].kind, AlertKind::Network);
    assert_eq!(
        out[0].summary,
        "egress to 8.8.8.8:443/tcp, not on the egress allowlist, by /usr/bin/curl (pid 4242) in container web (nginx:1.27)"
    );
    let cases: &[(&str, u16, Protocol, &[&str])] = &[
        ("127.0.0.1", 8080, Protocol::Tcp, &[]),
        ("::1", 8080, Protocol::Tcp, &[]),
        ("0.0.0.0", 80, Protocol::Tcp, &[]),
        ("10.0.0.5", 5432, Protocol::Tcp, &[]),
        ("10.96.0.10", 53, Protocol::Udp, &[]),
        ("::ffff:10.1.2.3", 80, Protocol::Tcp, &[]),
        ("2001:4860:4860::8888", 443, Protocol::Tcp, &["egress"]),
        ("1.1.1.1", 53, Protocol::Udp, &["egress"]),
        // A denied destination is its deny rule's alert alone (one alert
        // per connection), not also `egress`.
        ("169.254.169.254", 80, Protocol::Tcp, &["cloud-metadata"]),
        ("203.0.113.8", 3333, Protocol::Tcp, &["mining-pool"]),
        // In the cluster, a pool port is still a pool port.
        ("10.0.0.9", 3333, Protocol::Tcp, &["mining-pool"]),
    ];
    for (addr, port, proto, want) in cases {
        let out = run(&mut ev, &[web().connect(addr, *port, *proto)]);
        assert_eq!(rules_of(&out), *want, "{addr}:{port}");
    }
    // Egress rules are for containers; binds are not egress.
    let out = run(
        &mut ev,
        &[host("/usr/bin/curl").connect("8.8.8.8", 443, Protocol::Tcp)],
    );
    assert!(out.is_empty(), "{out:?}");
    let mut bind = web().connect("8.8.8.8", 443, Protocol::Tcp);
    if let EventBody::Network(n) = &mut bind.event.body {
        n.op = NetOp::Bind;
    }
    assert!(run(&mut ev, &[bind]).is_empty());
}

#[test]
fn drift_written_then_executed() {
    let mut ev = shipped_evaluator();
    let w = web().by("/usr/bin/curl");
    let out = run(
        &mut ev,
        &[
            w.write("/tmp/payload"),
            w.file(FileOp::Chmod, "/tmp/payload", None, &[], 0),
            w.exec("/tmp/payload", &["/tmp/payload"]),
        ],
    );
    assert_eq!(rules_of(&out), ["drift"]);
    assert_eq!(out[0].severity, Severity::High);
    assert_eq!(
        out[0].summary,
        "drift: /tmp/payload was written after the container started and then executed in container web (nginx:1.27)"
    );
    // Another container executing the same path is not drift; nor is the
    // stateless rule set, which keeps no history.
    assert!(run(&mut ev, &[db().exec("/tmp/payload", &["/tmp/payload"])]).is_empty());
    let mut out = Vec::new();
    ev.rules().evaluate(&w.exec("/tmp/payload", &[]), &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn drift_renamed_into_place_and_forgotten_with_the_cgroup() {
    let mut ev = shipped_evaluator();
    let w = web();
    let out = run(
        &mut ev,
        &[
            w.write("/tmp/.x"),
            w.file(FileOp::Rename, "/tmp/.x", Some("/app/bin/worker"), &[], 0),
            w.exec("/app/bin/worker", &["worker"]),
        ],
    );
    assert_eq!(rules_of(&out), ["drift"]);
    // A failed write leaves nothing to execute.
    let out = run(
        &mut ev,
        &[
            w.file(
                FileOp::Open,
                "/app/bin/other",
                None,
                &["O_WRONLY", "O_CREAT"],
                -28,
            ),
            w.exec("/app/bin/other", &[]),
        ],
    );
    assert!(out.is_empty(), "{out:?}");
    let rmdir = host("/usr/bin/containerd").event(EventBody::Cgroup(CgroupChange {
        op: CgroupOp::Rmdir,
        id: 42,
        level: 3,
        path: "/kubepods.slice/x".into(),
    }));
    let out = run(&mut ev, &[rmdir, w.exec("/app/bin/worker", &[])]);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn memfd_exec() {
    let mut ev = shipped_evaluator();
    let out = run(&mut ev, &[web().exec("/memfd:x", &["x"])]);
    assert_eq!(rules_of(&out), ["memfd-exec"]);
    assert_eq!(out[0].severity, Severity::Critical);
    assert_eq!(
        out[0].summary,
        "fileless exec of /memfd:x (an in-memory or descriptor-only file) in container web (nginx:1.27)"
    );
    let out = run(
        &mut ev,
        &[host("/bin/bash")
            .parent("/bin/bash")
            .exec("/proc/self/fd/3", &[])],
    );
    assert_eq!(rules_of(&out), ["memfd-exec"]);
    // runc's self-clone on the host is excepted.
    let shim = host("/usr/bin/runc").parent("/usr/bin/containerd-shim-runc-v2");
    assert!(run(&mut ev, &[shim.exec("/dev/fd/5", &["runc", "init"])]).is_empty());
    // ... but not in a container.
    let out = run(
        &mut ev,
        &[web()
            .parent("/usr/bin/containerd-shim-runc-v2")
            .exec("/dev/fd/5", &[])],
    );
    assert_eq!(rules_of(&out), ["memfd-exec"]);
    // runc's clone inside the container's cgroup, started by runc itself, is.
    let runc = web().parent("/usr/sbin/runc");
    assert!(run(&mut ev, &[runc.exec("/dev/fd/6", &["runc", "init"])]).is_empty());
}

#[test]
fn port_scan_burst_is_one_alert() {
    let mut ev = shipped_evaluator();
    let w = web().by("/usr/bin/nmap");
    let events: Vec<EnrichedEvent> = (0..50u16)
        .map(|i| {
            w.clone()
                .at(2_000_000_000_000 + u64::from(i) * 10_000_000)
                .connect("10.0.0.9", 1000 + i, Protocol::Tcp)
        })
        .collect();
    let out = run(&mut ev, &events);
    assert_eq!(rules_of(&out), ["port-scan"], "{out:#?}");
    assert_eq!(out[0].kind, AlertKind::Network);
    assert_eq!(
        out[0].summary,
        "port scan: 20 distinct ports on 1 host within 10s, last by /usr/bin/nmap (pid 4242) in container web (nginx:1.27)"
    );
    let scan = out[0].scan.as_ref().expect("the scan's destinations");
    assert_eq!(scan.ports, (1000..1020).collect::<Vec<u16>>());
    assert_eq!(scan.hosts, ["10.0.0.9"]);
    assert_eq!((scan.distinct_ports, scan.distinct_hosts), (20, 1));
    // Ordinary traffic, many connections to few ports, is no scan.
    let calm: Vec<EnrichedEvent> = (0..200u16)
        .map(|i| {
            db().at(u64::from(i) * 1_000_000)
                .connect("10.0.0.7", 5432 + i % 3, Protocol::Tcp)
        })
        .collect();
    assert!(run(&mut ev, &calm).is_empty());
}

#[test]
fn container_engine_files_on_the_host() {
    let mut ev = shipped_evaluator();
    let out = run(
        &mut ev,
        &[host("/usr/bin/vim").write("/etc/docker/daemon.json")],
    );
    assert_eq!(rules_of(&out), ["engine-config-write"]);
    assert_eq!(out[0].policy.as_ref(), "default/container-engine");
    assert_eq!(
        out[0].summary,
        "write to protected path /etc/docker/daemon.json (open O_WRONLY|O_CREAT|O_TRUNC) by /usr/bin/vim (pid 777) on the host"
    );
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "/usr/bin/vim",
            "/lib/systemd/system/docker.service",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/systemd/system/docker.socket",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/systemd/system/docker.service.d/override.conf",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/default/docker",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/containerd/config.toml",
            &["engine-config-write"],
        ),
        ("/usr/bin/cp", "/usr/bin/runc", &["engine-binary-write"]),
        (
            "/usr/bin/cp",
            "/usr/bin/containerd-shim-runc-v2",
            &["engine-binary-write"],
        ),
        (
            "/usr/bin/cp",
            "/usr/local/bin/containerd",
            &["engine-binary-write"],
        ),
        (
            "/usr/bin/vim",
            "/var/lib/docker/containers/x/config.v2.json",
            &["engine-state-write"],
        ),
        (
            "/usr/bin/dockerd",
            "/var/lib/docker/containers/x/config.v2.json",
            &[],
        ),
        (
            "/usr/bin/containerd",
            "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db",
            &[],
        ),
        // Host writes to /etc are the host's business.
        ("/usr/bin/vim", "/etc/hosts", &[]),
    ];
    for (exe, path, want) in cases {
        let out = run(&mut ev, &[host(exe).write(path)]);
        assert_eq!(rules_of(&out), *want, "{exe} -> {path}");
    }
    // The same file inside a container is its own (protected) /etc.
    let out = run(&mut ev, &[web().write("/etc/docker/daemon.json")]);
    assert_eq!(rules_of(&out), ["protected-write"]);
}
