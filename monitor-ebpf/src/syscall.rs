//! Rare system calls that change privilege or reach outside the container:
//! credentials, capabilities, ptrace, bpf, modules, mounts, namespaces,
//! userfaultfd, io_uring, raw sockets. One enter and one exit program serve
//! them all (the tracepoint record says which call it is); the event is sent
//! at exit, with the result.
//!
//! A call the container's seccomp profile refuses never reaches its
//! `sys_enter_*` tracepoint, but its `sys_exit_*` fires with `-EPERM`: such
//! an exit, with no arguments seen, is sent too: a refused probe of `bpf()`
//! or `setns` is a signal.
//!
//! The fentry tier ([`fexit`]) sends the same records from one fexit program
//! per call, and the refusals from `__secure_computing`: no syscall
//! tracepoint, so no tracing slow path for every other syscall.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use monitor_common::{SyscallEvent, kind, loss, syscall_flags};

use crate::{
    context::{self, Task},
    maps::{counted, send, setting, within_budget},
};

mod fexit;
mod profile;

/// What `sys_enter` kept for `sys_exit`, per thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Call {
    nr: u64,
    args: [u64; 6],
}

/// The arguments of a rare syscall in flight, by thread id.
#[map]
pub static PENDING_SYSCALL: HashMap<u32, Call> = HashMap::with_max_entries(4096, 0);

/// Per-CPU room to build the record, larger than the 512-byte stack.
#[map]
pub static SYSCALL_SCRATCH: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME.
const CLONE_NEW_ANY: u64 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x80;
const AF_PACKET: u64 = 17;
const SOCK_RAW: u64 = 3;
const SOCK_TYPE_MASK: u64 = 0xf;

/// The hot calls among the rare ones, which only matter with the arguments
/// that make them rare.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    None,
    /// Only with a namespace flag.
    Clone,
    /// The same, in the `struct clone_args` the first argument points to.
    Clone3,
    /// Only raw and packet sockets.
    Socket,
}

/// Whether a call with these arguments leaves the kernel.
#[inline(always)]
pub fn wanted(filter: Filter, args: &[u64; 6]) -> Result<bool, u32> {
    Ok(match filter {
        Filter::None => true,
        Filter::Clone => args[0] & CLONE_NEW_ANY != 0,
        Filter::Clone3 => {
            // struct clone_args starts with u64 flags.
            let flags: u64 = unsafe { bpf_probe_read_user(args[0] as *const u64) }
                .map_err(|_| loss::READ_FAULT)?;
            flags & CLONE_NEW_ANY != 0
        }
        Filter::Socket => args[0] == AF_PACKET || args[1] & SOCK_TYPE_MASK == SOCK_RAW,
    })
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: usize) -> Result<T, u32> {
    unsafe { ctx.read_at::<T>(offset).map_err(|_| loss::READ_FAULT) }
}

#[tracepoint]
pub fn sys_enter_rare(ctx: TracePointContext) -> u32 {
    counted(kind::SYSCALL, try_enter(&ctx));
    0
}

fn try_enter(ctx: &TracePointContext) -> Result<(), u32> {
    if context::current().is_none() {
        return Ok(());
    }
    // `int __syscall_nr` at 8, then six 8-byte argument slots from 16.
    let nr = read::<i32>(ctx, 8)? as u64;
    let mut call = Call { nr, args: [0; 6] };
    for (i, arg) in call.args.iter_mut().enumerate() {
        *arg = read::<u64>(ctx, 16 + i * 8)?;
    }
    // The numbers come from userspace: they differ by architecture.
    let filter = if nr == setting!(nr_clone) as u64 {
        Filter::Clone
    } else if nr == setting!(nr_clone3) as u64 {
        Filter::Clone3
    } else if nr == setting!(nr_socket) as u64 {
        Filter::Socket
    } else {
        Filter::None
    };
    if !wanted(filter, &call.args)? {
        return Ok(());
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    PENDING_SYSCALL
        .insert(&tid, &call, 0)
        .map_err(|_| loss::MAP_FULL)
}

#[tracepoint]
pub fn sys_exit_rare(ctx: TracePointContext) -> u32 {
    counted(kind::SYSCALL, try_exit(&ctx));
    0
}

fn try_exit(ctx: &TracePointContext) -> Result<(), u32> {
    let nr = read::<i32>(ctx, 8)? as u64;
    let ret = read::<i64>(ctx, 16)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    let pending = unsafe { PENDING_SYSCALL.get(&tid) }.copied();
    let task = match pending {
        Some(call) if call.nr == nr => {
            // Cannot fail: the entry was just read, and only this thread removes it.
            let _ = PENDING_SYSCALL.remove(&tid);
            // In scope at enter: the header is written for the same task.
            context::current_unfiltered()
        }
        _ => {
            // No enter seen: refused before it (seccomp), or filtered out at
            // enter. Only a failure of a call that is always kept says the former.
            let filtered = nr == setting!(nr_clone) as u64
                || nr == setting!(nr_clone3) as u64
                || nr == setting!(nr_socket) as u64;
            if ret >= 0 || filtered {
                return Ok(());
            }
            match context::current() {
                Some(task) => task,
                None => return Ok(()),
            }
        }
    };
    let args = match pending {
        Some(call) if call.nr == nr => Some(call.args),
        _ => None,
    };
    emit(task, nr as u32, ret, args.as_ref())
}

/// Sends the record of a call: with its arguments when it was seen entering,
/// without them when it was refused before.
#[inline(always)]
fn emit(task: Task, nr: u32, ret: i64, args: Option<&[u64; 6]>) -> Result<(), u32> {
    within_budget(kind::SYSCALL)?;
    let ev = SYSCALL_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    let ev: &mut SyscallEvent = unsafe { &mut *ev };
    task.write_header(kind::SYSCALL, &mut ev.header);
    ev.nr = nr;
    ev.ret = ret;
    match args {
        Some(args) => {
            ev.flags = syscall_flags::ARGS;
            ev.args = *args;
        }
        None => {
            ev.flags = 0;
            ev.args = [0; 6];
        }
    }
    send(&*ev, kind::SYSCALL);
    Ok(())
}

/// The thread's exit drops what a call left in flight.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    // Fails only when there was no entry, the usual case.
    let _ = PENDING_SYSCALL.remove(&tid);
}
