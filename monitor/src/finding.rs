//! What a rule found, as the policy stage hands it to the alert stage: a leaf
//! below both, so neither imports the other's types.
//!
//! The record objects a finding carries (`scan`, `posture`, `action_taken`)
//! live here too; `alert` puts them into the alert record unchanged.
// Users extend the rules and read findings: every public item says what it is.
#![warn(missing_docs)]
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How bad an alert is, least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `info`, the least.
    Info,
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `critical`, the most.
    Critical,
}

impl Severity {
    /// The name as in the alert record (`info` ... `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// An exec: unexpected, denied, a shell, drift, fileless.
    Process,
    /// A write, read or socket connect on a path.
    File,
    /// Egress or a port scan.
    Network,
    /// A rare system call.
    Syscall,
    /// How a container was started (privileged, host network, ...).
    Posture,
    /// The agent's own health: lost events, throttling, a failing sink.
    Agent,
}

/// What a rule found in one event; the alert pipeline turns it into an
/// alert with the event's context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name, e.g. `ssh-server`.
    pub rule: Arc<str>,
    /// The policy the rule belongs to, e.g. `default/processes`.
    pub policy: Arc<str>,
    /// The rule's severity.
    pub severity: Severity,
    /// What the finding is about.
    pub kind: AlertKind,
    /// One readable sentence: what happened, where, by whom.
    pub summary: String,
    /// The rule's ATT&CK technique ids (`T1059.004`), as the rule lists them.
    pub tags: Arc<[String]>,
    /// The operation failed (a file op that returned an error): an attempt.
    pub attempt: bool,
    /// For a port-scan finding: the ports and hosts of its window.
    pub scan: Option<ScanSummary>,
    /// What the rule asks for beyond the alert (`action:`).
    pub action: Action,
    /// What the kernel did to the operation (`--enforce`), if anything.
    pub action_taken: Option<ActionTaken>,
    /// The rule's action is `deny` or `kill` and nothing was done: the agent
    /// runs without `--enforce` (a dry run), or the container was not under
    /// enforcement yet.
    pub would_deny: bool,
    /// For a posture finding: the practice and the fact.
    pub posture: Option<PostureInfo>,
}

/// What a rule does besides alerting, when the agent runs with `--enforce`
/// (the rule's `action:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Report only (the default).
    #[default]
    Alert,
    /// Refuse the connection in the kernel (egress rules).
    Deny,
    /// Kill the exec'd process before it runs (process deny lists).
    Kill,
}

impl Action {
    /// As written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Deny => "deny",
            Action::Kill => "kill",
        }
    }
}

/// What the kernel programs did to an operation under enforcement
/// (`--enforce`): the alert record's `action_taken`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTaken {
    /// The connect, sendmsg or protected write was refused (EPERM).
    Denied,
    /// The exec'd process was killed (SIGKILL) before it ran.
    Killed,
    /// A kill was due and failed: the program ran.
    KillFailed,
}

impl ActionTaken {
    /// From a record's `action` field (`monitor_common::action`).
    pub fn from_code(code: u32) -> Option<ActionTaken> {
        match code {
            monitor_common::action::DENIED => Some(ActionTaken::Denied),
            monitor_common::action::KILLED => Some(ActionTaken::Killed),
            monitor_common::action::KILL_FAILED => Some(ActionTaken::KillFailed),
            // A refused write is reported as a denied connect is.
            monitor_common::action::REFUSED => Some(ActionTaken::Denied),
            _ => None,
        }
    }

    /// The record's field as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionTaken::Denied => "denied",
            ActionTaken::Killed => "killed",
            ActionTaken::KillFailed => "kill_failed",
        }
    }
}

/// The alert record's `posture` object: which practice a container's start-up
/// breaks, and what its runtime's files (or its sockets) said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PostureInfo {
    /// The finding id (`privileged`, `host-network`, `unused-port`, ...).
    pub finding: String,
    /// The practice, in words (`no privileged containers`).
    pub practice: String,
    /// What was read, briefly (`Privileged: true`, `SYS_ADMIN, NET_ADMIN`,
    /// `/var/run/docker.sock`).
    pub fact: String,
}

/// The alert record's `scan` object: one port scan, the destinations it tried
/// (listed up to a cap) and how many per-destination egress alerts it stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    /// Distinct destination ports within the window, ascending, at most [`SCAN_LIST_CAP`].
    pub ports: Vec<u16>,
    /// Distinct destination hosts within the window, at most [`SCAN_LIST_CAP`].
    pub hosts: Vec<String>,
    /// How many distinct ports the window held (may exceed the list).
    pub distinct_ports: usize,
    /// How many distinct hosts the window held (may exceed the list).
    pub distinct_hosts: usize,
    /// Egress alerts of the same workload folded into this one instead of sent.
    pub folded_alerts: u64,
}

/// How many ports and hosts a scan alert lists.
pub const SCAN_LIST_CAP: usize = 64;
