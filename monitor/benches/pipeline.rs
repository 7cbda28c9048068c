//! The agent's userspace path on one core: decode a raw ring-buffer record,
//! enrich it (process table, cgroup registry), match it against the rules
//! (`Evaluator`, detectors included). No kernel, no output.
//!
//! The records are built in the real `monitor-common` layouts, sent as long
//! as the kernel sends them (without the directory walks unless a path is
//! relative), in a mix of exec, file open and rename, and connect, from 16
//! Docker containers and a few host processes. The enricher is seeded from a
//! fake host (a cgroup2 tree, a `/proc`, Docker state files in the real
//! format) in a temporary directory, as `monitor run` is from the real one.
//!
//! Rule sets: 10, 100, 1,000 and 10,000 generated rules (policies of a
//! process, a file and an egress rule, each selecting one image by a glob, so
//! a container is selected by at most one policy), and the shipped pack.
//!
//! `cargo bench -p monitor --bench pipeline`; `cargo xtask bench` runs it and
//! reads the `thrpt:` lines and the `pipeline-case` lines printed here.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Instant,
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use monitor::{
    context::{Enricher, EnricherConfig, MetadataStatus},
    event::decode::decode,
    policy::{Evaluator, Finding, RuleSet},
};
use monitor_common::{
    COMM_LEN, DIR_LEN, DirWalk, ExecEvent, FileEvent, Header, NetEvent, PATH_LEN, file_op, kind,
    net_op, walk_flags,
};

#[allow(dead_code, reason = "the bench uses part of the shared generator")]
#[path = "../../xtask/src/bench/synthetic.rs"]
mod synthetic;

/// Records in one batch (one criterion iteration).
const BATCH: usize = 4096;
/// Containers the events come from; images 0..12 are selected by generated
/// policies (when there are that many), the last four by none.
const CONTAINERS: usize = 16;
const UNSELECTED_IMAGES: [&str; 4] = ["nginx:1.27", "redis:7", "postgres:16", "busybox:1.36"];
const RULE_COUNTS: [usize; 4] = [10, 100, 1_000, 10_000];

/// A process of the fake host.
struct Proc {
    pid: u32,
    ppid: u32,
    exe: String,
    args: Vec<String>,
    cgroup: String,
}

/// Who acts in the events: a pid, its cgroup id, its comm and which
/// generated workload it belongs to (`None` on the host).
#[derive(Clone)]
struct Actor {
    pid: u32,
    ppid: u32,
    cgroup_id: u64,
    comm: String,
    workload: Option<usize>,
}

struct FakeHost {
    _dir: tempfile::TempDir,
    mount: PathBuf,
    host_root: PathBuf,
    actors: Vec<Actor>,
}

fn image(c: usize) -> String {
    if c < CONTAINERS - UNSELECTED_IMAGES.len() {
        synthetic::image_of(c)
    } else {
        UNSELECTED_IMAGES[c + UNSELECTED_IMAGES.len() - CONTAINERS].to_owned()
    }
}

fn fake_host() -> FakeHost {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("cgroup");
    let host_root = dir.path().join("host");
    let proc_root = host_root.join("proc");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let docker = synthetic::DockerState::fixture(repo).expect("the Docker fixture");

    let cgroup = |path: &str| -> u64 {
        let d = mount.join(path.trim_start_matches('/'));
        fs::create_dir_all(&d).unwrap();
        fs::metadata(d).unwrap().ino()
    };
    let mut procs = vec![
        Proc {
            pid: 1,
            ppid: 0,
            exe: "/usr/lib/systemd/systemd".into(),
            args: vec!["/sbin/init".into()],
            cgroup: "/init.scope".into(),
        },
        Proc {
            pid: 500,
            ppid: 1,
            exe: "/usr/bin/containerd".into(),
            args: vec!["/usr/bin/containerd".into()],
            cgroup: "/system.slice/containerd.service".into(),
        },
        Proc {
            pid: 600,
            ppid: 1,
            exe: "/usr/sbin/sshd".into(),
            args: vec!["sshd: /usr/sbin/sshd -D".into()],
            cgroup: "/system.slice/ssh.service".into(),
        },
        Proc {
            pid: 601,
            ppid: 600,
            exe: "/usr/bin/bash".into(),
            args: vec!["-bash".into()],
            cgroup: "/user.slice/user-1000.slice/session-1.scope".into(),
        },
    ];
    let mut actors = Vec::new();
    for p in &procs[1..] {
        actors.push(Actor {
            pid: p.pid,
            ppid: p.ppid,
            cgroup_id: cgroup(&p.cgroup),
            comm: comm_of(&p.exe),
            workload: None,
        });
    }
    cgroup("/init.scope");
    for c in 0..CONTAINERS {
        let id = synthetic::container_id(7, c as u64);
        docker
            .write(&host_root, &id, &format!("svc{c}-1"), &image(c))
            .unwrap();
        let path = format!("/system.slice/{}", synthetic::docker_scope(&id));
        let cgroup_id = cgroup(&path);
        let base = 1000 + 10 * c as u32;
        let exe = synthetic::exe_of(c);
        procs.push(Proc {
            pid: base,
            ppid: 1,
            exe: "/usr/bin/containerd-shim-runc-v2".into(),
            args: vec!["/usr/bin/containerd-shim-runc-v2".into(), "-id".into(), id],
            cgroup: "/system.slice/containerd.service".into(),
        });
        for k in 1..5 {
            procs.push(Proc {
                pid: base + k,
                ppid: if k == 1 { base } else { base + 1 },
                exe: exe.clone(),
                args: vec![exe.clone(), "--port".into(), "8080".into()],
                cgroup: path.clone(),
            });
            actors.push(Actor {
                pid: base + k,
                ppid: if k == 1 { base } else { base + 1 },
                cgroup_id,
                comm: comm_of(&exe),
                workload: Some(c),
            });
        }
    }
    for p in &procs {
        let d = proc_root.join(p.pid.to_string());
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("stat"),
            format!(
                "{} ({}) S {} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n",
                p.pid,
                comm_of(&p.exe),
                p.ppid
            ),
        )
        .unwrap();
        fs::write(d.join("status"), "Uid:\t0\t0\t0\t0\n").unwrap();
        let mut cmdline = p.args.join("\0");
        cmdline.push('\0');
        fs::write(d.join("cmdline"), cmdline).unwrap();
        std::os::unix::fs::symlink(&p.exe, d.join("exe")).unwrap();
        fs::write(d.join("cgroup"), format!("0::{}\n", p.cgroup)).unwrap();
    }
    FakeHost {
        _dir: dir,
        mount,
        host_root,
        actors,
    }
}

fn comm_of(exe: &str) -> String {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    name[..name.len().min(COMM_LEN - 1)].to_owned()
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fill<const N: usize>(s: &str) -> [u8; N] {
    let mut a = [0u8; N];
    let n = s.len().min(N - 1);
    a[..n].copy_from_slice(&s.as_bytes()[..n]);
    a
}

fn header(kind: u32, a: &Actor, ktime_ns: u64) -> Header {
    Header {
        kind,
        pid: a.pid,
        tid: a.pid,
        uid: 0,
        gid: 0,
        _pad: 0,
        ktime_ns,
        cgroup_id: a.cgroup_id,
        comm: fill::<COMM_LEN>(&a.comm),
    }
}

/// The bytes of a record, cut to `len` as the kernel sends it.
fn bytes<T: Copy>(v: &T, len: usize) -> Vec<u8> {
    // SAFETY: T is a plain-old-data record of monitor-common with explicit
    // padding, every byte initialised.
    let all = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    all[..len.min(all.len())].to_vec()
}

fn no_walk() -> DirWalk {
    DirWalk {
        flags: 0,
        len: 0,
        buf: [0; DIR_LEN],
    }
}

/// A walked directory, leaf first, as the kernel writes it.
fn walk(leaf_first: &[&str]) -> DirWalk {
    let mut w = DirWalk {
        flags: walk_flags::PRESENT,
        len: 0,
        buf: [0; DIR_LEN],
    };
    let mut pos = 0;
    for c in leaf_first {
        w.buf[pos..pos + c.len()].copy_from_slice(c.as_bytes());
        pos += c.len() + 1;
    }
    w.len = pos as u32;
    w
}

fn exec_record(a: &Actor, t: u64, exe: &str, args: &[&str], ppid: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for arg in args {
        raw.extend_from_slice(arg.as_bytes());
        raw.push(0);
    }
    let mut buf = [0u8; monitor_common::ARGS_LEN];
    buf[..raw.len()].copy_from_slice(&raw);
    let ev = ExecEvent {
        action: 0,
        _pad: 0,
        exe_ino: 0,
        exe_dev: 0,
        _pad2: 0,
        header: header(kind::EXEC, a, t),
        ppid,
        old_pid: a.pid,
        filename_len: exe.len() as u32,
        args_len: raw.len() as u32,
        argc: args.len() as u32,
        args_truncated: 0,
        filename: fill::<PATH_LEN>(exe),
        args: buf,
        cwd: no_walk(),
    };
    bytes(&ev, ExecEvent::SIZE_NO_CWD)
}

fn file_record(
    a: &Actor,
    t: u64,
    op: u32,
    flags: i32,
    (path, dir): (&str, Option<DirWalk>),
    path2: &str,
) -> Vec<u8> {
    let walked = dir.is_some();
    let ev = FileEvent {
        header: header(kind::FILE, a, t),
        op,
        flags: flags as u32,
        mode: 0o644,
        path_len: path.len() as u32,
        path2_len: path2.len() as u32,
        dirfd: monitor_common::AT_FDCWD,
        dirfd2: monitor_common::AT_FDCWD,
        ns_pid: 0,
        action: 0,
        _pad: 0,
        ino: 0,
        dev: 0,
        _pad2: 0,
        ret: if op == file_op::OPEN { 5 } else { 0 },
        path: fill::<PATH_LEN>(path),
        path2: fill::<PATH_LEN>(path2),
        dir: dir.unwrap_or_else(no_walk),
        dir2: no_walk(),
    };
    let len = if walked {
        FileEvent::SIZE_ONE_DIR
    } else {
        FileEvent::SIZE_NO_DIRS
    };
    bytes(&ev, len)
}

fn connect_record(a: &Actor, t: u64, ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut daddr = [0u8; 16];
    daddr[..4].copy_from_slice(&ip);
    let ev = NetEvent {
        action: 0,
        _pad: 0,
        header: header(kind::NET, a, t),
        op: net_op::CONNECT,
        family: libc::AF_INET as u32,
        protocol: libc::IPPROTO_TCP as u32,
        dport: u32::from(port),
        daddr,
    };
    bytes(&ev, size_of::<NetEvent>())
}

/// One batch of records: 10 % exec, 45 % file open, 10 % rename, 35 %
/// connect; a fifth from host processes. About 2 % are meant to break a rule
/// of the policy selecting their container (a denied or unexpected program,
/// a protected path, an address off the allowlist).
fn records(host: &FakeHost) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let host_actors: Vec<&Actor> = host
        .actors
        .iter()
        .filter(|a| a.workload.is_none())
        .collect();
    let container_actors: Vec<&Actor> = host
        .actors
        .iter()
        .filter(|a| a.workload.is_some())
        .collect();
    let mut t = 1_000_000_000u64;
    (0..BATCH)
        .map(|n| {
            t += 1_000 + rng.below(2_000);
            let a = if rng.below(5) == 0 {
                host_actors[rng.below(host_actors.len() as u64) as usize]
            } else {
                container_actors[rng.below(container_actors.len() as u64) as usize]
            };
            let w = a.workload.unwrap_or(99);
            let odd = rng.below(100) < 2;
            match rng.below(100) {
                0..10 => {
                    let exe = synthetic::exe_of(w);
                    let (exe, args): (&str, Vec<&str>) = if odd {
                        ("/usr/bin/ncat", vec!["ncat", "10.0.0.1", "4444"])
                    } else if n % 3 == 0 {
                        ("/bin/sh", vec!["sh", "-c", "/usr/bin/true"])
                    } else {
                        (exe.as_str(), vec![exe.as_str(), "--worker", "3"])
                    };
                    exec_record(a, t, exe, &args, a.ppid)
                }
                10..55 => {
                    let wr = libc::O_WRONLY | libc::O_CREAT;
                    let path = if odd {
                        "/etc/passwd".to_owned()
                    } else {
                        match rng.below(10) {
                            0..7 => format!("/var/log/svc{w}/access-{}.log", n % 8),
                            7..9 => format!("/tmp/work-{}", n % 64),
                            _ => format!("cache/item-{}", n % 128),
                        }
                    };
                    let dir = (!path.starts_with('/')).then(|| walk(&["app", "srv"]));
                    let flags = if path.starts_with("/var/log") {
                        wr | libc::O_APPEND
                    } else {
                        wr | libc::O_TRUNC
                    };
                    file_record(a, t, file_op::OPEN, flags, (&path, dir), "")
                }
                55..65 => file_record(
                    a,
                    t,
                    file_op::RENAME,
                    0,
                    (&format!("/srv/data/.tmp-{n}"), None),
                    &format!("/srv/data/item-{}", n % 256),
                ),
                _ => {
                    let (ip, port) = if odd {
                        ([203, 0, 113, (n % 250) as u8], 443)
                    } else if rng.below(7) == 0 {
                        ([127, 0, 0, 1], 8080)
                    } else {
                        ([10, w as u8, (n % 200) as u8, 7], 5432)
                    };
                    connect_record(a, t, ip, port)
                }
            }
        })
        .collect()
}

/// What one rule set is measured with.
struct Case {
    id: BenchmarkId,
    label: String,
    rules: RuleSet,
}

fn cases(scratch: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    for &n in &RULE_COUNTS {
        let dir = scratch.join(format!("rules-{n}"));
        synthetic::write_rules(&dir, n).unwrap();
        let t0 = Instant::now();
        let rules = RuleSet::load_dirs(std::slice::from_ref(&dir))
            .unwrap_or_else(|d| panic!("generated rules do not load: {:?}", d.first()));
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        assert_eq!(rules.rule_count(), n);
        out.push(Case {
            id: BenchmarkId::new("rules", n),
            label: format!("rules/{n} load_ms={load_ms:.0}"),
            rules,
        });
    }
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let rules = RuleSet::load_dirs(&[pack]).expect("the shipped pack loads");
    out.push(Case {
        id: BenchmarkId::new("default-pack", rules.rule_count()),
        label: format!("default-pack/{} load_ms=0", rules.rule_count()),
        rules,
    });
    out
}

/// Decode, enrich and match every record; returns the findings.
fn pass(
    raw: &[Vec<u8>],
    enricher: &mut Enricher,
    evaluator: &mut Evaluator,
    findings: &mut Vec<Finding>,
) -> usize {
    let mut n = 0;
    for rec in raw {
        let event = decode(rec).expect("a record the bench built decodes");
        let enriched = enricher.enrich(event);
        evaluator.evaluate(&enriched, findings);
        n += findings.len();
        findings.clear();
    }
    n
}

fn bench(c: &mut Criterion) {
    let host = fake_host();
    let raw = records(&host);
    let scratch = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(raw.len() as u64));
    for case in cases(scratch.path()) {
        let mut enricher = Enricher::new(EnricherConfig {
            host_root: host.host_root.clone(),
            proc_root: host.host_root.join("proc"),
            ..EnricherConfig::default()
        });
        enricher
            .seed(&host.mount)
            .expect("seeding from the fake host");
        let policies = case.rules.policy_count();
        let rule_count = case.rules.rule_count();
        let mut evaluator = Evaluator::new(case.rules);
        let mut findings = Vec::new();
        // One pass outside the timing: the process table and the detectors
        // reach their steady state, and the sanity checks run.
        let found = pass(&raw, &mut enricher, &mut evaluator, &mut findings);
        let complete = raw
            .iter()
            .filter(|r| {
                let e = enricher.enrich(decode(r).unwrap());
                e.metadata_status == MetadataStatus::Complete
            })
            .count();
        assert!(
            complete >= raw.len() / 2,
            "container metadata was not read: {complete} of {} events complete",
            raw.len()
        );
        println!(
            "pipeline-case {} rules={rule_count} policies={policies} events={} findings={found} container_events={complete}",
            case.label,
            raw.len()
        );
        group.bench_function(case.id, |b| {
            b.iter(|| pass(&raw, &mut enricher, &mut evaluator, &mut findings))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
