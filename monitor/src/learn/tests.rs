use std::{fs, path::Path};

use super::{render::generalise, *};
use crate::{
    context::{Ancestor, ContainerInfo, MetadataStatus, ProcessInfo},
    event::{Event, EventHeader, ExecInfo, Family, FileInfo, NetworkInfo, Protocol as Proto},
    policy::{Evaluator, check_dir},
};

fn shop(name: &str) -> ContainerInfo {
    ContainerInfo {
        id: Some(format!("{name}-id")),
        runtime: Some("docker".into()),
        name: Some(name.into()),
        image: Some("shop/api:3".into()),
        pod: None,
        namespace: None,
        cgroup: Some(format!("/docker/{name}")),
    }
}

fn event(container: &ContainerInfo, exe: &str, parent: &str, body: EventBody) -> EnrichedEvent {
    EnrichedEvent {
        event: Event {
            header: EventHeader {
                ktime_ns: 1,
                pid: 100,
                tid: 100,
                uid: 0,
                gid: 0,
                cgroup_id: 7,
                comm: exe.rsplit('/').next().unwrap().into(),
            },
            body,
        },
        process: ProcessInfo {
            pid: 100,
            ppid: Some(99),
            uid: 0,
            comm: exe.rsplit('/').next().unwrap().into(),
            exe: Some(exe.into()),
            args: vec![],
            ancestry: vec![Ancestor {
                pid: 99,
                exe: Some(parent.into()),
            }],
        },
        container: Some(container.clone()),
        metadata_status: MetadataStatus::Complete,
        metadata: None,
        origin: None,
    }
}

fn exec(c: &ContainerInfo, exe: &str, parent: &str) -> EnrichedEvent {
    event(
        c,
        exe,
        parent,
        EventBody::Exec(ExecInfo {
            filename: exe.into(),
            args: vec![exe.into()],
            args_truncated: false,
            ppid: 99,
            cwd: None,
            action: None,
            exe_inode: None,
        }),
    )
}

fn write(c: &ContainerInfo, path: &str) -> EnrichedEvent {
    event(
        c,
        "/usr/bin/python3",
        "/bin/sh",
        EventBody::File(FileInfo {
            op: FileOp::Open,
            path: path.into(),
            target: None,
            flags: vec!["O_WRONLY", "O_CREAT"],
            mode: None,
            result: 3,
            requested_path: None,
            truncated: false,
            action: None,
            inode: None,
        }),
    )
}

fn connect(c: &ContainerInfo, daddr: &str, port: u16, dns: Option<&str>) -> EnrichedEvent {
    event(
        c,
        "/usr/bin/python3",
        "/bin/sh",
        EventBody::Network(NetworkInfo {
            op: NetOp::Connect,
            protocol: Proto::Tcp,
            family: Family::Ipv4,
            daddr: daddr.parse().unwrap(),
            dport: port,
            dns: dns.map(Into::into),
            action: None,
        }),
    )
}

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// The workload's normal behaviour, from two replicas.
fn learn_shop(learner: &mut Learner) {
    for (i, c) in [shop("shop-1"), shop("shop-2")].iter().enumerate() {
        let t = format!("2026-12-04T10:00:0{i}Z");
        learner.observe(&exec(c, "/usr/bin/python3", "/bin/sh"), &t);
        learner.observe(&write(c, "/var/cache/shop/page-1.html"), &t);
        learner.observe(&connect(c, "192.0.2.10", 443, Some("api.allowed.test")), &t);
        learner.observe(&connect(c, "198.51.100.7", 5432, None), &t);
    }
}

#[test]
fn replicas_merge_into_one_workload_with_counts() {
    let mut learner = Learner::default();
    learn_shop(&mut learner);
    assert_eq!(learner.workloads.len(), 1);
    let (w, l) = learner.workloads.iter().next().unwrap();
    assert_eq!(w.label(), "image/shop/api");
    assert_eq!(l.containers.len(), 2);
    let s = &l.processes[&("/usr/bin/python3".to_owned(), Some("/bin/sh".to_owned()))];
    assert_eq!(
        (s.count, s.first.as_str(), s.last.as_str()),
        (2, "2026-12-04T10:00:00Z", "2026-12-04T10:00:01Z")
    );
    assert_eq!(l.events, 8);
}

#[test]
fn learned_rules_pass_check_and_flag_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut learner = Learner::default();
    learn_shop(&mut learner);
    let written = state::write(dir.path(), &learner.workloads).unwrap();
    assert_eq!(
        written,
        [state::Written::File(dir.path().join("image-shop-api.yaml"))]
    );
    let text = fs::read_to_string(dir.path().join("image-shop-api.yaml")).unwrap();
    assert!(
        text.contains("# seen 2 times, first 2026-12-04T10:00:00Z, last 2026-12-04T10:00:01Z"),
        "{text}"
    );
    assert!(text.contains(r#"- dns: ["api.allowed.test"]"#), "{text}");
    assert!(text.contains(r#"- to: ["198.51.100.7/32"]"#), "{text}");
    assert!(text.contains(r#"- "/var/cache/shop/**""#), "{text}");

    // The learned rules (they extend the shipped `egress` rule's policy):
    // what was learned is quiet, the new is not.
    let rules = check_dir(&[shipped(), dir.path().to_path_buf()])
        .unwrap_or_else(|d| panic!("{d:?}\n{text}"));
    let mut ev = Evaluator::new(rules);
    let c = shop("shop-3");
    let mut out = Vec::new();
    for e in [
        exec(&c, "/usr/bin/python3", "/bin/sh"),
        write(&c, "/var/cache/shop/page-9.html"),
        connect(&c, "192.0.2.99", 443, Some("api.allowed.test")),
        connect(&c, "198.51.100.7", 5432, None),
    ] {
        ev.evaluate(&e, &mut out);
    }
    assert!(out.is_empty(), "learned behaviour flagged: {out:#?}");
    for e in [
        exec(&c, "/usr/bin/curl", "/bin/sh"),
        write(&c, "/etc/cron.d/x"),
        connect(&c, "203.0.113.5", 443, Some("evil.test")),
    ] {
        ev.evaluate(&e, &mut out);
    }
    let mut rules: Vec<&str> = out.iter().map(|f| &*f.rule).collect();
    rules.sort_unstable();
    // The write to /etc is the pack's protected write as well; the new
    // destination is the learned rule's alert alone.
    assert!(rules.contains(&render::PROCESS_RULE), "{out:#?}");
    assert!(rules.contains(&render::WRITE_RULE), "{out:#?}");
    assert!(rules.contains(&render::EGRESS_RULE), "{out:#?}");
    assert!(
        !rules.contains(&"egress"),
        "the learned rule judges: {out:#?}"
    );
}

#[test]
fn a_second_run_merges_and_an_edited_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Learner::default();
    learn_shop(&mut first);
    state::write(dir.path(), &first.workloads).unwrap();
    let path = dir.path().join("image-shop-api.yaml");

    let mut second = Learner::default();
    let c = shop("shop-1");
    second.observe(
        &exec(&c, "/usr/bin/gunicorn", "/bin/sh"),
        "2026-12-05T09:00:00Z",
    );
    state::write(dir.path(), &second.workloads).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("/usr/bin/gunicorn") && text.contains("/usr/bin/python3"),
        "{text}"
    );
    assert!(text.contains("last 2026-12-05T09:00:00Z"), "{text}");

    // A person edits it; the next run writes beside it.
    let edited = text.replace("/usr/bin/gunicorn", "/usr/local/bin/gunicorn");
    fs::write(&path, &edited).unwrap();
    let written = state::write(dir.path(), &second.workloads).unwrap();
    assert_eq!(
        written,
        [state::Written::Beside(
            dir.path().join("image-shop-api.yaml.new")
        )]
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), edited);
    // And keeps doing so: the edit is not forgotten.
    let written = state::write(dir.path(), &second.workloads).unwrap();
    assert!(matches!(written[0], state::Written::Beside(_)));
}

#[test]
fn many_directories_generalise_to_their_parents() {
    let mut dirs = BTreeMap::new();
    for i in 0..40 {
        dirs.insert(
            format!("/var/lib/app/sessions/{i}"),
            Seen {
                count: 1,
                first: "a".into(),
                last: "b".into(),
            },
        );
    }
    dirs.insert(
        "/tmp".into(),
        Seen {
            count: 2,
            first: "a".into(),
            last: "c".into(),
        },
    );
    let g = generalise(&dirs, 4);
    let keys: Vec<&str> = g.keys().map(String::as_str).collect();
    assert_eq!(keys, ["/tmp", "/var/lib/app/sessions"]);
    assert_eq!(g["/var/lib/app/sessions"].count, 40);
    assert_eq!(generalise(&dirs, 100).len(), 41);
}

#[test]
fn host_processes_teach_nothing() {
    let mut learner = Learner::default();
    let mut e = exec(&shop("x"), "/usr/bin/python3", "/bin/sh");
    e.container = None;
    learner.observe(&e, "2026-12-04T10:00:00Z");
    assert!(learner.workloads.is_empty());
}
