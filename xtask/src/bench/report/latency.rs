//! The latency section: kernel event to line on stdout (`monitor trace`) and
//! to alert (`monitor run`).
use std::fmt::Write as _;

use super::super::latency::Latency;

pub(super) fn latency(md: &mut String, l: &Latency) {
    let _ = writeln!(md, "## Latency: kernel event to line on stdout\n");
    let _ = writeln!(
        md,
        "The workload creates marker files at {} a second, each named after its CLOCK_MONOTONIC time just \
         before the open; the bench stamps each `monitor trace --kind file` line as it reads it from the pipe. \
         {} samples per pass.\n",
        l.rate, l.samples_per_rep
    );
    let _ = writeln!(
        md,
        "| pass | received / sent | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |"
    );
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.2} ms")).unwrap_or("–".into());
    for r in &l.reps {
        let _ = writeln!(
            md,
            "| {} | {} / {} | {} | {} | {} | {} |",
            r.rep + 1,
            r.received,
            r.sent,
            ms(r.p50_ms),
            ms(r.p90_ms),
            ms(r.p99_ms),
            ms(r.max_ms)
        );
    }
    let _ = writeln!(
        md,
        "| all | {} samples | {} | | {} | {} |",
        l.pooled_n,
        ms(l.pooled_p50_ms),
        ms(l.pooled_p99_ms),
        ms(l.pooled_max_ms)
    );
    let _ = writeln!(md, "\n### What this shows\n");
    if let Some(p99) = l.pooled_p99_ms {
        let _ = writeln!(
            md,
            "- p99 {p99:.2} ms against a target of < 50 ms: {}. The path is the ring buffer's wake-up, the \
             reader task, the channel to the output loop, JSON rendering and a flushed write per line; at a \
             moderate rate nothing queues, so the tail is scheduling delay on a shared machine.",
            if p99 < 50.0 { "met" } else { "**missed**" }
        );
    }
    let lost: u64 = l.reps.iter().map(|r| r.sent - r.received.min(r.sent)).sum();
    if lost > 0 {
        let _ = writeln!(md, "- {lost} markers never arrived as a line.");
    }
    let _ = writeln!(md);
    if let Some(a) = &l.alert {
        alert_latency(md, a);
    }
}

fn alert_latency(md: &mut String, l: &Latency) {
    let _ = writeln!(md, "### Kernel event to alert on stdout (`monitor run`)\n");
    let _ = writeln!(
        md,
        "`monitor run --rules rules/` (the shipped pack, default dedup window and rate limit). The workload \
         executes a copy of /bin/true named `sshd` (the `ssh-server` rule) in {} Docker containers \
         (`docker-<id>.scope` cgroups under the bench's directory, Docker state files under `--host-root`), at \
         {} a second, its argument carrying the CLOCK_MONOTONIC time taken in the child just before execve; \
         the bench stamps each alert line as it reads it. Each exec runs its own path (`<dir>/<n>/sshd`) so no \
         alert folds into another, and no container raises more than 40, within the rate limiter's burst of 50. \
         {} samples per pass.\n",
        l.containers, l.rate, l.samples_per_rep
    );
    let _ = writeln!(
        md,
        "| pass | received / sent | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |"
    );
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.2} ms")).unwrap_or("–".into());
    for r in &l.reps {
        let _ = writeln!(
            md,
            "| {} | {} / {} | {} | {} | {} | {} |",
            r.rep + 1,
            r.received,
            r.sent,
            ms(r.p50_ms),
            ms(r.p90_ms),
            ms(r.p99_ms),
            ms(r.max_ms)
        );
    }
    let _ = writeln!(
        md,
        "| all | {} samples | {} | | {} | {} |\n",
        l.pooled_n,
        ms(l.pooled_p50_ms),
        ms(l.pooled_p99_ms),
        ms(l.pooled_max_ms)
    );
    let list: Vec<String> = l
        .alerts_by_rule
        .iter()
        .map(|(r, n)| format!("`{r}` {n}"))
        .collect();
    if let Some(p99) = l.pooled_p99_ms {
        let _ = writeln!(
            md,
            "- p99 {p99:.2} ms against a target of < 50 ms: {}. Beyond trace's path the alert is matched, \
             folded (first of its key: sent at once), rate-limited, and queued to the stdout sink's own task.",
            if p99 < 50.0 { "met" } else { "**missed**" }
        );
    }
    if !list.is_empty() {
        let _ = writeln!(md, "- Every alert printed, by rule: {}.", list.join(", "));
    }
    let _ = writeln!(md);
}
