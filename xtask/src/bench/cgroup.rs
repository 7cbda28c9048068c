//! The bench's own cgroup v2 directory: made under the cgroup2 mount found in
//! `/proc/self/mountinfo`, removed with everything below it when dropped
//! (also on error), its processes killed first.
use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

const PREFIX: &str = "monitor-bench-";

pub struct BenchCgroup {
    /// The directory the agent watches (with its descendants).
    pub root: PathBuf,
    /// The leaf the workloads join, named as Docker names a container's
    /// cgroup (`docker-<id>.scope`), so the agents see a container there.
    pub load: PathBuf,
    /// Where the "containers" of the memory benchmark are made.
    pub containers: PathBuf,
}

impl BenchCgroup {
    /// Makes the bench's directory, with the workload leaf named `load`.
    pub fn create(load: &str) -> anyhow::Result<BenchCgroup> {
        let text =
            fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        let Some(mount) = cgroup2_mount_in(&text) else {
            bail!("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)");
        };
        remove_stale(&mount);
        let root = mount.join(format!("{PREFIX}{}", std::process::id()));
        fs::create_dir(&root).with_context(|| format!("mkdir {}", root.display()))?;
        let cg = BenchCgroup {
            load: root.join(load),
            containers: root.join("containers"),
            root,
        };
        // From here on, Drop removes what was made.
        fs::create_dir(&cg.load).with_context(|| format!("mkdir {}", cg.load.display()))?;
        fs::create_dir(&cg.containers)
            .with_context(|| format!("mkdir {}", cg.containers.display()))?;
        Ok(cg)
    }

    /// Makes `containers/c<from>` .. `containers/c<to - 1>`.
    pub fn make_containers(&self, from: usize, to: usize) -> anyhow::Result<()> {
        for i in from..to {
            self.make_container(&format!("c{i}"))?;
        }
        Ok(())
    }

    /// Makes `containers/<name>`; returns its path.
    pub fn make_container(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.containers.join(name);
        fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(dir)
    }

    /// Removes every directory below `containers`; returns how many went.
    pub fn remove_containers(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(&self.containers)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
                n += 1;
            }
        }
        Ok(n)
    }

    /// Kills whatever is left in the workload leaf (a workload that timed out).
    pub fn kill_load(&self) {
        kill_all(&self.load);
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        remove_tree(&self.root);
        if self.root.exists() {
            eprintln!(
                "bench: could not remove {}; remove it by hand (rmdir)",
                self.root.display()
            );
        }
    }
}

/// Bench directories left by a bench that was killed (its pid is gone).
fn remove_stale(mount: &Path) {
    let Ok(entries) = fs::read_dir(mount) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(PREFIX)
            && !Path::new("/proc").join(pid).exists()
        {
            eprintln!("bench: removing a stale {}", e.path().display());
            remove_tree(&e.path());
        }
    }
}

fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // Kernels before 5.14 have no cgroup.kill.
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill with a pid read from the cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes a cgroup directory and all below it, deepest first.
fn remove_tree(top: &Path) {
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
        kill_all(dir);
        for _ in 0..100 {
            if fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Parses mountinfo: `id parent major:minor root mountpoint opts ... - fstype source superopts`.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| {
            PathBuf::from(
                mount_point
                    .replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_layouts() {
        let hybrid = "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup2_mount_in("27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }
}
