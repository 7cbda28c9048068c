//! Why a hook is not attached ([`HookError`]): the kinds callers branch on
//! and the words the log, `monitor hooks` and `/readyz` say.
use std::{error::Error as _, fmt, sync::Arc};

use aya::programs::ProgramError;

use super::hooks::BASELINE;

/// Why a hook is not attached. Callers branch on the kind (a missing
/// tracepoint is expected on some kernels, a verifier refusal is a bug to
/// report); the text says what happened, with the verifier's last lines.
#[derive(Clone, Debug)]
pub enum HookError {
    /// This kernel has no such tracepoint (tracefs `events/` lacks it).
    NoTracepoint {
        /// The release that brought it ([`BASELINE`] for the old ones).
        since: &'static str,
        /// What covers the concern without it.
        covered_by: Option<&'static str>,
    },
    /// The compiled object has no program of that name (a build mismatch).
    NotInObject { program: &'static str },
    /// This kernel's BTF has no such function: the syscall or hook is not
    /// built in (a kernel without modules has no `init_module`).
    NoFunction { function: &'static str },
    /// The verifier refused the program.
    Verifier {
        /// The load syscall's error (`Permission denied`, `Argument list too long`...).
        reason: String,
        /// The last lines of the verifier's log: they say why.
        log_tail: Vec<String>,
    },
    /// Loading failed before the verifier (a program of an unexpected type,
    /// a map or BTF the kernel refused).
    Load(Arc<ProgramError>),
    /// The program loaded and the kernel refused to attach it.
    Attach(Arc<ProgramError>),
    /// It attached, and was detached again: another row of its concern in
    /// the same tier could not attach, and a tier serves a concern whole.
    TierIncomplete {
        /// The row that failed.
        missing: String,
    },
    /// This kernel has no BTF to load tracing programs against.
    NoBtf(String),
}

/// How many of the verifier's last lines an error keeps.
const VERIFIER_TAIL_LINES: usize = 12;

impl HookError {
    /// The short name used in metric labels and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            HookError::NoTracepoint { .. } => "no_tracepoint",
            HookError::NotInObject { .. } => "not_in_object",
            HookError::NoFunction { .. } => "no_function",
            HookError::Verifier { .. } => "verifier",
            HookError::Load(_) => "load",
            HookError::Attach(_) => "attach",
            HookError::TierIncomplete { .. } => "tier_incomplete",
            HookError::NoBtf(_) => "no_btf",
        }
    }

    /// The error of a failed `load()`: the verifier's reason and log tail
    /// when it refused, else the error as it came.
    pub fn of_load(e: ProgramError) -> HookError {
        match e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => HookError::verifier(&io_error.to_string(), &verifier_log.to_string()),
            other => HookError::Load(Arc::new(other)),
        }
    }

    /// A verifier refusal with the last lines of its log.
    pub fn verifier(reason: &str, log: &str) -> HookError {
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(VERIFIER_TAIL_LINES);
        HookError::Verifier {
            reason: reason.to_owned(),
            log_tail: lines[from..].iter().map(|l| (*l).to_owned()).collect(),
        }
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::NoTracepoint {
                since,
                covered_by: Some(other),
            } => match *since {
                BASELINE => write!(
                    f,
                    "this kernel has no such tracepoint ({other} covers the concern)"
                ),
                since => write!(
                    f,
                    "this kernel has no such tracepoint (it came in {since}; {other} covers the concern)"
                ),
            },
            HookError::NoTracepoint {
                covered_by: None, ..
            } => f.write_str("this kernel has no such tracepoint"),
            HookError::NotInObject { program } => {
                write!(f, "program {program} is not in the object")
            }
            HookError::NoFunction { function } => {
                write!(f, "this kernel has no function {function}")
            }
            // An empty log: refused before the verifier ran (EPERM for a
            // program type this kernel does not let the agent load).
            HookError::Verifier { reason, log_tail } if log_tail.is_empty() => {
                write!(f, "the kernel refused to load the program ({reason})")
            }
            HookError::Verifier { reason, log_tail } => write!(
                f,
                "the verifier refused the program ({reason}): {}",
                log_tail.join(" | ")
            ),
            HookError::TierIncomplete { missing } => write!(
                f,
                "detached: {missing} of the same concern and tier did not attach"
            ),
            HookError::NoBtf(why) => write!(f, "no kernel BTF to load against: {why}"),
            // The error and its causes, as `{:#}` of an anyhow error writes them.
            HookError::Load(e) | HookError::Attach(e) => {
                write!(f, "{e}")?;
                let mut source = e.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HookError {}
