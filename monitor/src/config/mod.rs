//! The agent's configuration file (`monitor run --config FILE`), its checker
//! (`monitor config check FILE`).
//!
//! Every key of the file except `sinks` is also a flag of `monitor run` and an
//! environment variable: `spool_dir:` is `--spool-dir` is `MONITOR_SPOOL_DIR`.
//! A value given on the command line wins over the environment, which wins over
//! the file, which wins over the built-in default (the binary asks clap where
//! each value came from and takes the file's only in place of a default).
//!
//! Secrets are never written in the file: a webhook URL (which for Slack *is*
//! the credential), a header value or a signing key is given as
//! `{file: /etc/monitor/secrets/NAME}` or `{env: VARIABLE}`, and read at start.
//!
//! Problems are [`Diagnostic`]s with `file:line:col` and a hint, as for rule
//! files; unknown keys are errors. Relative paths in the file are relative to
//! the file's directory, except `cgroup` (relative to the cgroup2 mount).
// Users write this file: every public item says what it is.
#![warn(missing_docs)]
mod raw;

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_saphyr::{Location, Spanned};

use crate::{
    policy::Diagnostic,
    sink::{AlertFormat, FileConfig, HttpConfig, HttpSinkConfig, SinkConfig, SinkKind},
};
use raw::{RawConfig, RawSink, Value};

/// Where the configuration format is documented (said in every hint that needs it).
const DOC: &str = "deploy/README.md (\"Configuration\")";

/// A text value of the file: written inline, or read at start from a file or an
/// environment variable. Keeps its position for the diagnostic of a failed read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcedText {
    source: TextSource,
    file: PathBuf,
    line: u32,
    col: u32,
}

/// Where a [`SourcedText`] comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextSource {
    /// Written in the configuration file.
    Inline(String),
    /// Read from this file (surrounding whitespace ignored).
    File(PathBuf),
    /// Read from this environment variable (surrounding whitespace ignored).
    Env(String),
}

impl SourcedText {
    /// Where the value comes from.
    pub fn source(&self) -> &TextSource {
        &self.source
    }

    /// The value: the inline text, or the file's or variable's contents, trimmed.
    pub fn read(&self) -> Result<String, Diagnostic> {
        let fail = |message: String, hint: &str| {
            Diagnostic::new(&self.file, self.line, self.col, message, hint)
        };
        match &self.source {
            TextSource::Inline(s) => Ok(s.clone()),
            TextSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    fail(
                        format!("cannot read {}: {e}", path.display()),
                        "create the file (in Kubernetes: the Secret mounted there), or correct the path",
                    )
                }),
            TextSource::Env(var) => std::env::var(var)
                .map(|s| s.trim().to_owned())
                .map_err(|_| {
                    fail(
                        format!("environment variable {var} is not set"),
                        "set it in the agent's environment (systemd: EnvironmentFile=, Kubernetes: env from a Secret)",
                    )
                }),
        }
    }

    /// A description that never shows a secret: `file /x`, `env VAR`, or the
    /// inline URL's scheme and authority.
    pub fn redacted(&self) -> String {
        match &self.source {
            TextSource::Inline(s) => redact_url(s),
            TextSource::File(p) => format!("file {}", p.display()),
            TextSource::Env(v) => format!("env {v}"),
        }
    }
}

pub use crate::sink::http::redact_url;

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

    /// The sink's type as written in the file.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            SpecKind::Stdout => "stdout",
            SpecKind::File(_) => "file",
            SpecKind::Http { kind, .. } => match kind {
                HttpKind::Webhook => "webhook",
                HttpKind::Slack => "slack",
                HttpKind::Alertmanager => "alertmanager",
                HttpKind::Syslog => "syslog",
                HttpKind::Otlp => "otlp",
            },
        }
    }
}

/// The settings a configuration file gives, validated; `None` where the file
/// leaves a setting out. Field names are the file's keys.
#[derive(Clone, Debug, Default)]
pub struct FileSettings {
    /// `--host-root`.
    pub host_root: Option<PathBuf>,
    /// `--cgroup` (repeatable).
    pub cgroup: Option<Vec<PathBuf>>,
    /// `--ring-buffer-bytes`.
    pub ring_buffer_bytes: Option<u32>,
    /// `--fair-rate`.
    pub fair_rate: Option<u32>,
    /// `--fair-burst`.
    pub fair_burst: Option<u32>,
    /// `--rules`.
    pub rules: Option<Vec<PathBuf>>,
    /// `--webhook` (repeatable).
    pub webhook: Option<Vec<SourcedText>>,
    /// `--webhook-secret-file`.
    pub webhook_secret_file: Option<PathBuf>,
    /// `MONITOR_SLACK_WEBHOOK` (from a file or variable only: the URL is the
    /// credential, and no flag takes it).
    pub slack_webhook: Option<SourcedText>,
    /// `--slack-webhook-file`: the Slack URL is read from this file.
    pub slack_webhook_file: Option<PathBuf>,
    /// `--alertmanager`.
    pub alertmanager: Option<SourcedText>,
    /// `--syslog`: `udp://`, `tcp://` or `tls://host:port`.
    pub syslog: Option<SourcedText>,
    /// `--otlp`: an OTLP/HTTP collector's base URL.
    pub otlp: Option<SourcedText>,
    /// `--output-file`.
    pub output_file: Option<PathBuf>,
    /// `--format`: how stdout and `output_file` write alerts.
    pub format: Option<AlertFormat>,
    /// `--no-stdout`.
    pub no_stdout: Option<bool>,
    /// `--enforce`: act on deny and kill rules.
    pub enforce: Option<bool>,
    /// `--spool-dir`.
    pub spool_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--listen-ip`: replaces the address of `listen`, keeping its port.
    pub listen_ip: Option<std::net::IpAddr>,
    /// `--dedup-window`.
    pub dedup_window: Option<Duration>,
    /// `--shutdown-grace`.
    pub shutdown_grace: Option<Duration>,
    /// `--log` (a `tracing` filter such as `info` or `monitor=debug`).
    pub log: Option<String>,
    /// Extra sinks with every option (file only).
    pub sinks: Vec<SinkSpec>,
}

/// A loaded configuration file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it sets.
    pub settings: FileSettings,
}

/// Reads, parses and validates a configuration file, reporting every problem.
pub fn load(path: &Path) -> Result<ConfigFile, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::new(
            path,
            0,
            0,
            format!("cannot read the configuration file: {e}"),
            "check the path given to --config (or MONITOR_CONFIG) and its permissions",
        )]
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, Vec<Diagnostic>> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    // An empty file (or one with only comments) sets nothing.
    let raw = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        RawConfig::default()
    } else {
        serde_saphyr::from_str_with_options::<RawConfig>(text, options)
            .map_err(|e| vec![Diagnostic::from_yaml(path, &e, DOC)])?
    };
    let mut v = Validator {
        file: path.to_path_buf(),
        base: path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        diags: Vec::new(),
    };
    let settings = v.settings(raw);
    // In reading order, as an editor lists them.
    v.diags.sort_by_key(|d| (d.line, d.col));
    if v.diags.is_empty() {
        Ok(ConfigFile {
            path: path.to_path_buf(),
            settings,
        })
    } else {
        Err(v.diags)
    }
}

/// The closing line of `monitor config check`.
pub fn check_summary(path: &Path, result: &Result<ConfigFile, Vec<Diagnostic>>) -> String {
    match result {
        Ok(c) => {
            let mut set = c.settings.keys_set();
            set.sort_unstable();
            format!(
                "ok: {} sets {}",
                path.display(),
                if set.is_empty() {
                    "nothing".to_owned()
                } else {
                    set.join(", ")
                }
            )
        }
        Err(d) => format!(
            "{} {} in {}",
            d.len(),
            if d.len() == 1 { "error" } else { "errors" },
            path.display()
        ),
    }
}

impl FileSettings {
    /// The keys the file sets.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! key {
            ($($f:ident),*) => { $( if self.$f.is_some() { v.push(stringify!($f)); } )* };
        }
        key!(
            host_root,
            cgroup,
            ring_buffer_bytes,
            fair_rate,
            fair_burst,
            rules,
            webhook,
            webhook_secret_file,
            slack_webhook,
            slack_webhook_file,
            alertmanager,
            syslog,
            otlp,
            output_file,
            format,
            no_stdout,
            enforce,
            spool_dir,
            listen,
            listen_ip,
            dedup_window,
            shutdown_grace,
            log
        );
        if !self.sinks.is_empty() {
            v.push("sinks");
        }
        v
    }
}

/// `inner` when the parser placed it, else `outer` (a single value written
/// without a list has no position of its own).
fn placed(inner: Location, outer: Location) -> Location {
    if inner.line() == 0 { outer } else { inner }
}

fn n(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

struct Validator {
    file: PathBuf,
    base: PathBuf,
    diags: Vec<Diagnostic>,
}

impl Validator {
    fn err(&mut self, at: Location, message: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::new(
            &self.file,
            n(at.line()),
            n(at.column()),
            message,
            hint,
        ));
    }

    /// Relative paths are relative to the configuration file's directory.
    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn nonempty_path(&mut self, s: &Spanned<PathBuf>, key: &str) -> Option<PathBuf> {
        self.nonempty_path_at(s, key, s.referenced)
    }

    fn nonempty_path_at(
        &mut self,
        s: &Spanned<PathBuf>,
        key: &str,
        fallback: Location,
    ) -> Option<PathBuf> {
        if s.value.as_os_str().is_empty() {
            self.err(
                placed(s.referenced, fallback),
                format!("`{key}` is empty"),
                "give a path, or remove the key to keep the default",
            );
            return None;
        }
        Some(self.path(&s.value))
    }

    fn text(&mut self, s: &Spanned<Value>, at: Location) -> SourcedText {
        let loc = placed(s.referenced, at);
        let source = match &s.value {
            Value::Inline(t) => TextSource::Inline(t.clone()),
            Value::File(p) => TextSource::File(self.path(p)),
            Value::Env(v) => TextSource::Env(v.clone()),
        };
        SourcedText {
            source,
            file: self.file.clone(),
            line: n(loc.line()),
            col: n(loc.column()),
        }
    }

    /// An inline URL must parse as http(s); one from a file or variable is
    /// checked when it is read.
    fn url(&mut self, t: &SourcedText, at: Location, key: &str) {
        if let TextSource::Inline(u) = &t.source {
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(_) => self.err(
                    at,
                    format!("`{key}`: `{}` is not an http(s) URL", redact_url(u)),
                    "use http:// or https://",
                ),
                Err(e) => self.err(
                    at,
                    format!("`{key}` is not a URL: {e}"),
                    "write a full URL such as `https://alerts.example.com/hook`, or `{file: PATH}` to read it from a file",
                ),
            }
        }
    }

    /// An inline syslog URL must be `udp://`, `tcp://` or `tls://host:port`.
    fn syslog_url(&mut self, t: &SourcedText, at: Location, key: &str) {
        if let TextSource::Inline(u) = &t.source
            && let Err(e) = crate::sink::syslog::parse_url(u)
        {
            self.err(
                at,
                format!("`{key}`: `{}` is not a syslog URL: {e}", redact_url(u)),
                "write `tls://siem.example.com:6514` (or `tcp://host:514`, `udp://host:514`)",
            );
        }
    }

    fn format(&mut self, s: &Spanned<String>, key: &str) -> Option<AlertFormat> {
        match s.value.trim().parse::<AlertFormat>() {
            Ok(f) => Some(f),
            Err(_) => {
                self.err(
                    s.referenced,
                    format!("`{key}`: `{}` is not an output format", s.value),
                    "write `native` (monitor.alert/v1, the default), `ocsf` (OCSF Detection Finding) or `ecs` (Elastic Common Schema)",
                );
                None
            }
        }
    }

    fn duration(&mut self, s: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(s.value.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    s.referenced,
                    format!("`{key}`: `{}` is not a duration ({e})", s.value),
                    "write a number with a unit: `500ms`, `5s`, `2m`, `1h`",
                );
                None
            }
        }
    }

    fn settings(&mut self, raw: RawConfig) -> FileSettings {
        let mut s = FileSettings::default();
        if let Some(h) = &raw.host_root {
            if h.value.is_absolute() {
                s.host_root = Some(h.value.clone());
            } else {
                self.err(
                    h.referenced,
                    format!("`host_root` must be absolute, not `{}`", h.value.display()),
                    "write `/` on a host, or the directory the host's `/` is mounted at in a container (`/host`)",
                );
            }
        }
        if let Some(list) = &raw.cgroup {
            s.cgroup = Some(list.value.0.iter().map(|p| p.value.clone()).collect());
        }
        if let Some(r) = &raw.ring_buffer_bytes {
            let v = r.value;
            if v < 4096 || !v.is_power_of_two() || v > u64::from(u32::MAX) {
                self.err(
                    r.referenced,
                    format!(
                        "`ring_buffer_bytes` is {v}: it must be a power of two from 4096 to 2^31"
                    ),
                    "use e.g. 8388608 (8 MiB, the default) or 33554432 (32 MiB) on busy nodes",
                );
            } else {
                s.ring_buffer_bytes = Some(v as u32);
            }
        }
        for (raw_value, slot, key) in [
            (&raw.fair_rate, &mut s.fair_rate, "fair_rate"),
            (&raw.fair_burst, &mut s.fair_burst, "fair_burst"),
        ] {
            if let Some(r) = raw_value {
                match u32::try_from(r.value) {
                    Ok(v) => *slot = Some(v),
                    Err(_) => self.err(
                        r.referenced,
                        format!("`{key}` is {}: it must be at most {}", r.value, u32::MAX),
                        "use e.g. 20000 (the default); `fair_rate: 0` turns the budget off",
                    ),
                }
            }
        }
        if let Some(list) = &raw.rules {
            if list.value.0.is_empty() {
                self.err(
                    list.referenced,
                    "`rules` is an empty list",
                    "name at least one rule directory, e.g. `rules: [/etc/monitor/rules]`",
                );
            }
            let paths: Vec<PathBuf> = list
                .value
                .0
                .iter()
                .filter_map(|p| self.nonempty_path_at(p, "rules", list.referenced))
                .collect();
            s.rules = Some(paths);
        }
        if let Some(list) = &raw.webhook {
            let mut urls = Vec::new();
            for u in &list.value.0 {
                let t = self.text(u, list.referenced);
                self.url(&t, placed(u.referenced, list.referenced), "webhook");
                urls.push(t);
            }
            s.webhook = Some(urls);
        }
        if let Some(p) = &raw.webhook_secret_file {
            s.webhook_secret_file = self.nonempty_path(p, "webhook_secret_file");
        }
        if let Some(u) = &raw.slack_webhook {
            let t = self.text(u, u.referenced);
            if matches!(t.source, TextSource::Inline(_)) {
                self.err(
                    u.referenced,
                    "`slack_webhook` is written inline, but a Slack webhook URL is itself the credential",
                    "put the URL in a file readable only by the agent and write `slack_webhook: {file: /etc/monitor/secrets/slack-webhook-url}` (or `{env: VARIABLE}`)",
                );
            }
            s.slack_webhook = Some(t);
        }
        if let Some(p) = &raw.slack_webhook_file {
            s.slack_webhook_file = self.nonempty_path(p, "slack_webhook_file");
            if raw.slack_webhook.is_some() {
                self.err(
                    p.referenced,
                    "`slack_webhook_file` and `slack_webhook` both give the Slack webhook",
                    "keep one: `slack_webhook_file: PATH` or `slack_webhook: {file: PATH}` (or `{env: VARIABLE}`)",
                );
            }
        }
        if let Some(u) = &raw.alertmanager {
            let t = self.text(u, u.referenced);
            self.url(&t, u.referenced, "alertmanager");
            s.alertmanager = Some(t);
        }
        if let Some(u) = &raw.otlp {
            let t = self.text(u, u.referenced);
            self.url(&t, u.referenced, "otlp");
            s.otlp = Some(t);
        }
        if let Some(u) = &raw.syslog {
            let t = self.text(u, u.referenced);
            self.syslog_url(&t, u.referenced, "syslog");
            s.syslog = Some(t);
        }
        if let Some(p) = &raw.output_file {
            s.output_file = self.nonempty_path(p, "output_file");
        }
        if let Some(f) = &raw.format {
            s.format = self.format(f, "format");
        }
        s.no_stdout = raw.no_stdout;
        s.enforce = raw.enforce;
        if let Some(p) = &raw.spool_dir {
            s.spool_dir = self.nonempty_path(p, "spool_dir");
        }
        if let Some(l) = &raw.listen {
            match l.value.trim().parse::<SocketAddr>() {
                Ok(a) => s.listen = Some(a),
                Err(e) => self.err(
                    l.referenced,
                    format!("`listen`: `{}` is not an address and port ({e})", l.value),
                    "write `127.0.0.1:9464` (this host only), `0.0.0.0:9464` (a pod's probes and scrapes) or `[::]:9464`",
                ),
            }
        }
        if let Some(l) = &raw.listen_ip {
            match l.value.trim().parse::<std::net::IpAddr>() {
                Ok(a) => s.listen_ip = Some(a),
                Err(e) => self.err(
                    l.referenced,
                    format!("`listen_ip`: `{}` is not an IP address ({e})", l.value),
                    "write an address without a port, e.g. `10.0.0.7` or `fd00::7`; in Kubernetes set MONITOR_LISTEN_IP from `status.podIP` instead",
                ),
            }
            if raw.listen.is_none() {
                self.err(
                    l.referenced,
                    "`listen_ip` replaces the address of `listen`, which is not set",
                    "add `listen: 0.0.0.0:9464` (its port is kept)",
                );
            }
        }
        if let Some(d) = &raw.dedup_window {
            s.dedup_window = self.duration(d, "dedup_window");
        }
        if let Some(d) = &raw.shutdown_grace {
            s.shutdown_grace = self.duration(d, "shutdown_grace");
        }
        if let Some(l) = &raw.log {
            match tracing_subscriber::EnvFilter::try_new(l.value.trim()) {
                Ok(_) => s.log = Some(l.value.trim().to_owned()),
                Err(e) => self.err(
                    l.referenced,
                    format!("`log`: `{}` is not a log filter ({e})", l.value),
                    "write a level (`error`, `warn`, `info`, `debug`, `trace`) or `monitor=debug,info`",
                ),
            }
        }
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
                s.sinks.push(spec);
            }
        }
        s
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

impl fmt::Display for SourcedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests;
