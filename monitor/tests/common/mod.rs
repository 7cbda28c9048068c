//! Shared pieces of the kernel tests: test cgroups, running workloads inside
//! them, and a running `monitor` whose JSON lines can be waited for.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod alerts;
pub mod cgroups;
pub mod delivery;
pub mod dns;
pub mod docker;
pub mod namespaces;
pub mod runtime;

/// True when kernel tests can run here. Without root they are skipped with a
/// loud message, unless MONITOR_REQUIRE_KERNEL_TESTS=1 (set by `cargo xtask
/// test` as root and by CI), where a skip is a failure.
pub fn kernel_tests_enabled(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let required = std::env::var("MONITOR_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1");
    if root {
        return true;
    }
    assert!(
        !required,
        "{test}: kernel tests are required (MONITOR_REQUIRE_KERNEL_TESTS=1) but this is not root"
    );
    eprintln!("SKIPPED {test}: kernel tests need root");
    false
}

/// How many times longer than on the host every wait may take:
/// `MONITOR_TEST_TIME_SCALE` (a whole number, default 1). `cargo xtask
/// vm-test` sets it for kernels under software emulation, where everything
/// runs 10-50 times slower. The waits end as soon as what they wait for
/// comes, so a larger scale only costs time when a test fails.
pub fn time_scale() -> u32 {
    std::env::var("MONITOR_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// `d` times [`time_scale`]: every wait of the kernel tests goes through it.
pub fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

/// The cgroup v2 mount, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> PathBuf {
    monitor::bpf::cgroupfs::cgroup2_mount().expect("cgroup2 mount")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 directory made for one test and removed when dropped (also on
/// failure): its processes are killed first so the directory can go.
pub struct TestCgroup {
    pub path: PathBuf,
    /// Relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
    pub id: u64,
}

impl TestCgroup {
    /// `name` may contain `/` to make a nested path (parents are made and removed too).
    pub fn new(name: &str) -> TestCgroup {
        let mount = cgroup2_mount();
        let unique = format!(
            "monitor-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let rel = format!("/{unique}/{name}");
        let path = mount.join(&rel[1..]);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = monitor::bpf::cgroupfs::cgroup_id(&path).unwrap();
        TestCgroup { path, rel, id }
    }

    /// A command whose process joins this cgroup before it execs.
    pub fn command(&self, program: &str) -> Command {
        cgroups::command_in(&self.path, program)
    }

    /// Runs a command inside the cgroup to completion; panics on failure.
    pub fn run(&self, program: &str, args: &[&str], cwd: Option<&Path>) -> u32 {
        self.run_isolated(&namespaces::Isolation::default(), program, args, cwd)
    }

    /// [`run`](Self::run) in the namespaces of `isolation`, made by the
    /// child itself before it execs `program` (which keeps the pid).
    pub fn run_isolated(
        &self,
        isolation: &namespaces::Isolation,
        program: &str,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> u32 {
        let mut cmd = isolation.command_in(&self.path, program);
        cmd.args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {:?}",
            out.status
        );
        pid
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let top = self
            .path
            .ancestors()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("monitor-test-"))
            })
            .map(Path::to_path_buf);
        if let Some(top) = top {
            remove_cgroup_tree(&top);
        }
    }
}

/// Kills every process in the cgroup tree at `top` and removes its
/// directories, deepest first.
fn remove_cgroup_tree(top: &Path) {
    let mut dirs = vec![top.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        if let Ok(rd) = fs::read_dir(&dirs[i]) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        i += 1;
    }
    for dir in dirs.iter().rev() {
        let _ = fs::write(dir.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A test's own cgroup tree, `<cgroup2>/monitor-test-<pid>-<n>`, for tests that
/// need several cgroups side by side under one parent (the `--cgroup` a
/// monitor watches). Dropping it kills every process in it and removes it all.
pub struct TestCgroupTree {
    pub path: PathBuf,
    /// Relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
}

impl TestCgroupTree {
    pub fn new() -> TestCgroupTree {
        let mount = cgroup2_mount();
        let rel = format!(
            "/monitor-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = mount.join(&rel[1..]);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroupTree { path, rel }
    }

    /// Makes `name` (which may contain `/`) below the tree. The result is
    /// removed with the tree, not on its own: it is never dropped.
    pub fn cgroup(&self, name: &str) -> std::mem::ManuallyDrop<TestCgroup> {
        let path = self.path.join(name);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = monitor::bpf::cgroupfs::cgroup_id(&path).unwrap();
        std::mem::ManuallyDrop::new(TestCgroup {
            path,
            rel: format!("{}/{name}", self.rel),
            id,
        })
    }
}

impl Default for TestCgroupTree {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroupTree {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.path);
    }
}

/// The agent binary under test: cargo's, or `MONITOR_BIN` when set. Cargo
/// puts every build's binary at the same `<target>/debug/monitor`, so where
/// several worktrees share one target directory a build elsewhere can swap it
/// while these tests run; `MONITOR_BIN` pins a copy.
pub fn monitor_bin() -> PathBuf {
    std::env::var_os("MONITOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_monitor")))
}

/// A running `monitor` whose stdout lines arrive on a channel.
pub struct Monitor {
    child: Child,
    lines: mpsc::Receiver<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Every line received so far, for assertions over the whole stream.
    pub seen: Vec<Value>,
}

impl Monitor {
    /// Starts `monitor <args>` and waits until it logs `ready_marker` on stderr.
    pub fn start(args: &[&str], ready_marker: &str) -> Monitor {
        Self::start_with(Command::new(monitor_bin()).args(args), ready_marker)
    }

    pub fn start_with(cmd: &mut Command, ready_marker: &str) -> Monitor {
        let mut child = cmd
            .env("MONITOR_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start monitor");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let text = stderr_text.clone();
        let marker = ready_marker.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[monitor] {line}");
                if line.contains(&marker) {
                    let _ = ready_tx.send(());
                }
                text.lock().unwrap().push_str(&line);
                text.lock().unwrap().push('\n');
            }
        });
        let mut monitor = Monitor {
            child,
            lines: rx,
            stderr: stderr_text,
            seen: Vec::new(),
        };
        let ready_limit = scaled(Duration::from_secs(60));
        if ready_rx.recv_timeout(ready_limit).is_err() {
            let status = monitor.child.try_wait();
            panic!(
                "monitor did not become ready ({status:?}); stderr:\n{}",
                monitor.stderr()
            );
        }
        monitor
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a line matching `pred`, keeping every line in `seen`.
    pub fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no line for {what} within {timeout:?}; {} lines seen:\n{}\nstderr:\n{}",
                    self.seen.len(),
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Collects lines for `period` (to check that something did NOT happen).
    pub fn drain_for(&mut self, period: Duration) {
        let deadline = Instant::now() + scaled(period);
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
    }

    /// Stops with SIGTERM and returns the stderr text.
    pub fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(100));
        self.stderr()
    }
}

impl Monitor {
    /// Waits until the stderr text so far satisfies `pred` (log lines are
    /// checked as they arrive); panics with the text after `timeout`.
    pub fn wait_stderr(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.stderr()) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no stderr for {what} within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops with SIGTERM, reads stdout to its end (what the agent delivers
    /// while shutting down, such as folded dedup updates, included) and
    /// returns every line seen over the monitor's life with its stderr text.
    pub fn stop_and_drain(mut self) -> (Vec<Value>, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stop_limit = scaled(Duration::from_secs(30));
        let deadline = Instant::now() + stop_limit;
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "monitor did not stop within {stop_limit:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
        }
        // The reader thread ends at EOF and drops its sender.
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(v) => self.seen.push(v),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stdout of the stopped monitor did not end")
                }
            }
        }
        // The stderr reader may still hold the last lines.
        thread::sleep(Duration::from_millis(100));
        (std::mem::take(&mut self.seen), self.stderr())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rule file that silences the shipped posture rules for every container.
/// The suites whose containers are cgroups with state files copied from
/// fixtures (not what posture is about: `kernel_posture` tests it on real
/// containers) load it after the shipped pack, so the alerts they count are
/// only the ones they cause.
pub const POSTURE_OFF: &str = "policies:
  - name: default/posture
    extend: true
    exceptions:
      - reason: the test's containers are fixtures; kernel_posture tests posture
        selector: {containers: true}
";

/// Writes [`POSTURE_OFF`] into the rule directory `dir`.
pub fn write_posture_off(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("99-posture-off.yaml"), POSTURE_OFF).unwrap();
}

/// A fresh temporary directory (removed when dropped).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("monitor-test")
        .tempdir()
        .unwrap()
}

/// The usual wait for a line; [`Monitor::expect`] scales it (see [`scaled`]).
pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh Docker container id: 64 lowercase hex digits.
pub fn docker_container_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the state Docker keeps for container `id` below `host_root`:
/// `var/lib/docker/containers/<id>/config.v2.json` and `hostconfig.json`, in
/// the real format (the `web` fixture, a real dockerd's files, with the id,
/// name and image changed).
pub fn write_docker_state(host_root: &Path, id: &str, name: &str, image: &str) {
    const FIXTURE_ID: &str = "8ad700d1f7115aba42de87ce088d3f16808a1ac54e2d7f562c499bdef8d0a0d4";
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/runtime/host/var/lib/docker/containers")
        .join(FIXTURE_ID);
    let dir = host_root.join("var/lib/docker/containers").join(id);
    fs::create_dir_all(&dir).unwrap();
    let text = fs::read_to_string(fixture.join("config.v2.json"))
        .unwrap()
        .replace(FIXTURE_ID, id);
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["Name"] = Value::from(format!("/{name}"));
    config["Config"]["Image"] = Value::from(image);
    config["Config"]["Hostname"] = Value::from(&id[..12]);
    fs::write(
        dir.join("config.v2.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    fs::copy(fixture.join("hostconfig.json"), dir.join("hostconfig.json")).unwrap();
}
