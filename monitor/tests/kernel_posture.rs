//! The posture rules on real Docker containers: each container is started
//! following every practice but one (`--privileged`, `--network host`, `--pid
//! host`, no limits, a writable root filesystem, uid 0, `--restart always`,
//! the engine's socket mounted, an exposed port nothing listens on, a process
//! listening on an SSH port, the host's IPC namespace, an added capability,
//! seccomp, AppArmor or SELinux switched off, the host's /etc mounted), and a
//! benign twin follows them all (it listens
//! on the port it exposes). `monitor run` must raise exactly the findings of
//! each, once, as posture alerts; an agent started when they are already
//! running must find the same; `monitor posture --json` must list the same,
//! and `--fail-on` must exit by the most severe.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::fs::symlink,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{Monitor, docker};
use serde_json::Value;

/// Every practice followed (`--network none`: no bridge exists here).
const GOOD: &[&str] = &[
    "--read-only",
    "--user",
    "1000:1000",
    "--memory",
    "64m",
    "--cpus",
    "0.5",
    "--restart",
    "no",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

struct Case {
    name: &'static str,
    /// Options beyond (or instead of, `drop`) [`GOOD`].
    add: &'static [&'static str],
    /// Options of GOOD left out (an option and its value).
    drop: &'static [&'static str],
    /// The command.
    cmd: &'static [&'static str],
    /// The posture rules it must raise, sorted.
    expect: &'static [&'static str],
}

const SLEEP: &[&str] = &["/bin/sleep", "120"];

const CASES: &[Case] = &[
    Case {
        name: "privileged",
        add: &[
            "--network",
            "none",
            "--runtime",
            docker::PRIVILEGED_RUNTIME,
            "--privileged",
        ],
        drop: &[],
        cmd: SLEEP,
        // Docker writes `label=disable` for every privileged container.
        expect: &["privileged", "selinux-disabled"],
    },
    Case {
        name: "host-network",
        add: &["--network", "host"],
        drop: &[],
        cmd: SLEEP,
        expect: &["host-network"],
    },
    Case {
        name: "host-pid",
        add: &["--network", "none", "--pid", "host"],
        drop: &[],
        cmd: SLEEP,
        // Docker writes `label=disable` for a container in the host's pid namespace.
        expect: &["host-pid", "selinux-disabled"],
    },
    Case {
        name: "no-limits",
        add: &["--network", "none"],
        drop: &["--memory", "--cpus"],
        cmd: SLEEP,
        expect: &["no-cpu-limit", "no-memory-limit"],
    },
    Case {
        name: "writable",
        add: &["--network", "none"],
        drop: &["--read-only"],
        cmd: SLEEP,
        expect: &["writable-rootfs"],
    },
    Case {
        name: "root",
        add: &["--network", "none"],
        drop: &["--user"],
        cmd: SLEEP,
        expect: &["root-user"],
    },
    Case {
        name: "restart-always",
        add: &["--network", "none", "--restart", "always"],
        drop: &["--restart"],
        cmd: SLEEP,
        expect: &["restart-policy"],
    },
    Case {
        name: "engine-socket",
        add: &["--network", "none", "-v", "{sock}:/var/run/docker.sock"],
        drop: &[],
        cmd: SLEEP,
        expect: &["engine-socket-mount"],
    },
    Case {
        name: "unused-port",
        add: &["--network", "none", "--expose", "8080"],
        drop: &[],
        cmd: SLEEP,
        expect: &["unused-port"],
    },
    Case {
        name: "ssh-port",
        add: &["--network", "none"],
        drop: &[],
        // 2222: an unprivileged user with no capabilities cannot bind 22.
        cmd: &["/bin/busybox", "nc", "-l", "-p", "2222"],
        expect: &["ssh-port"],
    },
    Case {
        name: "host-ipc",
        add: &["--network", "none", "--ipc", "host"],
        drop: &[],
        cmd: SLEEP,
        // As for the host's pid namespace, Docker writes `label=disable`.
        expect: &["host-ipc", "selinux-disabled"],
    },
    Case {
        name: "added-capability",
        add: &["--network", "none", "--cap-add", "SYS_PTRACE"],
        drop: &[],
        cmd: SLEEP,
        expect: &["added-capabilities"],
    },
    Case {
        name: "seccomp-off",
        add: &["--network", "none", "--security-opt", "seccomp=unconfined"],
        drop: &[],
        cmd: SLEEP,
        expect: &["seccomp-unconfined"],
    },
    Case {
        name: "apparmor-off",
        add: &["--network", "none", "--security-opt", "apparmor=unconfined"],
        drop: &[],
        cmd: SLEEP,
        expect: &["apparmor-unconfined"],
    },
    Case {
        name: "selinux-off",
        add: &["--network", "none", "--security-opt", "label=disable"],
        drop: &[],
        cmd: SLEEP,
        expect: &["selinux-disabled"],
    },
    Case {
        name: "host-etc",
        add: &["--network", "none", "-v", "/etc:/host-etc:ro"],
        drop: &[],
        cmd: SLEEP,
        expect: &["sensitive-mount"],
    },
    Case {
        name: "benign-twin",
        add: &["--network", "none", "--expose", "8080"],
        drop: &[],
        cmd: &["/bin/busybox", "nc", "-l", "-p", "8080"],
        expect: &[],
    },
];

fn options(case: &Case, sock: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for (i, o) in GOOD.iter().enumerate() {
        if skip {
            skip = false;
            continue;
        }
        if case.drop.contains(o) || (*o == "--restart" && case.add.contains(&"--restart")) {
            // An option followed by its value drops the value too.
            skip = GOOD.get(i + 1).is_some_and(|v| !v.starts_with("--"));
            continue;
        }
        out.push((*o).to_owned());
    }
    out.extend(case.add.iter().map(|a| a.replace("{sock}", sock)));
    out
}

/// Posture alerts by container id: rule -> how many times raised.
fn posture_by_container(alerts: &[Value]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut by: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for a in alerts.iter().filter(|a| a["kind"] == "posture") {
        let id = a["container"]["id"].as_str().unwrap_or("?").to_owned();
        *by.entry(id)
            .or_default()
            .entry(a["rule"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        assert_eq!(a["policy"], "default/posture", "{a}");
        assert_eq!(a["posture"]["finding"], a["rule"], "{a}");
        assert!(
            a["posture"]["fact"].as_str().is_some_and(|f| !f.is_empty()),
            "{a}"
        );
        assert!(a["process"].is_null(), "{a}");
    }
    by
}

#[test]
fn posture_findings_on_real_containers() {
    if !common::kernel_tests_enabled("posture_findings_on_real_containers") {
        return;
    }
    if let Some(install) = docker::missing() {
        let required = std::env::var("MONITOR_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1");
        assert!(!required, "the posture test needs Docker: {install}");
        eprintln!("SKIPPED posture_findings_on_real_containers: Docker is missing ({install})");
        return;
    }
    // Every posture rule of the pack has a row that raises it.
    let pack =
        monitor::policy::check_dir(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")])
            .unwrap();
    for (policy, rules) in pack.policies() {
        if policy != "default/posture" {
            continue;
        }
        for r in rules {
            assert!(
                CASES.iter().any(|c| c.expect.contains(&r)),
                "no row raises posture rule `{r}`"
            );
        }
    }
    let mut d = docker::Dockerd::start();
    d.import_busybox();
    let host_root = common::tempdir();
    fs::create_dir_all(host_root.path().join("var/lib")).unwrap();
    symlink(&d.data_root, host_root.path().join("var/lib/docker")).unwrap();
    symlink("/proc", host_root.path().join("proc")).unwrap();
    // The shipped pack, with a short grace for unused ports.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let local = common::tempdir();
    fs::write(
        local.path().join("50-grace.yaml"),
        "policies:\n  - name: default/posture\n    extend: true\n    rules:\n      - name: unused-port\n        posture: {check: unused-port, grace: 3s}\n",
    )
    .unwrap();
    let docker_scope = common::cgroup2_mount().join("docker");
    fs::create_dir_all(&docker_scope).unwrap();
    let spool = common::tempdir();
    let run_args = |spool: &Path| -> Vec<String> {
        [
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--rules",
            local.path().to_str().unwrap(),
            "--cgroup",
            docker_scope.to_str().unwrap(),
            "--host-root",
            host_root.path().to_str().unwrap(),
            "--spool-dir",
            spool.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = run_args(spool.path());
    let mut m = Monitor::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "running; alerts go to",
    );

    let tag = std::process::id();
    let sock = d.socket().to_str().unwrap().to_owned();
    let mut ids: Vec<(usize, String)> = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let opts = options(case, &sock);
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let id = d.run_with(
            &format!("monitor-posture-{tag}-{}", case.name),
            &opts,
            docker::IMAGE,
            case.cmd,
        );
        ids.push((i, id));
    }
    let started = Instant::now();
    // Every expected finding, the unused port's after its 3 s grace.
    let want: usize = CASES.iter().map(|c| c.expect.len()).sum();
    let count = |seen: &[Value]| {
        let by = posture_by_container(seen);
        ids.iter()
            .map(|(_, id)| by.get(id).map_or(0, BTreeMap::len))
            .sum::<usize>()
    };
    let deadline = started + common::scaled(Duration::from_secs(30));
    while count(&m.seen) < want && Instant::now() < deadline {
        m.drain_for(Duration::from_millis(500));
    }
    // Past every grace, and long enough for a second raising to show.
    let settle = common::scaled(Duration::from_secs(6));
    if let Some(left) = (started + settle).checked_duration_since(Instant::now()) {
        m.drain_for(left);
    }
    m.drain_for(Duration::from_secs(2));
    let (alerts, _stderr) = m.stop_and_drain();
    let by = posture_by_container(&alerts);
    let mut failures = Vec::new();
    for (i, id) in &ids {
        let case = &CASES[*i];
        let got = by.get(id).cloned().unwrap_or_default();
        let rules: Vec<&str> = got.keys().map(String::as_str).collect();
        if rules != case.expect {
            failures.push(format!(
                "run: {}: expected {:?}, got {rules:?}",
                case.name, case.expect
            ));
        }
        if let Some((r, n)) = got.iter().find(|(_, n)| **n != 1) {
            failures.push(format!("run: {}: {r} raised {n} times", case.name));
        }
    }
    let summary = alerts
        .iter()
        .find(|a| a["rule"] == "engine-socket-mount")
        .and_then(|a| a["summary"].as_str())
        .unwrap_or("");
    assert!(
        summary.contains(&format!("{sock} at /var/run/docker.sock")),
        "{summary}"
    );

    // An agent started while they run finds the same start-up findings.
    let spool2 = common::tempdir();
    let args = run_args(spool2.path());
    let mut m = Monitor::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "running; alerts go to",
    );
    let (_, privileged) = ids
        .iter()
        .find(|(i, _)| CASES[*i].name == "privileged")
        .unwrap();
    m.expect(
        "the running privileged container's finding",
        Duration::from_secs(10),
        |a| a["rule"] == "privileged" && a["container"]["id"] == privileged.as_str(),
    );
    m.drain_for(Duration::from_secs(2));
    let (alerts, _) = m.stop_and_drain();
    let by = posture_by_container(&alerts);
    for (i, id) in &ids {
        let case = &CASES[*i];
        let got: BTreeSet<&str> = by
            .get(id)
            .map(|g| {
                g.keys()
                    .map(String::as_str)
                    .filter(|r| *r != "unused-port")
                    .collect()
            })
            .unwrap_or_default();
        // Ports: the SSH listener is in the container's socket table; the
        // unused port's grace (3 s from this agent's start) may not be over.
        let want: BTreeSet<&str> = case
            .expect
            .iter()
            .copied()
            .filter(|r| *r != "unused-port")
            .collect();
        if got != want {
            failures.push(format!(
                "restarted agent: {}: expected {want:?}, got {got:?}",
                case.name
            ));
        }
    }

    // `monitor posture --json` over the same containers.
    let posture = |extra: &[&str]| {
        Command::new(common::monitor_bin())
            .args(["posture", "--rules", rules.to_str().unwrap(), "--rules"])
            .arg(local.path())
            .arg("--host-root")
            .arg(host_root.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = posture(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, id) in &ids {
        let case = &CASES[*i];
        let Some(c) = report["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["container"]["id"] == id.as_str())
        else {
            failures.push(format!("posture: {} is not listed", case.name));
            continue;
        };
        let mut got: Vec<&str> = c["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        got.sort_unstable();
        if got != case.expect {
            failures.push(format!(
                "posture: {}: expected {:?}, got {got:?}",
                case.name, case.expect
            ));
        }
    }
    // The privileged container is critical; nothing is above critical.
    assert_eq!(posture(&["--fail-on", "critical"]).status.code(), Some(1));
    assert_eq!(posture(&["--fail-on", "high"]).status.code(), Some(1));
    let table = String::from_utf8(posture(&[]).stdout).unwrap();
    assert!(
        table.lines().any(
            |l| l.contains(&format!("monitor-posture-{tag}-benign-twin")) && l.contains(" -  ")
        ),
        "the twin is listed with no finding:\n{table}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
