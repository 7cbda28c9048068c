//! Typed events: what the kernel reported, decoded, with paths resolved.
//!
//! The `file` and `network` objects serialise exactly as the alert record's
//! (`shared/design/ALERTS.md`), so traces and alerts share one vocabulary.
use std::net::IpAddr;

use serde::Serialize;

pub mod decode;
pub mod dns;
pub mod syscall;

pub use syscall::SyscallInfo;

// What enforcement did is decoded here but is part of a finding, so it lives
// in the leaf both `policy` and `alert` read.
pub use crate::finding::ActionTaken;

/// One decoded kernel record.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub header: EventHeader,
    pub body: EventBody,
}

/// Who acted, where, and when (from the record header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// Monotonic nanoseconds since boot (`bpf_ktime_get_ns`).
    pub ktime_ns: u64,
    /// Thread-group id.
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id (the inode of the cgroup directory).
    pub cgroup_id: u64,
    pub comm: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    Exec(ExecInfo),
    Fork {
        child_pid: u32,
    },
    Exit {
        exit_code: i32,
    },
    File(FileInfo),
    Network(NetworkInfo),
    Cgroup(CgroupChange),
    Syscall(SyscallInfo),
    /// A DNS answer a socket of the cgroup received (no process: the
    /// header's pid is 0).
    Dns(dns::DnsAnswer),
}

impl Event {
    /// A short name for the record type: `exec`, `fork`, `exit`, `file`, `network`, `cgroup`, `syscall`, `dns`.
    pub fn name(&self) -> &'static str {
        match self.body {
            EventBody::Exec(_) => "exec",
            EventBody::Fork { .. } => "fork",
            EventBody::Exit { .. } => "exit",
            EventBody::File(_) => "file",
            EventBody::Network(_) => "network",
            EventBody::Cgroup(_) => "cgroup",
            EventBody::Syscall(_) => "syscall",
            EventBody::Dns(_) => "dns",
        }
    }
}

impl Event {
    /// What enforcement did to the operation, when it did anything.
    pub fn action_taken(&self) -> Option<ActionTaken> {
        match &self.body {
            EventBody::Exec(x) => x.action,
            EventBody::Network(n) => n.action,
            EventBody::File(f) => f.action,
            _ => None,
        }
    }
}

/// A program started (`execve`/`execveat` succeeded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecInfo {
    /// The executed file, absolute (a relative name resolved against the cwd).
    pub filename: String,
    pub args: Vec<String>,
    /// argv had more than the kernel copies.
    pub args_truncated: bool,
    /// Parent's pid, 0 when the kernel could not tell.
    pub ppid: u32,
    /// The working directory, when the kernel walked it.
    pub cwd: Option<String>,
    /// Enforcement killed it (or failed to): `Killed`, `KillFailed`.
    pub action: Option<ActionTaken>,
    /// The executed file as the kernel identifies it (the kernel's dev_t,
    /// inode), when this kernel's BTF tells.
    pub exe_inode: Option<(u32, u64)>,
}

/// The alert record's `file` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub op: FileOp,
    /// Absolute and resolved.
    pub path: String,
    /// The new name for rename and link, the link's path for symlink.
    pub target: Option<String>,
    /// `open` flags by name (`O_WRONLY`, `O_CREAT`, ...); empty for other ops.
    pub flags: Vec<&'static str>,
    /// The chmod mode or the mode of a created file, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The syscall's return value: a descriptor or 0 on success, `-errno` on failure.
    pub result: i64,
    /// The path as the caller wrote it (normalised; relative when the
    /// caller's was), when it says something else than `path`: a successful
    /// open's `path` is the kernel's path of the opened file, with symlinks,
    /// `/proc/self/root` and `/proc/self/fd` resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_path: Option<String>,
    /// A path was longer than the kernel programs capture: `path` (or
    /// `target`) is incomplete.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Enforcement refused the write (`Denied`); the alert's `action_taken`.
    #[serde(skip)]
    pub action: Option<ActionTaken>,
    /// A successful write open's file as the kernel identifies it (the
    /// kernel's dev_t, inode), when this kernel's BTF tells: drift follows it.
    #[serde(skip)]
    pub inode: Option<(u32, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    Open,
    Creat,
    Rename,
    Unlink,
    Chmod,
    Truncate,
    Link,
    Symlink,
    /// A connect to a unix socket named `*.sock` (`path` is the socket).
    Connect,
}

impl FileOp {
    /// Every operation, in the order the rule format documents them.
    pub const ALL: [FileOp; 9] = [
        FileOp::Open,
        FileOp::Creat,
        FileOp::Rename,
        FileOp::Unlink,
        FileOp::Chmod,
        FileOp::Truncate,
        FileOp::Link,
        FileOp::Symlink,
        FileOp::Connect,
    ];

    /// The name the record, the rules and the sentences use (`rename`).
    pub fn name(self) -> &'static str {
        match self {
            FileOp::Open => "open",
            FileOp::Creat => "creat",
            FileOp::Rename => "rename",
            FileOp::Unlink => "unlink",
            FileOp::Chmod => "chmod",
            FileOp::Truncate => "truncate",
            FileOp::Link => "link",
            FileOp::Symlink => "symlink",
            FileOp::Connect => "connect",
        }
    }

    /// The operation a name stands for.
    pub fn from_name(name: &str) -> Option<FileOp> {
        FileOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl std::fmt::Display for FileOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `tcp`, `udp`, or `proto N` for any other protocol number.
impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Other(p) => write!(f, "proto {p}"),
        }
    }
}

/// The alert record's `network` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub op: NetOp,
    pub protocol: Protocol,
    pub family: Family,
    pub daddr: IpAddr,
    pub dport: u16,
    /// The DNS name the destination was resolved from, where known.
    pub dns: Option<String>,
    /// Enforcement refused it (`Denied`); in the alert as `action_taken`.
    #[serde(skip)]
    pub action: Option<ActionTaken>,
}

impl NetworkInfo {
    /// The destination as people write it: `203.0.113.7:443`, `[2001:db8::1]:443`.
    pub fn destination(&self) -> String {
        std::net::SocketAddr::new(self.daddr, self.dport).to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetOp {
    Connect,
    Sendmsg,
    Bind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// Anything else (raw sockets, SCTP, ...), by number.
    #[serde(untagged)]
    Other(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// A cgroup v2 directory made or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupChange {
    pub op: CgroupOp,
    pub id: u64,
    pub level: u32,
    /// Path relative to the cgroup2 mount, starting with `/`.
    pub path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupOp {
    Mkdir,
    Rmdir,
}
