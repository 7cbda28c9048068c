//! The alert as an Elastic Common Schema 9.4.0 document.
//!
//! | ECS | from the native record |
//! | --- | --- |
//! | `@timestamp`, `message`, `tags` | `time`, `summary`, `tags` (ATT&CK ids) |
//! | `event.kind` | `alert` |
//! | `event.category`, `event.type` | by kind: process `process`/`start`; file `file` and `change`, `creation` (creat, link, symlink), `deletion` (unlink) or `access` (a read-only open); a unix-socket connect `network`/`connection`; network `network` and `connection`, `start` (connect, sendmsg) or `start` (bind); syscall `process`/`change`; posture `configuration`/`info`; agent `host`/`info`; every kind also `intrusion_detection`/`info` |
//! | `event.severity` | info 1, low 21, medium 47, high 73, critical 99 (Elastic Security's scale) |
//! | `event.id`, `event.start`, `event.end`, `event.outcome` | `id`, `first_seen`, `last_seen`; `failure` for a failed file operation or syscall, `success` for one that succeeded |
//! | `event.module`, `event.dataset`, `event.provider`, `event.action` | `monitor`, `monitor.alert`, `monitor`, the operation (`exec`, the file or network op, the syscall's name) |
//! | `rule.name`, `rule.id`, `rule.ruleset`, `rule.category` | `rule`, `rule`, `policy`, `kind` |
//! | `threat.*` | framework MITRE ATT&CK, `technique.id` and `technique.subtechnique.id` from `tags` |
//! | `process.*` | `pid`, `name` = `comm`, `executable` = `exe`, `args`, `args_count`, `command_line`, `user.id` = `uid`, `parent.pid` = `ppid`, `parent.executable` (the nearest ancestor's exe) |
//! | `file.*` | `path`, `name`, `directory`, `target_path` (symlink) |
//! | `destination.*`, `network.*` | `ip`, `address`, `port`, `domain` = `dns`; `transport`, `iana_number`, `type` (ipv4, ipv6), `direction` (`egress`, or `ingress` for bind) |
//! | `container.*` | `id`, `name`, `runtime`, `image.name`, `image.tag` |
//! | `orchestrator.*` | `type` kubernetes, `namespace`, `resource.type` pod, `resource.name` (when the container is in a pod) |
//! | `host.name`, `host.hostname`, `observer.*` | `host`; the agent (`product` monitor, `vendor` monitor, `type` agent, `version`, `hostname`) |
//! | `monitor.*` | what ECS has no field for, under the product's own name: `schema`, `severity`, `count`, `update_of`, `metadata_status`, `attempt`, `action_taken`, `would_deny`, `shadow`, the file's `op`, `flags`, `result`, `target`, `mode`, `requested_path`, `truncated`, the network `op`, `syscall`, `scan`, `lost`, `container.cgroup` |
//!
//! `monitor/tests/alert_formats.rs` holds every kind of alert to the
//! published field definitions (npm `@elastic/ecs` 9.4.0, its `ecs_flat`).
use serde_json::{Map, Value, json};

use super::{VERSION, at, base_name, put, split_image, technique, text};

/// The ECS version this mapping follows.
pub const ECS_VERSION: &str = "9.4.0";

/// The native record (JSON) as an ECS document.
pub fn document(a: &Value) -> Value {
    let kind = text(a, &["kind"]).unwrap_or("agent");
    let file_op = text(a, &["file", "op"]);
    let read_only = at(a, &["file", "flags"])
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "O_RDONLY"));
    let (category, types): (&[&str], &[&str]) = match kind {
        "process" => (&["process"], &["start"]),
        "file" => match file_op {
            Some("connect") => (&["network"], &["connection"]),
            Some("creat" | "link" | "symlink") => (&["file"], &["creation"]),
            Some("unlink") => (&["file"], &["deletion"]),
            Some("open") if read_only => (&["file"], &["access"]),
            _ => (&["file"], &["change"]),
        },
        "network" => match text(a, &["network", "op"]) {
            Some("bind") => (&["network"], &["start"]),
            _ => (&["network"], &["connection", "start"]),
        },
        "syscall" => (&["process"], &["change"]),
        "posture" => (&["configuration"], &["info"]),
        _ => (&["host"], &["info"]),
    };
    let mut category: Vec<&str> = category.to_vec();
    let mut types: Vec<&str> = types.to_vec();
    category.push("intrusion_detection");
    if !types.contains(&"info") {
        types.push("info");
    }
    let severity = match text(a, &["severity"]) {
        Some("critical") => 99,
        Some("high") => 73,
        Some("medium") => 47,
        Some("low") => 21,
        _ => 1,
    };
    let action = match kind {
        "process" => Some("exec"),
        "file" => file_op,
        "network" => text(a, &["network", "op"]),
        "syscall" => text(a, &["syscall", "name"]),
        _ => None,
    };
    let result = match kind {
        "file" => at(a, &["file", "result"]).as_i64(),
        "syscall" => at(a, &["syscall", "result"]).as_i64(),
        _ => None,
    };
    let mut event = Map::new();
    event.insert("kind".into(), json!("alert"));
    event.insert("category".into(), json!(category));
    event.insert("type".into(), json!(types));
    event.insert("severity".into(), json!(severity));
    put(&mut event, "id", text(a, &["id"]));
    put(&mut event, "created", text(a, &["time"]));
    put(&mut event, "start", text(a, &["first_seen"]));
    put(&mut event, "end", text(a, &["last_seen"]));
    put(&mut event, "action", action);
    put(
        &mut event,
        "outcome",
        result.map(|r| if r < 0 { "failure" } else { "success" }),
    );
    put(&mut event, "reason", text(a, &["summary"]));
    event.insert("module".into(), json!("monitor"));
    event.insert("dataset".into(), json!("monitor.alert"));
    event.insert("provider".into(), json!("monitor"));

    let mut out = Map::new();
    put(&mut out, "@timestamp", text(a, &["time"]));
    out.insert("ecs".into(), json!({"version": ECS_VERSION}));
    put(&mut out, "message", text(a, &["summary"]));
    let tags: Vec<&str> = at(a, &["tags"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !tags.is_empty() {
        out.insert("tags".into(), json!(tags));
        let mut ids: Vec<&str> = Vec::new();
        let mut subs: Vec<&str> = Vec::new();
        for t in &tags {
            let (base, sub) = technique(t);
            if !ids.contains(&base) {
                ids.push(base);
            }
            subs.extend(sub);
        }
        let mut technique = Map::new();
        technique.insert("id".into(), json!(ids));
        if !subs.is_empty() {
            technique.insert("subtechnique".into(), json!({"id": subs}));
        }
        out.insert(
            "threat".into(),
            json!({"framework": "MITRE ATT&CK", "technique": technique}),
        );
    }
    out.insert("event".into(), event.into());
    if let Some(rule) = text(a, &["rule"]) {
        let mut r = Map::new();
        r.insert("name".into(), json!(rule));
        r.insert("id".into(), json!(rule));
        put(&mut r, "ruleset", text(a, &["policy"]));
        r.insert("category".into(), json!(kind));
        out.insert("rule".into(), r.into());
    }
    put(&mut out, "process", process(at(a, &["process"])));
    if let Some(path) = text(a, &["file", "path"]) {
        let mut f = Map::new();
        f.insert("path".into(), json!(path));
        f.insert("name".into(), json!(base_name(path)));
        if let Some((dir, _)) = path.rsplit_once('/') {
            f.insert(
                "directory".into(),
                json!(if dir.is_empty() { "/" } else { dir }),
            );
        }
        if file_op == Some("symlink") {
            put(&mut f, "target_path", text(a, &["file", "target"]));
        }
        out.insert("file".into(), f.into());
    }
    network(at(a, &["network"]), &mut out);
    container(at(a, &["container"]), &mut out);
    if let Some(host) = text(a, &["host"]) {
        out.insert("host".into(), json!({"name": host, "hostname": host}));
    }
    let mut observer = Map::new();
    observer.insert("product".into(), json!("monitor"));
    observer.insert("vendor".into(), json!("monitor"));
    observer.insert("type".into(), json!("agent"));
    observer.insert("version".into(), json!(VERSION));
    put(&mut observer, "hostname", text(a, &["host"]));
    out.insert("observer".into(), observer.into());
    out.insert("monitor".into(), own(a));
    Value::Object(out)
}

fn process(p: &Value) -> Value {
    let Some(pid) = p.get("pid").and_then(Value::as_u64) else {
        return Value::Null;
    };
    let mut out = Map::new();
    out.insert("pid".into(), json!(pid));
    put(&mut out, "name", text(p, &["comm"]));
    put(&mut out, "executable", text(p, &["exe"]));
    let args: Vec<&str> = p
        .get("args")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !args.is_empty() {
        out.insert("args".into(), json!(args));
        out.insert("args_count".into(), json!(args.len()));
        out.insert("command_line".into(), json!(args.join(" ")));
    }
    if let Some(uid) = p.get("uid").and_then(Value::as_u64) {
        out.insert("user".into(), json!({"id": uid.to_string()}));
    }
    if let Some(ppid) = p.get("ppid").and_then(Value::as_u64) {
        let mut parent = Map::new();
        parent.insert("pid".into(), json!(ppid));
        let nearest = at(p, &["ancestry"])
            .get(0)
            .filter(|n| n.get("pid").and_then(Value::as_u64) == Some(ppid));
        if let Some(exe) = nearest.and_then(|n| text(n, &["exe"])) {
            parent.insert("executable".into(), json!(exe));
            parent.insert("name".into(), json!(base_name(exe)));
        }
        out.insert("parent".into(), parent.into());
    }
    Value::Object(out)
}

fn network(n: &Value, out: &mut Map<String, Value>) {
    let Some(ip) = text(n, &["daddr"]) else {
        return;
    };
    let mut dst = Map::new();
    dst.insert("ip".into(), json!(ip));
    dst.insert("address".into(), json!(ip));
    put(&mut dst, "port", n.get("dport").and_then(Value::as_u64));
    put(&mut dst, "domain", text(n, &["dns"]));
    out.insert("destination".into(), dst.into());
    let mut net = Map::new();
    match n.get("protocol") {
        Some(Value::String(s)) if s == "tcp" || s == "udp" => {
            net.insert("transport".into(), json!(s));
            net.insert(
                "iana_number".into(),
                json!(if s == "tcp" { "6" } else { "17" }),
            );
        }
        Some(Value::Number(x)) => {
            net.insert("iana_number".into(), json!(x.to_string()));
        }
        _ => {}
    }
    put(&mut net, "type", text(n, &["family"]));
    let inbound = matches!(text(n, &["op"]), Some("bind"));
    net.insert(
        "direction".into(),
        json!(if inbound { "ingress" } else { "egress" }),
    );
    out.insert("network".into(), net.into());
}

fn container(c: &Value, out: &mut Map<String, Value>) {
    if !c.is_object() {
        return;
    }
    let mut m = Map::new();
    put(&mut m, "id", text(c, &["id"]));
    put(&mut m, "name", text(c, &["name"]));
    put(&mut m, "runtime", text(c, &["runtime"]));
    if let Some(image) = text(c, &["image"]) {
        let (name, tag) = split_image(image);
        let mut i = Map::new();
        i.insert("name".into(), json!(name));
        put(&mut i, "tag", tag.map(|t| json!([t])));
        m.insert("image".into(), i.into());
    }
    if !m.is_empty() {
        out.insert("container".into(), m.into());
    }
    if let Some(pod) = text(c, &["pod"]) {
        let mut o = Map::new();
        o.insert("type".into(), json!("kubernetes"));
        put(&mut o, "namespace", text(c, &["namespace"]));
        o.insert("resource".into(), json!({"type": "pod", "name": pod}));
        out.insert("orchestrator".into(), o.into());
    }
}

/// The native facts ECS has no field for.
fn own(a: &Value) -> Value {
    super::native_extras(
        a,
        &[
            "schema",
            "severity",
            "count",
            "update_of",
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
