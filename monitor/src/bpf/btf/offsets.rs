//! The struct members the kernel programs read, found in the running
//! kernel's BTF, each checked to have the type the programs read it as: a
//! kernel that changed a member's type is refused rather than read wrongly.
use monitor_common::KernelOffsets;

use super::{Btf, BtfError, KIND_ENUM, KIND_ENUM64, KIND_INT, KIND_PTR, KIND_STRUCT};

impl Btf {
    /// The offset of a member whose type has the shape the programs read.
    pub(super) fn checked(
        &self,
        struct_name: &str,
        member: &str,
        shape: Shape,
    ) -> Result<u32, BtfError> {
        let m = self.member(struct_name, member)?;
        self.check_shape(struct_name, member, m.type_id, shape)?;
        Ok(m.offset)
    }

    /// Checks that the member's type is the shape the kernel programs read.
    pub(super) fn check_shape(
        &self,
        struct_name: &str,
        member: &str,
        type_id: u32,
        shape: Shape,
    ) -> Result<(), BtfError> {
        let id = self.resolve(type_id)?;
        let t = if id == 0 { None } else { Some(self.entry(id)?) };
        let ok = match (shape, t) {
            (Shape::Pointer, Some(t)) => t.kind() == KIND_PTR,
            (Shape::U32, Some(t)) => {
                matches!(t.kind(), KIND_INT | KIND_ENUM) && t.size_or_type == 4
            }
            (Shape::U64, Some(t)) => {
                matches!(t.kind(), KIND_INT | KIND_ENUM | KIND_ENUM64) && t.size_or_type == 8
            }
            (Shape::Struct(name), Some(t)) => {
                t.kind() == KIND_STRUCT && self.name(t.name_off)? == name
            }
            (_, None) => false,
        };
        if ok {
            return Ok(());
        }
        Err(BtfError::UnexpectedType {
            struct_name: struct_name.to_owned(),
            member: member.to_owned(),
            expected: shape.to_string(),
            found: self.describe(id)?,
        })
    }
}

/// What the kernel programs expect to find at a member.
#[derive(Clone, Copy, Debug)]
pub(super) enum Shape {
    /// Read with a pointer-sized `bpf_probe_read_kernel`.
    Pointer,
    /// Read as a `u32`.
    U32,
    /// Read as a `u64`.
    U64,
    /// Embedded by value; its own members are added to this offset.
    Struct(&'static str),
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Pointer => f.write_str("a pointer"),
            Shape::U32 => f.write_str("a 4-byte integer"),
            Shape::U64 => f.write_str("an 8-byte integer"),
            Shape::Struct(name) => write!(f, "an embedded struct {name}"),
        }
    }
}

/// Fills every struct member offset of [`KernelOffsets`] from `btf` and sets
/// `structs_valid`. The tracepoint fields are left at zero (see `tracefs`).
///
/// Each member's type is checked too (pointer, 4-byte integer or embedded
/// struct), so a kernel that changed a member's type is refused rather than
/// read wrongly. The error names the struct and member at fault.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    use Shape::{Pointer, Struct, U32};
    let mut o = KernelOffsets::default();
    let wanted: [(&mut u32, &str, &str, Shape); 21] = [
        (&mut o.task_fs, "task_struct", "fs", Pointer),
        (&mut o.task_files, "task_struct", "files", Pointer),
        (
            &mut o.task_real_parent,
            "task_struct",
            "real_parent",
            Pointer,
        ),
        (&mut o.task_tgid, "task_struct", "tgid", U32),
        (&mut o.task_pid, "task_struct", "pid", U32),
        (&mut o.task_exit_code, "task_struct", "exit_code", U32),
        (&mut o.fs_pwd, "fs_struct", "pwd", Struct("path")),
        (&mut o.fs_root, "fs_struct", "root", Struct("path")),
        (&mut o.path_mnt, "path", "mnt", Pointer),
        (&mut o.path_dentry, "path", "dentry", Pointer),
        (&mut o.dentry_parent, "dentry", "d_parent", Pointer),
        (&mut o.dentry_name, "dentry", "d_name", Struct("qstr")),
        (&mut o.qstr_name, "qstr", "name", Pointer),
        (&mut o.files_fdt, "files_struct", "fdt", Pointer),
        (&mut o.fdt_max_fds, "fdtable", "max_fds", U32),
        (&mut o.fdt_fd, "fdtable", "fd", Pointer),
        (&mut o.file_path, "file", "f_path", Struct("path")),
        (&mut o.vfsmount_root, "vfsmount", "mnt_root", Pointer),
        (&mut o.mount_mnt, "mount", "mnt", Struct("vfsmount")),
        (&mut o.mount_parent, "mount", "mnt_parent", Pointer),
        (&mut o.mount_mountpoint, "mount", "mnt_mountpoint", Pointer),
    ];
    for (slot, struct_name, member, shape) in wanted {
        *slot = btf.checked(struct_name, member, shape)?;
    }
    o.structs_valid = 1;
    Ok(o)
}

/// Fills the members of the cgroup v2 ancestry walk (`task->cgroups->
/// dfl_cgrp->kn`, then kernfs parents and ids) and sets `cgroups_valid`.
/// Only needed where tracing programs lack the ancestor-cgroup helper, so a
/// failure here costs nothing elsewhere; the caller decides.
pub fn cgroup_walk_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), BtfError> {
    use Shape::{Pointer, U64};
    o.task_cgroups = btf.checked("task_struct", "cgroups", Pointer)?;
    o.css_set_dfl_cgrp = btf.checked("css_set", "dfl_cgrp", Pointer)?;
    o.cgroup_kn = btf.checked("cgroup", "kn", Pointer)?;
    o.kernfs_id = btf.checked("kernfs_node", "id", U64)?;
    // 6.15 renamed `parent` to `__parent` (read under RCU since).
    o.kernfs_parent = btf
        .checked("kernfs_node", "parent", Pointer)
        .or_else(|_| btf.checked("kernfs_node", "__parent", Pointer))?;
    o.cgroups_valid = 1;
    Ok(())
}

/// Fills the members that lead from a task to its process id in its own pid
/// namespace and sets `pidns_valid`. Without them the reads of `/proc/<pid>`
/// files cannot be told from a process's reads of its own; the caller says so.
pub fn pidns_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), BtfError> {
    use Shape::{Pointer, U32};
    o.task_group_leader = btf.checked("task_struct", "group_leader", Pointer)?;
    o.task_thread_pid = btf.checked("task_struct", "thread_pid", Pointer)?;
    o.pid_level = btf.checked("pid", "level", U32)?;
    // `numbers` is a (flexible) array of `struct upid`: its offset, and the
    // element's size and first member, are what the programs index by.
    o.pid_numbers = btf.member_offset("pid", "numbers")?;
    if btf.checked("upid", "nr", U32)? != 0 {
        return Err(BtfError::UnexpectedType {
            struct_name: "upid".to_owned(),
            member: "nr".to_owned(),
            expected: "the first member".to_owned(),
            found: "a later one".to_owned(),
        });
    }
    o.upid_size = btf.struct_size("upid")?;
    o.pidns_valid = 1;
    Ok(())
}

/// Fills the members the fentry tier's open program reads (`vfs.rs`:
/// `do_filp_open`'s `struct open_flags` and `struct filename`) and sets
/// `vfs_valid`. Kept apart from the other blocks: without them only that
/// tier's opens go, counted as lost, and the rest runs.
pub fn vfs_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), BtfError> {
    use Shape::{Pointer, U32};
    o.open_flags_flag = btf.checked("open_flags", "open_flag", U32)?;
    // A `umode_t` (2 bytes): read as 4 and masked by the program.
    o.open_flags_mode = btf.member_offset("open_flags", "mode")?;
    o.filename_name = btf.checked("filename", "name", Pointer)?;
    o.vfs_valid = 1;
    Ok(())
}

/// Fills the members that name files by identity and sets `inode_valid`:
/// a dentry's inode, the inode's number and super block, the device of
/// that, an open file's mode, flags and inode, an exec's filename and a
/// task's executed file (the LSM refusals, and drift by inode). Without them the
/// LSM programs refuse nothing (they are loaded only under `--enforce`).
pub fn inode_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), BtfError> {
    use Shape::{Pointer, U32, U64};
    o.dentry_inode = btf.checked("dentry", "d_inode", Pointer)?;
    o.inode_ino = btf.checked("inode", "i_ino", U64)?;
    o.inode_sb = btf.checked("inode", "i_sb", Pointer)?;
    o.sb_dev = btf.checked("super_block", "s_dev", U32)?;
    o.file_f_mode = btf.checked("file", "f_mode", U32)?;
    o.file_f_flags = btf.checked("file", "f_flags", U32)?;
    o.bprm_filename = btf.checked("linux_binprm", "filename", Pointer)?;
    o.task_mm = btf.checked("task_struct", "mm", Pointer)?;
    o.mm_exe_file = btf.checked("mm_struct", "exe_file", Pointer)?;
    o.file_inode = btf.checked("file", "f_inode", Pointer)?;
    o.inode_valid = 1;
    Ok(())
}

/// Fills the members the fentry tier's exec and seccomp programs read and
/// sets `bprm_valid`: `linux_binprm.p` and `argc` (argv from the kernel's
/// copy of it), and `task_struct.stack` (a refused call's saved registers).
/// Every BTF kernel has them; were one missing, those programs would count
/// each argv and refusal as lost (`loss::READ_FAULT`), and the caller says so.
pub fn fentry_tier_offsets(btf: &Btf, o: &mut KernelOffsets) -> Result<(), BtfError> {
    use Shape::{Pointer, U32, U64};
    o.bprm_p = btf.checked("linux_binprm", "p", U64)?;
    o.bprm_argc = btf.checked("linux_binprm", "argc", U32)?;
    o.task_stack = btf.checked("task_struct", "stack", Pointer)?;
    o.bprm_valid = 1;
    Ok(())
}
