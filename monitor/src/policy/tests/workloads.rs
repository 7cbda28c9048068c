//! Workload policies: allowlists, metadata that arrives late, selection,
//! reloads, and the README's examples.
use super::*;

#[test]
fn allowed_workload_behaviour_raises_nothing() {
    let mut ev = with_nginx_policy();
    let entry = web().parent("/usr/bin/containerd-shim-runc-v2");
    let sh = web().by("/bin/sh").parent("/docker-entrypoint.sh");
    let nginx = web().by("/usr/sbin/nginx").parent("/docker-entrypoint.sh");
    let events = [
        entry.exec("/docker-entrypoint.sh", &["/docker-entrypoint.sh", "nginx"]),
        web().exec(
            "/bin/sh",
            &[
                "sh",
                "-c",
                "/docker-entrypoint.d/20-envsubst-on-templates.sh",
            ],
        ),
        sh.exec("/docker-entrypoint.d/20-envsubst-on-templates.sh", &[]),
        sh.write("/etc/nginx/conf.d/default.conf"),
        web()
            .parent("/bin/sh")
            .exec("/usr/bin/envsubst", &["envsubst"]),
        web()
            .parent("/docker-entrypoint.sh")
            .exec("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"]),
        nginx.write("/var/cache/nginx/client_temp/0001"),
        nginx.write("/tmp/nginx.pid"),
        nginx.file(
            FileOp::Rename,
            "/var/cache/nginx/a",
            Some("/var/cache/nginx/b"),
            &[],
            0,
        ),
        nginx.connect("10.0.3.4", 8080, Protocol::Tcp),
        nginx.connect("10.0.3.5", 5432, Protocol::Tcp),
        nginx.connect("10.96.0.10", 53, Protocol::Udp),
        nginx.connect("127.0.0.1", 8081, Protocol::Tcp),
    ];
    let out = run(&mut ev, &events);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn workload_allowlists_judge_what_is_not_on_them() {
    let mut ev = with_nginx_policy();
    let cases: &[(EnrichedEvent, &[&str])] = &[
        // Not on the allowlist, on no deny list.
        (
            web().exec("/usr/bin/perl", &["perl"]),
            &["unexpected-process"],
        ),
        // On a deny list too: both say so.
        (
            web().exec("/usr/sbin/sshd", &["sshd"]),
            &["ssh-server", "unexpected-process"],
        ),
        // A shell from the wrong parent: not allowlisted, so the shell rule fires as well.
        (
            web().parent("/usr/sbin/nginx").exec("/bin/bash", &["bash"]),
            &["shell", "unexpected-process"],
        ),
        // Egress to the cluster on an undeclared port.
        (
            web().connect("10.0.3.4", 22, Protocol::Tcp),
            &["unexpected-egress"],
        ),
        (
            web().connect("8.8.8.8", 443, Protocol::Tcp),
            &["egress", "unexpected-egress"],
        ),
        // The exception covers conf.d only.
        (web().write("/etc/nginx/nginx.conf"), &["protected-write"]),
        // Other images keep the shipped behaviour only.
        (db().exec("/usr/bin/perl", &["perl"]), &[]),
        (db().write("/etc/nginx/conf.d/x.conf"), &["protected-write"]),
    ];
    for (e, want) in cases {
        let out = run(&mut ev, std::slice::from_ref(e));
        let mut got = rules_of(&out);
        got.sort_unstable();
        assert_eq!(got, *want, "{:?}", e.event.body);
    }
}

#[test]
fn pending_metadata_is_still_a_container() {
    let mut ev = shipped_evaluator();
    let mut w = web();
    w.status = MetadataStatus::Pending;
    w.container = Some(ContainerInfo {
        id: Some("ab".repeat(32)),
        ..ContainerInfo::default()
    });
    let out = run(&mut ev, &[w.exec("/usr/sbin/sshd", &["sshd"])]);
    assert_eq!(rules_of(&out), ["ssh-server"]);
    assert_eq!(
        out[0].summary,
        "denied process /usr/sbin/sshd in container abababababab"
    );
}

#[test]
fn selection_follows_what_is_known_of_the_container() {
    // The evaluator remembers which policies select a cgroup's workload; what
    // it remembers must change as soon as the event shows another workload.
    let mut ev = with_nginx_policy();
    let perl = |ev: &mut Evaluator, a: Actor| {
        let out = run(ev, &[a.exec("/usr/bin/perl", &["perl"])]);
        rules_of(&out)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut pending = web();
    pending.status = MetadataStatus::Pending;
    pending.container = Some(ContainerInfo {
        id: Some("3f9c".repeat(16)),
        ..ContainerInfo::default()
    });
    // No image known: the nginx policy does not select it yet.
    assert!(perl(&mut ev, pending.clone()).is_empty());
    // The same cgroup once the runtime's files are read.
    assert_eq!(perl(&mut ev, web()), ["unexpected-process"]);
    // Another workload in the same cgroup id (the id reused).
    let mut other = db();
    other.cgroup = web().cgroup;
    assert!(perl(&mut ev, other).is_empty());
    assert_eq!(perl(&mut ev, web()), ["unexpected-process"]);
    assert!(perl(&mut ev, pending).is_empty());
    // Removed and made again: selected afresh.
    let rmdir = host("/usr/lib/systemd/systemd").event(EventBody::Cgroup(CgroupChange {
        op: CgroupOp::Rmdir,
        id: web().cgroup,
        level: 2,
        path: "/kubepods.slice/cri-containerd-3f9c.scope".into(),
    }));
    assert!(run(&mut ev, &[rmdir]).is_empty());
    assert_eq!(perl(&mut ev, web()), ["unexpected-process"]);
}

#[test]
fn replacing_rules_keeps_what_containers_wrote() {
    let mut ev = shipped_evaluator();
    let w = web();
    assert!(run(&mut ev, &[w.write("/tmp/p")]).is_empty());
    ev.replace_rules(check_dir(&[shipped()]).unwrap());
    assert_eq!(rules_of(&run(&mut ev, &[w.exec("/tmp/p", &[])])), ["drift"]);
}

#[test]
fn readme_examples_load() {
    let readme = fs::read_to_string(shipped().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    let files: Vec<&String> = blocks
        .iter()
        .filter(|b| {
            b.lines()
                .find(|l| !l.trim_start().starts_with('#'))
                .is_some_and(|l| l.starts_with("networks:") || l.starts_with("policies:"))
        })
        .collect();
    assert!(files.len() >= 3, "{} whole-file examples", files.len());
    for (i, text) in files.iter().enumerate() {
        let user = tempfile::tempdir().unwrap();
        fs::write(user.path().join(format!("{i}.yaml")), text).unwrap();
        if let Err(diags) = check_dir(&[shipped(), user.path().to_path_buf()]) {
            panic!("README example {i}:\n{text}\n{diags:#?}");
        }
    }
}
