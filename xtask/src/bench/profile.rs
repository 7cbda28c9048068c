//! Where the time goes: `perf record -g` (cpu-clock) of the agent at 200,000
//! file events a second, and of the open-write-close and connect loops under
//! `monitor trace`. Separate passes: the sampling never touches a timed figure.
//!
//! Besides the flat profile, the inclusive share of a few kernel functions
//! tells what the hooks cost the workload: `trace_call_bpf` is every
//! tracepoint program, `bpf_ringbuf_output`/`_submit` sending a record, and
//! `irq_work_queue` the wake-up of the reader that a send may raise.
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

/// Kernel functions whose inclusive share (with their callees) is reported.
const INCLUSIVE: [&str; 13] = [
    // The syscall tracepoint path every syscall of every task takes while
    // any syscall tracepoint has a program.
    "syscall_trace_enter",
    "syscall_exit_work",
    "perf_syscall_enter",
    "perf_syscall_exit",
    "trace_call_bpf",
    "__cgroup_bpf_run_filter_sock_addr",
    "bpf_ringbuf_output",
    "bpf_ringbuf_submit",
    "bpf_ringbuf_reserve",
    "irq_work_queue",
    "bpf_probe_read_user_str",
    "pipe_write",
    "anon_pipe_write",
];

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// `agent`, or the workload kind profiled.
    pub subject: String,
    pub what: String,
    pub top: Vec<Symbol>,
    /// Share of samples in these functions and what they call.
    pub inclusive: Vec<Symbol>,
    /// Share of samples in kernel code (`[kernel.kallsyms]`, BPF programs).
    pub kernel_percent: f64,
    /// Share of samples in BPF programs and BPF helpers.
    pub bpf_percent: f64,
    /// Share in JSON rendering (serde_json), for the agent.
    pub json_percent: f64,
    /// Share in writing to stdout (write syscalls, pipe), for the agent.
    pub write_percent: f64,
    /// Share where a task is switched in (`finish_task_switch`): sleeping and waking.
    pub switch_percent: f64,
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
        .args(["record", "-g", "-e", "cpu-clock", "-F", "997", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .args(["--", "sleep", &format!("{secs}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running perf record")?;
    // perf ends early, and not always with success, when the process it
    // samples exits first; what it wrote is still a profile.
    if !status.success() && std::fs::metadata(out).map_or(true, |m| m.len() == 0) {
        bail!("perf record -p {pid} failed ({status}) and wrote nothing");
    }
    Ok(())
}

/// `perf report` rows: percent, dso, symbol. `children`: inclusive shares.
pub(super) fn report(data: &Path, children: bool) -> anyhow::Result<Vec<Symbol>> {
    let out = Command::new("perf")
        .args(["report", "--stdio", "-g", "none", "--sort", "dso,symbol"])
        .arg(if children {
            "--children"
        } else {
            "--no-children"
        })
        .arg("-i")
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    Ok(parse_report(&String::from_utf8_lossy(&out.stdout)))
}

/// Flat and inclusive profile of one recording.
fn analyse(subject: &str, what: String, data: &Path) -> anyhow::Result<Profile> {
    let mut p = summarize(subject, what, report(data, false)?);
    let children = report(data, true)?;
    p.inclusive = INCLUSIVE
        .iter()
        .filter_map(|name| children.iter().find(|s| s.symbol == *name).cloned())
        .chain(
            children
                .iter()
                .filter(|s| s.symbol.starts_with("bpf_prog_") && s.percent >= 0.5)
                .cloned(),
        )
        .collect();
    Ok(p)
}

impl Profile {
    /// Inclusive share of a function, 0 when it was not sampled.
    pub fn inclusive_of(&self, symbol: &str) -> f64 {
        self.inclusive
            .iter()
            .filter(|s| s.symbol == symbol)
            .map(|s| s.percent)
            .sum::<f64>()
            + 0.0
    }
}

/// Rows of `perf report --stdio`; with `--children` the first percent
/// (inclusive) is kept and the second (self) skipped.
pub fn parse_report(text: &str) -> Vec<Symbol> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (pct, rest) = l.split_once('%')?;
            let percent: f64 = pct.trim().parse().ok()?;
            let mut rest = rest.trim();
            if let Some((self_pct, after)) = rest.split_once('%')
                && self_pct.trim().parse::<f64>().is_ok()
            {
                rest = after.trim();
            }
            // "dso  [.] symbol" or "dso  [k] symbol"
            let (dso, sym) = rest
                .split_once(" [.] ")
                .or_else(|| rest.split_once(" [k] "))?;
            // Drop the IPC columns perf adds when it has nothing for them ("-  -").
            let mut words: Vec<&str> = sym.split_whitespace().collect();
            while words.last() == Some(&"-") {
                words.pop();
            }
            Some(Symbol {
                percent,
                dso: dso.trim().to_owned(),
                symbol: words.join(" "),
            })
        })
        .collect()
}

fn summarize(subject: &str, what: String, all: Vec<Symbol>) -> Profile {
    // `+ 0.0`: an empty float sum is -0.0.
    let share = |f: &dyn Fn(&Symbol) -> bool| -> f64 {
        all.iter().filter(|s| f(s)).map(|s| s.percent).sum::<f64>() + 0.0
    };
    let is_bpf = |s: &Symbol| {
        s.symbol.starts_with("bpf_") || s.symbol.contains("bpf_prog_") || s.dso.contains("bpf")
    };
    Profile {
        subject: subject.to_owned(),
        what,
        kernel_percent: share(&|s| s.dso.contains("kernel") || is_bpf(s)),
        bpf_percent: share(&is_bpf),
        json_percent: share(&|s| s.symbol.contains("serde_json") || s.symbol.contains("serde::")),
        write_percent: share(&|s| {
            s.symbol.contains("pipe_write")
                || s.symbol.contains("ksys_write")
                || s.symbol.contains("vfs_write")
        }),
        switch_percent: share(&|s| s.symbol.starts_with("finish_task_switch")),
        events_per_sec: None,
        agent_us_per_event: None,
        inclusive: Vec::new(),
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
    let mut p = analyse(
        "agent",
        "`monitor trace --kind file` at 200,000 open-write-close events/s (2 generators)".into(),
        &data,
    )?;
    p.events_per_sec = Some(events as f64 / secs);
    p.agent_us_per_event = cpu.map(|c| c * 1e6 / events.max(1) as f64);
    let _ = std::fs::remove_file(&data);
    Ok(p)
}

/// A loop itself under `monitor trace`: what the hooks cost the workload.
fn workload_profile(ctx: &Ctx, kind: &str, label: &str) -> anyhow::Result<Profile> {
    let agent = ctx.agent("trace", &["--kind", "all"], "tracing;", None)?;
    let args = ctx.workload_args(
        kind,
        &[
            ("--iterations", "1000000000".into()),
            ("--max-secs", "8".into()),
        ],
    );
    let w = Workload::spawn(&ctx.workload, &args)?;
    let data = ctx.shm.join(format!("{kind}.perf"));
    // Skip the start-up, then sample the loop.
    std::thread::sleep(Duration::from_millis(300));
    record(w.pid(), 3.0, &data)?;
    // The loop runs longer than the recording; stop it now.
    drop(w);
    ctx.cgroup.kill_load();
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let p = analyse(
        kind,
        format!("the {label} loop under `monitor trace`"),
        &data,
    )?;
    let _ = std::fs::remove_file(&data);
    Ok(p)
}

/// Every profile it could take, and a note for each it could not.
pub fn measure(ctx: &Ctx) -> anyhow::Result<(Vec<Profile>, Vec<String>)> {
    let mut profiles = Vec::new();
    let mut notes = Vec::new();
    let passes: [(&str, &dyn Fn() -> anyhow::Result<Profile>); 4] = [
        ("the agent", &|| agent_profile(ctx)),
        ("the open loop", &|| {
            workload_profile(ctx, "open", "open-write-close")
        }),
        ("the connect loop", &|| {
            workload_profile(ctx, "connect", "TCP connect")
        }),
        ("the control loop", &|| {
            workload_profile(ctx, "getppid", "getppid (control)")
        }),
    ];
    for (what, pass) in passes {
        check_interrupt()?;
        match pass() {
            Ok(p) => profiles.push(p),
            Err(e) => {
                check_interrupt()?;
                eprintln!("bench: no profile of {what}: {e:#}");
                notes.push(format!("no profile of {what}: {e:#}"));
            }
        }
    }
    Ok((profiles, notes))
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
                    \x20    3.00%  bpf_prog_1a2b_sys_enter_openat  [k] bpf_prog_1a2b_sys_enter_openat   -      -   \n\
                    \n";
        let rows = parse_report(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].percent, 12.5);
        assert_eq!(rows[0].dso, "monitor");
        assert_eq!(rows[1].symbol, "pipe_write");
        assert_eq!(rows[2].symbol, "bpf_prog_1a2b_sys_enter_openat");
        let p = summarize("agent", "x".into(), rows);
        let children = parse_report(
            "    41.49%     1.24%  [kernel.kallsyms]  [k] trace_call_bpf\n\
             \x20   29.74%     0.33%  [kernel.kallsyms]  [k] irq_work_queue\n",
        );
        assert_eq!(children[1].symbol, "irq_work_queue");
        assert_eq!(children[1].percent, 29.74);
        assert_eq!(children[0].dso, "[kernel.kallsyms]");
        assert_eq!(p.json_percent, 12.5);
        assert_eq!(p.write_percent, 7.25);
        assert_eq!(p.bpf_percent, 3.0);
        assert_eq!(p.kernel_percent, 10.25);
    }
}
