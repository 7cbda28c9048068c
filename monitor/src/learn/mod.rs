//! `monitor learn`: what each workload does, watched for a while, written as
//! rule files a person can read, edit and then make active.
//!
//! Events are grouped by workload identity ([`identity::Workload`]): the
//! owning Kubernetes workload (so that replicas merge), else the image
//! repository, else the container's name. Each workload gathers its
//! programs (executable and parent), the directories it writes, where it
//! connects (by DNS name when it resolved the address, else by address) and
//! the ports it listens on; [`render`] writes them as one policy per
//! workload, [`state`] keeps the counts between runs.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    context::EnrichedEvent,
    event::{EventBody, FileOp, NetOp, Protocol},
};

pub mod identity;
pub mod render;
pub mod state;
pub mod watch;

pub use identity::Workload;
pub use watch::{LearnOptions, run};

/// How often something was seen, and when first and last (RFC 3339).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub count: u64,
    pub first: String,
    pub last: String,
}

impl Seen {
    fn at(&mut self, time: &str) {
        if self.count == 0 || time < self.first.as_str() {
            self.first = time.to_owned();
        }
        if time > self.last.as_str() {
            self.last = time.to_owned();
        }
        self.count += 1;
    }

    /// Both sightings in one.
    pub fn merge(&mut self, other: &Seen) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.first < self.first {
            self.first.clone_from(&other.first);
        }
        if other.last > self.last {
            self.last.clone_from(&other.last);
        }
        self.count += other.count;
    }
}

/// Where a connection went, as an allow entry will say it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Egress {
    /// The DNS name the container resolved the address from, when known;
    /// the entry then allows the name, not the address (addresses change).
    pub dns: Option<String>,
    /// The address as a one-address CIDR, when no name is known.
    pub to: Option<String>,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Everything one workload was seen doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// (executable, parent's executable) of each exec.
    pub processes: BTreeMap<(String, Option<String>), Seen>,
    /// The directories written in (a file's parent, or the directory itself).
    pub writes: BTreeMap<String, Seen>,
    pub egress: BTreeMap<Egress, Seen>,
    /// (protocol, port) of each bind.
    pub listening: BTreeMap<(String, u16), Seen>,
    /// The containers it was seen in (names, or ids).
    pub containers: BTreeMap<String, Seen>,
    /// Events learned from.
    pub events: u64,
}

impl Learned {
    /// Adds another run's (or replica's) sightings.
    pub fn merge(&mut self, other: &Learned) {
        fn join<K: Ord + Clone>(a: &mut BTreeMap<K, Seen>, b: &BTreeMap<K, Seen>) {
            for (k, v) in b {
                a.entry(k.clone()).or_default().merge(v);
            }
        }
        join(&mut self.processes, &other.processes);
        join(&mut self.writes, &other.writes);
        join(&mut self.egress, &other.egress);
        join(&mut self.listening, &other.listening);
        join(&mut self.containers, &other.containers);
        self.events += other.events;
    }
}

/// The learning in progress: events in, one [`Learned`] per workload.
#[derive(Debug, Default)]
pub struct Learner {
    pub workloads: BTreeMap<Workload, Learned>,
}

impl Learner {
    /// Learns from one enriched event (`time` is its RFC 3339 time). Host
    /// processes, and containers whose identity is not known yet, teach
    /// nothing.
    pub fn observe(&mut self, e: &EnrichedEvent, time: &str) {
        let Some(workload) = Workload::of(e) else {
            return;
        };
        // What enforcement refused did not happen: it is no behaviour to keep.
        if e.event.action_taken() == Some(crate::finding::ActionTaken::Denied) {
            return;
        }
        let learned = self.workloads.entry(workload).or_default();
        let what = match &e.event.body {
            EventBody::Exec(exec) => {
                let exe = e
                    .process
                    .exe
                    .clone()
                    .unwrap_or_else(|| exec.filename.clone());
                let parent = e.process.ancestry.first().and_then(|a| a.exe.clone());
                Some(learned.processes.entry((exe, parent)).or_default())
            }
            EventBody::File(f) if f.op != FileOp::Connect && is_write(f) => {
                let dir = match f.path.rsplit_once('/') {
                    Some(("", _)) => "/".to_owned(),
                    Some((dir, _)) => dir.to_owned(),
                    None => return,
                };
                Some(learned.writes.entry(dir).or_default())
            }
            EventBody::Network(n) => {
                // Allow entries name tcp and udp; other protocols are not learned.
                let protocol = match n.protocol {
                    Protocol::Tcp | Protocol::Udp => n.protocol.to_string(),
                    Protocol::Other(_) => return,
                };
                match n.op {
                    NetOp::Connect | NetOp::Sendmsg => {
                        let bits = if n.daddr.is_ipv4() { 32 } else { 128 };
                        let key = Egress {
                            to: n.dns.is_none().then(|| format!("{}/{bits}", n.daddr)),
                            dns: n.dns.clone(),
                            port: n.dport,
                            protocol,
                        };
                        Some(learned.egress.entry(key).or_default())
                    }
                    NetOp::Bind if n.dport != 0 => {
                        Some(learned.listening.entry((protocol, n.dport)).or_default())
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(seen) = what else {
            return;
        };
        seen.at(time);
        learned.events += 1;
        if let Some(c) = &e.container {
            let name = c.name.clone().or_else(|| c.id.clone()).unwrap_or_default();
            learned.containers.entry(name).or_default().at(time);
        }
    }

    /// Learns from every event in `ready` (emptying it), each at its own
    /// kernel time.
    pub fn observe_all(&mut self, ready: &mut Vec<EnrichedEvent>, clock: &crate::clock::WallClock) {
        for e in ready.drain(..) {
            self.observe(&e, &clock.rfc3339(e.event.header.ktime_ns));
        }
    }

    /// Events learned from, in all.
    pub fn events(&self) -> u64 {
        self.workloads.values().map(|l| l.events).sum()
    }
}

/// A write as the `file` rules count one: not a read-only open (those are
/// reported only for credential files).
fn is_write(f: &crate::event::FileInfo) -> bool {
    !(f.op == FileOp::Open && f.flags.iter().all(|&flag| flag == "O_RDONLY"))
}

#[cfg(test)]
mod tests;
