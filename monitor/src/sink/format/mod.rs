//! Output formats of the alert record: native (`monitor.alert/v1`), OCSF
//! (Detection Finding) and ECS.
//!
//! A format is applied where a record is serialised for one output, never
//! earlier: the pipeline, the dedup window and every spool keep the native
//! record, so a spooled alert is sent in the format its sink has when it is
//! sent, and the delivery guarantees (queue, spool, retries, metrics) are
//! the same in every format.
//!
//! | format | what | mapping |
//! | --- | --- | --- |
//! | `native` | the record itself (`docs/ALERTS.md`) | |
//! | `ocsf` | OCSF 1.7.0 Detection Finding (class 2004) | [`ocsf`] |
//! | `ecs` | an Elastic Common Schema 9.4.0 document | [`ecs`] |
//!
//! Both mappings read the native record as JSON, so they serve the
//! dispatcher (which has the alert) and the spooled sinks (which have the
//! spooled line) alike.
use std::{fmt, str::FromStr};

use serde::Deserialize;
use serde_json::Value;

pub mod ecs;
pub mod ocsf;

/// How a sink writes each alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// `monitor.alert/v1`, as documented in `docs/ALERTS.md`.
    #[default]
    Native,
    /// An OCSF Detection Finding.
    Ocsf,
    /// An ECS document.
    Ecs,
}

impl AlertFormat {
    /// Every format, in the order the docs list them.
    pub const ALL: [AlertFormat; 3] = [AlertFormat::Native, AlertFormat::Ocsf, AlertFormat::Ecs];

    /// The name as written in flags and the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertFormat::Native => "native",
            AlertFormat::Ocsf => "ocsf",
            AlertFormat::Ecs => "ecs",
        }
    }

    /// The native record (as JSON) in this format.
    pub fn render(self, native: &Value) -> Value {
        match self {
            AlertFormat::Native => native.clone(),
            AlertFormat::Ocsf => ocsf::finding(native),
            AlertFormat::Ecs => ecs::document(native),
        }
    }

    /// One serialised native record in this format; the record itself for
    /// `native` (and for a record that is not JSON, which no format can map).
    pub fn render_bytes(self, native: &[u8]) -> Vec<u8> {
        if self == AlertFormat::Native {
            return native.to_vec();
        }
        match serde_json::from_slice::<Value>(native) {
            Ok(v) => serde_json::to_vec(&self.render(&v)).expect("JSON values serialise"),
            Err(_) => native.to_vec(),
        }
    }
}

impl fmt::Display for AlertFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not an output format: write `native`, `ocsf` or `ecs`")
            })
    }
}

/// A string at `path` in `v`, when present and not empty.
pub(super) fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).as_str().filter(|s| !s.is_empty())
}

/// The value at `path` (`Null` when any part is missing).
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return &Value::Null,
        }
    }
    cur
}

/// RFC 3339 to milliseconds since the epoch.
fn epoch_millis(rfc3339: Option<&str>) -> Option<i64> {
    let t = humantime::parse_rfc3339(rfc3339?).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The last component of an absolute path (`/usr/bin/sh` -> `sh`).
fn base_name(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// `registry:5000/team/nginx:1.27` -> (`registry:5000/team/nginx`, `1.27`);
/// an image without a tag, or pinned by digest, is kept whole.
fn split_image(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            (name, Some(tag))
        }
        _ => (image, None),
    }
}

/// `T1059.004` -> (`T1059`, Some(`T1059.004`)); `T1609` -> (`T1609`, None).
fn technique(id: &str) -> (&str, Option<&str>) {
    match id.split_once('.') {
        Some((base, _)) => (base, Some(id)),
        None => (id, None),
    }
}

/// The agent's version, as every format's product metadata says it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The native facts a target format has no field for: `top` (top-level
/// keys, which differ per format), the file's operation details, the network
/// operation and the container's cgroup. Unknown (`null`) parts are left out.
fn native_extras(a: &Value, top: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for &k in top {
        put(&mut m, k, at(a, &[k]).clone());
    }
    if let Some(f) = a.get("file").filter(|f| f.is_object()) {
        let mut file = serde_json::Map::new();
        for k in [
            "op",
            "flags",
            "result",
            "target",
            "mode",
            "requested_path",
            "truncated",
        ] {
            put(&mut file, k, at(f, &[k]).clone());
        }
        m.insert("file".into(), file.into());
    }
    if let Some(op) = text(a, &["network", "op"]) {
        m.insert("network".into(), serde_json::json!({"op": op}));
    }
    if let Some(cg) = text(a, &["container", "cgroup"]) {
        m.insert("container".into(), serde_json::json!({"cgroup": cg}));
    }
    Value::Object(m)
}

/// Inserts `value` under `key` unless it is null (formats leave unknown
/// parts out rather than writing nulls).
fn put(map: &mut serde_json::Map<String, Value>, key: &str, value: impl Into<Value>) {
    let v = value.into();
    if !v.is_null() {
        map.insert(key.to_owned(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for f in AlertFormat::ALL {
            assert_eq!(f.as_str().parse::<AlertFormat>().unwrap(), f);
        }
        let e = "json".parse::<AlertFormat>().unwrap_err();
        assert!(e.contains("`native`, `ocsf` or `ecs`"), "{e}");
    }

    #[test]
    fn helpers() {
        assert_eq!(split_image("nginx:1.27"), ("nginx", Some("1.27")));
        assert_eq!(
            split_image("registry:5000/team/nginx"),
            ("registry:5000/team/nginx", None)
        );
        assert_eq!(
            split_image("busybox@sha256:abcd"),
            ("busybox@sha256:abcd", None)
        );
        assert_eq!(technique("T1059.004"), ("T1059", Some("T1059.004")));
        assert_eq!(base_name("/usr/sbin/sshd"), "sshd");
        assert_eq!(
            epoch_millis(Some("2026-11-29T15:50:00.123456Z")),
            Some(1_795_967_400_123)
        );
    }

    #[test]
    fn native_is_the_record_itself_and_garbage_passes_through() {
        let rec = br#"{"schema":"monitor.alert/v1","id":"x"}"#;
        assert_eq!(AlertFormat::Native.render_bytes(rec), rec.to_vec());
        assert_eq!(AlertFormat::Ocsf.render_bytes(b"not json"), b"not json");
    }
}
