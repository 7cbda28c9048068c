//! The task of a spooled (HTTP) sink: the dispatcher has already appended
//! every alert to the spool (write-ahead, see `sink/mod.rs`); the task sends
//! them, oldest first, and acknowledges them only on a 2xx.
use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    Notice, SinkShared, SpoolHandle,
    http::{BoxFuture, Deliver, Outcome},
    spool::Seq,
};
use crate::alert::{Alert, Severity};

/// Retry timing: exponential backoff from `initial` to `max`, with jitter.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(with = "crate::alert::duration_str")]
    pub initial: Duration,
    #[serde(with = "crate::alert::duration_str")]
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`
/// capped at `max`, then "equal jitter": uniformly in [delay/2, delay], so
/// many agents retrying one endpoint spread out.
pub fn backoff(attempt: u32, retry: &RetryConfig) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let delay = retry.initial.saturating_mul(1u32 << exp).min(retry.max);
    let half = delay / 2;
    let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

pub(super) struct SpooledTask {
    pub shared: Arc<SinkShared>,
    pub spool: Arc<SpoolHandle>,
    pub max_spool_bytes: u64,
    pub target: Arc<dyn Deliver>,
    pub retry: RetryConfig,
    pub fsync_interval: Duration,
    pub notices: mpsc::UnboundedSender<Notice>,
    pub deadline: watch::Receiver<Option<std::time::Instant>>,
}

/// At most one notice of each kind per sink in this interval (the counts
/// add up in the next one).
const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

struct Notices {
    spool_dropped: u64,
    spool_dropped_total: u64,
    last_drop_notice: Option<Instant>,
    failed: u64,
    last_failed_notice: Option<Instant>,
    last_failed_reason: String,
}

impl SpooledTask {
    pub(super) async fn run(mut self) {
        let name = self.shared.name.clone();
        let batch = self.target.max_batch();
        let mut inflight: Option<(Seq, u64, BoxFuture<Outcome>)> = None;
        let mut attempt = 0u32;
        let mut next_try = Instant::now();
        let mut closed = false;
        let mut deadline: Option<Instant> = None;
        let mut fsync = tokio::time::interval(self.fsync_interval.max(Duration::from_millis(10)));
        fsync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut notices = Notices {
            spool_dropped: 0,
            spool_dropped_total: 0,
            last_drop_notice: None,
            failed: 0,
            last_failed_notice: None,
            last_failed_reason: String::new(),
        };
        self.publish();
        loop {
            let now = Instant::now();
            if inflight.is_none() && !self.spool.lock().is_empty() && now >= next_try {
                let peeked = self.spool.lock().peek(batch);
                match peeked {
                    Ok(records) => {
                        let last = records.last().map(|r| r.0).unwrap_or(0);
                        let n = records.len() as u64;
                        let fut = self.target.send(records.into_iter().map(|r| r.1).collect());
                        inflight = Some((last, n, fut));
                    }
                    Err(e) => {
                        tracing::error!(sink = %name, error = %e, "reading the spool failed; retrying in 1s");
                        next_try = now + Duration::from_secs(1);
                    }
                }
            }
            if closed {
                let drained = self.spool.lock().is_empty() && inflight.is_none();
                if drained || deadline.is_none_or(|d| now >= d) {
                    break;
                }
            }
            let waiting = inflight.is_none() && !self.spool.lock().is_empty();
            tokio::select! {
                biased;
                _ = self.spool.wake.notified(), if !closed => {
                    if self.spool.closed.load(std::sync::atomic::Ordering::SeqCst) {
                        closed = true;
                        deadline = self.deadline.borrow().map(Instant::from_std);
                        self.sync();
                    }
                    self.report(&mut notices, false);
                    self.publish();
                },
                out = async {
                    match inflight.as_mut() {
                        Some((_, _, f)) => f.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if inflight.is_some() => {
                    let (last, n, _) = inflight.take().expect("in flight");
                    match out {
                        Outcome::Delivered => {
                            let acked = self.spool.lock().ack(last);
                            if let Err(e) = acked {
                                tracing::error!(sink = %name, error = %e, "recording the acknowledgement failed; these alerts may be sent again");
                            }
                            self.shared.metrics.delivered(n);
                            if attempt > 0 {
                                tracing::info!(sink = %name, attempts = attempt + 1, "endpoint reachable again");
                            }
                            attempt = 0;
                            next_try = Instant::now();
                        }
                        Outcome::Retry { after, reason } => {
                            attempt += 1;
                            self.shared.metrics.retried();
                            let delay = after.unwrap_or_else(|| backoff(attempt, &self.retry));
                            if attempt == 1 || attempt.is_multiple_of(10) {
                                let spooled = self.spool.lock().len();
                                tracing::warn!(sink = %name, attempt, ?delay, spooled, %reason, "delivery failed; will retry");
                            }
                            next_try = Instant::now() + delay;
                        }
                        Outcome::Permanent { reason } => {
                            tracing::error!(sink = %name, alerts = n, %reason, "endpoint refused the alerts; dropping them (fix the sink's configuration)");
                            let acked = self.spool.lock().ack(last);
                            if let Err(e) = acked {
                                tracing::error!(sink = %name, error = %e, "recording the acknowledgement failed");
                            }
                            self.shared.metrics.failed(n);
                            notices.failed += n;
                            notices.last_failed_reason = reason;
                            attempt = 0;
                            next_try = Instant::now();
                            self.report(&mut notices, false);
                        }
                    }
                    self.publish();
                },
                _ = tokio::time::sleep_until(next_try), if waiting => {},
                _ = fsync.tick() => {
                    self.sync();
                    self.report(&mut notices, false);
                    self.publish();
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(now)), if closed && deadline.is_some() => {},
            }
        }
        drop(inflight);
        self.sync();
        self.report(&mut notices, true);
        self.publish();
        let spooled = self.spool.lock().len();
        if spooled > 0 {
            tracing::warn!(sink = %name, spooled, "stopping with alerts still spooled; they are sent first at the next start");
        }
    }

    fn sync(&mut self) {
        let synced = self.spool.lock().sync();
        if let Err(e) = synced {
            tracing::error!(sink = %self.shared.name, error = %e, "fsync of the spool failed");
        }
    }

    fn publish(&self) {
        let m = &self.shared.metrics;
        let spool = self.spool.lock();
        m.set_spooled(spool.len(), spool.bytes());
        // Written ahead: nothing waits in memory.
        m.set_queued(0);
    }

    /// Raises the agent alerts about drops and refusals, at most one of each
    /// per [`NOTICE_INTERVAL`] (`force` at shutdown).
    fn report(&mut self, n: &mut Notices, force: bool) {
        let now = Instant::now();
        let due = |last: Option<Instant>| force || last.is_none_or(|l| now >= l + NOTICE_INTERVAL);
        let name = self.shared.name.clone();
        let appended_dropped = self.shared.take_spool_dropped();
        n.spool_dropped += appended_dropped;
        n.spool_dropped_total += appended_dropped;
        let queue_dropped = self.shared.take_queue_dropped();
        if queue_dropped > 0 {
            let mut a = Alert::agent(
                &self.shared.host,
                "sink-queue-full",
                Severity::High,
                format!(
                    "sink {name}: {queue_dropped} alerts dropped because its queue was full (the sink could not keep up)"
                ),
            );
            a.count = queue_dropped;
            self.raise(a, true, n);
        }
        if n.spool_dropped > 0 && due(n.last_drop_notice) {
            let mut a = Alert::agent(
                &self.shared.host,
                "sink-spool-full",
                Severity::High,
                format!(
                    "sink {name}: spool full ({} bytes) while the endpoint was unreachable; dropped the {} oldest undelivered alerts ({} since start)",
                    self.max_spool_bytes, n.spool_dropped, n.spool_dropped_total
                ),
            );
            a.count = n.spool_dropped;
            n.spool_dropped = 0;
            n.last_drop_notice = Some(now);
            self.raise(a, true, n);
        }
        if n.failed > 0 && due(n.last_failed_notice) {
            let mut a = Alert::agent(
                &self.shared.host,
                "sink-refused",
                Severity::High,
                format!(
                    "sink {name}: endpoint refused {} alerts ({}); they were dropped",
                    n.failed, n.last_failed_reason
                ),
            );
            a.count = n.failed;
            n.failed = 0;
            n.last_failed_notice = Some(now);
            // Not to this sink: it just refused.
            self.raise(a, false, n);
        }
    }

    /// Sends a notice to the other sinks and, with `to_self`, appends it to
    /// this sink's own spool directly: through the queue it could be dropped
    /// again and, dropping an older alert, cause a notice about itself.
    /// Drops that appending it causes are counted but raise no new notice.
    fn raise(&mut self, alert: Alert, to_self: bool, n: &mut Notices) {
        if to_self {
            match serde_json::to_vec(&alert) {
                Ok(rec) => match self.spool.lock().append(&rec) {
                    Ok(0) => {}
                    Ok(d) => {
                        self.shared.metrics.dropped("spool_full", d);
                        n.spool_dropped_total += d;
                    }
                    Err(e) => {
                        tracing::error!(sink = %self.shared.name, error = %e, "writing a notice to the spool failed");
                    }
                },
                Err(e) => tracing::error!(error = %e, "notice could not be serialised"),
            }
        }
        let _ = self.notices.send(Notice {
            alert,
            exclude: Some(self.shared.name.clone()),
        });
    }
}
