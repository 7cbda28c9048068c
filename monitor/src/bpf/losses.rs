//! Losses by container: the kernel's per-cgroup fairness budget and the
//! per-cgroup loss counters (`CGROUP_LOST`), read into deltas by cgroup,
//! kind and reason.
//!
//! | piece | where | what |
//! | --- | --- | --- |
//! | [`Fairness`] | settings, before load | each cgroup's share of the ring buffer |
//! | `CGROUP_LOST` | kernel map | every loss whose cgroup the failing program knows, by cgroup, kind, reason |
//! | [`CgroupLossMap`] | agent | reads the map, removes a gone cgroup's keys |
//! | [`CgroupLossTracker`] | agent, pure | turns snapshots into new losses, says which cgroups to forget |
use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuHashMap};
use monitor_common::{CgroupLossKey, kind, loss};

/// Each cgroup's share of the ring buffer: how many file, network and
/// syscall records its tasks may send a second (`rate`), and at once after a
/// quiet spell (`burst`). Exec, fork, exit and cgroup records are never
/// budgeted (they build the process table and the container map). Records
/// over the budget are dropped in the kernel, before they are built, and
/// counted as `rate_limited`, for the cgroup and in the totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fairness {
    /// Records a second; 0 switches the budget off.
    pub rate: u32,
    /// Records at once.
    pub burst: u32,
}

impl Fairness {
    /// 20,000 records a second per cgroup. Ten containers at their full
    /// budget make 200,000 a second, the agent's throughput target (the
    /// bench measured it lossless up to the 160,000-178,000 a second its
    /// generators reached, `BENCHMARKS.md`);
    /// the existing tests' largest burst from one cgroup is 2,000 opens
    /// (`kernel_trace`'s zero-loss test), a tenth of it. One open-write-close
    /// loop makes about 350,000 a second (`KERNEL-NOTES.md`): a flood is
    /// far over it, an ordinary workload (a build, a package install) under.
    pub const DEFAULT_RATE: u32 = 20_000;
    /// One second's worth at the default rate: a workload's start-up spike
    /// passes whole. (An idle 8 MiB ring buffer holds about 5,000 of the
    /// largest file records, so one burst can still fill it when the agent
    /// does not drain it meanwhile; the budget bounds a flood's steady share.)
    pub const DEFAULT_BURST: u32 = 20_000;

    /// The ring buffer time one record costs its cgroup; 0 when off.
    pub fn interval_ns(&self) -> u64 {
        match self.rate {
            0 => 0,
            rate => (1_000_000_000 / u64::from(rate)).max(1),
        }
    }

    /// How far ahead of now a cgroup's budget may run (`burst` records).
    pub fn burst_ns(&self) -> u64 {
        self.interval_ns() * u64::from(self.burst.max(1))
    }

    pub fn is_on(&self) -> bool {
        self.rate != 0
    }
}

impl Default for Fairness {
    fn default() -> Self {
        Fairness {
            rate: Self::DEFAULT_RATE,
            burst: Self::DEFAULT_BURST,
        }
    }
}

/// `(cgroup id, kind, reason)`, as the kernel map keys it.
pub type LossKey = (u64, u32, u32);

/// The kernel's per-cgroup loss counters.
pub struct CgroupLossMap(pub(super) PerCpuHashMap<MapData, CgroupLossKey, u64>);

impl CgroupLossMap {
    /// Every key and its count (over all CPUs) since the key was made.
    pub fn snapshot(&self) -> Vec<(LossKey, u64)> {
        self.0
            .iter()
            // A key removed while iterating is skipped: its cgroup is gone.
            .filter_map(Result::ok)
            .map(|(k, v)| ((k.cgroup_id, k.kind, k.reason), v.iter().sum()))
            .collect()
    }

    /// Removes a key of a cgroup that went away.
    pub fn remove(&mut self, key: LossKey) -> anyhow::Result<()> {
        let key = CgroupLossKey {
            cgroup_id: key.0,
            kind: key.1,
            reason: key.2,
        };
        Ok(self.0.remove(&key)?)
    }
}

/// New losses of one cgroup since the last read, by kind and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLoss {
    pub cgroup_id: u64,
    /// `(kind, reason, new since the last read, total since start)`, by kind
    /// then reason; only those with new losses.
    pub counts: Vec<LossCount>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossCount {
    pub kind: &'static str,
    pub reason: &'static str,
    pub count: u64,
    pub total: u64,
}

impl CgroupLoss {
    /// New losses of every kind and reason.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.count).sum()
    }
}

/// What was last read of each key, and which cgroups the registry knew.
#[derive(Debug, Default)]
pub struct CgroupLossTracker {
    seen: BTreeMap<LossKey, u64>,
    cgroups: BTreeMap<u64, Presence>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Presence {
    /// The registry knew the cgroup at some read.
    known: bool,
    /// Reads in a row at which the registry did not know it.
    misses: u32,
}

/// Reads a never-known cgroup is kept for before it is forgotten: one
/// removed before its first read, or whose path was never resolved.
const UNKNOWN_READS: u32 = 3;

impl CgroupLossTracker {
    /// The losses new in `snapshot` (the whole map, as read), one entry per
    /// cgroup with any, by cgroup id.
    pub fn update(
        &mut self,
        snapshot: impl IntoIterator<Item = (LossKey, u64)>,
    ) -> Vec<CgroupLoss> {
        let mut out: BTreeMap<u64, Vec<LossCount>> = BTreeMap::new();
        let mut sorted: Vec<(LossKey, u64)> = snapshot.into_iter().collect();
        sorted.sort_unstable();
        for (key, now) in sorted {
            let seen = self.seen.entry(key).or_insert(0);
            // A key re-made after removal starts again from 0.
            let count = now.saturating_sub(*seen);
            *seen = now;
            self.cgroups.entry(key.0).or_default();
            if count > 0 {
                out.entry(key.0).or_default().push(LossCount {
                    kind: kind::name(key.1),
                    reason: loss::name(key.2),
                    count,
                    total: now,
                });
            }
        }
        out.into_iter()
            .map(|(cgroup_id, counts)| CgroupLoss { cgroup_id, counts })
            .collect()
    }

    /// The cgroups to forget now, with their keys: those the registry knew
    /// and no longer does (removed), and those it never knew for
    /// [`UNKNOWN_READS`] reads. Their state here is dropped; the caller
    /// removes the keys from the kernel map and their metrics.
    pub fn retire(&mut self, known: impl Fn(u64) -> bool) -> Vec<(u64, Vec<LossKey>)> {
        let mut gone = Vec::new();
        for (&id, p) in self.cgroups.iter_mut() {
            if known(id) {
                p.known = true;
                p.misses = 0;
                continue;
            }
            p.misses += 1;
            if p.known || p.misses >= UNKNOWN_READS {
                gone.push(id);
            }
        }
        gone.into_iter()
            .map(|id| {
                self.cgroups.remove(&id);
                let keys: Vec<LossKey> = self
                    .seen
                    .range((id, 0, 0)..=(id, u32::MAX, u32::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                for k in &keys {
                    self.seen.remove(k);
                }
                (id, keys)
            })
            .collect()
    }

    /// Cgroups with losses, tracked now.
    pub fn cgroups(&self) -> usize {
        self.cgroups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::kind as k;

    const FILE_RATE: (u32, u32) = (k::FILE, loss::RATE_LIMITED);

    fn key(cg: u64, (kind, reason): (u32, u32)) -> LossKey {
        (cg, kind, reason)
    }

    #[test]
    fn fairness_turns_rate_and_burst_into_the_kernels_nanoseconds() {
        let f = Fairness {
            rate: 1000,
            burst: 50,
        };
        assert_eq!(f.interval_ns(), 1_000_000);
        assert_eq!(f.burst_ns(), 50_000_000);
        let off = Fairness { rate: 0, burst: 50 };
        assert_eq!(
            (off.interval_ns(), off.burst_ns(), off.is_on()),
            (0, 0, false)
        );
        // A rate above a billion still costs each record something.
        let fast = Fairness {
            rate: u32::MAX,
            burst: 0,
        };
        assert_eq!((fast.interval_ns(), fast.burst_ns()), (1, 1));
        let d = Fairness::default();
        assert!(d.is_on() && d.burst >= 2000 * 10 && d.rate >= 10_000);
    }

    #[test]
    fn only_new_losses_are_reported_by_cgroup_kind_and_reason() {
        let mut t = CgroupLossTracker::default();
        let net_ring = (k::NET, loss::RING_FULL);
        let first = t.update([
            (key(7, FILE_RATE), 100),
            (key(7, net_ring), 2),
            (key(9, FILE_RATE), 5),
        ]);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].cgroup_id, 7);
        assert_eq!(first[0].count(), 102);
        assert_eq!(
            first[0].counts[0],
            LossCount {
                kind: "file",
                reason: "rate_limited",
                count: 100,
                total: 100
            }
        );
        assert_eq!(first[0].counts[1].kind, "network");
        assert_eq!(first[0].counts[1].reason, "ring_buffer_full");
        // Nothing new: nothing reported.
        assert!(
            t.update([(key(7, FILE_RATE), 100), (key(9, FILE_RATE), 5)])
                .is_empty()
        );
        let next = t.update([(key(7, FILE_RATE), 150), (key(9, FILE_RATE), 5)]);
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].counts[0].count, next[0].counts[0].total),
            (50, 150)
        );
    }

    #[test]
    fn a_removed_cgroup_is_forgotten_with_its_keys() {
        let mut t = CgroupLossTracker::default();
        t.update([
            (key(7, FILE_RATE), 1),
            (key(7, (k::SYSCALL, loss::RATE_LIMITED)), 1),
            (key(8, FILE_RATE), 1),
        ]);
        assert!(t.retire(|_| true).is_empty());
        let gone = t.retire(|id| id != 7);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, 7);
        assert_eq!(gone[0].1.len(), 2);
        assert_eq!(t.cgroups(), 1);
        // Made again (the kernel counts from 0 in a new key): all of it is new.
        let again = t.update([(key(7, FILE_RATE), 3)]);
        assert_eq!(again[0].counts[0].count, 3);
    }

    #[test]
    fn a_cgroup_never_known_is_kept_a_few_reads_then_forgotten() {
        let mut t = CgroupLossTracker::default();
        t.update([(key(5, FILE_RATE), 1)]);
        for _ in 1..UNKNOWN_READS {
            assert!(t.retire(|_| false).is_empty());
        }
        assert_eq!(t.retire(|_| false)[0].0, 5);
        assert_eq!(t.cgroups(), 0);
    }
}
