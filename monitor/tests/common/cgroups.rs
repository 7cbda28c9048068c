//! Test cgroups: the one builder ([`TestCgroup`]) every kernel test makes its
//! cgroups with, and what tests that churn many of them need from a running
//! monitor.
use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{Monitor, cgroup2_mount, namespaces};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 directory made for one test.
///
/// Every test cgroup lives below a per-test top directory,
/// `<cgroup2>/monitor-test-<pid>-<n>`. [`TestCgroup::new`] makes one cgroup
/// below a fresh top, [`TestCgroup::parent`] the top alone (for a tree laid
/// out below it with [`subdir`](Self::subdir)). The value that owns the top
/// removes it when dropped (also on failure): every process below it is
/// killed first, then every directory goes, deepest first. A subdirectory
/// goes with its top, or earlier with [`remove`](Self::remove).
#[derive(Debug)]
pub struct TestCgroup {
    pub path: PathBuf,
    /// Relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
    pub id: u64,
    /// The top directory this value removes when dropped.
    owned_top: Option<PathBuf>,
    /// How many directories below the one it was made in it is.
    depth: usize,
}

impl TestCgroup {
    /// `name` below a fresh top; `name` may contain `/` to make a nested path
    /// (its parents are made, and removed with the top).
    pub fn new(name: &str) -> TestCgroup {
        let mut top = TestCgroup::parent();
        let mut cgroup = top.subdir(name);
        cgroup.owned_top = top.owned_top.take();
        cgroup
    }

    /// A fresh top directory alone (`/monitor-test-<pid>-<n>`), for tests
    /// that lay out their own tree below it (the `--cgroup` a monitor watches).
    pub fn parent() -> TestCgroup {
        let rel = format!(
            "/monitor-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = cgroup2_mount().join(&rel[1..]);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = monitor::bpf::cgroupfs::cgroup_id(&path).unwrap();
        TestCgroup {
            owned_top: Some(path.clone()),
            path,
            rel,
            id,
            depth: 0,
        }
    }

    /// Makes `rel` (which may contain `/`) below this cgroup. It is removed
    /// with the top, or earlier with [`remove`](Self::remove).
    pub fn subdir(&self, rel: &str) -> TestCgroup {
        let rel = rel.trim_matches('/');
        let path = self.path.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = monitor::bpf::cgroupfs::cgroup_id(&path).unwrap();
        TestCgroup {
            path,
            rel: format!("{}/{rel}", self.rel),
            id,
            owned_top: None,
            depth: rel.split('/').count(),
        }
    }

    /// A command whose process joins this cgroup before it execs.
    pub fn command(&self, program: &str) -> Command {
        command_in(&self.path, program)
    }

    /// Runs a command inside the cgroup to completion; panics on failure.
    /// Returns its pid.
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

    /// Removes a subdirectory now, then the directories made with it, up to
    /// the one it was made in, while they are empty. Panics when the
    /// directory itself cannot go (a process still in it).
    pub fn remove(mut self) {
        if let Some(top) = self.owned_top.take() {
            remove_cgroup_tree(&top);
            return;
        }
        // A process reaped a moment ago may hold the cgroup a little longer.
        let deadline = Instant::now() + super::scaled(Duration::from_secs(10));
        while let Err(e) = fs::remove_dir(&self.path) {
            if e.raw_os_error() != Some(libc::EBUSY) || Instant::now() > deadline {
                panic!("rmdir {}: {e}", self.path.display());
            }
            thread::sleep(Duration::from_millis(20));
        }
        let mut dir = self.path.clone();
        for _ in 1..self.depth {
            dir.pop();
            // A sibling still in a shared intermediate directory keeps it.
            if fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(top) = self.owned_top.take() {
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

/// A command whose process joins the cgroup v2 directory `cgroup` before it execs.
pub fn command_in(cgroup: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    join_on_exec(&mut cmd, cgroup);
    cmd
}

/// Makes `cmd`'s process join `cgroup` as the last step before its exec:
/// whatever `pre_exec` work was added before this call runs outside the
/// cgroup, so the rules under test never see it.
pub fn join_on_exec(cmd: &mut Command, cgroup: &Path) {
    let procs = cgroup.join("cgroup.procs");
    let procs = std::ffi::CString::new(procs.to_str().unwrap()).unwrap();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Monitor {
    /// The next line, or `None` after `timeout`. Not kept in `seen`: for
    /// tests that read many thousands of lines.
    pub fn recv(&mut self, timeout: Duration) -> Option<Value> {
        self.lines.recv_timeout(timeout).ok()
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
