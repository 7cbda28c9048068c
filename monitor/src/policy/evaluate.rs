//! The evaluator: the match loop over the selected policies' rules, with the
//! stateful detectors and the per-cgroup memory of which policies select whom.
use super::{
    detect::{DetectorLimits, DriftDetector, PortScanDetector, is_fileless_exec, is_write},
    matcher::{ExecSubject, Globs},
    model::{Body, FileRule, Policy, Rule, RuleSet, ShellRule, op_bit},
    selection::Selection,
    selector::Workload,
    sentences::{self, Hit, PathRole, ShellCase},
};
use crate::{
    context::EnrichedEvent,
    event::{CgroupOp, EventBody, ExecInfo, FileInfo, FileOp, NetOp, NetworkInfo},
    finding::{Action, Finding, SCAN_LIST_CAP, ScanSummary},
};

/// Mutable state the stateful rules use.
struct State<'s> {
    drift: &'s DriftDetector,
    scans: &'s mut [Option<PortScanDetector>],
}

impl RuleSet {
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
    pub(super) fn select(&self, w: &Workload<'_>) -> Vec<u32> {
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
                                let inode = match &ev.event.body {
                                    EventBody::Exec(x) => x.exe_inode,
                                    _ => None,
                                };
                                st.drift
                                    .was_written(ev.event.header.cgroup_id, s.exe, inode)
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
    let (kind, summary) = sentences::summary(ev, exec, hit);
    let attempt = match &ev.event.body {
        EventBody::File(f) => f.result < 0,
        EventBody::Syscall(s) => s.result < 0,
        _ => false,
    };
    let action_taken = ev.event.action_taken();
    let would_deny = rule.action != Action::Alert && action_taken.is_none();
    let mut summary = summary;
    summary.push_str(sentences::enforcement_note(
        rule.action,
        action_taken,
        would_deny,
    ));
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
