//! `monitor rules diff OLD NEW`: what changes, rule by rule, between two
//! rule sets (a learned policy against its edit, a pack against the next).
//!
//! Both sides are loaded as the agent would load them (so an error is
//! reported as `rules check` reports it), then compared as written: each
//! rule with its policy's selector and the exceptions that name it, after
//! later files have extended earlier ones. A list of allow or deny entries
//! is compared entry by entry, so a learned allowlist's edit reads as the
//! entries it added and removed.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::PathBuf,
};

use serde_json::Value;

use super::{Diagnostic, load::rule_files};

/// One rule's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleChange {
    /// `policy/rule`, only in the new set.
    Added(String),
    /// Only in the old set.
    Removed(String),
    /// In both, with what differs, one line each.
    Changed(String, Vec<String>),
}

impl std::fmt::Display for RuleChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleChange::Added(r) => write!(f, "+ {r}: new rule"),
            RuleChange::Removed(r) => write!(f, "- {r}: removed"),
            RuleChange::Changed(r, lines) => {
                write!(f, "~ {r}:")?;
                for l in lines {
                    write!(f, "\n    {l}")?;
                }
                Ok(())
            }
        }
    }
}

/// Each side's rules as written, by `policy/rule`.
#[derive(Default)]
struct Written {
    rules: BTreeMap<String, RuleView>,
    networks: BTreeMap<String, Value>,
}

#[derive(Default, PartialEq)]
struct RuleView {
    /// The rule's own keys, `name` left out.
    body: serde_json::Map<String, Value>,
    selector: Value,
    exceptions: Vec<Value>,
}

/// The rule-by-rule changes from `old` to `new` (each a list of rule
/// directories, later ones extending earlier ones), and the changed
/// networks as `networks.<name>` entries; `Err` with every problem of
/// either side when one does not load.
pub fn diff(old: &[PathBuf], new: &[PathBuf]) -> Result<Vec<RuleChange>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    for side in [old, new] {
        if let Err(d) = super::check_dir(side) {
            diags.extend(d);
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let (old, new) = (written(old)?, written(new)?);
    let mut out = Vec::new();
    let names: BTreeSet<&String> = old.rules.keys().chain(new.rules.keys()).collect();
    for name in names {
        match (old.rules.get(name), new.rules.get(name)) {
            (None, Some(_)) => out.push(RuleChange::Added(name.clone())),
            (Some(_), None) => out.push(RuleChange::Removed(name.clone())),
            (Some(a), Some(b)) if a != b => {
                out.push(RuleChange::Changed(name.clone(), changes(a, b)));
            }
            _ => {}
        }
    }
    let nets: BTreeSet<&String> = old.networks.keys().chain(new.networks.keys()).collect();
    for n in nets {
        let (a, b) = (old.networks.get(n), new.networks.get(n));
        if a != b {
            out.push(RuleChange::Changed(
                format!("networks.{n}"),
                vec![format!(
                    "{} -> {}",
                    a.map_or("(none)".into(), compact),
                    b.map_or("(none)".into(), compact)
                )],
            ));
        }
    }
    Ok(out)
}

/// The rule files of `dirs` read as plain YAML values, merged in order.
fn written(dirs: &[PathBuf]) -> Result<Written, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let files = rule_files(dirs, &mut diags);
    let mut w = Written::default();
    // Exceptions by policy, attached to their rules at the end (a later file
    // may add a rule an earlier exception names).
    let mut exceptions: Vec<(String, Value)> = Vec::new();
    let mut selectors: BTreeMap<String, Value> = BTreeMap::new();
    for file in files {
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::whole(&file, e.to_string(), "check the file"));
                continue;
            }
        };
        let doc: Value = match serde_saphyr::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                diags.push(Diagnostic::whole(
                    &file,
                    e.to_string(),
                    "run `monitor rules check`",
                ));
                continue;
            }
        };
        if let Some(nets) = doc.get("networks").and_then(Value::as_object) {
            for (k, v) in nets {
                w.networks.insert(k.clone(), v.clone());
            }
        }
        for policy in doc
            .get("policies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(pname) = policy.get("name").and_then(Value::as_str) else {
                continue;
            };
            let replace = policy.get("override").and_then(Value::as_bool) == Some(true);
            if replace {
                w.rules.retain(|k, _| !k.starts_with(&format!("{pname}/")));
                exceptions.retain(|(p, _)| p != pname);
            }
            if let Some(sel) = policy.get("selector") {
                selectors.insert(pname.to_owned(), sel.clone());
            }
            for rule in policy
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(mut body) = rule.as_object().cloned() else {
                    continue;
                };
                let Some(rname) = body
                    .remove("name")
                    .and_then(|n| n.as_str().map(str::to_owned))
                else {
                    continue;
                };
                let view = w.rules.entry(format!("{pname}/{rname}")).or_default();
                view.body = body;
            }
            for e in policy
                .get("exceptions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                exceptions.push((pname.to_owned(), e.clone()));
            }
        }
    }
    for (key, view) in &mut w.rules {
        let (policy, rule) = key.rsplit_once('/').expect("policy/rule");
        view.selector = selectors.get(policy).cloned().unwrap_or(Value::Null);
        for (p, e) in &exceptions {
            let names = match e.get("rules") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => vec![],
            };
            if p == policy && names.contains(&rule) {
                view.exceptions.push(e.clone());
            }
        }
    }
    if diags.is_empty() { Ok(w) } else { Err(diags) }
}

/// One line per difference of two views of a rule.
fn changes(a: &RuleView, b: &RuleView) -> Vec<String> {
    let mut out = Vec::new();
    if a.selector != b.selector {
        out.push(format!(
            "selector: {} -> {}",
            compact(&a.selector),
            compact(&b.selector)
        ));
    }
    let keys: BTreeSet<&String> = a.body.keys().chain(b.body.keys()).collect();
    for k in keys {
        body_changes(k, a.body.get(k), b.body.get(k), &mut out);
    }
    list_changes("exception", &a.exceptions, &b.exceptions, &mut out);
    out
}

fn body_changes(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
    match (a, b) {
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                body_changes(&format!("{path}.{k}"), a.get(k), b.get(k), out);
            }
        }
        // Lists of entries (allow, deny): entry by entry.
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.iter().chain(b).any(Value::is_object) =>
        {
            list_changes(path, a, b, out);
        }
        (a, b) => out.push(format!(
            "{path}: {} -> {}",
            a.map_or("(none)".into(), compact),
            b.map_or("(none)".into(), compact)
        )),
    }
}

fn list_changes(what: &str, a: &[Value], b: &[Value], out: &mut Vec<String>) {
    for e in b.iter().filter(|e| !a.contains(e)) {
        out.push(format!("{what} + {}", compact(e)));
    }
    for e in a.iter().filter(|e| !b.contains(e)) {
        out.push(format!("{what} - {}", compact(e)));
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    const OLD: &str = r#"
policies:
  - name: shop/api
    selector: {image: ["shop/api:*"]}
    rules:
      - name: procs
        severity: medium
        process:
          allow:
            - exe: [/usr/bin/python3]
            - exe: [/bin/sh]
      - name: gone
        severity: low
        memfd: {}
"#;

    const NEW: &str = r#"
policies:
  - name: shop/api
    selector: {image: ["shop/api:*"]}
    rules:
      - name: procs
        severity: high
        process:
          allow:
            - exe: [/usr/bin/python3]
            - exe: [/usr/bin/gunicorn]
      - name: fresh
        severity: low
        drift: {}
    exceptions:
      - reason: health checks
        rules: [procs]
        exe: [/usr/bin/curl]
"#;

    #[test]
    fn rules_added_removed_and_changed_entry_by_entry() {
        let (old, new) = (dir(&[("a.yaml", OLD)]), dir(&[("a.yaml", NEW)]));
        let changes = diff(&[old.path().into()], &[new.path().into()]).unwrap();
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "+ shop/api/fresh: new rule",
                "- shop/api/gone: removed",
                "~ shop/api/procs:\n    process.allow + {\"exe\":[\"/usr/bin/gunicorn\"]}\n    process.allow - {\"exe\":[\"/bin/sh\"]}\n    severity: \"medium\" -> \"high\"\n    exception + {\"exe\":[\"/usr/bin/curl\"],\"reason\":\"health checks\",\"rules\":[\"procs\"]}",
            ]
        );
    }

    #[test]
    fn the_same_rules_have_no_changes_and_a_broken_side_is_an_error() {
        let (a, b) = (dir(&[("a.yaml", OLD)]), dir(&[("a.yaml", OLD)]));
        assert!(
            diff(&[a.path().into()], &[b.path().into()])
                .unwrap()
                .is_empty()
        );
        let broken = dir(&[("a.yaml", "policies:\n  - name: x\n    rules: 3\n")]);
        assert!(diff(&[a.path().into()], &[broken.path().into()]).is_err());
    }
}
