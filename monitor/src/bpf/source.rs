//! The agent's input: the programs loaded, the ring buffer read on its own
//! task, the optional cgroup scope kept in step, and the lost-event counters.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
};

use anyhow::{Context as _, bail};
use monitor_common::{kind, loss};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::warn;

use super::{
    CgroupFilter, CgroupLoss, CgroupLossMap, Fairness, LostCounters, Started, cgroupfs,
    load::LostTotals, losses::CgroupLossTracker, reader, reader::FromRecord,
};

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// cgroup v2 directories (absolute, or relative to the cgroup2 mount), each
    /// with its descendants. Empty: the whole machine.
    pub cgroups: Vec<PathBuf>,
    pub ring_buffer_bytes: u32,
    /// Each cgroup's share of the ring buffer.
    pub fairness: Fairness,
    /// The kernel's BTF, where `/sys/kernel/btf/vmlinux` is missing.
    pub btf: Option<PathBuf>,
    /// `--enforce`: load the enforcing programs.
    pub enforce: bool,
    /// Which hook tiers may serve the concerns (`--hook-tier`).
    pub tier: super::hooks::TierChoice,
    /// Report each cgroup's first use of a call outside this profile
    /// (`--syscall-profile`).
    pub syscall_profile: super::profile::ProfileChoice,
}

/// Records of one kind the kernel programs could not send, for one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub kind: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

impl Lost {
    /// What happened, in words, for logs and `agent` alerts.
    pub fn describe(&self) -> &'static str {
        match self.reason {
            "ring_buffer_full" => "the ring buffer was full",
            "stash_full" => "the per-thread argument stash was full",
            "read_fault" => "a read of the event's data faulted",
            "no_scratch" => "no per-CPU scratch space",
            "rate_limited" => "a cgroup sent more than its share (the per-cgroup budget)",
            _ => "an unknown failure",
        }
    }
}

/// Events as they come from the kernel, within the scope asked for, each
/// decoded into an `E` (`EventSource<event::Event>`).
pub struct EventSource<E: FromRecord> {
    pub started: Started,
    rx: mpsc::Receiver<E>,
    pub stats: Arc<reader::ReaderStats>,
    /// Decode errors already reported by [`EventSource::newly_undecodable`].
    decode_errors_seen: u64,
    lost: LostCounters,
    lost_seen: LostTotals,
    cgroup_lost: CgroupLossMap,
    cgroup_lost_seen: CgroupLossTracker,
    scope: Option<Scope>,
    reader: JoinHandle<anyhow::Result<()>>,
}

impl<E: FromRecord> EventSource<E> {
    pub fn start(opts: &SourceOptions) -> anyhow::Result<EventSource<E>> {
        let filtered = !opts.cgroups.is_empty();
        let mut started = super::start(opts, true)?;
        let scope = if filtered {
            let kernel_filter = started.kernel.take_cgroup_filter()?;
            Some(Scope::new(
                &started.cgroup2_mount,
                &opts.cgroups,
                kernel_filter,
            )?)
        } else {
            None
        };
        let ring = started.kernel.take_events()?;
        let lost = started.kernel.take_lost_counters()?;
        let cgroup_lost = started.kernel.take_cgroup_losses()?;
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(reader::ReaderStats::default());
        let reader = tokio::spawn(reader::run(ring, tx, stats.clone()));
        Ok(EventSource {
            started,
            rx,
            stats,
            decode_errors_seen: 0,
            lost,
            lost_seen: Default::default(),
            cgroup_lost,
            cgroup_lost_seen: Default::default(),
            scope,
            reader,
        })
    }

    /// The next event in scope; `None` when the reader has stopped.
    pub async fn next(&mut self) -> Option<E> {
        loop {
            let event = self.rx.recv().await?;
            if self.in_scope(&event) {
                return Some(event);
            }
        }
    }

    /// The next event in scope if one is already waiting: lets a consumer
    /// batch its output and flush only when it has caught up.
    pub fn try_next(&mut self) -> Option<E> {
        loop {
            let event = self.rx.try_recv().ok()?;
            if self.in_scope(&event) {
                return Some(event);
            }
        }
    }

    /// Whether the event belongs to the scope. Every other event was already
    /// filtered in the kernel; cgroup events come from whoever made the
    /// cgroup, so their path decides.
    fn in_scope(&self, event: &E) -> bool {
        match (&self.scope, event.cgroup_path()) {
            (Some(scope), Some(path)) => scope.covers(path),
            _ => true,
        }
    }

    /// Records that did not decode since the last call (each was logged).
    pub fn newly_undecodable(&mut self) -> u64 {
        let now = self.stats.decode_errors.load(Ordering::Relaxed);
        let new = now.saturating_sub(self.decode_errors_seen);
        self.decode_errors_seen = now;
        new
    }

    /// Records the kernel could not send since the last call: kind name,
    /// reason name (`monitor_common::loss`), how many.
    pub fn newly_lost(&mut self) -> Vec<Lost> {
        let totals = match self.lost.totals() {
            Ok(totals) => totals,
            Err(e) => {
                warn!("cannot read the lost-event counters: {e:#}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (k, (now, seen)) in totals.iter().zip(self.lost_seen.iter_mut()).enumerate() {
            for (r, (&now, seen)) in now.iter().zip(seen.iter_mut()).enumerate() {
                let count = now.saturating_sub(*seen);
                *seen = now;
                if count > 0 {
                    out.push(Lost {
                        kind: kind::name(k as u32),
                        reason: loss::name(r as u32),
                        count,
                    });
                }
            }
        }
        out
    }

    /// The kernel's losses by cgroup since the last call: every cgroup with
    /// new ones, by kind and reason.
    pub fn newly_lost_by_cgroup(&mut self) -> Vec<CgroupLoss> {
        self.cgroup_lost_seen.update(self.cgroup_lost.snapshot())
    }

    /// Forgets the cgroups gone since the last call (`known` says which the
    /// registry still has): their keys leave the kernel map. Returns their ids.
    pub fn forget_lost_cgroups(&mut self, known: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut out = Vec::new();
        for (id, keys) in self.cgroup_lost_seen.retire(known) {
            for key in keys {
                if let Err(e) = self.cgroup_lost.remove(key) {
                    // Already gone (never stored, or removed): nothing left to free.
                    tracing::debug!(cgroup_id = id, "removing a loss counter: {e:#}");
                }
            }
            out.push(id);
        }
        out
    }

    /// All records lost since start.
    pub fn lost_total(&self) -> u64 {
        self.lost_seen.iter().flatten().sum()
    }

    pub fn records(&self) -> u64 {
        self.stats.records.load(Ordering::Relaxed)
    }

    pub fn cgroup2_mount(&self) -> &Path {
        &self.started.cgroup2_mount
    }

    /// Whether a cgroup path (relative to the cgroup2 mount) is inside the
    /// `--cgroup` scope; every path is without `--cgroup`.
    pub fn covers(&self, path: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.covers(path))
    }

    /// Whether the reader task is still running.
    pub fn reader_alive(&self) -> bool {
        !self.reader.is_finished()
    }
}

impl<E: FromRecord> Drop for EventSource<E> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A set of cgroup subtrees. Their roots go in the kernel's filter, which
/// decides for every cgroup below them from the task's own ancestry; here the
/// paths decide which cgroup events belong to the scope.
struct Scope {
    /// Paths relative to the cgroup2 mount, starting with `/`.
    roots: Vec<String>,
}

impl Scope {
    fn new(mount: &Path, dirs: &[PathBuf], mut kernel: CgroupFilter) -> anyhow::Result<Self> {
        let mut roots = Vec::new();
        for dir in dirs {
            let abs = if dir.is_absolute() {
                dir.clone()
            } else {
                mount.join(dir)
            };
            let rel = abs.strip_prefix(mount).with_context(|| {
                format!(
                    "--cgroup {} is not below the cgroup v2 mount {}",
                    dir.display(),
                    mount.display()
                )
            })?;
            if !abs.is_dir() {
                bail!("--cgroup {}: no such cgroup directory", abs.display());
            }
            roots.push(format!("/{}", rel.display()).replace("//", "/"));
            kernel.add(cgroupfs::cgroup_id(&abs)?)?;
        }
        Ok(Scope { roots })
    }

    pub(crate) fn covers(&self, path: &str) -> bool {
        self.roots
            .iter()
            .any(|r| r == "/" || path == r || path.starts_with(&format!("{r}/")))
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;

    #[test]
    fn a_scope_covers_its_roots_and_what_is_below_them_only() {
        let scope = Scope {
            roots: vec!["/kubepods/pod1".to_owned()],
        };
        assert!(scope.covers("/kubepods/pod1"));
        assert!(scope.covers("/kubepods/pod1/abc"));
        assert!(!scope.covers("/kubepods/pod10"));
        assert!(!scope.covers("/kubepods"));
        let everything = Scope {
            roots: vec!["/".to_owned()],
        };
        assert!(everything.covers("/system.slice/cron.service"));
    }
}
