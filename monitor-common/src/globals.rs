//! What the agent hands the kernel programs as globals before load: the
//! running kernel's offsets and the agent's settings. Apart from the
//! records because they travel the other way, from the agent to the kernel,
//! once.

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
    // The fentry tier's file programs (`vfs.rs`): 1 when the members below
    // were all found; without them the tier's file rows are not loaded.
    pub vfs_valid: u32,
    /// `struct open_flags`: `open_flag` (int) and `mode` (umode_t).
    pub open_flags_flag: u32,
    pub open_flags_mode: u32,
    /// `struct filename`: `name`, the kernel's copy of the path.
    pub filename_name: u32,
    /// Tracepoint fields (`sched/*`, `cgroup/*`), from tracefs.
    pub tp_exec_filename: u32,
    pub tp_exec_pid: u32,
    pub tp_exec_old_pid: u32,
    pub tp_cgroup_root: u32,
    pub tp_cgroup_level: u32,
    pub tp_cgroup_id: u32,
    pub tp_cgroup_path: u32,
    // The fentry tier's exec and seccomp programs (kept apart from the
    // members above: the file programs add their own block).
    /// 1 when the `struct linux_binprm` members below were found: exec's
    /// argv read from the kernel's copy at `security_bprm_committed_creds`.
    pub bprm_valid: u32,
    /// `p`: where the argv strings start, on the new program's stack.
    pub bprm_p: u32,
    pub bprm_argc: u32,
    /// `task_struct.stack`, 0 when unknown: a seccomp refusal's syscall
    /// number and errno are in the registers saved at the stack's top.
    pub task_stack: u32,
    // Files by identity (device, inode): the refusal of protected writes
    // (`lsm.rs`), the executed file of an exec and the file an open wrote
    // (drift by inode). 1 when the members below were found.
    pub inode_valid: u32,
    /// `dentry.d_inode`, `inode.i_ino` (an unsigned long), `inode.i_sb`,
    /// `super_block.s_dev` (the kernel's dev_t, `major << 20 | minor`).
    pub dentry_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    /// `file.f_mode` (`FMODE_WRITE`) and `file.f_flags` (`O_TRUNC`).
    pub file_f_mode: u32,
    pub file_f_flags: u32,
    /// `linux_binprm.filename`: the refusal of denied execs.
    pub bprm_filename: u32,
    /// `task_struct.mm`, `mm_struct.exe_file`, `file.f_inode`: the file a
    /// task executes, and an open file's inode.
    pub task_mm: u32,
    pub mm_exe_file: u32,
    pub file_inode: u32,
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
        vfs_valid: 0,
        open_flags_flag: 0,
        open_flags_mode: 0,
        filename_name: 0,
        tp_exec_filename: 0,
        tp_exec_pid: 0,
        tp_exec_old_pid: 0,
        tp_cgroup_root: 0,
        tp_cgroup_level: 0,
        tp_cgroup_id: 0,
        tp_cgroup_path: 0,
        bprm_valid: 0,
        bprm_p: 0,
        bprm_argc: 0,
        task_stack: 0,
        inode_valid: 0,
        dentry_inode: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
        file_f_mode: 0,
        file_f_flags: 0,
        bprm_filename: 0,
        task_mm: 0,
        mm_exe_file: 0,
        file_inode: 0,
    };
}

/// The hierarchy id of cgroup v2 as `cgroup_mkdir` reports it in `root`
/// (the default hierarchy is always 0): that tracepoint fires for the v1
/// hierarchies too, and only v2 is kept.
pub const CGROUP2_HIERARCHY_ID: u32 = 0;

/// Agent settings the kernel programs read, handed over as a global before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// The agent's own thread-group id: its actions are never reported.
    pub agent_pid: u32,
    /// 1: report only tasks in the subtrees whose roots are in `SCOPE_ROOTS`.
    pub filter_cgroups: u32,
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
        scope_by_walk: 0,
        nr_clone: 0,
        nr_clone3: 0,
        nr_socket: 0,
        sensitive_reads: 0,
        enforce: 0,
        fair_interval_ns: 0,
        fair_burst_ns: 0,
    };
}
