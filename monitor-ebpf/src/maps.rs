//! Maps and globals shared by every program.
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    EgressVerdict, ExecArgs, ExecEvent, ExecKey, FileEvent, KernelOffsets, SENSITIVE_NAME_LEN,
    Settings, SyscallEvent, enforce::EGRESS_KEY_LEN, kind, loss,
};

/// The one channel to userspace. Userspace may resize it before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Records that could not be sent, per CPU, indexed by record kind and
/// reason (`kind * loss::COUNT + reason`, see `monitor_common::loss`).
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT * loss::COUNT, 0);

/// The roots of the watched cgroup subtrees (when `Settings::filter_cgroups`
/// is set): a task is reported when its cgroup or an ancestor is here.
#[map]
pub static SCOPE_ROOTS: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);

/// Whether a cgroup is inside the scope (1) or not (0), cached per cgroup id.
/// A cgroup's ancestry never changes and ids are not reused, so the verdict
/// holds for the cgroup's life; the LRU drops those of cgroups long gone.
#[map]
pub static SCOPE_VERDICTS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(65536, 0);

/// argv of an exec in flight, by thread id (kept from `sys_enter_execve` to
/// `sched_process_exec`). A plain hash, not an LRU: an LRU would evict
/// another thread's entry without a word, a full hash refuses the insert,
/// which is counted. Entries go at exec or at the thread's exit.
#[map]
pub static PENDING_ARGS: HashMap<u32, ExecArgs> = HashMap::with_max_entries(2048, 0);

/// The arguments of a file syscall in flight, by thread id (kept from
/// `sys_enter_*` to `sys_exit_*`); a plain hash for the same reason.
#[map]
pub static PENDING_FILE: HashMap<u32, crate::file::Call> = HashMap::with_max_entries(16384, 0);

/// The arguments of a rare syscall in flight, by thread id.
#[map]
pub static PENDING_SYSCALL: HashMap<u32, crate::syscall::Call> = HashMap::with_max_entries(4096, 0);

/// File names whose read-only opens are reported (credential material):
/// one lookup per successful read-only open, the common case a miss.
#[map]
pub static SENSITIVE_NAMES: HashMap<[u8; SENSITIVE_NAME_LEN], u32> =
    HashMap::with_max_entries(256, 0);

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

/// Executables an enforced container's exec is killed for, by cgroup id and
/// the hash of the whole filename or of its final component.
#[map]
pub static KILL_EXECS: HashMap<ExecKey, u32> = HashMap::with_max_entries(16384, 0);

/// The connect or sendmsg an enforcing program just denied and reported, per
/// CPU: the reporting program on the root runs next in the same hook
/// invocation (descendants' programs run first), sees it here and does not
/// report the call a second time.
#[map]
pub static DENIED_MARK: PerCpuArray<crate::net::DeniedMark> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room to build records larger than the 512-byte stack.
#[map]
pub static FILE_SCRATCH: PerCpuArray<FileEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static ARGS_SCRATCH: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SYSCALL_SCRATCH: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);

#[unsafe(no_mangle)]
pub static SETTINGS: Settings = Settings {
    agent_pid: 0,
    filter_cgroups: 0,
    cgroup2_root: 0,
    scope_by_walk: 0,
    nr_clone: 0,
    nr_clone3: 0,
    nr_socket: 0,
    sensitive_reads: 0,
    enforce: 0,
    _pad: 0,
};

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
    if EVENTS.output::<T>(record, wakeup_flags()).is_err() {
        count_lost(kind, loss::RING_FULL);
    }
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
}

/// Counts the failure a program's `try_` function returned, if any: every
/// program entry point ends in this, so no failure goes uncounted.
#[inline(always)]
pub fn counted(kind: u32, result: Result<(), u32>) {
    if let Err(reason) = result {
        count_lost(kind, reason);
    }
}
