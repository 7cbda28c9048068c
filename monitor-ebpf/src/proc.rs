//! The process tree: new processes and ended ones.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{ExitEvent, ForkEvent, kind};

use crate::{
    context, exec, file,
    kmem::read_u32,
    maps::{offsets, send},
};

/// `sched_process_fork(parent, child)` as a raw tracepoint: the task pointers let
/// us tell a new process from a new thread, which the plain tracepoint cannot.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(header) = context::current(kind::FORK) else {
        return Ok(());
    };
    let o = offsets();
    if o.structs_valid == 0 {
        return Ok(());
    }
    let child: u64 = ctx.arg(1);
    let child_tgid = unsafe { read_u32(child, o.task_tgid)? };
    let child_pid = unsafe { read_u32(child, o.task_pid)? };
    if child_tgid != child_pid {
        return Ok(()); // a thread
    }
    let ev = ForkEvent {
        header,
        child_pid,
        _pad: 0,
    };
    send(&ev, kind::FORK);
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let _ = try_exit();
    0
}

fn try_exit() -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // Whatever this thread left in flight will never complete.
    exec::forget_thread(tid);
    file::forget_thread(tid);
    if tid != (pid_tgid >> 32) as u32 {
        return Ok(()); // a thread, not the process
    }
    let Some(header) = context::current(kind::EXIT) else {
        return Ok(());
    };
    let o = offsets();
    let exit_code = if o.structs_valid != 0 {
        let task = unsafe { bpf_get_current_task() };
        unsafe { read_u32(task, o.task_exit_code) }.unwrap_or(0) as i32
    } else {
        0
    };
    let ev = ExitEvent {
        header,
        exit_code,
        _pad: 0,
    };
    send(&ev, kind::EXIT);
    Ok(())
}
