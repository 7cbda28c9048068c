//! Drains the ring buffer on a tokio task and hands decoded events on.
//!
//! The reader knows records only as bytes: what they decode to is the
//! caller's type ([`FromRecord`], which `event::Event` implements), so the
//! data path reads one way (`bpf` -> `event`). Each record is decoded where
//! it lies in the ring buffer, before its slot is released: no copy.
//!
//! Back-pressure, not loss: when the consumer is slow the channel fills, the
//! reader waits, the ring buffer fills, and the kernel counts what it cannot
//! reserve (`LOST`), which the agent reports. Nothing is dropped silently here.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::warn;

/// A value decoded from one raw ring buffer record.
pub trait FromRecord: Sized + Send + 'static {
    type Error: std::fmt::Display;

    /// Decodes a record as the kernel programs wrote it (`monitor_common`
    /// layouts), borrowed from the ring buffer.
    fn from_record(raw: &[u8]) -> Result<Self, Self::Error>;

    /// The cgroup directory (relative to the cgroup2 mount) a cgroup
    /// mkdir/rmdir record names; `None` for every other record. The kernel
    /// cannot scope these by the acting task (it is whoever made the cgroup),
    /// so the source scopes them by path.
    fn cgroup_path(&self) -> Option<&str>;
}

/// Counters the reader keeps, shared with metrics and health checks.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Unix seconds of the last wake-up: `/healthz` checks the reader is alive.
    pub heartbeat: AtomicU64,
}

/// How often the ring buffer is checked without a wake-up. The kernel
/// programs wake the reader only once a batch is waiting (a wake-up per record
/// is an interrupt per record), so this bounds the latency of a quiet stream.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Records handed on per batch, so a burst does not hold ring memory long.
const BATCH: usize = 256;

/// Reads until the receiver is dropped. Every record is decoded; undecodable
/// ones are counted and logged.
pub async fn run<E: FromRecord>(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<E>,
    stats: Arc<ReaderStats>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // for as long as the AsyncFd owns the ring buffer.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with the runtime: {e}"))?;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        stats
            .heartbeat
            .store(crate::clock::unix_now(), Ordering::Relaxed);
        let drained = match tokio::time::timeout(POLL_INTERVAL, fd.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard?;
                let drained = drain(guard.get_inner_mut(), &mut batch, &stats);
                if drained {
                    guard.clear_ready();
                }
                drained
            }
            // No wake-up: look anyway, records below the wake-up mark wait there.
            Err(_) => drain(fd.get_mut(), &mut batch, &stats),
        };
        for event in batch.drain(..) {
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
        if drained && tx.is_closed() {
            return Ok(());
        }
    }
}

/// Decodes up to a batch of records; true when the ring buffer is empty.
fn drain<E: FromRecord>(
    ring: &mut RingBuf<MapData>,
    batch: &mut Vec<E>,
    stats: &ReaderStats,
) -> bool {
    while batch.len() < BATCH {
        let Some(item) = ring.next() else {
            return true;
        };
        stats.records.fetch_add(1, Ordering::Relaxed);
        match E::from_record(&item) {
            Ok(event) => batch.push(event),
            Err(e) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                warn!("undecodable kernel record: {e}");
            }
        }
    }
    false
}
