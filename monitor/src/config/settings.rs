//! The one table of settings: `monitor run`'s, and the ones `trace` and
//! `hooks` share with it. Each row gives a setting's key, type, flag,
//! environment variable, default, help and file kind, and everything else is
//! made from the rows (by `table.rs`'s `settings!`): the clap arguments, the
//! file's schema (unknown keys are errors), the precedence merge (flag, then
//! environment, then file, then default) and the keys `monitor config check`
//! reports. A new setting is one row here, plus the code that uses its value.
//!
//! | part of a row | drives | when left out |
//! | --- | --- | --- |
//! | `key: Type` | the file key, clap's id, the field of [`SourceSettings`] or [`RunSettings`] (of that type) and of [`FileSettings`] | required |
//! | doc comment | the flag's `--help` | required |
//! | `flag` | `--flag`, parsed as the type says ([`CliValue`](super::flags::CliValue)) | no flag: the environment or the file only |
//! | `env` | the variable, read by clap (without a flag, directly) | no variable |
//! | `default` | clap's default, shown in `--help` | `None`, empty, `false` |
//! | `value_name` | `--flag <NAME>` in `--help` | none (switches) |
//! | `file` | the file key, its YAML and checks ([`super::kinds`]) | not in the file |
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{ArgMatches, Args, FromArgMatches};

use super::{
    ConfigFile,
    kinds::{
        CgroupDirs, FairnessCount, FilePath, HookTier, HostRoot, HttpUrl, HttpUrls, HumanDuration,
        ListenAddr, ListenIp, LogFilter, Optional, OutputFormat, RingBufferBytes, RuleDirs,
        SlackUrl, Switch, SyscallProfile, SyslogUrl,
    },
    table::{Origin, default_text, in_file, part, row_arg, row_given, row_merge, settings},
};
use crate::{
    bpf::{Fairness, hooks::TierChoice, profile::ProfileChoice, source::SourceOptions},
    diagnostic::Diagnostic,
    sink::{AlertFormat, SinkConfig},
};

settings! {
    /// The settings of every command that loads the kernel programs
    /// (`trace`, `hooks` and `run`).
    source {
        /// The host's `/` as the agent sees it (`/host` in a DaemonSet): runtime
        /// state and `/proc` are read below it.
        host_root: PathBuf {
            flag: "host-root", env: "MONITOR_HOST_ROOT", default: "/", value_name: "DIR",
            file: HostRoot,
        }
        /// Only events from this cgroup v2 directory and its descendants
        /// (absolute, or relative to the cgroup2 mount). Repeatable.
        cgroup: Vec<PathBuf> {
            flag: "cgroup", env: "MONITOR_CGROUP", value_name: "PATH",
            file: CgroupDirs,
        }
        /// Ring buffer size in bytes (a power of two, at least one page).
        ring_buffer_bytes: u32 {
            flag: "ring-buffer-bytes", env: "MONITOR_RING_BUFFER_BYTES", default: 8 * 1024 * 1024,
            value_name: "BYTES", file: RingBufferBytes,
        }
        /// Per-cgroup fairness: the file, network and syscall records each
        /// cgroup may send a second; over it they are dropped in the kernel and
        /// counted as `rate_limited` (0: no budget). Exec, fork, exit and cgroup
        /// records are never dropped for it.
        fair_rate: u32 {
            flag: "fair-rate", env: "MONITOR_FAIR_RATE", default: Fairness::DEFAULT_RATE,
            value_name: "PER_SECOND", file: FairnessCount,
        }
        /// Per-cgroup fairness: how many such records a cgroup may send at once
        /// after a quiet spell.
        fair_burst: u32 {
            flag: "fair-burst", env: "MONITOR_FAIR_BURST", default: Fairness::DEFAULT_BURST,
            value_name: "RECORDS", file: FairnessCount,
        }
        /// The running kernel's BTF, for kernels built without
        /// `/sys/kernel/btf/vmlinux` (e.g. a file from BTFHub or `pahole`).
        btf: Option<PathBuf> {
            flag: "btf", env: "MONITOR_BTF", value_name: "FILE",
        }
        /// Which hook tier may serve each concern: `auto` takes the best the
        /// kernel lets attach (fentry on the kernel's security and syscall
        /// functions where it can, else tracepoints); `tracepoint` never tries
        /// the fentry tier.
        hook_tier: TierChoice {
            flag: "hook-tier", env: "MONITOR_HOOK_TIER", default: "auto", value_name: "TIER",
            file: HookTier,
        }
        /// Report each cgroup's first use of a system call outside this
        /// profile, once: `docker-default` (Docker's default seccomp
        /// allowlist), the path of a file of call names (one per line), or
        /// `off`. While it is on, every syscall on the host takes the tracing
        /// path (see BENCHMARKS.md).
        syscall_profile: ProfileChoice {
            flag: "syscall-profile", env: "MONITOR_SYSCALL_PROFILE", default: "off",
            value_name: "PROFILE", file: SyscallProfile,
        }
    }
    /// `monitor run`'s settings in force: the command line over the
    /// environment over the configuration file over the defaults.
    run {
        /// Rule directory; repeat to add directories that extend earlier ones.
        /// Required, here or in the configuration file.
        rules: Vec<PathBuf> {
            flag: "rules", env: "MONITOR_RULES", value_name: "DIR", file: RuleDirs,
        }
        /// A candidate rule directory (such as `monitor learn --out`'s),
        /// judged beside the active rules and loaded after them: what it
        /// would flag beyond them is reported as `info` alerts marked
        /// `shadow`; the active alerts are unchanged, nothing is enforced.
        shadow: Option<PathBuf> {
            flag: "shadow", env: "MONITOR_SHADOW", value_name: "DIR", file: Optional<FilePath>,
        }
        /// POST alerts to this URL (repeatable).
        webhook: Vec<String> {
            flag: "webhook", env: "MONITOR_WEBHOOK", value_name: "URL", file: HttpUrls,
        }
        /// Sign webhook requests (Standard Webhooks) with the secret in this file.
        webhook_secret_file: Option<PathBuf> {
            flag: "webhook-secret-file", env: "MONITOR_WEBHOOK_SECRET_FILE", value_name: "FILE",
            file: Optional<FilePath>,
        }
        /// The Slack incoming webhook's URL. The URL is itself the credential,
        /// so no flag takes it (every user can read `/proc/*/cmdline`): the
        /// agent's environment or the file (`{file: PATH}` or `{env: VAR}`).
        slack_webhook: Option<String> {
            env: "MONITOR_SLACK_WEBHOOK", file: Optional<SlackUrl>,
        }
        /// A Slack incoming webhook, its URL read from this file. The URL is
        /// itself the credential, so it is never a command-line argument (every
        /// user can read `/proc/*/cmdline`); `MONITOR_SLACK_WEBHOOK=URL` in the
        /// agent's environment is the other way to give it.
        slack_webhook_file: Option<PathBuf> {
            flag: "slack-webhook-file", env: "MONITOR_SLACK_WEBHOOK_FILE", value_name: "FILE",
            file: Optional<FilePath>,
        }
        /// Prometheus Alertmanager's base URL (alerts go to /api/v2/alerts).
        alertmanager: Option<String> {
            flag: "alertmanager", env: "MONITOR_ALERTMANAGER", value_name: "URL",
            file: Optional<HttpUrl>,
        }
        /// Send alerts as RFC 5424 syslog: `udp://`, `tcp://` or `tls://host:port`
        /// (TCP and TLS with octet-counting framing).
        syslog: Option<String> {
            flag: "syslog", env: "MONITOR_SYSLOG", value_name: "URL", file: Optional<SyslogUrl>,
        }
        /// Send alerts as OTLP logs (protobuf) to this collector's base URL
        /// (`/v1/logs` is added), e.g. `http://collector:4318`.
        otlp: Option<String> {
            flag: "otlp", env: "MONITOR_OTLP", value_name: "URL", file: Optional<HttpUrl>,
        }
        /// Also write alerts as JSON lines to this file (rotated by size).
        output_file: Option<PathBuf> {
            flag: "output-file", env: "MONITOR_OUTPUT_FILE", value_name: "PATH",
            file: Optional<FilePath>,
        }
        /// How stdout and --output-file write each alert: native
        /// (monitor.alert/v1), ocsf (OCSF 1.7.0 Detection Finding) or ecs
        /// (Elastic Common Schema 9.4.0). Other sinks take `format:` in the
        /// configuration file's `sinks:`.
        format: AlertFormat {
            flag: "format", env: "MONITOR_FORMAT", default: "native", value_name: "FORMAT",
            file: OutputFormat,
        }
        /// Do not write alerts to stdout.
        no_stdout: bool {
            flag: "no-stdout", env: "MONITOR_NO_STDOUT", file: Switch,
        }
        /// Act on rules with `action: deny` or `action: kill` (deny the
        /// connection, kill the exec) instead of only reporting them
        /// (`would_deny`). Off by default.
        enforce: bool {
            flag: "enforce", env: "MONITOR_ENFORCE", file: Switch,
        }
        /// Where undelivered alerts wait for their endpoint, across restarts.
        spool_dir: PathBuf {
            flag: "spool-dir", env: "MONITOR_SPOOL_DIR", default: "/var/lib/monitor/spool",
            value_name: "DIR", file: FilePath,
        }
        /// Serve /metrics, /healthz and /readyz here (e.g. 127.0.0.1:9464). Off by default.
        listen: Option<SocketAddr> {
            flag: "listen", env: "MONITOR_LISTEN", value_name: "ADDR", file: Optional<ListenAddr>,
        }
        /// Bind the listener to this address instead of `--listen`'s, keeping its
        /// port (the DaemonSet gives the pod's IP from the downward API).
        listen_ip: Option<IpAddr> {
            flag: "listen-ip", env: "MONITOR_LISTEN_IP", value_name: "IP", file: Optional<ListenIp>,
        }
        /// Identical alerts within this window fold into one with a count.
        dedup_window: Duration {
            flag: "dedup-window", env: "MONITOR_DEDUP_WINDOW", default: "60s",
            value_name: "DURATION", file: HumanDuration,
        }
        /// After SIGTERM, keep delivering this long, then spool the rest.
        shutdown_grace: Duration {
            flag: "shutdown-grace", env: "MONITOR_SHUTDOWN_GRACE", default: "5s",
            value_name: "DURATION", file: HumanDuration,
        }
        /// Log filter: error, warn, info, debug, trace, or `monitor=debug,info`.
        log: String {
            flag: "log", env: "MONITOR_LOG", default: "info", value_name: "FILTER", file: LogFilter,
        }
    }
}

/// The rules between keys of one file, after each key was checked alone.
pub(crate) fn check_together(v: &mut super::Validator, raw: &RawConfig) {
    if let (Some(p), Some(_)) = (&raw.slack_webhook_file, &raw.slack_webhook) {
        v.err(
            p.referenced,
            "`slack_webhook_file` and `slack_webhook` both give the Slack webhook",
            "keep one: `slack_webhook_file: PATH` or `slack_webhook: {file: PATH}` (or `{env: VARIABLE}`)",
        );
    }
    if let (Some(l), None) = (&raw.listen_ip, &raw.listen) {
        v.err(
            l.referenced,
            "`listen_ip` replaces the address of `listen`, which is not set",
            "add `listen: 0.0.0.0:9464` (its port is kept)",
        );
    }
}

impl SourceSettings {
    /// What the kernel side is told (enforcement off: `run` turns it on).
    pub fn options(&self) -> SourceOptions {
        SourceOptions {
            cgroups: self.cgroup.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            fairness: Fairness {
                rate: self.fair_rate,
                burst: self.fair_burst,
            },
            btf: self.btf.clone(),
            enforce: false,
            tier: self.hook_tier,
            syscall_profile: self.syscall_profile.clone(),
        }
    }
}

/// `trace` and `hooks` take the source settings from the command line and
/// the environment (they read no file).
impl Args for SourceSettings {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut args = Vec::new();
        SourceSettings::push_args(&mut args);
        cmd.args(args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SourceSettings {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(SourceSettings::given(m, &mut Vec::new()))
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// `monitor run`'s settings as the command line and the environment give
/// them (defaults where they say nothing), with where each came from: the
/// first layer of the merge.
#[derive(Clone, Debug)]
pub struct CommandLine {
    settings: RunSettings,
    origins: Vec<(&'static str, Origin)>,
}

impl Args for CommandLine {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut args = Vec::new();
        RunSettings::push_args(&mut args);
        cmd.args(args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for CommandLine {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut origins = Vec::new();
        let settings = RunSettings::given(m, &mut origins);
        Ok(CommandLine { settings, origins })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// `monitor run`'s settings with the configuration file applied.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The settings in force.
    pub settings: RunSettings,
    /// Sinks from the file's `sinks:` list, secrets read.
    pub file_sinks: Vec<SinkConfig>,
    /// Where each setting the file may give came from: flag, env, file or
    /// default, by key.
    pub sources: Vec<(&'static str, &'static str)>,
}

/// Applies the configuration file under the command line and the
/// environment: only where neither gave a value does the file's take the
/// default's place, and only those of its secrets are read.
pub fn resolve(cli: CommandLine, file: Option<ConfigFile>) -> Result<Resolved, Vec<Diagnostic>> {
    let CommandLine {
        mut settings,
        mut origins,
    } = cli;
    let mut file_sinks = Vec::new();
    let mut diags = Vec::new();
    if let Some(file) = file {
        let mut f = file.settings;
        settings.merge(&mut origins, &mut f, &mut diags);
        for spec in &f.sinks {
            match spec.resolve() {
                Ok(s) => file_sinks.push(s),
                Err(d) => diags.push(d),
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let in_file = |key: &str| SETTINGS.iter().any(|s| s.key == key && s.in_file);
    let sources = origins
        .into_iter()
        .filter(|(k, _)| in_file(k))
        .map(|(k, o)| (k, o.as_str()))
        .collect();
    Ok(Resolved {
        settings,
        file_sinks,
        sources,
    })
}

#[cfg(test)]
mod tests;
