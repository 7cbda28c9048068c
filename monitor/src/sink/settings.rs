//! What a sink is configured with, as the configuration file writes it; the
//! running sinks ([`super::Sinks`]) take these and own nothing here.
use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{AlertFormat, FileConfig, HttpConfig, RetryConfig, SinkError, otlp};

/// Where a webhook secret comes from: a file or an environment variable,
/// never the command line (visible to every user in `/proc/*/cmdline`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSource {
    /// A file holding the secret (surrounding whitespace ignored).
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub env: Option<String>,
}

impl SecretSource {
    pub fn read(&self) -> Result<String, SinkError> {
        match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| SinkError::Secret(format!("reading {}: {e}", path.display()))),
            (None, Some(var)) => std::env::var(var)
                .map(|s| s.trim().to_owned())
                .map_err(|_| SinkError::Secret(format!("environment variable {var} is not set"))),
            _ => Err(SinkError::Secret(
                "set exactly one of `secret.file` and `secret.env`".into(),
            )),
        }
    }
}

/// The spool of one HTTP sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Defaults to `<SinksOptions::spool_dir>/<sink name>`.
    pub dir: Option<PathBuf>,
    /// Unacknowledged alerts kept, in bytes; past it the oldest are dropped.
    pub max_bytes: u64,
    /// Size of one segment file.
    pub segment_bytes: u64,
    /// How often the spool is fsynced (`0s`: after every write).
    #[serde(with = "crate::alert::duration_str")]
    pub fsync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_bytes: 64 << 20,
            segment_bytes: 4 << 20,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// Settings of a webhook, Slack or Alertmanager sink.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct HttpSinkConfig {
    #[serde(flatten)]
    pub http: HttpConfig,
    /// Signs requests the Standard Webhooks way (generic webhooks only).
    pub secret: Option<SecretSource>,
    /// Alerts per request (generic: 1 sends the bare record, more a JSON
    /// array; Alertmanager: default 64; Slack: always 1).
    pub batch_size: Option<usize>,
    pub spool: SpoolConfig,
    pub retry: RetryConfig,
    /// Alertmanager only: the `generatorURL` of each alert.
    pub generator_url: Option<String>,
    /// OTLP only: `protobuf` (default) or `json`.
    pub encoding: Option<otlp::Encoding>,
}

/// What a sink is.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines on stdout (logs go to stderr).
    Stdout,
    /// JSON lines in a file with size-based rotation.
    File(FileConfig),
    /// POST of the alert record (or a batch), optionally signed.
    Webhook(HttpSinkConfig),
    /// A Slack incoming webhook.
    Slack(HttpSinkConfig),
    /// Prometheus Alertmanager (`url` = its base, e.g. `http://am:9093`).
    Alertmanager(HttpSinkConfig),
    /// Syslog, RFC 5424 (`url` = `udp://`, `tcp://` or `tls://host:port`;
    /// `tls`, timeouts, `batch_size`, `spool` and `retry` as for HTTP).
    Syslog(HttpSinkConfig),
    /// OTLP logs over HTTP (`url` = the collector's base, e.g.
    /// `http://collector:4318`; `/v1/logs` is added).
    Otlp(HttpSinkConfig),
}

/// One sink.
#[derive(Clone, Debug, Deserialize)]
pub struct SinkConfig {
    /// Unique; names the metrics label and the spool directory
    /// (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Capacity of the in-memory queue of a stdout or file sink, in alerts
    /// (a spooled sink writes ahead to its spool and has none).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// How each alert is written: stdout, file, webhook and syslog (its
    /// `MSG`) sinks; Slack, Alertmanager and OTLP keep their own shapes.
    #[serde(default)]
    pub format: AlertFormat,
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn default_queue() -> usize {
    4096
}

impl SinkConfig {
    pub fn new(name: impl Into<String>, kind: SinkKind) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            queue: default_queue(),
            format: AlertFormat::Native,
            kind,
        }
    }

    /// Whether this kind of sink can write another format than its own
    /// protocol's (Slack, Alertmanager and OTLP cannot).
    pub fn takes_format(kind: &SinkKind) -> bool {
        matches!(
            kind,
            SinkKind::Stdout | SinkKind::File(_) | SinkKind::Webhook(_) | SinkKind::Syslog(_)
        )
    }
}

/// Settings all sinks share.
#[derive(Clone, Debug)]
pub struct SinksOptions {
    /// The `host` of the agent alerts the sinks raise.
    pub host: String,
    /// The parent of each HTTP sink's spool directory.
    pub spool_dir: PathBuf,
}
