//! Loads the kernel programs, probes which hooks this kernel offers, attaches
//! them, and says in the log which are active and why any is not.
//!
//! Which hook serves which concern, and whether the agent can run without it,
//! is data ([`HOOKS`]), not scattered `if`s.
use std::{collections::HashSet, fs::File};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, RawTracePoint, TracePoint,
    },
};
use monitor_common::{KernelOffsets, SENSITIVE_NAME_LEN, Settings, kind, loss};
use tracing::{debug, info, warn};

/// The compiled kernel programs, built by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

#[derive(Clone, Copy, Debug)]
enum Attach {
    /// `group/name` under tracefs `events/`.
    Tracepoint(&'static str, &'static str),
    RawTracepoint(&'static str),
    /// A cgroup socket-address hook on the cgroup v2 root.
    CgroupRoot,
    /// A `cgroup_skb` ingress hook on the cgroup v2 root (it lets every
    /// packet through).
    CgroupSkbRoot,
}

/// A family of hooks. A concern may have rows in several tiers; the loader
/// attaches every row this kernel offers and the concern is served by its
/// best active tier (the LSM/fentry tier will rank above tracepoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Syscall and scheduler tracepoints, raw tracepoints, cgroup socket
    /// hooks: every kernel from 5.8 (the ring buffer) has them.
    Tracepoint,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tier::Tracepoint => "tracepoint",
        })
    }
}

/// The oldest kernel the monitor runs on: every record goes through a BPF
/// ring buffer, which came in 5.8.
const BASELINE: &str = "5.8";

/// One attachment of one program: a row of the hook table.
///
/// Whether a row is usable is decided by trying it on the running kernel
/// (the tracepoint exists, the verifier accepts the program, the attach
/// works), never by the version; `since` and `covered_by` only explain a
/// missing row in the log.
#[derive(Clone, Copy, Debug)]
struct Hook {
    program: &'static str,
    attach: Attach,
    concern: &'static str,
    tier: Tier,
    /// The agent refuses to start without it.
    core: bool,
    /// The oldest release the monitor can use it on: the upstream release
    /// that introduced it, or 5.8 (the ring buffer) for older hooks.
    since: &'static str,
    /// What still covers the concern on kernels without this row.
    covered_by: Option<&'static str>,
}

const fn tp(
    program: &'static str,
    group: &'static str,
    name: &'static str,
    concern: &'static str,
    core: bool,
) -> Hook {
    Hook {
        program,
        attach: Attach::Tracepoint(group, name),
        concern,
        tier: Tier::Tracepoint,
        core,
        since: BASELINE,
        covered_by: None,
    }
}

const fn cgroup_hook(program: &'static str, concern: &'static str, core: bool) -> Hook {
    Hook {
        program,
        attach: Attach::CgroupRoot,
        concern,
        tier: Tier::Tracepoint,
        core,
        since: BASELINE,
        covered_by: None,
    }
}

impl Hook {
    const fn since(self, since: &'static str, covered_by: &'static str) -> Hook {
        Hook {
            since,
            covered_by: Some(covered_by),
            ..self
        }
    }
}

/// File syscalls: each has its own enter program and shares the exit
/// program. The legacy calls (`open`, `rename`, ...) do not exist on every
/// architecture, and the newest ones not on every kernel: the `*at` calls
/// cover both.
/// enter program, exit tracepoint, core, and for a row some kernels lack:
/// the oldest kernel with it and what covers it elsewhere.
type FileSyscall = (
    &'static str,
    &'static str,
    bool,
    Option<(&'static str, &'static str)>,
);

const FILE_SYSCALLS: [FileSyscall; 18] = [
    ("sys_enter_openat", "sys_exit_openat", true, None),
    (
        "sys_enter_openat2",
        "sys_exit_openat2",
        false,
        Some(("5.6", "openat")),
    ),
    (
        "sys_enter_open",
        "sys_exit_open",
        false,
        Some((BASELINE, "openat")),
    ),
    (
        "sys_enter_creat",
        "sys_exit_creat",
        false,
        Some((BASELINE, "openat")),
    ),
    (
        "sys_enter_renameat2",
        "sys_exit_renameat2",
        false,
        Some((BASELINE, "renameat")),
    ),
    (
        "sys_enter_renameat",
        "sys_exit_renameat",
        false,
        Some((BASELINE, "renameat2")),
    ),
    (
        "sys_enter_rename",
        "sys_exit_rename",
        false,
        Some((BASELINE, "renameat2")),
    ),
    ("sys_enter_unlinkat", "sys_exit_unlinkat", false, None),
    (
        "sys_enter_unlink",
        "sys_exit_unlink",
        false,
        Some((BASELINE, "unlinkat")),
    ),
    ("sys_enter_fchmodat", "sys_exit_fchmodat", false, None),
    (
        "sys_enter_fchmodat2",
        "sys_exit_fchmodat2",
        false,
        Some(("6.6", "fchmodat")),
    ),
    (
        "sys_enter_chmod",
        "sys_exit_chmod",
        false,
        Some((BASELINE, "fchmodat")),
    ),
    ("sys_enter_truncate", "sys_exit_truncate", false, None),
    ("sys_enter_linkat", "sys_exit_linkat", false, None),
    (
        "sys_enter_link",
        "sys_exit_link",
        false,
        Some((BASELINE, "linkat")),
    ),
    ("sys_enter_symlinkat", "sys_exit_symlinkat", false, None),
    (
        "sys_enter_symlink",
        "sys_exit_symlink",
        false,
        Some((BASELINE, "symlinkat")),
    ),
    // Only unix sockets named *.sock leave the kernel (container runtimes).
    ("sys_enter_connect", "sys_exit_connect", false, None),
];

const HOOKS: &[Hook] = &[
    tp(
        "sched_process_exec",
        "sched",
        "sched_process_exec",
        "exec",
        true,
    ),
    tp(
        "sys_enter_execve",
        "syscalls",
        "sys_enter_execve",
        "exec argv",
        true,
    ),
    tp(
        "sys_enter_execveat",
        "syscalls",
        "sys_enter_execveat",
        "exec argv",
        false,
    ),
    Hook {
        attach: Attach::RawTracepoint("sched_process_fork"),
        ..tp("sched_process_fork", "", "", "process tree", false)
    },
    tp(
        "sched_process_exit",
        "sched",
        "sched_process_exit",
        "process tree",
        false,
    ),
    tp(
        "cgroup_mkdir",
        "cgroup",
        "cgroup_mkdir",
        "containers",
        false,
    ),
    tp(
        "cgroup_rmdir",
        "cgroup",
        "cgroup_rmdir",
        "containers",
        false,
    ),
    cgroup_hook("connect4", "egress", true),
    cgroup_hook("connect6", "egress", true),
    cgroup_hook("sendmsg4", "egress (udp)", false),
    cgroup_hook("sendmsg6", "egress (udp)", false),
    cgroup_hook("bind4", "listening", false),
    cgroup_hook("bind6", "listening", false),
    Hook {
        attach: Attach::CgroupSkbRoot,
        ..cgroup_hook("dns_ingress", "dns answers", false)
    },
];

/// Every hook: the fixed table plus the enter/exit pair of each file syscall.
fn all_hooks() -> Vec<Hook> {
    let mut hooks = HOOKS.to_vec();
    for (enter, exit, core, newer) in FILE_SYSCALLS {
        // The opens' exits also report reads of sensitive files.
        let exit_program = match exit {
            "sys_exit_openat" | "sys_exit_openat2" | "sys_exit_open" => "sys_exit_open",
            _ => "sys_exit_file",
        };
        let mut pair = [
            tp(enter, "syscalls", enter, "file writes", core),
            tp(exit_program, "syscalls", exit, "file writes", core),
        ];
        if let Some((since, covered_by)) = newer {
            pair = pair.map(|h| h.since(since, covered_by));
        }
        hooks.extend(pair);
    }
    // Some kernels lack a call (no modules, no fsmount before 5.2): each is
    // optional, and the rest still report.
    for call in super::syscalls::HOOKED {
        hooks.push(tp(
            "sys_enter_rare",
            "syscalls",
            call.enter,
            call.concern,
            false,
        ));
        hooks.push(tp(
            "sys_exit_rare",
            "syscalls",
            call.exit,
            call.concern,
            false,
        ));
    }
    hooks
}

/// What happened to one hook, for the start-up log and `/readyz`.
#[derive(Clone, Debug)]
pub struct HookStatus {
    pub program: &'static str,
    pub target: String,
    pub concern: &'static str,
    pub tier: Tier,
    pub core: bool,
    /// `None` when attached, else why not.
    pub error: Option<String>,
}

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
            .filter(|h| h.core && h.error.is_some())
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
            cgroup2_root: 0,
            scope_by_walk: scope_by_walk as u32,
            nr_clone: libc::SYS_clone as u32,
            nr_clone3: libc::SYS_clone3 as u32,
            nr_socket: libc::SYS_socket as u32,
            sensitive_reads: 1,
            enforce: opts.enforce as u32,
            _pad: 0,
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
        let mut loaded: HashSet<&'static str> = HashSet::new();
        let mut failed_load: std::collections::HashMap<&'static str, String> = Default::default();
        let mut hooks = Vec::new();
        for hook in all_hooks() {
            let target = match hook.attach {
                Attach::Tracepoint(g, n) => format!("tracepoint/{g}/{n}"),
                Attach::RawTracepoint(n) => format!("raw_tracepoint/{n}"),
                Attach::CgroupRoot | Attach::CgroupSkbRoot => format!(
                    "cgroup/{} on {}",
                    hook.program,
                    opts.cgroup2_mount.display()
                ),
            };
            let error = if let Attach::Tracepoint(g, n) = hook.attach
                && !super::tracefs::tracepoint_exists(&opts.tracefs, g, n)
            {
                Some(match (hook.covered_by, hook.since) {
                    (Some(other), BASELINE) => {
                        format!("this kernel has no such tracepoint ({other} covers the concern)")
                    }
                    (Some(other), since) => format!(
                        "this kernel has no such tracepoint (it came in {since}; {other} covers the concern)"
                    ),
                    (None, _) => "this kernel has no such tracepoint".to_owned(),
                })
            } else if let Some(e) = failed_load.get(hook.program) {
                Some(e.clone())
            } else {
                match attach(&mut ebpf, hook, &mut loaded, &cgroup_root) {
                    Ok(()) => None,
                    Err(e) => {
                        let msg = format!("{e:#}");
                        if !loaded.contains(hook.program) {
                            failed_load.insert(hook.program, msg.clone());
                        }
                        Some(msg)
                    }
                }
            };
            hooks.push(HookStatus {
                program: hook.program,
                target,
                concern: hook.concern,
                tier: hook.tier,
                core: hook.core,
                error,
            });
        }
        for h in &hooks {
            match &h.error {
                None => debug!(program = h.program, target = %h.target, "hook attached"),
                Some(e) if h.core => {
                    warn!(program = h.program, target = %h.target, concern = h.concern, "core hook unavailable: {e}")
                }
                Some(e) => {
                    info!(program = h.program, target = %h.target, concern = h.concern, "optional hook unavailable: {e}")
                }
            }
        }
        let active = hooks.iter().filter(|h| h.error.is_none()).count();
        let mut tiers: Vec<(&str, Tier)> = Vec::new();
        for h in hooks.iter().filter(|h| h.error.is_none()) {
            match tiers.iter_mut().find(|(c, _)| *c == h.concern) {
                Some((_, tier)) => *tier = (*tier).max(h.tier),
                None => tiers.push((h.concern, h.tier)),
            }
        }
        let tiers: Vec<String> = tiers.iter().map(|(c, t)| format!("{c}={t}")).collect();
        info!(active, total = hooks.len(), tiers = %tiers.join(", "), "kernel hooks attached");
        let scope_route = match (opts.filter_cgroups, scope_by_walk) {
            (false, _) => ScopeRoute::Unfiltered,
            (true, false) => ScopeRoute::AncestorHelper,
            (true, true) => ScopeRoute::CgroupWalk,
        };
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

fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    loaded: &mut HashSet<&'static str>,
    cgroup_root: &File,
) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut(hook.program)
        .ok_or_else(|| anyhow!("program {} is not in the object", hook.program))?;
    let first = loaded.insert(hook.program);
    match hook.attach {
        Attach::Tracepoint(group, name) => {
            let p: &mut TracePoint = program.try_into()?;
            if first {
                p.load().map_err(verifier_error)?;
            }
            p.attach(group, name)?;
        }
        Attach::RawTracepoint(name) => {
            let p: &mut RawTracePoint = program.try_into()?;
            if first {
                p.load().map_err(verifier_error)?;
            }
            p.attach(name)?;
        }
        Attach::CgroupRoot => {
            let p: &mut CgroupSockAddr = program.try_into()?;
            if first {
                p.load().map_err(verifier_error)?;
            }
            p.attach(cgroup_root, root_attach_mode())?;
        }
        Attach::CgroupSkbRoot => {
            let p: &mut CgroupSkb = program.try_into()?;
            if first {
                p.load().map_err(verifier_error)?;
            }
            p.attach(
                cgroup_root,
                CgroupSkbAttachType::Ingress,
                root_attach_mode(),
            )?;
        }
    }
    Ok(())
}

/// Never displace another tool's programs on the root. From 5.7 aya
/// attaches with a bpf_link, which always coexists with others and takes no
/// flags; before that, prog_attach needs ALLOW_MULTI.
fn root_attach_mode() -> CgroupAttachMode {
    let links = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0));
    if links {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    }
}

/// The hook table as this kernel took it, for `monitor hooks`: a line per
/// concern with the tier serving it, then a line per hook.
pub fn report(kernel: &Kernel) -> String {
    use std::fmt::Write as _;
    let release = aya::util::KernelVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut out = String::new();
    let active = kernel.hooks.iter().filter(|h| h.error.is_none()).count();
    let mut w = |line: String| out.push_str(&(line + "\n"));
    w(format!(
        "kernel {release}: {active} of {} hooks active, cgroup scope: {}",
        kernel.hooks.len(),
        kernel.scope_route
    ));
    let mut concerns: Vec<&str> = kernel.hooks.iter().map(|h| h.concern).collect();
    concerns.dedup();
    for concern in concerns {
        let rows: Vec<&HookStatus> = kernel
            .hooks
            .iter()
            .filter(|h| h.concern == concern)
            .collect();
        let tier = rows
            .iter()
            .filter(|h| h.error.is_none())
            .map(|h| h.tier)
            .max();
        let used = rows.iter().filter(|h| h.error.is_none()).count();
        w(match tier {
            Some(tier) => format!(
                "concern {concern}: tier {tier} ({used} of {} hooks)",
                rows.len()
            ),
            None => format!(
                "concern {concern}: none ({} hooks, none active)",
                rows.len()
            ),
        });
    }
    for h in &kernel.hooks {
        let role = if h.core { "core" } else { "optional" };
        let state = match &h.error {
            None => "active  ".to_owned(),
            Some(_) => "inactive".to_owned(),
        };
        let mut line = format!(
            "{state}  {role:8} {:10} {:14} {}",
            h.tier, h.concern, h.target
        );
        if let Some(e) = &h.error {
            let _ = write!(line, ": {e}");
        }
        w(line);
    }
    out
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
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    {
        let log = verifier_log.to_string();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return anyhow!(
            "the verifier refused the program ({io_error}): {}",
            tail.join(" | ")
        );
    }
    e.into()
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
