//! In-process probe tests: the kernel programs loaded through
//! `bpf::EventSource` in this process (no agent binary, no JSON), a trigger
//! run in a test cgroup, and the typed `Event` of each hook asserted. A hook
//! that loads but never delivers fails here, named.
//!
//! The source is scoped to the test's cgroup (`--cgroup`), and the kernel
//! never reports the agent's own process (this one), so every trigger is a
//! child moved into the cgroup before it execs. Run as root (`cargo xtask
//! test`); without root the tests say SKIPPED, and fail instead under
//! MONITOR_REQUIRE_KERNEL_TESTS=1.
mod common;

use std::{
    net::{TcpListener, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use common::{TestCgroup, WAIT, kernel_tests_enabled, scaled, tempdir};
use monitor::{
    bpf::{
        Tier,
        source::{EventSource, SourceOptions},
    },
    event::{CgroupOp, Event, EventBody, Family, FileOp, NetOp, Protocol, syscall::ArgValue},
};

/// The programs loaded in this process, watching one test cgroup, with every
/// event received so far kept for assertions (as pulsar's `TestRunner`).
struct ProbeRunner {
    cgroup: TestCgroup,
    source: EventSource<Event>,
    runtime: tokio::runtime::Runtime,
    seen: Vec<Event>,
    /// One runner at a time in this process: a test that counts the
    /// programs this process holds must not count another test's (`cargo
    /// test` runs tests on threads of one process). Dropped last.
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Held by the live [`ProbeRunner`].
static ONE_RUNNER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl ProbeRunner {
    /// Makes the test cgroup `name` and loads the programs scoped to it.
    fn start(name: &str) -> ProbeRunner {
        // A failed test poisons the lock; the next runner may still go.
        let serial = ONE_RUNNER.lock().unwrap_or_else(|e| e.into_inner());
        let cgroup = TestCgroup::new(name);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let opts = SourceOptions {
            cgroups: vec![cgroup.path.clone()],
            ring_buffer_bytes: 1 << 22,
            ..SourceOptions::default()
        };
        let source = runtime
            .block_on(async { EventSource::<Event>::start(&opts) })
            .unwrap_or_else(|e| panic!("loading the kernel programs: {e:#}"));
        for h in &source.started.kernel.hooks {
            if let Some(e) = &h.error {
                eprintln!("{} {}: {e}", h.status(), h.target);
            }
        }
        ProbeRunner {
            cgroup,
            source,
            runtime,
            seen: Vec::new(),
            _serial: serial,
        }
    }

    /// Runs `program args` in the test cgroup to completion (from `cwd`);
    /// returns its pid.
    fn run(&self, program: &str, args: &[&str], cwd: Option<&Path>) -> u32 {
        self.cgroup.run(program, args, cwd)
    }

    /// Whether the hook `target` (`tracepoint/syscalls/sys_enter_openat2`)
    /// attached on this kernel: a row some kernels lack is checked only
    /// where it is there.
    fn attached(&self, target: &str) -> bool {
        self.source
            .started
            .kernel
            .hooks
            .iter()
            .any(|h| h.hook() == target && h.attached())
    }

    /// The first event, among those seen and those still coming within
    /// `within` (scaled), that `check` accepts; fails naming `what`.
    fn expect(&mut self, what: &str, within: Duration, check: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| check(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + scaled(within);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.runtime.block_on(async {
                tokio::time::timeout(left, self.source.next())
                    .await
                    .ok()
                    .flatten()
            });
            let Some(event) = next else {
                let seen: Vec<String> = self.seen.iter().map(describe).collect();
                panic!(
                    "{what}: no such event within {:?}; {} seen in cgroup {}: {seen:#?}",
                    scaled(within),
                    self.seen.len(),
                    self.cgroup.rel
                );
            };
            self.seen.push(event);
            let event = self.seen.last().unwrap();
            if check(event) {
                return event.clone();
            }
        }
    }

    /// Takes every event that arrives within `d`, for assertions on what
    /// did not come.
    fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let next = self.runtime.block_on(async {
                tokio::time::timeout(left, self.source.next())
                    .await
                    .ok()
                    .flatten()
            });
            match next {
                Some(e) => self.seen.push(e),
                None => break,
            }
        }
    }
}

fn describe(e: &Event) -> String {
    format!("pid {} ({}): {:?}", e.header.pid, e.header.comm, e.body)
}

fn of(e: &Event, pid: u32) -> bool {
    e.header.pid == pid
}

fn file_op(e: &Event, pid: u32, op: FileOp, path: &Path) -> bool {
    of(e, pid) && matches!(&e.body, EventBody::File(f) if f.op == op && Path::new(&f.path) == path)
}

#[test]
fn exec_fork_and_exit_are_events() {
    if !kernel_tests_enabled("exec_fork_and_exit_are_events") {
        return;
    }
    let mut p = ProbeRunner::start("probe-process");
    // sh forks a child for the subshell, which exits with 3; sh exits 0.
    let pid = p.run("/bin/sh", &["-c", "(exit 3); /bin/true probe-arg"], None);

    let exec = p.expect("exec of /bin/sh (sched_process_exec)", WAIT, |e| {
        of(e, pid) && matches!(&e.body, EventBody::Exec(x) if x.filename == "/bin/sh")
    });
    let EventBody::Exec(x) = &exec.body else {
        unreachable!()
    };
    // argv from sys_enter_execve (or the kernel's copy, in the fentry tier),
    // stashed until the exec.
    assert_eq!(
        x.args,
        ["/bin/sh", "-c", "(exit 3); /bin/true probe-arg"],
        "{exec:?}"
    );
    assert_eq!(exec.header.cgroup_id, p.cgroup.id);
    assert_eq!(exec.header.comm, "sh");

    // Fork events need the task's parent from BTF, which every kernel tested has.
    assert!(
        p.attached("raw_tracepoint/sched_process_fork"),
        "raw_tracepoint/sched_process_fork is not attached"
    );
    let fork = p.expect("fork of sh (sched_process_fork)", WAIT, |e| {
        of(e, pid) && matches!(e.body, EventBody::Fork { .. })
    });
    let EventBody::Fork { child_pid } = fork.body else {
        unreachable!()
    };
    assert_ne!(child_pid, pid);
    // The exit code is the task's wait status: the code in its second byte.
    p.expect("exit 3 of the subshell (sched_process_exit)", WAIT, |e| {
        e.header.pid == child_pid
            && matches!(e.body, EventBody::Exit { exit_code } if exit_code == 3 << 8)
    });
    let exec_true = p.expect(
        "exec of /bin/true with argv",
        WAIT,
        |e| matches!(&e.body, EventBody::Exec(x) if x.filename == "/bin/true"),
    );
    let EventBody::Exec(x) = &exec_true.body else {
        unreachable!()
    };
    assert_eq!(x.args, ["/bin/true", "probe-arg"]);
    p.expect("exit 0 of sh", WAIT, |e| {
        of(e, pid) && matches!(e.body, EventBody::Exit { exit_code: 0 })
    });

    // fexecve is execveat(fd, "", AT_EMPTY_PATH): argv from sys_enter_execveat
    // in the tracepoint tier.
    let script = r#"
import os
fd = os.open("/bin/true", os.O_RDONLY)
os.execve(fd, ["true", "via-execveat"], {})
"#;
    let pid = p.run("/usr/bin/python3", &["-c", script], None);
    p.expect("exec through execveat, with its argv", WAIT, |e| {
        of(e, pid) && matches!(&e.body, EventBody::Exec(x) if x.args == ["true", "via-execveat"])
    });
}

/// An interpreter script's exec carries the caller's argv in both tiers: the
/// fentry tier reads the kernel's copy, where each interpreter (here two: a
/// script whose interpreter is a script, with an argument) was prepended,
/// and skips what was.
#[test]
fn an_interpreter_scripts_exec_has_the_callers_argv() {
    if !kernel_tests_enabled("an_interpreter_scripts_exec_has_the_callers_argv") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let inner = base.join("inner.sh");
    let outer = base.join("outer.sh");
    let executable = |path: &Path, text: String| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    executable(&inner, "#!/bin/sh\nexit 0\n".to_owned());
    executable(&outer, format!("#!{} -x\nexit 0\n", inner.display()));
    let mut p = ProbeRunner::start("probe-script");
    let outer = outer.to_str().unwrap();
    let script = format!("import os\nos.execv({outer:?}, [{outer:?}, 'one', 'two words'])\n");
    let pid = p.run("/usr/bin/python3", &["-c", &script], None);
    let exec = p.expect("exec of the outer script", WAIT, |e| {
        of(e, pid) && matches!(&e.body, EventBody::Exec(x) if x.filename == outer)
    });
    let EventBody::Exec(x) = &exec.body else {
        unreachable!()
    };
    assert_eq!(x.args, [outer, "one", "two words"], "{exec:?}");
    assert!(!x.args_truncated, "{exec:?}");
}

#[test]
fn file_writes_renames_unlinks_and_friends_are_events() {
    if !kernel_tests_enabled("file_writes_renames_unlinks_and_friends_are_events") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let mut p = ProbeRunner::start("probe-file");
    let script = r#"
import os
fd = os.open("w", os.O_WRONLY | os.O_CREAT, 0o600); os.close(fd)
os.rename("w", "r")
os.chmod("r", 0o640)
os.truncate("r", 0)
os.link("r", "hard")
os.symlink("r", "soft")
os.unlink("hard")
"#;
    let pid = p.run("/usr/bin/python3", &["-c", script], Some(&base));

    let open = p.expect("open for writing (sys_enter/exit_openat)", WAIT, |e| {
        file_op(e, pid, FileOp::Open, &base.join("w"))
    });
    let EventBody::File(f) = &open.body else {
        unreachable!()
    };
    assert_eq!(f.flags, ["O_WRONLY", "O_CREAT"], "{open:?}");
    assert_eq!(f.mode, Some(0o600));
    assert!(f.result >= 0, "{open:?}");

    let rename = p.expect("rename (renameat2 or rename)", WAIT, |e| {
        file_op(e, pid, FileOp::Rename, &base.join("w"))
    });
    let EventBody::File(f) = &rename.body else {
        unreachable!()
    };
    assert_eq!(f.target.as_deref(), base.join("r").to_str());
    assert_eq!(f.result, 0);

    let chmod = p.expect("chmod (fchmodat)", WAIT, |e| {
        file_op(e, pid, FileOp::Chmod, &base.join("r"))
    });
    let EventBody::File(f) = &chmod.body else {
        unreachable!()
    };
    assert_eq!(f.mode, Some(0o640));
    p.expect("truncate", WAIT, |e| {
        file_op(e, pid, FileOp::Truncate, &base.join("r"))
    });
    let link = p.expect("link (linkat)", WAIT, |e| {
        file_op(e, pid, FileOp::Link, &base.join("r"))
    });
    let EventBody::File(f) = &link.body else {
        unreachable!()
    };
    assert_eq!(f.target.as_deref(), base.join("hard").to_str());
    p.expect("symlink (symlinkat)", WAIT, |e| {
        of(e, pid)
            && matches!(&e.body, EventBody::File(f) if f.op == FileOp::Symlink
                && f.target.as_deref() == base.join("soft").to_str())
    });
    p.expect("unlink (unlinkat)", WAIT, |e| {
        file_op(e, pid, FileOp::Unlink, &base.join("hard"))
    });
}

/// Each file syscall's own tracepoints, called by number (x86_64) so that
/// the C library cannot route one call through another: `open`, `creat`,
/// `openat2`, `rename`, `renameat`, `renameat2`, `chmod`, `fchmodat`,
/// `fchmodat2` (6.6 and later), `truncate`, `link`, `symlink`, `unlink`; and
/// a credential file's read-only open and a connect to a `*.sock` socket,
/// which the exits of the opens and `sys_enter_connect` report.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_file_syscall_is_an_event() {
    if !kernel_tests_enabled("every_file_syscall_is_an_event") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    std::fs::write(base.join("token"), "secret").unwrap();
    let mut p = ProbeRunner::start("probe-file-syscalls");
    // Whether this kernel has the call (6.6 and later), whichever tier
    // serves the concern: a tracepoint row in standby is not probed.
    let fchmodat2 = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| {
            Path::new(t)
                .join("events/syscalls/sys_enter_fchmodat2")
                .exists()
        });
    let script = format!(
        r#"
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
AT = L(-100)
def call(what, nr, *args):
    r = libc.syscall(L(nr), *args)
    assert r >= 0, (what, os.strerror(ctypes.get_errno()))
    return r
W = L(os.O_WRONLY | os.O_CREAT)
os.close(call("open", 2, b"by-open", W, L(0o600)))
os.close(call("creat", 85, b"by-creat", L(0o600)))
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
how = How(os.O_WRONLY | os.O_CREAT, 0o600, 0)
os.close(call("openat2", 437, AT, b"by-openat2", ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))
call("rename", 82, b"by-open", b"renamed")
call("renameat", 264, AT, b"by-creat", AT, b"renamed-at")
call("renameat2", 316, AT, b"by-openat2", AT, b"renamed-at2", L(0))
call("chmod", 90, b"renamed", L(0o640))
call("fchmodat", 268, AT, b"renamed-at", L(0o640))
if {fchmodat2}:
    call("fchmodat2", 452, AT, b"renamed-at2", L(0o640), L(0))
call("truncate", 76, b"renamed", L(0))
call("link", 86, b"renamed", b"hard")
call("symlink", 88, b"renamed", b"soft")
call("unlink", 87, b"hard")
open("token").read()
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("probe.sock"); server.listen(1)
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect("probe.sock")
"#,
        fchmodat2 = if fchmodat2 { "True" } else { "False" }
    );
    let pid = p.run("/usr/bin/python3", &["-c", &script], Some(&base));
    let file = |op: FileOp, name: &str| {
        let path = base.join(name);
        move |e: &Event| file_op(e, pid, op, &path)
    };
    let with = |e: &Event| match &e.body {
        EventBody::File(f) => f.clone(),
        _ => unreachable!(),
    };
    let open = p.expect(
        "open (sys_enter/exit_open)",
        WAIT,
        file(FileOp::Open, "by-open"),
    );
    assert_eq!(with(&open).flags, ["O_WRONLY", "O_CREAT"]);
    // The fentry tier sees the kernel's open, where `creat(2)` is
    // `open(O_CREAT | O_WRONLY | O_TRUNC)` and nothing tells them apart.
    let creat = if p.attached("fexit/do_filp_open") {
        let ev = p.expect(
            "creat (fexit/do_filp_open)",
            WAIT,
            file(FileOp::Open, "by-creat"),
        );
        assert_eq!(with(&ev).flags, ["O_WRONLY", "O_CREAT", "O_TRUNC"]);
        ev
    } else {
        p.expect(
            "creat (sys_enter/exit_creat)",
            WAIT,
            file(FileOp::Creat, "by-creat"),
        )
    };
    assert_eq!(with(&creat).mode, Some(0o600));
    p.expect(
        "openat2 (sys_enter/exit_openat2)",
        WAIT,
        file(FileOp::Open, "by-openat2"),
    );
    for (what, from, to) in [
        ("rename (sys_enter/exit_rename)", "by-open", "renamed"),
        (
            "renameat (sys_enter/exit_renameat)",
            "by-creat",
            "renamed-at",
        ),
        (
            "renameat2 (sys_enter/exit_renameat2)",
            "by-openat2",
            "renamed-at2",
        ),
    ] {
        let ev = p.expect(what, WAIT, file(FileOp::Rename, from));
        assert_eq!(
            with(&ev).target.as_deref(),
            base.join(to).to_str(),
            "{what}"
        );
    }
    let mut chmods = vec![
        ("chmod (sys_enter/exit_chmod)", "renamed"),
        ("fchmodat (sys_enter/exit_fchmodat)", "renamed-at"),
    ];
    if fchmodat2 {
        chmods.push(("fchmodat2 (sys_enter/exit_fchmodat2)", "renamed-at2"));
    }
    for (what, name) in chmods {
        let ev = p.expect(what, WAIT, file(FileOp::Chmod, name));
        assert_eq!(with(&ev).mode, Some(0o640), "{what}");
    }
    p.expect(
        "truncate (sys_enter/exit_truncate)",
        WAIT,
        file(FileOp::Truncate, "renamed"),
    );
    p.expect(
        "link (sys_enter/exit_link)",
        WAIT,
        file(FileOp::Link, "renamed"),
    );
    p.expect("symlink (sys_enter/exit_symlink)", WAIT, |e| {
        of(e, pid)
            && matches!(&e.body, EventBody::File(f) if f.op == FileOp::Symlink
                && f.target.as_deref() == base.join("soft").to_str())
    });
    p.expect(
        "unlink (sys_enter/exit_unlink)",
        WAIT,
        file(FileOp::Unlink, "hard"),
    );
    let read = p.expect(
        "read-only open of a credential file (sys_exit_openat)",
        WAIT,
        file(FileOp::Open, "token"),
    );
    assert_eq!(with(&read).flags, ["O_RDONLY"]);
    p.expect(
        "connect to a *.sock socket (sys_enter/exit_connect)",
        WAIT,
        file(FileOp::Connect, "probe.sock"),
    );
}

#[test]
fn connects_sendmsgs_and_binds_are_events() {
    if !kernel_tests_enabled("connects_sendmsgs_and_binds_are_events") {
        return;
    }
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp6 = UdpSocket::bind("[::1]:0").unwrap();
    let port = |a: std::io::Result<std::net::SocketAddr>| a.unwrap().port();
    let (p4, p6, u4, u6) = (
        port(v4.local_addr()),
        port(v6.local_addr()),
        port(udp4.local_addr()),
        port(udp6.local_addr()),
    );
    let mut p = ProbeRunner::start("probe-net");
    let script = format!(
        r#"
import socket
socket.create_connection(("127.0.0.1", {p4})).close()
socket.create_connection(("::1", {p6})).close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", ("127.0.0.1", {u4})); s.close()
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.sendto(b"x", ("::1", {u6})); s.close()
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("127.0.0.1", 0)); s.close()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.bind(("::1", 0)); s.close()
"#
    );
    let pid = p.run("/usr/bin/python3", &["-c", &script], None);
    let net = |op: NetOp, family: Family, protocol: Protocol, dport: Option<u16>| {
        move |e: &Event| {
            of(e, pid)
                && matches!(&e.body, EventBody::Network(n) if n.op == op
                    && n.family == family
                    && n.protocol == protocol
                    && dport.is_none_or(|d| n.dport == d))
        }
    };
    let ev = p.expect(
        "tcp connect over ipv4 (cgroup/connect4)",
        WAIT,
        net(NetOp::Connect, Family::Ipv4, Protocol::Tcp, Some(p4)),
    );
    let EventBody::Network(n) = &ev.body else {
        unreachable!()
    };
    assert_eq!(n.destination(), format!("127.0.0.1:{p4}"));
    assert_eq!(ev.header.cgroup_id, p.cgroup.id);
    let ev = p.expect(
        "tcp connect over ipv6 (cgroup/connect6)",
        WAIT,
        net(NetOp::Connect, Family::Ipv6, Protocol::Tcp, Some(p6)),
    );
    let EventBody::Network(n) = &ev.body else {
        unreachable!()
    };
    assert_eq!(n.destination(), format!("[::1]:{p6}"));
    p.expect(
        "udp sendto over ipv4 (cgroup/sendmsg4)",
        WAIT,
        net(NetOp::Sendmsg, Family::Ipv4, Protocol::Udp, Some(u4)),
    );
    p.expect(
        "udp sendto over ipv6 (cgroup/sendmsg6)",
        WAIT,
        net(NetOp::Sendmsg, Family::Ipv6, Protocol::Udp, Some(u6)),
    );
    p.expect(
        "bind over ipv4 (cgroup/bind4)",
        WAIT,
        net(NetOp::Bind, Family::Ipv4, Protocol::Tcp, None),
    );
    p.expect(
        "bind over ipv6 (cgroup/bind6)",
        WAIT,
        net(NetOp::Bind, Family::Ipv6, Protocol::Tcp, None),
    );
}

#[test]
fn cgroups_made_and_removed_are_events() {
    if !kernel_tests_enabled("cgroups_made_and_removed_are_events") {
        return;
    }
    let mut p = ProbeRunner::start("probe-cgroup");
    // A child makes and removes it: the kernel never reports this process.
    let child = p.cgroup.path.join("docker-probe.scope");
    let child_arg = child.to_str().unwrap();
    p.run("/bin/mkdir", &[child_arg], None);
    let id = monitor::bpf::cgroupfs::cgroup_id(&child).unwrap();
    p.run("/bin/rmdir", &[child_arg], None);
    let path = format!("{}/docker-probe.scope", p.cgroup.rel);
    let change = |op: CgroupOp| {
        let path = path.clone();
        move |e: &Event| matches!(&e.body, EventBody::Cgroup(c) if c.op == op && c.path == path)
    };
    let mkdir = p.expect("cgroup_mkdir", WAIT, change(CgroupOp::Mkdir));
    let EventBody::Cgroup(c) = &mkdir.body else {
        unreachable!()
    };
    assert_eq!(c.id, id);
    p.expect("cgroup_rmdir", WAIT, change(CgroupOp::Rmdir));
}

#[test]
fn rare_syscalls_are_events() {
    if !kernel_tests_enabled("rare_syscalls_are_events") {
        return;
    }
    let mut p = ProbeRunner::start("probe-syscall");
    // setuid to root (a no-op as root), a UTS namespace, a packet socket;
    // then a TCP socket and a plain fork, which never leave the kernel.
    let script = r#"
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
os.setuid(0)
assert libc.unshare(0x04000000) == 0
socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
if os.fork() == 0:
    os._exit(0)
os.wait()
"#;
    let pid = p.run("/usr/bin/python3", &["-c", script], None);
    let named = |name: &'static str| {
        move |e: &Event| of(e, pid) && matches!(&e.body, EventBody::Syscall(s) if s.name == name)
    };
    let ev = p.expect("setuid (sys_enter/exit_setuid)", WAIT, named("setuid"));
    let EventBody::Syscall(s) = &ev.body else {
        unreachable!()
    };
    assert_eq!(s.args, [("uid", ArgValue::Number(0))]);
    assert_eq!(s.result, 0);
    let ev = p.expect("unshare (sys_enter/exit_unshare)", WAIT, named("unshare"));
    let EventBody::Syscall(s) = &ev.body else {
        unreachable!()
    };
    assert_eq!(s.args, [("flags", ArgValue::Names(vec!["CLONE_NEWUTS"]))]);
    let ev = p.expect(
        "packet socket (sys_enter/exit_socket)",
        WAIT,
        named("socket"),
    );
    let EventBody::Syscall(s) = &ev.body else {
        unreachable!()
    };
    assert_eq!(
        s.args,
        [
            ("family", ArgValue::Names(vec!["AF_PACKET"])),
            ("type", ArgValue::Names(vec!["SOCK_RAW"]))
        ]
    );
    p.drain_for(scaled(Duration::from_millis(300)));
    let names: Vec<&str> = p
        .seen
        .iter()
        .filter(|e| of(e, pid))
        .filter_map(|e| match &e.body {
            EventBody::Syscall(s) => Some(s.name),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["setuid", "unshare", "socket"]);
}

/// Every rare syscall's own tracepoints, called by number (x86_64) with
/// arguments that change nothing (no-op credential changes, bad descriptors,
/// null pointers, a UTS namespace of the caller's own): the event is sent at
/// exit, failed or not. A call this kernel has no tracepoint for (no module
/// support, say) cannot be hooked, and is left out with a line saying so.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_rare_syscall_is_an_event() {
    if !kernel_tests_enabled("every_rare_syscall_is_an_event") {
        return;
    }
    // name, the enter tracepoint, the call (`c(nr, args...)`, errors ignored).
    const CALLS: &[(&str, &str, &str)] = &[
        ("setuid", "sys_enter_setuid", "c(105, L(0))"),
        ("setgid", "sys_enter_setgid", "c(106, L(0))"),
        ("setreuid", "sys_enter_setreuid", "c(113, L(-1), L(-1))"),
        ("setregid", "sys_enter_setregid", "c(114, L(-1), L(-1))"),
        (
            "setresuid",
            "sys_enter_setresuid",
            "c(117, L(-1), L(-1), L(-1))",
        ),
        (
            "setresgid",
            "sys_enter_setresgid",
            "c(119, L(-1), L(-1), L(-1))",
        ),
        ("setfsuid", "sys_enter_setfsuid", "c(122, L(0))"),
        ("setfsgid", "sys_enter_setfsgid", "c(123, L(0))"),
        ("capset", "sys_enter_capset", "c(126, None, None)"),
        (
            "ptrace",
            "sys_enter_ptrace",
            "c(101, L(2), L(0), None, None)",
        ),
        (
            "process_vm_writev",
            "sys_enter_process_vm_writev",
            "c(311, L(0), None, L(0), None, L(0), L(0))",
        ),
        ("bpf", "sys_enter_bpf", "c(321, L(0xffff), None, L(0))"),
        (
            "init_module",
            "sys_enter_init_module",
            "c(175, None, L(0), b'')",
        ),
        (
            "finit_module",
            "sys_enter_finit_module",
            "c(313, L(-1), b'', L(0))",
        ),
        (
            "delete_module",
            "sys_enter_delete_module",
            "c(176, b'monitor_probe_no_such_module', L(os.O_NONBLOCK))",
        ),
        ("userfaultfd", "sys_enter_userfaultfd", "c(323, L(0xffff))"),
        (
            "io_uring_setup",
            "sys_enter_io_uring_setup",
            "c(425, L(0), None)",
        ),
        (
            "mount",
            "sys_enter_mount",
            "c(165, None, None, None, L(0), None)",
        ),
        (
            "umount2",
            "sys_enter_umount",
            "c(166, b'/monitor-probe-no-such-mount', L(0))",
        ),
        ("fsmount", "sys_enter_fsmount", "c(432, L(-1), L(0), L(0))"),
        (
            "move_mount",
            "sys_enter_move_mount",
            "c(429, L(-1), b'', L(-1), b'', L(0))",
        ),
        (
            "open_tree",
            "sys_enter_open_tree",
            "c(428, L(-1), b'', L(0))",
        ),
        ("unshare", "sys_enter_unshare", "c(272, L(0x04000000))"),
        ("setns", "sys_enter_setns", "c(308, L(-1), L(0))"),
        // CLONE_NEWUTS | SIGCHLD: the child leaves at once.
        (
            "clone",
            "sys_enter_clone",
            "r = c(56, L(0x04000000 | 17), None, None, None, L(0))\nif r == 0: os._exit(0)\nos.waitpid(r, 0)",
        ),
        (
            "clone3",
            "sys_enter_clone3",
            "args = (ctypes.c_uint64 * 8)(0x04000000, 0, 0, 0, 17, 0, 0, 0)\nr = c(435, ctypes.byref(args), ctypes.c_size_t(64))\nif r == 0: os._exit(0)\nos.waitpid(r, 0)",
        ),
        ("socket", "sys_enter_socket", "c(41, L(17), L(3), L(0))"),
    ];
    let mut p = ProbeRunner::start("probe-rare-syscalls");
    let mut script = String::from(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\nL = ctypes.c_long\ndef c(nr, *args):\n    return libc.syscall(L(nr), *args)\n",
    );
    let mut expected = Vec::new();
    for (name, enter, call) in CALLS {
        // The fentry tier's row is on the function of the same
        // SYSCALL_DEFINE: `sys_enter_umount`, `__x64_sys_umount`.
        let function = format!("fexit/__x64_sys_{}", &enter["sys_enter_".len()..]);
        if p.attached(&format!("tracepoint/syscalls/{enter}")) || p.attached(&function) {
            script.push_str(call);
            script.push('\n');
            expected.push(*name);
        } else {
            eprintln!("{name}: this kernel has neither {enter} nor {function}, so no hook to test");
        }
    }
    let pid = p.run("/usr/bin/python3", &["-c", &script], None);
    for name in &expected {
        p.expect(&format!("{name} (sys_enter/exit_rare)"), WAIT, |e| {
            of(e, pid) && matches!(&e.body, EventBody::Syscall(s) if s.name == *name)
        });
    }
    p.drain_for(scaled(Duration::from_millis(300)));
    let names: Vec<&str> = p
        .seen
        .iter()
        .filter(|e| of(e, pid))
        .filter_map(|e| match &e.body {
            EventBody::Syscall(s) => Some(s.name),
            _ => None,
        })
        .collect();
    assert_eq!(names, expected, "one event per call, in order");
}

#[test]
fn every_core_hook_attached_and_the_source_counts_records() {
    if !kernel_tests_enabled("every_core_hook_attached_and_the_source_counts_records") {
        return;
    }
    let mut p = ProbeRunner::start("probe-hooks");
    let missing: Vec<String> = p
        .source
        .started
        .kernel
        .hooks
        .iter()
        .filter(|h| h.core_missing())
        .map(|h| format!("{}: {}", h.target, h.status()))
        .collect();
    assert!(missing.is_empty(), "core hooks not attached: {missing:?}");
    let pid = p.run("/bin/true", &[], None);
    p.expect("exec of /bin/true", WAIT, |e| {
        of(e, pid) && matches!(e.body, EventBody::Exec(_))
    });
    assert!(p.source.records() > 0);
    assert_eq!(p.source.newly_undecodable(), 0, "records did not decode");
    assert_eq!(p.source.lost_total(), 0);
}

/// Each concern is served by the best tier this kernel lets attach, whole:
/// in the VMs (`MONITOR_EXPECT_TIER=fentry`, set by `cargo xtask vm-test`)
/// every concern with fentry rows is served by them, its syscall
/// tracepoints in standby, so no syscall pays the tracing slow path for
/// them; on a kernel that refuses tracing programs (this host's 6.18 under
/// lockdown) every fentry row says why and the tracepoint tier serves all.
#[test]
fn each_concern_is_served_whole_by_the_best_tier_the_kernel_offers() {
    if !kernel_tests_enabled("each_concern_is_served_whole_by_the_best_tier_the_kernel_offers") {
        return;
    }
    let p = ProbeRunner::start("probe-tiers");
    let hooks = &p.source.started.kernel.hooks;
    let upper: Vec<_> = hooks.iter().filter(|h| h.tier == Tier::Fentry).collect();
    assert!(!upper.is_empty(), "the object has no fentry rows");
    let tiers = monitor::bpf::hooks::concern_tiers(hooks);
    let tier_of = |concern: &str| {
        tiers
            .iter()
            .find(|(c, _)| *c == concern)
            .and_then(|(_, t)| *t)
    };
    let expected = std::env::var("MONITOR_EXPECT_TIER").unwrap_or_default();
    if expected == "fentry" {
        let failed: Vec<String> = upper
            .iter()
            .filter(|h| !h.attached())
            .map(|h| {
                format!(
                    "{}: {}",
                    h.target,
                    h.error.as_ref().map_or("standby".into(), |e| e.to_string())
                )
            })
            .collect();
        assert!(
            failed.is_empty(),
            "fentry rows that did not attach: {failed:#?}"
        );
        for h in &upper {
            assert_eq!(
                tier_of(h.concern),
                Some(Tier::Fentry),
                "concern {}",
                h.concern
            );
        }
        // The concerns the fentry tier serves keep none of their syscall
        // tracepoints attached.
        let doubled: Vec<&str> = hooks
            .iter()
            .filter(|h| h.tier == Tier::Tracepoint && h.attached())
            .filter(|h| upper.iter().any(|u| u.concern == h.concern))
            .filter(|h| h.hook().starts_with("tracepoint/syscalls/"))
            .map(|h| h.target.as_str())
            .collect();
        assert!(
            doubled.is_empty(),
            "syscall tracepoints beside the fentry tier: {doubled:?}"
        );
    } else {
        assert_eq!(
            expected, "",
            "MONITOR_EXPECT_TIER={expected}: only `fentry` is known"
        );
        // This kernel refuses the tier as a whole: the loader said why, row
        // by row, and fell back whole.
        for h in &upper {
            let kind = h.error.as_ref().map(|e| e.kind());
            assert!(
                matches!(
                    kind,
                    Some("verifier" | "load" | "attach" | "no_btf" | "no_function")
                ),
                "{}: {:?}",
                h.target,
                h.status()
            );
        }
        for (concern, tier) in &tiers {
            assert_ne!(*tier, Some(Tier::Fentry), "concern {concern}");
        }
        assert!(
            hooks.iter().all(|h| !h.standby),
            "nothing stands by without a higher tier"
        );
    }
}

/// The tracepoint programs this process holds, asked of the kernel fd by
/// fd, not of the loader: each is a `perf` BPF link (5.15 on) or a
/// perf event fd with a program, whose tracepoint `BPF_TASK_FD_QUERY` (what
/// `bpftool perf` shows) names. Returns how many there are and the names it
/// could learn (a link's name needs 6.6: none here).
fn tracepoints_held() -> (usize, Vec<String>) {
    /// `union bpf_attr`'s `task_fd_query`.
    #[repr(C)]
    #[derive(Default)]
    struct TaskFdQuery {
        pid: u32,
        fd: u32,
        flags: u32,
        buf_len: u32,
        buf: u64,
        prog_id: u32,
        fd_type: u32,
        probe_offset: u64,
        probe_addr: u64,
    }
    const BPF_TASK_FD_QUERY: libc::c_long = 20;
    const BPF_FD_TYPE_TRACEPOINT: u32 = 1;
    let (mut count, mut named) = (0, Vec::new());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        if info.lines().any(|l| l == "link_type:\tperf") {
            count += 1;
            continue;
        }
        let mut name = [0u8; 256];
        let mut attr = TaskFdQuery {
            pid: std::process::id(),
            fd,
            buf_len: name.len() as u32,
            buf: name.as_mut_ptr() as u64,
            ..TaskFdQuery::default()
        };
        // SAFETY: `attr` is the command's attribute struct, `name` outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_TASK_FD_QUERY,
                &mut attr as *mut TaskFdQuery,
                size_of::<TaskFdQuery>(),
            )
        };
        // Most fds are no perf event with a program: the query fails for them.
        if r == 0 && attr.fd_type == BPF_FD_TYPE_TRACEPOINT {
            count += 1;
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            named.push(String::from_utf8_lossy(&name[..len]).into_owned());
        }
    }
    (count, named)
}

/// With the fentry tier serving exec and the rare syscalls, none of their
/// syscall tracepoints holds a program (one would put every syscall of every
/// task on the tracing slow path). The agent's statuses say so, and the
/// kernel agrees: this process holds exactly as many tracepoint programs as
/// the statuses say are attached (none of theirs among those it can name),
/// and the tracing links are there instead. On the tracepoint tier the same
/// count must match too, so the check can fail.
#[test]
fn exec_and_the_rare_syscalls_hold_no_syscall_tracepoint_on_the_fentry_tier() {
    if !kernel_tests_enabled(
        "exec_and_the_rare_syscalls_hold_no_syscall_tracepoint_on_the_fentry_tier",
    ) {
        return;
    }
    let p = ProbeRunner::start("probe-slow-path");
    let hooks = &p.source.started.kernel.hooks;
    let rare = monitor::bpf::syscalls::HOOKED.len();
    let concerns: Vec<&str> = monitor::bpf::syscalls::HOOKED
        .iter()
        .map(|c| c.concern)
        .chain(["exec"])
        .collect();
    let theirs: Vec<_> = hooks
        .iter()
        .filter(|h| concerns.contains(&h.concern))
        .filter(|h| h.hook().starts_with("tracepoint/syscalls/"))
        .collect();
    assert!(theirs.len() > 2 * rare, "{theirs:?}");
    let attached_tracepoints = hooks
        .iter()
        .filter(|h| h.attached() && h.hook().starts_with("tracepoint/"))
        .count();
    let (held, named) = tracepoints_held();
    assert_eq!(
        held, attached_tracepoints,
        "tracepoint programs held, by the kernel and by the statuses ({named:?})"
    );
    if std::env::var("MONITOR_EXPECT_TIER").as_deref() == Ok("fentry") {
        let attached: Vec<&str> = theirs
            .iter()
            .filter(|h| !h.standby)
            .map(|h| h.target.as_str())
            .collect();
        assert!(attached.is_empty(), "not in standby: {attached:?}");
        let named_theirs: Vec<&String> = named
            .iter()
            .filter(|t| theirs.iter().any(|h| h.hook().ends_with(&format!("/{t}"))))
            .collect();
        assert!(named_theirs.is_empty(), "the kernel names {named_theirs:?}");
        // The fentry rows are there instead, as tracing links.
        let links = std::fs::read_dir("/proc/self/fdinfo")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter(|info| info.contains("link_type:\ttracing"))
            .count();
        let fentry_rows = hooks
            .iter()
            .filter(|h| h.tier == Tier::Fentry && h.attached())
            .filter(|h| concerns.contains(&h.concern) || h.concern == "seccomp refusals")
            .count();
        assert!(
            fentry_rows > rare && links >= fentry_rows,
            "{links} tracing links for {fentry_rows} fentry rows"
        );
    } else {
        // The tracepoint tier: theirs are among those held.
        assert!(theirs.iter().filter(|h| h.attached()).count() > rare);
    }
}
