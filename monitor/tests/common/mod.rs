//! Shared pieces of the kernel tests: test cgroups ([`TestCgroup`], the one
//! way to make them), running workloads inside them, runtime state files
//! (`runtime`, the one way to write them), and a running `monitor` whose
//! JSON lines can be waited for.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
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

#[allow(unused_imports, reason = "each test binary uses a different subset")]
pub use cgroups::TestCgroup;

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
