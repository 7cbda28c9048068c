//! Reading rule files and merging them in order: later files extend or
//! override earlier policies by name (see `rules/README.md`).
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
};

use serde_saphyr::{Location, Spanned};

use super::{
    Diagnostic,
    raw::{List, RawException, RawFile, RawPolicy, RawRule, RawSelector, loc},
};

/// The rule files under `paths`, in load order: each directory's `*.yaml` and
/// `*.yml` files sorted by file name (hidden files skipped), directories in the
/// order given; a path naming a file is taken as it is.
pub(crate) fn rule_files(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => match fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| is_rule_file(p))
                        .collect();
                    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
                    files.extend(found);
                }
                Err(e) => diags.push(Diagnostic::whole(
                    path,
                    format!("cannot list the rule directory: {e}"),
                    "check the path and its permissions",
                )),
            },
            Ok(_) => files.push(path.clone()),
            Err(e) => diags.push(Diagnostic::whole(
                path,
                format!("cannot read the rule path: {e}"),
                "give an existing directory of *.yaml rule files (or one rule file)",
            )),
        }
    }
    files
}

fn is_rule_file(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && p.is_file()
}

/// Parses one rule file's text.
pub(crate) fn parse(file: &Path, text: &str) -> Result<RawFile, Diagnostic> {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.2 booleans only: `extend: yes` or `host: on` is a mistake, not `true`.
    options.strict_booleans = true;
    // Diagnostics carry their own position; no source snippets needed.
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<RawFile>(text, options)
        .map_err(|e| Diagnostic::from_yaml(file, &e, "rules/README.md"))
}

/// A rule as merged from one or more files: the name where it was first
/// defined, each later field from the file that last set it.
#[derive(Debug)]
pub(crate) struct MergedRule {
    pub file: usize,
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub severity: Option<(usize, Spanned<String>)>,
    pub enabled: bool,
    pub action: Option<(usize, Spanned<String>)>,
    pub tags: Option<(usize, List<String>)>,
    /// The rule text whose body (process, file, ...) is in force.
    pub body: Option<(usize, RawRule)>,
}

/// A policy as merged from one or more files.
#[derive(Debug)]
pub(crate) struct MergedPolicy {
    pub file: usize,
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub selector: Option<(usize, Spanned<RawSelector>)>,
    pub rules: Vec<MergedRule>,
    pub exceptions: Vec<(usize, Spanned<RawException>)>,
}

/// Everything the files define, merged.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub files: Vec<PathBuf>,
    pub networks: BTreeMap<String, (usize, List<String>)>,
    pub policies: Vec<MergedPolicy>,
}

impl Merged {
    /// Adds one parsed file (index `file` in `files`) on top of what is merged so far.
    pub fn add(&mut self, file: usize, raw: RawFile, diags: &mut Vec<Diagnostic>) {
        let path = self.files[file].clone();
        for (name, list) in raw.networks {
            self.networks.insert(name, (file, list));
        }
        let mut seen: HashMap<String, Location> = HashMap::new();
        for policy in raw.policies {
            let name = policy.name.value.clone();
            if let Some(first) = seen.get(&name) {
                diags.push(Diagnostic::at(
                    &path,
                    loc(&policy.name),
                    format!(
                        "duplicate policy name `{name}` in this file (first at line {})",
                        first.line()
                    ),
                    "rename one of them, or merge their rules into one policy",
                ));
                continue;
            }
            seen.insert(name.clone(), loc(&policy.name));
            if !check_rule_names(&path, &policy, diags) {
                continue;
            }
            if name.trim().is_empty() {
                diags.push(Diagnostic::at(
                    &path,
                    loc(&policy.name),
                    "empty policy name",
                    "name the policy, e.g. `name: shop/web`",
                ));
                continue;
            }
            if policy.extend && policy.override_ {
                diags.push(Diagnostic::at(
                    &path,
                    loc(&policy.name),
                    format!("policy `{name}` sets both `extend` and `override`"),
                    "keep `extend: true` to add to the earlier policy, or `override: true` to replace it",
                ));
                continue;
            }
            let existing = self.policies.iter().position(|p| p.name.value == name);
            match existing {
                Some(i) if policy.override_ => self.policies[i] = new_policy(file, policy),
                Some(i) if policy.extend => extend(&mut self.policies[i], file, policy),
                Some(i) => {
                    let earlier = &self.policies[i];
                    diags.push(Diagnostic::at(
                        &path,
                        loc(&policy.name),
                        format!(
                            "policy `{name}` is already defined at {}:{}:{}",
                            self.files[earlier.file].display(),
                            earlier.name.referenced.line(),
                            earlier.name.referenced.column()
                        ),
                        "add `extend: true` to add rules or exceptions to it, `override: true` to replace it, or choose another name",
                    ));
                }
                None if policy.extend || policy.override_ => {
                    let word = if policy.extend { "extend" } else { "override" };
                    diags.push(Diagnostic::at(
                        &path,
                        loc(&policy.name),
                        format!("policy `{name}` sets `{word}: true`, but no earlier file defines it"),
                        format!(
                            "check the name against the earlier files, or remove `{word}` to define a new policy"
                        ),
                    ));
                }
                None => self.policies.push(new_policy(file, policy)),
            }
        }
    }
}

/// Reports rule names repeated within one policy definition; false if any were.
fn check_rule_names(path: &Path, policy: &RawPolicy, diags: &mut Vec<Diagnostic>) -> bool {
    let mut seen: HashMap<&str, Location> = HashMap::new();
    let mut ok = true;
    for rule in &policy.rules {
        if rule.name.value.trim().is_empty() {
            diags.push(Diagnostic::at(
                path,
                loc(&rule.name),
                "empty rule name",
                "name the rule, e.g. `name: ssh-server`",
            ));
            ok = false;
        } else if let Some(first) = seen.get(rule.name.value.as_str()) {
            diags.push(Diagnostic::at(
                path,
                loc(&rule.name),
                format!(
                    "duplicate rule name `{}` in policy `{}` (first at line {})",
                    rule.name.value,
                    policy.name.value,
                    first.line()
                ),
                "rename one of them; rule names are unique within a policy",
            ));
            ok = false;
        } else {
            seen.insert(&rule.name.value, loc(&rule.name));
        }
    }
    ok
}

fn new_rule(file: usize, rule: RawRule) -> MergedRule {
    MergedRule {
        file,
        name: rule.name.clone(),
        description: rule.description.clone(),
        severity: rule.severity.clone().map(|s| (file, s)),
        enabled: rule.enabled.unwrap_or(true),
        action: rule.action.clone().map(|a| (file, a)),
        tags: rule.tags.clone().map(|t| (file, t)),
        body: (!rule.bodies().is_empty()).then_some((file, rule)),
    }
}

fn new_policy(file: usize, p: RawPolicy) -> MergedPolicy {
    MergedPolicy {
        file,
        name: p.name,
        description: p.description,
        selector: p.selector.map(|s| (file, s)),
        rules: p.rules.into_iter().map(|r| new_rule(file, r)).collect(),
        exceptions: p.exceptions.into_iter().map(|e| (file, e)).collect(),
    }
}

/// `extend: true`: a given description or selector replaces the earlier one; a
/// rule of an existing name patches that rule (each given field replaces the
/// earlier; a given body replaces the earlier body); other rules are added;
/// exceptions are added.
fn extend(base: &mut MergedPolicy, file: usize, p: RawPolicy) {
    if p.description.is_some() {
        base.description = p.description;
    }
    if let Some(s) = p.selector {
        base.selector = Some((file, s));
    }
    for rule in p.rules {
        match base
            .rules
            .iter_mut()
            .find(|r| r.name.value == rule.name.value)
        {
            Some(r) => {
                if rule.description.is_some() {
                    r.description.clone_from(&rule.description);
                }
                if let Some(s) = &rule.severity {
                    r.severity = Some((file, s.clone()));
                }
                if let Some(e) = rule.enabled {
                    r.enabled = e;
                }
                if let Some(a) = &rule.action {
                    r.action = Some((file, a.clone()));
                }
                if let Some(t) = &rule.tags {
                    r.tags = Some((file, t.clone()));
                }
                if !rule.bodies().is_empty() {
                    r.body = Some((file, rule));
                }
            }
            None => base.rules.push(new_rule(file, rule)),
        }
    }
    base.exceptions
        .extend(p.exceptions.into_iter().map(|e| (file, e)));
}

/// Reads, parses and merges the rule files under `paths`. Diagnostics from
/// every file are collected; the merge goes on past broken files so one run
/// reports as much as it can.
pub(crate) fn load(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Merged {
    let files = rule_files(paths, diags);
    let mut merged = Merged {
        files: files.clone(),
        ..Merged::default()
    };
    for (i, file) in files.iter().enumerate() {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::whole(
                    file,
                    format!("cannot read the rule file: {e}"),
                    "check the file's permissions and that it is UTF-8 text",
                ));
                continue;
            }
        };
        match parse(file, &text) {
            Ok(raw) => merged.add(i, raw, diags),
            Err(d) => diags.push(d),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(files: &[&str]) -> (Merged, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut m = Merged {
            files: (0..files.len())
                .map(|i| PathBuf::from(format!("{i}.yaml")))
                .collect(),
            ..Merged::default()
        };
        for (i, text) in files.iter().enumerate() {
            match parse(&m.files[i].clone(), text) {
                Ok(raw) => m.add(i, raw, &mut diags),
                Err(d) => diags.push(d),
            }
        }
        (m, diags)
    }

    const BASE: &str = "policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: shell
        severity: medium
        process: {deny: [{exe: '**/sh'}]}
      - name: ssh
        severity: high
        process: {deny: [{exe: '**/sshd'}]}
";

    #[test]
    fn extend_patches_rules_and_adds_exceptions() {
        let (m, diags) = merged(&[
            BASE,
            "policies:
  - name: p
    extend: true
    rules:
      - name: shell
        severity: low
      - name: nc
        severity: high
        process: {deny: [{exe: '**/nc'}]}
    exceptions:
      - rules: [shell]
        exe: /bin/sh
",
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        let p = &m.policies[0];
        let names: Vec<_> = p.rules.iter().map(|r| r.name.value.as_str()).collect();
        assert_eq!(names, ["shell", "ssh", "nc"]);
        let shell = &p.rules[0];
        assert_eq!(shell.severity.as_ref().unwrap().1.value, "low");
        assert_eq!(shell.severity.as_ref().unwrap().0, 1);
        assert_eq!(
            shell.body.as_ref().unwrap().0,
            0,
            "body kept from the base file"
        );
        assert_eq!(p.exceptions.len(), 1);
    }

    #[test]
    fn override_replaces() {
        let (m, diags) = merged(&[
            BASE,
            "policies:\n  - name: p\n    override: true\n    selector: {host: true}\n",
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        assert!(m.policies[0].rules.is_empty());
        assert_eq!(m.policies[0].file, 1);
    }

    #[test]
    fn redefinition_needs_extend_or_override() {
        let (_, diags) = merged(&[BASE, "policies:\n  - name: p\n    selector: {host: true}\n"]);
        assert_eq!(diags.len(), 1);
        let d = diags[0].to_string();
        assert!(
            d.starts_with("1.yaml:2:11: error: policy `p` is already defined at 0.yaml:2:11"),
            "{d}"
        );
        assert!(d.contains("extend: true"), "{d}");
    }

    #[test]
    fn extend_of_nothing() {
        let (_, diags) = merged(&["policies:\n  - name: q\n    extend: true\n"]);
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].to_string().starts_with(
                "0.yaml:2:11: error: policy `q` sets `extend: true`, but no earlier file defines it"
            ),
            "{}",
            diags[0]
        );
    }

    #[test]
    fn later_networks_replace_earlier() {
        let (m, diags) = merged(&[
            "networks:\n  cluster: [10.0.0.0/8]\n  loopback: [127.0.0.0/8]\n",
            "networks:\n  cluster: [10.96.0.0/12]\n",
        ]);
        assert!(diags.is_empty());
        assert_eq!(m.networks["cluster"].1.0[0].value, "10.96.0.0/12");
        assert_eq!(m.networks["cluster"].0, 1);
        assert_eq!(m.networks["loopback"].0, 0);
    }
}
