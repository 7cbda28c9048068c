//! Kernel end-to-end tests of alert delivery through `monitor run` itself:
//! the real agent, its flags, the shipped rule pack and alerts the kernel
//! raised, delivered to a webhook receiver that verifies every Standard
//! Webhooks signature, and to a real Prometheus Alertmanager.
//!
//! Workloads are copies of `/bin/true` named `sshd` at distinct paths, run in
//! test "containers" (cgroup v2 directories named the way the runtimes name
//! them, with the runtimes' state files in a temporary host root): one
//! `ssh-server` alert each. The agent's `--output-file` is the record of
//! every alert it emitted, held against what the endpoint received.
//! Run as root (`cargo xtask test`).
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard, atomic::Ordering},
    thread,
    time::{Duration, Instant},
};

use common::{
    Monitor, TestCgroup,
    delivery::{
        ALERTMANAGER, Alertmanager, PROMTOOL, Receiver, RefusingPort, Seen, need_tool,
        promtool_check, runtime, sample, secret_file,
    },
    kernel_tests_enabled, monitor_bin,
    runtime::{Container, HostRoot, Runtime},
};
use serde_json::Value;

/// Generous: the machine is shared and loaded; waits end as soon as the
/// awaited state is reached.
const WAIT: Duration = Duration::from_secs(60);

/// One agent at a time: each loads and verifies every kernel program.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// Test containers below one parent cgroup, their state files in a host
/// root, and scratch space for the programs they run. Dropping it kills
/// what runs in the containers and removes their cgroups.
struct Fleet {
    containers: Vec<(Container, TestCgroup)>,
    host: HostRoot,
    scratch: PathBuf,
    _scratch: tempfile::TempDir,
    // Last: removing the parent kills every process below it first.
    parent: TestCgroup,
}

impl Fleet {
    fn new(containers: Vec<Container>) -> Fleet {
        let host = HostRoot::new();
        let parent = TestCgroup::parent();
        let containers = containers
            .into_iter()
            .map(|c| {
                // State first, then the cgroup, as a runtime starts a container.
                host.write(&c);
                let path = match (&c.runtime, &c.pod) {
                    (Runtime::Containerd, Some(pod)) => format!(
                        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                        pod.uid.replace('-', "_"),
                        c.id
                    ),
                    _ => format!("system.slice/docker-{}.scope", c.id),
                };
                let cg = parent.subdir(&path);
                (c, cg)
            })
            .collect();
        let scratch_dir = common::tempdir();
        Fleet {
            containers,
            host,
            scratch: scratch_dir.path().canonicalize().unwrap(),
            _scratch: scratch_dir,
            parent,
        }
    }

    /// Copies `/bin/true` to `<scratch>/<tag>/usr/sbin/sshd`; returns its path.
    fn sshd(&self, tag: &str) -> String {
        let dir = self.scratch.join(tag).join("usr/sbin");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sshd");
        fs::copy("/bin/true", &path).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `monitor run` over the fleet with the shipped pack, metrics on a
    /// loopback port of its choosing, no stdout, and `extra` flags.
    fn agent(&self, extra: &[&str]) -> Monitor {
        let rules = shipped_rules();
        let posture_off = self.scratch.join("rules.d");
        common::write_posture_off(&posture_off);
        let mut cmd = Command::new(monitor_bin());
        cmd.args([
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--rules",
            posture_off.to_str().unwrap(),
            "--cgroup",
            self.parent.path.to_str().unwrap(),
            "--host-root",
            self.host.path_str(),
            "--listen",
            "127.0.0.1:0",
            "--no-stdout",
        ])
        .args(extra);
        // Loopback endpoints are reached directly, whatever proxy the
        // machine's environment names.
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("NO_PROXY", "127.0.0.1,localhost");
        Monitor::start_with(&mut cmd, "running; alerts go to")
    }
}

/// The alerts in a JSON-lines output file (complete lines only).
fn read_alerts(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the output file holds `n` alerts of `rule`; returns every alert in it.
fn wait_alerts(m: &Monitor, path: &Path, rule: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let alerts = read_alerts(path);
        let have = alerts.iter().filter(|a| a["rule"] == rule).count();
        if have >= n {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} {rule} alerts in {} within {WAIT:?}; stderr:\n{}",
            path.display(),
            m.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn id_of(a: &Value) -> String {
    a["id"].as_str().expect("an alert id").to_owned()
}

/// The value of `series` in a scrape, 0 when absent.
fn value(text: &str, series: &str) -> u64 {
    sample(text, series).unwrap_or(0.0) as u64
}

const SPOOLED: &str = r#"monitor_sink_spooled{sink="webhook"}"#;
const QUEUED: &str = r#"monitor_sink_queued{sink="webhook"}"#;
const DELIVERED: &str = r#"monitor_sink_delivered_total{sink="webhook"}"#;
const RETRIES: &str = r#"monitor_sink_retries_total{sink="webhook"}"#;
const FAILED: &str = r#"monitor_sink_failed_total{sink="webhook"}"#;

fn assert_nothing_dropped(text: &str) {
    for l in text.lines() {
        assert!(
            !l.starts_with("monitor_sink_dropped_total") || l.ends_with(" 0"),
            "{l}"
        );
    }
    assert_eq!(value(text, FAILED), 0, "{text}");
}

/// The issue's Done-when at the agent level: the endpoint is down while
/// alerts are raised, the agent is SIGKILLed, and the next agent on the same
/// spool delivers every one, signed, once the endpoint is up; then SIGTERM
/// with a request the receiver never answers ends within the grace and keeps
/// that alert for the next start.
#[test]
fn alerts_raised_while_the_receiver_is_down_survive_sigkill_and_all_arrive_signed() {
    if !kernel_tests_enabled(
        "alerts_raised_while_the_receiver_is_down_survive_sigkill_and_all_arrive_signed",
    ) {
        return;
    }
    let _serial = serial();
    let have_promtool = need_tool(PROMTOOL, "prometheus");
    // 5 containers x 10 programs: 50 distinct alerts, within each container's
    // rate-limit burst.
    const CONTAINERS: usize = 5;
    const PER_CONTAINER: usize = 10;
    const N: usize = CONTAINERS * PER_CONTAINER;
    let fleet = Fleet::new(
        (0..CONTAINERS)
            .map(|i| Container::docker(&format!("web-{i}"), "nginx:1.27"))
            .collect(),
    );
    let work = common::tempdir();
    let key: [u8; 32] = rand::random();
    let secret = secret_file(work.path(), &key);
    let spool = work.path().join("spool");
    // Held, not listening: every delivery attempt is refused until the
    // receiver takes the port over.
    let port = RefusingPort::new();
    let hook = port.url("/hook");
    let grace = Duration::from_secs(2);
    let flags = |out: &Path| -> Vec<String> {
        [
            "--webhook",
            &hook,
            "--webhook-secret-file",
            secret.to_str().unwrap(),
            "--spool-dir",
            spool.to_str().unwrap(),
            "--output-file",
            out.to_str().unwrap(),
            "--shutdown-grace",
            "2s",
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // First life: the receiver is down.
    let out1 = work.path().join("alerts-1.jsonl");
    let m = fleet.agent(&strs(&flags(&out1)));
    let mut exes = BTreeSet::new();
    for (c, cg) in &fleet.containers {
        for j in 0..PER_CONTAINER {
            let sshd = fleet.sshd(&format!("{}/{j}", c.name));
            cg.run(&sshd, &["-D"], None);
            exes.insert(sshd);
        }
    }
    let emitted = wait_alerts(&m, &out1, "ssh-server", N);
    let ssh: BTreeSet<String> = emitted
        .iter()
        .filter(|a| a["rule"] == "ssh-server")
        .map(|a| a["process"]["exe"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ssh, exes, "one ssh-server alert per program");
    let text = m.wait_metrics("every alert in the webhook's spool", WAIT, |t| {
        value(t, SPOOLED) == emitted.len() as u64 && value(t, QUEUED) == 0
    });
    assert_eq!(value(&text, DELIVERED), 0, "the port refuses: {text}");
    assert!(
        value(&text, RETRIES) >= 1,
        "refused attempts are retried: {text}"
    );
    assert_nothing_dropped(&text);
    let stderr = m.kill();
    // Nothing was emitted after the scrape.
    let emitted = read_alerts(&out1);
    let want: BTreeSet<String> = emitted.iter().map(id_of).collect();
    assert_eq!(want.len(), emitted.len(), "alert ids are unique");
    assert_eq!(emitted.len(), N, "only the ssh-server alerts: {emitted:#?}");
    assert!(!stderr.contains("stopping"), "killed, not stopped");

    // Second life on the same spool; the receiver comes up after it.
    let out2 = work.path().join("alerts-2.jsonl");
    let m = fleet.agent(&strs(&flags(&out2)));
    assert!(
        m.stderr().contains(&format!("records={N}")),
        "the spool was recovered: {}",
        m.stderr()
    );
    m.wait_metrics("the recovered spool in the metrics", WAIT, |t| {
        value(t, SPOOLED) == N as u64
    });
    let rt = runtime();
    let seen = Seen::signed(&key);
    let receiver = rt.block_on(Receiver::start(seen.clone(), port.addr));
    drop(port);
    // The backoff grew while the port refused (capped at 60 s): a generous bound.
    let text = m.wait_metrics("every alert delivered", Duration::from_secs(180), |t| {
        value(t, DELIVERED) >= N as u64 && value(t, SPOOLED) == 0
    });
    // At least once: a re-sent alert keeps its id; fold re-sends.
    let got = seen.ids();
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for id in &got {
        *times.entry(id.clone()).or_default() += 1;
    }
    let received: BTreeSet<String> = times.keys().cloned().collect();
    assert_eq!(received, want, "every alert id arrived, and nothing else");
    let resent: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!("{} alerts delivered, re-sent: {resent:?}", got.len());
    // Each body is the alert record itself, as the output file has it, the
    // same on every re-send.
    let records: BTreeMap<String, &Value> = emitted.iter().map(|a| (id_of(a), a)).collect();
    for body in seen.alerts.lock().unwrap().iter() {
        assert_eq!(body, records[&id_of(body)], "the record as emitted");
    }
    assert_eq!(seen.bad_signatures(), 0, "every request verified");
    assert_eq!(
        *seen.message_ids.lock().unwrap(),
        got,
        "webhook-id is the alert id"
    );
    // Accounting: each alert acknowledged once, nothing left, nothing lost.
    assert_eq!(value(&text, DELIVERED), N as u64, "{text}");
    assert_eq!(value(&text, SPOOLED), 0, "{text}");
    assert_eq!(value(&text, QUEUED), 0, "{text}");
    assert_nothing_dropped(&text);
    assert!(
        read_alerts(&out2).is_empty(),
        "the second life raised nothing"
    );
    if have_promtool {
        promtool_check(&text);
    }

    // SIGTERM while the receiver holds a request unanswered: the agent stops
    // within its grace (the request timeout, 15 s, would be far later) and
    // keeps the alert spooled for the next start.
    seen.stall.store(true, Ordering::SeqCst);
    let requests = seen.requests();
    let sshd = fleet.sshd("late");
    fleet.containers[0].1.run(&sshd, &["-D"], None);
    let late = wait_alerts(&m, &out2, "ssh-server", 1);
    assert_eq!(late.len(), 1, "{late:#?}");
    let deadline = Instant::now() + WAIT;
    while seen.requests() == requests {
        assert!(Instant::now() < deadline, "the late alert was never sent");
        thread::sleep(Duration::from_millis(50));
    }
    let (took, status, stderr) = m.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status:?}; stderr:\n{stderr}");
    assert!(
        took < grace + Duration::from_secs(10),
        "stopped {took:?} after SIGTERM, with a grace of {grace:?}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("stopping with alerts still spooled"),
        "{stderr}"
    );
    let (held, _) = monitor::sink::Spool::open(&spool.join("webhook"), 64 << 20, 4 << 20).unwrap();
    let held: Vec<String> = held
        .peek(10)
        .unwrap()
        .into_iter()
        .map(|(_, rec)| id_of(&serde_json::from_slice(&rec).unwrap()))
        .collect();
    assert_eq!(
        held,
        vec![id_of(&late[0])],
        "the unanswered alert stays spooled"
    );
    rt.block_on(receiver.stop());
}

/// `--alertmanager` end to end: alerts from the kernel reach a real
/// Alertmanager with the labels routing and silences use, one Alertmanager
/// alert per finding.
#[test]
fn alerts_reach_a_real_alertmanager_through_the_flag() {
    if !kernel_tests_enabled("alerts_reach_a_real_alertmanager_through_the_flag") {
        return;
    }
    if !need_tool(ALERTMANAGER, "prometheus-alertmanager") {
        return;
    }
    let _serial = serial();
    let work = common::tempdir();
    let am = Alertmanager::start(work.path());
    let fleet = Fleet::new(vec![
        Container::docker("web", "nginx:1.27"),
        Container::cri(
            Runtime::Containerd,
            "api",
            "registry.example/shop/api:3.1",
            "api-6f7c9d-x2x9q",
            "shop",
        ),
    ]);
    let out = work.path().join("alerts.jsonl");
    let spool = work.path().join("spool");
    let m = fleet.agent(&[
        "--alertmanager",
        &am.base,
        "--spool-dir",
        spool.to_str().unwrap(),
        "--output-file",
        out.to_str().unwrap(),
    ]);
    // Two programs in `web`: one rule, one container, two findings, which
    // must stay two alerts in Alertmanager.
    for (c, cg) in &fleet.containers {
        let copies = if c.name == "web" { 2 } else { 1 };
        for i in 0..copies {
            let sshd = fleet.sshd(&format!("{}/{i}", c.name));
            cg.run(&sshd, &["-D"], None);
        }
    }
    let emitted = wait_alerts(&m, &out, "ssh-server", 3);
    let n = emitted.len() as u64;
    m.wait_metrics("the alerts delivered to Alertmanager", WAIT, |t| {
        value(t, r#"monitor_sink_delivered_total{sink="alertmanager"}"#) == n
    });
    let got = am.alerts();
    let (_, stderr) = m.stop_and_drain();
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(got.len(), emitted.len(), "{got:#?}");
    for a in &emitted {
        let found = got
            .iter()
            .find(|g| g["annotations"]["alert_id"] == a["id"])
            .unwrap_or_else(|| panic!("{} missing in {got:#?}\nstderr:\n{stderr}", a["id"]));
        let l = &found["labels"];
        assert_eq!(l["alertname"], a["rule"], "{found:#}");
        assert_eq!(l["severity"], a["severity"], "{found:#}");
        assert_eq!(l["kind"], "process", "{found:#}");
        assert_eq!(l["host"], host.as_str(), "{found:#}");
        assert_eq!(l["container"], a["container"]["name"], "{found:#}");
        assert_eq!(l["container_id"], a["container"]["id"], "{found:#}");
        // The subject is the dedup subject (#12): the executable and its
        // arguments after argv[0], shown with spaces.
        let mut subject = a["process"]["exe"].as_str().unwrap().to_owned();
        for arg in a["process"]["args"].as_array().unwrap().iter().skip(1) {
            subject.push(' ');
            subject.push_str(arg.as_str().unwrap());
        }
        assert_eq!(l["subject"], subject.as_str(), "{found:#}");
        assert_eq!(found["annotations"]["summary"], a["summary"], "{found:#}");
        assert_eq!(found["status"]["state"], "active", "{found:#}");
        match a["container"]["name"].as_str() {
            Some("api") => {
                assert_eq!(l["namespace"], "shop", "{found:#}");
                assert_eq!(l["pod"], "api-6f7c9d-x2x9q", "{found:#}");
            }
            Some("web") => {
                // Unknown for a plain Docker container: left out, not empty.
                assert!(l.get("namespace").is_none(), "{found:#}");
                assert!(l.get("pod").is_none(), "{found:#}");
            }
            other => panic!("an alert from {other:?}: {a:#}"),
        }
    }
    let names: BTreeSet<&str> = emitted
        .iter()
        .filter_map(|a| a["container"]["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["api", "web"]));
}
