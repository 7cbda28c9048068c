//! Which name each container resolved each address from: the DNS answers
//! its sockets received, kept per cgroup for as long as their TTLs allow,
//! so that a connection can be judged by the name (`network.dns`).
//!
//! Per cgroup, not per host: one container's lookups never name another's
//! connections. Time is the kernel's (the records' `ktime_ns`), so an answer
//! expires when its TTL says, however late the agent reads the events.
use std::{collections::HashMap, net::IpAddr};

use crate::event::dns::DnsAnswer;

/// The least time an answer is kept: a TTL of 0 means "do not cache", yet
/// the program that asked connects right after; this covers that connect.
const MIN_TTL_NS: u64 = 1_000_000_000;

/// How much the cache holds.
#[derive(Clone, Copy, Debug)]
pub struct NameLimits {
    /// Addresses kept for one cgroup.
    pub per_cgroup: usize,
    /// Addresses kept in all.
    pub total: usize,
}

impl Default for NameLimits {
    fn default() -> Self {
        // A busy service resolves a few hundred names; 64 bytes or so each.
        NameLimits {
            per_cgroup: 4096,
            total: 131_072,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: std::sync::Arc<str>,
    expires_ns: u64,
}

/// cgroup id -> address -> the name it was resolved from.
#[derive(Debug, Default)]
pub struct ResolvedNames {
    limits: NameLimits,
    by_cgroup: HashMap<u64, HashMap<IpAddr, Entry>>,
    total: usize,
    /// Answers' addresses not kept because the cache was full of live ones.
    pub dropped: u64,
}

impl ResolvedNames {
    /// An empty cache that holds at most `limits`.
    pub fn new(limits: NameLimits) -> Self {
        ResolvedNames {
            limits,
            ..Default::default()
        }
    }

    /// Records an answer a socket of `cgroup` received at `ktime_ns`. The
    /// latest answer for an address names it.
    pub fn record(&mut self, cgroup: u64, ktime_ns: u64, answer: &DnsAnswer) {
        if answer.addresses.is_empty() {
            return;
        }
        let name: std::sync::Arc<str> = answer.name.as_str().into();
        for a in &answer.addresses {
            let ttl_ns = (u64::from(a.ttl) * 1_000_000_000).max(MIN_TTL_NS);
            let entry = Entry {
                name: name.clone(),
                expires_ns: ktime_ns.saturating_add(ttl_ns),
            };
            self.insert(cgroup, ktime_ns, a.address, entry);
        }
    }

    fn insert(&mut self, cgroup: u64, now_ns: u64, address: IpAddr, entry: Entry) {
        let known = self
            .by_cgroup
            .get(&cgroup)
            .is_some_and(|m| m.contains_key(&address));
        if !known {
            let cgroup_len = self.by_cgroup.get(&cgroup).map_or(0, HashMap::len);
            if cgroup_len >= self.limits.per_cgroup {
                self.make_room(cgroup, now_ns);
            }
            if self.total >= self.limits.total {
                self.expire_all(now_ns);
                if self.total >= self.limits.total {
                    self.make_room(cgroup, now_ns);
                }
            }
            let cgroup_len = self.by_cgroup.get(&cgroup).map_or(0, HashMap::len);
            if cgroup_len >= self.limits.per_cgroup || self.total >= self.limits.total {
                self.dropped += 1;
                return;
            }
            self.total += 1;
        }
        self.by_cgroup
            .entry(cgroup)
            .or_default()
            .insert(address, entry);
    }

    /// Frees a slot in `cgroup`'s map: its expired entries, or else the one
    /// that expires soonest (its name is the nearest to being forgotten).
    fn make_room(&mut self, cgroup: u64, now_ns: u64) {
        let Some(map) = self.by_cgroup.get_mut(&cgroup) else {
            return;
        };
        let mut freed = drop_expired(map, now_ns);
        if freed == 0
            && let Some(soonest) = map
                .iter()
                .min_by_key(|(_, e)| e.expires_ns)
                .map(|(a, _)| *a)
        {
            map.remove(&soonest);
            freed = 1;
        }
        self.total -= freed;
    }

    fn expire_all(&mut self, now_ns: u64) {
        for map in self.by_cgroup.values_mut() {
            self.total -= drop_expired(map, now_ns);
        }
        self.by_cgroup.retain(|_, m| !m.is_empty());
    }

    /// The name `cgroup` resolved `address` from, if its answer is still
    /// live at `ktime_ns`.
    pub fn name_for(&self, cgroup: u64, address: IpAddr, ktime_ns: u64) -> Option<&str> {
        let entry = self.by_cgroup.get(&cgroup)?.get(&address)?;
        (entry.expires_ns > ktime_ns).then_some(&*entry.name)
    }

    /// Forgets a cgroup that is gone.
    pub fn forget(&mut self, cgroup: u64) {
        if let Some(map) = self.by_cgroup.remove(&cgroup) {
            self.total -= map.len();
        }
    }

    /// Addresses held, in all.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Removes the entries expired at `now_ns`; returns how many went.
fn drop_expired(map: &mut HashMap<IpAddr, Entry>, now_ns: u64) -> usize {
    let before = map.len();
    map.retain(|_, e| e.expires_ns > now_ns);
    before - map.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::dns::DnsAddress;

    const S: u64 = 1_000_000_000;

    fn answer(name: &str, ttl: u32, addrs: &[&str]) -> DnsAnswer {
        DnsAnswer {
            name: name.to_owned(),
            cnames: vec![],
            addresses: addrs
                .iter()
                .map(|a| DnsAddress {
                    address: a.parse().unwrap(),
                    ttl,
                })
                .collect(),
            truncated: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_holds_for_its_ttl_and_only_in_its_cgroup() {
        let mut names = ResolvedNames::new(NameLimits::default());
        names.record(
            7,
            100 * S,
            &answer("api.test", 30, &["192.0.2.1", "2001:db8::1"]),
        );
        assert_eq!(
            names.name_for(7, ip("192.0.2.1"), 100 * S + 1),
            Some("api.test")
        );
        assert_eq!(
            names.name_for(7, ip("2001:db8::1"), 129 * S),
            Some("api.test")
        );
        assert_eq!(names.name_for(7, ip("192.0.2.1"), 130 * S), None, "expired");
        assert_eq!(
            names.name_for(8, ip("192.0.2.1"), 101 * S),
            None,
            "another cgroup"
        );
        assert_eq!(names.len(), 2);
        names.forget(7);
        assert!(names.is_empty());
    }

    #[test]
    fn the_latest_answer_names_an_address_and_ttl_zero_covers_the_connect() {
        let mut names = ResolvedNames::new(NameLimits::default());
        names.record(1, 10 * S, &answer("old.test", 300, &["192.0.2.9"]));
        names.record(1, 11 * S, &answer("new.test", 0, &["192.0.2.9"]));
        assert_eq!(
            names.name_for(1, ip("192.0.2.9"), 11 * S + S / 2),
            Some("new.test")
        );
        assert_eq!(names.name_for(1, ip("192.0.2.9"), 12 * S), None);
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_full_cgroup_drops_the_soonest_to_expire_and_others_are_untouched() {
        let mut names = ResolvedNames::new(NameLimits {
            per_cgroup: 2,
            total: 3,
        });
        names.record(1, 0, &answer("short.test", 5, &["192.0.2.1"]));
        names.record(1, 0, &answer("long.test", 500, &["192.0.2.2"]));
        names.record(2, 0, &answer("other.test", 500, &["192.0.2.3"]));
        names.record(1, S, &answer("third.test", 60, &["192.0.2.4"]));
        assert_eq!(names.name_for(1, ip("192.0.2.1"), 2 * S), None, "evicted");
        assert_eq!(names.name_for(1, ip("192.0.2.2"), 2 * S), Some("long.test"));
        assert_eq!(
            names.name_for(1, ip("192.0.2.4"), 2 * S),
            Some("third.test")
        );
        assert_eq!(
            names.name_for(2, ip("192.0.2.3"), 2 * S),
            Some("other.test")
        );
        assert_eq!(names.len(), 3);
        assert_eq!(names.dropped, 0);
    }
}
