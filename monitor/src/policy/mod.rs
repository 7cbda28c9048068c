//! The policy engine: rule files -> compiled matchers -> findings.
//!
//! Rule files are YAML (format in `rules/README.md`): named **policies**, each
//! with a **selector** (which workloads: the host, all containers, or by image,
//! name, namespace, pod, runtime, labels), **rules** (process allow and deny
//! lists, protected paths, egress allow and deny lists, and the detectors
//! drift, memfd and port scan), and **exceptions**. Files load in order,
//! later ones extending or overriding earlier policies by name, so users add
//! to the shipped pack without editing it.
//!
//! Use:
//! - [`check_dir`] / [`RuleSet::load_dirs`] load and compile, returning every
//!   problem as a [`Diagnostic`] with file, line and column;
//! - [`Evaluator::evaluate`] matches one [`EnrichedEvent`](crate::context::EnrichedEvent)
//!   and appends [`Finding`]s; it owns the stateful detectors
//!   ([`DriftDetector`], [`PortScanDetector`]) with bounded memory;
//! - [`RuleSet::evaluate`] runs the stateless rules only.
//!
//! Matching allocates nothing per event: globs are compiled into glob sets,
//! CIDRs into sorted range tables, ports into merged range lists. Only a
//! finding allocates (its summary).
// Users extend this module: every public item says what it is.
#![warn(missing_docs)]
mod compile;
mod detect;
mod enforce;
mod evaluate;
mod load;
mod matcher;
mod posture;
pub(crate) mod raw;
mod selector;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use crate::diagnostic::Diagnostic;
pub use detect::{
    DetectorLimits, DriftDetector, PortScanDetector, ScanParams, ScanReport, is_fileless_exec,
    is_write,
};
pub use enforce::{EgressPrefix, Enforcement};
pub use evaluate::{Evaluator, RuleSet};
// What `evaluate` appends to, so its callers need not know the leaf.
pub use crate::finding::Finding;
pub use posture::{
    DEFAULT_GRACE, PortsSeen, PostureAlert, PostureCheck, PostureSubject, PostureWatch, workload,
};
pub use selector::{Labels, NoLabels, Workload};

/// Loads and compiles rule directories (or files) for `monitor rules check`:
/// the same as [`RuleSet::load_dirs`].
pub fn check_dir(paths: &[PathBuf]) -> Result<RuleSet, Vec<Diagnostic>> {
    RuleSet::load_dirs(paths)
}

/// The closing line of `monitor rules check`: `ok: 6 files, 7 policies, 20 rules`
/// or `3 errors in 2 files`.
pub fn check_summary(result: &Result<RuleSet, Vec<Diagnostic>>) -> String {
    match result {
        Ok(set) => format!("ok: {}", set.summary()),
        Err(diags) => {
            let mut files: Vec<&PathBuf> = diags.iter().map(|d| &d.file).collect();
            files.sort();
            files.dedup();
            format!(
                "{} {} in {} {}",
                diags.len(),
                if diags.len() == 1 { "error" } else { "errors" },
                files.len(),
                if files.len() == 1 { "file" } else { "files" },
            )
        }
    }
}
