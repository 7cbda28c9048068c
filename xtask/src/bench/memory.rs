//! Memory: resident size of `monitor trace` idle, then with 100 and 1,000
//! cgroups made under the bench's directory, and after they are removed.
//!
//! Then `monitor run` with 10 and with 1,000 generated rules, idle and with
//! 100 and 1,000 Docker containers: a `docker-<id>.scope` cgroup each, with
//! Docker's state files in the real format under the agent's `--host-root`.
//! The agent's own `containers_tracked` metric says when it has them all.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    Ctx,
    process::{check_interrupt, sleep, status_kib},
    stats::Spread,
};

#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    pub stage: &'static str,
    /// Cgroups made under the watched directory at this point.
    pub cgroups: usize,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rep {
    pub rep: usize,
    pub stages: Vec<Stage>,
    /// cgroup lines the agent printed (one per mkdir and rmdir it saw).
    pub cgroup_lines: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    pub stage: &'static str,
    pub cgroups: usize,
    pub rss_mib: Option<Spread>,
    pub hwm_mib: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub reps: Vec<Rep>,
    pub stages: Vec<StageSummary>,
    /// `monitor run`, by rule count and containers.
    pub run: Vec<RunStage>,
    pub run_summary: Vec<RunSummary>,
    /// Why `monitor run` was not measured, when it was not.
    pub run_note: Option<String>,
}

/// `monitor run` with `rules` rules and `containers` containers, one pass.
#[derive(Clone, Debug, Serialize)]
pub struct RunStage {
    pub rep: usize,
    pub rules: usize,
    pub containers: usize,
    /// What the agent's `containers_tracked` said when read (its own bench
    /// container included).
    pub tracked: Option<u64>,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub rules: usize,
    pub containers: usize,
    pub rss_mib: Option<Spread>,
    pub hwm_mib: Option<Spread>,
}

/// Rule counts and container counts of the `monitor run` matrix.
pub const RUN_RULES: [usize; 2] = [10, 1000];
pub const RUN_CONTAINERS: [usize; 3] = [0, 100, 1000];

fn read(pid: u32, stage: &'static str, cgroups: usize) -> anyhow::Result<Stage> {
    let rss_kib = status_kib(pid, "VmRSS")
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}: did the agent exit?"))?;
    Ok(Stage {
        stage,
        cgroups,
        rss_kib,
        hwm_kib: status_kib(pid, "VmHWM").unwrap_or(0),
    })
}

fn rep(ctx: &Ctx, rep: usize) -> anyhow::Result<Rep> {
    let agent = ctx.agent("trace", &["--kind", "all"], "tracing;", None)?;
    let pid = agent.pid();
    let settle = Duration::from_millis(500);
    let wait =
        |want: u64| agent.wait_for_lines(want, Duration::from_secs(3), Duration::from_secs(30));
    let result = (|| {
        sleep(Duration::from_secs(1))?;
        let mut stages = vec![read(pid, "idle", 0)?];
        ctx.cgroup.make_containers(0, 100)?;
        wait(100)?;
        sleep(settle)?;
        stages.push(read(pid, "100 cgroups", 100)?);
        check_interrupt()?;
        ctx.cgroup.make_containers(100, 1000)?;
        wait(1000)?;
        sleep(settle)?;
        stages.push(read(pid, "1,000 cgroups", 1000)?);
        let removed = ctx.cgroup.remove_containers()?;
        wait(1000 + removed as u64)?;
        sleep(settle)?;
        stages.push(read(pid, "after removing them", 0)?);
        Ok::<_, anyhow::Error>(stages)
    })();
    // Removed on error too; the bench cgroup's Drop would also catch them.
    let _ = ctx.cgroup.remove_containers();
    let lines = agent.lines();
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let stages = result?;
    eprintln!(
        "bench: memory rep {}: {}",
        rep + 1,
        stages
            .iter()
            .map(|s| format!("{} {} KiB", s.stage, s.rss_kib))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Rep {
        rep,
        stages,
        cgroup_lines: lines,
    })
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Memory> {
    let mut reps = Vec::new();
    for r in 0..ctx.plan.reps {
        check_interrupt()?;
        reps.push(rep(ctx, r)?);
    }
    let mut m = summarize(reps);
    if ctx.agent_subcommands.iter().any(|s| s == "run") {
        let mut stages = Vec::new();
        for r in 0..ctx.plan.reps {
            for rules in RUN_RULES {
                check_interrupt()?;
                stages.extend(run_rep(ctx, r, rules)?);
            }
        }
        m.run_summary = summarize_run(&stages);
        m.run = stages;
    } else {
        m.run_note = Some("this `monitor` has no `run` subcommand (per `monitor --help`)".into());
    }
    Ok(m)
}

/// A free port on 127.0.0.1 for the agent's metrics endpoint.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `monitor_containers_tracked` from the agent's `/metrics`.
fn containers_tracked(port: u16) -> Option<u64> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    metric(&text, "monitor_containers_tracked")
}

/// The value of an unlabelled metric in Prometheus' text format.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// One agent with `rules` generated rules: idle, then 100, then 1,000 containers.
fn run_rep(ctx: &Ctx, rep: usize, rules: usize) -> anyhow::Result<Vec<RunStage>> {
    let dir = ctx.shm.join(format!("rules-{rules}"));
    if !dir.exists() {
        super::synthetic::write_rules(&dir, rules)?;
    }
    let port = free_port()?;
    let dir_arg = dir.display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--rules",
        dir_arg.as_str(),
        "--spool-dir",
        "{shm}/spool",
        "--listen",
        listen.as_str(),
    ];
    let agent = ctx.agent("run", &args, super::overhead::RUN_READY, None)?;
    let pid = agent.pid();
    let result = (|| {
        // The metric is set once a second; the bench's own workload
        // container is tracked from the start.
        let base = wait_tracked(port, 1, Duration::from_secs(10)).unwrap_or(0);
        let mut stages = Vec::new();
        let mut made = 0;
        for want in RUN_CONTAINERS {
            for i in made..want {
                let id = super::synthetic::container_id(
                    u64::from(std::process::id()) ^ 0x3e3,
                    (rules * 10_000 + i + 1) as u64,
                );
                ctx.make_container(&id, &format!("mem-{i}"), &super::synthetic::image_of(i))?;
            }
            made = want;
            let tracked = wait_tracked(port, base + want as u64, Duration::from_secs(60));
            sleep(Duration::from_millis(500))?;
            let s = read(pid, "run", want)?;
            stages.push(RunStage {
                rep,
                rules,
                containers: want,
                tracked,
                rss_kib: s.rss_kib,
                hwm_kib: s.hwm_kib,
            });
        }
        Ok::<_, anyhow::Error>(stages)
    })();
    let _ = ctx.remove_containers();
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let stages = result?;
    eprintln!(
        "bench: memory of monitor run, {rules} rules: {}",
        stages
            .iter()
            .map(|s| format!("{} containers {} KiB", s.containers, s.rss_kib))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(stages)
}

/// Polls the agent's metric until it reaches `want`; returns the last value.
fn wait_tracked(port: u16, want: u64, max: Duration) -> Option<u64> {
    let end = Instant::now() + max;
    let mut last = None;
    while Instant::now() < end {
        if check_interrupt().is_err() {
            break;
        }
        last = containers_tracked(port).or(last);
        if last.is_some_and(|v| v >= want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

pub fn summarize_run(stages: &[RunStage]) -> Vec<RunSummary> {
    let mut out = Vec::new();
    for rules in RUN_RULES {
        for containers in RUN_CONTAINERS {
            let these: Vec<&RunStage> = stages
                .iter()
                .filter(|s| s.rules == rules && s.containers == containers)
                .collect();
            if these.is_empty() {
                continue;
            }
            let of = |f: fn(&RunStage) -> u64| {
                Spread::of(
                    &these
                        .iter()
                        .map(|s| f(s) as f64 / 1024.0)
                        .collect::<Vec<_>>(),
                )
            };
            out.push(RunSummary {
                rules,
                containers,
                rss_mib: of(|s| s.rss_kib),
                hwm_mib: of(|s| s.hwm_kib),
            });
        }
    }
    out
}

pub fn summarize(reps: Vec<Rep>) -> Memory {
    let names: Vec<(&'static str, usize)> = reps
        .first()
        .map(|r| r.stages.iter().map(|s| (s.stage, s.cgroups)).collect())
        .unwrap_or_default();
    let stages = names
        .into_iter()
        .map(|(stage, cgroups)| {
            let of = |f: fn(&Stage) -> u64| {
                let v: Vec<f64> = reps
                    .iter()
                    .flat_map(|r| r.stages.iter().filter(|s| s.stage == stage))
                    .map(|s| f(s) as f64 / 1024.0)
                    .collect();
                Spread::of(&v)
            };
            StageSummary {
                stage,
                cgroups,
                rss_mib: of(|s| s.rss_kib),
                hwm_mib: of(|s| s.hwm_kib),
            }
        })
        .collect();
    Memory {
        reps,
        stages,
        run: Vec::new(),
        run_summary: Vec::new(),
        run_note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_gauge_from_prometheus_text() {
        let text = "# HELP monitor_containers_tracked Containers\n# TYPE monitor_containers_tracked gauge\nmonitor_containers_tracked 1001\nmonitor_containers_tracked_x 3\n";
        assert_eq!(metric(text, "monitor_containers_tracked"), Some(1001));
        assert_eq!(metric(text, "monitor_rules_loaded"), None);
    }
}
