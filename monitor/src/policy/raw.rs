//! The rule file format as written (see `rules/README.md`), before validation.
//!
//! Every value that can be wrong in a way YAML cannot tell (a glob, a CIDR, a
//! port, a severity, a name) is kept as a [`Spanned`] so its diagnostic points
//! at the value itself.
use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{self, IntoDeserializer, MapAccess, SeqAccess, Visitor},
};
use serde_saphyr::{Location, Spanned};

/// One rule file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    /// Named address sets; a later definition of a name replaces an earlier one.
    #[serde(default)]
    pub networks: BTreeMap<String, List<String>>,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Add to a policy of the same name from an earlier file.
    #[serde(default)]
    pub extend: bool,
    /// Replace a policy of the same name from an earlier file.
    #[serde(default, rename = "override")]
    pub override_: bool,
    #[serde(default)]
    pub selector: Option<Spanned<RawSelector>>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub exceptions: Vec<Spanned<RawException>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSelector {
    #[serde(default)]
    pub host: bool,
    #[serde(default)]
    pub containers: bool,
    #[serde(default)]
    pub image: List<String>,
    #[serde(default)]
    pub name: List<String>,
    #[serde(default)]
    pub namespace: List<String>,
    #[serde(default)]
    pub pod: List<String>,
    #[serde(default)]
    pub runtime: List<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: Option<Spanned<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `alert` (the default), `deny` or `kill`: what the rule does under `--enforce`.
    #[serde(default)]
    pub action: Option<Spanned<String>>,
    /// ATT&CK technique ids (`T1059.004`).
    #[serde(default)]
    pub tags: Option<List<String>>,
    #[serde(default)]
    pub process: Option<RawProcessRule>,
    #[serde(default)]
    pub shell: Option<RawShell>,
    #[serde(default)]
    pub file: Option<RawFileRule>,
    #[serde(default)]
    pub egress: Option<RawEgressRule>,
    #[serde(default)]
    pub drift: Option<RawDrift>,
    #[serde(default)]
    pub memfd: Option<RawEmpty>,
    #[serde(default)]
    pub port_scan: Option<RawPortScan>,
    #[serde(default)]
    pub syscall: Option<RawSyscallRule>,
    #[serde(default)]
    pub read: Option<RawReadRule>,
    #[serde(default)]
    pub runtime_socket: Option<RawReadRule>,
    #[serde(default)]
    pub posture: Option<Spanned<RawPostureRule>>,
}

impl RawRule {
    /// The names of the rule bodies given, in field order.
    pub fn bodies(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.process.is_some() {
            v.push("process");
        }
        if self.shell.is_some() {
            v.push("shell");
        }
        if self.file.is_some() {
            v.push("file");
        }
        if self.egress.is_some() {
            v.push("egress");
        }
        if self.drift.is_some() {
            v.push("drift");
        }
        if self.memfd.is_some() {
            v.push("memfd");
        }
        if self.port_scan.is_some() {
            v.push("port_scan");
        }
        if self.syscall.is_some() {
            v.push("syscall");
        }
        if self.read.is_some() {
            v.push("read");
        }
        if self.runtime_socket.is_some() {
            v.push("runtime_socket");
        }
        if self.posture.is_some() {
            v.push("posture");
        }
        v
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProcessRule {
    #[serde(default)]
    pub allow: Option<Vec<RawExec>>,
    #[serde(default)]
    pub deny: Option<Vec<RawExec>>,
    #[serde(default)]
    pub unless_allowed: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExec {
    #[serde(default)]
    pub exe: List<String>,
    /// Program names (the file name, or the busybox applet).
    #[serde(default)]
    pub name: List<String>,
    #[serde(default)]
    pub args: List<String>,
    #[serde(default)]
    pub parents: List<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileRule {
    #[serde(default)]
    pub paths: List<String>,
    /// Fire only when the chmod or creation mode sets one of these bits.
    #[serde(default)]
    pub mode_bits: List<String>,
    /// Fire only for links whose existing side (what is linked to) matches.
    #[serde(default)]
    pub linked_to: List<String>,
    #[serde(default)]
    pub allow: List<String>,
    #[serde(default)]
    pub ops: List<String>,
}

/// Rare system calls by name (`monitor::bpf::syscalls::HOOKED`), or the
/// calls outside the syscall profile (`unexpected: true`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSyscallRule {
    #[serde(default)]
    pub calls: List<String>,
    /// Credential calls only when a non-root caller asks for id 0.
    #[serde(default)]
    pub to_root: bool,
    /// Any call outside `--syscall-profile`, the first time a cgroup makes it.
    #[serde(default)]
    pub unexpected: Option<Spanned<bool>>,
    /// With `unexpected`: calls that never match, by name.
    #[serde(default)]
    pub allow: List<String>,
}

/// Reads of files (`read`) or connects to unix sockets (`runtime_socket`)
/// whose paths match.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReadRule {
    #[serde(default)]
    pub paths: List<String>,
    #[serde(default)]
    pub allow: List<String>,
}

/// How a container was started (`policy::posture`): one practice per rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPostureRule {
    /// The finding id (`privileged`, `host-network`, ...).
    pub check: Spanned<String>,
    /// `added-capabilities`: the capabilities that are dangerous.
    #[serde(default)]
    pub capabilities: List<String>,
    /// `engine-socket-mount`, `sensitive-mount`: host paths (or where the
    /// container sees them) that must not be mounted.
    #[serde(default)]
    pub paths: List<String>,
    /// `ssh-port`: the ports.
    #[serde(default)]
    pub ports: List<RawPort>,
    /// `unused-port`: how long after the container starts a port may stay unused.
    #[serde(default)]
    pub grace: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgressRule {
    #[serde(default)]
    pub allow: Option<Vec<RawDest>>,
    #[serde(default)]
    pub deny: Option<Vec<RawDest>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDest {
    #[serde(default)]
    pub to: List<String>,
    #[serde(default)]
    pub ports: List<RawPort>,
    #[serde(default)]
    pub protocols: List<String>,
    #[serde(default)]
    pub dns: List<String>,
}

/// A shell rule: shells judged by where they start (see `rules/README.md`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShell {
    /// Program names that are shells.
    #[serde(default)]
    pub shells: List<String>,
    /// Program names of parents whose shells belong to the start-up chain,
    /// as a shell's own do (init programs, supervisors, scripts).
    #[serde(default)]
    pub chain: List<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrift {
    #[serde(default)]
    pub allow: List<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmpty {}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPortScan {
    #[serde(default)]
    pub distinct_ports: Option<Spanned<i64>>,
    #[serde(default)]
    pub distinct_hosts: Option<Spanned<i64>>,
    #[serde(default)]
    pub window: Option<Spanned<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawException {
    /// Why the exception exists; shown by nothing, read by people.
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted and kept for people; the engine has no use for it"
    )]
    pub reason: Option<String>,
    #[serde(default)]
    pub rules: List<String>,
    #[serde(default)]
    pub selector: Option<Spanned<RawSelector>>,
    #[serde(default)]
    pub exe: List<String>,
    #[serde(default)]
    pub parents: List<String>,
    /// Any ancestor's executable.
    #[serde(default)]
    pub ancestors: List<String>,
    /// The acting process's kernel task name (`comm`).
    #[serde(default)]
    pub comm: List<String>,
    #[serde(default)]
    pub paths: List<String>,
    #[serde(default)]
    pub to: List<String>,
    #[serde(default)]
    pub ports: List<RawPort>,
    #[serde(default)]
    pub dns: List<String>,
}

/// A port as written: a number or a `"low-high"` range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RawPort {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or a range like \"8000-8080\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of values, each with its position. In YAML either a sequence or,
/// for one value, the bare value (`exe: /usr/sbin/sshd`).
#[derive(Clone, Debug)]
pub(crate) struct List<T>(pub Vec<Spanned<T>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T> List<T> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Spanned<T>> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a Spanned<T>;
    type IntoIter = std::slice::Iter<'a, Spanned<T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One value or a sequence of them; the outer [`Spanned`] gives a bare value its position.
enum OneOrMany<T> {
    One(T),
    Many(Vec<Spanned<T>>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<T>>()? {
                    v.push(item);
                }
                Ok(OneOrMany::Many(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            // A bare mapping is one value too (the config's `{file: ...}`).
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let outer = Spanned::<OneOrMany<T>>::deserialize(d)?;
        Ok(match outer.value {
            OneOrMany::One(v) => List(vec![Spanned::new(v, outer.referenced, outer.defined)]),
            OneOrMany::Many(v) => List(v),
        })
    }
}

/// The position of a value, for diagnostics.
pub(crate) fn loc<T>(s: &Spanned<T>) -> Location {
    s.referenced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> RawFile {
        serde_saphyr::from_str(src).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn list_accepts_bare_value_and_sequence_with_positions() {
        let f = parse(
            "policies:\n  - name: p\n    rules:\n      - name: r\n        process:\n          deny:\n            - exe: /usr/sbin/sshd\n            - exe: [\"**/nc\", \"**/ncat\"]\n",
        );
        let deny = f.policies[0].rules[0]
            .process
            .as_ref()
            .unwrap()
            .deny
            .as_ref()
            .unwrap();
        let one: Vec<_> = deny[0]
            .exe
            .iter()
            .map(|s| (s.value.as_str(), s.referenced.line(), s.referenced.column()))
            .collect();
        assert_eq!(one, vec![("/usr/sbin/sshd", 7, 20)]);
        let many: Vec<_> = deny[1]
            .exe
            .iter()
            .map(|s| (s.value.as_str(), s.referenced.line(), s.referenced.column()))
            .collect();
        assert_eq!(many, vec![("**/nc", 8, 21), ("**/ncat", 8, 30)]);
    }

    #[test]
    fn ports_accept_numbers_and_ranges() {
        let f = parse(
            "policies:\n  - name: p\n    rules:\n      - name: r\n        egress:\n          allow:\n            - ports: [53, \"8000-8080\", -1]\n            - ports: 443\n",
        );
        let allow = f.policies[0].rules[0]
            .egress
            .as_ref()
            .unwrap()
            .allow
            .as_ref()
            .unwrap();
        let ports: Vec<_> = allow[0].ports.iter().map(|p| p.value.clone()).collect();
        assert_eq!(
            ports,
            vec![
                RawPort::Number(53),
                RawPort::Text("8000-8080".into()),
                RawPort::Number(-1)
            ]
        );
        assert_eq!(allow[1].ports.0[0].value, RawPort::Number(443));
        assert_eq!(allow[1].ports.0[0].referenced.line(), 8);
    }

    #[test]
    fn empty_file_is_empty() {
        let f = parse("# nothing here\n");
        assert!(f.policies.is_empty() && f.networks.is_empty());
    }
}
