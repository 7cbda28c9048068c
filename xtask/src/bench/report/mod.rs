//! `BENCHMARKS.md` from the results: tables, then what they show, in words
//! drawn from the same figures (the file is regenerated, never hand-edited).
mod format;
mod latency;
mod memory;
mod overhead;
mod pipeline;
mod profiles;
mod targets;
mod throughput;
mod vm;

use std::fmt::Write as _;

use self::{
    latency::latency, memory::memory, overhead::overhead, pipeline::pipeline, profiles::profiles,
    targets::targets, throughput::throughput, vm::vm,
};
use super::Results;

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
    if let Some(v) = &r.vm {
        vm(&mut md, v);
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

fn how_to_run(md: &mut String) {
    let _ = writeln!(
        md,
        "## How to run\n\n\
         As root, on a quiet machine for figures to quote:\n\n\
         ```\n\
         cargo xtask bench                 # 9 interleaved runs, 1 s loops, 3 passes of the rest\n\
         cargo xtask bench --quick         # smoke test: 3 runs, short loops, one pass\n\
         cargo xtask bench --runs 15 --only overhead,profile\n\
         cargo xtask bench --only vm       # the tiers in a 6.12 VM alone (QEMU TCG, about 5 min)\n\
         cargo bench -p monitor --bench pipeline   # the pipeline benchmark alone\n\
         ```\n\n\
         It builds the agent and the workload binary in release mode, installs auditd and bpftrace with apt \
         when they are missing (`--no-install` skips them instead), and removes what it made when it ends, \
         also on error or ^C: its cgroup v2 directory, its files under /dev/shm, its audit rules (key \
         `monitor-bench`), the auditd it started and every process it started. Traffic stays on 127.0.0.1; \
         every loop is bounded in count and time. The in-VM section boots Debian's 6.12 cloud kernel as \
         `cargo xtask vm-run` does (downloaded once, QEMU installed with apt when missing)."
    );
}
