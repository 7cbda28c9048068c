//! tracefs: where it is mounted, which tracepoints exist, and the layout of
//! the tracepoints whose fields are not a stable ABI (`sched/*`, `cgroup/*`).
//!
//! aya finds tracepoint ids in tracefs, and a fresh machine may not have it
//! mounted, so the agent mounts it when it is nowhere to be found.
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use monitor_common::KernelOffsets;

/// Where tracefs is mounted on current kernels, and where the agent mounts it.
pub const DEFAULT_MOUNT: &str = "/sys/kernel/tracing";
/// Where tracefs appears on older setups, automounted under debugfs.
pub const DEBUGFS_MOUNT: &str = "/sys/kernel/debug/tracing";

/// Why tracefs or a tracepoint's layout could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    /// tracefs was mounted nowhere and mounting it failed.
    #[error(
        "tracefs is not mounted and mounting it at {} failed: {source} \
         (mount it with `mount -t tracefs nodev {}`, or run the agent with CAP_SYS_ADMIN)",
        path.display(), path.display()
    )]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tracefs file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `format` file could not be parsed.
    #[error("{}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// A field the kernel programs read is absent from this kernel's tracepoint.
    #[error("{}: no field {field}", path.display())]
    MissingField { path: PathBuf, field: &'static str },
    /// A field exists but is not laid out as the kernel programs read it.
    #[error("{}: field {field} is {found}, but the kernel programs read it as {expected}", path.display())]
    UnexpectedField {
        path: PathBuf,
        field: &'static str,
        expected: &'static str,
        found: String,
    },
}

/// A line of a tracepoint `format` file that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed tracepoint format at line {line}: {reason}: {text:?}")]
pub struct FormatError {
    /// 1-based line number; 0 when the file as a whole is at fault.
    pub line: usize,
    pub text: String,
    pub reason: &'static str,
}

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// A `__data_loc` field: a u32 whose low 16 bits locate a string in the
    /// record and whose high 16 bits are its length.
    pub data_loc: bool,
}

/// Parses a tracefs `events/<group>/<name>/format` file into its fields by
/// bare name (`filename`, not `__data_loc char[] filename`).
///
/// Lines other than `field:` lines (name, ID, print fmt) are ignored; a field
/// line without a numeric `offset` and `size`, a duplicate field or a file
/// without any field is an error.
pub fn parse_format(text: &str) -> Result<HashMap<String, Field>, FormatError> {
    let mut fields = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("field:") else {
            continue;
        };
        let err = |reason| FormatError {
            line: i + 1,
            text: line.to_owned(),
            reason,
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or("");
        let (mut offset, mut size) = (None, None);
        for part in parts.filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once(':')
                .ok_or_else(|| err("expected key:value"))?;
            let slot = match key.trim() {
                "offset" => &mut offset,
                "size" => &mut size,
                // `signed` and whatever later kernels add.
                _ => continue,
            };
            *slot = Some(
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| err("not a number"))?,
            );
        }
        let name = field_name(decl).ok_or_else(|| err("no field name"))?;
        let field = Field {
            offset: offset.ok_or_else(|| err("no offset"))?,
            size: size.ok_or_else(|| err("no size"))?,
            data_loc: decl.starts_with("__data_loc "),
        };
        if fields.insert(name.to_owned(), field).is_some() {
            return Err(err("duplicate field"));
        }
    }
    if fields.is_empty() {
        return Err(FormatError {
            line: 0,
            text: String::new(),
            reason: "no field lines",
        });
    }
    Ok(fields)
}

/// The identifier a C declaration declares: `comm` in `char comm[16]`,
/// `filename` in `__data_loc char[] filename` or `const char * filename`.
fn field_name(decl: &str) -> Option<&str> {
    let mut decl = decl.trim_end();
    while let Some(inner) = decl.strip_suffix(']') {
        decl = inner[..inner.rfind('[')?].trim_end();
    }
    let start = decl
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let name = &decl[start..];
    // A lone word is a type without a name.
    let has_type = !decl[..start].trim().is_empty();
    (has_type && !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()))
        .then_some(name)
}

/// The fields of one tracepoint, with the file they came from for errors.
struct Layout {
    path: PathBuf,
    fields: HashMap<String, Field>,
}

impl Layout {
    fn read(tracefs: &Path, group: &str, name: &str) -> Result<Layout, TracefsError> {
        let path = tracefs.join("events").join(group).join(name).join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| TracefsError::Io {
            path: path.clone(),
            source,
        })?;
        match parse_format(&text) {
            Ok(fields) => Ok(Layout { path, fields }),
            Err(source) => Err(TracefsError::Format { path, source }),
        }
    }

    fn field(&self, name: &'static str) -> Result<&Field, TracefsError> {
        self.fields
            .get(name)
            .ok_or_else(|| TracefsError::MissingField {
                path: self.path.clone(),
                field: name,
            })
    }

    /// The offset of a fixed-size field the programs read as `size` bytes.
    fn scalar(&self, name: &'static str, size: u32) -> Result<u32, TracefsError> {
        let f = self.field(name)?;
        if f.data_loc || f.size != size {
            return Err(self.unexpected(name, f, if size == 8 { "8 bytes" } else { "4 bytes" }));
        }
        Ok(f.offset)
    }

    /// The offset of a `__data_loc` string.
    fn data_loc(&self, name: &'static str) -> Result<u32, TracefsError> {
        let f = self.field(name)?;
        if !f.data_loc || f.size != 4 {
            return Err(self.unexpected(name, f, "a 4-byte __data_loc string"));
        }
        Ok(f.offset)
    }

    fn unexpected(&self, name: &'static str, f: &Field, expected: &'static str) -> TracefsError {
        TracefsError::UnexpectedField {
            path: self.path.clone(),
            field: name,
            expected,
            found: format!(
                "{}{} bytes",
                if f.data_loc { "__data_loc, " } else { "" },
                f.size
            ),
        }
    }
}

/// Fills the tracepoint fields of `offsets` from `sched/sched_process_exec`
/// and `cgroup/cgroup_mkdir` under `tracefs` (the mount point).
///
/// Sizes are checked against how the kernel programs read each field.
/// `offsets` is changed only when every field was found.
pub fn tracepoint_offsets(tracefs: &Path, offsets: &mut KernelOffsets) -> Result<(), TracefsError> {
    let exec = Layout::read(tracefs, "sched", "sched_process_exec")?;
    // cgroup_rmdir shares cgroup_mkdir's event class, hence its layout.
    let cgroup = Layout::read(tracefs, "cgroup", "cgroup_mkdir")?;
    let mut o = *offsets;
    o.tp_exec_filename = exec.data_loc("filename")?;
    o.tp_exec_pid = exec.scalar("pid", 4)?;
    o.tp_exec_old_pid = exec.scalar("old_pid", 4)?;
    o.tp_cgroup_root = cgroup.scalar("root", 4)?;
    o.tp_cgroup_level = cgroup.scalar("level", 4)?;
    o.tp_cgroup_id = cgroup.scalar("id", 8)?;
    o.tp_cgroup_path = cgroup.data_loc("path")?;
    *offsets = o;
    Ok(())
}

/// Whether tracepoint `group/name` exists on this kernel (some, like
/// `syscalls/sys_enter_open`, are absent on arm64).
pub fn tracepoint_exists(tracefs: &Path, group: &str, name: &str) -> bool {
    // aya reads this `id` file to attach, so its presence is what matters.
    tracefs
        .join("events")
        .join(group)
        .join(name)
        .join("id")
        .is_file()
}

/// Returns where tracefs is mounted, mounting it at [`DEFAULT_MOUNT`] when it
/// is mounted nowhere (which needs CAP_SYS_ADMIN).
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    if let Some(path) = find_mounted() {
        return Ok(path);
    }
    let path = PathBuf::from(DEFAULT_MOUNT);
    mount_tracefs(&path).map_err(|source| TracefsError::Mount {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "tracefs was not mounted: mounted it");
    Ok(path)
}

/// Where tracefs is mounted already, if anywhere.
pub fn find_mounted() -> Option<PathBuf> {
    let listed = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| tracefs_mounts(&text))
        .unwrap_or_default();
    // Without /proc, or for the debugfs automount that appears on first access,
    // look at the usual places too.
    let usual = [DEFAULT_MOUNT, DEBUGFS_MOUNT].map(PathBuf::from);
    listed
        .into_iter()
        .chain(usual)
        .find(|p| p.join("events").is_dir())
}

/// Mount points of tracefs in a `/proc/<pid>/mountinfo` text, the
/// conventional place first.
fn tracefs_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let mut mounts = super::mountinfo::mount_points(mountinfo, "tracefs");
    mounts.sort_by_key(|p| p != Path::new(DEFAULT_MOUNT));
    mounts
}

fn mount_tracefs(target: &Path) -> std::io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: all strings are NUL-terminated and outlive the call; no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // This kernel's (6.18, x86_64) files, copied verbatim from tracefs.
    const SCHED_PROCESS_EXEC: &str = "\
name: sched_process_exec\n\
ID: 365\n\
format:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
\n\
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n\
\n\
print fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid\n";
    const CGROUP_MKDIR: &str = "\
name: cgroup_mkdir\n\
ID: 544\n\
format:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
\n\
\tfield:int root;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:int level;\toffset:12;\tsize:4;\tsigned:1;\n\
\tfield:u64 id;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:__data_loc char[] path;\toffset:24;\tsize:4;\tsigned:0;\n\
\n\
print fmt: \"root=%d id=%llu level=%d path=%s\", REC->root, REC->id, REC->level, __get_str(path)\n";

    fn field(offset: u32, size: u32, data_loc: bool) -> Field {
        Field {
            offset,
            size,
            data_loc,
        }
    }

    #[test]
    fn parses_sched_process_exec() {
        let fields = parse_format(SCHED_PROCESS_EXEC).unwrap();
        assert_eq!(fields.len(), 7);
        assert_eq!(fields["filename"], field(8, 4, true));
        assert_eq!(fields["pid"], field(12, 4, false));
        assert_eq!(fields["old_pid"], field(16, 4, false));
        assert_eq!(fields["common_pid"], field(4, 4, false));
        assert_eq!(fields["common_type"], field(0, 2, false));
    }

    #[test]
    fn parses_cgroup_mkdir() {
        let fields = parse_format(CGROUP_MKDIR).unwrap();
        assert_eq!(fields.len(), 8);
        assert_eq!(fields["root"], field(8, 4, false));
        assert_eq!(fields["level"], field(12, 4, false));
        assert_eq!(fields["id"], field(16, 8, false));
        assert_eq!(fields["path"], field(24, 4, true));
    }

    #[test]
    fn field_names_are_bare() {
        let cases = [
            ("__data_loc char[] filename", Some("filename")),
            ("char comm[16]", Some("comm")),
            ("unsigned long args[6]", Some("args")),
            ("const char * filename", Some("filename")),
            ("struct file *file", Some("file")),
            ("char x[2][3]", Some("x")),
            ("int", None),
            ("", None),
            ("int 3", None),
        ];
        for (decl, want) in cases {
            assert_eq!(field_name(decl), want, "{decl:?}");
        }
    }

    #[test]
    fn malformed_formats_are_errors_with_the_line() {
        let bad_offset = "format:\n\tfield:int pid;\toffset:x;\tsize:4;\tsigned:1;\n";
        let err = parse_format(bad_offset).unwrap_err();
        assert_eq!((err.line, err.reason), (2, "not a number"));
        assert!(err.to_string().contains("line 2"), "{err}");

        let no_size = "\tfield:int pid;\toffset:12;\tsigned:1;\n";
        assert_eq!(parse_format(no_size).unwrap_err().reason, "no size");
        let no_name = "\tfield:;\toffset:12;\tsize:4;\n";
        assert_eq!(parse_format(no_name).unwrap_err().reason, "no field name");
        let no_colon = "\tfield:int pid;\toffset 12;\tsize:4;\n";
        assert_eq!(
            parse_format(no_colon).unwrap_err().reason,
            "expected key:value"
        );
        let twice = "\tfield:int pid;\toffset:8;\tsize:4;\n\tfield:int pid;\toffset:12;\tsize:4;\n";
        assert_eq!(parse_format(twice).unwrap_err().reason, "duplicate field");
        let err = parse_format("name: x\nID: 1\nformat:\n\nprint fmt: \"\"\n").unwrap_err();
        assert_eq!(err.reason, "no field lines");
        // An event directory holding something else entirely.
        assert!(parse_format("<html>not found</html>").is_err());
    }

    fn fake_tracefs(exec: &str, cgroup: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (group, name, text) in [
            ("sched", "sched_process_exec", exec),
            ("cgroup", "cgroup_mkdir", cgroup),
        ] {
            let event = dir.path().join("events").join(group).join(name);
            std::fs::create_dir_all(&event).unwrap();
            std::fs::write(event.join("format"), text).unwrap();
            std::fs::write(event.join("id"), "1\n").unwrap();
        }
        dir
    }

    #[test]
    fn tracepoint_offsets_from_format_files() {
        let dir = fake_tracefs(SCHED_PROCESS_EXEC, CGROUP_MKDIR);
        let mut o = KernelOffsets {
            structs_valid: 1,
            task_fs: 1816,
            ..KernelOffsets::default()
        };
        tracepoint_offsets(dir.path(), &mut o).unwrap();
        // The values in shared/design/KERNEL-NOTES.md for this kernel.
        assert_eq!(
            o,
            KernelOffsets {
                structs_valid: 1,
                task_fs: 1816,
                tp_exec_filename: 8,
                tp_exec_pid: 12,
                tp_exec_old_pid: 16,
                tp_cgroup_root: 8,
                tp_cgroup_level: 12,
                tp_cgroup_id: 16,
                tp_cgroup_path: 24,
                ..KernelOffsets::default()
            }
        );
    }

    #[test]
    fn tracepoint_offsets_name_the_file_and_field_at_fault() {
        let no_level = CGROUP_MKDIR.replace("level", "depth");
        let dir = fake_tracefs(SCHED_PROCESS_EXEC, &no_level);
        let mut o = KernelOffsets::default();
        let err = tracepoint_offsets(dir.path(), &mut o).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, TracefsError::MissingField { field: "level", .. }),
            "{msg}"
        );
        assert!(
            msg.ends_with("events/cgroup/cgroup_mkdir/format: no field level"),
            "{msg}"
        );
        // Nothing is half-filled: the exec fields were found but not written.
        assert_eq!(o, KernelOffsets::default());

        let narrow_id = CGROUP_MKDIR.replace("offset:16;\tsize:8;", "offset:16;\tsize:4;");
        let dir = fake_tracefs(SCHED_PROCESS_EXEC, &narrow_id);
        let err = tracepoint_offsets(dir.path(), &mut o).unwrap_err();
        assert!(
            matches!(err, TracefsError::UnexpectedField { field: "id", .. }),
            "{err}"
        );

        let fixed_filename =
            SCHED_PROCESS_EXEC.replace("__data_loc char[] filename", "char filename[4]");
        let dir = fake_tracefs(&fixed_filename, CGROUP_MKDIR);
        let err = tracepoint_offsets(dir.path(), &mut o).unwrap_err();
        assert!(
            matches!(
                err,
                TracefsError::UnexpectedField {
                    field: "filename",
                    ..
                }
            ),
            "{err}"
        );

        let dir = fake_tracefs("garbage", CGROUP_MKDIR);
        let err = tracepoint_offsets(dir.path(), &mut o).unwrap_err();
        assert!(matches!(err, TracefsError::Format { .. }), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = tracepoint_offsets(empty.path(), &mut o).unwrap_err();
        assert!(matches!(err, TracefsError::Io { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("events/sched/sched_process_exec/format"),
            "{err}"
        );
    }

    #[test]
    fn tracepoint_exists_looks_for_the_id_file() {
        let dir = fake_tracefs(SCHED_PROCESS_EXEC, CGROUP_MKDIR);
        assert!(tracepoint_exists(dir.path(), "sched", "sched_process_exec"));
        assert!(!tracepoint_exists(dir.path(), "syscalls", "sys_enter_open"));
        std::fs::create_dir_all(dir.path().join("events/syscalls/sys_enter_open")).unwrap();
        assert!(!tracepoint_exists(dir.path(), "syscalls", "sys_enter_open"));
    }

    #[test]
    fn finds_tracefs_in_mountinfo() {
        let mountinfo = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 22 0:12 / /sys/kernel/debug/tracing rw,nosuid,nodev,noexec,relatime - tracefs tracefs rw
31 22 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:12 - debugfs debugfs rw
40 28 0:12 / /mnt/my\\040traces rw,relatime - tracefs nodev rw
41 22 0:12 / /sys/kernel/tracing rw,relatime shared:20 - tracefs nodev rw
42 28 0:44 / /tracefs rw,relatime - tmpfs tracefs rw
";
        assert_eq!(
            tracefs_mounts(mountinfo),
            [
                "/sys/kernel/tracing",
                "/sys/kernel/debug/tracing",
                "/mnt/my traces"
            ]
            .map(PathBuf::from)
        );
        assert!(tracefs_mounts("").is_empty());
    }

    /// When tracefs is mounted (it is not on a fresh machine, and unit tests
    /// do not mount it), this kernel's own files must yield every offset.
    #[test]
    fn tracepoint_offsets_of_the_running_kernel_when_mounted() {
        let Some(tracefs) = find_mounted() else {
            eprintln!("tracefs is not mounted: skipping the check against the running kernel");
            return;
        };
        let mut o = KernelOffsets::default();
        tracepoint_offsets(&tracefs, &mut o).unwrap_or_else(|e| panic!("{e}"));
        // Every field follows the 8 bytes of common fields.
        for off in [
            o.tp_exec_filename,
            o.tp_exec_pid,
            o.tp_exec_old_pid,
            o.tp_cgroup_root,
            o.tp_cgroup_level,
            o.tp_cgroup_id,
            o.tp_cgroup_path,
        ] {
            assert!(off >= 8, "{o:?}");
        }
        assert!(tracepoint_exists(&tracefs, "syscalls", "sys_enter_openat"));
        assert!(!tracepoint_exists(
            &tracefs,
            "syscalls",
            "sys_enter_no_such_call"
        ));
    }

    /// Mounts tracefs for real: needs root, so run it by hand with `--ignored`.
    #[test]
    #[ignore = "mounts tracefs: needs CAP_SYS_ADMIN"]
    fn ensure_mounted_mounts_when_missing() {
        let path = ensure_mounted().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            path.join("events/sched/sched_process_exec/format")
                .is_file()
        );
        assert_eq!(find_mounted(), Some(path));
    }
}
