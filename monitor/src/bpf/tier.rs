//! The rows of the fentry tier ([`Tier::Fentry`](super::hooks::Tier)): for
//! each concern, the `fentry`/`fexit` programs that serve it in place of its
//! syscall tracepoints wherever this kernel lets them all attach.
//!
//! A concern's rows here carry the same concern name as the tracepoint rows
//! they replace (`hooks::all_hooks`): the loader compares by that name.
use super::hooks::Hook;

/// File writes, renames, unlinks, links, chmods, truncates, symlinks,
/// sensitive reads and `*.sock` connects, from the `security_*` hooks.
pub(super) const FILE_TIER: &[Hook] = &[];

/// argv of an exec from the kernel's copy.
pub(super) const EXEC_TIER: &[Hook] = &[];

/// The rare syscalls (`syscalls::HOOKED`) at their entry functions.
pub(super) const SYSCALL_TIER: &[Hook] = &[];

/// Every row of the tier, in the order the loader tries them.
pub(super) const ROWS: [&[Hook]; 3] = [FILE_TIER, EXEC_TIER, SYSCALL_TIER];
