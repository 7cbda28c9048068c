//! Enforcement in the run loop (`--enforce`): the kernel's deny and kill
//! tables kept in step with the containers and the rules in force, and an
//! alert for every action the kernel took that no rule reports. Apart from
//! the loop because it is the one stage that writes to the kernel.
use std::{collections::HashMap, path::PathBuf, time::SystemTime};

use tracing::{info, warn};

use crate::{
    alert::{Alert, Severity},
    bpf::{enforce::KernelEnforcement, source::EventSource},
    context::{EnrichedEvent, Enricher},
    policy,
    sink::Sinks,
};

/// Keeps the kernel's enforcement in step with the containers the registry
/// knows and the rules in force (`--enforce`): each container inside the
/// scope gets what its enforcing rules compile to, and a container gone or
/// no longer selected is released. The kernel's state dies with the agent.
#[derive(Default)]
pub(super) struct Enforcer {
    /// Containers whose rules could not be compiled for the kernel, with why
    /// (reported once per reason).
    refused: HashMap<u64, String>,
}

impl Enforcer {
    pub(super) fn reconcile(
        &mut self,
        source: &mut EventSource,
        enricher: &Enricher,
        rules: &policy::RuleSet,
        sinks: &Sinks,
        host: &str,
    ) {
        if !source.started.kernel.enforcing() {
            return;
        }
        let mount = source.cgroup2_mount().to_path_buf();
        let registry = enricher.registry();
        let mut wanted: Vec<(u64, PathBuf, KernelEnforcement, Vec<String>)> = Vec::new();
        for (id, entry) in registry.containers() {
            if !source.covers(&entry.path) {
                continue;
            }
            let (Some(info), _) = registry.container_info(id) else {
                continue;
            };
            let metadata = entry.metadata.as_deref();
            let plan = match rules.enforcement(&policy::Workload::container(&info, metadata)) {
                Ok(p) => p,
                Err(why) => {
                    if self.refused.get(&id) != Some(&why) {
                        let summary = format!(
                            "container {} is not enforced: {why}; its deny rules only alert",
                            entry.path
                        );
                        warn!("{summary}");
                        sinks.dispatch(&Alert::agent(
                            host,
                            "enforcement-unavailable",
                            Severity::High,
                            summary,
                        ));
                        self.refused.insert(id, why);
                    }
                    continue;
                }
            };
            self.refused.remove(&id);
            if plan.is_empty() {
                continue;
            }
            let dir = mount.join(entry.path.trim_start_matches('/'));
            wanted.push((id, dir, kernel_plan(&plan), plan.rules));
        }
        let kernel = &mut source.started.kernel;
        for id in kernel.enforced() {
            if !wanted.iter().any(|(w, ..)| *w == id)
                && let Err(e) = kernel.release(id)
            {
                warn!("releasing enforcement of cgroup {id}: {e:#}");
            }
        }
        for (id, dir, plan, rules) in wanted {
            let was = kernel.enforced().contains(&id);
            match kernel.enforce(id, &dir, &plan) {
                Ok(()) if !was => {
                    info!(cgroup = %dir.display(), rules = %rules.join(", "), "enforcing")
                }
                Ok(()) => {}
                Err(e) => {
                    let why = format!("{e:#}");
                    if self.refused.get(&id) != Some(&why) {
                        let summary = format!(
                            "container cgroup {} is not enforced: {why}; its deny rules only alert",
                            dir.display()
                        );
                        warn!("{summary}");
                        sinks.dispatch(&Alert::agent(
                            host,
                            "enforcement-unavailable",
                            Severity::High,
                            summary,
                        ));
                        self.refused.insert(id, why);
                    }
                }
            }
        }
    }
}

/// The kernel's form of a workload's enforcement.
fn kernel_plan(plan: &policy::Enforcement) -> KernelEnforcement {
    use monitor_common::enforce::{NAME_BASIS, PATH_BASIS, SEGMENTS, fnv1a};
    let egress = plan.egress.as_ref().map(|prefixes| {
        prefixes
            .iter()
            .map(|p| {
                let mut v = monitor_common::EgressVerdict {
                    count: p.segments.len().min(SEGMENTS) as u32,
                    ..Default::default()
                };
                for (slot, s) in v.segments.iter_mut().zip(&p.segments) {
                    *slot = *s;
                }
                (p.net, v)
            })
            .collect()
    });
    let kill = plan
        .kill_paths
        .iter()
        .map(|p| fnv1a(PATH_BASIS, p.as_bytes()))
        .chain(
            plan.kill_names
                .iter()
                .map(|n| fnv1a(NAME_BASIS, n.as_bytes())),
        )
        .collect();
    KernelEnforcement { egress, kill }
}

/// The alert for an action the kernel took that no rule of the running set
/// reports (its table came from an earlier rule set, or the rule fired and
/// was excepted in userspace): every action taken is an alert.
pub(super) fn unmatched_action(
    enriched: &EnrichedEvent,
    at: SystemTime,
    host: &str,
) -> Option<Alert> {
    use crate::event::EventBody;
    let taken = enriched.event.action_taken()?;
    let (kind, what) = match &enriched.event.body {
        EventBody::Network(n) => (
            crate::alert::AlertKind::Network,
            format!("{:?} to {}:{}", n.op, n.daddr, n.dport).to_lowercase(),
        ),
        EventBody::Exec(x) => (
            crate::alert::AlertKind::Process,
            format!("exec of {}", x.filename),
        ),
        _ => return None,
    };
    let mut alert = Alert::at(
        at,
        host,
        "enforcement",
        crate::alert::AGENT_POLICY,
        Severity::High,
        kind,
        format!(
            "the kernel {} {what} (pid {}), and no rule of the running set reports it",
            taken.as_str().replace('_', " "),
            enriched.event.header.pid
        ),
    );
    alert.container = enriched.container.clone();
    alert.metadata_status = Some(enriched.metadata_status);
    alert.process = Some(enriched.process.clone());
    if let EventBody::Network(n) = &enriched.event.body {
        alert.network = Some(n.clone());
    }
    alert.action_taken = Some(taken);
    Some(alert)
}
