//! Posture rules: how a container was started, judged once per container and
//! finding, from the facts its runtime's files state
//! ([`Posture`](crate::context::Posture)) and the ports it listens on.
//!
//! | check | fires when | phase |
//! | --- | --- | --- |
//! | `privileged` | `--privileged` (CRI: every capability, nothing masked) | start |
//! | `host-network`, `host-pid`, `host-ipc` | the host's namespace is shared | start |
//! | `added-capabilities` | a listed capability (or `ALL`) is added | start |
//! | `no-memory-limit`, `no-cpu-limit` | no limit is set | start |
//! | `writable-rootfs` | the root filesystem is not read-only | start |
//! | `root-user` | the main process runs as uid 0 | start |
//! | `restart-policy` | `always`, `unless-stopped`, or `on-failure` with no retry cap | start |
//! | `seccomp-unconfined`, `apparmor-unconfined`, `selinux-disabled` | that confinement is off | start |
//! | `engine-socket-mount` | a listed socket is mounted (host path or container path) | start |
//! | `sensitive-mount` | a listed host path is mounted | start |
//! | `ssh-port` | a process in the container binds or listens on a listed port | when seen |
//! | `unused-port` | an exposed or published port is not bound nor listened on `grace` after the container was first seen | after `grace` |
//!
//! A fact the runtime's files do not state (`None`) never fires.
//!
//! [`watch`] raises each finding once per container; this file judges one.
use std::time::Duration;

use super::{
    model::{Body, Phase, Policy, PostureCheck, PostureRule, RuleSet},
    selector::Workload,
};
use crate::{
    context::{ContainerInfo, ExposedPort, HostMount, Limit, ListenedPort, RuntimeMetadata},
    finding::{Action, AlertKind, Finding, PostureInfo},
};

mod watch;

pub use watch::{PostureAlert, PostureWatch, workload};

/// What a container is judged on.
#[derive(Clone, Copy, Debug)]
pub struct PostureSubject<'a> {
    /// The alert record's `container`.
    pub container: &'a ContainerInfo,
    /// What its runtime's files said.
    pub metadata: &'a RuntimeMetadata,
    /// What is known of its ports.
    pub ports: PortsSeen<'a>,
}

/// What is known of the ports a container uses, for the port checks.
#[derive(Clone, Copy, Debug)]
pub enum PortsSeen<'a> {
    /// Nothing yet: only the checks of the start-up facts run.
    Unknown,
    /// Ports seen bound or listened on so far: `ssh-port` runs.
    Listening(&'a [ListenedPort]),
    /// Ports a bind just showed: `ssh-port` alone runs.
    Bound(&'a [ListenedPort]),
    /// Every port bound or listened on up to `age` after the container was
    /// first seen: `ssh-port` runs, and the `unused-port` rules whose grace
    /// is at most `age`.
    Settled {
        /// The ports.
        listening: &'a [ListenedPort],
        /// How long the container has been watched.
        age: Duration,
    },
}

/// One thing a check found; several for the mount and port checks.
struct Item {
    /// For the summary.
    what: String,
    /// For the `posture.fact`.
    fact: String,
    /// What exceptions' `paths` match (mounts: the host path and the container's).
    paths: [Option<String>; 2],
    /// What exceptions' `ports` match.
    port: Option<u16>,
}

impl Item {
    fn plain(what: impl Into<String>, fact: impl Into<String>) -> Vec<Item> {
        vec![Item {
            what: what.into(),
            fact: fact.into(),
            paths: [None, None],
            port: None,
        }]
    }
}

fn mount_item(m: &HostMount) -> Item {
    let mode = if m.read_only {
        "read-only"
    } else {
        "read-write"
    };
    Item {
        what: format!("{} at {} ({mode})", m.source, m.destination),
        fact: format!(
            "{}:{}{}",
            m.source,
            m.destination,
            if m.read_only { ":ro" } else { "" }
        ),
        paths: [Some(m.source.clone()), Some(m.destination.clone())],
        port: None,
    }
}

fn port_name(p: &ExposedPort) -> String {
    match p.published {
        Some(h) => format!("{}/{} (published on {h})", p.port, p.protocol),
        None => format!("{}/{}", p.port, p.protocol),
    }
}

/// What `rule` finds in `s`, before exceptions.
fn check(rule: &PostureRule, s: &PostureSubject<'_>) -> Vec<Item> {
    let p = &s.metadata.posture;
    let yes = |v: Option<bool>| v == Some(true);
    match rule.check {
        PostureCheck::Privileged if yes(p.privileged) => Item::plain(
            "runs privileged (every capability and device, no confinement)",
            "privileged: true",
        ),
        PostureCheck::HostNetwork if yes(p.host_network) => Item::plain(
            "shares the host's network namespace",
            format!(
                "network mode: {}",
                p.network_mode.as_deref().unwrap_or("host")
            ),
        ),
        PostureCheck::HostPid if yes(p.host_pid) => {
            Item::plain("shares the host's pid namespace", "pid mode: host")
        }
        PostureCheck::HostIpc if yes(p.host_ipc) => {
            Item::plain("shares the host's IPC namespace", "ipc mode: host")
        }
        PostureCheck::AddedCapabilities => {
            let Some(added) = &p.capabilities_added else {
                return Vec::new();
            };
            let bad: Vec<&str> = added
                .iter()
                .map(String::as_str)
                .filter(|c| *c == "ALL" || rule.capabilities.iter().any(|d| d == c))
                .collect();
            if bad.is_empty() {
                return Vec::new();
            }
            Item::plain(
                format!("has dangerous capabilities added: {}", bad.join(", ")),
                bad.join(", "),
            )
        }
        PostureCheck::NoMemoryLimit if p.memory_limit == Some(Limit::Unlimited) => {
            Item::plain("has no memory limit", "memory: unlimited")
        }
        PostureCheck::NoCpuLimit if p.cpu_limit == Some(Limit::Unlimited) => {
            Item::plain("has no CPU limit", "cpu: unlimited")
        }
        PostureCheck::WritableRootfs if p.read_only_rootfs == Some(false) => {
            Item::plain("has a writable root filesystem", "read-only rootfs: false")
        }
        PostureCheck::RootUser if p.uid == Some(0) => Item::plain(
            "runs as uid 0 (root)",
            format!("user: {}", p.user.as_deref().unwrap_or("0")),
        ),
        PostureCheck::RestartPolicy => match p.restart_policy.as_deref() {
            Some(r @ ("always" | "unless-stopped")) => Item::plain(
                format!("has restart policy {r}: restarted forever"),
                format!("restart: {r}"),
            ),
            Some("on-failure") => Item::plain(
                "has restart policy on-failure with no cap on retries",
                "restart: on-failure",
            ),
            _ => Vec::new(),
        },
        PostureCheck::SeccompUnconfined if yes(p.seccomp_unconfined) => Item::plain(
            "runs without a seccomp filter (seccomp=unconfined)",
            "seccomp: unconfined",
        ),
        PostureCheck::ApparmorUnconfined if yes(p.apparmor_unconfined) => Item::plain(
            "runs without AppArmor confinement (apparmor=unconfined)",
            "apparmor: unconfined",
        ),
        PostureCheck::SelinuxDisabled if yes(p.selinux_disabled) => Item::plain(
            "runs with SELinux labelling switched off (label=disable)",
            "label: disable",
        ),
        PostureCheck::EngineSocketMount | PostureCheck::SensitiveMount => {
            let Some(paths) = &rule.paths else {
                return Vec::new();
            };
            let engine = rule.check == PostureCheck::EngineSocketMount;
            p.mounts
                .iter()
                .flatten()
                .filter(|m| paths.is_match(&m.source) || (engine && paths.is_match(&m.destination)))
                .map(mount_item)
                .collect()
        }
        PostureCheck::SshPort => {
            let (PortsSeen::Listening(l)
            | PortsSeen::Bound(l)
            | PortsSeen::Settled { listening: l, .. }) = s.ports
            else {
                return Vec::new();
            };
            l.iter()
                .filter(|lp| !lp.udp && rule.ports.as_ref().is_some_and(|p| p.contains(lp.port)))
                .map(|lp| Item {
                    what: format!("port {}/tcp", lp.port),
                    fact: format!("{}/tcp", lp.port),
                    paths: [None, None],
                    port: Some(lp.port),
                })
                .collect()
        }
        PostureCheck::UnusedPort => {
            let PortsSeen::Settled { listening, age } = s.ports else {
                return Vec::new();
            };
            if age < rule.grace {
                return Vec::new();
            }
            p.exposed_ports
                .iter()
                .flatten()
                .filter(|e| matches!(e.protocol.as_str(), "tcp" | "udp"))
                .filter(|e| {
                    !listening
                        .iter()
                        .any(|l| l.port == e.port && l.protocol() == e.protocol)
                })
                .map(|e| Item {
                    what: port_name(e),
                    fact: format!("{}/{}", e.port, e.protocol),
                    paths: [None, None],
                    port: Some(e.port),
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Whether one of the policy's exceptions covers `item` of rule `ri`. Posture
/// findings have no process nor destination: an exception that names any
/// (`exe`, `parents`, `ancestors`, `comm`, `to`, `dns`) never covers one.
fn excepted(policy: &Policy, ri: usize, w: &Workload<'_>, item: &Item) -> bool {
    policy.exceptions.iter().any(|x| {
        x.rules.as_ref().is_none_or(|r| r.contains(&ri))
            && x.selector.as_ref().is_none_or(|s| s.matches(w))
            && x.exe.is_none()
            && x.parents.is_none()
            && x.ancestors.is_none()
            && x.comm.is_none()
            && x.to.is_none()
            && x.dns.is_none()
            && x.paths
                .as_ref()
                .is_none_or(|g| item.paths.iter().flatten().any(|p| g.is_match(p)))
            && x.ports
                .as_ref()
                .is_none_or(|ps| item.port.is_some_and(|p| ps.contains(p)))
    })
}

/// `container web (nginx:1.27)`.
fn who(c: &ContainerInfo) -> String {
    let name = c
        .name
        .clone()
        .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
        .unwrap_or_else(|| "?".to_owned());
    match &c.image {
        Some(image) => format!("container {name} ({image})"),
        None => format!("container {name}"),
    }
}

impl RuleSet {
    /// Judges a container's posture against every posture rule of the
    /// policies that select `w`, appending a finding per rule that fires
    /// (one per rule, listing every mount or port it found).
    pub fn evaluate_posture(
        &self,
        w: &Workload<'_>,
        s: &PostureSubject<'_>,
        out: &mut Vec<Finding>,
    ) {
        if w.host || s.metadata.is_sandbox {
            return;
        }
        for policy in self.policies.iter().filter(|p| p.selector.matches(w)) {
            for ri in policy.rules.clone() {
                let rule = &self.rules[ri];
                let Body::Posture(pr) = &rule.body else {
                    continue;
                };
                if matches!(s.ports, PortsSeen::Bound(_)) && pr.check.phase() != Phase::Listening {
                    continue;
                }
                let items: Vec<Item> = check(pr, s)
                    .into_iter()
                    .filter(|i| !excepted(policy, ri, w, i))
                    .collect();
                if items.is_empty() {
                    continue;
                }
                let whats: Vec<&str> = items.iter().map(|i| i.what.as_str()).collect();
                let facts: Vec<&str> = items.iter().map(|i| i.fact.as_str()).collect();
                let what = match pr.check {
                    PostureCheck::EngineSocketMount => {
                        format!(
                            "has the container engine's socket mounted: {}",
                            whats.join(", ")
                        )
                    }
                    PostureCheck::SensitiveMount => {
                        format!("has sensitive host paths mounted: {}", whats.join(", "))
                    }
                    PostureCheck::SshPort => format!(
                        "has a process listening on the SSH {} {}",
                        if items.len() == 1 { "port" } else { "ports" },
                        whats.join(", ")
                    ),
                    PostureCheck::UnusedPort => format!(
                        "exposes {} {} that nothing listened on within {}",
                        if items.len() == 1 { "port" } else { "ports" },
                        whats.join(", "),
                        humantime::format_duration(pr.grace)
                    ),
                    _ => whats.join(", "),
                };
                out.push(Finding {
                    rule: rule.name.clone(),
                    policy: rule.policy.clone(),
                    severity: rule.severity,
                    kind: AlertKind::Posture,
                    summary: format!("{} {what}", who(s.container)),
                    tags: rule.tags.clone(),
                    attempt: false,
                    scan: None,
                    action: Action::Alert,
                    action_taken: None,
                    would_deny: false,
                    posture: Some(PostureInfo {
                        finding: pr.check.id().to_owned(),
                        practice: pr.check.practice().to_owned(),
                        fact: facts.join(", "),
                    }),
                });
            }
        }
    }

    /// The graces of the `unused-port` rules, shortest first.
    pub(super) fn posture_graces(&self) -> Vec<Duration> {
        let mut g: Vec<Duration> = self
            .rules
            .iter()
            .filter_map(|r| match &r.body {
                Body::Posture(p) if p.check.phase() == Phase::Settled => Some(p.grace),
                _ => None,
            })
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    /// Whether any rule checks ports a container listens on.
    pub(super) fn has_listening_checks(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.body, Body::Posture(p) if p.check.phase() != Phase::Start))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        path::{Path, PathBuf},
        sync::Arc,
        time::{Duration, Instant},
    };

    use super::*;
    use crate::{
        context::{
            CgroupRegistry, EnrichedEvent, MetadataStatus, RuntimePaths,
            runtime::tests::{DOCKER_BAD, DOCKER_GOOD, DOCKER_ONFAIL, DOCKER_WEB, fixture_root},
        },
        event::{EventBody, NetOp, Protocol},
        policy::{Diagnostic, check_dir},
    };

    fn shipped() -> RuleSet {
        check_dir(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")]).unwrap()
    }

    fn load(files: &[(&str, &str)]) -> Result<RuleSet, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let dirs: Vec<PathBuf> = vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"),
            dir.path().to_path_buf(),
        ];
        check_dir(&dirs)
    }

    /// The registry of the fixture host with one Docker container in it.
    fn registry(id: &str) -> (CgroupRegistry, u64) {
        let mut r = CgroupRegistry::new(RuntimePaths::with_host_root(fixture_root()));
        r.on_mkdir(42, &format!("/docker/{id}"), Instant::now());
        (r, 42)
    }

    /// The rules (sorted) that fire for container `id` with `ports` known.
    fn fired(rules: &RuleSet, id: &str, ports: PortsSeen<'_>) -> Vec<(String, String, String)> {
        let (r, cg) = registry(id);
        let meta = r.metadata(cg).unwrap();
        let (c, _) = r.container_info(cg);
        let c = c.unwrap();
        let mut out = Vec::new();
        rules.evaluate_posture(
            &workload(&c, &meta),
            &PostureSubject {
                container: &c,
                metadata: &meta,
                ports,
            },
            &mut out,
        );
        for f in &out {
            assert_eq!(f.kind, AlertKind::Posture);
            assert_eq!(&*f.policy, "default/posture");
            assert_eq!(
                f.posture.as_ref().unwrap().finding,
                &*f.rule,
                "rule = finding id"
            );
        }
        let mut v: Vec<_> = out
            .into_iter()
            .map(|f| {
                let p = f.posture.unwrap();
                (f.rule.to_string(), p.fact, f.summary)
            })
            .collect();
        v.sort();
        v
    }

    fn names(v: &[(String, String, String)]) -> Vec<&str> {
        v.iter().map(|(r, _, _)| r.as_str()).collect()
    }

    #[test]
    fn every_start_finding_of_a_container_started_every_wrong_way() {
        let rules = shipped();
        let got = fired(&rules, DOCKER_BAD, PortsSeen::Unknown);
        assert_eq!(
            names(&got),
            [
                "added-capabilities",
                "apparmor-unconfined",
                "engine-socket-mount",
                "host-ipc",
                "host-network",
                "host-pid",
                "no-cpu-limit",
                "no-memory-limit",
                "privileged",
                "restart-policy",
                "root-user",
                "seccomp-unconfined",
                "selinux-disabled",
                "sensitive-mount",
                "writable-rootfs",
            ]
        );
        let find = |r: &str| got.iter().find(|(n, _, _)| n == r).unwrap();
        assert_eq!(find("added-capabilities").1, "SYS_ADMIN, NET_ADMIN");
        assert_eq!(
            find("engine-socket-mount").1,
            "/tmp/pd/docker.sock:/var/run/docker.sock"
        );
        // `/etc` and `/` are sensitive; the socket's directory is not in the list.
        assert_eq!(find("sensitive-mount").1, "/:/host, /etc:/host/etc:ro");
        assert_eq!(
            find("privileged").2,
            "container bad (monitor-test/busybox:1) runs privileged (every capability and device, no confinement)"
        );
        assert_eq!(
            find("restart-policy").2,
            "container bad (monitor-test/busybox:1) has restart policy always: restarted forever"
        );
    }

    #[test]
    fn ports_are_judged_when_seen_and_after_the_grace() {
        let rules = shipped();
        let ssh = [ListenedPort {
            port: 22,
            udp: false,
        }];
        let got = fired(&rules, DOCKER_GOOD, PortsSeen::Listening(&ssh));
        assert_eq!(names(&got), ["ssh-port"]);
        assert_eq!(got[0].1, "22/tcp");
        // UDP 22 is not SSH.
        let udp = [ListenedPort {
            port: 22,
            udp: true,
        }];
        assert!(fired(&rules, DOCKER_GOOD, PortsSeen::Listening(&udp)).is_empty());

        // Exposed 8080/tcp, nothing listening: only once the grace is over.
        let settled = |age| PortsSeen::Settled {
            listening: &[],
            age: Duration::from_secs(age),
        };
        let unused = |v: Vec<(String, String, String)>| -> Vec<(String, String)> {
            v.into_iter()
                .filter(|(r, _, _)| r == "unused-port")
                .map(|(_, f, s)| (f, s))
                .collect()
        };
        assert!(unused(fired(&rules, DOCKER_BAD, settled(29))).is_empty());
        assert_eq!(
            unused(fired(&rules, DOCKER_BAD, settled(30))),
            [(
                "8080/tcp".to_owned(),
                "container bad (monitor-test/busybox:1) exposes port 8080/tcp that nothing listened on within 30s".to_owned()
            )]
        );
        // Published 80/tcp and exposed 9000/udp; 80 listened on.
        let listening = [ListenedPort {
            port: 80,
            udp: false,
        }];
        let got = unused(fired(
            &rules,
            DOCKER_ONFAIL,
            PortsSeen::Settled {
                listening: &listening,
                age: Duration::from_secs(60),
            },
        ));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "9000/udp");
        let got = unused(fired(&rules, DOCKER_ONFAIL, settled(60)));
        assert_eq!(got[0].0, "80/tcp, 9000/udp");
        assert!(
            got[0]
                .1
                .contains("ports 80/tcp (published on 8081), 9000/udp"),
            "{}",
            got[0].1
        );
    }

    #[test]
    fn a_container_started_every_right_way_raises_nothing() {
        let rules = shipped();
        for ports in [
            PortsSeen::Unknown,
            PortsSeen::Settled {
                listening: &[],
                age: Duration::from_secs(3600),
            },
        ] {
            assert_eq!(fired(&rules, DOCKER_GOOD, ports), []);
        }
    }

    #[test]
    fn restart_policies_and_users_as_written() {
        let rules = shipped();
        // on-failure with no cap; root by default (an empty user).
        let got = fired(&rules, DOCKER_ONFAIL, PortsSeen::Unknown);
        let find = |r: &str| got.iter().find(|(n, _, _)| n == r).cloned();
        assert_eq!(find("restart-policy").unwrap().1, "restart: on-failure");
        assert_eq!(find("root-user").unwrap().1, "user: 0");
        // on-failure:5 and user 101, limits, read-only: none of those.
        let got = fired(&rules, DOCKER_WEB, PortsSeen::Unknown);
        assert_eq!(names(&got), Vec::<&str>::new());
    }

    #[test]
    fn exceptions_by_selector_rule_paths_and_ports() {
        let rules = load(&[(
            "50-local.yaml",
            r#"
policies:
  - name: default/posture
    extend: true
    exceptions:
      - reason: the node agent is privileged by design
        rules: [privileged, host-pid]
        selector: {name: [bad]}
      - reason: the config reader may see /etc
        rules: [sensitive-mount]
        paths: [/etc]
      - reason: 9000/udp is for a sidecar
        rules: [unused-port]
        ports: [9000]
      - reason: a process condition never covers a posture finding
        rules: [root-user]
        exe: ["**/sh"]
"#,
        )])
        .unwrap();
        let got = fired(&rules, DOCKER_BAD, PortsSeen::Unknown);
        let n = names(&got);
        assert!(
            !n.contains(&"privileged") && !n.contains(&"host-pid"),
            "{n:?}"
        );
        assert!(
            n.contains(&"host-network") && n.contains(&"root-user"),
            "{n:?}"
        );
        let mount = got.iter().find(|(r, _, _)| r == "sensitive-mount").unwrap();
        assert_eq!(mount.1, "/:/host", "only / is left");
        let got = fired(
            &rules,
            DOCKER_ONFAIL,
            PortsSeen::Settled {
                listening: &[],
                age: Duration::from_secs(60),
            },
        );
        let port = got.iter().find(|(r, _, _)| r == "unused-port").unwrap();
        assert_eq!(port.1, "80/tcp");
        // Another container's privileged finding stays.
        assert!(names(&fired(&rules, DOCKER_BAD, PortsSeen::Unknown)).contains(&"host-ipc"));
    }

    #[test]
    fn the_watch_raises_each_finding_once_per_container() {
        let rules = shipped();
        let (reg, _) = registry(DOCKER_BAD);
        let t0 = Instant::now();
        let no_sockets = |_: &str| None;
        let mut out = Vec::new();
        // Running when the agent started, in the host's network namespace:
        // binds before the agent are unseen, so no port is called unused.
        let mut watch = PostureWatch::new();
        watch.tick(&rules, &reg, t0, &no_sockets, &mut out);
        assert_eq!(out.len(), 15);
        out.clear();
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(31),
            &no_sockets,
            &mut out,
        );
        assert!(out.is_empty());

        // Started after the agent: every bind of it was seen.
        let mut watch = PostureWatch::new();
        let empty = CgroupRegistry::new(RuntimePaths::with_host_root(fixture_root()));
        watch.tick(&rules, &empty, t0, &no_sockets, &mut out);
        assert!(out.is_empty());
        watch.tick(&rules, &reg, t0, &no_sockets, &mut out);
        assert_eq!(out.len(), 15);
        assert!(
            out.iter()
                .all(|a| a.container.name.as_deref() == Some("bad"))
        );
        out.clear();
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(1),
            &no_sockets,
            &mut out,
        );
        assert!(out.is_empty(), "nothing twice");
        // After the grace: the unused port, once.
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(31),
            &no_sockets,
            &mut out,
        );
        let rules_raised: Vec<&str> = out.iter().map(|a| &*a.finding.rule).collect();
        assert_eq!(rules_raised, ["unused-port"]);
        out.clear();
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(62),
            &no_sockets,
            &mut out,
        );
        assert!(out.is_empty());
        // A reload judges again but raises nothing already raised.
        watch.rules_replaced();
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(63),
            &no_sockets,
            &mut out,
        );
        assert!(out.is_empty());

        // A container whose sockets show 8080 listened on raises no unused-port.
        let (reg, _) = registry(DOCKER_BAD);
        let mut watch = PostureWatch::new();
        let listens = |_: &str| {
            Some(vec![ListenedPort {
                port: 8080,
                udp: false,
            }])
        };
        watch.tick(&rules, &reg, t0, &listens, &mut out);
        out.clear();
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(31),
            &listens,
            &mut out,
        );
        assert!(
            out.is_empty(),
            "{:?}",
            out.iter().map(|a| &a.finding.rule).collect::<Vec<_>>()
        );
    }

    fn bind(cgroup_id: u64, port: u16, meta: Option<Arc<RuntimeMetadata>>) -> EnrichedEvent {
        use crate::event::{Event, EventHeader, Family, NetworkInfo};
        EnrichedEvent {
            event: Event {
                header: EventHeader {
                    ktime_ns: 1,
                    pid: 7,
                    tid: 7,
                    uid: 0,
                    gid: 0,
                    cgroup_id,
                    comm: "nc".into(),
                },
                body: EventBody::Network(NetworkInfo {
                    op: NetOp::Bind,
                    protocol: Protocol::Tcp,
                    family: Family::Ipv4,
                    daddr: "0.0.0.0".parse().unwrap(),
                    dport: port,
                    dns: None,
                    action: None,
                }),
            },
            process: Default::default(),
            container: Some(ContainerInfo {
                id: Some(DOCKER_BAD.into()),
                name: Some("bad".into()),
                ..Default::default()
            }),
            metadata_status: if meta.is_some() {
                MetadataStatus::Complete
            } else {
                MetadataStatus::Pending
            },
            metadata: meta,
            origin: None,
        }
    }

    #[test]
    fn binds_count_as_listening_and_ssh_binds_are_raised_once() {
        let rules = shipped();
        let (reg, cg) = registry(DOCKER_BAD);
        let meta = reg.metadata(cg).unwrap();
        let t0 = Instant::now();
        let no_sockets = |_: &str| None;
        let mut watch = PostureWatch::new();
        let mut out = Vec::new();
        // The agent's first tick is over before this container appears.
        let empty = CgroupRegistry::new(RuntimePaths::with_host_root(fixture_root()));
        watch.tick(&rules, &empty, t0, &no_sockets, &mut out);
        // A bind before the container's files were read is remembered.
        watch.observe(&rules, &bind(cg, 8080, None), &mut out);
        assert!(out.is_empty());
        watch.observe(&rules, &bind(cg, 22, Some(meta.clone())), &mut out);
        let raised: Vec<&str> = out.iter().map(|a| &*a.finding.rule).collect();
        assert_eq!(raised, ["ssh-port"]);
        assert_eq!(out[0].finding.posture.as_ref().unwrap().fact, "22/tcp");
        out.clear();
        watch.observe(&rules, &bind(cg, 22, Some(meta)), &mut out);
        assert!(out.is_empty(), "once");
        watch.tick(&rules, &reg, t0, &no_sockets, &mut out);
        assert_eq!(out.len(), 15);
        out.clear();
        watch.tick(
            &rules,
            &reg,
            t0 + Duration::from_secs(31),
            &no_sockets,
            &mut out,
        );
        assert!(
            out.is_empty(),
            "8080 was bound: {:?}",
            out.iter().map(|a| &a.finding.summary).collect::<Vec<_>>()
        );
    }

    #[test]
    fn posture_rule_errors_point_at_the_value() {
        let errors = |text: &str| -> Vec<String> {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("p.yaml"), text).unwrap();
            check_dir(&[dir.path().to_path_buf()])
                .unwrap_err()
                .iter()
                .map(|d| {
                    Diagnostic {
                        file: "p.yaml".into(),
                        ..d.clone()
                    }
                    .to_string()
                })
                .collect()
        };
        let head = "policies:\n  - name: p\n    selector: {containers: true}\n    rules:\n      - name: r\n        severity: low\n";
        let e = errors(&format!("{head}        posture: {{check: privilegd}}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.yaml:7:26: error: unknown posture check `privilegd`"),
            "{}",
            e[0]
        );
        assert!(
            e[0].contains("hint: use one of: privileged, host-network"),
            "{}",
            e[0]
        );

        let e = errors(&format!(
            "{head}        posture:\n          check: added-capabilities\n          capabilities: [SYS_ADMIN, SYS_ADMN]\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.yaml:9:37: error: `SYS_ADMN` is not a Linux capability"),
            "{}",
            e[0]
        );

        let e = errors(&format!(
            "{head}        posture:\n          check: privileged\n          grace: 5s\n"
        ));
        assert!(
            e[0].starts_with(
                "p.yaml:9:18: error: `grace` does nothing for posture check `privileged`"
            ),
            "{}",
            e[0]
        );
        assert!(
            e[0].contains("hint: `grace` applies to unused-port"),
            "{}",
            e[0]
        );

        let e = errors(&format!(
            "{head}        posture:\n          check: unused-port\n          grace: soon\n"
        ));
        assert!(
            e[0].starts_with("p.yaml:9:18: error: bad grace `soon`"),
            "{}",
            e[0]
        );

        let e = errors(&format!(
            "{head}        posture: {{check: sensitive-mount}}\n"
        ));
        assert!(
            e[0].starts_with("p.yaml:7:26: error: posture check `sensitive-mount` needs `paths`"),
            "{}",
            e[0]
        );
        let e = errors(&format!(
            "{head}        posture: {{check: ssh-port, ports: [0]}}\n"
        ));
        assert!(
            e[0].starts_with("p.yaml:7:44: error: port 0 is out of range"),
            "{}",
            e[0]
        );
        let e = errors(&format!(
            "{head}        posture: {{check: engine-socket-mount, paths: [docker.sock]}}\n"
        ));
        assert!(
            e[0].starts_with("p.yaml:7:55: error: path pattern `docker.sock` can never match"),
            "{}",
            e[0]
        );
    }
}
