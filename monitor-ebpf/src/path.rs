//! Directory paths walked from dentries, for relative paths and dirfds.
//!
//! Rust eBPF code gets no CO-RE relocations, so the member offsets come from
//! userspace, which read them from the running kernel's BTF (`OFFSETS`).
//! Components are written leaf first, each NUL-terminated; userspace reverses
//! them. That keeps every write at a bounded, masked offset the verifier accepts.
use aya_ebpf::helpers::{bpf_get_current_task, generated::bpf_probe_read_kernel_str};
use monitor_common::{AT_FDCWD, DIR_LEN, DIR_MAX_DEPTH, DirWalk, SENSITIVE_NAME_LEN, walk_flags};

use crate::{
    kmem::{read_ptr, read_u32},
    maps::offset,
};

/// Writes stop once this much is used, so one more 255-byte name still fits.
const WRITE_LIMIT: u32 = (DIR_LEN / 2) as u32;
const NAME_MAX: u32 = 256;

/// A `struct path`: the mount and the dentry.
#[derive(Clone, Copy)]
pub struct KPath {
    pub mnt: u64,
    pub dentry: u64,
}

/// The `struct path` at `base`.
#[inline(always)]
pub unsafe fn read_path(base: u64) -> Result<KPath, i64> {
    unsafe {
        Ok(KPath {
            mnt: read_ptr(base, offset!(path_mnt))?,
            dentry: read_ptr(base, offset!(path_dentry))?,
        })
    }
}

/// The `struct file` behind descriptor `fd` of task `task`.
#[inline(always)]
pub unsafe fn fd_file(task: u64, fd: i32) -> Result<u64, i64> {
    unsafe {
        let files = read_ptr(task, offset!(task_files))?;
        let fdt = read_ptr(files, offset!(files_fdt))?;
        let max_fds = read_u32(fdt, offset!(fdt_max_fds))?;
        if fd < 0 || fd as u32 >= max_fds {
            return Err(-9); // EBADF
        }
        let fd_array = read_ptr(fdt, offset!(fdt_fd))?;
        let file = read_ptr(fd_array, fd as u32 * 8)?;
        if file == 0 {
            return Err(-9);
        }
        Ok(file)
    }
}

/// The path of the file behind descriptor `fd` of the current task.
#[inline(always)]
unsafe fn fd_path(task: u64, fd: i32) -> Result<KPath, i64> {
    unsafe { read_path(fd_file(task, fd)? + offset!(file_path) as u64) }
}

/// An inode's number and device (`super_block.s_dev`, the kernel's dev_t).
#[inline(always)]
pub unsafe fn inode_identity(inode: u64) -> Result<(u64, u32), i64> {
    unsafe {
        let ino = read_ptr(inode, offset!(inode_ino))?;
        let sb = read_ptr(inode, offset!(inode_sb))?;
        Ok((ino, read_u32(sb, offset!(sb_dev))?))
    }
}

/// The identity of an open `struct file`'s inode; (0, 0) when unknown.
#[inline(always)]
pub fn file_identity(file: u64) -> (u64, u32) {
    if offset!(inode_valid) == 0 || file == 0 {
        return (0, 0);
    }
    unsafe { read_ptr(file, offset!(file_inode)).and_then(|inode| inode_identity(inode)) }
        .unwrap_or((0, 0))
}

/// The identity of the file the current task executes; (0, 0) when unknown.
#[inline(always)]
pub fn exe_identity() -> (u64, u32) {
    if offset!(inode_valid) == 0 {
        return (0, 0);
    }
    let task = unsafe { bpf_get_current_task() };
    let file = unsafe {
        read_ptr(task, offset!(task_mm)).and_then(|mm| read_ptr(mm, offset!(mm_exe_file)))
    };
    file_identity(file.unwrap_or(0))
}

/// The identity of the file open as `fd` in the current task; (0, 0) when unknown.
#[inline(always)]
pub fn fd_identity(fd: i32) -> (u64, u32) {
    if offset!(inode_valid) == 0 {
        return (0, 0);
    }
    let file = unsafe { fd_file(bpf_get_current_task(), fd) };
    file_identity(file.unwrap_or(0))
}

/// The final component of the file open as `fd` in the current task, NUL
/// padded into `out` (cut at its size): the key of an in-kernel name filter.
#[inline(always)]
pub fn fd_name(fd: i32, out: &mut [u8; SENSITIVE_NAME_LEN]) -> Result<(), i64> {
    if offset!(structs_valid) == 0 {
        return Err(-1);
    }
    unsafe {
        let task = bpf_get_current_task();
        let path = fd_path(task, fd)?;
        let name = read_ptr(path.dentry, offset!(dentry_name) + offset!(qstr_name))?;
        let n = bpf_probe_read_kernel_str(
            out.as_mut_ptr().cast(),
            SENSITIVE_NAME_LEN as u32,
            name as *const _,
        );
        if n < 0 { Err(n) } else { Ok(()) }
    }
}

/// Fills `out` with the directory a path given relative to `dirfd` starts from.
#[inline(always)]
pub fn walk_dirfd(dirfd: i32, out: &mut DirWalk) {
    walk_from(dirfd, -1, out);
}

/// Fills `out` with the whole path of the file open as `fd` (flagged
/// `walk_flags::FILE`): the kernel's own path for it, whatever string the
/// caller passed. With `fd` negative, or where that cannot be read, walks the
/// directory of `dirfd` instead, as [`walk_dirfd`].
#[inline(always)]
pub fn walk_opened(fd: i32, dirfd: i32, out: &mut DirWalk) {
    walk_from(dirfd, fd, out);
}

/// Fills `out` with the path of `start`, a `struct path` a kernel function
/// was handed (the fentry tier), up to the task's root: with `file`, it is
/// the file's own path (`walk_flags::FILE`), else a directory's.
#[inline(always)]
pub fn walk_kernel(start: KPath, file: bool, out: &mut DirWalk) {
    out.len = 0;
    if offset!(structs_valid) == 0 {
        out.flags = walk_flags::FAILED;
        return;
    }
    let kind = if file { walk_flags::FILE } else { 0 };
    out.flags = match unsafe { try_walk_kernel(start, out) } {
        Ok(flags) => walk_flags::PRESENT | flags | kind,
        Err(_) => walk_flags::FAILED,
    };
}

#[inline(always)]
unsafe fn try_walk_kernel(start: KPath, out: &mut DirWalk) -> Result<u32, i64> {
    unsafe {
        let fs = read_ptr(bpf_get_current_task(), offset!(task_fs))?;
        if fs == 0 {
            return Err(-1);
        }
        let root = read_path(fs + offset!(fs_root) as u64)?;
        walk(start, root, out)
    }
}

/// One walk loop for both starts: the program is verified once per call
/// site, and a second inlined loop would double its instruction count.
#[inline(always)]
fn walk_from(dirfd: i32, opened: i32, out: &mut DirWalk) {
    out.len = 0;
    if offset!(structs_valid) == 0 {
        out.flags = walk_flags::FAILED;
        return;
    }
    out.flags = match unsafe { try_walk_from(dirfd, opened, out) } {
        Ok(flags) => walk_flags::PRESENT | flags,
        Err(_) => walk_flags::FAILED,
    };
}

/// Straight-line on purpose (no closures): every call the compiler does not
/// inline is a BPF subprogram whose frame adds to the 512 bytes that older
/// kernels allow along a call chain, rounded up to 32 each.
#[inline(always)]
unsafe fn try_walk_from(dirfd: i32, opened: i32, out: &mut DirWalk) -> Result<u32, i64> {
    unsafe {
        let task = bpf_get_current_task();
        let fs = read_ptr(task, offset!(task_fs))?;
        if fs == 0 {
            return Err(-1);
        }
        let root = read_path(fs + offset!(fs_root) as u64)?;
        let file = if opened >= 0 {
            fd_path(task, opened).ok()
        } else {
            None
        };
        let (start, kind) = match file {
            Some(path) => (path, walk_flags::FILE),
            None if dirfd == AT_FDCWD => (read_path(fs + offset!(fs_pwd) as u64)?, 0),
            None => (fd_path(task, dirfd)?, 0),
        };
        Ok(walk(start, root, out)? | kind)
    }
}

/// Walks from `start` up to `root` (the task's root, so paths inside a
/// container are the container's own) or the top of the mount tree.
///
/// The write position lives in `out.len` (map memory, read and written
/// volatile) rather than in a register: the verifier then sees an unknown but
/// masked scalar on every iteration, the states of all branches look alike
/// and are pruned, instead of one state per combination of mount crossings.
#[inline(always)]
unsafe fn walk(start: KPath, root: KPath, out: &mut DirWalk) -> Result<u32, i64> {
    let mut dentry = start.dentry;
    let mut vfsmnt = start.mnt;
    let mut mount = vfsmnt - offset!(mount_mnt) as u64;
    let len = &raw mut out.len;
    let buf = out.buf.as_mut_ptr();
    unsafe { len.write_volatile(0) };
    for _ in 0..DIR_MAX_DEPTH {
        if dentry == root.dentry && vfsmnt == root.mnt {
            return Ok(0);
        }
        let mnt_root = unsafe { read_ptr(vfsmnt, offset!(vfsmount_root))? };
        if dentry == mnt_root {
            // The top of this mount: continue from where it is mounted.
            let parent = unsafe { read_ptr(mount, offset!(mount_parent))? };
            if parent == mount {
                return Ok(0);
            }
            dentry = unsafe { read_ptr(mount, offset!(mount_mountpoint))? };
            mount = parent;
            vfsmnt = mount + offset!(mount_mnt) as u64;
            continue;
        }
        let parent = unsafe { read_ptr(dentry, offset!(dentry_parent))? };
        if parent == dentry {
            return Ok(0);
        }
        let pos = unsafe { len.read_volatile() };
        if pos >= WRITE_LIMIT {
            return Ok(walk_flags::TRUNCATED);
        }
        let name = unsafe { read_ptr(dentry, offset!(dentry_name) + offset!(qstr_name))? };
        // The mask proves to the verifier that pos + NAME_MAX stays inside buf.
        let at = (pos & (WRITE_LIMIT - 1)) as usize;
        let n =
            unsafe { bpf_probe_read_kernel_str(buf.add(at).cast(), NAME_MAX, name as *const _) };
        if n <= 0 {
            return Err(n);
        }
        unsafe { len.write_volatile(pos + n as u32) };
        dentry = parent;
    }
    Ok(walk_flags::TRUNCATED)
}
