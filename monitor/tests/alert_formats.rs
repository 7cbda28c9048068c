//! The OCSF and ECS output formats against the projects' published field
//! definitions, vendored in `tests/fixtures/formats/` (see its README):
//! OCSF 1.7.0 from PyPI's `pydantic-ocsf` 3.0.0, ECS 9.4.0 from npm's
//! `@elastic/ecs` 9.4.0.
//!
//! Every kind and shape of alert (the corpus of `alert_schema.rs`, through
//! the real pipeline) is written by real sinks in each format: file sinks
//! (formatted by the dispatcher) and webhook sinks (formatted when sent from
//! the native spool, after a restart). Every document must validate: each
//! OCSF attribute exists in its class or object with the right type and
//! array-ness, required attributes are present, enum ids are defined and
//! their captions match, the class and type ids add up; each ECS field
//! exists with the right type and array-ness, allowed values are allowed and
//! each `event.type` is expected for an `event.category`. The validators
//! refuse broken documents, so this test can fail.
mod common;

use std::{collections::BTreeSet, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use monitor::{
    metrics::Metrics,
    sink::{AlertFormat, FileConfig, SinkConfig, SinkKind, Sinks, SinksOptions},
};
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

// ------------------------------------------------------------------- OCSF

/// OCSF's schema sources: classes and objects extend parents, attributes
/// take their type from the dictionary unless they give their own.
struct Ocsf {
    schema: Value,
}

/// One attribute of a class or object, its definitions merged.
struct Attr {
    ty: String,
    array: bool,
    required: bool,
    enums: Map<String, Value>,
    sibling: Option<String>,
    /// `class_uid`, `category_uid`, `type_uid`: the schema sources leave
    /// their enums to the compiler; [`Ocsf::check_finding`] checks them.
    computed: bool,
}

impl Ocsf {
    fn load() -> Ocsf {
        Ocsf {
            schema: fixture("ocsf_schema.json"),
        }
    }

    /// The attributes of a class (`events`) or object, parents first, each
    /// child's definition merged over its parent's and the dictionary's.
    fn attributes(&self, section: &str, name: &str) -> Result<Map<String, Value>, String> {
        let mut chain = Vec::new();
        let mut cur = Some(name.to_owned());
        while let Some(n) = cur {
            let def = self.schema[section]
                .get(&n)
                .ok_or_else(|| format!("{section} `{n}` is not in the schema fixture"))?;
            cur = def
                .get("extends")
                .and_then(Value::as_str)
                .map(str::to_owned);
            chain.push(def);
        }
        let mut out = Map::new();
        for def in chain.into_iter().rev() {
            for (k, v) in def["attributes"].as_object().into_iter().flatten() {
                if k == "$include" {
                    continue;
                }
                let entry = out.entry(k.clone()).or_insert_with(|| json!({}));
                merge(entry, v);
            }
        }
        Ok(out)
    }

    fn attr(&self, defs: &Map<String, Value>, name: &str) -> Option<Attr> {
        let own = defs.get(name)?;
        let mut d = self.schema["dictionary"]
            .get(name)
            .cloned()
            .unwrap_or(json!({}));
        merge(&mut d, own);
        Some(Attr {
            ty: d["type"].as_str().unwrap_or("").to_owned(),
            array: d["is_array"].as_bool().unwrap_or(false),
            required: d["requirement"] == "required",
            enums: d["enum"].as_object().cloned().unwrap_or_default(),
            sibling: d["sibling"].as_str().map(str::to_owned),
            computed: matches!(name, "class_uid" | "category_uid" | "type_uid"),
        })
    }

    /// Every problem of a Detection Finding, with the path where it is.
    fn check_finding(&self, doc: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        let class = &self.schema["events"]["detection_finding"];
        let category = &self.schema["categories"]["findings"];
        let class_uid = category["uid"].as_i64().unwrap() * 1000 + class["uid"].as_i64().unwrap();
        if doc["class_uid"].as_i64() != Some(class_uid) {
            errs.push(format!(
                "class_uid: {} is not {class_uid}",
                doc["class_uid"]
            ));
        }
        if doc["category_uid"] != category["uid"] {
            errs.push(format!("category_uid: {}", doc["category_uid"]));
        }
        if doc["class_name"] != class["caption"] {
            errs.push(format!("class_name: {}", doc["class_name"]));
        }
        if doc["category_name"] != category["caption"] {
            errs.push(format!("category_name: {}", doc["category_name"]));
        }
        let activity_caption = self
            .attr(
                &self
                    .attributes("events", "detection_finding")
                    .unwrap_or_default(),
                "activity_id",
            )
            .and_then(|a| a.enums.get(&doc["activity_id"].to_string()).cloned())
            .map(|e| e["caption"].clone());
        if doc["type_name"].as_str()
            != activity_caption
                .as_ref()
                .and_then(Value::as_str)
                .map(|c| format!("{}: {c}", class["caption"].as_str().unwrap()))
                .as_deref()
        {
            errs.push(format!("type_name: {}", doc["type_name"]));
        }
        let activity = doc["activity_id"].as_i64().unwrap_or(-1);
        if doc["type_uid"].as_i64() != Some(class_uid * 100 + activity) {
            errs.push(format!("type_uid: {}", doc["type_uid"]));
        }
        if doc["metadata"]["version"] != self.schema["version"] {
            errs.push(format!("metadata.version: {}", doc["metadata"]["version"]));
        }
        match self.attributes("events", "detection_finding") {
            Ok(defs) => self.check_object(&defs, doc, "", &mut errs),
            Err(e) => errs.push(e),
        }
        errs
    }

    fn check_object(
        &self,
        defs: &Map<String, Value>,
        v: &Value,
        path: &str,
        errs: &mut Vec<String>,
    ) {
        let Some(obj) = v.as_object() else {
            errs.push(format!("{path}: not an object"));
            return;
        };
        for (k, val) in obj {
            let here = format!("{path}.{k}");
            let Some(attr) = self.attr(defs, k) else {
                errs.push(format!("{here}: no such attribute"));
                continue;
            };
            match (attr.array, val) {
                (true, Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(&attr, item, &format!("{here}[{i}]"), errs);
                    }
                }
                (true, _) => errs.push(format!("{here}: must be an array")),
                (false, Value::Array(_)) => errs.push(format!("{here}: must not be an array")),
                (false, _) => self.check_value(&attr, val, &here, errs),
            }
            if let (Some(sib), Some(id)) = (&attr.sibling, val.as_i64())
                && !attr.computed
                && let Some(caption) = obj.get(sib)
                && id != 99
                && attr.enums.get(&id.to_string()).map(|e| &e["caption"]) != Some(caption)
            {
                errs.push(format!(
                    "{path}.{sib}: {caption} is not the caption of {k} {id}"
                ));
            }
        }
        for k in defs.keys() {
            if let Some(attr) = self.attr(defs, k)
                && attr.required
                && !obj.contains_key(k)
            {
                errs.push(format!("{path}.{k}: required, missing"));
            }
        }
    }

    fn check_value(&self, attr: &Attr, v: &Value, path: &str, errs: &mut Vec<String>) {
        if !attr.enums.is_empty()
            && !attr.computed
            && let Some(id) = v.as_i64()
            && !attr.enums.contains_key(&id.to_string())
        {
            errs.push(format!("{path}: {id} is not one of the enum's ids"));
        }
        if let Some(base) = self.primitive(&attr.ty) {
            let ok = match base.as_str() {
                "string_t" => v.is_string(),
                "integer_t" | "long_t" => v.is_i64() || v.is_u64(),
                "float_t" => v.is_number(),
                "boolean_t" => v.is_boolean(),
                "json_t" => true,
                _ => false,
            };
            if !ok {
                errs.push(format!("{path}: {v} is not {} ({base})", attr.ty));
                return;
            }
            let def = &self.schema["types"][&attr.ty];
            if let (Some(range), Some(n)) = (def["range"].as_array(), v.as_i64())
                && (n < range[0].as_i64().unwrap() || n > range[1].as_i64().unwrap())
            {
                errs.push(format!("{path}: {n} is outside {}", attr.ty));
            }
            if attr.ty == "ip_t" && v.as_str().unwrap().parse::<std::net::IpAddr>().is_err() {
                errs.push(format!("{path}: {v} is not an IP address"));
            }
        } else if attr.ty == "object" {
            if !v.is_object() {
                errs.push(format!("{path}: not an object"));
            }
        } else {
            match self.attributes("objects", &attr.ty) {
                Ok(defs) => {
                    self.check_object(&defs, v, path, errs);
                    self.check_constraints(&attr.ty, v, path, errs);
                }
                Err(e) => errs.push(format!("{path}: {e}")),
            }
        }
    }

    /// The `at_least_one` constraint of an object: its own, else its
    /// nearest parent's (a definition's `constraints` replaces its parent's).
    fn check_constraints(&self, object: &str, v: &Value, path: &str, errs: &mut Vec<String>) {
        let mut cur = Some(object.to_owned());
        while let Some(n) = cur {
            let def = &self.schema["objects"][&n];
            if let Some(c) = def.get("constraints") {
                if let Some(any) = c["at_least_one"].as_array()
                    && !any.iter().any(|k| v.get(k.as_str().unwrap()).is_some())
                {
                    errs.push(format!("{path}: {object} needs one of {any:?}"));
                }
                return;
            }
            cur = def["extends"].as_str().map(str::to_owned);
        }
    }

    /// The primitive a type name stands for (`port_t` -> `integer_t`), or
    /// `None` for object types.
    fn primitive(&self, ty: &str) -> Option<String> {
        let types = &self.schema["types"];
        let mut t = ty.to_owned();
        for _ in 0..4 {
            let def = types.get(&t)?;
            match def["type"].as_str() {
                Some(base) if base != t => t = base.to_owned(),
                _ => return Some(t),
            }
        }
        Some(t)
    }
}

/// Deep merge of `over` into `base` (objects merged key by key).
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

// -------------------------------------------------------------------- ECS

/// ECS's flat field definitions.
struct Ecs {
    fields: Map<String, Value>,
    version: String,
}

/// The namespace of our own fields in ECS documents (no ECS field set).
const OWN: &str = "monitor";

impl Ecs {
    fn load() -> Ecs {
        let f = fixture("ecs_fields.json");
        Ecs {
            fields: f["fields"].as_object().unwrap().clone(),
            version: f["ecs_version"].as_str().unwrap().to_owned(),
        }
    }

    fn check(&self, doc: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        let mut leaves = Vec::new();
        flatten(doc, String::new(), &mut leaves, &self.fields);
        for (name, v) in &leaves {
            if name == OWN || name.starts_with(&format!("{OWN}.")) {
                continue;
            }
            let Some(def) = self.fields.get(name) else {
                errs.push(format!("{name}: not an ECS field"));
                continue;
            };
            let ty = def["type"].as_str().unwrap();
            let array = def["array"].as_bool().unwrap();
            let values: Vec<&Value> = match v {
                Value::Array(items) if array => items.iter().collect(),
                Value::Array(_) if ty != "object" && ty != "flattened" => {
                    errs.push(format!("{name}: must not be an array"));
                    continue;
                }
                _ if array => {
                    errs.push(format!("{name}: must be an array"));
                    continue;
                }
                other => vec![other],
            };
            for x in values {
                let ok = match ty {
                    "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => {
                        x.is_string()
                    }
                    "long" | "integer" | "short" | "byte" | "unsigned_long" => {
                        x.is_i64() || x.is_u64()
                    }
                    "float" | "double" | "scaled_float" | "half_float" => x.is_number(),
                    "boolean" => x.is_boolean(),
                    "date" => x
                        .as_str()
                        .is_some_and(|s| humantime::parse_rfc3339(s).is_ok()),
                    "ip" => x
                        .as_str()
                        .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
                    "object" | "flattened" | "nested" => x.is_object(),
                    other => {
                        errs.push(format!(
                            "{name}: ECS type `{other}` not handled by this test"
                        ));
                        true
                    }
                };
                if !ok {
                    errs.push(format!("{name}: {x} is not of ECS type {ty}"));
                }
                if let (Some(allowed), Some(s)) = (def["allowed"].as_array(), x.as_str())
                    && !allowed.iter().any(|a| a["name"] == s)
                {
                    errs.push(format!("{name}: `{s}` is not an allowed value"));
                }
            }
        }
        // Each event.type is expected for one of the event.category values,
        // and each category has one of its expected types.
        let categories: Vec<&str> = doc["event"]["category"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let types: Vec<&str> = doc["event"]["type"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let expected = |c: &str| -> Vec<String> {
            self.fields["event.category"]["allowed"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == c)
                .and_then(|a| a["expected_event_types"].as_array())
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        for t in &types {
            if !categories
                .iter()
                .any(|c| expected(c).iter().any(|e| e == t))
            {
                errs.push(format!(
                    "event.type `{t}` is expected for none of {categories:?}"
                ));
            }
        }
        for c in &categories {
            if !types.iter().any(|t| expected(c).iter().any(|e| e == t)) {
                errs.push(format!(
                    "event.category `{c}` has none of its expected types in {types:?}"
                ));
            }
        }
        for required in ["@timestamp", "ecs.version", "event.kind", "message"] {
            if !leaves.iter().any(|(n, _)| n == required) {
                errs.push(format!("{required}: missing"));
            }
        }
        if doc["ecs"]["version"] != self.version.as_str() {
            errs.push(format!("ecs.version: {}", doc["ecs"]["version"]));
        }
        errs
    }
}

/// Dotted leaf names: objects are walked into unless ECS defines the
/// object itself as a field (`labels`, `object` or `flattened` types).
fn flatten(v: &Value, prefix: String, out: &mut Vec<(String, Value)>, fields: &Map<String, Value>) {
    match v {
        Value::Object(m)
            if prefix.is_empty()
                || !fields.get(&prefix).is_some_and(|d| {
                    matches!(d["type"].as_str(), Some("object" | "flattened" | "nested"))
                }) =>
        {
            for (k, x) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(x, name, out, fields);
            }
        }
        other => out.push((prefix, other.clone())),
    }
}

// ------------------------------------------------------------------ tests

fn file_sink(name: &str, path: &Path, format: AlertFormat) -> SinkConfig {
    let mut s = SinkConfig::new(name, SinkKind::File(FileConfig::new(path.to_path_buf())));
    s.format = format;
    s
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_kind_validates_in_ocsf_and_ecs() {
    let emitted = common::alerts::emitted();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new(Duration::from_secs(10));
    let paths = AlertFormat::ALL.map(|f| dir.path().join(format!("{f}.jsonl")));
    let sinks = Sinks::start(
        AlertFormat::ALL
            .iter()
            .zip(&paths)
            .map(|(f, p)| file_sink(f.as_str(), p, *f))
            .collect(),
        SinksOptions {
            host: "node-1".into(),
            spool_dir: dir.path().join("spool"),
        },
        metrics,
    )
    .unwrap();
    for a in &emitted {
        sinks.dispatch(a);
    }
    sinks.shutdown(Duration::from_secs(2)).await;
    let [native, ocsf, ecs] = paths.map(|p| lines(&p));
    assert_eq!(native.len(), emitted.len());
    assert_eq!(ocsf.len(), native.len());
    assert_eq!(ecs.len(), native.len());

    let (o, e) = (Ocsf::load(), Ecs::load());
    let mut kinds = BTreeSet::new();
    for ((n, f), d) in native.iter().zip(&ocsf).zip(&ecs) {
        let errs = o.check_finding(f);
        assert!(errs.is_empty(), "OCSF {f}\n{}", errs.join("\n"));
        let errs = e.check(d);
        assert!(errs.is_empty(), "ECS {d}\n{}", errs.join("\n"));
        // The same alert, in order.
        assert_eq!(f["metadata"]["uid"], n["id"]);
        assert_eq!(d["event"]["id"], n["id"]);
        kinds.insert(n["kind"].as_str().unwrap().to_owned());
    }
    let all: BTreeSet<String> = ["process", "file", "network", "syscall", "posture", "agent"]
        .map(String::from)
        .into();
    assert_eq!(kinds, all, "every kind went through");
    assert!(
        ocsf.iter().any(|f| f["activity_id"] == 2),
        "an update went through"
    );
    assert!(
        ocsf.iter()
            .any(|f| f["unmapped"]["monitor"]["rule"] == "alerts-throttled")
    );
}

/// What each format says of one alert of each kind: the mapping, spelled out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_carries_the_facts() {
    let alerts = common::alerts::alerts();
    let (o, e) = (Ocsf::load(), Ecs::load());
    let to =
        |a: &monitor::alert::Alert, f: AlertFormat| f.render(&serde_json::to_value(a).unwrap());
    let process = &alerts[0];
    let f = to(process, AlertFormat::Ocsf);
    assert!(o.check_finding(&f).is_empty());
    let ev = &f["evidences"][0];
    assert_eq!(f["class_uid"], 2004);
    assert_eq!(f["severity_id"], 3);
    assert_eq!(f["finding_info"]["analytic"]["name"], "unexpected-process");
    assert_eq!(ev["process"]["pid"], 4242);
    assert_eq!(ev["process"]["file"]["path"], "/usr/sbin/sshd");
    assert_eq!(ev["process"]["cmd_line"], "/usr/sbin/sshd -D");
    assert_eq!(ev["process"]["parent_process"]["pid"], 4200);
    assert_eq!(ev["process"]["parent_process"]["path"], "/bin/sh");
    assert_eq!(ev["container"]["uid"], "3f9c".repeat(16));
    assert_eq!(ev["container"]["image"]["name"], "nginx");
    assert_eq!(ev["container"]["image"]["tag"], "1.27");
    assert_eq!(f["resources"][0]["name"], "web-7d9f");
    assert_eq!(f["resources"][0]["namespace"], "shop");
    assert_eq!(f["device"]["hostname"], "node-1");
    let d = to(process, AlertFormat::Ecs);
    assert!(e.check(&d).is_empty());
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(
        d["event"]["category"],
        json!(["process", "intrusion_detection"])
    );
    assert_eq!(d["event"]["type"], json!(["start", "info"]));
    assert_eq!(d["event"]["severity"], 47);
    assert_eq!(d["rule"]["name"], "unexpected-process");
    assert_eq!(d["process"]["executable"], "/usr/sbin/sshd");
    assert_eq!(d["process"]["args"], json!(["/usr/sbin/sshd", "-D"]));
    assert_eq!(d["process"]["parent"]["pid"], 4200);
    assert_eq!(d["container"]["id"], "3f9c".repeat(16));
    assert_eq!(d["container"]["name"], "web");
    assert_eq!(d["container"]["image"]["name"], "nginx");
    assert_eq!(d["orchestrator"]["namespace"], "shop");
    assert_eq!(d["orchestrator"]["resource"]["name"], "web-7d9f");
    assert_eq!(d["host"]["name"], "node-1");

    let connect = alerts
        .iter()
        .find(|a| a.network.as_ref().is_some_and(|n| n.dport == 443))
        .unwrap();
    let f = to(connect, AlertFormat::Ocsf);
    let ev = &f["evidences"][0];
    assert_eq!(ev["dst_endpoint"]["ip"], "203.0.113.7");
    assert_eq!(ev["dst_endpoint"]["port"], 443);
    assert_eq!(ev["dst_endpoint"]["hostname"], "example.com");
    assert_eq!(ev["connection_info"]["protocol_num"], 6);
    assert_eq!(ev["connection_info"]["direction_id"], 2);
    let d = to(connect, AlertFormat::Ecs);
    assert_eq!(d["destination"]["ip"], "203.0.113.7");
    assert_eq!(d["destination"]["port"], 443);
    assert_eq!(d["destination"]["domain"], "example.com");
    assert_eq!(d["network"]["transport"], "tcp");
    assert_eq!(d["network"]["direction"], "egress");

    let unlink = alerts
        .iter()
        .find(|a| a.file.as_ref().is_some_and(|f| f.path == "/etc/file-3"))
        .unwrap();
    let f = to(unlink, AlertFormat::Ocsf);
    assert_eq!(f["evidences"][0]["file"]["path"], "/etc/file-3");
    assert_eq!(f["unmapped"]["monitor"]["file"]["result"], -13);
    let d = to(unlink, AlertFormat::Ecs);
    assert_eq!(d["file"]["path"], "/etc/file-3");
    assert_eq!(d["event"]["type"], json!(["deletion", "info"]));
    assert_eq!(d["event"]["outcome"], "failure");
}

/// A change that breaks a valid document.
type Breakage = Box<dyn Fn(&mut Value)>;

/// The validators are not vacuous: each kind of break is refused.
#[test]
fn the_validators_refuse_broken_documents() {
    let alerts = common::alerts::alerts();
    let native = serde_json::to_value(&alerts[0]).unwrap();
    let (o, e) = (Ocsf::load(), Ecs::load());
    let good = AlertFormat::Ocsf.render(&native);
    assert!(
        o.check_finding(&good).is_empty(),
        "{:?}",
        o.check_finding(&good)
    );
    let broken: [(&str, Breakage); 9] = [
        (
            "no such attribute",
            Box::new(|v| v["evidences"][0]["process"]["exe"] = json!("/x")),
        ),
        (
            "is not integer_t",
            Box::new(|v| v["evidences"][0]["process"]["pid"] = json!("4242")),
        ),
        (
            "is not one of the enum's ids",
            Box::new(|v| v["severity_id"] = json!(7)),
        ),
        (
            "is not the caption",
            Box::new(|v| v["severity"] = json!("Medium-ish")),
        ),
        (
            "required, missing",
            Box::new(|v| {
                v["metadata"].as_object_mut().unwrap().remove("product");
            }),
        ),
        ("class_uid", Box::new(|v| v["class_uid"] = json!(2001))),
        (
            "must be an array",
            Box::new(|v| v["evidences"] = v["evidences"][0].clone()),
        ),
        (
            "outside port_t",
            Box::new(|v| {
                v["evidences"][0]["dst_endpoint"] = json!({"ip": "203.0.113.7", "port": 70000})
            }),
        ),
        (
            "needs one of",
            Box::new(|v| v["evidences"][0]["container"] = json!({"runtime": "docker"})),
        ),
    ];
    for (want, breakage) in broken {
        let mut v = good.clone();
        breakage(&mut v);
        let errs = o.check_finding(&v);
        assert!(
            errs.iter().any(|x| x.contains(want)),
            "want `{want}` in {errs:?}"
        );
    }

    let good = AlertFormat::Ecs.render(&native);
    assert!(e.check(&good).is_empty(), "{:?}", e.check(&good));
    let broken: [(&str, Breakage); 8] = [
        (
            "not an ECS field",
            Box::new(|v| v["process"]["exe"] = json!("/x")),
        ),
        (
            "is not of ECS type long",
            Box::new(|v| v["process"]["pid"] = json!("4242")),
        ),
        (
            "not an allowed value",
            Box::new(|v| v["event"]["kind"] = json!("finding")),
        ),
        (
            "expected for none",
            Box::new(|v| v["event"]["type"] = json!(["deletion", "info"])),
        ),
        (
            "must be an array",
            Box::new(|v| v["event"]["category"] = json!("process")),
        ),
        (
            "must not be an array",
            Box::new(|v| v["process"]["executable"] = json!(["/x"])),
        ),
        (
            "is not of ECS type ip",
            Box::new(|v| v["destination"] = json!({"ip": "example.com"})),
        ),
        (
            "@timestamp: missing",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("@timestamp");
            }),
        ),
    ];
    for (want, breakage) in broken {
        let mut v = good.clone();
        breakage(&mut v);
        let errs = e.check(&v);
        assert!(
            errs.iter().any(|x| x.contains(want)),
            "want `{want}` in {errs:?}"
        );
    }
}

/// A webhook's format is applied when it sends: its spool keeps the native
/// record, and alerts spooled while the endpoint was down go out, after a
/// restart, in the format the sink has then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_send_the_format_from_a_native_spool() {
    use common::delivery::{Hook, Receiver, RefusingPort, Seen};
    let emitted = common::alerts::emitted();
    let dir = tempfile::tempdir().unwrap();
    let options = || SinksOptions {
        host: "node-1".into(),
        spool_dir: dir.path().join("spool"),
    };
    let spool = dir.path().join("spool/hook");
    // Down: everything stays in the spool, as native records.
    let down = RefusingPort::new();
    let mut hook = Hook::new(down.url("/hook"), spool.clone());
    let mut c = hook.config("hook");
    c.format = AlertFormat::Ocsf;
    let sinks = Sinks::start(vec![c], options(), Metrics::new(Duration::from_secs(10))).unwrap();
    for a in &emitted {
        sinks.dispatch(a);
    }
    sinks.shutdown(Duration::from_millis(300)).await;
    let mut spooled = 0;
    for entry in std::fs::read_dir(&spool).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for l in text.lines().filter(|l| l.starts_with('{')) {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(
                v["schema"], "monitor.alert/v1",
                "the spool keeps native records"
            );
            spooled += 1;
        }
    }
    assert_eq!(spooled, emitted.len());
    drop(down);

    // Up, now in ECS, batched: the spooled alerts arrive as ECS documents.
    let seen = Arc::new(Seen::default());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let rx = Receiver::start(seen.clone(), any).await;
    hook.url = rx.url();
    hook.batch = 4;
    let mut c = hook.config("hook");
    c.format = AlertFormat::Ecs;
    let sinks = Sinks::start(vec![c], options(), Metrics::new(Duration::from_secs(10))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.alerts.lock().unwrap().len() < emitted.len() && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sinks.shutdown(Duration::from_secs(1)).await;
    rx.stop().await;
    let got = seen.alerts.lock().unwrap().clone();
    assert_eq!(got.len(), emitted.len());
    let ecs = Ecs::load();
    let want: Vec<&str> = emitted.iter().map(|a| a.id.as_str()).collect();
    let ids: Vec<&str> = got
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want, "every spooled alert, in order");
    for d in &got {
        let errs = ecs.check(d);
        assert!(errs.is_empty(), "{d}\n{}", errs.join("\n"));
    }
}
