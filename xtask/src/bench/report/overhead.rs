//! The overhead section: the workloads' time under each configuration
//! against no monitor, and what the runs and wake-up profiles show.
use std::fmt::Write as _;

use super::{
    super::{
        LOAD_IMAGE,
        overhead::{BASELINE, Overhead, RUN, RUN_PROFILE, TRACE},
        profile::Profile,
        stats::Spread,
    },
    format::{ns, num, ratio, spread_with, verdict},
    targets::trace_ratio,
};

pub(super) fn overhead(md: &mut String, o: &Overhead, profiles: Option<&[Profile]>) {
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

/// Each loop's median ratio under `config`, with `beside`'s in brackets
/// (`label 1.23× (trace 1.30×)`): one cell per loop measured under `config`.
fn ratio_cells(o: &Overhead, config: &str, beside: &str, label: &str) -> Vec<String> {
    o.loops
        .iter()
        .filter_map(|l| {
            let r = trace_ratio(o, l.kind, config)?;
            let b = trace_ratio(o, l.kind, beside)
                .map(|b| format!(" ({label} {:.2}×)", b.median))
                .unwrap_or_default();
            Some(format!("{} {:.2}×{b}", l.label, r.median))
        })
        .collect()
}

/// `monitor run --syscall-profile` next to `monitor run`: what the opt-in
/// hook on every syscall costs.
fn profile_findings(md: &mut String, o: &Overhead) {
    let cells = ratio_cells(o, RUN_PROFILE, RUN, "without it");
    if cells.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "- `monitor run --syscall-profile docker-default` (the opt-in unexpected-syscall program on \
         `raw_syscalls/sys_exit`, which every syscall of the host passes while it is attached): {}. \
         The control's ratio against `monitor run`'s is the price of turning it on; the default \
         (`off`) does not pay it.",
        cells.join("; ")
    );
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
    let cells = ratio_cells(o, RUN, TRACE, "trace");
    let _ = writeln!(
        md,
        "- `monitor run` (the shipped rules, alerts on stdout drained by the bench): {}. It does all that trace \
         does up to the enriched event, then matches it against the rules instead of rendering it as JSON.",
        cells.join("; ")
    );
    profile_findings(md, o);
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
            LOAD_IMAGE
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
