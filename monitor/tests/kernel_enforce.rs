//! Kernel end-to-end tests of enforcement (`monitor run --enforce`): real
//! programs in this kernel, a test "container" (a cgroup v2 directory named
//! the way Docker names it, with Docker's state files in a temporary host
//! root) and a sibling container the rules do not select.
//!
//! Traffic goes to loopback only, to listeners this test holds, a few
//! connections per test. The enforcing programs are attached by the agent to
//! the test container's own cgroup (below this test's tree), never to the
//! root: the agent refuses the root, and the rules select the test
//! container by name, within `--cgroup` of the test's tree.
mod common;

use std::{
    fs,
    net::TcpListener,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use common::{Monitor, TestCgroup, kernel_tests_enabled, runtime};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// One agent at a time (each verifies every kernel program).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connects (`t:PORT`) or sends a datagram (`u:PORT`) to 127.0.0.1 for each
/// argument and prints `ok` or the errno's name for each.
const PROBE: &str = r#"
import errno, socket, sys
out = []
for arg in sys.argv[1:]:
    kind, port = arg.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "t" else socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        if kind == "t":
            s.connect(("127.0.0.1", int(port)))
        else:
            s.sendto(b"x", ("127.0.0.1", int(port)))
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
    finally:
        s.close()
print(" ".join(out))
"#;

/// A child killed and waited for when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Already gone when its cgroup was emptied: nothing to undo then.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dropped in field order: the agent (its links go with it), then the
/// cgroups' processes and directories.
struct Harness {
    monitor: Option<Monitor>,
    _holder: Reaped,
    web: TestCgroup,
    other: TestCgroup,
    web_id: String,
    allowed: TcpListener,
    denied: TcpListener,
    scratch: PathBuf,
    _tree: TestCgroup,
    _host_root: tempfile::TempDir,
    _scratch: tempfile::TempDir,
}

impl Harness {
    fn start(enforce: bool) -> Harness {
        let host_root = common::tempdir();
        std::os::unix::fs::symlink("/proc", host_root.path().join("proc")).unwrap();
        let scratch_dir = common::tempdir();
        let scratch = scratch_dir.path().canonicalize().unwrap();
        let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
        let denied = TcpListener::bind("127.0.0.1:0").unwrap();
        let rules = scratch.join("rules");
        fs::create_dir(&rules).unwrap();
        fs::write(
            rules.join("enforce.yaml"),
            format!(
                "policies:\n  - name: test/enforce\n    selector: {{name: [web]}}\n    rules:\n      - name: egress\n        severity: medium\n        action: deny\n        egress:\n          allow:\n            - to: [127.0.0.1]\n              ports: [{}]\n              protocols: [tcp]\n      - name: evil\n        severity: high\n        action: kill\n        process:\n          deny:\n            - exe: [{}/evil]\n      - name: protected\n        severity: high\n        action: deny\n        file:\n          paths: [\"{}/protected/**\"]\n          allow: [\"{}/protected/open/**\"]\n",
                allowed.local_addr().unwrap().port(),
                scratch.display(),
                scratch.display(),
                scratch.display()
            ),
        )
        .unwrap();
        let tree = TestCgroup::parent();
        let make = |name: &str| {
            let id = runtime::write_docker(host_root.path(), name, "busybox:1.36");
            (tree.subdir(&format!("docker-{id}.scope")), id)
        };
        let (web, web_id) = make("web");
        let (other, _) = make("other");
        // The protected tree, and a process in the web container whose root
        // the agent resolves it in (as a container's init would be).
        fs::create_dir_all(scratch.join("protected/open")).unwrap();
        fs::write(scratch.join("protected/kept"), "kept\n").unwrap();
        let holder = Reaped(web.command("/bin/sleep").arg("600").spawn().unwrap());
        let spool = scratch.join("spool");
        let mut args = vec![
            "run".to_owned(),
            "--rules".to_owned(),
            rules.display().to_string(),
            "--cgroup".to_owned(),
            tree.path.display().to_string(),
            "--host-root".to_owned(),
            host_root.path().display().to_string(),
            "--spool-dir".to_owned(),
            spool.display().to_string(),
        ];
        if enforce {
            args.push("--enforce".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let monitor = Monitor::start(&args, "running; alerts go to");
        if enforce {
            let rel = web.rel.clone();
            monitor.wait_stderr("enforcement on the web container", WAIT, |s| {
                s.lines()
                    .any(|l| l.contains("enforcing") && l.contains(rel.as_str()))
            });
        }
        Harness {
            monitor: Some(monitor),
            _holder: holder,
            web,
            other,
            web_id,
            allowed,
            denied,
            scratch,
            _tree: tree,
            _host_root: host_root,
            _scratch: scratch_dir,
        }
    }

    fn monitor(&mut self) -> &mut Monitor {
        self.monitor.as_mut().unwrap()
    }

    /// Runs [`PROBE`] in `cg` against the allowed port (TCP), the denied
    /// port (TCP) and the allowed port over UDP (the rule allows TCP only).
    fn probe(&self, cg: &TestCgroup) -> String {
        let a = self.allowed.local_addr().unwrap().port();
        let d = self.denied.local_addr().unwrap().port();
        let out = cg
            .command("/usr/bin/python3")
            .args([
                "-c",
                PROBE,
                &format!("t:{a}"),
                &format!("t:{d}"),
                &format!("u:{a}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "probe failed: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Copies `/usr/bin/touch` to `<scratch>/<name>` and runs it in the web
    /// container to create `<scratch>/<name>.ran`; returns how it ended (or
    /// why the exec failed) and whether the file exists.
    fn try_touch(&self, name: &str) -> (std::io::Result<std::process::ExitStatus>, bool, PathBuf) {
        let exe = self.scratch.join(name);
        fs::copy("/usr/bin/touch", &exe).unwrap();
        let marker = self.scratch.join(format!("{name}.ran"));
        let status = self
            .web
            .command(exe.to_str().unwrap())
            .arg(&marker)
            .status();
        (status, marker.exists(), exe)
    }

    /// [`try_touch`](Self::try_touch) for an exec that must happen.
    fn run_touch(&self, name: &str) -> (std::process::ExitStatus, bool, PathBuf) {
        let (status, ran, exe) = self.try_touch(name);
        (status.expect("the exec"), ran, exe)
    }

    fn alert(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let web_id = self.web_id.clone();
        self.monitor().expect(what, WAIT, |v| {
            v["container"]["id"] == web_id.as_str() && pred(v)
        })
    }
}

#[test]
fn denied_connect_fails_with_eperm_while_an_allowed_one_succeeds() {
    if !kernel_tests_enabled("denied_connect_fails_with_eperm_while_an_allowed_one_succeeds") {
        return;
    }
    let _serial = serial();
    let mut h = Harness::start(true);
    assert_eq!(
        h.probe(&h.web),
        "ok EPERM EPERM",
        "in the enforced container"
    );
    // The container the rules do not select is untouched.
    assert_eq!(h.probe(&h.other), "ok ok ok", "in the other container");
    let d = h.denied.local_addr().unwrap().port();
    let a = h.allowed.local_addr().unwrap().port();
    let tcp = h.alert("the denied connect's alert", |v| {
        v["network"]["dport"] == d && v["network"]["op"] == "connect"
    });
    assert_eq!(tcp["rule"], "egress");
    assert_eq!(tcp["action_taken"], "denied", "{tcp}");
    assert_eq!(tcp["would_deny"], false, "{tcp}");
    assert!(
        tcp["summary"].as_str().unwrap().ends_with("(denied)"),
        "{tcp}"
    );
    let udp = h.alert("the denied datagram's alert", |v| {
        v["network"]["dport"] == a && v["network"]["op"] == "sendmsg"
    });
    assert_eq!(udp["action_taken"], "denied", "{udp}");
    let (seen, stderr) = h.monitor.take().unwrap().stop_and_drain();
    // The allowed connect raised nothing, and nothing was lost.
    assert!(
        !seen
            .iter()
            .any(|v| v["network"]["dport"] == a && v["network"]["op"] == "connect"),
        "{seen:#?}"
    );
    assert!(stderr.contains("lost_total=0"), "{stderr}");
}

/// A denied exec never runs: on a kernel with BPF LSM (the test VMs,
/// `MONITOR_EXPECT_TIER=fentry`) the exec itself fails with EPERM and the
/// caller goes on; elsewhere (this host) the new program is killed before
/// its first instruction.
#[test]
fn denied_exec_is_killed_before_it_runs() {
    if !kernel_tests_enabled("denied_exec_is_killed_before_it_runs") {
        return;
    }
    let lsm = std::env::var("MONITOR_EXPECT_TIER").as_deref() == Ok("fentry");
    let _serial = serial();
    let mut h = Harness::start(true);
    let (status, ran, exe) = h.try_touch("evil");
    if lsm {
        let e = status.expect_err("the refused exec ran");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    } else {
        let status = status.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
    assert!(!ran, "the denied program created its file: it ran");
    // The same program under another name runs: the test can tell.
    let (status, ran, _) = h.run_touch("fine");
    assert!(status.success() && ran, "{status:?}");
    let exe = exe.display().to_string();
    let a = h.alert("the denial's alert", |v| {
        v["process"]["exe"] == exe.as_str()
    });
    assert_eq!(a["rule"], "evil");
    assert_eq!(
        a["action_taken"],
        if lsm { "denied" } else { "killed" },
        "{a}"
    );
    assert_eq!(a["would_deny"], false, "{a}");
    if lsm {
        // The summary says what the kernel did.
        assert!(a["summary"].as_str().unwrap().ends_with("(denied)"), "{a}");
    }
}

/// Tries each write named in argv (`new:PATH` creates, `append:PATH`
/// opens for writing, `unlink:PATH`, `rename:OLD:NEW`, `chmod:PATH`,
/// `link:OLD:NEW`) and prints `ok` or the errno's name for each.
const WRITES: &str = r#"
import errno, os, sys
out = []
for arg in sys.argv[1:]:
    op, _, rest = arg.partition(":")
    try:
        if op == "new":
            open(rest, "x").close()
        elif op == "append":
            open(rest, "a").close()
        elif op == "unlink":
            os.unlink(rest)
        elif op == "rename":
            os.rename(*rest.split(":"))
        elif op == "chmod":
            os.chmod(rest, 0o600)
        elif op == "link":
            os.link(*rest.split(":"))
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))
"#;

fn writes(cg: &TestCgroup, ops: &[String]) -> String {
    let out = cg
        .command("/usr/bin/python3")
        .args(["-c", WRITES])
        .args(ops)
        .output()
        .unwrap();
    assert!(out.status.success(), "writes failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// On a kernel with BPF LSM (the test VMs: `MONITOR_EXPECT_TIER=fentry`),
/// every write to the protected tree fails with EPERM, through a symlink
/// and a hard link too, while the rule's `allow` and the container the
/// rules do not select write freely, and each refusal is an alert with
/// `action_taken: denied`. On a kernel that refuses LSM programs (this
/// host), the agent says so, nothing is refused and the alerts are
/// `would_deny`.
#[test]
fn a_protected_write_fails_with_eperm_on_the_lsm_tier() {
    if !kernel_tests_enabled("a_protected_write_fails_with_eperm_on_the_lsm_tier") {
        return;
    }
    let lsm = std::env::var("MONITOR_EXPECT_TIER").as_deref() == Ok("fentry");
    let _serial = serial();
    let mut h = Harness::start(true);
    let p = h.scratch.join("protected");
    let s = h.scratch.display().to_string();
    std::os::unix::fs::symlink(&p, h.scratch.join("via")).unwrap();
    let ops: Vec<String> = [
        format!("new:{}/new", p.display()),
        format!("append:{}/kept", p.display()),
        format!("new:{s}/via/through-symlink"),
        format!("chmod:{}/kept", p.display()),
        format!("link:{}/kept:{s}/hardlink", p.display()),
        format!("rename:{}/kept:{s}/moved", p.display()),
        format!("new:{}/open/fine", p.display()),
    ]
    .into();
    let got = writes(&h.web, &ops);
    if lsm {
        assert_eq!(
            got, "EPERM EPERM EPERM EPERM EPERM EPERM ok",
            "in the enforced container"
        );
        assert_eq!(fs::read_to_string(p.join("kept")).unwrap(), "kept\n");
        assert!(!p.join("new").exists() && !h.scratch.join("hardlink").exists());
    } else {
        assert_eq!(
            got, "ok ok ok ok ok ok ok",
            "nothing is refused without BPF LSM"
        );
    }
    // The container the rules do not select is never refused.
    assert_eq!(
        writes(&h.other, &[format!("new:{}/other", p.display())]),
        "ok",
        "in the other container"
    );
    let new = format!("{}/new", p.display());
    let a = h.alert("the protected create's alert", |v| {
        v["file"]["path"] == new.as_str()
    });
    assert_eq!(a["rule"], "protected", "{a}");
    if lsm {
        assert_eq!(a["action_taken"], "denied", "{a}");
        assert_eq!(a["would_deny"], false, "{a}");
        assert_eq!(a["attempt"], true, "{a}");
        assert!(a["summary"].as_str().unwrap().ends_with("(denied)"), "{a}");
        // The rename's refusal names its old path.
        let kept = format!("{}/kept", p.display());
        let r = h.alert("the refused rename's alert", |v| {
            v["file"]["op"] == "rename" && v["file"]["path"] == kept.as_str()
        });
        assert_eq!(r["action_taken"], "denied", "{r}");
    } else {
        assert_eq!(a["would_deny"], true, "{a}");
        assert_eq!(a["action_taken"], Value::Null, "{a}");
        let u = h
            .monitor()
            .expect("the agent's word that writes are not refused", WAIT, |v| {
                v["rule"] == "enforcement-unavailable"
                    && v["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains("protected writes"))
            });
        assert_eq!(u["kind"], "agent", "{u}");
    }
    let (seen, stderr) = h.monitor.take().unwrap().stop_and_drain();
    let fine = format!("{}/open/fine", p.display());
    assert!(
        !seen.iter().any(|v| v["file"]["path"] == fine.as_str()),
        "the allowed write alerted: {seen:#?}"
    );
    assert!(stderr.contains("lost_total=0"), "{stderr}");
}

#[test]
fn dry_run_reports_would_deny_without_acting() {
    if !kernel_tests_enabled("dry_run_reports_would_deny_without_acting") {
        return;
    }
    let _serial = serial();
    let mut h = Harness::start(false);
    assert_eq!(
        h.probe(&h.web),
        "ok ok ok",
        "nothing is denied without --enforce"
    );
    let (status, ran, exe) = h.run_touch("evil");
    assert!(
        status.success() && ran,
        "nothing is killed without --enforce: {status:?}"
    );
    let d = h.denied.local_addr().unwrap().port();
    let net = h.alert("the connect's alert", |v| {
        v["network"]["dport"] == d && v["network"]["op"] == "connect"
    });
    assert_eq!(net["would_deny"], true, "{net}");
    assert_eq!(net["action_taken"], Value::Null, "{net}");
    let protected = format!("{}/protected/dry", h.scratch.display());
    assert_eq!(
        writes(&h.web, &[format!("new:{protected}")]),
        "ok",
        "nothing is refused without --enforce"
    );
    let w = h.alert("the protected write's alert", |v| {
        v["file"]["path"] == protected.as_str()
    });
    assert_eq!(w["would_deny"], true, "{w}");
    assert_eq!(w["action_taken"], Value::Null, "{w}");
    assert!(
        w["summary"]
            .as_str()
            .unwrap()
            .ends_with("(would be denied: not enforced)"),
        "{w}"
    );
    let exe = exe.display().to_string();
    let p = h.alert("the exec's alert", |v| v["process"]["exe"] == exe.as_str());
    assert_eq!(p["would_deny"], true, "{p}");
    assert_eq!(p["action_taken"], Value::Null, "{p}");
    assert!(
        p["summary"]
            .as_str()
            .unwrap()
            .ends_with("(would be killed: not enforced)"),
        "{p}"
    );
}

#[test]
fn after_sigkill_of_the_agent_traffic_flows_again() {
    if !kernel_tests_enabled("after_sigkill_of_the_agent_traffic_flows_again") {
        return;
    }
    let lsm = std::env::var("MONITOR_EXPECT_TIER").as_deref() == Ok("fentry");
    let _serial = serial();
    let mut h = Harness::start(true);
    assert_eq!(h.probe(&h.web), "ok EPERM EPERM", "enforced first");
    let p = h.scratch.join("protected");
    if lsm {
        assert_eq!(
            writes(&h.web, &[format!("new:{}/before", p.display())]),
            "EPERM",
            "protected first"
        );
    }
    let pid = h.monitor().pid() as i32;
    // SIGKILL: no clean-up of its own runs.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let monitor = h.monitor.take().unwrap();
    let deadline = Instant::now() + common::scaled(Duration::from_secs(10));
    let mut status = 0;
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
        assert!(Instant::now() < deadline, "the agent did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    // Its links closed with its descriptors: the kernel has detached them.
    assert_eq!(
        h.probe(&h.web),
        "ok ok ok",
        "traffic flows once the agent is gone"
    );
    let (status, ran, _) = h.run_touch("evil");
    assert!(
        status.success() && ran,
        "execs run once the agent is gone: {status:?}"
    );
    assert_eq!(
        writes(&h.web, &[format!("new:{}/after", p.display())]),
        "ok",
        "writes go through once the agent is gone"
    );
    drop(monitor);
}
