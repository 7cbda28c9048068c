//! Loading, attaching and reading the kernel programs.
//!
//! `load` probes what the running kernel offers and attaches every hook it can,
//! `reader` drains the ring buffer into the decoder, `cgroupfs` finds the
//! cgroup v2 mount the socket hooks attach to.
pub mod btf;
pub mod cgroupfs;
pub mod load;
pub mod reader;

use std::path::PathBuf;

use monitor_common::KernelOffsets;

pub use load::{CgroupFilter, HookStatus, Kernel, LoadOptions, LostCounters};

/// Everything the agent needs from the kernel side, ready to read.
pub struct Started {
    pub kernel: Kernel,
    pub cgroup2_mount: PathBuf,
    pub tracefs: PathBuf,
}

/// Finds tracefs and cgroup2, reads the offsets the programs need from this
/// kernel, and loads and attaches the programs.
pub fn start(ring_buffer_bytes: u32, filter_cgroups: bool) -> anyhow::Result<Started> {
    let tracefs = PathBuf::from("/sys/kernel/tracing");
    let cgroup2_mount = cgroupfs::cgroup2_mount()?;
    let offsets = kernel_offsets();
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

// TEMPORARY until the tracefs reader lands: tracepoint offsets of this kernel.
fn kernel_offsets() -> KernelOffsets {
    let structs = match btf::Btf::from_sys_fs().and_then(|b| btf::kernel_offsets(&b)) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("relative paths and the process tree are disabled: {e}");
            KernelOffsets::default()
        }
    };
    KernelOffsets {
        tp_exec_filename: 8,
        tp_exec_pid: 12,
        tp_exec_old_pid: 16,
        tp_cgroup_root: 8,
        tp_cgroup_level: 12,
        tp_cgroup_id: 16,
        tp_cgroup_path: 24,
        ..structs
    }
}
