//! One guest: QEMU (TCG) boots a Debian kernel with the host's root shared
//! read-only under a tmpfs overlay, runs one command as root in it, and
//! powers off. The command's output streams from the serial console; its
//! exit code comes back in a writable share (`/run/vm` in the guest), with a
//! console marker as a second source.
//!
//! The shares are virtiofs (a virtiofsd per share, QEMU's memory shared with
//! them): Debian's cloud kernels have no 9p (`CONFIG_NET_9P` is not set),
//! but all have `virtiofs`.
use std::{
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{initramfs, kernel::Kernel};

/// Where the share is mounted inside the guest.
pub const GUEST_SHARE: &str = "/run/vm";

const START: &str = "@@vm-start@@";
const EXIT: &str = "@@vm-exit ";
const FAIL: &str = "@@vm-fail ";

/// What to run and how.
pub struct Spec<'a> {
    pub kernel: &'a Kernel,
    /// argv, run with `exec` from a shell in `cwd`.
    pub argv: &'a [OsString],
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    /// The qemu process is killed after this long.
    pub timeout: Option<Duration>,
    /// Show the boot messages before the command starts too.
    pub verbose: bool,
}

pub struct Outcome {
    /// The command's exit code; None when the guest never reported one.
    pub exit: Option<i32>,
    /// Why there is no exit code.
    pub failure: Option<String>,
    /// From starting QEMU to the command's start.
    pub boot: Option<Duration>,
    pub wall: Duration,
}

/// A guest's files on the host: the initramfs, the virtiofsd sockets, and
/// `share/`, shared writable into the guest at [`GUEST_SHARE`]. Removed when
/// dropped.
pub struct Share {
    dir: PathBuf,
    /// The shared directory.
    pub path: PathBuf,
}

impl Share {
    pub fn new() -> anyhow::Result<Share> {
        let runs = super::kernel::cache_root()?.join("runs");
        remove_stale_runs(&runs);
        let dir = runs.join(std::process::id().to_string());
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("share");
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Share { dir, path })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes what runs that were killed left behind: `runs/<pid>[-...]` of a
/// process that is gone.
pub fn remove_stale_runs(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: String = name.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !Path::new("/proc").join(&pid).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// A running virtiofsd, killed when dropped (it also exits with QEMU).
struct Virtiofsd {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

/// QEMU's own (bookworm's qemu-system-common) or the virtiofsd package's.
fn virtiofsd_binary() -> anyhow::Result<PathBuf> {
    let candidates = ["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Ok(p);
    }
    // Newer QEMU packages leave it to a package of its own.
    super::apt_install(&["virtiofsd"])?;
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("no virtiofsd in /usr/libexec or /usr/lib/qemu after apt-get install virtiofsd")
}

fn virtiofsd(source: &Path, socket: PathBuf, cache: &str) -> anyhow::Result<Virtiofsd> {
    let bin = virtiofsd_binary()?;
    let _ = fs::remove_file(&socket);
    // It complains on stderr when QEMU hangs up; the log is kept for failures.
    let log = fs::File::create(socket.with_extension("log"))?;
    // The -o forms are the C virtiofsd's, which the Rust one accepts too.
    let child = Command::new(&bin)
        .arg(format!("--socket-path={}", socket.display()))
        .arg("-o")
        .arg(format!("source={}", source.display()))
        .args(["-o", &format!("cache={cache}"), "-o", "sandbox=chroot"])
        .args(["-o", "log_level=err"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut d = Virtiofsd { child, socket };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.socket.exists() {
        if let Some(status) = d.child.try_wait()? {
            let log = fs::read_to_string(d.socket.with_extension("log")).unwrap_or_default();
            bail!(
                "{} for {} exited at start: {status}\n{}",
                bin.display(),
                source.display(),
                log.trim()
            );
        }
        if Instant::now() > deadline {
            bail!("{} made no socket within 10 s", bin.display());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(d)
}

/// Single-quotes a word for sh.
pub fn quote(word: &[u8]) -> String {
    let text = String::from_utf8_lossy(word);
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn init_script(hostname: &str, path: &str) -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {{
    echo "vm-init: $*"
    echo "{FAIL}$*@@"
    poweroff -f
}}
while read -r m; do
    insmod /lib/modules/$m.ko || echo "vm-init: insmod $m failed"
done < /lib/modules/order
mkdir -p /lower /rw /newroot /share
# The virtio device may bind a moment after its driver loads.
i=0
until mount -t virtiofs -o ro hostroot /lower 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 50 ] || fail "cannot mount the host root (virtiofs tag hostroot)"
    sleep 0.1
done
mount -t virtiofs share /share || fail "cannot mount the share (virtiofs tag share)"
mount -t tmpfs -o mode=0755 rw /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "cannot mount the overlay"
R=/newroot
mount -t proc proc $R/proc || fail "proc"
mount -t sysfs sysfs $R/sys || fail "sysfs"
mount -t devtmpfs devtmpfs $R/dev || fail "devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
ln -sf pts/ptmx $R/dev/ptmx
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=0755 run $R/run || fail "tmpfs on /run"
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "cgroup2"
mount -t tracefs tracefs $R/sys/kernel/tracing || fail "tracefs"
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
mount -t bpf bpf $R/sys/fs/bpf || fail "bpffs"
mount -t securityfs securityfs $R/sys/kernel/security || fail "securityfs"
mkdir -p $R{GUEST_SHARE}
mount --bind /share $R{GUEST_SHARE} || fail "bind mount of the share"
ip link set lo up || fail "lo"
hostname {hostname}
echo "{START}"
env -i PATH={path} HOME=/root TERM=dumb LANG=C.UTF-8 chroot $R /bin/sh {GUEST_SHARE}/cmd.sh < /dev/null
rc=$?
echo $rc > /share/rc
sync
echo "{EXIT}$rc@@"
poweroff -f
"#,
        path = quote(path.as_bytes()),
    )
}

/// The command file the guest's shell runs: cwd, environment, then exec.
fn command_script(spec: &Spec<'_>) -> String {
    let cwd = quote(spec.cwd.as_os_str().as_bytes());
    let mut s = format!(
        "cd {cwd} || {{ echo \"vm: no directory {} in the guest\" >&2; exit 127; }}\n",
        spec.cwd.display()
    );
    for (k, v) in spec.env {
        s.push_str(&format!("export {k}={}\n", quote(v.as_bytes())));
    }
    s.push_str("exec");
    for a in spec.argv {
        s.push(' ');
        s.push_str(&quote(a.as_bytes()));
    }
    s.push('\n');
    s
}

/// The guest's PATH: the host's, which names the same root.
fn guest_path() -> String {
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())
}

#[derive(Default)]
struct Console {
    started: Option<Instant>,
    exit: Option<i32>,
    failure: Option<String>,
    /// The boot messages, shown when the command never started.
    boot_lines: Vec<String>,
}

/// Where the guest's console lines go, one at a time.
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

/// Boots the guest, runs the command, streams its output to `out`.
pub fn boot(spec: &Spec<'_>, share: &Share, out: Output) -> anyhow::Result<Outcome> {
    super::ensure_tool("qemu-system-x86_64", "qemu-system-x86")?;
    if !super::package_installed("busybox-static") {
        super::apt_install(&["busybox-static"])?;
    }
    let k = spec.kernel;
    let initrd = share.dir.join("initrd.cpio");
    let hostname = format!("vm-{}", k.release.name);
    initramfs::build(k, &init_script(&hostname, &guest_path()), &initrd)?;
    let _ = fs::remove_file(share.path.join("rc"));
    fs::write(share.path.join("cmd.sh"), command_script(spec))?;

    let append = [
        "console=ttyS0",
        "lsm=lockdown,capability,landlock,bpf",
        "panic=-1",
        // Kernel errors still reach the console; the rest stays out of the output.
        "quiet",
        "loglevel=3",
        "random.trust_cpu=on",
    ]
    .join(" ");
    // The host's root changes little while a guest runs: let the guest cache it.
    let root_fs = virtiofsd(Path::new("/"), share.dir.join("hostroot.sock"), "always")?;
    let share_fs = virtiofsd(&share.path, share.dir.join("share.sock"), "none")?;
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2"])
        // vhost-user devices need the guest's memory shared with virtiofsd.
        .args(["-object", "memory-backend-memfd,id=mem,size=2048M,share=on"])
        .args(["-numa", "node,memdev=mem"])
        .args([
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .args(["-nic", "none", "-device", "virtio-rng-pci"])
        .arg("-kernel")
        .arg(&k.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &append])
        .arg("-chardev")
        .arg(format!("socket,id=fs0,path={}", root_fs.socket.display()))
        .args([
            "-device",
            "vhost-user-fs-pci,chardev=fs0,tag=hostroot,queue-size=1024",
        ])
        .arg("-chardev")
        .arg(format!("socket,id=fs1,path={}", share_fs.socket.display()))
        .args(["-device", "vhost-user-fs-pci,chardev=fs1,tag=share"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let begun = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let console = Arc::new(Mutex::new(Console::default()));
    let verbose = spec.verbose;
    let reader = {
        let console = console.clone();
        let out = out.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match r.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                let mut c = console.lock().unwrap();
                if line.ends_with(START) {
                    c.started = Some(Instant::now());
                    continue;
                }
                if let Some(rest) = line.split(EXIT).nth(1) {
                    c.exit = rest.trim_end_matches("@@").trim().parse().ok();
                    continue;
                }
                // Power-off messages.
                if c.exit.is_some() && !verbose {
                    continue;
                }
                if let Some(rest) = line.split(FAIL).nth(1) {
                    c.failure = Some(rest.trim_end_matches("@@").to_owned());
                    continue;
                }
                if c.started.is_none() && !verbose {
                    c.boot_lines.push(line);
                    continue;
                }
                drop(c);
                out(&line);
            }
        })
    };
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if spec.timeout.is_some_and(|t| begun.elapsed() > t) {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let wall = begun.elapsed();
    let _ = reader.join();
    drop((root_fs, share_fs));
    let c = std::mem::take(&mut *console.lock().unwrap());
    let boot = c.started.map(|t| t - begun);
    // The share is the reliable source; the marker covers a lost write.
    let from_share = fs::read_to_string(share.path.join("rc"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let exit = from_share.or(c.exit);
    let failure = if exit.is_some() {
        None
    } else if timed_out {
        Some(format!(
            "timed out after {:.0} s",
            spec.timeout.unwrap_or_default().as_secs_f64()
        ))
    } else if let Some(f) = c.failure {
        Some(f)
    } else if c.started.is_none() {
        Some(format!(
            "the guest did not start the command (qemu {status})"
        ))
    } else {
        Some(format!(
            "the guest stopped without reporting an exit code (qemu {status})"
        ))
    };
    if failure.is_some() && c.started.is_none() && !c.boot_lines.is_empty() {
        out("vm: the guest's console up to the failure:");
        for l in &c.boot_lines {
            out(&format!("  {l}"));
        }
    }
    if exit.is_none() && failure.is_none() {
        bail!("no exit code and no failure");
    }
    Ok(Outcome {
        exit,
        failure,
        boot,
        wall,
    })
}
