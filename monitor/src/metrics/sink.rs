//! One sink's counters, handed to the sink so it updates them without lookups.
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

use super::SinkReasonLabels;

/// One sink's counters (cheap to clone; all clones update the same values).
#[derive(Clone)]
pub struct SinkMetrics {
    pub(super) name: String,
    pub(super) delivered: Counter,
    pub(super) failed: Counter,
    pub(super) retries: Counter,
    pub(super) queued: Gauge,
    pub(super) spooled: Gauge,
    pub(super) spooled_bytes: Gauge,
    pub(super) dropped: Family<SinkReasonLabels, Counter>,
}

impl SinkMetrics {
    pub fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }
    pub fn failed(&self, n: u64) {
        self.failed.inc_by(n);
    }
    pub fn retried(&self) {
        self.retries.inc();
    }
    pub fn set_queued(&self, n: u64) {
        self.queued.set(n as i64);
    }
    pub fn set_spooled(&self, records: u64, bytes: u64) {
        self.spooled.set(records as i64);
        self.spooled_bytes.set(bytes as i64);
    }
    /// `n` alerts dropped for `reason` (`spool_full`, `queue_full`, `closed`, `corrupt`).
    pub fn dropped(&self, reason: &str, n: u64) {
        self.dropped
            .get_or_create(&SinkReasonLabels {
                sink: self.name.clone(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.get()
    }
    pub fn failed_total(&self) -> u64 {
        self.failed.get()
    }
    pub fn retried_total(&self) -> u64 {
        self.retries.get()
    }
    pub fn queued_now(&self) -> u64 {
        self.queued.get().max(0) as u64
    }
    pub fn spooled_now(&self) -> u64 {
        self.spooled.get().max(0) as u64
    }
    pub fn dropped_total(&self, reason: &str) -> u64 {
        self.dropped
            .get(&SinkReasonLabels {
                sink: self.name.clone(),
                reason: reason.to_owned(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }
}
