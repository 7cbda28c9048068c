//! Maps and globals shared by every program: the ring buffer, the loss
//! counters, the per-cgroup budget and the settings and offsets userspace
//! writes before load. A map one concern uses lives in that concern's module.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use monitor_common::{CgroupLossKey, FairBucket, KernelOffsets, Settings, kind, loss};

/// The one channel to userspace. Userspace may resize it before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Records that could not be sent, per CPU, indexed by record kind and
/// reason (`kind * loss::COUNT + reason`, see `monitor_common::loss`).
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT * loss::COUNT, 0);

/// The same losses by cgroup (the task's whose record was lost), kind and
/// reason: which container lost what. Per CPU, as `LOST` is, so that CPUs
/// never race on a count (this target has no atomic add); userspace sums.
/// Not an LRU: userspace removes a cgroup's keys when the cgroup goes, and a
/// full map only leaves a loss unattributed, never uncounted (it is in
/// `LOST` all the same). 4096 keys of 8 bytes a CPU: 4 MiB on 128 CPUs.
#[map]
pub static CGROUP_LOST: PerCpuHashMap<CgroupLossKey, u64> =
    PerCpuHashMap::with_max_entries(4096, 0);

/// Each cgroup's share of the ring buffer (see [`within_budget`]). An LRU: a
/// bucket evicted or never stored only gives its cgroup a whole budget again.
#[map]
pub static FAIR_BUCKETS: LruHashMap<u64, FairBucket> = LruHashMap::with_max_entries(16384, 0);

#[unsafe(no_mangle)]
pub static SETTINGS: Settings = Settings::ZERO;

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::ZERO;

/// One field of the settings userspace wrote before load.
///
/// Read volatile, field by field, straight from the read-only global: the
/// compiler cannot fold the zero initialiser into the code, no copy of the
/// struct lands on the 512-byte stack, and the verifier sees each field as
/// the constant it is (the map is frozen), so it prunes branches a setting
/// turns off; even ones calling helpers this kernel lacks.
macro_rules! setting {
    ($field:ident) => {{
        #[allow(unused_unsafe, reason = "callers may already be in an unsafe block")]
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::maps::SETTINGS.$field) };
        value
    }};
}

/// One kernel offset userspace wrote before load; read like [`setting!`].
macro_rules! offset {
    ($field:ident) => {{
        #[allow(unused_unsafe, reason = "callers may already be in an unsafe block")]
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::maps::OFFSETS.$field) };
        value
    }};
}

pub(crate) use {offset, setting};

const BPF_RB_NO_WAKEUP: u64 = 1;
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
/// Wake the reader once this much is waiting. Below it the reader finds the
/// records on its own short poll: a wake-up per record is an interrupt per
/// record, which costs the workload more than the hook itself.
const WAKEUP_BYTES: u64 = 256 * 1024;

/// The flags that batch wake-ups (see [`WAKEUP_BYTES`]).
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Sends a record, counting it as lost when the ring buffer is full.
#[inline(always)]
pub fn send<T: ?Sized>(record: &T, kind: u32) {
    sent(record, kind);
}

/// [`send`], saying whether the record went: for a program that must not
/// forget what it could not report.
#[inline(always)]
pub fn sent<T: ?Sized>(record: &T, kind: u32) -> bool {
    let ok = EVENTS.output::<T>(record, wakeup_flags()).is_ok();
    if !ok {
        count_lost(kind, loss::RING_FULL);
    }
    ok
}

/// Sends a record and wakes the reader at once: for execs, rare next to file
/// events, and read best while their parents still live (userspace may read
/// an unknown parent from /proc); and for records of enforcement actions.
/// A record of an action (`acted`) that cannot be sent is counted under
/// `kind::ACTION` too: an action is never taken without a trace.
#[inline(always)]
pub fn send_now<T: ?Sized>(record: &T, kind: u32, acted: bool) {
    if EVENTS.output::<T>(record, BPF_RB_FORCE_WAKEUP).is_err() {
        count_lost(kind, loss::RING_FULL);
        if acted {
            count_lost(kind::ACTION, loss::RING_FULL);
        }
    }
}

/// Counts a record that could not be sent, and why: losing one silently is
/// the failure a security monitor may not have.
#[inline(always)]
pub fn count_lost(kind: u32, reason: u32) {
    if let Some(counter) = LOST.get_ptr_mut(kind * loss::COUNT + reason) {
        unsafe { *counter += 1 };
    }
    // A cgroup record's current task is whoever made or removed the cgroup
    // (a runtime, systemd), not the cgroup it names: not attributed. A DNS
    // record's program counts its own (`count_lost_of`).
    if kind != kind::CGROUP && kind != kind::DNS {
        count_lost_in_cgroup(unsafe { bpf_get_current_cgroup_id() }, kind, reason);
    }
}

/// [`count_lost`] for a program that knows the record's cgroup and has no
/// meaningful current task (the DNS hook, in softirq).
#[inline(always)]
pub fn count_lost_of(cgroup_id: u64, kind: u32, reason: u32) {
    if let Some(counter) = LOST.get_ptr_mut(kind * loss::COUNT + reason) {
        unsafe { *counter += 1 };
    }
    count_lost_in_cgroup(cgroup_id, kind, reason);
}

const BPF_NOEXIST: u64 = 1;

/// Attributes a loss to `cgroup_id` in [`CGROUP_LOST`].
#[inline(always)]
fn count_lost_in_cgroup(cgroup_id: u64, kind: u32, reason: u32) {
    let key = CgroupLossKey {
        cgroup_id,
        kind,
        reason,
    };
    if let Some(counter) = CGROUP_LOST.get_ptr_mut(&key) {
        unsafe { *counter += 1 };
        return;
    }
    // The cgroup's first loss of this kind and reason (this CPU's slot is 1,
    // the others 0). Another CPU may insert the same key first: then this one
    // adds to its own slot of that entry. If the map is full, the loss stays
    // counted in LOST, unattributed.
    if CGROUP_LOST.insert(&key, &1, BPF_NOEXIST).is_err()
        && let Some(counter) = CGROUP_LOST.get_ptr_mut(&key)
    {
        unsafe { *counter += 1 };
    }
}

/// Which records the per-cgroup budget applies to: the ones a workload can
/// make by the hundred thousand a second (file, network, rare syscalls).
/// Exec, fork and exit records build the process table every later alert's
/// process and ancestry come from, and cgroup records the container map:
/// dropping one would misattribute a container's events long after the
/// flood, and a process cannot fork or exec fast enough to crowd out the
/// ring buffer the way an open loop does (each costs the kernel far more).
#[inline(always)]
pub fn budgeted(kind: u32) -> bool {
    kind == kind::FILE || kind == kind::NET || kind == kind::SYSCALL || kind == kind::DNS
}

/// Per-cgroup fairness: whether the current task's cgroup may send one more
/// record of `kind`, taking it from the cgroup's budget. Call before
/// anything is reserved or built; a refusal is returned as
/// `loss::RATE_LIMITED`, for `counted` to count (globally and per cgroup).
///
/// The budget is the generic cell rate algorithm on one timestamp per
/// cgroup: a cgroup sends `rate` records a second, and up to `burst` at
/// once after a quiet spell. Two CPUs of one cgroup may race on the bucket
/// and both pass; the budget is then a little generous, never stricter.
#[inline(always)]
pub fn within_budget(kind: u32) -> Result<(), u32> {
    within_budget_of(unsafe { bpf_get_current_cgroup_id() }, kind)
}

/// [`within_budget`] for the records of `cgroup_id`, for a program whose
/// current task is not the record's (the DNS hook, in softirq).
#[inline(always)]
pub fn within_budget_of(cgroup_id: u64, kind: u32) -> Result<(), u32> {
    let interval = setting!(fair_interval_ns);
    if interval == 0 || !budgeted(kind) {
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(bucket) = FAIR_BUCKETS.get_ptr_mut(&cgroup_id) else {
        // The cgroup's first budgeted record (or its bucket was evicted): a
        // whole budget.
        let fresh = FairBucket {
            tat_ns: now + interval,
        };
        // Failing to store it only gives the next record a whole budget too.
        let _ = FAIR_BUCKETS.insert(&cgroup_id, &fresh, 0);
        return Ok(());
    };
    let tat = unsafe { (*bucket).tat_ns };
    let next = if tat > now { tat } else { now } + interval;
    if next - now > setting!(fair_burst_ns) {
        return Err(loss::RATE_LIMITED);
    }
    unsafe { (*bucket).tat_ns = next };
    Ok(())
}

/// Counts the failure a program's `try_` function returned, if any: every
/// program entry point ends in this, so no failure goes uncounted.
#[inline(always)]
pub fn counted(kind: u32, result: Result<(), u32>) {
    if let Err(reason) = result {
        count_lost(kind, reason);
    }
}
