//! The profile section: `perf` samples of the agent in separate passes, the
//! share in a few kernel functions and the flat profile of each.
use std::fmt::Write as _;

use super::{super::profile::Profile, format::num, throughput::short_symbol};

pub(super) fn profiles(md: &mut String, ps: &[Profile]) {
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
