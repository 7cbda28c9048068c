//! The rare system calls the kernel programs report as `syscall` events:
//! which hooks serve each, and the concern it belongs to. In the tracepoint
//! tier one enter and one exit program (`sys_enter_rare`, `sys_exit_rare`)
//! attach to all of them; in the fentry tier each has its own fexit program
//! on its `__x64_sys_*` function, and `seccomp_refusal` on
//! `__secure_computing` reports the calls a seccomp profile refused.

/// One hooked call.
#[derive(Clone, Copy, Debug)]
pub struct RareSyscall {
    pub name: &'static str,
    /// This architecture's number.
    pub nr: i64,
    pub enter: &'static str,
    pub exit: &'static str,
    pub concern: &'static str,
    /// The fentry tier's fexit program (`monitor-ebpf/src/syscall/fexit.rs`),
    /// and the kernel function it attaches to.
    pub program: &'static str,
    pub function: &'static str,
    /// Filtered in the kernel by its arguments (clone, clone3, socket): a
    /// refusal, whose arguments are unseen, is not reported.
    pub filtered: bool,
}

const CREDENTIALS: &str = "credentials";
const PROCESS_ACCESS: &str = "process access";
const KERNEL: &str = "kernel access";
const MOUNTS: &str = "mounts";
const NAMESPACES: &str = "namespaces";
const RAW_SOCKETS: &str = "raw sockets";

/// One row of [`HOOKED`]: the call's name and number, the name of its
/// `SYSCALL_DEFINE` (which its tracepoints and function carry: `umount2`'s
/// is `umount`), its concern, and whether it is filtered.
macro_rules! calls {
    ($(($name:literal, $nr:ident, $define:literal, $concern:expr, $filtered:expr)),* $(,)?) => {
        &[$(RareSyscall {
            name: $name,
            nr: libc::$nr,
            enter: concat!("sys_enter_", $define),
            exit: concat!("sys_exit_", $define),
            concern: $concern,
            program: concat!("fexit_", $name),
            function: concat!("__x64_sys_", $define),
            filtered: $filtered,
        }),*]
    };
}

/// Every call. clone, clone3 and socket are filtered in the kernel by their
/// arguments: only namespace flags, only raw and packet sockets leave it.
pub const HOOKED: &[RareSyscall] = calls![
    ("setuid", SYS_setuid, "setuid", CREDENTIALS, false),
    ("setgid", SYS_setgid, "setgid", CREDENTIALS, false),
    ("setreuid", SYS_setreuid, "setreuid", CREDENTIALS, false),
    ("setregid", SYS_setregid, "setregid", CREDENTIALS, false),
    ("setresuid", SYS_setresuid, "setresuid", CREDENTIALS, false),
    ("setresgid", SYS_setresgid, "setresgid", CREDENTIALS, false),
    ("setfsuid", SYS_setfsuid, "setfsuid", CREDENTIALS, false),
    ("setfsgid", SYS_setfsgid, "setfsgid", CREDENTIALS, false),
    ("capset", SYS_capset, "capset", CREDENTIALS, false),
    ("ptrace", SYS_ptrace, "ptrace", PROCESS_ACCESS, false),
    (
        "process_vm_writev",
        SYS_process_vm_writev,
        "process_vm_writev",
        PROCESS_ACCESS,
        false
    ),
    ("bpf", SYS_bpf, "bpf", KERNEL, false),
    ("init_module", SYS_init_module, "init_module", KERNEL, false),
    (
        "finit_module",
        SYS_finit_module,
        "finit_module",
        KERNEL,
        false
    ),
    (
        "delete_module",
        SYS_delete_module,
        "delete_module",
        KERNEL,
        false
    ),
    ("userfaultfd", SYS_userfaultfd, "userfaultfd", KERNEL, false),
    (
        "io_uring_setup",
        SYS_io_uring_setup,
        "io_uring_setup",
        KERNEL,
        false
    ),
    ("mount", SYS_mount, "mount", MOUNTS, false),
    ("umount2", SYS_umount2, "umount", MOUNTS, false),
    ("fsmount", SYS_fsmount, "fsmount", MOUNTS, false),
    ("move_mount", SYS_move_mount, "move_mount", MOUNTS, false),
    ("open_tree", SYS_open_tree, "open_tree", MOUNTS, false),
    ("unshare", SYS_unshare, "unshare", NAMESPACES, false),
    ("setns", SYS_setns, "setns", NAMESPACES, false),
    ("clone", SYS_clone, "clone", NAMESPACES, true),
    ("clone3", SYS_clone3, "clone3", NAMESPACES, true),
    ("socket", SYS_socket, "socket", RAW_SOCKETS, true),
];

/// The fentry tier's program for the seccomp refusals of every call, on
/// the function that runs the filters. One program, so the trampoline on a
/// function every syscall of a confined task calls runs one program only: it
/// is a concern of its own. It reports the refusals of the calls whose
/// concern the fentry tier serves (the loader fills `REFUSABLE` once the
/// tiers are settled); the tracepoint tier's exits report the others'.
pub const REFUSAL_PROGRAM: &str = "seccomp_refusal";
pub const REFUSAL_FUNCTION: &str = "__secure_computing";
pub const REFUSALS: &str = "seccomp refusals";
