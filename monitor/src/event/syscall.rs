//! The rare system calls the kernel programs report (`kind::SYSCALL`): their
//! names, the arguments that matter, by name, and the result.
use serde::Serialize;

/// The alert record's `syscall` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyscallInfo {
    /// The call's name (`setns`, `ptrace`, ...).
    pub name: &'static str,
    /// The arguments that matter, by name (a JSON object, in the call's
    /// order); empty when the call was not seen entering (see `refused`).
    #[serde(serialize_with = "args_as_object")]
    pub args: Vec<(&'static str, ArgValue)>,
    /// The return value: `-errno` on failure.
    pub result: i64,
    /// The call failed without ever entering the kernel's syscall code:
    /// refused by a seccomp profile. The attempt itself is the signal.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// A call outside the syscall profile (`--syscall-profile`), reported
    /// the first time its cgroup made it; `args` are not read for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unexpected: bool,
    /// The call's number, on an unexpected call (its name is `unknown` when
    /// this architecture's table has no such call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nr: Option<u32>,
}

fn args_as_object<S: serde::Serializer>(
    args: &[(&'static str, ArgValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(args.iter().map(|(k, v)| (k, v)))
}

/// An argument as a reader wants it: a number, or flag and request names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ArgValue {
    Number(u64),
    Names(Vec<&'static str>),
}

impl SyscallInfo {
    /// The named argument, if it was seen.
    pub fn arg(&self, name: &str) -> Option<&ArgValue> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// How one call's arguments read.
struct Shape {
    name: &'static str,
    nr: i64,
    args: &'static [(&'static str, Render)],
}

#[derive(Clone, Copy)]
enum Render {
    Number,
    /// An id where `u32::MAX` (`-1`) means "unchanged".
    Id,
    NamespaceFlags,
    PtraceRequest,
    SocketFamily,
    SocketType,
}

const ID: Render = Render::Id;
const NUM: Render = Render::Number;

const SHAPES: &[Shape] = &[
    Shape {
        name: "setuid",
        nr: libc::SYS_setuid,
        args: &[("uid", ID)],
    },
    Shape {
        name: "setgid",
        nr: libc::SYS_setgid,
        args: &[("gid", ID)],
    },
    Shape {
        name: "setreuid",
        nr: libc::SYS_setreuid,
        args: &[("ruid", ID), ("euid", ID)],
    },
    Shape {
        name: "setregid",
        nr: libc::SYS_setregid,
        args: &[("rgid", ID), ("egid", ID)],
    },
    Shape {
        name: "setresuid",
        nr: libc::SYS_setresuid,
        args: &[("ruid", ID), ("euid", ID), ("suid", ID)],
    },
    Shape {
        name: "setresgid",
        nr: libc::SYS_setresgid,
        args: &[("rgid", ID), ("egid", ID), ("sgid", ID)],
    },
    Shape {
        name: "setfsuid",
        nr: libc::SYS_setfsuid,
        args: &[("fsuid", ID)],
    },
    Shape {
        name: "setfsgid",
        nr: libc::SYS_setfsgid,
        args: &[("fsgid", ID)],
    },
    Shape {
        name: "capset",
        nr: libc::SYS_capset,
        args: &[],
    },
    Shape {
        name: "ptrace",
        nr: libc::SYS_ptrace,
        args: &[("request", Render::PtraceRequest), ("pid", NUM)],
    },
    Shape {
        name: "process_vm_writev",
        nr: libc::SYS_process_vm_writev,
        args: &[("pid", NUM)],
    },
    Shape {
        name: "bpf",
        nr: libc::SYS_bpf,
        args: &[("cmd", NUM)],
    },
    Shape {
        name: "init_module",
        nr: libc::SYS_init_module,
        args: &[],
    },
    Shape {
        name: "finit_module",
        nr: libc::SYS_finit_module,
        args: &[("fd", NUM)],
    },
    Shape {
        name: "delete_module",
        nr: libc::SYS_delete_module,
        args: &[],
    },
    Shape {
        name: "mount",
        nr: libc::SYS_mount,
        args: &[],
    },
    Shape {
        name: "umount2",
        nr: libc::SYS_umount2,
        args: &[],
    },
    Shape {
        name: "fsmount",
        nr: libc::SYS_fsmount,
        args: &[],
    },
    Shape {
        name: "move_mount",
        nr: libc::SYS_move_mount,
        args: &[],
    },
    Shape {
        name: "open_tree",
        nr: libc::SYS_open_tree,
        args: &[],
    },
    Shape {
        name: "unshare",
        nr: libc::SYS_unshare,
        args: &[("flags", Render::NamespaceFlags)],
    },
    Shape {
        name: "setns",
        nr: libc::SYS_setns,
        args: &[("fd", NUM), ("nstype", Render::NamespaceFlags)],
    },
    Shape {
        name: "clone",
        nr: libc::SYS_clone,
        args: &[("flags", Render::NamespaceFlags)],
    },
    // clone3's flags live in the struct its pointer names; the kernel
    // program reads them only to filter.
    Shape {
        name: "clone3",
        nr: libc::SYS_clone3,
        args: &[],
    },
    Shape {
        name: "userfaultfd",
        nr: libc::SYS_userfaultfd,
        args: &[],
    },
    Shape {
        name: "io_uring_setup",
        nr: libc::SYS_io_uring_setup,
        args: &[("entries", NUM)],
    },
    Shape {
        name: "socket",
        nr: libc::SYS_socket,
        args: &[
            ("family", Render::SocketFamily),
            ("type", Render::SocketType),
        ],
    },
];

const NAMESPACE_FLAGS: &[(u64, &str)] = &[
    (0x0002_0000, "CLONE_NEWNS"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x80, "CLONE_NEWTIME"),
];

fn ptrace_request(request: u64) -> &'static str {
    match request {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        13 => "PTRACE_SETREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        0x4206 => "PTRACE_SEIZE",
        _ => "other",
    }
}

fn render(how: Render, raw: u64) -> ArgValue {
    match how {
        Render::Number => ArgValue::Number(raw),
        Render::Id => ArgValue::Number(raw & 0xffff_ffff),
        Render::NamespaceFlags => ArgValue::Names(
            NAMESPACE_FLAGS
                .iter()
                .filter(|(bit, _)| raw & bit != 0)
                .map(|(_, name)| *name)
                .collect(),
        ),
        Render::PtraceRequest => ArgValue::Names(vec![ptrace_request(raw)]),
        Render::SocketFamily => match raw {
            17 => ArgValue::Names(vec!["AF_PACKET"]),
            2 => ArgValue::Names(vec!["AF_INET"]),
            10 => ArgValue::Names(vec!["AF_INET6"]),
            other => ArgValue::Number(other),
        },
        Render::SocketType => match raw & 0xf {
            1 => ArgValue::Names(vec!["SOCK_STREAM"]),
            2 => ArgValue::Names(vec!["SOCK_DGRAM"]),
            3 => ArgValue::Names(vec!["SOCK_RAW"]),
            other => ArgValue::Number(other),
        },
    }
}

/// The call a record names; `None` for a number this table does not hold.
pub fn describe(nr: u32, args: Option<&[u64; 6]>, result: i64) -> Option<SyscallInfo> {
    let shape = SHAPES.iter().find(|s| s.nr == i64::from(nr))?;
    let args = match args {
        Some(raw) => shape
            .args
            .iter()
            .zip(raw.iter())
            .map(|((name, how), &value)| (*name, render(*how, value)))
            .collect(),
        None => Vec::new(),
    };
    Some(SyscallInfo {
        name: shape.name,
        args,
        result,
        refused: false,
        unexpected: false,
        nr: None,
    })
}

/// A call outside the syscall profile: any number, named where this
/// architecture has it (`u32::MAX`: a number past the kernel's table).
pub fn unexpected(nr: u32, result: i64) -> SyscallInfo {
    SyscallInfo {
        name: crate::bpf::profile::name_of(nr).unwrap_or("unknown"),
        args: Vec::new(),
        result,
        refused: false,
        unexpected: true,
        nr: Some(nr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hooked_call_has_a_shape() {
        for call in crate::bpf::syscalls::HOOKED {
            assert!(
                SHAPES.iter().any(|s| s.name == call.name),
                "{} has no shape",
                call.name
            );
        }
        assert_eq!(SHAPES.len(), crate::bpf::syscalls::HOOKED.len());
    }

    #[test]
    fn arguments_read_by_name() {
        let unshare = describe(
            libc::SYS_unshare as u32,
            Some(&[0x4000_0000 | 0x1000_0000, 0, 0, 0, 0, 0]),
            0,
        )
        .unwrap();
        assert_eq!(unshare.name, "unshare");
        assert_eq!(
            unshare.arg("flags"),
            Some(&ArgValue::Names(vec!["CLONE_NEWUSER", "CLONE_NEWNET"]))
        );
        let setuid = describe(libc::SYS_setuid as u32, Some(&[0, 0, 0, 0, 0, 0]), 0).unwrap();
        assert_eq!(setuid.arg("uid"), Some(&ArgValue::Number(0)));
        let ptrace = describe(libc::SYS_ptrace as u32, Some(&[16, 42, 0, 0, 0, 0]), -1).unwrap();
        assert_eq!(
            ptrace.arg("request"),
            Some(&ArgValue::Names(vec!["PTRACE_ATTACH"]))
        );
        assert_eq!(ptrace.arg("pid"), Some(&ArgValue::Number(42)));
        assert!(describe(libc::SYS_read as u32, None, 0).is_none());
    }
}
