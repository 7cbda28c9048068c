//! The guest's initramfs: a static busybox, the `/init` script, and the kernel
//! modules that mount the host's root (virtiofs) with an overlay on top, in
//! dependency order, decompressed (busybox's insmod loads plain `.ko` only).
use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::kernel::Kernel;

/// Modules the guest needs, when the kernel does not have them built in:
/// the host's root over virtiofs with an overlay, and veth for the tests'
/// own network namespaces (the DNS server's). Their dependencies come from
/// each module's own `depends=`.
const REQUIRED: &[&str] = &["virtio_pci", "virtiofs", "overlay", "veth"];
/// Loaded when the kernel has them: a virtio RNG, so that early getrandom()
/// does not wait on entropy under emulation.
const OPTIONAL: &[&str] = &["virtio_rng"];

const BUSYBOX: &str = "/bin/busybox";

/// Writes the initramfs (an uncompressed newc cpio) to `out`.
pub fn build(kernel: &Kernel, init: &str, out: &Path) -> anyhow::Result<()> {
    let busybox = fs::read(BUSYBOX)
        .with_context(|| format!("reading {BUSYBOX} (apt-get install busybox-static)"))?;
    if busybox.get(..4) != Some(b"\x7fELF".as_slice()) || elf_has_interp(&busybox) {
        bail!("{BUSYBOX} is not a static busybox (apt-get install busybox-static)");
    }
    let modules = resolve(kernel)?;
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules", "tmp"] {
        cpio.dir(d);
    }
    cpio.node("dev/console", 0o020600, (5, 1));
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.symlink("bin/sh", "busybox");
    cpio.file("init", 0o755, init.as_bytes());
    let mut order = String::new();
    for (name, bytes) in &modules {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("lib/modules/order", 0o644, order.as_bytes());
    fs::write(out, cpio.finish()).with_context(|| format!("writing {}", out.display()))
}

/// The modules to load, dependencies first, as (name, uncompressed bytes).
fn resolve(kernel: &Kernel) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let builtin: HashSet<String> = fs::read_to_string(kernel.modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut files = HashMap::new();
    index(&kernel.modules.join("kernel"), &mut files)?;
    let mut out = Vec::new();
    let mut done = HashSet::new();
    for (names, required) in [(REQUIRED, true), (OPTIONAL, false)] {
        for name in names {
            let name = name.replace('-', "_");
            if builtin.contains(&name) {
                continue;
            }
            if !files.contains_key(&name) {
                if required {
                    bail!(
                        "kernel {} has no module {name} (neither built in nor in {})",
                        kernel.uname,
                        kernel.modules.display()
                    );
                }
                continue;
            }
            add(
                &name,
                &files,
                &builtin,
                &mut done,
                &mut out,
                &mut Vec::new(),
            )?;
        }
    }
    Ok(out)
}

/// Post-order: a module after everything it depends on.
fn add(
    name: &str,
    files: &HashMap<String, PathBuf>,
    builtin: &HashSet<String>,
    done: &mut HashSet<String>,
    out: &mut Vec<(String, Vec<u8>)>,
    path: &mut Vec<String>,
) -> anyhow::Result<()> {
    if done.contains(name) || builtin.contains(name) {
        return Ok(());
    }
    if path.iter().any(|p| p == name) {
        bail!("module dependency loop: {} -> {name}", path.join(" -> "));
    }
    let file = files
        .get(name)
        .with_context(|| format!("module {name} (needed by {}) not found", path.join(" -> ")))?;
    let bytes = decompressed(file)?;
    let deps = modinfo(&bytes, "depends")
        .with_context(|| format!("reading the .modinfo of {}", file.display()))?;
    path.push(name.to_owned());
    for dep in deps.split(',').filter(|d| !d.is_empty()) {
        add(&dep.replace('-', "_"), files, builtin, done, out, path)?;
    }
    path.pop();
    done.insert(name.to_owned());
    out.push((name.to_owned(), bytes));
    Ok(())
}

/// `kernel/fs/9p/9p.ko.xz` -> `9p`; dashes become underscores, as the kernel names modules.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

fn index(dir: &Path, files: &mut HashMap<String, PathBuf>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            index(&path, files)?;
        } else if path.to_string_lossy().contains(".ko") {
            files.insert(module_name(&path.to_string_lossy()), path);
        }
    }
    Ok(())
}

fn decompressed(file: &Path) -> anyhow::Result<Vec<u8>> {
    let name = file.to_string_lossy();
    let (tool, package) = if name.ends_with(".ko.xz") {
        ("xz", "xz-utils")
    } else if name.ends_with(".ko.zst") {
        ("zstd", "zstd")
    } else if name.ends_with(".ko.gz") {
        ("gzip", "gzip")
    } else {
        return fs::read(file).with_context(|| format!("reading {}", file.display()));
    };
    super::ensure_tool(tool, package)?;
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(file)
        .output()
        .with_context(|| format!("starting {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} -d {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The ELF64 section headers as (name, offset, size).
fn sections(elf: &[u8]) -> Option<Vec<(&[u8], usize, usize)>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let header = |i: usize| {
        let h = shoff + i * shentsize;
        Some((
            u32_at(h)? as usize,
            usize::try_from(u64_at(h + 24)?).ok()?,
            usize::try_from(u64_at(h + 32)?).ok()?,
        ))
    };
    let (_, stroff, strsize) = header(shstrndx)?;
    let strtab = elf.get(stroff..stroff + strsize)?;
    (0..shnum)
        .map(|i| {
            let (name, off, size) = header(i)?;
            let name = strtab.get(name..)?;
            let name = &name[..name.iter().position(|&b| b == 0)?];
            Some((name, off, size))
        })
        .collect()
}

/// One `key=value` of a module's `.modinfo` section (empty when absent).
fn modinfo(elf: &[u8], key: &str) -> anyhow::Result<String> {
    let sections = sections(elf).context("not an ELF64 module")?;
    let (_, off, size) = sections
        .iter()
        .find(|(n, _, _)| *n == b".modinfo")
        .context("no .modinfo section")?;
    let data = elf.get(*off..off + size).context("truncated .modinfo")?;
    let prefix = format!("{key}=");
    Ok(data
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default())
}

/// True when the ELF file has a program interpreter (is dynamically linked).
fn elf_has_interp(elf: &[u8]) -> bool {
    sections(elf).is_some_and(|s| s.iter().any(|(n, _, _)| *n == b".interp"))
}

/// A newc ("070701") cpio archive, the format the kernel unpacks.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), body: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            u32::try_from(body.len()).expect("initramfs entries are small"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, body: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), body);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, (0, 0), target.as_bytes());
    }

    fn node(&mut self, name: &str, mode: u32, rdev: (u32, u32)) {
        self.entry(name, mode, rdev, &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.data
    }
}
