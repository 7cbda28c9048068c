//! Namespaces for a workload, made by the test's own child between fork and
//! exec, before it joins the container's cgroup: the rules under test see
//! the workload's program as the container's first process, never an
//! `unshare` or `mount` of the test's machinery (which the shipped pack
//! reports as `namespace-tool`, `namespace-change` and `mount-syscall`).
use std::{ffi::CString, os::unix::process::CommandExt as _, path::Path, process::Command};

/// A mount made in the workload's private mount namespace.
#[derive(Clone, Debug)]
pub enum Mount {
    /// A fresh tmpfs over this directory.
    Tmpfs(String),
    /// `source` bound over `target`.
    Bind { source: String, target: String },
}

/// What the workload gets before it execs.
#[derive(Clone, Debug, Default)]
pub struct Isolation {
    /// An empty network namespace: connects fail at once (ENETUNREACH) after
    /// the cgroup hooks have seen them, so nothing leaves the machine.
    pub net: bool,
    /// A network namespace to join instead (`/run/netns/NAME`, made by the
    /// test with `ip netns add`): one wired to the test's own servers.
    pub join_net: Option<std::path::PathBuf>,
    /// Mounts in a private mount namespace (one is made when any is given);
    /// propagation is private, so the machine's mounts never change.
    pub mounts: Vec<Mount>,
}

impl Isolation {
    pub fn net() -> Isolation {
        Isolation {
            net: true,
            ..Default::default()
        }
    }

    pub fn mounts(mounts: Vec<Mount>) -> Isolation {
        Isolation {
            mounts,
            ..Default::default()
        }
    }

    /// A command for `program` that makes these namespaces, then joins
    /// `cgroup`, then execs: the machinery's `unshare` and `mount` calls
    /// happen outside the container (namespaces do not belong to a cgroup,
    /// and the cgroup socket hooks judge a socket by the cgroup of the
    /// process that makes it, which is the container's).
    pub fn command_in(&self, cgroup: &Path, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.apply(&mut cmd);
        super::cgroups::join_on_exec(&mut cmd, cgroup);
        cmd
    }

    /// Adds the namespaces to `cmd`, as `pre_exec` work that runs before any
    /// added after this call.
    fn apply(&self, cmd: &mut Command) {
        let c = |s: &str| CString::new(s).unwrap();
        let net = self.net;
        // Opened before the fork; the descriptor is the child's to setns.
        let join_net = self.join_net.as_ref().map(|path| {
            std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        });
        // (source, target, fstype, flags), prepared before the fork: only
        // async-signal-safe calls may run between fork and exec.
        let mounts: Vec<(CString, CString, Option<CString>, libc::c_ulong)> = self
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Tmpfs(target) => (c("none"), c(target), Some(c("tmpfs")), 0),
                Mount::Bind { source, target } => {
                    assert!(Path::new(source).exists(), "bind source {source}");
                    (c(source), c(target), None, libc::MS_BIND)
                }
            })
            .collect();
        let root = c("/");
        // SAFETY: only async-signal-safe calls (unshare, mount) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fail = || Err(std::io::Error::last_os_error());
                if net && libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return fail();
                }
                if let Some(ns) = &join_net
                    && libc::setns(std::os::fd::AsRawFd::as_raw_fd(ns), libc::CLONE_NEWNET) != 0
                {
                    return fail();
                }
                if mounts.is_empty() {
                    return Ok(());
                }
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return fail();
                }
                let private = libc::MS_REC | libc::MS_PRIVATE;
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    private,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
                for (source, target, fstype, flags) in &mounts {
                    let fstype = fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr());
                    if libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        fstype,
                        *flags,
                        std::ptr::null(),
                    ) != 0
                    {
                        return fail();
                    }
                }
                Ok(())
            });
        }
    }
}
