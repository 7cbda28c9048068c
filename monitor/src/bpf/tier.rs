//! The rows of the fentry tier ([`Tier::Fentry`](super::hooks::Tier)): for
//! each concern, the `fentry`/`fexit` programs that serve it in place of its
//! syscall tracepoints wherever this kernel lets them all attach.
//!
//! A concern's rows here carry the same concern name as the tracepoint rows
//! they replace (`hooks::all_hooks`): the loader compares by that name.
use super::{
    hooks::{Hook, fentry, fexit},
    syscalls::{HOOKED, REFUSAL_FUNCTION, REFUSAL_PROGRAM, REFUSALS},
};

/// File writes, renames, unlinks, links, chmods, truncates, symlinks,
/// sensitive reads and `*.sock` connects (`monitor-ebpf/src/vfs.rs`): the
/// opens at `do_filp_open` (the syscalls' and io_uring's, with the flags,
/// mode and name as asked), `truncate(2)` at `vfs_truncate`, the rest at
/// the LSM's `security_path_*` and `security_socket_connect`.
pub(super) const FILE_TIER: &[Hook] = &[
    fexit("vfs_open", "do_filp_open", FILE, true),
    fexit("vfs_truncate", "vfs_truncate", FILE, true),
    fexit("vfs_chmod", "security_path_chmod", FILE, true),
    fexit("vfs_unlink", "security_path_unlink", FILE, true),
    fexit("vfs_rmdir", "security_path_rmdir", FILE, true),
    fexit("vfs_rename", "security_path_rename", FILE, true),
    fexit("vfs_link", "security_path_link", FILE, true),
    fexit("vfs_symlink", "security_path_symlink", FILE, true),
    fexit("vfs_connect", "security_socket_connect", FILE, true),
];

/// The tracepoint rows' concern (`hooks::all_hooks`).
const FILE: &str = "file writes";

/// argv of an exec from the kernel's copy (`monitor-ebpf/src/exec.rs`): the
/// argc the caller passed, before any interpreter was prepended, then the
/// strings past the point of no return. The record itself is still sent at
/// `sched_process_exec`, a shared row of the tracepoint tier.
pub(super) const EXEC_TIER: &[Hook] = &[
    fentry(
        "bprm_creds_for_exec",
        "security_bprm_creds_for_exec",
        "exec",
        true,
    ),
    fentry(
        "bprm_committed_creds",
        "security_bprm_committed_creds",
        "exec",
        true,
    ),
];

/// The rare syscalls (`syscalls::HOOKED`) at their entry functions, one
/// fexit program each, and the seccomp refusals of all of them.
pub(super) const SYSCALL_TIER: &[Hook] = &syscall_rows();

/// Each call's row in its own concern, then the refusals' row.
const fn syscall_rows() -> [Hook; HOOKED.len() + 1] {
    // Without it, the tracepoint tier's `sys_exit_rare` rows (which see a
    // refused call's exit) report the refusals.
    let refusals = fexit(REFUSAL_PROGRAM, REFUSAL_FUNCTION, REFUSALS, false)
        .covered_by("the rare syscalls' sys_exit tracepoints");
    let mut rows = [refusals; HOOKED.len() + 1];
    let mut i = 0;
    while i < HOOKED.len() {
        let call = HOOKED[i];
        rows[i] = fexit(call.program, call.function, call.concern, false);
        i += 1;
    }
    rows
}

/// Every row of the tier, in the order the loader tries them.
pub(super) const ROWS: [&[Hook]; 3] = [FILE_TIER, EXEC_TIER, SYSCALL_TIER];
