//! Attaches the hook table's rows, tier by tier, and says in the log what
//! became of each ([`attach_tiers`], [`log_hooks`]).
use std::{collections::HashSet, fs::File, sync::Arc};

use aya::{
    Btf, Ebpf, Endianness,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, FEntry, FExit,
        RawTracePoint, TracePoint,
    },
};
use tracing::{debug, info, warn};

use super::{
    LoadOptions,
    hooks::{Attach, Hook, HookError, HookStatus, Tier, all_hooks, concern_tiers},
};

/// Attaches the table tier by tier: first every row of the fentry tier
/// (unless `--hook-tier tracepoint`), which decides the concerns it serves
/// whole; then the tracepoint rows, those of a concern served from above
/// left in standby (but the shared ones: see `Hook::shared`).
pub(super) fn attach_tiers(
    ebpf: &mut Ebpf,
    opts: &LoadOptions,
    cgroup_root: &File,
) -> Vec<HookStatus> {
    let table = all_hooks();
    let mut loaded: HashSet<&'static str> = HashSet::new();
    let mut failed_load: std::collections::HashMap<&'static str, HookError> = Default::default();
    let mut statuses: Vec<HookStatus> = Vec::with_capacity(table.len());
    let upper: Vec<&Hook> = table
        .iter()
        .filter(|h| h.tier > Tier::Tracepoint && opts.tier.allows(h.tier))
        .collect();
    // Loaded once, only when some row needs it: parsing vmlinux BTF costs
    // tens of milliseconds and megabytes.
    let btf: Option<Result<Btf, String>> = (!upper.is_empty()).then(|| {
        match &opts.btf {
            Some(path) => Btf::parse_file(path, Endianness::default()),
            None => Btf::from_sys_fs(),
        }
        .map_err(|e| e.to_string())
    });
    let status = |hook: &Hook, opts: &LoadOptions, standby, error| HookStatus {
        program: hook.program,
        name: hook.name(),
        target: match hook.attach {
            Attach::CgroupRoot | Attach::CgroupSkbRoot => {
                format!("{} on {}", hook.name(), opts.cgroup2_mount.display())
            }
            _ => hook.name(),
        },
        concern: hook.concern,
        tier: hook.tier,
        core: hook.core,
        standby,
        error,
        covered_by: hook.covered_by.filter(|_| hook.tier > Tier::Tracepoint),
    };
    let mut try_attach = |ebpf: &mut Ebpf, hook: &Hook| -> Option<HookError> {
        if let Attach::Tracepoint(g, n) = hook.attach
            && !super::tracefs::tracepoint_exists(&opts.tracefs, g, n)
        {
            return Some(HookError::NoTracepoint {
                since: hook.since,
                covered_by: hook.covered_by,
            });
        }
        if let Some(e) = failed_load.get(hook.program) {
            return Some(e.clone());
        }
        let btf = match &btf {
            Some(Ok(btf)) => Some(btf),
            Some(Err(e)) if hook.tier > Tier::Tracepoint => {
                return Some(HookError::NoBtf(e.clone()));
            }
            _ => None,
        };
        match attach(ebpf, *hook, &mut loaded, cgroup_root, btf) {
            Ok(()) => None,
            Err(e) => {
                if !loaded.contains(hook.program) || hook.tier > Tier::Tracepoint {
                    failed_load.insert(hook.program, e.clone());
                }
                Some(e)
            }
        }
    };
    for hook in &upper {
        let error = try_attach(ebpf, hook);
        statuses.push(status(hook, opts, false, error));
    }
    // A tier serves a concern whole or not at all: half a tier beside half
    // of another would report some operations twice and others never.
    let mut served: HashSet<&'static str> = upper.iter().map(|h| h.concern).collect();
    for concern in served.clone() {
        let Some(missing) = upper
            .iter()
            .zip(&statuses)
            .find(|(hook, s)| {
                s.concern == concern && s.error.as_ref().is_some_and(|e| !hook.absent_here(e))
            })
            .map(|(_, s)| s.name.clone())
        else {
            continue;
        };
        served.remove(concern);
        for s in statuses
            .iter_mut()
            .filter(|s| s.concern == concern && s.error.is_none())
        {
            if let Some(program) = ebpf.program_mut(s.program) {
                // Unloading detaches its one link; an error leaves it loaded
                // and attached, which the status then says.
                let unloaded = match s.name.split_once('/') {
                    Some(("fentry", _)) => <&mut FEntry>::try_from(program).map(|p| p.unload()),
                    _ => <&mut FExit>::try_from(program).map(|p| p.unload()),
                };
                if !matches!(unloaded, Ok(Ok(()))) {
                    warn!(
                        program = s.program,
                        "could not detach a program of an incomplete tier"
                    );
                    continue;
                }
            }
            s.error = Some(HookError::TierIncomplete {
                missing: missing.clone(),
            });
        }
    }
    for hook in table.iter().filter(|h| h.tier == Tier::Tracepoint) {
        if served.contains(hook.concern) && !hook.shared {
            statuses.push(status(hook, opts, true, None));
            continue;
        }
        let error = try_attach(ebpf, hook);
        statuses.push(status(hook, opts, false, error));
    }
    statuses
}

/// Says in the log what attached, what did not and why, and which tier
/// serves each concern. A tier that this kernel refuses as a whole (the
/// same error for every row) is one line, not one per row.
pub(super) fn log_hooks(hooks: &[HookStatus]) {
    // No row of the tier attached: the kernel refuses the tier as a whole
    // (lockdown, no trampolines, no BTF); one line with the first row's
    // reason says it, the rows' own reasons are at debug level.
    let upper: Vec<&HookStatus> = hooks.iter().filter(|h| h.tier > Tier::Tracepoint).collect();
    let refused_whole = !upper.is_empty() && upper.iter().all(|h| h.error.is_some());
    if refused_whole && let Some(e) = upper.iter().find_map(|h| h.error.as_ref()) {
        info!(
            "the fentry tier is unavailable on this kernel ({e}): the tracepoint tier serves every concern"
        );
    }
    for h in hooks {
        match &h.error {
            None if h.standby => {
                debug!(program = h.program, target = %h.target, "hook in standby: a higher tier serves its concern")
            }
            None => debug!(program = h.program, target = %h.target, "hook attached"),
            Some(e) if refused_whole && h.tier > Tier::Tracepoint => {
                debug!(program = h.program, target = %h.target, "fentry row unavailable: {e}")
            }
            Some(e) if h.core_missing() => {
                warn!(program = h.program, target = %h.target, concern = h.concern, "core hook unavailable: {e}")
            }
            Some(e) => {
                info!(program = h.program, target = %h.target, concern = h.concern, "optional hook unavailable: {e}")
            }
        }
    }
    let active = hooks.iter().filter(|h| h.attached()).count();
    let tiers: Vec<String> = concern_tiers(hooks)
        .into_iter()
        .map(|(c, t)| match t {
            Some(t) => format!("{c}={t}"),
            None => format!("{c}=none"),
        })
        .collect();
    info!(active, total = hooks.len(), tiers = %tiers.join(", "), "kernel hooks attached");
}

fn attach(
    ebpf: &mut Ebpf,
    hook: Hook,
    loaded: &mut HashSet<&'static str>,
    cgroup_root: &File,
    btf: Option<&Btf>,
) -> Result<(), HookError> {
    let program = ebpf
        .program_mut(hook.program)
        .ok_or(HookError::NotInObject {
            program: hook.program,
        })?;
    let first = loaded.insert(hook.program);
    let load_error = |e| HookError::Load(Arc::new(e));
    let attach_error = |e| HookError::Attach(Arc::new(e));
    match hook.attach {
        Attach::Tracepoint(group, name) => {
            let p: &mut TracePoint = program.try_into().map_err(load_error)?;
            if first {
                p.load().map_err(HookError::of_load)?;
            }
            p.attach(group, name).map_err(attach_error)?;
        }
        Attach::RawTracepoint(name) => {
            let p: &mut RawTracePoint = program.try_into().map_err(load_error)?;
            if first {
                p.load().map_err(HookError::of_load)?;
            }
            p.attach(name).map_err(attach_error)?;
        }
        Attach::CgroupRoot => {
            let p: &mut CgroupSockAddr = program.try_into().map_err(load_error)?;
            if first {
                p.load().map_err(HookError::of_load)?;
            }
            p.attach(cgroup_root, root_attach_mode())
                .map_err(attach_error)?;
        }
        Attach::CgroupSkbRoot => {
            let p: &mut CgroupSkb = program.try_into().map_err(load_error)?;
            if first {
                p.load().map_err(HookError::of_load)?;
            }
            p.attach(
                cgroup_root,
                CgroupSkbAttachType::Ingress,
                root_attach_mode(),
            )
            .map_err(attach_error)?;
        }
        Attach::FEntry(function) => {
            let btf = btf.ok_or_else(|| HookError::NoBtf("not loaded".to_owned()))?;
            let p: &mut FEntry = program.try_into().map_err(load_error)?;
            if first {
                p.load(function, btf)
                    .map_err(|e| of_tracing_load(function, e))?;
            }
            p.attach().map_err(attach_error)?;
        }
        Attach::FExit(function) => {
            let btf = btf.ok_or_else(|| HookError::NoBtf("not loaded".to_owned()))?;
            let p: &mut FExit = program.try_into().map_err(load_error)?;
            if first {
                p.load(function, btf)
                    .map_err(|e| of_tracing_load(function, e))?;
            }
            p.attach().map_err(attach_error)?;
        }
    }
    Ok(())
}

/// A tracing program's load error: a function this kernel's BTF lacks is
/// told apart (it is not built in, as a missing tracepoint), the rest as
/// any load error.
fn of_tracing_load(function: &'static str, e: aya::programs::ProgramError) -> HookError {
    match e {
        aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => {
            HookError::NoFunction { function }
        }
        other => HookError::of_load(other),
    }
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
