//! The fentry tier of the rare syscalls: an fexit program on each call's
//! `__x64_sys_<name>`, which sees the arguments (in the task's saved user
//! registers, which the call was made with) and the result at once; and one on
//! `__secure_computing` for the calls a seccomp profile refuses, which never
//! reach `__x64_sys_*`. Attached to those functions only, they cost nothing
//! to any other syscall, where one program on a syscall tracepoint puts every
//! syscall of every task on the tracing slow path.
//!
//! x86_64 only (the functions are named for its syscall ABI). Compat (ia32)
//! calls go through `__ia32_sys_*` and are not seen, as the syscall
//! tracepoints do not report them either.
use core::mem::offset_of;

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    macros::{fexit, map},
    maps::HashMap,
    programs::FExitContext,
};
use monitor_common::{kind, loss};

use super::{Filter, emit, wanted};
use crate::{
    context,
    kmem::read_ptr,
    maps::{counted, offset},
};

/// The numbers of the rare calls whose seccomp refusals are sent from here:
/// those of the concerns this tier serves, minus the filtered calls (clone,
/// clone3, socket: their refusal says nothing of the arguments that would
/// have made them rare). Filled by userspace after the tiers are settled, so
/// that a call whose exit tracepoint serves it is never reported twice.
#[map]
pub static REFUSABLE: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// The syscall ABI's argument registers, in order.
const ARG_REGS: [usize; 6] = [
    offset_of!(pt_regs, rdi),
    offset_of!(pt_regs, rsi),
    offset_of!(pt_regs, rdx),
    offset_of!(pt_regs, r10),
    offset_of!(pt_regs, r8),
    offset_of!(pt_regs, r9),
];

#[inline(always)]
fn reg(regs: u64, off: usize) -> Result<u64, u32> {
    unsafe { bpf_probe_read_kernel((regs + off as u64) as *const u64) }
        .map_err(|_| loss::READ_FAULT)
}

/// `__x64_sys_<name>(const struct pt_regs *regs)` has returned.
#[inline(always)]
fn try_fexit(ctx: &FExitContext, filter: Filter) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    // `regs` is the task's saved user registers; found from the task, not
    // from the argument: 5.10's BTF has `struct pt_regs` only declared, not
    // defined, for some of these functions (process_vm_writev, bpf, the
    // module calls...), and its verifier refuses to read such an argument.
    let Some(regs) = user_regs()? else {
        return Ok(());
    };
    // fexit's arguments are the function's, then its return value.
    let ret: i64 = ctx.arg(1);
    let mut args = [0u64; 6];
    for (arg, off) in args.iter_mut().zip(ARG_REGS) {
        *arg = reg(regs, off)?;
    }
    if !wanted(filter, &args)? {
        return Ok(());
    }
    // What the tracepoints report as `__syscall_nr`.
    let nr = reg(regs, offset_of!(pt_regs, orig_rax))? as u32;
    emit(task, nr, ret, Some(&args))
}

/// One fexit program per call: the loader attaches each to its function
/// (`monitor/src/bpf/syscalls.rs` names them).
macro_rules! rare_fexit {
    ($($program:ident: $filter:ident),* $(,)?) => {$(
        #[fexit]
        pub fn $program(ctx: FExitContext) -> u32 {
            counted(kind::SYSCALL, try_fexit(&ctx, Filter::$filter));
            0
        }
    )*};
}

rare_fexit! {
    fexit_setuid: None,
    fexit_setgid: None,
    fexit_setreuid: None,
    fexit_setregid: None,
    fexit_setresuid: None,
    fexit_setresgid: None,
    fexit_setfsuid: None,
    fexit_setfsgid: None,
    fexit_capset: None,
    fexit_ptrace: None,
    fexit_process_vm_writev: None,
    fexit_bpf: None,
    fexit_init_module: None,
    fexit_finit_module: None,
    fexit_delete_module: None,
    fexit_userfaultfd: None,
    fexit_io_uring_setup: None,
    fexit_mount: None,
    fexit_umount2: None,
    fexit_fsmount: None,
    fexit_move_mount: None,
    fexit_open_tree: None,
    fexit_unshare: None,
    fexit_setns: None,
    fexit_clone: Clone,
    fexit_clone3: Clone3,
    fexit_socket: Socket,
}

/// x86_64's kernel stack (`THREAD_SIZE`, 16 KiB without KASAN).
const THREAD_SIZE: u64 = 16 * 1024;
/// `TOP_OF_KERNEL_STACK_PADDING`: 16 with `CONFIG_X86_FRED`, else 0.
const STACK_PADDINGS: [u64; 2] = [0, 16];
const USER_CS: u64 = 0x33;
const USER32_CS: u64 = 0x23;
const USER_DS: u64 = 0x2b;

/// `__secure_computing` returned -1: the syscall is skipped, its result
/// already in the saved `ax` (`-errno` for `SECCOMP_RET_ERRNO`). The tracepoint
/// tier sees the same at `sys_exit_*`, with no `sys_enter_*` before it.
#[fexit]
pub fn seccomp_refusal(ctx: FExitContext) -> u32 {
    counted(kind::SYSCALL, try_refusal(&ctx));
    0
}

fn try_refusal(ctx: &FExitContext) -> Result<(), u32> {
    // `int __secure_computing(const struct seccomp_data *sd)`: the return
    // value follows the one argument. Every syscall of a seccomp-confined
    // task comes here: the common case leaves at once.
    let skipped: i64 = ctx.arg(1);
    if skipped as i32 != -1 {
        return Ok(());
    }
    let Some(task) = context::current() else {
        return Ok(());
    };
    let Some(regs) = user_regs()? else {
        return Ok(());
    };
    let nr = reg(regs, offset_of!(pt_regs, orig_rax))? as u32;
    if unsafe { REFUSABLE.get(&nr) }.is_none() {
        return Ok(());
    }
    let ret = reg(regs, offset_of!(pt_regs, rax))? as i64;
    // As at `sys_exit_rare`: a skipped call that "succeeded" (a tracer or
    // a supervisor answered for it) is no refusal.
    if ret >= 0 {
        return Ok(());
    }
    emit(task, nr, ret, None)
}

/// The current task's user registers, saved at the top of its kernel stack
/// (`task_pt_regs`, what `do_syscall_64` hands the syscall functions): for
/// `__secure_computing`, `sd` is NULL on x86_64, and `bpf_task_pt_regs` came
/// only in 5.15. The padding above them depends on the kernel's configuration, so
/// each candidate is checked to hold a user code and stack segment. `None`
/// for a 32-bit task: its numbers are another table's, not hooked here.
#[inline(always)]
fn user_regs() -> Result<Option<u64>, u32> {
    let off = offset!(task_stack);
    if off == 0 {
        return Err(loss::READ_FAULT);
    }
    let task = unsafe { bpf_get_current_task() };
    let stack = unsafe { read_ptr(task, off) }.map_err(|_| loss::READ_FAULT)?;
    for padding in STACK_PADDINGS {
        let regs = stack + THREAD_SIZE - padding - size_of::<pt_regs>() as u64;
        // FRED keeps more in the upper bits of both: only the selector counts.
        let ss = reg(regs, offset_of!(pt_regs, ss))? & 0xffff;
        if ss != USER_DS {
            continue;
        }
        match reg(regs, offset_of!(pt_regs, cs))? & 0xffff {
            USER_CS => return Ok(Some(regs)),
            USER32_CS => return Ok(None),
            _ => {}
        }
    }
    Err(loss::READ_FAULT)
}
