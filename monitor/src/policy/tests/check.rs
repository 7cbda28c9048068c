//! Loading and `monitor rules check`: the shipped pack, every class of bad
//! input with its position, and later files extending earlier ones.
use super::*;

#[test]
fn shipped_pack_loads_cleanly() {
    let result = check_dir(&[shipped()]);
    let set = match &result {
        Ok(set) => set,
        Err(diags) => panic!(
            "{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let names: Vec<&str> = set.policies().map(|(p, _)| p).collect();
    assert_eq!(
        names,
        [
            "default/detectors",
            "default/fileless",
            "default/egress",
            "default/files",
            "default/container-engine",
            "default/host-access",
            "default/posture",
            "default/processes",
            "default/tools",
            "default/syscalls",
        ],
        "files load sorted by name (00-networks.yaml defines no policy)"
    );
    for r in &set.rules {
        assert!(!r.tags.is_empty(), "rule {} carries no ATT&CK id", r.name);
    }
    let rules: Vec<&str> = set.policies().flat_map(|(_, r)| r).collect();
    for want in [
        "ssh-server",
        "package-manager",
        "recon-tool",
        "shell",
        "protected-write",
        "crontab",
        "engine-config-write",
        "engine-binary-write",
        "engine-state-write",
        "drift",
        "memfd-exec",
        "egress",
        "cloud-metadata",
        "port-scan",
        "setuid-bit",
        "dev-write",
        "kernel-interface-write",
        "shell-startup",
        "shell-history",
        "sensitive-link",
        "account-tool",
        "kernel-module-tool",
        "namespace-tool",
        "cluster-client",
        "credential-search",
        "wiping-tool",
        "crypto-miner",
        "mining-pool",
        "group-change",
        "sudoers-change",
        "ssh-access-change",
        "host-setuid",
        "namespace-change",
        "mount-syscall",
        "kernel-module-or-bpf",
        "privilege-escalation",
        "process-injection",
        "exploit-primitive",
        "raw-socket",
        "credential-read",
        "service-account-token-read",
        "runtime-socket",
        "privileged",
        "engine-socket-mount",
        "unused-port",
    ] {
        assert!(rules.contains(&want), "{want} missing from {rules:?}");
    }
    assert_eq!(set.files().len(), 8);
    assert_eq!(
        check_summary(&result),
        format!("ok: 8 files, 10 policies, {} rules", set.rule_count())
    );
}

#[test]
fn every_shipped_rule_says_which_practice_it_enforces() {
    for entry in fs::read_dir(shipped()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("      - name:") {
                // A rule: the comment block above it names the practice.
                let above: Vec<&str> = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| l.trim_start().starts_with('#'))
                    .copied()
                    .collect();
                assert!(
                    above.iter().any(|l| l.contains("Practice:")),
                    "{}:{}: rule without a `# Practice:` comment",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}

const OK_POLICY: &str = "policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: r
        severity: high
        process: {deny: [{exe: '**/sshd'}]}
";

#[test]
fn rule_check_syntax_error() {
    let e = errors(&[("a.yaml", "policies:\n  - name: p: q\n")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("a.yaml:2:12: error: mapping values are not allowed in this context"),
        "{}",
        e[0]
    );
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    selector: {containers: true}}\n",
    )]);
    assert!(
        e[0].starts_with("a.yaml:3:33: error: misplaced bracket"),
        "{}",
        e[0]
    );
    let e = errors(&[("a.yaml", "policies:\n  - name: \"p\n    selector: x\n")]);
    assert!(
        e[0].starts_with("a.yaml:2:11: error: unclosed quote"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("hint: "), "{}", e[0]);

    let e = errors(&[("a.yaml", "policies:\n  - name: p\n   selector: {}\n")]);
    assert!(e[0].starts_with("a.yaml:3:4: error: "), "{}", e[0]);
    assert!(
        e[0].contains("hint: fix the YAML at this position"),
        "{}",
        e[0]
    );
}

#[test]
fn rule_check_unknown_field() {
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    selecter: {containers: true}\n",
    )]);
    assert_eq!(
        e,
        [
            "a.yaml:3:5: error: unknown key `selecter`\n  hint: remove `selecter` or correct its spelling; allowed here: name, description, extend, override, selector, rules, exceptions"
        ]
    );
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    selector: {containers: true}\n    rules:\n      - name: r\n        severity: low\n        file: {paths: [/etc/**], alow: [/etc/x]}\n",
    )]);
    assert!(
        e[0].starts_with("a.yaml:7:34: error: unknown key `alow`"),
        "{}",
        e[0]
    );
}

#[test]
fn rule_check_bad_glob() {
    let e = errors(&[(
        "a.yaml",
        "policies:
  - name: p
    selector: {image: ['nginx:[1']}
    rules:
      - name: r
        severity: high
        process:
          deny:
            - exe: ['/bin/ok', '/bin/[a']
",
    )]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("a.yaml:3:24: error: bad glob `nginx:[1`: unclosed character class"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("a.yaml:9:32: error: bad glob `/bin/[a`: unclosed character class"),
        "{}",
        e[1]
    );
    assert!(e[1].contains("hint: close every `[`"), "{}", e[1]);
}

#[test]
fn rule_check_relative_exe_pattern() {
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    selector: {containers: true}\n    rules:\n      - name: r\n        severity: high\n        process: {deny: [{exe: sshd}]}\n",
    )]);
    assert_eq!(
        e,
        [
            "a.yaml:7:32: error: exe pattern `sshd` can never match: paths here are absolute\n  hint: write `**/sshd` to match in any directory, or the full path such as `/usr/bin/sshd`"
        ]
    );
}

#[test]
fn rule_check_bad_cidr() {
    let e = errors(&[(
        "a.yaml",
        "networks:
  cluster: [10.0.0.0/8, 10.0.0.0/33]
policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: r
        severity: high
        egress:
          allow:
            - to: [cluster, 300.1.1.1, clustr]
",
    )]);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with(
            "a.yaml:2:25: error: bad CIDR `10.0.0.0/33`: prefix length `/33` is not 0 to 32 for an IPv4 address\n  hint: write an address or prefix"
        ),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with(
            "a.yaml:11:29: error: bad CIDR `300.1.1.1`: `300.1.1.1` is not an IPv4 or IPv6 address"
        ),
        "{}",
        e[1]
    );
    assert_eq!(
        e[2],
        "a.yaml:11:40: error: unknown network `clustr`\n  hint: define it under `networks:` or use one of: cluster"
    );
}

#[test]
fn rule_check_bad_port() {
    let e = errors(&[(
        "a.yaml",
        "policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: r
        severity: high
        egress:
          allow:
            - ports: [53, 70000, \"9000-8000\", http]
",
    )]);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("a.yaml:9:27: error: port 70000 is out of range\n  hint: a port is a number from 1 to 65535"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("a.yaml:9:34: error: bad port range `9000-8000`: 9000 is above 8000"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("a.yaml:9:47: error: bad port `http`"),
        "{}",
        e[2]
    );
}

#[test]
fn rule_check_duplicate_names() {
    let e = errors(&[(
        "a.yaml",
        "policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: r
        severity: high
        process: {deny: [{exe: '**/a'}]}
      - name: r
        severity: high
        process: {deny: [{exe: '**/b'}]}
  - name: q
    selector: {containers: true}
  - name: q
    selector: {host: true}
",
    )]);
    assert_eq!(
        e,
        [
            "a.yaml:8:15: error: duplicate rule name `r` in policy `p` (first at line 5)\n  hint: rename one of them; rule names are unique within a policy",
            "a.yaml:13:11: error: duplicate policy name `q` in this file (first at line 11)\n  hint: rename one of them, or merge their rules into one policy",
        ]
    );
}

#[test]
fn rule_check_duplicate_key() {
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    name: q\n    selector: {containers: true}\n",
    )]);
    assert_eq!(
        e,
        [
            "a.yaml:3:5: error: duplicate key `name`\n  hint: give `name` once in this mapping; remove or merge the repeated entry"
        ]
    );
}

#[test]
fn rule_check_bad_severity() {
    let e = errors(&[(
        "a.yaml",
        "policies:\n  - name: p\n    selector: {containers: true}\n    rules:\n      - name: r\n        severity: hgh\n        memfd: {}\n",
    )]);
    assert_eq!(
        e,
        [
            "a.yaml:6:19: error: unknown severity `hgh`\n  hint: use one of: info, low, medium, high, critical"
        ]
    );
}

#[test]
fn rule_check_rule_shape() {
    let e = errors(&[(
        "a.yaml",
        "policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: none
        severity: low
      - name: two
        severity: low
        memfd: {}
        drift: {}
      - name: both
        severity: low
        process: {allow: [{exe: /bin/a}], deny: [{exe: /bin/b}]}
      - name: nosev
        memfd: {}
      - name: scan
        severity: low
        port_scan: {distinct_ports: 1, window: 10h}
      - name: ops
        severity: low
        file: {paths: [/etc/**], ops: [write]}
",
    )]);
    let want = [
        "a.yaml:5:15: error: rule `none` says nothing to check",
        "a.yaml:7:15: error: rule `two` has several bodies: drift, memfd",
        "a.yaml:11:15: error: process rule `both` needs exactly one of `allow` and `deny`",
        "a.yaml:14:15: error: rule `nosev` has no severity",
        "a.yaml:18:37: error: port-scan threshold 1 is out of range",
        "a.yaml:18:48: error: bad window `10h`",
        "a.yaml:21:40: error: unknown file op `write`",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  expected: {want}");
    }
}

#[test]
fn rule_check_new_keys() {
    let e = errors(&[(
        "a.yaml",
        "policies:
  - name: p
    selector: {containers: true}
    rules:
      - name: t
        severity: low
        tags: [T1059.004, t1059, T12345]
        process: {deny: [{name: /bin/nc}, {args: [x]}]}
      - name: m
        severity: low
        file: {mode_bits: [setuid, suid]}
      - name: s
        severity: low
        shell: {chain: [tini]}
",
    )]);
    let want = [
        // An entry's own position is not kept: the rule's name stands for it.
        "a.yaml:5:15: error: a process entry has neither `exe` nor `name`",
        "a.yaml:7:27: error: `t1059` is not an ATT&CK technique id",
        "a.yaml:7:34: error: `T12345` is not an ATT&CK technique id",
        "a.yaml:8:33: error: program name `/bin/nc` has a `/`: names are file names",
        "a.yaml:11:36: error: unknown mode bit `suid`",
        "a.yaml:12:15: error: shell rule `s` lists no shells",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  expected: {want}\n{e:#?}");
    }
    assert!(e.iter().all(|d| d.contains("hint:")), "{e:#?}");
}

#[test]
fn rule_check_selectors_and_exceptions() {
    let e = errors(&[(
        "a.yaml",
        "policies:
  - name: nosel
  - name: empty
    selector: {}
  - name: rt
    selector: {runtime: [dokcer]}
  - name: x
    selector: {containers: true}
    rules:
      - name: r
        severity: low
        memfd: {}
    exceptions:
      - rules: [r, s]
      - reason: silences everything
      - rules: [r]
        selector: {}
",
    )]);
    let want = [
        "a.yaml:2:11: error: policy `nosel` has no selector",
        "a.yaml:4:15: error: the selector of policy `empty` selects nothing",
        "a.yaml:6:26: error: unknown container runtime `dokcer`",
        "a.yaml:14:20: error: exception names rule `s`, which policy `x` does not have\n  hint: use one of: r",
        "a.yaml:15:9: error: this exception has no conditions and names no rules",
        "a.yaml:17:19: error: this exception's selector selects nothing",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  expected: {want}");
    }
}

#[test]
fn rule_check_wrong_value_type() {
    let e = errors(&[("a.yaml", "policies:\n  - name: y\n    extend: yes\n")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("a.yaml:3:13: error: "), "{}", e[0]);
    assert!(e[0].ends_with("hint: write `true` or `false`"), "{}", e[0]);
}

#[test]
fn rule_check_reports_every_file_and_summarises() {
    let result = load(
        None,
        &[
            ("a.yaml", "policies: [\n"),
            ("b.yaml", OK_POLICY),
            ("c.yml", "networks: {lan: [10.0.0.0/40]}\n"),
            ("notes.txt", "not a rule file"),
            (".hidden.yaml", "garbage: ["),
        ],
    );
    let diags = result.as_ref().unwrap_err();
    let files: Vec<String> = diags
        .iter()
        .map(|d| d.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["a.yaml", "c.yml"]);
    assert_eq!(check_summary(&result), "2 errors in 2 files");
}

#[test]
fn rule_check_missing_dir() {
    let result = check_dir(&[PathBuf::from("/nonexistent/rules.d")]);
    let d = &result.unwrap_err()[0];
    assert_eq!((d.line, d.col), (0, 0));
    assert!(
        d.to_string()
            .starts_with("/nonexistent/rules.d: error: cannot read the rule path"),
        "{d}"
    );
}

#[test]
fn later_dir_extends_and_overrides_by_name() {
    let user = tempfile::tempdir().unwrap();
    fs::write(
        user.path().join("50-local.yaml"),
        "networks:
  cluster: [10.96.0.0/12]
policies:
  - name: default/processes
    extend: true
    rules:
      - name: shell
        enabled: false
      - name: recon-tool
        severity: critical
  - name: default/files
    override: true
    selector: {containers: true}
    rules:
      - name: only-passwd
        severity: low
        file: {paths: [/etc/passwd]}
",
    )
    .unwrap();
    let set = check_dir(&[shipped(), user.path().to_path_buf()]).unwrap();
    let rules: Vec<(&str, Vec<&str>)> = set.policies().collect();
    let processes = &rules
        .iter()
        .find(|(p, _)| *p == "default/processes")
        .unwrap()
        .1;
    assert!(!processes.contains(&"shell"), "disabled");
    let files = &rules.iter().find(|(p, _)| *p == "default/files").unwrap().1;
    assert_eq!(files, &["only-passwd"]);

    let mut out = Vec::new();
    set.evaluate(&web().exec("/usr/bin/nc", &["nc", "-l"]), &mut out);
    assert_eq!(out[0].severity, Severity::Critical, "severity patched");
    out.clear();
    set.evaluate(&web().exec("/bin/sh", &["sh"]), &mut out);
    assert!(out.is_empty(), "{out:?}");
    set.evaluate(&web().write("/etc/hosts"), &mut out);
    assert!(out.is_empty(), "{out:?}");
    set.evaluate(&web().write("/etc/passwd"), &mut out);
    assert_eq!(rules_of(&out), ["only-passwd"]);
    out.clear();
    // `cluster` narrowed: 10.0.0.5 is outside now.
    set.evaluate(&web().connect("10.0.0.5", 5432, Protocol::Tcp), &mut out);
    assert_eq!(rules_of(&out), ["egress"]);
}
