//! Running in a container with the host's `/` under a host root (`/host` in
//! the DaemonSet): the checks and namespace moves that make the agent see the
//! host as a host agent would.
//!
//! What the agent reads, and from where:
//! - events carry the kernel's view (global pids, cgroup ids), so the agent
//!   must share the host's pid namespace (`hostPID: true`) for its own pid and
//!   `/proc` to match them;
//! - `/proc/<pid>/cgroup` shows paths relative to the *reader's* cgroup
//!   namespace. A pod on a cgroup v2 node has a private one, where the host's
//!   processes read as `0::/../../kubepods.slice/...`; the agent therefore
//!   joins the host's cgroup namespace (`<host root>/proc/1/ns/cgroup`) before
//!   it starts any thread, so those paths are the cgroupfs paths again;
//! - it joins the host's UTS namespace the same way, so alerts name the node,
//!   not the pod;
//! - the cgroup2 mount (found in `/proc/self/mountinfo`) must be the root of
//!   the host's hierarchy: the socket hooks attach there and the start-up scan
//!   walks it. A container runtime mounts the container's *own* cgroup at
//!   `/sys/fs/cgroup`; the DaemonSet replaces that mount with the host's
//!   `/sys/fs/cgroup` (hostPath at the same path). The root of a hierarchy is
//!   the one cgroup without a `cgroup.type` file, which is how it is told apart.
use std::{
    fs,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// What [`prepare`] did, for the log (written once logging is up).
#[derive(Debug, Default)]
pub struct HostReport {
    /// One line per action or finding.
    pub notes: Vec<String>,
    /// Problems that do not stop the agent but lose information.
    pub warnings: Vec<String>,
}

/// Readies the process for `host_root`. Call before any thread is started:
/// namespaces are joined by the calling thread only, and threads inherit them.
///
/// With `host_root` = `/` nothing is joined and a cgroup2 mount that is not a
/// hierarchy root is only a warning; with any other host root it is an error,
/// as is running outside the host's pid namespace.
pub fn prepare(host_root: &Path) -> anyhow::Result<HostReport> {
    let mut report = HostReport::default();
    let in_container = host_root != Path::new("/");
    if in_container {
        let proc = host_root.join("proc");
        if !proc.join("1/stat").exists() {
            bail!(
                "{} does not exist: mount the host's /proc at {} (read-only), and run in the host's pid namespace (hostPID: true)",
                proc.join("1/stat").display(),
                proc.display()
            );
        }
        let proc1 = reference_process(&proc);
        match same_namespace(&proc1, "pid") {
            Some(true) => {}
            Some(false) => bail!(
                "the agent is not in the host's pid namespace: events carry host pids. Run it with `hostPID: true` (Kubernetes) or `--pid=host` (Docker)"
            ),
            None => report.warnings.push(format!(
                "cannot compare pid namespaces with {} (CAP_SYS_PTRACE missing?): make sure the agent runs with hostPID",
                proc1.display()
            )),
        }
        for (ns, flag, why) in [
            (
                "cgroup",
                libc::CLONE_NEWCGROUP,
                "/proc/<pid>/cgroup paths stay relative to this container's cgroup and cgroup ids of processes that started before the agent are not resolved",
            ),
            (
                "uts",
                libc::CLONE_NEWUTS,
                "alerts name the pod's host name instead of the node's",
            ),
        ] {
            match join_namespace(&proc1, ns, flag) {
                Ok(true) => report
                    .notes
                    .push(format!("joined the host's {ns} namespace")),
                Ok(false) => {}
                Err(e) => report.warnings.push(format!(
                    "cannot join the host's {ns} namespace ({e:#}; needs CAP_SYS_ADMIN): {why}"
                )),
            }
        }
    }
    let mount = crate::bpf::cgroupfs::cgroup2_mount()?;
    if !is_hierarchy_root(&mount) {
        let msg = format!(
            "the cgroup2 mount {} is a sub-tree of the hierarchy (it has cgroup.type): only the processes below it are visible, and the socket hooks attach there. Mount the host's /sys/fs/cgroup at {} (Kubernetes: a hostPath volume at that same path; Docker: --cgroupns=host)",
            mount.display(),
            mount.display()
        );
        if in_container {
            bail!(msg);
        }
        report.warnings.push(msg);
    } else {
        report
            .notes
            .push(format!("cgroup2 hierarchy root at {}", mount.display()));
    }
    Ok(report)
}

/// The process whose namespaces are the host's: pid 1, or where its links
/// cannot be read (a sandbox's init with more capabilities than the agent),
/// kthreadd, which always lives in the initial namespaces.
fn reference_process(proc: &Path) -> PathBuf {
    let init = proc.join("1");
    if fs::metadata(init.join("ns/cgroup")).is_ok() {
        return init;
    }
    let kthreadd = proc.join("2");
    let comm = fs::read_to_string(kthreadd.join("comm")).unwrap_or_default();
    if comm.trim() == "kthreadd" && fs::metadata(kthreadd.join("ns/cgroup")).is_ok() {
        return kthreadd;
    }
    init
}

/// The root of a cgroup v2 hierarchy is the one directory without `cgroup.type`.
pub fn is_hierarchy_root(mount: &Path) -> bool {
    mount.join("cgroup.procs").exists() && !mount.join("cgroup.type").exists()
}

/// Whether this process shares namespace `ns` with the process at `proc_pid`;
/// `None` when either link cannot be read.
fn same_namespace(proc_pid: &Path, ns: &str) -> Option<bool> {
    let theirs = fs::metadata(proc_pid.join("ns").join(ns)).ok()?;
    let ours = fs::metadata(PathBuf::from("/proc/self/ns").join(ns)).ok()?;
    Some(theirs.ino() == ours.ino() && theirs.dev() == ours.dev())
}

/// Joins the namespace of the process at `proc_pid` unless already in it;
/// true when it joined.
fn join_namespace(proc_pid: &Path, ns: &str, flag: libc::c_int) -> anyhow::Result<bool> {
    let path = proc_pid.join("ns").join(ns);
    match same_namespace(proc_pid, ns) {
        Some(true) => return Ok(false),
        Some(false) => {}
        None => bail!("cannot read {}", path.display()),
    }
    let f = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a plain syscall on a descriptor we own.
    if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setns({})", path.display()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_root_has_no_cgroup_type() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        assert!(is_hierarchy_root(dir.path()));
        fs::write(dir.path().join("cgroup.type"), "domain\n").unwrap();
        assert!(!is_hierarchy_root(dir.path()));
        assert!(!is_hierarchy_root(&dir.path().join("missing")));
    }

    #[test]
    fn this_machine_mounts_the_hierarchy_root() {
        let mount = crate::bpf::cgroupfs::cgroup2_mount().unwrap();
        assert!(is_hierarchy_root(&mount), "{}", mount.display());
    }

    #[test]
    fn host_root_slash_joins_nothing() {
        let r = prepare(Path::new("/")).unwrap();
        assert!(r.notes.iter().all(|n| !n.starts_with("joined")), "{r:?}");
    }
}
