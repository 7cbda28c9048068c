//! `posture:` rules: the checks, their settings and the capabilities they
//! name, compiled into a [`PostureRule`](crate::policy::model::PostureRule).

use serde_saphyr::{Location, Spanned};

use super::value::{Ctx, parse_window};
use crate::policy::{
    matcher::GlobKind,
    model::Body,
    raw::{List, RawPostureRule, loc},
};

pub(super) fn compile_posture(
    cx: &mut Ctx<'_>,
    file: usize,
    pr: &Spanned<RawPostureRule>,
) -> Option<Body> {
    use crate::policy::model::{DEFAULT_GRACE, PostureCheck as C, PostureRule};
    let r = &pr.value;
    let id = r.check.value.trim();
    let Some(check) = C::from_id(id) else {
        cx.error(
            file,
            loc(&r.check),
            format!("unknown posture check `{}`", r.check.value),
            format!(
                "use one of: {}",
                C::ALL
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return None;
    };
    // Each parameter belongs to some checks; given to another it would do nothing.
    let misplaced = |cx: &mut Ctx<'_>, given: bool, at: Location, key: &str, owners: &[C]| {
        if given && !owners.contains(&check) {
            let names: Vec<&str> = owners.iter().map(|c| c.id()).collect();
            cx.error(
                file,
                at,
                format!("`{key}` does nothing for posture check `{id}`"),
                format!("`{key}` applies to {}; remove it here", names.join(" and ")),
            );
            true
        } else {
            false
        }
    };
    let first = |l: &List<String>| l.iter().next().map_or(loc(pr), loc);
    let mut bad = misplaced(
        cx,
        !r.capabilities.is_empty(),
        first(&r.capabilities),
        "capabilities",
        &[C::AddedCapabilities],
    );
    bad |= misplaced(
        cx,
        !r.paths.is_empty(),
        first(&r.paths),
        "paths",
        &[C::EngineSocketMount, C::SensitiveMount],
    );
    bad |= misplaced(
        cx,
        !r.ports.is_empty(),
        r.ports.iter().next().map_or(loc(pr), loc),
        "ports",
        &[C::SshPort],
    );
    bad |= misplaced(
        cx,
        r.grace.is_some(),
        r.grace.as_ref().map_or(loc(pr), loc),
        "grace",
        &[C::UnusedPort],
    );
    let needs = |cx: &mut Ctx<'_>, empty: bool, key: &str, example: &str| {
        if empty {
            cx.error(
                file,
                loc(&r.check),
                format!("posture check `{id}` needs `{key}`"),
                format!("list them, e.g. `{key}: {example}`"),
            );
        }
        empty
    };
    match check {
        C::AddedCapabilities => {
            bad |= needs(
                cx,
                r.capabilities.is_empty(),
                "capabilities",
                "[SYS_ADMIN, SYS_PTRACE]",
            )
        }
        C::EngineSocketMount | C::SensitiveMount => {
            bad |= needs(cx, r.paths.is_empty(), "paths", "[\"**/docker.sock\"]")
        }
        C::SshPort => bad |= needs(cx, r.ports.is_empty(), "ports", "[22]"),
        _ => {}
    }
    let mut capabilities = Vec::new();
    for c in &r.capabilities {
        let name = crate::context::capability_name(&c.value);
        if KNOWN_CAPABILITIES.contains(&name.as_str()) {
            capabilities.push(name);
        } else {
            bad = true;
            cx.error(
                file,
                loc(c),
                format!("`{}` is not a Linux capability", c.value),
                "write a capability name such as SYS_ADMIN or CAP_SYS_ADMIN (capabilities(7))",
            );
        }
    }
    let mut grace = DEFAULT_GRACE;
    if let Some(g) = &r.grace {
        match parse_window(&g.value) {
            Some(ns) => grace = std::time::Duration::from_nanos(ns),
            None => {
                bad = true;
                cx.error(
                    file,
                    loc(g),
                    format!("bad grace `{}`", g.value),
                    "write a duration from 1ms to 10m such as `30s`, `500ms` or `2m`",
                );
            }
        }
    }
    let paths = cx.globs(file, &r.paths, GlobKind::Path, "path");
    let ports = cx.ports(file, &r.ports);
    if bad {
        return None;
    }
    Some(Body::Posture(PostureRule {
        check,
        capabilities,
        paths,
        ports,
        grace,
    }))
}

/// capabilities(7), without `CAP_`.
const KNOWN_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
    "ALL",
];
