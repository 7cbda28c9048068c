//! The process tree: new processes and ended ones.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{ExitEvent, ForkEvent, kind, loss};

use crate::{
    context, exec, file,
    kmem::read_u32,
    maps::{counted, offset, send},
    syscall,
};

/// `sched_process_fork(parent, child)` as a raw tracepoint: the task pointers let
/// us tell a new process from a new thread, which the plain tracepoint cannot.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    counted(kind::FORK, try_fork(&ctx));
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    if offset!(structs_valid) == 0 {
        return Ok(());
    }
    let child: u64 = ctx.arg(1);
    let child_tgid =
        unsafe { read_u32(child, offset!(task_tgid)) }.map_err(|_| loss::READ_FAULT)?;
    let child_pid = unsafe { read_u32(child, offset!(task_pid)) }.map_err(|_| loss::READ_FAULT)?;
    if child_tgid != child_pid {
        return Ok(()); // a thread
    }
    let ev = ForkEvent {
        header: context::header(kind::FORK, task),
        child_pid,
        _pad: 0,
    };
    send(&ev, kind::FORK);
    Ok(())
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    try_exit();
    0
}

fn try_exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // Whatever this thread left in flight will never complete.
    exec::forget_thread(tid);
    file::forget_thread(tid);
    syscall::forget_thread(tid);
    if tid != (pid_tgid >> 32) as u32 {
        return; // a thread, not the process
    }
    let Some(task) = context::current() else {
        return;
    };
    let exit_code = if offset!(structs_valid) != 0 {
        let current = unsafe { bpf_get_current_task() };
        unsafe { read_u32(current, offset!(task_exit_code)) }.unwrap_or(0) as i32
    } else {
        0
    };
    let ev = ExitEvent {
        header: context::header(kind::EXIT, task),
        exit_code,
        _pad: 0,
    };
    send(&ev, kind::EXIT);
}
