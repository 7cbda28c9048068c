//! The hook table: which program serves which concern on which attach
//! point, whether the agent can run without it, and what became of each on
//! this kernel ([`HookStatus`], [`HookError`]).
//!
//! Which hook serves which concern is data ([`HOOKS`]), not scattered `if`s;
//! the loader (`load`) walks the table, and the start-up log, `monitor hooks`,
//! `/readyz` and the `monitor_hook_attached` metric all read the statuses.
use std::fmt;

use super::ScopeRoute;
pub use super::hook_error::HookError;

#[derive(Clone, Copy, Debug)]
pub(super) enum Attach {
    /// `group/name` under tracefs `events/`.
    Tracepoint(&'static str, &'static str),
    RawTracepoint(&'static str),
    /// A cgroup socket-address hook on the cgroup v2 root.
    CgroupRoot,
    /// A `cgroup_skb` ingress hook on the cgroup v2 root (it lets every
    /// packet through).
    CgroupSkbRoot,
    /// An `fentry` program on this kernel function (found in the kernel's BTF).
    FEntry(&'static str),
    /// An `fexit` program on this kernel function: it sees the arguments and
    /// the return value.
    FExit(&'static str),
}

/// A family of hooks. A concern may have rows in several tiers; the loader
/// serves each concern from the best tier whose every row attaches here,
/// and leaves the rows of the tiers below it in standby (`load`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Syscall and scheduler tracepoints, raw tracepoints, cgroup socket
    /// hooks: every kernel from 5.8 (the ring buffer) has them. Paths are the
    /// caller's strings, io_uring is not seen, and while any program sits on
    /// a syscall tracepoint every syscall of every task takes the slow path.
    Tracepoint,
    /// `fentry`/`fexit` on the kernel's `security_*` functions and syscall
    /// entry points: paths from kernel objects (after symlinks), io_uring
    /// covered, and no cost for syscalls nobody hooks. Needs BTF and a
    /// kernel that lets this agent load tracing programs (5.5 on x86_64;
    /// lockdown or a missing trampoline refuses them).
    Fentry,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Tracepoint => "tracepoint",
            Tier::Fentry => "fentry",
        })
    }
}

/// Which tiers the loader may use (`--hook-tier`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TierChoice {
    /// The best tier each concern can have on this kernel.
    #[default]
    Auto,
    /// The tracepoint tier only: to compare the tiers, or where tracing
    /// programs must not be loaded.
    Tracepoint,
}

impl TierChoice {
    pub const ALL: [TierChoice; 2] = [TierChoice::Auto, TierChoice::Tracepoint];

    pub fn as_str(self) -> &'static str {
        match self {
            TierChoice::Auto => "auto",
            TierChoice::Tracepoint => "tracepoint",
        }
    }

    /// Whether rows of `tier` are tried at all.
    pub(super) fn allows(self, tier: Tier) -> bool {
        self == TierChoice::Auto || tier == Tier::Tracepoint
    }
}

impl fmt::Display for TierChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TierChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TierChoice::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a hook tier: write `auto` (the best each kernel offers) or `tracepoint`"
                )
            })
    }
}

/// The oldest kernel the monitor runs on: every record goes through a BPF
/// ring buffer, which came in 5.8.
pub(super) const BASELINE: &str = "5.8";

/// One attachment of one program: a row of the hook table.
///
/// Whether a row is usable is decided by trying it on the running kernel
/// (the tracepoint exists, the verifier accepts the program, the attach
/// works), never by the version; `since` and `covered_by` only explain a
/// missing row in the log.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hook {
    pub(super) program: &'static str,
    pub(super) attach: Attach,
    pub(super) concern: &'static str,
    pub(super) tier: Tier,
    /// The agent refuses to start without it.
    pub(super) core: bool,
    /// The oldest release the monitor can use it on: the upstream release
    /// that introduced it, or 5.8 (the ring buffer) for older hooks.
    pub(super) since: &'static str,
    /// What still covers the concern on kernels without this row.
    pub(super) covered_by: Option<&'static str>,
    /// A tracepoint row that stays attached when a higher tier serves its
    /// concern: a scheduler tracepoint costs nothing on unrelated syscalls,
    /// and the higher tier's programs rely on it (`sched_process_exec`
    /// sends the exec record both tiers fill).
    pub(super) shared: bool,
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
        shared: false,
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
        shared: false,
    }
}

/// A row of the fentry tier on kernel function `function`. `core`: the
/// concern cannot be served by this tier without it. A concern takes the
/// tier only when each of its rows attaches, or is optional and names a
/// function this kernel does not have (a syscall that is not built in, whose
/// tracepoint is then missing too); an fentry row never stops the agent
/// from starting, the tracepoint tier is beneath it.
pub(super) const fn fentry(
    program: &'static str,
    function: &'static str,
    concern: &'static str,
    core: bool,
) -> Hook {
    Hook {
        program,
        attach: Attach::FEntry(function),
        concern,
        tier: Tier::Fentry,
        core,
        since: "5.5",
        covered_by: None,
        shared: false,
    }
}

/// A row of the fentry tier, as an `fexit` program (see [`fentry`]).
pub(super) const fn fexit(
    program: &'static str,
    function: &'static str,
    concern: &'static str,
    core: bool,
) -> Hook {
    Hook {
        attach: Attach::FExit(function),
        ..fentry(program, function, concern, core)
    }
}

impl Hook {
    /// The attach point, as metric labels and `/readyz` name it:
    /// `tracepoint/syscalls/sys_enter_openat`, `raw_tracepoint/sched_process_fork`,
    /// `cgroup/connect4`.
    pub(super) fn name(&self) -> String {
        match self.attach {
            Attach::Tracepoint(g, n) => format!("tracepoint/{g}/{n}"),
            Attach::RawTracepoint(n) => format!("raw_tracepoint/{n}"),
            Attach::CgroupRoot => format!("cgroup/{}", self.program),
            Attach::CgroupSkbRoot => format!("cgroup_skb/{}", self.program),
            Attach::FEntry(function) => format!("fentry/{function}"),
            Attach::FExit(function) => format!("fexit/{function}"),
        }
    }

    /// Kept attached whatever tier serves the concern (see [`Hook::shared`]).
    const fn shared(self) -> Hook {
        Hook {
            shared: true,
            ..self
        }
    }

    /// A row whose concern the tracepoint tier covers with rows of other
    /// concerns: without it attached, its concern is still served there.
    pub(super) const fn covered_by(self, covered_by: &'static str) -> Hook {
        Hook {
            covered_by: Some(covered_by),
            ..self
        }
    }

    /// Whether its absence from this kernel leaves its concern's tier whole:
    /// an optional row whose function the kernel does not have (its
    /// tracepoint twin is then missing too).
    pub(super) fn absent_here(&self, error: &HookError) -> bool {
        !self.core && matches!(error, HookError::NoFunction { .. })
    }

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
    )
    .shared(),
    tp(
        "sys_enter_execve",
        "syscalls",
        "sys_enter_execve",
        "exec",
        true,
    ),
    tp(
        "sys_enter_execveat",
        "syscalls",
        "sys_enter_execveat",
        "exec",
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

/// Every hook: the fentry tier's rows first (the loader decides each
/// concern's tier from them before it attaches any tracepoint), then the
/// fixed table, the enter/exit pair of each file syscall and the rare calls.
pub(super) fn all_hooks() -> Vec<Hook> {
    let mut hooks: Vec<Hook> = super::tier::ROWS
        .iter()
        .flat_map(|r| r.iter().copied())
        .collect();
    hooks.extend_from_slice(HOOKS);
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

/// What happened to one hook, for the start-up log, `monitor hooks`,
/// `/readyz` and the metrics.
#[derive(Clone, Debug)]
pub struct HookStatus {
    pub program: &'static str,
    /// The attach point ([`HookStatus::hook`]).
    pub(super) name: String,
    /// Where it attaches, as the log says it (the cgroup hooks with the mount).
    pub target: String,
    pub concern: &'static str,
    pub tier: Tier,
    pub core: bool,
    /// Not attached because a higher tier serves the concern: no error.
    pub standby: bool,
    /// `None` when attached or in standby, else why not.
    pub error: Option<HookError>,
    /// What serves its concern when this row does not ([`Hook::covered_by`]).
    pub covered_by: Option<&'static str>,
}

impl HookStatus {
    /// A stable name of the attach point, for metric labels and `/readyz`:
    /// `tracepoint/syscalls/sys_enter_openat`, `raw_tracepoint/sched_process_fork`,
    /// `cgroup/connect4` (the target without the mount it is on).
    pub fn hook(&self) -> &str {
        &self.name
    }

    pub fn attached(&self) -> bool {
        self.error.is_none() && !self.standby
    }

    /// The agent cannot run without it: a core hook of the tracepoint tier,
    /// the fallback every kernel has (a higher tier's row has it beneath).
    pub fn required(&self) -> bool {
        self.core && self.tier == Tier::Tracepoint
    }

    /// A required hook that neither attached nor has a higher tier
    /// standing in for it.
    pub fn core_missing(&self) -> bool {
        self.required() && self.error.is_some()
    }

    /// `attached`, `standby`, or the kind of error ([`HookError::kind`]).
    pub fn status(&self) -> &'static str {
        match &self.error {
            Some(e) => e.kind(),
            None if self.standby => "standby",
            None => "attached",
        }
    }
}

/// Each concern, in the table's order, with the tier serving it (`None`:
/// nothing attached). For the start-up log, `monitor hooks`, `/readyz` and
/// the `monitor_concern_tier` metric.
pub fn concern_tiers(hooks: &[HookStatus]) -> Vec<(&'static str, Option<Tier>)> {
    let mut out: Vec<(&'static str, Option<Tier>)> = Vec::new();
    for h in hooks {
        // An upper row covered by the tracepoint tier's rows of other
        // concerns (the seccomp refusals, by the rare syscalls' exits).
        let covered = h.tier > Tier::Tracepoint && h.covered_by.is_some() && !h.attached();
        let tier = if covered {
            Some(Tier::Tracepoint)
        } else {
            h.attached().then_some(h.tier)
        };
        match out.iter_mut().find(|(c, _)| *c == h.concern) {
            Some((_, t)) => *t = (*t).max(tier),
            None => out.push((h.concern, tier)),
        }
    }
    out
}

/// The hook table as a kernel took it, for `monitor hooks`: a line per
/// concern with the tier serving it, then a line per hook.
pub fn report(release: &str, scope_route: ScopeRoute, hooks: &[HookStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let active = hooks.iter().filter(|h| h.attached()).count();
    let mut w = |line: String| out.push_str(&(line + "\n"));
    w(format!(
        "kernel {release}: {active} of {} hooks active, cgroup scope: {scope_route}",
        hooks.len(),
    ));
    for (concern, tier) in concern_tiers(hooks) {
        let rows: Vec<&HookStatus> = hooks.iter().filter(|h| h.concern == concern).collect();
        let used = rows.iter().filter(|h| h.attached()).count();
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
    for h in hooks {
        let role = if h.core { "core" } else { "optional" };
        let state = match h.status() {
            "attached" => "active  ",
            "standby" => "standby ",
            _ => "inactive",
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aya::programs::ProgramError;

    use super::*;

    fn status(
        target: &str,
        concern: &'static str,
        core: bool,
        error: Option<HookError>,
    ) -> HookStatus {
        HookStatus {
            program: "p",
            name: target
                .split_once(" on ")
                .map_or(target, |(n, _)| n)
                .to_owned(),
            target: target.to_owned(),
            concern,
            tier: Tier::Tracepoint,
            core,
            standby: false,
            error,
            covered_by: None,
        }
    }

    #[test]
    fn errors_read_as_before_they_were_typed() {
        let missing = |since, covered_by| HookError::NoTracepoint { since, covered_by };
        assert_eq!(
            missing("5.6", Some("openat")).to_string(),
            "this kernel has no such tracepoint (it came in 5.6; openat covers the concern)"
        );
        assert_eq!(
            missing(BASELINE, Some("openat")).to_string(),
            "this kernel has no such tracepoint (openat covers the concern)"
        );
        assert_eq!(
            missing(BASELINE, None).to_string(),
            "this kernel has no such tracepoint"
        );
        assert_eq!(
            HookError::NotInObject { program: "x" }.to_string(),
            "program x is not in the object"
        );
        let log: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let refused = HookError::verifier("Permission denied (os error 13)", &log);
        assert_eq!(
            refused.to_string(),
            "the verifier refused the program (Permission denied (os error 13)): \
             line 9 | line 10 | line 11 | line 12 | line 13 | line 14 | line 15 | line 16 | \
             line 17 | line 18 | line 19 | line 20"
        );
        assert_eq!(refused.kind(), "verifier");
        assert_eq!(
            HookError::verifier("Operation not permitted (os error 1)", "").to_string(),
            "the kernel refused to load the program (Operation not permitted (os error 1))"
        );
        let short = HookError::verifier("E2BIG", "only line");
        assert_eq!(
            short.to_string(),
            "the verifier refused the program (E2BIG): only line"
        );
    }

    #[test]
    fn attach_errors_carry_their_causes() {
        let e = HookError::Attach(Arc::new(ProgramError::SyscallError(
            aya::sys::SyscallError {
                call: "bpf_link_create",
                io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            },
        )));
        assert_eq!(e.kind(), "attach");
        let text = e.to_string();
        assert!(text.starts_with("`bpf_link_create` failed"), "{text}");
        assert!(
            text.ends_with("Operation not permitted (os error 1)"),
            "{text}"
        );
        let load = HookError::of_load(ProgramError::NotLoaded);
        assert_eq!(load.kind(), "load");
    }

    #[test]
    fn status_names_the_hook_without_the_mount() {
        let cgroup = status("cgroup/connect4 on /sys/fs/cgroup", "egress", true, None);
        assert_eq!(cgroup.hook(), "cgroup/connect4");
        assert_eq!(cgroup.status(), "attached");
        let tp = status(
            "tracepoint/syscalls/sys_enter_openat2",
            "file writes",
            false,
            Some(HookError::NoTracepoint {
                since: "5.6",
                covered_by: Some("openat"),
            }),
        );
        assert_eq!(tp.hook(), "tracepoint/syscalls/sys_enter_openat2");
        assert_eq!(tp.status(), "no_tracepoint");
        assert!(!tp.attached());
    }

    #[test]
    fn report_lists_concerns_then_hooks() {
        let hooks = [
            status("tracepoint/sched/sched_process_exec", "exec", true, None),
            status(
                "tracepoint/syscalls/sys_enter_openat2",
                "file writes",
                false,
                Some(HookError::NoTracepoint {
                    since: "5.6",
                    covered_by: Some("openat"),
                }),
            ),
        ];
        let text = report("6.1.0", ScopeRoute::Unfiltered, &hooks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "kernel 6.1.0: 1 of 2 hooks active, cgroup scope: unfiltered"
        );
        assert_eq!(lines[1], "concern exec: tier tracepoint (1 of 1 hooks)");
        assert_eq!(lines[2], "concern file writes: none (1 hooks, none active)");
        assert!(
            lines[3].starts_with("active    core     tracepoint exec"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].ends_with(
                "sys_enter_openat2: this kernel has no such tracepoint (it came in 5.6; openat covers the concern)"
            ),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn a_concern_is_served_by_the_best_attached_tier_and_standby_is_not_missing() {
        let mut fentry = status("fentry/security_file_open", "file writes", true, None);
        fentry.tier = Tier::Fentry;
        let mut standby = status(
            "tracepoint/syscalls/sys_enter_openat",
            "file writes",
            true,
            None,
        );
        standby.standby = true;
        let exec = status("tracepoint/sched/sched_process_exec", "exec", true, None);
        let hooks = [fentry.clone(), exec.clone(), standby.clone()];
        assert_eq!(
            concern_tiers(&hooks),
            [
                ("file writes", Some(Tier::Fentry)),
                ("exec", Some(Tier::Tracepoint))
            ]
        );
        assert_eq!(standby.status(), "standby");
        assert!(!standby.attached() && !standby.core_missing());
        // A failed fentry row is never what stops the agent: tracepoints are beneath it.
        fentry.error = Some(HookError::NoBtf("missing".to_owned()));
        assert!(fentry.core && !fentry.required() && !fentry.core_missing());
        let lines = report("6.12.0", ScopeRoute::Unfiltered, &[fentry, standby]);
        assert!(
            lines.contains("concern file writes: none (2 hooks, none active)"),
            "{lines}"
        );
        assert!(
            lines.contains("standby   core     tracepoint file writes"),
            "{lines}"
        );
    }

    #[test]
    fn every_hook_names_a_distinct_attach_point() {
        let mut seen = std::collections::HashSet::new();
        for h in all_hooks() {
            let name = h.name();
            assert!(seen.insert(name.clone()), "{name} twice");
        }
        assert!(seen.contains("raw_tracepoint/sched_process_fork"));
        assert!(seen.contains("cgroup/connect4"));
    }
}
