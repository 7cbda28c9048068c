//! The `monitor` binary: command-line parsing and the edges (logging, exit codes).
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use monitor::{config, policy, run, trace};

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
        source: config::SourceSettings,
        /// Event kinds to print: exec, process (exec, fork, exit), file, net, cgroup, syscall, dns, all.
        #[arg(long, default_value = "all", value_name = "LIST")]
        kind: String,
    },
    /// Match events against the rules and deliver alerts (JSON lines on stdout by default).
    Run(Box<RunArgs>),
    /// Watch the workloads for a while and write what each did as rule files
    /// (one policy per workload), merged with what an earlier run wrote there.
    Learn {
        #[command(flatten)]
        source: config::SourceSettings,
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
        source: config::SourceSettings,
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
    /// Show, rule by rule, what changes from OLD to NEW (each loaded after
    /// the `--base` directories); exit 0 when nothing does, 1 when
    /// something does, 2 when a side does not load.
    Diff {
        /// The rule directory as it is (a learned policy as `learn` wrote it).
        #[arg(value_name = "OLD")]
        old: PathBuf,
        /// The rule directory as it would be (the edited policy).
        #[arg(value_name = "NEW")]
        new: PathBuf,
        /// Directories both sides are loaded after (the shipped pack, for a
        /// learned policy that extends it). Repeatable.
        #[arg(long = "base", value_name = "DIR")]
        base: Vec<PathBuf>,
    },
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
    /// Every setting of the table (`monitor::config::SETTINGS`).
    #[command(flatten)]
    settings: config::CommandLine,
}

/// `monitor run` with its configuration file applied.
struct Prepared {
    config: Option<PathBuf>,
    print_config: bool,
    resolved: config::Resolved,
}

impl RunArgs {
    /// Loads the file and merges it under the command line and environment.
    fn prepare(self) -> Result<Prepared, Vec<policy::Diagnostic>> {
        let file = match &self.config {
            Some(path) => Some(config::load(path)?),
            None => None,
        };
        Ok(Prepared {
            resolved: config::resolve(self.settings, file)?,
            config: self.config,
            print_config: self.print_config,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` takes its log filter from the flag, the environment or the file;
    // every other command from MONITOR_LOG.
    let (command, log) = match cli.command {
        Command::Run(args) => match args.prepare() {
            Ok(r) => {
                let log = r.resolved.settings.log.clone();
                (Step::Run(Box::new(r)), Some(log))
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
        },
        other => (Step::Other(other), None),
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

/// A command ready to run: `run` with its settings resolved, or another.
enum Step {
    Run(Box<Prepared>),
    Other(Command),
}

/// Joins the host's namespaces where the host root asks for it, before any
/// thread starts, and logs what it did.
fn prepare_host(host_root: &std::path::Path) -> anyhow::Result<()> {
    let report = monitor::host::prepare(host_root)?;
    for n in &report.notes {
        tracing::info!("{n}");
    }
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    Ok(())
}

fn run_command(command: Step) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")
    };
    let command = match command {
        Step::Run(r) => {
            let opts = run::RunOptions::from_settings(
                &r.resolved.settings,
                r.resolved.file_sinks.clone(),
            )?;
            if r.print_config {
                let shown = run::print_config(&r.resolved, r.config.as_deref(), &opts);
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(path) = &r.config {
                tracing::info!(config = %path.display(), "configuration loaded");
            }
            prepare_host(&opts.host_root)?;
            runtime()?.block_on(run::run(opts))?;
            return Ok(ExitCode::SUCCESS);
        }
        Step::Other(c) => c,
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
            let started = monitor::bpf::start(&opts, false)?;
            let report = monitor::bpf::load::report(&started.kernel);
            print!("{report}");
            let core_missing = started.kernel.hooks.iter().any(|h| h.core_missing());
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
        Command::Rules {
            command: RulesCommand::Diff { old, new, base },
        } => {
            let side = |dir: PathBuf| base.iter().cloned().chain([dir]).collect::<Vec<_>>();
            return Ok(match policy::diff::diff(&side(old), &side(new)) {
                Ok(changes) if changes.is_empty() => {
                    println!("no rule changes");
                    ExitCode::SUCCESS
                }
                Ok(changes) => {
                    for c in &changes {
                        println!("{c}");
                    }
                    ExitCode::from(1)
                }
                Err(diags) => {
                    for d in &diags {
                        eprintln!("{d}");
                    }
                    ExitCode::from(2)
                }
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
            let answer = rt.block_on(monitor::health::ask(&url, timeout))?;
            println!("{}", answer.line);
            return Ok(if answer.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Install(a) => {
            let binary = std::env::current_exe().context("finding the running binary")?;
            let done = monitor::install::install_systemd(&monitor::install::InstallOptions {
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
