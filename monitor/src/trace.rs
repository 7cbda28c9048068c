//! `monitor trace`: every event, one JSON object per line on stdout.
//!
//! Events carry the same `container`, `process`, `file` and `network` objects
//! as the alert record, so a trace line and an alert read the same way.
use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::bail;
use serde::Serialize;
use tracing::{info, warn};

use crate::{
    bpf::source::{EventSource, SourceOptions},
    clock::WallClock,
    context::{
        ContainerInfo, EnrichedEvent, Enricher, EnricherConfig, MetadataStatus, ProcessInfo,
    },
    event::{CgroupOp, Event, EventBody, FileInfo, NetworkInfo, SyscallInfo, dns::DnsAnswer},
};

/// Which events `--kind` lets through.
#[derive(Clone, Debug, Default)]
pub struct KindFilter {
    pub exec: bool,
    pub process: bool,
    pub file: bool,
    pub net: bool,
    pub cgroup: bool,
    pub syscall: bool,
    pub dns: bool,
}

impl KindFilter {
    /// Parses `exec,file,net` (also `process` for fork/exit, `cgroup`, `syscall`, `dns`, `all`).
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
                "syscall" => f.syscall = true,
                "dns" => f.dns = true,
                "all" => f = KindFilter::all(),
                other => bail!(
                    "unknown event kind `{other}` in --kind; use exec, process, file, net, cgroup, syscall, dns or all"
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
            syscall: true,
            dns: true,
        }
    }

    pub fn allows(&self, event: &Event) -> bool {
        match event.body {
            EventBody::Exec(_) => self.exec,
            EventBody::Fork { .. } | EventBody::Exit { .. } => self.process,
            EventBody::File(_) => self.file,
            EventBody::Network(_) => self.net,
            EventBody::Cgroup(_) => self.cgroup,
            EventBody::Syscall(_) => self.syscall,
            EventBody::Dns(_) => self.dns,
        }
    }
}

pub struct TraceOptions {
    pub source: SourceOptions,
    pub kinds: KindFilter,
    /// The host's `/` as the agent sees it (`/host` in a DaemonSet).
    pub host_root: PathBuf,
}

/// One line of `monitor trace` output.
#[derive(Serialize)]
pub struct TraceLine<'a> {
    pub time: String,
    /// `exec`, `fork`, `exit`, `file`, `network`, `cgroup`, `syscall`, `dns`.
    pub event: &'static str,
    pub cgroup_id: u64,
    pub metadata_status: MetadataStatus,
    pub container: Option<&'a ContainerInfo>,
    pub process: &'a ProcessInfo,
    pub file: Option<&'a FileInfo>,
    pub network: Option<&'a NetworkInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<&'a SyscallInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupLine<'a>>,
    /// A DNS answer's question and addresses (`event: "dns"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<&'a DnsAnswer>,
}

#[derive(Serialize)]
pub struct CgroupLine<'a> {
    pub op: CgroupOp,
    pub id: u64,
    pub path: &'a str,
}

/// Runs until interrupted (SIGINT or SIGTERM).
pub async fn run(opts: TraceOptions) -> anyhow::Result<()> {
    let mut source = EventSource::<Event>::start(&opts.source)?;
    let mut enricher = Enricher::new(EnricherConfig::for_host_root(&opts.host_root));
    // Events are already buffering, so nothing between the scan and the first event is missed.
    if let Err(e) = enricher.seed(source.cgroup2_mount()) {
        warn!("could not read the initial cgroups and processes: {e}");
    }
    info!("tracing; one JSON event per line on stdout");

    let clock = WallClock::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Lines are buffered and flushed whenever the queue is drained: one write
    // per burst instead of one per event, and no added latency when idle.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    loop {
        tokio::select! {
            event = source.next() => {
                let Some(mut event) = event else { break };
                loop {
                    // Every event updates the context, shown or not.
                    let show = opts.kinds.allows(&event);
                    let enriched = enricher.enrich(event);
                    if show {
                        serde_json::to_writer(&mut out, &line(&clock, &enriched))?;
                        out.write_all(b"\n")?;
                    }
                    match source.try_next() {
                        Some(next) => event = next,
                        None => break,
                    }
                }
                out.flush()?;
            }
            _ = tick.tick() => {
                report_lost(&mut source);
                ticks += 1;
                if ticks.is_multiple_of(5) {
                    report_cgroup_losses(&mut source, &enricher);
                }
                enricher.retry_pending(std::time::Instant::now());
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    report_lost(&mut source);
    report_cgroup_losses(&mut source, &enricher);
    info!(
        records = source.records(),
        decode_errors = source
            .stats
            .decode_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        lost_total = source.lost_total(),
        "trace stopped"
    );
    Ok(())
}

/// Logs every increase of the kernel's lost-record counters.
fn report_lost(source: &mut EventSource<Event>) {
    for lost in source.newly_lost() {
        warn!(
            kind = lost.kind,
            reason = lost.reason,
            lost = lost.count,
            total = source.lost_total(),
            "kernel dropped events: {}",
            lost.describe()
        );
    }
}

/// Logs each cgroup's new losses (every five seconds and at the end), named
/// as the registry knows it, and forgets the cgroups gone.
fn report_cgroup_losses(source: &mut EventSource<Event>, enricher: &Enricher) {
    let registry = enricher.registry();
    for loss in source.newly_lost_by_cgroup() {
        let (container, _) = registry.container_info(loss.cgroup_id);
        let path = registry.entry(loss.cgroup_id).map(|e| e.path.clone());
        let name = container
            .as_ref()
            .and_then(|c| c.name.clone().or(c.id.clone()));
        for c in &loss.counts {
            warn!(
                cgroup_id = loss.cgroup_id,
                cgroup = path.as_deref().unwrap_or("?"),
                container = name.as_deref().unwrap_or("-"),
                kind = c.kind,
                reason = c.reason,
                lost = c.count,
                total = c.total,
                "kernel dropped events of a cgroup"
            );
        }
    }
    source.forget_lost_cgroups(|id| registry.contains(id));
}

/// The trace line of an enriched event.
pub fn line<'a>(clock: &WallClock, e: &'a EnrichedEvent) -> TraceLine<'a> {
    let event = &e.event;
    TraceLine {
        time: clock.rfc3339(event.header.ktime_ns),
        event: event.name(),
        cgroup_id: event.header.cgroup_id,
        metadata_status: e.metadata_status,
        container: e.container.as_ref(),
        process: &e.process,
        file: match &event.body {
            EventBody::File(f) => Some(f),
            _ => None,
        },
        network: match &event.body {
            EventBody::Network(n) => Some(n),
            _ => None,
        },
        syscall: match &event.body {
            EventBody::Syscall(s) => Some(s),
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
        dns: match &event.body {
            EventBody::Dns(d) => Some(d),
            _ => None,
        },
    }
}
