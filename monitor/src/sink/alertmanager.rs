//! The Alertmanager v2 alert of an alert record: labels that identify it as
//! the agent's dedup key does, and the API path it is posted to.
use serde_json::{Value, json};

use super::format::text;
use crate::alert::{ARG_SEPARATOR, SubjectParts, subject};

/// The `subject` label: the record's [`subject`] (the dedup key's), with
/// the arguments of a command separated by spaces, as people read a label.
pub fn alert_subject(a: &Value) -> String {
    subject(&SubjectParts::of_record(a)).replace(ARG_SEPARATOR, " ")
}

/// One Alertmanager v2 alert: labels alertname (the rule), severity, kind,
/// container, namespace, pod, host and subject ([`alert_subject`]; empty
/// ones left out, as Alertmanager drops them anyway); annotations summary
/// and alert_id; startsAt.
///
/// Alertmanager knows an alert by its labels alone, so they carry what the
/// agent's own dedup key does: two findings of one rule in one container
/// (two files written, two programs run) stay two alerts instead of the
/// second overwriting the first, while a folded update of a finding
/// (`update_of`) lands on the alert it updates.
pub fn alertmanager_alert(a: &Value, generator_url: Option<&str>) -> Value {
    let mut labels = serde_json::Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            labels.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    };
    put("alertname", text(a, &["rule"]));
    put("severity", text(a, &["severity"]));
    put("kind", text(a, &["kind"]));
    put(
        "container",
        text(a, &["container", "name"]).or(text(a, &["container", "id"])),
    );
    put("container_id", text(a, &["container", "id"]));
    put("namespace", text(a, &["container", "namespace"]));
    put("pod", text(a, &["container", "pod"]));
    put("host", text(a, &["host"]));
    let subject = alert_subject(a);
    put("subject", Some(subject.as_str()).filter(|s| !s.is_empty()));
    let mut out = json!({
        "labels": labels,
        "annotations": {
            "summary": text(a, &["summary"]).unwrap_or(""),
            "alert_id": text(a, &["id"]).unwrap_or(""),
            "policy": text(a, &["policy"]).unwrap_or(""),
        },
        "startsAt": text(a, &["first_seen"]).or(text(a, &["time"])).unwrap_or(""),
    });
    if let Some(g) = generator_url {
        out["generatorURL"] = Value::String(g.to_owned());
    }
    out
}

/// `http://am:9093` (or with a trailing `/`) -> `http://am:9093/api/v2/alerts`;
/// a URL already ending in `/api/v2/alerts` is kept.
pub(super) fn alertmanager_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/api/v2/alerts") {
        base.to_owned()
    } else {
        format!("{base}/api/v2/alerts")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sink::slack::slack_message;

    /// Alertmanager's identity of an alert (its labels) is the agent's dedup key.
    #[test]
    fn alertmanager_subject_is_the_dedup_subject() {
        use crate::{
            alert::{Alert, AlertKind, DedupKey, Severity},
            context::ProcessInfo,
            event::{Family, FileInfo, FileOp, NetOp, NetworkInfo, Protocol},
        };
        let base = || {
            let mut a = Alert::new(
                "node-1",
                "rule",
                "policy",
                Severity::High,
                AlertKind::Process,
                "what happened",
            );
            a.process = Some(ProcessInfo {
                exe: Some("/usr/sbin/sshd".into()),
                ..Default::default()
            });
            a
        };
        let file = |path: &str, target: Option<&str>| FileInfo {
            op: FileOp::Rename,
            path: path.into(),
            target: target.map(str::to_owned),
            flags: vec![],
            mode: None,
            result: 0,
            requested_path: None,
            truncated: false,
            action: None,
            inode: None,
        };
        let net = |protocol, dns: Option<&str>| NetworkInfo {
            action: None,
            op: NetOp::Connect,
            protocol,
            family: Family::Ipv6,
            daddr: "2001:db8::7".parse().unwrap(),
            dport: 443,
            dns: dns.map(str::to_owned),
        };
        let mut cases = vec![base()];
        let mut a = base();
        a.process = None;
        cases.push(a);
        for (path, target) in [("/etc/passwd", None), ("/tmp/x", Some("/etc/cron.d/x"))] {
            let mut a = base();
            a.file = Some(file(path, target));
            cases.push(a);
        }
        for (protocol, dns) in [
            (Protocol::Tcp, None),
            (Protocol::Udp, Some("metadata.invalid")),
            (Protocol::Other(132), None),
        ] {
            let mut a = base();
            a.network = Some(net(protocol, dns));
            cases.push(a);
        }
        let subjects: Vec<String> = cases
            .iter()
            .map(|a| {
                let record = serde_json::to_value(a).unwrap();
                let got = alertmanager_alert(&record, None)["labels"]["subject"].clone();
                assert_eq!(got, DedupKey::of(a).subject.as_str(), "{record}");
                DedupKey::of(a).subject
            })
            .collect();
        assert_eq!(
            subjects,
            [
                "/usr/sbin/sshd",
                "what happened",
                "/etc/passwd",
                "/tmp/x -> /etc/cron.d/x",
                "tcp [2001:db8::7]:443",
                "udp [2001:db8::7]:443 (metadata.invalid)",
                "proto 132 [2001:db8::7]:443",
            ]
        );
    }

    #[test]
    fn alertmanager_labels_and_slack_text() {
        let a = json!({
            "id": "0193", "time": "2026-11-29T15:50:00.123456Z", "first_seen": "2026-11-29T15:50:00.123456Z",
            "host": "node-1", "rule": "unexpected-process", "policy": "default", "severity": "high",
            "kind": "process", "summary": "unexpected process /usr/sbin/sshd",
            "container": {"id": "3f9c", "name": "web", "pod": "web-7d9f", "namespace": "shop", "image": null},
            "process": {"pid": 4242, "exe": "/usr/sbin/sshd"}, "count": 3
        });
        let am = alertmanager_alert(&a, Some("http://monitor.invalid/"));
        assert_eq!(am["labels"]["alertname"], "unexpected-process");
        assert_eq!(am["labels"]["container"], "web");
        assert_eq!(am["labels"]["namespace"], "shop");
        assert_eq!(am["labels"]["pod"], "web-7d9f");
        assert_eq!(am["labels"]["host"], "node-1");
        assert_eq!(
            am["annotations"]["summary"],
            "unexpected process /usr/sbin/sshd"
        );
        assert_eq!(am["startsAt"], "2026-11-29T15:50:00.123456Z");
        let s = slack_message(&a);
        let text = s["text"].as_str().unwrap();
        assert!(
            text.contains("[HIGH] unexpected-process on node-1"),
            "{text}"
        );
        let blocks = s["blocks"].to_string();
        assert!(blocks.contains("shop/web-7d9f (web)"), "{blocks}");
        assert!(blocks.contains("/usr/sbin/sshd (pid 4242)"), "{blocks}");
        assert!(blocks.contains("*Count*\\n3"), "{blocks}");
    }
}
