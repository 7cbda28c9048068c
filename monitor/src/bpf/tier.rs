//! The rows of the fentry tier ([`Tier::Fentry`](super::hooks::Tier)): for
//! each concern, the `fentry`/`fexit` programs that serve it in place of its
//! syscall tracepoints wherever this kernel lets them all attach.
//!
//! A concern's rows here carry the same concern name as the tracepoint rows
//! they replace (`hooks::all_hooks`): the loader compares by that name.
use super::hooks::{Hook, fexit};

/// File writes, renames, unlinks, links, chmods, truncates, symlinks,
/// sensitive reads and `*.sock` connects (`monitor-ebpf/src/vfs.rs`): the
/// opens at `do_filp_open` (the syscalls' and io_uring's, with the flags,
/// mode and name as asked), `truncate(2)` at `vfs_truncate`, the rest at
/// the LSM's `security_path_*` and `security_socket_connect`.
pub(super) const FILE_TIER: &[Hook] = &[
    fexit("vfs_open", "do_filp_open", FILE, true),
    fexit("vfs_truncate", "vfs_truncate", FILE, false),
    fexit("vfs_chmod", "security_path_chmod", FILE, false),
    fexit("vfs_unlink", "security_path_unlink", FILE, false),
    fexit("vfs_rmdir", "security_path_rmdir", FILE, false),
    fexit("vfs_rename", "security_path_rename", FILE, false),
    fexit("vfs_link", "security_path_link", FILE, false),
    fexit("vfs_symlink", "security_path_symlink", FILE, false),
    fexit("vfs_connect", "security_socket_connect", FILE, false),
];

/// The tracepoint rows' concern (`hooks::all_hooks`).
const FILE: &str = "file writes";

/// argv of an exec from the kernel's copy.
pub(super) const EXEC_TIER: &[Hook] = &[];

/// The rare syscalls (`syscalls::HOOKED`) at their entry functions.
pub(super) const SYSCALL_TIER: &[Hook] = &[];

/// Every row of the tier, in the order the loader tries them.
pub(super) const ROWS: [&[Hook]; 3] = [FILE_TIER, EXEC_TIER, SYSCALL_TIER];
