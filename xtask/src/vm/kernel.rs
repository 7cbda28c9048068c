//! Debian's cloud kernels, fetched with `apt-get download` through a private
//! sources list per release (the machine's own apt configuration is not
//! touched) and cached, package and extracted tree, under
//! `~/.cache/monitor/vm/<release>/`.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};

/// A Debian release whose `linux-image-cloud-amd64` the guests boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The codename: `bullseye`.
    pub name: &'static str,
    /// The kernel series it ships: `5.10`.
    pub series: &'static str,
}

pub const RELEASES: [Release; 3] = [
    Release {
        name: "bullseye",
        series: "5.10",
    },
    Release {
        name: "bookworm",
        series: "6.1",
    },
    Release {
        name: "trixie",
        series: "6.12",
    },
];

/// `5.10`, `bullseye`, or `all`.
pub fn parse_kernels(arg: &str) -> anyhow::Result<Vec<Release>> {
    if arg == "all" {
        return Ok(RELEASES.to_vec());
    }
    let mut out = Vec::new();
    for one in arg.split(',') {
        let r = RELEASES
            .iter()
            .find(|r| r.series == one || r.name == one)
            .with_context(|| {
                format!("unknown kernel {one:?}: use 5.10, 6.1, 6.12 (or bullseye, bookworm, trixie) or all")
            })?;
        out.push(*r);
    }
    Ok(out)
}

/// A kernel ready to boot: its image and its modules directory.
pub struct Kernel {
    pub release: Release,
    /// `linux-image-6.1.0-50-cloud-amd64`
    pub package: String,
    /// `6.1.176-1`
    pub version: String,
    /// `6.1.0-50-cloud-amd64`, what `uname -r` says in the guest.
    pub uname: String,
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<uname>`
    pub modules: PathBuf,
}

/// The package lists are refreshed when older than this (or with `--refresh`).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

pub fn cache_root() -> anyhow::Result<PathBuf> {
    let home = env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/monitor/vm"))
}

/// Returns the release's current cloud kernel, downloading it only when the
/// cache has none or the (refreshed) lists name a newer one. Without network
/// a cached kernel is used as it is.
pub fn prepare(release: Release, refresh: bool) -> anyhow::Result<Kernel> {
    let dir = cache_root()?.join(release.name);
    fs::create_dir_all(dir.join("lists/partial"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let apt = Apt::new(&dir, release)?;
    let cached = read_stamp(&dir);
    let lists_age = fs::metadata(dir.join("lists/.updated"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    let stale = refresh || lists_age.is_none_or(|age| age > LISTS_MAX_AGE);
    if let Some(k) = &cached
        && !stale
    {
        return kernel_at(&dir, release, k);
    }
    if stale {
        if let Err(e) = apt.update() {
            if let Some(k) = &cached {
                eprintln!(
                    "vm: {}: could not refresh the package lists ({e:#}); using the cached {}",
                    release.name, k.deb
                );
                return kernel_at(&dir, release, k);
            }
            return Err(e);
        }
        fs::write(dir.join("lists/.updated"), b"")?;
    }
    let package = apt.cloud_image_package()?;
    let version = apt.candidate_version(&package)?;
    // apt-get download spells an epoch's colon as %3a.
    let deb = format!("{package}_{}_amd64.deb", version.replace(':', "%3a"));
    if let Some(k) = &cached
        && k.deb == deb
        && dir.join("k").is_dir()
    {
        return kernel_at(&dir, release, k);
    }
    if !dir.join(&deb).is_file() {
        eprintln!("vm: {}: downloading {package} {version}", release.name);
        apt.download(&package)?;
        if !dir.join(&deb).is_file() {
            bail!(
                "apt-get download {package} did not leave {deb} in {}",
                dir.display()
            );
        }
    }
    // Extract next to the cache, then swap it in: an interrupted run leaves no half tree.
    let tmp = dir.join("k.tmp");
    let _ = fs::remove_dir_all(&tmp);
    crate::run(Command::new("dpkg").arg("-x").arg(dir.join(&deb)).arg(&tmp))?;
    let _ = fs::remove_dir_all(dir.join("k"));
    fs::rename(&tmp, dir.join("k"))?;
    // Older packages of the release are not needed any more.
    for e in fs::read_dir(&dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".deb") && name != deb {
            let _ = fs::remove_file(e.path());
        }
    }
    let stamp = Stamp {
        deb,
        package,
        version,
    };
    fs::write(
        dir.join("kernel.stamp"),
        format!("{}\n{}\n{}\n", stamp.deb, stamp.package, stamp.version),
    )?;
    kernel_at(&dir, release, &stamp)
}

/// What the cache holds, written once the tree is extracted.
struct Stamp {
    deb: String,
    package: String,
    version: String,
}

fn read_stamp(dir: &Path) -> Option<Stamp> {
    let text = fs::read_to_string(dir.join("kernel.stamp")).ok()?;
    let mut lines = text.lines();
    let stamp = Stamp {
        deb: lines.next()?.to_owned(),
        package: lines.next()?.to_owned(),
        version: lines.next()?.to_owned(),
    };
    dir.join("k").is_dir().then_some(stamp)
}

fn kernel_at(dir: &Path, release: Release, stamp: &Stamp) -> anyhow::Result<Kernel> {
    let k = dir.join("k");
    let uname = fs::read_dir(k.join("boot"))
        .with_context(|| format!("reading {}/boot", k.display()))?
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_owned)
        })
        .with_context(|| format!("no boot/vmlinuz-* in {}", k.display()))?;
    // Trixie's packages put modules below /usr (merged /usr).
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| k.join(d).join(&uname))
        .find(|p| p.is_dir())
        .with_context(|| format!("no lib/modules/{uname} in {}", k.display()))?;
    Ok(Kernel {
        release,
        package: stamp.package.clone(),
        version: stamp.version.clone(),
        vmlinuz: k.join("boot").join(format!("vmlinuz-{uname}")),
        uname,
        modules,
    })
}

/// apt-get and apt-cache over the release's own sources list and lists.
struct Apt {
    dir: PathBuf,
    opts: Vec<String>,
}

impl Apt {
    fn new(dir: &Path, release: Release) -> anyhow::Result<Apt> {
        let sources = dir.join("sources.list");
        let line = format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {} main\n",
            release.name
        );
        if fs::read_to_string(&sources).ok().as_deref() != Some(&line) {
            fs::write(&sources, &line)?;
        }
        fs::create_dir_all(dir.join("apt-cache"))?;
        let d = dir.display();
        let opts = vec![
            format!("Dir::Etc::sourcelist={d}/sources.list"),
            "Dir::Etc::sourceparts=-".to_owned(),
            format!("Dir::State::Lists={d}/lists"),
            // Not the machine's /var/cache/apt: its binary caches would be
            // rebuilt from these lists.
            format!("Dir::Cache={d}/apt-cache"),
            format!("Dir::Cache::pkgcache={d}/apt-cache/pkgcache.bin"),
            format!("Dir::Cache::srcpkgcache={d}/apt-cache/srcpkgcache.bin"),
            // The cache is below root's home, which _apt cannot write.
            "APT::Sandbox::User=root".to_owned(),
        ];
        Ok(Apt {
            dir: dir.to_path_buf(),
            opts,
        })
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        for o in &self.opts {
            cmd.arg("-o").arg(o);
        }
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn update(&self) -> anyhow::Result<()> {
        crate::output(self.command("apt-get").args(["-qq", "update"])).map(drop)
    }

    /// `linux-image-cloud-amd64` depends on the versioned package.
    fn cloud_image_package(&self) -> anyhow::Result<String> {
        let text = crate::output(
            self.command("apt-cache")
                .args(["depends", "linux-image-cloud-amd64"]),
        )?;
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
            .map(str::to_owned)
            .context("apt-cache depends linux-image-cloud-amd64 names no linux-image-*-cloud-amd64")
    }

    fn candidate_version(&self, package: &str) -> anyhow::Result<String> {
        let text =
            crate::output(
                self.command("apt-cache")
                    .args(["show", "--no-all-versions", package]),
            )?;
        text.lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("apt-cache show {package} gives no Version"))
    }

    fn download(&self, package: &str) -> anyhow::Result<()> {
        crate::output(self.command("apt-get").args(["-qq", "download", package])).map(drop)
    }
}
