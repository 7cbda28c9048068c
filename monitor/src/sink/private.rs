//! Alerts can carry secrets from argv: what the sinks keep on disk is the
//! agent's alone. Directories they create are 0700 and their files 0600,
//! set with chmod after creation so no umask widens (or empties) them.
use std::{
    fs::{self, File, OpenOptions, Permissions},
    io,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// Creates `dir` and every missing parent 0700; `dir` itself is made
/// 0700 even when it exists (it is the sink's own).
pub fn dir(dir: &Path) -> io::Result<()> {
    create_missing(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Creates missing parents of a file 0700, leaving existing ones alone
/// (an output file may live in `/var/log`).
pub fn parents(file: &Path) -> io::Result<()> {
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(parent) => create_missing(parent),
        None => Ok(()),
    }
}

fn create_missing(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => fs::set_permissions(d, Permissions::from_mode(0o700))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens (creating) a file for appending, 0600 whatever it was.
pub fn append(path: &Path, read: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(read)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Writes a whole file, 0600.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(0o600))?;
    f.write_all(data)
}
