//! Egress: every connect and every sendmsg with a destination, seen by the
//! cgroup socket-address hooks on the v2 root. They see the kernel's copy of
//! the address, cover io_uring and UDP, and always allow.
//!
//! Enforcement (`--enforce`) is a second set of programs, `enforce_*`,
//! attached by the agent to each enforced container's own cgroup (never the
//! root): they deny what the container's verdicts in `EGRESS_VERDICTS` do not
//! open, and report the denial themselves.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_ancestor_cgroup_id},
    macros::{cgroup_sock_addr, map},
    maps::{HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::SockAddrContext,
};
use monitor_common::{
    EgressVerdict, NetEvent, action,
    enforce::{ALLOW_OTHER, ALLOW_TCP, ALLOW_UDP, EGRESS_KEY_FIXED_BITS, EGRESS_KEY_LEN, SEGMENTS},
    kind, net_op,
};

use crate::{
    context,
    maps::{count_lost, send, send_now, within_budget},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
/// How deep below the root an enforced container's cgroup is looked for.
const MAX_CGROUP_LEVEL: i32 = 16;

/// The call an enforcing program denied and reported (see `DENIED_MARK`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DeniedMark {
    pub pid_tgid: u64,
    pub dport: u32,
    pub family: u32,
}

/// The containers under enforcement (`--enforce`), by the cgroup id of the
/// container's own cgroup; the enforcing socket programs are attached there
/// and nowhere else.
#[map]
pub static ENFORCED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// What each enforced container may reach: the longest prefix of
/// (cgroup id, family, address) gives the ports open below it. No entry for
/// an address (the agent writes both families' /0 for every container)
/// denies it.
#[map]
pub static EGRESS_VERDICTS: LpmTrie<[u8; EGRESS_KEY_LEN], EgressVerdict> =
    LpmTrie::with_max_entries(65536, 0);

/// The connect or sendmsg an enforcing program just denied and reported, per
/// CPU: the reporting program on the root runs next in the same hook
/// invocation (descendants' programs run first), sees it here and does not
/// report the call a second time.
#[map]
pub static DENIED_MARK: PerCpuArray<DeniedMark> = PerCpuArray::with_max_entries(1, 0);

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    report(&ctx, net_op::CONNECT, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    report(&ctx, net_op::CONNECT, AF_INET6);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    report(&ctx, net_op::SENDMSG, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    report(&ctx, net_op::SENDMSG, AF_INET6);
    ALLOW
}

#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    report(&ctx, net_op::BIND, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    report(&ctx, net_op::BIND, AF_INET6);
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn enforce_connect4(ctx: SockAddrContext) -> i32 {
    enforce(&ctx, net_op::CONNECT, AF_INET)
}

#[cgroup_sock_addr(connect6)]
pub fn enforce_connect6(ctx: SockAddrContext) -> i32 {
    enforce(&ctx, net_op::CONNECT, AF_INET6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn enforce_sendmsg4(ctx: SockAddrContext) -> i32 {
    enforce(&ctx, net_op::SENDMSG, AF_INET)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn enforce_sendmsg6(ctx: SockAddrContext) -> i32 {
    enforce(&ctx, net_op::SENDMSG, AF_INET6)
}

/// The destination as the hook sees it: the family (an IPv4-mapped IPv6
/// address is IPv4), the address in network order, the port in host order.
#[inline(always)]
fn destination(ctx: &SockAddrContext, family: u32) -> (u32, [u8; 16], u32) {
    // Context fields must be read directly (no probe_read on the context).
    let sa = unsafe { &*ctx.sock_addr };
    let mut daddr = [0u8; 16];
    let mut fam = family;
    if family == AF_INET {
        daddr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    } else {
        let ip6 = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        // ::ffff:a.b.c.d goes out as IPv4 and is judged as the rules do.
        if ip6[0] == 0 && ip6[1] == 0 && ip6[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff]) {
            fam = AF_INET;
            daddr[..4].copy_from_slice(&ip6[3].to_ne_bytes());
        } else {
            for (i, word) in ip6.iter().enumerate() {
                daddr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
        }
    }
    let dport = u16::from_be(sa.user_port as u16) as u32;
    (fam, daddr, dport)
}

#[inline(always)]
fn report(ctx: &SockAddrContext, op: u32, family: u32) {
    // Read and cleared first, whatever follows: a mark left behind would
    // hide a later call of the same thread.
    let sa = unsafe { &*ctx.sock_addr };
    let dport = u16::from_be(sa.user_port as u16) as u32;
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(mark) = DENIED_MARK.get_ptr_mut(0) {
        let mark = unsafe { &mut *mark };
        let denied = mark.pid_tgid == pid_tgid && mark.dport == dport && mark.family == family;
        mark.pid_tgid = 0;
        // Already reported by the enforcing program that denied it.
        if denied {
            return;
        }
    }
    let Some(task) = context::current_socket() else {
        return;
    };
    if let Err(reason) = within_budget(kind::NET) {
        count_lost(kind::NET, reason);
        return;
    }
    let mut daddr = [0u8; 16];
    if family == AF_INET {
        daddr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    } else {
        let ip6 = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        for (i, word) in ip6.iter().enumerate() {
            daddr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    }
    let ev = NetEvent {
        header: context::header(kind::NET, task),
        op,
        family,
        protocol: sa.protocol,
        dport,
        daddr,
        action: action::NONE,
        _pad: 0,
    };
    send(&ev, kind::NET);
}

/// The enforced container's cgroup the current task is in or below: the
/// program is attached to it, and runs for its descendants too.
#[inline(always)]
fn enforced_cgroup() -> Option<u64> {
    let own = unsafe { aya_ebpf::helpers::generated::bpf_get_current_cgroup_id() };
    if unsafe { ENFORCED_CGROUPS.get(&own) }.is_some() {
        return Some(own);
    }
    for level in 0..MAX_CGROUP_LEVEL {
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if ancestor == 0 {
            return None;
        }
        if unsafe { ENFORCED_CGROUPS.get(&ancestor) }.is_some() {
            return Some(ancestor);
        }
    }
    None
}

#[inline(always)]
fn enforce(ctx: &SockAddrContext, op: u32, hook_family: u32) -> i32 {
    // Attached only where the agent enforces; a cgroup it no longer lists
    // is one it is detaching from.
    let Some(cgroup) = enforced_cgroup() else {
        return ALLOW;
    };
    let (family, daddr, dport) = destination(ctx, hook_family);
    let protocol = unsafe { (*ctx.sock_addr).protocol };
    let mut data = [0u8; EGRESS_KEY_LEN];
    data[..8].copy_from_slice(&cgroup.to_ne_bytes());
    let fam: u32 = if family == AF_INET { 4 } else { 6 };
    data[8..12].copy_from_slice(&fam.to_ne_bytes());
    data[12..28].copy_from_slice(&daddr);
    let bits = if family == AF_INET { 32 } else { 128 };
    let key = Key::new(EGRESS_KEY_FIXED_BITS + bits, data);
    let want = match protocol {
        IPPROTO_TCP => ALLOW_TCP,
        IPPROTO_UDP => ALLOW_UDP,
        _ => ALLOW_OTHER,
    };
    if let Some(mark) = DENIED_MARK.get_ptr_mut(0) {
        unsafe { (*mark).pid_tgid = 0 };
    }
    if let Some(verdict) = EGRESS_VERDICTS.get(&key) {
        let n = verdict.count as usize;
        for i in 0..SEGMENTS {
            if i >= n {
                break;
            }
            let s = &verdict.segments[i];
            if dport >= s.lo as u32 && dport <= s.hi as u32 && s.allow & want != 0 {
                return ALLOW;
            }
        }
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(mark) = DENIED_MARK.get_ptr_mut(0) {
        let mark = unsafe { &mut *mark };
        mark.pid_tgid = pid_tgid;
        mark.dport = dport;
        // The reporter compares the family its hook gives.
        mark.family = hook_family;
    }
    let task = context::current_unfiltered();
    let ev = NetEvent {
        header: context::header(kind::NET, task),
        op,
        family,
        protocol,
        dport,
        daddr,
        action: action::DENIED,
        _pad: 0,
    };
    send_now(&ev, kind::NET, true);
    DENY
}
