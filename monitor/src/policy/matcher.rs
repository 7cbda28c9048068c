//! Compiled matchers. Built once from validated rule text; matching borrows the
//! event and allocates nothing (globset and regex keep per-thread caches that
//! are filled on first use).
use std::net::IpAddr;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

use crate::event::{NetworkInfo, Protocol};

/// How a glob treats its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GlobKind {
    /// File paths and executables: `*` stays within one path component, `**` crosses them.
    Path,
    /// Names, labels, arguments: `*` matches anything.
    Text,
    /// DNS names: like `Text`, case-insensitive.
    Dns,
}

/// Compiles one glob the way its kind needs.
pub(crate) fn glob(pattern: &str, kind: GlobKind) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(kind == GlobKind::Path)
        .case_insensitive(kind == GlobKind::Dns)
        .backslash_escape(true)
        .build()
}

/// A set of globs; an empty set matches nothing.
#[derive(Clone, Debug)]
pub(crate) struct Globs(GlobSet);

impl Globs {
    pub fn new(globs: impl IntoIterator<Item = Glob>) -> Self {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(g);
        }
        // Each glob compiled on its own already, so the set cannot fail to build.
        Globs(b.build().unwrap_or_else(|_| GlobSet::empty()))
    }

    pub fn empty() -> Self {
        Globs(GlobSet::empty())
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

/// Addresses as sorted, disjoint, inclusive ranges: a lookup is a binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IpTable {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// The prefixes as given (IPv4-mapped IPv6 ones as IPv4): for the
    /// kernel's verdict map under enforcement.
    nets: Vec<IpNet>,
}

impl IpTable {
    pub fn new(nets: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        let nets = nets
            .iter()
            .map(|n| match n {
                IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
                    Some(a) => IpNet::new(IpAddr::V4(a), v6.prefix_len() - 96).unwrap_or(*n),
                    None => *n,
                },
                _ => *n,
            })
            .collect();
        IpTable {
            v4: merge(v4),
            v6: merge(v6),
            nets,
        }
    }

    /// The prefixes, IPv4-mapped ones as IPv4.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => lookup(&self.v4, u32::from(a)),
            IpAddr::V6(a) => lookup(&self.v6, u128::from(a)),
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket
/// connects to) are matched as the IPv4 address they carry.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn merge<T: Ord + Copy + num_like::Succ>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.succ_saturating() => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn lookup<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && ranges[i - 1].1 >= x
}

mod num_like {
    pub trait Succ {
        fn succ_saturating(self) -> Self;
    }
    impl Succ for u16 {
        fn succ_saturating(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u32 {
        fn succ_saturating(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ_saturating(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// Ports and port ranges, merged and sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    pub fn new(ranges: Vec<(u16, u16)>) -> Self {
        PortSet(merge(ranges))
    }

    pub fn contains(&self, port: u16) -> bool {
        lookup(&self.0, port)
    }

    /// The ranges, inclusive, sorted and disjoint.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

/// A set of transport protocols; empty means any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Protocols(u8);

impl Protocols {
    pub const TCP: u8 = 1;
    pub const UDP: u8 = 2;

    pub fn with(self, bit: u8) -> Self {
        Protocols(self.0 | bit)
    }

    /// Whether the set is empty, which means any protocol.
    pub fn is_any(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, p: Protocol) -> bool {
        match p {
            _ if self.0 == 0 => true,
            Protocol::Tcp => self.0 & Self::TCP != 0,
            Protocol::Udp => self.0 & Self::UDP != 0,
            Protocol::Other(_) => false,
        }
    }
}

/// What an exec is matched on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExecSubject<'a> {
    /// The executed file, absolute.
    pub exe: &'a str,
    /// The full argv, `argv[0]` included.
    pub args: &'a [String],
    /// The parent's executable, where known.
    pub parent: Option<&'a str>,
    /// The program's real name ([`crate::context::program_name`]): the
    /// file name, or the busybox applet.
    pub name: &'a str,
}

/// One `exe`/`args`/`parents` entry with conditions beyond the executable.
#[derive(Clone, Debug)]
pub(crate) struct ExecPattern {
    /// `None` when only `name` is given.
    pub exe: Option<Globs>,
    /// Program names ([`ExecSubject::name`]); `None` when not given.
    pub names: Option<Globs>,
    /// Each glob must match at least one argument after `argv[0]`.
    pub args: Vec<GlobMatcher>,
    /// When set, the parent's executable must match.
    pub parents: Option<Globs>,
}

impl ExecPattern {
    fn matches(&self, s: &ExecSubject<'_>) -> bool {
        self.exe.as_ref().is_none_or(|g| g.is_match(s.exe))
            && self.names.as_ref().is_none_or(|g| g.is_match(s.name))
            && self
                .args
                .iter()
                .all(|g| s.args.iter().skip(1).any(|a| g.is_match(a)))
            && self
                .parents
                .as_ref()
                .is_none_or(|p| s.parent.is_some_and(|exe| p.is_match(exe)))
    }
}

/// A list of exec entries: the ones with only `exe` folded into one glob set.
#[derive(Clone, Debug)]
pub(crate) struct ExecList {
    plain: Globs,
    /// Entries with only `name`, folded the same way.
    plain_names: Globs,
    conditional: Vec<ExecPattern>,
}

impl ExecList {
    pub fn new(entries: Vec<ExecPattern>, plain: Vec<Glob>, plain_names: Vec<Glob>) -> Self {
        ExecList {
            plain: Globs::new(plain),
            plain_names: Globs::new(plain_names),
            conditional: entries,
        }
    }

    pub fn matches(&self, s: &ExecSubject<'_>) -> bool {
        self.plain.is_match(s.exe)
            || self.plain_names.is_match(s.name)
            || self.conditional.iter().any(|e| e.matches(s))
    }
}

/// One egress destination entry: every condition given must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dest {
    pub to: Option<IpTable>,
    pub ports: Option<PortSet>,
    pub protocols: Protocols,
    pub dns: Option<Globs>,
}

impl Dest {
    pub fn matches(&self, n: &NetworkInfo) -> bool {
        self.to.as_ref().is_none_or(|t| t.contains(n.daddr))
            && self.ports.as_ref().is_none_or(|p| p.contains(n.dport))
            && self.protocols.contains(n.protocol)
            && self.dns.as_ref().is_none_or(|d| {
                n.dns
                    .as_deref()
                    .is_some_and(|name| d.is_match(name.strip_suffix('.').unwrap_or(name)))
            })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::event::{Family, NetOp};

    fn globs(kind: GlobKind, pats: &[&str]) -> Globs {
        Globs::new(pats.iter().map(|p| glob(p, kind).unwrap()))
    }

    #[test]
    fn path_globs() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**/sshd"], "/usr/sbin/sshd", true),
            (&["**/sshd"], "/usr/sbin/sshd-keygen", false),
            (&["/etc/**"], "/etc/passwd", true),
            (&["/etc/**"], "/etc/ssh/sshd_config", true),
            (&["/etc/**"], "/etcetera/x", false),
            (&["/etc/*"], "/etc/ssh/sshd_config", false),
            (&["/lib*/**"], "/lib64/ld-linux-x86-64.so.2", true),
            (&["/etc/cron*", "/etc/cron*/**"], "/etc/crontab", true),
            (&["/etc/cron*", "/etc/cron*/**"], "/etc/cron.d/job", true),
            (
                &["/{lib,usr/lib,etc}/systemd/system/docker.{service,socket}"],
                "/usr/lib/systemd/system/docker.socket",
                true,
            ),
            (&["**/{nc,ncat}"], "/usr/bin/ncat", true),
            (&["**/{nc,ncat}"], "/usr/bin/rsync", false),
            (&[], "/anything", false),
        ];
        for (pats, path, want) in cases {
            assert_eq!(
                globs(GlobKind::Path, pats).is_match(path),
                *want,
                "{pats:?} ~ {path}"
            );
        }
    }

    #[test]
    fn dns_globs_ignore_case() {
        let g = globs(GlobKind::Dns, &["*.example.com"]);
        assert!(g.is_match("API.Example.com"));
        assert!(g.is_match("a.b.example.com"));
        assert!(!g.is_match("example.com"));
    }

    #[test]
    fn ip_table() {
        let nets: Vec<IpNet> = ["10.0.0.0/8", "10.1.0.0/16", "192.168.1.7/32", "fd00::/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let t = IpTable::new(&nets);
        let cases: &[(IpAddr, bool)] = &[
            (Ipv4Addr::new(10, 0, 0, 0).into(), true),
            (Ipv4Addr::new(10, 255, 255, 255).into(), true),
            (Ipv4Addr::new(11, 0, 0, 0).into(), false),
            (Ipv4Addr::new(9, 255, 255, 255).into(), false),
            (Ipv4Addr::new(192, 168, 1, 7).into(), true),
            (Ipv4Addr::new(192, 168, 1, 8).into(), false),
            ("fd12::1".parse::<Ipv6Addr>().unwrap().into(), true),
            ("fe80::1".parse::<Ipv6Addr>().unwrap().into(), false),
            // IPv4-mapped IPv6 is matched as IPv4.
            ("::ffff:10.2.3.4".parse::<Ipv6Addr>().unwrap().into(), true),
            ("::ffff:8.8.8.8".parse::<Ipv6Addr>().unwrap().into(), false),
        ];
        for (ip, want) in cases {
            assert_eq!(t.contains(*ip), *want, "{ip}");
        }
        assert_eq!(t.v4.len(), 2, "overlapping prefixes merge");
        assert!(!IpTable::default().contains(Ipv4Addr::LOCALHOST.into()));
    }

    #[test]
    fn port_set() {
        let p = PortSet::new(vec![(443, 443), (8000, 8080), (8081, 8090), (53, 53)]);
        let cases = [
            (53, true),
            (52, false),
            (443, true),
            (8000, true),
            (8085, true),
            (8091, false),
            (1, false),
        ];
        for (port, want) in cases {
            assert_eq!(p.contains(port), want, "{port}");
        }
        assert_eq!(p.0.len(), 3, "adjacent ranges merge");
        let all = PortSet::new(vec![(1, 65535)]);
        assert!(all.contains(65535) && all.contains(1));
    }

    #[test]
    fn protocols() {
        let any = Protocols::default();
        assert!(any.contains(Protocol::Tcp) && any.contains(Protocol::Other(132)));
        let udp = Protocols::default().with(Protocols::UDP);
        assert!(udp.contains(Protocol::Udp) && !udp.contains(Protocol::Tcp));
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exec_list() {
        let text = |p: &str| glob(p, GlobKind::Text).unwrap().compile_matcher();
        let list = ExecList::new(
            vec![
                ExecPattern {
                    exe: Some(globs(GlobKind::Path, &["**/pip", "**/pip3"])),
                    names: None,
                    args: vec![text("install")],
                    parents: None,
                },
                ExecPattern {
                    exe: Some(globs(GlobKind::Path, &["**/python*"])),
                    names: None,
                    args: vec![text("pip"), text("install")],
                    parents: None,
                },
                ExecPattern {
                    exe: Some(globs(GlobKind::Path, &["/bin/sh"])),
                    names: None,
                    args: vec![],
                    parents: Some(globs(GlobKind::Path, &["/docker-entrypoint.sh"])),
                },
            ],
            vec![glob("**/apt-get", GlobKind::Path).unwrap()],
            vec![glob("nc", GlobKind::Text).unwrap()],
        );
        let cases: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("/usr/bin/apt-get", &["apt-get", "update"], None, true),
            ("/usr/bin/pip", &["pip", "install", "requests"], None, true),
            ("/usr/bin/pip", &["pip", "--version"], None, false),
            // argv[0] is not an argument.
            ("/usr/bin/pip", &["install"], None, false),
            (
                "/usr/bin/python3",
                &["python3", "-m", "pip", "install", "x"],
                None,
                true,
            ),
            (
                "/usr/bin/python3",
                &["python3", "-m", "pip", "list"],
                None,
                false,
            ),
            ("/bin/sh", &["sh"], Some("/docker-entrypoint.sh"), true),
            ("/bin/sh", &["sh"], Some("/usr/bin/python3"), false),
            ("/bin/sh", &["sh"], None, false),
            // By real name, busybox applets included.
            ("/usr/bin/nc", &["nc", "-l"], None, true),
            ("/bin/busybox", &["busybox", "nc", "-l"], None, true),
            ("/bin/busybox", &["nc", "-l"], None, true),
            ("/bin/busybox", &["busybox", "ls"], None, false),
            ("/usr/bin/ncat", &["ncat"], None, false),
        ];
        for (exe, argv, parent, want) in cases {
            let a = args(argv);
            let s = ExecSubject {
                exe,
                args: &a,
                parent: *parent,
                name: crate::context::program_name(exe, &a),
            };
            assert_eq!(list.matches(&s), *want, "{exe} {argv:?} parent {parent:?}");
        }
    }

    #[test]
    fn dest() {
        let net = |daddr: &str, dport: u16, protocol: Protocol, dns: Option<&str>| NetworkInfo {
            action: None,
            op: NetOp::Connect,
            protocol,
            family: Family::Ipv4,
            daddr: daddr.parse().unwrap(),
            dport,
            dns: dns.map(str::to_owned),
        };
        let cluster = Dest {
            to: Some(IpTable::new(&["10.0.0.0/8".parse().unwrap()])),
            ports: Some(PortSet::new(vec![(53, 53)])),
            protocols: Protocols::default().with(Protocols::UDP),
            dns: None,
        };
        let by_name = Dest {
            dns: Some(globs(GlobKind::Dns, &["*.example.com"])),
            ..Dest::default()
        };
        let cases = [
            (&cluster, net("10.0.0.10", 53, Protocol::Udp, None), true),
            (&cluster, net("10.0.0.10", 53, Protocol::Tcp, None), false),
            (&cluster, net("10.0.0.10", 54, Protocol::Udp, None), false),
            (&cluster, net("8.8.8.8", 53, Protocol::Udp, None), false),
            (
                &by_name,
                net("1.2.3.4", 443, Protocol::Tcp, Some("api.example.com.")),
                true,
            ),
            (&by_name, net("1.2.3.4", 443, Protocol::Tcp, None), false),
        ];
        for (i, (d, n, want)) in cases.iter().enumerate() {
            assert_eq!(d.matches(n), *want, "case {i}");
        }
    }
}
