//! What `bench-results.json` holds: the machine the figures belong to and
//! every section's results, notes and errors. Apart from the run because the
//! report reads it and nothing else.
use std::fs;

use serde::Serialize;

use super::{Plan, Section, latency, memory, overhead, pipeline, process, profile, throughput, vm};

/// The machine the figures belong to.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub mem_gib: f64,
    pub loadavg_start: [f64; 3],
    pub loadavg_end: [f64; 3],
    /// Other processes kept the CPUs busy when the bench started.
    pub busy: bool,
    /// Other eBPF agents, kernel tests, bpftrace or auditd seen at the start
    /// or the end (`pid comm`).
    pub other_observers: Vec<String>,
}

pub(super) fn loadavg() -> [f64; 3] {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = text.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
    ]
}

impl Machine {
    pub(super) fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib: f64 = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let load = loadavg();
        Machine {
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            cpu_model,
            cpus,
            mem_gib: mem_kib / 1024.0 / 1024.0,
            loadavg_start: load,
            loadavg_end: load,
            busy: load[0] > 0.5,
            other_observers: process::other_observers(),
        }
    }
}

/// A measurement the issue asks for that this tree cannot make yet.
#[derive(Clone, Debug, Serialize)]
pub struct NotMeasured {
    pub what: String,
    pub why: String,
}

/// Everything the bench measured: `bench-results.json`.
#[derive(Debug, Serialize)]
pub struct Results {
    pub generated_utc: String,
    pub commit: String,
    pub command: String,
    pub machine: Machine,
    pub plan: Plan,
    pub sections_run: Vec<Section>,
    pub overhead: Option<overhead::Overhead>,
    pub throughput: Option<throughput::Throughput>,
    pub latency: Option<latency::Latency>,
    pub memory: Option<memory::Memory>,
    pub pipeline: Option<pipeline::Pipeline>,
    pub profile: Option<Vec<profile::Profile>>,
    /// The in-VM comparison of the hook tiers (emulated).
    pub vm: Option<vm::VmBench>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub not_measured: Vec<NotMeasured>,
    /// Wall-clock seconds each section took, and the whole bench (builds included).
    pub section_secs: Vec<(Section, f64)>,
    pub total_secs: f64,
}
