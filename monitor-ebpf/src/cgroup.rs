//! cgroup v2 directories made and removed: container start and stop, in real time.
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_cgroup_id, bpf_probe_read_kernel_str},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{CGROUP_PATH_LEN, CGROUP2_HIERARCHY_ID, CgroupEvent, cgroup_op, kind, loss};

use crate::{
    context,
    maps::{BPF_RB_FORCE_WAKEUP, EVENTS, counted, offset},
};

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    counted(kind::CGROUP, try_cgroup(&ctx, cgroup_op::MKDIR));
    0
}

#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    counted(kind::CGROUP, try_cgroup(&ctx, cgroup_op::RMDIR));
    0
}

fn try_cgroup(ctx: &TracePointContext, op: u32) -> Result<(), u32> {
    // The tracepoint fires for every hierarchy; only v2 identifies containers.
    let root: u32 = unsafe {
        ctx.read_at(offset!(tp_cgroup_root) as usize)
            .map_err(|_| loss::READ_FAULT)?
    };
    if root != CGROUP2_HIERARCHY_ID {
        return Ok(());
    }
    // Not filtered by cgroup or pid: the registry needs every container's birth.
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        return Err(loss::RING_FULL);
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    context::write_header(
        kind::CGROUP,
        bpf_get_current_pid_tgid(),
        unsafe { bpf_get_current_cgroup_id() },
        &mut ev.header,
    );
    ev.op = op;
    ev._pad = 0;
    ev.level = unsafe { ctx.read_at(offset!(tp_cgroup_level) as usize) }.unwrap_or(0);
    ev.id = unsafe { ctx.read_at(offset!(tp_cgroup_id) as usize) }.unwrap_or(0);
    let loc: u32 = unsafe { ctx.read_at(offset!(tp_cgroup_path) as usize) }.unwrap_or(0);
    let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const _;
    let n = unsafe {
        bpf_probe_read_kernel_str(ev.path.as_mut_ptr().cast(), CGROUP_PATH_LEN as u32, src)
    };
    ev.path_len = if n > 0 { n as u32 - 1 } else { 0 };
    // Containers start rarely and the registry wants them at once.
    entry.submit(BPF_RB_FORCE_WAKEUP);
    Ok(())
}
