//! OTLP logs over HTTP (`POST /v1/logs`), protobuf or JSON, built with the
//! official protobuf definitions (`opentelemetry-proto`).
//!
//! One log record per alert: `time_unix_nano` the alert's time, severity
//! number and text from its severity (info 9 INFO, low 10 INFO2, medium 13
//! WARN, high 17 ERROR, critical 21 FATAL), `event_name` `monitor.alert`,
//! the summary as body, and the alert as attributes, named after
//! OpenTelemetry's semantic conventions where they have one (`container.*`,
//! `k8s.*`, `process.*`, `file.path`, `network.*`, `destination.*`) and
//! `monitor.*` otherwise. The resource says `service.name` `monitor` and
//! `host.name`.
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde_json::Value;

/// How the request body is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf` (the default of OTLP/HTTP).
    #[default]
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `http://collector:4318` -> `http://collector:4318/v1/logs`; a URL already
/// ending in `/v1/logs` is kept.
pub fn logs_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/logs") {
        base.to_owned()
    } else {
        format!("{base}/v1/logs")
    }
}

fn s(v: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

fn int(v: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(v)),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

/// The attributes of one alert (only the facts it has).
pub fn attributes(a: &Value) -> Vec<KeyValue> {
    let mut out = Vec::new();
    let mut text = |key: &str, ptr: &str| {
        if let Some(v) = a
            .pointer(ptr)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            out.push(kv(key, s(v)));
        }
    };
    text("monitor.alert.id", "/id");
    text("monitor.rule", "/rule");
    text("monitor.policy", "/policy");
    text("monitor.severity", "/severity");
    text("monitor.kind", "/kind");
    text("monitor.metadata_status", "/metadata_status");
    text("monitor.update_of", "/update_of");
    text("container.id", "/container/id");
    text("container.name", "/container/name");
    text("container.image.name", "/container/image");
    text("container.runtime.name", "/container/runtime");
    text("k8s.pod.name", "/container/pod");
    text("k8s.namespace.name", "/container/namespace");
    text("monitor.container.cgroup", "/container/cgroup");
    text("process.executable.name", "/process/comm");
    text("process.executable.path", "/process/exe");
    text("file.path", "/file/path");
    text("monitor.file.op", "/file/op");
    text("monitor.file.target", "/file/target");
    text("monitor.network.op", "/network/op");
    text("network.transport", "/network/protocol");
    text("network.type", "/network/family");
    text("destination.address", "/network/daddr");
    text("monitor.network.dns", "/network/dns");
    let mut num = |key: &str, ptr: &str| {
        if let Some(v) = a.pointer(ptr).and_then(Value::as_i64) {
            out.push(kv(key, int(v)));
        }
    };
    num("monitor.count", "/count");
    num("process.pid", "/process/pid");
    num("process.parent_pid", "/process/ppid");
    num("process.real_user.id", "/process/uid");
    num("destination.port", "/network/dport");
    num("monitor.file.result", "/file/result");
    if let Some(args) = a.pointer("/process/args").and_then(Value::as_array)
        && !args.is_empty()
    {
        let values = args
            .iter()
            .map(|v| s(v.as_str().unwrap_or_default()))
            .collect();
        out.push(kv(
            "process.command_args",
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
            },
        ));
    }
    out
}

fn severity(a: &Value) -> (i32, &str) {
    match a["severity"].as_str().unwrap_or("info") {
        "critical" => (21, "critical"),
        "high" => (17, "high"),
        "medium" => (13, "medium"),
        "low" => (10, "low"),
        _ => (9, "info"),
    }
}

fn unix_nanos(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One log record per alert record.
pub fn log_record(a: &Value, observed: u64) -> LogRecord {
    let (number, text) = severity(a);
    LogRecord {
        time_unix_nano: unix_nanos(a["time"].as_str().unwrap_or("")),
        observed_time_unix_nano: observed,
        severity_number: number,
        severity_text: text.to_owned(),
        body: Some(s(a["summary"].as_str().unwrap_or(""))),
        attributes: attributes(a),
        event_name: "monitor.alert".into(),
        ..Default::default()
    }
}

/// The request for a batch of alert records (grouped under one resource:
/// one agent, one host).
pub fn request(batch: &[bytes::Bytes]) -> ExportLogsServiceRequest {
    let observed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let alerts: Vec<Value> = batch
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
        .collect();
    let host = alerts
        .first()
        .and_then(|a| a["host"].as_str())
        .unwrap_or("")
        .to_owned();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("monitor")),
                    kv("service.version", s(env!("CARGO_PKG_VERSION"))),
                    kv("host.name", s(host)),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "monitor".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: alerts.iter().map(|a| log_record(a, observed)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The request body in `encoding`.
pub fn body(batch: &[bytes::Bytes], encoding: Encoding) -> Vec<u8> {
    let req = request(batch);
    match encoding {
        Encoding::Protobuf => req.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&req).expect("OTLP/JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_round_trip() {
        assert_eq!(logs_url("http://c:4318/"), "http://c:4318/v1/logs");
        assert_eq!(logs_url("http://c:4318/v1/logs"), "http://c:4318/v1/logs");
        let rec = bytes::Bytes::from_static(
            br#"{"id":"01","time":"2026-11-29T15:50:00.123456Z","host":"node-1","rule":"r","severity":"high","summary":"s","count":2,"process":{"pid":7,"args":["a","b"]}}"#,
        );
        let b = body(std::slice::from_ref(&rec), Encoding::Protobuf);
        let back = ExportLogsServiceRequest::decode(b.as_slice()).unwrap();
        let r = &back.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.severity_number, 17);
        assert_eq!(r.time_unix_nano, 1_795_967_400_123_456_000);
        let json: Value = serde_json::from_slice(&body(&[rec], Encoding::Json)).unwrap();
        let lr = &json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(lr["severityNumber"], 17, "{json}");
        assert_eq!(lr["timeUnixNano"], "1795967400123456000", "{json}");
    }
}
