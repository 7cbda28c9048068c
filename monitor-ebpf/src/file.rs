//! File changes: opens for writing, creation, rename, unlink, chmod, truncate,
//! link and symlink. Each `sys_enter_*` filters and keeps the arguments per
//! thread; the shared `sys_exit` program builds the record with the result and
//! sends it.
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_get_current_cgroup_id, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use monitor_common::{
    AT_FDCWD, FileEvent, PATH_LEN, SENSITIVE_NAME_LEN, action, file_op, kind, loss,
};

use crate::{
    context,
    maps::{counted, send, setting, within_budget},
    path::{fd_identity, fd_name, walk_dirfd, walk_opened},
};

/// The arguments of a file syscall in flight, by thread id (kept from
/// `sys_enter_*` to `sys_exit_*`). A plain hash, not an LRU: an LRU would
/// evict another thread's entry without a word, a full hash refuses the
/// insert, which is counted.
#[map]
pub static PENDING_FILE: HashMap<u32, Call> = HashMap::with_max_entries(16384, 0);

/// File names whose read-only opens are reported (credential material):
/// one lookup per successful read-only open, the common case a miss.
#[map]
pub static SENSITIVE_NAMES: HashMap<[u8; SENSITIVE_NAME_LEN], u32> =
    HashMap::with_max_entries(256, 0);

/// Per-CPU room to build records larger than the 512-byte stack.
#[map]
pub static FILE_SCRATCH: PerCpuArray<FileEvent> = PerCpuArray::with_max_entries(1, 0);

const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const EPERM: i64 = 1;
/// Opens with any of these flags can change the file; the rest are reads.
pub const WRITE_FLAGS: u32 = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;

/// What a `sys_enter_*` program read from its arguments, kept per thread
/// until the syscall returns. Small on purpose: the record itself is built
/// only once, at exit, straight into per-CPU scratch.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Call {
    op: u32,
    dirfd: i32,
    path: u64,
    dirfd2: i32,
    /// Whether `path` names a file (a symlink's first argument is just text).
    resolve_path: u32,
    /// 0 when the call has one path.
    path2: u64,
    flags: u32,
    mode: u32,
}

impl Call {
    fn one(op: u32, dirfd: i32, path: u64) -> Self {
        Call {
            op,
            dirfd,
            path,
            dirfd2: AT_FDCWD,
            path2: 0,
            resolve_path: 1,
            flags: 0,
            mode: 0,
        }
    }

    fn two(op: u32, dirfd: i32, path: u64, dirfd2: i32, path2: u64) -> Self {
        Call {
            dirfd2,
            path2,
            ..Call::one(op, dirfd, path)
        }
    }
}

#[inline(always)]
fn arg<T>(ctx: &TracePointContext, slot: usize) -> Result<T, u32> {
    // Syscall tracepoint arguments are 8-byte slots from offset 16 (stable ABI).
    unsafe {
        ctx.read_at::<T>(16 + slot * 8)
            .map_err(|_| loss::READ_FAULT)
    }
}

#[inline(always)]
fn open_call(op: u32, dirfd: i32, path: u64, flags: u32, mode: u32) -> Option<Call> {
    if flags & WRITE_FLAGS == 0 {
        return None;
    }
    Some(Call {
        flags,
        mode,
        ..Call::one(op, dirfd, path)
    })
}

#[inline(always)]
fn stash(call: Call) -> Result<(), u32> {
    if context::current().is_none() {
        return Ok(());
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    PENDING_FILE
        .insert(&tid, &call, 0)
        .map_err(|_| loss::MAP_FULL)
}

/// Builds the record for a finished call and sends as much of it as is used.
#[inline(always)]
fn complete(call: &Call, ret: i64) -> Result<(), u32> {
    // Before any work: a flooding cgroup's records cost it no path walks.
    within_budget(kind::FILE)?;
    let ev = FILE_SCRATCH.get_ptr_mut(0).ok_or(loss::NO_SCRATCH)?;
    let ev: &mut FileEvent = unsafe { &mut *ev };
    // Filtered at enter already: the call was stashed only when in scope.
    context::write_header(
        kind::FILE,
        bpf_get_current_pid_tgid(),
        unsafe { bpf_get_current_cgroup_id() },
        &mut ev.header,
    );
    ev.op = call.op;
    ev.flags = call.flags;
    ev.mode = call.mode;
    ev.dirfd = call.dirfd;
    ev.dirfd2 = call.dirfd2;
    ev.ret = ret;
    // Only read-only opens are ever completed without a flag (the sensitive
    // reads): the rules tell a read of `/proc/<own pid>/environ` from
    // another process's by this pid, and writes need not pay for it.
    ev.ns_pid = if call.op == file_op::OPEN && call.flags == 0 {
        context::ns_tgid()
    } else {
        0
    };
    let n = unsafe {
        bpf_probe_read_user_str(
            ev.path.as_mut_ptr().cast(),
            PATH_LEN as u32,
            call.path as *const _,
        )
    };
    ev.path_len = if n > 0 { n as u32 - 1 } else { 0 };
    let mut dirs = 0;
    // A successful open has a descriptor: its path is the kernel's, with
    // symlinks, `/proc/self/root` and `..` resolved, and no user buffer a
    // racing thread could rewrite after the call.
    let opened = (call.op == file_op::OPEN || call.op == file_op::CREAT) && ret >= 0;
    let relative = call.resolve_path != 0 && ev.path_len > 0 && ev.path[0] != b'/';
    if opened || relative {
        // One call site: each inlined walk loop costs the verifier again.
        let fd = if opened { ret as i32 } else { -1 };
        walk_opened(fd, call.dirfd, &mut ev.dir);
        dirs = 1;
    } else {
        ev.dir.flags = 0;
        ev.dir.len = 0;
    }
    // The written file's identity: drift follows it through any later name.
    (ev.ino, ev.dev) = if opened && call.flags != 0 {
        fd_identity(ret as i32)
    } else {
        (0, 0)
    };
    ev._pad2 = 0;
    ev.path2_len = 0;
    if call.path2 != 0 {
        let n = unsafe {
            bpf_probe_read_user_str(
                ev.path2.as_mut_ptr().cast(),
                PATH_LEN as u32,
                call.path2 as *const _,
            )
        };
        ev.path2_len = if n > 0 { n as u32 - 1 } else { 0 };
        if ev.path2_len > 0 && ev.path2[0] != b'/' {
            if dirs == 0 {
                // dir2 follows dir in the record: mark dir absent explicitly.
                ev.dir.flags = 0;
                ev.dir.len = 0;
            }
            walk_dirfd(call.dirfd2, &mut ev.dir2);
            dirs = 2;
        }
    }
    send_record(ev, dirs);
    Ok(())
}

/// Sends a file record cut after its last walked directory (`dirs` of
/// them: the tiers fill the record alike and send it alike).
#[inline(always)]
pub fn send_record(ev: &mut FileEvent, dirs: u32) {
    // A write the LSM programs refused fails with EPERM; the mark is the
    // thread's, taken by the record of the call it refused.
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.action = action::NONE;
    ev._pad = 0;
    if unsafe { crate::lsm::REFUSED.get(&pid_tgid) }.is_some() {
        // Taken; an entry that stays (a failed delete) is an LRU's to age out.
        let _ = crate::lsm::REFUSED.remove(&pid_tgid);
        if ev.ret == -EPERM {
            ev.action = action::REFUSED;
        }
    }
    let size = match dirs {
        0 => FileEvent::SIZE_NO_DIRS,
        1 => FileEvent::SIZE_ONE_DIR,
        _ => size_of::<FileEvent>(),
    };
    // SAFETY: `size` is at most the record's size, and the record is in map memory.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const FileEvent).cast::<u8>(), size) };
    send(bytes, kind::FILE);
}

/// Defines a `sys_enter_*` program from a function that reads the call.
macro_rules! enter {
    ($name:ident, |$ctx:ident| $body:expr) => {
        #[tracepoint]
        pub fn $name($ctx: TracePointContext) -> u32 {
            let call: Result<Option<Call>, u32> = (|| Ok($body))();
            counted(kind::FILE, call.and_then(|call| call.map_or(Ok(()), stash)));
            0
        }
    };
}

enter!(sys_enter_openat, |ctx| open_call(
    file_op::OPEN,
    arg(&ctx, 0)?,
    arg(&ctx, 1)?,
    arg(&ctx, 2)?,
    arg(&ctx, 3)?
));
enter!(sys_enter_openat2, |ctx| {
    // struct open_how starts with u64 flags, then u64 mode.
    let how: u64 = arg(&ctx, 2)?;
    let flags: u64 =
        unsafe { bpf_probe_read_user(how as *const u64).map_err(|_| loss::READ_FAULT)? };
    let mode: u64 =
        unsafe { bpf_probe_read_user((how + 8) as *const u64).map_err(|_| loss::READ_FAULT)? };
    open_call(
        file_op::OPEN,
        arg(&ctx, 0)?,
        arg(&ctx, 1)?,
        flags as u32,
        mode as u32,
    )
});
enter!(sys_enter_open, |ctx| open_call(
    file_op::OPEN,
    AT_FDCWD,
    arg(&ctx, 0)?,
    arg(&ctx, 1)?,
    arg(&ctx, 2)?
));
enter!(sys_enter_creat, |ctx| open_call(
    file_op::CREAT,
    AT_FDCWD,
    arg(&ctx, 0)?,
    O_CREAT | O_WRONLY | O_TRUNC,
    arg(&ctx, 1)?
));
enter!(sys_enter_renameat2, |ctx| Some(Call {
    flags: arg(&ctx, 4)?,
    ..Call::two(
        file_op::RENAME,
        arg(&ctx, 0)?,
        arg(&ctx, 1)?,
        arg(&ctx, 2)?,
        arg(&ctx, 3)?
    )
}));
enter!(sys_enter_renameat, |ctx| Some(Call::two(
    file_op::RENAME,
    arg(&ctx, 0)?,
    arg(&ctx, 1)?,
    arg(&ctx, 2)?,
    arg(&ctx, 3)?
)));
enter!(sys_enter_rename, |ctx| Some(Call::two(
    file_op::RENAME,
    AT_FDCWD,
    arg(&ctx, 0)?,
    AT_FDCWD,
    arg(&ctx, 1)?
)));
enter!(sys_enter_unlinkat, |ctx| Some(Call {
    flags: arg(&ctx, 2)?,
    ..Call::one(file_op::UNLINK, arg(&ctx, 0)?, arg(&ctx, 1)?)
}));
enter!(sys_enter_unlink, |ctx| Some(Call::one(
    file_op::UNLINK,
    AT_FDCWD,
    arg(&ctx, 0)?
)));
enter!(sys_enter_fchmodat, |ctx| Some(Call {
    mode: arg(&ctx, 2)?,
    ..Call::one(file_op::CHMOD, arg(&ctx, 0)?, arg(&ctx, 1)?)
}));
enter!(sys_enter_fchmodat2, |ctx| Some(Call {
    mode: arg(&ctx, 2)?,
    ..Call::one(file_op::CHMOD, arg(&ctx, 0)?, arg(&ctx, 1)?)
}));
enter!(sys_enter_chmod, |ctx| Some(Call {
    mode: arg(&ctx, 1)?,
    ..Call::one(file_op::CHMOD, AT_FDCWD, arg(&ctx, 0)?)
}));
enter!(sys_enter_truncate, |ctx| Some(Call::one(
    file_op::TRUNCATE,
    AT_FDCWD,
    arg(&ctx, 0)?
)));
enter!(sys_enter_linkat, |ctx| Some(Call::two(
    file_op::LINK,
    arg(&ctx, 0)?,
    arg(&ctx, 1)?,
    arg(&ctx, 2)?,
    arg(&ctx, 3)?
)));
enter!(sys_enter_link, |ctx| Some(Call::two(
    file_op::LINK,
    AT_FDCWD,
    arg(&ctx, 0)?,
    AT_FDCWD,
    arg(&ctx, 1)?
)));
enter!(sys_enter_symlinkat, |ctx| Some(Call {
    resolve_path: 0,
    ..Call::two(
        file_op::SYMLINK,
        AT_FDCWD,
        arg(&ctx, 0)?,
        arg(&ctx, 1)?,
        arg(&ctx, 2)?
    )
}));
enter!(sys_enter_symlink, |ctx| Some(Call {
    resolve_path: 0,
    ..Call::two(
        file_op::SYMLINK,
        AT_FDCWD,
        arg(&ctx, 0)?,
        AT_FDCWD,
        arg(&ctx, 1)?
    )
}));

const AF_UNIX: u16 = 1;
/// `sizeof(sun_path)`.
const SUN_PATH_LEN: usize = 108;

/// A connect to a unix socket named `*.sock`: how a container reaches a
/// mounted `docker.sock`, `containerd.sock`, `crio.sock` or the kubelet's.
/// Every other connect (TCP, UDP, ordinary unix sockets) costs one read of
/// the address family or one string compare, and never leaves the kernel.
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    counted(kind::FILE, unix_connect(&ctx));
    0
}

#[inline(always)]
fn unix_connect(ctx: &TracePointContext) -> Result<(), u32> {
    let addr: u64 = arg(ctx, 1)?;
    let family: u16 =
        unsafe { bpf_probe_read_user(addr as *const u16) }.map_err(|_| loss::READ_FAULT)?;
    if family != AF_UNIX {
        return Ok(());
    }
    let path = addr + 2;
    let mut name = [0u8; 128];
    let n = unsafe {
        bpf_probe_read_user_str(
            name.as_mut_ptr().cast(),
            SUN_PATH_LEN as u32 + 1,
            path as *const _,
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
    stash(Call::one(file_op::CONNECT, AT_FDCWD, path))
}

/// Attached to the `sys_exit_*` tracepoint of every syscall above but the opens.
#[tracepoint]
pub fn sys_exit_file(ctx: TracePointContext) -> u32 {
    finish(&ctx);
    0
}

/// Attached to the exits of `openat`, `openat2` and `open`: a write is
/// finished as above; a read-only open (nothing stashed) of a file whose name
/// is sensitive is reported too.
#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    if !finish(&ctx) && setting!(sensitive_reads) != 0 {
        counted(kind::FILE, sensitive_read(&ctx));
    }
    0
}

/// Completes the stashed call of this thread, if there is one.
#[inline(always)]
fn finish(ctx: &TracePointContext) -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(call) = (unsafe { PENDING_FILE.get(&tid) }) else {
        return false;
    };
    let call = *call;
    // Cannot fail: the entry was just read, and only this thread removes it.
    let _ = PENDING_FILE.remove(&tid);
    counted(kind::FILE, complete(&call, arg::<i64>(ctx, 0).unwrap_or(0)));
    true
}

#[inline(always)]
fn sensitive_read(ctx: &TracePointContext) -> Result<(), u32> {
    let fd: i64 = arg(ctx, 0)?;
    if fd < 0 || context::current().is_none() {
        return Ok(());
    }
    let mut name = [0u8; SENSITIVE_NAME_LEN];
    if fd_name(fd as i32, &mut name).is_err() {
        // The descriptor was closed by another thread already: no file to name.
        return Ok(());
    }
    if unsafe { SENSITIVE_NAMES.get(&name) }.is_none() {
        return Ok(());
    }
    // Not stashed at enter, so no write flag: a read-only open. The path is
    // the kernel's, from the descriptor (the caller's string is gone by now).
    let call = Call {
        op: file_op::OPEN,
        dirfd: AT_FDCWD,
        path: 0,
        dirfd2: AT_FDCWD,
        resolve_path: 0,
        path2: 0,
        flags: 0,
        mode: 0,
    };
    complete(&call, fd)
}

#[inline(always)]
pub fn forget_thread(tid: u32) {
    // Fails only when there was no entry, the usual case.
    let _ = PENDING_FILE.remove(&tid);
}
