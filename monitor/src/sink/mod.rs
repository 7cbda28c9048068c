//! Delivery of alerts: stdout, files, and webhooks (generic, Slack,
//! Alertmanager), at least once.
//!
//! Each sink has one tokio task, so a slow or dead endpoint never slows the
//! event path or the other sinks. The event loop serialises each alert once
//! (and once more per other [`format`] a stdout or file sink asks for) and
//! hands it to every sink without waiting ([`Sinks::dispatch`]). Spools hold
//! the native record; a webhook or syslog sink applies its format when it
//! sends:
//!
//! - a sink with a spool (webhook, Slack, Alertmanager) **writes ahead**: the
//!   dispatcher appends the record to the sink's on-disk [`spool`] itself
//!   (one `write(2)` to the page cache) and wakes the task, which sends from
//!   the spool and removes a record only when the endpoint acknowledged it.
//!   Such a sink has no in-memory queue, so there is nothing to lose on a
//!   full queue or a SIGKILL: what `dispatch` returned from is on disk. A
//!   power loss can lose the last `fsync_interval` (1 s by default; `0s`
//!   syncs after every append, on the event path);
//! - stdout and file sinks have a bounded in-memory queue (`queue`, 4096 by
//!   default) in front of their writer: the line itself is the durable copy.
//!
//! Retries use exponential backoff with jitter on connect errors, timeouts,
//! 408, 429 and 5xx (honouring Retry-After).
//!
//! What drops an alert, exactly; each is counted and reported by an `agent`
//! alert:
//!
//! | counter | sink | when |
//! | --- | --- | --- |
//! | `monitor_sink_dropped_total{reason="spool_full"}` | spooled | the spool holds `spool.max_bytes` of undelivered alerts: the **oldest** are dropped to make room |
//! | `..{reason="spool_error"}` | spooled | the append itself failed (disk full, I/O error): that alert |
//! | `..{reason="corrupt"}` | spooled | at start, a spooled line that is not JSON (a damaged segment) |
//! | `monitor_sink_failed_total` | spooled | the endpoint answered a status that is not retried (3xx, 4xx but 408 and 429): that batch; the configuration needs fixing |
//! | `..{reason="queue_full"}` | stdout, file | the writer is stuck (a blocked pipe, a slow disk) while `queue` alerts wait: the new alert |
//! | `..{reason="closed"}` | stdout, file | an alert dispatched after shutdown began |
//! | `monitor_sink_failed_total` | stdout, file | the write failed |
//!
//! Nothing else drops: a down endpoint, a restart, or a crash of the agent
//! (SIGKILL included) leaves the alerts in the spool, sent first, in order,
//! at the next chance.
//!
//! On shutdown ([`Sinks::shutdown`]) each sink keeps sending for the grace
//! period; whatever is left stays in its spool for the next start.
use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use alertmanager::alertmanager_url;

use crate::{
    alert::Alert,
    metrics::{Metrics, SinkMetrics},
};

pub mod alertmanager;
mod delivery;
pub mod format;
pub mod http;
mod local;
pub mod otlp;
pub(crate) mod private;
mod settings;
pub mod slack;
pub mod spool;
pub mod syslog;

pub use delivery::{RetryConfig, backoff};
pub use format::AlertFormat;
pub use http::{Format, HttpConfig, HttpTarget, Outcome, Signer, TlsConfig};
pub use local::{FileConfig, RotatingFile};
pub use settings::{HttpSinkConfig, SecretSource, SinkConfig, SinkKind, SinksOptions, SpoolConfig};
pub use spool::Spool;

/// Errors a user can cause by configuring a sink; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink configuration: {0}")]
    Config(String),
    #[error("webhook secret: {0}")]
    Secret(String),
    #[error("sink {sink}: opening its spool in {dir}: {source}")]
    Spool {
        sink: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("sink {sink}: opening {path}: {source}")]
    File {
        sink: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An agent alert a sink raises, for the other sinks (and itself unless excluded).
pub(crate) struct Notice {
    pub alert: Alert,
    pub exclude: Option<String>,
}

/// What a sink's task and the dispatcher share.
pub(crate) struct SinkShared {
    pub name: String,
    pub host: String,
    pub metrics: SinkMetrics,
    queue_dropped: AtomicU64,
    /// Records the dispatcher's appends pushed out of a full spool, for the
    /// task's next notice.
    spool_dropped: AtomicU64,
}

impl SinkShared {
    fn take_queue_dropped(&self) -> u64 {
        self.queue_dropped.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn take_spool_dropped(&self) -> u64 {
        self.spool_dropped.swap(0, Ordering::Relaxed)
    }
}

/// A spooled sink's side of the write-ahead: the dispatcher appends, the
/// task sends and acknowledges.
pub(crate) struct SpoolHandle {
    spool: Mutex<Spool>,
    /// Wakes the task: a record was appended, or shutdown began.
    pub wake: tokio::sync::Notify,
    pub closed: AtomicBool,
    /// `fsync_interval: 0s`: sync after every append.
    sync_each: bool,
}

impl SpoolHandle {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record; counts what it drops.
    fn append(&self, shared: &SinkShared, record: &[u8]) {
        let mut spool = self.lock();
        match spool.append(record) {
            Ok(0) => {}
            Ok(dropped) => {
                shared.metrics.dropped("spool_full", dropped);
                shared.spool_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
            Err(e) => {
                shared.metrics.dropped("spool_error", 1);
                tracing::error!(sink = %shared.name, error = %e, "writing to the spool failed; alert dropped (check the spool directory's disk)");
            }
        }
        if self.sync_each
            && let Err(e) = spool.sync()
        {
            tracing::error!(sink = %shared.name, error = %e, "fsync of the spool failed");
        }
        drop(spool);
        self.wake.notify_one();
    }
}

enum Input {
    /// Local sinks: a bounded queue in front of the writer.
    Queue(Mutex<Option<mpsc::Sender<Bytes>>>),
    /// Spooled sinks: straight to disk.
    Spool(Arc<SpoolHandle>),
}

struct Entry {
    shared: Arc<SinkShared>,
    input: Input,
    /// Applied here for queued sinks; spooled sinks keep the native record
    /// on disk and apply it when they send.
    format: AlertFormat,
}

struct Dispatcher {
    entries: Vec<Entry>,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    fn dispatch(&self, alert: &Alert, exclude: Option<&str>) {
        self.metrics.alert(&alert.rule, alert.severity.as_str());
        let record = match serde_json::to_vec(alert) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::error!(error = %e, id = %alert.id, "alert could not be serialised");
                return;
            }
        };
        // Each other format rendered once per alert, when a sink wants it.
        let mut rendered: [Option<Bytes>; 3] = [None, None, None];
        let mut in_format = |f: AlertFormat| -> Bytes {
            if f == AlertFormat::Native {
                return record.clone();
            }
            rendered[f as usize]
                .get_or_insert_with(|| Bytes::from(f.render_bytes(&record)))
                .clone()
        };
        for e in &self.entries {
            if Some(e.shared.name.as_str()) == exclude {
                continue;
            }
            let tx = match &e.input {
                Input::Spool(h) => {
                    h.append(&e.shared, &record);
                    continue;
                }
                Input::Queue(tx) => tx.lock().unwrap_or_else(|p| p.into_inner()),
            };
            let Some(tx) = tx.as_ref() else {
                e.shared.metrics.dropped("closed", 1);
                continue;
            };
            match tx.try_send(in_format(e.format)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    e.shared.metrics.dropped("queue_full", 1);
                    e.shared.queue_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    e.shared.metrics.dropped("closed", 1);
                }
            }
        }
    }

    fn close(&self) {
        for e in &self.entries {
            match &e.input {
                Input::Queue(tx) => {
                    tx.lock().unwrap_or_else(|p| p.into_inner()).take();
                }
                // Appends stay possible (they are sent at the next start);
                // the task only learns to stop.
                Input::Spool(h) => {
                    h.closed.store(true, Ordering::SeqCst);
                    h.wake.notify_one();
                }
            }
        }
    }
}

type Starter = Box<dyn FnOnce() -> JoinHandle<()>>;

/// The running sinks.
pub struct Sinks {
    dispatcher: Arc<Dispatcher>,
    tasks: Vec<JoinHandle<()>>,
    forwarder: Option<JoinHandle<()>>,
    stop_forwarder: Option<oneshot::Sender<()>>,
    deadline: watch::Sender<Option<std::time::Instant>>,
}

impl Sinks {
    /// Opens the spools and files and starts one task per sink. Must be
    /// called inside a tokio runtime.
    pub fn start(
        configs: Vec<SinkConfig>,
        options: SinksOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Sinks, SinkError> {
        let mut names = HashSet::new();
        for c in &configs {
            let ok = !c.name.is_empty()
                && !c.name.starts_with('.')
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
            if !ok {
                return Err(SinkError::Config(format!(
                    "sink name `{}`: use letters, digits, `-`, `_` and `.`",
                    c.name
                )));
            }
            if !names.insert(c.name.clone()) {
                return Err(SinkError::Config(format!(
                    "sink name `{}` used twice",
                    c.name
                )));
            }
        }
        let (deadline, deadline_rx) = watch::channel(None);
        let (notices_tx, mut notices_rx) = mpsc::unbounded_channel::<Notice>();
        let mut entries = Vec::new();
        let mut starters: Vec<Starter> = Vec::new();
        for c in configs {
            let shared = Arc::new(SinkShared {
                name: c.name.clone(),
                host: options.host.clone(),
                metrics: metrics.sink(&c.name),
                queue_dropped: AtomicU64::new(0),
                spool_dropped: AtomicU64::new(0),
            });
            let sh = shared.clone();
            let tick = Duration::from_secs(1);
            let capacity = c.queue.max(1);
            let queue = move || {
                let (tx, rx) = mpsc::channel::<Bytes>(capacity);
                (Input::Queue(Mutex::new(Some(tx))), rx)
            };
            let format = c.format;
            if format != AlertFormat::Native && !SinkConfig::takes_format(&c.kind) {
                return Err(SinkError::Config(format!(
                    "sink {}: `format` applies to stdout, file, webhook and syslog sinks only",
                    c.name
                )));
            }
            let (input, starter): (Input, Starter) = match c.kind {
                SinkKind::Stdout => {
                    let (input, rx) = queue();
                    let w = local::LocalWriter::Stdout(tokio::io::stdout());
                    (
                        input,
                        Box::new(move || tokio::spawn(local::run_local(sh, rx, w, tick))),
                    )
                }
                SinkKind::File(fc) => {
                    let path = fc.path.clone();
                    let f = RotatingFile::open(fc).map_err(|source| SinkError::File {
                        sink: c.name.clone(),
                        path,
                        source,
                    })?;
                    let (input, rx) = queue();
                    let w = local::LocalWriter::File(f);
                    (
                        input,
                        Box::new(move || tokio::spawn(local::run_local(sh, rx, w, tick))),
                    )
                }
                kind => {
                    let (hc, format, default_batch) = match kind {
                        SinkKind::Webhook(hc) => (hc, Format::Generic(format), 1),
                        SinkKind::Slack(hc) => (hc, Format::Slack, 1),
                        SinkKind::Alertmanager(hc) => {
                            let f = Format::Alertmanager {
                                generator_url: hc.generator_url.clone(),
                            };
                            (hc, f, 64)
                        }
                        SinkKind::Syslog(hc) => (hc, Format::Syslog(format), 64),
                        SinkKind::Otlp(hc) => {
                            let f = Format::Otlp(hc.encoding.unwrap_or_default());
                            (hc, f, 64)
                        }
                        SinkKind::Stdout | SinkKind::File(_) => unreachable!("matched above"),
                    };
                    let task = spooled_task(
                        &c.name,
                        hc,
                        format,
                        default_batch,
                        &options,
                        sh,
                        notices_tx.clone(),
                        deadline_rx.clone(),
                    )?;
                    let input = Input::Spool(task.spool.clone());
                    (input, Box::new(move || tokio::spawn(task.run())))
                }
            };
            starters.push(starter);
            entries.push(Entry {
                shared,
                input,
                format,
            });
        }
        drop(notices_tx);
        // Every sink opened without error: only now start the tasks.
        let tasks = starters.into_iter().map(|s| s()).collect();
        let dispatcher = Arc::new(Dispatcher { entries, metrics });
        let (stop_forwarder, mut stop_rx) = oneshot::channel::<()>();
        let d = dispatcher.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                tokio::select! {
                    n = notices_rx.recv() => match n {
                        Some(n) => {
                            tracing::warn!(rule = %n.alert.rule, summary = %n.alert.summary, "agent alert");
                            d.dispatch(&n.alert, n.exclude.as_deref());
                        }
                        None => break,
                    },
                    _ = &mut stop_rx => break,
                }
            }
        });
        Ok(Sinks {
            dispatcher,
            tasks,
            forwarder: Some(forwarder),
            stop_forwarder: Some(stop_forwarder),
            deadline,
        })
    }

    /// Hands one alert to every sink without waiting: serialises it once,
    /// counts it in `monitor_alerts_total`, and queues it on each sink.
    pub fn dispatch(&self, alert: &Alert) {
        self.dispatcher.dispatch(alert, None);
    }

    /// The sinks' names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.dispatcher
            .entries
            .iter()
            .map(|e| e.shared.name.clone())
            .collect()
    }

    /// Stops taking alerts, lets every sink deliver for up to `grace`, and
    /// leaves the rest in the spools (fsynced) for the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        self.deadline
            .send_replace(Some(std::time::Instant::now() + grace));
        self.dispatcher.close();
        let tasks = std::mem::take(&mut self.tasks);
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(grace + Duration::from_secs(2), all)
            .await
            .is_err()
        {
            tracing::warn!("sinks did not stop within the grace period");
        }
        if let Some(stop) = self.stop_forwarder.take() {
            let _ = stop.send(());
        }
    }

    /// Stops every task at once without flushing, as a crash would (tests).
    /// What a spool accepted is on disk (with write-ahead, every alert
    /// dispatched to a spooled sink); what a local sink's queue held is lost.
    pub fn abort(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(f) = self.forwarder.take() {
            f.abort();
        }
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        // Dropped without shutdown: close the queues so the tasks spool what
        // they hold and stop.
        self.dispatcher.close();
        if let Some(stop) = self.stop_forwarder.take() {
            let _ = stop.send(());
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one spooled sink's parts, each owned by the task"
)]
fn spooled_task(
    name: &str,
    hc: HttpSinkConfig,
    format: Format,
    default_batch: usize,
    options: &SinksOptions,
    shared: Arc<SinkShared>,
    notices: mpsc::UnboundedSender<Notice>,
    deadline: watch::Receiver<Option<std::time::Instant>>,
) -> Result<delivery::SpooledTask, SinkError> {
    let mut http = hc.http.clone();
    if matches!(format, Format::Alertmanager { .. }) {
        http.url = alertmanager_url(&http.url);
    }
    if matches!(format, Format::Otlp(_)) {
        http.url = otlp::logs_url(&http.url);
    }
    let signer = match (&hc.secret, &format) {
        (Some(s), Format::Generic(_)) => Some(Signer::from_source(s)?),
        (Some(_), _) => {
            return Err(SinkError::Config(format!(
                "sink {name}: `secret` applies to `webhook` sinks only"
            )));
        }
        (None, _) => None,
    };
    let batch = hc.batch_size.unwrap_or(default_batch);
    let target: Arc<dyn http::Deliver> = match format {
        Format::Syslog(f) => Arc::new(syslog::SyslogTarget::new(&http, batch, f)?),
        format => Arc::new(HttpTarget::new(&http, format, signer, batch)?),
    };
    let dir = hc
        .spool
        .dir
        .clone()
        .unwrap_or_else(|| options.spool_dir.join(name));
    let (spool, recovered) = Spool::open(&dir, hc.spool.max_bytes, hc.spool.segment_bytes)
        .map_err(|source| SinkError::Spool {
            sink: name.to_owned(),
            dir: dir.clone(),
            source,
        })?;
    if recovered.records > 0 || recovered.corrupt > 0 || recovered.torn_bytes > 0 {
        tracing::info!(sink = %name, records = recovered.records, corrupt = recovered.corrupt,
            torn_bytes = recovered.torn_bytes, "spool recovered; sending its alerts first");
    }
    if recovered.corrupt > 0 {
        shared.metrics.dropped("corrupt", recovered.corrupt);
    }
    Ok(delivery::SpooledTask {
        shared,
        spool: Arc::new(SpoolHandle {
            spool: Mutex::new(spool),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            sync_each: hc.spool.fsync_interval.is_zero(),
        }),
        max_spool_bytes: hc.spool.max_bytes,
        target,
        retry: hc.retry.clone(),
        fsync_interval: hc.spool.fsync_interval,
        notices,
        deadline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_config_from_json() {
        let c: Vec<SinkConfig> = serde_json::from_str(
            r#"[
            {"name": "out", "type": "stdout"},
            {"name": "file", "type": "file", "path": "/var/log/monitor/alerts.jsonl", "keep": 3},
            {"name": "hook", "type": "webhook", "url": "https://example.invalid/hook",
             "headers": {"Authorization": "Bearer x"}, "secret": {"env": "HOOK_SECRET"},
             "connect_timeout": "2s", "request_timeout": "10s", "batch_size": 10,
             "spool": {"max_bytes": 1048576, "fsync_interval": "0s"}, "retry": {"initial": "100ms", "max": "30s"},
             "tls": {"ca_file": "/etc/monitor/ca.pem"}},
            {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093", "queue": 10}
        ]"#,
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        let SinkKind::Webhook(h) = &c[2].kind else {
            panic!()
        };
        assert_eq!(h.http.connect_timeout, Duration::from_secs(2));
        assert_eq!(h.spool.fsync_interval, Duration::ZERO);
        assert_eq!(h.retry.initial, Duration::from_millis(100));
        assert_eq!(c[3].queue, 10);
        assert_eq!(
            alertmanager_url("http://a:9093/"),
            "http://a:9093/api/v2/alerts"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let r = RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..40 {
            let d = backoff(attempt, &r);
            let full = (Duration::from_millis(100) * 2u32.pow((attempt - 1).min(20))).min(r.max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
