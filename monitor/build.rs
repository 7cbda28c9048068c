//! Builds the kernel programs (monitor-ebpf) with nightly and bpf-linker and
//! leaves the object in OUT_DIR, where `bpf::load` embeds it.
//!
//! With `AYA_BUILD_SKIP=1` (set by helpers that only check or lint the host
//! code) an empty object is written instead, so the crate still compiles; the
//! agent then refuses to start with a message saying how to build it.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(out_dir.join("monitor"), []).context("writing the empty eBPF object")?;
        return Ok(());
    }
    // aya-build forwards every stderr line of its inner cargo as a
    // `cargo:warning`, so a clean build would print "warning: Compiling ...".
    // A quiet inner cargo still reports real warnings and errors (those come
    // as JSON compiler messages), and nothing else.
    // SAFETY: the build script is single-threaded here.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    // aya-build watches the kernel crate; the shared records matter as much.
    println!("cargo:rerun-if-changed=../monitor-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: "../monitor-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the kernel programs (run `cargo xtask setup` if nightly, rust-src or bpf-linker is missing)")
}
