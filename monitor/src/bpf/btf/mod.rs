//! A focused reader of kernel BTF: the byte offsets of struct members.
//!
//! Rust eBPF programs get no CO-RE relocations, so the agent reads the member
//! offsets they need from the running kernel's BTF and hands them over as
//! [`KernelOffsets`]. aya-obj parses BTF but keeps member access private and
//! btf-rs is LGPL, hence this reader of the format described in the kernel's
//! `Documentation/bpf/btf.rst`. Only base BTF is supported (`vmlinux`, not the
//! split BTF of modules).
//!
//! This file parses the format; `offsets` holds what the agent asks of it
//! (the members the kernel programs read, with their types checked).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod offsets;

pub use offsets::{
    cgroup_walk_offsets, fentry_tier_offsets, inode_offsets, kernel_offsets, pidns_offsets,
    vfs_offsets,
};

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_PATH: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xEB9F;
const VERSION: u8 = 1;
/// Size of the header fields this reader knows; newer headers may be longer.
const HEADER_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_LEN: usize = 12;
/// `struct btf_member`: name_off, type, offset.
const MEMBER_LEN: usize = 12;
/// Bounds every walk through wrappers and anonymous members, so a malformed
/// blob with a cycle ends in an error rather than a hang.
const MAX_DEPTH: u32 = 64;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why BTF could not be read or a member offset could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error(
        "cannot read kernel BTF at {}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)",
        path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blob does not follow the BTF format.
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// No struct or union of that name.
    #[error("struct {name} not found in kernel BTF")]
    StructNotFound { name: String },
    /// The struct exists but has no such member, directly or in an anonymous member.
    #[error("member {member} not found in struct {struct_name} in kernel BTF")]
    MemberNotFound { struct_name: String, member: String },
    /// The member is a bitfield (or not byte aligned): it has no byte offset.
    #[error("{struct_name}.{member} is a bitfield and has no byte offset")]
    Bitfield { struct_name: String, member: String },
    /// A dotted member path descends into something that is not a struct or union.
    #[error("{struct_name}.{member}: {found} has no members")]
    NotComposite {
        struct_name: String,
        member: String,
        found: String,
    },
    /// The member exists but its type is not what the kernel programs read there.
    #[error("{struct_name}.{member} is {found}, but the kernel programs read it as {expected}")]
    UnexpectedType {
        struct_name: String,
        member: String,
        expected: String,
        found: String,
    },
    /// Several structs share the name and disagree on the member's offset.
    #[error(
        "struct {struct_name} is defined several times in kernel BTF with different offsets \
         for {member}: {offsets:?}"
    )]
    Ambiguous {
        struct_name: String,
        member: String,
        offsets: Vec<u32>,
    },
}

fn malformed(msg: impl Into<String>) -> BtfError {
    BtfError::Malformed(msg.into())
}

/// One `struct btf_type`, with where its kind-specific data starts.
#[derive(Clone, Copy, Debug)]
struct TypeEntry {
    name_off: u32,
    info: u32,
    /// `size` for INT, ENUM, STRUCT, UNION, DATASEC, FLOAT, ENUM64; `type` otherwise.
    size_or_type: u32,
    /// Byte position in `Btf::data` of the data following the common header.
    body: usize,
}

impl TypeEntry {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
}

/// A member found by name.
#[derive(Clone, Copy, Debug)]
struct Member {
    /// Byte offset from the start of the outermost struct.
    offset: u32,
    type_id: u32,
}

/// A member of a struct or union before any name matching.
#[derive(Clone, Copy, Debug)]
struct RawMember {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// Parsed kernel BTF, enough to look up struct member offsets.
pub struct Btf {
    data: Vec<u8>,
    big_endian: bool,
    /// Byte range of the string section in `data`.
    strings: std::ops::Range<usize>,
    /// `types[i]` is type id `i + 1`; id 0 is `void`.
    types: Vec<TypeEntry>,
    /// Struct and union ids by name. Names repeat when compilation units
    /// define different structs of the same name.
    composites: HashMap<String, Vec<u32>>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("bytes", &self.data.len())
            .field("types", &self.types.len())
            .finish()
    }
}

impl Btf {
    /// Parses a BTF blob (the content of `/sys/kernel/btf/vmlinux`), of either byte order.
    pub fn from_bytes(data: &[u8]) -> Result<Btf, BtfError> {
        Btf::parse(data.to_vec())
    }

    /// Reads and parses the BTF file at `path`.
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Btf::parse(data)
    }

    /// Reads the running kernel's BTF from [`VMLINUX_PATH`].
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX_PATH))
    }

    fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(malformed(format!(
                "{} bytes is shorter than the header",
                data.len()
            )));
        }
        let big_endian = match [data[0], data[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            m => {
                return Err(malformed(format!(
                    "bad magic {:#06x}, expected {MAGIC:#06x}",
                    u16::from_le_bytes(m)
                )));
            }
        };
        if data[2] != VERSION {
            return Err(malformed(format!("unsupported version {}", data[2])));
        }
        let mut btf = Btf {
            data,
            big_endian,
            strings: 0..0,
            types: Vec::new(),
            composites: HashMap::new(),
        };
        let hdr_len = btf.u32_at(4) as usize;
        if hdr_len < HEADER_LEN || hdr_len > btf.data.len() {
            return Err(malformed(format!("header length {hdr_len} out of range")));
        }
        let section = |off: u32, len: u32, what: &str| {
            let start = hdr_len.checked_add(off as usize);
            let end = start.and_then(|s| s.checked_add(len as usize));
            match (start, end) {
                (Some(start), Some(end)) if end <= btf.data.len() => Ok(start..end),
                _ => Err(malformed(format!(
                    "{what} section (offset {off}, length {len}) runs past the end"
                ))),
            }
        };
        let types = section(btf.u32_at(8), btf.u32_at(12), "type")?;
        let strings = section(btf.u32_at(16), btf.u32_at(20), "string")?;
        // The format requires offset 0 to be the empty string and the section to
        // end with a NUL, so every name lookup terminates inside the section.
        if strings.is_empty() || btf.data[strings.start] != 0 || btf.data[strings.end - 1] != 0 {
            return Err(malformed("string section does not start and end with NUL"));
        }
        btf.strings = strings;
        btf.types = btf.walk_types(types)?;
        btf.composites = btf.index_composites()?;
        Ok(btf)
    }

    /// Records where each type starts. Every kind's trailing data is sized here,
    /// so an unknown kind stops the walk instead of desyncing it.
    fn walk_types(&self, section: std::ops::Range<usize>) -> Result<Vec<TypeEntry>, BtfError> {
        let mut types = Vec::new();
        let mut pos = section.start;
        while pos < section.end {
            let id = types.len() + 1;
            if section.end - pos < TYPE_LEN {
                return Err(malformed(format!("type {id} truncated")));
            }
            let entry = TypeEntry {
                name_off: self.u32_at(pos),
                info: self.u32_at(pos + 4),
                size_or_type: self.u32_at(pos + 8),
                body: pos + TYPE_LEN,
            };
            let vlen = entry.vlen();
            let extra = match entry.kind() {
                KIND_INT => 4,
                KIND_PTR => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => MEMBER_LEN * vlen,
                KIND_ENUM => 8 * vlen,
                KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC => 0,
                KIND_FUNC_PROTO => 8 * vlen,
                KIND_VAR => 4,
                KIND_DATASEC => 12 * vlen,
                KIND_FLOAT => 0,
                KIND_DECL_TAG => 4,
                KIND_TYPE_TAG => 0,
                KIND_ENUM64 => 12 * vlen,
                kind => return Err(malformed(format!("type {id} has unknown kind {kind}"))),
            };
            let end = entry.body + extra;
            if end > section.end {
                return Err(malformed(format!("type {id} runs past the type section")));
            }
            types.push(entry);
            pos = end;
        }
        Ok(types)
    }

    fn index_composites(&self) -> Result<HashMap<String, Vec<u32>>, BtfError> {
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, t) in self.types.iter().enumerate() {
            if matches!(t.kind(), KIND_STRUCT | KIND_UNION) && t.name_off != 0 {
                let name = self.name(t.name_off)?;
                index.entry(name.to_owned()).or_default().push(i as u32 + 1);
            }
        }
        Ok(index)
    }

    fn u32_at(&self, pos: usize) -> u32 {
        let b: [u8; 4] = self.data[pos..pos + 4].try_into().expect("4 bytes");
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn name(&self, off: u32) -> Result<&str, BtfError> {
        let start = self
            .strings
            .start
            .checked_add(off as usize)
            .filter(|s| *s < self.strings.end)
            .ok_or_else(|| malformed(format!("string offset {off} out of range")))?;
        let bytes = &self.data[start..self.strings.end];
        // The section ends with a NUL (checked at parse), so one is found.
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len])
            .map_err(|_| malformed(format!("string at offset {off} is not UTF-8")))
    }

    fn entry(&self, id: u32) -> Result<&TypeEntry, BtfError> {
        id.checked_sub(1)
            .and_then(|i| self.types.get(i as usize))
            .ok_or_else(|| malformed(format!("type id {id} out of range")))
    }

    /// Follows typedef, const, volatile, restrict and type tags to the type
    /// that says what the bytes are. Returns 0 for `void`.
    fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(0);
            }
            let t = self.entry(id)?;
            match t.kind() {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(id),
            }
        }
        Err(malformed(format!("type chain from id {id} is too long")))
    }

    fn members(&self, id: u32) -> Result<impl Iterator<Item = RawMember> + '_, BtfError> {
        let t = *self.entry(id)?;
        let kind_flag = t.kind_flag();
        Ok((0..t.vlen()).map(move |i| {
            let pos = t.body + i * MEMBER_LEN;
            let offset = self.u32_at(pos + 8);
            // With kind_flag set the offset packs the bitfield size above a 24-bit offset.
            let (bit_offset, bitfield_size) = if kind_flag {
                (offset & 0xff_ffff, offset >> 24)
            } else {
                (offset, 0)
            };
            RawMember {
                name_off: self.u32_at(pos),
                type_id: self.u32_at(pos + 4),
                bit_offset,
                bitfield_size,
            }
        }))
    }

    fn is_composite(&self, id: u32) -> Result<bool, BtfError> {
        Ok(id != 0 && matches!(self.entry(id)?.kind(), KIND_STRUCT | KIND_UNION))
    }

    /// Before kind_flag existed a bitfield was an INT member whose encoding
    /// carries a bit offset or fewer bits than its size.
    fn is_int_bitfield(&self, type_id: u32) -> Result<bool, BtfError> {
        let id = self.resolve(type_id)?;
        if id == 0 {
            return Ok(false);
        }
        let t = self.entry(id)?;
        if t.kind() != KIND_INT {
            return Ok(false);
        }
        let encoding = self.u32_at(t.body);
        let nr_bits = encoding & 0xff;
        let bits_offset = (encoding >> 16) & 0xff;
        Ok(bits_offset != 0 || nr_bits != t.size_or_type.saturating_mul(8))
    }

    /// Finds `name` among the members of `id`, descending into anonymous
    /// structs and unions as C name lookup does. Returns the bit offset from
    /// the start of `id`, the member's type, and whether it is a bitfield.
    fn find_member(
        &self,
        id: u32,
        name: &str,
        depth: u32,
    ) -> Result<Option<(u64, u32, bool)>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(malformed(format!(
                "anonymous members nest too deep below type {id}"
            )));
        }
        for m in self.members(id)? {
            if m.name_off != 0 {
                if self.name(m.name_off)? == name {
                    let bitfield = m.bitfield_size != 0 || self.is_int_bitfield(m.type_id)?;
                    return Ok(Some((m.bit_offset.into(), m.type_id, bitfield)));
                }
                continue;
            }
            let inner = self.resolve(m.type_id)?;
            if self.is_composite(inner)?
                && let Some((bits, ty, bitfield)) = self.find_member(inner, name, depth + 1)?
            {
                return Ok(Some((u64::from(m.bit_offset) + bits, ty, bitfield)));
            }
        }
        Ok(None)
    }

    /// Resolves a dotted member path (`d_name.name`) inside struct `id`.
    fn member_in(&self, id: u32, struct_name: &str, path: &str) -> Result<Member, BtfError> {
        let not_found = || BtfError::MemberNotFound {
            struct_name: struct_name.to_owned(),
            member: path.to_owned(),
        };
        let mut current = id;
        let mut bits: u64 = 0;
        let mut type_id = id;
        for (i, component) in path.split('.').enumerate() {
            if i > 0 {
                current = self.resolve(type_id)?;
                if !self.is_composite(current)? {
                    return Err(BtfError::NotComposite {
                        struct_name: struct_name.to_owned(),
                        member: path.to_owned(),
                        found: self.describe(current)?,
                    });
                }
            }
            if component.is_empty() {
                return Err(not_found());
            }
            let (offset, ty, bitfield) = self
                .find_member(current, component, 0)?
                .ok_or_else(not_found)?;
            if bitfield {
                return Err(BtfError::Bitfield {
                    struct_name: struct_name.to_owned(),
                    member: path.to_owned(),
                });
            }
            bits += offset;
            type_id = ty;
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Bitfield {
                struct_name: struct_name.to_owned(),
                member: path.to_owned(),
            });
        }
        let offset = u32::try_from(bits / 8)
            .map_err(|_| malformed(format!("{struct_name}.{path} lies beyond 4 GiB")))?;
        Ok(Member { offset, type_id })
    }

    /// Looks `path` up in every struct or union named `struct_name`.
    fn member(&self, struct_name: &str, path: &str) -> Result<Member, BtfError> {
        let ids = self
            .composites
            .get(struct_name)
            .ok_or_else(|| BtfError::StructNotFound {
                name: struct_name.to_owned(),
            })?;
        let mut found: Vec<Member> = Vec::new();
        let mut first_err = None;
        for &id in ids {
            match self.member_in(id, struct_name, path) {
                Ok(m) => found.push(m),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Same-named structs from different compilation units: a struct that
        // lacks the member is a different struct; two that disagree are a real
        // ambiguity no guess should paper over.
        match found.first() {
            None => Err(first_err.expect("at least one candidate")),
            Some(m) if found.iter().all(|f| f.offset == m.offset) => Ok(*m),
            Some(_) => Err(BtfError::Ambiguous {
                struct_name: struct_name.to_owned(),
                member: path.to_owned(),
                offsets: found.iter().map(|f| f.offset).collect(),
            }),
        }
    }

    /// The byte offset of `member` in struct (or union) `struct_name`.
    ///
    /// `member` may be a dotted path through embedded structs (`d_name.name`).
    /// Members of anonymous structs and unions are found as C finds them, and
    /// typedef/const/volatile wrappers are looked through when descending.
    /// Bitfields are refused: they have no byte offset.
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        self.member(struct_name, member).map(|m| m.offset)
    }

    /// The size in bytes of struct `name` (every same-named struct agreeing).
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let ids = self
            .composites
            .get(name)
            .ok_or_else(|| BtfError::StructNotFound {
                name: name.to_owned(),
            })?;
        let mut sizes = Vec::new();
        for &id in ids {
            let t = self.entry(id)?;
            if t.kind() == KIND_STRUCT && !sizes.contains(&t.size_or_type) {
                sizes.push(t.size_or_type);
            }
        }
        match sizes[..] {
            [size] => Ok(size),
            [] => Err(BtfError::StructNotFound {
                name: name.to_owned(),
            }),
            _ => Err(BtfError::Ambiguous {
                struct_name: name.to_owned(),
                member: "(size)".to_owned(),
                offsets: sizes,
            }),
        }
    }

    /// A short description of a type for error messages.
    fn describe(&self, id: u32) -> Result<String, BtfError> {
        if id == 0 {
            return Ok("void".to_owned());
        }
        let t = self.entry(id)?;
        let name = match self.name(t.name_off)? {
            "" => "(anon)",
            n => n,
        };
        Ok(match t.kind() {
            KIND_INT => format!("{}-byte integer '{name}'", t.size_or_type),
            KIND_PTR => "a pointer".to_owned(),
            KIND_ARRAY => "an array".to_owned(),
            KIND_STRUCT => format!("struct {name}"),
            KIND_UNION => format!("union {name}"),
            KIND_ENUM | KIND_ENUM64 => format!("{}-byte enum {name}", t.size_or_type),
            KIND_FLOAT => format!("float '{name}'"),
            kind => format!("a type of BTF kind {kind}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF blobs type by type; ids are handed out in order from 1.
    struct Builder {
        strings: Vec<u8>,
        types: Vec<u32>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Builder {
            Builder {
                strings: vec![0],
                types: Vec::new(),
                next_id: 1,
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// A type of any kind with its trailing words.
        fn raw(
            &mut self,
            kind: u32,
            name: &str,
            kind_flag: bool,
            vlen: u32,
            sot: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = self.str(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            self.types.extend_from_slice(&[name_off, info, sot]);
            self.types.extend_from_slice(extra);
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            self.raw(KIND_INT, name, false, 0, size, &[size * 8])
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.raw(KIND_PTR, "", false, 0, to, &[])
        }

        fn wrap(&mut self, kind: u32, name: &str, to: u32) -> u32 {
            self.raw(kind, name, false, 0, to, &[])
        }

        /// A struct or union; members are (name, type, bit offset, bitfield size).
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let kind_flag = members.iter().any(|m| m.3 != 0);
            let mut extra = Vec::new();
            for &(n, ty, bits, bf) in members {
                let off = if kind_flag { (bf << 24) | bits } else { bits };
                extra.extend_from_slice(&[self.str(n), ty, off]);
            }
            self.raw(kind, name, kind_flag, members.len() as u32, size, &extra)
        }

        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let m: Vec<_> = members.iter().map(|&(n, t, b)| (n, t, b, 0)).collect();
            self.composite(KIND_STRUCT, name, size, &m)
        }

        fn bytes(&self, big_endian: bool) -> Vec<u8> {
            let word = |v: u32| {
                if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let type_len = (self.types.len() * 4) as u32;
            let mut out = Vec::new();
            out.extend_from_slice(&if big_endian {
                MAGIC.to_be_bytes()
            } else {
                MAGIC.to_le_bytes()
            });
            out.extend_from_slice(&[VERSION, 0]);
            for v in [
                HEADER_LEN as u32,
                0,
                type_len,
                type_len,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&word(v));
            }
            for &v in &self.types {
                out.extend_from_slice(&word(v));
            }
            out.extend_from_slice(&self.strings);
            out
        }

        fn build(&self) -> Btf {
            Btf::from_bytes(&self.bytes(false)).expect("valid BTF")
        }
    }

    /// `struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const unsigned char *name; }`
    fn qstr(b: &mut Builder) -> u32 {
        let u32_t = b.int("unsigned int", 4);
        let u64_t = b.int("long long unsigned int", 8);
        let uchar = b.int("unsigned char", 1);
        let cuchar = b.wrap(KIND_CONST, "", uchar);
        let name_ptr = b.ptr(cuchar);
        let hash_len = b.strukt("", 8, &[("hash", u32_t, 0), ("len", u32_t, 32)]);
        let union = b.composite(
            KIND_UNION,
            "",
            8,
            &[("", hash_len, 0, 0), ("hash_len", u64_t, 0, 0)],
        );
        b.strukt("qstr", 16, &[("", union, 0), ("name", name_ptr, 64)])
    }

    #[test]
    fn finds_members_inside_anonymous_unions_and_structs() {
        let mut b = Builder::new();
        qstr(&mut b);
        let btf = b.build();
        assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
        assert_eq!(btf.member_offset("qstr", "hash_len").unwrap(), 0);
        assert_eq!(btf.member_offset("qstr", "hash").unwrap(), 0);
        assert_eq!(btf.member_offset("qstr", "len").unwrap(), 4);
    }

    #[test]
    fn descends_through_typedef_const_volatile_and_type_tag() {
        let mut b = Builder::new();
        let q = qstr(&mut b);
        let int = b.int("int", 4);
        // typedef struct qstr qstr_t; embedded as `const volatile qstr_t`, as
        // the kernel embeds `const struct qstr d_name` in a union.
        let td = b.wrap(KIND_TYPEDEF, "qstr_t", q);
        let td2 = b.wrap(KIND_TYPEDEF, "qstr_tt", td);
        let vol = b.wrap(KIND_VOLATILE, "", td2);
        let cst = b.wrap(KIND_CONST, "", vol);
        // The pointer to the parent dentry refers forward to `dentry` itself.
        let d_next = b.next_id + 3;
        let tagged = b.wrap(KIND_TYPE_TAG, "rcu", d_next);
        let parent_ptr = b.ptr(tagged);
        let inner = b.composite(
            KIND_UNION,
            "",
            16,
            &[("d_name", cst, 0, 0), ("__d_name", q, 0, 0)],
        );
        let dentry = b.strukt(
            "dentry",
            48,
            &[
                ("d_flags", int, 0),
                ("d_parent", parent_ptr, 64),
                ("", inner, 128),
            ],
        );
        assert_eq!(dentry, d_next);
        let btf = b.build();
        assert_eq!(btf.member_offset("dentry", "d_name").unwrap(), 16);
        assert_eq!(btf.member_offset("dentry", "d_name.name").unwrap(), 24);
        assert_eq!(btf.member_offset("dentry", "d_name.len").unwrap(), 20);
        // The member's type is seen through the wrappers.
        let m = btf.member("dentry", "d_name").unwrap();
        btf.check_shape(
            "dentry",
            "d_name",
            m.type_id,
            offsets::Shape::Struct("qstr"),
        )
        .unwrap();
        let m = btf.member("dentry", "d_parent").unwrap();
        btf.check_shape("dentry", "d_parent", m.type_id, offsets::Shape::Pointer)
            .unwrap();
        // Descending into a pointer or an int is an error naming the path.
        let err = btf.member_offset("dentry", "d_flags.x").unwrap_err();
        assert!(matches!(err, BtfError::NotComposite { .. }), "{err}");
        assert!(err.to_string().contains("dentry.d_flags.x"), "{err}");
    }

    #[test]
    fn refuses_bitfields() {
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        let ptr = b.ptr(uint);
        b.composite(
            KIND_STRUCT,
            "task_struct",
            16,
            &[
                ("sched_reset_on_fork", uint, 0, 1),
                ("in_execve", uint, 1, 1),
                ("fs", ptr, 64, 0),
            ],
        );
        // Old style: no kind_flag, the INT itself says it is 3 bits at bit 5.
        let narrow = b.raw(KIND_INT, "unsigned int", false, 0, 4, &[(5 << 16) | 3]);
        b.strukt("old", 4, &[("flags", narrow, 0)]);
        let btf = b.build();
        assert_eq!(btf.member_offset("task_struct", "fs").unwrap(), 8);
        let err = btf.member_offset("task_struct", "in_execve").unwrap_err();
        assert!(matches!(err, BtfError::Bitfield { .. }), "{err}");
        assert!(err.to_string().contains("task_struct.in_execve"), "{err}");
        let err = btf.member_offset("old", "flags").unwrap_err();
        assert!(matches!(err, BtfError::Bitfield { .. }), "{err}");
    }

    #[test]
    fn unknown_struct_and_member_are_named() {
        let mut b = Builder::new();
        qstr(&mut b);
        // A forward declaration is not a definition.
        b.raw(KIND_FWD, "mount", false, 0, 0, &[]);
        let btf = b.build();
        let err = btf.member_offset("mount", "mnt").unwrap_err();
        assert!(
            matches!(&err, BtfError::StructNotFound { name } if name == "mount"),
            "{err}"
        );
        assert_eq!(err.to_string(), "struct mount not found in kernel BTF");
        let err = btf.member_offset("qstr", "nope").unwrap_err();
        assert!(matches!(err, BtfError::MemberNotFound { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("member nope not found in struct qstr"),
            "{err}"
        );
        for bad in ["", "name.", ".name"] {
            assert!(btf.member_offset("qstr", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kernel_offsets_names_the_first_missing_member() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let ptr = b.ptr(0);
        b.strukt(
            "task_struct",
            64,
            &[
                ("fs", ptr, 0),
                ("files", ptr, 64),
                ("real_parent", ptr, 128),
                ("tgid", int, 192),
            ],
        );
        let err = kernel_offsets(&b.build()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "member pid not found in struct task_struct in kernel BTF"
        );
    }

    #[test]
    fn kernel_offsets_refuses_a_member_of_the_wrong_type() {
        let mut b = Builder::new();
        let long = b.int("long", 8);
        let ptr = b.ptr(0);
        b.strukt("task_struct", 64, &[("fs", long, 0), ("files", ptr, 64)]);
        let err = kernel_offsets(&b.build()).unwrap_err();
        assert!(matches!(err, BtfError::UnexpectedType { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "task_struct.fs is 8-byte integer 'long', but the kernel programs read it as a pointer"
        );
    }

    #[test]
    fn same_named_structs_agree_or_are_ambiguous() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.strukt("console", 8, &[("a", int, 0), ("b", int, 32)]);
        b.strukt("console", 8, &[("b", int, 32), ("c", int, 0)]);
        b.strukt("console", 4, &[("c", int, 32)]);
        let btf = b.build();
        // Only one definition has `a`: the others are different structs.
        assert_eq!(btf.member_offset("console", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("console", "b").unwrap(), 4);
        let err = btf.member_offset("console", "c").unwrap_err();
        assert!(
            matches!(&err, BtfError::Ambiguous { offsets, .. } if offsets == &[0, 4]),
            "{err}"
        );
    }

    #[test]
    fn walks_every_kind_without_desync() {
        let mut b = Builder::new();
        let int = b.int("int", 4); // 1 INT
        let ptr = b.ptr(int); // 2 PTR
        b.raw(KIND_ARRAY, "", false, 0, 0, &[int, int, 16]); // 3 ARRAY
        let inner = b.strukt("inner", 4, &[("x", int, 0)]); // 4 STRUCT
        b.composite(KIND_UNION, "u", 4, &[("x", int, 0, 0), ("y", int, 0, 0)]); // 5 UNION
        let e1 = b.str("E1");
        let e2 = b.str("E2");
        b.raw(KIND_ENUM, "e", false, 2, 4, &[e1, 1, e2, 2]); // 6 ENUM
        b.raw(KIND_FWD, "fwd", false, 0, 0, &[]); // 7 FWD
        let td = b.wrap(KIND_TYPEDEF, "int_t", int); // 8 TYPEDEF
        b.wrap(KIND_VOLATILE, "", int); // 9 VOLATILE
        b.wrap(KIND_CONST, "", int); // 10 CONST
        b.wrap(KIND_RESTRICT, "", ptr); // 11 RESTRICT
        let p1 = b.str("a");
        let p2 = b.str("b");
        let proto = b.raw(KIND_FUNC_PROTO, "", false, 2, int, &[p1, int, p2, ptr]); // 12 FUNC_PROTO
        b.raw(KIND_FUNC, "f", false, 1, proto, &[]); // 13 FUNC
        let var = b.raw(KIND_VAR, "v", false, 0, int, &[1]); // VAR
        b.raw(KIND_DATASEC, ".data", false, 1, 4, &[var, 0, 4]); // DATASEC
        b.raw(KIND_FLOAT, "double", false, 0, 8, &[]); // FLOAT
        b.raw(KIND_DECL_TAG, "tag", false, 0, inner, &[u32::MAX]); // DECL_TAG
        let tagged = b.wrap(KIND_TYPE_TAG, "rcu", inner); // TYPE_TAG
        let (a, c) = (b.str("A"), b.str("C"));
        b.raw(KIND_ENUM64, "e64", false, 2, 8, &[a, 1, 0, c, 2, 1]); // ENUM64
        let last = b.strukt(
            "last",
            24,
            &[
                ("i", td, 0),
                ("p", ptr, 64),
                ("t", tagged, 128),
                ("z", int, 160),
            ],
        );
        assert_eq!(last, 20);
        for big_endian in [false, true] {
            let btf = Btf::from_bytes(&b.bytes(big_endian)).unwrap();
            assert_eq!(btf.types.len(), 20);
            assert_eq!(btf.member_offset("last", "z").unwrap(), 20);
            assert_eq!(btf.member_offset("last", "t.x").unwrap(), 16);
            assert_eq!(btf.member_offset("u", "y").unwrap(), 0);
        }
    }

    #[test]
    fn rejects_malformed_blobs() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.strukt("s", 4, &[("x", int, 0)]);
        let good = b.bytes(false);
        assert!(Btf::from_bytes(&good).is_ok());

        let err = |bytes: &[u8]| Btf::from_bytes(bytes).unwrap_err().to_string();
        assert!(err(&good[..10]).contains("shorter than the header"));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(err(&bad).contains("bad magic"));
        let mut bad = good.clone();
        bad[2] = 2;
        assert!(err(&bad).contains("version"));
        // Truncating the blob leaves the string section running past the end.
        assert!(err(&good[..good.len() - 1]).contains("string section"));

        // Kind 20 does not exist: the walk must stop, not guess its size.
        let mut b = Builder::new();
        b.raw(20, "", false, 0, 0, &[]);
        let e = err(&b.bytes(false));
        assert!(e.contains("unknown kind 20"), "{e}");

        // A struct claiming more members than the section holds.
        let mut b = Builder::new();
        b.raw(KIND_STRUCT, "s", false, 3, 4, &[0, 0, 0]);
        assert!(err(&b.bytes(false)).contains("runs past"));

        // A typedef cycle ends in an error, not a hang.
        let mut b = Builder::new();
        let first = b.next_id;
        b.wrap(KIND_TYPEDEF, "a", first + 1);
        b.wrap(KIND_TYPEDEF, "b", first);
        b.strukt("s", 4, &[("x", first, 0)]);
        let btf = b.build();
        assert!(btf.member_offset("s", "x.y").is_err());
    }

    /// Members of one struct in `bpftool btf dump ... format raw` output.
    #[derive(Default)]
    struct RawType {
        kind: String,
        name: String,
        type_id: u32,
        members: Vec<(String, u32, u32)>,
    }

    /// Parses bpftool's raw dump: `[id] KIND 'name' ... type_id=N` lines, and
    /// `\t'member' type_id=N bits_offset=M` lines under structs and unions.
    fn parse_bpftool_raw(text: &str) -> HashMap<u32, RawType> {
        let field = |line: &str, key: &str| -> Option<u32> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
        };
        let quoted = |line: &str| line.split('\'').nth(1).unwrap_or("").to_owned();
        let mut types: HashMap<u32, RawType> = HashMap::new();
        let mut current = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('[') {
                let (id, rest) = rest.split_once("] ").expect("type line");
                current = id.parse().expect("type id");
                types.insert(
                    current,
                    RawType {
                        kind: rest.split_whitespace().next().unwrap_or("").to_owned(),
                        name: quoted(rest),
                        type_id: field(rest, "type_id=").unwrap_or(0),
                        members: Vec::new(),
                    },
                );
            } else if line.starts_with("\t'")
                && let Some(bits) = field(line, "bits_offset=")
            {
                let t = types.get_mut(&current).expect("member after a type");
                t.members
                    .push((quoted(line), field(line, "type_id=").unwrap(), bits));
            }
        }
        types
    }

    /// bpftool's view of a member's byte offset, following anonymous members
    /// and wrappers independently of the code under test.
    fn bpftool_offset(types: &HashMap<u32, RawType>, struct_name: &str, member: &str) -> u32 {
        fn find(types: &HashMap<u32, RawType>, id: u32, member: &str) -> Option<u32> {
            for (name, ty, bits) in &types[&id].members {
                if name == member {
                    return Some(*bits);
                }
                let mut inner = *ty;
                while matches!(
                    types[&inner].kind.as_str(),
                    "TYPEDEF" | "CONST" | "VOLATILE"
                ) {
                    inner = types[&inner].type_id;
                }
                if name == "(anon)"
                    && let Some(b) = find(types, inner, member)
                {
                    return Some(bits + b);
                }
            }
            None
        }
        let mut ids: Vec<_> = types
            .iter()
            .filter(|(_, t)| t.kind == "STRUCT" && t.name == struct_name)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        let bits = ids
            .iter()
            .find_map(|id| find(types, *id, member))
            .unwrap_or_else(|| panic!("bpftool shows no {struct_name}.{member}"));
        assert_eq!(bits % 8, 0);
        bits / 8
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_offsets_of_the_running_kernel() {
        let btf = Btf::from_sys_fs().unwrap_or_else(|e| {
            panic!(
                "{e}\nThis test reads the running kernel's BTF; CI runs on kernels built \
                 with CONFIG_DEBUG_INFO_BTF=y, so a missing {VMLINUX_PATH} is a broken machine."
            )
        });
        let mut o = kernel_offsets(&btf).unwrap_or_else(|e| panic!("kernel_offsets: {e}"));
        assert_eq!(o.structs_valid, 1);
        cgroup_walk_offsets(&btf, &mut o).unwrap_or_else(|e| panic!("cgroup_walk_offsets: {e}"));
        assert_eq!(o.cgroups_valid, 1);
        assert_ne!(o.kernfs_parent, o.kernfs_id);
        pidns_offsets(&btf, &mut o).unwrap_or_else(|e| panic!("pidns_offsets: {e}"));
        assert_eq!(o.pidns_valid, 1);
        // struct upid { int nr; struct pid_namespace *ns; } on 64-bit.
        assert_eq!(o.upid_size, 16);
        vfs_offsets(&btf, &mut o).unwrap_or_else(|e| panic!("vfs_offsets: {e}"));
        assert_eq!((o.vfs_valid, o.open_flags_flag, o.filename_name), (1, 0, 0));
        inode_offsets(&btf, &mut o).unwrap_or_else(|e| panic!("inode_offsets: {e}"));
        assert_eq!(o.inode_valid, 1);
        assert!(o.dentry_inode > 0 && o.inode_sb > 0 && o.file_f_mode > 0);
        // Layouts that have held for many kernel versions.
        assert_eq!(o.path_mnt, 0);
        assert_eq!(o.path_dentry, 8);
        assert_eq!(o.mount_parent, 16);
        assert_eq!(o.mount_mountpoint, 24);
        assert_eq!(o.mount_mnt, 32);
        assert_eq!(o.vfsmount_root, 0);
        assert_eq!(o.qstr_name, 8);
        assert_eq!(o.fs_pwd, o.fs_root + 16);
        eprintln!("{o:#?}");

        let dump = match std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", VMLINUX_PATH, "format", "raw"])
            .output()
        {
            Ok(out) if out.status.success() => out.stdout,
            Ok(out) => panic!("bpftool failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("bpftool is not installed: skipping the cross-check against it");
                return;
            }
            Err(e) => panic!("running bpftool: {e}"),
        };
        let types = parse_bpftool_raw(&String::from_utf8(dump).expect("UTF-8 dump"));
        let expected = [
            (o.task_fs, "task_struct", "fs"),
            (o.task_files, "task_struct", "files"),
            (o.task_real_parent, "task_struct", "real_parent"),
            (o.task_tgid, "task_struct", "tgid"),
            (o.task_pid, "task_struct", "pid"),
            (o.task_exit_code, "task_struct", "exit_code"),
            (o.fs_pwd, "fs_struct", "pwd"),
            (o.fs_root, "fs_struct", "root"),
            (o.path_mnt, "path", "mnt"),
            (o.path_dentry, "path", "dentry"),
            (o.dentry_parent, "dentry", "d_parent"),
            (o.dentry_name, "dentry", "d_name"),
            (o.qstr_name, "qstr", "name"),
            (o.files_fdt, "files_struct", "fdt"),
            (o.fdt_max_fds, "fdtable", "max_fds"),
            (o.fdt_fd, "fdtable", "fd"),
            (o.file_path, "file", "f_path"),
            (o.vfsmount_root, "vfsmount", "mnt_root"),
            (o.mount_mnt, "mount", "mnt"),
            (o.mount_parent, "mount", "mnt_parent"),
            (o.mount_mountpoint, "mount", "mnt_mountpoint"),
            (o.task_group_leader, "task_struct", "group_leader"),
            (o.task_thread_pid, "task_struct", "thread_pid"),
            (o.pid_level, "pid", "level"),
            (o.pid_numbers, "pid", "numbers"),
            (o.task_cgroups, "task_struct", "cgroups"),
            (o.css_set_dfl_cgrp, "css_set", "dfl_cgrp"),
            (o.cgroup_kn, "cgroup", "kn"),
            (o.kernfs_id, "kernfs_node", "id"),
        ];
        for (ours, s, m) in expected {
            assert_eq!(ours, bpftool_offset(&types, s, m), "{s}.{m}");
        }
    }
}
