//! Latency from the kernel event to the line on stdout: the workload names
//! each marker file after its CLOCK_MONOTONIC time just before the open; the
//! bench stamps each `monitor trace` line as it reads it.
//!
//! Then the same for an alert: `monitor run` with the shipped rules, and the
//! workload executing a copy of `/bin/true` named `sshd` (the `ssh-server`
//! rule) in Docker-named container cgroups, its argument carrying the time
//! just before execve.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

use super::{
    Ctx,
    process::{Workload, check_interrupt},
    stats::{Spread, percentile},
};

#[derive(Clone, Debug, Serialize)]
pub struct Rep {
    pub rep: usize,
    pub sent: u64,
    pub received: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Every sample, in microseconds, in send order.
    pub samples_us: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub rate: f64,
    pub samples_per_rep: u64,
    pub reps: Vec<Rep>,
    /// Per-repetition percentiles: median and range over repetitions.
    pub p50_ms: Option<Spread>,
    pub p99_ms: Option<Spread>,
    /// Percentiles over every sample of every repetition.
    pub pooled_p50_ms: Option<f64>,
    pub pooled_p99_ms: Option<f64>,
    pub pooled_max_ms: Option<f64>,
    pub pooled_n: usize,
    /// Kernel event to alert line, under `monitor run`.
    pub alert: Option<Box<Latency>>,
    /// For the alert passes: containers used per pass, and every alert printed, by rule.
    pub containers: usize,
    pub alerts_by_rule: BTreeMap<String, u64>,
}

/// `(seq, send ns)` from a trace line for `.../lat-<ns>-<seq>`.
pub fn marker_of(line: &str) -> Option<(u64, u64)> {
    if !line.contains("\"event\":\"file\"") {
        return None;
    }
    let at = line.rfind("/lat-")? + 5;
    let rest = &line[at..];
    let sent_end = rest.find('-')?;
    let sent: u64 = rest[..sent_end].parse().ok()?;
    let seq: String = rest[sent_end + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((seq.parse().ok()?, sent))
}

fn rep(ctx: &Ctx, rep: usize) -> anyhow::Result<Rep> {
    let dir = ctx.shm.join(format!("markers-{rep}"));
    fs::create_dir_all(&dir)?;
    // seq -> latency ns, first arrival only (a path can show up twice).
    let seen: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let sink = seen.clone();
    let hook = Box::new(move |line: &str, at: u64| {
        if let Some((seq, sent)) = marker_of(line) {
            sink.lock()
                .unwrap()
                .entry(seq)
                .or_insert(at.saturating_sub(sent));
        }
    });
    let agent = ctx.agent("trace", &["--kind", "file"], "tracing;", Some(hook))?;
    let n = ctx.plan.latency_samples;
    let rate = ctx.plan.latency_rate;
    let mut args = ctx.workload_args(
        "marker",
        &[
            ("--iterations", n.to_string()),
            ("--rate", format!("{rate}")),
            ("--max-secs", format!("{}", n as f64 / rate + 10.0)),
        ],
    );
    // Markers go to their own directory; the option given last wins.
    args.extend(["--dir".into(), dir.display().to_string()]);
    let v = Workload::spawn(&ctx.workload, &args)?
        .wait(Duration::from_secs_f64(n as f64 / rate + 60.0))
        .inspect_err(|_| ctx.cgroup.kill_load())?;
    let sent = v["iterations"].as_u64().unwrap_or(0);
    for _ in 0..500 {
        check_interrupt()?;
        if seen.lock().unwrap().len() as u64 >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let _ = fs::remove_dir_all(&dir);
    let seen = seen.lock().unwrap();
    let r = rep_of(rep, sent, &seen);
    eprintln!(
        "bench: latency rep {}: {}/{} markers, p50 {:.3} ms, p99 {:.3} ms",
        rep + 1,
        r.received,
        r.sent,
        r.p50_ms.unwrap_or(f64::NAN),
        r.p99_ms.unwrap_or(f64::NAN)
    );
    Ok(r)
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Latency> {
    let mut reps = Vec::new();
    for r in 0..ctx.plan.reps {
        check_interrupt()?;
        reps.push(rep(ctx, r)?);
    }
    let mut l = summarize(reps, ctx.plan.latency_rate, ctx.plan.latency_samples);
    if ctx.agent_subcommands.iter().any(|s| s == "run") {
        let mut reps = Vec::new();
        let mut by_rule = BTreeMap::new();
        for r in 0..ctx.plan.reps {
            check_interrupt()?;
            let (rep, alerts) = alert_rep(ctx, r)?;
            reps.push(rep);
            for (k, v) in alerts {
                *by_rule.entry(k).or_insert(0) += v;
            }
        }
        let mut a = summarize(reps, ctx.plan.alert_rate, ctx.plan.alert_samples);
        a.containers = alert_containers(ctx.plan.alert_samples);
        a.alerts_by_rule = by_rule;
        l.alert = Some(Box::new(a));
    }
    Ok(l)
}

/// The rate limiter lets a container raise a burst of 50 alerts, then 5 a
/// second: each container gets at most this many markers in a pass.
const MARKERS_PER_CONTAINER: u64 = 40;

fn alert_containers(samples: u64) -> usize {
    samples.div_ceil(MARKERS_PER_CONTAINER) as usize
}

/// `(seq, send ns)` from an `ssh-server` alert for `sshd lat-<ns>-<seq>`.
pub fn alert_marker_of(line: &str) -> Option<(u64, u64)> {
    if !line.contains("\"rule\":\"ssh-server\"") {
        return None;
    }
    let at = line.find("lat-")? + 4;
    let rest = &line[at..];
    let sent_end = rest.find('-')?;
    let sent: u64 = rest[..sent_end].parse().ok()?;
    let seq: String = rest[sent_end + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((seq.parse().ok()?, sent))
}

/// One pass: containers made (state files, then cgroups), `monitor run`
/// started, `sshd` execs spread over the containers, alerts read.
fn alert_rep(ctx: &Ctx, rep: usize) -> anyhow::Result<(Rep, BTreeMap<String, u64>)> {
    let n = ctx.plan.alert_samples;
    let rate = ctx.plan.alert_rate;
    // Every exec has its own path, so no alert folds into an earlier one.
    let dir = ctx.shm.join(format!("sshd-{rep}"));
    fs::create_dir_all(&dir)?;
    let original = dir.join("sshd");
    fs::copy("/bin/true", &original)?;
    for seq in 0..n {
        let d = dir.join(seq.to_string());
        fs::create_dir_all(&d)?;
        fs::hard_link(&original, d.join("sshd"))?;
    }
    let containers: Vec<std::path::PathBuf> = (0..alert_containers(n))
        .map(|i| {
            let id = super::synthetic::container_id(
                u64::from(std::process::id()) ^ 0xa1e7,
                (rep * 1000 + i + 1) as u64,
            );
            ctx.make_container(&id, &format!("sshd-{rep}-{i}"), "monitor-bench/sshd:1")
        })
        .collect::<anyhow::Result<_>>()?;
    let result = (|| {
        let seen: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
        let sink = seen.clone();
        let tally = super::overhead::AlertTally::default();
        let mut count = tally.hook();
        let hook = Box::new(move |line: &str, at: u64| {
            count(line, at);
            if let Some((seq, sent)) = alert_marker_of(line) {
                sink.lock()
                    .unwrap()
                    .entry(seq)
                    .or_insert(at.saturating_sub(sent));
            }
        });
        let agent = ctx.agent(
            "run",
            super::overhead::RUN_ARGS,
            super::overhead::RUN_READY,
            Some(hook),
        )?;
        let mut sent = 0;
        for (i, cg) in containers.iter().enumerate() {
            let first = i as u64 * MARKERS_PER_CONTAINER;
            let count = MARKERS_PER_CONTAINER.min(n - first);
            let args = vec![
                "exec-marker".to_owned(),
                "--cgroup".into(),
                cg.display().to_string(),
                "--dir".into(),
                dir.display().to_string(),
                "--first".into(),
                first.to_string(),
                "--iterations".into(),
                count.to_string(),
                "--rate".into(),
                format!("{rate}"),
                "--max-secs".into(),
                format!("{}", count as f64 / rate + 10.0),
            ];
            let v = Workload::spawn(&ctx.workload, &args)?
                .wait(Duration::from_secs_f64(count as f64 / rate + 60.0))?;
            sent += v["iterations"].as_u64().unwrap_or(0);
        }
        for _ in 0..500 {
            check_interrupt()?;
            if seen.lock().unwrap().len() as u64 >= sent {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
        let seen = seen.lock().unwrap();
        Ok::<_, anyhow::Error>((rep_of(rep, sent, &seen), tally.take()))
    })();
    let _ = ctx.remove_containers();
    let _ = fs::remove_dir_all(&dir);
    let (r, alerts) = result?;
    eprintln!(
        "bench: alert latency rep {}: {}/{} alerts, p50 {:.3} ms, p99 {:.3} ms",
        rep + 1,
        r.received,
        r.sent,
        r.p50_ms.unwrap_or(f64::NAN),
        r.p99_ms.unwrap_or(f64::NAN)
    );
    Ok((r, alerts))
}

fn rep_of(rep: usize, sent: u64, seen: &HashMap<u64, u64>) -> Rep {
    let mut by_seq: Vec<(u64, u64)> = seen.iter().map(|(&s, &l)| (s, l)).collect();
    by_seq.sort();
    let samples_us: Vec<u64> = by_seq.iter().map(|&(_, ns)| ns / 1000).collect();
    let mut ms: Vec<f64> = by_seq.iter().map(|&(_, ns)| ns as f64 / 1e6).collect();
    ms.sort_by(f64::total_cmp);
    Rep {
        rep,
        sent,
        received: ms.len() as u64,
        p50_ms: percentile(&ms, 50.0),
        p90_ms: percentile(&ms, 90.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied(),
        samples_us,
    }
}

pub fn summarize(reps: Vec<Rep>, rate: f64, samples_per_rep: u64) -> Latency {
    let mut pooled: Vec<f64> = reps
        .iter()
        .flat_map(|r| r.samples_us.iter().map(|&us| us as f64 / 1e3))
        .collect();
    pooled.sort_by(f64::total_cmp);
    let of =
        |f: fn(&Rep) -> Option<f64>| Spread::of(&reps.iter().filter_map(f).collect::<Vec<_>>());
    Latency {
        rate,
        samples_per_rep,
        p50_ms: of(|r| r.p50_ms),
        p99_ms: of(|r| r.p99_ms),
        pooled_p50_ms: percentile(&pooled, 50.0),
        pooled_p99_ms: percentile(&pooled, 99.0),
        pooled_max_ms: pooled.last().copied(),
        pooled_n: pooled.len(),
        reps,
        alert: None,
        containers: 0,
        alerts_by_rule: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_send_time_and_sequence_from_a_trace_line() {
        let line = r#"{"time":"t","event":"file","cgroup_id":1,"file":{"op":"open","path":"/dev/shm/monitor-bench-9/lat-0/lat-123456789-42","flags":["O_WRONLY"]}}"#;
        assert_eq!(marker_of(line), Some((42, 123456789)));
        assert_eq!(marker_of(r#"{"event":"exec","path":"/x/lat-1-2"}"#), None);
        assert_eq!(marker_of(r#"{"event":"file","path":"/x/other"}"#), None);
        let alert = r#"{"schema":"monitor.alert/v1","rule":"ssh-server","policy":"default/processes","summary":"denied process /dev/shm/b/sshd-0/7/sshd lat-99-7 in container x","process":{"args":["sshd","lat-99-7"]}}"#;
        assert_eq!(alert_marker_of(alert), Some((7, 99)));
        assert_eq!(alert_marker_of(&alert.replace("ssh-server", "shell")), None);
        assert_eq!(
            crate::bench::overhead::alert_rule(alert).as_deref(),
            Some("default/processes/ssh-server")
        );
    }
}
