//! Enforcement maps, filled by the agent for each enforced container: the
//! egress verdicts by address prefix and the kill-on-exec entries, with the
//! key layout and hash both sides must agree on. Apart from the records
//! because only `--enforce` uses them.

/// Port segments one egress verdict holds; a container whose allowlist
/// needs more for one prefix is not enforced (the agent says so).
pub const SEGMENTS: usize = 16;
/// Bytes of an egress verdict key after the prefix length: the cgroup id
/// (8, native order), the family (4: 4 or 6), the address (16, network
/// order; IPv4 in the first 4).
pub const EGRESS_KEY_LEN: usize = 28;
/// Prefix bits of the key taken by the cgroup id and the family, before
/// the address's own.
pub const EGRESS_KEY_FIXED_BITS: u32 = 96;
/// `PortSegment::allow` bits.
pub const ALLOW_TCP: u32 = 1;
pub const ALLOW_UDP: u32 = 2;
pub const ALLOW_OTHER: u32 = 4;
/// The FNV-1a 64 offset basis of a whole path's hash, and of a final
/// component's (distinct, so a name never matches a path).
pub const PATH_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
pub const NAME_BASIS: u64 = 0xcbf2_9ce4_8422_2325 ^ 0x6e61_6d65;
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes` from `basis`: the hash the exec hook takes of
/// the kernel's filename (whole, and from after its last `/`).
pub const fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
    let mut h = basis;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    h
}

/// Ports `lo..=hi` (host order) where the protocols in `allow` may go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSegment {
    pub lo: u16,
    pub hi: u16,
    pub allow: u32,
}

/// What an enforced container may reach below one address prefix: a port
/// absent from every segment is denied.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressVerdict {
    pub count: u32,
    pub _pad: u32,
    pub segments: [PortSegment; SEGMENTS],
}

/// A kill-on-exec entry: an enforced cgroup and the hash of an executable
/// path or file name (`enforce::fnv1a`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExecKey {
    pub cgroup_id: u64,
    pub hash: u64,
}

/// A protected file or directory of an enforced cgroup, by identity: the
/// device as the kernel holds it (`super_block.s_dev`, `major << 20 |
/// minor`) and the inode number. The key of `PROTECTED` (`lsm.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProtectKey {
    pub cgroup_id: u64,
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}

/// `PROTECTED` value bits: a rule's `paths` entry (deny) or `allow` entry
/// naming exactly this file (`EXACT`), or everything below this directory
/// (`TREE`, a `/dir/**` glob). A write is refused when a deny bit applies
/// and no allow bit does.
pub const DENY_EXACT: u32 = 1;
pub const DENY_TREE: u32 = 2;
pub const ALLOW_EXACT: u32 = 4;
pub const ALLOW_TREE: u32 = 8;
