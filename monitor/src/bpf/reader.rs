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
    time::Duration,
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

/// How often the ring buffer is checked without a wake-up. The kernel
/// programs wake the reader only once a batch is waiting (a wake-up per record
/// is an interrupt per record), so this bounds the latency of a quiet stream.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Records handed on per batch, so a burst does not hold ring memory long.
const BATCH: usize = 256;

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
fn drain(ring: &mut RingBuf<MapData>, batch: &mut Vec<Event>, stats: &ReaderStats) -> bool {
    while batch.len() < BATCH {
        let Some(item) = ring.next() else {
            return true;
        };
        stats.records.fetch_add(1, Ordering::Relaxed);
        match decode(&item) {
            Ok(event) => batch.push(event),
            Err(e) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                warn!("undecodable kernel record: {e}");
            }
        }
    }
    false
}
