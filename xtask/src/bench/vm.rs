//! The in-VM comparison: the overhead section's loops on Debian's 6.12
//! kernel in a QEMU guest (the one `cargo xtask vm-run` boots), with no
//! monitor, with `monitor trace` on the tracepoint tier, and with `monitor
//! trace` on the best tier the kernel offers (`--hook-tier auto`: fentry
//! there). This machine's kernel refuses fentry programs, so the two tiers
//! can only be compared in a guest; and the guest is emulated (TCG), so only
//! ratios taken within a run mean anything.
//!
//! The schedule (runs, configurations rotated per run, loops rotated per
//! configuration, as the host's overhead section does) is made here and
//! written to the guest's share as steps; `vm.sh` carries them out in the
//! guest, without cargo or xtask there, and leaves every workload's JSON
//! line and every agent's log in the share, which this module reads.
use std::{
    ffi::OsString,
    fmt::Write as _,
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    Ctx, LOAD_IMAGE,
    overhead::LOOPS,
    process::{field_u64, strip_ansi},
    stats::{Spread, rotated},
};
use crate::vm::{guest, kernel};

/// The guest's kernel: the newest of the matrix, with fentry and BPF LSM.
pub const KERNEL: &str = "6.12";
/// What the agent runs: the host overhead section's headline configuration.
pub const AGENT_MODE: &str = "monitor trace --kind all";
pub const NONE: &str = "none";
pub const TRACEPOINT: &str = "tracepoint";
pub const AUTO: &str = "auto";
/// The guest has its own network namespace: any port is free.
const PORT: u16 = 47100;
/// The cgroup the agent watches in the guest.
const GUEST_CGROUP: &str = "/sys/fs/cgroup/monitor-bench-vm";
/// Calibration runs are this many times shorter than the host's: the guest
/// is 10-50 times slower.
const CALIBRATE_DIVISOR: u64 = 10;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct VmConfig {
    /// `none`, `tracepoint`, `auto`: the step files' name for it.
    pub id: &'static str,
    /// `--hook-tier` of `monitor trace`; `None`: no monitor.
    pub hook_tier: Option<&'static str>,
}

/// In report order.
pub const CONFIGS: [VmConfig; 3] = [
    VmConfig {
        id: NONE,
        hook_tier: None,
    },
    VmConfig {
        id: TRACEPOINT,
        hook_tier: Some("tracepoint"),
    },
    VmConfig {
        id: AUTO,
        hook_tier: Some("auto"),
    },
];

/// One timed loop under one configuration in one run, in the guest.
#[derive(Clone, Debug, Serialize)]
pub struct VmSample {
    pub run: usize,
    pub config: &'static str,
    pub kind: &'static str,
    pub iterations: u64,
    pub ns_per_iter: f64,
    pub stopped_early: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConcernTier {
    pub concern: String,
    /// `fentry`, `tracepoint` or `none`, as the agent logged it.
    pub tier: String,
}

/// What one agent did in one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VmSession {
    pub run: usize,
    pub config: &'static str,
    /// From starting the agent to its `tracing;` line (emulated).
    pub ready_secs: Option<f64>,
    /// From starting the agent until it was idle (its start-up work done),
    /// when the loops began.
    pub quiet_secs: Option<f64>,
    pub lines: Option<u64>,
    pub records: Option<u64>,
    pub lost: Option<u64>,
    /// CPU seconds of the agent while the loops ran (start-up excluded).
    pub cpu_s: Option<f64>,
    pub answered_sigterm: Option<bool>,
    /// The tier of each concern, from the agent's `kernel hooks attached` line.
    pub tiers: Vec<ConcernTier>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VmRatio {
    pub config: &'static str,
    /// To no monitor in the same run: median and range over runs.
    pub ratio: Option<Spread>,
    pub ns_per_iter: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VmLoop {
    pub kind: &'static str,
    pub label: &'static str,
    pub target_ratio: f64,
    /// Iterations a run, sized in the guest by a calibration run.
    pub iterations: u64,
    pub baseline_ns: Option<Spread>,
    pub ratios: Vec<VmRatio>,
    /// `auto`'s time over the tracepoint tier's in the same run: the tiers
    /// against each other.
    pub auto_over_tracepoint: Option<Spread>,
}

/// The tiers a configuration ran with (the same in every run, or `varied`).
#[derive(Clone, Debug, Serialize)]
pub struct ConfigTiers {
    pub config: &'static str,
    pub concerns: Vec<ConcernTier>,
    pub varied: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct VmBench {
    /// How the guest ran: absolute times are meaningless, ratios are not.
    pub emulation: String,
    /// `uname -r` in the guest.
    pub kernel: String,
    pub agent_mode: &'static str,
    pub runs: usize,
    pub loop_secs: f64,
    pub loop_max_secs: f64,
    pub loops: Vec<VmLoop>,
    pub tiers: Vec<ConfigTiers>,
    pub samples: Vec<VmSample>,
    pub sessions: Vec<VmSession>,
    pub boot_secs: Option<f64>,
    pub wall_secs: f64,
}

impl VmBench {
    pub fn ratio(&self, kind: &str, config: &str) -> Option<Spread> {
        self.loops
            .iter()
            .find(|l| l.kind == kind)?
            .ratios
            .iter()
            .find(|r| r.config == config)?
            .ratio
    }

    /// The concerns a configuration had on the given tier.
    pub fn concerns_on(&self, config: &str, tier: &str) -> Vec<&str> {
        self.tiers
            .iter()
            .filter(|t| t.config == config)
            .flat_map(|t| &t.concerns)
            .filter(|c| c.tier == tier)
            .map(|c| c.concern.as_str())
            .collect()
    }
}

/// The steps `vm.sh` runs: per run, each configuration in turn (rotated),
/// its four loops under it (rotated too).
pub fn steps(runs: usize) -> String {
    let mut s = String::new();
    let kinds: Vec<&str> = LOOPS.iter().map(|l| l.kind).collect();
    for run in 0..runs {
        for cfg in rotated(&CONFIGS, run) {
            let tier = cfg.hook_tier.unwrap_or("-");
            let _ = writeln!(s, "start {run} {} {tier}", cfg.id);
            for kind in rotated(&kinds, run) {
                let _ = writeln!(s, "loop {run} {} {kind}", cfg.id);
            }
            let _ = writeln!(s, "stop {run} {} -", cfg.id);
        }
    }
    s
}

fn calibrate_list() -> String {
    LOOPS
        .iter()
        .map(|l| format!("{} {}\n", l.kind, (l.calibrate / CALIBRATE_DIVISOR).max(10)))
        .collect()
}

/// The tiers in the agent's `kernel hooks attached ... tiers=exec=fentry,
/// file writes=tracepoint` line (the last field, so the rest of the line).
pub fn parse_tiers(log: &str) -> Vec<ConcernTier> {
    let log = strip_ansi(log);
    let Some(line) = log
        .lines()
        .rev()
        .find(|l| l.contains("kernel hooks attached"))
    else {
        return Vec::new();
    };
    let Some(at) = line.find("tiers=") else {
        return Vec::new();
    };
    line[at + "tiers=".len()..]
        .split(", ")
        .filter_map(|p| p.trim().rsplit_once('='))
        .map(|(c, t)| ConcernTier {
            concern: c.to_owned(),
            tier: t.to_owned(),
        })
        .collect()
}

fn config_id(id: &str) -> Option<&'static str> {
    CONFIGS.iter().find(|c| c.id == id).map(|c| c.id)
}

fn loop_kind(kind: &str) -> Option<&'static str> {
    LOOPS.iter().find(|l| l.kind == kind).map(|l| l.kind)
}

/// `samples`: `<run> <config> <kind> <the workload's JSON line>`.
pub fn parse_samples(text: &str) -> anyhow::Result<Vec<VmSample>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.splitn(4, ' ');
        let (Some(run), Some(cfg), Some(kind), Some(json)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            bail!("a samples line has fewer than four fields: {line:?}");
        };
        let v: serde_json::Value =
            serde_json::from_str(json).with_context(|| format!("the workload's line {json:?}"))?;
        out.push(VmSample {
            run: run.parse().with_context(|| format!("run in {line:?}"))?,
            config: config_id(cfg).with_context(|| format!("configuration in {line:?}"))?,
            kind: loop_kind(kind).with_context(|| format!("loop in {line:?}"))?,
            iterations: v["iterations"].as_u64().unwrap_or(0),
            ns_per_iter: v["ns_per_iter"].as_f64().unwrap_or(f64::NAN),
            stopped_early: v["stopped_early"].as_bool().unwrap_or(false),
        });
    }
    Ok(out)
}

/// A session from its `session-<run>-<config>` file (`key value` lines
/// written by `vm.sh`) and the agent's stderr.
pub fn parse_session(
    run: usize,
    config: &'static str,
    facts: &str,
    log: &str,
    hz: f64,
) -> VmSession {
    let get = |key: &str| -> Option<&str> {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(str::trim)
    };
    let ticks = |key: &str| get(key)?.parse::<f64>().ok();
    let log = strip_ansi(log);
    let last = log.lines().rev().find(|l| l.contains("lost_total="));
    VmSession {
        run,
        config,
        ready_secs: get("ready_secs").and_then(|v| v.parse().ok()),
        quiet_secs: get("quiet_secs").and_then(|v| v.parse().ok()),
        lines: get("lines").and_then(|v| v.parse().ok()),
        records: last.and_then(|l| field_u64(l, "records")),
        lost: last.and_then(|l| field_u64(l, "lost_total")),
        cpu_s: (|| Some((ticks("ticks_end")? - ticks("ticks_ready")?) / hz))()
            .filter(|c| c.is_finite()),
        answered_sigterm: get("answered").map(|v| v == "yes"),
        tiers: parse_tiers(&log),
    }
}

/// Ratios to no monitor within each run, per configuration and loop.
pub fn summarize(samples: &[VmSample], iterations: &[(String, u64)], runs: usize) -> Vec<VmLoop> {
    let ns_of = |run: usize, config: &str, kind: &str| {
        samples
            .iter()
            .find(|s| s.run == run && s.config == config && s.kind == kind)
            .map(|s| s.ns_per_iter)
    };
    let all_ns = |config: &str, kind: &str| -> Option<Spread> {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.config == config && s.kind == kind)
            .map(|s| s.ns_per_iter)
            .collect();
        Spread::of(&v)
    };
    LOOPS
        .iter()
        .map(|spec| {
            let per_run = |over: &str, under: &str| -> Vec<f64> {
                (0..runs)
                    .filter_map(|r| Some(ns_of(r, over, spec.kind)? / ns_of(r, under, spec.kind)?))
                    .collect()
            };
            let ratios = CONFIGS
                .iter()
                .filter(|c| c.id != NONE)
                .map(|c| {
                    let per_run = per_run(c.id, NONE);
                    VmRatio {
                        config: c.id,
                        ratio: Spread::of(&per_run),
                        ns_per_iter: all_ns(c.id, spec.kind),
                    }
                })
                .collect();
            VmLoop {
                kind: spec.kind,
                label: spec.label,
                target_ratio: spec.target,
                iterations: iterations
                    .iter()
                    .find(|(k, _)| k == spec.kind)
                    .map_or(0, |(_, n)| *n),
                baseline_ns: all_ns(NONE, spec.kind),
                ratios,
                auto_over_tracepoint: Spread::of(&per_run(AUTO, TRACEPOINT)),
            }
        })
        .collect()
}

/// Each agent configuration's tiers: the first session's, `varied` when a
/// later run's differed.
pub fn tiers_of(sessions: &[VmSession]) -> Vec<ConfigTiers> {
    CONFIGS
        .iter()
        .filter(|c| c.hook_tier.is_some())
        .filter_map(|c| {
            let mut ss = sessions.iter().filter(|s| s.config == c.id);
            let first = ss.next()?;
            Some(ConfigTiers {
                config: c.id,
                concerns: first.tiers.clone(),
                varied: ss.any(|s| s.tiers != first.tiers),
            })
        })
        .collect()
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<VmBench> {
    let release = kernel::parse_kernels(KERNEL)?[0];
    let k = kernel::prepare(release, false)?;
    let share = guest::Share::new()?;
    // The agent's --host-root: the workload leaf's Docker state, and proc
    // (an absolute link, so the guest's own /proc).
    let host = share.path.join("host");
    fs::create_dir_all(&host)?;
    std::os::unix::fs::symlink("/proc", host.join("proc"))
        .context("linking the guest host root's proc to /proc")?;
    ctx.docker
        .write(&host, &ctx.load_id, "bench-workload", LOAD_IMAGE)
        .context("writing the workload container's Docker state for the guest")?;
    let runs = ctx.plan.vm_runs;
    fs::write(share.path.join("run.sh"), include_str!("vm.sh"))?;
    fs::write(share.path.join("calibrate"), calibrate_list())?;
    fs::write(share.path.join("steps"), steps(runs))?;

    let path = |p: &Path| p.to_string_lossy().into_owned();
    let load = format!(
        "{GUEST_CGROUP}/{}",
        super::synthetic::docker_scope(&ctx.load_id)
    );
    let env: Vec<(String, String)> = [
        ("MON", path(&ctx.monitor)),
        ("WL", path(&ctx.workload)),
        ("CG", GUEST_CGROUP.to_owned()),
        ("LOAD", load),
        ("HOST", format!("{}/host", guest::GUEST_SHARE)),
        ("LOOP_SECS", ctx.plan.vm_loop_secs.to_string()),
        ("MAX_SECS", ctx.plan.vm_loop_max_secs.to_string()),
        ("PORT", PORT.to_string()),
        (
            "TRACE_STEPS",
            std::env::var("MONITOR_BENCH_VM_STEPS").unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let argv: [OsString; 2] = [
        "/bin/sh".into(),
        format!("{}/run.sh", guest::GUEST_SHARE).into(),
    ];
    // Far beyond the plan (about 5 min): only a hung guest meets it.
    let timeout = Duration::from_secs(300 + runs as u64 * 180);
    eprintln!(
        "bench: vm: {} runs on {} under QEMU TCG (about {:.0} min)",
        runs,
        k.uname,
        (20.0 + runs as f64 * (20.0 * ctx.plan.vm_loop_secs + 60.0)) / 60.0
    );
    let spec = guest::Spec {
        kernel: &k,
        argv: &argv,
        cwd: &ctx.repo,
        env: &env,
        timeout: Some(timeout),
        verbose: false,
    };
    let out: guest::Output = Arc::new(|line: &str| eprintln!("[vm {KERNEL}] {line}"));
    let begun = Instant::now();
    let o = guest::boot(&spec, &share, out)?;
    let wall_secs = begun.elapsed().as_secs_f64();
    match (o.exit, &o.failure) {
        (Some(0), _) => {}
        (Some(c), _) => {
            bail!("the bench script in the {KERNEL} guest exited with {c} (its output is above)")
        }
        (None, f) => bail!(
            "the {KERNEL} guest: {}",
            f.as_deref().unwrap_or("no exit code")
        ),
    }

    let read = |n: &str| fs::read_to_string(share.path.join(n)).unwrap_or_default();
    let samples = parse_samples(&read("samples"))?;
    let iterations: Vec<(String, u64)> = read("calibration")
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect();
    let hz: f64 = read("hz").trim().parse().unwrap_or(100.0);
    let mut sessions = Vec::new();
    for run in 0..runs {
        for c in CONFIGS.iter().filter(|c| c.hook_tier.is_some()) {
            let facts = read(&format!("session-{run}-{}", c.id));
            let log = read(&format!("agent-{run}-{}.err", c.id));
            sessions.push(parse_session(run, c.id, &facts, &log, hz));
        }
    }
    Ok(VmBench {
        emulation: "QEMU TCG (software emulation), 2 vCPUs, 2 GiB".into(),
        kernel: Some(read("uname").trim().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or(k.uname.clone()),
        agent_mode: AGENT_MODE,
        runs,
        loop_secs: ctx.plan.vm_loop_secs,
        loop_max_secs: ctx.plan.vm_loop_max_secs,
        loops: summarize(&samples, &iterations, runs),
        tiers: tiers_of(&sessions),
        samples,
        sessions,
        boot_secs: o.boot.map(|b| b.as_secs_f64()),
        wall_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_rotate_configurations_and_loops() {
        let s = steps(2);
        let lines: Vec<&str> = s.lines().collect();
        // 3 configurations × (start + 4 loops + stop) per run.
        assert_eq!(lines.len(), 2 * 3 * 6);
        assert_eq!(lines[0], "start 0 none -");
        assert_eq!(lines[1], "loop 0 none exec");
        assert_eq!(lines[6], "start 0 tracepoint tracepoint");
        assert_eq!(lines[12], "start 0 auto auto");
        assert_eq!(lines[18], "start 1 tracepoint tracepoint");
        assert_eq!(lines[19], "loop 1 tracepoint open");
        assert_eq!(lines[22], "loop 1 tracepoint exec");
        assert_eq!(lines[35], "stop 1 none -");
    }

    #[test]
    fn tiers_come_from_the_start_log_line() {
        let log = "2026-12-06T22:16:35Z  INFO monitor::bpf::load: kernel hooks attached active=104 total=104 tiers=exec=fentry, egress (udp)=tracepoint, raw sockets=none\n\
                   2026-12-06T22:16:36Z  INFO monitor::trace: tracing; one JSON event per line on stdout\n";
        let t = parse_tiers(log);
        let pairs: Vec<(&str, &str)> = t
            .iter()
            .map(|c| (c.concern.as_str(), c.tier.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("exec", "fentry"),
                ("egress (udp)", "tracepoint"),
                ("raw sockets", "none")
            ]
        );
        assert!(parse_tiers("tracing;\n").is_empty());
    }

    #[test]
    fn samples_sessions_and_ratios() {
        let text = "0 none getppid {\"kind\":\"getppid\",\"iterations\":1000,\"elapsed_ns\":1,\"ns_per_iter\":100.0,\"stopped_early\":false}\n\
                    0 auto getppid {\"kind\":\"getppid\",\"iterations\":1000,\"elapsed_ns\":1,\"ns_per_iter\":101.0,\"stopped_early\":false}\n\
                    0 tracepoint getppid {\"kind\":\"getppid\",\"iterations\":1000,\"elapsed_ns\":1,\"ns_per_iter\":120.0,\"stopped_early\":false}\n\
                    1 none getppid {\"kind\":\"getppid\",\"iterations\":1000,\"elapsed_ns\":1,\"ns_per_iter\":200.0,\"stopped_early\":false}\n\
                    1 auto getppid {\"kind\":\"getppid\",\"iterations\":1000,\"elapsed_ns\":1,\"ns_per_iter\":206.0,\"stopped_early\":true}\n";
        let s = parse_samples(text).unwrap();
        assert_eq!(s.len(), 5);
        assert!(s[4].stopped_early);
        assert!(parse_samples("0 nonsense getppid {}\n").is_err());
        let loops = summarize(&s, &[("getppid".into(), 1000)], 2);
        let g = loops.iter().find(|l| l.kind == "getppid").unwrap();
        assert_eq!(g.iterations, 1000);
        let auto = g.ratios.iter().find(|r| r.config == AUTO).unwrap();
        let a = auto.ratio.unwrap();
        assert_eq!(a.n, 2);
        assert!((a.median - 1.02).abs() < 1e-9 && (a.max - 1.03).abs() < 1e-9);
        let tp = g.ratios.iter().find(|r| r.config == TRACEPOINT).unwrap();
        assert_eq!(tp.ratio.unwrap().n, 1);
        let tiers = g.auto_over_tracepoint.unwrap();
        assert_eq!(tiers.n, 1);
        assert!((tiers.median - 101.0 / 120.0).abs() < 1e-9);
        assert!(
            loops.iter().find(|l| l.kind == "open").unwrap().ratios[0]
                .ratio
                .is_none()
        );

        let facts = "ready_secs 3.5\nquiet_secs 5.25\nticks_ready 120\nticks_end 170\nanswered yes\nlines 4200\n";
        let log = "x INFO kernel hooks attached active=1 total=1 tiers=exec=fentry\n\
                   x INFO monitor::trace: trace stopped records=4300 decode_errors=0 lost_total=7\n";
        let sess = parse_session(0, AUTO, facts, log, 100.0);
        assert_eq!(
            (sess.lines, sess.records, sess.lost),
            (Some(4200), Some(4300), Some(7))
        );
        assert_eq!(sess.answered_sigterm, Some(true));
        assert!((sess.cpu_s.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!((sess.ready_secs, sess.quiet_secs), (Some(3.5), Some(5.25)));
        let mut other = sess.clone();
        other.run = 1;
        other.tiers[0].tier = "tracepoint".into();
        let t = tiers_of(&[sess, other]);
        assert_eq!(t.len(), 1);
        assert!(t[0].varied);
        let missing = parse_session(0, AUTO, "", "", 100.0);
        assert_eq!((missing.cpu_s, missing.lines), (None, None));
    }
}
