//! File rules: protected paths, failed writes, renames, and which operations
//! count as writes.
use super::*;

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
