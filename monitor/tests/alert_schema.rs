//! The alert record's contract (`docs/alert.schema.json`, described in
//! `docs/ALERTS.md`) holds for every kind of alert the agent emits, as a sink
//! writes it: alerts of each kind and shape go through the real alert
//! pipeline (dedup, folded updates, throttling notices) and a real file sink,
//! and every line the sink wrote is validated. The schema also refuses
//! records that break the contract, so this test can fail. The alerts are
//! `common::alerts`, which `alert_formats.rs` holds to OCSF and ECS.
mod common;

use std::{collections::BTreeSet, path::Path, time::Duration};

use monitor::{
    metrics::Metrics,
    sink::{FileConfig, SinkConfig, SinkKind, Sinks, SinksOptions},
};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alert.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema is a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, record: &Value) -> Vec<String> {
    v.iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_alert_kind_matches_the_schema() {
    let v = schema();
    let emitted = common::alerts::emitted();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = Sinks::start(
        vec![SinkConfig::new(
            "file",
            SinkKind::File(FileConfig::new(path.clone())),
        )],
        SinksOptions {
            host: "node-1".into(),
            spool_dir: dir.path().join("spool"),
        },
        metrics.clone(),
    )
    .unwrap();
    for a in &emitted {
        sinks.dispatch(a);
    }
    sinks.shutdown(Duration::from_secs(2)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), emitted.len());

    let mut kinds = BTreeSet::new();
    let mut updates = 0;
    for record in &lines {
        let e = errors(&v, record);
        assert!(e.is_empty(), "{record}\n{}", e.join("\n"));
        kinds.insert(record["kind"].as_str().unwrap().to_owned());
        updates += usize::from(!record["update_of"].is_null());
    }
    let all: BTreeSet<String> = ["process", "file", "network", "syscall", "posture", "agent"]
        .map(String::from)
        .into();
    assert_eq!(kinds, all, "every kind went through");
    assert!(updates > 0, "folded updates went through");
    assert!(
        lines.iter().any(|r| r["rule"] == "alerts-throttled"),
        "a throttling notice went through"
    );
}

/// Records that break the contract are refused: the schema is not vacuous.
#[test]
fn the_schema_refuses_what_breaks_the_contract() {
    let v = schema();
    let good = serde_json::to_value(&common::alerts::alerts()[3]).unwrap();
    assert!(errors(&v, &good).is_empty(), "{:?}", errors(&v, &good));
    type Breakage = Box<dyn Fn(&mut Value)>;
    let broken: Vec<(&str, Breakage)> = vec![
        (
            "no id",
            Box::new(|a| {
                a.as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "unknown severity",
            Box::new(|a| a["severity"] = "urgent".into()),
        ),
        ("unknown kind", Box::new(|a| a["kind"] = "vibes".into())),
        (
            "file alert without file",
            Box::new(|a| a["file"] = Value::Null),
        ),
        (
            "empty string for unknown",
            Box::new(|a| a["container"]["name"] = "".into()),
        ),
        (
            "relative path",
            Box::new(|a| a["file"]["path"] = "etc/passwd".into()),
        ),
        (
            "time without micros",
            Box::new(|a| a["time"] = "2026-11-29T15:50:00Z".into()),
        ),
        ("count 0", Box::new(|a| a["count"] = 0.into())),
        (
            "other schema",
            Box::new(|a| a["schema"] = "monitor.alert/v2".into()),
        ),
        (
            "port out of range",
            Box::new(|a| {
                a["kind"] = "network".into();
                a["network"] = serde_json::json!({"op": "connect", "protocol": "tcp", "family": "ipv4",
                "daddr": "203.0.113.7", "dport": 70000, "dns": null});
            }),
        ),
        (
            "unknown action",
            Box::new(|a| a["action_taken"] = "blocked".into()),
        ),
        (
            "would_deny not a boolean",
            Box::new(|a| a["would_deny"] = "yes".into()),
        ),
        (
            "address not an IP",
            Box::new(|a| {
                a["kind"] = "network".into();
                a["network"] = serde_json::json!({"op": "connect", "protocol": "tcp", "family": "ipv4",
                "daddr": "example.com", "dport": 443, "dns": null});
            }),
        ),
    ];
    for (what, breakit) in broken {
        let mut a = good.clone();
        breakit(&mut a);
        assert!(!errors(&v, &a).is_empty(), "accepted: {what}: {a}");
    }
    let posture = serde_json::to_value(&common::alerts::posture_alerts()[0]).unwrap();
    assert!(
        errors(&v, &posture).is_empty(),
        "{:?}",
        errors(&v, &posture)
    );
    let broken: Vec<(&str, Breakage)> = vec![
        (
            "posture alert without posture",
            Box::new(|a| {
                a.as_object_mut().unwrap().remove("posture");
            }),
        ),
        (
            "posture without a finding",
            Box::new(|a| {
                a["posture"].as_object_mut().unwrap().remove("finding");
            }),
        ),
        (
            "posture with an empty fact",
            Box::new(|a| a["posture"]["fact"] = "".into()),
        ),
        (
            "posture alert with a process",
            Box::new(|a| a["process"] = serde_json::json!({"pid": 1})),
        ),
    ];
    for (what, breakit) in broken {
        let mut a = posture.clone();
        breakit(&mut a);
        assert!(!errors(&v, &a).is_empty(), "accepted: {what}: {a}");
    }
    // What a colleague's branch adds (ATT&CK tags, attempt, scan) and any
    // future additive field pass.
    let mut a = good.clone();
    a["tags"] = serde_json::json!(["T1059.004"]);
    a["attempt"] = true.into();
    a["scan"] = serde_json::json!({"ports": 100});
    a["some_future_field"] = 1.into();
    assert!(errors(&v, &a).is_empty(), "{:?}", errors(&v, &a));
}
