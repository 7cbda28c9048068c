//! The throughput section: events a second the agent takes without
//! loss, under `trace` and under `run`.
use std::fmt::Write as _;

use super::{
    super::{profile::Profile, throughput::Throughput},
    format::{num, spread_with},
    targets::throughput_verdict,
};

pub(super) fn throughput(md: &mut String, t: &Throughput, profiles: Option<&[Profile]>) {
    let _ = writeln!(md, "## Throughput without loss\n");
    let _ = writeln!(
        md,
        "`monitor trace --cgroup <bench dir> --kind file` with its stdout drained and counted; the workload binary \
         makes open-write-close events on /dev/shm at a paced rate (one generator up to 100,000/s, two above). After \
         each step the agent gets SIGTERM; `lost_total=` and `records=` come from its final log line. Lossless \
         means the agent counted no lost record and printed a line for every event.\n"
    );
    let _ = writeln!(
        md,
        "| target rate | achieved | lost (kernel) | lines missing | agent CPU (cores) | lossless | answered SIGTERM, final line |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &t.rates {
        let _ = writeln!(
            md,
            "| {}/s | {} | {} | {} | {} | {}/{} | {} |",
            num(r.target_rate as f64),
            spread_with(&r.achieved_rate, |v| format!("{}/s", num(v))),
            spread_with(&r.lost, num),
            spread_with(&r.missing_lines, num),
            spread_with(&r.agent_cores, |v| format!("{v:.2}")),
            r.lossless_reps,
            r.reps,
            if r.agent_always_answered {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    let _ = writeln!(md, "\n### What this shows\n");
    let all_lossless = t.rates.iter().all(|r| r.lossless_reps == r.reps);
    match (t.highest_lossless_target, t.highest_lossless_achieved) {
        (Some(_), Some(a)) if all_lossless => {
            let _ = writeln!(
                md,
                "- No loss at any step; the highest rate the generators achieved was {}/s.",
                num(a)
            );
        }
        (Some(tr), Some(a)) => {
            let _ = writeln!(
                md,
                "- No loss up to the {}/s step (at most {}/s achieved).",
                num(tr as f64),
                num(a)
            );
        }
        _ => {
            let _ = writeln!(md, "- Events were lost even at the lowest step.");
        }
    }
    if let Some(first_loss) = t
        .rates
        .iter()
        .find(|r| r.reps > 0 && r.lossless_reps < r.reps)
    {
        let lost = first_loss.lost.map(|l| l.median).unwrap_or(0.0);
        let missing = first_loss.missing_lines.map(|l| l.median).unwrap_or(0.0);
        let _ = writeln!(
            md,
            "- Above it, at {}/s ({}/s achieved): the kernel counted {} records it could not reserve in the \
             ring buffer and {} events had no line; the agent {} SIGTERM and printed its final count, so the \
             loss was reported, not silent. Its CPU use ({} cores) shows the single reader is the limit.",
            num(first_loss.target_rate as f64),
            spread_with(&first_loss.achieved_rate, num),
            num(lost),
            num(missing),
            if first_loss.agent_always_answered {
                "stayed alive, answered"
            } else {
                "did **not** always answer"
            },
            spread_with(&first_loss.agent_cores, |v| format!("{v:.2}"))
        );
        if let (Some(cap), Some(rate)) = (
            t.ring_capacity_records,
            first_loss.achieved_rate.map(|a| a.median),
        ) {
            let _ = writeln!(
                md,
                "- The ring buffer ({} MiB, the agent's default) holds {} file records of {} bytes: at {}/s \
                 that is {:.0} ms of events. A reader that does not run for that long (descheduled on a busy \
                 machine, or slower than the rate) loses what comes after. Smaller records (each carries two \
                 {}-byte path buffers and two {}-byte directory buffers at full size) or a larger buffer \
                 would stretch that.",
                t.ring_buffer_bytes.unwrap_or(0) >> 20,
                num(cap as f64),
                num(t.file_record_bytes as f64),
                num(rate),
                cap as f64 / rate.max(1.0) * 1000.0,
                monitor_common::PATH_LEN,
                monitor_common::DIR_LEN
            );
        }
    }
    let short: Vec<String> = t
        .rates
        .iter()
        .filter(|r| {
            r.achieved_rate
                .is_some_and(|a| a.median < 0.95 * r.target_rate as f64)
        })
        .map(|r| {
            format!(
                "{}/s reached {}/s",
                num(r.target_rate as f64),
                spread_with(&r.achieved_rate, num)
            )
        })
        .collect();
    if !short.is_empty() {
        let _ = writeln!(
            md,
            "- The generators could not reach every target on this machine ({}): with the agent and the \
             generators sharing the CPUs, the achieved rate, not the target, is the figure to read.",
            short.join("; ")
        );
    }
    if let Some(p) = profiles.and_then(|p| p.iter().find(|p| p.subject == "agent")) {
        let top: Vec<String> = p
            .top
            .iter()
            .take(4)
            .map(|s| format!("`{}` {:.1} %", short_symbol(&s.symbol), s.percent))
            .collect();
        let _ = writeln!(
            md,
            "- Profile of the agent at 200,000/s: {:.1} % of its samples in the kernel ({:.1} % where a \
             thread is switched back in, i.e. it sleeps and wakes very often), {:.1} % in JSON rendering, \
             {:.1} % in writing to the pipe; top symbols {}.{}",
            p.kernel_percent,
            p.switch_percent,
            p.json_percent,
            p.write_percent,
            top.join(", "),
            p.agent_us_per_event
                .map(|u| format!(" It used {u:.1} µs of CPU per event."))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(md);
    if let Some(run) = &t.run {
        throughput_run(md, t, run);
    }
}

fn throughput_run(md: &mut String, trace: &Throughput, run: &Throughput) {
    let _ = writeln!(
        md,
        "### Under `monitor run`
"
    );
    let _ = writeln!(
        md,
        "The same ladder into `monitor run --rules rules/` (the shipped pack). It prints only alerts, and \
         writing under /dev/shm breaks no shipped rule, so lossless means no record lost in the kernel and a \
         record read for every event (`records=` of its final line, which also counts the generators' own \
         exec, fork and exit records).\n"
    );
    let _ = writeln!(
        md,
        "| target rate | achieved | lost (kernel) | records missing | agent CPU (cores) | trace's CPU at this step | lossless |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &run.rates {
        let tr = trace.rates.iter().find(|x| x.target_rate == r.target_rate);
        let _ = writeln!(
            md,
            "| {}/s | {} | {} | {} | {} | {} | {}/{} |",
            num(r.target_rate as f64),
            spread_with(&r.achieved_rate, |v| format!("{}/s", num(v))),
            spread_with(&r.lost, num),
            spread_with(&r.missing_lines, num),
            spread_with(&r.agent_cores, |v| format!("{v:.2}")),
            tr.map(|t| spread_with(&t.agent_cores, |v| format!("{v:.2}")))
                .unwrap_or("–".into()),
            r.lossless_reps,
            r.reps,
        );
    }
    let (measured, _) = throughput_verdict(run);
    let _ = writeln!(
        md,
        "\n- `monitor run`: {measured}. It renders no JSON for these events, so where trace's CPU goes to \
         rendering and writing lines, run's goes to matching.\n"
    );
}

pub(super) fn short_symbol(s: &str) -> String {
    let s = s.split(" (").next().unwrap_or(s);
    if s.len() > 70 {
        format!("{}…", &s[..s.floor_char_boundary(70)])
    } else {
        s.to_owned()
    }
}
