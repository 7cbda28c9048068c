//! Events from cgroups the registry has not resolved yet, held until it has.
//!
//! A process's first events can reach the agent before the `cgroup_mkdir`
//! of its cgroup (the two race through the ring buffer, or the mkdir was
//! lost) and after the process has exited (so `/proc` cannot say). Judged at
//! once, such an event has no container and would be matched as a host
//! event: container rules missed, host rules misapplied. So the [`Enricher`]
//! holds it, per cgroup and in order, until the cgroup resolves, then
//! attaches the container context and hands the events on.
//!
//! | bound | what happens |
//! | --- | --- |
//! | a held event is older than `max_age` | its cgroup's events go on unresolved (`metadata_status` `pending`, judged as today) and are counted in `released_unresolved` |
//! | `max_events` are held | the oldest held event is dropped and counted in `dropped` |
//!
//! Time is an argument, as everywhere in the pure core.
//!
//! [`Enricher`]: super::Enricher
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::EnrichedEvent;

/// How many events, and for how long, the [`HeldEvents`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    /// Events held at most, over all cgroups.
    pub max_events: usize,
    /// How long an event waits for its cgroup at most.
    pub max_age: Duration,
}

impl Default for HoldLimits {
    fn default() -> Self {
        HoldLimits {
            max_events: 4096,
            max_age: Duration::from_secs(2),
        }
    }
}

/// What the hold has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldStats {
    /// Events held at all.
    pub held: u64,
    /// Events handed on with their container after their cgroup resolved.
    pub resolved: u64,
    /// Events handed on unresolved after `max_age`.
    pub released_unresolved: u64,
    /// Events dropped because `max_events` were held.
    pub dropped: u64,
}

/// Events per unresolved cgroup, oldest first; see the module docs.
#[derive(Debug, Default)]
pub struct HeldEvents {
    limits: HoldLimits,
    by_cgroup: HashMap<u64, VecDeque<(Instant, EnrichedEvent)>>,
    len: usize,
    stats: HoldStats,
}

impl HeldEvents {
    /// An empty hold with these bounds.
    pub fn new(limits: HoldLimits) -> Self {
        HeldEvents {
            limits,
            ..Default::default()
        }
    }

    /// Whether events of `cgroup` are held (a later event of it must wait
    /// behind them, to keep their order).
    pub fn holds(&self, cgroup: u64) -> bool {
        self.by_cgroup.contains_key(&cgroup)
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The counters.
    pub fn stats(&self) -> HoldStats {
        self.stats
    }

    /// The cgroups held, each with the pid of its latest event (for a lookup
    /// through `/proc`).
    pub fn cgroups(&self) -> Vec<(u64, u32)> {
        self.by_cgroup
            .iter()
            .filter_map(|(&cg, q)| q.back().map(|(_, e)| (cg, e.event.header.pid)))
            .collect()
    }

    /// Holds `ev` (of cgroup `ev.event.header.cgroup_id`) seen at `now`.
    pub fn hold(&mut self, ev: EnrichedEvent, now: Instant) {
        if self.len >= self.limits.max_events {
            self.drop_oldest();
        }
        self.by_cgroup
            .entry(ev.event.header.cgroup_id)
            .or_default()
            .push_back((now, ev));
        self.len += 1;
        self.stats.held += 1;
    }

    /// Takes every event of `cgroup`, oldest first, counted as resolved.
    pub fn take_resolved(&mut self, cgroup: u64) -> Vec<EnrichedEvent> {
        let out = self.take(cgroup);
        self.stats.resolved += out.len() as u64;
        out
    }

    /// Takes every event of `cgroup`, oldest first, counted as unresolved.
    pub fn take_unresolved(&mut self, cgroup: u64) -> Vec<EnrichedEvent> {
        let out = self.take(cgroup);
        self.stats.released_unresolved += out.len() as u64;
        out
    }

    /// The cgroups whose oldest event has waited `max_age` by `now`.
    pub fn expired(&self, now: Instant) -> Vec<u64> {
        self.by_cgroup
            .iter()
            .filter(|(_, q)| {
                q.front()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.limits.max_age)
            })
            .map(|(&cg, _)| cg)
            .collect()
    }

    fn take(&mut self, cgroup: u64) -> Vec<EnrichedEvent> {
        let q = self.by_cgroup.remove(&cgroup).unwrap_or_default();
        self.len -= q.len();
        q.into_iter().map(|(_, e)| e).collect()
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .by_cgroup
            .iter()
            .filter_map(|(&cg, q)| q.front().map(|(t, _)| (*t, cg)))
            .min();
        if let Some((_, cg)) = oldest
            && let Some(q) = self.by_cgroup.get_mut(&cg)
        {
            q.pop_front();
            self.len -= 1;
            self.stats.dropped += 1;
            if q.is_empty() {
                self.by_cgroup.remove(&cg);
            }
        }
    }
}
