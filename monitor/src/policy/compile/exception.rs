//! `exceptions:` entries: each condition compiled like the rule it excepts,
//! and the rules named checked against the policy's.
use std::collections::HashSet;

use serde_saphyr::Spanned;

use super::value::Ctx;
use crate::policy::{
    matcher::GlobKind,
    model::Exception,
    raw::{RawException, loc},
};

pub(super) fn compile_exception(
    cx: &mut Ctx<'_>,
    file: usize,
    x: &Spanned<RawException>,
    policy: &str,
    index: &[(&str, Option<usize>)],
) -> Option<Exception> {
    let r = &x.value;
    let mut rules = None;
    if !r.rules.is_empty() {
        let mut v = Vec::new();
        let mut ok = true;
        for name in &r.rules {
            match index.iter().find(|(n, _)| *n == name.value) {
                Some((_, Some(i))) => v.push(*i),
                Some((_, None)) => {} // a disabled (or broken) rule: nothing to except
                None => {
                    ok = false;
                    let names: HashSet<&str> = index.iter().map(|(n, _)| *n).collect();
                    let mut names: Vec<&str> = names.into_iter().collect();
                    names.sort_unstable();
                    cx.error(
                        file,
                        loc(name),
                        format!(
                            "exception names rule `{}`, which policy `{policy}` does not have",
                            name.value
                        ),
                        format!("use one of: {}", names.join(", ")),
                    );
                }
            }
        }
        if !ok {
            return None;
        }
        rules = Some(v);
    }
    let selector = r.selector.as_ref().map(|s| {
        let sel = cx.selector(file, s);
        if !sel.host && !sel.containers && !sel.has_container_fields() {
            cx.error(
                file,
                loc(s),
                "this exception's selector selects nothing, so the exception never applies",
                "set `containers: true`, `host: true`, or a container field (image, name, namespace, pod, runtime, labels), or leave `selector` out",
            );
        }
        sel
    });
    let e = Exception {
        rules,
        selector,
        exe: cx.globs(file, &r.exe, GlobKind::Path, "exe"),
        parents: cx.globs(file, &r.parents, GlobKind::Path, "parents"),
        ancestors: cx.globs(file, &r.ancestors, GlobKind::Path, "ancestors"),
        comm: cx.globs(file, &r.comm, GlobKind::Text, "comm"),
        paths: cx.globs(file, &r.paths, GlobKind::Path, "path"),
        to: cx.table(file, &r.to),
        ports: cx.ports(file, &r.ports),
        dns: cx.globs(file, &r.dns, GlobKind::Dns, "dns"),
    };
    let unconditional = e.selector.is_none()
        && e.exe.is_none()
        && e.parents.is_none()
        && e.ancestors.is_none()
        && e.comm.is_none()
        && e.paths.is_none()
        && e.to.is_none()
        && e.ports.is_none()
        && e.dns.is_none();
    if unconditional && e.rules.is_none() {
        cx.error(
            file,
            loc(x),
            format!("this exception has no conditions and names no rules: it would silence all of policy `{policy}`"),
            "add conditions (selector, exe, parents, ancestors, paths, to, ports, dns), or set `enabled: false` on the rules to turn off",
        );
        return None;
    }
    Some(e)
}
