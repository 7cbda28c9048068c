//! DNS answers, for egress rules by name: every response (source port 53,
//! UDP or TCP) that a watched cgroup's socket receives, copied whole up to
//! `DNS_PAYLOAD_MAX` for userspace to parse. A `cgroup_skb` ingress program
//! on the v2 root: it sees the packet as the socket gets it, whatever
//! library or io_uring read it, and always lets it through.
//!
//! It runs in softirq context, so the current task means nothing here: the
//! cgroup is the receiving socket's (`bpf_skb_cgroup_id`), and the record's
//! pid and comm are left 0.
use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_ns, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    macros::{cgroup_skb, map},
    maps::PerCpuArray,
    programs::SkBuffContext,
};
use monitor_common::{COMM_LEN, DNS_PAYLOAD_MAX, DnsEvent, kind, loss};

use crate::{
    context,
    maps::{EVENTS, count_lost_of, setting, wakeup_flags, within_budget_of},
};

const PASS: i32 = 1;
const DNS_PORT: u16 = 53;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// A DNS header is 12 bytes: shorter is not a message.
const DNS_HEADER_LEN: u32 = 12;

/// Room to build the record (larger than the 512-byte stack).
#[map]
static DNS_SCRATCH: PerCpuArray<DnsEvent> = PerCpuArray::with_max_entries(1, 0);

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    if let Err((cgroup, reason)) = try_dns_ingress(&ctx) {
        count_lost_of(cgroup, kind::DNS, reason);
    }
    PASS
}

/// `Ok` for a packet that is not a watched cgroup's DNS answer, or one sent;
/// `Err` with the cgroup and loss reason for an answer that could not be.
#[inline(always)]
fn try_dns_ingress(ctx: &SkBuffContext) -> Result<(), (u64, u32)> {
    let Some(offset) = dns_offset(ctx) else {
        return Ok(());
    };
    let len = ctx.len();
    if len < offset + DNS_HEADER_LEN {
        return Ok(());
    }
    // Only responses (the QR bit): a query to a server in the container is
    // its own business, and not a name it resolved.
    let Ok(flags) = ctx.load::<u8>((offset + 2) as usize) else {
        return Ok(());
    };
    if flags & 0x80 == 0 {
        return Ok(());
    }
    let skb = ctx.skb.skb;
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    if setting!(filter_cgroups) != 0 && !context::in_scope_cached(cgroup_id) {
        return Ok(());
    }
    within_budget_of(cgroup_id, kind::DNS).map_err(|r| (cgroup_id, r))?;
    let record = DNS_SCRATCH
        .get_ptr_mut(0)
        .ok_or((cgroup_id, loss::NO_SCRATCH))?;
    let record = unsafe { &mut *record };
    let message = len - offset;
    let copied = if message > DNS_PAYLOAD_MAX as u32 {
        DNS_PAYLOAD_MAX as u32
    } else {
        message
    };
    // The verifier wants the length's bounds from arithmetic it can follow,
    // not from the comparison above (the compiler folds a plain mask into
    // it): hidden from the optimiser, masked, the length is 1..=MAX.
    let copied = (core::hint::black_box(copied.wrapping_sub(1)) & (DNS_PAYLOAD_MAX as u32 - 1)) + 1;
    let read = unsafe {
        bpf_skb_load_bytes(
            skb as *const _,
            offset,
            record.payload.as_mut_ptr().cast(),
            copied,
        )
    };
    if read != 0 {
        return Err((cgroup_id, loss::READ_FAULT));
    }
    record.len = message;
    record.copied = copied;
    write_header(&mut record.header, cgroup_id);
    // Not `maps::send`: its loss would be put down to the current task's
    // cgroup, which in softirq is anyone's.
    EVENTS
        .output::<DnsEvent>(record, wakeup_flags())
        .map_err(|_| (cgroup_id, loss::RING_FULL))
}

/// Where the DNS message starts in a UDP or TCP packet from port 53 (the
/// packet begins at its IP header here), or `None` for any other packet.
#[inline(always)]
fn dns_offset(ctx: &SkBuffContext) -> Option<u32> {
    let first = ctx.load::<u8>(0).ok()?;
    let (l4, protocol) = match first >> 4 {
        4 => {
            // A later fragment has no ports; a first one is cut anyway.
            let frag = u16::from_be(ctx.load::<u16>(6).ok()?);
            if frag & 0x3fff != 0 {
                return None;
            }
            (u32::from(first & 0x0f) * 4, ctx.load::<u8>(9).ok()?)
        }
        // Extension headers are not followed: resolvers do not send them.
        6 => (40, ctx.load::<u8>(6).ok()?),
        _ => return None,
    };
    let sport = u16::from_be(ctx.load::<u16>(l4 as usize).ok()?);
    if sport != DNS_PORT {
        return None;
    }
    match protocol {
        IPPROTO_UDP => Some(l4 + 8),
        // A TCP answer that starts in this segment, after its two-byte
        // length; one spread over several segments is cut to the first.
        IPPROTO_TCP => {
            let data_offset = u32::from(ctx.load::<u8>((l4 + 12) as usize).ok()? >> 4) * 4;
            Some(l4 + data_offset + 2)
        }
        _ => None,
    }
}

#[inline(always)]
fn write_header(out: &mut monitor_common::Header, cgroup_id: u64) {
    out.kind = kind::DNS;
    out.pid = 0;
    out.tid = 0;
    out.uid = 0;
    out.gid = 0;
    out._pad = 0;
    out.ktime_ns = unsafe { bpf_ktime_get_ns() };
    out.cgroup_id = cgroup_id;
    out.comm = [0u8; COMM_LEN];
}
