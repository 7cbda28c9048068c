//! Program execution: argv stashed at `sys_enter_execve[at]`, the event sent at
//! `sched_process_exec` with the kernel's own copy of the filename (the user
//! pointer could be swapped after the check).
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_send_signal},
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use monitor_common::{
    ARGS_LEN, AT_FDCWD, ExecArgs, ExecEvent, ExecKey, MAX_ARGS, PATH_LEN, action,
    enforce::{FNV_PRIME, NAME_BASIS, PATH_BASIS},
    kind, loss,
};

use crate::{
    context,
    kmem::{read_ptr, read_u32},
    maps::{counted, offset, send_now, setting},
    path::walk_dirfd,
};

/// argv of an exec in flight, by thread id (kept from `sys_enter_execve` to
/// `sched_process_exec`). A plain hash, not an LRU: an LRU would evict
/// another thread's entry without a word, a full hash refuses the insert,
/// which is counted. Entries go at exec or at the thread's exit.
#[map]
pub static PENDING_ARGS: HashMap<u32, ExecArgs> = HashMap::with_max_entries(2048, 0);

/// Executables an enforced container's exec is killed for, by cgroup id and
/// the hash of the whole filename or of its final component.
#[map]
pub static KILL_EXECS: HashMap<ExecKey, u32> = HashMap::with_max_entries(16384, 0);

/// Per-CPU room to build argv, larger than the 512-byte stack.
#[map]
pub static ARGS_SCRATCH: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room to build the exec record.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

const SIGKILL: u32 = 9;

const ARGS_LIMIT: u32 = (ARGS_LEN / 2) as u32;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    counted(kind::EXEC, try_stash_args(&ctx, 24));
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    counted(kind::EXEC, try_stash_args(&ctx, 32));
    0
}

/// A failure here loses the exec's argv, not the exec: it is counted all the
/// same, under the exec kind.
fn try_stash_args(ctx: &TracePointContext, argv_offset: usize) -> Result<(), u32> {
    // Filtering here too keeps the stash free of entries nobody will read.
    if context::current().is_none() {
        return Ok(());
    }
    let argv: u64 = unsafe { ctx.read_at(argv_offset).map_err(|_| loss::READ_FAULT)? };
    let stash = ARGS_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    let stash: &mut ExecArgs = unsafe { &mut *stash };
    stash.argc = 0;
    stash.truncated = 0;
    // The position lives in map memory, read volatile: see `path::walk`.
    let len = &raw mut stash.args_len;
    unsafe { len.write_volatile(0) };
    let buf = stash.args.as_mut_ptr();
    for i in 0..MAX_ARGS {
        let arg: u64 = match unsafe { bpf_probe_read_user((argv + i as u64 * 8) as *const u64) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if arg == 0 {
            break;
        }
        let pos = unsafe { len.read_volatile() };
        if pos >= ARGS_LIMIT {
            stash.truncated = 1;
            break;
        }
        let at = (pos & (ARGS_LIMIT - 1)) as usize;
        let n = unsafe { bpf_probe_read_user_str(buf.add(at).cast(), ARGS_LIMIT, arg as *const _) };
        if n <= 0 {
            break;
        }
        unsafe { len.write_volatile(pos + n as u32) };
        stash.argc += 1;
        if i == MAX_ARGS - 1 {
            // There may be more: say so rather than pretend argv ended here.
            let next: u64 =
                unsafe { bpf_probe_read_user((argv + MAX_ARGS as u64 * 8) as *const u64) }
                    .unwrap_or(0);
            if next != 0 {
                stash.truncated = 1;
            }
        }
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    PENDING_ARGS
        .insert(&tid, &*stash, 0)
        .map_err(|_| loss::MAP_FULL)
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    counted(kind::EXEC, try_exec(&ctx));
    0
}

fn try_exec(ctx: &TracePointContext) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    let old_pid: u32 = unsafe {
        ctx.read_at(offset!(tp_exec_old_pid) as usize)
            .map_err(|_| loss::READ_FAULT)?
    };
    let ev = EXEC_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    let ev = unsafe { &mut *ev };
    task.write_header(kind::EXEC, &mut ev.header);
    ev.old_pid = old_pid;
    ev.ppid = 0;
    if offset!(structs_valid) != 0 {
        let current = unsafe { bpf_get_current_task() };
        if let Ok(parent) = unsafe { read_ptr(current, offset!(task_real_parent)) } {
            ev.ppid = unsafe { read_u32(parent, offset!(task_tgid)) }.unwrap_or(0);
        }
    }

    // __data_loc: low 16 bits are the offset of the string in the record.
    let loc: u32 = unsafe {
        ctx.read_at(offset!(tp_exec_filename) as usize)
            .map_err(|_| loss::READ_FAULT)?
    };
    let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const _;
    let n =
        unsafe { bpf_probe_read_kernel_str(ev.filename.as_mut_ptr().cast(), PATH_LEN as u32, src) };
    ev.filename_len = if n > 0 { n as u32 - 1 } else { 0 };

    match unsafe { PENDING_ARGS.get(&old_pid) } {
        Some(args) => {
            ev.args = args.args;
            ev.args_len = args.args_len;
            ev.argc = args.argc;
            ev.args_truncated = args.truncated;
            // Fails only when the entry is already gone: nothing to count.
            let _ = PENDING_ARGS.remove(&old_pid);
        }
        None => {
            ev.args_len = 0;
            ev.argc = 0;
            ev.args_truncated = 0;
        }
    }

    ev.action = action::NONE;
    ev._pad = 0;
    // A constant to the verifier: without --enforce none of this is explored.
    if setting!(enforce) != 0 && kill_due(task.cgroup_id, &ev.filename, ev.filename_len) {
        // Delivered on the way back to user space: the new program never
        // runs an instruction.
        ev.action = if unsafe { bpf_send_signal(SIGKILL) } == 0 {
            action::KILLED
        } else {
            action::KILL_FAILED
        };
    }

    let size = if ev.filename[0] != b'/' {
        walk_dirfd(AT_FDCWD, &mut ev.cwd);
        size_of::<ExecEvent>()
    } else {
        ExecEvent::SIZE_NO_CWD
    };
    // SAFETY: `size` is at most the record's size, and the record is in map memory.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const ExecEvent).cast::<u8>(), size) };
    send_now(bytes, kind::EXEC, ev.action != action::NONE);
    Ok(())
}

/// Whether the enforced container `cgroup_id` kills this executable: the
/// FNV-1a hash of the kernel's filename, whole or from after its last `/`,
/// is in `KILL_EXECS` for the cgroup.
#[inline(always)]
fn kill_due(cgroup_id: u64, filename: &[u8; PATH_LEN], len: u32) -> bool {
    let mut whole = PATH_BASIS;
    let mut name = NAME_BASIS;
    for i in 0..PATH_LEN {
        if i as u32 >= len {
            break;
        }
        let c = filename[i];
        whole = (whole ^ c as u64).wrapping_mul(FNV_PRIME);
        name = if c == b'/' {
            NAME_BASIS
        } else {
            (name ^ c as u64).wrapping_mul(FNV_PRIME)
        };
    }
    let by_path = ExecKey {
        cgroup_id,
        hash: whole,
    };
    if unsafe { KILL_EXECS.get(&by_path) }.is_some() {
        return true;
    }
    let by_name = ExecKey {
        cgroup_id,
        hash: name,
    };
    unsafe { KILL_EXECS.get(&by_name) }.is_some()
}

/// A failed exec leaves its argv behind; the thread's exit drops it.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    // Fails only when there was no entry, the usual case.
    let _ = PENDING_ARGS.remove(&tid);
}
