//! Prometheus metrics and the health endpoints.
//!
//! One [`Metrics`] value (shared as `Arc<Metrics>`) is the registry; every
//! stage updates it through plain methods taking `&str` labels, so this module
//! imports nothing from the data path. [`serve`] starts the one HTTP listener:
//! `/metrics` (Prometheus text format 0.0.4), `/healthz` and `/readyz`.
use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

mod http;
mod sink;

pub use http::{HttpListener, serve};
pub use sink::SinkMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    kind: String,
    reason: String,
}

/// A container's losses: only cgroups that lost something get a series, and
/// it goes when the cgroup does, so the label set stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLostLabels {
    container: String,
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SinkReasonLabels {
    sink: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// One kernel hook: its attach point and `attached` or why not.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConcernLabels {
    concern: String,
    tier: String,
}

/// What `/readyz` says of one hook.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HookState {
    hook: String,
    core: bool,
    status: String,
}

impl HookState {
    fn attached(&self) -> bool {
        self.status == ATTACHED
    }

    /// Neither attached nor standing by for a higher tier that serves its
    /// concern.
    fn missing(&self) -> bool {
        self.status != ATTACHED && self.status != STANDBY
    }
}

/// The status of a hook that is attached (any other is an error kind).
const ATTACHED: &str = "attached";
/// The status of a hook a higher tier stands in for.
const STANDBY: &str = "standby";

/// The agent's metrics and health flags.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    stale_after: Duration,
    heartbeat_ms: AtomicU64,
    attached: AtomicBool,
    rules_ready: AtomicBool,
    /// Each kernel hook as the loader left it, in load order.
    hooks: std::sync::Mutex<Vec<HookState>>,
    /// Each concern and the tier serving it (`none`), in the table's order.
    concerns: std::sync::Mutex<Vec<(String, String)>>,

    events: Family<KindLabel, Counter>,
    events_lost: Family<LostLabels, Counter>,
    container_events_lost: Family<ContainerLostLabels, Counter>,
    /// The series of [`Metrics::container_events_lost`] by cgroup id, to remove them.
    container_lost_series:
        std::sync::Mutex<std::collections::HashMap<u64, Vec<ContainerLostLabels>>>,
    alerts: Family<AlertLabels, Counter>,
    alerts_suppressed: Family<ReasonLabel, Counter>,
    sink_delivered: Family<SinkLabel, Counter>,
    sink_failed: Family<SinkLabel, Counter>,
    sink_retries: Family<SinkLabel, Counter>,
    sink_queued: Family<SinkLabel, Gauge>,
    sink_spooled: Family<SinkLabel, Gauge>,
    sink_spooled_bytes: Family<SinkLabel, Gauge>,
    sink_dropped: Family<SinkReasonLabels, Counter>,
    rules_loaded: Gauge,
    containers_tracked: Gauge,
    processes_tracked: Gauge,
    reloads: Family<ResultLabel, Counter>,
    heartbeat_age: Gauge<f64, AtomicU64>,
    programs_attached: Gauge,
    hook_attached: Family<HookLabels, Gauge>,
    concern_tier: Family<ConcernLabels, Gauge>,
    decode_errors: Counter,
}

impl Metrics {
    /// A registry whose `/healthz` turns unhealthy when the ring buffer reader
    /// has not called [`Metrics::heartbeat`] for `stale_after`.
    pub fn new(stale_after: Duration) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("monitor");
        let m = Metrics {
            registry: Registry::default(),
            started: Instant::now(),
            stale_after,
            heartbeat_ms: AtomicU64::new(0),
            attached: AtomicBool::new(false),
            rules_ready: AtomicBool::new(false),
            hooks: Default::default(),
            events: Family::default(),
            events_lost: Family::default(),
            container_events_lost: Family::default(),
            container_lost_series: Default::default(),
            alerts: Family::default(),
            alerts_suppressed: Family::default(),
            sink_delivered: Family::default(),
            sink_failed: Family::default(),
            sink_retries: Family::default(),
            sink_queued: Family::default(),
            sink_spooled: Family::default(),
            sink_spooled_bytes: Family::default(),
            sink_dropped: Family::default(),
            rules_loaded: Gauge::default(),
            containers_tracked: Gauge::default(),
            processes_tracked: Gauge::default(),
            reloads: Family::default(),
            heartbeat_age: Gauge::default(),
            programs_attached: Gauge::default(),
            hook_attached: Family::default(),
            concern_tier: Family::default(),
            concerns: Default::default(),
            decode_errors: Counter::default(),
        };
        let r = &mut registry;
        r.register("events", "Kernel events decoded, by kind", m.events.clone());
        r.register(
            "events_lost",
            "Events the kernel programs could not send, by kind and reason (ring_buffer_full, stash_full, read_fault, no_scratch, rate_limited)",
            m.events_lost.clone(),
        );
        r.register(
            "container_events_lost",
            "Events the kernel programs could not send, by the container (or host cgroup) whose task made them, kind and reason; only cgroups with losses, removed when the cgroup goes",
            m.container_events_lost.clone(),
        );
        r.register(
            "alerts",
            "Alerts emitted, by rule and severity",
            m.alerts.clone(),
        );
        r.register(
            "alerts_suppressed",
            "Alerts folded by dedup or held back by the rate limiter, by reason",
            m.alerts_suppressed.clone(),
        );
        r.register(
            "sink_delivered",
            "Alerts a sink delivered (acknowledged by the endpoint)",
            m.sink_delivered.clone(),
        );
        r.register(
            "sink_failed",
            "Alerts a sink gave up on after a permanent error (4xx other than 408/429)",
            m.sink_failed.clone(),
        );
        r.register(
            "sink_retries",
            "Delivery attempts a sink retried (connect errors, timeouts, 429, 5xx)",
            m.sink_retries.clone(),
        );
        r.register(
            "sink_queued",
            "Alerts in a sink's in-memory queue",
            m.sink_queued.clone(),
        );
        r.register(
            "sink_spooled",
            "Alerts in a sink's on-disk spool not yet acknowledged",
            m.sink_spooled.clone(),
        );
        r.register(
            "sink_spooled_bytes",
            "Bytes in a sink's on-disk spool not yet acknowledged",
            m.sink_spooled_bytes.clone(),
        );
        r.register(
            "sink_dropped",
            "Alerts a sink dropped, by reason (spool_full, queue_full, closed, corrupt)",
            m.sink_dropped.clone(),
        );
        r.register("rules_loaded", "Rules loaded", m.rules_loaded.clone());
        r.register(
            "containers_tracked",
            "Containers in the registry",
            m.containers_tracked.clone(),
        );
        r.register(
            "processes_tracked",
            "Processes in the process table",
            m.processes_tracked.clone(),
        );
        r.register(
            "reloads",
            "Rule reloads, by result (success, failure)",
            m.reloads.clone(),
        );
        r.register(
            "ringbuf_heartbeat_age_seconds",
            "Seconds since the ring buffer reader last reported",
            m.heartbeat_age.clone(),
        );
        r.register(
            "programs_attached",
            "1 when the kernel programs are attached",
            m.programs_attached.clone(),
        );
        r.register(
            "hook_attached",
            "1 when a kernel hook is attached, else 0, by hook (its attach point) and status (attached, no_tracepoint, not_in_object, verifier, load, attach)",
            m.hook_attached.clone(),
        );
        r.register(
            "concern_tier",
            "1 for the hook tier serving each concern (tracepoint, fentry; none when no hook of it attached)",
            m.concern_tier.clone(),
        );
        r.register(
            "decode_errors",
            "Ring buffer records the agent could not decode (logged one by one)",
            m.decode_errors.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// One decoded event of `kind` (`process`, `file`, `network`, `cgroup`).
    pub fn event(&self, kind: &str) {
        self.events(kind, 1);
    }

    /// `n` decoded events of `kind`.
    pub fn events(&self, kind: &str, n: u64) {
        self.events.get_or_create(&kind_label(kind)).inc_by(n);
    }

    /// `n` events of `kind` the kernel programs could not send, and why
    /// (`monitor_common::loss` names).
    pub fn events_lost(&self, kind: &str, reason: &str, n: u64) {
        let labels = LostLabels {
            kind: kind.to_owned(),
            reason: reason.to_owned(),
        };
        self.events_lost.get_or_create(&labels).inc_by(n);
    }

    /// `n` events of `kind` the kernel lost for `reason` in cgroup `cgroup_id`,
    /// labelled `container` (its name, else id, else the cgroup path).
    pub fn container_events_lost(
        &self,
        cgroup_id: u64,
        container: &str,
        kind: &str,
        reason: &str,
        n: u64,
    ) {
        let labels = ContainerLostLabels {
            container: container.to_owned(),
            kind: kind.to_owned(),
            reason: reason.to_owned(),
        };
        self.container_events_lost.get_or_create(&labels).inc_by(n);
        let mut series = self
            .container_lost_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let of_cgroup = series.entry(cgroup_id).or_default();
        if !of_cgroup.contains(&labels) {
            of_cgroup.push(labels);
        }
    }

    /// Removes the loss series of a cgroup that went away.
    pub fn forget_container_losses(&self, cgroup_id: u64) {
        let mut series = self
            .container_lost_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for labels in series.remove(&cgroup_id).unwrap_or_default() {
            self.container_events_lost.remove(&labels);
        }
    }

    /// One alert emitted to the sinks.
    pub fn alert(&self, rule: &str, severity: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                rule: rule.to_owned(),
                severity: severity.to_owned(),
            })
            .inc();
    }

    /// One alert folded (`dedup`) or held back (`rate_limit`).
    pub fn alert_suppressed(&self, reason: &str) {
        self.alerts_suppressed
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The counters of one sink, to keep and update without lookups.
    pub fn sink(&self, name: &str) -> SinkMetrics {
        let l = SinkLabel {
            sink: name.to_owned(),
        };
        SinkMetrics {
            name: name.to_owned(),
            delivered: self.sink_delivered.get_or_create_owned(&l),
            failed: self.sink_failed.get_or_create_owned(&l),
            retries: self.sink_retries.get_or_create_owned(&l),
            queued: self.sink_queued.get_or_create_owned(&l),
            spooled: self.sink_spooled.get_or_create_owned(&l),
            spooled_bytes: self.sink_spooled_bytes.get_or_create_owned(&l),
            dropped: self.sink_dropped.clone(),
        }
    }

    pub fn set_rules_loaded(&self, n: u64) {
        self.rules_loaded.set(n as i64);
        self.rules_ready.store(true, Ordering::Relaxed);
    }

    pub fn set_containers_tracked(&self, n: u64) {
        self.containers_tracked.set(n as i64);
    }

    pub fn set_processes_tracked(&self, n: u64) {
        self.processes_tracked.set(n as i64);
    }

    /// One rule reload, successful or not.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The ring buffer reader is alive: call at least every few seconds, also
    /// when no event arrives (after each poll timeout).
    pub fn heartbeat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// The kernel programs are attached (or were detached).
    pub fn set_programs_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Relaxed);
        self.programs_attached.set(attached as i64);
    }

    /// One kernel hook as the loader left it: `status` is `attached` or the
    /// kind of error (`no_tracepoint`, `verifier`, ...). `core`: the agent
    /// cannot run without it, so `/readyz` fails while it is not attached.
    pub fn set_hook(&self, hook: &str, core: bool, status: &str) {
        let state = HookState {
            hook: hook.to_owned(),
            core,
            status: status.to_owned(),
        };
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = hooks.iter_mut().find(|h| h.hook == hook) {
            self.hook_attached.remove(&HookLabels {
                hook: old.hook.clone(),
                status: old.status.clone(),
            });
            *old = state.clone();
        } else {
            hooks.push(state.clone());
        }
        self.hook_attached
            .get_or_create(&HookLabels {
                hook: state.hook,
                status: state.status.clone(),
            })
            .set((status == ATTACHED) as i64);
    }

    /// The tier serving `concern` (`none` when nothing of it attached).
    pub fn set_concern_tier(&self, concern: &str, tier: &str) {
        let mut concerns = self.concerns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = concerns.iter_mut().find(|(c, _)| c == concern) {
            self.concern_tier.remove(&ConcernLabels {
                concern: old.0.clone(),
                tier: old.1.clone(),
            });
            old.1 = tier.to_owned();
        } else {
            concerns.push((concern.to_owned(), tier.to_owned()));
        }
        self.concern_tier
            .get_or_create(&ConcernLabels {
                concern: concern.to_owned(),
                tier: tier.to_owned(),
            })
            .set(1);
    }

    /// `n` more ring buffer records that did not decode.
    pub fn decode_errors(&self, n: u64) {
        self.decode_errors.inc_by(n);
    }

    /// Time since the last heartbeat (since start-up before the first one).
    pub fn heartbeat_age(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Alive: the reader reported within `stale_after`.
    pub fn healthy(&self) -> bool {
        self.heartbeat_age() <= self.stale_after
    }

    /// Ready: programs attached, no core hook missing, and rules loaded.
    pub fn ready(&self) -> bool {
        self.readiness().0
    }

    /// Whether the agent is ready, and the `/readyz` page that says why:
    /// a first line (`ready`, or `not ready: ...`), how many hooks are
    /// attached, and a line for every hook that is not.
    pub fn readiness(&self) -> (bool, String) {
        let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        let missing_core: Vec<&str> = hooks
            .iter()
            .filter(|h| h.core && h.missing())
            .map(|h| h.hook.as_str())
            .collect();
        let loaded =
            self.attached.load(Ordering::Relaxed) && self.rules_ready.load(Ordering::Relaxed);
        let ready = loaded && missing_core.is_empty();
        let mut page = if ready {
            "ready\n".to_owned()
        } else if !loaded {
            "not ready: programs not attached or rules not loaded\n".to_owned()
        } else {
            format!(
                "not ready: core hooks not attached: {}\n",
                missing_core.join(", ")
            )
        };
        if !hooks.is_empty() {
            let attached = hooks.iter().filter(|h| h.attached()).count();
            let standby = hooks.iter().filter(|h| h.status == STANDBY).count();
            let _ = writeln!(
                page,
                "hooks: {attached} of {} attached, {standby} in standby",
                hooks.len()
            );
            let concerns = self.concerns.lock().unwrap_or_else(|e| e.into_inner());
            for (concern, tier) in concerns.iter() {
                let _ = writeln!(page, "concern {concern}: tier {tier}");
            }
            for h in hooks.iter().filter(|h| h.missing()) {
                let role = if h.core { "core" } else { "optional" };
                let _ = writeln!(page, "{} ({role}): {}", h.hook, h.status);
            }
        }
        (ready, page)
    }

    /// The registry in the Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        self.heartbeat_age.set(self.heartbeat_age().as_secs_f64());
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

fn kind_label(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_text_with_labels() {
        let m = Metrics::new(Duration::from_secs(10));
        m.event("exec");
        m.events_lost("file", "ring_buffer_full", 3);
        m.container_events_lost(77, "web", "file", "rate_limited", 5);
        m.alert("unexpected-process", "high");
        let s = m.sink("hook");
        s.delivered(2);
        s.dropped("spool_full", 1);
        m.set_rules_loaded(12);
        m.reload(false);
        let text = m.encode();
        assert!(
            text.contains("monitor_events_total{kind=\"exec\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("monitor_events_lost_total{kind=\"file\",reason=\"ring_buffer_full\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("monitor_container_events_lost_total{container=\"web\",kind=\"file\",reason=\"rate_limited\"} 5"),
            "{text}"
        );
        m.forget_container_losses(77);
        assert!(
            !m.encode().contains("monitor_container_events_lost_total{"),
            "the series goes with its cgroup"
        );
        assert!(
            text.contains("monitor_alerts_total{rule=\"unexpected-process\",severity=\"high\"} 1")
        );
        assert!(text.contains("monitor_sink_delivered_total{sink=\"hook\"} 2"));
        assert!(text.contains("monitor_sink_dropped_total{sink=\"hook\",reason=\"spool_full\"} 1"));
        assert!(text.contains("monitor_rules_loaded 12"));
        assert!(text.contains("monitor_reloads_total{result=\"failure\"} 1"));
        assert_eq!(s.dropped_total("spool_full"), 1);
    }

    #[test]
    fn health_and_readiness() {
        let m = Metrics::new(Duration::from_millis(50));
        assert!(m.healthy());
        assert!(!m.ready());
        m.set_programs_attached(true);
        assert!(!m.ready());
        m.set_rules_loaded(0);
        assert!(m.ready());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!m.healthy());
        m.heartbeat();
        assert!(m.healthy());
    }

    #[test]
    fn readiness_and_metrics_say_each_hooks_status() {
        let m = Metrics::new(Duration::from_secs(10));
        m.set_programs_attached(true);
        m.set_rules_loaded(3);
        m.set_hook("tracepoint/sched/sched_process_exec", true, "attached");
        m.set_hook(
            "tracepoint/syscalls/sys_enter_openat2",
            false,
            "no_tracepoint",
        );
        // A core row a higher tier stands in for is not missing.
        m.set_hook("tracepoint/syscalls/sys_enter_openat", true, "standby");
        m.set_concern_tier("exec", "tracepoint");
        m.set_concern_tier("file writes", "fentry");
        let (ready, page) = m.readiness();
        assert!(ready, "{page}");
        assert_eq!(
            page,
            "ready\nhooks: 1 of 3 attached, 1 in standby\n\
             concern exec: tier tracepoint\n\
             concern file writes: tier fentry\n\
             tracepoint/syscalls/sys_enter_openat2 (optional): no_tracepoint\n"
        );
        let text = m.encode();
        assert!(
            text.contains(
                "monitor_hook_attached{hook=\"tracepoint/sched/sched_process_exec\",status=\"attached\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("monitor_hook_attached{hook=\"tracepoint/syscalls/sys_enter_openat2\",status=\"no_tracepoint\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("monitor_concern_tier{concern=\"file writes\",tier=\"fentry\"} 1"),
            "{text}"
        );

        // A core hook that is not attached makes the agent not ready, and a
        // hook set again keeps one series.
        m.set_hook("tracepoint/sched/sched_process_exec", true, "verifier");
        let (ready, page) = m.readiness();
        assert!(!ready);
        assert!(
            page.starts_with(
                "not ready: core hooks not attached: tracepoint/sched/sched_process_exec\n"
            ),
            "{page}"
        );
        let text = m.encode();
        assert!(!text.contains("status=\"attached\""), "{text}");
        assert!(
            text.contains("sched_process_exec\",status=\"verifier\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn decode_errors_are_counted() {
        let m = Metrics::new(Duration::from_secs(10));
        m.decode_errors(0);
        assert!(m.encode().contains("monitor_decode_errors_total 0"));
        m.decode_errors(2);
        m.decode_errors(1);
        assert!(m.encode().contains("monitor_decode_errors_total 3"));
    }
}
