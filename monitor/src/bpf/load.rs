//! Loads the kernel programs, probes which hooks this kernel offers, attaches
//! them, and says in the log which are active and why any is not.
//!
//! The rows it walks, and the statuses it leaves, are in [`super::hooks`].
use std::fs::File;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
};
use monitor_common::{KernelOffsets, SENSITIVE_NAME_LEN, Settings, kind, loss};
use tracing::{debug, info};

use super::hooks::{BASELINE, HookError, HookStatus, Tier, TierChoice, concern_tiers};

/// The compiled kernel programs, built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// How the programs are set up before load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Ring buffer size in bytes: a power of two, a multiple of the page size.
    pub ring_buffer_bytes: u32,
    /// Each cgroup's share of the ring buffer.
    pub fairness: super::Fairness,
    /// Report only the cgroups put in the monitored set.
    pub filter_cgroups: bool,
    /// `--enforce`: load the enforcing programs and let the exec hook kill.
    pub enforce: bool,
    pub offsets: KernelOffsets,
    /// The cgroup v2 mount, where the socket hooks attach.
    pub cgroup2_mount: std::path::PathBuf,
    /// Where tracefs is mounted, to tell a missing tracepoint from a failure.
    pub tracefs: std::path::PathBuf,
    /// The kernel's BTF where `/sys/kernel/btf/vmlinux` is missing: the
    /// fentry tier's programs are loaded against it.
    pub btf: Option<std::path::PathBuf>,
    /// Which hook tiers may serve the concerns (`--hook-tier`).
    pub tier: TierChoice,
    /// `--syscall-profile`: the calls not to report ([`super::profile`]).
    pub syscall_profile: Option<super::profile::SyscallProfile>,
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Kernel {
    ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    /// How the kernel programs decide the cgroup scope (`--cgroup`).
    pub scope_route: ScopeRoute,
    /// `--enforce`: the enforcing programs, loaded, and what is in force.
    enforcement: Option<super::enforce::EnforcementMaps>,
}

/// How a tracepoint program tells whether the task is inside a watched subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRoute {
    /// No `--cgroup`: everything is watched.
    Unfiltered,
    /// `bpf_get_current_ancestor_cgroup_id`.
    AncestorHelper,
    /// Walking `task->cgroups->dfl_cgrp->kn` and its parents with BTF offsets.
    CgroupWalk,
}

impl std::fmt::Display for ScopeRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScopeRoute::Unfiltered => "unfiltered",
            ScopeRoute::AncestorHelper => "ancestor-cgroup helper",
            ScopeRoute::CgroupWalk => "cgroup parent walk",
        })
    }
}

impl Kernel {
    /// Loads and attaches every hook this kernel offers; fails when a core
    /// hook is missing.
    pub fn load(opts: &LoadOptions) -> anyhow::Result<Kernel> {
        let kernel = Kernel::load_available(opts)?;
        let missing_core: Vec<String> = kernel
            .hooks
            .iter()
            .filter(|h| h.core_missing())
            .map(|h| h.target.clone())
            .collect();
        if !missing_core.is_empty() {
            bail!("core hooks could not attach: {}", missing_core.join(", "));
        }
        Ok(kernel)
    }

    /// Loads and attaches every hook this kernel offers, core or not, and
    /// says which could not: for reporting what a kernel supports.
    pub fn load_available(opts: &LoadOptions) -> anyhow::Result<Kernel> {
        if OBJECT.is_empty() {
            bail!(
                "this binary was built with AYA_BUILD_SKIP=1 and has no kernel programs; build it with `cargo xtask build`"
            );
        }
        raise_memlock();
        let features = Features::probe()?;
        let scope_by_walk = opts.filter_cgroups && !features.ancestor_cgroup_in_tracing;
        if scope_by_walk {
            if opts.offsets.cgroups_valid == 0 {
                bail!(
                    "--cgroup needs the task's cgroup ancestry, and this kernel offers neither \
                     bpf_get_current_ancestor_cgroup_id to tracepoint programs nor the BTF members \
                     to walk it (task_struct.cgroups, css_set.dfl_cgrp, cgroup.kn, kernfs_node.id \
                     and parent); watch the whole machine instead (no --cgroup)"
                );
            }
            info!(
                "cgroup scope: walking each task's cgroup v2 parents (this kernel's tracepoint \
                 programs cannot call bpf_get_current_ancestor_cgroup_id)"
            );
        }
        let settings = Settings {
            agent_pid: std::process::id(),
            filter_cgroups: opts.filter_cgroups as u32,
            scope_by_walk: scope_by_walk as u32,
            nr_clone: libc::SYS_clone as u32,
            nr_clone3: libc::SYS_clone3 as u32,
            nr_socket: libc::SYS_socket as u32,
            sensitive_reads: 1,
            enforce: opts.enforce as u32,
            fair_interval_ns: opts.fairness.interval_ns(),
            fair_burst_ns: opts.fairness.burst_ns(),
        };
        let mut ebpf = EbpfLoader::new()
            .verifier_log_level(verifier_log_level())
            .override_global("SETTINGS", &settings, true)
            .override_global("OFFSETS", &opts.offsets, true)
            .map_max_entries("EVENTS", opts.ring_buffer_bytes)
            .load(OBJECT)
            .context("loading the kernel programs' maps")?;
        fill_sensitive_names(&mut ebpf)?;

        let cgroup_root = File::open(&opts.cgroup2_mount).with_context(|| {
            format!(
                "opening the cgroup v2 root {}",
                opts.cgroup2_mount.display()
            )
        })?;
        let hooks = super::attach::attach_tiers(&mut ebpf, opts, &cgroup_root);
        super::attach::log_hooks(&hooks);
        fill_refusable(&mut ebpf, &hooks)?;
        let scope_route = match (opts.filter_cgroups, scope_by_walk) {
            (false, _) => ScopeRoute::Unfiltered,
            (true, false) => ScopeRoute::AncestorHelper,
            (true, true) => ScopeRoute::CgroupWalk,
        };
        if let Some(profile) = &opts.syscall_profile {
            attach_syscall_profile(&mut ebpf, &opts.tracefs, profile)?;
        }
        let enforcement = if opts.enforce {
            let maps = super::enforce::EnforcementMaps::load(&mut ebpf, &opts.cgroup2_mount)
                .context("--enforce was asked for and this kernel cannot enforce")?;
            info!("enforcement armed: deny and kill rules act on the containers they select");
            Some(maps)
        } else {
            None
        };
        Ok(Kernel {
            ebpf,
            hooks,
            scope_route,
            enforcement,
        })
    }

    /// The ring buffer every record arrives on. Call once.
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| anyhow!("EVENTS map missing"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The per-CPU counters of records the kernel could not reserve. Call once.
    pub fn take_lost_counters(&mut self) -> anyhow::Result<LostCounters> {
        let map = self
            .ebpf
            .take_map("LOST")
            .ok_or_else(|| anyhow!("LOST map missing"))?;
        Ok(LostCounters(PerCpuArray::try_from(map)?))
    }

    /// The kernel's losses by cgroup, kind and reason. Call once.
    pub fn take_cgroup_losses(&mut self) -> anyhow::Result<super::CgroupLossMap> {
        let map = self
            .ebpf
            .take_map("CGROUP_LOST")
            .ok_or_else(|| anyhow!("CGROUP_LOST map missing"))?;
        Ok(super::CgroupLossMap(aya::maps::PerCpuHashMap::try_from(
            map,
        )?))
    }

    /// The roots of the watched cgroup subtrees (used when `filter_cgroups` is set). Call once.
    pub fn take_cgroup_filter(&mut self) -> anyhow::Result<CgroupFilter> {
        let map = self
            .ebpf
            .take_map("SCOPE_ROOTS")
            .ok_or_else(|| anyhow!("SCOPE_ROOTS map missing"))?;
        Ok(CgroupFilter(HashMap::try_from(map)?))
    }
}

impl Kernel {
    /// Whether the enforcing programs are loaded (`--enforce`).
    pub fn enforcing(&self) -> bool {
        self.enforcement.is_some()
    }

    /// Holds the container cgroup `cgroup_id` (directory `dir`) to `plan`
    /// (see [`super::enforce`]); an empty plan releases it.
    pub fn enforce(
        &mut self,
        cgroup_id: u64,
        dir: &std::path::Path,
        plan: &super::enforce::KernelEnforcement,
    ) -> anyhow::Result<()> {
        match &mut self.enforcement {
            Some(e) => e.apply(&mut self.ebpf, cgroup_id, dir, plan),
            None => bail!("enforcement is off (no --enforce)"),
        }
    }

    /// Whether protected writes can be refused (the LSM programs attached),
    /// or why not.
    pub fn write_refusal(&self) -> Result<(), String> {
        match &self.enforcement {
            Some(e) => e.refusal().map_err(str::to_owned),
            None => Err("enforcement is off (no --enforce)".to_owned()),
        }
    }

    /// Lifts enforcement from `cgroup_id` (gone, or no longer selected).
    pub fn release(&mut self, cgroup_id: u64) -> anyhow::Result<()> {
        match &mut self.enforcement {
            Some(e) => e.release(&mut self.ebpf, cgroup_id),
            None => Ok(()),
        }
    }

    /// The cgroups under enforcement now.
    pub fn enforced(&self) -> Vec<u64> {
        self.enforcement
            .as_ref()
            .map(|e| e.enforced().collect())
            .unwrap_or_default()
    }
}

/// Loads and attaches `syscall_profile` on `raw_syscalls/sys_exit` with the
/// profile's calls filled in first. Asked for, so a failure stops the start.
fn attach_syscall_profile(
    ebpf: &mut Ebpf,
    tracefs: &std::path::Path,
    profile: &super::profile::SyscallProfile,
) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut("SYSCALL_PROFILE")
        .ok_or_else(|| anyhow!("SYSCALL_PROFILE map missing"))?;
    let mut expected: aya::maps::Array<_, monitor_common::SyscallBitmap> =
        aya::maps::Array::try_from(map)?;
    expected.set(0, profile.expected, 0)?;
    let program: &mut aya::programs::TracePoint = ebpf
        .program_mut("syscall_profile")
        .ok_or_else(|| anyhow!("the syscall_profile program is missing"))?
        .try_into()?;
    let context = || {
        format!(
            "--syscall-profile {}: the unexpected-syscall program could not attach to \
             raw_syscalls/sys_exit under {} (set the profile to `off` to run without it)",
            profile.name,
            tracefs.display()
        )
    };
    program.load().with_context(context)?;
    program
        .attach("raw_syscalls", "sys_exit")
        .with_context(context)?;
    info!(
        "unexpected syscalls: each cgroup's first call outside profile {} ({} calls) is \
         reported; every syscall on this host pays the tracing hook while it is on",
        profile.name, profile.calls
    );
    Ok(())
}

/// The hook table as this kernel took it, for `monitor hooks`
/// ([`super::hooks::report`] with this kernel's release).
pub fn report(kernel: &Kernel) -> String {
    let release = aya::util::KernelVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    super::hooks::report(&release, kernel.scope_route, &kernel.hooks)
}

/// File names whose read-only opens are reported: credential material an
/// attacker reads (`/etc/shadow`, service-account tokens, cloud and SSH keys,
/// kubeconfigs, another process's `environ` or `mem`). The kernel compares
/// the opened file's final component, so an ordinary read costs one lookup.
pub const SENSITIVE_NAMES: &[&str] = &[
    "shadow",
    "gshadow",
    "shadow-",
    "gshadow-",
    "token",
    "credentials",
    "application_default_credentials.json",
    ".git-credentials",
    ".pgpass",
    ".netrc",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "admin.conf",
    "kubelet.conf",
    "environ",
    "mem",
];

/// The kernel's key for a name: its first bytes, NUL padded (the kernel
/// program reads the same number of bytes of the dentry's name).
fn sensitive_key(name: &str) -> [u8; SENSITIVE_NAME_LEN] {
    let mut key = [0u8; SENSITIVE_NAME_LEN];
    let n = name.len().min(SENSITIVE_NAME_LEN - 1);
    key[..n].copy_from_slice(&name.as_bytes()[..n]);
    key
}

fn fill_sensitive_names(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut("SENSITIVE_NAMES")
        .ok_or_else(|| anyhow!("SENSITIVE_NAMES map missing"))?;
    let mut names: HashMap<_, [u8; SENSITIVE_NAME_LEN], u32> = HashMap::try_from(map)?;
    for name in SENSITIVE_NAMES {
        names
            .insert(sensitive_key(name), 1, 0)
            .with_context(|| format!("adding {name} to the sensitive names"))?;
    }
    Ok(())
}

/// Tells the fentry tier's seccomp-refusal program which calls are its to
/// report: those whose concern that tier serves (the tracepoint tier's exit
/// programs report the others' refusals), minus the filtered ones.
fn fill_refusable(ebpf: &mut Ebpf, hooks: &[HookStatus]) -> anyhow::Result<()> {
    let tiers = concern_tiers(hooks);
    let served = |concern: &str| {
        tiers
            .iter()
            .any(|(c, t)| *c == concern && *t == Some(Tier::Fentry))
    };
    if !served(super::syscalls::REFUSALS) {
        return Ok(());
    }
    let map = ebpf
        .map_mut("REFUSABLE")
        .ok_or_else(|| anyhow!("REFUSABLE map missing"))?;
    let mut refusable: HashMap<_, u32, u32> = HashMap::try_from(map)?;
    for call in super::syscalls::HOOKED {
        if !call.filtered && served(call.concern) {
            refusable
                .insert(call.nr as u32, 1, 0)
                .with_context(|| format!("adding {} to the refusable calls", call.name))?;
        }
    }
    Ok(())
}

/// What the running kernel offers that decides how the programs are set up,
/// found by asking the kernel (loading tiny probe programs), not by version.
#[derive(Clone, Copy, Debug)]
struct Features {
    /// Tracepoint programs may call `bpf_get_current_ancestor_cgroup_id`
    /// (5.10 offers it to socket programs only).
    ancestor_cgroup_in_tracing: bool,
}

impl Features {
    fn probe() -> anyhow::Result<Features> {
        // Every record goes through one ring buffer (Linux 5.8): without it
        // nothing can be reported, so say why instead of failing later.
        if !aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(false) {
            let version = aya::util::KernelVersion::current()
                .map(|v| v.to_string())
                .unwrap_or_else(|_| "unknown".to_owned());
            bail!(
                "this kernel ({version}) has no BPF ring buffer, which every event goes \
                 through: the monitor needs Linux {BASELINE} or later"
            );
        }
        let ancestor_cgroup_in_tracing = aya::sys::is_helper_supported(
            aya::programs::ProgramType::TracePoint,
            aya::sys::BpfHelper::BPF_FUNC_get_current_ancestor_cgroup_id,
        )
        .unwrap_or(false);
        debug!(ancestor_cgroup_in_tracing, "kernel features probed");
        Ok(Features {
            ancestor_cgroup_in_tracing,
        })
    }
}

/// How much the verifier says when it refuses a program. Statistics level
/// keeps the reason and the counts: the instruction-level log of a large
/// program outgrows any buffer on older kernels (326,000 lines on 5.10, and
/// the load then fails with ENOSPC instead of the reason).
/// `MONITOR_VERIFIER_LOG=debug` asks for the whole log.
fn verifier_log_level() -> VerifierLogLevel {
    match std::env::var("MONITOR_VERIFIER_LOG").as_deref() {
        Ok("debug") => VerifierLogLevel::DEBUG | VerifierLogLevel::STATS,
        Ok("verbose") => VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS,
        _ => VerifierLogLevel::STATS,
    }
}

/// Keeps the verifier's log (its last lines say why) with the error.
pub(super) fn verifier_error(e: aya::programs::ProgramError) -> anyhow::Error {
    match e {
        e @ aya::programs::ProgramError::LoadError { .. } => HookError::of_load(e).into(),
        other => other.into(),
    }
}

/// Since 5.11 BPF memory is charged to the memory cgroup and RLIMIT_MEMLOCK
/// does not matter; older kernels need it raised.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

/// Records the kernel programs could not send, by kind and reason.
pub struct LostCounters(PerCpuArray<MapData, u64>);

/// The counters' shape: `[kind][reason]` (`monitor_common::loss`).
pub type LostTotals = [[u64; loss::COUNT as usize]; kind::COUNT as usize];

impl LostCounters {
    /// Totals over all CPUs.
    pub fn totals(&self) -> anyhow::Result<LostTotals> {
        let mut out = [[0u64; loss::COUNT as usize]; kind::COUNT as usize];
        for (k, reasons) in out.iter_mut().enumerate() {
            for (r, slot) in reasons.iter_mut().enumerate() {
                let index = k as u32 * loss::COUNT + r as u32;
                *slot = self.0.get(&index, 0)?.iter().sum();
            }
        }
        Ok(out)
    }
}

/// The kernel-side roots of the watched cgroup subtrees: the kernel decides
/// for each cgroup from its own ancestry whether it is inside.
pub struct CgroupFilter(HashMap<MapData, u64, u32>);

impl CgroupFilter {
    pub fn add(&mut self, cgroup_id: u64) -> anyhow::Result<()> {
        Ok(self.0.insert(cgroup_id, 1, 0)?)
    }
}
