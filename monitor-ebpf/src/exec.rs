//! Program execution: argv stashed, the event sent at `sched_process_exec`
//! with the kernel's own copy of the filename (the user pointer could be
//! swapped after the check).
//!
//! argv comes from one of two tiers. The tracepoint tier reads the caller's
//! memory at `sys_enter_execve[at]`. The fentry tier reads the kernel's copy
//! at `security_bprm_committed_creds`, past the point of no return: the
//! strings the new program receives, which no other thread can swap, and no
//! syscall tracepoint (whose programs put every task's every syscall on the
//! tracing slow path).
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_send_signal},
    },
    macros::{fentry, map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{FEntryContext, TracePointContext},
};
use monitor_common::{
    ARGS_LEN, AT_FDCWD, ExecArgs, ExecEvent, ExecKey, MAX_ARGS, PATH_LEN, action,
    enforce::{FNV_PRIME, NAME_BASIS, PATH_BASIS},
    kind, loss,
};

use crate::{
    context::{self, Task},
    kmem::{read_ptr, read_u32},
    maps::{counted, offset, send_now, setting},
    path::{exe_identity, walk_dirfd},
};

/// argv of an exec in flight, by thread id (kept from `sys_enter_execve`, or
/// `security_bprm_committed_creds`, to `sched_process_exec`). A plain hash, not an LRU: an LRU would evict
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
    let stash = empty_args()?;
    for i in 0..MAX_ARGS {
        let arg: u64 = match unsafe { bpf_probe_read_user((argv + i as u64 * 8) as *const u64) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if arg == 0 || append_arg(stash, arg).is_none() {
            break;
        }
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

/// Starts an empty argv in the per-CPU scratch.
#[inline(always)]
fn empty_args() -> Result<&'static mut ExecArgs, u32> {
    let stash = ARGS_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    let stash: &mut ExecArgs = unsafe { &mut *stash };
    stash.argc = 0;
    stash.truncated = 0;
    // The position lives in map memory, read volatile: see `path::walk`.
    unsafe { (&raw mut stash.args_len).write_volatile(0) };
    Ok(stash)
}

/// Appends the string at user address `src` to argv. Returns its length with
/// the NUL, or `None` when argv is full (then marked truncated) or the read
/// failed.
#[inline(always)]
fn append_arg(stash: &mut ExecArgs, src: u64) -> Option<u32> {
    let len = &raw mut stash.args_len;
    let pos = unsafe { len.read_volatile() };
    if pos >= ARGS_LIMIT {
        stash.truncated = 1;
        return None;
    }
    let at = (pos & (ARGS_LIMIT - 1)) as usize;
    let buf = stash.args.as_mut_ptr();
    let n = unsafe { bpf_probe_read_user_str(buf.add(at).cast(), ARGS_LIMIT, src as *const _) };
    if n <= 0 {
        return None;
    }
    unsafe { len.write_volatile(pos + n as u32) };
    stash.argc += 1;
    Some(n as u32)
}

/// The argc each exec in flight was called with, by its `struct
/// linux_binprm`'s address, from `security_bprm_creds_for_exec` (before any
/// binary format handler ran) to `security_bprm_committed_creds`. An LRU: an
/// exec that fails in between leaves its entry for the LRU to drop (the next
/// exec at that address overwrites it first).
#[map]
pub static EXEC_ARGC: LruHashMap<u64, u32> = LruHashMap::with_max_entries(1024, 0);

/// Interpreters (scripts, binfmt_misc) an exec goes through whose names
/// are skipped: the kernel gives up beyond 5 levels, each adding at most two.
const MAX_SKIPPED: u32 = 12;

/// The fentry tier: the argc the caller passed, before `load_script` or
/// binfmt_misc prepend their interpreter.
#[fentry]
pub fn bprm_creds_for_exec(ctx: FEntryContext) -> u32 {
    counted(kind::EXEC, try_keep_argc(&ctx));
    0
}

fn try_keep_argc(ctx: &FEntryContext) -> Result<(), u32> {
    if context::current().is_none() || offset!(bprm_valid) == 0 {
        return Ok(());
    }
    let bprm: u64 = ctx.arg(0);
    let argc = unsafe { read_u32(bprm, offset!(bprm_argc)) }.map_err(|_| loss::READ_FAULT)?;
    EXEC_ARGC
        .insert(&bprm, &argc, 0)
        .map_err(|_| loss::MAP_FULL)
}

/// The fentry tier's argv: the kernel's copy, `bprm->argc` strings one after
/// the other from `bprm->p`. By now the task runs on the new program's mm
/// (`exec_mmap` is done) and that stack is not yet moved, so `p` is an
/// address the current mm maps; and `de_thread` is done, so the thread id is
/// the one `sched_process_exec` runs under.
///
/// An interpreter script's argv here is the interpreter's: its name (and
/// argument) first, then the script's path in place of the caller's argv[0].
/// Skipping what was prepended leaves the caller's argv, except that for a
/// script argv[0] is the path the kernel ran, not the caller's argv[0]
/// (lost, overwritten in place); they differ only when the caller chose an
/// argv[0] other than the path. And an exec with an empty argv has one empty
/// string here (the kernel gives the program `""` as argv[0] since 5.18).
#[fentry]
pub fn bprm_committed_creds(ctx: FEntryContext) -> u32 {
    counted(kind::EXEC, try_stash_committed(&ctx));
    0
}

fn try_stash_committed(ctx: &FEntryContext) -> Result<(), u32> {
    if context::current().is_none() {
        return Ok(());
    }
    if offset!(bprm_valid) == 0 {
        return Err(loss::READ_FAULT);
    }
    let bprm: u64 = ctx.arg(0);
    let mut src = unsafe { read_ptr(bprm, offset!(bprm_p)) }.map_err(|_| loss::READ_FAULT)?;
    let argc = unsafe { read_u32(bprm, offset!(bprm_argc)) }.map_err(|_| loss::READ_FAULT)?;
    let called = match unsafe { EXEC_ARGC.get(&bprm) } {
        Some(n) => *n,
        None => argc,
    };
    // Fails only when the entry is already gone: nothing to count.
    let _ = EXEC_ARGC.remove(&bprm);
    let skipped = argc.saturating_sub(called);
    let stash = empty_args()?;
    for i in 0..MAX_SKIPPED {
        if i >= skipped {
            break;
        }
        // Read into the scratch only to learn the length; overwritten below.
        let n = unsafe {
            bpf_probe_read_user_str(stash.args.as_mut_ptr().cast(), ARGS_LIMIT, src as *const _)
        };
        if n <= 0 || n as u32 >= ARGS_LIMIT {
            return Err(loss::READ_FAULT);
        }
        src += n as u64;
    }
    let argc = argc - skipped;
    for i in 0..MAX_ARGS {
        if i >= argc {
            break;
        }
        match append_arg(stash, src) {
            Some(n) => src += n as u64,
            None => break,
        }
        if i == MAX_ARGS - 1 && argc > MAX_ARGS {
            // There are more: say so rather than pretend argv ended here.
            stash.truncated = 1;
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
    // __data_loc: low 16 bits are the offset of the string in the record.
    let loc: u32 = unsafe {
        ctx.read_at(offset!(tp_exec_filename) as usize)
            .map_err(|_| loss::READ_FAULT)?
    };
    let src = ctx.as_ptr() as u64 + (loc & 0xffff) as u64;
    let ev = exec_record(task, old_pid, src)?;
    take_args(ev, old_pid);
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
    send_exec(ev);
    Ok(())
}

/// The exec record in the per-CPU scratch: the header, the parent and the
/// kernel's copy of the filename (the kernel string at `src`); no argv yet,
/// and no action.
#[inline(always)]
pub fn exec_record(task: Task, old_pid: u32, src: u64) -> Result<&'static mut ExecEvent, u32> {
    let ev = EXEC_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    // SAFETY: per-CPU map memory, and a program runs to its end on its CPU.
    let ev: &'static mut ExecEvent = unsafe { &mut *ev };
    task.write_header(kind::EXEC, &mut ev.header);
    ev.old_pid = old_pid;
    ev.ppid = 0;
    if offset!(structs_valid) != 0 {
        let current = unsafe { bpf_get_current_task() };
        if let Ok(parent) = unsafe { read_ptr(current, offset!(task_real_parent)) } {
            ev.ppid = unsafe { read_u32(parent, offset!(task_tgid)) }.unwrap_or(0);
        }
    }
    let n = unsafe {
        bpf_probe_read_kernel_str(
            ev.filename.as_mut_ptr().cast(),
            PATH_LEN as u32,
            src as *const _,
        )
    };
    ev.filename_len = if n > 0 { n as u32 - 1 } else { 0 };
    ev.args_len = 0;
    ev.argc = 0;
    ev.args_truncated = 0;
    ev.action = action::NONE;
    ev._pad = 0;
    // At `sched_process_exec` the task runs the new program already.
    let (ino, dev) = exe_identity();
    ev.exe_ino = ino;
    ev.exe_dev = dev;
    ev._pad2 = 0;
    Ok(ev)
}

/// Moves the argv stashed for this exec into its record. The tracepoint
/// tier stashed under the thread that called execve (`old_pid`), the
/// fentry tier under the one it became (they differ when a thread other
/// than the leader execs).
#[inline(always)]
pub fn take_args(ev: &mut ExecEvent, old_pid: u32) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let key = if unsafe { PENDING_ARGS.get(&old_pid) }.is_some() {
        old_pid
    } else {
        tid
    };
    if let Some(args) = unsafe { PENDING_ARGS.get(&key) } {
        ev.args = args.args;
        ev.args_len = args.args_len;
        ev.argc = args.argc;
        ev.args_truncated = args.truncated;
        // Fails only when the entry is already gone: nothing to count.
        let _ = PENDING_ARGS.remove(&key);
    }
}

/// Sends the exec record, with the working directory when the filename is
/// relative; an enforcement action's record is counted apart when lost.
#[inline(always)]
pub fn send_exec(ev: &mut ExecEvent) {
    let size = if ev.filename[0] != b'/' {
        walk_dirfd(AT_FDCWD, &mut ev.cwd);
        size_of::<ExecEvent>()
    } else {
        ExecEvent::SIZE_NO_CWD
    };
    // SAFETY: `size` is at most the record's size, and the record is in map memory.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const ExecEvent).cast::<u8>(), size) };
    send_now(bytes, kind::EXEC, ev.action != action::NONE);
}

/// Whether the enforced container `cgroup_id` kills this executable: the
/// FNV-1a hash of the kernel's filename, whole or from after its last `/`,
/// is in `KILL_EXECS` for the cgroup.
#[inline(always)]
pub fn kill_due(cgroup_id: u64, filename: &[u8; PATH_LEN], len: u32) -> bool {
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
