//! The memory section: what the agent holds, under `trace` and `run`.
use std::fmt::Write as _;

use super::{
    super::memory::Memory,
    format::{num, spread_with},
};

pub(super) fn memory(md: &mut String, m: &Memory) {
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
