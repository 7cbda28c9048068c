//! `--shadow DIR`: a candidate rule set judged beside the active one. Its
//! findings that the active rules do not also make are reported as `info`
//! alerts marked `shadow`, so a new policy (a learned one, an edit) can be
//! watched against real traffic before it is made active. Nothing is
//! enforced for them, and the active alerts are not touched.
use std::{path::PathBuf, time::SystemTime};

use tracing::{error, info};

use crate::{
    alert::{Alert, Severity},
    context::EnrichedEvent,
    policy::{Evaluator, Finding},
};

pub(super) struct Shadow {
    /// The active directories, then the candidate: a candidate may extend
    /// the active policies (a learned one excepts the shipped `egress`).
    dirs: Vec<PathBuf>,
    evaluator: Evaluator,
    findings: Vec<Finding>,
}

impl Shadow {
    pub(super) fn load(active: &[PathBuf], candidate: &std::path::Path) -> anyhow::Result<Shadow> {
        let mut dirs = active.to_vec();
        dirs.push(candidate.to_path_buf());
        let rules = super::load_rules(&dirs)?;
        info!(shadow = %candidate.display(), "shadow rules: {}", rules.summary());
        Ok(Shadow {
            dirs,
            evaluator: Evaluator::new(rules),
            findings: Vec::new(),
        })
    }

    /// Reloads the candidate with the active rules; a refused edit keeps
    /// the running candidate.
    pub(super) fn reload(&mut self, why: &str) {
        match super::load_rules(&self.dirs) {
            Ok(rules) => {
                info!("reloaded the shadow rules ({why}): {}", rules.summary());
                self.evaluator.replace_rules(rules);
            }
            Err(e) => {
                error!("the new shadow rules were refused ({why}); the running ones stay:\n{e:#}")
            }
        }
    }

    /// The shadow alerts for `event`: the candidate's findings whose rule
    /// (policy and name) is not among `active`'s.
    pub(super) fn judge(
        &mut self,
        event: &EnrichedEvent,
        active: &[Finding],
        at: SystemTime,
        host: &str,
    ) -> Vec<Alert> {
        self.evaluator.evaluate(event, &mut self.findings);
        self.findings
            .drain(..)
            .filter(|f| {
                !active
                    .iter()
                    .any(|a| a.policy == f.policy && a.rule == f.rule)
            })
            .map(|f| {
                let mut alert = Alert::from_finding(&f, event, at, host);
                alert.severity = Severity::Info;
                alert.shadow = true;
                alert.would_deny = false;
                alert.summary = format!("shadow: {}", alert.summary);
                alert
            })
            .collect()
    }
}
