//! Escape and credential rules: rare system calls, credential reads and
//! runtime sockets.
use super::*;

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

fn unexpected(actor: &Actor, name: &str, result: i64) -> EnrichedEvent {
    let nr = crate::bpf::profile::number_of(name).unwrap();
    actor.event(EventBody::Syscall(crate::event::syscall::unexpected(
        nr, result,
    )))
}

#[test]
fn a_call_outside_the_syscall_profile_alerts_once_named_and_runcs_set_up_does_not() {
    let cases: Vec<(EnrichedEvent, Vec<&str>)> = vec![
        (
            unexpected(&web(), "kexec_load", -1),
            vec!["unexpected-syscall"],
        ),
        (unexpected(&web(), "syslog", 64), vec!["unexpected-syscall"]),
        // runc's own set-up in the container's cgroup, before the workload.
        (
            unexpected(&web().by("runc:[2:INIT]"), "pivot_root", 0),
            vec![],
        ),
        // The host is not a container.
        (
            unexpected(&host("/usr/sbin/kexec"), "kexec_load", 0),
            vec![],
        ),
        // A rare call by name is its own rule's, never `unexpected-syscall`.
        (
            call(&web(), libc::SYS_setns, [3, 0x4000_0000, 0, 0, 0, 0], 0, 0),
            vec!["namespace-change"],
        ),
    ];
    for (i, (event, want)) in cases.iter().enumerate() {
        let mut ev = shipped_evaluator();
        let out = run(&mut ev, std::slice::from_ref(event));
        assert_eq!(rules_of(&out), *want, "case {i}: {:?}", event.event.body);
    }
    let mut ev = shipped_evaluator();
    let out = run(&mut ev, &[unexpected(&web(), "kexec_load", -1)]);
    assert!(out[0].attempt, "{:?}", out[0]);
    assert_eq!(
        &*out[0].summary,
        "unexpected system call kexec_load (failed with EPERM), outside the syscall profile, \
         by /bin/sh (pid 4242) in container web (nginx:1.27)",
    );
}

#[test]
fn an_unexpected_syscall_rule_allows_calls_by_name_and_refuses_mixed_forms() {
    let rules = r#"
policies:
  - name: web
    selector: {containers: true}
    rules:
      - name: odd-call
        severity: low
        syscall:
          unexpected: true
          allow: [syslog]
"#;
    let mut ev = Evaluator::new(load(None, &[("web.yaml", rules)]).unwrap());
    assert!(run(&mut ev, &[unexpected(&web(), "syslog", 64)]).is_empty());
    let out = run(&mut ev, &[unexpected(&web(), "acct", -1)]);
    assert_eq!(rules_of(&out), ["odd-call"]);
    for (bad, says) in [
        (
            "unexpected: true\n          calls: [setns]",
            "both `calls` and `unexpected: true`",
        ),
        (
            "unexpected: true\n          allow: [chown32]",
            "`chown32` is not a system call",
        ),
        (
            "calls: [setns]\n          allow: [syslog]",
            "`allow` names the calls",
        ),
        ("unexpected: false", "matches nothing"),
    ] {
        let text = rules.replace("unexpected: true\n          allow: [syslog]", bad);
        let errs = errors(&[("web.yaml", &text)]);
        assert!(
            errs.iter()
                .any(|e| e.contains(says) && e.starts_with("web.yaml:")),
            "{bad}: {errs:?}"
        );
    }
}
