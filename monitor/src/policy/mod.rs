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
pub mod diff;
mod enforce;
mod evaluate;
mod load;
mod matcher;
mod model;
mod posture;
pub(crate) mod raw;
mod selection;
mod selector;
mod sentences;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use crate::diagnostic::Diagnostic;
pub use detect::{
    DetectorLimits, DriftDetector, PortScanDetector, ScanParams, ScanReport, is_fileless_exec,
    is_write,
};
pub use enforce::{EgressPrefix, Enforcement, ProtectPath};
pub use evaluate::Evaluator;
pub use model::{DEFAULT_GRACE, PostureCheck, RuleSet};
// What `evaluate` appends to, so its callers need not know the leaf.
pub use crate::finding::Finding;
pub use posture::{PortsSeen, PostureAlert, PostureSubject, PostureWatch, workload};
pub use selector::{Labels, NoLabels, Workload};

/// Loads and compiles rule directories (or files) for `monitor rules check`:
/// the same as [`RuleSet::load_dirs`].
pub fn check_dir(paths: &[PathBuf]) -> Result<RuleSet, Vec<Diagnostic>> {
    RuleSet::load_dirs(paths)
}

// Loading sits here, above both `compile` and the model it fills, so the
// model imports neither.
impl RuleSet {
    /// Loads and compiles the rule files in `dirs`, in order: each directory's
    /// `*.yaml`/`*.yml` files sorted by name, the directories in the order
    /// given (the shipped pack first, then the user's), later files extending
    /// or overriding earlier policies by name. A path may also name one file.
    ///
    /// Returns every problem found, each with file, line and column.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<RuleSet, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let merged = load::load(dirs, &mut diags);
        let set = compile::compile(merged, &mut diags);
        if diags.is_empty() {
            return Ok(set);
        }
        // In reading order: by file (load order), line, column.
        let rank = |d: &Diagnostic| {
            set.files
                .iter()
                .position(|f| *f == d.file)
                .map_or(0, |i| i + 1)
        };
        diags.sort_by_key(|d| (rank(d), d.line, d.col));
        Err(diags)
    }
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
