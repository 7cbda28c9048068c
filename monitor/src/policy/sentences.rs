//! The alert sentences: one readable line per finding, saying what happened,
//! where and by whom; kept apart from the match loop they are read from.
use std::fmt::Write as _;

use super::{detect::ScanReport, matcher::ExecSubject};
use crate::{
    context::{EnrichedEvent, MetadataStatus},
    event::{EventBody, FileOp},
    finding::{Action, ActionTaken, AlertKind},
};

/// Which shell a shell rule reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShellCase {
    /// Started into the running container from outside it (`docker exec`).
    Entered,
    /// Spawned by a process inside that is not a shell (`sh -c` from a server).
    SpawnedBy,
}

/// Why a rule fired, with what the summary and exceptions need.
#[derive(Clone, Copy, Debug)]
pub(super) enum Hit<'e> {
    Unexpected,
    Denied,
    Shell(ShellCase),
    Drift,
    Fileless,
    File { path: &'e str, role: PathRole },
    Egress { denied: bool },
    Scan(ScanReport, u64),
    Syscall,
    Read { path: &'e str },
    RuntimeSocket { path: &'e str },
}

/// Which of a file event's paths a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PathRole {
    Path,
    /// The new name of a rename, link or symlink.
    Target,
    /// The old name of a rename.
    Source,
}

pub(super) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `in container web (nginx:1.27)` or `on the host`.
fn place(ev: &EnrichedEvent) -> String {
    match &ev.container {
        Some(c) if ev.metadata_status != MetadataStatus::Host => {
            let who = c
                .name
                .clone()
                .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
                .or_else(|| c.cgroup.clone())
                .unwrap_or_else(|| format!("with cgroup id {}", ev.event.header.cgroup_id));
            match &c.image {
                Some(image) => format!("in container {who} ({image})"),
                None => format!("in container {who}"),
            }
        }
        _ => "on the host".to_owned(),
    }
}

/// `/usr/bin/curl (pid 42)`.
fn actor(ev: &EnrichedEvent) -> String {
    let p = &ev.process;
    let exe = p.exe.as_deref().unwrap_or(&p.comm);
    format!("{exe} (pid {})", p.pid)
}

/// The command line, shortened for a one-line summary.
fn command(s: &ExecSubject<'_>) -> String {
    const MAX: usize = 120;
    let mut out = String::from(s.exe);
    for a in s.args.iter().skip(1) {
        if out.len() + a.len() + 1 > MAX {
            out.push_str(" ...");
            break;
        }
        out.push(' ');
        out.push_str(a);
    }
    out
}

fn errno_name(result: i64) -> String {
    let e = i32::try_from(-result).unwrap_or(0);
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        _ => return format!("errno {e}"),
    };
    name.to_owned()
}

pub(super) fn summary(
    ev: &EnrichedEvent,
    exec: Option<&ExecSubject<'_>>,
    hit: Hit<'_>,
) -> (AlertKind, String) {
    let place = place(ev);
    match hit {
        Hit::Unexpected => (
            AlertKind::Process,
            format!("unexpected process {} {place}", exec.map_or("?", |s| s.exe)),
        ),
        Hit::Denied => (
            AlertKind::Process,
            format!(
                "denied process {} {place}",
                exec.map_or_else(|| "?".to_owned(), command)
            ),
        ),
        Hit::Shell(case) => {
            let cmd = exec.map_or_else(|| "?".to_owned(), command);
            let parent = ev.process.ancestry.first();
            let by = match parent {
                Some(a) => format!(
                    "{} (pid {})",
                    a.exe.as_deref().unwrap_or("an unknown program"),
                    a.pid
                ),
                None => "an unknown process".to_owned(),
            };
            let what = match case {
                ShellCase::Entered => format!(
                    "shell {cmd} started into the running container from outside it by {by} (an exec into the container, as docker exec or kubectl exec do)"
                ),
                ShellCase::SpawnedBy => format!(
                    "shell {cmd} spawned by {by}, which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection)"
                ),
            };
            (AlertKind::Process, format!("{what} {place}"))
        }
        Hit::Drift => (
            AlertKind::Process,
            format!(
                "drift: {} was written after the container started and then executed {place}",
                exec.map_or("?", |s| s.exe)
            ),
        ),
        Hit::Fileless => (
            AlertKind::Process,
            format!(
                "fileless exec of {} (an in-memory or descriptor-only file) {place}",
                exec.map_or("?", |s| s.exe)
            ),
        ),
        Hit::File { path, role } => {
            let EventBody::File(f) = &ev.event.body else {
                return (
                    AlertKind::File,
                    format!("write to protected path {path} {place}"),
                );
            };
            let mut s = String::new();
            if f.result < 0 {
                s.push_str("attempted ");
            }
            match (f.op, role) {
                (FileOp::Rename, PathRole::Target) => {
                    let _ = write!(s, "rename of {} over protected path {path}", f.path);
                }
                (FileOp::Rename, _) => {
                    let _ = write!(
                        s,
                        "rename of protected path {path} to {}",
                        f.target.as_deref().unwrap_or("?")
                    );
                }
                (FileOp::Link, _) => {
                    let _ = write!(s, "hard link {path} to {} in a protected path", f.path);
                }
                (FileOp::Symlink, _) => {
                    let _ = write!(s, "symlink {path} -> {} in a protected path", f.path);
                }
                (FileOp::Unlink, _) => {
                    let _ = write!(s, "deletion of protected path {path}");
                }
                (FileOp::Chmod, _) => {
                    let _ = write!(s, "chmod of protected path {path}");
                    if let Some(m) = f.mode {
                        let _ = write!(s, " to {m:o}");
                    }
                }
                (op, _) => {
                    let _ = write!(s, "write to protected path {path} ({}", op.name());
                    if !f.flags.is_empty() {
                        let _ = write!(s, " {}", f.flags.join("|"));
                    }
                    s.push(')');
                }
            }
            if f.result < 0 {
                let _ = write!(s, " (failed: {})", errno_name(f.result));
            }
            let _ = write!(s, " by {} {place}", actor(ev));
            (AlertKind::File, s)
        }
        Hit::Egress { denied } => {
            let EventBody::Network(n) = &ev.event.body else {
                return (AlertKind::Network, format!("egress {place}"));
            };
            let dest = format!("{}/{}", n.destination(), n.protocol);
            let dns = n
                .dns
                .as_deref()
                .map_or_else(String::new, |d| format!(" ({d})"));
            let why = if denied {
                "a denied destination"
            } else {
                "not on the egress allowlist"
            };
            (
                AlertKind::Network,
                format!("egress to {dest}{dns}, {why}, by {} {place}", actor(ev)),
            )
        }
        Hit::Scan(r, window_ns) => {
            let secs = window_ns as f64 / 1e9;
            (
                AlertKind::Network,
                format!(
                    "port scan: {} distinct ports on {} {} within {secs}s, last by {} {place}",
                    r.ports,
                    r.hosts,
                    plural(r.hosts, "host", "hosts"),
                    actor(ev)
                ),
            )
        }
        Hit::Syscall => {
            let EventBody::Syscall(s) = &ev.event.body else {
                return (
                    AlertKind::Syscall,
                    format!("system call by {} {place}", actor(ev)),
                );
            };
            let args: Vec<String> = s
                .args
                .iter()
                .map(|(name, v)| match v {
                    crate::event::syscall::ArgValue::Number(n) => format!("{name}={n}"),
                    crate::event::syscall::ArgValue::Names(names) => {
                        format!("{name}={}", names.join("|"))
                    }
                })
                .collect();
            let outcome = if s.refused {
                " (refused by the seccomp profile: an attempt)".to_owned()
            } else if s.result < 0 {
                format!(" (failed with {})", errno_name(s.result))
            } else {
                String::new()
            };
            if s.unexpected {
                let name = match (s.name, s.nr) {
                    ("unknown", Some(nr)) => format!("number {nr}"),
                    (name, _) => name.to_owned(),
                };
                return (
                    AlertKind::Syscall,
                    format!(
                        "unexpected system call {name}{outcome}, outside the syscall profile, by {} {place}",
                        actor(ev)
                    ),
                );
            }
            (
                AlertKind::Syscall,
                format!(
                    "{}({}){outcome} by {} {place}",
                    s.name,
                    args.join(", "),
                    actor(ev)
                ),
            )
        }
        Hit::Read { path } => (
            AlertKind::File,
            format!("read of credential file {path} by {} {place}", actor(ev)),
        ),
        Hit::RuntimeSocket { path } => (
            AlertKind::File,
            format!(
                "connect to the container runtime socket {path} by {} {place}",
                actor(ev)
            ),
        ),
    }
}

/// What a summary adds about enforcement: what the kernel did to the
/// operation, or that a `deny` or `kill` rule ran without `--enforce`.
pub(super) fn enforcement_note(
    action: Action,
    taken: Option<ActionTaken>,
    would_deny: bool,
) -> &'static str {
    match (taken, would_deny) {
        (Some(ActionTaken::Denied), _) => " (denied)",
        (Some(ActionTaken::Killed), _) => " (killed before it ran)",
        (Some(ActionTaken::KillFailed), _) => " (the kill failed)",
        (None, true) => match action {
            Action::Kill => " (would be killed: not enforced)",
            _ => " (would be denied: not enforced)",
        },
        (None, false) => "",
    }
}
