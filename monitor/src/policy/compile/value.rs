//! One rule value to its matcher (globs, CIDRs, ports, severity, selector,
//! exec and destination lists), with a diagnostic where it cannot be one.
use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use globset::{Glob, GlobMatcher};
use ipnet::IpNet;
use serde_saphyr::{Location, Spanned};

use crate::finding::Severity;
use crate::policy::{
    Diagnostic,
    matcher::{Dest, ExecList, ExecPattern, GlobKind, Globs, IpTable, PortSet, Protocols, glob},
    raw::{List, RawDest, RawExec, RawPort, RawSelector, loc},
    selector::{RUNTIMES, Selector},
};

const GLOB_HINT: &str = "close every `[` and `{`, and escape a literal `*`, `?`, `[` or `{` as `[*]`, `[?]`, `[[]`, `[{]` (or with a backslash)";

pub(super) struct Ctx<'a> {
    pub(super) files: &'a [PathBuf],
    pub(super) diags: &'a mut Vec<Diagnostic>,
    pub(super) networks: BTreeMap<String, Vec<IpNet>>,
}

impl Ctx<'_> {
    pub(super) fn error(
        &mut self,
        file: usize,
        at: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let d = Diagnostic::at(&self.files[file], at, message, hint);
        self.diags.push(d);
    }

    /// Compiles a list of globs; `None` when the list is empty.
    pub(super) fn globs(
        &mut self,
        file: usize,
        list: &List<String>,
        kind: GlobKind,
        what: &str,
    ) -> Option<Globs> {
        if list.is_empty() {
            return None;
        }
        let globs: Vec<Glob> = list
            .iter()
            .filter_map(|s| self.glob(file, s, kind, what))
            .collect();
        Some(Globs::new(globs))
    }

    pub(super) fn glob(
        &mut self,
        file: usize,
        s: &Spanned<String>,
        kind: GlobKind,
        what: &str,
    ) -> Option<Glob> {
        let pattern = s.value.as_str();
        if kind == GlobKind::Path
            && !(pattern.starts_with('/') || pattern.starts_with("**") || pattern.starts_with('{'))
        {
            self.error(
                file,
                loc(s),
                format!("{what} pattern `{pattern}` can never match: paths here are absolute"),
                format!("write `**/{pattern}` to match in any directory, or the full path such as `/usr/bin/{pattern}`"),
            );
            return None;
        }
        match glob(pattern, kind) {
            Ok(g) => Some(g),
            Err(e) => {
                self.error(
                    file,
                    loc(s),
                    format!("bad glob `{pattern}`: {}", e.kind()),
                    GLOB_HINT,
                );
                None
            }
        }
    }

    pub(super) fn matcher(
        &mut self,
        file: usize,
        s: &Spanned<String>,
        kind: GlobKind,
        what: &str,
    ) -> Option<GlobMatcher> {
        self.glob(file, s, kind, what).map(|g| g.compile_matcher())
    }

    /// Addresses, prefixes and network names to one table; `None` when the list is empty.
    pub(super) fn table(&mut self, file: usize, list: &List<String>) -> Option<IpTable> {
        if list.is_empty() {
            return None;
        }
        let mut nets = Vec::new();
        for s in list {
            let v = s.value.trim();
            if is_network_name(v) {
                match self.networks.get(v) {
                    Some(n) => nets.extend(n.iter().copied()),
                    None => {
                        let known: Vec<&str> = self.networks.keys().map(String::as_str).collect();
                        self.error(
                            file,
                            loc(s),
                            format!("unknown network `{v}`"),
                            if known.is_empty() {
                                format!("define it under `networks:` (e.g. `networks: {{{v}: [10.0.0.0/8]}}`) or write a CIDR")
                            } else {
                                format!("define it under `networks:` or use one of: {}", known.join(", "))
                            },
                        );
                    }
                }
                continue;
            }
            match parse_cidr(v) {
                Ok(n) => nets.push(n),
                Err(why) => self.error(file, loc(s), format!("bad CIDR `{v}`: {why}"), CIDR_HINT),
            }
        }
        Some(IpTable::new(&nets))
    }

    pub(super) fn ports(&mut self, file: usize, list: &List<RawPort>) -> Option<PortSet> {
        if list.is_empty() {
            return None;
        }
        let mut ranges = Vec::new();
        for p in list {
            match parse_port(&p.value) {
                Ok(r) => ranges.push(r),
                Err(why) => self.error(
                    file,
                    loc(p),
                    why,
                    "a port is a number from 1 to 65535; a range is a quoted \"low-high\" such as \"8000-8080\"",
                ),
            }
        }
        Some(PortSet::new(ranges))
    }

    pub(super) fn severity(&mut self, file: usize, s: &Spanned<String>) -> Option<Severity> {
        let sev = match s.value.trim().to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => {
                self.error(
                    file,
                    loc(s),
                    format!("unknown severity `{}`", s.value),
                    "use one of: info, low, medium, high, critical",
                );
                return None;
            }
        };
        Some(sev)
    }

    pub(super) fn selector(&mut self, file: usize, s: &Spanned<RawSelector>) -> Selector {
        let r = &s.value;
        let mut runtime = None;
        if !r.runtime.is_empty() {
            let mut v = Vec::new();
            for rt in &r.runtime {
                match RUNTIMES.iter().find(|k| **k == rt.value.trim()) {
                    Some(k) => v.push(*k),
                    None => self.error(
                        file,
                        loc(rt),
                        format!("unknown container runtime `{}`", rt.value),
                        format!("use one of: {}", RUNTIMES.join(", ")),
                    ),
                }
            }
            runtime = Some(v);
        }
        let mut labels = Vec::new();
        for (k, v) in &r.labels {
            if let Some(g) = self.glob(file, v, GlobKind::Text, "label") {
                labels.push((k.clone(), Globs::new([g])));
            }
        }
        Selector {
            host: r.host,
            containers: r.containers,
            image: self.globs(file, &r.image, GlobKind::Text, "image"),
            name: self.globs(file, &r.name, GlobKind::Text, "name"),
            namespace: self.globs(file, &r.namespace, GlobKind::Text, "namespace"),
            pod: self.globs(file, &r.pod, GlobKind::Text, "pod"),
            runtime,
            labels,
        }
    }

    pub(super) fn exec_list(&mut self, file: usize, entries: &[RawExec], at: Location) -> ExecList {
        let mut plain = Vec::new();
        let mut plain_names = Vec::new();
        let mut conditional = Vec::new();
        for e in entries {
            if e.exe.is_empty() && e.name.is_empty() {
                self.error(
                    file,
                    at,
                    "a process entry has neither `exe` nor `name`",
                    "give an executable glob (`exe: \"**/sshd\"`) or a program name (`name: sshd`, which also matches busybox applets)",
                );
                continue;
            }
            for n in &e.name {
                if n.value.contains('/') {
                    self.error(
                        file,
                        loc(n),
                        format!("program name `{}` has a `/`: names are file names", n.value),
                        "write the file name alone (`name: nc`), or match the path with `exe:`",
                    );
                }
            }
            if e.args.is_empty() && e.parents.is_empty() && (e.exe.is_empty() || e.name.is_empty())
            {
                plain.extend(
                    e.exe
                        .iter()
                        .filter_map(|s| self.glob(file, s, GlobKind::Path, "exe")),
                );
                plain_names.extend(
                    e.name
                        .iter()
                        .filter_map(|s| self.glob(file, s, GlobKind::Text, "name")),
                );
                continue;
            }
            let exe = self.globs(file, &e.exe, GlobKind::Path, "exe");
            let names = self.globs(file, &e.name, GlobKind::Text, "name");
            let args = e
                .args
                .iter()
                .filter_map(|s| self.matcher(file, s, GlobKind::Text, "args"))
                .collect();
            let parents = self.globs(file, &e.parents, GlobKind::Path, "parents");
            conditional.push(ExecPattern {
                exe,
                names,
                args,
                parents,
            });
        }
        ExecList::new(conditional, plain, plain_names)
    }

    pub(super) fn dests(&mut self, file: usize, entries: &[RawDest]) -> Vec<Dest> {
        entries
            .iter()
            .map(|d| {
                let mut protocols = Protocols::default();
                for p in &d.protocols {
                    match p.value.trim().to_ascii_lowercase().as_str() {
                        "tcp" => protocols = protocols.with(Protocols::TCP),
                        "udp" => protocols = protocols.with(Protocols::UDP),
                        _ => self.error(
                            file,
                            loc(p),
                            format!("unknown protocol `{}`", p.value),
                            "use `tcp` or `udp`, or leave `protocols` out for any",
                        ),
                    }
                }
                Dest {
                    to: self.table(file, &d.to),
                    ports: self.ports(file, &d.ports),
                    protocols,
                    dns: self.globs(file, &d.dns, GlobKind::Dns, "dns"),
                }
            })
            .collect()
    }
}

pub(super) const CIDR_HINT: &str = "write an address or prefix such as 10.0.0.0/8, 192.168.1.5 or fd00::/8 (prefix at most /32 for IPv4, /128 for IPv6), or the name of a network under `networks:`";

/// A network name: a letter, then letters, digits, `-` or `_`.
pub(super) fn is_network_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.parse::<IpAddr>().is_err()
}

/// An address (`10.1.2.3`, a /32 or /128) or a prefix (`10.0.0.0/8`); host
/// bits in a prefix are cleared.
pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(format!(
                    "prefix length `/{l}` is not 0 to {max} for an {} address",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                ));
            }
        },
    };
    IpNet::new(ip, len)
        .map(|n| n.trunc())
        .map_err(|e| e.to_string())
}

fn parse_port(p: &RawPort) -> Result<(u16, u16), String> {
    let one = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|&v| v != 0)
            .ok_or_else(|| format!("port {n} is out of range"))
    };
    match p {
        RawPort::Number(n) => one(*n).map(|v| (v, v)),
        RawPort::Text(t) => {
            let t = t.trim();
            let num = |s: &str| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("bad port `{t}`"))
                    .and_then(one)
            };
            match t.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if lo > hi {
                        return Err(format!("bad port range `{t}`: {lo} is above {hi}"));
                    }
                    Ok((lo, hi))
                }
                None => num(t).map(|v| (v, v)),
            }
        }
    }
}

/// `10s`, `500ms`, `1m` to nanoseconds.
pub(super) fn parse_window(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let ns = match unit.trim() {
        "ms" => n.checked_mul(1_000_000)?,
        "s" => n.checked_mul(1_000_000_000)?,
        "m" => n.checked_mul(60_000_000_000)?,
        _ => return None,
    };
    (1_000_000..=600_000_000_000).contains(&ns).then_some(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let ok = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.168.1.5", "192.168.1.5/32"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ];
        for (s, want) in ok {
            assert_eq!(parse_cidr(s).unwrap().to_string(), want, "{s}");
        }
        let bad = [
            (
                "10.0.0.0/33",
                "prefix length `/33` is not 0 to 32 for an IPv4 address",
            ),
            (
                "fd00::/129",
                "prefix length `/129` is not 0 to 128 for an IPv6 address",
            ),
            ("10.0.0/8", "`10.0.0` is not an IPv4 or IPv6 address"),
            (
                "10.0.0.0/x",
                "prefix length `/x` is not 0 to 32 for an IPv4 address",
            ),
            ("256.1.1.1", "`256.1.1.1` is not an IPv4 or IPv6 address"),
        ];
        for (s, want) in bad {
            assert_eq!(parse_cidr(s).unwrap_err(), want, "{s}");
        }
    }

    #[test]
    fn network_names() {
        for (s, want) in [
            ("cluster", true),
            ("cluster-dns", true),
            ("a_1", true),
            ("10.0.0.0/8", false),
            ("fd00::/8", false),
            ("-x", false),
            ("", false),
            ("a.b", false),
        ] {
            assert_eq!(is_network_name(s), want, "{s}");
        }
    }

    #[test]
    fn ports() {
        let t = |s: &str| RawPort::Text(s.into());
        let ok = [
            (RawPort::Number(443), (443, 443)),
            (RawPort::Number(65535), (65535, 65535)),
            (t("8000-8080"), (8000, 8080)),
            (t(" 53 "), (53, 53)),
            (t("1-65535"), (1, 65535)),
        ];
        for (p, want) in ok {
            assert_eq!(parse_port(&p), Ok(want), "{p:?}");
        }
        let bad = [
            (RawPort::Number(0), "port 0 is out of range"),
            (RawPort::Number(70000), "port 70000 is out of range"),
            (RawPort::Number(-1), "port -1 is out of range"),
            (t("http"), "bad port `http`"),
            (t("80-"), "bad port `80-`"),
            (
                t("9000-8000"),
                "bad port range `9000-8000`: 9000 is above 8000",
            ),
        ];
        for (p, want) in bad {
            assert_eq!(parse_port(&p), Err(want.to_owned()), "{p:?}");
        }
    }

    #[test]
    fn windows() {
        for (s, want) in [
            ("10s", Some(10_000_000_000)),
            ("500ms", Some(500_000_000)),
            ("1m", Some(60_000_000_000)),
            ("0s", None),
            ("11m", None),
            ("10", None),
            ("s", None),
            ("10h", None),
        ] {
            assert_eq!(parse_window(s), want, "{s}");
        }
    }
}
