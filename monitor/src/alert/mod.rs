//! The alert record (schema `monitor.alert/v1`, `shared/design/ALERTS.md`), a
//! contract other tools rely on: fields may be added, none may change meaning.
//!
//! Between `policy` and `sink` an alert passes through the [`AlertPipeline`]:
//! a [`Deduplicator`] folds identical alerts within a window and a per-workload
//! [`RateLimiter`] throttles floods, saying so with alerts of kind `agent`.
//! Both take the time as an argument so their tests are deterministic.
use std::time::SystemTime;

use serde::Serialize;

mod dedup;
mod pipeline;
mod ratelimit;
mod scanfold;
mod subject;

pub use dedup::{DedupKey, Deduplicator};
pub use pipeline::{AlertPipeline, PipelineConfig};
pub use ratelimit::{RateLimitConfig, RateLimiter};
pub use scanfold::ScanFolder;
pub use subject::{ARG_SEPARATOR, NetworkParts, SubjectParts, subject};

// The record's own field types, so callers that build alerts need one import.
pub use crate::finding::{AlertKind, Severity};
use crate::{
    context::{ContainerInfo, MetadataStatus, ProcessInfo},
    event::{FileInfo, NetworkInfo, SyscallInfo},
    finding::{ActionTaken, Finding, PostureInfo, ScanSummary},
};

pub const SCHEMA: &str = "monitor.alert/v1";

/// One alert, as every sink carries it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub schema: &'static str,
    /// Unique per alert and stable across delivery retries.
    pub id: String,
    /// RFC 3339 with microseconds, UTC.
    pub time: String,
    pub host: String,
    pub rule: String,
    pub policy: String,
    pub severity: Severity,
    pub kind: AlertKind,
    pub summary: String,
    pub container: Option<ContainerInfo>,
    /// Added field: how complete `container` is (`complete`, `partial`,
    /// `pending`, or `host` for a host process), so a receiver can tell a
    /// container whose name is not known yet from a host process; `null` for
    /// alerts about the agent itself.
    pub metadata_status: Option<MetadataStatus>,
    pub process: Option<ProcessInfo>,
    pub file: Option<FileInfo>,
    pub network: Option<NetworkInfo>,
    /// Added field: the call, its arguments and result, for kind `syscall`
    /// (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<SyscallInfo>,
    /// How many identical alerts the dedup window folded into this one.
    pub count: u64,
    /// Added field: time of the first alert folded into this one (equal to
    /// `time` when nothing was folded).
    pub first_seen: String,
    /// Added field: time of the last alert folded into this one.
    pub last_seen: String,
    /// Added field: for a folded update sent at the end of a dedup window, the
    /// `id` of the first alert of that window (already sent); `null` otherwise.
    pub update_of: Option<String>,
    /// Added field: the rule's ATT&CK technique ids (`T1059.004`); empty for
    /// rules that list none and for alerts about the agent.
    pub tags: Vec<String>,
    /// Added field: the operation failed (a write refused with EACCES, EPERM,
    /// EROFS, ...): an attempt, reported all the same.
    pub attempt: bool,
    /// Added field: for a port-scan alert, what the scan touched and the
    /// egress alerts folded into it; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanSummary>,
    /// Added field: what enforcement (`--enforce`) did to the operation:
    /// `denied` (a connect or sendmsg refused with EPERM), `killed` (the
    /// exec'd process killed before it ran), `kill_failed`; `null` when
    /// nothing was done.
    pub action_taken: Option<ActionTaken>,
    /// Added field: the rule's `action` is `deny` or `kill` and nothing was
    /// done: the agent runs without `--enforce` (a dry run), or the container
    /// was not under enforcement yet.
    pub would_deny: bool,
    /// Added field: `true` for what a candidate rule set (`monitor run
    /// --shadow DIR`) would flag beyond the active rules; absent otherwise.
    /// Such an alert is `info`, and nothing is enforced for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Added field: for an `events-lost` alert about one container (or host
    /// cgroup), what the kernel programs could not send of its events;
    /// absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostSummary>,
    /// Added field: for a posture alert (kind `posture`), the practice the
    /// container's start-up breaks and the fact read; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture: Option<PostureInfo>,
    /// What the alert is about ([`Alert::subject`]), worked out once when a
    /// finding's context is attached. Not in the record: a spooled sink
    /// works it out again from the record with the same function.
    #[serde(skip)]
    subject: String,
}

/// The alert record's `lost` object: one cgroup's events the kernel programs
/// dropped since the last such alert, by kind and reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LostSummary {
    /// The cgroup v2 id of the tasks whose events were lost.
    pub cgroup_id: u64,
    /// By kind, then reason; only those with new losses.
    pub counts: Vec<LostCount>,
}

/// One kind and reason of [`LostSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LostCount {
    /// `exec`, `fork`, `exit`, `file`, `network`, `syscall`.
    pub kind: String,
    /// `ring_buffer_full`, `stash_full`, `read_fault`, `no_scratch`, `rate_limited`.
    pub reason: String,
    /// Lost since the last alert about this cgroup.
    pub count: u64,
    /// Lost since the agent started (or the cgroup's first loss).
    pub total: u64,
}

impl Alert {
    /// A new alert stamped now, with a fresh id, `count` 1 and no context:
    /// set `container`, `process`, `file` or `network` on the result.
    pub fn new(
        host: impl Into<String>,
        rule: impl Into<String>,
        policy: impl Into<String>,
        severity: Severity,
        kind: AlertKind,
        summary: impl Into<String>,
    ) -> Alert {
        Alert::at(
            SystemTime::now(),
            host,
            rule,
            policy,
            severity,
            kind,
            summary,
        )
    }

    /// As [`Alert::new`], stamped with `at` (tests, replays).
    pub fn at(
        at: SystemTime,
        host: impl Into<String>,
        rule: impl Into<String>,
        policy: impl Into<String>,
        severity: Severity,
        kind: AlertKind,
        summary: impl Into<String>,
    ) -> Alert {
        let time = rfc3339_micros(at);
        Alert {
            schema: SCHEMA,
            id: new_alert_id(),
            first_seen: time.clone(),
            last_seen: time.clone(),
            time,
            host: host.into(),
            rule: rule.into(),
            policy: policy.into(),
            severity,
            kind,
            summary: summary.into(),
            container: None,
            metadata_status: None,
            process: None,
            file: None,
            network: None,
            syscall: None,
            count: 1,
            update_of: None,
            tags: Vec::new(),
            attempt: false,
            scan: None,
            action_taken: None,
            would_deny: false,
            shadow: false,
            lost: None,
            posture: None,
            subject: String::new(),
        }
    }

    /// An alert about the agent itself (kind `agent`, policy `agent`).
    pub fn agent(
        host: impl Into<String>,
        rule: impl Into<String>,
        severity: Severity,
        summary: impl Into<String>,
    ) -> Alert {
        Alert::new(
            host,
            rule,
            AGENT_POLICY,
            severity,
            AlertKind::Agent,
            summary,
        )
    }

    /// The workload an alert is about: the container id, else `host:<pid>`,
    /// else `host` (agent alerts).
    pub fn workload(&self) -> String {
        if let Some(id) = self.container.as_ref().and_then(|c| c.id.as_deref()) {
            return id.to_owned();
        }
        match &self.process {
            Some(p) => format!("host:{}", p.pid),
            None => "host".to_owned(),
        }
    }

    /// The container id, or `None` for host processes and the agent.
    pub fn container_id(&self) -> Option<&str> {
        self.container.as_ref().and_then(|c| c.id.as_deref())
    }
}

/// Durations in config files as humantime strings (`"30s"`, `"5m"`).
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The `policy` of alerts the agent raises about itself.
pub const AGENT_POLICY: &str = "agent";

/// A new alert id: a UUID v7 (time-ordered), as a hyphenated lowercase string.
pub fn new_alert_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-29T15:50:00.123456Z`.
pub fn rfc3339_micros(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// This machine's host name (the `host` field), or `"unknown"`.
///
/// In a DaemonSet the pod's host name is not the node's: pass the node name
/// (downward API) to the agent instead of calling this.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Alert {
    /// The alert for a policy finding, stamped with the event's own time and
    /// carrying its container, process, file and network context.
    pub fn from_finding(
        finding: &Finding,
        event: &crate::context::EnrichedEvent,
        at: SystemTime,
        host: &str,
    ) -> Alert {
        use crate::event::EventBody;
        let mut alert = Alert::of_finding(finding, at, host);
        alert.container = event.container.clone();
        alert.metadata_status = Some(event.metadata_status);
        alert.process = Some(event.process.clone());
        match &event.event.body {
            EventBody::File(f) => alert.file = Some(f.clone()),
            EventBody::Network(n) => alert.network = Some(n.clone()),
            EventBody::Syscall(s) => alert.syscall = Some(s.clone()),
            _ => {}
        }
        alert.subject = subject(&SubjectParts::of_alert(&alert));
        alert
    }

    /// The alert for a posture finding about the container `container`: no
    /// process, file or network; its `posture` object says what was found.
    pub fn from_posture(
        finding: &Finding,
        container: ContainerInfo,
        status: MetadataStatus,
        at: SystemTime,
        host: &str,
    ) -> Alert {
        let mut alert = Alert::of_finding(finding, at, host);
        alert.container = Some(container);
        alert.metadata_status = Some(status);
        alert.subject = subject(&SubjectParts::of_alert(&alert));
        alert
    }

    /// What every alert for a finding carries from the finding itself; the
    /// callers add the context (container, process, file, network).
    fn of_finding(finding: &Finding, at: SystemTime, host: &str) -> Alert {
        let mut alert = Alert::at(
            at,
            host,
            &*finding.rule,
            &*finding.policy,
            finding.severity,
            finding.kind,
            finding.summary.clone(),
        );
        alert.tags = finding.tags.to_vec();
        alert.attempt = finding.attempt;
        alert.scan.clone_from(&finding.scan);
        alert.action_taken = finding.action_taken;
        alert.would_deny = finding.would_deny;
        alert.posture.clone_from(&finding.posture);
        alert
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, SystemTime},
    };

    use super::*;
    use crate::{
        context::EnrichedEvent,
        event::{Event, EventBody, EventHeader, ExecInfo},
        finding::{Action, Finding},
    };

    fn exec_in(container: Option<ContainerInfo>, status: MetadataStatus) -> EnrichedEvent {
        EnrichedEvent {
            event: Event {
                header: EventHeader {
                    ktime_ns: 1,
                    pid: 42,
                    tid: 42,
                    uid: 0,
                    gid: 0,
                    cgroup_id: 7,
                    comm: "sshd".into(),
                },
                body: EventBody::Exec(ExecInfo {
                    action: None,
                    filename: "/usr/sbin/sshd".into(),
                    args: vec!["/usr/sbin/sshd".into()],
                    args_truncated: false,
                    ppid: 1,
                    cwd: None,
                    exe_inode: None,
                }),
            },
            process: ProcessInfo {
                pid: 42,
                exe: Some("/usr/sbin/sshd".into()),
                ..Default::default()
            },
            container,
            metadata_status: status,
            metadata: None,
            origin: None,
        }
    }

    fn finding() -> Finding {
        Finding {
            rule: "ssh-server".into(),
            policy: "default/processes".into(),
            severity: Severity::High,
            kind: AlertKind::Process,
            summary: "denied process /usr/sbin/sshd".into(),
            tags: Arc::from(vec!["T1021.004".to_owned()]),
            attempt: false,
            scan: None,
            action: Action::Alert,
            action_taken: None,
            would_deny: false,
            posture: None,
        }
    }

    /// A receiver must be able to tell "a container whose name is not read
    /// yet" from "a host process" and from "complete": the alert says which.
    #[test]
    fn alerts_carry_the_metadata_status_of_their_event() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let web = ContainerInfo {
            id: Some("c".repeat(64)),
            name: Some("web".into()),
            image: Some("nginx:1.27".into()),
            ..Default::default()
        };
        for (container, status, want) in [
            (Some(web.clone()), MetadataStatus::Complete, "complete"),
            (
                Some(ContainerInfo {
                    name: None,
                    image: None,
                    ..web
                }),
                MetadataStatus::Pending,
                "pending",
            ),
            (None, MetadataStatus::Host, "host"),
        ] {
            let ev = exec_in(container, status);
            let a = Alert::from_finding(&finding(), &ev, at, "node-1");
            assert_eq!(a.metadata_status, Some(status));
            let json = serde_json::to_value(&a).unwrap();
            assert_eq!(json["metadata_status"], want);
        }
        let agent = Alert::agent("node-1", "events-lost", Severity::High, "lost");
        assert_eq!(
            serde_json::to_value(&agent).unwrap()["metadata_status"],
            serde_json::Value::Null
        );
    }
}
