//! Who is acting: the checks every program makes first, and the record header.
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
};
use monitor_common::{COMM_LEN, Header};

use crate::maps::{MONITORED_CGROUPS, settings};

/// The header for the current task, or `None` when it is not to be reported:
/// the agent itself, or (in filtered mode) a task outside the monitored cgroups.
#[inline(always)]
pub fn current(kind: u32) -> Option<Header> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let s = settings();
    if pid == s.agent_pid {
        return None;
    }
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if s.filter_cgroups != 0 && unsafe { MONITORED_CGROUPS.get(&cgroup_id) }.is_none() {
        return None;
    }
    Some(header(kind, pid_tgid, cgroup_id))
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
