//! The agent's configuration file (`monitor run --config FILE`) and its
//! checker (`monitor config check FILE`).
//!
//! Every key of the file except `sinks` is also a flag of `monitor run` and an
//! environment variable: `spool_dir:` is `--spool-dir` is `MONITOR_SPOOL_DIR`.
//! A value given on the command line wins over the environment, which wins over
//! the file, which wins over the built-in default. One table (`settings.rs`)
//! names every setting once; the flags, the file's keys, the merge and the
//! checker are made from it.
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
mod flags;
pub mod kinds;
mod raw;
mod settings;
mod sinks;
mod table;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_saphyr::{Location, Spanned};

use self::{raw::Value, settings::RawConfig};
pub use self::{
    settings::{
        CommandLine, FileSettings, Resolved, RunSettings, SETTINGS, SourceSettings, resolve,
    },
    sinks::SinkSpec,
    table::{Origin, Scope, Setting},
};
use crate::{diagnostic::Diagnostic, sink::AlertFormat};

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
    let mut settings = FileSettings::check(&mut v, &raw);
    settings::check_together(&mut v, &raw);
    settings.sinks = v.sinks(&raw);
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

/// `inner` when the parser placed it, else `outer` (a single value written
/// without a list has no position of its own).
pub(crate) fn placed(inner: Location, outer: Location) -> Location {
    if inner.line() == 0 { outer } else { inner }
}

/// A parser position as a [`SourcedText`] keeps it.
fn n(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Checks one file's values, collecting every problem in reading order.
pub(crate) struct Validator {
    file: PathBuf,
    base: PathBuf,
    diags: Vec<Diagnostic>,
}

impl Validator {
    fn err(&mut self, at: Location, message: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::at(&self.file, at, message, hint));
    }

    /// Relative paths are relative to the configuration file's directory.
    pub(super) fn path(&self, p: &Path) -> PathBuf {
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
}

impl fmt::Display for SourcedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests;
