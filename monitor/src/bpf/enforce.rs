//! Enforcement in the kernel (`monitor run --enforce`): the enforcing socket
//! programs attached to each enforced container's own cgroup, and the maps
//! they and the exec hook decide from.
//!
//! | what | where | how it ends |
//! | --- | --- | --- |
//! | egress deny | `enforce_connect4/6`, `enforce_sendmsg4/6` attached to the container's cgroup v2 directory (never the root, never a host cgroup), verdicts in `EGRESS_VERDICTS` | a bpf_link per program and cgroup, held by this process only (never pinned): closed when the agent exits or is killed, and the kernel detaches it |
//! | kill at exec | `sched_process_exec` sends SIGKILL when `KILL_EXECS` has the filename's hash for the task's cgroup | the map and the program go with the agent's descriptors |
//! | protected writes, denied execs | the BPF LSM programs of `lsm.rs` (`LSM_PROGRAMS`) refuse with EPERM a write whose target, or a directory above it, is in `PROTECTED` for the task's cgroup (listed in `PROTECTED_CGROUPS`), and an exec `KILL_EXECS` names (which is then never killed: it does not happen) | their links are the agent's descriptors, never pinned: the kernel detaches them when it exits or is killed |
//!
//! bpf_link for cgroup programs came in Linux 5.7; aya uses it from 5.7 on,
//! and legacy `BPF_PROG_ATTACH` (which outlives the process) before. The
//! agent needs 5.8 anyway (the ring buffer), and [`EnforcementMaps::load`]
//! refuses enforcement on anything older rather than leave a legacy
//! attachment behind a dead agent.
use std::{
    collections::HashMap as StdHashMap,
    fs::File,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{
        HashMap,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{CgroupAttachMode, CgroupSockAddr, Lsm, cgroup_sock_addr::CgroupSockAddrLinkId},
};
use ipnet::IpNet;
use monitor_common::{
    EgressVerdict, ExecKey, ProtectKey,
    enforce::{EGRESS_KEY_FIXED_BITS, EGRESS_KEY_LEN},
};
use tracing::{info, warn};

/// The enforcing socket programs, each attached to every container with
/// egress enforcement.
pub const ENFORCING_PROGRAMS: [&str; 4] = [
    "enforce_connect4",
    "enforce_connect6",
    "enforce_sendmsg4",
    "enforce_sendmsg6",
];

/// The BPF LSM programs of `lsm.rs`, with their hooks and whether the set
/// does without them: the refusal of protected writes and of denied execs.
pub const LSM_PROGRAMS: [(&str, &str, bool); 12] = [
    ("protect_file_open", "file_open", false),
    ("protect_path_truncate", "path_truncate", false),
    ("protect_path_chmod", "path_chmod", false),
    // 5.10's verifier refuses a hook with a struct argument by value
    // (`kuid_t uid`); a chown changes no content, so the rest holds.
    ("protect_path_chown", "path_chown", true),
    ("protect_path_unlink", "path_unlink", false),
    ("protect_path_rmdir", "path_rmdir", false),
    ("protect_path_mkdir", "path_mkdir", false),
    ("protect_path_mknod", "path_mknod", false),
    ("protect_path_symlink", "path_symlink", false),
    ("protect_path_rename", "path_rename", false),
    ("protect_path_link", "path_link", false),
    ("refuse_exec", "bprm_check_security", false),
];

/// What one container is held to in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelEnforcement {
    /// Egress: address prefixes with the ports open below them. `None`: no
    /// egress enforcement (nothing is attached). An empty list denies all.
    pub egress: Option<Vec<(IpNet, EgressVerdict)>>,
    /// Hashes (`monitor_common::enforce::fnv1a`) of executables whose exec
    /// is killed: whole paths and final components.
    pub kill: Vec<u64>,
    /// Protected files and directories by identity: (device as the kernel
    /// encodes it, inode, `enforce::{DENY,ALLOW}_{EXACT,TREE}` bits).
    pub protect: Vec<(u32, u64, u32)>,
}

impl KernelEnforcement {
    pub fn is_empty(&self) -> bool {
        self.egress.is_none() && self.kill.is_empty() && self.protect.is_empty()
    }

    /// The same but for what is protected: only the map entries change.
    fn differs_only_in_protect(&self, other: &KernelEnforcement) -> bool {
        self.egress == other.egress && self.kill == other.kill
    }
}

/// What is in force for one cgroup, to update and undo it.
struct Applied {
    dir: PathBuf,
    links: Vec<(&'static str, CgroupSockAddrLinkId)>,
    egress_keys: Vec<Key<[u8; EGRESS_KEY_LEN]>>,
    kill_keys: Vec<ExecKey>,
    protect_keys: Vec<ProtectKey>,
    plan: KernelEnforcement,
}

/// The enforcement state of the loaded programs.
pub struct EnforcementMaps {
    /// The cgroup v2 root's id: nothing that denies is ever attached there.
    root_id: u64,
    root: PathBuf,
    applied: StdHashMap<u64, Applied>,
    /// Whether the LSM programs are attached, or why not.
    refusal: Result<(), String>,
}

impl EnforcementMaps {
    /// Loads the enforcing programs (attached later, per container).
    pub fn load(ebpf: &mut Ebpf, cgroup2_mount: &Path) -> anyhow::Result<EnforcementMaps> {
        let links = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0));
        if !links {
            bail!(
                "--enforce needs bpf_link for cgroup programs (Linux 5.7): an older kernel's \
                 attachment would outlive the agent"
            );
        }
        for name in ENFORCING_PROGRAMS {
            let p: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is not in the object"))?
                .try_into()?;
            p.load()
                .map_err(super::load::verifier_error)
                .with_context(|| format!("loading the enforcing program {name}"))?;
        }
        let refusal = attach_protect(ebpf);
        match &refusal {
            Ok(()) => info!(
                "BPF LSM: protected writes (file rules with action: deny) and denied execs \
                 (action: kill) are refused with EPERM"
            ),
            Err(why) => warn!(
                "BPF LSM is not usable here ({why}): file rules with action: deny only alert \
                 (would_deny), and denied execs are killed at exec rather than refused"
            ),
        }
        Ok(EnforcementMaps {
            root_id: super::cgroupfs::cgroup_id(cgroup2_mount)?,
            root: cgroup2_mount.to_path_buf(),
            applied: StdHashMap::new(),
            refusal,
        })
    }

    /// Whether protected writes can be refused here, or why not.
    pub fn refusal(&self) -> Result<(), &str> {
        self.refusal.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// The cgroups under enforcement.
    pub fn enforced(&self) -> impl Iterator<Item = u64> + '_ {
        self.applied.keys().copied()
    }

    /// Puts `cgroup_id` (the directory `dir`, a container's own cgroup)
    /// under `plan`, replacing what it was held to. An empty plan releases it.
    pub fn apply(
        &mut self,
        ebpf: &mut Ebpf,
        cgroup_id: u64,
        dir: &Path,
        plan: &KernelEnforcement,
    ) -> anyhow::Result<()> {
        if plan.is_empty() {
            return self.release(ebpf, cgroup_id);
        }
        if let Some(a) = self.applied.get_mut(&cgroup_id) {
            if a.plan == *plan {
                return Ok(());
            }
            // The programs stay attached: a re-resolved path only moves map entries.
            if a.plan.differs_only_in_protect(plan) {
                remove_protect(ebpf, cgroup_id, &mut a.protect_keys)?;
                let filled = fill_protect(ebpf, cgroup_id, &plan.protect, a);
                a.plan.protect = plan.protect.clone();
                return filled;
            }
        }
        if cgroup_id == self.root_id || dir == self.root || !dir.starts_with(&self.root) {
            bail!(
                "refusing to enforce on {}: only a container's own cgroup below {} is enforced, never the root",
                dir.display(),
                self.root.display()
            );
        }
        // From nothing in force: a failure half-way leaves nothing behind.
        self.release(ebpf, cgroup_id)?;
        let mut applied = Applied {
            dir: dir.to_path_buf(),
            links: Vec::new(),
            egress_keys: Vec::new(),
            kill_keys: Vec::new(),
            protect_keys: Vec::new(),
            plan: plan.clone(),
        };
        let result = Self::fill(ebpf, cgroup_id, dir, plan, &mut applied);
        self.applied.insert(cgroup_id, applied);
        if let Err(e) = result {
            let _ = self.release(ebpf, cgroup_id);
            return Err(e);
        }
        info!(
            cgroup = %dir.display(),
            egress_prefixes = plan.egress.as_ref().map_or(0, Vec::len),
            egress = plan.egress.is_some(),
            kill_entries = plan.kill.len(),
            protected = plan.protect.len(),
            "enforcement on"
        );
        Ok(())
    }

    fn fill(
        ebpf: &mut Ebpf,
        cgroup_id: u64,
        dir: &Path,
        plan: &KernelEnforcement,
        applied: &mut Applied,
    ) -> anyhow::Result<()> {
        {
            let mut kill: HashMap<_, ExecKey, u32> = HashMap::try_from(
                ebpf.map_mut("KILL_EXECS")
                    .ok_or_else(|| anyhow!("KILL_EXECS map missing"))?,
            )?;
            for &hash in &plan.kill {
                let key = ExecKey { cgroup_id, hash };
                kill.insert(key, 1, 0)
                    .context("adding to the kill list (KILL_EXECS is full)")?;
                applied.kill_keys.push(key);
            }
        }
        fill_protect(ebpf, cgroup_id, &plan.protect, applied)?;
        let Some(egress) = &plan.egress else {
            return Ok(());
        };
        {
            let mut verdicts: LpmTrie<_, [u8; EGRESS_KEY_LEN], EgressVerdict> = LpmTrie::try_from(
                ebpf.map_mut("EGRESS_VERDICTS")
                    .ok_or_else(|| anyhow!("EGRESS_VERDICTS map missing"))?,
            )?;
            for (net, verdict) in egress {
                let key = egress_key(cgroup_id, net);
                verdicts
                    .insert(&key, verdict, 0)
                    .context("adding an egress verdict (EGRESS_VERDICTS is full)")?;
                applied.egress_keys.push(key);
            }
        }
        {
            let mut enforced: HashMap<_, u64, u32> = HashMap::try_from(
                ebpf.map_mut("ENFORCED_CGROUPS")
                    .ok_or_else(|| anyhow!("ENFORCED_CGROUPS map missing"))?,
            )?;
            enforced
                .insert(cgroup_id, 1, 0)
                .context("adding the container (ENFORCED_CGROUPS is full)")?;
        }
        let cgroup = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        for name in ENFORCING_PROGRAMS {
            let p: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is not in the object"))?
                .try_into()?;
            // A bpf_link (5.7+): coexists with every other program and is
            // detached when its descriptor, this process's alone, closes.
            let link = p
                .attach(&cgroup, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name} to {}", dir.display()))?;
            applied.links.push((name, link));
        }
        Ok(())
    }

    /// Lifts every enforcement from `cgroup_id`: the programs first, then the
    /// map entries. Nothing to do when it was not enforced.
    pub fn release(&mut self, ebpf: &mut Ebpf, cgroup_id: u64) -> anyhow::Result<()> {
        let Some(mut applied) = self.applied.remove(&cgroup_id) else {
            return Ok(());
        };
        let mut first_error: Option<anyhow::Error> = None;
        let mut keep = |r: anyhow::Result<()>| {
            if let Err(e) = r
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        };
        for (name, link) in applied.links {
            keep((|| {
                let p: &mut CgroupSockAddr = ebpf
                    .program_mut(name)
                    .ok_or_else(|| anyhow!("program {name} is not in the object"))?
                    .try_into()?;
                p.detach(link)?;
                Ok(())
            })());
        }
        if let Some(map) = ebpf.map_mut("ENFORCED_CGROUPS") {
            let mut enforced: HashMap<_, u64, u32> = HashMap::try_from(map)?;
            // Absent when only kills were enforced.
            let _ = enforced.remove(&cgroup_id);
        }
        if let Some(map) = ebpf.map_mut("EGRESS_VERDICTS") {
            let mut verdicts: LpmTrie<_, [u8; EGRESS_KEY_LEN], EgressVerdict> =
                LpmTrie::try_from(map)?;
            for key in &applied.egress_keys {
                let _ = verdicts.remove(key);
            }
        }
        if let Some(map) = ebpf.map_mut("KILL_EXECS") {
            let mut kill: HashMap<_, ExecKey, u32> = HashMap::try_from(map)?;
            for key in &applied.kill_keys {
                let _ = kill.remove(key);
            }
        }
        keep(remove_protect(ebpf, cgroup_id, &mut applied.protect_keys));
        info!(cgroup = %applied.dir.display(), "enforcement off");
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Loads and attaches the LSM programs, all or none (but the optional ones).
fn attach_protect(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("the kernel's BTF: {e}"))?;
    let mut result = Ok(());
    for (name, hook, optional) in LSM_PROGRAMS {
        let r = (|| -> anyhow::Result<()> {
            let p: &mut Lsm = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is not in the object"))?
                .try_into()?;
            p.load(hook, &btf).map_err(super::load::verifier_error)?;
            // A link held by this process alone: detached when it exits.
            p.attach()?;
            Ok(())
        })();
        match r {
            Err(e) if optional => {
                warn!("the LSM hook {hook} is not available here, the others are: {e:#}")
            }
            Err(e) => {
                result = Err(format!("the LSM hook {hook} did not load or attach: {e:#}"));
                break;
            }
            Ok(()) => {}
        }
    }
    if result.is_err() {
        // Half a set would refuse some writes and not others.
        for (name, ..) in LSM_PROGRAMS {
            if let Some(p) = ebpf.program_mut(name)
                && let Ok(p) = <&mut Lsm>::try_from(p)
            {
                // Never loaded, or unloaded now: nothing stays behind either way.
                let _ = p.unload();
            }
        }
    }
    result
}

/// Puts `cgroup_id`'s protected identities in `PROTECTED` and the cgroup
/// in `PROTECTED_CGROUPS` (when it has any).
fn fill_protect(
    ebpf: &mut Ebpf,
    cgroup_id: u64,
    protect: &[(u32, u64, u32)],
    applied: &mut Applied,
) -> anyhow::Result<()> {
    if protect.is_empty() {
        return Ok(());
    }
    {
        let mut map: HashMap<_, ProtectKey, u32> = HashMap::try_from(
            ebpf.map_mut("PROTECTED")
                .ok_or_else(|| anyhow!("PROTECTED map missing"))?,
        )?;
        for &(dev, ino, bits) in protect {
            let key = ProtectKey {
                cgroup_id,
                ino,
                dev,
                _pad: 0,
            };
            map.insert(key, bits, 0)
                .context("adding a protected path (PROTECTED is full)")?;
            applied.protect_keys.push(key);
        }
    }
    let mut cgroups: HashMap<_, u64, u32> = HashMap::try_from(
        ebpf.map_mut("PROTECTED_CGROUPS")
            .ok_or_else(|| anyhow!("PROTECTED_CGROUPS map missing"))?,
    )?;
    cgroups
        .insert(cgroup_id, 1, 0)
        .context("adding the container (PROTECTED_CGROUPS is full)")?;
    Ok(())
}

/// Undoes [`fill_protect`]: the cgroup first, so no write is judged half-way.
fn remove_protect(
    ebpf: &mut Ebpf,
    cgroup_id: u64,
    keys: &mut Vec<ProtectKey>,
) -> anyhow::Result<()> {
    if let Some(map) = ebpf.map_mut("PROTECTED_CGROUPS") {
        let mut cgroups: HashMap<_, u64, u32> = HashMap::try_from(map)?;
        // Absent when nothing was protected.
        let _ = cgroups.remove(&cgroup_id);
    }
    if let Some(map) = ebpf.map_mut("PROTECTED") {
        let mut map: HashMap<_, ProtectKey, u32> = HashMap::try_from(map)?;
        for key in keys.drain(..) {
            let _ = map.remove(&key);
        }
    }
    Ok(())
}

/// The `EGRESS_VERDICTS` key of a prefix for one cgroup (layout in
/// `monitor_common::enforce`).
pub fn egress_key(cgroup_id: u64, net: &IpNet) -> Key<[u8; EGRESS_KEY_LEN]> {
    let mut data = [0u8; EGRESS_KEY_LEN];
    data[..8].copy_from_slice(&cgroup_id.to_ne_bytes());
    let (fam, bits): (u32, u32) = match net.addr() {
        IpAddr::V4(a) => {
            data[12..16].copy_from_slice(&a.octets());
            (4, net.prefix_len() as u32)
        }
        IpAddr::V6(a) => {
            data[12..28].copy_from_slice(&a.octets());
            (6, net.prefix_len() as u32)
        }
    };
    data[8..12].copy_from_slice(&fam.to_ne_bytes());
    Key::new(EGRESS_KEY_FIXED_BITS + bits, data)
}
