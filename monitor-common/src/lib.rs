//! Records shared by the kernel programs and the agent.
//!
//! Every record starts with a [`Header`]; its `kind` says which record follows.
//! All records are `#[repr(C)]` with explicit padding so that both sides agree
//! on the layout without any serialisation step. Strings are NUL-padded byte
//! arrays; their `*_len` fields say how many bytes the kernel wrote.
#![no_std]

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Room for a path string copied from user memory (`openat`'s `filename`).
pub const PATH_LEN: usize = 256;
/// Room for a directory walked in the kernel (cwd, a dirfd's file). Components are
/// written leaf first, each followed by a NUL; userspace reverses them. Writing
/// stops at `DIR_LEN / 2` so that one more component (at most 255 bytes) fits.
pub const DIR_LEN: usize = 1024;
/// How many path components the kernel walks at most.
pub const DIR_MAX_DEPTH: u32 = 40;
/// Room for a cgroup path from the `cgroup_mkdir` tracepoint.
pub const CGROUP_PATH_LEN: usize = 512;
/// Room for argv, the arguments NUL separated.
pub const ARGS_LEN: usize = 1024;
/// How many arguments of argv are copied at most.
pub const MAX_ARGS: u32 = 32;
/// Bytes of a file name the sensitive-read filter compares (NUL padded).
pub const SENSITIVE_NAME_LEN: usize = 32;

/// Record kinds. With [`loss`], the index into the lost-event counters.
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const FILE: u32 = 4;
    pub const NET: u32 = 5;
    pub const CGROUP: u32 = 6;
    pub const SYSCALL: u32 = 7;
    /// Not a record of its own: the lost-event counters count here, besides
    /// under the record's kind, an enforcement action (a denied connect, a
    /// killed exec) whose record could not be sent, so that an action taken
    /// without its alert is always told apart from an ordinary lost event.
    pub const ACTION: u32 = 8;
    /// A DNS answer a watched cgroup's socket received (see [`DnsEvent`](super::DnsEvent)).
    pub const DNS: u32 = 9;
    /// One past the largest kind: the size of the lost-event counter array.
    pub const COUNT: u32 = 10;

    /// Name used in logs and metrics.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            EXEC => "exec",
            FORK => "fork",
            EXIT => "exit",
            FILE => "file",
            NET => "network",
            CGROUP => "cgroup",
            SYSCALL => "syscall",
            ACTION => "enforcement",
            DNS => "dns",
            _ => "unknown",
        }
    }
}

/// Why the kernel programs could not send a record: the second index of the
/// lost-event counters (`kind * loss::COUNT + reason`). Every fallible step
/// on the way to the ring buffer counts its failures under one of these, so
/// no event is lost without a counter a user sees.
pub mod loss {
    /// The ring buffer was full.
    pub const RING_FULL: u32 = 0;
    /// A per-thread stash (syscall arguments kept from enter to exit) was full.
    pub const MAP_FULL: u32 = 1;
    /// A read of the tracepoint record, user or kernel memory faulted.
    pub const READ_FAULT: u32 = 2;
    /// The per-CPU scratch space could not be had.
    pub const NO_SCRATCH: u32 = 3;
    /// The cgroup had used its share of the ring buffer ([`super::Settings`]
    /// `fair_*`): one container's flood may not push out everyone's events.
    pub const RATE_LIMITED: u32 = 4;
    pub const COUNT: u32 = 5;

    /// Name used in logs and metrics.
    pub fn name(reason: u32) -> &'static str {
        match reason {
            RING_FULL => "ring_buffer_full",
            MAP_FULL => "stash_full",
            READ_FAULT => "read_fault",
            NO_SCRATCH => "no_scratch",
            RATE_LIMITED => "rate_limited",
            _ => "unknown",
        }
    }
}

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
}

/// Enforcement maps, filled by the agent for each enforced container.
pub mod enforce {
    /// Port segments one egress verdict holds; a container whose allowlist
    /// needs more for one prefix is not enforced (the agent says so).
    pub const SEGMENTS: usize = 16;
    /// Bytes of an egress verdict key after the prefix length: the cgroup id
    /// (8, native order), the family (4: 4 or 6), the address (16, network
    /// order; IPv4 in the first 4).
    pub const EGRESS_KEY_LEN: usize = 28;
    /// Prefix bits of the key taken by the cgroup id and the family, before
    /// the address's own.
    pub const EGRESS_KEY_FIXED_BITS: u32 = 96;
    /// `PortSegment::allow` bits.
    pub const ALLOW_TCP: u32 = 1;
    pub const ALLOW_UDP: u32 = 2;
    pub const ALLOW_OTHER: u32 = 4;
    /// The FNV-1a 64 offset basis of a whole path's hash, and of a final
    /// component's (distinct, so a name never matches a path).
    pub const PATH_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    pub const NAME_BASIS: u64 = 0xcbf2_9ce4_8422_2325 ^ 0x6e61_6d65;
    pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    /// FNV-1a 64 of `bytes` from `basis`: the hash the exec hook takes of
    /// the kernel's filename (whole, and from after its last `/`).
    pub const fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
        let mut h = basis;
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(FNV_PRIME);
            i += 1;
        }
        h
    }
}

/// Ports `lo..=hi` (host order) where the protocols in `allow` may go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSegment {
    pub lo: u16,
    pub hi: u16,
    pub allow: u32,
}

/// What an enforced container may reach below one address prefix: a port
/// absent from every segment is denied.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressVerdict {
    pub count: u32,
    pub _pad: u32,
    pub segments: [PortSegment; enforce::SEGMENTS],
}

/// A kill-on-exec entry: an enforced cgroup and the hash of an executable
/// path or file name (`enforce::fnv1a`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExecKey {
    pub cgroup_id: u64,
    pub hash: u64,
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

/// Key of the per-cgroup loss counters (`CGROUP_LOST`): the records of one
/// kind a cgroup's tasks could not send, for one reason ([`loss`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CgroupLossKey {
    /// cgroup v2 id of the task whose record was lost.
    pub cgroup_id: u64,
    pub kind: u32,
    pub reason: u32,
}

/// The per-cgroup budget's state (`FAIR_BUCKETS`), as in the generic cell
/// rate algorithm: the time at which the cgroup's budget would be whole
/// again. Each record sent moves it on by `Settings::fair_interval_ns`; a
/// record is over budget when it lies more than `fair_burst_ns` ahead of now.
/// One number, no multiplication or division in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FairBucket {
    /// `bpf_ktime_get_ns()` at which the budget is full again.
    pub tat_ns: u64,
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
    /// 1 when argv had more than [`MAX_ARGS`] entries or did not fit.
    pub args_truncated: u32,
    /// What enforcement did ([`action`]).
    pub action: u32,
    pub _pad: u32,
    /// The kernel's copy of the filename (`bprm->filename`).
    pub filename: [u8; PATH_LEN],
    pub args: [u8; ARGS_LEN],
    /// The working directory, walked when `filename` is relative.
    pub cwd: DirWalk,
}

/// argv stashed per thread at `sys_enter_execve`, consumed at `sched_process_exec`.
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

/// Offsets the kernel programs need but cannot know at build time: kernel
/// struct members (read from the running kernel's BTF) and the tracepoint
/// fields outside the stable syscall ABI (read from tracefs `format` files).
/// Handed to the programs as a global before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// 1 when the struct member offsets below were all found.
    pub structs_valid: u32,
    pub task_fs: u32,
    pub task_files: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_exit_code: u32,
    pub fs_pwd: u32,
    pub fs_root: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name: u32,
    /// Offset of `name` inside `struct qstr`.
    pub qstr_name: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_path: u32,
    pub vfsmount_root: u32,
    /// Offset of the `struct vfsmount` embedded in `struct mount`.
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    /// 1 when the cgroup members below were all found: the route to a task's
    /// cgroup v2 ancestry on kernels whose tracing programs lack
    /// `bpf_get_current_ancestor_cgroup_id` (5.10 among them; see `Settings`).
    pub cgroups_valid: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_parent: u32,
    pub kernfs_id: u32,
    /// 1 when the members below were all found: the route to a task's
    /// process id in its own pid namespace (`group_leader->thread_pid->
    /// numbers[level].nr`), which `/proc` inside its container shows.
    pub pidns_valid: u32,
    pub task_group_leader: u32,
    pub task_thread_pid: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`; `nr` is its first member.
    pub upid_size: u32,
    /// Tracepoint fields (`sched/*`, `cgroup/*`), from tracefs.
    pub tp_exec_filename: u32,
    pub tp_exec_pid: u32,
    pub tp_exec_old_pid: u32,
    pub tp_cgroup_root: u32,
    pub tp_cgroup_level: u32,
    pub tp_cgroup_id: u32,
    pub tp_cgroup_path: u32,
    pub _pad: u32,
}

impl KernelOffsets {
    /// All unknown: what the kernel object holds until userspace writes the
    /// running kernel's offsets.
    pub const ZERO: KernelOffsets = KernelOffsets {
        structs_valid: 0,
        task_fs: 0,
        task_files: 0,
        task_real_parent: 0,
        task_tgid: 0,
        task_pid: 0,
        task_exit_code: 0,
        fs_pwd: 0,
        fs_root: 0,
        path_mnt: 0,
        path_dentry: 0,
        dentry_parent: 0,
        dentry_name: 0,
        qstr_name: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_path: 0,
        vfsmount_root: 0,
        mount_mnt: 0,
        mount_parent: 0,
        mount_mountpoint: 0,
        cgroups_valid: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_kn: 0,
        kernfs_parent: 0,
        kernfs_id: 0,
        pidns_valid: 0,
        task_group_leader: 0,
        task_thread_pid: 0,
        pid_level: 0,
        pid_numbers: 0,
        upid_size: 0,
        tp_exec_filename: 0,
        tp_exec_pid: 0,
        tp_exec_old_pid: 0,
        tp_cgroup_root: 0,
        tp_cgroup_level: 0,
        tp_cgroup_id: 0,
        tp_cgroup_path: 0,
        _pad: 0,
    };
}

/// Agent settings the kernel programs read, handed over as a global before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// The agent's own thread-group id: its actions are never reported.
    pub agent_pid: u32,
    /// 1: report only tasks in the subtrees whose roots are in `SCOPE_ROOTS`.
    pub filter_cgroups: u32,
    /// The hierarchy id of cgroup v2 as `cgroup_mkdir` reports it in `root`: that
    /// tracepoint fires for the v1 hierarchies too, and only v2 is kept.
    pub cgroup2_root: u32,
    /// 1: decide the cgroup scope by walking the task's cgroup v2 parents
    /// (`KernelOffsets::task_cgroups`...), because this kernel's tracing
    /// programs may not call `bpf_get_current_ancestor_cgroup_id`.
    pub scope_by_walk: u32,
    /// This architecture's numbers of the calls the rare-syscall programs
    /// filter by argument (only namespace flags, only raw sockets).
    pub nr_clone: u32,
    pub nr_clone3: u32,
    pub nr_socket: u32,
    /// 1: successful read-only opens whose file name is in `SENSITIVE_NAMES`
    /// are reported (as `open` with `O_RDONLY`).
    pub sensitive_reads: u32,
    /// 1: `--enforce`: the exec hook kills what `KILL_EXECS` names.
    pub enforce: u32,
    pub _pad: u32,
    /// Per-cgroup fairness: the ring buffer time one budgeted record (file,
    /// network, syscall) costs its cgroup, `1e9 / rate`; 0 switches the
    /// budget off. Exec, fork, exit and cgroup records are never budgeted.
    pub fair_interval_ns: u64,
    /// How far ahead of now a cgroup's budget may run: `burst * interval`.
    pub fair_burst_ns: u64,
}

impl Settings {
    /// All off: what the kernel object holds until userspace writes the
    /// agent's settings (a `const`, as a global's initialiser must be).
    pub const ZERO: Settings = Settings {
        agent_pid: 0,
        filter_cgroups: 0,
        cgroup2_root: 0,
        scope_by_walk: 0,
        nr_clone: 0,
        nr_clone3: 0,
        nr_socket: 0,
        sensitive_reads: 0,
        enforce: 0,
        _pad: 0,
        fair_interval_ns: 0,
        fair_burst_ns: 0,
    };
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data records with explicit padding and no pointers.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::PortSegment {}
    unsafe impl aya::Pod for super::EgressVerdict {}
    unsafe impl aya::Pod for super::ExecKey {}
    unsafe impl aya::Pod for super::CgroupLossKey {}
    unsafe impl aya::Pod for super::FairBucket {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_multiples_of_eight() {
        // Records are read with unaligned copies, but keeping them 8-aligned keeps
        // the ring buffer free of holes and both sides' layouts obviously equal.
        assert_eq!(size_of::<Header>() % 8, 0);
        assert_eq!(size_of::<ExecEvent>() % 8, 0);
        assert_eq!(size_of::<FileEvent>() % 8, 0);
        assert_eq!(size_of::<NetEvent>() % 8, 0);
        assert_eq!(size_of::<CgroupEvent>() % 8, 0);
        assert_eq!(size_of::<ForkEvent>() % 8, 0);
        assert_eq!(size_of::<SyscallEvent>() % 8, 0);
        assert_eq!(size_of::<KernelOffsets>() % 8, 0);
        assert_eq!(size_of::<Settings>() % 8, 0);
        assert_eq!(size_of::<CgroupLossKey>(), 16);
    }

    #[test]
    fn the_kernel_defaults_are_the_zero_values() {
        assert_eq!(KernelOffsets::ZERO, KernelOffsets::default());
        let zero = Settings::ZERO;
        assert_eq!(
            (zero.agent_pid, zero.enforce, zero.fair_interval_ns),
            (0, 0, 0)
        );
    }

    #[test]
    fn header_layout() {
        assert_eq!(size_of::<Header>(), 56);
        assert_eq!(core::mem::offset_of!(Header, cgroup_id), 32);
    }
}
