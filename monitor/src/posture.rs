//! `monitor posture`: the posture rules over the containers running now, as
//! a table or JSON, for people and CI pipelines. No kernel programs: it walks
//! the cgroup2 tree, reads each container's runtime state files under the
//! host root and the socket tables of its network namespace, once.
//!
//! A container is running when its cgroup has a process. Its ports are those
//! its network namespace listens on now; `unused-port` is judged only for
//! containers whose first process started at least the rule's grace ago, and
//! not for containers in the host's network namespace (their socket tables
//! are the host's). Pod sandbox containers are not judged.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    alert::Severity,
    context::{
        CgroupRegistry, ContainerInfo, RuntimePaths,
        sockets::{first_pid, listening_ports},
    },
    policy::{self, Finding, PortsSeen, PostureSubject, RuleSet},
};

/// What `monitor posture` is told.
#[derive(Clone, Debug)]
pub struct PostureOptions {
    /// Rule directories, later ones extending earlier ones.
    pub rules: Vec<PathBuf>,
    /// The host's `/` as the agent sees it.
    pub host_root: PathBuf,
    /// The cgroup2 mount to walk.
    pub cgroup2_mount: PathBuf,
}

/// One finding, as the JSON output lists it.
#[derive(Clone, Debug, Serialize)]
pub struct PostureRow {
    /// The rule.
    pub rule: String,
    /// Its policy.
    pub policy: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The finding id.
    pub finding: String,
    /// The practice.
    pub practice: String,
    /// What was read.
    pub fact: String,
    /// The alert's summary.
    pub summary: String,
}

/// One running container and its findings.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerPosture {
    /// The alert record's `container` object.
    pub container: ContainerInfo,
    /// Its findings, most severe first.
    pub findings: Vec<PostureRow>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct PostureReport {
    /// Every running container, by name.
    pub containers: Vec<ContainerPosture>,
}

impl PostureReport {
    /// The most severe finding's severity.
    pub fn highest(&self) -> Option<Severity> {
        self.containers
            .iter()
            .flat_map(|c| &c.findings)
            .map(|f| f.severity)
            .max()
    }

    /// The table: one line per finding, `-` for a container with none.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 5]> = vec![[
            "CONTAINER".into(),
            "IMAGE".into(),
            "SEVERITY".into(),
            "FINDING".into(),
            "FACT".into(),
        ]];
        for c in &self.containers {
            let name = c
                .container
                .name
                .clone()
                .or_else(|| {
                    c.container
                        .id
                        .as_ref()
                        .map(|i| i.chars().take(12).collect())
                })
                .unwrap_or_else(|| "?".into());
            let image = c.container.image.clone().unwrap_or_else(|| "-".into());
            if c.findings.is_empty() {
                rows.push([
                    name.clone(),
                    image.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for f in &c.findings {
                rows.push([
                    name.clone(),
                    image.clone(),
                    f.severity.as_str().into(),
                    f.finding.clone(),
                    f.fact.clone(),
                ]);
            }
        }
        let widths: Vec<usize> = (0..5)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &rows {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i == 4 {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Loads the rules and judges every running container.
pub fn report(opts: &PostureOptions) -> anyhow::Result<PostureReport> {
    let rules = policy::check_dir(&opts.rules).map_err(|diags| {
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        anyhow::anyhow!(
            "{}\n{}",
            text.join("\n"),
            policy::check_summary(&Err(diags))
        )
    })?;
    let mut registry = CgroupRegistry::new(RuntimePaths::with_host_root(&opts.host_root));
    registry
        .scan(&opts.cgroup2_mount, Instant::now())
        .with_context(|| format!("walking {}", opts.cgroup2_mount.display()))?;
    let proc_root = opts.host_root.join("proc");
    Ok(judge(&rules, &registry, &opts.cgroup2_mount, &proc_root))
}

/// Judges every running container `registry` knows.
pub fn judge(
    rules: &RuleSet,
    registry: &CgroupRegistry,
    mount: &Path,
    proc_root: &Path,
) -> PostureReport {
    let mut containers = Vec::new();
    for (id, entry) in registry.containers() {
        let Some(meta) = entry.metadata.as_deref() else {
            continue;
        };
        if meta.is_sandbox {
            continue;
        }
        let dir = mount.join(entry.path.trim_start_matches('/'));
        let Some(pid) = first_pid(&dir) else {
            continue; // no process: not running
        };
        let (Some(container), _) = registry.container_info(id) else {
            continue;
        };
        // The host's network namespace has no tables of the container's own.
        let sockets = (meta.posture.host_network != Some(true))
            .then(|| listening_ports(&dir, proc_root))
            .flatten();
        let ports = match &sockets {
            Some(listening) => PortsSeen::Settled {
                listening,
                age: process_age(proc_root, pid).unwrap_or_default(),
            },
            None => PortsSeen::Unknown,
        };
        let mut found: Vec<Finding> = Vec::new();
        rules.evaluate_posture(
            &policy::workload(&container, meta),
            &PostureSubject {
                container: &container,
                metadata: meta,
                ports,
            },
            &mut found,
        );
        let mut findings: Vec<PostureRow> = found
            .into_iter()
            .map(|f| {
                let p = f
                    .posture
                    .clone()
                    .unwrap_or_else(|| crate::finding::PostureInfo {
                        finding: f.rule.to_string(),
                        practice: String::new(),
                        fact: String::new(),
                    });
                PostureRow {
                    rule: f.rule.to_string(),
                    policy: f.policy.to_string(),
                    severity: f.severity,
                    finding: p.finding,
                    practice: p.practice,
                    fact: p.fact,
                    summary: f.summary,
                }
            })
            .collect();
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(&b.rule)));
        containers.push(ContainerPosture {
            container,
            findings,
        });
    }
    containers.sort_by(|a, b| {
        (&a.container.name, &a.container.id).cmp(&(&b.container.name, &b.container.id))
    });
    PostureReport { containers }
}

/// How long ago process `pid` started (`/proc/<pid>/stat` field 22 against
/// `/proc/uptime`).
fn process_age(proc_root: &Path, pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command may hold spaces and parentheses: fields follow the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let start_ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = fs::read_to_string(proc_root.join("uptime"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(Duration::from_secs_f64(
        (uptime - start_ticks as f64 / hz).max(0.0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_started_before_now_has_an_age() {
        let age = process_age(Path::new("/proc"), std::process::id()).unwrap();
        assert!(age < Duration::from_secs(24 * 3600), "{age:?}");
        assert!(process_age(Path::new("/proc"), u32::MAX).is_none());
    }

    #[test]
    fn the_table_lists_each_finding_and_clean_containers() {
        let row = |sev, finding: &str, fact: &str| PostureRow {
            rule: finding.into(),
            policy: "default/posture".into(),
            severity: sev,
            finding: finding.into(),
            practice: "p".into(),
            fact: fact.into(),
            summary: "s".into(),
        };
        let c = |name: &str| ContainerInfo {
            name: Some(name.into()),
            image: Some("busybox:1".into()),
            ..Default::default()
        };
        let r = PostureReport {
            containers: vec![
                ContainerPosture {
                    container: c("bad"),
                    findings: vec![
                        row(Severity::Critical, "privileged", "privileged: true"),
                        row(Severity::Low, "no-cpu-limit", "cpu: unlimited"),
                    ],
                },
                ContainerPosture {
                    container: c("good"),
                    findings: vec![],
                },
            ],
        };
        assert_eq!(r.highest(), Some(Severity::Critical));
        assert_eq!(
            r.table(),
            "CONTAINER  IMAGE      SEVERITY  FINDING       FACT\n\
             bad        busybox:1  critical  privileged    privileged: true\n\
             bad        busybox:1  low       no-cpu-limit  cpu: unlimited\n\
             good       busybox:1  -         -             -\n"
        );
    }
}
