//! Kernel tests of the container and process context that `monitor trace`
//! attaches to events: cgroups named the way each runtime names them, below
//! one parent per test; the runtimes' state files in their real formats in a
//! temporary host root (`--host-root`); real processes inside; and a real
//! Docker container. Run as root (`cargo xtask test`).
mod common;

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use common::{
    Monitor, TestCgroup,
    cgroups::vm_rss_kib,
    docker,
    runtime::{Container, HostRoot, Runtime},
};
use serde_json::{Value, json};

/// Generous: the machine is shared and busy; waits end as soon as the line comes.
const WAIT: Duration = Duration::from_secs(30);

fn trace(scope: &Path, host: &HostRoot, kinds: &str) -> Monitor {
    Monitor::start(
        &[
            "trace",
            "--cgroup",
            scope.to_str().unwrap(),
            "--host-root",
            host.path_str(),
            "--kind",
            kinds,
        ],
        "tracing;",
    )
}

/// The cgroup the kubelet's systemd driver makes for a container of `c`'s pod.
fn kube_path(c: &Container, qos: &str, scope_prefix: &str) -> String {
    let uid = c.pod.as_ref().unwrap().uid.replace('-', "_");
    format!(
        "kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice/{scope_prefix}-{}.scope",
        c.id
    )
}

/// `sh -c` runs the script `run.sh`, whose shell runs `/bin/true`: three
/// processes, each the parent of the next.
struct Workload {
    dir: tempfile::TempDir,
    script: PathBuf,
}

/// The pids of one run of the [`Workload`].
struct Chain {
    /// The `sh -c` the test started.
    outer: u32,
    /// The shell running `run.sh`.
    script: u32,
    marker: String,
}

impl Workload {
    fn new() -> Workload {
        let dir = common::tempdir();
        let script = dir.path().canonicalize().unwrap().join("run.sh");
        fs::write(
            &script,
            "#!/bin/sh\n\
             # run.sh PIDFILE MARKER [PAD [COUNT]]\n\
             echo $$ > \"$1\"\n\
             n=${4:-1}\n\
             while [ \"$n\" -gt 0 ]; do\n\
             \x20   /bin/true \"$2\" \"$3\"\n\
             \x20   n=$((n - 1))\n\
             done\n\
             exit 0\n",
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Workload { dir, script }
    }

    fn script(&self) -> &str {
        self.script.to_str().unwrap()
    }

    /// Runs the chain in `cg` to its end: `/bin/true MARKER PAD`, `count` times.
    fn run(&self, cg: &TestCgroup, marker: &str, pad: &str, count: usize) -> Chain {
        let pidfile = self.dir.path().join(format!("{marker}.pid"));
        // Not the last command, so the shell forks for the script instead of exec'ing it.
        let outer = cg.run(
            "/bin/sh",
            &[
                "-c",
                "\"$0\" \"$@\"; exit $?",
                self.script(),
                pidfile.to_str().unwrap(),
                marker,
                pad,
                &count.to_string(),
            ],
            None,
        );
        let script = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        fs::remove_file(&pidfile).unwrap();
        Chain {
            outer,
            script,
            marker: marker.to_owned(),
        }
    }
}

fn is_exec_of_true(v: &Value, marker: &str) -> bool {
    v["event"] == "exec" && v["process"]["exe"] == "/bin/true" && v["process"]["args"][1] == marker
}

/// The chain's events name the container `c` in `cg`, completely, and each
/// process's ancestry names its parents with their pids and programs.
fn assert_chain(m: &mut Monitor, w: &Workload, chain: &Chain, cg: &TestCgroup, c: &Container) {
    let ev = m.expect(&format!("exec of /bin/true {}", chain.marker), WAIT, |v| {
        is_exec_of_true(v, &chain.marker)
    });
    assert_eq!(ev["cgroup_id"], cg.id, "{ev}");
    assert_eq!(ev["metadata_status"], "complete", "{ev}");
    assert_eq!(ev["container"], c.expected(&cg.rel), "{ev}");
    let me = std::env::current_exe().unwrap();
    let p = &ev["process"];
    assert_eq!(p["ppid"], chain.script, "{ev}");
    assert_eq!(
        p["ancestry"][0],
        json!({"pid": chain.script, "exe": w.script()}),
        "the script's shell: {ev}"
    );
    assert_eq!(
        p["ancestry"][1],
        json!({"pid": chain.outer, "exe": "/bin/sh"}),
        "the outer sh: {ev}"
    );
    assert_eq!(
        p["ancestry"][2],
        json!({"pid": std::process::id(), "exe": me.to_str().unwrap()}),
        "the test itself: {ev}"
    );

    // The script's own exec: its program is the script, as the kernel ran it.
    let ev = m.expect(&format!("exec of run.sh {}", chain.marker), WAIT, |v| {
        v["event"] == "exec" && v["process"]["pid"] == chain.script
    });
    assert_eq!(ev["process"]["exe"], w.script(), "{ev}");
    assert_eq!(ev["process"]["args"][0], w.script(), "{ev}");
    assert_eq!(ev["process"]["args"][2], chain.marker.as_str(), "{ev}");
    assert_eq!(ev["process"]["ppid"], chain.outer, "{ev}");
    assert_eq!(ev["metadata_status"], "complete", "{ev}");
    assert_eq!(ev["container"], c.expected(&cg.rel), "{ev}");
}

fn is_cgroup_event(v: &Value, op: &str, id: u64) -> bool {
    v["event"] == "cgroup" && v["cgroup"]["op"] == op && v["cgroup"]["id"] == id
}

/// Waits until the agent has seen `cg` made (and so watches it).
fn wait_mkdir(m: &mut Monitor, cg: &TestCgroup) {
    let ev = m.expect(&format!("mkdir of {}", cg.rel), WAIT, |v| {
        is_cgroup_event(v, "mkdir", cg.id)
    });
    assert_eq!(ev["cgroup"]["path"], cg.rel.as_str());
}

/// A child process killed and reaped when dropped, also on failure.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn containers_of_every_runtime_and_driver_are_named_with_their_ancestry() {
    if !common::kernel_tests_enabled(
        "containers_of_every_runtime_and_driver_are_named_with_their_ancestry",
    ) {
        return;
    }
    let host = HostRoot::new();
    let parent = TestCgroup::parent();
    let web = Container::docker("web", "nginx:1.27");
    let db = Container::docker("db", "postgres:16.4");
    let dns = Container::cri(
        Runtime::Containerd,
        "coredns",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        "coredns-6d4b75cb6d-w4b72",
        "kube-system",
    );
    let app = Container::cri(
        Runtime::Crio,
        "app",
        "quay.io/shop/app:2.1",
        "shop-0",
        "shop",
    );
    let layout = [
        // systemd driver and cgroupfs driver
        (&web, format!("system.slice/docker-{}.scope", web.id)),
        (&db, format!("docker/{}", db.id)),
        (&dns, kube_path(&dns, "burstable", "cri-containerd")),
        (&app, kube_path(&app, "besteffort", "crio")),
    ];
    let mut cgroups = Vec::new();
    for (c, path) in &layout {
        host.write(c);
        cgroups.push(parent.subdir(path));
    }
    // A host service beside them.
    let service = parent.subdir("system.slice/cron.service");

    // The containers exist before the agent starts: it finds them by its scan.
    let mut m = trace(&parent.path, &host, "process");
    let w = Workload::new();
    for ((c, _), cg) in layout.iter().zip(&cgroups) {
        let chain = w.run(cg, &format!("marker-{}", c.name), "", 1);
        assert_chain(&mut m, &w, &chain, cg, c);
    }

    let chain = w.run(&service, "marker-host", "", 1);
    let ev = m.expect("exec in the host service", WAIT, |v| {
        is_exec_of_true(v, "marker-host")
    });
    assert_eq!(ev["metadata_status"], "host", "{ev}");
    assert_eq!(ev["container"], Value::Null, "{ev}");
    assert_eq!(ev["process"]["ancestry"][0]["pid"], chain.script, "{ev}");
}

#[test]
fn containers_made_after_the_agent_started_are_resolved() {
    if !common::kernel_tests_enabled("containers_made_after_the_agent_started_are_resolved") {
        return;
    }
    let host = HostRoot::new();
    let parent = TestCgroup::parent();
    let mut m = trace(&parent.path, &host, "process,cgroup");
    let w = Workload::new();

    // The runtime writes its files, then makes the cgroup when it starts the container.
    let web = Container::docker("late-web", "nginx:1.27");
    host.write(&web);
    let cg = parent.subdir(&format!("system.slice/docker-{}.scope", web.id));
    wait_mkdir(&mut m, &cg);
    let chain = w.run(&cg, "late-docker", "", 1);
    assert_chain(&mut m, &w, &chain, &cg, &web);

    let dns = Container::cri(
        Runtime::Containerd,
        "late-dns",
        "registry.k8s.io/coredns/coredns:v1.11.1",
        "coredns-5d78c9869d-q2x7l",
        "kube-system",
    );
    host.write(&dns);
    let cg = parent.subdir(&kube_path(&dns, "burstable", "cri-containerd"));
    wait_mkdir(&mut m, &cg);
    let chain = w.run(&cg, "late-containerd", "", 1);
    assert_chain(&mut m, &w, &chain, &cg, &dns);
}

#[test]
fn metadata_written_after_the_cgroup_is_pending_then_complete() {
    if !common::kernel_tests_enabled("metadata_written_after_the_cgroup_is_pending_then_complete") {
        return;
    }
    let host = HostRoot::new();
    let parent = TestCgroup::parent();
    let mut m = trace(&parent.path, &host, "process,cgroup");

    let app = Container::cri(
        Runtime::Crio,
        "slow-app",
        "quay.io/shop/app:2.2",
        "shop-1",
        "shop",
    );
    let cg = parent.subdir(&kube_path(&app, "burstable", "crio"));
    wait_mkdir(&mut m, &cg);
    // Runs until killed, executing /bin/true every 100 ms.
    let looper = Running(
        cg.command("/bin/sh")
            .args(["-c", "while :; do /bin/true tick; /bin/sleep 0.1; done"])
            .spawn()
            .unwrap(),
    );
    let tick = |v: &Value| is_exec_of_true(v, "tick") && v["cgroup_id"] == cg.id;
    let ev = m.expect("an exec before the files are written", WAIT, tick);
    assert_eq!(ev["metadata_status"], "pending", "{ev}");
    // Known from the path alone: id, runtime and cgroup.
    assert_eq!(
        ev["container"],
        json!({"id": app.id, "runtime": "crio", "name": null, "image": null,
               "pod": null, "namespace": null, "cgroup": cg.rel}),
        "{ev}"
    );

    host.write(&app);
    let ev = m.expect("an exec after the files are written", WAIT, |v| {
        tick(v) && v["metadata_status"] != "pending"
    });
    assert_eq!(ev["metadata_status"], "complete", "{ev}");
    assert_eq!(ev["container"], app.expected(&cg.rel), "{ev}");
    assert_eq!(ev["process"]["ancestry"][0]["pid"], looper.0.id(), "{ev}");
    assert_eq!(ev["process"]["ancestry"][0]["exe"], "/bin/sh", "{ev}");

    // Once complete it stays complete.
    let mut later = 0;
    while later < 3 {
        let v = m
            .recv(WAIT)
            .unwrap_or_else(|| panic!("no more ticks; stderr:\n{}", m.stderr()));
        if tick(&v) {
            assert_eq!(v["metadata_status"], "complete", "{v}");
            assert_eq!(v["container"], app.expected(&cg.rel), "{v}");
            later += 1;
        }
    }
    drop(looper);
}

#[test]
fn a_removed_container_is_forgotten_and_its_reused_path_read_again() {
    if !common::kernel_tests_enabled(
        "a_removed_container_is_forgotten_and_its_reused_path_read_again",
    ) {
        return;
    }
    let host = HostRoot::new();
    let parent = TestCgroup::parent();
    let mut m = trace(&parent.path, &host, "process,cgroup");
    let w = Workload::new();

    let first = Container::docker("first", "redis:7");
    host.write(&first);
    let path = format!("system.slice/docker-{}.scope", first.id);
    let cg = parent.subdir(&path);
    wait_mkdir(&mut m, &cg);
    let chain = w.run(&cg, "reuse-first", "", 1);
    assert_chain(&mut m, &w, &chain, &cg, &first);

    // The container stops: its cgroup goes.
    let old_id = cg.id;
    cg.remove();
    m.expect("rmdir of the first cgroup", WAIT, |v| {
        is_cgroup_event(v, "rmdir", old_id)
    });

    // The same container is renamed and started again (`docker rename`,
    // `docker start`): the same id, so the same cgroup path, and new files.
    let second = Container {
        name: "second".into(),
        image: "redis:7.4".into(),
        ..first.clone()
    };
    host.write(&second);
    let cg = parent.subdir(&path);
    assert_ne!(cg.id, old_id, "the kernel gave the new cgroup a new id");
    wait_mkdir(&mut m, &cg);
    let chain = w.run(&cg, "reuse-second", "", 1);
    assert_chain(&mut m, &w, &chain, &cg, &second);
}

/// `monitor run --listen`'s `/metrics`, scraped over plain HTTP.
fn scrape(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn gauge(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}")) as u64
}

/// Polls `/metrics` until `name` is `want`; panics with the last value after [`WAIT`].
fn wait_gauge(addr: &str, name: &str, want: u64) {
    let deadline = Instant::now() + common::scaled(WAIT);
    loop {
        let got = gauge(&scrape(addr), name);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {got}, want {want}, after {:?}",
            common::scaled(WAIT)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn removed_containers_leave_the_registry() {
    if !common::kernel_tests_enabled("removed_containers_leave_the_registry") {
        return;
    }
    let host = HostRoot::new();
    let parent = TestCgroup::parent();
    let spool = common::tempdir();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let m = Monitor::start(
        &[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--cgroup",
            parent.path.to_str().unwrap(),
            "--host-root",
            host.path_str(),
            "--listen",
            "127.0.0.1:0",
            "--spool-dir",
            spool.path().to_str().unwrap(),
        ],
        "running;",
    );
    let stderr = m.stderr();
    let addr = stderr
        .lines()
        .find(|l| l.contains("metrics and health endpoints up"))
        .and_then(|l| l.split("addr=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no metrics address in:\n{stderr}"));
    let gauge_name = "monitor_containers_tracked";
    // The containers already on this machine (other tests' included) when
    // the agent started; set on the first tick, with the process count.
    let deadline = Instant::now() + common::scaled(WAIT);
    let baseline = loop {
        let metrics = scrape(&addr);
        if gauge(&metrics, "monitor_processes_tracked") > 0 {
            break gauge(&metrics, gauge_name);
        }
        assert!(Instant::now() < deadline, "no first tick:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    };

    let containers: Vec<Container> = (0..20)
        .map(|i| Container::docker(&format!("c{i}"), "busybox:1.36"))
        .collect();
    let mut cgroups = Vec::new();
    for c in &containers {
        host.write(c);
        cgroups.push(parent.subdir(&format!("system.slice/docker-{}.scope", c.id)));
    }
    // Host cgroups are not containers.
    let service = parent.subdir("system.slice/cron.service");
    wait_gauge(&addr, gauge_name, baseline + 20);

    for (c, cg) in containers.iter().zip(cgroups) {
        cg.remove();
        host.remove(c);
    }
    service.remove();
    wait_gauge(&addr, gauge_name, baseline);
    drop(m);
}

#[test]
fn a_real_docker_container_is_named() {
    if !common::kernel_tests_enabled("a_real_docker_container_is_named") {
        return;
    }
    if let Some(install) = docker::missing() {
        let required = std::env::var("MONITOR_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "a_real_docker_container_is_named needs Docker: {install}"
        );
        eprintln!("SKIPPED a_real_docker_container_is_named: Docker is missing ({install})");
        return;
    }
    let mut d = docker::Dockerd::start();
    d.import_busybox();
    // The agent reads Docker's files under the host root: the daemon's private
    // data root stands at var/lib/docker there.
    let host = HostRoot::new();
    fs::create_dir_all(host.path().join("var/lib")).unwrap();
    std::os::unix::fs::symlink(&d.data_root, host.path().join("var/lib/docker")).unwrap();
    // The cgroupfs driver puts containers in /docker/<id>: watch that (made
    // now when no container ran on this machine yet; `d` removes it then).
    let scope = common::cgroup2_mount().join("docker");
    fs::create_dir_all(&scope).unwrap();
    let mut m = trace(&scope, &host, "process");

    let name = format!("monitor-test-{}-web", std::process::id());
    // A fresh inner shell each round, started once the agent watches the
    // container's cgroup, so its exec is seen whatever the timing of the first.
    let id = d.run_detached(
        &name,
        &[
            "/bin/sh",
            "-c",
            "while :; do /bin/sh -c '/bin/true docker-marker; :'; /bin/sleep 0.2; done",
        ],
    );
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "docker run said {id:?}"
    );
    let ev = m.expect("exec of /bin/true in the container", WAIT, |v| {
        is_exec_of_true(v, "docker-marker")
            && v["container"]["id"] == id.as_str()
            && v["process"]["ancestry"][0]["exe"] == "/bin/sh"
    });
    assert_eq!(ev["metadata_status"], "complete", "{ev}");
    assert_eq!(
        ev["container"],
        json!({"id": id, "runtime": "docker", "name": name, "image": docker::IMAGE,
               "pod": null, "namespace": null, "cgroup": format!("/docker/{id}")}),
        "{ev}"
    );
    assert_eq!(
        ev["process"]["ppid"], ev["process"]["ancestry"][0]["pid"],
        "{ev}"
    );
    assert_eq!(
        ev["cgroup_id"],
        monitor::bpf::cgroupfs::cgroup_id(&scope.join(&id)).unwrap(),
        "{ev}"
    );
    d.docker_ok(&["rm", "-f", &name]);
}

/// Counts what the agent said about the containers of the churn test.
#[derive(Default)]
struct Churn {
    /// The containers' cgroup ids.
    containers: HashSet<u64>,
    mkdirs: HashSet<u64>,
    rmdirs: HashSet<u64>,
    /// cgroup id -> the `container` and `metadata_status` of its `/bin/true` execs.
    execs: HashMap<u64, Vec<(Value, Value)>>,
    lines: usize,
}

impl Churn {
    fn take(&mut self, v: Value) {
        self.lines += 1;
        if v["event"] == "cgroup" {
            let id = v["cgroup"]["id"].as_u64().unwrap();
            match v["cgroup"]["op"].as_str() {
                Some("mkdir") => self.mkdirs.insert(id),
                Some("rmdir") => self.rmdirs.insert(id),
                _ => false,
            };
        } else if v["event"] == "exec" && v["process"]["exe"] == "/bin/true" {
            let id = v["cgroup_id"].as_u64().unwrap();
            self.execs
                .entry(id)
                .or_default()
                .push((v["container"].clone(), v["metadata_status"].clone()));
        }
    }

    /// Reads lines until `done` holds.
    fn until(&mut self, m: &mut Monitor, what: &str, done: impl Fn(&Churn) -> bool) {
        let limit = common::scaled(Duration::from_secs(120));
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match m.recv(left.min(Duration::from_secs(1))) {
                Some(v) => self.take(v),
                None => assert!(
                    Instant::now() < deadline,
                    "{what}: not seen after {limit:?} ({} lines read); stderr:\n{}",
                    self.lines,
                    m.stderr()
                ),
            }
        }
    }
}

/// Processes of the workload in each container of the churn: `sh -c`, the
/// script's shell, and this many `/bin/true`.
const CHURN_BINARIES: usize = 6;

/// Makes, uses and removes `count` containers in batches of 50: state files
/// written, cgroup made, the workload run inside (eight processes, each with
/// a 900-byte argument), cgroup removed, files removed. Checks that every
/// container was named completely in each exec and that its rmdir was seen.
fn churn(
    m: &mut Monitor,
    seen: &mut Churn,
    host: &HostRoot,
    parent: &TestCgroup,
    w: &Workload,
    round: usize,
    count: usize,
) {
    const BATCH: usize = 50;
    let pad = "p".repeat(900);
    // Heavy state, as real containers often have (labels, annotations): an
    // entry the registry failed to forget would cost at least this much.
    let label = ("com.example.notes".to_owned(), "n".repeat(16 << 10));
    for b in 0..count.div_ceil(BATCH) {
        let mut batch = Vec::new();
        for i in 0..BATCH.min(count - b * BATCH) {
            let n = b * BATCH + i;
            let name = format!("r{round}-c{n}");
            let (mut c, path) = match n % 4 {
                0 => {
                    let c = Container::docker(&name, "nginx:1.27");
                    let path = format!("docker-{}.scope", c.id);
                    (c, path)
                }
                1 => {
                    let c = Container::docker(&name, "redis:7");
                    let path = format!("docker/{}", c.id);
                    (c, path)
                }
                2 => {
                    let c = Container::cri(Runtime::Containerd, &name, "app:1", "pod-a", "ns-a");
                    let path = format!("cri-containerd-{}.scope", c.id);
                    (c, path)
                }
                _ => {
                    let c = Container::cri(Runtime::Crio, &name, "app:2", "pod-b", "ns-b");
                    let path = format!("crio-{}.scope", c.id);
                    (c, path)
                }
            };
            c.labels.push(label.clone());
            host.write(&c);
            let cg = parent.subdir(&path);
            batch.push((c, cg));
        }
        let ids: Vec<u64> = batch.iter().map(|(_, cg)| cg.id).collect();
        seen.containers.extend(&ids);
        seen.until(m, "the batch's mkdirs", |s| {
            ids.iter().all(|id| s.mkdirs.contains(id))
        });
        for (c, cg) in &batch {
            w.run(cg, &c.name, &pad, CHURN_BINARIES);
        }
        seen.until(m, "the batch's execs", |s| {
            ids.iter()
                .all(|id| s.execs.get(id).is_some_and(|e| e.len() == CHURN_BINARIES))
        });
        for (c, cg) in &batch {
            for (container, status) in &seen.execs[&cg.id] {
                assert_eq!(status, "complete", "{}: {container}", c.name);
                assert_eq!(container, &c.expected(&cg.rel), "{}", c.name);
            }
        }
        for (c, cg) in batch {
            seen.execs.remove(&cg.id);
            cg.remove();
            host.remove(&c);
        }
        seen.until(m, "the batch's rmdirs", |s| {
            ids.iter().all(|id| s.rmdirs.contains(id))
        });
    }
}

#[test]
fn memory_stays_flat_over_thousands_of_containers() {
    if !common::kernel_tests_enabled("memory_stays_flat_over_thousands_of_containers") {
        return;
    }
    let host = HostRoot::new();
    let parent = TestCgroup::parent();
    let mut m = trace(&parent.path, &host, "all");
    let w = Workload::new();
    let mut seen = Churn::default();

    // Warm-up: the allocator, the maps and the buffers reach their working size.
    churn(&mut m, &mut seen, &host, &parent, &w, 0, 1000);
    let warm = vm_rss_kib(m.pid());
    churn(&mut m, &mut seen, &host, &parent, &w, 1, 1000);
    churn(&mut m, &mut seen, &host, &parent, &w, 2, 1000);
    let after = vm_rss_kib(m.pid());
    eprintln!(
        "agent VmRSS: {warm} KiB after 1,000 containers, {after} KiB after 3,000 ({} lines)",
        seen.lines
    );
    assert_eq!(seen.containers.len(), 3000);
    assert!(
        seen.containers.is_subset(&seen.rmdirs),
        "every container's rmdir was seen"
    );
    // The margin: allocator slack and the decoded events in flight, which the
    // batches bound (the test waits for each batch's lines, about 1,500
    // events, before the next). A leak is far larger: entries the registry
    // kept would cost 16 KiB of labels for three containers in four (some 24
    // MiB over 2,000 containers), and exited processes the table kept would
    // cost 16,000 entries of about 1 KiB of arguments each (some 8 MiB;
    // measured here as steady growth before the table forgot them).
    const MARGIN_KIB: u64 = 4 * 1024;
    assert!(
        after <= warm + MARGIN_KIB,
        "the agent grew from {warm} KiB to {after} KiB over 2,000 more containers"
    );
    let stderr = m.stop();
    assert!(
        stderr.contains("lost_total=0"),
        "events were lost:\n{stderr}"
    );
}
