//! A rule's body by its kind (process, file, shell, egress, detectors,
//! syscall, read, runtime socket): the largest part of the rule format.

use serde_saphyr::Spanned;

use super::{
    posture::compile_posture,
    value::{Ctx, parse_window},
};
use crate::event::FileOp;
use crate::policy::{
    detect::ScanParams,
    matcher::{GlobKind, Globs},
    model::{ALL_OPS, Body, FileRule, PathRule, ShellRule, SyscallRule, op_bit},
    raw::{RawRule, RawSyscallRule, loc},
};

pub(super) fn compile_body(cx: &mut Ctx<'_>, file: usize, raw: &RawRule) -> Option<Body> {
    let at = loc(&raw.name);
    let bodies = raw.bodies();
    if bodies.len() > 1 {
        cx.error(
            file,
            at,
            format!(
                "rule `{}` has several bodies: {}",
                raw.name.value,
                bodies.join(", ")
            ),
            "give each rule one of them and split the rest into rules of their own",
        );
        return None;
    }
    if let Some(pr) = &raw.process {
        return match (&pr.allow, &pr.deny) {
            (Some(allow), None) => {
                if pr.unless_allowed {
                    cx.error(
                        file,
                        at,
                        "`unless_allowed` only applies to a `deny` list",
                        "remove `unless_allowed`, or turn `allow` into `deny`",
                    );
                    return None;
                }
                Some(Body::ProcessAllow(cx.exec_list(file, allow, at)))
            }
            (None, Some(deny)) => Some(Body::ProcessDeny {
                list: cx.exec_list(file, deny, at),
                unless_allowed: pr.unless_allowed,
            }),
            _ => {
                cx.error(
                    file,
                    at,
                    format!("process rule `{}` needs exactly one of `allow` and `deny`", raw.name.value),
                    "`allow` lists what may run (anything else fires); `deny` lists what may not; use two rules for both",
                );
                None
            }
        };
    }
    if let Some(sh) = &raw.shell {
        if sh.shells.is_empty() {
            cx.error(
                file,
                at,
                format!("shell rule `{}` lists no shells", raw.name.value),
                "list the program names that are shells, e.g. `shells: [sh, bash, dash, ash]`",
            );
            return None;
        }
        return Some(Body::Shell(ShellRule {
            shells: cx
                .globs(file, &sh.shells, GlobKind::Text, "shell")
                .unwrap_or_else(Globs::empty),
            chain: cx
                .globs(file, &sh.chain, GlobKind::Text, "chain")
                .unwrap_or_else(Globs::empty),
        }));
    }
    if let Some(fr) = &raw.file {
        let mut mode_bits = 0;
        for b in &fr.mode_bits {
            match b.value.trim() {
                "setuid" => mode_bits |= 0o4000,
                "setgid" => mode_bits |= 0o2000,
                "sticky" => mode_bits |= 0o1000,
                _ => cx.error(
                    file,
                    loc(b),
                    format!("unknown mode bit `{}`", b.value),
                    "use setuid, setgid or sticky",
                ),
            }
        }
        let mut ops = if fr.ops.is_empty() { ALL_OPS } else { 0 };
        for o in &fr.ops {
            match FileOp::from_name(o.value.trim()) {
                Some(op) => ops |= op_bit(op),
                None => cx.error(
                    file,
                    loc(o),
                    format!("unknown file op `{}`", o.value),
                    "use open, creat, rename, unlink, chmod, truncate, link or symlink",
                ),
            }
        }
        return Some(Body::File(FileRule {
            paths: cx.globs(file, &fr.paths, GlobKind::Path, "path"),
            allow: cx
                .globs(file, &fr.allow, GlobKind::Path, "allow")
                .unwrap_or_else(Globs::empty),
            ops,
            mode_bits,
            linked_to: cx.globs(file, &fr.linked_to, GlobKind::Path, "linked_to"),
        }));
    }
    if let Some(er) = &raw.egress {
        return match (&er.allow, &er.deny) {
            (Some(allow), None) => Some(Body::EgressAllow(cx.dests(file, allow))),
            (None, Some(deny)) => Some(Body::EgressDeny(cx.dests(file, deny))),
            _ => {
                cx.error(
                    file,
                    at,
                    format!("egress rule `{}` needs exactly one of `allow` and `deny`", raw.name.value),
                    "`allow` lists permitted destinations (anything else fires); `deny` lists forbidden ones; use two rules for both",
                );
                None
            }
        };
    }
    if let Some(d) = &raw.drift {
        return Some(Body::Drift(
            cx.globs(file, &d.allow, GlobKind::Path, "allow")
                .unwrap_or_else(Globs::empty),
        ));
    }
    if raw.memfd.is_some() {
        return Some(Body::Memfd);
    }
    if let Some(ps) = &raw.port_scan {
        let mut p = ScanParams::default();
        let count = |cx: &mut Ctx<'_>, v: &Option<Spanned<i64>>, zero_ok: bool, out: &mut usize| {
            if let Some(v) = v {
                match usize::try_from(v.value) {
                    Ok(n) if (2..=1024).contains(&n) || (zero_ok && n == 0) => *out = n,
                    _ => cx.error(
                        file,
                        loc(v),
                        format!("port-scan threshold {} is out of range", v.value),
                        if zero_ok {
                            "use 2 to 1024 distinct values, or 0 to turn this threshold off"
                        } else {
                            "use 2 to 1024 distinct values"
                        },
                    ),
                }
            }
        };
        count(cx, &ps.distinct_ports, false, &mut p.distinct_ports);
        count(cx, &ps.distinct_hosts, true, &mut p.distinct_hosts);
        if let Some(w) = &ps.window {
            match parse_window(&w.value) {
                Some(ns) => p.window_ns = ns,
                None => cx.error(
                    file,
                    loc(w),
                    format!("bad window `{}`", w.value),
                    "write a duration from 1ms to 10m such as `10s`, `500ms` or `1m`",
                ),
            }
        }
        return Some(Body::PortScan(p));
    }
    if let Some(sr) = &raw.syscall {
        if let Some(unexpected) = &sr.unexpected {
            return compile_unexpected(cx, file, raw, sr, unexpected);
        }
        if !sr.allow.is_empty() {
            cx.error(
                file,
                loc(&sr.allow.0[0]),
                "`allow` names the calls an `unexpected: true` rule lets pass",
                "add `unexpected: true`, or remove `allow` (a `calls` rule matches only the calls it lists)",
            );
            return None;
        }
        let mut calls = Vec::new();
        for c in &sr.calls {
            match crate::bpf::syscalls::HOOKED
                .iter()
                .find(|h| h.name == c.value.trim())
            {
                Some(h) => calls.push(h.name),
                None => cx.error(
                    file,
                    loc(c),
                    format!("`{}` is not a system call the monitor watches", c.value),
                    format!(
                        "use one of {} (or `unexpected: true` for any call outside the syscall profile)",
                        crate::bpf::syscalls::HOOKED
                            .iter()
                            .map(|h| h.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if sr.calls.is_empty() {
            cx.error(
                file,
                at,
                format!("syscall rule `{}` lists no calls", raw.name.value),
                "list the calls, e.g. `calls: [setns, unshare]`, or write `unexpected: true`",
            );
            return None;
        }
        return Some(Body::Syscall(SyscallRule {
            calls,
            to_root: sr.to_root,
            unexpected: false,
            allow: Vec::new(),
        }));
    }
    if let Some(pr) = &raw.posture {
        return compile_posture(cx, file, pr);
    }
    for (body, what) in [(&raw.read, "read"), (&raw.runtime_socket, "runtime_socket")] {
        let Some(rr) = body else { continue };
        let Some(paths) = cx.globs(file, &rr.paths, GlobKind::Path, "path") else {
            cx.error(
                file,
                at,
                format!("{what} rule `{}` lists no paths", raw.name.value),
                "list the paths, e.g. `paths: [/etc/shadow, \"**/docker.sock\"]`",
            );
            return None;
        };
        let rule = PathRule {
            paths,
            allow: cx
                .globs(file, &rr.allow, GlobKind::Path, "allow")
                .unwrap_or_else(Globs::empty),
        };
        return Some(if what == "read" {
            Body::Read(rule)
        } else {
            Body::RuntimeSocket(rule)
        });
    }
    None
}

/// `syscall: {unexpected: true, allow: [...]}`: the calls outside the
/// syscall profile, but those allowed by name.
fn compile_unexpected(
    cx: &mut Ctx<'_>,
    file: usize,
    raw: &RawRule,
    sr: &RawSyscallRule,
    unexpected: &Spanned<bool>,
) -> Option<Body> {
    if !unexpected.value {
        cx.error(
            file,
            loc(unexpected),
            "`unexpected: false` matches nothing",
            "write `unexpected: true`, or remove the key and list `calls`",
        );
        return None;
    }
    if let Some(c) = sr.calls.iter().next() {
        cx.error(
            file,
            loc(c),
            format!(
                "rule `{}` gives both `calls` and `unexpected: true`",
                raw.name.value
            ),
            "keep one: `calls` for the rare calls by name, `unexpected: true` (with `allow`) for any call outside the syscall profile",
        );
        return None;
    }
    let mut allow = Vec::new();
    for c in &sr.allow {
        match crate::bpf::profile::number_of(c.value.trim()).and_then(crate::bpf::profile::name_of) {
            Some(name) => allow.push(name),
            None => cx.error(
                file,
                loc(c),
                format!(
                    "`{}` is not a system call on {}",
                    c.value,
                    std::env::consts::ARCH
                ),
                "correct the name (as in syscall(2) and `monitor/data/docker-default-syscalls.txt`)",
            ),
        }
    }
    Some(Body::Syscall(SyscallRule {
        calls: Vec::new(),
        to_root: false,
        unexpected: true,
        allow,
    }))
}
