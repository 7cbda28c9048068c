//! Who is acting: the checks every program makes first, and the record header.
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_ktime_get_ns},
};
use monitor_common::{COMM_LEN, Header};

use crate::maps::{SCOPE_ROOTS, SCOPE_VERDICTS, settings};

/// How deep below the root a watched subtree's ancestor is looked for.
const MAX_CGROUP_LEVEL: i32 = 16;

/// The header for the current task, or `None` when it is not to be reported:
/// the agent itself, or (in filtered mode) a task outside the monitored cgroups.
#[inline(always)]
pub fn current(kind: u32) -> Option<Header> {
    current_with(kind, in_scope)
}

/// [`current`] for the cgroup socket hooks. Some kernels do not offer
/// `bpf_get_current_ancestor_cgroup_id` to those programs, and the egress
/// hooks must load everywhere; so they use the verdict the tracepoint
/// programs cached for the cgroup (a container's first exec sets it) or an
/// exact match of a watched root.
#[inline(always)]
pub fn current_socket(kind: u32) -> Option<Header> {
    current_with(kind, in_scope_cached)
}

#[inline(always)]
fn current_with(kind: u32, scope: fn(u64) -> bool) -> Option<Header> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let s = settings();
    if pid == s.agent_pid {
        return None;
    }
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if s.filter_cgroups != 0 && !scope(cgroup_id) {
        return None;
    }
    Some(header(kind, pid_tgid, cgroup_id))
}

/// The cached verdict, or a watched root itself; nothing is cached here.
#[inline(always)]
fn in_scope_cached(cgroup_id: u64) -> bool {
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
    let mut verdict = 0u32;
    for level in 0..MAX_CGROUP_LEVEL {
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if ancestor == 0 {
            break; // above the task's own level
        }
        if unsafe { SCOPE_ROOTS.get(&ancestor) }.is_some() {
            verdict = 1;
            break;
        }
    }
    let _ = SCOPE_VERDICTS.insert(&cgroup_id, &verdict, 0);
    verdict != 0
}

/// The header for the current task, unfiltered.
#[inline(always)]
pub fn header(kind: u32, pid_tgid: u64, cgroup_id: u64) -> Header {
    let uid_gid = bpf_get_current_uid_gid();
    Header {
        kind,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        _pad: 0,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id,
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
    }
}
