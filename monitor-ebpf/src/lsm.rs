//! Refusal of protected writes (`--enforce`, file rules with `action: deny`),
//! through BPF LSM on kernels that have it active.
//!
//! Each program runs at an LSM hook of a write to the file system (an open
//! for writing or truncating, a create, a removal, a rename, a link, a chmod
//! or chown) and returns `-EPERM` when the task's cgroup is protected and the
//! target is below a protected directory or is a protected file.
//!
//! Targets are judged by identity, not by name: userspace resolves each
//! protected path inside the container to its device and inode
//! (`PROTECTED`), and the program walks from the target's dentry up to the
//! top of the task's mount tree, looking every ancestor up. So a symlink, a
//! bind mount, `/proc/self/root` or a relative path cannot name a protected
//! file past the check, and no string is compared in the kernel. That is
//! also why it needs no `bpf_d_path` (which LSM programs lack before 5.11).
//!
//! The operation's file record (the fentry or tracepoint tier's) reports the
//! refusal: the program marks the thread in `REFUSED`, and the record sent
//! for the failed call takes the mark (`file::send_record`).
//!
//! `refuse_exec` refuses, at `bprm_check_security`, an exec that the exec
//! hook would kill (`exec::kill_due`): the caller's `execve` fails with
//! EPERM and it goes on as the program it was. The exec never happens, so
//! this program sends its record (`action::DENIED`).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_get_current_cgroup_id},
    macros::{lsm, map},
    maps::{HashMap, LruHashMap},
    programs::LsmContext,
};
use monitor_common::{
    DIR_MAX_DEPTH, ProtectKey, action,
    enforce::{ALLOW_EXACT, ALLOW_TREE, DENY_EXACT, DENY_TREE},
    kind, loss,
};

use crate::{
    context, exec,
    kmem::{read_ptr, read_u32},
    maps::{count_lost, offset, setting},
    path::{KPath, inode_identity, read_path},
};

/// The cgroups whose writes are judged: a task of any other cgroup costs one lookup.
#[map]
pub static PROTECTED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Protected files and directories by cgroup, device and inode, with the
/// `enforce::{DENY,ALLOW}_{EXACT,TREE}` bits of the rules naming them.
#[map]
pub static PROTECTED: HashMap<ProtectKey, u32> = HashMap::with_max_entries(16384, 0);

/// Threads whose last write was refused here, with when: the file record of
/// that call reports the refusal. An LRU: a mark whose record never came
/// (the call was out of the file programs' scope) ages out.
#[map]
pub static REFUSED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

const EPERM: i32 = 1;
const FMODE_WRITE: u32 = 0x2;
const O_TRUNC: u32 = 0o1000;

/// `start` is the target (which may not exist yet: a negative dentry has no
/// inode, and only its parents are judged). Refused when a rule's deny
/// entry covers it and no allow entry does, as userspace judges the same
/// rule's `paths` and `allow`: an exact entry covers its own file, a tree
/// entry everything below its directory.
#[inline(always)]
fn protected(cgroup_id: u64, start: KPath) -> bool {
    if offset!(inode_valid) == 0 {
        return false;
    }
    // A walk a fault stopped: what it read so far decides.
    let (Ok(bits) | Err(bits)) = unsafe { judge(cgroup_id, start) };
    bits & (DENY_EXACT | DENY_TREE) != 0 && bits & (ALLOW_EXACT | ALLOW_TREE) == 0
}

/// The entry bits that apply to `start`, collected from it and its
/// ancestors across mounts. `Err` holds what was collected when a read faulted.
#[inline(always)]
unsafe fn judge(cgroup_id: u64, start: KPath) -> Result<u32, u32> {
    let mut dentry = start.dentry;
    let mut vfsmnt = start.mnt;
    let mut mount = vfsmnt - offset!(mount_mnt) as u64;
    // Exact entries apply to the target itself (level 0), tree entries to
    // its ancestors; a mount crossing stays at the same path, so the same level.
    let mut applies = DENY_EXACT | ALLOW_EXACT;
    let mut bits = 0;
    for _ in 0..DIR_MAX_DEPTH {
        let inode = unsafe { read_ptr(dentry, offset!(dentry_inode)) }.map_err(|_| bits)?;
        if inode != 0 {
            let key = unsafe { identity(cgroup_id, inode) }.map_err(|_| bits)?;
            if let Some(v) = unsafe { PROTECTED.get(&key) } {
                bits |= *v & applies;
            }
        }
        let mnt_root = unsafe { read_ptr(vfsmnt, offset!(vfsmount_root)) }.map_err(|_| bits)?;
        if dentry == mnt_root {
            let parent = unsafe { read_ptr(mount, offset!(mount_parent)) }.map_err(|_| bits)?;
            if parent == mount {
                return Ok(bits);
            }
            dentry = unsafe { read_ptr(mount, offset!(mount_mountpoint)) }.map_err(|_| bits)?;
            mount = parent;
            vfsmnt = mount + offset!(mount_mnt) as u64;
            continue;
        }
        let parent = unsafe { read_ptr(dentry, offset!(dentry_parent)) }.map_err(|_| bits)?;
        if parent == dentry {
            return Ok(bits);
        }
        dentry = parent;
        applies = DENY_TREE | ALLOW_TREE;
    }
    Ok(bits)
}

/// The `PROTECTED` key of `inode` for `cgroup_id`.
#[inline(always)]
unsafe fn identity(cgroup_id: u64, inode: u64) -> Result<ProtectKey, i64> {
    let (ino, dev) = unsafe { inode_identity(inode) }?;
    Ok(ProtectKey {
        cgroup_id,
        ino,
        dev,
        _pad: 0,
    })
}

/// The cgroup of the current task when its writes are judged.
#[inline(always)]
fn judged_cgroup() -> Option<u64> {
    if setting!(enforce) == 0 {
        return None;
    }
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    unsafe { PROTECTED_CGROUPS.get(&cgroup_id) }.map(|_| cgroup_id)
}

/// The hook's answer for a refused write, with the thread marked for its record.
#[inline(always)]
fn refuse() -> i32 {
    let now = unsafe { bpf_ktime_get_ns() };
    if REFUSED
        .insert(&bpf_get_current_pid_tgid(), &now, 0)
        .is_err()
    {
        // The write is refused all the same; its record will not say so.
        count_lost(kind::ACTION, loss::MAP_FULL);
    }
    -EPERM
}

/// The verdict on one target given as a `struct path *` (`arg`).
#[inline(always)]
fn judge_path(ctx: &LsmContext, arg: usize) -> i32 {
    let Some(cgroup_id) = judged_cgroup() else {
        return 0;
    };
    let path: u64 = ctx.arg(arg);
    match unsafe { read_path(path) } {
        Ok(p) if protected(cgroup_id, p) => refuse(),
        _ => 0,
    }
}

/// The verdict on a name in a directory: `dir` a `struct path *` and
/// `dentry` the name's (possibly negative) dentry, on the directory's mount.
#[inline(always)]
fn judge_entry(ctx: &LsmContext, cgroup_id: u64, dir: usize, dentry: usize) -> bool {
    let dir: u64 = ctx.arg(dir);
    let dentry: u64 = ctx.arg(dentry);
    let Ok(mnt) = (unsafe { read_ptr(dir, offset!(path_mnt)) }) else {
        return false;
    };
    protected(cgroup_id, KPath { mnt, dentry })
}

/// A hook whose target is a name in a directory (`dir`, `dentry` arguments).
macro_rules! entry_hook {
    ($name:ident, $hook:literal) => {
        #[lsm(hook = $hook)]
        pub fn $name(ctx: LsmContext) -> i32 {
            match judged_cgroup() {
                Some(cg) if judge_entry(&ctx, cg, 0, 1) => refuse(),
                _ => 0,
            }
        }
    };
}

entry_hook!(protect_path_unlink, "path_unlink");
entry_hook!(protect_path_rmdir, "path_rmdir");
entry_hook!(protect_path_mkdir, "path_mkdir");
// Also the creation of a file by open(O_CREAT) (`may_o_create`).
entry_hook!(protect_path_mknod, "path_mknod");
entry_hook!(protect_path_symlink, "path_symlink");

/// Opens for writing or truncating.
#[lsm(hook = "file_open")]
pub fn protect_file_open(ctx: LsmContext) -> i32 {
    let Some(cgroup_id) = judged_cgroup() else {
        return 0;
    };
    let file: u64 = ctx.arg(0);
    let (Ok(mode), Ok(flags)) = (unsafe {
        (
            read_u32(file, offset!(file_f_mode)),
            read_u32(file, offset!(file_f_flags)),
        )
    }) else {
        return 0;
    };
    if mode & FMODE_WRITE == 0 && flags & O_TRUNC == 0 {
        return 0;
    }
    match unsafe { read_path(file + offset!(file_path) as u64) } {
        Ok(p) if protected(cgroup_id, p) => refuse(),
        _ => 0,
    }
}

#[lsm(hook = "path_truncate")]
pub fn protect_path_truncate(ctx: LsmContext) -> i32 {
    judge_path(&ctx, 0)
}

#[lsm(hook = "path_chmod")]
pub fn protect_path_chmod(ctx: LsmContext) -> i32 {
    judge_path(&ctx, 0)
}

#[lsm(hook = "path_chown")]
pub fn protect_path_chown(ctx: LsmContext) -> i32 {
    judge_path(&ctx, 0)
}

/// A rename moves a protected file out as surely as it replaces one: both
/// sides are judged. (`old_dir, old_dentry, new_dir, new_dentry[, flags]`.)
#[lsm(hook = "path_rename")]
pub fn protect_path_rename(ctx: LsmContext) -> i32 {
    match judged_cgroup() {
        Some(cg) if judge_entry(&ctx, cg, 0, 1) || judge_entry(&ctx, cg, 2, 3) => refuse(),
        _ => 0,
    }
}

/// A hard link to a protected file is a second name that writes go through
/// past every path rule: the existing side is judged as well as the new
/// name. (`old_dentry, new_dir, new_dentry`; a link stays on one mount.)
#[lsm(hook = "path_link")]
pub fn protect_path_link(ctx: LsmContext) -> i32 {
    let Some(cg) = judged_cgroup() else {
        return 0;
    };
    if judge_entry(&ctx, cg, 1, 2) {
        return refuse();
    }
    let old: u64 = ctx.arg(0);
    let new_dir: u64 = ctx.arg(1);
    let Ok(mnt) = (unsafe { read_ptr(new_dir, offset!(path_mnt)) }) else {
        return 0;
    };
    if protected(cg, KPath { mnt, dentry: old }) {
        return refuse();
    }
    0
}

/// An exec the container's kill rules name, refused before the new
/// program is loaded. A failure to read it lets the exec go on to be
/// killed at `sched_process_exec`, as on kernels without BPF LSM.
#[lsm(hook = "bprm_check_security")]
pub fn refuse_exec(ctx: LsmContext) -> i32 {
    if setting!(enforce) == 0 || offset!(inode_valid) == 0 {
        return 0;
    }
    match try_refuse_exec(&ctx) {
        Ok(true) => -EPERM,
        Ok(false) => 0,
        Err(reason) => {
            count_lost(kind::EXEC, reason);
            0
        }
    }
}

#[inline(always)]
fn try_refuse_exec(ctx: &LsmContext) -> Result<bool, u32> {
    let Some(task) = context::current() else {
        return Ok(false);
    };
    let bprm: u64 = ctx.arg(0);
    let filename =
        unsafe { read_ptr(bprm, offset!(bprm_filename)) }.map_err(|_| loss::READ_FAULT)?;
    let pid = (task.pid_tgid >> 32) as u32;
    let ev = exec::exec_record(task, pid, filename)?;
    if !exec::kill_due(task.cgroup_id, &ev.filename, ev.filename_len) {
        return Ok(false);
    }
    // The tracepoint tier's argv (the fentry tier reads it only past the
    // point of no return, which a refused exec never reaches).
    exec::take_args(ev, pid);
    // The task still runs the caller's program: the refused file's
    // identity is not the task's.
    ev.exe_ino = 0;
    ev.exe_dev = 0;
    ev.action = action::DENIED;
    exec::send_exec(ev);
    Ok(true)
}
