//! One alert per port scan: the per-destination egress alerts of a scan fold
//! into the scan's alert.
//!
//! A port scan is seen as many connections, each off the egress allowlist,
//! before the port-scan rule has counted enough of them to fire. So:
//!
//! - an egress alert (kind `network`, not a scan) is held for `hold` per
//!   workload, then sent as it is if no scan alert of that workload came;
//! - a scan alert takes every egress alert its workload has held: they are
//!   dropped and counted in its `scan.folded_alerts`; it is sent at once;
//! - for `window` after a scan alert, that workload's egress alerts are only
//!   counted; when the window ends and some were, one update of the scan
//!   alert (new `id`, `update_of` the scan's) says how many in all.
//!
//! Egress alerts are therefore late by up to `hold` (plus the pipeline's
//! tick). Other alerts pass straight through. Time is an argument.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{Alert, AlertKind, new_alert_id};

struct Held {
    since: Instant,
    alerts: Vec<Alert>,
}

struct Open {
    until: Instant,
    alert: Alert,
    /// Folded after the scan alert was sent.
    later: u64,
}

/// Folds egress alerts into port-scan alerts; see the module docs.
pub struct ScanFolder {
    hold: Duration,
    window: Duration,
    held: HashMap<String, Held>,
    open: HashMap<String, Open>,
}

fn is_egress(a: &Alert) -> bool {
    a.kind == AlertKind::Network && a.scan.is_none() && a.network.is_some()
}

impl ScanFolder {
    /// Holds egress alerts for `hold` (zero turns folding off); folds into a
    /// scan for `window` after its alert.
    pub fn new(hold: Duration, window: Duration) -> ScanFolder {
        ScanFolder {
            hold,
            window,
            held: HashMap::new(),
            open: HashMap::new(),
        }
    }

    /// Takes one alert seen at `now`; pushes what to pass on now.
    pub fn observe(&mut self, mut alert: Alert, now: Instant, out: &mut Vec<Alert>) {
        if self.hold.is_zero() {
            out.push(alert);
            return;
        }
        let workload = alert.workload();
        if let Some(scan) = alert.scan.as_mut() {
            let held = self.held.remove(&workload).map_or(0, |h| h.alerts.len());
            scan.folded_alerts += held as u64;
            if let Some(o) = self.open.remove(&workload) {
                out.extend(update(o));
            }
            self.open.insert(
                workload,
                Open {
                    until: now + self.window,
                    alert: alert.clone(),
                    later: 0,
                },
            );
            out.push(alert);
            return;
        }
        if !is_egress(&alert) {
            out.push(alert);
            return;
        }
        if let Some(o) = self.open.get_mut(&workload)
            && now < o.until
        {
            o.later += 1;
            return;
        }
        self.held
            .entry(workload)
            .or_insert_with(|| Held {
                since: now,
                alerts: Vec::new(),
            })
            .alerts
            .push(alert);
    }

    /// Releases holds that ended and closes scan windows that ended by `now`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Alert>) {
        let hold = self.hold;
        let mut done: Vec<(Instant, String)> = self
            .held
            .iter()
            .filter(|(_, h)| now >= h.since + hold)
            .map(|(k, h)| (h.since, k.clone()))
            .collect();
        done.sort();
        for (_, k) in done {
            if let Some(h) = self.held.remove(&k) {
                out.extend(h.alerts);
            }
        }
        let ended: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| now >= o.until)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(o) = self.open.remove(&k) {
                out.extend(update(o));
            }
        }
    }

    /// Everything held and every pending update (shutdown).
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        let mut held: Vec<Held> = self.held.drain().map(|(_, h)| h).collect();
        held.sort_by_key(|h| h.since);
        out.extend(held.into_iter().flat_map(|h| h.alerts));
        let open: Vec<Open> = self.open.drain().map(|(_, o)| o).collect();
        out.extend(open.into_iter().filter_map(update));
    }
}

/// The update of a scan alert that folded more egress alerts after it was sent.
fn update(o: Open) -> Option<Alert> {
    if o.later == 0 {
        return None;
    }
    let mut a = o.alert;
    a.update_of = Some(a.id.clone());
    a.id = new_alert_id();
    if let Some(s) = a.scan.as_mut() {
        s.folded_alerts += o.later;
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        alert::Severity,
        context::ContainerInfo,
        event::{Family, NetOp, NetworkInfo, Protocol},
        finding::ScanSummary,
    };

    fn egress(container: &str, port: u16) -> Alert {
        let mut a = Alert::new(
            "n",
            "egress",
            "default/egress",
            Severity::Medium,
            AlertKind::Network,
            "egress",
        );
        a.container = Some(ContainerInfo {
            id: Some(container.into()),
            ..Default::default()
        });
        a.network = Some(NetworkInfo {
            action: None,
            op: NetOp::Connect,
            protocol: Protocol::Tcp,
            family: Family::Ipv4,
            daddr: "203.0.113.7".parse().unwrap(),
            dport: port,
            dns: None,
        });
        a
    }

    fn scan(container: &str) -> Alert {
        let mut a = egress(container, 1019);
        a.rule = "port-scan".into();
        a.scan = Some(ScanSummary {
            ports: (1000..1020).collect(),
            hosts: vec!["203.0.113.7".into()],
            distinct_ports: 20,
            distinct_hosts: 1,
            folded_alerts: 0,
        });
        a
    }

    #[test]
    fn a_scan_is_one_alert_and_one_update() {
        let t0 = Instant::now();
        let mut f = ScanFolder::new(Duration::from_secs(2), Duration::from_secs(10));
        let mut out = Vec::new();
        for p in 1000..1019 {
            f.observe(egress("c1", p), t0, &mut out);
        }
        // Another container's egress is not part of the scan.
        f.observe(egress("c2", 443), t0, &mut out);
        assert!(out.is_empty(), "egress alerts are held");
        f.observe(scan("c1"), t0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].scan.as_ref().unwrap().folded_alerts, 19);
        let id = out[0].id.clone();
        for p in 1020..1100 {
            f.observe(egress("c1", p), t0 + Duration::from_millis(500), &mut out);
        }
        assert_eq!(out.len(), 1, "the rest of the scan is counted");
        f.expire(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out.len(), 2, "c2's egress alert is released after the hold");
        assert_eq!(out[1].container_id(), Some("c2"));
        f.expire(t0 + Duration::from_secs(10), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].update_of.as_deref(), Some(id.as_str()));
        assert_eq!(out[2].scan.as_ref().unwrap().folded_alerts, 99);
    }

    #[test]
    fn lone_egress_is_sent_after_the_hold_and_others_pass() {
        let t0 = Instant::now();
        let mut f = ScanFolder::new(Duration::from_secs(2), Duration::from_secs(10));
        let mut out = Vec::new();
        f.observe(egress("c1", 443), t0, &mut out);
        let mut shell = egress("c1", 0);
        shell.kind = AlertKind::Process;
        shell.network = None;
        f.observe(shell, t0, &mut out);
        assert_eq!(out.len(), 1, "non-egress alerts pass at once");
        f.expire(t0 + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 1);
        f.expire(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out.len(), 2);
        // Off: nothing held.
        let mut off = ScanFolder::new(Duration::ZERO, Duration::from_secs(10));
        off.observe(egress("c1", 443), t0, &mut out);
        assert_eq!(out.len(), 3);
        let mut f = ScanFolder::new(Duration::from_secs(2), Duration::from_secs(10));
        f.observe(egress("c1", 443), t0, &mut out);
        f.flush(&mut out);
        assert_eq!(out.len(), 4);
    }
}
