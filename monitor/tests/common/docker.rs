//! A real Docker engine for tests (Debian's `docker.io`; the image is made
//! from `busybox-static`, since no registry is reachable).
//!
//! Unless `MONITOR_TEST_DOCKER_HOST` names a running daemon (with its data
//! root in `MONITOR_TEST_DOCKER_DATA_ROOT`, `/var/lib/docker` by default), the
//! test starts its own: private data root, exec root, socket, pid file and
//! config, no bridge, no iptables, so it never collides with another daemon
//! on the machine. Dropping [`Dockerd`] removes the containers it ran, stops
//! the daemon it started (by pid), and removes what that daemon left outside
//! its private directory (`/etc/docker/key.json`, `/run/docker`, the `docker`
//! cgroups), each only if it was not there before.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The image the tests run, imported from a local busybox root filesystem.
pub const IMAGE: &str = "monitor-test/busybox:1";

/// The runtime (`docker run --runtime`) a private daemon has for
/// `--privileged` containers: runc, with the capabilities this machine's
/// bounding set lacks taken out of the spec first (a sandbox without
/// CAP_SYS_RESOURCE cannot give it, and runc refuses to start a privileged
/// container then). Everything else about the container is as Docker made it.
pub const PRIVILEGED_RUNTIME: &str = "monitor-test-privileged";

/// capabilities(7) by number.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A shell script that runs runc after deleting from the bundle's
/// `config.json` every capability this process's bounding set lacks.
fn privileged_runtime_script() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    let sed: Vec<String> = CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) == 0)
        .flat_map(|(_, name)| {
            [
                format!("-e 's/\"CAP_{name}\",//g'"),
                format!("-e 's/,\"CAP_{name}\"//g'"),
                format!("-e 's/\"CAP_{name}\"//g'"),
            ]
        })
        .collect();
    let edit = if sed.is_empty() {
        String::new()
    } else {
        format!(
            "  if [ \"$prev\" = --bundle ] || [ \"$prev\" = -b ]; then sed -i {} \"$a/config.json\"; fi\n",
            sed.join(" ")
        )
    };
    format!("#!/bin/sh\nprev=\nfor a in \"$@\"; do\n{edit}  prev=\"$a\"\ndone\nexec runc \"$@\"\n")
}

/// What this machine lacks to run Docker, if anything.
pub fn missing() -> Option<String> {
    let missing: Vec<&str> = [("dockerd", "docker.io"), ("busybox", "busybox-static")]
        .into_iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(_, pkg)| pkg)
        .collect();
    (!missing.is_empty()).then(|| format!("apt-get install -y {}", missing.join(" ")))
}

/// The machine's static busybox.
pub fn busybox() -> PathBuf {
    which("busybox").expect("busybox (apt-get install busybox-static)")
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// The client that matches Debian's daemon (another `docker` earlier in PATH
/// may be a newer release).
fn client() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.is_file() {
        debian
    } else {
        which("docker").expect("a docker client")
    }
}

pub struct Dockerd {
    /// Private state of the daemon this test started (also the image's root filesystem).
    dir: tempfile::TempDir,
    /// `unix:///...`
    pub host: String,
    /// Where `containers/<id>/config.v2.json` are.
    pub data_root: PathBuf,
    /// The daemon, when this test started it.
    daemon: Option<Child>,
    /// Containers to remove at the end.
    containers: Vec<String>,
    /// Paths absent before the daemon started: removed at the end if it made them.
    absent_before: Vec<PathBuf>,
}

impl Dockerd {
    /// Connects to `MONITOR_TEST_DOCKER_HOST`, or starts a private daemon and
    /// waits (up to 2 minutes) until it answers.
    pub fn start() -> Dockerd {
        let dir = super::tempdir();
        let absent_before = leftovers().into_iter().filter(|p| !p.exists()).collect();
        if let Ok(host) = std::env::var("MONITOR_TEST_DOCKER_HOST") {
            let data_root = std::env::var("MONITOR_TEST_DOCKER_DATA_ROOT")
                .unwrap_or_else(|_| "/var/lib/docker".into());
            return Dockerd {
                dir,
                host,
                data_root: data_root.into(),
                daemon: None,
                containers: Vec::new(),
                absent_before: Vec::new(),
            };
        }
        let d = dir.path();
        fs::write(d.join("daemon.json"), "{}").unwrap();
        let log = fs::File::create(d.join("dockerd.log")).unwrap();
        let host = format!("unix://{}", d.join("docker.sock").display());
        let data_root = d.join("data");
        let wrapper = d.join("runc-privileged");
        fs::write(&wrapper, privileged_runtime_script()).unwrap();
        fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let daemon = Command::new(which("dockerd").expect("dockerd (apt-get install docker.io)"))
            .args(["--bridge=none", "--iptables=false", "--ip-forward=false"])
            .arg(format!(
                "--add-runtime={PRIVILEGED_RUNTIME}={}",
                wrapper.display()
            ))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["-H", &host])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let mut docker = Dockerd {
            dir,
            host,
            data_root,
            daemon: Some(daemon),
            containers: Vec::new(),
            absent_before,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = docker.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                break;
            }
            if let Some(status) = docker.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited ({status}):\n{}", docker.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 2 minutes:\n{}",
                docker.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
        docker
    }

    /// The daemon's socket path (`host` without `unix://`).
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.host.trim_start_matches("unix://"))
    }

    /// The daemon's log, when this test started it.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker client against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(client())
            .args(["-H", &self.host])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Like [`docker`](Self::docker), panicking on failure; returns stdout, trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Imports [`IMAGE`]: busybox with `sh`, `true` and `sleep` links.
    pub fn import_busybox(&self) {
        let rootfs = self.dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "true", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        self.import_rootfs(&rootfs, IMAGE);
    }

    /// A private directory of this daemon's test, for root filesystems to import.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Imports the root filesystem at `rootfs` as image `tag`.
    pub fn import_rootfs(&self, rootfs: &Path, tag: &str) {
        let tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .output()
            .expect("tar the root filesystem");
        assert!(tar.status.success(), "tar failed");
        let mut import = Command::new(client())
            .args(["-H", &self.host, "import", "-", tag])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
        let out = import.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `docker run -d <options> --name <name> <image> <cmd>` (removed when
    /// this is dropped); returns the container id.
    pub fn run_with(&mut self, name: &str, options: &[&str], image: &str, cmd: &[&str]) -> String {
        self.containers.push(name.to_owned());
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(options);
        args.extend(["--name", name, image]);
        args.extend_from_slice(cmd);
        self.docker_ok(&args)
    }

    /// `docker run -d --rm --network none --name <name> IMAGE <cmd>`; returns the container id.
    pub fn run_detached(&mut self, name: &str, cmd: &[&str]) -> String {
        self.containers.push(name.to_owned());
        let mut args = vec![
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--name",
            name,
            IMAGE,
        ];
        args.extend_from_slice(cmd);
        self.docker_ok(&args)
    }
}

/// What a daemon writes outside its data and exec roots.
fn leftovers() -> Vec<PathBuf> {
    let mut paths = vec![
        PathBuf::from("/etc/docker/key.json"),
        PathBuf::from("/run/docker/plugins"),
        PathBuf::from("/run/docker"),
    ];
    // runc makes `docker` in every cgroup hierarchy. Only the v2 one is
    // ours to tidy: the v1 hierarchies are never written by these tests, so
    // an empty `docker` directory may stay there.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2")
            && let Some(point) = left.split_whitespace().nth(4)
        {
            paths.push(Path::new(point).join("docker"));
        }
    }
    paths
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.containers) {
            let _ = self.docker(&["rm", "-f", &name]);
        }
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = daemon.kill();
                let _ = daemon.wait();
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        // Anything still mounted below the private directory (overlays,
        // network namespaces) must go before the directory is removed.
        let dir = self.dir.path().to_str().unwrap().to_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|p| p.starts_with(&format!("{dir}/")))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let c = std::ffi::CString::new(p).unwrap();
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        // Deepest first; a directory another daemon uses now is not empty and stays.
        let mut made: Vec<&PathBuf> = self.absent_before.iter().filter(|p| p.exists()).collect();
        made.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in made {
            if p.is_dir() {
                let _ = fs::remove_dir(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}
