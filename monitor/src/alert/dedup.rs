//! Folding identical alerts.
//!
//! Two alerts are identical when they share a [`DedupKey`]: the workload (the
//! container id, else the host pid), the rule and the subject (the file path,
//! the destination, or the executable). The choice made here, and why:
//!
//! - The first alert of a key is emitted at once, so detection latency never
//!   depends on the window.
//! - Identical alerts inside the window (which starts at that first alert)
//!   are only counted.
//! - When the window ends and more than one alert was seen, one *folded
//!   update* is emitted: the latest alert's record with a new `id` (receivers
//!   de-duplicate on ids, so an update must not reuse the first one's),
//!   `update_of` = the first alert's id, `count` = all alerts of the window
//!   including the first, and `first_seen`/`last_seen` spanning them.
//! - An alert after the window starts a new window and is emitted at once.
//!
//! The table is bounded: when `max_keys` windows are open, new keys pass
//! through unfolded (never dropped).
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{Alert, new_alert_id};

/// What makes two alerts "identical" for folding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// Container id, or `host:<pid>`.
    pub workload: String,
    pub rule: String,
    /// [`Alert::subject`]: the file path, destination (`tcp 203.0.113.7:443`),
    /// executable with its arguments, else the summary.
    pub subject: String,
}

impl DedupKey {
    pub fn of(alert: &Alert) -> DedupKey {
        DedupKey {
            workload: alert.workload(),
            rule: alert.rule.clone(),
            subject: alert.subject().into_owned(),
        }
    }
}

struct Window {
    opened: Instant,
    first_id: String,
    first_seen: String,
    count: u64,
    /// The latest alert folded in (its record becomes the update).
    latest: Option<Alert>,
}

/// Folds identical alerts within a window; see the module docs.
pub struct Deduplicator {
    window: Duration,
    max_keys: usize,
    open: HashMap<DedupKey, Window>,
}

impl Deduplicator {
    pub fn new(window: Duration, max_keys: usize) -> Deduplicator {
        Deduplicator {
            window,
            max_keys,
            open: HashMap::new(),
        }
    }

    /// Takes one alert seen at `now`; pushes what to emit now onto `out`
    /// (the alert itself if it opens a window, plus the update of an expired
    /// window of the same key).
    pub fn observe(&mut self, alert: Alert, now: Instant, out: &mut Vec<Alert>) {
        if self.window.is_zero() {
            out.push(alert);
            return;
        }
        let key = DedupKey::of(&alert);
        if let Some(w) = self.open.get_mut(&key) {
            if now < w.opened + self.window {
                w.count += 1;
                w.latest = Some(alert);
                return;
            }
            let w = self.open.remove(&key).expect("present");
            out.extend(update(w));
        }
        if self.open.len() >= self.max_keys {
            out.push(alert);
            return;
        }
        self.open.insert(
            key,
            Window {
                opened: now,
                first_id: alert.id.clone(),
                first_seen: alert.first_seen.clone(),
                count: alert.count.max(1),
                latest: None,
            },
        );
        out.push(alert);
    }

    /// Closes the windows that ended by `now`, pushing their folded updates.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Alert>) {
        let window = self.window;
        let mut ended: Vec<(DedupKey, Instant)> = self
            .open
            .iter()
            .filter(|(_, w)| now >= w.opened + window)
            .map(|(k, w)| (k.clone(), w.opened))
            .collect();
        // Oldest window first, so updates come out in a stable order.
        ended.sort_by_key(|(_, opened)| *opened);
        for (key, _) in ended {
            if let Some(w) = self.open.remove(&key) {
                out.extend(update(w));
            }
        }
    }

    /// Closes every window (shutdown), pushing the folded updates.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        let mut all: Vec<Window> = self.open.drain().map(|(_, w)| w).collect();
        all.sort_by_key(|w| w.opened);
        out.extend(all.into_iter().filter_map(update));
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

fn update(w: Window) -> Option<Alert> {
    let mut a = w.latest?;
    a.id = new_alert_id();
    a.update_of = Some(w.first_id);
    a.count = w.count;
    a.first_seen = w.first_seen;
    a.last_seen = a.time.clone();
    Some(a)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use super::*;
    use crate::{
        alert::{AlertKind, Severity},
        context::{ContainerInfo, ProcessInfo},
    };

    fn alert(container: &str, exe: &str, secs: u64) -> Alert {
        let mut a = Alert::at(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
            "node-1",
            "unexpected-process",
            "default/containers",
            Severity::High,
            AlertKind::Process,
            format!("unexpected process {exe}"),
        );
        a.container = Some(ContainerInfo {
            id: Some(container.to_owned()),
            ..Default::default()
        });
        a.process = Some(ProcessInfo {
            pid: 42,
            exe: Some(exe.to_owned()),
            ..Default::default()
        });
        a
    }

    #[test]
    fn first_emitted_at_once_then_one_folded_update() {
        let t0 = Instant::now();
        let mut d = Deduplicator::new(Duration::from_secs(10), 100);
        let mut out = Vec::new();
        let first = alert("c1", "/bin/sh", 0);
        let first_id = first.id.clone();
        d.observe(first, t0, &mut out);
        assert_eq!(out.len(), 1);
        for i in 1..5 {
            d.observe(
                alert("c1", "/bin/sh", i),
                t0 + Duration::from_secs(i),
                &mut out,
            );
        }
        assert_eq!(
            out.len(),
            1,
            "identical alerts inside the window are folded"
        );
        d.expire(t0 + Duration::from_secs(9), &mut out);
        assert_eq!(out.len(), 1);
        d.expire(t0 + Duration::from_secs(10), &mut out);
        assert_eq!(out.len(), 2);
        let u = &out[1];
        assert_eq!(u.count, 5);
        assert_eq!(u.update_of.as_deref(), Some(first_id.as_str()));
        assert_ne!(u.id, first_id);
        assert_eq!(u.first_seen, out[0].time);
        assert_eq!(u.last_seen, rfc(4));
        assert_eq!(d.open_windows(), 0);
    }

    fn rfc(secs: u64) -> String {
        crate::alert::rfc3339_micros(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
        )
    }

    #[test]
    fn single_alert_window_emits_no_update() {
        let t0 = Instant::now();
        let mut d = Deduplicator::new(Duration::from_secs(10), 100);
        let mut out = Vec::new();
        d.observe(alert("c1", "/bin/sh", 0), t0, &mut out);
        d.expire(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn different_workload_or_subject_is_not_folded() {
        let t0 = Instant::now();
        let mut d = Deduplicator::new(Duration::from_secs(10), 100);
        let mut out = Vec::new();
        d.observe(alert("c1", "/bin/sh", 0), t0, &mut out);
        d.observe(alert("c2", "/bin/sh", 0), t0, &mut out);
        d.observe(alert("c1", "/usr/bin/nc", 0), t0, &mut out);
        assert_eq!(out.len(), 3);
        // The same executable with other arguments is another command.
        let mut other = alert("c1", "/bin/sh", 0);
        other.process.as_mut().unwrap().args = vec!["/bin/sh".into(), "-c".into(), "id".into()];
        d.observe(other, t0, &mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn alert_after_window_opens_new_window_and_flushes_old_update() {
        let t0 = Instant::now();
        let mut d = Deduplicator::new(Duration::from_secs(10), 100);
        let mut out = Vec::new();
        d.observe(alert("c1", "/bin/sh", 0), t0, &mut out);
        d.observe(
            alert("c1", "/bin/sh", 1),
            t0 + Duration::from_secs(1),
            &mut out,
        );
        d.observe(
            alert("c1", "/bin/sh", 11),
            t0 + Duration::from_secs(11),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].count, 2);
        assert_eq!(out[2].count, 1);
        assert!(out[2].update_of.is_none());
    }

    #[test]
    fn full_table_passes_alerts_through() {
        let t0 = Instant::now();
        let mut d = Deduplicator::new(Duration::from_secs(10), 1);
        let mut out = Vec::new();
        d.observe(alert("c1", "/bin/sh", 0), t0, &mut out);
        d.observe(alert("c2", "/bin/sh", 0), t0, &mut out);
        d.observe(alert("c2", "/bin/sh", 0), t0, &mut out);
        assert_eq!(out.len(), 3, "nothing is dropped when the table is full");
        let mut rest = Vec::new();
        d.flush(&mut rest);
        assert!(rest.is_empty());
    }

    #[test]
    fn flush_emits_pending_updates() {
        let t0 = Instant::now();
        let mut d = Deduplicator::new(Duration::from_secs(10), 100);
        let mut out = Vec::new();
        d.observe(alert("c1", "/bin/sh", 0), t0, &mut out);
        d.observe(alert("c1", "/bin/sh", 1), t0, &mut out);
        out.clear();
        d.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 2);
    }
}
