//! cgroup id -> container: every cgroup v2 directory the host has, with what
//! its path and its runtime's files say about the container in it.
//!
//! Fed by one scan of the cgroup2 tree at start and by the kernel's
//! `cgroup_mkdir`/`cgroup_rmdir` events after. A cgroup's id is its
//! directory's inode number, which is what `bpf_get_current_cgroup_id`
//! returns for the tasks in it. Metadata is read when the cgroup appears;
//! when the runtime has not written its files yet the registry tries again
//! with a growing delay and, after a bounded time, gives up and reports the
//! container as `partial`.
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use monitor_common::CGROUP_PATH_LEN;

use super::{
    ContainerInfo, MetadataStatus,
    cgroup_path::{CgroupIdentity, parse_cgroup_path},
    runtime::{MetadataError, RuntimeMetadata, RuntimePaths, read_metadata},
};

/// At most this many cgroup ids seen in events but not (yet) in the tree are
/// remembered, so a flood of unknown ids cannot grow memory.
const MAX_UNRESOLVED: usize = 4096;

/// How the registry retries a container whose runtime files are not written yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the first retry; each retry doubles it.
    pub first_delay: Duration,
    /// The longest delay between two retries.
    pub max_delay: Duration,
    /// After this long since the cgroup appeared, stop and report `partial`.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

/// One cgroup the registry knows.
#[derive(Clone, Debug)]
pub struct CgroupEntry {
    /// Relative to the cgroup2 mount, starting with `/`.
    pub path: String,
    /// `None` for the host's own cgroups.
    pub identity: Option<CgroupIdentity>,
    /// What the runtime's files said, once read.
    pub metadata: Option<Arc<RuntimeMetadata>>,
    /// How complete the container context is (`Host` for host cgroups).
    pub status: MetadataStatus,
    /// When the registry first saw the cgroup.
    pub first_seen: Instant,
    /// The alert record's `container` object, built once.
    info: Option<ContainerInfo>,
    retry: Option<Retry>,
}

#[derive(Clone, Copy, Debug)]
struct Retry {
    at: Instant,
    delay: Duration,
}

/// A cgroup id seen in an event but not in the tree.
#[derive(Clone, Copy, Debug)]
struct Unresolved {
    first_seen: Instant,
    last_lookup: Instant,
}

/// How many things the registry holds, for metrics and for tests that memory stays flat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Every cgroup known, host and container.
    pub cgroups: usize,
    /// Those that are containers.
    pub containers: usize,
    /// Containers whose files are awaited.
    pub pending: usize,
    /// Ids seen in events but not in the tree.
    pub unresolved: usize,
}

/// The cgroup id -> container map.
#[derive(Debug)]
pub struct CgroupRegistry {
    paths: RuntimePaths,
    retry: RetryPolicy,
    cgroup2_mount: Option<PathBuf>,
    entries: HashMap<u64, CgroupEntry>,
    /// Ids of entries with a retry scheduled.
    pending: HashSet<u64>,
    unresolved: HashMap<u64, Unresolved>,
}

impl CgroupRegistry {
    /// An empty registry reading runtime state through `paths`.
    pub fn new(paths: RuntimePaths) -> Self {
        CgroupRegistry {
            paths,
            retry: RetryPolicy::default(),
            cgroup2_mount: None,
            entries: HashMap::new(),
            pending: HashSet::new(),
            unresolved: HashMap::new(),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The cgroup2 mount the last [`scan`](Self::scan) walked.
    pub fn cgroup2_mount(&self) -> Option<&Path> {
        self.cgroup2_mount.as_deref()
    }

    /// Walks the cgroup v2 tree under `cgroup2_mount` once and registers every
    /// directory; returns how many. Directories that vanish during the walk
    /// are skipped. The agent must see the host's cgroup namespace, or the
    /// tree it walks is only its own.
    pub fn scan(&mut self, cgroup2_mount: &Path, now: Instant) -> io::Result<usize> {
        self.cgroup2_mount = Some(cgroup2_mount.to_owned());
        let root = fs::metadata(cgroup2_mount)?;
        self.insert(root.ino(), "/".to_owned(), now);
        let mut count = 1;
        let mut stack = vec![(cgroup2_mount.to_owned(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
                self.insert(meta.ino(), path.clone(), now);
                count += 1;
                stack.push((entry.path(), path));
            }
        }
        Ok(count)
    }

    /// A cgroup was made (the kernel's `cgroup_mkdir`). A path as long as the
    /// kernel record holds may be cut short; such an id is looked up instead
    /// (see [`lookup_unknown`](Self::lookup_unknown)).
    pub fn on_mkdir(&mut self, id: u64, path: &str, now: Instant) {
        if path.len() >= CGROUP_PATH_LEN - 1 {
            self.unresolved.entry(id).or_insert(Unresolved {
                first_seen: now,
                // Due for a lookup at once.
                last_lookup: now.checked_sub(self.retry.first_delay).unwrap_or(now),
            });
            return;
        }
        self.insert(id, path.to_owned(), now);
    }

    /// A cgroup was removed: everything about it is dropped.
    pub fn on_rmdir(&mut self, id: u64) {
        self.entries.remove(&id);
        self.pending.remove(&id);
        self.unresolved.remove(&id);
    }

    fn insert(&mut self, id: u64, path: String, now: Instant) {
        self.unresolved.remove(&id);
        self.pending.remove(&id);
        let identity = parse_cgroup_path(&path);
        let mut entry = CgroupEntry {
            status: if identity.is_some() {
                MetadataStatus::Pending
            } else {
                MetadataStatus::Host
            },
            path,
            identity,
            metadata: None,
            first_seen: now,
            info: None,
            retry: None,
        };
        if entry.identity.is_some() {
            self.resolve(&mut entry, now);
            if entry.retry.is_some() {
                self.pending.insert(id);
            }
        }
        self.entries.insert(id, entry);
    }

    /// Reads the runtime's files for `entry` and sets its status, metadata and
    /// next retry.
    fn resolve(&self, entry: &mut CgroupEntry, now: Instant) {
        let Some(identity) = &entry.identity else {
            return;
        };
        match read_metadata(&self.paths, identity) {
            Ok(m) => {
                entry.status = if m.is_complete() {
                    MetadataStatus::Complete
                } else {
                    MetadataStatus::Partial
                };
                entry.metadata = Some(Arc::new(m));
                entry.retry = None;
            }
            Err(e) if e.is_retryable() => {
                if now.saturating_duration_since(entry.first_seen) >= self.retry.give_up_after {
                    tracing::warn!(
                        container = %identity.container_id,
                        runtime = %identity.runtime,
                        "container metadata still missing after {:?}, reporting it partial: {e}",
                        self.retry.give_up_after
                    );
                    entry.status = MetadataStatus::Partial;
                    entry.retry = None;
                } else {
                    let delay = match entry.retry {
                        None => self.retry.first_delay,
                        Some(r) => (r.delay * 2).min(self.retry.max_delay),
                    };
                    entry.status = MetadataStatus::Pending;
                    entry.retry = Some(Retry {
                        at: now + delay,
                        delay,
                    });
                }
            }
            Err(e) => {
                log_unreadable(identity, &e);
                entry.status = MetadataStatus::Partial;
                entry.retry = None;
            }
        }
        entry.info = Some(container_info(entry));
    }

    /// Retries the containers whose files were not written yet and whose
    /// retry is due; forgets unknown ids not resolved within the give-up time.
    /// Returns how many containers left `pending`.
    pub fn retry_pending(&mut self, now: Instant) -> usize {
        let due: Vec<u64> = self
            .pending
            .iter()
            .copied()
            .filter(|id| {
                self.entries
                    .get(id)
                    .and_then(|e| e.retry)
                    .is_none_or(|r| r.at <= now)
            })
            .collect();
        let mut settled = 0;
        for id in due {
            let Some(mut entry) = self.entries.remove(&id) else {
                self.pending.remove(&id);
                continue;
            };
            self.resolve(&mut entry, now);
            if entry.retry.is_none() {
                self.pending.remove(&id);
                settled += 1;
            }
            self.entries.insert(id, entry);
        }
        let give_up = self.retry.give_up_after;
        self.unresolved
            .retain(|_, u| now.saturating_duration_since(u.first_seen) < give_up);
        settled
    }

    /// The earliest time a retry is due, if any is scheduled.
    pub fn next_retry(&self) -> Option<Instant> {
        self.pending
            .iter()
            .filter_map(|id| self.entries.get(id)?.retry.map(|r| r.at))
            .min()
    }

    /// Whether the registry knows cgroup `id`.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// The entry of cgroup `id`.
    pub fn entry(&self, id: u64) -> Option<&CgroupEntry> {
        self.entries.get(&id)
    }

    /// Every container cgroup the registry knows, by id (in no order).
    pub fn containers(&self) -> impl Iterator<Item = (u64, &CgroupEntry)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.identity.is_some())
            .map(|(&id, e)| (id, e))
    }

    /// The runtime metadata of the container in cgroup `id`, once read.
    pub fn metadata(&self, id: u64) -> Option<Arc<RuntimeMetadata>> {
        self.entries.get(&id)?.metadata.clone()
    }

    /// The alert record's `container` object for cgroup `id` and how complete it is:
    /// `(None, Host)` for the host's cgroups, `(Some(..), Complete | Partial | Pending)`
    /// for containers, and `(None, Pending)` for an id the registry does not know yet.
    pub fn container_info(&self, id: u64) -> (Option<ContainerInfo>, MetadataStatus) {
        match self.entries.get(&id) {
            Some(e) => (e.info.clone(), e.status),
            None => (None, MetadataStatus::Pending),
        }
    }

    /// Finds the path of a cgroup id seen in an event before its `cgroup_mkdir`
    /// (the two race through the ring buffer) or whose path was cut short.
    ///
    /// Reads `<proc_root>/<pid>/cgroup` of a process seen in it and registers
    /// the path if the directory there still has inode `id` under the scanned
    /// cgroup2 mount. Tried at most once per [`RetryPolicy::first_delay`] for
    /// each id; the id is forgotten after [`RetryPolicy::give_up_after`], or
    /// when its `cgroup_mkdir` or `cgroup_rmdir` arrives. Returns whether the id
    /// is known now.
    pub fn lookup_unknown(&mut self, id: u64, pid: u32, proc_root: &Path, now: Instant) -> bool {
        if self.entries.contains_key(&id) {
            return true;
        }
        let min_interval = self.retry.first_delay;
        if let Some(u) = self.unresolved.get(&id)
            && now.saturating_duration_since(u.last_lookup) < min_interval
        {
            return false;
        }
        if let Some(path) = self.path_from_proc(id, pid, proc_root) {
            self.insert(id, path, now);
            return true;
        }
        if !self.unresolved.contains_key(&id) && self.unresolved.len() >= MAX_UNRESOLVED {
            let oldest = self
                .unresolved
                .iter()
                .min_by_key(|(_, u)| u.first_seen)
                .map(|(&k, _)| k);
            if let Some(k) = oldest {
                self.unresolved.remove(&k);
            }
        }
        self.unresolved
            .entry(id)
            .or_insert(Unresolved {
                first_seen: now,
                last_lookup: now,
            })
            .last_lookup = now;
        false
    }

    fn path_from_proc(&self, id: u64, pid: u32, proc_root: &Path) -> Option<String> {
        let mount = self.cgroup2_mount.as_deref()?;
        let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim_end();
        let ino = fs::metadata(mount.join(path.trim_start_matches('/')))
            .ok()?
            .ino();
        (ino == id).then(|| path.to_owned())
    }

    /// How many cgroups are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no cgroup is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts of what the registry holds.
    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            cgroups: self.entries.len(),
            containers: self
                .entries
                .values()
                .filter(|e| e.identity.is_some())
                .count(),
            pending: self.pending.len(),
            unresolved: self.unresolved.len(),
        }
    }
}

fn log_unreadable(identity: &CgroupIdentity, e: &MetadataError) {
    tracing::warn!(
        container = %identity.container_id,
        runtime = %identity.runtime,
        "cannot read container metadata, reporting it partial: {e}"
    );
}

fn container_info(entry: &CgroupEntry) -> ContainerInfo {
    let identity = entry.identity.as_ref();
    let meta = entry.metadata.as_deref();
    ContainerInfo {
        id: identity.map(|i| i.container_id.clone()),
        runtime: meta
            .map(|m| m.runtime)
            .or(identity.map(|i| i.runtime))
            .map(|r| r.as_str().to_owned()),
        name: meta.and_then(|m| m.name.clone()),
        image: meta.and_then(|m| m.image.clone()),
        pod: meta.and_then(|m| m.pod.clone()),
        namespace: meta.and_then(|m| m.namespace.clone()),
        cgroup: Some(entry.path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::runtime::tests::{CONTAINERD_APP, DOCKER_WEB, fixture_root};

    fn registry(root: &Path) -> CgroupRegistry {
        CgroupRegistry::new(RuntimePaths::with_host_root(root))
    }

    fn docker_path(id: &str) -> String {
        format!("/system.slice/docker-{id}.scope")
    }

    fn write_docker(root: &Path, id: &str, name: &str) {
        let dir = root.join("var/lib/docker/containers").join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.v2.json"),
            format!(
                r#"{{"ID":"{id}","Name":"/{name}","Config":{{"Image":"busybox:1.36","User":""}}}}"#
            ),
        )
        .unwrap();
        fs::write(dir.join("hostconfig.json"), r#"{"NetworkMode":"bridge"}"#).unwrap();
    }

    #[test]
    fn mkdir_of_a_container_reads_its_metadata() {
        let now = Instant::now();
        let mut r = registry(&fixture_root());
        r.on_mkdir(10, &docker_path(DOCKER_WEB), now);
        let (info, status) = r.container_info(10);
        assert_eq!(status, MetadataStatus::Complete);
        assert_eq!(
            info,
            Some(ContainerInfo {
                id: Some(DOCKER_WEB.into()),
                runtime: Some("docker".into()),
                name: Some("web".into()),
                image: Some("nginx:1.27".into()),
                pod: None,
                namespace: None,
                cgroup: Some(docker_path(DOCKER_WEB)),
            })
        );
        assert_eq!(r.metadata(10).unwrap().posture.read_only_rootfs, Some(true));
        // A nested cgroup inside the container is the same container.
        r.on_mkdir(11, &format!("{}/init.scope", docker_path(DOCKER_WEB)), now);
        let (info, status) = r.container_info(11);
        assert_eq!(status, MetadataStatus::Complete);
        assert_eq!(info.unwrap().name.as_deref(), Some("web"));
    }

    #[test]
    fn host_cgroups_are_host_and_unknown_ids_pending() {
        let mut r = registry(&fixture_root());
        r.on_mkdir(2, "/system.slice/docker.service", Instant::now());
        assert_eq!(r.container_info(2), (None, MetadataStatus::Host));
        assert_eq!(r.container_info(3), (None, MetadataStatus::Pending));
        assert!(r.contains(2) && !r.contains(3));
    }

    #[test]
    fn kubernetes_container_info_has_pod_and_namespace() {
        let mut r = registry(&fixture_root());
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod01b4b887_7635_4346_9c20_58a294bbb034.slice/cri-containerd-{CONTAINERD_APP}.scope"
        );
        r.on_mkdir(20, &path, Instant::now());
        let (info, status) = r.container_info(20);
        let info = info.unwrap();
        assert_eq!(status, MetadataStatus::Complete);
        assert_eq!(info.runtime.as_deref(), Some("containerd"));
        assert_eq!(info.pod.as_deref(), Some("coredns-6d4b75cb6d-w4b72"));
        assert_eq!(info.namespace.as_deref(), Some("kube-system"));
        assert_eq!(info.cgroup.as_deref(), Some(path.as_str()));
    }

    #[test]
    fn pending_until_the_files_are_written_with_backoff() {
        let root = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        let t0 = Instant::now();
        let mut r = registry(root.path());
        r.on_mkdir(7, &docker_path(&id), t0);
        let (info, status) = r.container_info(7);
        assert_eq!(status, MetadataStatus::Pending);
        // Known from the path already: id, runtime and cgroup.
        let info = info.unwrap();
        assert_eq!(info.id.as_deref(), Some(id.as_str()));
        assert_eq!(info.runtime.as_deref(), Some("docker"));
        assert_eq!(info.name, None);
        assert_eq!(r.stats().pending, 1);

        // Not due yet: nothing happens.
        assert_eq!(r.retry_pending(t0 + Duration::from_millis(50)), 0);
        // Due, still missing: the delay doubles.
        assert_eq!(r.retry_pending(t0 + Duration::from_millis(100)), 0);
        assert_eq!(r.next_retry(), Some(t0 + Duration::from_millis(300)));
        assert_eq!(r.retry_pending(t0 + Duration::from_millis(300)), 0);
        assert_eq!(r.next_retry(), Some(t0 + Duration::from_millis(700)));

        write_docker(root.path(), &id, "late");
        assert_eq!(r.retry_pending(t0 + Duration::from_millis(699)), 0);
        assert_eq!(r.retry_pending(t0 + Duration::from_millis(700)), 1);
        let (info, status) = r.container_info(7);
        assert_eq!(status, MetadataStatus::Complete);
        assert_eq!(info.unwrap().name.as_deref(), Some("late"));
        assert_eq!(r.stats().pending, 0);
        assert_eq!(r.next_retry(), None);
    }

    #[test]
    fn backoff_is_capped_and_gives_up_as_partial() {
        let root = tempfile::tempdir().unwrap();
        let policy = RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            give_up_after: Duration::from_secs(20),
        };
        let t0 = Instant::now();
        let mut r = registry(root.path()).with_retry_policy(policy);
        r.on_mkdir(7, &docker_path(&"b".repeat(64)), t0);
        let mut now = t0;
        let mut delays = Vec::new();
        while let Some(at) = r.next_retry() {
            assert!(delays.len() < 20, "never gave up: {delays:?}");
            delays.push((at - now).as_secs());
            now = at;
            r.retry_pending(now);
        }
        assert_eq!(delays, [1, 2, 4, 4, 4, 4, 4]);
        assert!(now - t0 >= policy.give_up_after);
        assert_eq!(r.container_info(7).1, MetadataStatus::Partial);
        // Known from its path still.
        assert!(r.container_info(7).0.unwrap().id.is_some());
    }

    #[test]
    fn unreadable_metadata_is_partial_without_retry() {
        let root = tempfile::tempdir().unwrap();
        let id = "c".repeat(64);
        let dir = root.path().join("var/lib/docker/containers").join(&id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.v2.json"), "not json").unwrap();
        fs::write(dir.join("hostconfig.json"), "{}").unwrap();
        let mut r = registry(root.path());
        r.on_mkdir(7, &docker_path(&id), Instant::now());
        assert_eq!(r.container_info(7).1, MetadataStatus::Partial);
        assert_eq!(r.stats().pending, 0);
    }

    #[test]
    fn incomplete_metadata_is_partial() {
        let root = tempfile::tempdir().unwrap();
        let id = "d".repeat(64);
        let bundle = root
            .path()
            .join("run/containerd/io.containerd.runtime.v2.task/k8s.io")
            .join(&id);
        fs::create_dir_all(&bundle).unwrap();
        // A containerd container without CRI annotations (not Kubernetes').
        fs::write(
            bundle.join("config.json"),
            r#"{"ociVersion":"1.1.0","linux":{}}"#,
        )
        .unwrap();
        let mut r = registry(root.path());
        r.on_mkdir(
            7,
            &format!("/system.slice/cri-containerd-{id}.scope"),
            Instant::now(),
        );
        assert_eq!(r.container_info(7).1, MetadataStatus::Partial);
        assert_eq!(r.metadata(7).unwrap().posture.host_network, Some(true));
    }

    #[test]
    fn scan_registers_the_tree_by_inode() {
        let mount = tempfile::tempdir().unwrap();
        let scope = format!("system.slice/docker-{DOCKER_WEB}.scope");
        fs::create_dir_all(mount.path().join(&scope)).unwrap();
        fs::create_dir_all(mount.path().join("system.slice/cron.service")).unwrap();
        fs::create_dir_all(mount.path().join("init.scope")).unwrap();
        // Files in cgroupfs are controls, not cgroups.
        fs::write(mount.path().join("cgroup.procs"), "").unwrap();

        let mut r = registry(&fixture_root());
        let n = r.scan(mount.path(), Instant::now()).unwrap();
        assert_eq!(n, 5); // /, system.slice, the scope, cron.service, init.scope
        assert_eq!(r.cgroup2_mount(), Some(mount.path()));
        let ino = |p: &str| fs::metadata(mount.path().join(p)).unwrap().ino();
        assert_eq!(r.entry(ino(".")).unwrap().path, "/");
        assert_eq!(r.entry(ino("init.scope")).unwrap().path, "/init.scope");
        assert_eq!(r.container_info(ino("init.scope")).1, MetadataStatus::Host);
        let (info, status) = r.container_info(ino(&scope));
        assert_eq!(status, MetadataStatus::Complete);
        assert_eq!(info.unwrap().cgroup, Some(format!("/{scope}")));
        assert_eq!(
            r.stats(),
            RegistryStats {
                cgroups: 5,
                containers: 1,
                pending: 0,
                unresolved: 0
            }
        );
    }

    #[test]
    fn scans_the_real_cgroup2_tree_and_finds_this_process() {
        let Ok(mount) = crate::bpf::cgroupfs::cgroup2_mount() else {
            eprintln!("no cgroup2 mount here; nothing to scan");
            return;
        };
        let mut r = registry(&fixture_root());
        let n = r.scan(&mount, Instant::now()).unwrap();
        assert!(n >= 1 && r.len() == n);
        assert_eq!(
            r.entry(fs::metadata(&mount).unwrap().ino()).unwrap().path,
            "/"
        );
        // This process's cgroup, as /proc names it, is registered under its inode.
        let me = crate::context::ProcessTable::read_proc(
            Path::new("/proc"),
            std::process::id(),
            Some(&mount),
        )
        .unwrap();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        assert_eq!(r.entry(me.cgroup_id).map(|e| e.path.as_str()), Some(own));
    }

    #[test]
    fn unknown_ids_are_looked_up_through_proc() {
        let mount = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        let mut r = registry(&fixture_root());
        r.scan(mount.path(), Instant::now()).unwrap();

        // The container's cgroup appears after the scan; its mkdir is still in flight.
        let scope = format!("system.slice/docker-{DOCKER_WEB}.scope");
        fs::create_dir_all(mount.path().join(&scope)).unwrap();
        let id = fs::metadata(mount.path().join(&scope)).unwrap().ino();
        let t0 = Instant::now();

        // No such process: remembered as unresolved, retried no sooner than first_delay.
        assert!(!r.lookup_unknown(id, 4242, proc.path(), t0));
        assert_eq!(r.stats().unresolved, 1);
        fs::create_dir_all(proc.path().join("4242")).unwrap();
        fs::write(proc.path().join("4242/cgroup"), format!("0::/{scope}\n")).unwrap();
        assert!(!r.lookup_unknown(id, 4242, proc.path(), t0 + Duration::from_millis(10)));
        assert!(r.lookup_unknown(id, 4242, proc.path(), t0 + Duration::from_millis(100)));
        assert_eq!(r.stats().unresolved, 0);
        let (info, status) = r.container_info(id);
        assert_eq!(status, MetadataStatus::Complete);
        assert_eq!(info.unwrap().name.as_deref(), Some("web"));

        // A process that moved on to another cgroup does not name this one.
        fs::create_dir_all(mount.path().join("other")).unwrap();
        let other = fs::metadata(mount.path().join("other")).unwrap().ino();
        assert!(!r.lookup_unknown(other + 1_000_000, 4242, proc.path(), t0));
        // The later mkdir fills it in, and the lookup is forgotten.
        r.on_mkdir(other + 1_000_000, "/late", t0);
        assert_eq!(r.stats().unresolved, 0);
    }

    #[test]
    fn truncated_mkdir_paths_are_looked_up_instead() {
        let mut r = registry(&fixture_root());
        let long = format!("/{}", "x".repeat(CGROUP_PATH_LEN - 2));
        r.on_mkdir(9, &long, Instant::now());
        assert!(!r.contains(9));
        assert_eq!(r.stats().unresolved, 1);
        r.on_rmdir(9);
        assert_eq!(r.stats().unresolved, 0);
    }

    #[test]
    fn unresolved_ids_are_bounded_and_expire() {
        let proc = tempfile::tempdir().unwrap();
        let mut r = registry(&fixture_root());
        let t0 = Instant::now();
        for id in 0..(MAX_UNRESOLVED as u64 + 100) {
            r.lookup_unknown(id, 1, proc.path(), t0 + Duration::from_micros(id));
        }
        assert_eq!(r.stats().unresolved, MAX_UNRESOLVED);
        r.retry_pending(t0 + RetryPolicy::default().give_up_after + Duration::from_secs(1));
        assert_eq!(r.stats().unresolved, 0);
    }

    #[test]
    fn memory_stays_flat_over_a_thousand_containers() {
        let root = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        let mut r = registry(root.path());
        let t0 = Instant::now();
        r.on_mkdir(1, "/", t0);
        r.on_mkdir(2, "/system.slice", t0);
        let baseline = r.stats();
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            let id = format!("{:064x}", i + 1);
            // Half have their files written, half stay pending until removed.
            if i % 2 == 0 {
                write_docker(root.path(), &id, &format!("c{i}"));
            }
            r.on_mkdir(1000 + i, &docker_path(&id), now);
            r.on_mkdir(5000 + i, &format!("{}/init.scope", docker_path(&id)), now);
            // An event raced ahead of this one's mkdir.
            r.lookup_unknown(9000 + i, 4242, proc.path(), now);
            r.retry_pending(now);
            assert!(r.len() <= baseline.cgroups + 2 * 3);
            r.on_rmdir(5000 + i);
            r.on_rmdir(1000 + i);
            r.on_rmdir(9000 + i);
            fs::remove_dir_all(root.path().join("var/lib/docker/containers").join(&id)).ok();
        }
        assert_eq!(r.stats(), baseline);
        assert_eq!(r.len(), 2);
        assert_eq!(r.next_retry(), None);
    }
}
