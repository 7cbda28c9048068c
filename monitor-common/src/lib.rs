//! Records shared by the kernel programs and the agent.
//!
//! Every record starts with a [`Header`]; its `kind` says which record follows.
//! All records are `#[repr(C)]` with explicit padding so that both sides agree
//! on the layout without any serialisation step. Strings are NUL-padded byte
//! arrays; their `*_len` fields say how many bytes the kernel wrote.
#![no_std]

pub mod enforce;
mod globals;
mod records;

pub use self::{
    enforce::{EgressVerdict, ExecKey, PortSegment, ProtectKey},
    globals::{CGROUP2_HIERARCHY_ID, KernelOffsets, Settings},
    records::{
        AT_FDCWD, CgroupEvent, DNS_PAYLOAD_MAX, DirWalk, DnsEvent, ExecArgs, ExecEvent, ExitEvent,
        FileEvent, ForkEvent, Header, NetEvent, SyscallBitmap, SyscallEvent, action, cgroup_op,
        file_op, net_op, syscall_flags, walk_flags,
    },
};

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Room for a path string copied from user memory (`openat`'s `filename`).
pub const PATH_LEN: usize = 256;
/// Room for a directory walked in the kernel (cwd, a dirfd's file). Components are
/// written leaf first, each followed by a NUL; userspace reverses them. Writing
/// stops at `DIR_LEN / 2` so that one more component (at most 255 bytes) fits.
pub const DIR_LEN: usize = 1024;
/// How many path components the kernel walks at most.
pub const DIR_MAX_DEPTH: u32 = 40;
/// Room for a cgroup path from the `cgroup_mkdir` tracepoint.
pub const CGROUP_PATH_LEN: usize = 512;
/// Room for argv, the arguments NUL separated.
pub const ARGS_LEN: usize = 1024;
/// How many arguments of argv are copied at most.
pub const MAX_ARGS: u32 = 32;
/// Bytes of a file name the sensitive-read filter compares (NUL padded).
pub const SENSITIVE_NAME_LEN: usize = 32;

/// Record kinds. With [`loss`], the index into the lost-event counters.
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const FILE: u32 = 4;
    pub const NET: u32 = 5;
    pub const CGROUP: u32 = 6;
    pub const SYSCALL: u32 = 7;
    /// Not a record of its own: the lost-event counters count here, besides
    /// under the record's kind, an enforcement action (a denied connect, a
    /// killed exec) whose record could not be sent, so that an action taken
    /// without its alert is always told apart from an ordinary lost event.
    pub const ACTION: u32 = 8;
    /// A DNS answer a watched cgroup's socket received (see [`DnsEvent`](super::DnsEvent)).
    pub const DNS: u32 = 9;
    /// One past the largest kind: the size of the lost-event counter array.
    pub const COUNT: u32 = 10;

    /// Name used in logs and metrics.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            EXEC => "exec",
            FORK => "fork",
            EXIT => "exit",
            FILE => "file",
            NET => "network",
            CGROUP => "cgroup",
            SYSCALL => "syscall",
            ACTION => "enforcement",
            DNS => "dns",
            _ => "unknown",
        }
    }
}

/// Why the kernel programs could not send a record: the second index of the
/// lost-event counters (`kind * loss::COUNT + reason`). Every fallible step
/// on the way to the ring buffer counts its failures under one of these, so
/// no event is lost without a counter a user sees.
pub mod loss {
    /// The ring buffer was full.
    pub const RING_FULL: u32 = 0;
    /// A per-thread stash (syscall arguments kept from enter to exit) was full.
    pub const MAP_FULL: u32 = 1;
    /// A read of the tracepoint record, user or kernel memory faulted.
    pub const READ_FAULT: u32 = 2;
    /// The per-CPU scratch space could not be had.
    pub const NO_SCRATCH: u32 = 3;
    /// The cgroup had used its share of the ring buffer ([`super::Settings`]
    /// `fair_*`): one container's flood may not push out everyone's events.
    pub const RATE_LIMITED: u32 = 4;
    pub const COUNT: u32 = 5;

    /// Name used in logs and metrics.
    pub fn name(reason: u32) -> &'static str {
        match reason {
            RING_FULL => "ring_buffer_full",
            MAP_FULL => "stash_full",
            READ_FAULT => "read_fault",
            NO_SCRATCH => "no_scratch",
            RATE_LIMITED => "rate_limited",
            _ => "unknown",
        }
    }
}

/// Key of the per-cgroup loss counters (`CGROUP_LOST`): the records of one
/// kind a cgroup's tasks could not send, for one reason ([`loss`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CgroupLossKey {
    /// cgroup v2 id of the task whose record was lost.
    pub cgroup_id: u64,
    pub kind: u32,
    pub reason: u32,
}

/// The per-cgroup budget's state (`FAIR_BUCKETS`), as in the generic cell
/// rate algorithm: the time at which the cgroup's budget would be whole
/// again. Each record sent moves it on by `Settings::fair_interval_ns`; a
/// record is over budget when it lies more than `fair_burst_ns` ahead of now.
/// One number, no multiplication or division in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FairBucket {
    /// `bpf_ktime_get_ns()` at which the budget is full again.
    pub tat_ns: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data records with explicit padding and no pointers.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::PortSegment {}
    unsafe impl aya::Pod for super::EgressVerdict {}
    unsafe impl aya::Pod for super::ExecKey {}
    unsafe impl aya::Pod for super::ProtectKey {}
    unsafe impl aya::Pod for super::CgroupLossKey {}
    unsafe impl aya::Pod for super::FairBucket {}
    unsafe impl aya::Pod for super::SyscallBitmap {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_multiples_of_eight() {
        // Records are read with unaligned copies, but keeping them 8-aligned keeps
        // the ring buffer free of holes and both sides' layouts obviously equal.
        assert_eq!(size_of::<Header>() % 8, 0);
        assert_eq!(size_of::<ExecEvent>() % 8, 0);
        assert_eq!(size_of::<FileEvent>() % 8, 0);
        assert_eq!(size_of::<NetEvent>() % 8, 0);
        assert_eq!(size_of::<CgroupEvent>() % 8, 0);
        assert_eq!(size_of::<ForkEvent>() % 8, 0);
        assert_eq!(size_of::<SyscallEvent>() % 8, 0);
        assert_eq!(size_of::<KernelOffsets>() % 8, 0);
        assert_eq!(size_of::<Settings>() % 8, 0);
        assert_eq!(size_of::<CgroupLossKey>(), 16);
    }

    #[test]
    fn the_kernel_defaults_are_the_zero_values() {
        assert_eq!(KernelOffsets::ZERO, KernelOffsets::default());
        let zero = Settings::ZERO;
        assert_eq!(
            (zero.agent_pid, zero.enforce, zero.fair_interval_ns),
            (0, 0, 0)
        );
    }

    #[test]
    fn header_layout() {
        assert_eq!(size_of::<Header>(), 56);
        assert_eq!(core::mem::offset_of!(Header, cgroup_id), 32);
    }
}
