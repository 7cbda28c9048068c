//! The `monitor` binary: command-line parsing and the edges (logging, exit codes).
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use monitor::trace;

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
        /// Only events from this cgroup v2 directory and its descendants
        /// (absolute, or relative to the cgroup2 mount). Repeatable.
        #[arg(long = "cgroup", value_name = "PATH")]
        cgroups: Vec<PathBuf>,
        /// Event kinds to print: exec, process (exec, fork, exit), file, net, cgroup, all.
        #[arg(long, default_value = "all", value_name = "LIST")]
        kind: String,
        /// Ring buffer size in bytes (a power of two, at least one page).
        #[arg(long, default_value_t = 8 * 1024 * 1024, value_name = "BYTES")]
        ring_buffer_bytes: u32,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MONITOR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Trace {
            cgroups,
            kind,
            ring_buffer_bytes,
        } => {
            let kinds = trace::KindFilter::parse(&kind)?;
            runtime.block_on(trace::run(trace::TraceOptions {
                cgroups,
                kinds,
                ring_buffer_bytes,
            }))
        }
    }
}
