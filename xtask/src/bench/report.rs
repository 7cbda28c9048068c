//! `BENCHMARKS.md` from the results: tables, then what they show, in words
//! drawn from the same figures (the file is regenerated, never hand-edited).
use std::fmt::Write as _;

use super::{
    Results,
    memory::Memory,
    overhead::{BASELINE, Overhead, RUN, TRACE},
    pipeline::{Pipeline, TARGET_EPS, TARGET_RULES},
    profile::Profile,
    stats::Spread,
    throughput::Throughput,
};

fn ratio(s: &Spread) -> String {
    if s.n == 1 {
        format!("{:.2}×", s.median)
    } else {
        format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max)
    }
}

fn ns(s: &Spread) -> String {
    let f = |v: f64| {
        if v >= 10_000.0 {
            format!("{:.1} µs", v / 1000.0)
        } else {
            format!("{v:.0} ns")
        }
    };
    if s.n == 1 {
        f(s.median)
    } else {
        format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
    }
}

fn num(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn spread_with(s: &Option<Spread>, f: impl Fn(f64) -> String) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 || s.min == s.max => f(s.median),
        Some(s) => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
    }
}

/// "met", or "missed by 0.07× (7 % over)".
fn verdict(measured: f64, target: f64) -> String {
    if measured <= target {
        "met".into()
    } else {
        format!(
            "**missed** by {:.2}× ({:.0} % over the allowed {:.0} %)",
            measured - target,
            (measured - target) * 100.0,
            (target - 1.0) * 100.0
        )
    }
}

pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `{}` on {} at commit `{}`; every raw figure is in `bench-results.json`. \
         Do not edit by hand: run the bench again.\n",
        r.command, r.generated_utc, r.commit
    );
    if m.busy {
        let _ = writeln!(
            md,
            "> **Measured on a busy shared machine** (load average {:.2} at the start, {:.2} at the end, on {} CPUs): \
             other engineers' builds and tests ran alongside, so absolute times are inflated and single runs vary. \
             The ratios below are taken within each run and summarised by the median and range over runs; \
             treat them as indicative until measured on a quiet machine.\n",
            m.loadavg_start[0], m.loadavg_end[0], m.cpus
        );
    }
    if !m.other_observers.is_empty() {
        let _ = writeln!(
            md,
            "> **Other observers were running** ({}): other agents and their kernel tests. Their programs \
             run on the same hooked syscalls in every configuration, the baseline included, which adds to \
             the baseline's time and lowers every ratio a little.\n",
            m.other_observers.join(", ")
        );
    }
    if r.plan.quick {
        let _ = writeln!(
            md,
            "> **Quick run** ({} interleaved runs, loops of about {} s, one pass of the other sections): a smoke test of the harness. \
             `cargo xtask bench` (9 runs, 1 s loops, 3 passes) gives the figures to quote.\n",
            r.plan.runs, r.plan.loop_secs
        );
    }
    let _ = writeln!(md, "| machine | |\n| --- | --- |");
    let _ = writeln!(md, "| kernel | {} |", m.kernel);
    let _ = writeln!(md, "| CPU | {} × {} |", m.cpu_model, m.cpus);
    let _ = writeln!(md, "| memory | {:.0} GiB |", m.mem_gib);
    let _ = writeln!(
        md,
        "| load average (1, 5, 15 min) | start {:.2} {:.2} {:.2}; end {:.2} {:.2} {:.2} |\n",
        m.loadavg_start[0],
        m.loadavg_start[1],
        m.loadavg_start[2],
        m.loadavg_end[0],
        m.loadavg_end[1],
        m.loadavg_end[2]
    );

    targets(&mut md, r);
    if let Some(o) = &r.overhead {
        overhead(&mut md, o, r.profile.as_deref());
    }
    if let Some(t) = &r.throughput {
        throughput(&mut md, t, r.profile.as_deref());
    }
    if let Some(l) = &r.latency {
        latency(&mut md, l);
    }
    if let Some(mem) = &r.memory {
        memory(&mut md, mem);
    }
    if let Some(p) = &r.pipeline {
        pipeline(&mut md, p);
    }
    if let Some(p) = &r.profile {
        profiles(&mut md, p);
    }

    let skipped: Vec<String> = super::ALL_SECTIONS
        .iter()
        .filter(|s| !r.sections_run.contains(s))
        .map(|s| format!("{s:?}").to_lowercase())
        .collect();
    if !r.not_measured.is_empty() || !skipped.is_empty() {
        let _ = writeln!(md, "## Not yet measured\n");
    }
    for n in &r.not_measured {
        let _ = writeln!(md, "- **{}**: {}.", n.what, n.why.trim_end_matches('.'));
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            md,
            "- **{}**: not run in this invocation (`--only`).",
            skipped.join(", ")
        );
    }
    if !r.not_measured.is_empty() || !skipped.is_empty() {
        let _ = writeln!(md);
    }
    if !r.notes.is_empty() || !r.errors.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
        for e in &r.errors {
            let _ = writeln!(md, "- **error**: {e}");
        }
        let _ = writeln!(md);
    }
    how_to_run(&mut md);
    durations(&mut md, r);
    md
}

fn durations(md: &mut String, r: &Results) {
    let parts: Vec<String> = r
        .section_secs
        .iter()
        .map(|(s, secs)| format!("{} {secs:.0} s", format!("{s:?}").to_lowercase()))
        .collect();
    let _ = writeln!(
        md,
        "\nThis invocation took {:.1} min in all, builds included ({}).",
        r.total_secs / 60.0,
        parts.join(", ")
    );
}

fn trace_ratio(o: &Overhead, kind: &str, config: &str) -> Option<Spread> {
    o.loops
        .iter()
        .find(|l| l.kind == kind)?
        .ratios
        .iter()
        .find(|x| x.config == config)?
        .ratio
}

fn targets(md: &mut String, r: &Results) {
    if r.overhead.is_none()
        && r.throughput.is_none()
        && r.latency.is_none()
        && r.memory.is_none()
        && r.pipeline.is_none()
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
    let _ = writeln!(md);
}

fn throughput_verdict(t: &Throughput) -> (String, String) {
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

fn overhead(md: &mut String, o: &Overhead, profiles: Option<&[Profile]>) {
    let measured: Vec<&str> = o
        .configs
        .iter()
        .filter(|c| c.status == "measured" && c.name != BASELINE)
        .map(|c| c.name)
        .collect();
    let _ = writeln!(md, "## Overhead on syscall micro-loops\n");
    let _ = writeln!(
        md,
        "Each loop is the compiled `workload` binary (xtask), run inside the bench's own cgroup v2 directory, in a \
         leaf named as Docker names a container's cgroup (`docker-<64 hex>.scope`, its Docker state files under \
         the agents' `--host-root`), so the agents see a container there; \
         the loops are sized to the same iteration count for every configuration. Each of {} runs starts every \
         configuration in turn (rotated per run) and runs the four loops under it (also rotated). A ratio is \
         the loop's time per iteration over the time with no monitor in the same run; cells give the median \
         and the range over runs. `monitor trace` watches the bench's cgroup (`--cgroup`, all kinds) and its \
         stdout is read and counted by the bench, so the cost of output is included. `monitor run` watches the \
         same cgroup with the shipped rules (`--rules rules/`), its alerts on stdout, drained and counted the \
         same way. auditd runs with one \
         keyed rule (`-a always,exit -F arch=b64 -S execve -S openat -S open -S creat -S rename -S renameat \
         -S renameat2 -S unlink -S unlinkat -S connect`, backlog 8192), machine-wide as audit rules are; \
         bpftrace prints exec, openat with write flags and connect of the bench's cgroup, line-buffered into \
         a pipe the bench drains. Once audit has been enabled since boot, the kernel gives every new task an \
         audit context whose cost every syscall pays even with auditd stopped (on this kind of machine it made a \
         `getppid` about 1.7× slower); so the bench loads `-a never,task` for every configuration but auditd, and removes it \
         at the end.\n",
        o.runs
    );
    let _ = write!(md, "| loop | iterations | no monitor, per iteration |");
    for c in &measured {
        let _ = write!(md, " {c} |");
    }
    let _ = write!(md, "\n| --- | --- | --- |");
    for _ in &measured {
        let _ = write!(md, " --- |");
    }
    let _ = writeln!(md);
    for l in &o.loops {
        let _ = write!(
            md,
            "| {} | {} | {} |",
            l.label,
            num(l.iterations as f64),
            l.baseline_ns.as_ref().map(ns).unwrap_or("–".into())
        );
        for c in &measured {
            let cell = l
                .ratios
                .iter()
                .find(|x| x.config == *c)
                .and_then(|x| x.ratio.as_ref())
                .map(ratio)
                .unwrap_or("–".into());
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);
    for c in o.configs.iter().filter(|c| c.status != "measured") {
        let _ = writeln!(
            md,
            "- `{}` {}: {}",
            c.name,
            c.status,
            c.note.as_deref().unwrap_or("")
        );
    }
    if o.configs.iter().any(|c| c.status != "measured") {
        let _ = writeln!(md);
    }

    // What each observer did while the four loops ran.
    let _ = writeln!(
        md,
        "What each observer did while the four loops of one run ran (median over runs):\n"
    );
    let _ = writeln!(
        md,
        "| observer | lines printed | lost | CPU time | CPU per line |\n| --- | --- | --- | --- | --- |"
    );
    for c in &measured {
        let ss: Vec<_> = o.sessions.iter().filter(|s| s.config == *c).collect();
        let lines = Spread::of(
            &ss.iter()
                .filter_map(|s| s.lines.map(|x| x as f64))
                .collect::<Vec<_>>(),
        );
        let lost = Spread::of(
            &ss.iter()
                .filter_map(|s| s.lost.map(|x| x as f64))
                .collect::<Vec<_>>(),
        );
        let cpu = Spread::of(&ss.iter().filter_map(|s| s.cpu_s).collect::<Vec<_>>());
        let per_line = Spread::of(
            &ss.iter()
                .filter_map(|s| Some(s.cpu_s? * 1e6 / s.lines.filter(|&l| l > 0)? as f64))
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(
            md,
            "| {c} | {} | {} | {} | {} |",
            spread_with(&lines, num),
            spread_with(&lost, num),
            spread_with(&cpu, |v| format!("{v:.2} s")),
            spread_with(&per_line, |v| format!("{v:.1} µs")),
        );
    }
    let _ = writeln!(
        md,
        "\n(auditd's CPU time is auditd's plus the kernel's kauditd thread; its lines are in the audit log, not counted.)\n"
    );

    let _ = writeln!(md, "### What this shows\n");
    let mut missed = Vec::new();
    for l in &o.loops {
        let Some(t) = trace_ratio(o, l.kind, TRACE) else {
            continue;
        };
        let peers: Vec<String> = ["auditd", "bpftrace"]
            .iter()
            .filter_map(|p| Some(format!("{p} {:.2}×", trace_ratio(o, l.kind, p)?.median)))
            .collect();
        let peers = if peers.is_empty() {
            String::new()
        } else {
            format!(" (in the same runs: {})", peers.join(", "))
        };
        let _ = writeln!(
            md,
            "- **{}**: `monitor trace` {:.2}× against a target of ≤ {:.2}×: {}{}.",
            l.label,
            t.median,
            l.target_ratio,
            verdict(t.median, l.target_ratio),
            peers
        );
        if t.median > l.target_ratio {
            missed.push(l.kind);
        }
    }
    if let Some(c) = trace_ratio(o, "getppid", TRACE) {
        let _ = writeln!(
            md,
            "- The control (`getppid`) passes no hook of the agent, so its ratio ({:.2}×) is the noise floor of \
             this run: other processes, and the agent's own threads, competing with the loop for the CPUs. \
             A hooked loop's excess over the control is what the hooks and the event's trip to userspace cost.",
            c.median
        );
    }
    if trace_ratio(o, "exec", "bpftrace").is_some() {
        let _ = writeln!(
            md,
            "- Lines are not like for like: for each fork+exec `monitor trace` prints three lines (fork, exec, \
             exit, with argv and the parent) where the bpftrace script prints one, and its file records carry \
             the resolved path (a dentry walk in the kernel)."
        );
    }
    for p in profiles
        .unwrap_or_default()
        .iter()
        .filter(|p| p.subject != "agent")
    {
        wakeup_finding(md, p);
    }
    let per_line: Vec<f64> = o
        .sessions
        .iter()
        .filter(|s| s.config == TRACE)
        .filter_map(|s| Some(s.cpu_s? * 1e6 / s.lines.filter(|&l| l > 0)? as f64))
        .collect();
    if let Some(pl) = Spread::of(&per_line) {
        let _ = writeln!(
            md,
            "- The agent used {:.1} µs of CPU per line it printed. On a 2-CPU machine that time is taken from \
             the workloads when they keep both CPUs busy.",
            pl.median
        );
    }
    run_findings(md, o);
    if missed.is_empty() {
        let _ = writeln!(md, "- Every overhead target is met in this run.");
    } else {
        let _ = writeln!(
            md,
            "- Missed here: {}. See the profile section for where the time goes.",
            missed.join(", ")
        );
    }
    let _ = writeln!(md);
}

/// `monitor run` next to `monitor trace`, and what it alerted on.
fn run_findings(md: &mut String, o: &Overhead) {
    if !o
        .configs
        .iter()
        .any(|c| c.name == RUN && c.status == "measured")
    {
        return;
    }
    let cells: Vec<String> = o
        .loops
        .iter()
        .filter_map(|l| {
            let r = trace_ratio(o, l.kind, RUN)?;
            let t = trace_ratio(o, l.kind, TRACE)
                .map(|t| format!(" (trace {:.2}×)", t.median))
                .unwrap_or_default();
            Some(format!("{} {:.2}×{t}", l.label, r.median))
        })
        .collect();
    let _ = writeln!(
        md,
        "- `monitor run` (the shipped rules, alerts on stdout drained by the bench): {}. It does all that trace \
         does up to the enriched event, then matches it against the rules instead of rendering it as JSON.",
        cells.join("; ")
    );
    let mut alerts: std::collections::BTreeMap<&str, u64> = Default::default();
    let sessions: Vec<_> = o.sessions.iter().filter(|s| s.config == RUN).collect();
    for s in &sessions {
        for (rule, n) in &s.alerts_by_rule {
            *alerts.entry(rule.as_str()).or_default() += n;
        }
    }
    if alerts.is_empty() {
        let _ = writeln!(
            md,
            "- The shipped rules raised no alert on these loops ({} runs): the workloads run in a Docker-named \
             container cgroup (`docker-<id>.scope`, image `{}`), so every container policy applies, but \
             running `/bin/true`, writing under `/dev/shm` and connecting to 127.0.0.1 break none of them \
             (no denied program, no protected path, loopback is on the egress allowlist). The cost of \
             alerting is in the latency section (an `sshd` in a container).",
            sessions.len(),
            super::LOAD_IMAGE
        );
    } else {
        let list: Vec<String> = alerts.iter().map(|(r, n)| format!("`{r}` {n}")).collect();
        let _ = writeln!(
            md,
            "- Alerts `monitor run` printed over {} runs of the loops: {}.",
            sessions.len(),
            list.join(", ")
        );
    }
}

/// What the call graph of a loop says about what the hooks cost it.
fn wakeup_finding(md: &mut String, p: &Profile) {
    let label = p
        .what
        .trim_start_matches("the ")
        .trim_end_matches(" under `monitor trace`");
    let hooks =
        p.inclusive_of("trace_call_bpf") + p.inclusive_of("__cgroup_bpf_run_filter_sock_addr");
    let send = p.inclusive_of("bpf_ringbuf_output") + p.inclusive_of("bpf_ringbuf_submit");
    let wake = p.inclusive_of("irq_work_queue");
    let slow_path = p.inclusive_of("syscall_trace_enter") + p.inclusive_of("syscall_exit_work");
    if hooks <= 0.0 {
        if slow_path > 0.0 {
            let _ = writeln!(
                md,
                "- Profile of the {label} under `monitor trace`: no program of the agent ran, but {slow_path:.1} % \
                 of its samples are in the syscall tracing path (`syscall_trace_enter`, `syscall_exit_work`): \
                 while any program, the agent's or another tool's, is attached to a syscall tracepoint, every \
                 syscall of every task takes that path, hooked or not. With no other observer running, that \
                 much of the control's ratio is the agent's; with others running the baseline pays it too."
            );
        }
        return;
    }
    let _ = write!(
        md,
        "- Profile of the {label} under `monitor trace` (call graphs, section Profile): {hooks:.1} % of its \
         samples are in the agent's kernel programs (callees included), of which {send:.1} % is sending \
         the record to the ring buffer and {wake:.1} % `irq_work_queue`; the programs' own work (filters, \
         copying paths, walking directories) is the remaining {:.1} %.",
        (hooks - send).max(0.0)
    );
    if wake >= 5.0 {
        let _ = write!(
            md,
            " The cost is the wake-up: a record sent while the reader has caught up makes the kernel wake \
             the reader through an irq_work, raised by a self-IPI, which is an x2APIC MSR write \
             (`native_write_msr`) and on this virtual machine a trap to the hypervisor. So every event pays \
             for a wake-up. Sending without one (`BPF_RB_NO_WAKEUP`) and waking the reader only past a fill \
             level (`bpf_ringbuf_query`) or on a short userspace timer would remove most of it and still fit \
             the 50 ms latency budget."
        );
    }
    let _ = writeln!(md);
}

fn throughput(md: &mut String, t: &Throughput, profiles: Option<&[Profile]>) {
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

fn short_symbol(s: &str) -> String {
    let s = s.split(" (").next().unwrap_or(s);
    if s.len() > 70 {
        format!("{}…", &s[..s.floor_char_boundary(70)])
    } else {
        s.to_owned()
    }
}

fn latency(md: &mut String, l: &super::latency::Latency) {
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

fn alert_latency(md: &mut String, l: &super::latency::Latency) {
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

fn memory(md: &mut String, m: &Memory) {
    let _ = writeln!(md, "## Memory\n");
    let _ = writeln!(
        md,
        "`monitor trace --cgroup <bench dir>`: VmRSS and VmHWM from `/proc/<pid>/status`, idle, then with 100 \
         and 1,000 cgroups made (mkdir) under the watched directory, then after removing them. Containers are \
         cgroups to the agent: each mkdir reaches it as a `cgroup_mkdir` event and goes into the kernel's filter map.\n"
    );
    let _ = writeln!(md, "| stage | VmRSS | VmHWM (peak) |\n| --- | --- | --- |");
    for s in &m.stages {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            s.stage,
            spread_with(&s.rss_mib, |v| format!("{v:.1} MiB")),
            spread_with(&s.hwm_mib, |v| format!("{v:.1} MiB"))
        );
    }
    let _ = writeln!(md, "\n### What this shows\n");
    let get = |name: &str| {
        m.stages
            .iter()
            .find(|s| s.stage == name)
            .and_then(|s| s.rss_mib)
            .map(|s| s.median)
    };
    if let (Some(idle), Some(k)) = (get("idle"), get("1,000 cgroups")) {
        let per = (k - idle) * 1024.0 / 1000.0;
        let growth = if per.abs() < 0.5 {
            "no measurable growth".to_owned()
        } else {
            format!("{per:.1} KiB per watched cgroup")
        };
        let _ = writeln!(
            md,
            "- Idle {idle:.1} MiB; with 1,000 cgroups {k:.1} MiB: {growth} in userspace (the kernel-side \
             filter map is charged to the memory cgroup, not to the agent's VmRSS)."
        );
    }
    let _ = writeln!(md);
    memory_run(md, m);
}

fn memory_run(md: &mut String, m: &Memory) {
    let _ = writeln!(md, "### `monitor run`: rules and containers\n");
    if let Some(note) = &m.run_note {
        let _ = writeln!(md, "Not measured: {note}.\n");
        return;
    }
    let _ = writeln!(
        md,
        "`monitor run` with 10 and with 1,000 generated rules (policies of a process, a file and an egress rule, \
         each selecting one image by a glob; the generator is `xtask/src/bench/synthetic.rs`, shared with the \
         pipeline benchmark), idle, then with 100 and 1,000 Docker containers made under the watched directory: \
         for each, Docker's `config.v2.json` and `hostconfig.json` (the real format, from `monitor/testdata`) \
         under the agent's `--host-root`, then a `docker-<id>.scope` cgroup. The bench reads VmRSS once the \
         agent's `monitor_containers_tracked` metric counts them all (plus the workload container), and half a \
         second later.\n"
    );
    let _ = writeln!(
        md,
        "| rules | containers | VmRSS | VmHWM (peak) |\n| --- | --- | --- | --- |"
    );
    for s in &m.run_summary {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            num(s.rules as f64),
            num(s.containers as f64),
            spread_with(&s.rss_mib, |v| format!("{v:.1} MiB")),
            spread_with(&s.hwm_mib, |v| format!("{v:.1} MiB"))
        );
    }
    let get = |rules: usize, containers: usize| {
        m.run_summary
            .iter()
            .find(|s| s.rules == rules && s.containers == containers)
            .and_then(|s| s.rss_mib)
            .map(|s| s.median)
    };
    let _ = writeln!(md, "\n### What this shows\n");
    if let (Some(a), Some(b)) = (get(10, 0), get(1000, 0)) {
        let _ = writeln!(
            md,
            "- 1,000 rules instead of 10 add {:.1} MiB ({:.1} KiB a rule: compiled glob sets and address tables).",
            b - a,
            (b - a) * 1024.0 / 990.0
        );
    }
    if let (Some(a), Some(b)) = (get(1000, 0), get(1000, 1000)) {
        let with_10 = match (get(10, 0), get(10, 1000)) {
            (Some(c), Some(d)) => format!("; with 10 rules {:.1} MiB", d - c),
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "- 1,000 containers add {:.1} MiB with 1,000 rules ({:.1} KiB a container: its registry entry, \
             the metadata read from its state files{with_10}). No event came from these containers, so the \
             evaluator's per-cgroup selection holds nothing for them here; it is one short vector a container \
             that has had events.",
            b - a,
            (b - a) * 1024.0 / 1000.0
        );
    }
    let missing: Vec<String> = m
        .run
        .iter()
        .filter(|s| s.tracked.is_none_or(|t| t < s.containers as u64))
        .map(|s| {
            format!(
                "{} rules, {} containers: the agent tracked {}",
                s.rules,
                s.containers,
                s.tracked.map_or("?".into(), |t| t.to_string())
            )
        })
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            md,
            "- Not every container was tracked when read: {}.",
            missing.join("; ")
        );
    }
    let _ = writeln!(md);
}

fn pipeline(md: &mut String, p: &Pipeline) {
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

fn profiles(md: &mut String, ps: &[Profile]) {
    let _ = writeln!(md, "## Profile\n");
    let _ = writeln!(
        md,
        "`perf record -g -e cpu-clock -F 997 -p <pid>` in separate passes (no timed figure is sampled): the \
         share of samples in a few kernel functions with their callees (inclusive), then the flat profile \
         (self).\n"
    );
    for p in ps {
        let _ = writeln!(md, "### {}\n", p.what);
        let mut facts = vec![
            format!("kernel {:.1} %", p.kernel_percent),
            format!("BPF programs and helpers {:.1} %", p.bpf_percent),
        ];
        if p.json_percent > 0.0 {
            facts.push(format!("JSON rendering {:.1} %", p.json_percent));
        }
        if p.write_percent > 0.0 {
            facts.push(format!("pipe writes {:.1} %", p.write_percent));
        }
        if p.subject == "agent" {
            facts.push(format!(
                "switched in (`finish_task_switch`) {:.1} %",
                p.switch_percent
            ));
        }
        if let Some(e) = p.events_per_sec {
            facts.push(format!("{}/s events", num(e)));
        }
        if let Some(u) = p.agent_us_per_event {
            facts.push(format!("{u:.1} µs agent CPU per event"));
        }
        let _ = writeln!(md, "{}.\n", facts.join("; "));
        if !p.inclusive.is_empty() {
            let _ = writeln!(
                md,
                "Inclusive (the function and what it calls): {}.\n",
                p.inclusive
                    .iter()
                    .map(|s| format!("`{}` {:.1} %", short_symbol(&s.symbol), s.percent))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(md, "Self (flat):\n");
        let _ = writeln!(md, "```");
        for s in &p.top {
            let _ = writeln!(
                md,
                "{:6.2} %  {:<20} {}",
                s.percent,
                short_symbol(&s.dso),
                short_symbol(&s.symbol)
            );
        }
        let _ = writeln!(md, "```\n");
    }
}

fn how_to_run(md: &mut String) {
    let _ = writeln!(
        md,
        "## How to run\n\n\
         As root, on a quiet machine for figures to quote:\n\n\
         ```\n\
         cargo xtask bench                 # 9 interleaved runs, 1 s loops, 3 passes of the rest\n\
         cargo xtask bench --quick         # smoke test: 3 runs, short loops, one pass\n\
         cargo xtask bench --runs 15 --only overhead,profile\n\
         cargo bench -p monitor --bench pipeline   # the pipeline benchmark alone\n\
         ```\n\n\
         It builds the agent and the workload binary in release mode, installs auditd and bpftrace with apt \
         when they are missing (`--no-install` skips them instead), and removes what it made when it ends, \
         also on error or ^C: its cgroup v2 directory, its files under /dev/shm, its audit rules (key \
         `monitor-bench`), the auditd it started and every process it started. Traffic stays on 127.0.0.1; \
         every loop is bounded in count and time."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_and_verdicts() {
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(999.0), "999");
        assert_eq!(verdict(1.03, 1.05), "met");
        assert!(verdict(1.12, 1.05).contains("0.07×"));
        let s = Spread {
            median: 1.5,
            min: 1.0,
            max: 2.0,
            n: 3,
        };
        assert_eq!(ratio(&s), "1.50× (1.00–2.00)");
        assert_eq!(ns(&Spread { n: 1, ..s }), "2 ns");
    }
}
