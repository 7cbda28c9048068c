//! The configuration file's `sinks:` list: each entry checked against what
//! its type takes, its secrets kept as references until the agent starts.
use std::collections::{BTreeMap, HashSet};

use serde_saphyr::Location;

use super::{SourcedText, TextSource, Validator, raw::RawSink, settings::RawConfig};
use crate::{
    diagnostic::Diagnostic,
    sink::{AlertFormat, FileConfig, HttpConfig, HttpSinkConfig, SinkConfig, SinkKind},
};

/// A sink from the `sinks:` list, its secrets not read yet.
#[derive(Clone, Debug)]
pub struct SinkSpec {
    /// The sink's name.
    pub name: String,
    kind: SpecKind,
    queue: Option<usize>,
    format: AlertFormat,
}

#[derive(Clone, Debug)]
enum SpecKind {
    Stdout,
    File(FileConfig),
    Http {
        kind: HttpKind,
        url: SourcedText,
        headers: BTreeMap<String, SourcedText>,
        config: Box<HttpSinkConfig>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpKind {
    Webhook,
    Slack,
    Alertmanager,
    Syslog,
    Otlp,
}

impl SinkSpec {
    /// Reads the sink's secrets and makes its [`SinkConfig`].
    pub fn resolve(&self) -> Result<SinkConfig, Diagnostic> {
        let kind = match &self.kind {
            SpecKind::Stdout => SinkKind::Stdout,
            SpecKind::File(f) => SinkKind::File(f.clone()),
            SpecKind::Http {
                kind,
                url,
                headers,
                config,
            } => {
                let mut c = (**config).clone();
                c.http.url = url.read()?;
                for (k, v) in headers {
                    c.http.headers.insert(k.clone(), v.read()?);
                }
                match kind {
                    HttpKind::Webhook => SinkKind::Webhook(c),
                    HttpKind::Slack => SinkKind::Slack(c),
                    HttpKind::Alertmanager => SinkKind::Alertmanager(c),
                    HttpKind::Syslog => SinkKind::Syslog(c),
                    HttpKind::Otlp => SinkKind::Otlp(c),
                }
            }
        };
        let mut s = SinkConfig::new(self.name.clone(), kind);
        if let Some(q) = self.queue {
            s.queue = q;
        }
        s.format = self.format;
        Ok(s)
    }
}

impl Validator {
    /// Every sink of the file; names must be unique.
    pub(crate) fn sinks(&mut self, raw: &RawConfig) -> Vec<SinkSpec> {
        let mut sinks = Vec::new();
        let mut names = HashSet::new();
        for sink in &raw.sinks {
            if let Some(spec) = self.sink(&sink.value, sink.referenced) {
                if !names.insert(spec.name.clone()) {
                    self.err(
                        sink.value.name.referenced,
                        format!("sink name `{}` is used twice", spec.name),
                        "give every sink its own name: it names its metrics and its spool directory",
                    );
                }
                sinks.push(spec);
            }
        }
        sinks
    }

    fn sink(&mut self, raw: &RawSink, at: Location) -> Option<SinkSpec> {
        let name = raw.name.value.clone();
        let name_ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            self.err(
                raw.name.referenced,
                format!("sink name `{name}` is not allowed"),
                "use letters, digits, `-`, `_` and `.` (it names the spool directory)",
            );
        }
        let ty = raw.kind.value.as_str();
        let applies: &[&str] = match ty {
            "stdout" => &["format"],
            "file" => &["path", "max_bytes", "keep", "format"],
            "webhook" | "slack" | "alertmanager" => &[
                "format",
                "url",
                "headers",
                "secret",
                "tls",
                "connect_timeout",
                "request_timeout",
                "use_env_proxy",
                "batch_size",
                "spool",
                "retry",
                "generator_url",
            ],
            "otlp" => &[
                "url",
                "headers",
                "tls",
                "connect_timeout",
                "request_timeout",
                "use_env_proxy",
                "batch_size",
                "spool",
                "retry",
                "encoding",
            ],
            "syslog" => &[
                "format",
                "url",
                "tls",
                "connect_timeout",
                "request_timeout",
                "batch_size",
                "spool",
                "retry",
            ],
            other => {
                self.err(
                    raw.kind.referenced,
                    format!("unknown sink type `{other}`"),
                    "use one of stdout, file, webhook, slack, alertmanager, syslog, otlp",
                );
                return None;
            }
        };
        let mut ok = name_ok;
        for (field, loc) in raw.given() {
            if !applies.contains(&field) {
                self.err(
                    loc,
                    format!("`{field}` does not apply to a `{ty}` sink"),
                    format!(
                        "remove it; a `{ty}` sink takes {}",
                        if applies.is_empty() {
                            "only `name`, `type` and `queue`".to_owned()
                        } else {
                            format!("`name`, `type`, `queue`, `{}`", applies.join("`, `"))
                        }
                    ),
                );
                ok = false;
            }
        }
        let queue = raw.queue.as_ref().map(|q| q.value);
        let mut format = AlertFormat::Native;
        if let Some(f) = &raw.format {
            if matches!(ty, "slack" | "alertmanager") {
                self.err(
                    f.referenced,
                    format!("`format` does not apply to a `{ty}` sink: it sends its own protocol's messages"),
                    "remove it; `format` applies to stdout, file, webhook and syslog sinks",
                );
                ok = false;
            } else {
                match self.format(f, "format") {
                    Some(v) => format = v,
                    None => ok = false,
                }
            }
        }
        if queue == Some(0) {
            self.err(
                raw.queue.as_ref().map_or(at, |q| q.referenced),
                "`queue` is 0",
                "give the in-memory queue room for at least one alert (default 4096)",
            );
            ok = false;
        }
        let kind = match ty {
            "stdout" => SpecKind::Stdout,
            "file" => {
                let Some(p) = &raw.path else {
                    self.err(
                        raw.kind.referenced,
                        "a `file` sink needs `path`",
                        "add `path: /var/log/monitor/alerts.jsonl`",
                    );
                    return None;
                };
                let mut f = FileConfig::new(self.nonempty_path(p, "path")?);
                if let Some(m) = &raw.max_bytes {
                    f.max_bytes = m.value;
                }
                if let Some(k) = &raw.keep {
                    f.keep = k.value;
                }
                SpecKind::File(f)
            }
            _ => {
                let kind = match ty {
                    "webhook" => HttpKind::Webhook,
                    "slack" => HttpKind::Slack,
                    "syslog" => HttpKind::Syslog,
                    "otlp" => HttpKind::Otlp,
                    _ => HttpKind::Alertmanager,
                };
                let Some(u) = &raw.url else {
                    self.err(
                        raw.kind.referenced,
                        format!("a `{ty}` sink needs `url`"),
                        "add `url: {file: /etc/monitor/secrets/NAME}` (or an inline URL where it holds no credential)",
                    );
                    return None;
                };
                let url = self.text(u, u.referenced);
                if kind == HttpKind::Slack && matches!(url.source, TextSource::Inline(_)) {
                    self.err(
                        u.referenced,
                        "a Slack webhook URL is written inline, but it is itself the credential",
                        "write `url: {file: /etc/monitor/secrets/slack-webhook-url}` (or `{env: VARIABLE}`)",
                    );
                    ok = false;
                }
                if kind == HttpKind::Syslog {
                    self.syslog_url(&url, u.referenced, "url");
                } else {
                    self.url(&url, u.referenced, "url");
                }
                let mut headers = BTreeMap::new();
                for (k, v) in &raw.headers {
                    let t = self.text(v, v.referenced);
                    if matches!(t.source, TextSource::Inline(_)) && is_credential_header(k) {
                        self.err(
                            v.referenced,
                            format!("header `{k}` carries a credential but is written inline"),
                            format!(
                                "write `{k}: {{file: /etc/monitor/secrets/NAME}}` (or `{{env: VARIABLE}}`); the file holds the whole value, e.g. `Bearer <token>`"
                            ),
                        );
                        ok = false;
                    }
                    headers.insert(k.clone(), t);
                }
                if raw.secret.is_some() && kind != HttpKind::Webhook {
                    self.err(
                        raw.secret.as_ref().map_or(at, |s| s.referenced),
                        format!("`secret` signs generic webhooks only, not `{ty}`"),
                        "remove `secret`, or use `type: webhook`",
                    );
                    ok = false;
                }
                if raw.generator_url.is_some() && kind != HttpKind::Alertmanager {
                    self.err(
                        raw.generator_url.as_ref().map_or(at, |s| s.referenced),
                        "`generator_url` applies to `alertmanager` sinks only",
                        "remove it",
                    );
                    ok = false;
                }
                let mut http = HttpConfig::default();
                if let Some(t) = &raw.tls {
                    let mut tls = t.value.clone();
                    tls.ca_file = tls.ca_file.map(|p| self.path(&p));
                    tls.client_cert = tls.client_cert.map(|p| self.path(&p));
                    tls.client_key = tls.client_key.map(|p| self.path(&p));
                    if tls.client_cert.is_some() != tls.client_key.is_some() {
                        self.err(
                            t.referenced,
                            "`tls` gives one of `client_cert` and `client_key` without the other",
                            "mutual TLS needs both the certificate chain and its private key",
                        );
                        ok = false;
                    }
                    http.tls = tls;
                }
                if let Some(d) = &raw.connect_timeout {
                    http.connect_timeout = self.duration(d, "connect_timeout")?;
                }
                if let Some(d) = &raw.request_timeout {
                    http.request_timeout = self.duration(d, "request_timeout")?;
                }
                if let Some(b) = &raw.use_env_proxy {
                    http.use_env_proxy = b.value;
                }
                let mut spool = raw
                    .spool
                    .as_ref()
                    .map(|s| s.value.clone())
                    .unwrap_or_default();
                spool.dir = spool.dir.map(|d| self.path(&d));
                let secret = raw.secret.as_ref().map(|s| {
                    let mut src = s.value.clone();
                    src.file = src.file.map(|f| self.path(&f));
                    if src.file.is_some() == src.env.is_some() {
                        self.err(
                            s.referenced,
                            "`secret` needs exactly one of `file` and `env`",
                            "write `secret: {file: /etc/monitor/secrets/webhook-secret}`",
                        );
                    }
                    src
                });
                let encoding = match raw.encoding.as_ref() {
                    None => None,
                    Some(e) => match e.value.as_str() {
                        "protobuf" => Some(crate::sink::otlp::Encoding::Protobuf),
                        "json" => Some(crate::sink::otlp::Encoding::Json),
                        other => {
                            self.err(
                                e.referenced,
                                format!("`encoding`: `{other}` is not an OTLP encoding"),
                                "write `protobuf` (the default) or `json`",
                            );
                            ok = false;
                            None
                        }
                    },
                };
                SpecKind::Http {
                    kind,
                    url,
                    headers,
                    config: Box::new(HttpSinkConfig {
                        http,
                        secret,
                        batch_size: raw.batch_size.as_ref().map(|b| b.value),
                        spool,
                        retry: raw
                            .retry
                            .as_ref()
                            .map(|r| r.value.clone())
                            .unwrap_or_default(),
                        generator_url: raw.generator_url.as_ref().map(|g| g.value.clone()),
                        encoding,
                    }),
                }
            }
        };
        ok.then_some(SinkSpec {
            name,
            kind,
            queue,
            format,
        })
    }
}

/// Headers whose value is a credential by name: never inline.
fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "cookie"
        || ["auth", "token", "key", "secret", "password", "signature"]
            .iter()
            .any(|w| n.contains(w))
}
