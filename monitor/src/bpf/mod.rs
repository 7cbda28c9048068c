//! Loading, attaching and reading the kernel programs.
//!
//! `load` probes what the running kernel offers and attaches every hook it can,
//! `reader` drains the ring buffer into the decoder, `cgroupfs` finds the
//! cgroup v2 mount the socket hooks attach to.
pub mod btf;
pub mod cgroupfs;
pub mod load;
pub mod reader;
pub mod source;
pub mod tracefs;

use std::path::PathBuf;

use monitor_common::KernelOffsets;

pub use load::{CgroupFilter, HookStatus, Kernel, LoadOptions, LostCounters};

/// Everything the agent needs from the kernel side, ready to read.
pub struct Started {
    pub kernel: Kernel,
    pub cgroup2_mount: PathBuf,
    pub tracefs: PathBuf,
}

/// Finds tracefs (mounting it when missing) and cgroup2, reads the offsets
/// the programs need from this kernel, and loads and attaches the programs.
pub fn start(ring_buffer_bytes: u32, filter_cgroups: bool) -> anyhow::Result<Started> {
    let tracefs = tracefs::ensure_mounted()?;
    let cgroup2_mount = cgroupfs::cgroup2_mount()?;
    let offsets = kernel_offsets(&tracefs)?;
    let kernel = Kernel::load(&LoadOptions {
        ring_buffer_bytes,
        filter_cgroups,
        offsets,
        cgroup2_mount: cgroup2_mount.clone(),
        tracefs: tracefs.clone(),
    })?;
    Ok(Started {
        kernel,
        cgroup2_mount,
        tracefs,
    })
}

/// The struct member offsets from BTF are optional: without them relative
/// paths stay relative and fork events are not sent, which the log says. The
/// tracepoint fields are required: exec and cgroup events need them.
fn kernel_offsets(tracefs: &std::path::Path) -> anyhow::Result<KernelOffsets> {
    let mut offsets = match btf::Btf::from_sys_fs().and_then(|b| btf::kernel_offsets(&b)) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("path resolution, ppid and fork tracking are disabled: {e}");
            KernelOffsets::default()
        }
    };
    tracefs::tracepoint_offsets(tracefs, &mut offsets)?;
    Ok(offsets)
}
