//! Loading, attaching and reading the kernel programs.
//!
//! `hooks` is the table of what attaches where and what became of each hook,
//! `load` probes what the running kernel offers and attaches every hook it can,
//! `reader` drains the ring buffer and hands each raw record to the decoder
//! it is given (`event` implements it: this module never imports `event`),
//! `cgroupfs` finds the cgroup v2 mount the socket hooks attach to.
mod attach;
pub mod btf;
pub mod cgroupfs;
pub mod enforce;
mod hook_error;
pub mod hooks;
pub mod load;
pub mod losses;
pub mod mountinfo;
pub mod profile;
pub mod reader;
pub mod source;
pub mod syscalls;
mod tier;
pub mod tracefs;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use monitor_common::KernelOffsets;

use self::source::SourceOptions;

pub use hooks::{HookError, HookStatus, Tier, TierChoice};
pub use load::{CgroupFilter, Kernel, LoadOptions, LostCounters, ScopeRoute};
pub use losses::{CgroupLoss, CgroupLossMap, Fairness};

/// Everything the agent needs from the kernel side, ready to read.
pub struct Started {
    pub kernel: Kernel,
    pub cgroup2_mount: PathBuf,
    pub tracefs: PathBuf,
}

/// Finds tracefs (mounting it when missing) and cgroup2, reads the offsets
/// the programs need from this kernel, and loads and attaches the programs
/// `source` asks for. Without `require_core` a kernel missing core hooks is
/// still loaded, for reporting what it offers (`monitor hooks`).
pub fn start(source: &SourceOptions, require_core: bool) -> anyhow::Result<Started> {
    // A profile that does not read stops the start before anything loads.
    let syscall_profile = profile::SyscallProfile::load(&source.syscall_profile)?;
    let tracefs = tracefs::ensure_mounted()?;
    let cgroup2_mount = cgroupfs::cgroup2_mount()?;
    let btf = source.btf.as_deref();
    let offsets = kernel_offsets(&tracefs, btf)?;
    let opts = LoadOptions {
        ring_buffer_bytes: source.ring_buffer_bytes,
        fairness: source.fairness,
        filter_cgroups: !source.cgroups.is_empty(),
        enforce: source.enforce,
        offsets,
        cgroup2_mount: cgroup2_mount.clone(),
        tracefs: tracefs.clone(),
        btf: btf.map(Path::to_path_buf),
        tier: source.tier,
        syscall_profile,
    };
    let kernel = if require_core {
        Kernel::load(&opts)?
    } else {
        Kernel::load_available(&opts)?
    };
    Ok(Started {
        kernel,
        cgroup2_mount,
        tracefs,
    })
}

/// The struct member offsets from BTF are optional: without them relative
/// paths stay relative and fork events are not sent, which the log says. The
/// tracepoint fields are required: exec and cgroup events need them.
///
/// The cgroup-walk members matter only where the ancestor-cgroup helper is
/// missing from tracing programs; the loader says so if it needs them.
fn kernel_offsets(tracefs: &Path, btf_file: Option<&Path>) -> anyhow::Result<KernelOffsets> {
    let btf = match btf_file {
        Some(path) => btf::Btf::from_file(path),
        None => btf::Btf::from_sys_fs(),
    };
    let btf = match btf {
        Ok(b) => Some(b),
        Err(e) if btf_file.is_some() => return Err(e).context("reading the file given by --btf"),
        Err(e) => {
            tracing::warn!(
                "path resolution, ppid and fork tracking are disabled: {e} \
                 (give the kernel's BTF with --btf FILE)"
            );
            None
        }
    };
    let mut offsets = KernelOffsets::default();
    if let Some(btf) = &btf {
        match btf::kernel_offsets(btf) {
            Ok(o) => offsets = o,
            Err(e) => tracing::warn!("path resolution, ppid and fork tracking are disabled: {e}"),
        }
        if let Err(e) = btf::cgroup_walk_offsets(btf, &mut offsets) {
            tracing::debug!("the cgroup ancestry walk is unavailable: {e}");
        }
        if let Err(e) = btf::pidns_offsets(btf, &mut offsets) {
            tracing::warn!(
                "reads of another process's /proc/<pid>/environ or mem cannot be told from \
                 a process's reads of its own, so none is judged: {e}"
            );
        }
        if let Err(e) = btf::vfs_offsets(btf, &mut offsets) {
            tracing::warn!("the fentry tier's opens are lost (counted): {e}");
        }
        if let Err(e) = btf::fentry_tier_offsets(btf, &mut offsets) {
            tracing::warn!("the fentry tier cannot read exec argv or seccomp refusals: {e}");
        }
        if let Err(e) = btf::inode_offsets(btf, &mut offsets) {
            tracing::warn!(
                "files cannot be told by inode (protected writes are not refused, drift \
                 follows paths only): {e}"
            );
        }
    }
    tracefs::tracepoint_offsets(tracefs, &mut offsets)?;
    Ok(offsets)
}
