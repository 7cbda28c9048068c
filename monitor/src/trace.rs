//! `monitor trace`: every event, one JSON object per line on stdout.
//!
//! Events carry the same `process`, `file` and `network` objects as the alert
//! record, so a trace line and an alert read the same way.
use std::{
    collections::HashSet,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    bpf::{self, CgroupFilter, cgroupfs},
    clock::WallClock,
    context::{ContainerInfo, MetadataStatus, ProcessInfo},
    event::{CgroupOp, Event, EventBody, FileInfo, NetworkInfo},
};

/// Which events `--kind` lets through.
#[derive(Clone, Debug, Default)]
pub struct KindFilter {
    pub exec: bool,
    pub process: bool,
    pub file: bool,
    pub net: bool,
    pub cgroup: bool,
}

impl KindFilter {
    /// Parses `exec,file,net` (also `process` for fork/exit, `cgroup`, `all`).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut f = KindFilter::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "exec" => f.exec = true,
                "process" | "proc" => {
                    f.exec = true;
                    f.process = true;
                }
                "file" => f.file = true,
                "net" | "network" => f.net = true,
                "cgroup" => f.cgroup = true,
                "all" => f = KindFilter::all(),
                other => bail!(
                    "unknown event kind `{other}` in --kind; use exec, process, file, net, cgroup or all"
                ),
            }
        }
        Ok(f)
    }

    pub fn all() -> Self {
        KindFilter {
            exec: true,
            process: true,
            file: true,
            net: true,
            cgroup: true,
        }
    }

    pub fn allows(&self, event: &Event) -> bool {
        match event.body {
            EventBody::Exec(_) => self.exec,
            EventBody::Fork { .. } | EventBody::Exit { .. } => self.process,
            EventBody::File(_) => self.file,
            EventBody::Network(_) => self.net,
            EventBody::Cgroup(_) => self.cgroup,
        }
    }
}

pub struct TraceOptions {
    /// cgroup v2 directories to watch (absolute, or relative to the cgroup2 mount),
    /// each with its descendants. Empty: everything.
    pub cgroups: Vec<PathBuf>,
    pub kinds: KindFilter,
    pub ring_buffer_bytes: u32,
}

/// One line of `monitor trace` output.
#[derive(Serialize)]
pub struct TraceLine<'a> {
    pub time: String,
    /// `exec`, `fork`, `exit`, `file`, `network`, `cgroup`.
    pub event: &'static str,
    pub cgroup_id: u64,
    pub metadata_status: MetadataStatus,
    pub container: Option<&'a ContainerInfo>,
    pub process: &'a ProcessInfo,
    pub file: Option<&'a FileInfo>,
    pub network: Option<&'a NetworkInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupLine<'a>>,
}

#[derive(Serialize)]
pub struct CgroupLine<'a> {
    pub op: CgroupOp,
    pub id: u64,
    pub path: &'a str,
}

/// Watches a set of cgroup subtrees: their ids go in the kernel's filter, and
/// cgroups made below them later are added as they appear.
struct SubtreeFilter {
    /// Paths relative to the cgroup2 mount, starting with `/`.
    roots: Vec<String>,
    ids: HashSet<u64>,
    kernel: CgroupFilter,
}

impl SubtreeFilter {
    fn new(mount: &Path, dirs: &[PathBuf], kernel: CgroupFilter) -> anyhow::Result<Self> {
        let mut filter = SubtreeFilter {
            roots: Vec::new(),
            ids: HashSet::new(),
            kernel,
        };
        for dir in dirs {
            let abs = if dir.is_absolute() {
                dir.clone()
            } else {
                mount.join(dir)
            };
            let rel = abs.strip_prefix(mount).with_context(|| {
                format!(
                    "--cgroup {} is not below the cgroup v2 mount {}",
                    dir.display(),
                    mount.display()
                )
            })?;
            if !abs.is_dir() {
                bail!("--cgroup {}: no such cgroup directory", abs.display());
            }
            filter
                .roots
                .push(format!("/{}", rel.display()).replace("//", "/"));
            for entry in walk_dirs(&abs) {
                filter.add(cgroupfs::cgroup_id(&entry)?)?;
            }
        }
        Ok(filter)
    }

    fn add(&mut self, id: u64) -> anyhow::Result<()> {
        if self.ids.insert(id) {
            self.kernel.add(id)?;
        }
        Ok(())
    }

    fn covers(&self, path: &str) -> bool {
        self.roots
            .iter()
            .any(|r| r == "/" || path == r || path.starts_with(&format!("{r}/")))
    }

    /// Keeps the kernel filter in step with cgroups made and removed.
    fn on_cgroup(&mut self, op: CgroupOp, id: u64, path: &str) -> anyhow::Result<()> {
        match op {
            CgroupOp::Mkdir if self.covers(path) => self.add(id),
            CgroupOp::Rmdir if self.ids.remove(&id) => self.kernel.remove(id),
            _ => Ok(()),
        }
    }
}

/// The directory and every directory below it.
fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Runs until interrupted (SIGINT or SIGTERM).
pub async fn run(opts: TraceOptions) -> anyhow::Result<()> {
    let filtered = !opts.cgroups.is_empty();
    let mut started = bpf::start(opts.ring_buffer_bytes, filtered)?;
    let mut subtree = if filtered {
        let kernel_filter = started.kernel.take_cgroup_filter()?;
        Some(SubtreeFilter::new(
            &started.cgroup2_mount,
            &opts.cgroups,
            kernel_filter,
        )?)
    } else {
        None
    };
    let ring = started.kernel.take_events()?;
    let lost = started.kernel.take_lost_counters()?;
    let (tx, mut rx) = mpsc::channel(4096);
    let stats = Arc::new(bpf::reader::ReaderStats::default());
    let reader = tokio::spawn(bpf::reader::run(ring, tx, stats.clone()));
    info!("tracing; one JSON event per line on stdout");

    let clock = WallClock::new();
    let mut lost_seen = [0u64; monitor_common::kind::COUNT as usize];
    let mut lost_tick = tokio::time::interval(Duration::from_secs(1));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stdout = std::io::stdout();
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                if let (Some(filter), EventBody::Cgroup(c)) = (subtree.as_mut(), &event.body) {
                    filter.on_cgroup(c.op, c.id, &c.path)?;
                    // The cgroup event itself is shown only inside the watched subtrees.
                    if !filter.covers(&c.path) {
                        continue;
                    }
                }
                if !opts.kinds.allows(&event) {
                    continue;
                }
                let line = render(&clock, &event)?;
                let mut out = stdout.lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            _ = lost_tick.tick() => report_lost(&lost, &mut lost_seen),
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    report_lost(&lost, &mut lost_seen);
    reader.abort();
    info!(
        records = stats.records.load(std::sync::atomic::Ordering::Relaxed),
        decode_errors = stats
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        lost_total = lost_seen.iter().sum::<u64>(),
        "trace stopped"
    );
    Ok(())
}

/// Logs every increase of the kernel's lost-record counters.
fn report_lost(lost: &bpf::LostCounters, seen: &mut [u64; monitor_common::kind::COUNT as usize]) {
    match lost.totals() {
        Ok(totals) => {
            for (k, (&now, before)) in totals.iter().zip(seen.iter_mut()).enumerate() {
                if now > *before {
                    warn!(
                        kind = monitor_common::kind::name(k as u32),
                        lost = now - *before,
                        total = now,
                        "kernel dropped events: the ring buffer was full"
                    );
                    *before = now;
                }
            }
        }
        Err(e) => warn!("cannot read the lost-event counters: {e:#}"),
    }
}

/// The process object as far as the record itself tells it.
fn process_of(event: &Event) -> ProcessInfo {
    let h = &event.header;
    let mut p = ProcessInfo {
        pid: h.pid,
        uid: h.uid,
        comm: h.comm.clone(),
        ..Default::default()
    };
    if let EventBody::Exec(e) = &event.body {
        p.exe = Some(e.filename.clone());
        p.args = e.args.clone();
        p.ppid = (e.ppid != 0).then_some(e.ppid);
    }
    p
}

pub fn render(clock: &WallClock, event: &Event) -> anyhow::Result<String> {
    let process = process_of(event);
    let line = TraceLine {
        time: clock.rfc3339(event.header.ktime_ns),
        event: event.name(),
        cgroup_id: event.header.cgroup_id,
        metadata_status: MetadataStatus::Host,
        container: None,
        process: &process,
        file: match &event.body {
            EventBody::File(f) => Some(f),
            _ => None,
        },
        network: match &event.body {
            EventBody::Network(n) => Some(n),
            _ => None,
        },
        cgroup: match &event.body {
            EventBody::Cgroup(c) => Some(CgroupLine {
                op: c.op,
                id: c.id,
                path: &c.path,
            }),
            _ => None,
        },
    };
    Ok(serde_json::to_string(&line)?)
}
