//! What an alert is about, its subject: written by one function, so the dedup
//! key and the Alertmanager `subject` label cannot drift apart.
//!
//! The subject is the file path (`path -> target` for renames and links),
//! the destination (`tcp 203.0.113.7:443`, `tcp [2001:db8::7]:443`, with
//! ` (name)` when DNS named it), the executable with its arguments, else the
//! summary. The typed alert gives its parts ([`SubjectParts::of_alert`]), and
//! so does its record as a spool holds it ([`SubjectParts::of_record`]): the
//! subject is not in the record (the record is a contract), so a spooled
//! sink works it out again with the same [`subject`].
use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
};

use serde::Deserialize as _;
use serde_json::Value;

use super::Alert;
use crate::event::Protocol;

/// Between the executable and each argument: no argument can contain it, so
/// `sh -c 'a b'` and `sh -c a b` stay two subjects.
pub const ARG_SEPARATOR: char = '\0';

/// What a subject is made of, borrowed from an alert or from its record.
#[derive(Clone, Debug, Default)]
pub struct SubjectParts<'a> {
    /// The file path, and the new name of a rename or link.
    pub file: Option<(&'a str, Option<&'a str>)>,
    /// The connection's protocol, destination and DNS name.
    pub network: Option<NetworkParts<'a>>,
    /// The executable and argv (`args[0]` is the program as called).
    pub command: Option<(&'a str, Vec<&'a str>)>,
    /// The alert's summary, for alerts with none of the above.
    pub summary: &'a str,
}

/// The network part of [`SubjectParts`].
#[derive(Clone, Copy, Debug)]
pub struct NetworkParts<'a> {
    /// `tcp`, `udp`, or any other protocol number.
    pub protocol: Protocol,
    /// The destination address.
    pub daddr: IpAddr,
    /// The destination port.
    pub dport: u16,
    /// The DNS name the destination was resolved from, where known.
    pub dns: Option<&'a str>,
}

impl<'a> SubjectParts<'a> {
    /// The parts of a typed alert.
    pub fn of_alert(a: &'a Alert) -> SubjectParts<'a> {
        SubjectParts {
            file: a
                .file
                .as_ref()
                .map(|f| (f.path.as_str(), f.target.as_deref())),
            network: a.network.as_ref().map(|n| NetworkParts {
                protocol: n.protocol,
                daddr: n.daddr,
                dport: n.dport,
                dns: n.dns.as_deref(),
            }),
            command: a.process.as_ref().and_then(|p| {
                let exe = p.exe.as_deref()?;
                Some((exe, p.args.iter().map(String::as_str).collect()))
            }),
            summary: &a.summary,
        }
    }

    /// The parts of an alert record (`monitor.alert/v1` as JSON); what a
    /// record does not hold, or holds in another shape, is left out.
    pub fn of_record(a: &'a Value) -> SubjectParts<'a> {
        let str_at = |p: &str| a.pointer(p).and_then(Value::as_str);
        let network = a.get("network").filter(|n| n.is_object()).and_then(|n| {
            Some(NetworkParts {
                protocol: Protocol::deserialize(&n["protocol"]).ok()?,
                daddr: n["daddr"].as_str()?.parse().ok()?,
                dport: u16::try_from(n["dport"].as_u64()?).ok()?,
                dns: n["dns"].as_str(),
            })
        });
        SubjectParts {
            file: str_at("/file/path").map(|p| (p, str_at("/file/target"))),
            network,
            command: str_at("/process/exe").map(|exe| {
                let args = a
                    .pointer("/process/args")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                (exe, args)
            }),
            summary: a["summary"].as_str().unwrap_or(""),
        }
    }
}

/// The subject of an alert with these parts; see the module docs.
pub fn subject(p: &SubjectParts<'_>) -> String {
    if let Some((path, target)) = p.file {
        return match target {
            Some(t) => format!("{path} -> {t}"),
            None => path.to_owned(),
        };
    }
    if let Some(n) = &p.network {
        // As `NetworkInfo::destination` writes it: IPv6 in brackets.
        let dest = SocketAddr::new(n.daddr, n.dport);
        return match n.dns {
            Some(dns) => format!("{} {dest} ({dns})", n.protocol),
            None => format!("{} {dest}", n.protocol),
        };
    }
    if let Some((exe, args)) = &p.command {
        // A process alert is about the command: the executable and its argv.
        let mut s = (*exe).to_owned();
        for a in args.iter().skip(1) {
            s.push(ARG_SEPARATOR);
            s.push_str(a);
        }
        return s;
    }
    p.summary.to_owned()
}

impl Alert {
    /// What the alert is about ([`subject`]): the one worked out when the
    /// alert was made from a finding, else worked out now.
    pub fn subject(&self) -> Cow<'_, str> {
        if self.subject.is_empty() {
            Cow::Owned(subject(&SubjectParts::of_alert(self)))
        } else {
            Cow::Borrowed(&self.subject)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        context::ProcessInfo,
        event::{Family, NetOp, NetworkInfo},
        finding::{AlertKind, Severity},
    };

    fn alert() -> Alert {
        Alert::new(
            "node-1",
            "rule",
            "policy",
            Severity::High,
            AlertKind::Process,
            "what happened",
        )
    }

    /// A spooled sink has only the record: what it works out from the
    /// record is what the alert itself says.
    #[test]
    fn the_record_gives_the_alerts_own_subject() {
        let mut shell = alert();
        shell.process = Some(ProcessInfo {
            exe: Some("/bin/sh".into()),
            args: vec!["sh".into(), "-c".into(), "id; uname -a".into()],
            ..Default::default()
        });
        let mut egress = alert();
        egress.network = Some(NetworkInfo {
            action: None,
            op: NetOp::Connect,
            protocol: Protocol::Tcp,
            family: Family::Ipv4,
            daddr: "203.0.113.7".parse().unwrap(),
            dport: 443,
            dns: None,
        });
        for (a, want) in [
            (shell, "/bin/sh\0-c\0id; uname -a"),
            (egress, "tcp 203.0.113.7:443"),
            (alert(), "what happened"),
        ] {
            let record = serde_json::to_value(&a).unwrap();
            assert!(record.get("subject").is_none(), "{record}");
            assert_eq!(a.subject(), want);
            assert_eq!(subject(&SubjectParts::of_record(&record)), want);
        }
    }
}
