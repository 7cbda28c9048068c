//! `action: deny` and `action: kill`: what the kernel needs to carry a rule
//! out, and the exceptions it can honour, checked at compile time.

use serde_saphyr::Spanned;

use super::value::Ctx;
use crate::finding::Action;
use crate::policy::{
    enforce::ProtectPath,
    model::{ALL_OPS, Body, Exception, KernelForm, KillList, Rule},
    raw::{RawException, RawRule, loc},
};

/// A glob with none of the characters that make it one.
fn is_literal(s: &str) -> bool {
    !s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// `action:` and what the kernel needs to carry it out. The kernel decides
/// before the agent knows the process, from what it can see: the
/// destination for an egress `deny`, the target file for a file `deny`,
/// the exec'd file's path for `kill`; a rule that needs more cannot be
/// enforced, and says so here rather than at run time.
pub(super) fn compile_action(
    cx: &mut Ctx<'_>,
    afile: usize,
    a: &Spanned<String>,
    file: usize,
    raw: &RawRule,
    body: &Body,
) -> Option<(Action, Option<KernelForm>)> {
    let action = match a.value.trim() {
        "alert" => return Some((Action::Alert, None)),
        "deny" => Action::Deny,
        "kill" => Action::Kill,
        other => {
            cx.error(
                afile,
                loc(a),
                format!("unknown action `{other}`"),
                "use alert (the default), deny (egress and file rules) or kill (process deny lists)",
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
            ok.then_some((Action::Kill, Some(KernelForm::Kill(kill))))
        }
        (Action::Deny, Body::File(fr)) => {
            let what = if fr.mode_bits != 0 {
                Some("mode_bits")
            } else if fr.linked_to.is_some() {
                Some("linked_to")
            } else if fr.ops != ALL_OPS {
                Some("ops")
            } else {
                None
            };
            if let Some(what) = what {
                cx.error(
                    afile,
                    loc(a),
                    format!("`action: deny` cannot check `{what}`: the kernel refuses every write to the rule's paths"),
                    format!("put `{what}` in a rule of its own with `action: alert`, or leave `action` out"),
                );
                return None;
            }
            let rf = raw.file.as_ref()?;
            if rf.paths.is_empty() {
                cx.error(
                    afile,
                    loc(a),
                    "`action: deny` needs `paths`: a file rule without them is an allowlist of every path, which the kernel cannot hold",
                    "list the files and directories to protect in `paths` (`/etc/**`)",
                );
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            let entries = rf.paths.iter().map(|p| (p, false));
            for (p, allow) in entries.chain(rf.allow.iter().map(|p| (p, true))) {
                let v = p.value.trim();
                let (path, tree) = match v.strip_suffix("/**") {
                    Some(dir) => (if dir.is_empty() { "/" } else { dir }, true),
                    None => (v, false),
                };
                if path.starts_with('/') && is_literal(path) && !path.contains("/**") {
                    out.push(ProtectPath {
                        path: path.to_owned(),
                        tree,
                        allow,
                    });
                } else {
                    ok = false;
                    cx.error(
                        file,
                        loc(p),
                        format!("`action: deny` cannot match the glob `{v}`: the kernel refuses writes to whole files and directory trees"),
                        "write a full path (`/etc/passwd`) or a whole tree (`/etc/**`) for each entry, in `paths` and `allow` alike",
                    );
                }
            }
            ok.then_some((Action::Deny, Some(KernelForm::Protect(out))))
        }
        (Action::Deny, _) => {
            cx.error(
                afile,
                loc(a),
                format!(
                    "`action: deny` applies to egress and file rules; rule `{}` is neither",
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

/// An exception that applies to a rule with `action: deny` or `kill` must be
/// one the kernel can honour: the workload (`selector`) for both, and the
/// destination (`to`, `ports`) for `deny`.
pub(super) fn check_enforceable(
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
