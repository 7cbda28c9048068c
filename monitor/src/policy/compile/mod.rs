//! Merged rule text to compiled matchers, with a diagnostic at every value
//! that cannot be compiled.
//!
//! Split by what is compiled: one value ([`value`]), a rule body by kind
//! ([`body`], [`posture`]), an exception ([`exception`]) and what enforcement
//! needs ([`action`]); this file walks policies and rules.
use std::{collections::BTreeMap, sync::Arc};

use serde_saphyr::Location;

use super::{
    Diagnostic,
    load::{Merged, MergedPolicy, MergedRule},
    model::{Body, Policy, Rule, RuleSet},
    raw::loc,
    selector::Selector,
};
use crate::finding::Action;

mod action;
mod body;
mod exception;
mod posture;
mod value;

use action::{check_enforceable, compile_action};
use body::compile_body;
use exception::compile_exception;
use value::{CIDR_HINT, Ctx, is_network_name, parse_cidr};

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
    let (action, kernel) = match &r.action {
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
        kernel,
    })
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
