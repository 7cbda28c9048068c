//! Kernel tests of per-cgroup fairness: one cgroup floods far over its
//! budget while every event of another still arrives, and the flood's
//! losses are counted for its cgroup, exported and alerted on by name.
//! Run as root (`cargo xtask test`); real programs, test cgroups.
mod common;

use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use common::{
    Monitor, TestCgroup, WAIT, delivery::sample, kernel_tests_enabled, runtime, scaled, tempdir,
};
use serde_json::Value;

/// The budget the tests set: low enough that a Python open loop is far over
/// it even under emulation (thousands of opens a second there).
const RATE: u64 = 500;
const BURST: u64 = 500;

/// Opens (write, create) and closes `path` in a loop for `secs` seconds or
/// `cap` opens, then prints how many it made.
const FLOOD: &str = "import os, sys, time
path, secs, cap = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
n, end = 0, time.monotonic() + secs
while n < cap and time.monotonic() < end:
    for _ in range(100):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    n += 100
print(n)
";

/// `count` opens of distinct files below `dir`, as fast as it can.
const QUIET: &str = "import os, sys
d, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    os.close(os.open('%s/q%d' % (d, i), os.O_WRONLY | os.O_CREAT, 0o600))
";

fn start_flood(cg: &TestCgroup, path: &Path, secs: Duration) -> (Child, Instant) {
    let child = cg
        .command("/usr/bin/python3")
        .args(["-B", "-c", FLOOD, path.to_str().unwrap()])
        .arg(format!("{}", secs.as_secs_f64()))
        .arg("2000000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the flood");
    (child, Instant::now())
}

/// Waits for the flood to end; returns how many opens it made and how long it ran.
fn finish_flood(child: Child, started: Instant) -> (u64, Duration) {
    let out = child.wait_with_output().expect("the flood ends");
    let elapsed = started.elapsed();
    assert!(out.status.success(), "flood failed: {out:?}");
    let n = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (n, elapsed)
}

/// The last `total=` the agent logged for a cgroup's losses of one reason.
fn logged_total(stderr: &str, cgroup_id: u64, reason: &str) -> u64 {
    let id = format!("cgroup_id={cgroup_id} ");
    // tracing quotes string fields.
    let reason = format!("reason=\"{reason}\" ");
    stderr
        .lines()
        .rev()
        .filter(|l| {
            l.contains("kernel dropped events of a cgroup")
                && l.contains(&id)
                && l.contains(&reason)
        })
        .filter_map(|l| {
            l.split("total=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0)
}

fn file_events_of(seen: &[Value], cgroup_id: u64) -> usize {
    seen.iter()
        .filter(|v| v["event"] == "file" && v["cgroup_id"] == cgroup_id)
        .count()
}

#[test]
fn a_flooding_cgroup_is_rate_limited_while_another_keeps_every_event() {
    if !kernel_tests_enabled("a_flooding_cgroup_is_rate_limited_while_another_keeps_every_event") {
        return;
    }
    let tree = TestCgroup::parent();
    let flood = tree.subdir("flood");
    let quiet = tree.subdir("quiet");
    let shm = tempfile::Builder::new()
        .prefix("monitor-fair")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut m = Monitor::start(
        &[
            "trace",
            "--cgroup",
            tree.path.to_str().unwrap(),
            "--kind",
            "file",
            "--fair-rate",
            &RATE.to_string(),
            "--fair-burst",
            &BURST.to_string(),
        ],
        "tracing;",
    );
    let (child, started) = start_flood(
        &flood,
        &shm.path().join("flood"),
        scaled(Duration::from_secs(2)),
    );
    // The quiet cgroup's opens while the flood runs (it has spent its burst
    // within a fraction of a second): fewer than its own burst, so all due.
    std::thread::sleep(scaled(Duration::from_millis(300)));
    const QUIET_OPENS: usize = 200;
    let quiet_dir = shm.path().join("quiet");
    std::fs::create_dir(&quiet_dir).unwrap();
    quiet.run(
        "/usr/bin/python3",
        &[
            "-B",
            "-c",
            QUIET,
            quiet_dir.to_str().unwrap(),
            &QUIET_OPENS.to_string(),
        ],
        None,
    );
    let (opens, elapsed) = finish_flood(child, started);
    // Every event arrives, then a quiet spell: nothing more is on its way
    // (under emulation the agent may take seconds to catch up).
    let deadline = Instant::now() + scaled(WAIT);
    while file_events_of(&m.seen, quiet.id) < QUIET_OPENS && Instant::now() < deadline {
        m.drain_for(Duration::from_millis(100));
    }
    loop {
        let before = m.seen.len();
        m.drain_for(Duration::from_secs(1));
        if m.seen.len() == before || Instant::now() > deadline + scaled(WAIT) {
            break;
        }
    }
    let (seen, stderr) = m.stop_and_drain();
    let quiet_seen = file_events_of(&seen, quiet.id);
    let flood_seen = file_events_of(&seen, flood.id) as u64;
    assert_eq!(
        quiet_seen, QUIET_OPENS,
        "every open of the quiet cgroup arrives during the flood"
    );
    let budget = BURST + RATE * (elapsed.as_secs() + 1);
    assert!(
        opens > 4 * budget,
        "the flood must be far over its budget: {opens} opens in {elapsed:?}, budget {budget}"
    );
    assert!(
        flood_seen <= budget,
        "the flood sent {flood_seen} records in {elapsed:?}, over its budget of {budget}"
    );
    let limited = logged_total(&stderr, flood.id, "rate_limited");
    let ring_full = logged_total(&stderr, flood.id, "ring_buffer_full");
    assert_eq!(
        flood_seen + limited + ring_full,
        opens,
        "each of the flood's opens was either sent or counted for its cgroup; stderr:\n{stderr}"
    );
    assert_eq!(
        logged_total(&stderr, quiet.id, "rate_limited"),
        0,
        "the quiet cgroup lost nothing: {stderr}"
    );
    let lost_total: u64 = stderr
        .lines()
        .filter(|l| l.contains("trace stopped"))
        .find_map(|l| {
            l.split("lost_total=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no lost_total at stop: {stderr}"));
    assert!(
        lost_total >= limited + ring_full,
        "the totals include the flood's {limited} losses: lost_total={lost_total}"
    );
    assert!(
        stderr.contains("reason=\"rate_limited\""),
        "the global counters name the reason: {stderr}"
    );
}

#[test]
fn the_agent_alerts_naming_the_flooding_container_and_forgets_it_when_it_goes() {
    if !kernel_tests_enabled(
        "the_agent_alerts_naming_the_flooding_container_and_forgets_it_when_it_goes",
    ) {
        return;
    }
    let host_root = tempdir();
    std::os::unix::fs::symlink("/proc", host_root.path().join("proc")).unwrap();
    let spool = tempdir();
    let tree = TestCgroup::parent();
    // State files first, then the cgroup, as dockerd and runc make them.
    let id = runtime::write_docker(host_root.path(), "flooder", "flood:1");
    let flood = tree.subdir(&format!("docker-{id}.scope"));
    let shm = tempfile::Builder::new()
        .prefix("monitor-fair")
        .tempdir_in("/dev/shm")
        .unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut m = Monitor::start(
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--cgroup",
            tree.path.to_str().unwrap(),
            "--host-root",
            host_root.path().to_str().unwrap(),
            "--spool-dir",
            spool.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--fair-rate",
            &RATE.to_string(),
            "--fair-burst",
            &BURST.to_string(),
        ],
        "running; alerts go to",
    );
    let (child, started) = start_flood(
        &flood,
        &shm.path().join("flood"),
        scaled(Duration::from_secs(1)),
    );
    let (opens, elapsed) = finish_flood(child, started);
    let budget = BURST + RATE * (elapsed.as_secs() + 1);
    assert!(opens > 4 * budget, "{opens} opens, budget {budget}");
    let limited_total = |v: &Value| {
        v["lost"]["counts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["kind"] == "file" && c["reason"] == "rate_limited")
            .and_then(|c| c["total"].as_u64())
            .unwrap_or(0)
    };
    // Read every five seconds: alerts come while the flood lasts, and the
    // one after it counts (nearly) all of it: all but what its budget let through.
    let alert = m.expect(
        "an events-lost alert naming the container, with the whole flood",
        WAIT + Duration::from_secs(6),
        |v| {
            v["rule"] == "events-lost"
                && v["lost"]["cgroup_id"] == flood.id
                && limited_total(v) + budget >= opens
        },
    );
    assert_eq!(alert["kind"], "agent");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["container"]["name"], "flooder", "{alert}");
    assert_eq!(alert["container"]["id"], id.as_str());
    assert_eq!(alert["container"]["image"], "flood:1");
    let counts = alert["lost"]["counts"].as_array().unwrap();
    let limited = counts
        .iter()
        .find(|c| c["kind"] == "file" && c["reason"] == "rate_limited")
        .unwrap_or_else(|| panic!("no file/rate_limited count: {alert}"));
    // The alerts' new counts add up to the total: nothing counted twice or skipped.
    let counted: u64 = m
        .seen
        .iter()
        .filter(|v| v["rule"] == "events-lost" && v["lost"]["cgroup_id"] == flood.id)
        .filter_map(|v| {
            v["lost"]["counts"]
                .as_array()?
                .iter()
                .find(|c| c["kind"] == "file" && c["reason"] == "rate_limited")?["count"]
                .as_u64()
        })
        .sum();
    assert_eq!(counted, limited["total"].as_u64().unwrap(), "{alert}");
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.contains("container flooder (flood:1)") && summary.contains("rate_limited"),
        "{summary}"
    );
    // The metric, labelled with the container, holds every loss so far.
    let series = "monitor_container_events_lost_total{container=\"flooder\",kind=\"file\",reason=\"rate_limited\"}";
    let text = m.wait_metrics("the container's loss series", scaled(WAIT), |t| {
        sample(t, series).is_some()
    });
    let exported = sample(&text, series).unwrap() as u64;
    assert!(
        exported >= limited["total"].as_u64().unwrap(),
        "exported {exported}, alert {alert}"
    );
    // The container goes: its series goes too (bounded cardinality).
    std::fs::remove_dir(&flood.path).expect("rmdir the container's cgroup");
    m.wait_metrics(
        "the series removed with the cgroup",
        scaled(WAIT + Duration::from_secs(6)),
        |t| sample(t, series).is_none(),
    );
}
