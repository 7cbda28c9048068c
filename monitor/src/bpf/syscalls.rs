//! The rare system calls the kernel programs report as `syscall` events:
//! which tracepoints serve each, and the concern it belongs to. One enter and
//! one exit program (`sys_enter_rare`, `sys_exit_rare`) attach to all of them.

/// One hooked call.
#[derive(Clone, Copy, Debug)]
pub struct RareSyscall {
    pub name: &'static str,
    pub enter: &'static str,
    pub exit: &'static str,
    pub concern: &'static str,
}

const fn call(
    name: &'static str,
    enter: &'static str,
    exit: &'static str,
    concern: &'static str,
) -> RareSyscall {
    RareSyscall {
        name,
        enter,
        exit,
        concern,
    }
}

const CREDENTIALS: &str = "credentials";
const PROCESS_ACCESS: &str = "process access";
const KERNEL: &str = "kernel access";
const MOUNTS: &str = "mounts";
const NAMESPACES: &str = "namespaces";

/// Every call, with its tracepoints (`umount2`'s carry the name of its
/// `SYSCALL_DEFINE`, `umount`). clone, clone3 and socket are filtered in the
/// kernel by their arguments: only namespace flags, only raw and packet
/// sockets leave it.
pub const HOOKED: &[RareSyscall] = &[
    call("setuid", "sys_enter_setuid", "sys_exit_setuid", CREDENTIALS),
    call("setgid", "sys_enter_setgid", "sys_exit_setgid", CREDENTIALS),
    call(
        "setreuid",
        "sys_enter_setreuid",
        "sys_exit_setreuid",
        CREDENTIALS,
    ),
    call(
        "setregid",
        "sys_enter_setregid",
        "sys_exit_setregid",
        CREDENTIALS,
    ),
    call(
        "setresuid",
        "sys_enter_setresuid",
        "sys_exit_setresuid",
        CREDENTIALS,
    ),
    call(
        "setresgid",
        "sys_enter_setresgid",
        "sys_exit_setresgid",
        CREDENTIALS,
    ),
    call(
        "setfsuid",
        "sys_enter_setfsuid",
        "sys_exit_setfsuid",
        CREDENTIALS,
    ),
    call(
        "setfsgid",
        "sys_enter_setfsgid",
        "sys_exit_setfsgid",
        CREDENTIALS,
    ),
    call("capset", "sys_enter_capset", "sys_exit_capset", CREDENTIALS),
    call(
        "ptrace",
        "sys_enter_ptrace",
        "sys_exit_ptrace",
        PROCESS_ACCESS,
    ),
    call(
        "process_vm_writev",
        "sys_enter_process_vm_writev",
        "sys_exit_process_vm_writev",
        PROCESS_ACCESS,
    ),
    call("bpf", "sys_enter_bpf", "sys_exit_bpf", KERNEL),
    call(
        "init_module",
        "sys_enter_init_module",
        "sys_exit_init_module",
        KERNEL,
    ),
    call(
        "finit_module",
        "sys_enter_finit_module",
        "sys_exit_finit_module",
        KERNEL,
    ),
    call(
        "delete_module",
        "sys_enter_delete_module",
        "sys_exit_delete_module",
        KERNEL,
    ),
    call(
        "userfaultfd",
        "sys_enter_userfaultfd",
        "sys_exit_userfaultfd",
        KERNEL,
    ),
    call(
        "io_uring_setup",
        "sys_enter_io_uring_setup",
        "sys_exit_io_uring_setup",
        KERNEL,
    ),
    call("mount", "sys_enter_mount", "sys_exit_mount", MOUNTS),
    call("umount2", "sys_enter_umount", "sys_exit_umount", MOUNTS),
    call("fsmount", "sys_enter_fsmount", "sys_exit_fsmount", MOUNTS),
    call(
        "move_mount",
        "sys_enter_move_mount",
        "sys_exit_move_mount",
        MOUNTS,
    ),
    call(
        "open_tree",
        "sys_enter_open_tree",
        "sys_exit_open_tree",
        MOUNTS,
    ),
    call(
        "unshare",
        "sys_enter_unshare",
        "sys_exit_unshare",
        NAMESPACES,
    ),
    call("setns", "sys_enter_setns", "sys_exit_setns", NAMESPACES),
    call("clone", "sys_enter_clone", "sys_exit_clone", NAMESPACES),
    call("clone3", "sys_enter_clone3", "sys_exit_clone3", NAMESPACES),
    call(
        "socket",
        "sys_enter_socket",
        "sys_exit_socket",
        "raw sockets",
    ),
];
