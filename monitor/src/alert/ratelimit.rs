//! Per-container, per-rule rate limiting that never hides a flood.
//!
//! Each workload (a container id; all host processes share one) has a token
//! bucket per rule: `burst` tokens, refilled at `per_second`, so one noisy
//! rule never throttles another's alerts. High and critical alerts are never
//! throttled (nor do they use tokens). An alert that finds no token is
//! suppressed, but never silently:
//!
//! - the first suppression emits an `agent` alert (`alerts-throttled`) naming
//!   the container, so a receiver knows alerts are being held back;
//! - every suppressed alert is counted, by rule;
//! - when the bucket is full again (the flood is over), an `agent` alert
//!   (`alerts-throttle-ended`) says how many were suppressed, per rule, and
//!   over which period.
//!
//! Alerts of kind `agent` are never rate limited.
use std::{
    collections::{BTreeMap, HashMap},
    time::{Instant, SystemTime},
};

use serde::Deserialize;

use super::{Alert, AlertKind, Severity, rfc3339_micros};
use crate::context::ContainerInfo;

/// Token bucket settings, per workload.
#[derive(Clone, Debug, Deserialize)]
pub struct RateLimitConfig {
    /// Sustained alerts per second per workload.
    pub per_second: f64,
    /// Alerts a workload may raise at once before throttling starts.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 5.0,
            burst: 50,
        }
    }
}

struct Throttle {
    since: String,
    last: String,
    suppressed: u64,
    by_rule: BTreeMap<String, u64>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    container: Option<ContainerInfo>,
    throttle: Option<Throttle>,
}

/// Token buckets per workload; see the module docs.
pub struct RateLimiter {
    config: RateLimitConfig,
    host: String,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// `host` fills the `host` field of the notices this limiter raises.
    pub fn new(config: RateLimitConfig, host: impl Into<String>) -> RateLimiter {
        RateLimiter {
            config,
            host: host.into(),
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.config.per_second).min(self.config.burst as f64);
        b.refilled = now;
    }

    /// Admits or suppresses one alert seen at `now`, pushing what to emit onto
    /// `out`. Returns `false` when the alert was suppressed (and counted).
    pub fn admit(&mut self, alert: Alert, now: Instant, out: &mut Vec<Alert>) -> bool {
        if alert.kind == AlertKind::Agent || alert.severity >= Severity::High {
            out.push(alert);
            return true;
        }
        let key = format!("{}\0{}", alert.container_id().unwrap_or("host"), alert.rule);
        let burst = self.config.burst as f64;
        let mut b = self.buckets.remove(&key).unwrap_or(Bucket {
            tokens: burst,
            refilled: now,
            container: alert.container.clone(),
            throttle: None,
        });
        self.refill(&mut b, now);
        let admitted = if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            out.push(alert);
            true
        } else {
            match &mut b.throttle {
                Some(t) => {
                    t.suppressed += 1;
                    t.last = alert.time.clone();
                    *t.by_rule.entry(alert.rule.clone()).or_default() += 1;
                }
                None => {
                    out.push(self.started_notice(&key, &b.container));
                    b.throttle = Some(Throttle {
                        since: alert.time.clone(),
                        last: alert.time.clone(),
                        suppressed: 1,
                        by_rule: BTreeMap::from([(alert.rule.clone(), 1)]),
                    });
                }
            }
            false
        };
        self.buckets.insert(key, b);
        admitted
    }

    /// Ends the throttles whose bucket is full again, pushing their notices,
    /// and forgets idle workloads.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Alert>) {
        let burst = self.config.burst as f64;
        let mut keys: Vec<String> = self.buckets.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let mut b = self.buckets.remove(&key).expect("present");
            self.refill(&mut b, now);
            if b.tokens < burst {
                self.buckets.insert(key, b);
                continue;
            }
            if let Some(t) = b.throttle.take() {
                out.push(self.ended_notice(&key, &b.container, t));
            }
            // A full bucket without a throttle is the same as no bucket.
        }
    }

    /// Ends every throttle (shutdown), pushing the notices.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        let mut all: Vec<(String, Bucket)> = self.buckets.drain().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, mut b) in all {
            if let Some(t) = b.throttle.take() {
                out.push(self.ended_notice(&key, &b.container, t));
            }
        }
    }

    /// Workloads being throttled now.
    pub fn throttled(&self) -> usize {
        self.buckets
            .values()
            .filter(|b| b.throttle.is_some())
            .count()
    }

    fn started_notice(&self, key: &str, container: &Option<ContainerInfo>) -> Alert {
        let mut a = Alert::agent(
            &self.host,
            "alerts-throttled",
            Severity::Medium,
            format!(
                "alerts of {} throttled: more than {} at once or {}/s; further alerts of this rule are counted, not sent, until the flood ends (high and critical alerts are never throttled)",
                describe(key, container),
                self.config.burst,
                self.config.per_second
            ),
        );
        a.container = container.clone();
        a
    }

    fn ended_notice(&self, key: &str, container: &Option<ContainerInfo>, t: Throttle) -> Alert {
        let rules: Vec<String> = t.by_rule.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        let mut a = Alert::agent(
            &self.host,
            "alerts-throttle-ended",
            Severity::Medium,
            format!(
                "throttling of {} ended: {} alerts suppressed between {} and {} ({})",
                describe(key, container),
                t.suppressed,
                t.since,
                t.last,
                rules.join(", ")
            ),
        );
        a.container = container.clone();
        a.count = t.suppressed;
        a.first_seen = t.since;
        a.last_seen = t.last;
        a.time = rfc3339_micros(SystemTime::now());
        a
    }
}

/// `rule shell in container web (<id>)`, from a bucket key `<workload>\0<rule>`.
fn describe(key: &str, container: &Option<ContainerInfo>) -> String {
    let (workload, rule) = key.split_once('\0').unwrap_or((key, "?"));
    let place = match container.as_ref().and_then(|c| c.name.as_deref()) {
        Some(name) => format!("container {name} ({workload})"),
        None if workload == "host" => "host processes".to_owned(),
        None => format!("container {workload}"),
    };
    format!("rule {rule} in {place}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn alert(container: Option<&str>, rule: &str) -> Alert {
        let mut a = Alert::new(
            "node-1",
            rule,
            "p",
            Severity::Medium,
            AlertKind::File,
            "write",
        );
        a.container = container.map(|id| ContainerInfo {
            id: Some(id.to_owned()),
            name: Some("web".to_owned()),
            ..Default::default()
        });
        a
    }

    fn limiter() -> RateLimiter {
        RateLimiter::new(
            RateLimitConfig {
                per_second: 1.0,
                burst: 3,
            },
            "node-1",
        )
    }

    #[test]
    fn burst_then_throttle_notice_then_counted_then_end_notice() {
        let t0 = Instant::now();
        let mut r = limiter();
        let mut out = Vec::new();
        for _ in 0..3 {
            assert!(r.admit(alert(Some("c1"), "a"), t0, &mut out));
        }
        assert_eq!(out.len(), 3);
        assert!(!r.admit(alert(Some("c1"), "a"), t0, &mut out));
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].kind, AlertKind::Agent);
        assert_eq!(out[3].rule, "alerts-throttled");
        assert_eq!(out[3].container_id(), Some("c1"));
        for _ in 0..5 {
            assert!(!r.admit(alert(Some("c1"), "a"), t0, &mut out));
        }
        assert_eq!(out.len(), 4, "one notice per throttle, not per alert");
        assert!(
            out[3].summary.contains("rule a in container web (c1)"),
            "{}",
            out[3].summary
        );
        // Other containers and other rules are not affected.
        assert!(r.admit(alert(Some("c2"), "a"), t0, &mut out));
        assert!(r.admit(alert(Some("c1"), "b"), t0, &mut out));
        // High and critical alerts are never throttled.
        for _ in 0..10 {
            let mut high = alert(Some("c1"), "a");
            high.severity = Severity::High;
            assert!(r.admit(high, t0, &mut out));
        }
        assert_eq!(out.len(), 16);
        assert_eq!(r.throttled(), 1);
        // Not yet full again.
        r.expire(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out.len(), 16);
        r.expire(t0 + Duration::from_secs(3), &mut out);
        assert_eq!(out.len(), 17);
        let end = &out[16];
        assert_eq!(end.rule, "alerts-throttle-ended");
        assert_eq!(end.count, 6);
        assert!(
            end.summary.contains("6 alerts suppressed"),
            "{}",
            end.summary
        );
        assert!(end.summary.contains("(a: 6)"), "{}", end.summary);
        assert_eq!(r.throttled(), 0);
    }

    #[test]
    fn refill_admits_again_at_the_sustained_rate() {
        let t0 = Instant::now();
        let mut r = limiter();
        let mut out = Vec::new();
        for _ in 0..4 {
            r.admit(alert(None, "a"), t0, &mut out);
        }
        assert!(r.admit(alert(None, "a"), t0 + Duration::from_secs(1), &mut out));
        assert!(!r.admit(alert(None, "a"), t0 + Duration::from_secs(1), &mut out));
    }

    #[test]
    fn agent_alerts_pass_and_flush_reports_open_throttles() {
        let t0 = Instant::now();
        let mut r = limiter();
        let mut out = Vec::new();
        for _ in 0..10 {
            r.admit(Alert::agent("n", "lost", Severity::High, "x"), t0, &mut out);
        }
        assert_eq!(out.len(), 10);
        for _ in 0..5 {
            r.admit(alert(Some("c1"), "a"), t0, &mut out);
        }
        out.clear();
        r.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 2);
    }
}
