//! `cargo xtask bench`: what the agent costs the workloads it watches, how
//! many events a second it takes without loss, how late its lines are, and
//! how much memory it holds; compared with auditd and bpftrace where that
//! makes sense. Writes `BENCHMARKS.md` and `bench-results.json` at the
//! repository root.
//!
//! Robust numbers on a noisy machine come from interleaving: every run starts
//! each configuration in turn (rotated, so none always goes first), ratios are
//! taken within a run, and the report gives the median and range over runs.
//!
//! Everything the bench makes is removed when it ends, also on error or ^C:
//! its cgroup v2 directory, its files under `/dev/shm`, its audit rules, the
//! auditd it started, and every process it started.
mod cgroup;
mod latency;
mod memory;
mod overhead;
mod peers;
mod pipeline;
mod process;
mod profile;
mod report;
mod results;
mod scratch;
mod stats;
pub mod synthetic;
mod throughput;
mod vm;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::Serialize;

use self::{
    cgroup::BenchCgroup,
    process::{Drained, LineHook, Ready, interrupted},
    results::{Machine, NotMeasured, Results, loadavg},
    scratch::{Listener, ShmDir},
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Few runs and short loops: a smoke test for CI and development.
    #[arg(long)]
    pub quick: bool,
    /// Interleaved runs of the overhead loops (default 3 with --quick, else 9).
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// Interleaved runs of the in-VM loops (default 3 with --quick, else 4).
    #[arg(long, value_name = "N")]
    pub vm_runs: Option<usize>,
    /// Only these sections (comma separated); the others are reported as not run.
    #[arg(long, value_delimiter = ',', value_name = "SECTIONS")]
    pub only: Vec<Section>,
    /// Do not `apt-get install` auditd and bpftrace when they are missing
    /// (their configurations are then skipped, with a note).
    #[arg(long)]
    pub no_install: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Overhead,
    Throughput,
    Latency,
    Memory,
    Pipeline,
    Profile,
    /// The overhead loops in a 6.12 VM (QEMU TCG), tracepoint tier against
    /// fentry tier: about 7 minutes, runnable alone with `--only vm`.
    Vm,
}

const ALL_SECTIONS: [Section; 7] = [
    Section::Overhead,
    Section::Throughput,
    Section::Latency,
    Section::Memory,
    Section::Pipeline,
    Section::Profile,
    Section::Vm,
];

/// How long and how often each part runs.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub quick: bool,
    /// Interleaved overhead runs.
    pub runs: usize,
    /// Repetitions of the throughput ladder, latency and memory passes.
    pub reps: usize,
    /// Each overhead loop is sized to about this long without a monitor.
    pub loop_secs: f64,
    /// And stops after this long whatever the monitor does to it.
    pub loop_max_secs: f64,
    /// Target event rates of the throughput ladder (events/s).
    pub rates: Vec<u64>,
    pub rate_secs: f64,
    pub latency_samples: u64,
    pub latency_rate: f64,
    /// Alert latency: `sshd` execs per pass, and their rate.
    pub alert_samples: u64,
    pub alert_rate: f64,
    /// Criterion's warm-up and measurement time per pipeline case (s).
    pub pipeline_warmup_secs: f64,
    pub pipeline_measure_secs: f64,
    /// Interleaved runs of the in-VM loops.
    pub vm_runs: usize,
    /// Each in-VM loop is sized to about this long with no monitor (in
    /// emulated time, which is wall time)...
    pub vm_loop_secs: f64,
    /// ...and stops after this long whatever the monitor does to it.
    pub vm_loop_max_secs: f64,
}

impl Plan {
    fn new(args: &BenchArgs) -> Plan {
        let runs = args.runs.unwrap_or(if args.quick { 3 } else { 9 }).max(1);
        Plan {
            quick: args.quick,
            runs,
            reps: if args.quick { 1 } else { runs.min(3) },
            loop_secs: if args.quick { 0.25 } else { 1.0 },
            loop_max_secs: if args.quick { 5.0 } else { 30.0 },
            rates: vec![25_000, 50_000, 100_000, 200_000, 400_000],
            rate_secs: if args.quick { 2.0 } else { 5.0 },
            latency_samples: if args.quick { 1000 } else { 2500 },
            latency_rate: 500.0,
            alert_samples: if args.quick { 200 } else { 500 },
            alert_rate: 100.0,
            pipeline_warmup_secs: if args.quick { 1.0 } else { 3.0 },
            pipeline_measure_secs: if args.quick { 2.0 } else { 5.0 },
            // An agent's start, wait for idle and stop take 20-30 s under
            // emulation: 4 runs of 1 s loops are about 5.5 minutes (5 took 6.8).
            vm_runs: args
                .vm_runs
                .unwrap_or(if args.quick { 3 } else { 4 })
                .max(1),
            vm_loop_secs: if args.quick { 0.5 } else { 1.0 },
            vm_loop_max_secs: if args.quick { 2.0 } else { 4.0 },
        }
    }
}

/// What every section needs.
pub struct Ctx {
    /// The repository (its `rules/` is the shipped pack).
    pub repo: PathBuf,
    pub monitor: PathBuf,
    pub workload: PathBuf,
    pub cgroup: BenchCgroup,
    /// The bench's directory on tmpfs.
    pub shm: PathBuf,
    /// The bench's own TCP listener on 127.0.0.1.
    pub port: u16,
    pub plan: Plan,
    /// Subcommands `monitor --help` lists.
    pub agent_subcommands: Vec<String>,
    /// The agent's default ring buffer size, from `monitor trace --help`.
    pub ring_buffer_bytes: Option<u64>,
    /// The agents' `--host-root`: Docker's state files for the bench's
    /// containers, and `proc` linking to `/proc`.
    pub host_root: PathBuf,
    /// Docker state files in the real format, to write for new containers.
    pub docker: synthetic::DockerState,
    /// The container id of the workload leaf.
    pub load_id: String,
}

/// The image of the container the workloads run in.
pub const LOAD_IMAGE: &str = "monitor-bench/workload:1";

impl Ctx {
    /// Arguments for the workload binary: in the bench's cgroup, files on
    /// tmpfs, connects to the bench's listener.
    pub fn workload_args(&self, kind: &str, extra: &[(&str, String)]) -> Vec<String> {
        let mut args = vec![
            kind.to_owned(),
            "--cgroup".into(),
            self.cgroup.load.display().to_string(),
            "--dir".into(),
            self.shm.display().to_string(),
            "--port".into(),
            self.port.to_string(),
        ];
        for (k, v) in extra {
            args.push((*k).to_owned());
            args.push(v.clone());
        }
        args
    }

    /// `monitor <subcommand> --cgroup <bench dir> --host-root <host root>
    /// <extra>` with stdout drained, once it has logged `ready`. In `extra`,
    /// `{rules}` stands for the shipped rule pack and `{shm}` for the
    /// bench's tmpfs directory.
    pub fn agent(
        &self,
        subcommand: &str,
        extra: &[&str],
        ready: &str,
        hook: Option<LineHook>,
    ) -> anyhow::Result<Drained> {
        let extra: Vec<String> = extra.iter().map(|a| self.expand(a)).collect();
        Drained::start(
            &format!("monitor {subcommand}"),
            Command::new(&self.monitor)
                .arg(subcommand)
                .arg("--cgroup")
                .arg(&self.cgroup.root)
                .arg("--host-root")
                .arg(&self.host_root)
                .args(&extra)
                // The bench measures what the agent can take from one
                // cgroup: the per-cgroup budget would cap it (older agents
                // ignore the variable).
                .env("MONITOR_FAIR_RATE", "0")
                .env("MONITOR_LOG", "info"),
            Ready::Stderr(ready),
            Duration::from_secs(120),
            hook,
        )
    }

    fn expand(&self, arg: &str) -> String {
        arg.replace("{rules}", &self.repo.join("rules").display().to_string())
            .replace("{shm}", &self.shm.display().to_string())
    }

    /// Makes a container the agents recognise: Docker's state files under
    /// the host root, then its cgroup (`containers/docker-<id>.scope`), in
    /// the order dockerd and runc make them. Returns the cgroup's path.
    pub fn make_container(&self, id: &str, name: &str, image: &str) -> anyhow::Result<PathBuf> {
        self.docker
            .write(&self.host_root, id, name, image)
            .with_context(|| format!("writing Docker state for {name}"))?;
        self.cgroup.make_container(&synthetic::docker_scope(id))
    }

    /// Removes every container cgroup and every Docker state file but the
    /// workload leaf's; returns how many cgroups went.
    pub fn remove_containers(&self) -> anyhow::Result<usize> {
        let n = self.cgroup.remove_containers()?;
        let dir = self.host_root.join("var/lib/docker/containers");
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy() != self.load_id {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(n)
    }
}

fn capture(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Subcommands in `monitor --help`'s "Commands:" list.
fn agent_subcommands(monitor: &Path) -> anyhow::Result<Vec<String>> {
    let help = capture(Command::new(monitor).arg("--help"));
    if help.is_empty() {
        bail!("`{} --help` printed nothing", monitor.display());
    }
    Ok(parse_subcommands(&help))
}

/// `[default: N]` of `--ring-buffer-bytes` in `monitor trace --help`.
pub fn parse_ring_default(help: &str) -> Option<u64> {
    let line = help.lines().find(|l| l.contains("--ring-buffer-bytes"))?;
    let at = line.find("[default: ")? + "[default: ".len();
    line[at..].split(']').next()?.trim().parse().ok()
}

pub fn parse_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.trim_start().starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_owned)
        .collect()
}

/// Installs the peers with apt when they are missing; a failure is a note,
/// not an error: their configurations are skipped.
fn ensure_peers(notes: &mut Vec<String>) {
    let missing: Vec<&str> = [("auditd", "auditd"), ("bpftrace", "bpftrace")]
        .into_iter()
        .filter(|(bin, _)| !overhead::which(bin))
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("bench: installing {} (apt-get)", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        if !install() {
            notes.push(format!(
                "could not install {} with apt-get: their configurations are skipped",
                missing.join(" and ")
            ));
        }
    }
}

fn not_measured(overhead: Option<&overhead::Overhead>) -> Vec<NotMeasured> {
    let mut v = Vec::new();
    if let Some(o) = overhead {
        for c in o.configs.iter().filter(|c| c.status != "measured") {
            v.push(NotMeasured {
                what: format!("overhead under `{}`", c.name),
                why: c.note.clone().unwrap_or_default(),
            });
        }
    }
    v
}

/// `started`: when `cargo xtask bench` began (before the builds).
pub fn run(
    args: BenchArgs,
    root: &Path,
    target_dir: &Path,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads eBPF programs, makes cgroups and loads audit rules: run it as root");
    }
    let plan = Plan::new(&args);
    let sections: Vec<Section> = if args.only.is_empty() {
        ALL_SECTIONS.to_vec()
    } else {
        ALL_SECTIONS
            .into_iter()
            .filter(|s| args.only.contains(s))
            .collect()
    };
    crate::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "xtask",
        "--bin",
        "workload",
    ]))?;
    let monitor = target_dir.join("release/monitor");
    let workload = target_dir.join("release/workload");
    process::install_interrupt_handler();
    let mut machine = Machine::read();
    let mut notes = Vec::new();
    if sections.contains(&Section::Overhead) && !args.no_install {
        ensure_peers(&mut notes);
    }
    if !peers::remove_audit_rules() {
        bail!(
            "stale audit rules with key {} could not be removed",
            peers::AUDIT_KEY
        );
    }
    let audit_quiet = peers::AuditQuiet::start(&mut notes);
    let agent_subcommands = agent_subcommands(&monitor)?;
    let ring_buffer_bytes =
        parse_ring_default(&capture(Command::new(&monitor).args(["trace", "--help"])));
    let shm = ShmDir::create()?;
    let listener = Listener::start()?;
    // The agents read container metadata below this root, and processes
    // through its `proc`, a link to the real one.
    let host_root = shm.0.join("host");
    fs::create_dir_all(&host_root)?;
    std::os::unix::fs::symlink("/proc", host_root.join("proc"))
        .context("linking the host root's proc to /proc")?;
    let docker = synthetic::DockerState::fixture(root)
        .context("reading the Docker state fixture under monitor/testdata")?;
    let load_id = synthetic::container_id(u64::from(std::process::id()), 0);
    docker
        .write(&host_root, &load_id, "bench-workload", LOAD_IMAGE)
        .context("writing the workload container's Docker state")?;
    let ctx = Ctx {
        repo: root.to_path_buf(),
        monitor,
        workload,
        cgroup: BenchCgroup::create(&synthetic::docker_scope(&load_id))?,
        shm: shm.0.clone(),
        port: listener.port,
        plan: plan.clone(),
        agent_subcommands,
        ring_buffer_bytes,
        host_root,
        docker,
        load_id,
    };

    let mut results = Results {
        generated_utc: capture(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        commit: capture(Command::new("git").args(["rev-parse", "--short", "HEAD"])),
        command: format!(
            "cargo xtask bench{}{}{}{}",
            if args.quick { " --quick" } else { "" },
            args.runs
                .map(|n| format!(" --runs {n}"))
                .unwrap_or_default(),
            args.vm_runs
                .map(|n| format!(" --vm-runs {n}"))
                .unwrap_or_default(),
            if args.only.is_empty() {
                String::new()
            } else {
                let only: Vec<String> = sections
                    .iter()
                    .map(|s| format!("{s:?}").to_lowercase())
                    .collect();
                format!(" --only {}", only.join(","))
            }
        ),
        machine: machine.clone(),
        plan,
        sections_run: sections.clone(),
        overhead: None,
        throughput: None,
        latency: None,
        memory: None,
        pipeline: None,
        profile: None,
        vm: None,
        notes,
        errors: Vec::new(),
        not_measured: Vec::new(),
        section_secs: Vec::new(),
        total_secs: 0.0,
    };
    for section in &sections {
        eprintln!("bench: --- {section:?} ---");
        let t0 = std::time::Instant::now();
        let outcome = match section {
            Section::Overhead => overhead::measure(&ctx).map(|o| results.overhead = Some(o)),
            Section::Throughput => throughput::measure(&ctx).map(|t| results.throughput = Some(t)),
            Section::Latency => latency::measure(&ctx).map(|l| results.latency = Some(l)),
            Section::Memory => memory::measure(&ctx).map(|m| results.memory = Some(m)),
            Section::Pipeline => pipeline::measure(&ctx).map(|p| results.pipeline = Some(p)),
            Section::Vm => vm::measure(&ctx).map(|v| results.vm = Some(v)),
            Section::Profile => {
                if profile::perf_works() {
                    profile::measure(&ctx).map(|(p, notes)| {
                        results.profile = Some(p);
                        results.notes.extend(notes);
                    })
                } else {
                    results.notes.push(
                        "no profile: `perf record` does not work here (apt-get install linux-perf)"
                            .into(),
                    );
                    Ok(())
                }
            }
        };
        results
            .section_secs
            .push((*section, t0.elapsed().as_secs_f64()));
        if let Err(e) = outcome {
            if interrupted() {
                return Err(e);
            }
            eprintln!("bench: {section:?} failed: {e:#}");
            results.errors.push(format!("{section:?}: {e:#}"));
        }
    }
    drop(ctx);
    drop(listener);
    drop(shm);
    drop(audit_quiet);
    machine.loadavg_end = loadavg();
    for o in process::other_observers() {
        if !machine.other_observers.contains(&o) {
            machine.other_observers.push(o);
        }
    }
    results.machine = machine;
    results.not_measured = not_measured(results.overhead.as_ref());
    results.total_secs = started.elapsed().as_secs_f64();

    let json = root.join("bench-results.json");
    let md = root.join("BENCHMARKS.md");
    let mut f = fs::File::create(&json).with_context(|| format!("writing {}", json.display()))?;
    serde_json::to_writer_pretty(&mut f, &results)?;
    writeln!(f)?;
    fs::write(&md, report::markdown(&results))
        .with_context(|| format!("writing {}", md.display()))?;
    eprintln!("bench: wrote {} and {}", md.display(), json.display());
    if !results.errors.is_empty() {
        bail!(
            "some sections failed (see BENCHMARKS.md):\n{}",
            results.errors.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_subcommands_from_clap_help() {
        let help = "eBPF runtime behaviour monitor\n\nUsage: monitor <COMMAND>\n\nCommands:\n  trace  Print every event\n  run    Watch and alert\n  help   Print this message\n\nOptions:\n  -h, --help  Print help\n";
        assert_eq!(parse_subcommands(help), vec!["trace", "run"]);
        assert!(parse_subcommands("Usage: monitor\n").is_empty());
        let trace = "      --ring-buffer-bytes <BYTES>  Ring buffer size in bytes (a power of two) [default: 8388608]\n";
        assert_eq!(parse_ring_default(trace), Some(8 << 20));
        assert_eq!(parse_ring_default("  -h, --help\n"), None);
    }

    #[test]
    fn quick_plan_is_short() {
        let args = BenchArgs {
            quick: true,
            runs: None,
            vm_runs: None,
            only: vec![],
            no_install: true,
        };
        let p = Plan::new(&args);
        assert_eq!((p.runs, p.reps), (3, 1));
        let full = Plan::new(&BenchArgs {
            quick: false,
            runs: Some(5),
            ..args
        });
        assert_eq!((full.runs, full.reps), (5, 3));
        assert!(full.latency_samples >= 1000);
        assert_eq!((p.vm_runs, full.vm_runs), (3, 4));
        assert!(full.vm_loop_max_secs > full.vm_loop_secs);
    }
}
