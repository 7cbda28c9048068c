//! The `monitor` binary: command-line parsing and the edges (logging, exit codes).
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use monitor::{
    alert::PipelineConfig,
    bpf::source::SourceOptions,
    policy, run,
    sink::{FileConfig, HttpConfig, HttpSinkConfig, SecretSource, SinkConfig, SinkKind},
    trace,
};

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
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
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
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<PathBuf>,
    /// Ring buffer size in bytes (a power of two, at least one page).
    #[arg(long, env = "MONITOR_RING_BUFFER_BYTES", default_value_t = 8 * 1024 * 1024, value_name = "BYTES")]
    ring_buffer_bytes: u32,
    /// The host's `/` as the agent sees it (`/host` in a DaemonSet): runtime
    /// state and `/proc` are read below it.
    #[arg(
        long,
        env = "MONITOR_HOST_ROOT",
        default_value = "/",
        value_name = "DIR"
    )]
    host_root: PathBuf,
}

impl SourceArgs {
    fn options(&self) -> SourceOptions {
        SourceOptions {
            cgroups: self.cgroups.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Rule directory; repeat to add directories that extend earlier ones.
    #[arg(
        long = "rules",
        env = "MONITOR_RULES",
        value_delimiter = ',',
        required = true,
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
    /// A Slack incoming-webhook URL.
    #[arg(long, env = "MONITOR_SLACK_WEBHOOK", value_name = "URL")]
    slack_webhook: Option<String>,
    /// Prometheus Alertmanager's base URL (alerts go to /api/v2/alerts).
    #[arg(long, env = "MONITOR_ALERTMANAGER", value_name = "URL")]
    alertmanager: Option<String>,
    /// Also write alerts as JSON lines to this file (rotated by size).
    #[arg(long, env = "MONITOR_OUTPUT_FILE", value_name = "PATH")]
    output_file: Option<PathBuf>,
    /// Do not write alerts to stdout.
    #[arg(long, env = "MONITOR_NO_STDOUT")]
    no_stdout: bool,
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
    /// Identical alerts within this window fold into one with a count.
    #[arg(long, env = "MONITOR_DEDUP_WINDOW", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    dedup_window: Duration,
    /// After SIGTERM, keep delivering this long, then spool the rest.
    #[arg(long, env = "MONITOR_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    shutdown_grace: Duration,
}

impl RunArgs {
    fn options(&self) -> anyhow::Result<run::RunOptions> {
        let mut sinks = Vec::new();
        if !self.no_stdout {
            sinks.push(SinkConfig::new("stdout", SinkKind::Stdout));
        }
        if let Some(path) = &self.output_file {
            sinks.push(SinkConfig::new(
                "file",
                SinkKind::File(FileConfig::new(path.clone())),
            ));
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
        if let Some(url) = &self.slack_webhook {
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
        if sinks.is_empty() {
            anyhow::bail!(
                "--no-stdout leaves no sink: add --webhook, --output-file, --slack-webhook or --alertmanager"
            );
        }
        Ok(run::RunOptions {
            source: self.source.options(),
            rules: self.rules.clone(),
            host_root: self.source.host_root.clone(),
            sinks,
            spool_dir: self.spool_dir.clone(),
            listen: self.listen,
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MONITOR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match run_command(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("monitor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")
    };
    match command {
        Command::Trace { source, kind } => {
            let kinds = trace::KindFilter::parse(&kind)?;
            let opts = trace::TraceOptions {
                source: source.options(),
                kinds,
                host_root: source.host_root.clone(),
            };
            runtime()?.block_on(trace::run(opts))?;
        }
        Command::Run(args) => {
            let opts = args.options()?;
            runtime()?.block_on(run::run(opts))?;
        }
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
    }
    Ok(ExitCode::SUCCESS)
}
