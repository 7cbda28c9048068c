//! Raw ring-buffer records to typed [`Event`]s. Pure: no kernel, no I/O.
use std::{
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use monitor_common::{
    CgroupEvent, DirWalk, DnsEvent, ExecEvent, ExitEvent, FileEvent, ForkEvent, Header, NetEvent,
    PATH_LEN, SyscallEvent, cgroup_op, file_op, kind, net_op, syscall_flags, walk_flags,
};
use thiserror::Error;

use super::{
    ActionTaken, CgroupChange, CgroupOp, Event, EventBody, EventHeader, ExecInfo, Family, FileInfo,
    FileOp, NetOp, NetworkInfo, Protocol, SyscallInfo,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than a {what} ({need} bytes)")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("unknown {what} code {code}")]
    UnknownCode { what: &'static str, code: u32 },
    #[error(transparent)]
    Dns(#[from] super::dns::DnsError),
}

/// Copies a `#[repr(C)]` record out of the ring buffer's bytes.
fn read<T: Copy>(data: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if data.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            what,
            len: data.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: the length is checked, T is a plain-old-data record from
    // monitor-common, and read_unaligned makes no alignment assumption.
    Ok(unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<T>()) })
}

/// Copies a record the kernel may have cut short after `min` bytes (its
/// optional tail left out); the missing tail reads as zeroes.
fn read_prefix<T: Copy>(data: &[u8], min: usize, what: &'static str) -> Result<T, DecodeError> {
    if data.len() < min {
        return Err(DecodeError::Short {
            what,
            len: data.len(),
            need: min,
        });
    }
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let n = data.len().min(size_of::<T>());
    // SAFETY: at most size_of::<T>() bytes are copied into a zeroed T, and
    // every record type is plain old data for which zero bytes are valid.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), value.as_mut_ptr().cast::<u8>(), n);
        Ok(value.assume_init())
    }
}

/// The ring buffer reader decodes each record into an [`Event`] in place.
impl crate::bpf::reader::FromRecord for Event {
    type Error = DecodeError;

    fn from_record(raw: &[u8]) -> Result<Event, DecodeError> {
        decode(raw)
    }

    fn cgroup_path(&self) -> Option<&str> {
        match &self.body {
            EventBody::Cgroup(c) => Some(&c.path),
            _ => None,
        }
    }
}

/// Decodes one record as the kernel programs wrote it.
pub fn decode(data: &[u8]) -> Result<Event, DecodeError> {
    let header: Header = read(data, "header")?;
    let body = match header.kind {
        kind::EXEC => EventBody::Exec(exec(&read_prefix::<ExecEvent>(
            data,
            ExecEvent::SIZE_NO_CWD,
            "exec record",
        )?)),
        kind::FORK => EventBody::Fork {
            child_pid: read::<ForkEvent>(data, "fork record")?.child_pid,
        },
        kind::EXIT => EventBody::Exit {
            exit_code: read::<ExitEvent>(data, "exit record")?.exit_code,
        },
        kind::FILE => EventBody::File(file(&read_prefix::<FileEvent>(
            data,
            FileEvent::SIZE_NO_DIRS,
            "file record",
        )?)?),
        kind::NET => EventBody::Network(network(&read::<NetEvent>(data, "network record")?)?),
        kind::CGROUP => EventBody::Cgroup(cgroup(&read::<CgroupEvent>(data, "cgroup record")?)?),
        kind::SYSCALL => {
            EventBody::Syscall(syscall(&read::<SyscallEvent>(data, "syscall record")?)?)
        }
        kind::DNS => EventBody::Dns(dns(data)?),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(Event {
        header: header_of(&header),
        body,
    })
}

fn header_of(h: &Header) -> EventHeader {
    EventHeader {
        ktime_ns: h.ktime_ns,
        pid: h.pid,
        tid: h.tid,
        uid: h.uid,
        gid: h.gid,
        cgroup_id: h.cgroup_id,
        comm: c_string(&h.comm, h.comm.len()),
    }
}

/// The bytes up to `len` or the first NUL, as text (lossy: paths need not be UTF-8).
fn c_string(buf: &[u8], len: usize) -> String {
    let buf = &buf[..len.min(buf.len())];
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A directory the kernel walked leaf first (`"d\0tmp\0"`) as a path (`/tmp/d`).
/// `None` when no walk was made or it failed.
pub fn walked_dir(walk: &DirWalk) -> Option<String> {
    if walk.flags & walk_flags::PRESENT == 0 {
        return None;
    }
    let len = (walk.len as usize).min(walk.buf.len());
    let mut parts: Vec<&[u8]> = walk.buf[..len]
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    parts.reverse();
    let mut path = String::new();
    if walk.flags & walk_flags::TRUNCATED != 0 {
        // The top of the path is missing; say so rather than invent a root.
        path.push_str("...");
    }
    for part in parts {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(part));
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}

/// `path` made absolute against `dir` and normalised (`.`, `..`, repeated `/`).
/// An absolute `path` ignores `dir`; a relative one with no `dir` stays as given.
pub fn resolve(dir: Option<&str>, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else if let Some(dir) = dir {
        format!("{}/{}", dir.trim_end_matches('/'), path)
    } else {
        return path.to_owned();
    };
    normalize(&joined)
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                // `...` marks a truncated walk: do not climb above it.
                if parts.last().is_some_and(|p| *p != "...") {
                    parts.pop();
                }
            }
            p => parts.push(p),
        }
    }
    if parts.first() == Some(&"...") {
        return parts.join("/");
    }
    format!("/{}", parts.join("/"))
}

fn exec(ev: &ExecEvent) -> ExecInfo {
    let filename = c_string(&ev.filename, ev.filename_len as usize);
    let cwd = walked_dir(&ev.cwd);
    let args_len = (ev.args_len as usize).min(ev.args.len());
    let args = ev.args[..args_len]
        .split(|&b| b == 0)
        .take(ev.argc as usize)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ExecInfo {
        filename: resolve(cwd.as_deref(), &filename),
        args,
        args_truncated: ev.args_truncated != 0,
        ppid: ev.ppid,
        cwd,
        action: ActionTaken::from_code(ev.action),
        exe_inode: (ev.exe_ino != 0).then_some((ev.exe_dev, ev.exe_ino)),
    }
}

fn file(ev: &FileEvent) -> Result<FileInfo, DecodeError> {
    let op = match ev.op {
        file_op::OPEN => FileOp::Open,
        file_op::CREAT => FileOp::Creat,
        file_op::RENAME => FileOp::Rename,
        file_op::UNLINK => FileOp::Unlink,
        file_op::CHMOD => FileOp::Chmod,
        file_op::TRUNCATE => FileOp::Truncate,
        file_op::LINK => FileOp::Link,
        file_op::SYMLINK => FileOp::Symlink,
        file_op::CONNECT => FileOp::Connect,
        code => {
            return Err(DecodeError::UnknownCode {
                what: "file op",
                code,
            });
        }
    };
    let raw_path = c_string(&ev.path, ev.path_len as usize);
    // The kernel copies at most PATH_LEN - 1 bytes of a user string.
    let cut = |len: u32| len as usize >= PATH_LEN - 1;
    let walk_cut = |walk: &DirWalk| walk.flags & walk_flags::TRUNCATED != 0;
    let mut truncated = cut(ev.path_len) || walk_cut(&ev.dir);
    let mut requested_path = None;
    // A symlink's first argument is the link's content, not a file to resolve.
    let path = if op == FileOp::Symlink {
        raw_path
    } else if ev.dir.flags & walk_flags::FILE != 0
        && let Some(kernel_path) = walked_dir(&ev.dir).filter(|_| !walk_cut(&ev.dir))
    {
        // The opened file's own path, from the kernel: it wins over the
        // caller's string, which is kept when it says something else.
        let kernel_path = own_proc_entry(&kernel_path, ev.ns_pid).unwrap_or(kernel_path);
        let asked = resolve(None, &raw_path);
        // A relative string is only the tail of the path: it differs when
        // the kernel's path does not end with it.
        let same = if asked.starts_with('/') {
            asked == kernel_path
        } else {
            kernel_path.ends_with(&format!("/{}", asked.trim_start_matches("./")))
        };
        // An empty string: a sensitive read, reported with the kernel's path only.
        if !same && !asked.is_empty() {
            requested_path = Some(asked);
        }
        truncated = false;
        kernel_path
    } else if ev.dir.flags & walk_flags::FILE != 0 {
        // The kernel's path was too long to walk whole; the caller's string
        // (absolute, or relative with no directory) is what there is.
        resolve(None, &raw_path)
    } else {
        resolve(walked_dir(&ev.dir).as_deref(), &raw_path)
    };
    let target = matches!(op, FileOp::Rename | FileOp::Link | FileOp::Symlink).then(|| {
        truncated |= cut(ev.path2_len) || walk_cut(&ev.dir2);
        resolve(
            walked_dir(&ev.dir2).as_deref(),
            &c_string(&ev.path2, ev.path2_len as usize),
        )
    });
    let (flags, mode) = match op {
        FileOp::Open | FileOp::Creat => {
            let created = ev.flags & libc::O_CREAT as u32 != 0;
            (open_flag_names(ev.flags), created.then_some(ev.mode))
        }
        FileOp::Chmod => (Vec::new(), Some(ev.mode)),
        _ => (Vec::new(), None),
    };
    Ok(FileInfo {
        op,
        path,
        target,
        flags,
        mode,
        result: ev.ret,
        requested_path,
        truncated,
        action: ActionTaken::from_code(ev.action),
        inode: (ev.ino != 0).then_some((ev.dev, ev.ino)),
    })
}

/// A read of the reader's own `/proc/<pid>` entry, named as it names it for
/// itself (`/proc/self/...`): the kernel's path has the number, and rules
/// about other processes' `environ` or `mem` must not match a process
/// reading its own. `ns_pid` is the reader's pid in its own namespace, which
/// its container's `/proc` shows; 0 (unknown) changes nothing.
fn own_proc_entry(path: &str, ns_pid: u32) -> Option<String> {
    if ns_pid == 0 {
        return None;
    }
    let (pid, tail) = path.strip_prefix("/proc/")?.split_once('/')?;
    (pid.parse::<u32>().ok()? == ns_pid).then(|| format!("/proc/self/{tail}"))
}

/// The names of the `open` flags that matter to a reader of an alert.
pub fn open_flag_names(flags: u32) -> Vec<&'static str> {
    let mut names = Vec::new();
    names.push(match flags & libc::O_ACCMODE as u32 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    });
    const NAMED: [(i32, &str); 6] = [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_TMPFILE & !libc::O_DIRECTORY, "O_TMPFILE"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
    ];
    for (bit, name) in NAMED {
        if flags & bit as u32 != 0 {
            names.push(name);
        }
    }
    names
}

fn network(ev: &NetEvent) -> Result<NetworkInfo, DecodeError> {
    let op = match ev.op {
        net_op::CONNECT => NetOp::Connect,
        net_op::SENDMSG => NetOp::Sendmsg,
        net_op::BIND => NetOp::Bind,
        code => {
            return Err(DecodeError::UnknownCode {
                what: "network op",
                code,
            });
        }
    };
    let (family, daddr) = match ev.family as i32 {
        libc::AF_INET => {
            let b = ev.daddr;
            (
                Family::Ipv4,
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            )
        }
        libc::AF_INET6 => (Family::Ipv6, IpAddr::V6(Ipv6Addr::from(ev.daddr))),
        _ => {
            return Err(DecodeError::UnknownCode {
                what: "address family",
                code: ev.family,
            });
        }
    };
    let protocol = match ev.protocol as i32 {
        libc::IPPROTO_TCP => Protocol::Tcp,
        libc::IPPROTO_UDP => Protocol::Udp,
        other => Protocol::Other(other as u32),
    };
    Ok(NetworkInfo {
        op,
        protocol,
        family,
        daddr,
        dport: ev.dport as u16,
        dns: None,
        action: ActionTaken::from_code(ev.action),
    })
}

/// The DNS message is parsed where it lies in the ring buffer: the record
/// is a kilobyte, mostly payload, not worth copying out first.
fn dns(data: &[u8]) -> Result<super::dns::DnsAnswer, DecodeError> {
    let start = std::mem::offset_of!(DnsEvent, payload);
    let short = |need| DecodeError::Short {
        what: "dns record",
        len: data.len(),
        need,
    };
    let lengths = data
        .get(std::mem::offset_of!(DnsEvent, len)..start)
        .ok_or(short(start))?;
    let field = |at: usize| u32::from_ne_bytes(lengths[at..at + 4].try_into().expect("4 bytes"));
    let (len, copied) = (field(0), field(4));
    let end = start + copied as usize;
    let message = data.get(start..end).ok_or(short(end))?;
    Ok(super::dns::parse(message, copied < len)?)
}

fn syscall(ev: &SyscallEvent) -> Result<SyscallInfo, DecodeError> {
    if ev.flags & syscall_flags::UNEXPECTED != 0 {
        return Ok(super::syscall::unexpected(ev.nr, ev.ret));
    }
    let seen_entering = ev.flags & syscall_flags::ARGS != 0;
    let mut info = super::syscall::describe(ev.nr, seen_entering.then_some(&ev.args), ev.ret)
        .ok_or(DecodeError::UnknownCode {
            what: "syscall number",
            code: ev.nr,
        })?;
    // Sent without its enter: the call never got that far (seccomp).
    info.refused = !seen_entering && ev.ret < 0;
    Ok(info)
}

fn cgroup(ev: &CgroupEvent) -> Result<CgroupChange, DecodeError> {
    let op = match ev.op {
        cgroup_op::MKDIR => CgroupOp::Mkdir,
        cgroup_op::RMDIR => CgroupOp::Rmdir,
        code => {
            return Err(DecodeError::UnknownCode {
                what: "cgroup op",
                code,
            });
        }
    };
    Ok(CgroupChange {
        op,
        id: ev.id,
        level: ev.level,
        path: c_string(&ev.path, ev.path_len as usize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::{ARGS_LEN, CGROUP_PATH_LEN, COMM_LEN, DIR_LEN, PATH_LEN};

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a plain-old-data record.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn header(kind: u32) -> Header {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"bash");
        Header {
            kind,
            pid: 42,
            tid: 43,
            uid: 1000,
            gid: 100,
            _pad: 0,
            ktime_ns: 7,
            cgroup_id: 9,
            comm,
        }
    }

    fn walk(components_leaf_first: &[&str], flags: u32) -> DirWalk {
        let mut w = DirWalk {
            flags,
            len: 0,
            buf: [0; DIR_LEN],
        };
        let mut pos = 0;
        for c in components_leaf_first {
            w.buf[pos..pos + c.len()].copy_from_slice(c.as_bytes());
            pos += c.len() + 1;
        }
        w.len = pos as u32;
        w
    }

    fn fill<const N: usize>(s: &str) -> [u8; N] {
        let mut a = [0u8; N];
        a[..s.len()].copy_from_slice(s.as_bytes());
        a
    }

    fn file_event(op: u32, path: &str, dir: DirWalk, path2: &str, dir2: DirWalk) -> FileEvent {
        FileEvent {
            header: header(kind::FILE),
            op,
            flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32,
            mode: 0o644,
            path_len: path.len() as u32,
            path2_len: path2.len() as u32,
            dirfd: -100,
            dirfd2: -100,
            ns_pid: 0,
            action: 0,
            _pad: 0,
            ino: 0,
            dev: 0,
            _pad2: 0,
            ret: 3,
            path: fill::<PATH_LEN>(path),
            path2: fill::<PATH_LEN>(path2),
            dir,
            dir2,
        }
    }

    #[test]
    fn walked_dirs_are_reversed() {
        assert_eq!(
            walked_dir(&walk(&["d", "tmp"], walk_flags::PRESENT)).as_deref(),
            Some("/tmp/d")
        );
        assert_eq!(
            walked_dir(&walk(&[], walk_flags::PRESENT)).as_deref(),
            Some("/")
        );
        assert_eq!(walked_dir(&walk(&["x"], walk_flags::FAILED)), None);
        assert_eq!(
            walked_dir(&walk(
                &["c", "b"],
                walk_flags::PRESENT | walk_flags::TRUNCATED
            ))
            .as_deref(),
            Some(".../b/c")
        );
    }

    #[test]
    fn resolve_table() {
        let cases = [
            (Some("/tmp/d"), "f", "/tmp/d/f"),
            (Some("/tmp/d"), "./f", "/tmp/d/f"),
            (Some("/tmp/d"), "../etc/passwd", "/tmp/etc/passwd"),
            (Some("/"), "etc/passwd", "/etc/passwd"),
            (Some("/"), "../../etc//passwd", "/etc/passwd"),
            (Some("/tmp"), "/etc/hosts", "/etc/hosts"),
            (None, "rel/f", "rel/f"),
            (None, "/a/./b/../c", "/a/c"),
        ];
        for (dir, path, want) in cases {
            assert_eq!(resolve(dir, path), want, "resolve({dir:?}, {path:?})");
        }
    }

    #[test]
    fn decodes_relative_write() {
        let ev = file_event(
            file_op::OPEN,
            "f",
            walk(&["d", "tmp"], walk_flags::PRESENT),
            "",
            walk(&[], 0),
        );
        let event = decode(&bytes(&ev)).unwrap();
        assert_eq!(event.header.pid, 42);
        assert_eq!(event.header.comm, "bash");
        let EventBody::File(f) = event.body else {
            panic!("not a file event")
        };
        assert_eq!(f.op, FileOp::Open);
        assert_eq!(f.path, "/tmp/d/f");
        assert_eq!(f.target, None);
        assert_eq!(f.flags, vec!["O_WRONLY", "O_CREAT", "O_TRUNC"]);
        assert_eq!(f.mode, Some(0o644));
        assert_eq!(f.result, 3);
    }

    #[test]
    fn decodes_rename_with_two_dirs() {
        let ev = file_event(
            file_op::RENAME,
            "new.tmp",
            walk(&["a"], walk_flags::PRESENT),
            "hosts",
            walk(&["etc"], walk_flags::PRESENT),
        );
        let EventBody::File(f) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(f.path, "/a/new.tmp");
        assert_eq!(f.target.as_deref(), Some("/etc/hosts"));
        assert!(f.flags.is_empty());
    }

    #[test]
    fn an_opened_file_takes_the_kernels_path_and_keeps_the_callers() {
        let opened = |path: &str, walk_leaf_first: &[&str]| {
            let mut ev = file_event(
                file_op::OPEN,
                path,
                walk(walk_leaf_first, walk_flags::PRESENT | walk_flags::FILE),
                "",
                walk(&[], 0),
            );
            ev.ret = 3;
            match decode(bytes(&ev).as_slice()).unwrap().body {
                EventBody::File(f) => f,
                other => panic!("{other:?}"),
            }
        };
        // Written through a symlinked directory: the rule sees /etc.
        let f = opened("/tmp/e/crontab", &["crontab", "etc"]);
        assert_eq!(f.path, "/etc/crontab");
        assert_eq!(f.requested_path.as_deref(), Some("/tmp/e/crontab"));
        assert!(!f.truncated);
        // The same file by its own name: nothing extra.
        let f = opened("/etc/crontab", &["crontab", "etc"]);
        assert_eq!(f.requested_path, None);
        let f = opened("./crontab", &["crontab", "etc"]);
        assert_eq!((f.path.as_str(), f.requested_path), ("/etc/crontab", None));
        // A sensitive read has no caller's string, only the kernel's path.
        let f = opened("", &["shadow", "etc"]);
        assert_eq!((f.path.as_str(), f.requested_path), ("/etc/shadow", None));
        // A relative string that is not the path's tail is kept.
        let f = opened("link", &["crontab", "etc"]);
        assert_eq!(f.requested_path.as_deref(), Some("link"));
        // A caller's string cut at PATH_LEN no longer matters: the kernel's is whole.
        let long = format!("/etc/{}cron.d/x", "./".repeat(130));
        let f = opened(&long[..PATH_LEN - 1], &["x", "cron.d", "etc"]);
        assert_eq!((f.path.as_str(), f.truncated), ("/etc/cron.d/x", false));
    }

    #[test]
    fn a_read_of_the_readers_own_proc_entry_is_named_self() {
        let read = |ns_pid: u32, walk_leaf_first: &[&str]| {
            let mut ev = file_event(
                file_op::OPEN,
                "",
                walk(walk_leaf_first, walk_flags::PRESENT | walk_flags::FILE),
                "",
                walk(&[], 0),
            );
            ev.flags = 0;
            ev.ns_pid = ns_pid;
            match decode(bytes(&ev).as_slice()).unwrap().body {
                EventBody::File(f) => f.path,
                other => panic!("{other:?}"),
            }
        };
        // pid 7 in its container reads its own environment, then pid 1's.
        assert_eq!(read(7, &["environ", "7", "proc"]), "/proc/self/environ");
        assert_eq!(read(7, &["environ", "1", "proc"]), "/proc/1/environ");
        assert_eq!(
            read(7, &["environ", "9", "task", "7", "proc"]),
            "/proc/self/task/9/environ"
        );
        // Unknown pid (no BTF members): the kernel's path as it is.
        assert_eq!(read(0, &["environ", "7", "proc"]), "/proc/7/environ");
        // Only /proc is the process table; a number elsewhere is a number.
        assert_eq!(read(7, &["environ", "7", "data"]), "/data/7/environ");
    }

    #[test]
    fn a_cut_path_is_flagged() {
        let long = format!("/etc/{}cron.d/x", "./".repeat(130));
        let ev = file_event(
            file_op::UNLINK,
            &long[..PATH_LEN - 1],
            walk(&[], 0),
            "",
            walk(&[], 0),
        );
        match decode(bytes(&ev).as_slice()).unwrap().body {
            EventBody::File(f) => assert!(f.truncated, "{f:?}"),
            other => panic!("{other:?}"),
        }
        let ev = file_event(file_op::UNLINK, "/etc/x", walk(&[], 0), "", walk(&[], 0));
        match decode(bytes(&ev).as_slice()).unwrap().body {
            EventBody::File(f) => assert!(!f.truncated, "{f:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn symlink_content_is_not_resolved() {
        let ev = file_event(
            file_op::SYMLINK,
            "../x",
            walk(&[], 0),
            "l",
            walk(&["tmp"], walk_flags::PRESENT),
        );
        let EventBody::File(f) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(f.path, "../x");
        assert_eq!(f.target.as_deref(), Some("/tmp/l"));
    }

    #[test]
    fn decodes_exec_with_args() {
        let mut args = [0u8; ARGS_LEN];
        let raw = b"/bin/true\0--version\0";
        args[..raw.len()].copy_from_slice(raw);
        let ev = ExecEvent {
            header: header(kind::EXEC),
            ppid: 1,
            old_pid: 42,
            filename_len: 5,
            args_len: raw.len() as u32,
            argc: 2,
            args_truncated: 0,
            action: 0,
            _pad: 0,
            exe_ino: 7,
            exe_dev: 3 << 20,
            _pad2: 0,
            filename: fill::<PATH_LEN>("./run"),
            args,
            cwd: walk(&["app"], walk_flags::PRESENT),
        };
        let EventBody::Exec(e) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(e.filename, "/app/run");
        assert_eq!(e.args, vec!["/bin/true", "--version"]);
        assert_eq!(e.ppid, 1);
        assert_eq!(e.cwd.as_deref(), Some("/app"));
        assert_eq!(e.exe_inode, Some((3 << 20, 7)));
    }

    #[test]
    fn decodes_ipv4_and_ipv6_connects() {
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let ev = NetEvent {
            header: header(kind::NET),
            op: net_op::CONNECT,
            family: 2,
            protocol: 6,
            dport: 8080,
            daddr,
            action: 0,
            _pad: 0,
        };
        let EventBody::Network(n) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(n.daddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (n.dport, n.protocol, n.family, n.op),
            (8080, Protocol::Tcp, Family::Ipv4, NetOp::Connect)
        );

        let ev = NetEvent {
            family: 10,
            protocol: 17,
            op: net_op::SENDMSG,
            daddr: Ipv6Addr::LOCALHOST.octets(),
            ..ev
        };
        let EventBody::Network(n) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(n.daddr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (n.protocol, n.family, n.op),
            (Protocol::Udp, Family::Ipv6, NetOp::Sendmsg)
        );
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["protocol"], "udp");
        assert_eq!(json["daddr"], "::1");
    }

    #[test]
    fn decodes_a_dns_answer_where_it_lies_and_tells_a_cut_one() {
        use hickory_proto::{
            op::{Message, MessageType, OpCode, Query},
            rr::{Name, RData, Record, RecordType, rdata::A},
        };
        use std::str::FromStr as _;
        let name = Name::from_str("api.test.").unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            name,
            9,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        ));
        let wire = m.to_vec().unwrap();
        let mut ev = DnsEvent {
            header: header(kind::DNS),
            len: wire.len() as u32,
            copied: wire.len() as u32,
            payload: [0u8; monitor_common::DNS_PAYLOAD_MAX],
        };
        ev.payload[..wire.len()].copy_from_slice(&wire);
        let EventBody::Dns(d) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(d.name, "api.test");
        assert_eq!(
            d.addresses[0].address,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(d.addresses[0].ttl, 9);
        assert!(!d.truncated);
        // The kernel copied less than the packet held: said so.
        let cut = DnsEvent {
            len: ev.len + 100,
            ..ev
        };
        let EventBody::Dns(d) = decode(&bytes(&cut)).unwrap().body else {
            panic!()
        };
        assert!(d.truncated);
        // A length past the record is a short record, not a panic.
        let bad = DnsEvent { copied: 5000, ..ev };
        assert!(matches!(
            decode(&bytes(&bad)),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn decodes_cgroup_mkdir() {
        let path = "/docker/abc";
        let ev = CgroupEvent {
            header: header(kind::CGROUP),
            op: cgroup_op::MKDIR,
            level: 2,
            id: 1234,
            path_len: path.len() as u32,
            _pad: 0,
            path: fill::<CGROUP_PATH_LEN>(path),
        };
        let EventBody::Cgroup(c) = decode(&bytes(&ev)).unwrap().body else {
            panic!()
        };
        assert_eq!(
            c,
            CgroupChange {
                op: CgroupOp::Mkdir,
                id: 1234,
                level: 2,
                path: path.into()
            }
        );
    }

    #[test]
    fn the_reader_decodes_through_from_record_and_scopes_cgroup_records_by_path() {
        use crate::bpf::reader::FromRecord as _;
        let path = "/kubepods/pod1/abc";
        let ev = CgroupEvent {
            header: header(kind::CGROUP),
            op: cgroup_op::RMDIR,
            level: 3,
            id: 77,
            path_len: path.len() as u32,
            _pad: 0,
            path: fill::<CGROUP_PATH_LEN>(path),
        };
        let event = Event::from_record(&bytes(&ev)).unwrap();
        assert_eq!(event, decode(&bytes(&ev)).unwrap());
        assert_eq!(event.cgroup_path(), Some(path));
        let open = file_event(file_op::OPEN, "/etc/passwd", walk(&[], 0), "", walk(&[], 0));
        assert_eq!(
            Event::from_record(&bytes(&open)).unwrap().cgroup_path(),
            None
        );
        assert_eq!(
            Event::from_record(&bytes(&header(99))).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
    }

    #[test]
    fn records_cut_after_the_used_part_decode_the_same() {
        let ev = file_event(file_op::OPEN, "/etc/passwd", walk(&[], 0), "", walk(&[], 0));
        let full = decode(&bytes(&ev)).unwrap();
        let cut = decode(&bytes(&ev)[..FileEvent::SIZE_NO_DIRS]).unwrap();
        assert_eq!(full, cut);
        assert!(matches!(
            decode(&bytes(&ev)[..FileEvent::SIZE_NO_DIRS - 1]),
            Err(DecodeError::Short { .. })
        ));
        // A rename whose first path was relative: dir present, dir2 cut.
        let ev = file_event(
            file_op::RENAME,
            "a",
            walk(&["tmp"], walk_flags::PRESENT),
            "/etc/b",
            walk(&[], 0),
        );
        let EventBody::File(f) = decode(&bytes(&ev)[..FileEvent::SIZE_ONE_DIR]).unwrap().body
        else {
            panic!()
        };
        assert_eq!(
            (f.path.as_str(), f.target.as_deref()),
            ("/tmp/a", Some("/etc/b"))
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert!(matches!(decode(&[0u8; 8]), Err(DecodeError::Short { .. })));
        let h = header(99);
        assert_eq!(decode(&bytes(&h)), Err(DecodeError::UnknownKind(99)));
        let ev = ForkEvent {
            header: header(kind::FORK),
            child_pid: 5,
            _pad: 0,
        };
        assert!(matches!(
            decode(&bytes(&ev)[..60]),
            Err(DecodeError::Short { .. })
        ));
    }
}
