//! Memory: resident size of `monitor trace` idle, then with 100 and 1,000
//! cgroups ("containers" to the agent) made under the bench's directory, and
//! after they are removed.
use std::time::Duration;

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
    /// Why 10 vs 1,000 rules is not measured (yet).
    pub rules: String,
}

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
    m.rules = rules(ctx);
    Ok(m)
}

/// The hook for 10 vs 1,000 rules. When `monitor run` exists: write a rule
/// file of each size under `ctx.shm`, start `ctx.agent("run", ...)` with it,
/// and read VmRSS/VmHWM as [`rep`] does.
fn rules(ctx: &Ctx) -> String {
    if ctx.agent_subcommands.iter().any(|s| s == "run") {
        "`monitor run` exists now, but the bench does not measure 10 vs 1,000 rules yet (see `bench::memory::rules`)".into()
    } else {
        RULES_NOTE.into()
    }
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
        rules: RULES_NOTE.into(),
    }
}

/// The hook for 10 vs 1,000 rules: when `monitor run` exists, start it here
/// with a generated rule file of each size and read VmRSS as above.
pub const RULES_NOTE: &str =
    "10 vs 1,000 rules needs `monitor run` and its rule files, which this branch does not have yet";
