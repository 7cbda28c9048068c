//! Kernel tests of `monitor trace`: real programs in this kernel, workloads in
//! test cgroups, and the exact events asserted. Run as root (`cargo xtask test`).
mod common;

use std::{
    net::{TcpListener, UdpSocket},
    time::Duration,
};

use common::{Monitor, TestCgroup, WAIT, kernel_tests_enabled, tempdir};
use serde_json::{Value, json};

fn trace(cgroup: &TestCgroup, kinds: &str) -> Monitor {
    trace_with(cgroup, kinds, &[])
}

/// [`trace`] with more arguments.
fn trace_with(cgroup: &TestCgroup, kinds: &str, extra: &[&str]) -> Monitor {
    let path = cgroup.path.to_str().unwrap();
    let args = [&["trace", "--cgroup", path, "--kind", kinds][..], extra].concat();
    Monitor::start(&args, "tracing;")
}

/// Python lines that install a seccomp filter refusing call `nr` with EPERM
/// and allowing every other (`libc` is ctypes' libc).
fn seccomp_refusing(nr: u32) -> String {
    format!(
        r#"
import ctypes, struct
insns = [(0x20, 0, 0, 0), (0x15, 0, 1, {nr}), (0x06, 0, 0, 0x00050001), (0x06, 0, 0, 0x7fff0000)]
buf = b"".join(struct.pack("HBBI", *i) for i in insns)
filt = ctypes.create_string_buffer(buf)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(insns), ctypes.cast(filt, ctypes.c_void_p))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
"#
    )
}

fn is(v: &Value, event: &str, pid: u32) -> bool {
    v["event"] == event && v["process"]["pid"] == pid
}

#[test]
fn exec_of_true_with_argv() {
    if !kernel_tests_enabled("exec_of_true_with_argv") {
        return;
    }
    let cg = TestCgroup::new("exec");
    let mut m = trace(&cg, "exec");
    let pid = cg.run("/bin/true", &["first", "second arg"], None);
    let ev = m.expect("exec of /bin/true", WAIT, |v| is(v, "exec", pid));
    assert_eq!(ev["process"]["exe"], "/bin/true");
    assert_eq!(
        ev["process"]["args"],
        json!(["/bin/true", "first", "second arg"])
    );
    assert_eq!(ev["process"]["comm"], "true");
    assert_eq!(ev["cgroup_id"], cg.id);
    assert_eq!(ev["process"]["uid"], 0);
    assert!(
        ev["process"]["ppid"].as_u64().is_some_and(|p| p > 0),
        "ppid missing: {ev}"
    );
}

#[test]
fn shell_redirect_is_a_write_with_resolved_path() {
    if !kernel_tests_enabled("shell_redirect_is_a_write_with_resolved_path") {
        return;
    }
    let dir = tempdir();
    let cwd = dir.path().canonicalize().unwrap();
    let cg = TestCgroup::new("write");
    let mut m = trace(&cg, "file");
    let pid = cg.run("/bin/sh", &["-c", "echo x > f"], Some(&cwd));
    let want = cwd.join("f").to_str().unwrap().to_owned();
    let ev = m.expect("write of f", WAIT, |v| {
        is(v, "file", pid) && v["file"]["path"] == want.as_str()
    });
    assert_eq!(ev["file"]["op"], "open");
    assert_eq!(
        ev["file"]["flags"],
        json!(["O_WRONLY", "O_CREAT", "O_TRUNC"])
    );
    assert!(
        ev["file"]["result"].as_i64().unwrap() >= 0,
        "open failed: {ev}"
    );
    assert_eq!(ev["cgroup_id"], cg.id);
}

#[test]
fn relative_and_dirfd_paths_resolve() {
    if !kernel_tests_enabled("relative_and_dirfd_paths_resolve") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(base.join("sub/deeper")).unwrap();
    let cg = TestCgroup::new("resolve");
    let mut m = trace(&cg, "file");
    // A relative path from a cwd, and a path relative to a directory descriptor
    // that points somewhere else than the cwd.
    let script = r#"
import os
with open("sub/rel.txt", "w") as f: f.write("x")
d = os.open("sub/deeper", os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("../viafd.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=d)
os.close(fd)
"#;
    let pid = cg.run("/usr/bin/python3", &["-c", script], Some(&base));
    let rel = base.join("sub/rel.txt");
    let viafd = base.join("sub/viafd.txt");
    m.expect("relative write", WAIT, |v| {
        is(v, "file", pid) && v["file"]["path"] == rel.to_str().unwrap()
    });
    let ev = m.expect("dirfd write", WAIT, |v| {
        is(v, "file", pid) && v["file"]["path"] == viafd.to_str().unwrap()
    });
    assert_eq!(ev["file"]["flags"], json!(["O_WRONLY", "O_CREAT"]));
    assert_eq!(ev["file"]["mode"], 0o600);
}

#[test]
fn an_open_through_a_symlink_or_proc_has_the_kernels_path() {
    if !kernel_tests_enabled("an_open_through_a_symlink_or_proc_has_the_kernels_path") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    std::fs::create_dir(base.join("real")).unwrap();
    std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
    let cg = TestCgroup::new("kpath");
    let mut m = trace(&cg, "file");
    // Through a symlinked directory, through /proc/self/root, and a write
    // reopen of a read-only descriptor through /proc/self/fd.
    let root_path = format!("/proc/self/root{}/viaroot", base.display());
    let script =
        format!("echo x > link/f; echo y > {root_path}; exec 3< real/f; echo z > /proc/self/fd/3");
    let pid = cg.run("/bin/sh", &["-c", &script], Some(&base));
    let real_f = base.join("real/f");
    let ev = m.expect("write through the symlink", WAIT, |v| {
        is(v, "file", pid) && v["file"]["requested_path"] == "link/f"
    });
    assert_eq!(ev["file"]["path"], real_f.to_str().unwrap());
    let ev = m.expect("write through /proc/self/root", WAIT, |v| {
        is(v, "file", pid) && v["file"]["requested_path"] == root_path.as_str()
    });
    assert_eq!(ev["file"]["path"], base.join("viaroot").to_str().unwrap());
    let ev = m.expect("reopen through /proc/self/fd", WAIT, |v| {
        is(v, "file", pid) && v["file"]["requested_path"] == "/proc/self/fd/3"
    });
    assert_eq!(ev["file"]["path"], real_f.to_str().unwrap());
    assert_eq!(ev["file"].get("truncated"), None, "{ev}");
}

#[test]
fn a_path_too_long_to_capture_is_flagged_truncated() {
    if !kernel_tests_enabled("a_path_too_long_to_capture_is_flagged_truncated") {
        return;
    }
    let dir = tempdir();
    let mut deep = dir.path().canonicalize().unwrap();
    // Six 120-byte names: over 700 bytes, more than the kernel walk keeps.
    for i in 0..6 {
        deep.push(format!("{i}{}", "d".repeat(119)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let cg = TestCgroup::new("long");
    let mut m = trace(&cg, "file");
    let pid = cg.run("/bin/sh", &["-c", "echo x > f"], Some(&deep));
    let ev = m.expect("write of the deep file", WAIT, |v| {
        is(v, "file", pid) && v["file"]["op"] == "open"
    });
    assert_eq!(ev["file"]["truncated"], true, "{ev}");
}

#[test]
fn rename_over_existing_file() {
    if !kernel_tests_enabled("rename_over_existing_file") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    std::fs::write(base.join("hosts"), "old").unwrap();
    std::fs::write(base.join("hosts.new"), "new").unwrap();
    let cg = TestCgroup::new("rename");
    let mut m = trace(&cg, "file");
    let pid = cg.run("/bin/mv", &["hosts.new", "hosts"], Some(&base));
    // mv first tries renameat2(RENAME_NOREPLACE), which fails with EEXIST, then
    // replaces: both attempts are reported, with their results.
    let ev = m.expect("rename", WAIT, |v| {
        is(v, "file", pid) && v["file"]["op"] == "rename" && v["file"]["result"] == 0
    });
    assert_eq!(ev["file"]["path"], base.join("hosts.new").to_str().unwrap());
    assert_eq!(ev["file"]["target"], base.join("hosts").to_str().unwrap());
    assert_eq!(ev["file"]["result"], 0);
    assert_eq!(std::fs::read_to_string(base.join("hosts")).unwrap(), "new");
}

#[test]
fn tcp_connects_over_ipv4_and_ipv6_and_udp_sendto() {
    if !kernel_tests_enabled("tcp_connects_over_ipv4_and_ipv6_and_udp_sendto") {
        return;
    }
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (p4, p6, pu) = (
        v4.local_addr().unwrap().port(),
        v6.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    let cg = TestCgroup::new("net");
    let mut m = trace(&cg, "net");
    let script = format!(
        r#"
import socket
socket.create_connection(("127.0.0.1", {p4})).close()
socket.create_connection(("::1", {p6})).close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", ("127.0.0.1", {pu}))
"#
    );
    let pid = cg.run("/usr/bin/python3", &["-c", &script], None);
    let net = |v: &Value, family: &str, proto: &str, port: u16| {
        is(v, "network", pid)
            && v["network"]["family"] == family
            && v["network"]["protocol"] == proto
            && v["network"]["dport"] == port
    };
    let ev = m.expect("tcp v4 connect", WAIT, |v| net(v, "ipv4", "tcp", p4));
    assert_eq!(
        ev["network"],
        json!({"op": "connect", "protocol": "tcp", "family": "ipv4", "daddr": "127.0.0.1", "dport": p4, "dns": null})
    );
    let ev = m.expect("tcp v6 connect", WAIT, |v| net(v, "ipv6", "tcp", p6));
    assert_eq!(ev["network"]["daddr"], "::1");
    assert_eq!(ev["network"]["op"], "connect");
    let ev = m.expect("udp sendto", WAIT, |v| net(v, "ipv4", "udp", pu));
    assert_eq!(ev["network"]["op"], "sendmsg");
    assert_eq!(ev["cgroup_id"], cg.id);
}

#[test]
fn nothing_leaks_from_outside_the_cgroup() {
    if !kernel_tests_enabled("nothing_leaks_from_outside_the_cgroup") {
        return;
    }
    let watched = TestCgroup::new("watched");
    let other = TestCgroup::new("other");
    let mut m = trace(&watched, "all");
    // Activity elsewhere: another cgroup, and the test process itself (host).
    other.run(
        "/bin/sh",
        &["-c", "echo leak > /dev/null; /bin/echo outside-marker"],
        None,
    );
    std::process::Command::new("/bin/echo")
        .arg("host-marker")
        .output()
        .unwrap();
    // Then a sentinel inside: once it is seen, everything before it was read.
    let pid = watched.run("/bin/echo", &["inside-sentinel"], None);
    m.expect("sentinel", WAIT, |v| is(v, "exec", pid));
    m.drain_for(Duration::from_millis(300));
    let outside: Vec<&Value> = m
        .seen
        .iter()
        .filter(|v| v["cgroup_id"] != watched.id)
        .collect();
    assert!(
        outside.is_empty(),
        "events from outside the watched cgroup: {outside:?}"
    );
    assert!(
        !m.seen
            .iter()
            .any(|v| v.to_string().contains("outside-marker")
                || v.to_string().contains("host-marker"))
    );
}

#[test]
fn children_made_later_are_watched_too() {
    if !kernel_tests_enabled("children_made_later_are_watched_too") {
        return;
    }
    let parent = TestCgroup::new("parent");
    let mut m = trace(&parent, "exec,cgroup");
    let child = parent.subdir("late-child");
    let child_id = child.id;
    m.expect("mkdir of the child", WAIT, |v| {
        v["event"] == "cgroup" && v["cgroup"]["id"] == child_id && v["cgroup"]["op"] == "mkdir"
    });
    let pid = child.run("/bin/true", &["in-child"], None);
    let ev = m.expect("exec in the child", WAIT, |v| is(v, "exec", pid));
    assert_eq!(ev["cgroup_id"], child_id);
}

#[test]
fn no_events_lost_at_a_normal_rate() {
    if !kernel_tests_enabled("no_events_lost_at_a_normal_rate") {
        return;
    }
    let dir = tempdir();
    let cg = TestCgroup::new("rate");
    let mut m = trace(&cg, "file");
    let script = "import os\nfor i in range(2000):\n    fd = os.open('f%d' % (i % 10), os.O_WRONLY | os.O_CREAT, 0o600)\n    os.close(fd)\n";
    let pid = cg.run("/usr/bin/python3", &["-c", script], Some(dir.path()));
    // Wait for all of them (not just a line naming f9, which the tenth open
    // already does): under emulation the tail may take seconds to arrive.
    let count = |m: &Monitor| {
        m.seen
            .iter()
            .filter(|v| is(v, "file", pid) && v["file"]["flags"][1] == "O_CREAT")
            .count()
    };
    let deadline = std::time::Instant::now() + common::scaled(WAIT);
    while count(&m) < 2000 && std::time::Instant::now() < deadline {
        m.drain_for(Duration::from_millis(100));
    }
    // Then a little longer: a duplicate would show up here.
    m.drain_for(Duration::from_millis(500));
    let writes = count(&m);
    assert_eq!(writes, 2000, "every open was reported once");
    let stderr = m.stop();
    assert!(
        stderr.contains("lost_total=0"),
        "the agent must report zero lost events; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("kernel dropped events"), "{stderr}");
}

#[test]
fn rare_syscalls_are_events_and_a_seccomp_refusal_is_one_too() {
    if !kernel_tests_enabled("rare_syscalls_are_events_and_a_seccomp_refusal_is_one_too") {
        return;
    }
    let cg = TestCgroup::new("syscalls");
    let mut m = trace(&cg, "syscall");
    // setuid to root, a UTS namespace, a packet socket; then the benign twins
    // (a TCP socket, a plain fork) and a setns that a seccomp filter refuses
    // before the call enters the kernel.
    let script = r#"
import ctypes, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
os.setuid(0)
assert libc.unshare(0x04000000) == 0
socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
if os.fork() == 0:
    os._exit(0)
os.wait()
"#;
    // seccomp: setns (308) -> EPERM, everything else allowed.
    let script = format!(
        "{script}{}assert libc.setns(0, 0) == -1 and ctypes.get_errno() == 1\n",
        seccomp_refusing(308)
    );
    let pid = cg.run("/usr/bin/python3", &["-c", &script], None);
    let named =
        |name: &'static str| move |v: &Value| is(v, "syscall", pid) && v["syscall"]["name"] == name;
    let ev = m.expect("setuid", WAIT, named("setuid"));
    assert_eq!(ev["syscall"]["args"], json!({"uid": 0}), "{ev}");
    assert_eq!(ev["syscall"]["result"], 0);
    let ev = m.expect("unshare", WAIT, named("unshare"));
    assert_eq!(
        ev["syscall"]["args"],
        json!({"flags": ["CLONE_NEWUTS"]}),
        "{ev}"
    );
    let ev = m.expect("packet socket", WAIT, named("socket"));
    assert_eq!(
        ev["syscall"]["args"],
        json!({"family": ["AF_PACKET"], "type": ["SOCK_RAW"]}),
        "{ev}"
    );
    let ev = m.expect("refused setns", WAIT, named("setns"));
    assert_eq!(ev["syscall"]["refused"], true, "{ev}");
    assert_eq!(ev["syscall"]["result"], -1);
    assert_eq!(ev["syscall"]["args"], json!({}));
    m.drain_for(Duration::from_millis(300));
    let mine: Vec<&Value> = m.seen.iter().filter(|v| is(v, "syscall", pid)).collect();
    let names: Vec<&str> = mine
        .iter()
        .map(|v| v["syscall"]["name"].as_str().unwrap())
        .collect();
    // Exactly these: the TCP socket and the plain fork never left the kernel.
    assert_eq!(names, ["setuid", "unshare", "socket", "setns"], "{mine:?}");
}

#[test]
fn a_call_outside_the_syscall_profile_is_one_event_per_cgroup_refused_or_not() {
    if !kernel_tests_enabled(
        "a_call_outside_the_syscall_profile_is_one_event_per_cgroup_refused_or_not",
    ) {
        return;
    }
    let cg = TestCgroup::new("unexpected");
    let mut m = trace_with(&cg, "syscall", &["--syscall-profile", "docker-default"]);
    // syslog (outside Docker's allowlist) twice, then the benign twin: a
    // process that drops to nobody and goes about ordinary work (files, a
    // TCP socket, a child, a sleep). Last, acct, which a seccomp filter
    // refuses before it runs: the attempt is reported too.
    let script = r#"
import ctypes, os, socket, struct, time
libc = ctypes.CDLL(None, use_errno=True)
SYS_syslog, SYS_acct = 103, 163
libc.syscall(SYS_syslog, 10, None, 0)
libc.syscall(SYS_syslog, 10, None, 0)
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
with open("/etc/hostname") as f:
    f.read()
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.close()
if os.fork() == 0:
    os._exit(0)
os.wait()
time.sleep(0.05)
"#;
    let script = format!(
        "{script}{}assert libc.syscall(SYS_acct, None) == -1 and ctypes.get_errno() == 1\n",
        seccomp_refusing(163)
    );
    let pid = cg.run("/usr/bin/python3", &["-c", &script], None);
    let odd = |name: &'static str| {
        move |v: &Value| {
            v["event"] == "syscall"
                && v["syscall"]["unexpected"] == true
                && v["syscall"]["name"] == name
        }
    };
    let ev = m.expect("syslog", WAIT, odd("syslog"));
    assert_eq!(ev["process"]["pid"], pid, "{ev}");
    assert_eq!(ev["syscall"]["nr"], 103, "{ev}");
    assert_eq!(ev["syscall"]["args"], json!({}), "{ev}");
    let ev = m.expect("refused acct", WAIT, odd("acct"));
    assert_eq!(ev["syscall"]["result"], -1, "{ev}");
    m.drain_for(Duration::from_millis(300));
    let unexpected: Vec<&str> = m
        .seen
        .iter()
        .filter(|v| v["event"] == "syscall" && v["syscall"]["unexpected"] == true)
        .map(|v| v["syscall"]["name"].as_str().unwrap())
        .collect();
    // syslog once, though called twice; nothing of the ordinary work; the
    // setuid calls are the rare-call events, not unexpected ones.
    assert_eq!(unexpected, ["syslog", "acct"], "{:?}", m.seen);
    assert!(
        m.seen
            .iter()
            .any(|v| v["syscall"]["name"] == "setuid" && v["syscall"]["unexpected"].is_null()),
        "the rare setuid is still its own event: {:?}",
        m.seen
    );
}

#[test]
fn reads_of_credential_files_are_events_and_ordinary_reads_are_not() {
    if !kernel_tests_enabled("reads_of_credential_files_are_events_and_ordinary_reads_are_not") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    std::fs::create_dir(base.join("serviceaccount")).unwrap();
    std::fs::write(base.join("serviceaccount/token"), "secret").unwrap();
    std::fs::write(base.join("notes.txt"), "plain").unwrap();
    let cg = TestCgroup::new("reads");
    let mut m = trace(&cg, "file");
    // Reading through a symlink names the real file: the filter is on the
    // kernel's file, not the caller's string.
    std::os::unix::fs::symlink(base.join("serviceaccount/token"), base.join("innocent")).unwrap();
    // sh forks cat: match the cgroup, not the shell's pid.
    cg.run(
        "/bin/sh",
        &[
            "-c",
            "cat /etc/shadow notes.txt innocent /etc/hostname > /dev/null",
        ],
        Some(&base),
    );
    let reads = |m: &Monitor| -> Vec<String> {
        m.seen
            .iter()
            .filter(|v| {
                v["event"] == "file"
                    && v["cgroup_id"] == cg.id
                    && v["file"]["flags"] == json!(["O_RDONLY"])
            })
            .map(|v| v["file"]["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let token = base
        .join("serviceaccount/token")
        .to_str()
        .unwrap()
        .to_owned();
    m.expect("read of the token", WAIT, |v| {
        v["cgroup_id"] == cg.id && v["file"]["path"] == token.as_str()
    });
    m.drain_for(Duration::from_millis(300));
    // cat's own reads (its libraries, the locale) and notes.txt stay in the kernel.
    assert_eq!(reads(&m), ["/etc/shadow".to_owned(), token], "{:?}", m.seen);
}

#[test]
fn a_read_of_a_processs_own_proc_entry_is_named_self_in_its_own_pid_namespace() {
    if !kernel_tests_enabled(
        "a_read_of_a_processs_own_proc_entry_is_named_self_in_its_own_pid_namespace",
    ) {
        return;
    }
    let cg = TestCgroup::new("procreads");
    let mut m = trace(&cg, "file");
    // In a pid namespace of its own (as in a container), with its /proc:
    // python is pid 2 there (unshare's child sh is 1). Its own entry by
    // number and as self, then pid 1's.
    let script = r#"
import os
assert os.getpid() == 2, os.getpid()
open('/proc/2/environ').read()
open('/proc/self/environ').read()
open('/proc/1/environ').read()
"#;
    cg.run(
        "/usr/bin/unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            "/bin/sh",
            "-c",
            &format!("/usr/bin/python3 -c \"{script}\"; true"),
        ],
        None,
    );
    let environ = |v: &Value| {
        v["event"] == "file"
            && v["cgroup_id"] == cg.id
            && v["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/environ"))
    };
    m.expect("the read of pid 1's environ", WAIT, |v| {
        environ(v) && v["file"]["path"] == "/proc/1/environ"
    });
    m.drain_for(Duration::from_millis(300));
    let paths: Vec<&str> = m
        .seen
        .iter()
        .filter(|v| environ(v))
        .map(|v| v["file"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/proc/self/environ",
            "/proc/self/environ",
            "/proc/1/environ"
        ],
        "{:?}",
        m.seen
    );
}

#[test]
fn a_connect_to_a_runtime_socket_is_an_event_and_other_unix_connects_are_not() {
    if !kernel_tests_enabled(
        "a_connect_to_a_runtime_socket_is_an_event_and_other_unix_connects_are_not",
    ) {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let _engine = std::os::unix::net::UnixListener::bind(base.join("docker.sock")).unwrap();
    let _app = std::os::unix::net::UnixListener::bind(base.join("app.socket")).unwrap();
    let cg = TestCgroup::new("unix");
    let mut m = trace(&cg, "file");
    // A relative name is resolved like a file's; the health check's own
    // socket (not *.sock) stays in the kernel.
    let script = r#"
import socket
for name in ("app.socket", "docker.sock"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(name)
    s.close()
"#;
    let pid = cg.run("/usr/bin/python3", &["-c", script], Some(&base));
    let engine = base.join("docker.sock");
    let ev = m.expect("connect to docker.sock", WAIT, |v| {
        is(v, "file", pid) && v["file"]["op"] == "connect"
    });
    assert_eq!(ev["file"]["path"], engine.to_str().unwrap(), "{ev}");
    assert_eq!(ev["file"]["result"], 0);
    m.drain_for(Duration::from_millis(300));
    let connects = m
        .seen
        .iter()
        .filter(|v| is(v, "file", pid) && v["file"]["op"] == "connect")
        .count();
    assert_eq!(connects, 1, "{:?}", m.seen);
}

/// One thread keeps rewriting the path buffer between a benign and a
/// protected file while another opens it for writing and appends a line:
/// the string the caller passed may be either by the time anything reads
/// it again, the file opened is one. Each reported open must name the file
/// it really opened, so the events per path are exactly the lines written
/// to each file, and a protected file really written is reported.
/// On the tracepoint tier too: a successful open's path is walked from its
/// descriptor there, not read again from the buffer.
const SWAPPED_PATH_OPENS: &str = r#"
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
benign, protected = (p.encode() for p in sys.argv[1:3])
size = max(len(benign), len(protected)) + 1
buf = ctypes.create_string_buffer(size)
stop = False
def swap():
    while not stop:
        ctypes.memmove(buf, benign.ljust(size, b"\0"), size)
        ctypes.memmove(buf, protected.ljust(size, b"\0"), size)
t = threading.Thread(target=swap)
t.start()
for i in range(int(sys.argv[3])):
    # Each open starts from one of the two in turn (so both files are
    # opened whatever the scheduler does), and the swapper races it.
    ctypes.memmove(buf, (benign, protected)[i % 2].ljust(size, b"\0"), size)
    fd = libc.open(buf, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.write(fd, b"x\n")
    os.close(fd)
stop = True
t.join()
"#;

#[test]
fn opens_racing_a_swapped_path_buffer_report_the_file_opened() {
    if !kernel_tests_enabled("opens_racing_a_swapped_path_buffer_report_the_file_opened") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let (benign, protected) = (base.join("benign"), base.join("protected"));
    let cg = TestCgroup::new("swap");
    let mut m = trace(&cg, "file,exec");
    let opens = "200";
    let pid = cg.run(
        "/usr/bin/python3",
        &[
            "-B",
            "-c",
            SWAPPED_PATH_OPENS,
            benign.to_str().unwrap(),
            protected.to_str().unwrap(),
            opens,
        ],
        None,
    );
    // Records arrive in order: once this exec is out, every open is too.
    let marker = cg.run("/bin/true", &["swap-done"], None);
    m.expect("the marker's exec", WAIT, |v| is(v, "exec", marker));
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    let (b, p) = (lines(&benign), lines(&protected));
    assert_eq!(b + p, 200);
    let reported = |path: &std::path::Path| {
        m.seen
            .iter()
            .filter(|v| {
                is(v, "file", pid)
                    && v["file"]["op"] == "open"
                    && v["file"]["path"] == path.to_str().unwrap()
            })
            .count()
    };
    assert_eq!(
        (reported(&benign), reported(&protected)),
        (b, p),
        "opens reported per file, against the lines each file got"
    );
    assert!(
        p > 0,
        "the protected file was never opened: the race did not run"
    );
    let stray = m
        .seen
        .iter()
        .filter(|v| is(v, "file", pid) && v["file"]["op"] == "open")
        .filter(|v| v["file"]["path"] != benign.to_str().unwrap())
        .filter(|v| v["file"]["path"] != protected.to_str().unwrap())
        .count();
    assert_eq!(stray, 0, "an open reported with a path no file has");
}

/// `openat2(dirfd, "/etc/x", {O_CREAT|O_WRONLY, RESOLVE_IN_ROOT})`: the
/// name is resolved with `dirfd` as the root, from Python with ctypes.
const OPENAT2_IN_ROOT: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
root = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
how = OpenHow(os.O_CREAT | os.O_WRONLY, 0o644, 0x10)  # RESOLVE_IN_ROOT
fd = libc.syscall(ctypes.c_long(437), ctypes.c_long(root), b"/etc/x", ctypes.byref(how), ctypes.c_long(24))
assert fd >= 0, os.strerror(ctypes.get_errno())
os.write(fd, b"in root\n")
"#;

/// With `RESOLVE_IN_ROOT` the caller's `/etc/x` is the file below its
/// dirfd: the event's path is the file the kernel opened, not the host's
/// `/etc/x`, and the caller's string stays as `requested_path`.
#[test]
fn an_openat2_resolved_in_a_root_has_the_path_the_kernel_opened() {
    if !kernel_tests_enabled("an_openat2_resolved_in_a_root_has_the_path_the_kernel_opened") {
        return;
    }
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    std::fs::create_dir(base.join("etc")).unwrap();
    let cg = TestCgroup::new("inroot");
    let mut m = trace(&cg, "file");
    let pid = cg.run(
        "/usr/bin/python3",
        &["-c", OPENAT2_IN_ROOT, base.to_str().unwrap()],
        None,
    );
    let ev = m.expect("the openat2 write", WAIT, |v| {
        is(v, "file", pid) && v["file"]["requested_path"] == "/etc/x"
    });
    assert_eq!(
        ev["file"]["path"],
        base.join("etc/x").to_str().unwrap(),
        "{ev}"
    );
    assert_eq!(
        std::fs::read_to_string(base.join("etc/x")).unwrap(),
        "in root\n"
    );
}
