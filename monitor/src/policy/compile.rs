//! Merged rule text to compiled matchers, with a diagnostic at every value
//! that cannot be compiled.
use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
};

use globset::{Glob, GlobMatcher};
use ipnet::IpNet;
use serde_saphyr::{Location, Spanned};

use super::{
    Diagnostic,
    detect::ScanParams,
    load::{Merged, MergedPolicy, MergedRule},
    matcher::{Dest, ExecList, ExecPattern, GlobKind, Globs, IpTable, PortSet, Protocols, glob},
    model::{
        ALL_OPS, Body, Exception, FileRule, KillList, PathRule, Policy, Rule, RuleSet, ShellRule,
        SyscallRule, op_bit,
    },
    raw::{List, RawDest, RawException, RawExec, RawPort, RawRule, RawSelector, loc},
    selector::{RUNTIMES, Selector},
};
use crate::{
    event::FileOp,
    finding::{Action, Severity},
};

const GLOB_HINT: &str = "close every `[` and `{`, and escape a literal `*`, `?`, `[` or `{` as `[*]`, `[?]`, `[[]`, `[{]` (or with a backslash)";

struct Ctx<'a> {
    files: &'a [PathBuf],
    diags: &'a mut Vec<Diagnostic>,
    networks: BTreeMap<String, Vec<IpNet>>,
}

impl Ctx<'_> {
    fn error(
        &mut self,
        file: usize,
        at: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let d = Diagnostic::at(&self.files[file], at, message, hint);
        self.diags.push(d);
    }

    /// Compiles a list of globs; `None` when the list is empty.
    fn globs(
        &mut self,
        file: usize,
        list: &List<String>,
        kind: GlobKind,
        what: &str,
    ) -> Option<Globs> {
        if list.is_empty() {
            return None;
        }
        let globs: Vec<Glob> = list
            .iter()
            .filter_map(|s| self.glob(file, s, kind, what))
            .collect();
        Some(Globs::new(globs))
    }

    fn glob(
        &mut self,
        file: usize,
        s: &Spanned<String>,
        kind: GlobKind,
        what: &str,
    ) -> Option<Glob> {
        let pattern = s.value.as_str();
        if kind == GlobKind::Path
            && !(pattern.starts_with('/') || pattern.starts_with("**") || pattern.starts_with('{'))
        {
            self.error(
                file,
                loc(s),
                format!("{what} pattern `{pattern}` can never match: paths here are absolute"),
                format!("write `**/{pattern}` to match in any directory, or the full path such as `/usr/bin/{pattern}`"),
            );
            return None;
        }
        match glob(pattern, kind) {
            Ok(g) => Some(g),
            Err(e) => {
                self.error(
                    file,
                    loc(s),
                    format!("bad glob `{pattern}`: {}", e.kind()),
                    GLOB_HINT,
                );
                None
            }
        }
    }

    fn matcher(
        &mut self,
        file: usize,
        s: &Spanned<String>,
        kind: GlobKind,
        what: &str,
    ) -> Option<GlobMatcher> {
        self.glob(file, s, kind, what).map(|g| g.compile_matcher())
    }

    /// Addresses, prefixes and network names to one table; `None` when the list is empty.
    fn table(&mut self, file: usize, list: &List<String>) -> Option<IpTable> {
        if list.is_empty() {
            return None;
        }
        let mut nets = Vec::new();
        for s in list {
            let v = s.value.trim();
            if is_network_name(v) {
                match self.networks.get(v) {
                    Some(n) => nets.extend(n.iter().copied()),
                    None => {
                        let known: Vec<&str> = self.networks.keys().map(String::as_str).collect();
                        self.error(
                            file,
                            loc(s),
                            format!("unknown network `{v}`"),
                            if known.is_empty() {
                                format!("define it under `networks:` (e.g. `networks: {{{v}: [10.0.0.0/8]}}`) or write a CIDR")
                            } else {
                                format!("define it under `networks:` or use one of: {}", known.join(", "))
                            },
                        );
                    }
                }
                continue;
            }
            match parse_cidr(v) {
                Ok(n) => nets.push(n),
                Err(why) => self.error(file, loc(s), format!("bad CIDR `{v}`: {why}"), CIDR_HINT),
            }
        }
        Some(IpTable::new(&nets))
    }

    fn ports(&mut self, file: usize, list: &List<RawPort>) -> Option<PortSet> {
        if list.is_empty() {
            return None;
        }
        let mut ranges = Vec::new();
        for p in list {
            match parse_port(&p.value) {
                Ok(r) => ranges.push(r),
                Err(why) => self.error(
                    file,
                    loc(p),
                    why,
                    "a port is a number from 1 to 65535; a range is a quoted \"low-high\" such as \"8000-8080\"",
                ),
            }
        }
        Some(PortSet::new(ranges))
    }

    fn severity(&mut self, file: usize, s: &Spanned<String>) -> Option<Severity> {
        let sev = match s.value.trim().to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => {
                self.error(
                    file,
                    loc(s),
                    format!("unknown severity `{}`", s.value),
                    "use one of: info, low, medium, high, critical",
                );
                return None;
            }
        };
        Some(sev)
    }

    fn selector(&mut self, file: usize, s: &Spanned<RawSelector>) -> Selector {
        let r = &s.value;
        let mut runtime = None;
        if !r.runtime.is_empty() {
            let mut v = Vec::new();
            for rt in &r.runtime {
                match RUNTIMES.iter().find(|k| **k == rt.value.trim()) {
                    Some(k) => v.push(*k),
                    None => self.error(
                        file,
                        loc(rt),
                        format!("unknown container runtime `{}`", rt.value),
                        format!("use one of: {}", RUNTIMES.join(", ")),
                    ),
                }
            }
            runtime = Some(v);
        }
        let mut labels = Vec::new();
        for (k, v) in &r.labels {
            if let Some(g) = self.glob(file, v, GlobKind::Text, "label") {
                labels.push((k.clone(), Globs::new([g])));
            }
        }
        Selector {
            host: r.host,
            containers: r.containers,
            image: self.globs(file, &r.image, GlobKind::Text, "image"),
            name: self.globs(file, &r.name, GlobKind::Text, "name"),
            namespace: self.globs(file, &r.namespace, GlobKind::Text, "namespace"),
            pod: self.globs(file, &r.pod, GlobKind::Text, "pod"),
            runtime,
            labels,
        }
    }

    fn exec_list(&mut self, file: usize, entries: &[RawExec], at: Location) -> ExecList {
        let mut plain = Vec::new();
        let mut plain_names = Vec::new();
        let mut conditional = Vec::new();
        for e in entries {
            if e.exe.is_empty() && e.name.is_empty() {
                self.error(
                    file,
                    at,
                    "a process entry has neither `exe` nor `name`",
                    "give an executable glob (`exe: \"**/sshd\"`) or a program name (`name: sshd`, which also matches busybox applets)",
                );
                continue;
            }
            for n in &e.name {
                if n.value.contains('/') {
                    self.error(
                        file,
                        loc(n),
                        format!("program name `{}` has a `/`: names are file names", n.value),
                        "write the file name alone (`name: nc`), or match the path with `exe:`",
                    );
                }
            }
            if e.args.is_empty() && e.parents.is_empty() && (e.exe.is_empty() || e.name.is_empty())
            {
                plain.extend(
                    e.exe
                        .iter()
                        .filter_map(|s| self.glob(file, s, GlobKind::Path, "exe")),
                );
                plain_names.extend(
                    e.name
                        .iter()
                        .filter_map(|s| self.glob(file, s, GlobKind::Text, "name")),
                );
                continue;
            }
            let exe = self.globs(file, &e.exe, GlobKind::Path, "exe");
            let names = self.globs(file, &e.name, GlobKind::Text, "name");
            let args = e
                .args
                .iter()
                .filter_map(|s| self.matcher(file, s, GlobKind::Text, "args"))
                .collect();
            let parents = self.globs(file, &e.parents, GlobKind::Path, "parents");
            conditional.push(ExecPattern {
                exe,
                names,
                args,
                parents,
            });
        }
        ExecList::new(conditional, plain, plain_names)
    }

    fn dests(&mut self, file: usize, entries: &[RawDest]) -> Vec<Dest> {
        entries
            .iter()
            .map(|d| {
                let mut protocols = Protocols::default();
                for p in &d.protocols {
                    match p.value.trim().to_ascii_lowercase().as_str() {
                        "tcp" => protocols = protocols.with(Protocols::TCP),
                        "udp" => protocols = protocols.with(Protocols::UDP),
                        _ => self.error(
                            file,
                            loc(p),
                            format!("unknown protocol `{}`", p.value),
                            "use `tcp` or `udp`, or leave `protocols` out for any",
                        ),
                    }
                }
                Dest {
                    to: self.table(file, &d.to),
                    ports: self.ports(file, &d.ports),
                    protocols,
                    dns: self.globs(file, &d.dns, GlobKind::Dns, "dns"),
                }
            })
            .collect()
    }
}

const CIDR_HINT: &str = "write an address or prefix such as 10.0.0.0/8, 192.168.1.5 or fd00::/8 (prefix at most /32 for IPv4, /128 for IPv6), or the name of a network under `networks:`";

/// A network name: a letter, then letters, digits, `-` or `_`.
fn is_network_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.parse::<IpAddr>().is_err()
}

/// An address (`10.1.2.3`, a /32 or /128) or a prefix (`10.0.0.0/8`); host
/// bits in a prefix are cleared.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(format!(
                    "prefix length `/{l}` is not 0 to {max} for an {} address",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                ));
            }
        },
    };
    IpNet::new(ip, len)
        .map(|n| n.trunc())
        .map_err(|e| e.to_string())
}

fn parse_port(p: &RawPort) -> Result<(u16, u16), String> {
    let one = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|&v| v != 0)
            .ok_or_else(|| format!("port {n} is out of range"))
    };
    match p {
        RawPort::Number(n) => one(*n).map(|v| (v, v)),
        RawPort::Text(t) => {
            let t = t.trim();
            let num = |s: &str| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("bad port `{t}`"))
                    .and_then(one)
            };
            match t.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if lo > hi {
                        return Err(format!("bad port range `{t}`: {lo} is above {hi}"));
                    }
                    Ok((lo, hi))
                }
                None => num(t).map(|v| (v, v)),
            }
        }
    }
}

/// `10s`, `500ms`, `1m` to nanoseconds.
fn parse_window(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let ns = match unit.trim() {
        "ms" => n.checked_mul(1_000_000)?,
        "s" => n.checked_mul(1_000_000_000)?,
        "m" => n.checked_mul(60_000_000_000)?,
        _ => return None,
    };
    (1_000_000..=600_000_000_000).contains(&ns).then_some(ns)
}

/// Compiles everything merged; problems go to `diags`.
pub(crate) fn compile(merged: Merged, diags: &mut Vec<Diagnostic>) -> RuleSet {
    let mut cx = Ctx {
        files: &merged.files,
        diags,
        networks: BTreeMap::new(),
    };
    // Networks first: every policy may refer to any of them.
    for (name, (file, list)) in &merged.networks {
        if !is_network_name(name) {
            let at = list.iter().next().map_or(Location::UNKNOWN, loc);
            cx.error(
                *file,
                at,
                format!("bad network name `{name}`"),
                "start a network name with a letter and use only letters, digits, `-` and `_`",
            );
            continue;
        }
        let mut nets = Vec::new();
        for s in list {
            match parse_cidr(s.value.trim()) {
                Ok(n) => nets.push(n),
                Err(why) => cx.error(
                    *file,
                    loc(s),
                    format!("bad CIDR `{}`: {why}", s.value),
                    CIDR_HINT,
                ),
            }
        }
        cx.networks.insert(name.clone(), nets);
    }

    let mut set = RuleSet {
        files: merged.files.clone(),
        ..RuleSet::default()
    };
    for p in &merged.policies {
        compile_policy(&mut cx, p, &mut set);
    }
    set
}

fn compile_policy(cx: &mut Ctx<'_>, p: &MergedPolicy, set: &mut RuleSet) {
    let name: Arc<str> = Arc::from(p.name.value.as_str());
    let selector = match &p.selector {
        Some((file, s)) => {
            let sel = cx.selector(*file, s);
            if !sel.host && !sel.containers && !sel.has_container_fields() {
                cx.error(
                    *file,
                    loc(s),
                    format!("the selector of policy `{name}` selects nothing"),
                    "set `containers: true`, `host: true`, or a container field (image, name, namespace, pod, runtime, labels)",
                );
            }
            sel
        }
        None => {
            cx.error(
                p.file,
                loc(&p.name),
                format!("policy `{name}` has no selector"),
                "add e.g. `selector: {containers: true}` (every container) or `selector: {image: [\"nginx:*\"]}`",
            );
            Selector::default()
        }
    };

    let start = set.rules.len();
    // Rule name -> index in `set.rules` (disabled rules map to None).
    let mut index: Vec<(&str, Option<usize>)> = Vec::new();
    for r in &p.rules {
        let compiled = compile_rule(cx, &name, r);
        let slot = match compiled {
            Some(rule) if r.enabled => {
                set.rules.push(rule);
                Some(set.rules.len() - 1)
            }
            _ => None,
        };
        index.push((r.name.value.as_str(), slot));
    }
    let rules = start..set.rules.len();
    let has_process_allow = set.rules[rules.clone()]
        .iter()
        .any(|r| matches!(r.body, Body::ProcessAllow(_)));

    let mut exceptions = Vec::new();
    for (file, x) in &p.exceptions {
        let Some(e) = compile_exception(cx, *file, x, &name, &index) else {
            continue;
        };
        check_enforceable(cx, *file, x, &e, &set.rules, rules.clone());
        exceptions.push(e);
    }
    set.policies.push(Policy {
        name,
        selector,
        rules,
        exceptions,
        has_process_allow,
    });
}

fn compile_rule(cx: &mut Ctx<'_>, policy: &Arc<str>, r: &MergedRule) -> Option<Rule> {
    let severity = match &r.severity {
        Some((file, s)) => cx.severity(*file, s),
        None => {
            cx.error(
                r.file,
                loc(&r.name),
                format!("rule `{}` has no severity", r.name.value),
                "add `severity:` with one of info, low, medium, high, critical",
            );
            None
        }
    };
    let Some((file, raw)) = &r.body else {
        cx.error(
            r.file,
            loc(&r.name),
            format!("rule `{}` says nothing to check", r.name.value),
            "give one of `process`, `shell`, `file`, `egress`, `drift`, `memfd`, `port_scan`, `syscall`, `read`, `runtime_socket` or `posture`",
        );
        return None;
    };
    let mut tags = Vec::new();
    if let Some((file, list)) = &r.tags {
        for t in list {
            if is_technique_id(t.value.trim()) {
                tags.push(t.value.trim().to_owned());
            } else {
                cx.error(
                    *file,
                    loc(t),
                    format!("`{}` is not an ATT&CK technique id", t.value),
                    "write a technique or sub-technique id such as `T1059` or `T1059.004`",
                );
            }
        }
    }
    let body = compile_body(cx, *file, raw)?;
    let (action, kill) = match &r.action {
        None => (Action::Alert, None),
        Some((afile, a)) => compile_action(cx, *afile, a, *file, raw, &body)?,
    };
    Some(Rule {
        name: Arc::from(r.name.value.as_str()),
        policy: policy.clone(),
        severity: severity?,
        tags: Arc::from(tags),
        body,
        action,
        kill,
    })
}

/// A glob with none of the characters that make it one.
fn is_literal(s: &str) -> bool {
    !s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// `action:` and what the kernel needs to carry it out. The kernel decides
/// before the agent knows the process, from what it can see: the
/// destination for `deny`, the exec'd file's path for `kill`; a rule that
/// needs more cannot be enforced, and says so here rather than at run time.
fn compile_action(
    cx: &mut Ctx<'_>,
    afile: usize,
    a: &Spanned<String>,
    file: usize,
    raw: &RawRule,
    body: &Body,
) -> Option<(Action, Option<KillList>)> {
    let action = match a.value.trim() {
        "alert" => return Some((Action::Alert, None)),
        "deny" => Action::Deny,
        "kill" => Action::Kill,
        other => {
            cx.error(
                afile,
                loc(a),
                format!("unknown action `{other}`"),
                "use alert (the default), deny (egress rules) or kill (process deny lists)",
            );
            return None;
        }
    };
    match (action, body) {
        (Action::Deny, Body::EgressAllow(_) | Body::EgressDeny(_)) => {
            let dests = raw
                .egress
                .as_ref()
                .and_then(|e| e.allow.as_ref().or(e.deny.as_ref()));
            let mut ok = true;
            for d in dests.into_iter().flatten() {
                if let Some(dns) = d.dns.iter().next() {
                    ok = false;
                    cx.error(
                        file,
                        loc(dns),
                        "`dns` cannot be enforced: the kernel decides a connection before any name is known",
                        "give this rule `action: alert`, or list the destination's addresses in `to:` instead of its name",
                    );
                }
            }
            ok.then_some((Action::Deny, None))
        }
        (Action::Kill, Body::ProcessDeny { unless_allowed, .. }) => {
            if *unless_allowed {
                cx.error(
                    afile,
                    loc(a),
                    "`action: kill` cannot honour `unless_allowed`: the kernel does not know the workload's allowlist",
                    "remove `unless_allowed` (and list only what must never run), or use `action: alert`",
                );
                return None;
            }
            let mut kill = KillList::default();
            let mut ok = true;
            for e in raw
                .process
                .as_ref()
                .and_then(|p| p.deny.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(c) = e.args.iter().next().or(e.parents.iter().next()) {
                    ok = false;
                    cx.error(
                        file,
                        loc(c),
                        "`action: kill` cannot check `args` or `parents`: the kernel kills by the executable alone",
                        "put the entries with `args` or `parents` in a rule of their own with `action: alert`",
                    );
                    continue;
                }
                for x in &e.exe {
                    let v = x.value.as_str();
                    match v.strip_prefix("**/") {
                        Some(n) if is_literal(n) && !n.contains('/') => {
                            kill.names.push(n.to_owned())
                        }
                        None if v.starts_with('/') && is_literal(v) => {
                            kill.paths.push(v.to_owned())
                        }
                        _ => {
                            ok = false;
                            cx.error(
                                file,
                                loc(x),
                                format!("`action: kill` cannot match the glob `{v}`: the kernel compares whole paths or file names"),
                                "write a full path (`/usr/sbin/sshd`) or `**/NAME` (`**/sshd`) for each executable to kill",
                            );
                        }
                    }
                }
                for n in &e.name {
                    if is_literal(&n.value) {
                        kill.names.push(n.value.clone());
                    } else {
                        ok = false;
                        cx.error(
                            file,
                            loc(n),
                            format!("`action: kill` cannot match the glob `{}`", n.value),
                            "write each program name to kill in full (`name: nc`)",
                        );
                    }
                }
            }
            ok.then_some((Action::Kill, Some(kill)))
        }
        (Action::Deny, _) => {
            cx.error(
                afile,
                loc(a),
                format!(
                    "`action: deny` applies to egress rules; rule `{}` is not one",
                    raw.name.value
                ),
                "use `action: kill` on a process `deny` list, or leave `action` out (alert only)",
            );
            None
        }
        _ => {
            cx.error(
                afile,
                loc(a),
                format!(
                    "`action: kill` applies to process `deny` lists; rule `{}` is not one",
                    raw.name.value
                ),
                "use `action: deny` on an egress rule, or leave `action` out (alert only)",
            );
            None
        }
    }
}

/// `T` and four digits, optionally `.` and three more: `T1059`, `T1059.004`.
fn is_technique_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = match rest.split_once('.') {
        Some((m, sub)) => (m, Some(sub)),
        None => (rest, None),
    };
    let digits = |d: &str, n: usize| d.len() == n && d.bytes().all(|b| b.is_ascii_digit());
    digits(main, 4) && sub.is_none_or(|sub| digits(sub, 3))
}

fn compile_body(cx: &mut Ctx<'_>, file: usize, raw: &RawRule) -> Option<Body> {
    let at = loc(&raw.name);
    let bodies = raw.bodies();
    if bodies.len() > 1 {
        cx.error(
            file,
            at,
            format!(
                "rule `{}` has several bodies: {}",
                raw.name.value,
                bodies.join(", ")
            ),
            "give each rule one of them and split the rest into rules of their own",
        );
        return None;
    }
    if let Some(pr) = &raw.process {
        return match (&pr.allow, &pr.deny) {
            (Some(allow), None) => {
                if pr.unless_allowed {
                    cx.error(
                        file,
                        at,
                        "`unless_allowed` only applies to a `deny` list",
                        "remove `unless_allowed`, or turn `allow` into `deny`",
                    );
                    return None;
                }
                Some(Body::ProcessAllow(cx.exec_list(file, allow, at)))
            }
            (None, Some(deny)) => Some(Body::ProcessDeny {
                list: cx.exec_list(file, deny, at),
                unless_allowed: pr.unless_allowed,
            }),
            _ => {
                cx.error(
                    file,
                    at,
                    format!("process rule `{}` needs exactly one of `allow` and `deny`", raw.name.value),
                    "`allow` lists what may run (anything else fires); `deny` lists what may not; use two rules for both",
                );
                None
            }
        };
    }
    if let Some(sh) = &raw.shell {
        if sh.shells.is_empty() {
            cx.error(
                file,
                at,
                format!("shell rule `{}` lists no shells", raw.name.value),
                "list the program names that are shells, e.g. `shells: [sh, bash, dash, ash]`",
            );
            return None;
        }
        return Some(Body::Shell(ShellRule {
            shells: cx
                .globs(file, &sh.shells, GlobKind::Text, "shell")
                .unwrap_or_else(Globs::empty),
            chain: cx
                .globs(file, &sh.chain, GlobKind::Text, "chain")
                .unwrap_or_else(Globs::empty),
        }));
    }
    if let Some(fr) = &raw.file {
        let mut mode_bits = 0;
        for b in &fr.mode_bits {
            match b.value.trim() {
                "setuid" => mode_bits |= 0o4000,
                "setgid" => mode_bits |= 0o2000,
                "sticky" => mode_bits |= 0o1000,
                _ => cx.error(
                    file,
                    loc(b),
                    format!("unknown mode bit `{}`", b.value),
                    "use setuid, setgid or sticky",
                ),
            }
        }
        let mut ops = if fr.ops.is_empty() { ALL_OPS } else { 0 };
        for o in &fr.ops {
            match FileOp::from_name(o.value.trim()) {
                Some(op) => ops |= op_bit(op),
                None => cx.error(
                    file,
                    loc(o),
                    format!("unknown file op `{}`", o.value),
                    "use open, creat, rename, unlink, chmod, truncate, link or symlink",
                ),
            }
        }
        return Some(Body::File(FileRule {
            paths: cx.globs(file, &fr.paths, GlobKind::Path, "path"),
            allow: cx
                .globs(file, &fr.allow, GlobKind::Path, "allow")
                .unwrap_or_else(Globs::empty),
            ops,
            mode_bits,
            linked_to: cx.globs(file, &fr.linked_to, GlobKind::Path, "linked_to"),
        }));
    }
    if let Some(er) = &raw.egress {
        return match (&er.allow, &er.deny) {
            (Some(allow), None) => Some(Body::EgressAllow(cx.dests(file, allow))),
            (None, Some(deny)) => Some(Body::EgressDeny(cx.dests(file, deny))),
            _ => {
                cx.error(
                    file,
                    at,
                    format!("egress rule `{}` needs exactly one of `allow` and `deny`", raw.name.value),
                    "`allow` lists permitted destinations (anything else fires); `deny` lists forbidden ones; use two rules for both",
                );
                None
            }
        };
    }
    if let Some(d) = &raw.drift {
        return Some(Body::Drift(
            cx.globs(file, &d.allow, GlobKind::Path, "allow")
                .unwrap_or_else(Globs::empty),
        ));
    }
    if raw.memfd.is_some() {
        return Some(Body::Memfd);
    }
    if let Some(ps) = &raw.port_scan {
        let mut p = ScanParams::default();
        let count = |cx: &mut Ctx<'_>, v: &Option<Spanned<i64>>, zero_ok: bool, out: &mut usize| {
            if let Some(v) = v {
                match usize::try_from(v.value) {
                    Ok(n) if (2..=1024).contains(&n) || (zero_ok && n == 0) => *out = n,
                    _ => cx.error(
                        file,
                        loc(v),
                        format!("port-scan threshold {} is out of range", v.value),
                        if zero_ok {
                            "use 2 to 1024 distinct values, or 0 to turn this threshold off"
                        } else {
                            "use 2 to 1024 distinct values"
                        },
                    ),
                }
            }
        };
        count(cx, &ps.distinct_ports, false, &mut p.distinct_ports);
        count(cx, &ps.distinct_hosts, true, &mut p.distinct_hosts);
        if let Some(w) = &ps.window {
            match parse_window(&w.value) {
                Some(ns) => p.window_ns = ns,
                None => cx.error(
                    file,
                    loc(w),
                    format!("bad window `{}`", w.value),
                    "write a duration from 1ms to 10m such as `10s`, `500ms` or `1m`",
                ),
            }
        }
        return Some(Body::PortScan(p));
    }
    if let Some(sr) = &raw.syscall {
        let mut calls = Vec::new();
        for c in &sr.calls {
            match crate::bpf::syscalls::HOOKED
                .iter()
                .find(|h| h.name == c.value.trim())
            {
                Some(h) => calls.push(h.name),
                None => cx.error(
                    file,
                    loc(c),
                    format!("`{}` is not a system call the monitor watches", c.value),
                    format!(
                        "use one of {}",
                        crate::bpf::syscalls::HOOKED
                            .iter()
                            .map(|h| h.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if sr.calls.is_empty() {
            cx.error(
                file,
                at,
                format!("syscall rule `{}` lists no calls", raw.name.value),
                "list the calls, e.g. `calls: [setns, unshare]`",
            );
            return None;
        }
        return Some(Body::Syscall(SyscallRule {
            calls,
            to_root: sr.to_root,
        }));
    }
    if let Some(pr) = &raw.posture {
        return compile_posture(cx, file, pr);
    }
    for (body, what) in [(&raw.read, "read"), (&raw.runtime_socket, "runtime_socket")] {
        let Some(rr) = body else { continue };
        let Some(paths) = cx.globs(file, &rr.paths, GlobKind::Path, "path") else {
            cx.error(
                file,
                at,
                format!("{what} rule `{}` lists no paths", raw.name.value),
                "list the paths, e.g. `paths: [/etc/shadow, \"**/docker.sock\"]`",
            );
            return None;
        };
        let rule = PathRule {
            paths,
            allow: cx
                .globs(file, &rr.allow, GlobKind::Path, "allow")
                .unwrap_or_else(Globs::empty),
        };
        return Some(if what == "read" {
            Body::Read(rule)
        } else {
            Body::RuntimeSocket(rule)
        });
    }
    None
}

fn compile_posture(
    cx: &mut Ctx<'_>,
    file: usize,
    pr: &Spanned<super::raw::RawPostureRule>,
) -> Option<Body> {
    use super::posture::{DEFAULT_GRACE, PostureCheck as C, PostureRule};
    let r = &pr.value;
    let id = r.check.value.trim();
    let Some(check) = C::from_id(id) else {
        cx.error(
            file,
            loc(&r.check),
            format!("unknown posture check `{}`", r.check.value),
            format!(
                "use one of: {}",
                C::ALL
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return None;
    };
    // Each parameter belongs to some checks; given to another it would do nothing.
    let misplaced = |cx: &mut Ctx<'_>, given: bool, at: Location, key: &str, owners: &[C]| {
        if given && !owners.contains(&check) {
            let names: Vec<&str> = owners.iter().map(|c| c.id()).collect();
            cx.error(
                file,
                at,
                format!("`{key}` does nothing for posture check `{id}`"),
                format!("`{key}` applies to {}; remove it here", names.join(" and ")),
            );
            true
        } else {
            false
        }
    };
    let first = |l: &List<String>| l.iter().next().map_or(loc(pr), loc);
    let mut bad = misplaced(
        cx,
        !r.capabilities.is_empty(),
        first(&r.capabilities),
        "capabilities",
        &[C::AddedCapabilities],
    );
    bad |= misplaced(
        cx,
        !r.paths.is_empty(),
        first(&r.paths),
        "paths",
        &[C::EngineSocketMount, C::SensitiveMount],
    );
    bad |= misplaced(
        cx,
        !r.ports.is_empty(),
        r.ports.iter().next().map_or(loc(pr), loc),
        "ports",
        &[C::SshPort],
    );
    bad |= misplaced(
        cx,
        r.grace.is_some(),
        r.grace.as_ref().map_or(loc(pr), loc),
        "grace",
        &[C::UnusedPort],
    );
    let needs = |cx: &mut Ctx<'_>, empty: bool, key: &str, example: &str| {
        if empty {
            cx.error(
                file,
                loc(&r.check),
                format!("posture check `{id}` needs `{key}`"),
                format!("list them, e.g. `{key}: {example}`"),
            );
        }
        empty
    };
    match check {
        C::AddedCapabilities => {
            bad |= needs(
                cx,
                r.capabilities.is_empty(),
                "capabilities",
                "[SYS_ADMIN, SYS_PTRACE]",
            )
        }
        C::EngineSocketMount | C::SensitiveMount => {
            bad |= needs(cx, r.paths.is_empty(), "paths", "[\"**/docker.sock\"]")
        }
        C::SshPort => bad |= needs(cx, r.ports.is_empty(), "ports", "[22]"),
        _ => {}
    }
    let mut capabilities = Vec::new();
    for c in &r.capabilities {
        let name = crate::context::capability_name(&c.value);
        if KNOWN_CAPABILITIES.contains(&name.as_str()) {
            capabilities.push(name);
        } else {
            bad = true;
            cx.error(
                file,
                loc(c),
                format!("`{}` is not a Linux capability", c.value),
                "write a capability name such as SYS_ADMIN or CAP_SYS_ADMIN (capabilities(7))",
            );
        }
    }
    let mut grace = DEFAULT_GRACE;
    if let Some(g) = &r.grace {
        match parse_window(&g.value) {
            Some(ns) => grace = std::time::Duration::from_nanos(ns),
            None => {
                bad = true;
                cx.error(
                    file,
                    loc(g),
                    format!("bad grace `{}`", g.value),
                    "write a duration from 1ms to 10m such as `30s`, `500ms` or `2m`",
                );
            }
        }
    }
    let paths = cx.globs(file, &r.paths, GlobKind::Path, "path");
    let ports = cx.ports(file, &r.ports);
    if bad {
        return None;
    }
    Some(Body::Posture(PostureRule {
        check,
        capabilities,
        paths,
        ports,
        grace,
    }))
}

/// capabilities(7), without `CAP_`.
const KNOWN_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
    "ALL",
];

fn compile_exception(
    cx: &mut Ctx<'_>,
    file: usize,
    x: &Spanned<RawException>,
    policy: &str,
    index: &[(&str, Option<usize>)],
) -> Option<Exception> {
    let r = &x.value;
    let mut rules = None;
    if !r.rules.is_empty() {
        let mut v = Vec::new();
        let mut ok = true;
        for name in &r.rules {
            match index.iter().find(|(n, _)| *n == name.value) {
                Some((_, Some(i))) => v.push(*i),
                Some((_, None)) => {} // a disabled (or broken) rule: nothing to except
                None => {
                    ok = false;
                    let names: HashSet<&str> = index.iter().map(|(n, _)| *n).collect();
                    let mut names: Vec<&str> = names.into_iter().collect();
                    names.sort_unstable();
                    cx.error(
                        file,
                        loc(name),
                        format!(
                            "exception names rule `{}`, which policy `{policy}` does not have",
                            name.value
                        ),
                        format!("use one of: {}", names.join(", ")),
                    );
                }
            }
        }
        if !ok {
            return None;
        }
        rules = Some(v);
    }
    let selector = r.selector.as_ref().map(|s| {
        let sel = cx.selector(file, s);
        if !sel.host && !sel.containers && !sel.has_container_fields() {
            cx.error(
                file,
                loc(s),
                "this exception's selector selects nothing, so the exception never applies",
                "set `containers: true`, `host: true`, or a container field (image, name, namespace, pod, runtime, labels), or leave `selector` out",
            );
        }
        sel
    });
    let e = Exception {
        rules,
        selector,
        exe: cx.globs(file, &r.exe, GlobKind::Path, "exe"),
        parents: cx.globs(file, &r.parents, GlobKind::Path, "parents"),
        ancestors: cx.globs(file, &r.ancestors, GlobKind::Path, "ancestors"),
        comm: cx.globs(file, &r.comm, GlobKind::Text, "comm"),
        paths: cx.globs(file, &r.paths, GlobKind::Path, "path"),
        to: cx.table(file, &r.to),
        ports: cx.ports(file, &r.ports),
        dns: cx.globs(file, &r.dns, GlobKind::Dns, "dns"),
    };
    let unconditional = e.selector.is_none()
        && e.exe.is_none()
        && e.parents.is_none()
        && e.ancestors.is_none()
        && e.comm.is_none()
        && e.paths.is_none()
        && e.to.is_none()
        && e.ports.is_none()
        && e.dns.is_none();
    if unconditional && e.rules.is_none() {
        cx.error(
            file,
            loc(x),
            format!("this exception has no conditions and names no rules: it would silence all of policy `{policy}`"),
            "add conditions (selector, exe, parents, ancestors, paths, to, ports, dns), or set `enabled: false` on the rules to turn off",
        );
        return None;
    }
    Some(e)
}

/// An exception that applies to a rule with `action: deny` or `kill` must be
/// one the kernel can honour: the workload (`selector`) for both, and the
/// destination (`to`, `ports`) for `deny`.
fn check_enforceable(
    cx: &mut Ctx<'_>,
    file: usize,
    x: &Spanned<RawException>,
    e: &Exception,
    rules: &[Rule],
    own: std::ops::Range<usize>,
) {
    let applies: Vec<usize> = match &e.rules {
        Some(v) => v.clone(),
        None => own.collect(),
    };
    for ri in applies {
        let rule = &rules[ri];
        let r = &x.value;
        let process = [
            ("exe", r.exe.is_empty()),
            ("parents", r.parents.is_empty()),
            ("ancestors", r.ancestors.is_empty()),
            ("comm", r.comm.is_empty()),
            ("paths", r.paths.is_empty()),
            ("dns", r.dns.is_empty()),
        ];
        let dest = [("to", r.to.is_empty()), ("ports", r.ports.is_empty())];
        let bad: Vec<&str> = match rule.action {
            Action::Alert => continue,
            Action::Deny => process
                .iter()
                .filter(|(_, none)| !none)
                .map(|(k, _)| *k)
                .collect(),
            Action::Kill => process
                .iter()
                .chain(dest.iter())
                .filter(|(_, none)| !none)
                .map(|(k, _)| *k)
                .collect(),
        };
        if let Some(first) = bad.first() {
            cx.error(
                file,
                loc(x),
                format!(
                    "this exception cannot be honoured in the kernel for rule `{}` (action: {}): it has `{first}`",
                    rule.name,
                    rule.action.as_str()
                ),
                match rule.action {
                    Action::Deny => "the kernel decides before the agent knows the process: keep to `selector`, `to` and `ports`, or name the rules it is for in `rules:` (leaving the enforced one out)",
                    _ => "the kernel decides by the executable alone: keep to `selector`, or name the rules it is for in `rules:` (leaving the enforced one out)",
                },
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let ok = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.168.1.5", "192.168.1.5/32"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ];
        for (s, want) in ok {
            assert_eq!(parse_cidr(s).unwrap().to_string(), want, "{s}");
        }
        let bad = [
            (
                "10.0.0.0/33",
                "prefix length `/33` is not 0 to 32 for an IPv4 address",
            ),
            (
                "fd00::/129",
                "prefix length `/129` is not 0 to 128 for an IPv6 address",
            ),
            ("10.0.0/8", "`10.0.0` is not an IPv4 or IPv6 address"),
            (
                "10.0.0.0/x",
                "prefix length `/x` is not 0 to 32 for an IPv4 address",
            ),
            ("256.1.1.1", "`256.1.1.1` is not an IPv4 or IPv6 address"),
        ];
        for (s, want) in bad {
            assert_eq!(parse_cidr(s).unwrap_err(), want, "{s}");
        }
    }

    #[test]
    fn network_names() {
        for (s, want) in [
            ("cluster", true),
            ("cluster-dns", true),
            ("a_1", true),
            ("10.0.0.0/8", false),
            ("fd00::/8", false),
            ("-x", false),
            ("", false),
            ("a.b", false),
        ] {
            assert_eq!(is_network_name(s), want, "{s}");
        }
    }

    #[test]
    fn ports() {
        let t = |s: &str| RawPort::Text(s.into());
        let ok = [
            (RawPort::Number(443), (443, 443)),
            (RawPort::Number(65535), (65535, 65535)),
            (t("8000-8080"), (8000, 8080)),
            (t(" 53 "), (53, 53)),
            (t("1-65535"), (1, 65535)),
        ];
        for (p, want) in ok {
            assert_eq!(parse_port(&p), Ok(want), "{p:?}");
        }
        let bad = [
            (RawPort::Number(0), "port 0 is out of range"),
            (RawPort::Number(70000), "port 70000 is out of range"),
            (RawPort::Number(-1), "port -1 is out of range"),
            (t("http"), "bad port `http`"),
            (t("80-"), "bad port `80-`"),
            (
                t("9000-8000"),
                "bad port range `9000-8000`: 9000 is above 8000",
            ),
        ];
        for (p, want) in bad {
            assert_eq!(parse_port(&p), Err(want.to_owned()), "{p:?}");
        }
    }

    #[test]
    fn windows() {
        for (s, want) in [
            ("10s", Some(10_000_000_000)),
            ("500ms", Some(500_000_000)),
            ("1m", Some(60_000_000_000)),
            ("0s", None),
            ("11m", None),
            ("10", None),
            ("s", None),
            ("10h", None),
        ] {
            assert_eq!(parse_window(s), want, "{s}");
        }
    }
}
