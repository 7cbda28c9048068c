//! "Targets at a glance": each figure the issue sets a target for, beside
//! the target and whether it was met; separate because it reads every
//! section's results. The trace-to-baseline ratio and the throughput
//! verdict it computes are reused by the overhead and throughput sections.
use std::fmt::Write as _;

use super::{
    super::{
        Results,
        overhead::{Overhead, RUN, TRACE},
        pipeline::{TARGET_EPS, TARGET_RULES},
        stats::Spread,
        throughput::Throughput,
    },
    format::{num, ratio, verdict},
};

pub(super) fn trace_ratio(o: &Overhead, kind: &str, config: &str) -> Option<Spread> {
    o.loops
        .iter()
        .find(|l| l.kind == kind)?
        .ratios
        .iter()
        .find(|x| x.config == config)?
        .ratio
}

pub(super) fn targets(md: &mut String, r: &Results) {
    if r.overhead.is_none()
        && r.throughput.is_none()
        && r.latency.is_none()
        && r.memory.is_none()
        && r.pipeline.is_none()
        && r.vm.is_none()
    {
        return;
    }
    let _ = writeln!(md, "## Targets at a glance\n");
    let _ = writeln!(
        md,
        "No test asserts these; the bench reports against them.\n"
    );
    let _ = writeln!(
        md,
        "| what | target | measured (median, range) | |\n| --- | --- | --- | --- |"
    );
    if let Some(o) = &r.overhead {
        for l in &o.loops {
            if let Some(t) = trace_ratio(o, l.kind, TRACE) {
                let _ = writeln!(
                    md,
                    "| overhead of `monitor trace`, {} | ≤ {:.2}× | {} | {} |",
                    l.label,
                    l.target_ratio,
                    ratio(&t),
                    verdict(t.median, l.target_ratio)
                );
            }
        }
        for l in &o.loops {
            if let Some(t) = trace_ratio(o, l.kind, RUN) {
                let _ = writeln!(
                    md,
                    "| overhead of `monitor run` (shipped rules), {} | ≤ {:.2}× | {} | {} |",
                    l.label,
                    l.target_ratio,
                    ratio(&t),
                    verdict(t.median, l.target_ratio)
                );
            }
        }
        for l in &o.loops {
            for b in &l.trace_below {
                if b.runs_compared > 0 {
                    let ok = b.runs_below == b.runs_compared;
                    let _ = writeln!(
                        md,
                        "| `monitor trace` below {}, {} | every run | below in {}/{} runs | {} |",
                        b.peer,
                        l.label,
                        b.runs_below,
                        b.runs_compared,
                        if ok { "met" } else { "**missed**" }
                    );
                }
            }
        }
    }
    if let Some(t) = &r.throughput {
        let at_200k = t.rates.iter().find(|x| x.target_rate == 200_000);
        let measured = match (t.highest_lossless_target, t.highest_lossless_achieved) {
            (Some(tr), Some(a)) => format!(
                "no loss up to the {}/s step (at most {}/s achieved)",
                num(tr as f64),
                num(a)
            ),
            _ => "loss at the lowest step".into(),
        };
        let verdict = match at_200k {
            Some(s) if s.reps > 0 && s.lossless_reps < s.reps => "**missed**".to_owned(),
            Some(s) if s.achieved_rate.is_some_and(|a| a.median >= 190_000.0) => "met".to_owned(),
            Some(s) => format!(
                "not shown: no loss, but the generators reached only {}/s here",
                s.achieved_rate.map(|a| num(a.median)).unwrap_or("?".into())
            ),
            None => "not run".to_owned(),
        };
        let _ = writeln!(
            md,
            "| throughput, `monitor trace` | no loss at 200,000 events/s | {measured} | {verdict} |"
        );
        if let Some(run) = &t.run {
            let (measured, verdict) = throughput_verdict(run);
            let _ = writeln!(
                md,
                "| throughput, `monitor run` | no loss at 200,000 events/s | {measured} | {verdict} |"
            );
        }
    }
    if let Some(l) = &r.latency
        && let Some(p99) = l.pooled_p99_ms
    {
        let _ = writeln!(
            md,
            "| latency, kernel event to stdout line | p99 < 50 ms | p99 {p99:.2} ms over {} samples | {} |",
            l.pooled_n,
            if p99 < 50.0 { "met" } else { "**missed**" }
        );
    }
    if let Some(a) = r.latency.as_ref().and_then(|l| l.alert.as_deref())
        && let Some(p99) = a.pooled_p99_ms
    {
        let _ = writeln!(
            md,
            "| latency, kernel event (exec of `sshd` in a container) to alert on stdout | p99 < 50 ms | p50 {:.2} ms, p99 {p99:.2} ms over {} samples | {} |",
            a.pooled_p50_ms.unwrap_or(f64::NAN),
            a.pooled_n,
            if p99 < 50.0 { "met" } else { "**missed**" }
        );
    }
    if let Some(m) = &r.memory
        && let Some(s) = m
            .run_summary
            .iter()
            .find(|s| s.rules == 1000 && s.containers == 1000)
        && let Some(rss) = s.rss_mib
    {
        let peak = s.hwm_mib.map(|h| h.median).unwrap_or(rss.median);
        let _ = writeln!(
            md,
            "| memory of `monitor run`, 1,000 containers and 1,000 rules | < 64 MiB | VmRSS {:.1} MiB (peak {peak:.1} MiB) | {} |",
            rss.median,
            if peak < 64.0 { "met" } else { "**missed**" }
        );
    }
    if let Some(p) = &r.pipeline
        && let Some(c) = p.case(TARGET_RULES)
        && let Some(eps) = c.eps
    {
        let _ = writeln!(
            md,
            "| pipeline (decode + enrich + match), one core, {} rules | ≥ {}/s | {}/s | {} |",
            num(TARGET_RULES as f64),
            num(TARGET_EPS),
            num(eps),
            if eps >= TARGET_EPS {
                "met".to_owned()
            } else {
                format!("**missed** by {:.0} %", (1.0 - eps / TARGET_EPS) * 100.0)
            }
        );
    }
    if let Some(v) = &r.vm
        && let Some((t, verdict)) = super::vm::control_verdict(v)
    {
        let _ = writeln!(
            md,
            "| overhead of `monitor trace`, getppid (control), 6.12 VM, fentry tier (`--hook-tier auto`; emulated) | ≤ 1.02× | {} | {verdict} |",
            ratio(&t)
        );
    }
    let _ = writeln!(md);
}

pub(super) fn throughput_verdict(t: &Throughput) -> (String, String) {
    let at_200k = t.rates.iter().find(|x| x.target_rate == 200_000);
    let measured = match (t.highest_lossless_target, t.highest_lossless_achieved) {
        (Some(tr), Some(a)) => format!(
            "no loss up to the {}/s step (at most {}/s achieved)",
            num(tr as f64),
            num(a)
        ),
        _ => "loss at the lowest step".into(),
    };
    let verdict = match at_200k {
        Some(s) if s.reps > 0 && s.lossless_reps < s.reps => "**missed**".to_owned(),
        Some(s) if s.achieved_rate.is_some_and(|a| a.median >= 190_000.0) => "met".to_owned(),
        Some(s) => format!(
            "not shown: no loss, but the generators reached only {}/s here",
            s.achieved_rate.map(|a| num(a.median)).unwrap_or("?".into())
        ),
        None => "not run".to_owned(),
    };
    (measured, verdict)
}
