//! File changes at the kernel's VFS and LSM functions: the fentry tier of the
//! "file writes" concern (`monitor/src/bpf/tier.rs`), in place of `file.rs`'s
//! syscall tracepoints wherever every program here attaches.
//!
//! Each program is an `fexit`: it sees the function's arguments, which are
//! the kernel's own objects (the `struct path` and dentries the lookup
//! resolved, the kernel's copy of a name), and its return value, sent as
//! `FileEvent::ret`. So paths are after symlinks, no user buffer a racing
//! thread rewrites is read, and io_uring's opens are seen like any other.
//!
//! The records are the tracepoint tier's, filled so that the same decoder
//! gives the same `Event`; where this tier knows less, the field says so:
//! - `ret`: for an open, 0 or the open's negative errno (not a descriptor:
//!   there is none yet); for the `security_path_*` hooks, the LSM verdict
//!   (0 = allowed), not the syscall's result, and a call refused before the
//!   hook (no such file, no permission on the directory) is not reported.
//! - `creat(2)` is `open(O_CREAT | O_WRONLY | O_TRUNC)` to the kernel: it is
//!   reported as an `open` with those flags.
//! - `security_path_chmod` also runs for `fchmod(2)`, and
//!   `security_path_unlink`/`_rmdir` for `rmdir(2)`: this tier reports those
//!   too (the tracepoint tier hooks neither).
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::fexit, programs::FExitContext,
};
use monitor_common::{AT_FDCWD, FileEvent, PATH_LEN, SENSITIVE_NAME_LEN, file_op, kind, loss};

use crate::{
    context::{self, Task},
    file::{FILE_SCRATCH, SENSITIVE_NAMES, WRITE_FLAGS, send_record},
    kmem::{read_ptr, read_u32},
    maps::{counted, offset, setting, within_budget},
    path::{KPath, file_identity, read_path, walk_dirfd, walk_kernel},
};

/// `unlinkat`'s flag for a directory: the tracepoint tier's rmdir records carry it.
const AT_REMOVEDIR: u32 = 0x200;
/// The largest errno; an `ERR_PTR` is a pointer in the last 4095 bytes.
const MAX_ERRNO: u64 = 4095;
const S_IALLUGO: u32 = 0o7777;

/// The record of the current task's operation, header written and every
/// optional field empty; `None` when the task is not reported.
#[inline(always)]
fn record(task: Task, op: u32, ret: i64) -> Result<&'static mut FileEvent, u32> {
    // Before any work: a flooding cgroup's records cost it no path walks.
    within_budget(kind::FILE)?;
    let ev = FILE_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    // SAFETY: per-CPU map memory, and a tracing program runs to its end on
    // its CPU (the kernel skips a recursive run of the same program).
    let ev: &'static mut FileEvent = unsafe { &mut *ev };
    task.write_header(kind::FILE, &mut ev.header);
    ev.op = op;
    ev.flags = 0;
    ev.mode = 0;
    ev.dirfd = AT_FDCWD;
    ev.dirfd2 = AT_FDCWD;
    ev.ns_pid = 0;
    ev.ino = 0;
    ev.dev = 0;
    ev._pad2 = 0;
    ev.ret = ret;
    ev.path_len = 0;
    ev.path2_len = 0;
    ev.dir.flags = 0;
    ev.dir.len = 0;
    Ok(ev)
}

/// Copies a kernel string into a path field; returns its length.
#[inline(always)]
fn kernel_str(src: u64, out: &mut [u8; PATH_LEN]) -> u32 {
    let n = unsafe {
        bpf_probe_read_kernel_str(out.as_mut_ptr().cast(), PATH_LEN as u32, src as *const _)
    };
    if n > 0 { n as u32 - 1 } else { 0 }
}

/// The name of `dentry` (its last component) into a path field.
#[inline(always)]
fn dentry_name(dentry: u64, out: &mut [u8; PATH_LEN]) -> Result<u32, u32> {
    let name = unsafe { read_ptr(dentry, offset!(dentry_name) + offset!(qstr_name)) }
        .map_err(|_| loss::READ_FAULT)?;
    Ok(kernel_str(name, out))
}

#[inline(always)]
fn ret_of(ctx: &FExitContext, n: usize) -> i64 {
    // An `int` in a 64-bit slot: the upper half is not defined.
    ctx.arg::<u64>(n) as i32 as i64
}

#[inline(always)]
fn kpath(ptr: u64) -> Result<KPath, u32> {
    unsafe { read_path(ptr) }.map_err(|_| loss::READ_FAULT)
}

/// `do_filp_open(dfd, struct filename *, const struct open_flags *)`: every
/// open by path, the syscalls' and io_uring's alike, after the lookup and
/// the LSM's `security_file_open`. Unlike that hook it has the flags and
/// mode as the caller asked (before the kernel strips `O_CREAT`/`O_TRUNC`),
/// the kernel's copy of the name, and the failed opens too, so the record
/// is the tracepoint tier's: `ret` is 0 or the negative errno.
#[fexit(function = "do_filp_open")]
pub fn vfs_open(ctx: FExitContext) -> u32 {
    counted(kind::FILE, open(&ctx));
    0
}

#[inline(always)]
fn open(ctx: &FExitContext) -> Result<(), u32> {
    if offset!(vfs_valid) == 0 {
        // Userspace could not find the members in this kernel's BTF, and
        // said so; each open of a reported task counts as lost.
        return match context::current() {
            Some(_) => Err(loss::READ_FAULT),
            None => Ok(()),
        };
    }
    let op: u64 = ctx.arg(2);
    let flags = unsafe { read_u32(op, offset!(open_flags_flag)) }.map_err(|_| loss::READ_FAULT)?;
    let file: u64 = ctx.arg(3);
    let failed = file >= 0u64.wrapping_sub(MAX_ERRNO);
    let write = flags & WRITE_FLAGS != 0;
    if !write {
        // A read-only open is reported only when it opened a file whose
        // name is sensitive (`sys_exit_open`'s rule).
        if failed || file == 0 || setting!(sensitive_reads) == 0 {
            return Ok(());
        }
        let mut name = [0u8; SENSITIVE_NAME_LEN];
        let Ok(path) = kpath(file + offset!(file_path) as u64) else {
            return Ok(());
        };
        let Ok(at) = (unsafe { read_ptr(path.dentry, offset!(dentry_name) + offset!(qstr_name)) })
        else {
            return Ok(());
        };
        let n = unsafe {
            bpf_probe_read_kernel_str(
                name.as_mut_ptr().cast(),
                SENSITIVE_NAME_LEN as u32,
                at as *const _,
            )
        };
        if n < 0 || unsafe { SENSITIVE_NAMES.get(&name) }.is_none() {
            return Ok(());
        }
    }
    let Some(task) = context::current() else {
        return Ok(());
    };
    let ret = if failed { file as i64 } else { 0 };
    let ev = record(task, file_op::OPEN, ret)?;
    let dfd: u64 = ctx.arg(0);
    ev.dirfd = dfd as i32;
    if write {
        ev.flags = flags;
        // Zero unless O_CREAT or O_TMPFILE: then the mode asked for.
        let mode =
            unsafe { read_u32(op, offset!(open_flags_mode)) }.map_err(|_| loss::READ_FAULT)?;
        ev.mode = mode & 0xffff & S_IALLUGO;
    } else {
        // As the tracepoint tier: a sensitive read is flagged O_RDONLY and
        // carries the reader's pid in its namespace (`/proc/self/...`).
        ev.ns_pid = context::ns_tgid();
    }
    let pathname: u64 = ctx.arg(1);
    let name =
        unsafe { read_ptr(pathname, offset!(filename_name)) }.map_err(|_| loss::READ_FAULT)?;
    ev.path_len = kernel_str(name, &mut ev.path);
    if !failed {
        if write {
            // The written file's identity: drift follows it through any later name.
            (ev.ino, ev.dev) = file_identity(file);
        }
        // The opened file's own path, as the kernel resolved it.
        walk_kernel(kpath(file + offset!(file_path) as u64)?, true, &mut ev.dir);
    } else if ev.path_len > 0 && ev.path[0] != b'/' {
        walk_dirfd(ev.dirfd, &mut ev.dir);
    } else {
        send_record(ev, 0);
        return Ok(());
    }
    send_record(ev, 1);
    Ok(())
}

/// `vfs_truncate(const struct path *, loff_t)`: `truncate(2)`. Not
/// `security_path_truncate`, which before 6.2 also runs for `ftruncate(2)`
/// and for every `open(O_TRUNC)`, which the open's record reports already.
#[fexit(function = "vfs_truncate")]
pub fn vfs_truncate(ctx: FExitContext) -> u32 {
    counted(
        kind::FILE,
        whole_path(&ctx, file_op::TRUNCATE, 0, ret_of(&ctx, 2)),
    );
    0
}

/// `security_path_chmod(const struct path *, umode_t)`: `chmod(2)`,
/// `fchmodat(2)`, `fchmodat2(2)`, and `fchmod(2)`.
#[fexit(function = "security_path_chmod")]
pub fn vfs_chmod(ctx: FExitContext) -> u32 {
    let mode = ctx.arg::<u64>(1) as u32 & 0xffff;
    counted(
        kind::FILE,
        whole_path(&ctx, file_op::CHMOD, mode, ret_of(&ctx, 2)),
    );
    0
}

/// A record whose path is the file the hook's first argument names, walked
/// whole (`walk_flags::FILE`) as for an opened file.
#[inline(always)]
fn whole_path(ctx: &FExitContext, op: u32, mode: u32, ret: i64) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    let path = kpath(ctx.arg(0))?;
    let ev = record(task, op, ret)?;
    ev.mode = mode;
    walk_kernel(path, true, &mut ev.dir);
    send_record(ev, 1);
    Ok(())
}

/// `security_path_unlink(const struct path *dir, struct dentry *)`.
#[fexit(function = "security_path_unlink")]
pub fn vfs_unlink(ctx: FExitContext) -> u32 {
    counted(kind::FILE, in_dir(&ctx, 0, ret_of(&ctx, 2)));
    0
}

/// `security_path_rmdir(const struct path *dir, struct dentry *)`: the
/// tracepoint tier reports it as `unlinkat(AT_REMOVEDIR)`.
#[fexit(function = "security_path_rmdir")]
pub fn vfs_rmdir(ctx: FExitContext) -> u32 {
    counted(kind::FILE, in_dir(&ctx, AT_REMOVEDIR, ret_of(&ctx, 2)));
    0
}

/// An unlink: the directory walked, the entry's name as the path.
#[inline(always)]
fn in_dir(ctx: &FExitContext, flags: u32, ret: i64) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    let dir = kpath(ctx.arg(0))?;
    let dentry: u64 = ctx.arg(1);
    let ev = record(task, file_op::UNLINK, ret)?;
    ev.flags = flags;
    ev.path_len = dentry_name(dentry, &mut ev.path)?;
    walk_kernel(dir, false, &mut ev.dir);
    send_record(ev, 1);
    Ok(())
}

/// `security_path_rename(old_dir, old_dentry, new_dir, new_dentry, flags)`.
#[fexit(function = "security_path_rename")]
pub fn vfs_rename(ctx: FExitContext) -> u32 {
    counted(kind::FILE, rename(&ctx));
    0
}

#[inline(always)]
fn rename(ctx: &FExitContext) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    let old_dir = kpath(ctx.arg(0))?;
    let new_dir = kpath(ctx.arg(2))?;
    let ev = record(task, file_op::RENAME, ret_of(ctx, 5))?;
    ev.flags = ctx.arg::<u64>(4) as u32;
    ev.path_len = dentry_name(ctx.arg(1), &mut ev.path)?;
    ev.path2_len = dentry_name(ctx.arg(3), &mut ev.path2)?;
    walk_kernel(old_dir, false, &mut ev.dir);
    walk_kernel(new_dir, false, &mut ev.dir2);
    send_record(ev, 2);
    Ok(())
}

/// `security_path_link(old_dentry, new_dir, new_dentry)`. A hard link never
/// crosses mounts, so the old dentry is walked on the new directory's mount.
#[fexit(function = "security_path_link")]
pub fn vfs_link(ctx: FExitContext) -> u32 {
    counted(kind::FILE, link(&ctx));
    0
}

#[inline(always)]
fn link(ctx: &FExitContext) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    let new_dir = kpath(ctx.arg(1))?;
    let old = KPath {
        mnt: new_dir.mnt,
        dentry: ctx.arg(0),
    };
    let ev = record(task, file_op::LINK, ret_of(ctx, 3))?;
    ev.path2_len = dentry_name(ctx.arg(2), &mut ev.path2)?;
    walk_kernel(old, true, &mut ev.dir);
    walk_kernel(new_dir, false, &mut ev.dir2);
    send_record(ev, 2);
    Ok(())
}

/// `security_path_symlink(dir, dentry, old_name)`: `old_name` is the link's
/// content (the kernel's copy), reported as given, like the tracepoint tier.
#[fexit(function = "security_path_symlink")]
pub fn vfs_symlink(ctx: FExitContext) -> u32 {
    counted(kind::FILE, symlink(&ctx));
    0
}

#[inline(always)]
fn symlink(ctx: &FExitContext) -> Result<(), u32> {
    let Some(task) = context::current() else {
        return Ok(());
    };
    let dir = kpath(ctx.arg(0))?;
    let ev = record(task, file_op::SYMLINK, ret_of(ctx, 3))?;
    ev.path_len = kernel_str(ctx.arg(2), &mut ev.path);
    ev.path2_len = dentry_name(ctx.arg(1), &mut ev.path2)?;
    // dir2 follows dir in the record: dir stays marked absent.
    walk_kernel(dir, false, &mut ev.dir2);
    send_record(ev, 2);
    Ok(())
}

const AF_UNIX: u16 = 1;
/// `sizeof(sun_path)`.
const SUN_PATH_LEN: usize = 108;

/// `security_socket_connect(sock, address, addrlen)`: a connect to a unix
/// socket named `*.sock` (`file.rs`'s `sys_enter_connect`), from the
/// kernel's copy of the address.
#[fexit(function = "security_socket_connect")]
pub fn vfs_connect(ctx: FExitContext) -> u32 {
    counted(kind::FILE, connect(&ctx));
    0
}

#[inline(always)]
fn connect(ctx: &FExitContext) -> Result<(), u32> {
    let addr: u64 = ctx.arg(1);
    let family: u16 = unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(addr as *const u16) }
        .map_err(|_| loss::READ_FAULT)?;
    if family != AF_UNIX {
        return Ok(());
    }
    let mut name = [0u8; 128];
    let n = unsafe {
        bpf_probe_read_kernel_str(
            name.as_mut_ptr().cast(),
            SUN_PATH_LEN as u32 + 1,
            (addr + 2) as *const _,
        )
    };
    // At least "x.sock" and its NUL; an abstract socket starts with NUL (n == 1).
    if n < 7 {
        return Ok(());
    }
    let end = (n as usize - 1) & 127;
    if end < 5 || &name[(end - 5) & 127..][..5] != b".sock" {
        return Ok(());
    }
    let Some(task) = context::current() else {
        return Ok(());
    };
    let ev = record(task, file_op::CONNECT, ret_of(ctx, 3))?;
    ev.path_len = kernel_str(addr + 2, &mut ev.path);
    if ev.path_len > 0 && ev.path[0] != b'/' {
        // Relative to the caller's working directory, as `connect(2)` resolves it.
        walk_dirfd(AT_FDCWD, &mut ev.dir);
        send_record(ev, 1);
    } else {
        send_record(ev, 0);
    }
    Ok(())
}
