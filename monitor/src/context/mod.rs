//! Who and where: the process table and the cgroup-to-container registry turn
//! an [`Event`](crate::event::Event) into an [`EnrichedEvent`].
//!
//! - [`cgroup_path`]: a cgroup v2 path -> runtime, container id, pod UID, QoS.
//! - [`runtime`]: the runtime's own state files -> name, image, pod, posture.
//! - [`registry`]: cgroup id -> container, kept from a scan and mkdir/rmdir events.
//! - [`process`]: pid -> process, kept from `/proc` and exec/fork/exit events.
//! - [`names`]: per cgroup, address -> the DNS name it was resolved from.
//! - [`Enricher`]: owns the last two and enriches each event.
//!
//! How complete the container context is ([`MetadataStatus`]):
//!
//! | `container` | `metadata_status` | meaning |
//! | --- | --- | --- |
//! | `None` | `host` | a host process |
//! | `Some` | `complete` | name and image read (and pod and namespace for containerd and CRI-O) |
//! | `Some` (id, runtime, cgroup) | `pending` | the runtime has not written its files yet; retried |
//! | `Some` (what was read) | `partial` | files unreadable or incomplete, or still missing when the registry gave up |
//! | `None` | `pending` | the event's cgroup is not known yet (its `cgroup_mkdir` is still in flight); looked up |
#![warn(missing_docs)]
use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::event::{CgroupOp, Event, EventBody};

pub mod cgroup_path;
pub mod held;
pub mod names;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod sockets;

pub use cgroup_path::{CgroupDriver, CgroupIdentity, Qos, Runtime, parse_cgroup_path};
pub use held::{HeldEvents, HoldLimits, HoldStats};
pub use process::{ProcessEntry, ProcessTable};
pub use registry::{CgroupEntry, CgroupRegistry, RegistryStats, RetryPolicy};
pub use runtime::{
    DEFAULT_CAPABILITIES, ExposedPort, HostMount, Limit, MetadataError, Posture, RuntimeMetadata,
    RuntimePaths, capability_name, read_metadata,
};
pub use sockets::ListenedPort;

/// The alert record's `container` object. Unknown parts are `None` (JSON `null`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// The full container id (64 hex digits for Docker, containerd and CRI-O).
    pub id: Option<String>,
    /// `docker`, `containerd`, `crio`, `podman`.
    pub runtime: Option<String>,
    /// The container's name (Docker's without the leading `/`, Kubernetes' container name).
    pub name: Option<String>,
    /// The image as the user asked for it (`nginx:1.27`).
    pub image: Option<String>,
    /// The Kubernetes pod's name.
    pub pod: Option<String>,
    /// The Kubernetes namespace.
    pub namespace: Option<String>,
    /// The cgroup v2 path, relative to the cgroup2 mount.
    pub cgroup: Option<String>,
}

/// One ancestor in [`ProcessInfo::ancestry`], nearest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    /// Host pid.
    pub pid: u32,
    /// The ancestor's executable, when the process table knows it.
    pub exe: Option<String>,
}

/// The alert record's `process` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// Host pid (thread-group id).
    pub pid: u32,
    /// The parent's pid, when known.
    pub ppid: Option<u32>,
    /// Real uid at the event.
    pub uid: u32,
    /// The kernel's task name (15 bytes at most).
    pub comm: String,
    /// The executed file, absolute, when known.
    pub exe: Option<String>,
    /// argv as executed.
    pub args: Vec<String>,
    /// Parents, grandparents, ..., nearest first.
    pub ancestry: Vec<Ancestor>,
}

/// How much of the container context is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataStatus {
    /// Runtime state files were read: name, image (and pod, where Kubernetes) known.
    Complete,
    /// The container is known from its cgroup, but some state could not be read.
    Partial,
    /// The state files are not written yet; the registry keeps trying.
    Pending,
    /// Not in a container.
    #[default]
    Host,
}

/// Where an exec sits in its container's process tree, for rules that judge a
/// program by who started it (the shipped `shell` rule): the container's own
/// start-up, a process started into the running container from outside
/// (`docker exec`, `kubectl exec`, `nsenter`), or a child of a process inside.
///
/// The container's first process is the first one seen entering its cgroup
/// from outside (or, for containers older than the agent, the earliest
/// started such process the `/proc` walk found).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOrigin {
    /// The process is the container's first process (what the runtime
    /// started), in its first program or after an `exec` hand-over.
    pub container_init: bool,
    /// The parent runs outside the container's cgroup (the runtime's shim,
    /// runc, a host process): the process was started into the running
    /// container. False for the container's first process.
    pub entered: bool,
    /// The parent's program name ([`program_name`]), when known.
    pub parent_program: Option<String>,
}

/// A program's real name: the executable's file name, or for busybox (run as
/// `busybox APPLET ...` or through a link whose argv[0] names the applet) the
/// applet's. `/bin/busybox` with argv `["nc", ...]` is `nc`; `/usr/bin/nc` is
/// `nc` whatever it links to.
pub fn program_name<'a>(exe: &'a str, args: &'a [String]) -> &'a str {
    let base = |s: &'a str| s.rsplit('/').next().unwrap_or(s);
    let name = base(exe);
    // busybox's standalone shell runs its applets as `/proc/self/exe` with
    // the applet in argv[0].
    let reexec = exe.starts_with("/proc/") && name == "exe";
    if !name.starts_with("busybox") && !reexec {
        return name;
    }
    match args.first().map(|a| base(a)) {
        Some(a0) if !a0.is_empty() && !a0.starts_with("busybox") => a0,
        _ => args.get(1).map_or(name, |a| base(a)),
    }
}

/// An event with its process and container context attached.
#[derive(Clone, Debug)]
pub struct EnrichedEvent {
    /// The event as decoded.
    pub event: Event,
    /// The acting process (for a fork, the parent).
    pub process: ProcessInfo,
    /// `None` for host processes and for cgroups not known yet (see `metadata_status`).
    pub container: Option<ContainerInfo>,
    /// How complete `container` is.
    pub metadata_status: MetadataStatus,
    /// Everything the runtime's files said (labels, posture facts), once read.
    pub metadata: Option<Arc<RuntimeMetadata>>,
    /// For an exec in a container: where it sits in the container's process tree.
    pub origin: Option<ExecOrigin>,
}

/// What the [`Enricher`] reads and how much it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnricherConfig {
    /// The host's `/` as the agent sees it: `/`, or `/host` in a DaemonSet.
    pub host_root: PathBuf,
    /// The host's `/proc` (the agent needs the host pid namespace).
    pub proc_root: PathBuf,
    /// How many ancestors each event names.
    pub ancestry_depth: usize,
    /// The most processes the table keeps.
    pub table_limit: usize,
    /// How the registry retries containers whose runtime files are not written yet.
    pub retry: RetryPolicy,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            host_root: PathBuf::from("/"),
            proc_root: PathBuf::from("/proc"),
            ancestry_depth: 8,
            table_limit: 65_536,
            retry: RetryPolicy::default(),
        }
    }
}

impl EnricherConfig {
    /// The defaults, reading everything below `host_root` (`/host` in a
    /// DaemonSet): runtime state there, and processes in its `proc`.
    pub fn for_host_root(host_root: &Path) -> Self {
        EnricherConfig {
            host_root: host_root.to_path_buf(),
            proc_root: host_root.join("proc"),
            ..Default::default()
        }
    }
}

/// How often [`Enricher::enrich`] checks for due metadata retries on its own.
const RETRY_CHECK: Duration = Duration::from_millis(50);

/// The enrich stage: keeps the process table and the cgroup registry up to
/// date from the events it is given, and attaches their context to each.
#[derive(Debug)]
pub struct Enricher {
    config: EnricherConfig,
    registry: CgroupRegistry,
    table: ProcessTable,
    next_retry_check: Option<Instant>,
    /// cgroup id -> the pid of the container's first process.
    inits: HashMap<u64, u32>,
    /// Events of cgroups not resolved yet ([`push`](Self::push)).
    held: HeldEvents,
    /// The names each cgroup resolved, for `network.dns`.
    names: names::ResolvedNames,
}

/// Containers whose first process is remembered; past this the oldest
/// memory starts afresh (entries also go with their cgroup's rmdir).
const MAX_INITS: usize = 65_536;

impl Enricher {
    /// An enricher with an empty registry and process table; call
    /// [`seed`](Self::seed) before the first event.
    pub fn new(config: EnricherConfig) -> Self {
        let registry = CgroupRegistry::new(RuntimePaths::with_host_root(&config.host_root))
            .with_retry_policy(config.retry);
        let table = ProcessTable::new(config.table_limit);
        Enricher {
            config,
            registry,
            table,
            next_retry_check: None,
            inits: HashMap::new(),
            held: HeldEvents::new(HoldLimits::default()),
            names: names::ResolvedNames::new(names::NameLimits::default()),
        }
    }

    /// Sets how many events, and how long, [`push`](Self::push) holds.
    pub fn with_hold_limits(mut self, limits: HoldLimits) -> Self {
        self.held = HeldEvents::new(limits);
        self
    }

    /// Walks the cgroup2 tree and reads every process from `proc_root`: the
    /// state before the first event. Events should be flowing (buffered)
    /// already, so nothing between the walk and the first event is missed.
    pub fn seed(&mut self, cgroup2_mount: &Path) -> io::Result<()> {
        self.registry.scan(cgroup2_mount, Instant::now())?;
        self.table
            .seed_from_proc(&self.config.proc_root, Some(cgroup2_mount))?;
        self.seed_inits();
        Ok(())
    }

    /// For every container seen in the `/proc` walk, its first process: of
    /// the processes in its cgroup whose parent is outside it, the one that
    /// started first (later ones were started into it, `docker exec`).
    fn seed_inits(&mut self) {
        let mut first: HashMap<u64, (u64, u32)> = HashMap::new();
        for e in self.table.iter() {
            if e.cgroup_id == 0 || e.exited_at.is_some() {
                continue;
            }
            let inside = self.registry.container_info(e.cgroup_id).0.is_some();
            let parent_cgroup = e.ppid.and_then(|p| self.table.get(p)).map(|p| p.cgroup_id);
            if !inside || parent_cgroup == Some(e.cgroup_id) {
                continue;
            }
            let slot = first.entry(e.cgroup_id).or_insert((e.start_ns, e.pid));
            if (e.start_ns, e.pid) < *slot {
                *slot = (e.start_ns, e.pid);
            }
        }
        self.inits
            .extend(first.into_iter().map(|(cg, (_, pid))| (cg, pid)));
    }

    /// Where the exec of `pid` in `cgroup` sits in its container's tree;
    /// the first process entering a container from outside becomes its init.
    fn origin(&mut self, cgroup: u64, pid: u32) -> ExecOrigin {
        let parent = self
            .table
            .get(pid)
            .and_then(|e| e.ppid)
            .and_then(|p| self.table.get(p));
        let outside = parent.is_none_or(|p| p.cgroup_id != cgroup);
        // runc re-executes its own sealed copy (`/dev/fd/N`, a memfd) while
        // it sets the container up: that is not the container's first program.
        let runtime_clone = self
            .table
            .get(pid)
            .and_then(|e| e.exe.as_deref())
            .is_some_and(|exe| {
                exe.starts_with("/dev/fd/")
                    || exe.starts_with("/proc/self/fd/")
                    || exe.contains("memfd:")
            });
        let init = match self.inits.get(&cgroup) {
            Some(&init) => init,
            None if outside && !runtime_clone => {
                if self.inits.len() >= MAX_INITS {
                    self.inits.clear();
                }
                self.inits.insert(cgroup, pid);
                pid
            }
            None => 0,
        };
        ExecOrigin {
            container_init: pid == init,
            entered: outside && pid != init,
            parent_program: parent.and_then(|p| {
                p.exe
                    .as_deref()
                    .map(|exe| program_name(exe, &p.args).to_owned())
            }),
        }
    }

    /// Updates the state from `event` and attaches its context.
    pub fn enrich(&mut self, event: Event) -> EnrichedEvent {
        self.enrich_at(event, Instant::now())
    }

    /// [`enrich`](Self::enrich) at a given time (for the registry's retry clock).
    ///
    /// A process in a cgroup the registry does not know (its `cgroup_mkdir`
    /// still in flight, or lost) triggers a lookup of that id through the
    /// process's `/proc/<pid>/cgroup`; until it succeeds, or the mkdir arrives,
    /// the event carries no container and status `pending`.
    pub fn enrich_at(&mut self, mut event: Event, now: Instant) -> EnrichedEvent {
        match &mut event.body {
            EventBody::Cgroup(change) => match change.op {
                CgroupOp::Mkdir => self.registry.on_mkdir(change.id, &change.path, now),
                CgroupOp::Rmdir => {
                    self.registry.on_rmdir(change.id);
                    self.inits.remove(&change.id);
                    self.names.forget(change.id);
                }
            },
            EventBody::Dns(answer) => {
                self.names
                    .record(event.header.cgroup_id, event.header.ktime_ns, answer);
            }
            EventBody::Network(net) => {
                net.dns = self
                    .names
                    .name_for(event.header.cgroup_id, net.daddr, event.header.ktime_ns)
                    .map(str::to_owned);
            }
            _ => {}
        }
        if self.next_retry_check.is_none_or(|t| now >= t) {
            self.registry.retry_pending(now);
            self.next_retry_check = Some(now + RETRY_CHECK);
        }

        let h = &event.header;
        // A DNS answer reaches a socket, not a process (pid 0): only its
        // cgroup is known.
        let has_process = h.pid != 0;
        // A process older than the seed, or whose fork was lost: read it once.
        let first_sight = has_process && self.table.get(h.pid).is_none();
        if first_sight
            && let Ok(entry) = ProcessTable::read_proc(
                &self.config.proc_root,
                h.pid,
                self.registry.cgroup2_mount(),
            )
        {
            self.table.insert(entry);
        }
        if has_process {
            self.table.update(&event);
        }
        if first_sight || matches!(event.body, EventBody::Exec(_)) {
            self.learn_ancestors(h.pid);
        }
        let process = if has_process {
            self.process_info(&event)
        } else {
            ProcessInfo::default()
        };

        let cgroup_id = h.cgroup_id;
        if has_process && cgroup_id != 0 && !self.registry.contains(cgroup_id) {
            self.registry
                .lookup_unknown(cgroup_id, h.pid, &self.config.proc_root, now);
        }
        let (container, metadata_status) = self.registry.container_info(cgroup_id);
        let metadata = self.registry.metadata(cgroup_id);
        let origin = (container.is_some() && matches!(event.body, EventBody::Exec(_)))
            .then(|| self.origin(cgroup_id, h.pid));
        EnrichedEvent {
            event,
            process,
            container,
            metadata_status,
            metadata,
            origin,
        }
    }

    /// The enrich stage for `monitor run`: like [`enrich_at`](Self::enrich_at),
    /// except that an event of a cgroup the registry has not resolved (its
    /// `cgroup_mkdir` not seen, and `/proc` cannot say) is held until it is,
    /// rather than judged without its container ([`held`] has the bounds).
    /// Appends to `out`, in order, every event ready for the policy stage:
    /// this one, and what waited for the cgroup it resolved.
    pub fn push(&mut self, event: Event, now: Instant, out: &mut Vec<EnrichedEvent>) {
        let change = match &event.body {
            EventBody::Cgroup(c) => Some((c.op, c.id)),
            _ => None,
        };
        let mut ev = self.enrich_at(event, now);
        let cgroup = ev.event.header.cgroup_id;
        // A DNS answer has done its work (the names cache) and has no
        // process to judge: nothing waits on its cgroup.
        if cgroup == 0 || matches!(ev.event.body, EventBody::Dns(_)) {
            out.push(ev);
        } else if self.registry.contains(cgroup) {
            self.release(cgroup, true, out);
            out.push(ev);
        } else {
            // Where the exec sits in its tree is a fact of now, not of the
            // release.
            if let EventBody::Exec(_) = ev.event.body {
                ev.origin = Some(self.origin(cgroup, ev.event.header.pid));
            }
            self.held.hold(ev, now);
        }
        // What waited for a cgroup made (or removed: it will not resolve any
        // more) goes on after the change itself.
        match change {
            Some((CgroupOp::Mkdir, id)) => self.release(id, true, out),
            Some((CgroupOp::Rmdir, id)) => self.release(id, false, out),
            None => {}
        }
    }

    /// What [`push`](Self::push) holds is looked up again (through `/proc`)
    /// and released when resolved, or after the hold's `max_age` unresolved;
    /// call about once a second. Appends what is ready to `out`.
    pub fn expire_held(&mut self, now: Instant, out: &mut Vec<EnrichedEvent>) {
        if self.held.is_empty() {
            return;
        }
        for (cgroup, pid) in self.held.cgroups() {
            if self
                .registry
                .lookup_unknown(cgroup, pid, &self.config.proc_root, now)
            {
                self.release(cgroup, true, out);
            }
        }
        for cgroup in self.held.expired(now) {
            self.release(cgroup, false, out);
        }
    }

    /// Everything held, unresolved (at shutdown).
    pub fn drain_held(&mut self, out: &mut Vec<EnrichedEvent>) {
        for (cgroup, _) in self.held.cgroups() {
            self.release(cgroup, false, out);
        }
    }

    /// The hold's counters.
    pub fn hold_stats(&self) -> HoldStats {
        self.held.stats()
    }

    /// Hands on the events held for `cgroup` with what the registry knows of
    /// it now.
    fn release(&mut self, cgroup: u64, resolved: bool, out: &mut Vec<EnrichedEvent>) {
        if !self.held.holds(cgroup) {
            return;
        }
        let events = if resolved {
            self.held.take_resolved(cgroup)
        } else {
            self.held.take_unresolved(cgroup)
        };
        let (container, status) = self.registry.container_info(cgroup);
        let metadata = self.registry.metadata(cgroup);
        if container.is_none() {
            // Not a container after all: its "first process" means nothing.
            self.inits.remove(&cgroup);
        }
        for mut ev in events {
            ev.container = container.clone();
            ev.metadata_status = status;
            ev.metadata = metadata.clone();
            if container.is_none() {
                ev.origin = None;
            }
            out.push(ev);
        }
    }

    /// Reads from `proc_root` the ancestors of `pid` the table does not know,
    /// nearest first, up to the first one it knows (whose own ancestors were
    /// learnt when it was) or the ancestry depth. A parent that started after
    /// the seed and outside the watched cgroups (runc starting a `docker
    /// exec`, a CI runner) is in no event, yet belongs in the ancestry. Stops
    /// at a pid that cannot be read: it has exited, and stays unknown.
    fn learn_ancestors(&mut self, pid: u32) {
        let mut next = self.table.get(pid).and_then(|e| e.ppid);
        for _ in 0..self.config.ancestry_depth {
            let Some(ppid) = next.filter(|&p| p != 0) else {
                return;
            };
            if self.table.get(ppid).is_some() {
                return;
            }
            let Ok(entry) = ProcessTable::read_proc(
                &self.config.proc_root,
                ppid,
                self.registry.cgroup2_mount(),
            ) else {
                return;
            };
            next = entry.ppid;
            self.table.insert(entry);
        }
    }

    fn process_info(&self, event: &Event) -> ProcessInfo {
        let h = &event.header;
        let entry = self.table.get(h.pid);
        let mut info = ProcessInfo {
            pid: h.pid,
            ppid: entry.and_then(|e| e.ppid),
            uid: h.uid,
            comm: h.comm.clone(),
            exe: entry.and_then(|e| e.exe.clone()),
            args: entry.map(|e| e.args.clone()).unwrap_or_default(),
            ancestry: self.table.ancestry(h.pid, self.config.ancestry_depth),
        };
        // A refused exec left the process as it was (the table says so), but
        // its alert is about the program it tried to become.
        if let EventBody::Exec(x) = &event.body
            && x.action == Some(crate::finding::ActionTaken::Denied)
        {
            info.exe = Some(x.filename.clone());
            info.args.clone_from(&x.args);
        }
        info
    }

    /// Retries containers whose runtime files were not written yet; `enrich`
    /// does this on its own too, but only while events arrive.
    pub fn retry_pending(&mut self, now: Instant) -> usize {
        self.registry.retry_pending(now)
    }

    /// The cgroup registry.
    pub fn registry(&self) -> &CgroupRegistry {
        &self.registry
    }

    /// The process table.
    pub fn processes(&self) -> &ProcessTable {
        &self.table
    }

    /// The configuration.
    pub fn config(&self) -> &EnricherConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::MetadataExt};

    use super::*;
    use crate::context::runtime::tests::{CONTAINERD_APP, DOCKER_PRIV, DOCKER_WEB, fixture_root};
    use crate::event::{CgroupChange, EventHeader, ExecInfo, NetOp, NetworkInfo};

    /// A fake host: a cgroup2 tree and a /proc in temp dirs, runtime state from the fixtures.
    struct Host {
        mount: tempfile::TempDir,
        proc: tempfile::TempDir,
        state: PathBuf,
    }

    impl Host {
        fn new() -> Self {
            Host {
                mount: tempfile::tempdir().unwrap(),
                proc: tempfile::tempdir().unwrap(),
                state: fixture_root(),
            }
        }

        /// Makes a cgroup directory; returns its id.
        fn cgroup(&self, path: &str) -> u64 {
            let dir = self.mount.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(&dir).unwrap();
            fs::metadata(dir).unwrap().ino()
        }

        /// Puts a process in the fake /proc.
        fn process(&self, pid: u32, ppid: u32, exe: &str, args: &[&str], cgroup: &str) {
            let dir = self.proc.path().join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            let comm = exe.rsplit('/').next().unwrap();
            fs::write(
                dir.join("stat"),
                format!("{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n"),
            )
            .unwrap();
            fs::write(dir.join("status"), "Uid:\t0\t0\t0\t0\n").unwrap();
            let mut cmdline = args.join("\0");
            cmdline.push('\0');
            fs::write(dir.join("cmdline"), cmdline).unwrap();
            std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
            fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        }

        fn enricher(&self, table_limit: usize) -> Enricher {
            Enricher::new(EnricherConfig {
                host_root: self.state.clone(),
                proc_root: self.proc.path().to_owned(),
                ancestry_depth: 4,
                table_limit,
                retry: RetryPolicy::default(),
            })
        }
    }

    fn header(pid: u32, cgroup_id: u64, comm: &str) -> EventHeader {
        EventHeader {
            ktime_ns: 1_000,
            pid,
            tid: pid,
            uid: 0,
            gid: 0,
            cgroup_id,
            comm: comm.into(),
        }
    }

    fn exec(pid: u32, ppid: u32, cgroup_id: u64, exe: &str, args: &[&str]) -> Event {
        Event {
            header: header(pid, cgroup_id, exe.rsplit('/').next().unwrap()),
            body: EventBody::Exec(ExecInfo {
                action: None,
                filename: exe.into(),
                args: args.iter().map(|a| a.to_string()).collect(),
                args_truncated: false,
                ppid,
                cwd: None,
                exe_inode: None,
            }),
        }
    }

    fn fork(parent: u32, child: u32, cgroup_id: u64) -> Event {
        Event {
            header: header(parent, cgroup_id, "sh"),
            body: EventBody::Fork { child_pid: child },
        }
    }

    fn connect(pid: u32, cgroup_id: u64) -> Event {
        Event {
            header: header(pid, cgroup_id, "curl"),
            body: EventBody::Network(NetworkInfo {
                action: None,
                op: NetOp::Connect,
                protocol: crate::event::Protocol::Tcp,
                family: crate::event::Family::Ipv4,
                daddr: "203.0.113.7".parse().unwrap(),
                dport: 443,
                dns: None,
            }),
        }
    }

    /// A cgroup made or removed by systemd, itself in cgroup `actor`.
    fn cgroup_event(actor: u64, op: CgroupOp, id: u64, path: &str) -> Event {
        Event {
            header: header(1, actor, "systemd"),
            body: EventBody::Cgroup(CgroupChange {
                op,
                id,
                level: path.matches('/').count() as u32,
                path: path.into(),
            }),
        }
    }

    #[test]
    fn host_process_has_no_container_and_its_ancestry_from_proc() {
        let host = Host::new();
        let svc = host.cgroup("/system.slice/sshd.service");
        host.cgroup("/init.scope");
        host.process(
            1,
            0,
            "/usr/lib/systemd/systemd",
            &["/sbin/init"],
            "/init.scope",
        );
        host.process(
            700,
            1,
            "/usr/sbin/sshd",
            &["sshd: /usr/sbin/sshd -D"],
            "/system.slice/sshd.service",
        );
        let mut e = host.enricher(100);
        e.seed(host.mount.path()).unwrap();
        assert_eq!(e.processes().get(700).unwrap().cgroup_id, svc);

        let out = e.enrich(exec(800, 700, svc, "/bin/bash", &["bash", "-l"]));
        assert_eq!(out.metadata_status, MetadataStatus::Host);
        assert_eq!(out.container, None);
        assert!(out.metadata.is_none());
        assert_eq!(
            out.process,
            ProcessInfo {
                pid: 800,
                ppid: Some(700),
                uid: 0,
                comm: "bash".into(),
                exe: Some("/bin/bash".into()),
                args: vec!["bash".into(), "-l".into()],
                ancestry: vec![
                    Ancestor {
                        pid: 700,
                        exe: Some("/usr/sbin/sshd".into())
                    },
                    Ancestor {
                        pid: 1,
                        exe: Some("/usr/lib/systemd/systemd".into())
                    },
                ],
            }
        );
    }

    #[test]
    fn a_parent_started_after_the_seed_is_read_for_the_ancestry() {
        let host = Host::new();
        host.cgroup("/init.scope");
        host.process(
            1,
            0,
            "/usr/lib/systemd/systemd",
            &["/sbin/init"],
            "/init.scope",
        );
        let path = format!("/system.slice/docker-{DOCKER_WEB}.scope");
        let id = host.cgroup(&path);
        let mut e = host.enricher(100);
        e.seed(host.mount.path()).unwrap();

        // After the seed, a host process no event names (runc for a `docker
        // exec`) starts a process in the container, which is gone by the time
        // its exec is read.
        host.cgroup("/system.slice/containerd.service");
        host.process(
            700,
            1,
            "/usr/bin/runc",
            &["runc", "exec"],
            "/system.slice/containerd.service",
        );
        let out = e.enrich(exec(800, 700, id, "/bin/sh", &["sh"]));
        assert_eq!(
            out.process.ancestry,
            [
                Ancestor {
                    pid: 700,
                    exe: Some("/usr/bin/runc".into())
                },
                Ancestor {
                    pid: 1,
                    exe: Some("/usr/lib/systemd/systemd".into())
                },
            ]
        );
        // Read once: later events of its children find it in the table.
        assert_eq!(
            e.processes().get(700).unwrap().exe.as_deref(),
            Some("/usr/bin/runc")
        );

        // A parent that has exited cannot be read: it stays unknown.
        let out = e.enrich(exec(900, 701, id, "/bin/sh", &["sh"]));
        assert_eq!(
            out.process.ancestry,
            [Ancestor {
                pid: 701,
                exe: None
            }]
        );
        assert!(e.processes().get(701).is_none());
    }

    #[test]
    fn container_process_gets_container_and_posture() {
        let host = Host::new();
        let path = format!("/system.slice/docker-{DOCKER_PRIV}.scope");
        let id = host.cgroup(&path);
        let mut e = host.enricher(100);
        e.seed(host.mount.path()).unwrap();

        e.enrich(fork(1, 4200, id));
        let out = e.enrich(exec(
            4200,
            1,
            id,
            "/usr/sbin/sshd",
            &["/usr/sbin/sshd", "-D"],
        ));
        assert_eq!(out.metadata_status, MetadataStatus::Complete);
        let c = out.container.unwrap();
        assert_eq!(c.id.as_deref(), Some(DOCKER_PRIV));
        assert_eq!(c.runtime.as_deref(), Some("docker"));
        assert_eq!(c.name.as_deref(), Some("debug"));
        assert_eq!(c.image.as_deref(), Some("alpine:3.20"));
        assert_eq!(c.cgroup.as_deref(), Some(path.as_str()));
        let posture = &out.metadata.unwrap().posture;
        assert_eq!(posture.privileged, Some(true));
        assert_eq!(posture.host_network, Some(true));
        assert_eq!(out.process.exe.as_deref(), Some("/usr/sbin/sshd"));
        assert_eq!(out.process.ancestry, [Ancestor { pid: 1, exe: None }]);
    }

    #[test]
    fn cgroup_events_update_the_registry() {
        let host = Host::new();
        let init = host.cgroup("/init.scope");
        let mut e = host.enricher(100);
        e.seed(host.mount.path()).unwrap();
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod01b4b887_7635_4346_9c20_58a294bbb034.slice/cri-containerd-{CONTAINERD_APP}.scope"
        );
        let before = e.registry().stats();
        e.enrich(cgroup_event(init, CgroupOp::Mkdir, 9001, &path));
        let out = e.enrich(connect(5000, 9001));
        assert_eq!(out.metadata_status, MetadataStatus::Complete);
        let c = out.container.unwrap();
        assert_eq!(c.pod.as_deref(), Some("coredns-6d4b75cb6d-w4b72"));
        assert_eq!(c.namespace.as_deref(), Some("kube-system"));
        e.enrich(cgroup_event(init, CgroupOp::Rmdir, 9001, &path));
        assert_eq!(e.registry().stats(), before);
    }

    #[test]
    fn an_event_racing_its_cgroup_mkdir_is_looked_up() {
        let host = Host::new();
        let init = host.cgroup("/init.scope");
        let mut e = host.enricher(100);
        e.seed(host.mount.path()).unwrap();
        let path = format!("/system.slice/docker-{DOCKER_WEB}.scope");
        // The container starts after the seed; its mkdir event is behind this exec.
        let id = host.cgroup(&path);
        let t0 = Instant::now();
        let out = e.enrich_at(exec(6000, 1, id, "/usr/sbin/nginx", &["nginx"]), t0);
        // /proc does not show the process yet: unknown for now.
        assert_eq!(out.metadata_status, MetadataStatus::Pending);
        assert_eq!(out.container, None);

        host.process(6000, 1, "/usr/sbin/nginx", &["nginx"], &path);
        let out = e.enrich_at(connect(6000, id), t0 + Duration::from_millis(200));
        assert_eq!(out.metadata_status, MetadataStatus::Complete);
        assert_eq!(out.container.unwrap().name.as_deref(), Some("web"));
        // The late mkdir changes nothing.
        e.enrich_at(
            cgroup_event(init, CgroupOp::Mkdir, id, &path),
            t0 + Duration::from_millis(300),
        );
        let out = e.enrich_at(connect(6000, id), t0 + Duration::from_millis(400));
        assert_eq!(out.container.unwrap().name.as_deref(), Some("web"));
        assert_eq!(e.registry().stats().unresolved, 0);
    }

    /// An event whose cgroup is unknown and whose process is gone from /proc
    /// waits for the cgroup's mkdir, then carries its container: it is never
    /// judged as a host event.
    #[test]
    fn events_of_an_unresolved_cgroup_wait_for_it() {
        let host = Host::new();
        let init = host.cgroup("/init.scope");
        let mut e = host.enricher(100);
        e.seed(host.mount.path()).unwrap();
        let path = format!("/system.slice/docker-{DOCKER_WEB}.scope");
        let id = host.cgroup(&path);
        let t0 = Instant::now();
        let mut out = Vec::new();
        // The container's first exec and a connect, before the mkdir; the
        // process has exited (not in /proc).
        e.push(
            exec(6000, 1, id, "/bin/sh", &["sh", "-c", "x"]),
            t0,
            &mut out,
        );
        e.push(connect(6000, id), t0, &mut out);
        assert!(out.is_empty(), "held: {out:?}");
        // A host event passes meanwhile.
        e.push(
            exec(7000, 1, init, "/usr/bin/true", &["true"]),
            t0,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].metadata_status, MetadataStatus::Host);
        out.clear();
        // Not yet expired.
        e.expire_held(t0 + Duration::from_millis(1500), &mut out);
        assert!(out.is_empty());

        e.push(
            cgroup_event(init, CgroupOp::Mkdir, id, &path),
            t0 + Duration::from_millis(1600),
            &mut out,
        );
        let kinds: Vec<&str> = out.iter().map(|ev| ev.event.name()).collect();
        assert_eq!(kinds, ["cgroup", "exec", "network"]);
        for ev in &out[1..] {
            assert_eq!(ev.metadata_status, MetadataStatus::Complete);
            assert_eq!(ev.container.as_ref().unwrap().name.as_deref(), Some("web"));
            assert!(ev.metadata.is_some());
        }
        // Its first process, as if the mkdir had come first.
        assert!(out[1].origin.as_ref().unwrap().container_init);
        assert!(out[2].origin.is_none());
        assert_eq!(
            e.hold_stats(),
            HoldStats {
                held: 2,
                resolved: 2,
                released_unresolved: 0,
                dropped: 0
            }
        );
        // Later events of it pass at once.
        out.clear();
        e.push(connect(6000, id), t0 + Duration::from_secs(2), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].metadata_status, MetadataStatus::Complete);
    }

    /// The hold is bounded: an event that waited `max_age` goes on
    /// unresolved (`pending`, no container), and past `max_events` the oldest
    /// is dropped and counted.
    #[test]
    fn the_hold_is_bounded_in_time_and_count() {
        let host = Host::new();
        host.cgroup("/init.scope");
        let mut e = host.enricher(100).with_hold_limits(HoldLimits {
            max_events: 2,
            max_age: Duration::from_secs(2),
        });
        e.seed(host.mount.path()).unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        // An id nothing will ever resolve.
        e.push(connect(6000, 999_001), t0, &mut out);
        e.push(connect(6000, 999_001), t0, &mut out);
        e.push(
            connect(6001, 999_002),
            t0 + Duration::from_millis(10),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(e.hold_stats().dropped, 1);
        e.expire_held(t0 + Duration::from_millis(1999), &mut out);
        assert!(out.is_empty());
        e.expire_held(t0 + Duration::from_millis(2000), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event.header.cgroup_id, 999_001);
        assert_eq!(out[0].metadata_status, MetadataStatus::Pending);
        assert_eq!(out[0].container, None);
        out.clear();
        // At shutdown, whatever is held goes on.
        e.drain_held(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event.header.cgroup_id, 999_002);
        assert_eq!(
            e.hold_stats(),
            HoldStats {
                held: 3,
                resolved: 0,
                released_unresolved: 2,
                dropped: 1
            }
        );
    }

    #[test]
    fn pending_metadata_completes_once_written() {
        let host = Host::new();
        let init = host.cgroup("/init.scope");
        let state = tempfile::tempdir().unwrap();
        let mut e = Enricher::new(EnricherConfig {
            host_root: state.path().to_owned(),
            proc_root: host.proc.path().to_owned(),
            ..EnricherConfig::default()
        });
        e.seed(host.mount.path()).unwrap();
        let cid = "e".repeat(64);
        let t0 = Instant::now();
        e.enrich_at(
            cgroup_event(
                init,
                CgroupOp::Mkdir,
                77,
                &format!("/system.slice/docker-{cid}.scope"),
            ),
            t0,
        );
        let out = e.enrich_at(connect(10, 77), t0);
        assert_eq!(out.metadata_status, MetadataStatus::Pending);
        let c = out.container.unwrap();
        assert_eq!(
            (c.id.as_deref(), c.name.as_deref()),
            (Some(cid.as_str()), None)
        );

        let dir = state.path().join("var/lib/docker/containers").join(&cid);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.v2.json"),
            format!(r#"{{"ID":"{cid}","Name":"/late","Config":{{"Image":"redis:7"}}}}"#),
        )
        .unwrap();
        fs::write(dir.join("hostconfig.json"), r#"{"NetworkMode":"default"}"#).unwrap();
        // enrich retries due containers on its own.
        let out = e.enrich_at(connect(10, 77), t0 + Duration::from_millis(150));
        assert_eq!(out.metadata_status, MetadataStatus::Complete);
        assert_eq!(out.container.unwrap().image.as_deref(), Some("redis:7"));
    }

    #[test]
    fn memory_stays_flat_over_a_thousand_containers() {
        let host = Host::new();
        let init = host.cgroup("/init.scope");
        let mut e = host.enricher(256);
        e.seed(host.mount.path()).unwrap();
        let baseline = e.registry().stats();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            let path = format!("/system.slice/docker-{:064x}.scope", i + 1);
            let id = 100_000 + i;
            let pid = 10_000 + i as u32;
            e.enrich_at(cgroup_event(init, CgroupOp::Mkdir, id, &path), now);
            e.enrich_at(fork(1, pid, id), now);
            e.enrich_at(exec(pid, 1, id, "/bin/sleep", &["sleep", "1"]), now);
            // An event in a cgroup whose mkdir never comes.
            e.enrich_at(connect(pid, 500_000 + i), now);
            e.enrich_at(
                Event {
                    header: header(pid, id, "sleep"),
                    body: EventBody::Exit { exit_code: 0 },
                },
                now,
            );
            e.enrich_at(cgroup_event(init, CgroupOp::Rmdir, id, &path), now);
            e.enrich_at(
                cgroup_event(init, CgroupOp::Rmdir, 500_000 + i, "/gone"),
                now,
            );
            assert!(e.processes().len() <= 256);
        }
        assert_eq!(e.registry().stats(), baseline);
    }

    #[test]
    fn context_objects_serialise_as_the_alert_record() {
        let c = ContainerInfo {
            id: Some("3f9c".into()),
            runtime: Some("containerd".into()),
            name: Some("web".into()),
            image: Some("nginx:1.27".into()),
            pod: None,
            namespace: None,
            cgroup: Some("/kubepods.slice/x.scope".into()),
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"id": "3f9c", "runtime": "containerd", "name": "web",
                "image": "nginx:1.27", "pod": null, "namespace": null,
                "cgroup": "/kubepods.slice/x.scope"})
        );
        let p = ProcessInfo {
            pid: 4242,
            ppid: Some(4200),
            uid: 0,
            comm: "sshd".into(),
            exe: Some("/usr/sbin/sshd".into()),
            args: vec!["/usr/sbin/sshd".into(), "-D".into()],
            ancestry: vec![Ancestor {
                pid: 4200,
                exe: Some("/bin/sh".into()),
            }],
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"pid": 4242, "ppid": 4200, "uid": 0, "comm": "sshd",
                "exe": "/usr/sbin/sshd", "args": ["/usr/sbin/sshd", "-D"],
                "ancestry": [{"pid": 4200, "exe": "/bin/sh"}]})
        );
        assert_eq!(
            serde_json::to_value(MetadataStatus::Partial).unwrap(),
            "partial"
        );
    }
}
