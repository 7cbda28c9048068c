//! `action: deny` and `kill`: what is enforced, for whom, and what the
//! findings say.
use super::*;

const ENFORCED: &str = r#"policies:
  - name: shop/web
    selector: {name: [web]}
    rules:
      - name: egress
        severity: medium
        action: deny
        egress:
          allow:
            - to: [127.0.0.0/8]
              ports: [8080, "9000-9010"]
              protocols: [tcp]
            - to: [10.0.0.0/8]
      - name: metadata
        severity: high
        action: deny
        egress:
          deny:
            - to: [10.1.2.3]
              ports: [80]
      - name: miner
        severity: high
        action: kill
        process:
          deny:
            - exe: [/usr/bin/xmrig, "**/minerd"]
            - name: [cpuminer]
      - name: sshd
        severity: high
        process:
          deny:
            - exe: ["**/sshd"]
"#;

#[test]
fn rule_check_actions() {
    let bad = |body: &str| {
        errors(&[(
            "a.yaml",
            &format!(
                "policies:\n  - name: p\n    selector: {{containers: true}}\n    rules:\n      - name: r\n        severity: low\n{body}"
            ),
        )])
    };
    assert_eq!(
        bad("        action: block\n        egress: {allow: [{to: [10.0.0.0/8]}]}\n"),
        [
            "a.yaml:7:17: error: unknown action `block`\n  hint: use alert (the default), deny (egress and file rules) or kill (process deny lists)"
        ]
    );
    assert_eq!(
        bad("        action: deny\n        process: {deny: [{exe: [/bin/sh]}]}\n"),
        [
            "a.yaml:7:17: error: `action: deny` applies to egress and file rules; rule `r` is neither\n  hint: use `action: kill` on a process `deny` list, or leave `action` out (alert only)"
        ]
    );
    assert_eq!(
        bad("        action: kill\n        egress: {allow: [{to: [10.0.0.0/8]}]}\n"),
        [
            "a.yaml:7:17: error: `action: kill` applies to process `deny` lists; rule `r` is not one\n  hint: use `action: deny` on an egress rule, or leave `action` out (alert only)"
        ]
    );
    let e = bad("        action: kill\n        process: {deny: [{exe: [\"/usr/bin/py*\"]}]}\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("a.yaml:8:33: error: `action: kill` cannot match the glob `/usr/bin/py*`"),
        "{e:?}"
    );
    let e = bad(
        "        action: kill\n        process: {deny: [{exe: [/usr/bin/pip], args: [install]}]}\n",
    );
    assert!(
        e[0].starts_with("a.yaml:8:55: error: `action: kill` cannot check `args` or `parents`"),
        "{e:?}"
    );
    let e = bad(
        "        action: kill\n        process: {deny: [{exe: [/bin/sh]}], unless_allowed: true}\n",
    );
    assert!(e[0].contains("cannot honour `unless_allowed`"), "{e:?}");
    // A file rule's deny: whole files and trees only, and nothing the
    // kernel does not judge.
    let e = bad(
        "        action: deny\n        file: {paths: [\"/etc/**\", \"/lib*/**\"], allow: [\"/etc/cron*\"]}\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("a.yaml:8:35: error: `action: deny` cannot match the glob `/lib*/**`"),
        "{e:?}"
    );
    assert!(e[1].contains("the glob `/etc/cron*`"), "{e:?}");
    let e =
        bad("        action: deny\n        file: {paths: [/usr/bin/**], mode_bits: [setuid]}\n");
    assert!(e[0].contains("cannot check `mode_bits`"), "{e:?}");
    let e = bad("        action: deny\n        file: {paths: [/etc/**], ops: [unlink]}\n");
    assert!(e[0].contains("cannot check `ops`"), "{e:?}");
    let e = bad("        action: deny\n        file: {allow: [/tmp/**]}\n");
    assert!(e[0].contains("`action: deny` needs `paths`"), "{e:?}");
    let e = bad("        action: deny\n        egress: {allow: [{dns: [\"*.example.com\"]}]}\n");
    assert!(
        e[0].starts_with("a.yaml:8:33: error: `dns` cannot be enforced"),
        "{e:?}"
    );
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    selector: {containers: true}\n    rules:\n      - name: r\n        severity: low\n        action: deny\n        egress: {allow: [{to: [10.0.0.0/8]}]}\n      - name: q\n        severity: low\n        process: {deny: [{exe: [/bin/sh]}]}\n    exceptions:\n      - exe: [/usr/bin/curl]\n",
    )]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("a.yaml:13:9: error: this exception cannot be honoured in the kernel for rule `r` (action: deny): it has `exe`"),
        "{e:?}"
    );
    // The same exception for the other rule alone is fine; so is `action` in an extension.
    load(
        None,
        &[(
            "a.yaml",
            "policies:\n  - name: p\n    selector: {containers: true}\n    rules:\n      - name: r\n        severity: low\n        action: deny\n        egress: {allow: [{to: [10.0.0.0/8]}]}\n      - name: q\n        severity: low\n        process: {deny: [{exe: [/bin/sh]}]}\n    exceptions:\n      - exe: [/usr/bin/curl]\n        rules: [q]\n      - to: [10.9.0.0/16]\n        selector: {name: [web]}\n",
        )],
    )
    .unwrap();
    let set = load(
        Some(&shipped()),
        &[(
            "z.yaml",
            "policies:\n  - name: default/egress\n    extend: true\n    rules:\n      - name: egress\n        action: deny\n",
        )],
    )
    .unwrap();
    let egress = set.rules.iter().find(|r| &*r.name == "egress").unwrap();
    assert_eq!(egress.action, Action::Deny);
}

fn web_workload(info: &ContainerInfo) -> Workload<'_> {
    Workload::container(info, None)
}

#[test]
fn enforcement_of_a_workload() {
    let set = load(None, &[("a.yaml", ENFORCED)]).unwrap();
    let web = ContainerInfo {
        name: Some("web".into()),
        ..Default::default()
    };
    let plan = set.enforcement(&web_workload(&web)).unwrap();
    assert_eq!(
        plan.rules,
        ["shop/web/egress", "shop/web/metadata", "shop/web/miner"]
    );
    assert_eq!(plan.kill_paths, ["/usr/bin/xmrig"]);
    assert_eq!(plan.kill_names, ["cpuminer", "minerd"]);
    let egress = plan.egress.unwrap();
    let seg = |lo, hi, allow| monitor_common::PortSegment { lo, hi, allow };
    let table: Vec<(String, Vec<monitor_common::PortSegment>)> = egress
        .iter()
        .map(|p| (p.net.to_string(), p.segments.clone()))
        .collect();
    assert_eq!(
        table,
        [
            // Nothing is open outside the allowlist.
            ("0.0.0.0/0".to_owned(), vec![]),
            // Everything below 10/8, but port 80 of 10.1.2.3 (the deny list).
            ("10.0.0.0/8".to_owned(), vec![seg(0, 65535, 7)]),
            (
                "127.0.0.0/8".to_owned(),
                vec![seg(8080, 8080, 1), seg(9000, 9010, 1)]
            ),
            (
                "10.1.2.3/32".to_owned(),
                vec![seg(0, 79, 7), seg(81, 65535, 7)]
            ),
            ("::/0".to_owned(), vec![]),
        ]
    );
    // Another container: nothing.
    let db = ContainerInfo {
        name: Some("db".into()),
        ..Default::default()
    };
    assert!(set.enforcement(&web_workload(&db)).unwrap().is_empty());
}

#[test]
fn selector_exception_lifts_enforcement_and_destination_exception_opens() {
    let text = format!(
        "{ENFORCED}    exceptions:\n      - rules: [miner]\n        selector: {{name: [web]}}\n      - rules: [egress]\n        to: [192.0.2.0/24]\n        ports: [443]\n"
    );
    let set = load(None, &[("a.yaml", &text)]).unwrap();
    let web = ContainerInfo {
        name: Some("web".into()),
        ..Default::default()
    };
    let plan = set.enforcement(&web_workload(&web)).unwrap();
    assert!(plan.kill_paths.is_empty() && plan.kill_names.is_empty());
    let egress = plan.egress.unwrap();
    let p = egress
        .iter()
        .find(|p| p.net.to_string() == "192.0.2.0/24")
        .unwrap();
    assert_eq!(
        p.segments,
        [monitor_common::PortSegment {
            lo: 443,
            hi: 443,
            allow: 7
        }]
    );
}

#[test]
fn findings_of_enforcing_rules_say_what_was_done() {
    let set = load(None, &[("a.yaml", ENFORCED)]).unwrap();
    let mut ev = Evaluator::new(set);
    let mut connect = web().connect("203.0.113.7", 443, Protocol::Tcp);
    let out = run(&mut ev, std::slice::from_ref(&connect));
    assert_eq!(rules_of(&out), ["egress"]);
    assert!(
        out[0].would_deny && out[0].action_taken.is_none(),
        "{out:?}"
    );
    assert!(
        out[0].summary.ends_with("(would be denied: not enforced)"),
        "{}",
        out[0].summary
    );
    if let EventBody::Network(n) = &mut connect.event.body {
        n.action = Some(crate::event::ActionTaken::Denied);
    }
    let out = run(&mut ev, &[connect]);
    assert!(!out[0].would_deny, "{out:?}");
    assert_eq!(out[0].action_taken, Some(crate::event::ActionTaken::Denied));
    assert!(out[0].summary.ends_with("(denied)"), "{}", out[0].summary);
    // A rule without an action is never marked.
    let out = run(&mut ev, &[web().exec("/usr/sbin/sshd", &["sshd"])]);
    assert_eq!(rules_of(&out), ["sshd"]);
    assert!(!out[0].would_deny && out[0].action == Action::Alert);
}

#[test]
fn a_file_rules_deny_becomes_the_paths_the_kernel_protects() {
    let text = "policies:\n  - name: shop/web\n    selector: {name: [web]}\n    rules:\n      - name: system\n        severity: high\n        action: deny\n        file:\n          paths: [\"/etc/**\", /usr/**, /etc/passwd]\n          allow: [\"/etc/cron.d/**\", /etc/motd]\n";
    let set = load(None, &[("a.yaml", text)]).unwrap();
    let web = ContainerInfo {
        name: Some("web".into()),
        ..Default::default()
    };
    let plan = set.enforcement(&web_workload(&web)).unwrap();
    assert_eq!(plan.rules, ["shop/web/system"]);
    assert!(plan.egress.is_none() && plan.kill_paths.is_empty());
    let p = |path: &str, tree, allow| ProtectPath {
        path: path.to_owned(),
        tree,
        allow,
    };
    assert_eq!(
        plan.protect,
        [
            p("/etc", true, false),
            p("/etc/cron.d", true, true),
            p("/etc/motd", false, true),
            p("/etc/passwd", false, false),
            p("/usr", true, false),
        ]
    );
    let db = ContainerInfo {
        name: Some("db".into()),
        ..Default::default()
    };
    assert!(set.enforcement(&web_workload(&db)).unwrap().is_empty());
}
