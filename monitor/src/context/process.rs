//! pid -> process: what each process is and who started it, kept from the
//! kernel's exec, fork and exit events after one read of `/proc` at start.
//!
//! An exited process stays in the table, marked, while a live process
//! descends from it, so the ancestry of its children still names it; once no
//! live process does, a periodic sweep forgets it, so the table holds about
//! the live processes and does not grow with the exited ones. The table is
//! also bounded and evicts exited entries first. Pids are the host's (the
//! agent must share the host pid namespace to read `/proc` for them).
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::MetadataExt,
    path::Path,
};

use super::Ancestor;
use crate::event::{Event, EventBody, EventHeader};

/// One process as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    /// Thread-group id (the process id), in the host pid namespace.
    pub pid: u32,
    /// `None` when unknown; `Some(0)` for pid 1 and kernel threads' parent.
    pub ppid: Option<u32>,
    /// Real uid as of the last event.
    pub uid: u32,
    /// The kernel's task name as of the last event.
    pub comm: String,
    /// The executed file, absolute.
    pub exe: Option<String>,
    /// argv as executed (inherited from the parent until the first exec).
    pub args: Vec<String>,
    /// Start, in monotonic nanoseconds since boot (`bpf_ktime_get_ns`'s clock);
    /// 0 when unknown.
    pub start_ns: u64,
    /// cgroup v2 id as of the last event; 0 when unknown.
    pub cgroup_id: u64,
    /// When it exited (`bpf_ktime_get_ns`), if it did.
    pub exited_at: Option<u64>,
    /// Exec events seen for this pid: 1 while it runs the first program the
    /// agent saw it start, more after an `exec` hand-over; 0 when it was read
    /// from `/proc` (what it ran before is unknown).
    pub execs: u32,
    /// The table's clock at the last event about it: eviction order of live entries.
    last_seen: u64,
}

impl ProcessEntry {
    /// An entry with only a pid and a comm known.
    pub fn new(pid: u32, comm: impl Into<String>) -> Self {
        ProcessEntry {
            pid,
            ppid: None,
            uid: 0,
            comm: comm.into(),
            exe: None,
            args: Vec::new(),
            start_ns: 0,
            cgroup_id: 0,
            exited_at: None,
            execs: 0,
            last_seen: 0,
        }
    }

    fn from_header(h: &EventHeader) -> Self {
        ProcessEntry {
            uid: h.uid,
            cgroup_id: h.cgroup_id,
            ..ProcessEntry::new(h.pid, h.comm.clone())
        }
    }
}

/// The fewest exits between two sweeps of exited processes; a sweep also
/// waits for a quarter of the table to have exited, so its cost (one pass
/// over the table) stays a small constant per exit.
const SWEEP_AFTER_EXITS: usize = 256;

/// The process table, bounded to `limit` entries.
#[derive(Debug)]
pub struct ProcessTable {
    entries: HashMap<u32, ProcessEntry>,
    limit: usize,
    clock: u64,
    /// Exit events since the last sweep.
    exits_since_sweep: usize,
}

impl ProcessTable {
    /// An empty table holding at most `limit` processes (at least 1).
    pub fn new(limit: usize) -> Self {
        ProcessTable {
            entries: HashMap::new(),
            limit: limit.max(1),
            clock: 0,
            exits_since_sweep: 0,
        }
    }

    /// The most processes the table holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many processes the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every process the table holds, live or exited, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &ProcessEntry> {
        self.entries.values()
    }

    /// The process `pid`, live or exited.
    pub fn get(&self, pid: u32) -> Option<&ProcessEntry> {
        self.entries.get(&pid)
    }

    /// Adds or replaces a process, evicting others if the table is full.
    pub fn insert(&mut self, entry: ProcessEntry) {
        self.insert_keeping(entry, None);
    }

    /// Inserts `entry`; when room must be made, `keep` (a parent whose child
    /// is being added) is not evicted.
    fn insert_keeping(&mut self, mut entry: ProcessEntry, keep: Option<u32>) {
        if !self.entries.contains_key(&entry.pid) && self.entries.len() >= self.limit {
            self.make_room(&[entry.pid, keep.unwrap_or(entry.pid)]);
        }
        self.clock += 1;
        entry.last_seen = self.clock;
        self.entries.insert(entry.pid, entry);
    }

    /// Evicts a batch: the oldest exited processes first, then the live ones
    /// not heard of for longest. Batches keep the sorting cost amortised.
    fn make_room(&mut self, keep: &[u32]) {
        let batch = (self.limit / 16).max(1);
        let mut exited: Vec<(u64, u32)> = self
            .entries
            .values()
            .filter(|e| !keep.contains(&e.pid))
            .filter_map(|e| Some((e.exited_at?, e.pid)))
            .collect();
        exited.sort_unstable();
        let mut victims: Vec<u32> = exited.iter().take(batch).map(|&(_, pid)| pid).collect();
        if victims.is_empty() {
            let mut live: Vec<(u64, u32)> = self
                .entries
                .values()
                .filter(|e| !keep.contains(&e.pid))
                .map(|e| (e.last_seen, e.pid))
                .collect();
            live.sort_unstable();
            victims.extend(live.iter().take(batch).map(|&(_, pid)| pid));
        }
        for pid in victims {
            self.entries.remove(&pid);
        }
    }

    /// Updates the table from a kernel event: exec replaces the program and
    /// arguments, fork adds the child with its parent's program, arguments and
    /// cgroup, exit marks the process exited (kept for its children's
    /// ancestry). Every event refreshes its process's uid, comm and cgroup,
    /// adding the process from the event's header if it was unknown.
    ///
    /// Exited processes no live process descends from are forgotten in a
    /// sweep before a later event, never in the update of their own exit, so
    /// the exit event itself can still be described.
    pub fn update(&mut self, event: &Event) {
        if self.exits_since_sweep >= SWEEP_AFTER_EXITS.max(self.entries.len() / 4) {
            self.sweep_exited();
        }
        let h = &event.header;
        // Most events (files, connections, an exec enforcement refused) only
        // refresh a known process: do it in place rather than clone the
        // entry (its argv) and insert it.
        let changes = match &event.body {
            EventBody::Exec(x) => x.action != Some(crate::finding::ActionTaken::Denied),
            EventBody::Fork { .. } | EventBody::Exit { .. } => true,
            _ => false,
        };
        if !changes && let Some(entry) = self.entries.get_mut(&h.pid) {
            entry.uid = h.uid;
            entry.comm.clone_from(&h.comm);
            if h.cgroup_id != 0 {
                entry.cgroup_id = h.cgroup_id;
            }
            self.clock += 1;
            entry.last_seen = self.clock;
            return;
        }
        let mut entry = self
            .entries
            .get(&h.pid)
            .cloned()
            .unwrap_or_else(|| ProcessEntry::from_header(h));
        entry.uid = h.uid;
        entry.comm.clone_from(&h.comm);
        if h.cgroup_id != 0 {
            entry.cgroup_id = h.cgroup_id;
        }
        match &event.body {
            EventBody::Exec(exec) if changes => {
                if entry.exited_at.is_some() {
                    // The pid was reused and the new process's fork was lost.
                    entry = ProcessEntry::from_header(h);
                    entry.start_ns = h.ktime_ns;
                }
                entry.exe = Some(exec.filename.clone());
                entry.args.clone_from(&exec.args);
                entry.execs = entry.execs.saturating_add(1);
                if exec.ppid != 0 {
                    entry.ppid = Some(exec.ppid);
                }
            }
            EventBody::Fork { child_pid } => {
                let child = ProcessEntry {
                    pid: *child_pid,
                    ppid: Some(h.pid),
                    uid: entry.uid,
                    comm: entry.comm.clone(),
                    exe: entry.exe.clone(),
                    args: entry.args.clone(),
                    start_ns: h.ktime_ns,
                    cgroup_id: entry.cgroup_id,
                    exited_at: None,
                    execs: 0,
                    last_seen: 0,
                };
                self.insert_keeping(entry, None);
                self.insert_keeping(child, Some(h.pid));
                return;
            }
            EventBody::Exit { .. } => {
                entry.exited_at = Some(h.ktime_ns);
                self.exits_since_sweep += 1;
            }
            _ => {}
        }
        self.insert(entry);
    }

    /// Forgets every exited process that no live process in the table
    /// descends from: no ancestry can name it any more. Returns how many.
    pub fn sweep_exited(&mut self) -> usize {
        self.exits_since_sweep = 0;
        let mut needed: HashSet<u32> = HashSet::with_capacity(self.entries.len());
        for live in self.entries.values().filter(|e| e.exited_at.is_none()) {
            // Up the parents until one already marked: its own were marked with it.
            let mut pid = live.pid;
            while needed.insert(pid) {
                match self.entries.get(&pid).and_then(|e| e.ppid) {
                    Some(ppid) if ppid != 0 => pid = ppid,
                    _ => break,
                }
            }
        }
        let before = self.entries.len();
        self.entries
            .retain(|pid, e| e.exited_at.is_none() || needed.contains(pid));
        before - self.entries.len()
    }

    /// The ancestors of `pid`, nearest first, at most `depth` of them.
    /// Stops after pid 1, at pid 0, at an ancestor the table does not know
    /// (listed with no exe), at a pid that reappears (a loop), and at an
    /// entry that started after its child (the parent's pid was reused).
    pub fn ancestry(&self, pid: u32, depth: usize) -> Vec<Ancestor> {
        let mut out: Vec<Ancestor> = Vec::new();
        let mut child = self.entries.get(&pid);
        let mut next = child.and_then(|e| e.ppid);
        while let Some(ppid) = next {
            // The pids seen so far are `pid` and those in `out`: a repeat is a loop.
            if out.len() >= depth || ppid == 0 || ppid == pid || out.iter().any(|a| a.pid == ppid) {
                break;
            }
            let parent = self.entries.get(&ppid).filter(|p| {
                // A parent cannot be younger than its child; such an entry is a
                // newer process with the parent's old pid.
                let c = child.map_or(0, |c| c.start_ns);
                p.start_ns == 0 || c == 0 || p.start_ns <= c
            });
            out.push(Ancestor {
                pid: ppid,
                exe: parent.and_then(|p| p.exe.clone()),
            });
            if ppid == 1 {
                break;
            }
            next = parent.and_then(|p| p.ppid);
            child = parent;
        }
        out
    }

    /// Adds every process in `proc_root` (`/proc`, or the host's proc mounted
    /// elsewhere); returns how many were read. With `cgroup2_mount`, each
    /// process's cgroup id is read too. Processes that exit during the walk
    /// are skipped.
    pub fn seed_from_proc(
        &mut self,
        proc_root: &Path,
        cgroup2_mount: Option<&Path>,
    ) -> io::Result<usize> {
        let boot_offset = boottime_offset_ns();
        let mut count = 0;
        for dirent in fs::read_dir(proc_root)? {
            let Ok(dirent) = dirent else { continue };
            let Some(pid) = dirent.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Ok(entry) = read_proc_at(proc_root, pid, cgroup2_mount, boot_offset) {
                self.insert(entry);
                count += 1;
            }
        }
        Ok(count)
    }

    /// Reads one process from `<proc_root>/<pid>`: `stat` (comm, ppid, start),
    /// `status` (uid), `cmdline`, the `exe` link and, with `cgroup2_mount`,
    /// `cgroup`. Only `stat` and `status` are required; the others are absent
    /// for kernel threads and zombies.
    pub fn read_proc(
        proc_root: &Path,
        pid: u32,
        cgroup2_mount: Option<&Path>,
    ) -> io::Result<ProcessEntry> {
        read_proc_at(proc_root, pid, cgroup2_mount, boottime_offset_ns())
    }
}

/// At most `limit` bytes of a file.
fn read_bounded(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::with_capacity(limit.min(4096));
    fs::File::open(path)?
        .take(limit as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_proc_at(
    proc_root: &Path,
    pid: u32,
    cgroup2_mount: Option<&Path>,
    boot_offset: u64,
) -> io::Result<ProcessEntry> {
    let dir = proc_root.join(pid.to_string());
    let stat = fs::read_to_string(dir.join("stat"))?;
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", dir.join("stat").display()),
        )
    };
    // The comm is in parentheses and may itself hold spaces and parentheses.
    let (open, close) = (
        stat.find('(').ok_or_else(|| bad("no comm"))?,
        stat.rfind(')').ok_or_else(|| bad("no comm"))?,
    );
    let comm = stat.get(open + 1..close).ok_or_else(|| bad("no comm"))?;
    // Fields after the comm, from field 3 (state): ppid is field 4, starttime 22.
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ppid: u32 = rest
        .get(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad("no ppid"))?;
    let start_ticks: u64 = rest.get(19).and_then(|f| f.parse().ok()).unwrap_or(0);

    let status = fs::read_to_string(dir.join("status"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| bad("no Uid in status"))?;

    // Bounded as the kernel bounds an exec's argv: a process chooses its own
    // cmdline (megabytes are allowed), and every event of it carries a copy.
    let args = read_bounded(&dir.join("cmdline"), monitor_common::ARGS_LEN)
        .map(|raw| {
            raw.split(|&b| b == 0)
                .take(monitor_common::MAX_ARGS as usize)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .map(|mut a| {
            // cmdline ends with a NUL, leaving one empty piece.
            if a.last().is_some_and(|s| s.is_empty()) {
                a.pop();
            }
            a
        })
        .unwrap_or_default();
    let exe = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup_id = cgroup2_mount
        .and_then(|mount| {
            let text = fs::read_to_string(dir.join("cgroup")).ok()?;
            let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim_end();
            fs::metadata(mount.join(path.trim_start_matches('/'))).ok()
        })
        .map_or(0, |m| m.ino());

    // starttime counts clock ticks since boot including suspend (CLOCK_BOOTTIME);
    // events use CLOCK_MONOTONIC, which stops during suspend.
    let start_ns = (start_ticks * ns_per_tick()).saturating_sub(boot_offset);
    Ok(ProcessEntry {
        pid,
        ppid: Some(ppid),
        uid,
        comm: comm.to_owned(),
        exe,
        args,
        start_ns,
        cgroup_id,
        exited_at: None,
        execs: 0,
        last_seen: 0,
    })
}

fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// CLOCK_BOOTTIME minus CLOCK_MONOTONIC: the time the machine spent suspended.
fn boottime_offset_ns() -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid, writable timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    now(libc::CLOCK_BOOTTIME).saturating_sub(now(libc::CLOCK_MONOTONIC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExecInfo, FileInfo, FileOp};

    pub(crate) fn header(pid: u32, ktime_ns: u64, comm: &str) -> EventHeader {
        EventHeader {
            ktime_ns,
            pid,
            tid: pid,
            uid: 1000,
            gid: 1000,
            cgroup_id: 77,
            comm: comm.into(),
        }
    }

    pub(crate) fn exec(pid: u32, ppid: u32, t: u64, exe: &str, args: &[&str]) -> Event {
        Event {
            header: header(pid, t, exe.rsplit('/').next().unwrap()),
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

    pub(crate) fn fork(parent: u32, child: u32, t: u64) -> Event {
        Event {
            header: header(parent, t, "parent"),
            body: EventBody::Fork { child_pid: child },
        }
    }

    pub(crate) fn exit(pid: u32, t: u64) -> Event {
        Event {
            header: header(pid, t, "gone"),
            body: EventBody::Exit { exit_code: 0 },
        }
    }

    fn ancestors(t: &ProcessTable, pid: u32, depth: usize) -> Vec<(u32, Option<String>)> {
        t.ancestry(pid, depth)
            .into_iter()
            .map(|a| (a.pid, a.exe))
            .collect()
    }

    fn a(pid: u32, exe: &str) -> (u32, Option<String>) {
        (pid, Some(exe.to_owned()))
    }

    #[test]
    fn exec_fork_exit_build_the_tree() {
        let mut t = ProcessTable::new(100);
        t.update(&exec(1, 0, 1, "/sbin/init", &["/sbin/init"]));
        t.update(&fork(1, 100, 2));
        t.update(&exec(100, 1, 3, "/bin/sh", &["sh", "-c", "nginx"]));
        t.update(&fork(100, 200, 4));
        let child = t.get(200).unwrap();
        // fork copies the parent's program, arguments and cgroup.
        assert_eq!(child.exe.as_deref(), Some("/bin/sh"));
        assert_eq!(child.args, ["sh", "-c", "nginx"]);
        assert_eq!(child.cgroup_id, 77);
        assert_eq!(child.ppid, Some(100));
        assert_eq!(child.start_ns, 4);
        t.update(&exec(
            200,
            100,
            5,
            "/usr/sbin/nginx",
            &["nginx", "-g", "daemon off;"],
        ));
        let child = t.get(200).unwrap();
        assert_eq!(child.exe.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(child.comm, "nginx");
        assert_eq!(child.args, ["nginx", "-g", "daemon off;"]);
        assert_eq!(child.start_ns, 4, "exec keeps the process's start");

        assert_eq!(
            ancestors(&t, 200, 8),
            [a(100, "/bin/sh"), a(1, "/sbin/init")]
        );
        // The parent exits: kept, marked, still named in the ancestry.
        t.update(&exit(100, 6));
        assert_eq!(t.get(100).unwrap().exited_at, Some(6));
        assert_eq!(ancestors(&t, 200, 8)[0], a(100, "/bin/sh"));
        assert_eq!(ancestors(&t, 200, 1), [a(100, "/bin/sh")]);
        assert!(t.ancestry(200, 0).is_empty());
    }

    #[test]
    fn ancestry_stops_at_unknown_pid_zero_and_loops() {
        let mut t = ProcessTable::new(100);
        let mut e = ProcessEntry::new(10, "a");
        e.ppid = Some(9);
        t.insert(e);
        // 9 is unknown: named, without exe, and the walk stops.
        assert_eq!(t.ancestry(10, 8), [Ancestor { pid: 9, exe: None }]);
        // A loop 20 -> 21 -> 20 ends without repeating.
        for (pid, ppid) in [(20, 21), (21, 20)] {
            let mut e = ProcessEntry::new(pid, "loop");
            e.ppid = Some(ppid);
            e.exe = Some(format!("/bin/{pid}"));
            t.insert(e);
        }
        assert_eq!(
            t.ancestry(20, 8),
            [Ancestor {
                pid: 21,
                exe: Some("/bin/21".into())
            }]
        );
        // A self-parent.
        let mut e = ProcessEntry::new(30, "self");
        e.ppid = Some(30);
        t.insert(e);
        assert!(t.ancestry(30, 8).is_empty());
        // ppid 0 ends it.
        let mut e = ProcessEntry::new(40, "k");
        e.ppid = Some(0);
        t.insert(e);
        assert!(t.ancestry(40, 8).is_empty());
        // Unknown pid: nothing.
        assert!(t.ancestry(12345, 8).is_empty());
    }

    #[test]
    fn a_reused_parent_pid_is_not_taken_for_the_parent() {
        let mut t = ProcessTable::new(100);
        t.update(&exec(50, 1, 10, "/bin/bash", &["bash"]));
        t.update(&fork(50, 60, 20));
        t.update(&exit(50, 30));
        // Pid 50 is reused by an unrelated, newer process.
        t.update(&fork(1, 50, 40));
        t.update(&exec(50, 1, 41, "/usr/bin/miner", &["miner"]));
        assert_eq!(t.ancestry(60, 8), [Ancestor { pid: 50, exe: None }]);
    }

    #[test]
    fn table_is_bounded_evicting_exited_first_then_least_recent() {
        let mut t = ProcessTable::new(4);
        for pid in 1..=4 {
            t.update(&exec(pid, 0, pid as u64, "/bin/x", &[]));
        }
        t.update(&exit(2, 10));
        t.update(&exit(3, 9));
        // Full: the oldest exited (3, exited at 9) goes first.
        t.update(&exec(5, 0, 11, "/bin/x", &[]));
        assert_eq!(t.len(), 4);
        assert!(t.get(3).is_none());
        assert!(t.get(2).is_some());
        t.update(&exec(6, 0, 12, "/bin/x", &[]));
        assert!(t.get(2).is_none());
        // No exited left: the live process not heard of for longest (1) goes.
        t.update(&exec(4, 0, 13, "/bin/x", &[])); // 4 is fresh again
        t.update(&exec(7, 0, 14, "/bin/x", &[]));
        assert_eq!(t.len(), 4);
        assert!(t.get(1).is_none());
        assert!(t.get(4).is_some());
        for pid in [5, 6, 7] {
            assert!(t.get(pid).is_some(), "{pid}");
        }
    }

    #[test]
    fn a_fork_at_capacity_keeps_the_parent() {
        let mut t = ProcessTable::new(2);
        t.update(&exec(1, 0, 1, "/sbin/init", &[]));
        t.update(&exec(2, 1, 2, "/bin/sh", &[]));
        // 1 is the least recent, but 2 is forking: 1 goes, 2 stays.
        t.update(&fork(2, 3, 3));
        assert!(t.get(2).is_some() && t.get(3).is_some());
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(3).unwrap().exe.as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn memory_stays_flat_over_many_short_lived_processes() {
        let mut t = ProcessTable::new(64);
        t.update(&exec(1, 0, 1, "/sbin/init", &[]));
        for i in 0..10_000u32 {
            let pid = 1000 + i;
            t.update(&fork(1, pid, 2 + i as u64 * 3));
            t.update(&exec(pid, 1, 3 + i as u64 * 3, "/bin/true", &["true"]));
            t.update(&exit(pid, 4 + i as u64 * 3));
            assert!(t.len() <= 64);
        }
        // pid 1 was busy forking and is still there.
        assert!(t.get(1).is_some());
    }

    #[test]
    fn exited_processes_are_kept_while_a_live_descendant_needs_them() {
        let mut t = ProcessTable::new(100);
        t.update(&exec(1, 0, 1, "/sbin/init", &["/sbin/init"]));
        // sh -> run.sh -> sleep; sh and run.sh exit while sleep runs on.
        t.update(&fork(1, 10, 2));
        t.update(&exec(10, 1, 3, "/bin/sh", &["sh", "-c", "./run.sh"]));
        t.update(&fork(10, 11, 4));
        t.update(&exec(11, 10, 5, "/run.sh", &["/run.sh"]));
        t.update(&fork(11, 12, 6));
        t.update(&exec(12, 11, 7, "/bin/sleep", &["sleep", "60"]));
        // A process that exits with nothing below it.
        t.update(&fork(1, 20, 8));
        t.update(&exit(20, 9));
        t.update(&exit(11, 10));
        t.update(&exit(10, 11));

        assert_eq!(t.sweep_exited(), 1);
        assert!(t.get(20).is_none());
        assert_eq!(
            ancestors(&t, 12, 8),
            [a(11, "/run.sh"), a(10, "/bin/sh"), a(1, "/sbin/init")]
        );
        // The last one goes: the whole exited chain can be forgotten.
        t.update(&exit(12, 12));
        assert_eq!(t.sweep_exited(), 3);
        assert_eq!(t.len(), 1);
        assert!(t.get(1).is_some());
    }

    #[test]
    fn an_exit_is_described_before_its_process_is_forgotten() {
        let mut t = ProcessTable::new(1 << 16);
        t.update(&exec(1, 0, 1, "/sbin/init", &[]));
        let mut now = 2;
        for pid in 100..100 + SWEEP_AFTER_EXITS as u32 {
            t.update(&fork(1, pid, now));
            t.update(&exec(pid, 1, now + 1, "/bin/true", &["true"]));
            t.update(&exit(pid, now + 2));
            now += 3;
            // The update of its own exit never sweeps the process away.
            let e = t.get(pid).unwrap();
            assert_eq!(e.exe.as_deref(), Some("/bin/true"));
            assert!(e.exited_at.is_some());
        }
        // The next event sweeps the exited ones first.
        t.update(&exec(1, 0, now, "/sbin/init", &[]));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn memory_stays_flat_over_many_exited_processes_below_the_limit() {
        // A limit far above what is live: exited processes must not fill it.
        let mut t = ProcessTable::new(1 << 16);
        t.update(&exec(1, 0, 1, "/sbin/init", &[]));
        let mut peak = 0;
        for i in 0..20_000u32 {
            let (sh, child) = (100_000 + 2 * i, 100_001 + 2 * i);
            let at = 2 + u64::from(i) * 10;
            t.update(&fork(1, sh, at));
            t.update(&exec(sh, 1, at + 1, "/bin/sh", &["sh", "-c", "true; exit"]));
            t.update(&fork(sh, child, at + 2));
            t.update(&exec(child, sh, at + 3, "/bin/true", &["true"]));
            t.update(&exit(child, at + 4));
            t.update(&exit(sh, at + 5));
            peak = peak.max(t.len());
        }
        assert!(
            peak <= SWEEP_AFTER_EXITS + 4,
            "the table grew to {peak} entries"
        );
        assert!(t.get(1).is_some());
    }

    #[test]
    fn other_events_refresh_uid_comm_and_cgroup() {
        let mut t = ProcessTable::new(10);
        t.update(&exec(5, 1, 1, "/bin/su", &["su"]));
        let mut h = header(5, 2, "bash");
        h.uid = 0;
        h.cgroup_id = 99;
        t.update(&Event {
            header: h,
            body: EventBody::File(FileInfo {
                op: FileOp::Open,
                path: "/etc/shadow".into(),
                target: None,
                flags: vec![],
                mode: None,
                result: 3,
                requested_path: None,
                truncated: false,
                action: None,
                inode: None,
            }),
        });
        let e = t.get(5).unwrap();
        assert_eq!((e.uid, e.comm.as_str(), e.cgroup_id), (0, "bash", 99));
        assert_eq!(e.exe.as_deref(), Some("/bin/su"));
        // An event from an unknown pid adds it from the header.
        t.update(&exit(6, 3));
        assert_eq!(t.get(6).unwrap().comm, "gone");
    }

    fn fake_proc(
        root: &Path,
        pid: u32,
        comm: &str,
        ppid: u32,
        uid: u32,
        cmdline: &[u8],
        exe: Option<&str>,
    ) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        // Fields 1-22 of /proc/<pid>/stat; starttime (22) is 12345 ticks.
        fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1000 0 0 0 5 3 0 0 20 0 1 0 12345 10000000 500 18446744073709551615\n"),
        )
        .unwrap();
        fs::write(
            dir.join("status"),
            format!("Name:\t{comm}\nState:\tS (sleeping)\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n"),
        )
        .unwrap();
        fs::write(dir.join("cmdline"), cmdline).unwrap();
        if let Some(exe) = exe {
            std::os::unix::fs::symlink(exe, dir.join("exe")).unwrap();
        }
    }

    /// A process picks its own cmdline (megabytes, thousands of arguments);
    /// the start-up read keeps what an exec event would: ARGS_LEN bytes, MAX_ARGS pieces.
    #[test]
    fn cmdline_read_at_start_is_bounded_like_an_exec() {
        let proc = tempfile::tempdir().unwrap();
        let mut long = Vec::new();
        for _ in 0..5000 {
            long.extend_from_slice(&[b'A'; 400]);
            long.push(0);
        }
        fake_proc(proc.path(), 7, "big", 1, 0, &long, None);
        let mut many = Vec::new();
        for i in 0..1000 {
            many.extend_from_slice(format!("{i}\0").as_bytes());
        }
        fake_proc(proc.path(), 8, "many", 1, 0, &many, None);
        let big = ProcessTable::read_proc(proc.path(), 7, None).unwrap();
        let bytes: usize = big.args.iter().map(|a| a.len() + 1).sum();
        assert!(bytes <= monitor_common::ARGS_LEN + 1, "{bytes} bytes");
        assert_eq!(big.args[0], "A".repeat(400));
        let many = ProcessTable::read_proc(proc.path(), 8, None).unwrap();
        assert_eq!(many.args.len(), monitor_common::MAX_ARGS as usize);
        assert_eq!(many.args[..3], ["0", "1", "2"]);
    }

    #[test]
    fn seeds_from_a_fake_proc_tree() {
        let proc = tempfile::tempdir().unwrap();
        let mount = tempfile::tempdir().unwrap();
        fs::create_dir_all(mount.path().join("system.slice/nginx.service")).unwrap();
        let cg = fs::metadata(mount.path().join("system.slice/nginx.service"))
            .unwrap()
            .ino();
        fake_proc(
            proc.path(),
            1,
            "systemd",
            0,
            0,
            b"/sbin/init\0splash\0",
            Some("/usr/lib/systemd/systemd"),
        );
        fake_proc(proc.path(), 2, "kthreadd", 0, 0, b"", None);
        // A comm with spaces and parentheses.
        fake_proc(
            proc.path(),
            300,
            "my (odd) name",
            1,
            33,
            b"nginx: master process\0",
            Some("/usr/sbin/nginx"),
        );
        fs::write(
            proc.path().join("300/cgroup"),
            "0::/system.slice/nginx.service\n",
        )
        .unwrap();
        // Not processes.
        fs::create_dir_all(proc.path().join("self")).unwrap();
        fs::write(proc.path().join("uptime"), "1.0 1.0").unwrap();
        // A process that vanished mid-walk (no stat).
        fs::create_dir_all(proc.path().join("999")).unwrap();

        let mut t = ProcessTable::new(100);
        assert_eq!(
            t.seed_from_proc(proc.path(), Some(mount.path())).unwrap(),
            3
        );
        let e = t.get(300).unwrap();
        assert_eq!(e.comm, "my (odd) name");
        assert_eq!(e.ppid, Some(1));
        assert_eq!(e.uid, 33);
        assert_eq!(e.exe.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(e.args, ["nginx: master process"]);
        assert_eq!(e.cgroup_id, cg);
        assert!(e.start_ns <= 12345 * ns_per_tick());
        let k = t.get(2).unwrap();
        assert_eq!((k.exe.as_deref(), k.args.len(), k.cgroup_id), (None, 0, 0));
        assert_eq!(t.get(1).unwrap().args, ["/sbin/init", "splash"]);
        assert_eq!(
            t.ancestry(300, 8),
            [Ancestor {
                pid: 1,
                exe: Some("/usr/lib/systemd/systemd".into())
            }]
        );
    }

    #[test]
    fn reads_this_process_from_the_real_proc() {
        let me = std::process::id();
        let entry = ProcessTable::read_proc(Path::new("/proc"), me, None).unwrap();
        assert_eq!(entry.pid, me);
        // SAFETY: getppid and getuid have no preconditions.
        assert_eq!(entry.ppid, Some(unsafe { libc::getppid() } as u32));
        assert_eq!(entry.uid, unsafe { libc::getuid() });
        let exe = std::env::current_exe().unwrap();
        assert_eq!(entry.exe.as_deref(), exe.to_str());
        let args: Vec<String> = std::env::args().collect();
        assert_eq!(entry.args, args);
        // The kernel's comm is the first 15 bytes of the executable's name
        // (the test harness renames its threads, not the process).
        let name = exe.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(&entry.comm), "{} vs {name}", entry.comm);
        // Started before now, on the monotonic clock.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        assert!(entry.start_ns > 0 && entry.start_ns <= now);

        let mut t = ProcessTable::new(1 << 16);
        assert!(t.seed_from_proc(Path::new("/proc"), None).unwrap() >= 1);
        assert_eq!(t.get(me).unwrap().exe, entry.exe);
    }
}
