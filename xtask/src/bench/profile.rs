//! Where the time goes: `perf record` (cpu-clock) of the agent at 200,000
//! file events a second, and of the open-write-close loop under `monitor
//! trace`. Separate passes: the sampling never touches a timed figure.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    Ctx,
    process::{Workload, check_interrupt, cpu_secs},
};

#[derive(Clone, Debug, Serialize)]
pub struct Symbol {
    pub percent: f64,
    pub dso: String,
    pub symbol: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub what: String,
    pub top: Vec<Symbol>,
    /// Share of samples in kernel code (`[kernel.kallsyms]`, BPF programs).
    pub kernel_percent: f64,
    /// Share of samples in BPF programs and BPF helpers.
    pub bpf_percent: f64,
    /// Share in JSON rendering (serde_json), for the agent.
    pub json_percent: f64,
    /// Share in writing to stdout (write syscalls, pipe), for the agent.
    pub write_percent: f64,
    /// Events per second during the profile, and the agent's CPU per event.
    pub events_per_sec: Option<f64>,
    pub agent_us_per_event: Option<f64>,
}

pub fn perf_works() -> bool {
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Samples `pid` for `secs` into `out`.
fn record(pid: u32, secs: f64, out: &Path) -> anyhow::Result<()> {
    let status = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "997", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .args(["--", "sleep", &format!("{secs}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running perf record")?;
    if !status.success() {
        bail!("perf record -p {pid} failed ({status})");
    }
    Ok(())
}

/// `perf report` rows: percent, dso, symbol.
fn report(data: &Path) -> anyhow::Result<Vec<Symbol>> {
    let out = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "--sort", "dso,symbol", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    Ok(parse_report(&String::from_utf8_lossy(&out.stdout)))
}

pub fn parse_report(text: &str) -> Vec<Symbol> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (pct, rest) = l.split_once('%')?;
            let percent: f64 = pct.trim().parse().ok()?;
            let rest = rest.trim();
            // "dso  [.] symbol" or "dso  [k] symbol"
            let (dso, sym) = rest
                .split_once(" [.] ")
                .or_else(|| rest.split_once(" [k] "))?;
            Some(Symbol {
                percent,
                dso: dso.trim().to_owned(),
                symbol: sym.trim().to_owned(),
            })
        })
        .collect()
}

fn summarize(what: String, all: Vec<Symbol>) -> Profile {
    let share = |f: &dyn Fn(&Symbol) -> bool| -> f64 {
        all.iter().filter(|s| f(s)).map(|s| s.percent).sum()
    };
    let is_bpf = |s: &Symbol| {
        s.symbol.starts_with("bpf_") || s.symbol.contains("bpf_prog_") || s.dso.contains("bpf")
    };
    Profile {
        what,
        kernel_percent: share(&|s| s.dso.contains("kernel") || is_bpf(s)),
        bpf_percent: share(&is_bpf),
        json_percent: share(&|s| s.symbol.contains("serde_json") || s.symbol.contains("serde::")),
        write_percent: share(&|s| {
            s.symbol.contains("pipe_write")
                || s.symbol.contains("ksys_write")
                || s.symbol.contains("vfs_write")
        }),
        events_per_sec: None,
        agent_us_per_event: None,
        top: all.into_iter().take(15).collect(),
    }
}

/// The agent at 200,000 open-write-close events a second.
fn agent_profile(ctx: &Ctx) -> anyhow::Result<Profile> {
    let rate = 200_000f64;
    let secs = ctx.plan.rate_secs.max(3.0);
    let agent = ctx.agent("trace", &["--kind", "file"], "tracing;", None)?;
    let cpu0 = cpu_secs(agent.pid()).unwrap_or(0.0);
    let mut gens = Vec::new();
    for _ in 0..2 {
        let args = ctx.workload_args(
            "rate",
            &[
                ("--rate", format!("{}", rate / 2.0)),
                ("--secs", format!("{secs}")),
                ("--max-secs", format!("{}", secs + 5.0)),
            ],
        );
        gens.push(Workload::spawn(&ctx.workload, &args)?);
    }
    let data = ctx.shm.join("agent.perf");
    record(agent.pid(), secs - 0.5, &data)?;
    let mut events = 0u64;
    for g in gens {
        events += g.wait(Duration::from_secs_f64(secs + 60.0))?["events"]
            .as_u64()
            .unwrap_or(0);
    }
    agent.wait_for_lines(events, Duration::from_secs(2), Duration::from_secs(20))?;
    let cpu = cpu_secs(agent.pid()).map(|c| c - cpu0);
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let mut p = summarize(
        "`monitor trace --kind file` at 200,000 open-write-close events/s (2 generators)".into(),
        report(&data)?,
    );
    p.events_per_sec = Some(events as f64 / secs);
    p.agent_us_per_event = cpu.map(|c| c * 1e6 / events.max(1) as f64);
    let _ = std::fs::remove_file(&data);
    Ok(p)
}

/// The open-write-close loop itself under `monitor trace`: what the hooks
/// cost the workload.
fn workload_profile(ctx: &Ctx) -> anyhow::Result<Profile> {
    let agent = ctx.agent("trace", &["--kind", "all"], "tracing;", None)?;
    let args = ctx.workload_args(
        "open",
        &[
            ("--iterations", "100000000".into()),
            ("--max-secs", "4".into()),
        ],
    );
    let w = Workload::spawn(&ctx.workload, &args)?;
    let data = ctx.shm.join("workload.perf");
    // Skip the start-up, then sample the loop.
    std::thread::sleep(Duration::from_millis(300));
    record(w.pid(), 3.0, &data)?;
    w.wait(Duration::from_secs(60))?;
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let p = summarize(
        "the open-write-close loop under `monitor trace`".into(),
        report(&data)?,
    );
    let _ = std::fs::remove_file(&data);
    Ok(p)
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Vec<Profile>> {
    check_interrupt()?;
    let a = agent_profile(ctx)?;
    check_interrupt()?;
    let w = workload_profile(ctx)?;
    Ok(vec![a, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_report_rows() {
        let text = "# Overhead  Shared Object      Symbol\n\
                    # ........  .................  ......\n\
                    #\n\
                    \x20   12.50%  monitor            [.] serde_json::ser::format_escaped_str\n\
                    \x20    7.25%  [kernel.kallsyms]  [k] pipe_write\n\
                    \x20    3.00%  bpf_prog_1a2b_sys_enter_openat  [k] bpf_prog_1a2b_sys_enter_openat\n\
                    \n";
        let rows = parse_report(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].percent, 12.5);
        assert_eq!(rows[0].dso, "monitor");
        assert_eq!(rows[1].symbol, "pipe_write");
        let p = summarize("x".into(), rows);
        assert_eq!(p.json_percent, 12.5);
        assert_eq!(p.write_percent, 7.25);
        assert_eq!(p.bpf_percent, 3.0);
        assert_eq!(p.kernel_percent, 10.25);
    }
}
