//! The compiled rule set: what `compile` builds and `evaluate` matches, kept
//! apart so the compiler never depends on the evaluator.
use std::{ops::Range, path::PathBuf, sync::Arc, time::Duration};

use super::{
    detect::ScanParams,
    matcher::{Dest, ExecList, Globs, IpTable, PortSet},
    selector::Selector,
    sentences::plural,
};
use crate::{
    event::{FileOp, SyscallInfo},
    finding::{Action, Severity},
};

/// What the kernel checks for a rule with `action: kill`: the exec'd file's
/// path as given to exec, whole or its final component.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KillList {
    /// Absolute paths, literal.
    pub paths: Vec<String>,
    /// File names (`exe: "**/NAME"`, `name: NAME`).
    pub names: Vec<String>,
}

/// The file ops a file rule can watch, as bits.
pub(crate) fn op_bit(op: FileOp) -> u16 {
    1 << (op as u8)
}

/// All file ops.
pub(crate) const ALL_OPS: u16 = u16::MAX;

/// A compiled file rule.
#[derive(Clone, Debug)]
pub(crate) struct FileRule {
    /// Protected paths; `None` protects every path (the rule is then an allowlist).
    pub paths: Option<Globs>,
    /// Writes that are fine even below a protected path.
    pub allow: Globs,
    /// Bits from [`op_bit`].
    pub ops: u16,
    /// When non-zero, fire only when the chmod or creation mode has one of
    /// these bits (`S_ISUID`, `S_ISGID`).
    pub mode_bits: u32,
    /// When set, fire only for link and symlink ops whose existing side
    /// (what the new name points at) matches.
    pub linked_to: Option<Globs>,
}

/// A compiled shell rule.
#[derive(Clone, Debug)]
pub(crate) struct ShellRule {
    /// Program names that are shells.
    pub shells: Globs,
    /// Program names of parents whose shells belong to the start-up chain.
    pub chain: Globs,
}

/// What a compiled rule checks.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// An exec matching no entry is unexpected.
    ProcessAllow(ExecList),
    /// An exec matching an entry is denied; with `unless_allowed`, not when
    /// the workload's process allowlist (any selected policy's) has it.
    ProcessDeny {
        list: ExecList,
        unless_allowed: bool,
    },
    File(FileRule),
    /// Shells judged by where they start.
    Shell(ShellRule),
    /// Egress matching no entry is unexpected.
    EgressAllow(Vec<Dest>),
    /// Egress matching an entry is denied.
    EgressDeny(Vec<Dest>),
    /// Exec of a file the container wrote; execs of paths in the set are fine.
    Drift(Globs),
    /// Exec of an in-memory file.
    Memfd,
    PortScan(ScanParams),
    /// A rare system call named in the rule.
    Syscall(SyscallRule),
    /// A successful read of a file whose path matches.
    Read(PathRule),
    /// A connect to a unix socket whose path matches.
    RuntimeSocket(PathRule),
    /// How a container was started ([`super::posture`], [`PostureRule`]); never matches an event.
    Posture(PostureRule),
}

/// A compiled syscall rule.
#[derive(Clone, Debug)]
pub(crate) struct SyscallRule {
    pub calls: Vec<&'static str>,
    /// Credential calls only when a non-root caller asks for id 0.
    pub to_root: bool,
    /// Matches the calls outside the syscall profile instead of `calls`.
    pub unexpected: bool,
    /// With `unexpected`: the calls that never match.
    pub allow: Vec<&'static str>,
}

impl SyscallRule {
    pub(super) fn matches(&self, s: &SyscallInfo, caller_uid: u32) -> bool {
        if self.unexpected || s.unexpected {
            return self.unexpected && s.unexpected && !self.allow.contains(&s.name);
        }
        if !self.calls.contains(&s.name) {
            return false;
        }
        if !self.to_root {
            return true;
        }
        // An id argument of 0 from a non-root caller (u32::MAX is "unchanged").
        caller_uid != 0
            && s.args
                .iter()
                .any(|(_, v)| matches!(v, crate::event::syscall::ArgValue::Number(0)))
    }
}

/// A compiled read or runtime-socket rule.
#[derive(Clone, Debug)]
pub(crate) struct PathRule {
    pub paths: Globs,
    pub allow: Globs,
}

impl PathRule {
    pub(super) fn matches(&self, path: &str) -> bool {
        self.paths.is_match(path) && !self.allow.is_match(path)
    }
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub name: Arc<str>,
    pub policy: Arc<str>,
    pub severity: Severity,
    pub tags: Arc<[String]>,
    pub body: Body,
    pub action: Action,
    /// For `action: kill` and a file rule's `action: deny`: what the kernel checks.
    pub kernel: Option<KernelForm>,
}

/// A rule's enforcing form in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KernelForm {
    /// `action: kill`: the executables killed at exec.
    Kill(KillList),
    /// A file rule's `action: deny`: the files and trees whose writes the
    /// LSM programs refuse, and those its `allow` keeps open.
    Protect(Vec<super::enforce::ProtectPath>),
}

/// A compiled exception: every condition given must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Exception {
    /// Indices into [`RuleSet::rules`]; `None` for every rule of the policy.
    pub rules: Option<Vec<usize>>,
    pub selector: Option<Selector>,
    pub exe: Option<Globs>,
    pub parents: Option<Globs>,
    /// Any ancestor's executable.
    pub ancestors: Option<Globs>,
    /// The acting process's kernel task name.
    pub comm: Option<Globs>,
    pub paths: Option<Globs>,
    pub to: Option<IpTable>,
    pub ports: Option<PortSet>,
    pub dns: Option<Globs>,
}

/// A compiled policy.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub name: Arc<str>,
    pub selector: Selector,
    /// Its rules, a range of [`RuleSet::rules`].
    pub rules: Range<usize>,
    pub exceptions: Vec<Exception>,
    pub has_process_allow: bool,
}

/// Compiled rule files: policies with their selectors, rules and exceptions,
/// ready to match events without allocating.
///
/// Build one with [`RuleSet::load_dirs`]; evaluate stateless rules with
/// [`RuleSet::evaluate`], or hand it to an [`Evaluator`](super::Evaluator) to run the stateful
/// detectors (drift, port scan) too.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) policies: Vec<Policy>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) files: Vec<PathBuf>,
}

impl RuleSet {
    /// The number of policies.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The number of enabled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The rule files loaded, in load order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Policy names with their enabled rules' names, in load order.
    pub fn policies(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.policies.iter().map(|p| {
            (
                &*p.name,
                self.rules[p.rules.clone()]
                    .iter()
                    .map(|r| &*r.name)
                    .collect(),
            )
        })
    }

    /// One line for `monitor rules check`: `6 files, 7 policies, 20 rules`.
    pub fn summary(&self) -> String {
        format!(
            "{} {}, {} {}, {} {}",
            self.files.len(),
            plural(self.files.len(), "file", "files"),
            self.policies.len(),
            plural(self.policies.len(), "policy", "policies"),
            self.rules.len(),
            plural(self.rules.len(), "rule", "rules"),
        )
    }
}

/// What one posture rule checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostureCheck {
    /// `--privileged`.
    Privileged,
    /// The host's network namespace.
    HostNetwork,
    /// The host's pid namespace.
    HostPid,
    /// The host's IPC namespace.
    HostIpc,
    /// Dangerous capabilities added.
    AddedCapabilities,
    /// No memory limit.
    NoMemoryLimit,
    /// No CPU limit.
    NoCpuLimit,
    /// A writable root filesystem.
    WritableRootfs,
    /// Running as uid 0.
    RootUser,
    /// Restarted forever.
    RestartPolicy,
    /// No seccomp filter.
    SeccompUnconfined,
    /// No AppArmor profile.
    ApparmorUnconfined,
    /// No SELinux labels.
    SelinuxDisabled,
    /// The engine's socket mounted.
    EngineSocketMount,
    /// A sensitive host path mounted.
    SensitiveMount,
    /// An exposed port nothing uses.
    UnusedPort,
    /// An SSH port listened on.
    SshPort,
}

impl PostureCheck {
    /// Every check with its id, as rule files name it.
    pub const ALL: [(&'static str, PostureCheck); 17] = [
        ("privileged", PostureCheck::Privileged),
        ("host-network", PostureCheck::HostNetwork),
        ("host-pid", PostureCheck::HostPid),
        ("host-ipc", PostureCheck::HostIpc),
        ("added-capabilities", PostureCheck::AddedCapabilities),
        ("no-memory-limit", PostureCheck::NoMemoryLimit),
        ("no-cpu-limit", PostureCheck::NoCpuLimit),
        ("writable-rootfs", PostureCheck::WritableRootfs),
        ("root-user", PostureCheck::RootUser),
        ("restart-policy", PostureCheck::RestartPolicy),
        ("seccomp-unconfined", PostureCheck::SeccompUnconfined),
        ("apparmor-unconfined", PostureCheck::ApparmorUnconfined),
        ("selinux-disabled", PostureCheck::SelinuxDisabled),
        ("engine-socket-mount", PostureCheck::EngineSocketMount),
        ("sensitive-mount", PostureCheck::SensitiveMount),
        ("unused-port", PostureCheck::UnusedPort),
        ("ssh-port", PostureCheck::SshPort),
    ];

    /// The id (`host-network`).
    pub fn id(self) -> &'static str {
        PostureCheck::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("?", |(id, _)| id)
    }

    /// The check named `id`.
    pub fn from_id(id: &str) -> Option<PostureCheck> {
        PostureCheck::ALL
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, c)| *c)
    }

    /// The practice the check holds containers to.
    pub fn practice(self) -> &'static str {
        match self {
            PostureCheck::Privileged => "no privileged containers",
            PostureCheck::HostNetwork => "no host network namespace",
            PostureCheck::HostPid => "no host pid namespace",
            PostureCheck::HostIpc => "no host IPC namespace",
            PostureCheck::AddedCapabilities => "no dangerous capabilities",
            PostureCheck::NoMemoryLimit => "bounded memory",
            PostureCheck::NoCpuLimit => "bounded CPU",
            PostureCheck::WritableRootfs => "read-only root filesystems",
            PostureCheck::RootUser => "do not run as root",
            PostureCheck::RestartPolicy => "bounded restarts (on-failure with a retry cap)",
            PostureCheck::SeccompUnconfined => "keep the seccomp profile",
            PostureCheck::ApparmorUnconfined => "keep the AppArmor profile",
            PostureCheck::SelinuxDisabled => "keep SELinux labels",
            PostureCheck::EngineSocketMount => "never mount the engine's socket",
            PostureCheck::SensitiveMount => "do not mount sensitive host paths",
            PostureCheck::UnusedPort => "expose only the ports in use",
            PostureCheck::SshPort => "no SSH servers in containers",
        }
    }

    /// When the check can be judged.
    pub(super) fn phase(self) -> Phase {
        match self {
            PostureCheck::UnusedPort => Phase::Settled,
            PostureCheck::SshPort => Phase::Listening,
            _ => Phase::Start,
        }
    }
}

/// When a posture check can be judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// From the start-up facts alone.
    Start,
    /// When a process binds or listens.
    Listening,
    /// After the rule's `grace`.
    Settled,
}

/// A compiled posture rule.
#[derive(Clone, Debug)]
pub(crate) struct PostureRule {
    pub check: PostureCheck,
    /// `added-capabilities`: names without `CAP_`.
    pub capabilities: Vec<String>,
    /// The mount checks' paths.
    pub paths: Option<Globs>,
    /// `ssh-port`'s ports.
    pub ports: Option<PortSet>,
    /// `unused-port`'s grace.
    pub grace: Duration,
}

/// The default `grace` of an `unused-port` rule.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
