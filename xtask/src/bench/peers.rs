//! The peers the agent is compared with: auditd with rules equivalent to
//! ours, and bpftrace printing the same three kinds of events.
//!
//! Audit rules live in the kernel and outlast the bench: every rule added
//! carries [`AUDIT_KEY`], is removed by key when the session ends (also on
//! error or ^C), and stale ones from a killed bench are removed at start.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::process::{Drained, LineHook, Ready, cpu_secs, pids_named};

pub const AUDIT_KEY: &str = "monitor-bench";

/// execve, opens that can write, renames, unlinks and connect: what the agent
/// hooks, as one audit rule.
pub fn audit_rule() -> Vec<String> {
    let mut args = vec!["-a", "always,exit", "-F", "arch=b64"];
    for s in [
        "execve",
        "openat",
        "open",
        "creat",
        "rename",
        "renameat",
        "renameat2",
        "unlink",
        "unlinkat",
        "connect",
    ] {
        args.extend(["-S", s]);
    }
    args.extend(["-F", "key=monitor-bench"]);
    args.into_iter().map(str::to_owned).collect()
}

fn auditctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .context("running auditctl (apt-get install auditd)")?;
    if !out.status.success() {
        bail!(
            "auditctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `auditctl -s`: the fields the session restores or reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStatus {
    pub enabled: u32,
    pub pid: u32,
    pub backlog_limit: u32,
    pub lost: u64,
}

pub fn parse_audit_status(text: &str) -> AuditStatus {
    let mut s = AuditStatus::default();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(k), Some(v)) = (w.next(), w.next()) else {
            continue;
        };
        match k {
            "enabled" => s.enabled = v.parse().unwrap_or(0),
            "pid" => s.pid = v.parse().unwrap_or(0),
            "backlog_limit" => s.backlog_limit = v.parse().unwrap_or(0),
            "lost" => s.lost = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    s
}

fn audit_status() -> anyhow::Result<AuditStatus> {
    Ok(parse_audit_status(&auditctl(&["-s"])?))
}

/// Removes the bench's rules (by key); true when none is left.
pub fn remove_audit_rules() -> bool {
    if Command::new("auditctl")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return true; // no audit tools, so no rules of ours
    }
    // Fails with "No rules" when there is nothing to delete: that is fine.
    let _ = Command::new("auditctl")
        .args(["-D", "-k", AUDIT_KEY])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    auditctl(&["-l"]).is_ok_and(|l| !l.contains(AUDIT_KEY))
}

/// Audit's residue. Once audit has been enabled since boot (by any auditd,
/// including the bench's own session), the kernel gives every new task an
/// audit context, and each of its syscalls then pays for audit even with
/// auditd stopped and auditing disabled (here `getppid` went from about 190
/// to 340 ns). A task-list `never` rule stops that for tasks forked while it
/// is loaded, so every configuration but auditd measures a machine without
/// audit. Task rules take no key, so ownership is a marker file naming the
/// bench's pid: a later bench removes the rule of one that was killed.
pub struct AuditQuiet {
    marker: Option<PathBuf>,
}

/// Set while the bench owns the `never,task` rule; auditd sessions lift it.
static QUIET_OWNED: AtomicBool = AtomicBool::new(false);
const QUIET_MARKER: &str = "/run/monitor-bench-audit-quiet-";
const QUIET_RULE: &str = "-a never,task";

fn set_quiet(on: bool) -> anyhow::Result<()> {
    let present = auditctl(&["-l"])?.lines().any(|l| l.trim() == QUIET_RULE);
    match (on, present) {
        (true, false) => auditctl(&["-a", "task,never"]).map(drop),
        (false, true) => auditctl(&["-d", "task,never"]).map(drop),
        _ => Ok(()),
    }
}

impl AuditQuiet {
    /// Loads the rule unless someone else's is there. Never fails: a note
    /// says what could not be done.
    pub fn start(notes: &mut Vec<String>) -> AuditQuiet {
        let none = AuditQuiet { marker: None };
        if auditctl(&["-v"]).is_err() {
            return none;
        }
        // A killed bench's rule and marker.
        if let Ok(rd) = fs::read_dir("/run") {
            for e in rd.flatten() {
                let path = e.path();
                let Some(pid) = path
                    .to_str()
                    .and_then(|p| p.strip_prefix(QUIET_MARKER))
                    .map(str::to_owned)
                else {
                    continue;
                };
                if !Path::new("/proc").join(&pid).exists() {
                    let _ = set_quiet(false);
                    let _ = fs::remove_file(&path);
                }
            }
        }
        match auditctl(&["-l"]) {
            Ok(rules) if rules.lines().any(|l| l.trim() == QUIET_RULE) => {
                notes.push(format!(
                    "an audit rule `{QUIET_RULE}` was already loaded (not the bench's); it was left as it was"
                ));
                return none;
            }
            Ok(_) => {}
            Err(e) => {
                notes.push(format!("could not list audit rules: {e:#}"));
                return none;
            }
        }
        let marker = PathBuf::from(format!("{QUIET_MARKER}{}", std::process::id()));
        if let Err(e) = fs::write(&marker, "") {
            notes.push(format!(
                "could not write {}: {e}; audit's per-task residue is not switched off",
                marker.display()
            ));
            return none;
        }
        if let Err(e) = set_quiet(true) {
            let _ = fs::remove_file(&marker);
            notes.push(format!(
                "could not load `{QUIET_RULE}` ({e:#}): if audit was ever enabled since boot, every configuration pays audit's per-syscall cost"
            ));
            return none;
        }
        QUIET_OWNED.store(true, Ordering::SeqCst);
        AuditQuiet {
            marker: Some(marker),
        }
    }
}

impl Drop for AuditQuiet {
    fn drop(&mut self) {
        if let Some(marker) = self.marker.take() {
            QUIET_OWNED.store(false, Ordering::SeqCst);
            if let Err(e) = set_quiet(false) {
                eprintln!(
                    "bench: could not remove `{QUIET_RULE}`: {e:#}; remove it with `auditctl -d task,never`"
                );
            }
            let _ = fs::remove_file(marker);
        }
    }
}

/// auditd running with the bench's rule loaded. Stopping (or dropping) it
/// removes the rule, restores the kernel's audit settings, and stops the
/// daemon if the bench started it.
pub struct AuditSession {
    daemon: Option<Child>,
    before: AuditStatus,
    done: bool,
}

/// What auditd cost and dropped during a session.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditStats {
    /// CPU seconds of auditd and kauditd during the session.
    pub cpu_s: Option<f64>,
    /// Records the kernel's audit queue dropped during the session.
    pub lost: u64,
}

impl AuditSession {
    pub fn start() -> anyhow::Result<(AuditSession, f64)> {
        let before = audit_status()?;
        if before.enabled == 2 {
            bail!("the audit configuration is locked (enabled 2): rules cannot be added");
        }
        let mut session = AuditSession {
            daemon: None,
            before,
            done: false,
        };
        // The workloads of this session are to be audited.
        if QUIET_OWNED.load(Ordering::SeqCst) {
            set_quiet(false)?;
        }
        if before.pid == 0 {
            // No systemd here: run the daemon in the foreground as our child.
            let child = Command::new("auditd")
                .arg("-n")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting auditd (apt-get install auditd)")?;
            session.daemon = Some(child);
            let deadline = Instant::now() + Duration::from_secs(15);
            while audit_status()?.pid == 0 {
                if let Some(d) = session.daemon.as_mut()
                    && let Ok(Some(status)) = d.try_wait()
                {
                    bail!("auditd exited at start ({status}); see /var/log/audit and syslog");
                }
                if Instant::now() > deadline {
                    bail!("auditd did not register with the kernel within 15 s");
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        // The default backlog of 64 would drop records under a busy loop.
        auditctl(&["-b", "8192"])?;
        let rule = audit_rule();
        auditctl(&rule.iter().map(String::as_str).collect::<Vec<_>>())?;
        auditctl(&["-e", "1"])?;
        let cpu = session.cpu();
        Ok((session, cpu))
    }

    fn cpu(&self) -> f64 {
        let mut pids = pids_named("kauditd");
        match &self.daemon {
            Some(d) => pids.push(d.id()),
            None => pids.push(self.before.pid),
        }
        pids.iter().filter_map(|&p| cpu_secs(p)).sum()
    }

    /// Ends the session; `cpu_at_start` is what [`AuditSession::start`] returned.
    pub fn stop(mut self, cpu_at_start: f64) -> anyhow::Result<AuditStats> {
        let cpu_s = Some(self.cpu() - cpu_at_start);
        let lost = audit_status()
            .map(|s| s.lost.saturating_sub(self.before.lost))
            .unwrap_or(0);
        self.cleanup()?;
        Ok(AuditStats { cpu_s, lost })
    }

    fn cleanup(&mut self) -> anyhow::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let removed = remove_audit_rules();
        if QUIET_OWNED.load(Ordering::SeqCst)
            && let Err(e) = set_quiet(true)
        {
            eprintln!("bench: could not load `{QUIET_RULE}` again: {e:#}");
        }
        let _ = auditctl(&["-e", &self.before.enabled.to_string()]);
        let _ = auditctl(&["-b", &self.before.backlog_limit.max(1).to_string()]);
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: kill of our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(d.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        if !removed {
            bail!(
                "audit rules with key {AUDIT_KEY} are still loaded: remove them with `auditctl -D -k {AUDIT_KEY}`"
            );
        }
        Ok(())
    }
}

impl Drop for AuditSession {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("bench: {e:#}");
        }
    }
}

/// A bpftrace script printing exec, opens with write flags and connects of
/// one cgroup, as `monitor trace --cgroup` does.
pub fn bpftrace_script(cgroup: &Path) -> String {
    // O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND, as the agent's filter.
    let cg = format!("cgroup == cgroupid(\"{}\")", cgroup.display());
    format!(
        r#"BEGIN {{ printf("bench-ready\n"); }}
tracepoint:sched:sched_process_exec /{cg}/ {{ printf("exec pid=%d comm=%s file=%s\n", pid, comm, str(args->filename)); }}
tracepoint:syscalls:sys_enter_openat /{cg} && (args->flags & 0x643)/ {{ printf("open pid=%d comm=%s path=%s flags=%d\n", pid, comm, str(args->filename), args->flags); }}
tracepoint:syscalls:sys_enter_connect /{cg}/ {{ printf("connect pid=%d comm=%s fd=%d addrlen=%d\n", pid, comm, args->fd, args->addrlen); }}
"#
    )
}

/// bpftrace with its output line-buffered into a drained pipe: with `-o FILE`
/// it buffers everything until exit and gives no sign of being attached.
pub fn start_bpftrace(cgroup: &Path, hook: Option<LineHook>) -> anyhow::Result<Drained> {
    Drained::start(
        "bpftrace",
        Command::new("bpftrace")
            .args(["-B", "line", "-e"])
            .arg(bpftrace_script(cgroup)),
        Ready::Stdout("bench-ready"),
        Duration::from_secs(90),
        hook,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_rule_is_one_keyed_exit_rule() {
        let r = audit_rule().join(" ");
        assert!(r.starts_with("-a always,exit -F arch=b64 -S execve -S openat"));
        assert!(r.ends_with("-S connect -F key=monitor-bench"));
    }

    #[test]
    fn parses_auditctl_status() {
        let s = parse_audit_status(
            "enabled 1\nfailure 1\npid 4242\nrate_limit 0\nbacklog_limit 64\nlost 7\nbacklog 0\n",
        );
        assert_eq!(
            s,
            AuditStatus {
                enabled: 1,
                pid: 4242,
                backlog_limit: 64,
                lost: 7
            }
        );
    }

    #[test]
    fn bpftrace_script_filters_on_the_cgroup() {
        let s = bpftrace_script(Path::new("/sys/fs/cgroup/x"));
        assert_eq!(s.matches("cgroupid(\"/sys/fs/cgroup/x\")").count(), 3);
        assert!(s.contains("args->flags & 0x643"));
    }
}
