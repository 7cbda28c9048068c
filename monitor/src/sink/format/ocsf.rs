//! The alert as an OCSF 1.7.0 Detection Finding (category Findings, 2;
//! class 2004).
//!
//! | OCSF | from the native record |
//! | --- | --- |
//! | `activity_id` | 1 Create; 2 Update for a folded update (`update_of`) |
//! | `time`, `start_time`, `end_time` | `time`, `first_seen`, `last_seen` (ms since the epoch) |
//! | `severity_id` | info 1, low 2, medium 3, high 4, critical 5 (`severity` its caption) |
//! | `message`, `count` | `summary`, `count` |
//! | `metadata` | `uid` = `id`, `version` 1.7.0, `product` monitor and its version, `correlation_uid` = `update_of` |
//! | `finding_info` | `uid` (the finding: `update_of` for an update, else `id`), `title` = `summary`, `types` = [`kind`], `analytic` (the rule: type Rule, `category` = `policy`), `attacks` from `tags`, `first_seen_time`, `last_seen_time` |
//! | `device` | the node: `hostname` = `host` |
//! | `evidences[0].process` | `pid`, `name` = `comm`, `cmd_line` = `args` joined, `file` = `exe`, `user.uid`, `parent_process` (`ppid`, the nearest ancestor's exe), `ancestry` (the ancestors whose exe is known: OCSF needs a name) |
//! | `evidences[0].file` | `path`, `name`, `type_id` (5 Local Socket for a unix-socket connect, else 0 Unknown) |
//! | `evidences[0].dst_endpoint`, `src_endpoint`, `connection_info` | `daddr`, `dport`, `dns`; the node as source of outbound ops; `protocol_name`, `protocol_num`, `protocol_ver_id` (4, 6), `direction_id` (2 Outbound: connect, sendmsg; 1 Inbound: bind) |
//! | `evidences[0].device` | the node, when the container is the only other evidence (posture findings) |
//! | `evidences[0].container` | `uid` = `id`, `name`, `runtime`, `image` (`name`, `tag`; `uid` = the image reference: the agent reads no image digest), `orchestrator` Kubernetes when the container is in a pod |
//! | `resources[0]` | the pod: `type` `kubernetes.pod`, `name`, `namespace` |
//! | `unmapped.monitor` | what OCSF has no attribute for: `schema`, `rule`, `policy`, `kind`, `metadata_status`, `attempt`, `action_taken`, `would_deny`, `shadow`, the file's `op`, `flags`, `result`, `target`, `mode`, `requested_path`, `truncated`, the network `op`, `syscall`, `scan`, `lost`, `container.cgroup` |
//!
//! `monitor/tests/alert_formats.rs` holds every kind of alert to the
//! published schema (PyPI `pydantic-ocsf` 3.0.0's copy of OCSF 1.7.0).
use serde_json::{Map, Value, json};

use super::{VERSION, at, base_name, epoch_millis, put, split_image, technique, text};

/// The OCSF version this mapping follows.
pub const OCSF_VERSION: &str = "1.7.0";

/// Category Findings (2) * 1000 + Detection Finding (4).
pub const CLASS_UID: i64 = 2004;

/// The native record (JSON) as a Detection Finding.
pub fn finding(a: &Value) -> Value {
    let update_of = text(a, &["update_of"]);
    let (activity_id, activity) = if update_of.is_some() {
        (2, "Update")
    } else {
        (1, "Create")
    };
    let (severity_id, severity) = match text(a, &["severity"]) {
        Some("critical") => (5, "Critical"),
        Some("high") => (4, "High"),
        Some("medium") => (3, "Medium"),
        Some("low") => (2, "Low"),
        Some("info") => (1, "Informational"),
        _ => (0, "Unknown"),
    };
    let id = text(a, &["id"]);
    let time = epoch_millis(text(a, &["time"])).unwrap_or(0);
    let mut out = Map::new();
    out.insert("class_uid".into(), json!(CLASS_UID));
    out.insert("class_name".into(), json!("Detection Finding"));
    out.insert("category_uid".into(), json!(2));
    out.insert("category_name".into(), json!("Findings"));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity));
    out.insert("type_uid".into(), json!(CLASS_UID * 100 + activity_id));
    out.insert(
        "type_name".into(),
        json!(format!("Detection Finding: {activity}")),
    );
    out.insert("time".into(), json!(time));
    put(
        &mut out,
        "start_time",
        epoch_millis(text(a, &["first_seen"])),
    );
    put(&mut out, "end_time", epoch_millis(text(a, &["last_seen"])));
    out.insert("severity_id".into(), json!(severity_id));
    out.insert("severity".into(), json!(severity));
    out.insert("status_id".into(), json!(1));
    out.insert("status".into(), json!("New"));
    out.insert("is_alert".into(), json!(true));
    put(&mut out, "message", text(a, &["summary"]));
    put(&mut out, "count", at(a, &["count"]).as_u64());

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "monitor", "vendor_name": "monitor", "version": VERSION}),
    );
    put(&mut metadata, "uid", id);
    put(&mut metadata, "correlation_uid", update_of);
    out.insert("metadata".into(), metadata.into());

    let mut info = Map::new();
    info.insert("uid".into(), json!(update_of.or(id).unwrap_or("")));
    put(&mut info, "title", text(a, &["summary"]));
    put(&mut info, "types", text(a, &["kind"]).map(|k| json!([k])));
    if let Some(rule) = text(a, &["rule"]) {
        let mut analytic = Map::new();
        analytic.insert("name".into(), json!(rule));
        analytic.insert("uid".into(), json!(rule));
        analytic.insert("type_id".into(), json!(1));
        analytic.insert("type".into(), json!("Rule"));
        put(&mut analytic, "category", text(a, &["policy"]));
        info.insert("analytic".into(), analytic.into());
    }
    let attacks: Vec<Value> = at(a, &["tags"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|t| {
            let (base, sub) = technique(t);
            let mut attack = Map::new();
            attack.insert("technique".into(), json!({"uid": base}));
            put(&mut attack, "sub_technique", sub.map(|s| json!({"uid": s})));
            Value::Object(attack)
        })
        .collect();
    if !attacks.is_empty() {
        info.insert("attacks".into(), attacks.into());
    }
    put(
        &mut info,
        "first_seen_time",
        epoch_millis(text(a, &["first_seen"])),
    );
    put(
        &mut info,
        "last_seen_time",
        epoch_millis(text(a, &["last_seen"])),
    );
    put(&mut info, "created_time", Some(time));
    out.insert("finding_info".into(), info.into());

    if let Some(host) = text(a, &["host"]) {
        out.insert(
            "device".into(),
            json!({"hostname": host, "name": host, "type_id": 0, "type": "Unknown"}),
        );
    }

    let mut evidence = Map::new();
    put(&mut evidence, "process", process(at(a, &["process"])));
    put(&mut evidence, "file", file(at(a, &["file"])));
    network(at(a, &["network"]), text(a, &["host"]), &mut evidence);
    put(&mut evidence, "container", container(at(a, &["container"])));
    // An evidence needs a process, file, endpoint or device beside a
    // container (a posture finding has only the container): the node it runs on.
    if evidence.len() == 1
        && evidence.contains_key("container")
        && let Some(d) = out.get("device")
    {
        evidence.insert("device".into(), d.clone());
    }
    if !evidence.is_empty() {
        out.insert("evidences".into(), json!([evidence]));
    }
    if let Some(pod) = text(a, &["container", "pod"]) {
        let mut r = Map::new();
        r.insert("type".into(), json!("kubernetes.pod"));
        r.insert("name".into(), json!(pod));
        put(&mut r, "namespace", text(a, &["container", "namespace"]));
        out.insert("resources".into(), json!([r]));
    }
    out.insert("unmapped".into(), json!({"monitor": unmapped(a)}));
    Value::Object(out)
}

fn process(p: &Value) -> Value {
    let Some(pid) = p.get("pid").and_then(Value::as_u64) else {
        return Value::Null;
    };
    let mut out = Map::new();
    out.insert("pid".into(), json!(pid));
    put(&mut out, "name", text(p, &["comm"]));
    if let Some(exe) = text(p, &["exe"]) {
        out.insert("path".into(), json!(exe));
        out.insert(
            "file".into(),
            json!({"path": exe, "name": base_name(exe), "type_id": 1, "type": "Regular File"}),
        );
    }
    let args: Vec<&str> = p
        .get("args")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !args.is_empty() {
        out.insert("cmd_line".into(), json!(args.join(" ")));
    }
    if let Some(uid) = p.get("uid").and_then(Value::as_u64) {
        out.insert("user".into(), json!({"uid": uid.to_string()}));
    }
    let ancestry: Vec<&Value> = p
        .get("ancestry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if let Some(ppid) = p.get("ppid").and_then(Value::as_u64) {
        let mut parent = Map::new();
        parent.insert("pid".into(), json!(ppid));
        let nearest = ancestry
            .first()
            .filter(|n| n.get("pid").and_then(Value::as_u64) == Some(ppid));
        if let Some(exe) = nearest.and_then(|n| text(n, &["exe"])) {
            parent.insert("path".into(), json!(exe));
            parent.insert("name".into(), json!(base_name(exe)));
        }
        out.insert("parent_process".into(), parent.into());
    }
    // A `process_entity` needs a name: ancestors whose exe is unknown are
    // left out (the native record keeps them).
    let ancestry: Vec<Value> = ancestry
        .iter()
        .filter_map(|n| {
            let pid = n.get("pid").and_then(Value::as_u64)?;
            let exe = text(n, &["exe"])?;
            Some(json!({"pid": pid, "path": exe, "name": base_name(exe)}))
        })
        .collect();
    if !ancestry.is_empty() {
        out.insert("ancestry".into(), ancestry.into());
    }
    Value::Object(out)
}

fn file(f: &Value) -> Value {
    let Some(path) = text(f, &["path"]) else {
        return Value::Null;
    };
    let (type_id, ty) = match text(f, &["op"]) {
        Some("connect") => (5, "Local Socket"),
        _ => (0, "Unknown"),
    };
    json!({"path": path, "name": base_name(path), "type_id": type_id, "type": ty})
}

fn network(n: &Value, host: Option<&str>, evidence: &mut Map<String, Value>) {
    let Some(ip) = text(n, &["daddr"]) else {
        return;
    };
    let inbound = matches!(text(n, &["op"]), Some("bind"));
    let mut dst = Map::new();
    dst.insert("ip".into(), json!(ip));
    put(&mut dst, "port", n.get("dport").and_then(Value::as_u64));
    // A listener is the destination of what comes in: this node.
    put(
        &mut dst,
        "hostname",
        if inbound { host } else { text(n, &["dns"]) },
    );
    evidence.insert("dst_endpoint".into(), dst.into());
    if !inbound && let Some(h) = host {
        evidence.insert("src_endpoint".into(), json!({"hostname": h}));
    }
    let mut conn = Map::new();
    let (name, num) = match n.get("protocol") {
        Some(Value::String(s)) if s == "tcp" => (Some("tcp"), Some(6)),
        Some(Value::String(s)) if s == "udp" => (Some("udp"), Some(17)),
        Some(Value::Number(x)) => (None, x.as_u64()),
        _ => (None, None),
    };
    put(&mut conn, "protocol_name", name);
    put(&mut conn, "protocol_num", num);
    match text(n, &["family"]) {
        Some("ipv4") => conn.insert("protocol_ver_id".into(), json!(4)),
        Some("ipv6") => conn.insert("protocol_ver_id".into(), json!(6)),
        _ => None,
    };
    let (direction_id, direction) = if inbound {
        (1, "Inbound")
    } else {
        (2, "Outbound")
    };
    conn.insert("direction_id".into(), json!(direction_id));
    conn.insert("direction".into(), json!(direction));
    evidence.insert("connection_info".into(), conn.into());
}

fn container(c: &Value) -> Value {
    if !c.is_object() {
        return Value::Null;
    }
    let mut out = Map::new();
    put(&mut out, "uid", text(c, &["id"]));
    put(&mut out, "name", text(c, &["name"]));
    put(&mut out, "runtime", text(c, &["runtime"]));
    if let Some(image) = text(c, &["image"]) {
        let (name, tag) = split_image(image);
        let mut i = Map::new();
        i.insert("uid".into(), json!(image));
        i.insert("name".into(), json!(name));
        put(&mut i, "tag", tag);
        out.insert("image".into(), i.into());
        put(&mut out, "tag", tag);
    }
    if text(c, &["pod"]).is_some() {
        out.insert("orchestrator".into(), json!("Kubernetes"));
    }
    // OCSF asks for a uid or a name; a container known by neither says nothing.
    if out.contains_key("uid") || out.contains_key("name") {
        Value::Object(out)
    } else {
        Value::Null
    }
}

fn unmapped(a: &Value) -> Value {
    super::native_extras(
        a,
        &[
            "schema",
            "rule",
            "policy",
            "kind",
            "metadata_status",
            "attempt",
            "action_taken",
            "would_deny",
            "shadow",
            "syscall",
            "scan",
            "lost",
        ],
    )
}
