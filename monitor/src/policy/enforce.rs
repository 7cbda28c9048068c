//! What a workload is held to under `--enforce`: the rules with `action:
//! deny` and `action: kill` that select it, compiled into what the kernel
//! checks.
//!
//! Egress becomes a longest-prefix table: for each address prefix any
//! enforced rule or exception names (and the two /0), the ports and
//! protocols open below it, found by judging every rule exactly as
//! [`RuleSet::evaluate`] would for an address in that prefix and no longer
//! one. Kills become the literal paths and file names of the kill rules.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use monitor_common::{
    PortSegment,
    enforce::{ALLOW_OTHER, ALLOW_TCP, ALLOW_UDP, SEGMENTS},
};

use super::{
    matcher::{Dest, Protocols},
    model::{Body, Exception, KernelForm, RuleSet},
    selector::Workload,
};
use crate::finding::Action;

/// One prefix of a container's egress table and what is open below it
/// (ports absent from every segment are denied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPrefix {
    /// The prefix (IPv4, or IPv6 other than IPv4-mapped).
    pub net: IpNet,
    /// Port ranges with the protocols allowed on them, ascending.
    pub segments: Vec<PortSegment>,
}

/// What one workload is held to. Empty when no enforcing rule selects it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// The enforcing rules, `policy/rule`, for the log.
    pub rules: Vec<String>,
    /// `None` when no `deny` rule applies (nothing is attached).
    pub egress: Option<Vec<EgressPrefix>>,
    /// Absolute paths whose exec is killed.
    pub kill_paths: Vec<String>,
    /// File names whose exec is killed, wherever the file is.
    pub kill_names: Vec<String>,
    /// Files and trees whose writes are refused (file rules with `action:
    /// deny`), with the `allow` entries that stay open, as the rules give
    /// them: paths inside the container, resolved there by the agent.
    pub protect: Vec<ProtectPath>,
}

/// One path of a file rule with `action: deny`, in the form the kernel
/// judges: a file, or every file below a directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProtectPath {
    /// Absolute, inside the container, with no glob characters.
    pub path: String,
    /// `/dir/**`: everything below `path`, not `path` itself.
    pub tree: bool,
    /// From the rule's `allow`: writes here stay open.
    pub allow: bool,
}

impl Enforcement {
    /// Nothing to enforce.
    pub fn is_empty(&self) -> bool {
        self.egress.is_none()
            && self.kill_paths.is_empty()
            && self.kill_names.is_empty()
            && self.protect.is_empty()
    }
}

/// One enforced egress rule with the exceptions that carve into it.
struct EgressRule<'a> {
    /// An allowlist (fires when nothing matches) or a deny list.
    allow: bool,
    dests: &'a [Dest],
    exceptions: Vec<&'a Exception>,
}

impl RuleSet {
    /// What `w` is held to under `--enforce`. An error when the kernel's
    /// table cannot hold the egress rules (more than
    /// `monitor_common::enforce::SEGMENTS` port ranges below one prefix).
    pub fn enforcement(&self, w: &Workload<'_>) -> Result<Enforcement, String> {
        let mut out = Enforcement::default();
        let mut egress: Vec<EgressRule<'_>> = Vec::new();
        for policy in self.policies.iter().filter(|p| p.selector.matches(w)) {
            for ri in policy.rules.clone() {
                let rule = &self.rules[ri];
                if rule.action == Action::Alert {
                    continue;
                }
                let applying: Vec<&Exception> = policy
                    .exceptions
                    .iter()
                    .filter(|x| x.rules.as_ref().is_none_or(|r| r.contains(&ri)))
                    .filter(|x| x.selector.as_ref().is_none_or(|s| s.matches(w)))
                    .collect();
                // An exception with only a selector takes the whole rule off.
                if applying.iter().any(|x| x.to.is_none() && x.ports.is_none()) {
                    continue;
                }
                out.rules.push(format!("{}/{}", rule.policy, rule.name));
                match (&rule.body, &rule.kernel) {
                    (Body::EgressAllow(dests), _) => egress.push(EgressRule {
                        allow: true,
                        dests,
                        exceptions: applying,
                    }),
                    (Body::EgressDeny(dests), _) => egress.push(EgressRule {
                        allow: false,
                        dests,
                        exceptions: applying,
                    }),
                    (_, Some(KernelForm::Kill(kill))) => {
                        out.kill_paths.extend(kill.paths.iter().cloned());
                        out.kill_names.extend(kill.names.iter().cloned());
                    }
                    (_, Some(KernelForm::Protect(paths))) => {
                        out.protect.extend(paths.iter().cloned());
                    }
                    _ => {}
                }
            }
        }
        out.kill_paths.sort();
        out.kill_paths.dedup();
        out.kill_names.sort();
        out.kill_names.dedup();
        out.protect.sort();
        out.protect.dedup();
        if !egress.is_empty() {
            out.egress = Some(egress_table(&egress)?);
        }
        Ok(out)
    }
}

/// The protocols the kernel tells apart, with their bits.
const PROTOCOLS: [(u32, Option<u8>); 3] = [
    (ALLOW_TCP, Some(Protocols::TCP)),
    (ALLOW_UDP, Some(Protocols::UDP)),
    (ALLOW_OTHER, None),
];

fn covers(nets: Option<&[IpNet]>, p: &IpNet) -> bool {
    match nets {
        None => true,
        Some(nets) => nets.iter().any(|n| {
            n.prefix_len() <= p.prefix_len() && same_family(n, p) && n.contains(&p.network())
        }),
    }
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!(
        (a, b),
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
    )
}

fn protocol_matches(p: Protocols, want: Option<u8>) -> bool {
    p.is_any() || want.is_some_and(|bit| p.with(bit) == p)
}

fn egress_table(rules: &[EgressRule<'_>]) -> Result<Vec<EgressPrefix>, String> {
    let mut prefixes: Vec<IpNet> = vec![
        IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("/0"),
        IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("/0"),
    ];
    for r in rules {
        for d in r.dests {
            prefixes.extend(d.to.iter().flat_map(|t| t.nets().iter().copied()));
        }
        for x in &r.exceptions {
            prefixes.extend(x.to.iter().flat_map(|t| t.nets().iter().copied()));
        }
    }
    prefixes.sort_by_key(|n| (matches!(n, IpNet::V6(_)), n.prefix_len(), n.network()));
    prefixes.dedup();

    let mut out: Vec<EgressPrefix> = Vec::new();
    for p in &prefixes {
        // Port boundaries of everything that applies below this prefix.
        let mut cuts: Vec<u32> = vec![0, 65536];
        for r in rules {
            for d in r
                .dests
                .iter()
                .filter(|d| covers(d.to.as_ref().map(|t| t.nets()), p))
            {
                if let Some(ports) = &d.ports {
                    for &(lo, hi) in ports.ranges() {
                        cuts.extend([lo as u32, hi as u32 + 1]);
                    }
                }
            }
            for x in r
                .exceptions
                .iter()
                .filter(|x| covers(x.to.as_ref().map(|t| t.nets()), p))
            {
                if let Some(ports) = &x.ports {
                    for &(lo, hi) in ports.ranges() {
                        cuts.extend([lo as u32, hi as u32 + 1]);
                    }
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut segments: Vec<PortSegment> = Vec::new();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0] as u16, (w[1] - 1) as u16);
            let port = lo;
            let mut allow = 0;
            for (bit, want) in PROTOCOLS {
                let fires = rules.iter().any(|r| {
                    let hit = r.dests.iter().any(|d| {
                        covers(d.to.as_ref().map(|t| t.nets()), p)
                            && d.ports.as_ref().is_none_or(|ps| ps.contains(port))
                            && protocol_matches(d.protocols, want)
                    });
                    let base = if r.allow { !hit } else { hit };
                    let excepted = r.exceptions.iter().any(|x| {
                        covers(x.to.as_ref().map(|t| t.nets()), p)
                            && x.ports.as_ref().is_none_or(|ps| ps.contains(port))
                    });
                    base && !excepted
                });
                if !fires {
                    allow |= bit;
                }
            }
            if allow == 0 {
                continue;
            }
            match segments.last_mut() {
                Some(last) if last.allow == allow && last.hi as u32 + 1 == lo as u32 => {
                    last.hi = hi
                }
                _ => segments.push(PortSegment { lo, hi, allow }),
            }
        }
        if segments.len() > SEGMENTS {
            return Err(format!(
                "the egress rules open {} port ranges below {p}; the kernel's table holds {SEGMENTS}",
                segments.len()
            ));
        }
        // The same answer as the prefix it sits in: the longer entry adds nothing.
        let parent = out
            .iter()
            .filter(|o| {
                same_family(&o.net, p)
                    && o.net.prefix_len() < p.prefix_len()
                    && o.net.contains(&p.network())
            })
            .max_by_key(|o| o.net.prefix_len());
        if p.prefix_len() > 0 && parent.is_some_and(|o| o.segments == segments) {
            continue;
        }
        out.push(EgressPrefix { net: *p, segments });
    }
    Ok(out)
}
