//! Who is acting: the checks every program makes first, and the record header.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_ktime_get_ns,
        },
    },
    macros::map,
    maps::{HashMap, LruHashMap},
};
use monitor_common::{COMM_LEN, Header};

use crate::{
    kmem::{read_ptr, read_u32},
    maps::{offset, setting},
};

/// The roots of the watched cgroup subtrees (when `Settings::filter_cgroups`
/// is set): a task is reported when its cgroup or an ancestor is here.
#[map]
pub static SCOPE_ROOTS: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);

/// Whether a cgroup is inside the scope (1) or not (0), cached per cgroup id.
/// A cgroup's ancestry never changes and ids are not reused, so the verdict
/// holds for the cgroup's life; the LRU drops those of cgroups long gone.
#[map]
pub static SCOPE_VERDICTS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(65536, 0);

/// How deep below the root a watched subtree's ancestor is looked for.
const MAX_CGROUP_LEVEL: i32 = 16;

/// The current task, when it is to be reported.
#[derive(Clone, Copy)]
pub struct Task {
    pub pid_tgid: u64,
    pub cgroup_id: u64,
}

impl Task {
    /// Writes the record header in place (records live in map memory: a
    /// header built on the stack would cost 56 of its 512 bytes).
    #[inline(always)]
    pub fn write_header(self, kind: u32, out: &mut Header) {
        write_header(kind, self.pid_tgid, self.cgroup_id, out);
    }
}

/// The current task, or `None` when it is not to be reported: the agent
/// itself, or (in filtered mode) a task outside the monitored cgroups.
#[inline(always)]
pub fn current() -> Option<Task> {
    current_with(in_scope)
}

/// The current task without the agent and scope checks: for an exit whose
/// enter already passed them.
#[inline(always)]
pub fn current_unfiltered() -> Task {
    Task {
        pid_tgid: bpf_get_current_pid_tgid(),
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    }
}

/// [`current`] for the cgroup socket hooks. Some kernels do not offer
/// `bpf_get_current_ancestor_cgroup_id` to those programs, and the egress
/// hooks must load everywhere; so they use the verdict the tracepoint
/// programs cached for the cgroup (a container's first exec sets it) or an
/// exact match of a watched root.
#[inline(always)]
pub fn current_socket() -> Option<Task> {
    current_with(in_scope_cached)
}

#[inline(always)]
fn current_with(scope: fn(u64) -> bool) -> Option<Task> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == setting!(agent_pid) {
        return None;
    }
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if setting!(filter_cgroups) != 0 && !scope(cgroup_id) {
        return None;
    }
    Some(Task {
        pid_tgid,
        cgroup_id,
    })
}

/// The cached verdict, or a watched root itself; nothing is cached here.
/// Also for the DNS hook, which has only the socket's cgroup id: the
/// container's first exec, before any lookup of its, cached the verdict.
#[inline(always)]
pub fn in_scope_cached(cgroup_id: u64) -> bool {
    match unsafe { SCOPE_VERDICTS.get(&cgroup_id) } {
        Some(verdict) => *verdict != 0,
        None => unsafe { SCOPE_ROOTS.get(&cgroup_id) }.is_some(),
    }
}

/// Whether the current task's cgroup is a watched root or below one. Decided
/// here, in the kernel, from the task's own ancestry: a container made below
/// a watched cgroup is in scope from its first exec, before userspace has
/// even read its `cgroup_mkdir`.
#[inline(always)]
fn in_scope(cgroup_id: u64) -> bool {
    if let Some(verdict) = unsafe { SCOPE_VERDICTS.get(&cgroup_id) } {
        return *verdict != 0;
    }
    // `scope_by_walk` is a constant to the verifier, so on kernels whose
    // tracing programs lack the ancestor helper the helper's branch is
    // never explored (and never refused).
    let verdict = if setting!(scope_by_walk) != 0 {
        ancestry_by_walk()
    } else {
        ancestry_by_helper()
    };
    let verdict = verdict as u32;
    // Uncached (map full) only costs the next event the same walk again.
    let _ = SCOPE_VERDICTS.insert(&cgroup_id, &verdict, 0);
    verdict != 0
}

#[inline(always)]
fn ancestry_by_helper() -> bool {
    for level in 0..MAX_CGROUP_LEVEL {
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if ancestor == 0 {
            return false; // above the task's own level
        }
        if unsafe { SCOPE_ROOTS.get(&ancestor) }.is_some() {
            return true;
        }
    }
    false
}

/// The same question answered from the task's default-hierarchy cgroup and
/// its kernfs parents: a v2 cgroup's id is its kernfs node's id.
#[inline(always)]
fn ancestry_by_walk() -> bool {
    if offset!(cgroups_valid) == 0 {
        return false;
    }
    let task = unsafe { bpf_get_current_task() };
    let Ok(mut kn) = (unsafe { kernfs_of(task) }) else {
        return false;
    };
    for _ in 0..MAX_CGROUP_LEVEL {
        if kn == 0 {
            return false;
        }
        let Ok(id) = (unsafe { read_ptr(kn, offset!(kernfs_id)) }) else {
            return false;
        };
        if unsafe { SCOPE_ROOTS.get(&id) }.is_some() {
            return true;
        }
        kn = match unsafe { read_ptr(kn, offset!(kernfs_parent)) } {
            Ok(parent) => parent,
            Err(_) => return false,
        };
    }
    false
}

/// `task->cgroups->dfl_cgrp->kn`.
#[inline(always)]
unsafe fn kernfs_of(task: u64) -> Result<u64, i64> {
    unsafe {
        let css_set = read_ptr(task, offset!(task_cgroups))?;
        let cgroup = read_ptr(css_set, offset!(css_set_dfl_cgrp))?;
        read_ptr(cgroup, offset!(cgroup_kn))
    }
}

/// The current process's id in its own pid namespace, or 0 when this
/// kernel's BTF did not give the members: `group_leader->thread_pid->
/// numbers[level].nr`.
#[inline(always)]
pub fn ns_tgid() -> u32 {
    if offset!(pidns_valid) == 0 {
        return 0;
    }
    unsafe { ns_tgid_of(bpf_get_current_task()) }.unwrap_or(0)
}

#[inline(always)]
unsafe fn ns_tgid_of(task: u64) -> Result<u32, i64> {
    unsafe {
        let leader = read_ptr(task, offset!(task_group_leader))?;
        let pid = read_ptr(leader, offset!(task_thread_pid))?;
        // Bounded so the verifier sees a finite offset; real kernels nest
        // pid namespaces at most 32 deep.
        let level = read_u32(pid, offset!(pid_level))? & 31;
        read_u32(pid, offset!(pid_numbers) + level * offset!(upid_size))
    }
}

/// Writes the header for the current task, unfiltered, in place.
#[inline(always)]
pub fn write_header(kind: u32, pid_tgid: u64, cgroup_id: u64, out: &mut Header) {
    let uid_gid = bpf_get_current_uid_gid();
    out.kind = kind;
    out.pid = (pid_tgid >> 32) as u32;
    out.tid = pid_tgid as u32;
    out.uid = uid_gid as u32;
    out.gid = (uid_gid >> 32) as u32;
    out._pad = 0;
    out.ktime_ns = unsafe { bpf_ktime_get_ns() };
    out.cgroup_id = cgroup_id;
    out.comm = bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]);
}

/// The header for the current task, unfiltered, by value: for records small
/// enough to build on the stack.
#[inline(always)]
pub fn header(kind: u32, task: Task) -> Header {
    let mut out = Header {
        kind,
        pid: 0,
        tid: 0,
        uid: 0,
        gid: 0,
        _pad: 0,
        ktime_ns: 0,
        cgroup_id: 0,
        comm: [0u8; COMM_LEN],
    };
    task.write_header(kind, &mut out);
    out
}
