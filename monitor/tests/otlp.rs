//! The OTLP sink against a receiver that decodes with the official protobuf
//! definitions (`tests/otlp_receiver.py`, PyPI's `opentelemetry-proto`):
//! protobuf and OTLP/JSON, every field of every log record checked against
//! the alert it came from, the batches (4 alerts a request) in order.
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::delivery::{Hook, alert, start, wait_until};
use monitor::{
    alert::{Alert, AlertKind},
    context::ProcessInfo,
    event::{Family, FileInfo, FileOp, NetOp, NetworkInfo, Protocol},
    metrics::Metrics,
    sink::{SinkConfig, SinkKind, otlp::Encoding},
};
use serde_json::Value;

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Option<Receiver> {
        let ok = Command::new("python3")
            .args([
                "-c",
                "import opentelemetry.proto.collector.logs.v1.logs_service_pb2",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "python3 cannot import opentelemetry.proto: pip install opentelemetry-proto (CI=true, not skipping)"
                );
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED: `pip install opentelemetry-proto` to run this test !!!!!!!!\n"
            );
            return None;
        }
        let port_file = dir.join("port");
        let out = dir.join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_receiver.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg(&out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            assert!(Instant::now() < end, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Some(Receiver { child, port, out })
    }

    /// (content type, decoded request) of every accepted request.
    fn requests(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (kind, json) = l.split_once('\t').unwrap();
                (kind.to_owned(), serde_json::from_str(json).unwrap())
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn otlp(url: String, spool: PathBuf, name: &str, encoding: Encoding) -> SinkConfig {
    let SinkKind::Webhook(mut hc) = Hook::new(url, spool).config(name).kind else {
        unreachable!()
    };
    hc.encoding = Some(encoding);
    hc.batch_size = Some(4);
    SinkConfig::new(name, SinkKind::Otlp(hc))
}

fn alerts() -> Vec<Alert> {
    let mut out: Vec<Alert> = (0..6).map(alert).collect();
    out[1].process = Some(ProcessInfo {
        pid: 4242,
        ppid: Some(4200),
        uid: 1000,
        comm: "sh".into(),
        exe: Some("/bin/sh".into()),
        args: vec!["sh".into(), "-c".into(), "id".into()],
        ancestry: vec![],
    });
    out[2].kind = AlertKind::File;
    out[2].file = Some(FileInfo {
        op: FileOp::Rename,
        path: "/tmp/x".into(),
        target: Some("/etc/passwd".into()),
        flags: vec![],
        mode: None,
        result: 0,
        requested_path: None,
        truncated: false,
        action: None,
        inode: None,
    });
    out[3].kind = AlertKind::Network;
    out[3].network = Some(NetworkInfo {
        action: None,
        op: NetOp::Connect,
        protocol: Protocol::Tcp,
        family: Family::Ipv6,
        daddr: "2001:db8::7".parse().unwrap(),
        dport: 443,
        dns: Some("example.com".into()),
    });
    out
}

/// The attributes of a decoded log record, as key -> JSON value.
fn attrs(record: &Value) -> serde_json::Map<String, Value> {
    record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_owned(), kv["value"].clone()))
        .collect()
}

fn check(record: &Value, a: &Alert, how: &str) {
    let at = attrs(record);
    let s = |k: &str| {
        at.get(k)
            .map(|v| v["stringValue"].clone())
            .unwrap_or(Value::Null)
    };
    let i = |k: &str| {
        at.get(k)
            .map(|v| v["intValue"].clone())
            .unwrap_or(Value::Null)
    };
    let nanos = humantime::parse_rfc3339(&a.time)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert_eq!(record["timeUnixNano"], nanos.to_string(), "{how}: {record}");
    assert!(record["observedTimeUnixNano"].as_str().is_some(), "{how}");
    assert_eq!(record["severityNumber"], "SEVERITY_NUMBER_ERROR", "{how}");
    assert_eq!(record["severityText"], "high", "{how}");
    assert_eq!(record["body"]["stringValue"], a.summary.as_str(), "{how}");
    assert_eq!(record["eventName"], "monitor.alert", "{how}");
    assert_eq!(s("monitor.alert.id"), a.id.as_str(), "{how}");
    assert_eq!(s("monitor.rule"), a.rule.as_str(), "{how}");
    assert_eq!(s("monitor.policy"), a.policy.as_str(), "{how}");
    assert_eq!(s("monitor.severity"), "high", "{how}");
    assert_eq!(
        s("monitor.kind"),
        serde_json::to_value(a.kind).unwrap(),
        "{how}"
    );
    assert_eq!(i("monitor.count"), a.count.to_string(), "{how}");
    let c = a.container.as_ref().unwrap();
    assert_eq!(s("container.id"), c.id.as_deref().unwrap(), "{how}");
    assert_eq!(s("container.name"), "web", "{how}");
    assert_eq!(s("container.runtime.name"), "containerd", "{how}");
    assert_eq!(s("k8s.pod.name"), "web-7d9f", "{how}");
    assert_eq!(s("k8s.namespace.name"), "shop", "{how}");
    assert!(
        !at.contains_key("container.image.name"),
        "unknown parts are left out"
    );
    match &a.process {
        Some(p) => {
            assert_eq!(i("process.pid"), p.pid.to_string(), "{how}");
            assert_eq!(
                i("process.parent_pid"),
                p.ppid.unwrap().to_string(),
                "{how}"
            );
            assert_eq!(i("process.real_user.id"), p.uid.to_string(), "{how}");
            assert_eq!(
                s("process.executable.path"),
                p.exe.as_deref().unwrap(),
                "{how}"
            );
            assert_eq!(s("process.executable.name"), p.comm.as_str(), "{how}");
            let args: Vec<&str> = at["process.command_args"]["arrayValue"]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["stringValue"].as_str().unwrap())
                .collect();
            assert_eq!(args, p.args, "{how}");
        }
        None => assert!(!at.contains_key("process.pid"), "{how}"),
    }
    if let Some(f) = &a.file {
        assert_eq!(s("file.path"), f.path.as_str(), "{how}");
        assert_eq!(s("monitor.file.op"), "rename", "{how}");
        assert_eq!(
            s("monitor.file.target"),
            f.target.as_deref().unwrap(),
            "{how}"
        );
        assert_eq!(i("monitor.file.result"), "0", "{how}");
    }
    if let Some(n) = &a.network {
        assert_eq!(
            s("destination.address"),
            n.daddr.to_string().as_str(),
            "{how}"
        );
        assert_eq!(i("destination.port"), n.dport.to_string(), "{how}");
        assert_eq!(s("network.transport"), "tcp", "{how}");
        assert_eq!(s("network.type"), "ipv6", "{how}");
        assert_eq!(s("monitor.network.op"), "connect", "{how}");
        assert_eq!(s("monitor.network.dns"), n.dns.as_deref().unwrap(), "{how}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receiver_decodes_every_field_in_protobuf_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(Duration::from_secs(10));
    let sent = alerts();
    let Some(receiver) = Receiver::start(dir.path()) else {
        return;
    };
    let base = format!("http://127.0.0.1:{}", receiver.port);
    let sinks = start(
        vec![
            otlp(
                base.clone(),
                dir.path().join("s-pb"),
                "otlp-pb",
                Encoding::Protobuf,
            ),
            otlp(
                format!("{base}/v1/logs"),
                dir.path().join("s-json"),
                "otlp-json",
                Encoding::Json,
            ),
        ],
        &metrics,
        dir.path(),
    );
    for a in &sent {
        sinks.dispatch(a);
    }
    let (pb, js) = (metrics.sink("otlp-pb"), metrics.sink("otlp-json"));
    wait_until(Duration::from_secs(20), "both sinks delivered", || {
        pb.delivered_total() == 6 && js.delivered_total() == 6
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        pb.failed_total() + js.failed_total(),
        0,
        "the receiver refused a request"
    );
    let requests = receiver.requests();
    for (kind, how) in [
        ("application/x-protobuf", "protobuf"),
        ("application/json", "json"),
    ] {
        let mut records = Vec::new();
        for (_, req) in requests.iter().filter(|(k, _)| k == kind) {
            let rl = &req["resourceLogs"][0];
            let res = attrs(&rl["resource"]);
            assert_eq!(res["service.name"]["stringValue"], "monitor", "{how}");
            assert_eq!(res["host.name"]["stringValue"], "test-node", "{how}");
            assert_eq!(rl["scopeLogs"][0]["scope"]["name"], "monitor", "{how}");
            records.extend(
                rl["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned(),
            );
        }
        assert_eq!(records.len(), 6, "{how}: one record per alert");
        for (r, a) in records.iter().zip(&sent) {
            check(r, a, how);
        }
    }
}
