//! Detectors that look at more than one event: drift (a container executes a
//! file it wrote itself) and port scans; and the fileless-exec test. Each
//! keeps bounded memory: sizes are capped by [`DetectorLimits`] and the oldest
//! state is dropped first.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
};

use crate::{
    context::EnrichedEvent,
    event::{CgroupOp, EventBody, FileInfo, FileOp},
};

/// Memory bounds for the stateful detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorLimits {
    /// Containers (cgroups) whose written files the drift detector remembers.
    pub max_cgroups: usize,
    /// Written paths remembered per container; the oldest is forgotten first.
    pub max_paths_per_cgroup: usize,
    /// Containers or host processes a port-scan rule tracks at once.
    pub max_scan_keys: usize,
}

impl Default for DetectorLimits {
    /// 1024 containers x 4096 paths (about 64 MiB at worst) and 4096 scan keys.
    fn default() -> Self {
        DetectorLimits {
            max_cgroups: 1024,
            max_paths_per_cgroup: 4096,
            max_scan_keys: 4096,
        }
    }
}

/// Whether a file event changes the file's contents or names (the ops that
/// count as writes for protected paths): `open` only with a write flag; a
/// connect to a unix socket never.
pub fn is_write(f: &FileInfo) -> bool {
    match f.op {
        FileOp::Connect => false,
        FileOp::Open => f.flags.iter().any(|fl| {
            matches!(
                *fl,
                "O_WRONLY" | "O_RDWR" | "O_CREAT" | "O_TRUNC" | "O_APPEND" | "O_TMPFILE"
            )
        }),
        _ => true,
    }
}

/// The path a successful file event leaves new or changed contents at, for
/// drift: the opened/created/truncated file, or the new name of a rename or
/// hard link (a file "renamed into place"). Unlink, chmod and symlink create
/// no contents.
fn written_path(f: &FileInfo) -> Option<&str> {
    if f.result < 0 || !is_write(f) {
        return None;
    }
    match f.op {
        FileOp::Open | FileOp::Creat | FileOp::Truncate => Some(&f.path),
        FileOp::Rename | FileOp::Link => f.target.as_deref(),
        FileOp::Unlink | FileOp::Chmod | FileOp::Symlink | FileOp::Connect => None,
    }
}

fn path_hash(path: &str) -> u64 {
    // Fixed keys: hashes only need to be stable within this process.
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// A file's identity (the kernel's dev_t, inode) as a key of the same set
/// as the paths' (tagged, so that it never equals a path's hash by design).
fn inode_hash((dev, ino): (u32, u64)) -> u64 {
    let mut h = DefaultHasher::new();
    (0xd1u8, dev, ino).hash(&mut h);
    h.finish()
}

/// Remembers, per container cgroup, which paths the container wrote since it
/// started (since the agent saw it), so an exec of such a path is drift from
/// the image. Where the kernel tells the written file's inode, that is kept
/// too, and an exec of the same file is drift whatever name reaches it: a
/// rename of it or of its directory, a symlink, a hard link.
///
/// Paths are kept as 64-bit hashes. Memory is bounded by
/// [`DetectorLimits::max_cgroups`] and [`DetectorLimits::max_paths_per_cgroup`];
/// a container that writes more distinct files than that forgets the oldest
/// ones (counted in [`DriftDetector::evicted_paths`]), so a payload written
/// long before thousands of other files can escape detection.
#[derive(Debug)]
pub struct DriftDetector {
    limits: DetectorLimits,
    cgroups: HashMap<u64, Written>,
    tick: u64,
    evicted_paths: u64,
}

#[derive(Debug, Default)]
struct Written {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    last_use: u64,
}

impl DriftDetector {
    /// An empty detector.
    pub fn new(limits: DetectorLimits) -> Self {
        DriftDetector {
            limits,
            cgroups: HashMap::new(),
            tick: 0,
            evicted_paths: 0,
        }
    }

    /// Learns from one event: successful writes by container processes are
    /// remembered; a removed cgroup is forgotten.
    pub fn observe(&mut self, ev: &EnrichedEvent) {
        match &ev.event.body {
            EventBody::File(f) if ev.container.is_some() => {
                if let Some(path) = written_path(f) {
                    let cgroup = ev.event.header.cgroup_id;
                    self.record_write(cgroup, path);
                    if let Some(inode) = f.inode {
                        self.record(cgroup, inode_hash(inode));
                    }
                }
            }
            EventBody::Cgroup(c) if c.op == CgroupOp::Rmdir => self.forget(c.id),
            _ => {}
        }
    }

    /// Remembers that the container in `cgroup` wrote `path`.
    pub fn record_write(&mut self, cgroup: u64, path: &str) {
        self.record(cgroup, path_hash(path));
    }

    /// Remembers one written path's or file's key for `cgroup`.
    fn record(&mut self, cgroup: u64, h: u64) {
        if self.limits.max_cgroups == 0 || self.limits.max_paths_per_cgroup == 0 {
            return;
        }
        self.tick += 1;
        if !self.cgroups.contains_key(&cgroup) && self.cgroups.len() >= self.limits.max_cgroups {
            // Drop the container written to least recently.
            if let Some(oldest) = self
                .cgroups
                .iter()
                .min_by_key(|(_, w)| w.last_use)
                .map(|(id, _)| *id)
            {
                self.cgroups.remove(&oldest);
            }
        }
        let w = self.cgroups.entry(cgroup).or_default();
        w.last_use = self.tick;
        if w.set.insert(h) {
            w.order.push_back(h);
            if w.order.len() > self.limits.max_paths_per_cgroup
                && let Some(old) = w.order.pop_front()
            {
                w.set.remove(&old);
                self.evicted_paths += 1;
            }
        }
    }

    /// Whether the container in `cgroup` wrote `path`, or the file `inode`
    /// (as far as memory allows).
    pub fn was_written(&self, cgroup: u64, path: &str, inode: Option<(u32, u64)>) -> bool {
        self.cgroups.get(&cgroup).is_some_and(|w| {
            w.set.contains(&path_hash(path))
                || inode.is_some_and(|i| w.set.contains(&inode_hash(i)))
        })
    }

    /// Forgets a container (its cgroup was removed).
    pub fn forget(&mut self, cgroup: u64) {
        self.cgroups.remove(&cgroup);
    }

    /// How many containers are tracked.
    pub fn tracked_cgroups(&self) -> usize {
        self.cgroups.len()
    }

    /// How many written paths were forgotten to stay within the limits.
    pub fn evicted_paths(&self) -> u64 {
        self.evicted_paths
    }
}

/// Whether an executed filename is an in-memory or descriptor-only file:
/// `memfd_create` files (`/memfd:name`, `memfd:name`) and `fexecve`-style
/// execs through `/proc/<pid|self|thread-self>/fd/N` or `/dev/fd/N`, which
/// leave nothing on disk to inspect.
pub fn is_fileless_exec(filename: &str) -> bool {
    if filename.starts_with("/memfd:") || filename.starts_with("memfd:") {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(fd) = filename.strip_prefix("/dev/fd/") {
        return digits(fd);
    }
    if let Some(rest) = filename.strip_prefix("/proc/")
        && let Some((who, fd)) = rest.split_once("/fd/")
    {
        return (who == "self" || who == "thread-self" || digits(who)) && digits(fd);
    }
    false
}

/// Thresholds of a port-scan rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanParams {
    /// Distinct destination ports within the window that make a scan.
    pub distinct_ports: usize,
    /// Distinct destination hosts within the window that make a scan; 0 turns this off.
    pub distinct_hosts: usize,
    /// The sliding window, in nanoseconds of event time (`ktime`).
    pub window_ns: u64,
}

impl Default for ScanParams {
    /// 20 ports or 64 hosts within 10 s.
    fn default() -> Self {
        ScanParams {
            distinct_ports: 20,
            distinct_hosts: 64,
            window_ns: 10_000_000_000,
        }
    }
}

/// What a port-scan alert reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanReport {
    /// Distinct ports seen in the window (capped at the threshold).
    pub ports: usize,
    /// Distinct hosts seen in the window (capped at the threshold).
    pub hosts: usize,
}

/// Counts, per container (or per host process), the distinct destination ports
/// and hosts of its connection attempts within a sliding window of event time,
/// and reports once per window when a threshold is reached. Memory per key is
/// bounded by the thresholds; keys by [`DetectorLimits::max_scan_keys`].
#[derive(Debug)]
pub struct PortScanDetector {
    params: ScanParams,
    max_keys: usize,
    keys: HashMap<ScanKey, ScanWindow>,
}

/// A container is one key (`pid` 0): a scan split over many short-lived
/// processes (`for p in ...; do nc -z ...`) still adds up. On the host each
/// process is its own key.
type ScanKey = (u64, u32);

#[derive(Debug, Default)]
struct ScanWindow {
    ports: Vec<(u16, u64)>,
    hosts: Vec<(IpAddr, u64)>,
    alerted_at: Option<u64>,
    last_seen: u64,
}

impl PortScanDetector {
    /// An empty detector.
    pub fn new(params: ScanParams, max_keys: usize) -> Self {
        PortScanDetector {
            params,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
        }
    }

    /// The key of an event's actor: its container, or its process on the host.
    pub fn key(cgroup: u64, pid: u32, in_container: bool) -> (u64, u32) {
        (cgroup, if in_container { 0 } else { pid })
    }

    /// Counts one connection attempt at `ktime_ns`; returns a report when this
    /// attempt completes a scan and none was reported within the last window.
    pub fn observe(
        &mut self,
        key: (u64, u32),
        ktime_ns: u64,
        daddr: IpAddr,
        dport: u16,
    ) -> Option<ScanReport> {
        let p = self.params;
        if !self.keys.contains_key(&key) && self.keys.len() >= self.max_keys {
            self.keys
                .retain(|_, w| ktime_ns.saturating_sub(w.last_seen) < p.window_ns);
            if self.keys.len() >= self.max_keys
                && let Some(oldest) = self
                    .keys
                    .iter()
                    .min_by_key(|(_, w)| w.last_seen)
                    .map(|(k, _)| *k)
            {
                self.keys.remove(&oldest);
            }
        }
        let w = self.keys.entry(key).or_default();
        w.last_seen = w.last_seen.max(ktime_ns);
        let fresh = |t: u64| ktime_ns.saturating_sub(t) < p.window_ns;
        w.ports.retain(|&(_, t)| fresh(t));
        w.hosts.retain(|&(_, t)| fresh(t));
        note(&mut w.ports, dport, ktime_ns, p.distinct_ports);
        note(&mut w.hosts, daddr, ktime_ns, p.distinct_hosts);
        let scan = (p.distinct_ports > 0 && w.ports.len() >= p.distinct_ports)
            || (p.distinct_hosts > 0 && w.hosts.len() >= p.distinct_hosts);
        if scan && w.alerted_at.is_none_or(|t| !fresh(t)) {
            w.alerted_at = Some(ktime_ns);
            return Some(ScanReport {
                ports: w.ports.len(),
                hosts: w.hosts.len(),
            });
        }
        None
    }

    /// The distinct ports (ascending) and hosts of `key`'s current window.
    pub fn window(&self, key: (u64, u32)) -> (Vec<u16>, Vec<IpAddr>) {
        self.keys.get(&key).map_or_else(Default::default, |w| {
            let mut ports: Vec<u16> = w.ports.iter().map(|&(p, _)| p).collect();
            ports.sort_unstable();
            (ports, w.hosts.iter().map(|&(h, _)| h).collect())
        })
    }

    /// Forgets every key of a removed cgroup.
    pub fn forget_cgroup(&mut self, cgroup: u64) {
        self.keys.retain(|(c, _), _| *c != cgroup);
    }

    /// How many keys are tracked.
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }
}

/// Records `v` as seen at `t`, keeping at most `cap` distinct values.
fn note<T: PartialEq>(seen: &mut Vec<(T, u64)>, v: T, t: u64, cap: usize) {
    if let Some(e) = seen.iter_mut().find(|(x, _)| *x == v) {
        e.1 = e.1.max(t);
    } else if seen.len() < cap {
        seen.push((v, t));
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn fileless_names() {
        let cases = [
            ("/memfd:payload", true),
            ("memfd:x (deleted)", true),
            ("/memfd:", true),
            ("/dev/fd/3", true),
            ("/proc/self/fd/7", true),
            ("/proc/thread-self/fd/7", true),
            ("/proc/1234/fd/12", true),
            ("/proc/self/exe", false),
            ("/proc/self/fd/", false),
            ("/proc/abc/fd/1", false),
            ("/dev/fd/x", false),
            ("/usr/bin/memfd:x", false),
            ("/bin/sh", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_fileless_exec(name), want, "{name}");
        }
    }

    fn file(
        op: FileOp,
        path: &str,
        target: Option<&str>,
        flags: &[&'static str],
        result: i64,
    ) -> FileInfo {
        FileInfo {
            op,
            path: path.into(),
            target: target.map(Into::into),
            flags: flags.to_vec(),
            mode: None,
            result,
            requested_path: None,
            truncated: false,
            action: None,
            inode: None,
        }
    }

    #[test]
    fn writes_and_written_paths() {
        let cases: &[(FileInfo, bool, Option<&str>)] = &[
            (
                file(FileOp::Open, "/a", None, &["O_WRONLY", "O_CREAT"], 3),
                true,
                Some("/a"),
            ),
            (
                file(FileOp::Open, "/a", None, &["O_RDONLY"], 3),
                false,
                None,
            ),
            (file(FileOp::Open, "/a", None, &["O_RDWR"], -13), true, None),
            (file(FileOp::Creat, "/a", None, &[], 3), true, Some("/a")),
            (
                file(FileOp::Rename, "/tmp/x", Some("/usr/bin/x"), &[], 0),
                true,
                Some("/usr/bin/x"),
            ),
            (
                file(FileOp::Link, "/tmp/x", Some("/bin/y"), &[], 0),
                true,
                Some("/bin/y"),
            ),
            (file(FileOp::Truncate, "/a", None, &[], 0), true, Some("/a")),
            (file(FileOp::Unlink, "/a", None, &[], 0), true, None),
            (file(FileOp::Chmod, "/a", None, &[], 0), true, None),
            (
                file(FileOp::Symlink, "/bin/sh", Some("/tmp/sh"), &[], 0),
                true,
                None,
            ),
        ];
        for (f, write, written) in cases {
            assert_eq!(is_write(f), *write, "{f:?}");
            assert_eq!(written_path(f), *written, "{f:?}");
        }
    }

    #[test]
    fn drift_memory_is_bounded() {
        let mut d = DriftDetector::new(DetectorLimits {
            max_cgroups: 2,
            max_paths_per_cgroup: 3,
            max_scan_keys: 1,
        });
        for p in ["/a", "/b", "/c", "/d"] {
            d.record_write(1, p);
        }
        assert!(!d.was_written(1, "/a", None), "oldest path forgotten");
        assert!(d.was_written(1, "/d", None));
        assert_eq!(d.evicted_paths(), 1);
        assert!(!d.was_written(2, "/d", None), "per container");
        d.record_write(2, "/x");
        d.record_write(1, "/e");
        d.record_write(3, "/y");
        assert_eq!(d.tracked_cgroups(), 2);
        assert!(
            !d.was_written(2, "/x", None),
            "least recently written container dropped"
        );
        assert!(d.was_written(1, "/e", None) && d.was_written(3, "/y", None));
        d.forget(1);
        assert!(!d.was_written(1, "/e", None));
    }

    /// A file written under one name and executed under another (renamed,
    /// reached through a symlink) is the same file to the kernel.
    #[test]
    fn a_written_file_is_known_by_its_inode_under_any_name() {
        let mut d = DriftDetector::new(DetectorLimits::default());
        d.record_write(1, "/tmp/a/payload");
        d.record(1, inode_hash((8 << 20, 42)));
        assert!(d.was_written(1, "/tmp/b/payload", Some((8 << 20, 42))));
        assert!(
            !d.was_written(1, "/tmp/b/payload", None),
            "by path, it is another"
        );
        assert!(!d.was_written(1, "/tmp/b/payload", Some((8 << 20, 43))));
        assert!(
            !d.was_written(2, "/tmp/a/payload", Some((8 << 20, 42))),
            "per container"
        );
    }

    const S: u64 = 1_000_000_000;

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(10, 0, 0, last).into()
    }

    #[test]
    fn port_scan_reports_once_per_window() {
        let mut d = PortScanDetector::new(ScanParams::default(), 16);
        let k = (7, 0);
        let mut reports = Vec::new();
        for i in 0..50u16 {
            if let Some(r) = d.observe(k, 1_000 * S + u64::from(i) * 1_000_000, ip(1), 1000 + i) {
                reports.push((i, r));
            }
        }
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].0, 19, "reported at the 20th distinct port");
        assert_eq!(
            reports[0].1,
            ScanReport {
                ports: 20,
                hosts: 1
            }
        );
        // Still scanning a window later: one more report.
        let later = d.observe(k, 1_011 * S, ip(1), 2000);
        assert!(later.is_none(), "old ports slid out of the window");
        let mut more = 0;
        for i in 0..30u16 {
            more += usize::from(
                d.observe(k, 1_011 * S + u64::from(i), ip(1), 3000 + i)
                    .is_some(),
            );
        }
        assert_eq!(more, 1);
    }

    #[test]
    fn port_scan_thresholds() {
        let mut d = PortScanDetector::new(ScanParams::default(), 16);
        // The same port again and again is no scan.
        for i in 0..100 {
            assert!(d.observe((1, 0), i * S / 10, ip(1), 443).is_none());
        }
        // 19 ports is below the threshold; slow scans (one port per second over 20 s) too.
        for i in 0..19u16 {
            assert!(d.observe((2, 0), 0, ip(1), i + 1).is_none());
        }
        for i in 0..20u16 {
            assert!(d.observe((3, 0), u64::from(i) * S, ip(1), i + 1).is_none());
        }
        // Many hosts on one port.
        let mut hits = 0;
        for i in 0..100u8 {
            hits += usize::from(d.observe((4, 0), u64::from(i), ip(i), 22).is_some());
        }
        assert_eq!(hits, 1);
    }

    #[test]
    fn port_scan_keys_are_bounded() {
        let mut d = PortScanDetector::new(ScanParams::default(), 3);
        for c in 0..10u64 {
            d.observe((c, 0), c * S, ip(1), 80);
        }
        assert!(d.tracked_keys() <= 3);
        d.forget_cgroup(9);
        assert!(d.keys.keys().all(|(c, _)| *c != 9));
    }
}
