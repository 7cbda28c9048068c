//! Overhead: syscall micro-loops in the bench's cgroup under each
//! configuration, interleaved round-robin per run, as ratios to no monitor
//! in the same run.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

use super::{
    Ctx,
    peers::{self, AuditSession},
    process::{Drained, Workload, check_interrupt, cpu_secs, field_u64, sleep, strip_ansi},
    stats::{Spread, rotated},
};

/// One micro-loop and the ratio it should stay under.
#[derive(Clone, Copy, Debug)]
pub struct LoopSpec {
    /// The workload kind.
    pub kind: &'static str,
    pub label: &'static str,
    pub target: f64,
    /// Iterations of the calibration run.
    pub calibrate: u64,
}

pub const LOOPS: [LoopSpec; 4] = [
    LoopSpec {
        kind: "exec",
        label: "fork+exec /bin/true",
        target: 1.10,
        calibrate: 100,
    },
    LoopSpec {
        kind: "open",
        label: "open-write-close, /dev/shm",
        target: 1.05,
        calibrate: 20_000,
    },
    LoopSpec {
        kind: "connect",
        label: "TCP connect, 127.0.0.1",
        target: 1.05,
        calibrate: 5_000,
    },
    LoopSpec {
        kind: "getppid",
        label: "getppid (control)",
        target: 1.02,
        calibrate: 200_000,
    },
];

/// How a configuration observes the workload.
#[derive(Clone, Copy, Debug)]
pub enum Setup {
    Nothing,
    /// `monitor <subcommand> --cgroup <bench dir> <extra>`, stdout drained.
    Agent {
        subcommand: &'static str,
        extra: &'static [&'static str],
        /// Text of the stderr log line that says it is attached.
        ready: &'static str,
    },
    Auditd,
    Bpftrace,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub name: &'static str,
    pub setup: Setup,
}

pub const BASELINE: &str = "none";
pub const TRACE: &str = "monitor trace";
pub const RUN: &str = "monitor run";
pub const RUN_PROFILE: &str = "monitor run --syscall-profile";
/// `monitor run`'s arguments beyond `--cgroup` and `--host-root`, for the
/// other sections.
pub const RUN_ARGS: &[&str] = &["--rules", "{rules}", "--spool-dir", "{shm}/spool"];
/// What `monitor run` logs once it is reading events and matching them.
pub const RUN_READY: &str = "running;";

/// Every configuration, in report order. A new agent mode is one line here;
/// one whose subcommand the binary lacks is skipped with a note.
pub const CONFIGS: &[Config] = &[
    Config {
        name: BASELINE,
        setup: Setup::Nothing,
    },
    Config {
        name: TRACE,
        setup: Setup::Agent {
            subcommand: "trace",
            extra: &["--kind", "all"],
            ready: "tracing;",
        },
    },
    // The shipped rules, alerts on stdout (drained and counted like trace's
    // lines), the spool (unused without HTTP sinks) kept on tmpfs.
    Config {
        name: RUN,
        setup: Setup::Agent {
            subcommand: "run",
            extra: RUN_ARGS,
            ready: RUN_READY,
        },
    },
    // The same with the opt-in unexpected-syscall hook, which every
    // syscall of the host passes: the price of `--syscall-profile`.
    Config {
        name: RUN_PROFILE,
        setup: Setup::Agent {
            subcommand: "run",
            extra: &[
                "--rules",
                "{rules}",
                "--spool-dir",
                "{shm}/spool",
                "--syscall-profile",
                "docker-default",
            ],
            ready: RUN_READY,
        },
    },
    Config {
        name: "auditd",
        setup: Setup::Auditd,
    },
    Config {
        name: "bpftrace",
        setup: Setup::Bpftrace,
    },
];

const PEERS: [&str; 2] = ["auditd", "bpftrace"];

#[derive(Clone, Debug, Serialize)]
pub struct ConfigStatus {
    pub name: &'static str,
    /// `measured`, `skipped` or `failed`.
    pub status: &'static str,
    pub note: Option<String>,
}

/// One timed loop under one configuration in one run.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub run: usize,
    pub config: &'static str,
    pub kind: &'static str,
    pub iterations: u64,
    pub ns_per_iter: f64,
    pub stopped_early: bool,
}

/// What the observer did while one configuration ran its loops.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Session {
    pub run: usize,
    pub config: &'static str,
    /// Lines the observer printed (drained by the bench).
    pub lines: Option<u64>,
    /// Records the agent read from its ring buffer.
    pub records: Option<u64>,
    /// Events the observer reported lost.
    pub lost: Option<u64>,
    /// CPU seconds the observer used while the loops ran (start-up excluded).
    pub cpu_s: Option<f64>,
    pub answered_sigterm: Option<bool>,
    /// For `monitor run`: the alerts it printed, by rule.
    pub alerts_by_rule: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub config: &'static str,
    /// Ratio to no monitor in the same run: median and range over runs.
    pub ratio: Option<Spread>,
    pub ns_per_iter: Option<Spread>,
}

/// Runs in which `monitor trace` cost less than a peer.
#[derive(Clone, Debug, Serialize)]
pub struct BelowPeer {
    pub peer: &'static str,
    pub runs_below: usize,
    pub runs_compared: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoopResult {
    pub kind: &'static str,
    pub label: &'static str,
    pub target_ratio: f64,
    pub iterations: u64,
    pub baseline_ns: Option<Spread>,
    pub ratios: Vec<Ratio>,
    pub trace_below: Vec<BelowPeer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Overhead {
    pub runs: usize,
    pub configs: Vec<ConfigStatus>,
    pub loops: Vec<LoopResult>,
    pub samples: Vec<Sample>,
    pub sessions: Vec<Session>,
}

/// A configuration while it runs.
enum Live {
    Nothing,
    Observer {
        proc: Drained,
        cpu_at_ready: f64,
        agent: bool,
        rules: AlertTally,
    },
    Audit {
        session: AuditSession,
        cpu_at_start: f64,
    },
}

/// Alerts by rule, counted from `monitor run`'s stdout as it is drained.
#[derive(Clone, Default)]
pub struct AlertTally(Arc<Mutex<BTreeMap<String, u64>>>);

impl AlertTally {
    pub fn hook(&self) -> super::process::LineHook {
        let tally = self.0.clone();
        Box::new(move |line: &str, _| {
            if let Some(rule) = alert_rule(line) {
                *tally.lock().unwrap().entry(rule.to_owned()).or_default() += 1;
            }
        })
    }

    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// `policy/rule` of an alert line (`"rule":"ssh-server"`, `"policy":"default/processes"`).
pub fn alert_rule(line: &str) -> Option<String> {
    let field = |key: &str| -> Option<&str> {
        let at = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
        line[at..].split('"').next()
    };
    let rule = field("rule")?;
    Some(match field("policy") {
        Some(p) => format!("{p}/{rule}"),
        None => rule.to_owned(),
    })
}

/// Can this configuration run here? `Err` says why not.
fn available(ctx: &Ctx, cfg: &Config) -> Result<(), String> {
    match cfg.setup {
        Setup::Nothing => Ok(()),
        Setup::Agent { subcommand, .. } => {
            if ctx.agent_subcommands.iter().any(|s| s == subcommand) {
                Ok(())
            } else {
                Err(format!(
                    "this `monitor` has no `{subcommand}` subcommand (per `monitor --help`)"
                ))
            }
        }
        Setup::Auditd => {
            if which("auditd") && which("auditctl") {
                Ok(())
            } else {
                Err("auditd is not installed (apt-get install -y auditd)".into())
            }
        }
        Setup::Bpftrace => {
            if which("bpftrace") {
                Ok(())
            } else {
                Err("bpftrace is not installed (apt-get install -y bpftrace)".into())
            }
        }
    }
}

pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

fn start(ctx: &Ctx, cfg: &Config) -> anyhow::Result<Live> {
    Ok(match cfg.setup {
        Setup::Nothing => Live::Nothing,
        Setup::Agent {
            subcommand,
            extra,
            ready,
        } => {
            let rules = AlertTally::default();
            let hook = (subcommand == "run").then(|| rules.hook());
            let proc = ctx.agent(subcommand, extra, ready, hook)?;
            let cpu_at_ready = cpu_secs(proc.pid()).unwrap_or(0.0);
            Live::Observer {
                proc,
                cpu_at_ready,
                agent: true,
                rules,
            }
        }
        Setup::Auditd => {
            let (session, cpu_at_start) = AuditSession::start()?;
            Live::Audit {
                session,
                cpu_at_start,
            }
        }
        Setup::Bpftrace => {
            let proc = peers::start_bpftrace(&ctx.cgroup.load, None)?;
            let cpu_at_ready = cpu_secs(proc.pid()).unwrap_or(0.0);
            Live::Observer {
                proc,
                cpu_at_ready,
                agent: false,
                rules: AlertTally::default(),
            }
        }
    })
}

fn stop(live: Live, run: usize, config: &'static str) -> anyhow::Result<Session> {
    let mut s = Session {
        run,
        config,
        ..Default::default()
    };
    match live {
        Live::Nothing => {}
        Live::Observer {
            proc,
            cpu_at_ready,
            agent,
            rules,
        } => {
            // Let the last lines of the loop arrive before stopping.
            proc.wait_for_lines(u64::MAX, Duration::from_millis(300), Duration::from_secs(5))?;
            s.cpu_s = cpu_secs(proc.pid()).map(|c| c - cpu_at_ready);
            let signal = if agent { libc::SIGTERM } else { libc::SIGINT };
            let stopped = proc.stop(signal, Duration::from_secs(15));
            s.lines = Some(stopped.lines);
            s.answered_sigterm = Some(stopped.answered);
            s.alerts_by_rule = rules.take();
            let err = strip_ansi(&stopped.stderr);
            if agent {
                let last = err.lines().rev().find(|l| l.contains("lost_total="));
                s.records = last.and_then(|l| field_u64(l, "records"));
                s.lost = last.and_then(|l| field_u64(l, "lost_total"));
            } else {
                // bpftrace: "Lost N events" when its perf buffer overflowed.
                s.lost = Some(
                    err.lines()
                        .filter_map(|l| {
                            l.trim()
                                .strip_prefix("Lost ")?
                                .split_whitespace()
                                .next()?
                                .parse::<u64>()
                                .ok()
                        })
                        .sum(),
                );
            }
        }
        Live::Audit {
            session,
            cpu_at_start,
        } => {
            let stats = session.stop(cpu_at_start)?;
            s.cpu_s = stats.cpu_s;
            s.lost = Some(stats.lost);
        }
    }
    Ok(s)
}

/// Lets the observer finish the previous loop's events, so no loop pays for
/// the one before it. The same pause for every configuration.
fn settle(live: &Live) -> anyhow::Result<()> {
    match live {
        Live::Observer { proc, .. } => {
            proc.wait_for_lines(
                u64::MAX,
                Duration::from_millis(200),
                Duration::from_secs(10),
            )?;
        }
        Live::Nothing | Live::Audit { .. } => sleep(Duration::from_millis(200))?,
    }
    Ok(())
}

fn run_loop(ctx: &Ctx, spec: &LoopSpec, iterations: u64) -> anyhow::Result<(u64, f64, bool)> {
    let max = ctx.plan.loop_max_secs;
    let args = ctx.workload_args(
        spec.kind,
        &[
            ("--iterations", iterations.to_string()),
            ("--warmup", (iterations / 20).max(5).to_string()),
            ("--max-secs", format!("{max}")),
        ],
    );
    let v = Workload::spawn(&ctx.workload, &args)?
        .wait(Duration::from_secs_f64(max * 2.0 + 60.0))
        .inspect_err(|_| ctx.cgroup.kill_load())?;
    let done = v["iterations"].as_u64().unwrap_or(0);
    let ns = v["ns_per_iter"].as_f64().unwrap_or(f64::NAN);
    Ok((done, ns, v["stopped_early"].as_bool().unwrap_or(false)))
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Overhead> {
    let mut statuses: Vec<ConfigStatus> = Vec::new();
    let mut active: Vec<Config> = Vec::new();
    for cfg in CONFIGS {
        match available(ctx, cfg) {
            Ok(()) => active.push(*cfg),
            Err(note) => {
                eprintln!("bench: overhead: skipping {}: {note}", cfg.name);
                statuses.push(ConfigStatus {
                    name: cfg.name,
                    status: "skipped",
                    note: Some(note),
                });
            }
        }
    }

    // Size each loop to about `loop_secs` without a monitor.
    let mut iterations = Vec::new();
    for spec in &LOOPS {
        let (_, ns, _) = run_loop(ctx, spec, spec.calibrate)?;
        let n = (ctx.plan.loop_secs * 1e9 / ns.max(1.0)).clamp(50.0, 1e8) as u64;
        eprintln!(
            "bench: overhead: {} takes {:.0} ns an iteration here: {n} iterations a run",
            spec.kind, ns
        );
        iterations.push(n);
    }

    let mut samples = Vec::new();
    let mut sessions = Vec::new();
    let mut failed: Vec<(&'static str, String)> = Vec::new();
    for run in 0..ctx.plan.runs {
        for cfg in rotated(&active, run) {
            check_interrupt()?;
            if failed.iter().any(|(n, _)| *n == cfg.name) {
                continue;
            }
            eprintln!(
                "bench: overhead run {}/{}: {}",
                run + 1,
                ctx.plan.runs,
                cfg.name
            );
            let live = match start(ctx, &cfg) {
                Ok(l) => l,
                Err(e) if cfg.name != TRACE && cfg.name != BASELINE => {
                    eprintln!("bench: {} failed to start, leaving it out: {e:#}", cfg.name);
                    failed.push((cfg.name, format!("{e:#}")));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let order: Vec<usize> = rotated(&(0..LOOPS.len()).collect::<Vec<_>>(), run);
            for i in order {
                let spec = &LOOPS[i];
                settle(&live)?;
                let (done, ns, early) = run_loop(ctx, spec, iterations[i])?;
                samples.push(Sample {
                    run,
                    config: cfg.name,
                    kind: spec.kind,
                    iterations: done,
                    ns_per_iter: ns,
                    stopped_early: early,
                });
            }
            sessions.push(stop(live, run, cfg.name)?);
        }
    }
    for cfg in &active {
        let fail = failed.iter().find(|(n, _)| *n == cfg.name);
        statuses.push(ConfigStatus {
            name: cfg.name,
            status: if fail.is_some() { "failed" } else { "measured" },
            note: fail.map(|(_, e)| e.clone()),
        });
    }
    statuses.sort_by_key(|s| CONFIGS.iter().position(|c| c.name == s.name));

    let loops = LOOPS
        .iter()
        .zip(&iterations)
        .map(|(spec, &n)| summarize(spec, n, &samples, ctx.plan.runs))
        .collect();
    Ok(Overhead {
        runs: ctx.plan.runs,
        configs: statuses,
        loops,
        samples,
        sessions,
    })
}

fn ns_of(samples: &[Sample], run: usize, config: &str, kind: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.run == run && s.config == config && s.kind == kind)
        .map(|s| s.ns_per_iter)
}

/// Ratios to the baseline of the same run, per configuration.
pub fn summarize(spec: &LoopSpec, iterations: u64, samples: &[Sample], runs: usize) -> LoopResult {
    let ratios_of = |config: &str| -> Vec<Option<f64>> {
        (0..runs)
            .map(|r| {
                let base = ns_of(samples, r, BASELINE, spec.kind)?;
                Some(ns_of(samples, r, config, spec.kind)? / base)
            })
            .collect()
    };
    let ratios = CONFIGS
        .iter()
        .filter(|c| c.name != BASELINE)
        .map(|c| {
            let per_run: Vec<f64> = ratios_of(c.name).into_iter().flatten().collect();
            let ns: Vec<f64> = samples
                .iter()
                .filter(|s| s.config == c.name && s.kind == spec.kind)
                .map(|s| s.ns_per_iter)
                .collect();
            Ratio {
                config: c.name,
                ratio: Spread::of(&per_run),
                ns_per_iter: Spread::of(&ns),
            }
        })
        .collect();
    let trace = ratios_of(TRACE);
    let trace_below = PEERS
        .iter()
        .map(|&peer| {
            let pairs: Vec<(f64, f64)> = trace
                .iter()
                .zip(ratios_of(peer))
                .filter_map(|(t, p)| Some(((*t)?, p?)))
                .collect();
            BelowPeer {
                peer,
                runs_below: pairs.iter().filter(|(t, p)| t < p).count(),
                runs_compared: pairs.len(),
            }
        })
        .collect();
    let base: Vec<f64> = samples
        .iter()
        .filter(|s| s.config == BASELINE && s.kind == spec.kind)
        .map(|s| s.ns_per_iter)
        .collect();
    LoopResult {
        kind: spec.kind,
        label: spec.label,
        target_ratio: spec.target,
        iterations,
        baseline_ns: Spread::of(&base),
        ratios,
        trace_below,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(run: usize, config: &'static str, ns: f64) -> Sample {
        Sample {
            run,
            config,
            kind: "open",
            iterations: 1,
            ns_per_iter: ns,
            stopped_early: false,
        }
    }

    #[test]
    fn ratios_are_taken_within_each_run() {
        let samples = vec![
            sample(0, BASELINE, 100.0),
            sample(0, TRACE, 110.0),
            sample(0, "auditd", 300.0),
            sample(1, BASELINE, 200.0),
            sample(1, TRACE, 200.0),
            sample(1, "auditd", 150.0),
            sample(2, BASELINE, 100.0),
            sample(2, TRACE, 102.0),
        ];
        let r = summarize(&LOOPS[1], 10, &samples, 3);
        let trace = r.ratios.iter().find(|x| x.config == TRACE).unwrap();
        let t = trace.ratio.unwrap();
        assert!((t.median - 1.02).abs() < 1e-9);
        assert!((t.min - 1.0).abs() < 1e-9 && (t.max - 1.1).abs() < 1e-9);
        let audit = r.ratios.iter().find(|x| x.config == "auditd").unwrap();
        assert_eq!(audit.ratio.unwrap().n, 2);
        let below = r.trace_below.iter().find(|b| b.peer == "auditd").unwrap();
        assert_eq!((below.runs_below, below.runs_compared), (1, 2));
        let bt = r.trace_below.iter().find(|b| b.peer == "bpftrace").unwrap();
        assert_eq!(bt.runs_compared, 0);
        assert!(
            r.ratios
                .iter()
                .find(|x| x.config == "monitor run")
                .unwrap()
                .ratio
                .is_none()
        );
    }
}
