//! Unexpected system calls (`--syscall-profile`): the first time a cgroup
//! makes a call outside the profile of expected calls (Docker's default
//! seccomp allowlist unless the operator gives another), one record leaves
//! the kernel; every later use of that call by that cgroup stays inside.
//!
//! It sits on `raw_syscalls/sys_exit`, so it sees every call's number and
//! result, including the calls a seccomp profile refused (they never reach
//! `sys_enter`, their exit still fires). The price is that every syscall of
//! every task takes the tracing slow path while it is attached: that is why
//! it is opt-in. An expected call costs one array lookup and a bit test.
use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{map, tracepoint},
    maps::{Array, LruHashMap},
    programs::TracePointContext,
};
use monitor_common::{SyscallBitmap, SyscallEvent, kind, loss, syscall_flags};

use super::SYSCALL_SCRATCH;
use crate::{
    context,
    maps::{counted, sent, within_budget},
};

/// The expected calls: one entry, filled by userspace before attach. The
/// rare calls reported with their arguments (`sys_exit_rare`) are in it too,
/// so that no call is reported twice.
#[map]
pub static SYSCALL_PROFILE: Array<SyscallBitmap> = Array::with_max_entries(1, 0);

/// The unexpected calls each cgroup has already reported. An evicted
/// cgroup reports its calls again: a repeat, never a loss.
#[map]
pub static SYSCALLS_REPORTED: LruHashMap<u64, SyscallBitmap> =
    LruHashMap::with_max_entries(16384, 0);

#[tracepoint]
pub fn syscall_profile(ctx: TracePointContext) -> u32 {
    counted(kind::SYSCALL, try_profile(&ctx));
    0
}

fn try_profile(ctx: &TracePointContext) -> Result<(), u32> {
    // raw_syscalls/sys_exit: `long id` at 8, `long ret` at 16.
    let nr: i64 = unsafe { ctx.read_at(8) }.map_err(|_| loss::READ_FAULT)?;
    // -1: a syscall-user-dispatch or ptrace-skipped call, no number.
    if nr < 0 {
        return Ok(());
    }
    let nr = nr as u64;
    let profile = SYSCALL_PROFILE.get(0).ok_or(loss::NO_SCRATCH)?;
    if profile.contains(nr) {
        return Ok(());
    }
    let Some(task) = context::current() else {
        return Ok(());
    };
    let reported = SYSCALLS_REPORTED.get_ptr_mut(&task.cgroup_id);
    if let Some(seen) = reported {
        if unsafe { (*seen).contains(nr) } {
            return Ok(());
        }
    }
    // Over the cgroup's budget: counted, and not marked, so a later use
    // reports it.
    within_budget(kind::SYSCALL)?;
    let ret: i64 = unsafe { ctx.read_at(16) }.map_err(|_| loss::READ_FAULT)?;
    let ev = SYSCALL_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    let ev: &mut SyscallEvent = unsafe { &mut *ev };
    task.write_header(kind::SYSCALL, &mut ev.header);
    ev.nr = if nr > SyscallBitmap::OUT_OF_RANGE {
        u32::MAX
    } else {
        nr as u32
    };
    ev.ret = ret;
    ev.flags = syscall_flags::UNEXPECTED;
    ev.args = [0; 6];
    // Marked only once it went: a record the ring buffer refused (counted)
    // is tried again at the next use. The runtime's own set-up in the
    // container's cgroup (runc's stages name themselves `runc:[0:PARENT]`
    // ... `runc:[2:INIT]`; the rules except them) is reported and never
    // marked, so that it cannot hide the workload's first use of a call.
    if !sent(&*ev, kind::SYSCALL) || runtime_setup() {
        return Ok(());
    }
    match reported {
        Some(seen) => unsafe { (*seen).insert(nr) },
        None => {
            let mut first = SyscallBitmap::default();
            first.insert(nr);
            // The record went: failing to store the mark only means the
            // call is reported again at its next use.
            let _ = SYSCALLS_REPORTED.insert(&task.cgroup_id, &first, 0);
        }
    }
    Ok(())
}

/// Whether the current task is one of runc's set-up stages.
#[inline(always)]
fn runtime_setup() -> bool {
    match bpf_get_current_comm() {
        Ok(comm) => comm.starts_with(b"runc:["),
        // The name could not be read: marked, as for any other task.
        Err(_) => false,
    }
}
