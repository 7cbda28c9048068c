//! Dedup, then rate limiting: what the event loop calls between `policy` and
//! the sinks.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;

use super::{Alert, Deduplicator, RateLimitConfig, RateLimiter, ScanFolder};
use crate::metrics::Metrics;

/// Settings of the [`AlertPipeline`].
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Identical alerts within this window fold into one (0 turns folding off).
    #[serde(with = "super::duration_str")]
    pub dedup_window: Duration,
    /// Dedup windows open at once; beyond that alerts pass unfolded.
    pub dedup_max_keys: usize,
    pub rate_limit: RateLimitConfig,
    /// How long egress alerts wait for a port-scan alert of their workload
    /// to fold into (0 turns folding off).
    #[serde(with = "super::duration_str")]
    pub scan_fold_hold: Duration,
    /// How long after a scan alert its workload's egress alerts fold into it.
    #[serde(with = "super::duration_str")]
    pub scan_fold_window: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            dedup_window: Duration::from_secs(60),
            dedup_max_keys: 65_536,
            rate_limit: RateLimitConfig::default(),
            scan_fold_hold: Duration::from_secs(2),
            scan_fold_window: Duration::from_secs(10),
        }
    }
}

/// Scan folding, dedup, then rate limit. Pure apart from the metrics: values
/// in, values out.
///
/// The event loop calls [`AlertPipeline::push`] for each alert from `policy`
/// and [`AlertPipeline::tick`] about once a second, and hands every alert
/// returned to `Sinks::dispatch` (named, not linked: `sink` comes after
/// `alert`).
pub struct AlertPipeline {
    scans: ScanFolder,
    dedup: Deduplicator,
    limiter: RateLimiter,
    metrics: Option<Arc<Metrics>>,
}

impl AlertPipeline {
    pub fn new(config: PipelineConfig, host: &str, metrics: Option<Arc<Metrics>>) -> Self {
        AlertPipeline {
            scans: ScanFolder::new(config.scan_fold_hold, config.scan_fold_window),
            dedup: Deduplicator::new(config.dedup_window, config.dedup_max_keys),
            limiter: RateLimiter::new(config.rate_limit, host),
            metrics,
        }
    }

    /// One alert from the policy stage, seen at `now`; returns what to send now.
    pub fn push(&mut self, alert: Alert, now: Instant) -> Vec<Alert> {
        if alert.kind == super::AlertKind::Agent {
            return self.limit(vec![alert], now);
        }
        let mut folded = Vec::with_capacity(1);
        self.scans.observe(alert, now, &mut folded);
        self.dedup_and_limit(folded, now)
    }

    fn dedup_and_limit(&mut self, alerts: Vec<Alert>, now: Instant) -> Vec<Alert> {
        let mut deduped = Vec::with_capacity(alerts.len() + 1);
        for a in alerts {
            let before = deduped.len();
            self.dedup.observe(a, now, &mut deduped);
            if deduped.len() == before {
                self.suppressed("dedup");
            }
        }
        self.limit(deduped, now)
    }

    /// Window ends and throttle ends due by `now`; returns what to send now.
    pub fn tick(&mut self, now: Instant) -> Vec<Alert> {
        let mut released = Vec::new();
        self.scans.expire(now, &mut released);
        let mut out = self.dedup_and_limit(released, now);
        let mut updates = Vec::new();
        self.dedup.expire(now, &mut updates);
        out.extend(self.limit(updates, now));
        self.limiter.expire(now, &mut out);
        out
    }

    /// Shutdown: every pending folded update and throttle-ended notice.
    pub fn flush(&mut self, now: Instant) -> Vec<Alert> {
        let mut released = Vec::new();
        self.scans.flush(&mut released);
        let mut out = self.dedup_and_limit(released, now);
        let mut updates = Vec::new();
        self.dedup.flush(&mut updates);
        out.extend(self.limit(updates, now));
        self.limiter.flush(&mut out);
        out
    }

    fn limit(&mut self, alerts: Vec<Alert>, now: Instant) -> Vec<Alert> {
        let mut out = Vec::with_capacity(alerts.len());
        for a in alerts {
            if !self.limiter.admit(a, now, &mut out) {
                self.suppressed("rate_limit");
            }
        }
        out
    }

    fn suppressed(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.alert_suppressed(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        alert::{AlertKind, Severity},
        context::ContainerInfo,
    };

    #[test]
    fn dedup_before_rate_limit() {
        let t0 = Instant::now();
        let metrics = Metrics::new(Duration::from_secs(5));
        let mut p = AlertPipeline::new(
            PipelineConfig {
                dedup_window: Duration::from_secs(10),
                dedup_max_keys: 100,
                rate_limit: RateLimitConfig {
                    per_second: 1.0,
                    burst: 2,
                },
                ..PipelineConfig::default()
            },
            "node-1",
            Some(metrics.clone()),
        );
        let mk = |summary: &str| {
            let mut a = Alert::new(
                "node-1",
                "r",
                "p",
                Severity::Low,
                AlertKind::Posture,
                summary,
            );
            a.container = Some(ContainerInfo {
                id: Some("c1".into()),
                ..Default::default()
            });
            a
        };
        // 100 identical alerts fold into one and use one token.
        let mut sent = 0;
        for _ in 0..100 {
            sent += p.push(mk("same"), t0).len();
        }
        assert_eq!(sent, 1);
        assert_eq!(p.push(mk("other"), t0).len(), 1);
        // The third distinct alert is throttled: the notice goes out instead.
        let out = p.push(mk("third"), t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, AlertKind::Agent);
        let out = p.flush(t0);
        // The folded update of "same" (count 100) is throttled too, then the end notice.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "alerts-throttle-ended");
        assert_eq!(out[0].count, 2);
        assert!(
            metrics
                .encode()
                .contains("monitor_alerts_suppressed_total{reason=\"dedup\"} 99")
        );
    }
}
