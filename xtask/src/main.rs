//! Project tasks: `cargo xtask setup | build | run | test | bench | vm-run | vm-test`.
//!
//! `setup` makes a fresh machine able to build the kernel programs; every
//! other task calls it first, so nobody has to remember it.
use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod bench;
mod vm;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build needs: nightly's rust-src and bpf-linker
    /// linked against nightly's own LLVM. Idempotent and quick when done.
    Setup,
    /// Setup, then build the agent (kernel programs included) in release mode.
    Build,
    /// Build, then run the agent with the given arguments (as root), e.g.
    /// `cargo xtask run -- trace --kind exec`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Setup, then run every test: unit tests and, as root, the kernel tests.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Setup, build, then measure the agent (as root): overhead against no
    /// monitor, auditd and bpftrace, throughput without loss, latency,
    /// memory, the pipeline, and the loops in a 6.12 VM under each hook tier
    /// (`--only vm`). Writes BENCHMARKS.md and bench-results.json at the repo root.
    Bench(bench::BenchArgs),
    /// Boot a Debian cloud kernel (5.10, 6.1, 6.12) under QEMU (TCG) and run
    /// one command in it as root, e.g.
    /// `cargo xtask vm-run --kernel 5.10 -- ./target/release/monitor trace`
    /// (`--kernel all` runs it on each in turn).
    ///
    /// The guest's root is this machine's root (read-only virtiofs under a
    /// tmpfs overlay: what the guest writes stays in the guest), chrooted
    /// into in the current directory, with proc, sysfs, devtmpfs, cgroup2,
    /// tracefs, debugfs, bpffs and securityfs mounted, `lo` up (127.0.0.1 and
    /// ::1), and BPF LSM on. The command's output streams here, and vm-run
    /// exits with its exit code (124 on --timeout, 125 when the guest failed).
    /// The caller's MONITOR_* and RUST_* variables are passed on; `-e K=V`
    /// sets more. The kernel is downloaded once (apt-get download through a
    /// private sources list) to ~/.cache/monitor/vm/<release>/; QEMU and
    /// busybox-static are installed with apt-get when missing. Booting takes
    /// 6-8 s; code runs 10-50 times slower than on the host.
    VmRun(vm::RunArgs),
    /// Run the kernel test suites (kernel_trace, kernel_policy,
    /// kernel_context, kernel_enforce, kernel_fairness, kernel_probe, and any
    /// --test named) in a guest per kernel (5.10,
    /// 6.1, 6.12, one after another), as vm-run does.
    ///
    /// Builds the test executables here (`cargo test --no-run`), then each
    /// guest prints its kernel, whether BPF LSM is active, and the agent's
    /// hook report (`monitor hooks`), and runs every test in a process of its
    /// own with MONITOR_REQUIRE_KERNEL_TESTS=1 and MONITOR_TEST_TIME_SCALE
    /// (waits are 10 times longer under emulation). Tests that start dockerd
    /// are left out by name, the memory soak unless --soak; the summary lists
    /// them with the reason, then per kernel: hooks active and inactive,
    /// tests passed and failed, boot and wall time, and last
    /// `vm-test: N passed, N failed`. Exits non-zero when a guest did not
    /// boot, a kernel ran no test, or any test failed.
    VmTest(vm::TestArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The VM tasks run their commands where they were called from.
    let cwd = env::current_dir()?;
    let root = workspace_root();
    env::set_current_dir(&root)?;
    match cli.task {
        Task::Setup => setup(),
        Task::Build => {
            setup()?;
            build_release()
        }
        Task::Run { args } => {
            setup()?;
            build_release()?;
            let status = Command::new(target_dir()?.join("release/monitor"))
                .args(args)
                .status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test { args } => {
            setup()?;
            test(&args)
        }
        Task::Bench(args) => {
            let started = std::time::Instant::now();
            setup()?;
            build_release()?;
            bench::run(args, &root, &target_dir()?, started)
        }
        Task::VmRun(args) => std::process::exit(vm::run(args, &cwd)?),
        Task::VmTest(args) => {
            setup()?;
            std::process::exit(vm::test::run(args)?)
        }
    }
}

/// Where cargo puts build output (honours CARGO_TARGET_DIR and config).
fn target_dir() -> anyhow::Result<PathBuf> {
    let meta =
        output(Command::new("cargo").args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let v: serde_json::Value = serde_json::from_str(&meta).context("parsing cargo metadata")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Runs a command, failing with its name when it fails.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13";

fn setup() -> anyhow::Result<()> {
    let version = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "-vV"]))
        .context("the nightly toolchain is required for the kernel programs (rustup toolchain install nightly)")?;
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?.trim(),
    );

    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        eprintln!(
            "setup: installing rust-src for {NIGHTLY} (the eBPF target builds core from source)"
        );
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }

    if bpf_linker_ok() {
        return Ok(());
    }
    // bpf-linker must use the very LLVM nightly rustc emits bitcode for: link it
    // against the libLLVM shipped inside the nightly toolchain.
    let llvm_major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV printed no LLVM version")?
        .to_owned();
    let prefix = llvm_prefix()?;
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let mut found = false;
    for entry in fs::read_dir(sysroot.join("lib"))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("libLLVM") && name.contains(".so") {
            found = true;
            link(&entry.path(), &lib.join(&*name))?;
            // The build looks for plain libLLVM.so; point it at the real library, not the linker script.
            if name.starts_with("libLLVM.so.") {
                link(&entry.path(), &lib.join("libLLVM.so"))?;
            }
        }
    }
    if !found {
        bail!(
            "no libLLVM in {}/lib: this nightly does not ship its LLVM as a shared library",
            sysroot.display()
        );
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {llvm_major} (about a minute)"
    );
    run(Command::new("cargo")
        .args([
            &format!("+{NIGHTLY}"),
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            &format!("~{BPF_LINKER_VERSION}"),
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        // An older bpf-linker may be there but broken; replace it.
        .arg("--force"))?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but does not run; see the output above");
    }
    Ok(())
}

/// The LLVM prefix must outlive the build: bpf-linker loads libLLVM from it.
fn llvm_prefix() -> anyhow::Result<PathBuf> {
    let home = env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/share/monitor/llvm"))
}

fn link(target: &Path, at: &Path) -> anyhow::Result<()> {
    if fs::read_link(at).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let _ = fs::remove_file(at);
    std::os::unix::fs::symlink(target, at)
        .with_context(|| format!("linking {} to {}", at.display(), target.display()))
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains(&format!(" {BPF_LINKER_VERSION}."))
        })
}

fn build_release() -> anyhow::Result<()> {
    run(Command::new("cargo").args(["build", "--release", "-p", "monitor", "--bin", "monitor"]))
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0")
}

fn test(extra: &[OsString]) -> anyhow::Result<()> {
    let root = is_root();
    let ci = env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !root {
        if ci {
            bail!("CI must run the tests as root: the kernel tests load eBPF programs");
        }
        eprintln!("xtask test: not root, so the kernel tests will report themselves skipped");
    }
    let mut cmd = Command::new("cargo");
    // The default members: the kernel crate only builds for the BPF target.
    cmd.arg("test");
    if !extra.is_empty() {
        cmd.args(extra);
    }
    if root {
        // As root nothing excuses a kernel test from running: a skip is a failure.
        cmd.env("MONITOR_REQUIRE_KERNEL_TESTS", "1");
    }
    run(&mut cmd)
}
