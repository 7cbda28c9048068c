//! `monitor run`: the whole data path. Events from the kernel are enriched,
//! matched against the rules, folded and rate-limited, and delivered to every
//! sink. One loop owns every stage's state; each stage hands the next a value.
//! What the loop is told comes from the settings through `options`; the one
//! stage that writes to the kernel, enforcement, is `enforce`.
mod enforce;
mod options;
mod shadow;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use tracing::{error, info, warn};

pub use self::options::{RunOptions, print_config};
use self::{
    enforce::{Enforcer, unmatched_action},
    shadow::Shadow,
};
use crate::{
    alert::{Alert, AlertPipeline, LostCount, LostSummary, Severity, host_name},
    bpf::{CgroupLoss, Fairness, source::EventSource},
    clock::WallClock,
    context::{ContainerInfo, EnrichedEvent, Enricher, EnricherConfig, MetadataStatus},
    event::Event,
    metrics::{self, Metrics},
    policy::{self, Evaluator, Finding, PostureAlert, PostureWatch},
    sink::{Sinks, SinksOptions},
};

/// How often the kernel's per-cgroup loss counters are read, and each
/// cgroup with new losses alerted on (one alert per cgroup per read).
const CGROUP_LOSS_INTERVAL: Duration = Duration::from_secs(5);

/// Runs until SIGINT or SIGTERM.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let host = host_name();
    // Rules first: a bad rule set should stop the agent before it loads anything.
    let rules = load_rules(&opts.rules).context("the rules do not load")?;
    info!("{}", rules.summary());
    // /healthz fails when the ring buffer reader has not woken for this long.
    let metrics = Metrics::new(Duration::from_secs(10));
    metrics.set_rules_loaded(rules.rule_count() as u64);
    let listener = match opts.listen {
        Some(addr) => {
            let l = metrics::serve(addr, metrics.clone())
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?;
            info!(addr = %l.local_addr, "metrics and health endpoints up");
            Some(l)
        }
        None => None,
    };
    let sinks = Sinks::start(
        opts.sinks.clone(),
        SinksOptions {
            host: host.clone(),
            spool_dir: opts.spool_dir.clone(),
        },
        metrics.clone(),
    )
    .context("starting the sinks")?;

    let mut source = EventSource::<Event>::start(&opts.source)?;
    for h in &source.started.kernel.hooks {
        metrics.set_hook(h.hook(), h.required(), h.status());
    }
    for (concern, tier) in crate::bpf::hooks::concern_tiers(&source.started.kernel.hooks) {
        let tier = tier.map_or("none".to_owned(), |t| t.to_string());
        metrics.set_concern_tier(concern, &tier);
    }
    metrics.set_programs_attached(true);
    let mut enricher = Enricher::new(EnricherConfig::for_host_root(&opts.host_root));
    if let Err(e) = enricher.seed(source.cgroup2_mount()) {
        warn!("could not read the initial cgroups and processes: {e}");
    }
    let mut enforcer = Enforcer::default();
    enforcer.reconcile(&mut source, &enricher, &rules, &sinks, &host);
    let mut evaluator = Evaluator::new(rules);
    let mut shadow = match &opts.shadow {
        Some(dir) => Some(
            Shadow::load(&opts.rules, dir)
                .with_context(|| format!("the shadow rules ({}) do not load", dir.display()))?,
        ),
        None => None,
    };
    let mut posture = PostureWatch::new();
    let mut posture_out: Vec<PostureAlert> = Vec::new();
    let mut pipeline = AlertPipeline::new(opts.pipeline.clone(), &host, Some(metrics.clone()));
    let mut watcher = RuleWatcher::new(&opts.rules);
    let clock = WallClock::new();
    let mut findings: Vec<Finding> = Vec::new();
    // Events the enricher has made ready (more than one when a cgroup it
    // held events for resolves).
    let mut ready: Vec<EnrichedEvent> = Vec::new();
    let mut held_dropped = 0;
    let mut event_counts = EventCounts::default();
    info!("running; alerts go to {}", sinks.names().join(", "));

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut cgroup_loss_tick = tokio::time::interval(CGROUP_LOSS_INTERVAL);
    let mut reload_tick = tokio::time::interval(opts.reload_interval);
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            event = source.next() => {
                let Some(event) = event else {
                    error!("the ring buffer reader stopped");
                    break;
                };
                event_counts.count(event.name());
                let now = Instant::now();
                let cgroup_change = matches!(event.body, crate::event::EventBody::Cgroup(_));
                enricher.push(event, now, &mut ready);
                if cgroup_change {
                    enforcer.reconcile(&mut source, &enricher, evaluator.rules(), &sinks, &host);
                }
                judge(&mut ready, &mut evaluator, &mut shadow, &mut posture, &mut findings, &mut pipeline, &sinks, &clock, &host, now);
            }
            _ = tick.tick() => {
                event_counts.flush_to(&metrics);
                let now = Instant::now();
                for out in pipeline.tick(now) {
                    sinks.dispatch(&out);
                }
                metrics.decode_errors(source.newly_undecodable());
                for lost in source.newly_lost() {
                    metrics.events_lost(lost.kind, lost.reason, lost.count);
                    let summary = format!("the kernel dropped {} {} events: {} ({} lost since start)", lost.count, lost.kind, lost.describe(), source.lost_total());
                    warn!("{summary}");
                    sinks.dispatch(&Alert::agent(&host, "events-lost", Severity::High, summary));
                }
                if source.reader_alive() && source.stats.heartbeat.load(std::sync::atomic::Ordering::Relaxed) + 3 >= crate::clock::unix_now() {
                    metrics.heartbeat();
                }
                enricher.retry_pending(now);
                enforcer.reconcile(&mut source, &enricher, evaluator.rules(), &sinks, &host);
                enricher.expire_held(now, &mut ready);
                judge(&mut ready, &mut evaluator, &mut shadow, &mut posture, &mut findings, &mut pipeline, &sinks, &clock, &host, now);
                // Containers whose metadata was read since the last tick
                // (and, on the first tick, every container already running),
                // and those whose unused-port grace ended.
                let registry = enricher.registry();
                let proc_root = enricher.config().proc_root.clone();
                let mount = registry.cgroup2_mount().map(Path::to_path_buf);
                let listening = |path: &str| {
                    let dir = mount.as_ref()?.join(path.trim_start_matches('/'));
                    crate::context::sockets::listening_ports(&dir, &proc_root)
                };
                posture.tick(evaluator.rules(), registry, now, &listening, &mut posture_out);
                send_posture(&mut posture_out, &mut pipeline, &sinks, &host, now);
                let dropped = enricher.hold_stats().dropped;
                if dropped > held_dropped {
                    let n = dropped - held_dropped;
                    held_dropped = dropped;
                    metrics.events_lost("any", "unresolved_cgroup_hold_full", n);
                    let summary = format!("{n} events of cgroups not resolved yet were dropped: too many were held ({dropped} since start)");
                    warn!("{summary}");
                    sinks.dispatch(&Alert::agent(&host, "events-lost", Severity::High, summary));
                }
                // Containers only: the registry also holds every host cgroup.
                metrics.set_containers_tracked(enricher.registry().stats().containers as u64);
                metrics.set_processes_tracked(enricher.processes().len() as u64);
            }
            _ = cgroup_loss_tick.tick() => {
                report_cgroup_losses(&mut source, &enricher, &metrics, &sinks, &host, opts.source.fairness);
            }
            _ = reload_tick.tick() => {
                if watcher.changed() {
                    reload(&opts.rules, &mut evaluator, &metrics, "rule files changed");
                    if let Some(s) = &mut shadow {
                        s.reload("rule files changed");
                    }
                    enforcer.reconcile(&mut source, &enricher, evaluator.rules(), &sinks, &host);
                    posture.rules_replaced();
                }
            }
            _ = sighup.recv() => {
                watcher.changed();
                reload(&opts.rules, &mut evaluator, &metrics, "SIGHUP");
                if let Some(s) = &mut shadow {
                    s.reload("SIGHUP");
                }
                enforcer.reconcile(&mut source, &enricher, evaluator.rules(), &sinks, &host);
                posture.rules_replaced();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    info!(
        "stopping: delivering what is queued (grace {:?})",
        opts.shutdown_grace
    );
    let now = Instant::now();
    enricher.drain_held(&mut ready);
    judge(
        &mut ready,
        &mut evaluator,
        &mut shadow,
        &mut posture,
        &mut findings,
        &mut pipeline,
        &sinks,
        &clock,
        &host,
        now,
    );
    let held = enricher.hold_stats();
    info!(
        held = held.held,
        resolved = held.resolved,
        released_unresolved = held.released_unresolved,
        dropped = held.dropped,
        "events of cgroups not resolved on arrival"
    );
    for out in pipeline.flush(now) {
        sinks.dispatch(&out);
    }
    report_cgroup_losses(
        &mut source,
        &enricher,
        &metrics,
        &sinks,
        &host,
        opts.source.fairness,
    );
    sinks.shutdown(opts.shutdown_grace).await;
    if let Some(l) = listener {
        let _ = l.shutdown().await;
    }
    info!(
        records = source.records(),
        lost_total = source.lost_total(),
        "stopped"
    );
    Ok(())
}

/// Reads the kernel's losses by cgroup: an `events-lost` alert naming each
/// container (or host cgroup) with new losses, its metric series, and the
/// cgroups gone since forgotten (kernel keys and series).
fn report_cgroup_losses(
    source: &mut EventSource<Event>,
    enricher: &Enricher,
    metrics: &Metrics,
    sinks: &Sinks,
    host: &str,
    fairness: Fairness,
) {
    let registry = enricher.registry();
    for loss in source.newly_lost_by_cgroup() {
        let (container, status) = registry.container_info(loss.cgroup_id);
        let path = registry.entry(loss.cgroup_id).map(|e| e.path.as_str());
        let alert = cgroup_loss_alert(host, &loss, container, status, path, fairness);
        let label = loss_label(alert.container.as_ref(), path, loss.cgroup_id);
        for c in &loss.counts {
            metrics.container_events_lost(loss.cgroup_id, &label, c.kind, c.reason, c.count);
        }
        warn!(cgroup_id = loss.cgroup_id, container = %label, "{}", alert.summary);
        sinks.dispatch(&alert);
    }
    for id in source.forget_lost_cgroups(|id| registry.contains(id)) {
        metrics.forget_container_losses(id);
    }
}

/// The metric label of a cgroup's losses: the container's name, else its id,
/// else the cgroup path, else the cgroup id.
fn loss_label(container: Option<&ContainerInfo>, path: Option<&str>, cgroup_id: u64) -> String {
    container
        .and_then(|c| c.name.clone().or_else(|| c.id.clone()))
        .or_else(|| path.map(str::to_owned))
        .unwrap_or_else(|| format!("cgroup:{cgroup_id}"))
}

/// The `events-lost` alert about one cgroup's losses.
fn cgroup_loss_alert(
    host: &str,
    loss: &CgroupLoss,
    container: Option<ContainerInfo>,
    status: MetadataStatus,
    path: Option<&str>,
    fairness: Fairness,
) -> Alert {
    let place = match (&container, path) {
        (Some(c), _) => {
            let who = c.name.as_deref().or(c.id.as_deref()).unwrap_or("(unnamed)");
            match &c.image {
                Some(image) => format!("container {who} ({image})"),
                None => format!("container {who}"),
            }
        }
        (None, Some(p)) => format!("host cgroup {p}"),
        (None, None) => format!("cgroup {} (no longer known)", loss.cgroup_id),
    };
    let counts: Vec<String> = loss
        .counts
        .iter()
        .map(|c| format!("{} {} {}", c.count, c.kind, c.reason))
        .collect();
    let mut summary = format!(
        "the kernel dropped {} events of {place}: {}",
        loss.count(),
        counts.join(", ")
    );
    if loss.counts.iter().any(|c| c.reason == "rate_limited") {
        summary.push_str(&format!(
            " (over its share of {} events a second, {} at once)",
            fairness.rate, fairness.burst
        ));
    }
    let mut alert = Alert::agent(host, "events-lost", Severity::High, summary);
    alert.container = container;
    alert.metadata_status = Some(status);
    alert.lost = Some(LostSummary {
        cgroup_id: loss.cgroup_id,
        counts: loss
            .counts
            .iter()
            .map(|c| LostCount {
                kind: c.kind.to_owned(),
                reason: c.reason.to_owned(),
                count: c.count,
                total: c.total,
            })
            .collect(),
    });
    alert
}

/// Matches every event in `ready` and delivers its alerts.
#[allow(
    clippy::too_many_arguments,
    reason = "the run loop's stages, borrowed apart"
)]
fn judge(
    ready: &mut Vec<EnrichedEvent>,
    evaluator: &mut Evaluator,
    shadow: &mut Option<Shadow>,
    posture: &mut PostureWatch,
    findings: &mut Vec<Finding>,
    pipeline: &mut AlertPipeline,
    sinks: &Sinks,
    clock: &WallClock,
    host: &str,
    now: Instant,
) {
    for enriched in ready.drain(..) {
        let at = clock.at(enriched.event.header.ktime_ns);
        evaluator.evaluate(&enriched, findings);
        if findings.is_empty()
            && let Some(alert) = unmatched_action(&enriched, at, host)
        {
            for out in pipeline.push(alert, now) {
                sinks.dispatch(&out);
            }
        }
        let shadowed = match shadow {
            Some(s) => s.judge(&enriched, findings, at, host),
            None => Vec::new(),
        };
        for finding in findings.drain(..) {
            let alert = Alert::from_finding(&finding, &enriched, at, host);
            for out in pipeline.push(alert, now) {
                sinks.dispatch(&out);
            }
        }
        for alert in shadowed {
            for out in pipeline.push(alert, now) {
                sinks.dispatch(&out);
            }
        }
        let mut raised = Vec::new();
        posture.observe(evaluator.rules(), &enriched, &mut raised);
        send_posture(&mut raised, pipeline, sinks, host, now);
    }
}

/// Posture findings to alerts, through the pipeline to the sinks.
fn send_posture(
    raised: &mut Vec<PostureAlert>,
    pipeline: &mut AlertPipeline,
    sinks: &Sinks,
    host: &str,
    now: Instant,
) {
    for p in raised.drain(..) {
        let alert = Alert::from_posture(&p.finding, p.container, p.status, SystemTime::now(), host);
        for out in pipeline.push(alert, now) {
            sinks.dispatch(&out);
        }
    }
}

/// Events counted by name on the hot path without touching the metrics
/// registry (a label lookup and a lock), flushed to it once a second.
#[derive(Default)]
struct EventCounts(Vec<(&'static str, u64)>);

impl EventCounts {
    fn count(&mut self, name: &'static str) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => self.0.push((name, 1)),
        }
    }

    fn flush_to(&mut self, metrics: &Metrics) {
        for (name, count) in &mut self.0 {
            if *count > 0 {
                metrics.events(name, *count);
                *count = 0;
            }
        }
    }
}

fn load_rules(dirs: &[PathBuf]) -> anyhow::Result<policy::RuleSet> {
    policy::check_dir(dirs).map_err(|diags| {
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        anyhow::anyhow!(
            "{}\n{}",
            text.join("\n"),
            policy::check_summary(&Err(diags))
        )
    })
}

/// Swaps the rule set atomically: a set that does not load is refused with its
/// errors logged and the running one kept.
fn reload(dirs: &[PathBuf], evaluator: &mut Evaluator, metrics: &Metrics, why: &str) {
    match load_rules(dirs) {
        Ok(rules) => {
            info!("reloaded the rules ({why}): {}", rules.summary());
            metrics.set_rules_loaded(rules.rule_count() as u64);
            evaluator.replace_rules(rules);
            metrics.reload(true);
        }
        Err(e) => {
            error!("the new rules were refused ({why}); the running rules stay in force:\n{e:#}");
            metrics.reload(false);
        }
    }
}

/// Notices edits to rule files by their names, sizes and modification times:
/// cheap to poll, and immune to the rename-over that editors do.
struct RuleWatcher {
    dirs: Vec<PathBuf>,
    last: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

impl RuleWatcher {
    fn new(dirs: &[PathBuf]) -> Self {
        let mut w = RuleWatcher {
            dirs: dirs.to_vec(),
            last: Vec::new(),
        };
        w.last = w.snapshot();
        w
    }

    fn snapshot(&self) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
        let mut files = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    files.push((e.path(), m.len(), m.modified().ok()));
                }
            }
        }
        files.sort();
        files
    }

    fn changed(&mut self) -> bool {
        let now = self.snapshot();
        let changed = now != self.last;
        self.last = now;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::losses::LossCount;

    fn web() -> ContainerInfo {
        ContainerInfo {
            id: Some("c".repeat(64)),
            runtime: Some("docker".into()),
            name: Some("web".into()),
            image: Some("nginx:1.27".into()),
            pod: None,
            namespace: None,
            cgroup: Some("/docker/cccc".into()),
        }
    }

    fn flood() -> CgroupLoss {
        CgroupLoss {
            cgroup_id: 77,
            counts: vec![
                LossCount {
                    kind: "file",
                    reason: "rate_limited",
                    count: 9000,
                    total: 12000,
                },
                LossCount {
                    kind: "network",
                    reason: "ring_buffer_full",
                    count: 3,
                    total: 3,
                },
            ],
        }
    }

    #[test]
    fn a_containers_losses_alert_names_it_with_counts_by_kind_and_reason() {
        let fair = Fairness {
            rate: 500,
            burst: 100,
        };
        let a = cgroup_loss_alert(
            "node-1",
            &flood(),
            Some(web()),
            MetadataStatus::Complete,
            Some("/docker/cccc"),
            fair,
        );
        assert_eq!(
            (a.rule.as_str(), a.severity),
            ("events-lost", Severity::High)
        );
        assert_eq!(a.container.as_ref().unwrap().name.as_deref(), Some("web"));
        assert_eq!(a.metadata_status, Some(MetadataStatus::Complete));
        assert_eq!(
            a.summary,
            "the kernel dropped 9003 events of container web (nginx:1.27): 9000 file rate_limited, \
             3 network ring_buffer_full (over its share of 500 events a second, 100 at once)"
        );
        let lost = a.lost.unwrap();
        assert_eq!(lost.cgroup_id, 77);
        assert_eq!(
            lost.counts[0],
            LostCount {
                kind: "file".into(),
                reason: "rate_limited".into(),
                count: 9000,
                total: 12000
            }
        );
        assert_eq!(lost.counts.len(), 2);
    }

    #[test]
    fn a_host_cgroups_losses_name_its_path() {
        let mut loss = flood();
        loss.counts.remove(0);
        let a = cgroup_loss_alert(
            "node-1",
            &loss,
            None,
            MetadataStatus::Host,
            Some("/system.slice/cron.service"),
            Fairness::default(),
        );
        assert_eq!(
            a.summary,
            "the kernel dropped 3 events of host cgroup /system.slice/cron.service: 3 network ring_buffer_full"
        );
        assert!(a.container.is_none());
    }

    #[test]
    fn the_metric_label_is_the_name_else_the_id_else_the_path() {
        let mut c = web();
        assert_eq!(loss_label(Some(&c), Some("/p"), 7), "web");
        c.name = None;
        assert_eq!(loss_label(Some(&c), Some("/p"), 7), "c".repeat(64));
        assert_eq!(loss_label(None, Some("/p"), 7), "/p");
        assert_eq!(loss_label(None, None, 7), "cgroup:7");
    }
}
