//! The pipeline section: decode, enrich and match on one core, measured on
//! synthetic events against its events-a-second and rule-count targets.
use std::fmt::Write as _;

use super::{
    super::pipeline::{Pipeline, TARGET_EPS, TARGET_RULES},
    format::num,
    throughput::short_symbol,
};

pub(super) fn pipeline(md: &mut String, p: &Pipeline) {
    let _ = writeln!(md, "## Pipeline: decode + enrich + match on one core\n");
    let _ = writeln!(
        md,
        "`{}` (criterion, `monitor/benches/pipeline.rs`; {:.0} s here). A batch of recorded events, built in the \
         real `monitor-common` layouts and cut to the length the kernel sends: 10 % exec, 45 % file open, 10 % \
         rename, 35 % connect, from 16 Docker containers (4 workers each) and a fifth from host processes. Each \
         is decoded, enriched (process table, cgroup registry seeded from a fake host: a cgroup2 tree, a `/proc`, \
         Docker state files) and matched by the `Evaluator` (detectors included); nothing is printed. Rule \
         sets: generated policies of three rules each, each selecting one image by a glob (12 of the 16 \
         containers' images are selected by one policy when there are that many; the others by none), and \
         the shipped pack.\n",
        p.command, p.run_secs
    );
    let _ = writeln!(
        md,
        "| rules | policies | events/s (one core) | range | per event | findings per batch | rule load |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for c in &p.cases {
        let name = c.id.trim_start_matches("pipeline/");
        let label = if name.starts_with("default-pack") {
            format!("shipped pack ({})", c.rules)
        } else {
            num(c.rules as f64)
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} / {} | {} |",
            num(c.policies as f64),
            c.eps.map(|e| format!("{}/s", num(e))).unwrap_or("–".into()),
            match (c.eps_low, c.eps_high) {
                (Some(a), Some(b)) => format!("{}–{}", num(a), num(b)),
                _ => "–".into(),
            },
            c.eps
                .map(|e| format!("{:.2} µs", 1e6 / e))
                .unwrap_or("–".into()),
            c.findings,
            c.events,
            c.load_ms
                .filter(|_| !name.starts_with("default-pack"))
                .map(|m| format!("{m:.0} ms"))
                .unwrap_or("–".into()),
        );
    }
    let _ = writeln!(md, "\n### What this shows\n");
    if let Some(c) = p.case(TARGET_RULES)
        && let Some(eps) = c.eps
    {
        let _ = writeln!(
            md,
            "- With {} rules: {}/s against a target of {}/s per core: {}.",
            num(TARGET_RULES as f64),
            num(eps),
            num(TARGET_EPS),
            if eps >= TARGET_EPS {
                "met".to_owned()
            } else {
                format!("**missed** by {:.0} %", (1.0 - eps / TARGET_EPS) * 100.0)
            }
        );
    }
    let rates: Vec<f64> = p
        .cases
        .iter()
        .filter(|c| c.id.starts_with("pipeline/rules/"))
        .filter_map(|c| c.eps)
        .collect();
    if let (Some(max), Some(min)) = (
        rates.iter().copied().reduce(f64::max),
        rates.iter().copied().reduce(f64::min),
    ) {
        let _ = writeln!(
            md,
            "- From 10 to 10,000 rules the rate stays within {:.0} % ({}/s to {}/s): the evaluator remembers \
             per cgroup which policies select the workload, so an event is matched only against the rules of \
             the policies that select it. (Before that, each event checked every policy's selector, a glob \
             match each: 1,000 rules gave about 7,800 events/s and 10,000 rules about 80.)",
            (1.0 - min / max) * 100.0,
            num(min),
            num(max)
        );
    }
    if !p.stages.is_empty() {
        let list: Vec<String> = p
            .stages
            .iter()
            .map(|h| format!("{} {:.1} %", h.symbol, h.percent))
            .collect();
        let _ = writeln!(
            md,
            "- Where the {}-rule case spends its time (`perf record` of the loop, 5 s, with the rule sets' \
             loading in the recording; self time by symbol, grouped): {}. Most of an event's time is building \
             the enriched event, not matching it: decoding copies the record into a zeroed struct and makes \
             owned strings (comm, path, flag names); enriching clones the process's exe, argv and ancestry (a \
             string per ancestor) and the container's seven fields into every event, hence the allocator, \
             memmove and string building; the tables are `HashMap`s with SipHash. Sharing those with the \
             tables (`Arc<str>`, an `Arc` of the container) instead of cloning them is the next step for \
             headroom; it changes the types of `EnrichedEvent` that every stage uses, so it is not done here. \
             Done here: a file or network event refreshes its process in the table in place instead of cloning \
             the entry (its argv) and inserting it again, and the ancestry walk detects loops from the \
             ancestors it has listed instead of a second vector per event.",
            num(TARGET_RULES as f64),
            list.join(", ")
        );
    }
    if !p.profile.is_empty() {
        let _ = writeln!(md, "\nSelf time, top symbols:\n\n```");
        for h in &p.profile {
            let _ = writeln!(md, "{:6.2} %  {}", h.percent, short_symbol(&h.symbol));
        }
        let _ = writeln!(md, "```");
    }
    if let Some(n) = &p.profile_note {
        let _ = writeln!(md, "- {n}.");
    }
    let _ = writeln!(md);
}
