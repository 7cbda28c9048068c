//! Drains the ring buffer on a tokio task and hands decoded events on.
//!
//! Back-pressure, not loss: when the consumer is slow the channel fills, the
//! reader waits, the ring buffer fills, and the kernel counts what it cannot
//! reserve (`LOST`), which the agent reports. Nothing is dropped silently here.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::warn;

use crate::event::{Event, decode::decode};

/// Counters the reader keeps, shared with metrics and health checks.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Unix seconds of the last wake-up: `/healthz` checks the reader is alive.
    pub heartbeat: AtomicU64,
}

/// Reads until the receiver is dropped. Every record is decoded; undecodable
/// ones are counted and logged.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Event>,
    stats: Arc<ReaderStats>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // for as long as the AsyncFd owns the ring buffer.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with the runtime: {e}"))?;
    let mut batch = Vec::with_capacity(256);
    loop {
        stats.heartbeat.store(unix_now(), Ordering::Relaxed);
        let readable =
            tokio::time::timeout(std::time::Duration::from_secs(1), fd.readable_mut()).await;
        let Ok(guard) = readable else {
            // Idle: wake up anyway so the heartbeat stays fresh.
            if tx.is_closed() {
                return Ok(());
            }
            continue;
        };
        let mut guard = guard?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            stats.records.fetch_add(1, Ordering::Relaxed);
            match decode(&item) {
                Ok(event) => batch.push(event),
                Err(e) => {
                    stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    warn!("undecodable kernel record: {e}");
                }
            }
            // Hand events on in batches so a burst does not hold ring memory.
            if batch.len() == batch.capacity() {
                break;
            }
        }
        let drained = batch.len() < batch.capacity();
        for event in batch.drain(..) {
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
        if drained {
            guard.clear_ready();
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
