//! Container-shaped cgroup trees below one per-test parent, and what tests
//! that churn many of them need from a running monitor.
use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{Monitor, SEQ, TestCgroup, cgroup2_mount};

impl TestCgroup {
    /// A per-test parent directory alone (`/monitor-test-<pid>-<n>`), for tests
    /// that lay out their own tree below it with [`subdir`](Self::subdir).
    /// Dropping it kills what runs below it and removes everything below it.
    pub fn parent() -> TestCgroup {
        let rel = format!(
            "/monitor-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = cgroup2_mount().join(&rel[1..]);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = monitor::bpf::cgroupfs::cgroup_id(&path).unwrap();
        TestCgroup { path, rel, id }
    }

    /// Makes `rel` (which may contain `/`) below this cgroup. It is removed
    /// with this cgroup, or earlier with [`CgroupDir::remove`].
    pub fn subdir(&self, rel: &str) -> CgroupDir {
        let rel = rel.trim_matches('/');
        let path = self.path.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = monitor::bpf::cgroupfs::cgroup_id(&path).unwrap();
        CgroupDir {
            path,
            rel: format!("{}/{rel}", self.rel),
            id,
            depth: rel.split('/').count(),
        }
    }
}

/// A cgroup made below a [`TestCgroup`], which removes it when dropped.
#[derive(Debug)]
pub struct CgroupDir {
    pub path: PathBuf,
    /// Relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
    pub id: u64,
    /// How many directories below the parent it is.
    depth: usize,
}

impl CgroupDir {
    /// A command whose process joins this cgroup before it execs.
    pub fn command(&self, program: &str) -> Command {
        command_in(&self.path, program)
    }

    /// Runs a command inside the cgroup to completion; panics on failure.
    /// Returns its pid.
    pub fn run(&self, program: &str, args: &[&str]) -> u32 {
        let child = self
            .command(program)
            .args(args)
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

    /// Removes the directory, then the directories made with it, up to the
    /// parent, while they are empty. Panics when the directory itself cannot
    /// go (a process still in it).
    pub fn remove(self) {
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
