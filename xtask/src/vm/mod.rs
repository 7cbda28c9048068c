//! `cargo xtask vm-run` and `vm-test`: the agent and its kernel tests on
//! Debian's own cloud kernels (bullseye 5.10, bookworm 6.1, trixie 6.12),
//! booted under QEMU with software emulation (TCG; nested KVM hangs on these
//! machines).
//!
//! The guest's root is the host's own root, shared read-only over 9p with a
//! tmpfs overlay on top, so every binary, library and path of the host is
//! there and nothing the guest writes reaches the host. The initramfs holds a
//! static busybox, an `/init` that mounts it all and chroots, and the few
//! kernel modules that takes. Kernels are fetched once with `apt-get
//! download` and kept under `~/.cache/monitor/vm/<release>/`.
pub(crate) mod guest;
mod initramfs;
pub(crate) mod kernel;
pub mod test;

use std::{
    env,
    ffi::OsString,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};

pub use self::test::TestArgs;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The guest's kernel: 5.10, 6.1, 6.12 (or bullseye, bookworm, trixie),
    /// a comma-separated list, or all (one guest after another).
    #[arg(long, default_value = "6.1", value_name = "KERNEL")]
    pub kernel: String,
    /// Set a variable for the command (repeatable). The caller's MONITOR_*
    /// and RUST_* variables are passed on as well.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Stop the guest after this many seconds (exit code 124).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Refresh the package lists now (they are refreshed daily anyway) and
    /// take a newer kernel if there is one.
    #[arg(long)]
    pub refresh: bool,
    /// Show the guest's boot messages too.
    #[arg(short, long)]
    pub verbose: bool,
    /// The command and its arguments, run as root in the guest, in the
    /// current directory.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// `vm-run`: exits with the command's exit code (the last non-zero one over
/// several kernels), 124 on timeout, 125 when a guest did not run it.
pub fn run(args: RunArgs, cwd: &Path) -> anyhow::Result<i32> {
    ensure_root()?;
    let releases = kernel::parse_kernels(&args.kernel)?;
    let mut env = passed_env();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
        check_env_name(k)?;
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    let mut code = 0;
    for release in releases {
        let k = kernel::prepare(release, args.refresh)?;
        eprintln!(
            "vm-run: {} ({} {} {}), {}",
            k.uname,
            release.name,
            k.package,
            k.version,
            display_argv(&args.command)
        );
        let share = guest::Share::new()?;
        let spec = guest::Spec {
            kernel: &k,
            argv: &args.command,
            cwd,
            env: &env,
            timeout: args.timeout.map(Duration::from_secs),
            verbose: args.verbose,
        };
        let out: guest::Output = Arc::new(|line: &str| {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        });
        let o = guest::boot(&spec, &share, out)?;
        let boot = o
            .boot
            .map_or("-".to_owned(), |b| format!("{:.1} s", b.as_secs_f64()));
        let this = match (&o.exit, &o.failure) {
            (Some(c), _) => {
                eprintln!(
                    "vm-run: {}: exit {c} (boot {boot}, total {:.1} s)",
                    release.series,
                    o.wall.as_secs_f64()
                );
                *c
            }
            (None, Some(f)) => {
                eprintln!("vm-run: {}: {f}", release.series);
                if f.starts_with("timed out") { 124 } else { 125 }
            }
            (None, None) => 125,
        };
        if this != 0 {
            code = this;
        }
    }
    Ok(code)
}

fn display_argv(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The caller's MONITOR_* and RUST_* variables.
fn passed_env() -> Vec<(String, String)> {
    env::vars()
        .filter(|(k, _)| k.starts_with("MONITOR_") || k.starts_with("RUST_"))
        .collect()
}

fn check_env_name(k: &str) -> anyhow::Result<()> {
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("{k:?} is not a variable name");
    }
    Ok(())
}

fn ensure_root() -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "the VM tasks run as root: they install QEMU with apt-get and share / into the guest"
        );
    }
    Ok(())
}

/// Installs `package` with apt-get when `tool` is not on PATH.
pub fn ensure_tool(tool: &str, package: &str) -> anyhow::Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    apt_install(&[package])
}

/// Installs Debian packages, quietly; never removes one to make room.
///
/// QEMU is the one package that needs help: a machine may carry a newer
/// `qemu-utils` (qemu-img) from backports, which breaks the release's
/// `qemu-system-common`. apt would remove it; instead qemu-utils is moved to
/// the release's own version, so qemu-img stays installed.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let mut packages: Vec<String> = packages.iter().map(|p| p.to_string()).collect();
    let mut downgrade = false;
    if packages.iter().any(|p| p.starts_with("qemu-system"))
        && package_installed("qemu-utils")
        && let Some(release) = release_codename()
    {
        packages.push(format!("qemu-utils/{release}"));
        downgrade = true;
    }
    eprintln!("vm: installing {}", packages.join(" "));
    crate::output(
        Command::new("apt-get")
            .args(["-qq", "update"])
            .stdin(Stdio::null()),
    )?;
    crate::output(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "--no-remove",
            ])
            .args(downgrade.then_some("--allow-downgrades"))
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
    .map(drop)
}

/// The Debian release's code name (`bookworm`), from /etc/os-release.
fn release_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// True when the Debian package is installed.
pub fn package_installed(package: &str) -> bool {
    crate::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|s| s.contains("install ok installed"))
}
