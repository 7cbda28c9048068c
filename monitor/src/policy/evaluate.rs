//! The compiled rule set and its evaluation: one event in, findings out.
use std::{collections::HashMap, fmt::Write as _, ops::Range, path::PathBuf, sync::Arc};

use super::{
    Diagnostic,
    detect::{
        DetectorLimits, DriftDetector, PortScanDetector, ScanParams, ScanReport, is_fileless_exec,
        is_write,
    },
    matcher::{Dest, ExecList, ExecSubject, Globs, IpTable, PortSet},
    selector::{Selector, Workload},
};
use crate::{
    context::{EnrichedEvent, MetadataStatus, RuntimeMetadata},
    event::{CgroupOp, EventBody, ExecInfo, FileInfo, FileOp, NetOp, NetworkInfo, SyscallInfo},
    finding::{Action, ActionTaken, AlertKind, Finding, SCAN_LIST_CAP, ScanSummary, Severity},
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

/// Which shell a shell rule reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShellCase {
    /// Started into the running container from outside it (`docker exec`).
    Entered,
    /// Spawned by a process inside that is not a shell (`sh -c` from a server).
    SpawnedBy,
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
    /// How a container was started ([`super::posture`]); never matches an event.
    Posture(super::posture::PostureRule),
}

/// A compiled syscall rule.
#[derive(Clone, Debug)]
pub(crate) struct SyscallRule {
    pub calls: Vec<&'static str>,
    /// Credential calls only when a non-root caller asks for id 0.
    pub to_root: bool,
}

impl SyscallRule {
    fn matches(&self, s: &SyscallInfo, caller_uid: u32) -> bool {
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
    fn matches(&self, path: &str) -> bool {
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
    /// For `action: kill`: what the kernel kills.
    pub kill: Option<KillList>,
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
/// [`RuleSet::evaluate`], or hand it to an [`Evaluator`] to run the stateful
/// detectors (drift, port scan) too.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) policies: Vec<Policy>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) files: Vec<PathBuf>,
}

/// Why a rule fired, with what the summary and exceptions need.
#[derive(Clone, Copy, Debug)]
enum Hit<'e> {
    Unexpected,
    Denied,
    Shell(ShellCase),
    Drift,
    Fileless,
    File { path: &'e str, role: PathRole },
    Egress { denied: bool },
    Scan(ScanReport, u64),
    Syscall,
    Read { path: &'e str },
    RuntimeSocket { path: &'e str },
}

/// Which of a file event's paths a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathRole {
    Path,
    /// The new name of a rename, link or symlink.
    Target,
    /// The old name of a rename.
    Source,
}

/// Mutable state the stateful rules use.
struct State<'s> {
    drift: &'s DriftDetector,
    scans: &'s mut [Option<PortScanDetector>],
}

impl RuleSet {
    /// Loads and compiles the rule files in `dirs`, in order: each directory's
    /// `*.yaml`/`*.yml` files sorted by name, the directories in the order
    /// given (the shipped pack first, then the user's), later files extending
    /// or overriding earlier policies by name. A path may also name one file.
    ///
    /// Returns every problem found, each with file, line and column.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<RuleSet, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let merged = super::load::load(dirs, &mut diags);
        let set = super::compile::compile(merged, &mut diags);
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

    /// Matches one event against the stateless rules (process, file, egress,
    /// fileless exec) and appends what fires to `out`. Drift and port-scan
    /// rules need history: use an [`Evaluator`] for those.
    pub fn evaluate(&self, ev: &EnrichedEvent, out: &mut Vec<Finding>) {
        self.evaluate_with(ev, &Workload::of(ev), out);
    }

    /// Like [`RuleSet::evaluate`], with the workload given (for callers that
    /// know more about it than the event carries, such as labels).
    pub fn evaluate_with(&self, ev: &EnrichedEvent, w: &Workload<'_>, out: &mut Vec<Finding>) {
        self.run(ev, w, &self.select(w), None, out);
    }

    /// The indices of the policies whose selector matches `w`.
    fn select(&self, w: &Workload<'_>) -> Vec<u32> {
        (0..self.policies.len() as u32)
            .filter(|&i| self.policies[i as usize].selector.matches(w))
            .collect()
    }

    /// Matches `ev` against the policies in `selected`: the indices, in load
    /// order, of the policies whose selector matches `w` ([`RuleSet::select`]).
    fn run(
        &self,
        ev: &EnrichedEvent,
        w: &Workload<'_>,
        selected: &[u32],
        mut state: Option<State<'_>>,
        out: &mut Vec<Finding>,
    ) {
        let exec = match &ev.event.body {
            EventBody::Exec(x) => Some(exec_subject(ev, x)),
            _ => None,
        };
        let mut allowlisted: Option<bool> = None;
        // One alert per connection: a destination a deny rule names (the
        // metadata service, a mining pool) is that rule's finding alone, not
        // also an "off the allowlist" one.
        let mut off_allowlist: Vec<usize> = Vec::new();
        let mut denied_destination = false;
        for policy in selected.iter().map(|&i| &self.policies[i as usize]) {
            for ri in policy.rules.clone() {
                let rule = &self.rules[ri];
                let mut hits: [Option<Hit<'_>>; 2] = [None, None];
                let first = match (&rule.body, &ev.event.body, &exec) {
                    (Body::ProcessAllow(list), _, Some(s)) if !list.matches(s) => {
                        Some(Hit::Unexpected)
                    }
                    (
                        Body::ProcessDeny {
                            list,
                            unless_allowed,
                        },
                        _,
                        Some(s),
                    ) if list.matches(s)
                        && !(*unless_allowed
                            && *allowlisted
                                .get_or_insert_with(|| self.workload_allows(selected, s))) =>
                    {
                        Some(Hit::Denied)
                    }
                    (Body::Shell(sr), _, Some(s)) => shell_case(sr, ev, s)
                        .filter(|case| {
                            *case == ShellCase::Entered
                                || !*allowlisted
                                    .get_or_insert_with(|| self.workload_allows(selected, s))
                        })
                        .map(Hit::Shell),
                    (Body::File(fr), EventBody::File(f), _) => {
                        file_hits(fr, f, &mut hits);
                        None
                    }
                    (Body::EgressAllow(dests), EventBody::Network(n), _)
                        if is_egress(n) && !dests.iter().any(|d| d.matches(n)) =>
                    {
                        Some(Hit::Egress { denied: false })
                    }
                    (Body::EgressDeny(dests), EventBody::Network(n), _)
                        if is_egress(n) && dests.iter().any(|d| d.matches(n)) =>
                    {
                        Some(Hit::Egress { denied: true })
                    }
                    (Body::Memfd, _, Some(s)) if is_fileless_exec(s.exe) => Some(Hit::Fileless),
                    (Body::Drift(allow), _, Some(s))
                        if !w.host
                            && state.as_ref().is_some_and(|st| {
                                st.drift.was_written(ev.event.header.cgroup_id, s.exe)
                            })
                            && !allow.is_match(s.exe) =>
                    {
                        Some(Hit::Drift)
                    }
                    (Body::Syscall(sr), EventBody::Syscall(s), _)
                        if sr.matches(s, ev.event.header.uid) =>
                    {
                        Some(Hit::Syscall)
                    }
                    (Body::Read(pr), EventBody::File(f), _)
                        if is_read(f) && pr.matches(&f.path) =>
                    {
                        Some(Hit::Read { path: &f.path })
                    }
                    (Body::RuntimeSocket(pr), EventBody::File(f), _)
                        if f.op == FileOp::Connect && pr.matches(&f.path) =>
                    {
                        Some(Hit::RuntimeSocket { path: &f.path })
                    }
                    (Body::PortScan(p), EventBody::Network(n), _) if is_egress(n) => {
                        let h = &ev.event.header;
                        let key = PortScanDetector::key(h.cgroup_id, h.pid, !w.host);
                        state
                            .as_mut()
                            .and_then(|st| st.scans.get_mut(ri))
                            .and_then(Option::as_mut)
                            .and_then(|det| det.observe(key, h.ktime_ns, n.daddr, n.dport))
                            .map(|r| Hit::Scan(r, p.window_ns))
                    }
                    _ => None,
                };
                if first.is_some() {
                    hits[0] = first;
                }
                if let Some(hit) = hits
                    .into_iter()
                    .flatten()
                    .find(|h| !excepted(policy, ri, ev, w, exec.as_ref(), h))
                {
                    match hit {
                        Hit::Egress { denied: false } => off_allowlist.push(out.len()),
                        Hit::Egress { denied: true } => denied_destination = true,
                        _ => {}
                    }
                    let mut f = finding(rule, ev, exec.as_ref(), hit);
                    if let Hit::Scan(r, _) = hit {
                        let h = &ev.event.header;
                        let key = PortScanDetector::key(h.cgroup_id, h.pid, !w.host);
                        let (ports, hosts) = state
                            .as_ref()
                            .and_then(|st| st.scans.get(ri))
                            .and_then(Option::as_ref)
                            .map(|det| det.window(key))
                            .unwrap_or_default();
                        f.scan = Some(ScanSummary {
                            ports: ports.into_iter().take(SCAN_LIST_CAP).collect(),
                            hosts: hosts
                                .into_iter()
                                .take(SCAN_LIST_CAP)
                                .map(|h| h.to_string())
                                .collect(),
                            distinct_ports: r.ports,
                            distinct_hosts: r.hosts,
                            folded_alerts: 0,
                        });
                    }
                    out.push(f);
                }
            }
        }
        if denied_destination {
            for i in off_allowlist.into_iter().rev() {
                out.remove(i);
            }
        }
    }

    /// Whether any selected policy's process allowlist has this exec.
    fn workload_allows(&self, selected: &[u32], s: &ExecSubject<'_>) -> bool {
        selected
            .iter()
            .map(|&i| &self.policies[i as usize])
            .filter(|p| p.has_process_allow)
            .any(|p| {
                self.rules[p.rules.clone()]
                    .iter()
                    .any(|r| matches!(&r.body, Body::ProcessAllow(l) if l.matches(s)))
            })
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

fn exec_subject<'e>(ev: &'e EnrichedEvent, x: &'e ExecInfo) -> ExecSubject<'e> {
    ExecSubject {
        exe: &x.filename,
        args: &x.args,
        parent: ev.process.ancestry.first().and_then(|a| a.exe.as_deref()),
        name: crate::context::program_name(&x.filename, &x.args),
    }
}

/// Whether a shell rule reports this exec, and as which case: silent for the
/// container's first process and for shells whose parent is a shell or a
/// start-up program (`chain`); reported when started into the container from
/// outside, or spawned by anything else (the entrypoint included, when it is
/// a server rather than a shell or script).
fn shell_case(sr: &ShellRule, ev: &EnrichedEvent, s: &ExecSubject<'_>) -> Option<ShellCase> {
    if !sr.shells.is_match(s.name) {
        return None;
    }
    let origin = ev.origin.as_ref()?;
    if origin.container_init {
        return None;
    }
    if origin.entered {
        return Some(ShellCase::Entered);
    }
    // The entrypoint itself counts only as what it is: a shell or script
    // (start-up), or a server (whose `sh -c` is the injection case).
    let chain = origin
        .parent_program
        .as_deref()
        .is_some_and(|p| sr.shells.is_match(p) || sr.chain.is_match(p));
    (!chain).then_some(ShellCase::SpawnedBy)
}

/// A successful open for reading only (the kernel reports those for
/// sensitive file names).
fn is_read(f: &FileInfo) -> bool {
    f.op == FileOp::Open && f.result >= 0 && !is_write(f)
}

fn is_egress(n: &NetworkInfo) -> bool {
    matches!(n.op, NetOp::Connect | NetOp::Sendmsg)
}

/// The paths of a file event that a file rule protects and does not allow,
/// the new name first (a rename *over* a protected file is the usual attack).
fn file_hits<'e>(fr: &FileRule, f: &'e FileInfo, hits: &mut [Option<Hit<'e>>; 2]) {
    if fr.ops & op_bit(f.op) == 0 || !is_write(f) {
        return;
    }
    if fr.mode_bits != 0 && f.mode.is_none_or(|m| m & fr.mode_bits == 0) {
        return;
    }
    if let Some(linked) = &fr.linked_to
        && (!matches!(f.op, FileOp::Link | FileOp::Symlink) || !linked.is_match(&f.path))
    {
        return;
    }
    let target = f.target.as_deref();
    let candidates: [(Option<&'e str>, PathRole); 2] = match f.op {
        FileOp::Rename => [
            (target, PathRole::Target),
            (Some(&f.path), PathRole::Source),
        ],
        FileOp::Link | FileOp::Symlink => [(target, PathRole::Target), (None, PathRole::Path)],
        _ => [(Some(&f.path), PathRole::Path), (None, PathRole::Path)],
    };
    for (slot, (path, role)) in hits.iter_mut().zip(candidates) {
        if let Some(path) = path
            && fr.paths.as_ref().is_none_or(|p| p.is_match(path))
            && !fr.allow.is_match(path)
        {
            *slot = Some(Hit::File { path, role });
        }
    }
}

/// Whether one of the policy's exceptions covers this finding.
fn excepted(
    policy: &Policy,
    rule: usize,
    ev: &EnrichedEvent,
    w: &Workload<'_>,
    exec: Option<&ExecSubject<'_>>,
    hit: &Hit<'_>,
) -> bool {
    if policy.exceptions.is_empty() {
        return false;
    }
    let exe = exec.map(|s| s.exe).or(ev.process.exe.as_deref());
    let parent = ev.process.ancestry.first().and_then(|a| a.exe.as_deref());
    let path = match hit {
        Hit::File { path, .. } | Hit::Read { path } | Hit::RuntimeSocket { path } => Some(*path),
        Hit::Drift | Hit::Fileless => exe,
        _ => None,
    };
    let net = match &ev.event.body {
        EventBody::Network(n) => Some(n),
        _ => None,
    };
    let cond = |g: &Option<Globs>, v: Option<&str>| {
        g.as_ref().is_none_or(|g| v.is_some_and(|v| g.is_match(v)))
    };
    policy.exceptions.iter().any(|x| {
        x.rules.as_ref().is_none_or(|r| r.contains(&rule))
            && x.selector.as_ref().is_none_or(|s| s.matches(w))
            && cond(&x.exe, exe)
            && cond(&x.parents, parent)
            && x.ancestors.as_ref().is_none_or(|g| {
                ev.process
                    .ancestry
                    .iter()
                    .any(|a| a.exe.as_deref().is_some_and(|e| g.is_match(e)))
            })
            && cond(&x.comm, Some(&ev.event.header.comm))
            && cond(&x.paths, path)
            && x.to
                .as_ref()
                .is_none_or(|t| net.is_some_and(|n| t.contains(n.daddr)))
            && x.ports
                .as_ref()
                .is_none_or(|p| net.is_some_and(|n| p.contains(n.dport)))
            && cond(&x.dns, net.and_then(|n| n.dns.as_deref()))
    })
}

fn finding(
    rule: &Rule,
    ev: &EnrichedEvent,
    exec: Option<&ExecSubject<'_>>,
    hit: Hit<'_>,
) -> Finding {
    let (kind, summary) = summary(ev, exec, hit);
    let attempt = match &ev.event.body {
        EventBody::File(f) => f.result < 0,
        EventBody::Syscall(s) => s.result < 0,
        _ => false,
    };
    let action_taken = ev.event.action_taken();
    let would_deny = rule.action != Action::Alert && action_taken.is_none();
    let mut summary = summary;
    match (action_taken, would_deny) {
        (Some(ActionTaken::Denied), _) => summary.push_str(" (denied)"),
        (Some(ActionTaken::Killed), _) => summary.push_str(" (killed before it ran)"),
        (Some(ActionTaken::KillFailed), _) => summary.push_str(" (the kill failed)"),
        (None, true) => summary.push_str(match rule.action {
            Action::Kill => " (would be killed: not enforced)",
            _ => " (would be denied: not enforced)",
        }),
        (None, false) => {}
    }
    Finding {
        rule: rule.name.clone(),
        policy: rule.policy.clone(),
        severity: rule.severity,
        kind,
        summary,
        tags: rule.tags.clone(),
        attempt,
        scan: None,
        action: rule.action,
        action_taken,
        would_deny,
        posture: None,
    }
}

/// `in container web (nginx:1.27)` or `on the host`.
fn place(ev: &EnrichedEvent) -> String {
    match &ev.container {
        Some(c) if ev.metadata_status != MetadataStatus::Host => {
            let who = c
                .name
                .clone()
                .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
                .or_else(|| c.cgroup.clone())
                .unwrap_or_else(|| format!("with cgroup id {}", ev.event.header.cgroup_id));
            match &c.image {
                Some(image) => format!("in container {who} ({image})"),
                None => format!("in container {who}"),
            }
        }
        _ => "on the host".to_owned(),
    }
}

/// `/usr/bin/curl (pid 42)`.
fn actor(ev: &EnrichedEvent) -> String {
    let p = &ev.process;
    let exe = p.exe.as_deref().unwrap_or(&p.comm);
    format!("{exe} (pid {})", p.pid)
}

/// The command line, shortened for a one-line summary.
fn command(s: &ExecSubject<'_>) -> String {
    const MAX: usize = 120;
    let mut out = String::from(s.exe);
    for a in s.args.iter().skip(1) {
        if out.len() + a.len() + 1 > MAX {
            out.push_str(" ...");
            break;
        }
        out.push(' ');
        out.push_str(a);
    }
    out
}

fn errno_name(result: i64) -> String {
    let e = i32::try_from(-result).unwrap_or(0);
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        _ => return format!("errno {e}"),
    };
    name.to_owned()
}

fn summary(
    ev: &EnrichedEvent,
    exec: Option<&ExecSubject<'_>>,
    hit: Hit<'_>,
) -> (AlertKind, String) {
    let place = place(ev);
    match hit {
        Hit::Unexpected => (
            AlertKind::Process,
            format!("unexpected process {} {place}", exec.map_or("?", |s| s.exe)),
        ),
        Hit::Denied => (
            AlertKind::Process,
            format!(
                "denied process {} {place}",
                exec.map_or_else(|| "?".to_owned(), command)
            ),
        ),
        Hit::Shell(case) => {
            let cmd = exec.map_or_else(|| "?".to_owned(), command);
            let parent = ev.process.ancestry.first();
            let by = match parent {
                Some(a) => format!(
                    "{} (pid {})",
                    a.exe.as_deref().unwrap_or("an unknown program"),
                    a.pid
                ),
                None => "an unknown process".to_owned(),
            };
            let what = match case {
                ShellCase::Entered => format!(
                    "shell {cmd} started into the running container from outside it by {by} (an exec into the container, as docker exec or kubectl exec do)"
                ),
                ShellCase::SpawnedBy => format!(
                    "shell {cmd} spawned by {by}, which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection)"
                ),
            };
            (AlertKind::Process, format!("{what} {place}"))
        }
        Hit::Drift => (
            AlertKind::Process,
            format!(
                "drift: {} was written after the container started and then executed {place}",
                exec.map_or("?", |s| s.exe)
            ),
        ),
        Hit::Fileless => (
            AlertKind::Process,
            format!(
                "fileless exec of {} (an in-memory or descriptor-only file) {place}",
                exec.map_or("?", |s| s.exe)
            ),
        ),
        Hit::File { path, role } => {
            let EventBody::File(f) = &ev.event.body else {
                return (
                    AlertKind::File,
                    format!("write to protected path {path} {place}"),
                );
            };
            let mut s = String::new();
            if f.result < 0 {
                s.push_str("attempted ");
            }
            match (f.op, role) {
                (FileOp::Rename, PathRole::Target) => {
                    let _ = write!(s, "rename of {} over protected path {path}", f.path);
                }
                (FileOp::Rename, _) => {
                    let _ = write!(
                        s,
                        "rename of protected path {path} to {}",
                        f.target.as_deref().unwrap_or("?")
                    );
                }
                (FileOp::Link, _) => {
                    let _ = write!(s, "hard link {path} to {} in a protected path", f.path);
                }
                (FileOp::Symlink, _) => {
                    let _ = write!(s, "symlink {path} -> {} in a protected path", f.path);
                }
                (FileOp::Unlink, _) => {
                    let _ = write!(s, "deletion of protected path {path}");
                }
                (FileOp::Chmod, _) => {
                    let _ = write!(s, "chmod of protected path {path}");
                    if let Some(m) = f.mode {
                        let _ = write!(s, " to {m:o}");
                    }
                }
                (op, _) => {
                    let _ = write!(s, "write to protected path {path} ({}", op.name());
                    if !f.flags.is_empty() {
                        let _ = write!(s, " {}", f.flags.join("|"));
                    }
                    s.push(')');
                }
            }
            if f.result < 0 {
                let _ = write!(s, " (failed: {})", errno_name(f.result));
            }
            let _ = write!(s, " by {} {place}", actor(ev));
            (AlertKind::File, s)
        }
        Hit::Egress { denied } => {
            let EventBody::Network(n) = &ev.event.body else {
                return (AlertKind::Network, format!("egress {place}"));
            };
            let dest = format!("{}/{}", n.destination(), n.protocol);
            let dns = n
                .dns
                .as_deref()
                .map_or_else(String::new, |d| format!(" ({d})"));
            let why = if denied {
                "a denied destination"
            } else {
                "not on the egress allowlist"
            };
            (
                AlertKind::Network,
                format!("egress to {dest}{dns}, {why}, by {} {place}", actor(ev)),
            )
        }
        Hit::Scan(r, window_ns) => {
            let secs = window_ns as f64 / 1e9;
            (
                AlertKind::Network,
                format!(
                    "port scan: {} distinct ports on {} {} within {secs}s, last by {} {place}",
                    r.ports,
                    r.hosts,
                    plural(r.hosts, "host", "hosts"),
                    actor(ev)
                ),
            )
        }
        Hit::Syscall => {
            let EventBody::Syscall(s) = &ev.event.body else {
                return (
                    AlertKind::Syscall,
                    format!("system call by {} {place}", actor(ev)),
                );
            };
            let args: Vec<String> = s
                .args
                .iter()
                .map(|(name, v)| match v {
                    crate::event::syscall::ArgValue::Number(n) => format!("{name}={n}"),
                    crate::event::syscall::ArgValue::Names(names) => {
                        format!("{name}={}", names.join("|"))
                    }
                })
                .collect();
            let outcome = if s.refused {
                " (refused by the seccomp profile: an attempt)".to_owned()
            } else if s.result < 0 {
                format!(" (failed with {})", errno_name(s.result))
            } else {
                String::new()
            };
            (
                AlertKind::Syscall,
                format!(
                    "{}({}){outcome} by {} {place}",
                    s.name,
                    args.join(", "),
                    actor(ev)
                ),
            )
        }
        Hit::Read { path } => (
            AlertKind::File,
            format!("read of credential file {path} by {} {place}", actor(ev)),
        ),
        Hit::RuntimeSocket { path } => (
            AlertKind::File,
            format!(
                "connect to the container runtime socket {path} by {} {place}",
                actor(ev)
            ),
        ),
    }
}

/// Evaluates events against a [`RuleSet`] with the stateful detectors it
/// needs: drift (which files each container wrote) and one port-scan counter
/// per port-scan rule. Memory is bounded by [`DetectorLimits`].
#[derive(Debug)]
pub struct Evaluator {
    rules: RuleSet,
    limits: DetectorLimits,
    drift: DriftDetector,
    /// Indexed like [`RuleSet::rules`]; `Some` for port-scan rules.
    scans: Vec<Option<PortScanDetector>>,
    /// Which policies select each workload (see [`Selection`]).
    selection: Selection,
}

/// The policies whose selectors match a workload, remembered per cgroup.
///
/// A selector looks only at the workload (host or container: image, name,
/// namespace, pod, runtime, labels), which changes when the registry learns
/// more about a container, not from one event to the next. Checking every
/// policy's selector on every event costs a glob match per policy: with a
/// thousand policies that, not the rules, was the time per event.
///
/// An entry is used only while the event shows the very workload it was
/// made for (every field equal, the same metadata with its labels), so a
/// container whose metadata arrives later is selected afresh.
#[derive(Debug, Default)]
struct Selection {
    /// For host processes (every host process is the same workload).
    host: Vec<u32>,
    containers: HashMap<u64, Selected>,
}

#[derive(Debug)]
struct Selected {
    key: WorkloadKey,
    policies: Vec<u32>,
}

/// Everything [`Workload::of`] takes from an event of a container; the
/// metadata (labels) is compared by identity and kept alive by the entry, so
/// its address cannot be reused by other metadata while the entry exists.
#[derive(Debug)]
struct WorkloadKey {
    status: MetadataStatus,
    image: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    pod: Option<String>,
    runtime: Option<String>,
    metadata: Option<Arc<RuntimeMetadata>>,
}

impl WorkloadKey {
    fn matches(&self, ev: &EnrichedEvent) -> bool {
        let Some(c) = &ev.container else {
            return false;
        };
        self.status == ev.metadata_status
            && self.image == c.image
            && self.name == c.name
            && self.namespace == c.namespace
            && self.pod == c.pod
            && self.runtime == c.runtime
            && match (&self.metadata, &ev.metadata) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    fn of(ev: &EnrichedEvent) -> Option<WorkloadKey> {
        let c = ev.container.as_ref()?;
        Some(WorkloadKey {
            status: ev.metadata_status,
            image: c.image.clone(),
            name: c.name.clone(),
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            runtime: c.runtime.clone(),
            metadata: ev.metadata.clone(),
        })
    }
}

/// Cgroups whose selection is remembered; past this the memory starts afresh
/// (entries of removed cgroups also go when their `cgroup_rmdir` arrives).
const MAX_SELECTIONS: usize = 16_384;

impl Selection {
    fn new(rules: &RuleSet) -> Self {
        Selection {
            host: rules.select(&Workload::host()),
            containers: HashMap::new(),
        }
    }

    /// The selected policies for `ev`, whose workload is `w` (`Workload::of(ev)`).
    fn get(&mut self, rules: &RuleSet, ev: &EnrichedEvent, w: &Workload<'_>) -> &[u32] {
        // `Workload::of` makes every event without a container a host one.
        if w.host || ev.container.is_none() {
            return &self.host;
        }
        let id = ev.event.header.cgroup_id;
        let known = self.containers.get(&id).is_some_and(|s| s.key.matches(ev));
        if !known && let Some(key) = WorkloadKey::of(ev) {
            if self.containers.len() >= MAX_SELECTIONS && !self.containers.contains_key(&id) {
                self.containers.clear();
            }
            let policies = rules.select(w);
            self.containers.insert(id, Selected { key, policies });
        }
        &self.containers[&id].policies
    }

    fn forget(&mut self, cgroup_id: u64) {
        self.containers.remove(&cgroup_id);
    }
}

impl Evaluator {
    /// An evaluator with the default [`DetectorLimits`].
    pub fn new(rules: RuleSet) -> Self {
        Self::with_limits(rules, DetectorLimits::default())
    }

    /// An evaluator with the given memory bounds.
    pub fn with_limits(rules: RuleSet, limits: DetectorLimits) -> Self {
        let scans = scans_for(&rules, limits);
        Evaluator {
            selection: Selection::new(&rules),
            rules,
            limits,
            drift: DriftDetector::new(limits),
            scans,
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The drift detector's state (for metrics).
    pub fn drift(&self) -> &DriftDetector {
        &self.drift
    }

    /// Puts new rules in force (a reload). What containers wrote is kept;
    /// port-scan windows start afresh.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        self.scans = scans_for(&rules, self.limits);
        self.selection = Selection::new(&rules);
        self.rules = rules;
    }

    /// Learns from one event and appends the findings of every rule to `out`.
    ///
    /// Which policies select the event's workload is remembered per cgroup
    /// while the workload stays the same, so the cost of an event does not
    /// grow with the number of policies that do not select it.
    pub fn evaluate(&mut self, ev: &EnrichedEvent, out: &mut Vec<Finding>) {
        let w = Workload::of(ev);
        self.observe(ev);
        let selected = self.selection.get(&self.rules, ev, &w);
        let state = State {
            drift: &self.drift,
            scans: &mut self.scans,
        };
        self.rules.run(ev, &w, selected, Some(state), out);
    }

    /// Like [`Evaluator::evaluate`], with the workload given (its selectors
    /// are checked on every call: the caller may describe it differently from
    /// one event to the next).
    pub fn evaluate_with(&mut self, ev: &EnrichedEvent, w: &Workload<'_>, out: &mut Vec<Finding>) {
        self.observe(ev);
        let selected = self.rules.select(w);
        let state = State {
            drift: &self.drift,
            scans: &mut self.scans,
        };
        self.rules.run(ev, w, &selected, Some(state), out);
    }

    /// What every event teaches the detectors, before matching.
    fn observe(&mut self, ev: &EnrichedEvent) {
        self.drift.observe(ev);
        if let EventBody::Cgroup(c) = &ev.event.body
            && c.op == CgroupOp::Rmdir
        {
            for det in self.scans.iter_mut().flatten() {
                det.forget_cgroup(c.id);
            }
            self.selection.forget(c.id);
        }
    }
}

fn scans_for(rules: &RuleSet, limits: DetectorLimits) -> Vec<Option<PortScanDetector>> {
    rules
        .rules
        .iter()
        .map(|r| match r.body {
            Body::PortScan(p) => Some(PortScanDetector::new(p, limits.max_scan_keys)),
            _ => None,
        })
        .collect()
}
