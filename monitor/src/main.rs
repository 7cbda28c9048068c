//! The `monitor` binary: command-line parsing and the edges (logging, exit codes).
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{ArgMatches, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use monitor::{
    alert::PipelineConfig,
    bpf::source::SourceOptions,
    config, policy, run,
    sink::{
        AlertFormat, FileConfig, HttpConfig, HttpSinkConfig, SecretSource, SinkConfig, SinkKind,
    },
    trace,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "monitor",
    version,
    about = "eBPF runtime behaviour monitor for Linux containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every event as one JSON object per line on stdout (logs go to stderr).
    Trace {
        #[command(flatten)]
        source: SourceArgs,
        /// Event kinds to print: exec, process (exec, fork, exit), file, net, cgroup, all.
        #[arg(long, default_value = "all", value_name = "LIST")]
        kind: String,
    },
    /// Match events against the rules and deliver alerts (JSON lines on stdout by default).
    Run(Box<RunArgs>),
    /// Watch the workloads for a while and write what each did as rule files
    /// (one policy per workload), merged with what an earlier run wrote there.
    Learn {
        #[command(flatten)]
        source: SourceArgs,
        /// How long to watch (`10m`, `1h`); SIGINT or SIGTERM ends it early.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        duration: Duration,
        /// The directory the rule files go to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Load the kernel programs, print every hook as active or inactive with
    /// the reason, and exit: 0 when every core hook attached, else 1.
    Hooks {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Work with configuration files (`monitor run --config FILE`).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Ask a running agent's health endpoint; exit 0 on a 2xx answer, else 1
    /// (the container image's HEALTHCHECK: the image has no curl).
    Health {
        /// The endpoint: `/healthz` (the reader is alive) or `/readyz`.
        #[arg(
            long,
            default_value = "http://127.0.0.1:9464/healthz",
            value_name = "URL"
        )]
        url: String,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Duration,
    },
    /// Install the agent on this host: binary, unit, configuration, rules.
    Install(InstallArgs),
    /// Judge the running containers against the posture rules and print a
    /// table (or JSON); exit 1 when a finding at or above `--fail-on` is
    /// present, 2 when the rules or the containers cannot be read.
    Posture(PostureArgs),
}

#[derive(Args)]
struct PostureArgs {
    /// Rule directories, later ones extending earlier ones.
    #[arg(
        long = "rules",
        default_value = "/etc/monitor/rules",
        value_name = "DIR"
    )]
    rules: Vec<PathBuf>,
    /// The host's `/` as the agent sees it: runtime state and `/proc` are read below it.
    #[arg(
        long,
        env = "MONITOR_HOST_ROOT",
        default_value = "/",
        value_name = "DIR"
    )]
    host_root: PathBuf,
    /// One JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Exit 1 when a finding of this severity or above is present
    /// (info, low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    fail_on: Option<monitor::alert::Severity>,
}

fn parse_severity(s: &str) -> Result<monitor::alert::Severity, String> {
    use monitor::alert::Severity;
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return Err("use one of: info, low, medium, high, critical".into()),
    })
}

fn posture(a: PostureArgs) -> ExitCode {
    let result = monitor::bpf::cgroupfs::cgroup2_mount().and_then(|cgroup2_mount| {
        monitor::posture::report(&monitor::posture::PostureOptions {
            rules: a.rules.clone(),
            host_root: a.host_root.clone(),
            cgroup2_mount,
        })
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("monitor posture: {e:#}");
            return ExitCode::from(2);
        }
    };
    if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("monitor posture: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.table());
    }
    match (a.fail_on, report.highest()) {
        (Some(limit), Some(worst)) if worst >= limit => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file: every error with file:line:col and a
    /// hint; exit 1 on any. Unknown keys are errors.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Args)]
struct InstallArgs {
    /// Install as a systemd service (the only form so far).
    #[arg(long, required = true)]
    systemd: bool,
    /// Install below this directory instead of `/` (packaging, tests).
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// The binary goes to PREFIX/bin/monitor.
    #[arg(long, default_value = "/usr/local", value_name = "PREFIX")]
    prefix: PathBuf,
    /// Replace an existing /etc/monitor/monitor.yaml with the shipped example.
    #[arg(long)]
    overwrite_config: bool,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule directories: every error with file:line:col and a hint; exit 1 on any.
    Check {
        /// Rule directories, later ones extending earlier ones.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// Only events from this cgroup v2 directory and its descendants
    /// (absolute, or relative to the cgroup2 mount). Repeatable.
    #[arg(
        long = "cgroup",
        env = "MONITOR_CGROUP",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    cgroups: Vec<PathBuf>,
    /// Ring buffer size in bytes (a power of two, at least one page).
    #[arg(long, env = "MONITOR_RING_BUFFER_BYTES", default_value_t = 8 * 1024 * 1024, value_name = "BYTES")]
    ring_buffer_bytes: u32,
    /// Per-cgroup fairness: the file, network and syscall records each
    /// cgroup may send a second; over it they are dropped in the kernel and
    /// counted as `rate_limited` (0: no budget). Exec, fork, exit and cgroup
    /// records are never dropped for it.
    #[arg(long, env = "MONITOR_FAIR_RATE", default_value_t = monitor::bpf::Fairness::DEFAULT_RATE, value_name = "PER_SECOND")]
    fair_rate: u32,
    /// Per-cgroup fairness: how many such records a cgroup may send at once
    /// after a quiet spell.
    #[arg(long, env = "MONITOR_FAIR_BURST", default_value_t = monitor::bpf::Fairness::DEFAULT_BURST, value_name = "RECORDS")]
    fair_burst: u32,
    /// The host's `/` as the agent sees it (`/host` in a DaemonSet): runtime
    /// state and `/proc` are read below it.
    #[arg(
        long,
        env = "MONITOR_HOST_ROOT",
        default_value = "/",
        value_name = "DIR"
    )]
    host_root: PathBuf,
    /// The running kernel's BTF, for kernels built without
    /// `/sys/kernel/btf/vmlinux` (e.g. a file from BTFHub or `pahole`).
    #[arg(long, env = "MONITOR_BTF", value_name = "FILE")]
    btf: Option<PathBuf>,
}

impl SourceArgs {
    fn options(&self) -> SourceOptions {
        SourceOptions {
            cgroups: self.cgroups.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            fairness: monitor::bpf::Fairness {
                rate: self.fair_rate,
                burst: self.fair_burst,
            },
            btf: self.btf.clone(),
            enforce: false,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Read settings from this YAML file (deploy/monitor.yaml documents it).
    /// Flags and MONITOR_* variables override what it sets.
    #[arg(long, env = "MONITOR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the settings in force, and where each came from, as JSON, then
    /// exit without loading anything.
    #[arg(long)]
    print_config: bool,
    /// Log filter: error, warn, info, debug, trace, or `monitor=debug,info`.
    #[arg(
        long,
        env = "MONITOR_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    log: String,
    #[command(flatten)]
    source: SourceArgs,
    /// Rule directory; repeat to add directories that extend earlier ones.
    /// Required, here or in the configuration file.
    #[arg(
        long = "rules",
        env = "MONITOR_RULES",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    rules: Vec<PathBuf>,
    /// POST alerts to this URL (repeatable).
    #[arg(
        long = "webhook",
        env = "MONITOR_WEBHOOK",
        value_delimiter = ',',
        value_name = "URL"
    )]
    webhooks: Vec<String>,
    /// Sign webhook requests (Standard Webhooks) with the secret in this file.
    #[arg(long, env = "MONITOR_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// A Slack incoming webhook, its URL read from this file. The URL is
    /// itself the credential, so it is never a command-line argument (every
    /// user can read `/proc/*/cmdline`); `MONITOR_SLACK_WEBHOOK=URL` in the
    /// agent's environment is the other way to give it.
    #[arg(long, env = "MONITOR_SLACK_WEBHOOK_FILE", value_name = "FILE")]
    slack_webhook_file: Option<PathBuf>,
    /// The Slack URL from `MONITOR_SLACK_WEBHOOK` or the file's `slack_webhook:`
    /// (never a flag).
    #[arg(skip)]
    slack_webhook: Option<String>,
    /// Prometheus Alertmanager's base URL (alerts go to /api/v2/alerts).
    #[arg(long, env = "MONITOR_ALERTMANAGER", value_name = "URL")]
    alertmanager: Option<String>,
    /// Send alerts as RFC 5424 syslog: `udp://`, `tcp://` or `tls://host:port`
    /// (TCP and TLS with octet-counting framing).
    #[arg(long, env = "MONITOR_SYSLOG", value_name = "URL")]
    syslog: Option<String>,
    /// Send alerts as OTLP logs (protobuf) to this collector's base URL
    /// (`/v1/logs` is added), e.g. `http://collector:4318`.
    #[arg(long, env = "MONITOR_OTLP", value_name = "URL")]
    otlp: Option<String>,
    /// Also write alerts as JSON lines to this file (rotated by size).
    #[arg(long, env = "MONITOR_OUTPUT_FILE", value_name = "PATH")]
    output_file: Option<PathBuf>,
    /// How stdout and --output-file write each alert: native
    /// (monitor.alert/v1), ocsf (OCSF 1.7.0 Detection Finding) or ecs
    /// (Elastic Common Schema 9.4.0). Other sinks take `format:` in the
    /// configuration file's `sinks:`.
    #[arg(
        long,
        env = "MONITOR_FORMAT",
        default_value = "native",
        value_name = "FORMAT"
    )]
    format: AlertFormat,
    /// Do not write alerts to stdout.
    #[arg(long, env = "MONITOR_NO_STDOUT")]
    no_stdout: bool,
    /// Act on rules with `action: deny` or `action: kill` (deny the
    /// connection, kill the exec) instead of only reporting them
    /// (`would_deny`). Off by default.
    #[arg(long, env = "MONITOR_ENFORCE")]
    enforce: bool,
    /// Where undelivered alerts wait for their endpoint, across restarts.
    #[arg(
        long,
        env = "MONITOR_SPOOL_DIR",
        default_value = "/var/lib/monitor/spool",
        value_name = "DIR"
    )]
    spool_dir: PathBuf,
    /// Serve /metrics, /healthz and /readyz here (e.g. 127.0.0.1:9464). Off by default.
    #[arg(long, env = "MONITOR_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Bind the listener to this address instead of `--listen`'s, keeping its
    /// port (the DaemonSet gives the pod's IP from the downward API).
    #[arg(long, env = "MONITOR_LISTEN_IP", value_name = "IP")]
    listen_ip: Option<std::net::IpAddr>,
    /// Identical alerts within this window fold into one with a count.
    #[arg(long, env = "MONITOR_DEDUP_WINDOW", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    dedup_window: Duration,
    /// After SIGTERM, keep delivering this long, then spool the rest.
    #[arg(long, env = "MONITOR_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    shutdown_grace: Duration,
}

/// `monitor run`'s settings with the configuration file applied.
struct Resolved {
    args: RunArgs,
    /// Sinks from the file's `sinks:` list, secrets read.
    file_sinks: Vec<SinkConfig>,
    /// Where each setting came from: flag, env, file or default.
    sources: Vec<(&'static str, &'static str)>,
}

/// The one way besides a file to give the Slack URL: the agent's environment
/// (readable by its own user and root only, unlike its arguments).
const SLACK_WEBHOOK_ENV: &str = "MONITOR_SLACK_WEBHOOK";

/// Settings the file may give, by clap id and file key.
const SETTINGS: &[(&str, &str)] = &[
    ("host_root", "host_root"),
    ("cgroups", "cgroup"),
    ("ring_buffer_bytes", "ring_buffer_bytes"),
    ("fair_rate", "fair_rate"),
    ("fair_burst", "fair_burst"),
    ("rules", "rules"),
    ("webhooks", "webhook"),
    ("webhook_secret_file", "webhook_secret_file"),
    ("slack_webhook_file", "slack_webhook_file"),
    ("alertmanager", "alertmanager"),
    ("syslog", "syslog"),
    ("otlp", "otlp"),
    ("output_file", "output_file"),
    ("format", "format"),
    ("no_stdout", "no_stdout"),
    ("enforce", "enforce"),
    ("spool_dir", "spool_dir"),
    ("listen", "listen"),
    ("listen_ip", "listen_ip"),
    ("dedup_window", "dedup_window"),
    ("shutdown_grace", "shutdown_grace"),
    ("log", "log"),
];

/// Applies the configuration file under the flags and the environment: clap
/// says where each value came from, and only a default (or nothing) gives way
/// to the file. Precedence: flag > env > file > default.
fn resolve(mut args: RunArgs, m: &ArgMatches) -> Result<Resolved, Vec<policy::Diagnostic>> {
    use clap::parser::ValueSource;
    let from_cli = |id: &str| match m.value_source(id) {
        Some(ValueSource::CommandLine) => Some("flag"),
        Some(ValueSource::EnvVariable) => Some("env"),
        _ => None,
    };
    let file = match &args.config {
        Some(path) => Some(config::load(path)?),
        None => None,
    };
    let set = file
        .as_ref()
        .map(|f| f.settings.keys_set())
        .unwrap_or_default();
    let mut sources = Vec::new();
    let mut take = Vec::new();
    for (id, key) in SETTINGS {
        let source = match from_cli(id) {
            Some(s) => s,
            None if set.contains(key) => {
                take.push(*key);
                "file"
            }
            None => "default",
        };
        sources.push((*key, source));
    }
    // Environment or file only: no flag may carry the Slack URL.
    let slack_env = std::env::var(SLACK_WEBHOOK_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    sources.push((
        "slack_webhook",
        if slack_env.is_some() {
            "env"
        } else if set.contains(&"slack_webhook") {
            take.push("slack_webhook");
            "file"
        } else {
            "default"
        },
    ));
    args.slack_webhook = slack_env.map(|v| v.trim().to_owned());
    let mut file_sinks = Vec::new();
    if let Some(file) = file {
        let f = file.settings;
        let wants = |key: &str| take.contains(&key);
        let mut diags = Vec::new();
        let mut read =
            |t: &config::SourcedText| t.read().map_err(|d| diags.push(d)).unwrap_or_default();
        if let (true, Some(v)) = (wants("host_root"), f.host_root) {
            args.source.host_root = v;
        }
        if let (true, Some(v)) = (wants("cgroup"), f.cgroup) {
            args.source.cgroups = v;
        }
        if let (true, Some(v)) = (wants("ring_buffer_bytes"), f.ring_buffer_bytes) {
            args.source.ring_buffer_bytes = v;
        }
        if let (true, Some(v)) = (wants("fair_rate"), f.fair_rate) {
            args.source.fair_rate = v;
        }
        if let (true, Some(v)) = (wants("fair_burst"), f.fair_burst) {
            args.source.fair_burst = v;
        }
        if let (true, Some(v)) = (wants("rules"), f.rules) {
            args.rules = v;
        }
        if let (true, Some(v)) = (wants("webhook"), &f.webhook) {
            args.webhooks = v.iter().map(&mut read).collect();
        }
        if let (true, Some(v)) = (wants("webhook_secret_file"), f.webhook_secret_file) {
            args.webhook_secret_file = Some(v);
        }
        if let (true, Some(v)) = (wants("slack_webhook"), &f.slack_webhook) {
            args.slack_webhook = Some(read(v));
        }
        if let (true, Some(v)) = (wants("slack_webhook_file"), f.slack_webhook_file) {
            args.slack_webhook_file = Some(v);
        }
        if let (true, Some(v)) = (wants("alertmanager"), &f.alertmanager) {
            args.alertmanager = Some(read(v));
        }
        if let (true, Some(v)) = (wants("otlp"), &f.otlp) {
            args.otlp = Some(read(v));
        }
        if let (true, Some(v)) = (wants("syslog"), &f.syslog) {
            args.syslog = Some(read(v));
        }
        if let (true, Some(v)) = (wants("output_file"), f.output_file) {
            args.output_file = Some(v);
        }
        if let (true, Some(v)) = (wants("format"), f.format) {
            args.format = v;
        }
        if let (true, Some(v)) = (wants("no_stdout"), f.no_stdout) {
            args.no_stdout = v;
        }
        if let (true, Some(v)) = (wants("enforce"), f.enforce) {
            args.enforce = v;
        }
        if let (true, Some(v)) = (wants("spool_dir"), f.spool_dir) {
            args.spool_dir = v;
        }
        if let (true, Some(v)) = (wants("listen"), f.listen) {
            args.listen = Some(v);
        }
        if let (true, Some(v)) = (wants("listen_ip"), f.listen_ip) {
            args.listen_ip = Some(v);
        }
        if let (true, Some(v)) = (wants("dedup_window"), f.dedup_window) {
            args.dedup_window = v;
        }
        if let (true, Some(v)) = (wants("shutdown_grace"), f.shutdown_grace) {
            args.shutdown_grace = v;
        }
        if let (true, Some(v)) = (wants("log"), f.log) {
            args.log = v;
        }
        for spec in &f.sinks {
            match spec.resolve() {
                Ok(s) => file_sinks.push(s),
                Err(d) => diags.push(d),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
    }
    Ok(Resolved {
        args,
        file_sinks,
        sources,
    })
}

impl Resolved {
    /// What `--print-config` shows: the settings in force (URLs without their
    /// paths, no secrets) and where each came from.
    fn printable(&self, opts: &run::RunOptions) -> serde_json::Value {
        let sinks: Vec<serde_json::Value> = opts
            .sinks
            .iter()
            .map(|s| {
                let (ty, target) = match &s.kind {
                    SinkKind::Stdout => ("stdout", String::new()),
                    SinkKind::File(f) => ("file", f.path.display().to_string()),
                    SinkKind::Webhook(h) => ("webhook", config::redact_url(&h.http.url)),
                    SinkKind::Slack(h) => ("slack", config::redact_url(&h.http.url)),
                    SinkKind::Alertmanager(h) => ("alertmanager", config::redact_url(&h.http.url)),
                    SinkKind::Syslog(h) => ("syslog", config::redact_url(&h.http.url)),
                    SinkKind::Otlp(h) => ("otlp", config::redact_url(&h.http.url)),
                };
                let signed = matches!(&s.kind, SinkKind::Webhook(h) if h.secret.is_some());
                json!({"name": s.name, "type": ty, "target": target, "signed": signed, "format": s.format.as_str()})
            })
            .collect();
        json!({
            "config": self.args.config,
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
            "log": self.args.log,
            "sinks": sinks,
            "sources": self.sources.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

impl RunArgs {
    fn options(&self, file_sinks: Vec<SinkConfig>) -> anyhow::Result<run::RunOptions> {
        if self.rules.is_empty() {
            anyhow::bail!(
                "no rule directory: give --rules DIR, MONITOR_RULES=DIR, or `rules:` in the configuration file"
            );
        }
        let mut sinks = Vec::new();
        if !self.no_stdout {
            let mut s = SinkConfig::new("stdout", SinkKind::Stdout);
            s.format = self.format;
            sinks.push(s);
        }
        if let Some(path) = &self.output_file {
            let mut s = SinkConfig::new("file", SinkKind::File(FileConfig::new(path.clone())));
            s.format = self.format;
            sinks.push(s);
        }
        let http = |url: &str| HttpConfig {
            url: url.to_owned(),
            ..Default::default()
        };
        let secret = self.webhook_secret_file.as_ref().map(|f| SecretSource {
            file: Some(f.clone()),
            env: None,
        });
        for (i, url) in self.webhooks.iter().enumerate() {
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
        let slack = match (&self.slack_webhook, &self.slack_webhook_file) {
            (Some(_), Some(f)) => anyhow::bail!(
                "the Slack webhook is given twice: by {SLACK_WEBHOOK_ENV} or `slack_webhook:` and by --slack-webhook-file {}; keep one",
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
        if let Some(url) = &self.alertmanager {
            let cfg = HttpSinkConfig {
                http: http(url),
                ..Default::default()
            };
            sinks.push(SinkConfig::new("alertmanager", SinkKind::Alertmanager(cfg)));
        }
        if let Some(url) = &self.syslog {
            let cfg = HttpSinkConfig {
                http: http(url),
                ..Default::default()
            };
            sinks.push(SinkConfig::new("syslog", SinkKind::Syslog(cfg)));
        }
        if let Some(url) = &self.otlp {
            let cfg = HttpSinkConfig {
                http: http(url),
                ..Default::default()
            };
            sinks.push(SinkConfig::new("otlp", SinkKind::Otlp(cfg)));
        }
        let listen = match (self.listen, self.listen_ip) {
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
        Ok(run::RunOptions {
            source: SourceOptions {
                enforce: self.enforce,
                ..self.source.options()
            },
            rules: self.rules.clone(),
            host_root: self.source.host_root.clone(),
            sinks,
            spool_dir: self.spool_dir.clone(),
            listen,
            pipeline: PipelineConfig {
                dedup_window: self.dedup_window,
                ..Default::default()
            },
            shutdown_grace: self.shutdown_grace,
            reload_interval: Duration::from_secs(2),
        })
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // `run` takes its log filter from the flag, the environment or the file;
    // every other command from MONITOR_LOG.
    let (command, log) = match cli.command {
        Command::Run(args) => {
            let m = matches.subcommand_matches("run").expect("run was parsed");
            match resolve(*args, m) {
                Ok(r) => {
                    let log = r.args.log.clone();
                    (Prepared::Run(Box::new(r)), Some(log))
                }
                Err(diags) => {
                    for d in &diags {
                        eprintln!("{d}");
                    }
                    eprintln!(
                        "monitor: the configuration does not load ({} {})",
                        diags.len(),
                        if diags.len() == 1 { "error" } else { "errors" }
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        other => (Prepared::Other(other), None),
    };
    let filter = match log {
        Some(l) => match tracing_subscriber::EnvFilter::try_new(&l) {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "monitor: log filter `{l}`: {e}; write e.g. `info` or `monitor=debug,info`"
                );
                return ExitCode::FAILURE;
            }
        },
        None => tracing_subscriber::EnvFilter::try_from_env("MONITOR_LOG")
            .unwrap_or_else(|_| "info".into()),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    match run_command(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("monitor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Prepared {
    Run(Box<Resolved>),
    Other(Command),
}

/// Joins the host's namespaces where the host root asks for it, before any
/// thread starts, and logs what it did.
fn prepare_host(host_root: &std::path::Path) -> anyhow::Result<()> {
    let report = config::host::prepare(host_root)?;
    for n in &report.notes {
        tracing::info!("{n}");
    }
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

fn run_command(command: Prepared) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")
    };
    let command = match command {
        Prepared::Run(r) => {
            let opts = r.args.options(r.file_sinks.clone())?;
            if r.args.print_config {
                println!("{}", serde_json::to_string_pretty(&r.printable(&opts))?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(path) = &r.args.config {
                tracing::info!(config = %path.display(), "configuration loaded");
            }
            prepare_host(&opts.host_root)?;
            runtime()?.block_on(run::run(opts))?;
            return Ok(ExitCode::SUCCESS);
        }
        Prepared::Other(c) => c,
    };
    match command {
        Command::Learn {
            source,
            duration,
            out,
        } => {
            let opts = monitor::learn::LearnOptions {
                source: source.options(),
                host_root: source.host_root.clone(),
                duration,
                out,
            };
            prepare_host(&opts.host_root)?;
            runtime()?.block_on(monitor::learn::run(opts))?;
        }
        Command::Trace { source, kind } => {
            let kinds = trace::KindFilter::parse(&kind)?;
            let opts = trace::TraceOptions {
                source: source.options(),
                kinds,
                host_root: source.host_root.clone(),
            };
            prepare_host(&opts.host_root)?;
            runtime()?.block_on(trace::run(opts))?;
        }
        Command::Hooks { source } => {
            let opts = source.options();
            let started = monitor::bpf::start(
                opts.ring_buffer_bytes,
                opts.fairness,
                !opts.cgroups.is_empty(),
                opts.btf.as_deref(),
                false,
                false,
            )?;
            let report = monitor::bpf::load::report(&started.kernel);
            print!("{report}");
            let core_missing = started
                .kernel
                .hooks
                .iter()
                .any(|h| h.core && h.error.is_some());
            if core_missing {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Run(_) => unreachable!("prepared above"),
        Command::Rules {
            command: RulesCommand::Check { dirs },
        } => {
            let result = policy::check_dir(&dirs);
            if let Err(diags) = &result {
                for d in diags {
                    eprintln!("{d}");
                }
            }
            println!("{}", policy::check_summary(&result));
            return Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let result = config::load(&file);
            if let Err(diags) = &result {
                for d in diags {
                    eprintln!("{d}");
                }
            }
            println!("{}", config::check_summary(&file, &result));
            return Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Posture(a) => return Ok(posture(a)),
        Command::Health { url, timeout } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            return rt.block_on(health(&url, timeout));
        }
        Command::Install(a) => {
            let binary = std::env::current_exe().context("finding the running binary")?;
            let done = config::install::install_systemd(&config::install::InstallOptions {
                root: a.root.clone(),
                prefix: a.prefix,
                binary,
                overwrite_config: a.overwrite_config,
            })?;
            for line in done {
                println!("installed {line}");
            }
            if a.root == std::path::Path::new("/") {
                println!(
                    "next: put secrets in /etc/monitor/secrets, edit /etc/monitor/monitor.yaml, then\n  systemctl daemon-reload && systemctl enable --now monitor"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `monitor health`: 0 on a 2xx answer, 1 otherwise, the answer on stdout.
async fn health(url: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            println!("{} {}", status.as_u16(), body.trim());
            Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            println!("unreachable: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
