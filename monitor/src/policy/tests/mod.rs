//! Rule-check tests (every class of bad input, with its position) and
//! evaluation tests over the shipped pack in `rules/`, by what they test;
//! this file holds the imports and the helpers they share.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::*;
use crate::{
    context::{Ancestor, ContainerInfo, EnrichedEvent, ExecOrigin, MetadataStatus, ProcessInfo},
    event::{
        CgroupChange, CgroupOp, Event, EventBody, EventHeader, ExecInfo, Family, FileInfo, FileOp,
        NetOp, NetworkInfo, Protocol,
    },
    finding::{Action, AlertKind, Severity},
};

// ---------------------------------------------------------------- loading

/// Writes `files` into a fresh directory and loads it (after `before`, if given).
fn load(before: Option<&Path>, files: &[(&str, &str)]) -> Result<RuleSet, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let mut dirs: Vec<PathBuf> = before.into_iter().map(Path::to_path_buf).collect();
    dirs.push(dir.path().to_path_buf());
    let result = check_dir(&dirs);
    // Keep the directory alive until loaded; diagnostics carry their own paths.
    drop(dir);
    result
}

/// The diagnostics of loading `files`, with the temporary directory left out of the paths.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(None, files) {
        Ok(_) => panic!("expected diagnostics"),
        Err(diags) => diags
            .iter()
            .map(|d| {
                let name = d.file.file_name().unwrap().to_string_lossy().into_owned();
                Diagnostic {
                    file: name.into(),
                    ..d.clone()
                }
                .to_string()
            })
            .collect(),
    }
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

// ---------------------------------------------------------------- events

/// Who acts in a test event.
#[derive(Clone)]
struct Actor {
    cgroup: u64,
    container: Option<ContainerInfo>,
    status: MetadataStatus,
    exe: String,
    parent: Option<String>,
    pid: u32,
    ktime: u64,
    origin: Option<ExecOrigin>,
}

fn web() -> Actor {
    Actor {
        cgroup: 42,
        container: Some(ContainerInfo {
            id: Some("3f9c".repeat(16)),
            runtime: Some("containerd".into()),
            name: Some("web".into()),
            image: Some("nginx:1.27".into()),
            pod: Some("web-7d9f".into()),
            namespace: Some("shop".into()),
            cgroup: Some("/kubepods.slice/cri-containerd-3f9c.scope".into()),
        }),
        status: MetadataStatus::Complete,
        exe: "/bin/sh".into(),
        parent: Some("/docker-entrypoint.sh".into()),
        pid: 4242,
        ktime: 1_000_000_000_000,
        origin: None,
    }
}

fn db() -> Actor {
    let mut a = web();
    a.cgroup = 43;
    let c = a.container.as_mut().unwrap();
    c.name = Some("db".into());
    c.image = Some("postgres:16".into());
    a
}

fn host(exe: &str) -> Actor {
    Actor {
        cgroup: 1,
        container: None,
        status: MetadataStatus::Host,
        exe: exe.into(),
        parent: Some("/usr/lib/systemd/systemd".into()),
        pid: 777,
        ktime: 1_000_000_000_000,
        origin: None,
    }
}

impl Actor {
    fn by(mut self, exe: &str) -> Self {
        self.exe = exe.into();
        self
    }

    fn parent(mut self, exe: &str) -> Self {
        self.parent = Some(exe.into());
        self
    }

    fn origin(mut self, origin: ExecOrigin) -> Self {
        self.origin = Some(origin);
        self
    }

    fn at(mut self, ktime: u64) -> Self {
        self.ktime = ktime;
        self
    }

    fn event(&self, body: EventBody) -> EnrichedEvent {
        // Execs in a container: a child of a process inside it, by default.
        let origin = (self.container.is_some() && matches!(body, EventBody::Exec(_))).then(|| {
            self.origin.clone().unwrap_or_else(|| ExecOrigin {
                parent_program: self
                    .parent
                    .as_deref()
                    .map(|p| p.rsplit('/').next().unwrap().to_owned()),
                ..ExecOrigin::default()
            })
        });
        let exe = match &body {
            EventBody::Exec(x) => x.filename.clone(),
            _ => self.exe.clone(),
        };
        let comm: String = exe
            .rsplit('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(15)
            .collect();
        EnrichedEvent {
            event: Event {
                header: EventHeader {
                    ktime_ns: self.ktime,
                    pid: self.pid,
                    tid: self.pid,
                    uid: 0,
                    gid: 0,
                    cgroup_id: self.cgroup,
                    comm: comm.clone(),
                },
                body,
            },
            process: ProcessInfo {
                pid: self.pid,
                ppid: Some(self.pid - 1),
                uid: 0,
                comm,
                exe: Some(exe),
                args: Vec::new(),
                ancestry: self
                    .parent
                    .iter()
                    .map(|p| Ancestor {
                        pid: self.pid - 1,
                        exe: Some(p.clone()),
                    })
                    .collect(),
            },
            container: self.container.clone(),
            metadata_status: self.status,
            metadata: None,
            origin,
        }
    }

    fn exec(&self, filename: &str, args: &[&str]) -> EnrichedEvent {
        self.event(EventBody::Exec(ExecInfo {
            action: None,
            filename: filename.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            args_truncated: false,
            ppid: self.pid - 1,
            cwd: Some("/".into()),
            exe_inode: None,
        }))
    }

    fn file(
        &self,
        op: FileOp,
        path: &str,
        target: Option<&str>,
        flags: &[&'static str],
        result: i64,
    ) -> EnrichedEvent {
        self.event(EventBody::File(FileInfo {
            op,
            path: path.into(),
            target: target.map(Into::into),
            flags: flags.to_vec(),
            mode: None,
            result,
            requested_path: None,
            truncated: false,
            action: None,
            inode: None,
        }))
    }

    fn write(&self, path: &str) -> EnrichedEvent {
        self.file(
            FileOp::Open,
            path,
            None,
            &["O_WRONLY", "O_CREAT", "O_TRUNC"],
            3,
        )
    }

    fn connect(&self, daddr: &str, dport: u16, protocol: Protocol) -> EnrichedEvent {
        let daddr: std::net::IpAddr = daddr.parse().unwrap();
        self.event(EventBody::Network(NetworkInfo {
            action: None,
            op: NetOp::Connect,
            protocol,
            family: if daddr.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            daddr,
            dport,
            dns: None,
        }))
    }
}

fn shipped_evaluator() -> Evaluator {
    Evaluator::new(check_dir(&[shipped()]).unwrap())
}

fn run(ev: &mut Evaluator, events: &[EnrichedEvent]) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in events {
        ev.evaluate(e, &mut out);
    }
    out
}

fn rules_of(out: &[Finding]) -> Vec<&str> {
    out.iter().map(|f| &*f.rule).collect()
}

/// A user's policy for the nginx image, loaded after the shipped pack.
const NGINX: &str = "policies:
  - name: shop/web
    description: The nginx front end.
    selector:
      image: [\"nginx:*\"]
      namespace: [shop]
    rules:
      - name: unexpected-process
        severity: high
        process:
          allow:
            - exe: [/docker-entrypoint.sh, /usr/sbin/nginx]
            - exe: [/bin/sh, /docker-entrypoint.d/*.sh, /usr/bin/envsubst, /usr/bin/find]
              parents: [/docker-entrypoint.sh, /bin/sh, /bin/dash]
      - name: unexpected-egress
        severity: medium
        egress:
          allow:
            - to: [loopback]
            - to: [cluster]
              ports: [\"8000-8099\", 5432]
              protocols: [tcp]
            - to: [cluster-dns]
              ports: [53]
  - name: default/files
    extend: true
    exceptions:
      - reason: the entrypoint renders its config from templates
        rules: [protected-write]
        selector: {image: [\"nginx:*\"]}
        paths: [/etc/nginx/conf.d/**]
";

fn with_nginx_policy() -> Evaluator {
    let user = tempfile::tempdir().unwrap();
    fs::write(user.path().join("shop.yaml"), NGINX).unwrap();
    Evaluator::new(check_dir(&[shipped(), user.path().to_path_buf()]).unwrap())
}

mod allocation;
mod check;
mod detectors;
mod enforcement;
mod escape;
mod files;
mod process;
mod workloads;
