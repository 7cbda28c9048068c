//! Enforcement in the run loop (`--enforce`): the kernel's deny and kill
//! tables kept in step with the containers and the rules in force, and an
//! alert for every action the kernel took that no rule reports. Apart from
//! the loop because it is the one stage that writes to the kernel.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use tracing::{info, warn};

use crate::{
    alert::{Alert, Severity},
    bpf::{enforce::KernelEnforcement, source::EventSource},
    context::{EnrichedEvent, Enricher},
    event::Event,
    policy,
    sink::Sinks,
};

/// Keeps the kernel's enforcement in step with the containers the registry
/// knows and the rules in force (`--enforce`): each container inside the
/// scope gets what its enforcing rules compile to, and a container gone or
/// no longer selected is released. The kernel's state dies with the agent.
#[derive(Default)]
pub(super) struct Enforcer {
    /// Containers whose rules could not be compiled for the kernel, with why
    /// (reported once per reason).
    refused: HashMap<u64, String>,
    /// Each protecting container's paths as last resolved inside it, and when.
    resolved: HashMap<u64, Resolved>,
    /// Containers told that their protected writes cannot be refused here.
    unrefused: HashSet<u64>,
}

/// A container's protected paths resolved to identities.
struct Resolved {
    paths: Vec<policy::ProtectPath>,
    at: Instant,
    /// Empty until a process of the container showed its root.
    identities: Vec<(u32, u64, u32)>,
    /// Found inside the container (a process's root was read).
    rooted: bool,
}

/// How long resolved protected paths are trusted: a directory created or
/// replaced since (a new `/root/.ssh`) is protected from the next resolve.
const RESOLVE_EVERY: Duration = Duration::from_secs(10);

impl Enforcer {
    pub(super) fn reconcile(
        &mut self,
        source: &mut EventSource<Event>,
        enricher: &Enricher,
        rules: &policy::RuleSet,
        sinks: &Sinks,
        host: &str,
    ) {
        if !source.started.kernel.enforcing() {
            return;
        }
        let mount = source.cgroup2_mount().to_path_buf();
        let proc_root = enricher.config().proc_root.clone();
        let registry = enricher.registry();
        let mut wanted: Vec<(u64, PathBuf, KernelEnforcement, Vec<String>)> = Vec::new();
        for (id, entry) in registry.containers() {
            if !source.covers(&entry.path) {
                continue;
            }
            let (Some(info), _) = registry.container_info(id) else {
                continue;
            };
            let metadata = entry.metadata.as_deref();
            let plan = match rules.enforcement(&policy::Workload::container(&info, metadata)) {
                Ok(p) => p,
                Err(why) => {
                    if self.refused.get(&id) != Some(&why) {
                        let summary = format!(
                            "container {} is not enforced: {why}; its deny rules only alert",
                            entry.path
                        );
                        unavailable(sinks, host, summary);
                        self.refused.insert(id, why);
                    }
                    continue;
                }
            };
            self.refused.remove(&id);
            if plan.is_empty() {
                continue;
            }
            let dir = mount.join(entry.path.trim_start_matches('/'));
            let mut kernel_plan = kernel_plan(&plan);
            if !plan.protect.is_empty() {
                match source.started.kernel.write_refusal() {
                    Ok(()) => {
                        kernel_plan.protect = self.identities(id, &dir, &plan.protect, &proc_root)
                    }
                    Err(why) => {
                        if self.unrefused.insert(id) {
                            let summary = format!(
                                "container {}: protected writes cannot be refused here ({why}); \
                                 its file rules with action: deny only alert",
                                entry.path
                            );
                            unavailable(sinks, host, summary);
                        }
                    }
                }
            }
            if kernel_plan.is_empty() {
                continue;
            }
            wanted.push((id, dir, kernel_plan, plan.rules));
        }
        self.resolved
            .retain(|id, _| wanted.iter().any(|(w, ..)| w == id));
        self.unrefused
            .retain(|id| registry.containers().any(|(c, _)| c == *id));
        let kernel = &mut source.started.kernel;
        for id in kernel.enforced() {
            if !wanted.iter().any(|(w, ..)| *w == id)
                && let Err(e) = kernel.release(id)
            {
                warn!("releasing enforcement of cgroup {id}: {e:#}");
            }
        }
        for (id, dir, plan, rules) in wanted {
            let was = kernel.enforced().contains(&id);
            match kernel.enforce(id, &dir, &plan) {
                Ok(()) if !was => {
                    info!(cgroup = %dir.display(), rules = %rules.join(", "), "enforcing")
                }
                Ok(()) => {}
                Err(e) => {
                    let why = format!("{e:#}");
                    if self.refused.get(&id) != Some(&why) {
                        let summary = format!(
                            "container cgroup {} is not enforced: {why}; its deny rules only alert",
                            dir.display()
                        );
                        unavailable(sinks, host, summary);
                        self.refused.insert(id, why);
                    }
                }
            }
        }
    }
}

impl Enforcer {
    /// The identities of `paths` inside the container of cgroup `dir`,
    /// resolved again when they changed, when none of its processes was
    /// there to resolve them in, or after [`RESOLVE_EVERY`].
    fn identities(
        &mut self,
        id: u64,
        dir: &Path,
        paths: &[policy::ProtectPath],
        proc_root: &Path,
    ) -> Vec<(u32, u64, u32)> {
        if let Some(r) = self.resolved.get(&id)
            && r.paths == paths
            && r.rooted
            && r.at.elapsed() < RESOLVE_EVERY
        {
            return r.identities.clone();
        }
        let (identities, rooted) = match resolve_protected(dir, paths, proc_root) {
            Some(found) => (found, true),
            None => (Vec::new(), false),
        };
        self.resolved.insert(
            id,
            Resolved {
                paths: paths.to_vec(),
                at: Instant::now(),
                identities: identities.clone(),
                rooted,
            },
        );
        identities
    }
}

/// Each of `paths` that exists, as the kernel identifies it (device, inode)
/// with its `PROTECTED` bits, looked up inside the root of a process of the
/// cgroup `dir` (symlinks resolved as the container would, never escaping
/// its root). `None` when the cgroup has no process to look through yet.
fn resolve_protected(
    dir: &Path,
    paths: &[policy::ProtectPath],
    proc_root: &Path,
) -> Option<Vec<(u32, u64, u32)>> {
    use std::os::fd::AsRawFd as _;

    use monitor_common::enforce::{ALLOW_EXACT, ALLOW_TREE, DENY_EXACT, DENY_TREE};
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let pid = procs
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .to_owned();
    let root = std::fs::File::open(proc_root.join(&pid).join("root")).ok()?;
    let mut out: Vec<(u32, u64, u32)> = Vec::new();
    for p in paths {
        let Ok(c) = std::ffi::CString::new(p.path.trim_start_matches('/')) else {
            continue;
        };
        // SAFETY: open_how is plain integers; all zero is its empty value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        let name = if p.path == "/" { c"." } else { c.as_c_str() };
        // SAFETY: a valid descriptor, a NUL-terminated name and an open_how
        // of the size given; the descriptor returned is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            // Not there (yet): protected from the resolve that finds it.
            continue;
        }
        // SAFETY: openat2 returned this descriptor, owned by no one else.
        let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let Ok(meta) = file.metadata() else {
            continue;
        };
        use std::os::unix::fs::MetadataExt as _;
        let dev = meta.dev();
        // The kernel's dev_t: major in the upper 12 bits, minor in the lower 20.
        let kdev = (libc::major(dev) << 20) | (libc::minor(dev) & 0xf_ffff);
        let bit = match (p.allow, p.tree) {
            (false, false) => DENY_EXACT,
            (false, true) => DENY_TREE,
            (true, false) => ALLOW_EXACT,
            (true, true) => ALLOW_TREE,
        };
        match out
            .iter_mut()
            .find(|(d, i, _)| *d == kdev && *i == meta.ino())
        {
            Some(e) => e.2 |= bit,
            None => out.push((kdev, meta.ino(), bit)),
        }
    }
    out.sort_unstable();
    Some(out)
}

/// Says, in the log and as an agent alert, that a container's rules are
/// not (all) enforced, and why.
fn unavailable(sinks: &Sinks, host: &str, summary: String) {
    warn!("{summary}");
    sinks.dispatch(&Alert::agent(
        host,
        "enforcement-unavailable",
        Severity::High,
        summary,
    ));
}

/// The kernel's form of a workload's enforcement.
fn kernel_plan(plan: &policy::Enforcement) -> KernelEnforcement {
    use monitor_common::enforce::{NAME_BASIS, PATH_BASIS, SEGMENTS, fnv1a};
    let egress = plan.egress.as_ref().map(|prefixes| {
        prefixes
            .iter()
            .map(|p| {
                let mut v = monitor_common::EgressVerdict {
                    count: p.segments.len().min(SEGMENTS) as u32,
                    ..Default::default()
                };
                for (slot, s) in v.segments.iter_mut().zip(&p.segments) {
                    *slot = *s;
                }
                (p.net, v)
            })
            .collect()
    });
    let kill = plan
        .kill_paths
        .iter()
        .map(|p| fnv1a(PATH_BASIS, p.as_bytes()))
        .chain(
            plan.kill_names
                .iter()
                .map(|n| fnv1a(NAME_BASIS, n.as_bytes())),
        )
        .collect();
    KernelEnforcement {
        egress,
        kill,
        protect: Vec::new(),
    }
}

/// The alert for an action the kernel took that no rule of the running set
/// reports (its table came from an earlier rule set, or the rule fired and
/// was excepted in userspace): every action taken is an alert.
pub(super) fn unmatched_action(
    enriched: &EnrichedEvent,
    at: SystemTime,
    host: &str,
) -> Option<Alert> {
    use crate::event::EventBody;
    let taken = enriched.event.action_taken()?;
    let (kind, what) = match &enriched.event.body {
        EventBody::Network(n) => (
            crate::alert::AlertKind::Network,
            format!("{:?} to {}:{}", n.op, n.daddr, n.dport).to_lowercase(),
        ),
        EventBody::Exec(x) => (
            crate::alert::AlertKind::Process,
            format!("exec of {}", x.filename),
        ),
        EventBody::File(f) => (
            crate::alert::AlertKind::File,
            format!("{} of {}", f.op.name(), f.path),
        ),
        _ => return None,
    };
    let mut alert = Alert::at(
        at,
        host,
        "enforcement",
        crate::alert::AGENT_POLICY,
        Severity::High,
        kind,
        format!(
            "the kernel {} {what} (pid {}), and no rule of the running set reports it",
            taken.as_str().replace('_', " "),
            enriched.event.header.pid
        ),
    );
    alert.container = enriched.container.clone();
    alert.metadata_status = Some(enriched.metadata_status);
    alert.process = Some(enriched.process.clone());
    match &enriched.event.body {
        EventBody::Network(n) => alert.network = Some(n.clone()),
        EventBody::File(f) => alert.file = Some(f.clone()),
        _ => {}
    }
    alert.action_taken = Some(taken);
    Some(alert)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use monitor_common::enforce::{ALLOW_EXACT, DENY_EXACT, DENY_TREE};

    use super::*;

    fn kernel_dev(dev: u64) -> u32 {
        (libc::major(dev) << 20) | libc::minor(dev)
    }

    /// Resolved in the root of the cgroup's first process (this test's own,
    /// whose root is `/`), symlinks followed, missing paths left out.
    #[test]
    fn protected_paths_resolve_to_the_identities_the_kernel_sees() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        fs_setup(&base);
        let cg = base.join("cg");
        std::fs::create_dir(&cg).unwrap();
        std::fs::write(cg.join("cgroup.procs"), format!("{}\n", std::process::id())).unwrap();
        let p = |path: &Path, tree, allow| policy::ProtectPath {
            path: path.display().to_string(),
            tree,
            allow,
        };
        let paths = [
            p(&base.join("etc"), true, false),
            p(&base.join("etc/passwd"), false, false),
            p(&base.join("etc/motd"), false, true),
            // Through a symlink: the file it names.
            p(&base.join("link"), false, true),
            p(&base.join("missing"), true, false),
        ];
        let got = resolve_protected(&cg, &paths, Path::new("/proc")).unwrap();
        let id = |path: &str| {
            let m = std::fs::metadata(base.join(path)).unwrap();
            (kernel_dev(m.dev()), m.ino())
        };
        let mut want = vec![
            (id("etc").0, id("etc").1, DENY_TREE),
            (id("etc/passwd").0, id("etc/passwd").1, DENY_EXACT),
            (id("etc/motd").0, id("etc/motd").1, ALLOW_EXACT),
        ];
        // `link` names `etc/passwd`: one identity, both bits.
        want[1].2 |= ALLOW_EXACT;
        want.sort_unstable();
        assert_eq!(got, want);
        // A cgroup with no process has no root to resolve in yet.
        std::fs::write(cg.join("cgroup.procs"), "").unwrap();
        assert_eq!(resolve_protected(&cg, &paths, Path::new("/proc")), None);
    }

    fn fs_setup(base: &Path) {
        std::fs::create_dir(base.join("etc")).unwrap();
        std::fs::write(base.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(base.join("etc/motd"), "hi\n").unwrap();
        std::os::unix::fs::symlink(base.join("etc/passwd"), base.join("link")).unwrap();
    }
}
