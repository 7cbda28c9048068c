//! The in-VM section: the overhead loops in a 6.12 guest under the
//! tracepoint tier and under the best tier the kernel offers, as ratios to
//! no monitor, marked as emulated; and the tier each concern had.
use std::fmt::Write as _;

use super::{
    super::{
        stats::Spread,
        vm::{AUTO, TRACEPOINT, VmBench, VmSession},
    },
    format::{ns, num, ratio, spread_with, verdict},
};

/// The column heading of a configuration.
pub(super) fn heading(config: &str) -> &'static str {
    match config {
        TRACEPOINT => "`--hook-tier tracepoint`",
        AUTO => "`--hook-tier auto`",
        _ => "no monitor",
    }
}

/// The target row's verdict for the getppid control under `auto`: only a
/// run in which some concern had the fentry tier can show it.
pub(super) fn control_verdict(v: &VmBench) -> Option<(Spread, String)> {
    let r = v.ratio("getppid", AUTO)?;
    let target = v.loops.iter().find(|l| l.kind == "getppid")?.target_ratio;
    let verdict = if v.concerns_on(AUTO, "fentry").is_empty() {
        "not shown: no concern had the fentry tier in the VM".to_owned()
    } else {
        verdict(r.median, target)
    };
    Some((r, verdict))
}

pub(super) fn vm(md: &mut String, v: &VmBench) {
    let _ = writeln!(
        md,
        "## In a 6.12 VM: tracepoint tier against fentry tier (emulated)\n"
    );
    let _ = writeln!(
        md,
        "> **Emulated**: these loops ran in a {} guest ({}, booted by `cargo xtask vm-run`'s code) on this \
         machine, because its own kernel refuses fentry programs. Guest code runs 10–50 times slower than on \
         the host, and unevenly so (system calls and page faults cost far more than plain instructions), so \
         the absolute times below mean nothing and are not comparable with the host's. Only the ratios, taken \
         within each run, count.\n",
        v.kernel, v.emulation
    );
    let _ = writeln!(
        md,
        "The same compiled `workload` loops as the overhead section, in a Docker-named cgroup of the guest \
         (its Docker state under the agent's `--host-root`), each sized in the guest to about {} s with no \
         monitor and stopped after {} s whatever the agent does. Each of {} runs starts every configuration in \
         turn (rotated per run) and runs the four loops under it (also rotated): no monitor; `{}` (the overhead \
         section's headline configuration) with `--hook-tier tracepoint`, which never loads the fentry rows; \
         and the same with `--hook-tier auto`, where every concern whose fentry rows all attach is served by \
         them and its tracepoints are not attached. The agent's stdout goes to a file on the guest's tmpfs, \
         so the cost of output is included. Cells give the median and range over runs of the ratio to no \
         monitor in the same run; the last column is the time under `auto` over the time under the tracepoint \
         tier in the same run.\n",
        v.loop_secs, v.loop_max_secs, v.runs, v.agent_mode
    );
    let configs = [TRACEPOINT, AUTO];
    let _ = writeln!(
        md,
        "| loop | iterations | no monitor, per iteration (emulated) | {} | {} | `auto` over `tracepoint` |\n| --- | --- | --- | --- | --- | --- |",
        heading(TRACEPOINT),
        heading(AUTO)
    );
    for l in &v.loops {
        let _ = write!(
            md,
            "| {} | {} | {} |",
            l.label,
            num(l.iterations as f64),
            l.baseline_ns.as_ref().map(ns).unwrap_or("–".into())
        );
        for c in configs {
            let cell = v.ratio(l.kind, c).as_ref().map(ratio).unwrap_or("–".into());
            let _ = write!(md, " {cell} |");
        }
        let both = l
            .auto_over_tracepoint
            .as_ref()
            .map(ratio)
            .unwrap_or("–".into());
        let _ = writeln!(md, " {both} |");
    }
    let early = v.samples.iter().filter(|s| s.stopped_early).count();
    if early > 0 {
        let _ = writeln!(
            md,
            "\n{early} loop(s) reached the {} s limit before their iterations; their time per iteration is over \
             the iterations done.",
            v.loop_max_secs
        );
    }
    let _ = writeln!(md);
    tiers(md, v);
    sessions(md, v);
    findings(md, v);
}

fn tiers(md: &mut String, v: &VmBench) {
    let _ = writeln!(
        md,
        "The tier of each concern in the guest, from the agent's start-up line (`kernel hooks attached ... tiers=`):\n"
    );
    let _ = writeln!(
        md,
        "| concern | {} | {} |\n| --- | --- | --- |",
        heading(TRACEPOINT),
        heading(AUTO)
    );
    let of = |config: &str| v.tiers.iter().find(|t| t.config == config);
    let mut concerns: Vec<&str> = Vec::new();
    for t in &v.tiers {
        for c in &t.concerns {
            if !concerns.contains(&c.concern.as_str()) {
                concerns.push(&c.concern);
            }
        }
    }
    for concern in &concerns {
        let cell = |config: &str| {
            of(config)
                .and_then(|t| t.concerns.iter().find(|c| c.concern == *concern))
                .map_or("–".to_owned(), |c| c.tier.clone())
        };
        let _ = writeln!(md, "| {concern} | {} | {} |", cell(TRACEPOINT), cell(AUTO));
    }
    for t in v.tiers.iter().filter(|t| t.varied) {
        let _ = writeln!(
            md,
            "\nUnder {} the tiers were not the same in every run; the table gives the first run's.",
            heading(t.config)
        );
    }
    if concerns.is_empty() {
        let _ = writeln!(md, "| (the agent logged no tiers) | – | – |");
    }
    let _ = writeln!(md);
}

fn sessions(md: &mut String, v: &VmBench) {
    let _ = writeln!(
        md,
        "What the agent did while the four loops of one run ran (median over runs; emulated times). The loops \
         start once the agent is idle (at most 2 clock ticks of CPU in each of two half seconds, or after \
         15 s), so the first loop does not pay for the agent's start-up work:\n"
    );
    let _ = writeln!(
        md,
        "| configuration | start to ready | start to idle | lines printed | lost | CPU time |\n| --- | --- | --- | --- | --- | --- |"
    );
    for c in [TRACEPOINT, AUTO] {
        let ss: Vec<_> = v.sessions.iter().filter(|s| s.config == c).collect();
        let f = |get: &dyn Fn(&VmSession) -> Option<f64>| {
            Spread::of(&ss.iter().filter_map(|s| get(s)).collect::<Vec<_>>())
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            heading(c),
            spread_with(&f(&|s| s.ready_secs), |x| format!("{x:.1} s")),
            spread_with(&f(&|s| s.quiet_secs), |x| format!("{x:.1} s")),
            spread_with(&f(&|s| s.lines.map(|x| x as f64)), num),
            spread_with(&f(&|s| s.lost.map(|x| x as f64)), num),
            spread_with(&f(&|s| s.cpu_s), |x| format!("{x:.2} s")),
        );
    }
    let _ = writeln!(md);
}

fn findings(md: &mut String, v: &VmBench) {
    let _ = writeln!(md, "### What this shows\n");
    let fentry = v.concerns_on(AUTO, "fentry");
    let still = v.concerns_on(AUTO, "tracepoint");
    if fentry.is_empty() {
        let _ = writeln!(
            md,
            "- No concern had the fentry tier under `--hook-tier auto` in this run, so both agent columns \
             measure the same hooks: their difference is the noise of the emulation."
        );
    } else {
        let _ = writeln!(
            md,
            "- Under `--hook-tier auto` the fentry tier served {} of {} concerns ({}){}.",
            fentry.len(),
            fentry.len() + still.len() + v.concerns_on(AUTO, "none").len(),
            fentry.join(", "),
            if still.is_empty() {
                String::new()
            } else {
                format!("; still on tracepoints: {}", still.join(", "))
            }
        );
    }
    if let Some((r, verdict)) = control_verdict(v) {
        let tp = v
            .ratio("getppid", TRACEPOINT)
            .map(|t| format!(" (tracepoint tier: {:.2}×)", t.median))
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "- **getppid (control)** under `--hook-tier auto`: {:.2}×{tp} against a target of ≤ 1.02×: {verdict}. \
             No hook of the agent sees getppid; what it pays under the tracepoint tier is the syscall tracing \
             slow path every syscall of every task takes while any program is attached to a syscall \
             tracepoint. Under the fentry tier that path is gone only once no concern left attaches a \
             syscall tracepoint.",
            r.median
        );
    }
    for l in v.loops.iter().filter(|l| l.kind != "getppid") {
        if let (Some(t), Some(a)) = (v.ratio(l.kind, TRACEPOINT), v.ratio(l.kind, AUTO)) {
            let both = l
                .auto_over_tracepoint
                .map(|b| format!("; `auto` over tracepoint in the same run {:.2}×", b.median))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "- {}: tracepoint tier {:.2}×, `auto` {:.2}×{both} (no monitor {}).",
                l.label,
                t.median,
                a.median,
                l.baseline_ns
                    .as_ref()
                    .map(|b| format!("{} an iteration, emulated", ns(b)))
                    .unwrap_or("–".into())
            );
        }
    }
    let lossy: Vec<String> = v
        .sessions
        .iter()
        .filter(|s| s.lost.is_some_and(|l| l > 0))
        .map(|s| {
            format!(
                "run {} under {}: {}",
                s.run + 1,
                heading(s.config),
                num(s.lost.unwrap_or(0) as f64)
            )
        })
        .collect();
    if !lossy.is_empty() {
        let _ = writeln!(
            md,
            "- The agent reported events lost (its ring buffer full while it fell behind under emulation): {}.",
            lossy.join("; ")
        );
    }
    let boot = v
        .boot_secs
        .map(|b| format!("boot {b:.1} s, "))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "- The guest took {:.1} min ({boot}every run included).\n",
        v.wall_secs / 60.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::vm::{ConcernTier, ConfigTiers, VmSample, summarize};

    fn bench(auto_ns: f64, exec_tier: &str) -> VmBench {
        let sample = |config, ns| VmSample {
            run: 0,
            config,
            kind: "getppid",
            iterations: 1000,
            ns_per_iter: ns,
            stopped_early: false,
        };
        let samples = vec![
            sample("none", 1000.0),
            sample(TRACEPOINT, 1500.0),
            sample(AUTO, auto_ns),
        ];
        let tiers = |config, tier: &str| ConfigTiers {
            config,
            concerns: vec![ConcernTier {
                concern: "exec".into(),
                tier: tier.into(),
            }],
            varied: false,
        };
        VmBench {
            emulation: "QEMU TCG".into(),
            kernel: "6.12.0-test".into(),
            agent_mode: "monitor trace --kind all",
            runs: 1,
            loop_secs: 1.0,
            loop_max_secs: 4.0,
            loops: summarize(&samples, &[("getppid".into(), 1000)], 1),
            tiers: vec![tiers(TRACEPOINT, "tracepoint"), tiers(AUTO, exec_tier)],
            samples,
            sessions: Vec::new(),
            boot_secs: Some(6.0),
            wall_secs: 300.0,
        }
    }

    #[test]
    fn the_control_is_judged_only_with_the_fentry_tier() {
        let (r, v) = control_verdict(&bench(1010.0, "fentry")).unwrap();
        assert!((r.median - 1.01).abs() < 1e-9);
        assert_eq!(v, "met");
        let (_, v) = control_verdict(&bench(1100.0, "fentry")).unwrap();
        assert!(v.starts_with("**missed**"), "{v}");
        let (_, v) = control_verdict(&bench(1010.0, "tracepoint")).unwrap();
        assert!(v.starts_with("not shown"), "{v}");
    }

    #[test]
    fn the_section_is_marked_emulated_and_lists_tiers() {
        let mut md = String::new();
        vm(&mut md, &bench(1010.0, "fentry"));
        assert!(md.contains("**Emulated**"), "{md}");
        assert!(
            md.contains("| getppid (control) | 1,000 | 1000 ns | 1.50× | 1.01× | 0.67× |"),
            "{md}"
        );
        assert!(md.contains("| exec | tracepoint | fentry |"), "{md}");
        assert!(
            md.contains("fentry tier served 1 of 1 concerns (exec)"),
            "{md}"
        );
    }
}
