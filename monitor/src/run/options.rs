//! From `monitor run`'s settings in force to what the run loop is told: the
//! sinks the flags and variables name, ahead of the file's `sinks:`, and the
//! address to listen on; and what `--print-config` shows of it. Kept apart
//! from the loop so both read as one step each.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use serde_json::json;

use crate::{
    alert::PipelineConfig,
    bpf::source::SourceOptions,
    config::{Resolved, RunSettings, SETTINGS},
    sink::{
        FileConfig, HttpConfig, HttpSinkConfig, SecretSource, SinkConfig, SinkKind,
        http::redact_url,
    },
};

/// Everything `monitor run` is told.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub source: SourceOptions,
    /// Rule directories, later ones extending earlier ones.
    pub rules: Vec<PathBuf>,
    /// A candidate rule directory judged beside them (`--shadow`).
    pub shadow: Option<PathBuf>,
    pub host_root: PathBuf,
    pub sinks: Vec<SinkConfig>,
    pub spool_dir: PathBuf,
    /// Metrics and health endpoints; off when `None`.
    pub listen: Option<SocketAddr>,
    pub pipeline: PipelineConfig,
    /// How long to keep delivering after SIGTERM before spooling the rest.
    pub shutdown_grace: Duration,
    /// How often rule files are checked for changes (SIGHUP reloads at once).
    pub reload_interval: Duration,
}

/// The variable that gives the Slack URL (no flag may: the URL is the credential).
fn slack_env() -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.key == "slack_webhook")
        .and_then(|s| s.env)
        .expect("the table names the Slack webhook's variable")
}

impl RunOptions {
    /// The run loop's options from the settings in force; `file_sinks` (the
    /// file's `sinks:`, secrets read) come after the sinks the settings name.
    pub fn from_settings(s: &RunSettings, file_sinks: Vec<SinkConfig>) -> anyhow::Result<Self> {
        if s.rules.is_empty() {
            anyhow::bail!(
                "no rule directory: give --rules DIR, MONITOR_RULES=DIR, or `rules:` in the configuration file"
            );
        }
        let mut sinks = Vec::new();
        if !s.no_stdout {
            let mut stdout = SinkConfig::new("stdout", SinkKind::Stdout);
            stdout.format = s.format;
            sinks.push(stdout);
        }
        if let Some(path) = &s.output_file {
            let mut file = SinkConfig::new("file", SinkKind::File(FileConfig::new(path.clone())));
            file.format = s.format;
            sinks.push(file);
        }
        let http = |url: &str| HttpConfig {
            url: url.to_owned(),
            ..Default::default()
        };
        let secret = s.webhook_secret_file.as_ref().map(|f| SecretSource {
            file: Some(f.clone()),
            env: None,
        });
        for (i, url) in s.webhook.iter().enumerate() {
            let name = if i == 0 {
                "webhook".to_owned()
            } else {
                format!("webhook-{}", i + 1)
            };
            let cfg = HttpSinkConfig {
                http: http(url),
                secret: secret.clone(),
                ..Default::default()
            };
            sinks.push(SinkConfig::new(name, SinkKind::Webhook(cfg)));
        }
        let slack = match (&s.slack_webhook, &s.slack_webhook_file) {
            (Some(_), Some(f)) => anyhow::bail!(
                "the Slack webhook is given twice: by {} or `slack_webhook:` and by --slack-webhook-file {}; keep one",
                slack_env(),
                f.display()
            ),
            (Some(url), None) => Some(url.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| {
                        format!(
                            "reading the Slack webhook URL from {} (--slack-webhook-file)",
                            f.display()
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(url) = &slack {
            sinks.push(SinkConfig::new(
                "slack",
                SinkKind::Slack(HttpSinkConfig {
                    http: http(url),
                    ..Default::default()
                }),
            ));
        }
        if let Some(url) = &s.alertmanager {
            let cfg = HttpSinkConfig {
                http: http(url),
                ..Default::default()
            };
            sinks.push(SinkConfig::new("alertmanager", SinkKind::Alertmanager(cfg)));
        }
        if let Some(url) = &s.syslog {
            let cfg = HttpSinkConfig {
                http: http(url),
                ..Default::default()
            };
            sinks.push(SinkConfig::new("syslog", SinkKind::Syslog(cfg)));
        }
        if let Some(url) = &s.otlp {
            let cfg = HttpSinkConfig {
                http: http(url),
                ..Default::default()
            };
            sinks.push(SinkConfig::new("otlp", SinkKind::Otlp(cfg)));
        }
        let listen = match (s.listen, s.listen_ip) {
            (Some(a), Some(ip)) => Some(SocketAddr::new(ip, a.port())),
            (None, Some(ip)) => anyhow::bail!(
                "--listen-ip {ip} (MONITOR_LISTEN_IP, `listen_ip:`) replaces the address of `listen`, which is not set; give `listen: 0.0.0.0:9464` too"
            ),
            (a, None) => a,
        };
        sinks.extend(file_sinks);
        if sinks.is_empty() {
            anyhow::bail!(
                "--no-stdout leaves no sink: add --webhook, --output-file, --slack-webhook-file, --alertmanager, --syslog or --otlp (or `sinks:` in the configuration file)"
            );
        }
        Ok(RunOptions {
            source: SourceOptions {
                enforce: s.enforce,
                ..s.source.options()
            },
            rules: s.rules.clone(),
            shadow: s.shadow.clone(),
            host_root: s.source.host_root.clone(),
            sinks,
            spool_dir: s.spool_dir.clone(),
            listen,
            pipeline: PipelineConfig {
                dedup_window: s.dedup_window,
                ..Default::default()
            },
            shutdown_grace: s.shutdown_grace,
            reload_interval: Duration::from_secs(2),
        })
    }
}

/// What `--print-config` shows: the settings in force (URLs without their
/// paths, no secrets) and where each came from.
pub fn print_config(
    resolved: &Resolved,
    config: Option<&Path>,
    opts: &RunOptions,
) -> serde_json::Value {
    let sinks: Vec<serde_json::Value> = opts
            .sinks
            .iter()
            .map(|s| {
                let (ty, target) = match &s.kind {
                    SinkKind::Stdout => ("stdout", String::new()),
                    SinkKind::File(f) => ("file", f.path.display().to_string()),
                    SinkKind::Webhook(h) => ("webhook", redact_url(&h.http.url)),
                    SinkKind::Slack(h) => ("slack", redact_url(&h.http.url)),
                    SinkKind::Alertmanager(h) => ("alertmanager", redact_url(&h.http.url)),
                    SinkKind::Syslog(h) => ("syslog", redact_url(&h.http.url)),
                    SinkKind::Otlp(h) => ("otlp", redact_url(&h.http.url)),
                };
                let signed = matches!(&s.kind, SinkKind::Webhook(h) if h.secret.is_some());
                json!({"name": s.name, "type": ty, "target": target, "signed": signed, "format": s.format.as_str()})
            })
            .collect();
    json!({
        "config": config,
        "host_root": opts.host_root,
        "cgroup": opts.source.cgroups,
        "ring_buffer_bytes": opts.source.ring_buffer_bytes,
        "fair_rate": opts.source.fairness.rate,
        "fair_burst": opts.source.fairness.burst,
        "rules": opts.rules,
        "enforce": opts.source.enforce,
        "spool_dir": opts.spool_dir,
        "listen": opts.listen.map(|a| a.to_string()),
        "dedup_window": humantime::format_duration(opts.pipeline.dedup_window).to_string(),
        "shutdown_grace": humantime::format_duration(opts.shutdown_grace).to_string(),
        "log": resolved.settings.log,
        "sinks": sinks,
        "sources": resolved.sources.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, FromArgMatches as _};

    use super::*;
    use crate::config::{CommandLine, resolve};

    fn options(args: &[&str]) -> anyhow::Result<RunOptions> {
        let m = CommandLine::augment_args(clap::Command::new("run"))
            .try_get_matches_from(std::iter::once("run").chain(args.iter().copied()))
            .unwrap();
        let r = resolve(CommandLine::from_arg_matches(&m).unwrap(), None).unwrap();
        RunOptions::from_settings(&r.settings, r.file_sinks)
    }

    fn names(o: &RunOptions) -> Vec<&str> {
        o.sinks.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn the_flags_name_their_sinks_in_a_fixed_order() {
        let o = options(&[
            "--rules",
            "/r",
            "--otlp",
            "http://c:4318",
            "--webhook",
            "http://a/,http://b/",
            "--output-file",
            "/tmp/x",
            "--format",
            "ecs",
        ])
        .unwrap();
        assert_eq!(
            names(&o),
            ["stdout", "file", "webhook", "webhook-2", "otlp"]
        );
        assert_eq!(o.sinks[0].format, crate::sink::AlertFormat::Ecs);
        assert_eq!(o.sinks[1].format, crate::sink::AlertFormat::Ecs);
    }

    #[test]
    fn listen_ip_replaces_the_address_and_needs_listen() {
        let o = options(&[
            "--rules",
            "/r",
            "--listen",
            "0.0.0.0:9464",
            "--listen-ip",
            "10.0.0.7",
        ]);
        assert_eq!(o.unwrap().listen, Some("10.0.0.7:9464".parse().unwrap()));
        let e = options(&["--rules", "/r", "--listen-ip", "10.0.0.7"]).unwrap_err();
        assert!(e.to_string().contains("which is not set"), "{e}");
    }

    #[test]
    fn no_rules_and_no_sink_are_refused() {
        let e = options(&[]).unwrap_err();
        assert!(
            e.to_string().contains("--rules DIR, MONITOR_RULES=DIR"),
            "{e}"
        );
        let e = options(&["--rules", "/r", "--no-stdout"]).unwrap_err();
        assert!(e.to_string().contains("leaves no sink"), "{e}");
    }
}
