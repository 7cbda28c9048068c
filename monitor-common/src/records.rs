//! The records the kernel programs send through the ring buffer: the
//! [`Header`] every one starts with, one struct per kind, and the values
//! their `op`, `flags` and `action` fields take. Apart from the crate root,
//! which keeps the sizes and the kind and loss numbering they share with
//! the maps.
use crate::{ARGS_LEN, CGROUP_PATH_LEN, COMM_LEN, DIR_LEN, PATH_LEN};

/// File operations, `FileEvent::op`.
pub mod file_op {
    pub const OPEN: u32 = 1;
    pub const CREAT: u32 = 2;
    pub const RENAME: u32 = 3;
    pub const UNLINK: u32 = 4;
    pub const CHMOD: u32 = 5;
    pub const TRUNCATE: u32 = 6;
    pub const LINK: u32 = 7;
    pub const SYMLINK: u32 = 8;
    /// A connect to a unix socket whose path ends in `.sock` (container
    /// runtimes, the kubelet): `path` is the socket's.
    pub const CONNECT: u32 = 9;
}

/// Network operations, `NetEvent::op`.
pub mod net_op {
    pub const CONNECT: u32 = 1;
    pub const SENDMSG: u32 = 2;
    pub const BIND: u32 = 3;
}

/// What the kernel programs did to the operation a record reports
/// (`NetEvent::action`, `ExecEvent::action`): enforcement, only for the
/// containers the agent enforces (`--enforce`).
pub mod action {
    /// Nothing: the operation went ahead.
    pub const NONE: u32 = 0;
    /// A connect or sendmsg refused (the call fails with EPERM).
    pub const DENIED: u32 = 1;
    /// The exec'd process was sent SIGKILL before its first instruction.
    pub const KILLED: u32 = 2;
    /// A kill was due but `bpf_send_signal` failed: the program runs.
    pub const KILL_FAILED: u32 = 3;
    /// A write to a protected path refused by the BPF LSM programs (the
    /// call fails with EPERM): `FileEvent::action`, reported as `denied`.
    pub const REFUSED: u32 = 4;
}

/// Cgroup operations, `CgroupEvent::op`.
pub mod cgroup_op {
    pub const MKDIR: u32 = 1;
    pub const RMDIR: u32 = 2;
}

/// Bits of [`DirWalk::flags`].
pub mod walk_flags {
    /// The walk ran (the path was relative and offsets were known).
    pub const PRESENT: u32 = 1;
    /// The walk stopped before the root: the directory is incomplete.
    pub const TRUNCATED: u32 = 2;
    /// The walk was wanted but failed (no offsets, a read fault, a closed fd).
    pub const FAILED: u32 = 4;
    /// The walk started at the opened file itself, so it is the file's whole
    /// path as the kernel resolved it (symlinks, `/proc/self/root`, `..`),
    /// not the directory a relative path starts from.
    pub const FILE: u32 = 8;
}

/// `AT_FDCWD` as the syscalls see it.
pub const AT_FDCWD: i32 = -100;

/// Common to every record: who did it, where, and when.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u32,
    /// Thread-group id (the process id as users know it).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()`, monotonic since boot.
    pub ktime_ns: u64,
    /// cgroup v2 id: the inode number of the cgroup directory.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// A directory the kernel walked from dentries, leaf component first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DirWalk {
    pub flags: u32,
    /// Bytes written in `buf`.
    pub len: u32,
    pub buf: [u8; DIR_LEN],
}

/// A successful `execve`/`execveat`, from `sched_process_exec`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: Header,
    /// Parent's thread-group id (0 when the kernel offsets are unknown).
    pub ppid: u32,
    /// The pid that called exec (differs from `header.pid` when a thread execs).
    pub old_pid: u32,
    pub filename_len: u32,
    /// Bytes of `args` used; arguments are NUL separated.
    pub args_len: u32,
    pub argc: u32,
    /// 1 when argv had more than [`MAX_ARGS`](crate::MAX_ARGS) entries or did not fit.
    pub args_truncated: u32,
    /// What enforcement did ([`action`]).
    pub action: u32,
    pub _pad: u32,
    /// The executed file's inode and device (the kernel's dev_t), 0 when
    /// unknown: drift is judged by identity, whatever name reached it.
    pub exe_ino: u64,
    pub exe_dev: u32,
    pub _pad2: u32,
    /// The kernel's copy of the filename (`bprm->filename`).
    pub filename: [u8; PATH_LEN],
    pub args: [u8; ARGS_LEN],
    /// The working directory, walked when `filename` is relative.
    pub cwd: DirWalk,
}

/// argv stashed per thread at `sys_enter_execve` (or, in the fentry tier, at
/// `security_bprm_committed_creds`), consumed at `sched_process_exec`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecArgs {
    pub args_len: u32,
    pub argc: u32,
    pub truncated: u32,
    pub _pad: u32,
    pub args: [u8; ARGS_LEN],
}

/// A rare, security-relevant system call (credential, namespace, mount,
/// module, bpf, ptrace, raw socket ...), sent when it returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallEvent {
    pub header: Header,
    /// The architecture's syscall number (`__syscall_nr`).
    pub nr: u32,
    /// Bits of [`syscall_flags`].
    pub flags: u32,
    /// The raw arguments, when the call was seen entering.
    pub args: [u64; 6],
    /// The return value (negative errno on failure).
    pub ret: i64,
}

/// Bits of [`SyscallEvent::flags`].
pub mod syscall_flags {
    /// `args` hold the call's arguments (its `sys_enter` ran).
    pub const ARGS: u32 = 1;
    /// Any call outside the syscall profile (`SyscallBitmap`), sent the
    /// first time its cgroup makes it; `nr` may be any number.
    pub const UNEXPECTED: u32 = 2;
}

/// One bit per syscall number, `nr / 64` the word and `nr % 64` the bit:
/// the profile of expected calls, and per cgroup the unexpected calls
/// already reported. Numbers from [`SyscallBitmap::OUT_OF_RANGE`] up share
/// that last bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallBitmap {
    pub words: [u64; 8],
}

impl SyscallBitmap {
    /// The bit that stands for every number from here up (x32 calls,
    /// garbage): x86_64 has about 460 calls.
    pub const OUT_OF_RANGE: u64 = 511;

    /// The word and the mask of call `nr`.
    #[inline(always)]
    pub fn position(nr: u64) -> (usize, u64) {
        let nr = if nr > Self::OUT_OF_RANGE {
            Self::OUT_OF_RANGE
        } else {
            nr
        };
        ((nr / 64) as usize & 7, 1u64 << (nr % 64))
    }

    #[inline(always)]
    pub fn contains(&self, nr: u64) -> bool {
        let (word, mask) = Self::position(nr);
        self.words[word] & mask != 0
    }

    #[inline(always)]
    pub fn insert(&mut self, nr: u64) {
        let (word, mask) = Self::position(nr);
        self.words[word] |= mask;
    }
}

/// A new process (not a thread), from `sched_process_fork`. The header is the parent's.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub header: Header,
    pub child_pid: u32,
    pub _pad: u32,
}

/// A process ended (its thread-group leader exited).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: Header,
    pub exit_code: i32,
    pub _pad: u32,
}

/// A file opened for writing, created, renamed, removed or chmod-ed.
///
/// The arguments are kept per thread at `sys_enter_*`; the record is built at
/// `sys_exit_*`, with the result, and sent only as long as it needs to be
/// (see [`FileEvent::SIZE_NO_DIRS`]): userspace zero-fills the rest.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileEvent {
    pub header: Header,
    pub op: u32,
    /// `open` flags (`O_WRONLY`, `O_TRUNC`, ...) or the chmod mode.
    pub flags: u32,
    pub mode: u32,
    pub path_len: u32,
    pub path2_len: u32,
    /// The dirfd the path is relative to (`AT_FDCWD` or a descriptor).
    pub dirfd: i32,
    pub dirfd2: i32,
    /// For a read-only open: the caller's process id in its own pid
    /// namespace (what `/proc/<pid>` means inside its container); 0 for
    /// other operations, or when this kernel's BTF does not tell.
    pub ns_pid: u32,
    /// What enforcement did ([`action`]): `REFUSED` when the LSM programs
    /// refused this operation.
    pub action: u32,
    pub _pad: u32,
    /// A successful open's file: inode and device (the kernel's dev_t), 0
    /// for other operations or when unknown.
    pub ino: u64,
    pub dev: u32,
    pub _pad2: u32,
    /// The syscall's return value (negative errno on failure).
    pub ret: i64,
    /// The path as the process passed it (cut at `PATH_LEN - 1` bytes).
    pub path: [u8; PATH_LEN],
    /// The second path: the new name of a rename or link, the link of a symlink.
    pub path2: [u8; PATH_LEN],
    /// The directory `path` is relative to, walked when `path` is relative;
    /// for a successful open, the opened file's own path (`walk_flags::FILE`).
    pub dir: DirWalk,
    /// The directory `path2` is relative to.
    pub dir2: DirWalk,
}

impl FileEvent {
    /// Bytes sent when neither path needed a directory walk: the walks are
    /// last so that a record can stop before them.
    pub const SIZE_NO_DIRS: usize = core::mem::offset_of!(FileEvent, dir);
    /// Bytes sent when only `path` needed a walk.
    pub const SIZE_ONE_DIR: usize = core::mem::offset_of!(FileEvent, dir2);
}

impl ExecEvent {
    /// Bytes sent when the cwd was not walked (the filename was absolute).
    pub const SIZE_NO_CWD: usize = core::mem::offset_of!(ExecEvent, cwd);
}

/// A connect or sendmsg with a destination, seen by the cgroup socket hooks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetEvent {
    pub header: Header,
    pub op: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u32,
    /// `IPPROTO_TCP` (6) or `IPPROTO_UDP` (17).
    pub protocol: u32,
    /// Destination port, host byte order.
    pub dport: u32,
    /// Destination address, network byte order; IPv4 uses the first 4 bytes.
    pub daddr: [u8; 16],
    /// What enforcement did ([`action`]).
    pub action: u32,
    pub _pad: u32,
}

/// The most of a DNS message a [`DnsEvent`] carries: the classic 512-byte
/// UDP limit twice over, enough for the answers of address lookups (a longer
/// message is cut, and userspace reads what of it parses).
pub const DNS_PAYLOAD_MAX: usize = 1024;

/// A DNS response (UDP or TCP, source port 53) received by a socket of a
/// watched cgroup, seen by the `cgroup_skb` ingress hook. It runs in softirq
/// context: the header's pid, tid, uid, gid and comm are 0, and `cgroup_id`
/// is the receiving socket's cgroup, not the current task's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsEvent {
    pub header: Header,
    /// The message's length in the packet (it may exceed the bytes copied).
    pub len: u32,
    /// How many bytes of `payload` hold the message.
    pub copied: u32,
    /// The DNS message (without TCP's two-byte length prefix).
    pub payload: [u8; DNS_PAYLOAD_MAX],
}

/// A cgroup directory made or removed in the v2 hierarchy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupEvent {
    pub header: Header,
    pub op: u32,
    pub level: u32,
    pub id: u64,
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; CGROUP_PATH_LEN],
}
