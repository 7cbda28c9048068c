//! The parts of the configuration file as written (format in
//! `deploy/README.md`) that are not one row of the settings table (the
//! table makes the top level): a sink, a secret reference, a list. Values
//! that can be wrong in ways YAML cannot tell are kept as [`Spanned`] so
//! their diagnostics point at the value itself.
use std::{collections::BTreeMap, fmt, path::PathBuf};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};
use serde_saphyr::Spanned;

use crate::sink::{RetryConfig, SecretSource, SpoolConfig, TlsConfig};

/// A sink with every option (`sinks:` list). Which fields apply depends on
/// `type`; the validator says which ones do not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSink {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    #[serde(default)]
    pub queue: Option<Spanned<usize>>,
    /// stdout, file, webhook, syslog: `native`, `ocsf` or `ecs`.
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    // file
    #[serde(default)]
    pub path: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub keep: Option<Spanned<u32>>,
    // webhook, slack, alertmanager
    #[serde(default)]
    pub url: Option<Spanned<Value>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<Value>>,
    #[serde(default)]
    pub secret: Option<Spanned<SecretSource>>,
    #[serde(default)]
    pub tls: Option<Spanned<TlsConfig>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub request_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub use_env_proxy: Option<Spanned<bool>>,
    #[serde(default)]
    pub batch_size: Option<Spanned<usize>>,
    #[serde(default)]
    pub spool: Option<Spanned<SpoolConfig>>,
    #[serde(default)]
    pub retry: Option<Spanned<RetryConfig>>,
    #[serde(default)]
    pub generator_url: Option<Spanned<String>>,
    // otlp
    #[serde(default)]
    pub encoding: Option<Spanned<String>>,
}

impl RawSink {
    /// The fields given, by name, with the location of each (for "does not
    /// apply to this type" diagnostics).
    pub fn given(&self) -> Vec<(&'static str, serde_saphyr::Location)> {
        let mut v = Vec::new();
        let mut add = |name, loc: Option<serde_saphyr::Location>| {
            if let Some(l) = loc {
                v.push((name, l));
            }
        };
        add("path", self.path.as_ref().map(|s| s.referenced));
        add("max_bytes", self.max_bytes.as_ref().map(|s| s.referenced));
        add("keep", self.keep.as_ref().map(|s| s.referenced));
        add("url", self.url.as_ref().map(|s| s.referenced));
        add(
            "headers",
            self.headers.values().next().map(|s| s.referenced),
        );
        add("secret", self.secret.as_ref().map(|s| s.referenced));
        add("tls", self.tls.as_ref().map(|s| s.referenced));
        add(
            "connect_timeout",
            self.connect_timeout.as_ref().map(|s| s.referenced),
        );
        add(
            "request_timeout",
            self.request_timeout.as_ref().map(|s| s.referenced),
        );
        add(
            "use_env_proxy",
            self.use_env_proxy.as_ref().map(|s| s.referenced),
        );
        add("batch_size", self.batch_size.as_ref().map(|s| s.referenced));
        add("spool", self.spool.as_ref().map(|s| s.referenced));
        add("retry", self.retry.as_ref().map(|s| s.referenced));
        add(
            "generator_url",
            self.generator_url.as_ref().map(|s| s.referenced),
        );
        add("encoding", self.encoding.as_ref().map(|s| s.referenced));
        add("format", self.format.as_ref().map(|s| s.referenced));
        v
    }
}

/// A value written inline (`https://...`) or read from a file or an
/// environment variable (`{file: /etc/monitor/secrets/url}`, `{env: VAR}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Inline(String),
    File(PathBuf),
    Env(String),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, `{file: PATH}` or `{env: VARIABLE}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Inline(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<String>()? {
                    let v = match key.as_str() {
                        "file" => Value::File(map.next_value()?),
                        "env" => Value::Env(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, &["file", "env"])),
                    };
                    if out.is_some() {
                        return Err(de::Error::custom("give one of `file` and `env`, not both"));
                    }
                    out = Some(v);
                }
                out.ok_or_else(|| de::Error::custom("give one of `file` and `env`"))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them (`rules: /etc/monitor/rules` or `rules: [a, b]`),
/// each with its position: the rule files' list type.
pub(crate) use crate::policy::raw::List as OneOrMany;
