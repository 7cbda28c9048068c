//! Throughput without loss: open-write-close events at rising paced rates
//! into `monitor trace --kind file`, then into `monitor run` with the shipped
//! rules, reading the agent's own count of records and lost records from its
//! final log line after SIGTERM.
use std::time::Duration;

use serde::Serialize;

use super::{
    Ctx,
    overhead::{RUN_ARGS, RUN_READY},
    process::{Workload, check_interrupt, cpu_secs, field_u64, strip_ansi},
    stats::Spread,
};

/// One rate step in one repetition of the ladder.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// `trace` or `run`.
    pub agent: &'static str,
    pub rep: usize,
    pub target_rate: u64,
    pub procs: usize,
    pub secs: f64,
    /// Events the generators made.
    pub events: u64,
    pub achieved_rate: f64,
    /// Lines the agent printed: file events for trace, alerts for run.
    pub lines: u64,
    /// Records the agent read from its ring buffer (its final log line).
    pub records: Option<u64>,
    /// Records the kernel could not reserve (its final log line).
    pub lost: Option<u64>,
    /// CPU seconds the agent used during the step, and as cores.
    pub agent_cpu_s: Option<f64>,
    pub agent_cores: Option<f64>,
    pub alive_at_end: bool,
    pub answered_sigterm: bool,
    pub printed_final_line: bool,
}

impl Step {
    /// Every event arrived and the agent counted no loss: trace printed a
    /// line for each, run read a record for each (it prints only alerts).
    pub fn lossless(&self) -> bool {
        self.lost == Some(0) && self.arrived() >= self.events
    }

    /// Events that made it to the agent's output (trace) or input (run).
    pub fn arrived(&self) -> u64 {
        if self.agent == "run" {
            self.records.unwrap_or(0)
        } else {
            self.lines
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RateSummary {
    pub target_rate: u64,
    pub achieved_rate: Option<Spread>,
    pub lost: Option<Spread>,
    pub missing_lines: Option<Spread>,
    pub agent_cores: Option<Spread>,
    pub lossless_reps: usize,
    pub reps: usize,
    pub agent_always_answered: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// The agent's ring buffer (its default size) and what one file record takes in it.
    pub ring_buffer_bytes: Option<u64>,
    pub file_record_bytes: u64,
    /// File records the ring buffer holds when the reader stops reading.
    pub ring_capacity_records: Option<u64>,
    pub steps: Vec<Step>,
    pub rates: Vec<RateSummary>,
    /// The highest target rate lossless in every repetition (all lower ones too).
    pub highest_lossless_target: Option<u64>,
    /// The median achieved rate at that step.
    pub highest_lossless_achieved: Option<f64>,
    /// The same ladder under `monitor run` (the shipped rules).
    pub run: Option<Box<Throughput>>,
}

fn procs_for(rate: u64) -> usize {
    // One generator does about 250k a second here; two share a 2-core machine with the agent.
    if rate > 100_000 { 2 } else { 1 }
}

/// Runs one step: agent up, generators at `rate` for `secs`, agent stopped.
pub fn step(
    ctx: &Ctx,
    agent_kind: &'static str,
    rep: usize,
    rate: u64,
    secs: f64,
) -> anyhow::Result<Step> {
    let mut agent = if agent_kind == "run" {
        ctx.agent("run", RUN_ARGS, RUN_READY, None)?
    } else {
        ctx.agent("trace", &["--kind", "file"], "tracing;", None)?
    };
    let cpu0 = cpu_secs(agent.pid()).unwrap_or(0.0);
    let procs = procs_for(rate);
    let per = rate as f64 / procs as f64;
    let mut gens = Vec::new();
    for _ in 0..procs {
        let args = ctx.workload_args(
            "rate",
            &[
                ("--rate", format!("{per}")),
                ("--secs", format!("{secs}")),
                ("--max-secs", format!("{}", secs + 5.0)),
            ],
        );
        gens.push(Workload::spawn(&ctx.workload, &args)?);
    }
    let mut events = 0u64;
    let mut elapsed = 0f64;
    for g in gens {
        let v = g
            .wait(Duration::from_secs_f64(secs + 60.0))
            .inspect_err(|_| ctx.cgroup.kill_load())?;
        events += v["events"].as_u64().unwrap_or(0);
        elapsed = elapsed.max(v["elapsed_ns"].as_f64().unwrap_or(0.0) / 1e9);
    }
    // The agent may still be catching up: wait for every line, or for quiet.
    // (run prints no line for these events: its count comes at the end.)
    let lines = if agent_kind == "run" {
        super::process::sleep(Duration::from_millis(500))?;
        agent.lines()
    } else {
        agent.wait_for_lines(events, Duration::from_secs(2), Duration::from_secs(20))?
    };
    let alive_at_end = agent.alive();
    let agent_cpu_s = cpu_secs(agent.pid()).map(|c| c - cpu0);
    let stopped = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let err = strip_ansi(&stopped.stderr);
    let last = err.lines().rev().find(|l| l.contains("lost_total="));
    let s = Step {
        agent: agent_kind,
        rep,
        target_rate: rate,
        procs,
        secs,
        events,
        achieved_rate: events as f64 / elapsed.max(1e-9),
        lines: stopped.lines.max(lines),
        records: last.and_then(|l| field_u64(l, "records")),
        lost: last.and_then(|l| field_u64(l, "lost_total")),
        agent_cpu_s,
        agent_cores: agent_cpu_s.map(|c| c / elapsed.max(1e-9)),
        alive_at_end,
        answered_sigterm: stopped.answered,
        printed_final_line: last.is_some(),
    };
    eprintln!(
        "bench: throughput ({agent_kind}) {rate}/s: made {} ({:.0}/s), {} lines, {:?} records, lost {:?}, agent {:.2} cores",
        s.events,
        s.achieved_rate,
        s.lines,
        s.records,
        s.lost,
        s.agent_cores.unwrap_or(f64::NAN)
    );
    Ok(s)
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Throughput> {
    let with_run = ctx.agent_subcommands.iter().any(|s| s == "run");
    let agents: &[&'static str] = if with_run {
        &["trace", "run"]
    } else {
        &["trace"]
    };
    let mut steps = Vec::new();
    for rep in 0..ctx.plan.reps {
        for &agent in agents {
            for &rate in &ctx.plan.rates {
                check_interrupt()?;
                steps.push(step(ctx, agent, rep, rate, ctx.plan.rate_secs)?);
            }
        }
    }
    let (run, trace): (Vec<Step>, Vec<Step>) = steps.into_iter().partition(|s| s.agent == "run");
    let mut t = summarize(&trace, &ctx.plan.rates);
    t.ring_buffer_bytes = ctx.ring_buffer_bytes;
    t.ring_capacity_records = ctx.ring_buffer_bytes.map(|b| b / t.file_record_bytes);
    if with_run {
        let mut r = summarize(&run, &ctx.plan.rates);
        r.ring_buffer_bytes = t.ring_buffer_bytes;
        r.ring_capacity_records = t.ring_capacity_records;
        t.run = Some(Box::new(r));
    }
    Ok(t)
}

/// A file record as the ring buffer stores it: 8-byte header, 8-byte aligned.
pub fn file_record_bytes() -> u64 {
    (size_of::<monitor_common::FileEvent>() as u64).next_multiple_of(8) + 8
}

pub fn summarize(steps: &[Step], rates: &[u64]) -> Throughput {
    let spread = |f: &dyn Fn(&Step) -> Option<f64>, rate: u64| {
        let v: Vec<f64> = steps
            .iter()
            .filter(|s| s.target_rate == rate)
            .filter_map(f)
            .collect();
        Spread::of(&v)
    };
    let summaries: Vec<RateSummary> = rates
        .iter()
        .map(|&rate| {
            let these: Vec<&Step> = steps.iter().filter(|s| s.target_rate == rate).collect();
            RateSummary {
                target_rate: rate,
                achieved_rate: spread(&|s| Some(s.achieved_rate), rate),
                lost: spread(&|s| s.lost.map(|l| l as f64), rate),
                missing_lines: spread(&|s| Some(s.events.saturating_sub(s.arrived()) as f64), rate),
                agent_cores: spread(&|s| s.agent_cores, rate),
                lossless_reps: these.iter().filter(|s| s.lossless()).count(),
                reps: these.len(),
                agent_always_answered: these
                    .iter()
                    .all(|s| s.answered_sigterm && s.printed_final_line),
            }
        })
        .collect();
    // The ladder holds up to the first rate that lost anything.
    let mut highest = None;
    for r in &summaries {
        if r.reps > 0 && r.lossless_reps == r.reps {
            highest = Some(r);
        } else {
            break;
        }
    }
    // Paced generators can fall short of a target: the best rate actually
    // achieved on the lossless part of the ladder.
    let achieved = highest.and_then(|h| {
        summaries
            .iter()
            .take_while(|r| r.target_rate <= h.target_rate)
            .filter_map(|r| r.achieved_rate.map(|a| a.median))
            .reduce(f64::max)
    });
    Throughput {
        ring_buffer_bytes: None,
        file_record_bytes: file_record_bytes(),
        ring_capacity_records: None,
        steps: steps.to_vec(),
        highest_lossless_target: highest.map(|r| r.target_rate),
        highest_lossless_achieved: achieved,
        rates: summaries,
        run: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: u64, events: u64, lines: u64, lost: u64) -> Step {
        Step {
            agent: "trace",
            rep: 0,
            target_rate: rate,
            procs: 1,
            secs: 1.0,
            events,
            achieved_rate: events as f64,
            lines,
            records: Some(lines + lost),
            lost: Some(lost),
            agent_cpu_s: Some(0.5),
            agent_cores: Some(0.5),
            alive_at_end: true,
            answered_sigterm: true,
            printed_final_line: true,
        }
    }

    #[test]
    fn highest_lossless_rate_stops_at_the_first_loss() {
        let steps = vec![
            step(10, 10, 10, 0),
            step(20, 20, 20, 0),
            step(40, 40, 30, 10),
            step(80, 80, 80, 0),
        ];
        let t = summarize(&steps, &[10, 20, 40, 80]);
        assert_eq!(t.highest_lossless_target, Some(20));
        assert_eq!(t.highest_lossless_achieved, Some(20.0));
        assert_eq!(t.rates[2].lossless_reps, 0);
        assert_eq!(t.rates[2].lost.unwrap().median, 10.0);
        // A generator short of its target: the best achieved rate counts.
        let short = summarize(&[step(10, 12, 12, 0), step(20, 11, 11, 0)], &[10, 20]);
        assert_eq!(short.highest_lossless_achieved, Some(12.0));
    }

    #[test]
    fn missing_lines_count_as_loss() {
        let t = summarize(&[step(10, 10, 9, 0)], &[10]);
        assert_eq!(t.highest_lossless_target, None);
        assert_eq!(t.rates[0].missing_lines.unwrap().median, 1.0);
    }
}
