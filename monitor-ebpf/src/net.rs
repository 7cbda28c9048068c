//! Egress: every connect and every sendmsg with a destination, seen by the
//! cgroup socket-address hooks on the v2 root. They see the kernel's copy of
//! the address, cover io_uring and UDP, and always allow.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use monitor_common::{NetEvent, kind, net_op};

use crate::{
    context,
    maps::{count_lost, send, within_budget},
};

const ALLOW: i32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

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

#[inline(always)]
fn report(ctx: &SockAddrContext, op: u32, family: u32) {
    let Some(task) = context::current_socket() else {
        return;
    };
    if let Err(reason) = within_budget(kind::NET) {
        count_lost(kind::NET, reason);
        return;
    }
    // Context fields must be read directly (no probe_read on the context).
    let sa = unsafe { &*ctx.sock_addr };
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
        dport: u16::from_be(sa.user_port as u16) as u32,
        daddr,
    };
    send(&ev, kind::NET);
}
