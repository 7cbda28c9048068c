//! The agent started the way the DaemonSet starts it: `monitor run --config
//! FILE`, the host's `/` under a host root (`/host` in the pod; a temporary
//! directory of links here), in a cgroup namespace of its own as a pod on a
//! cgroup v2 node has, a webhook URL and signing key read from secret files,
//! and the health endpoints on. A process named sshd in a cgroup named like a
//! Docker container must reach a local webhook receiver as a signed alert
//! naming the container, and /healthz and /readyz must answer 200.
//! Run as root (`cargo xtask test`).
mod common;

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use common::{Monitor, TestCgroup, kernel_tests_enabled, tempdir};
use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;

/// The container whose real Docker state files are in testdata.
const ID: &str = "43f0f7a7161b170c4666003296a36c6faae295016849ff5416d67a524e17703c";
const KEY: &[u8] = b"kernel-deploy-test-signing-key!!";

#[derive(Default)]
struct Received {
    /// (webhook-id header, alert) of every correctly signed request.
    alerts: Mutex<Vec<(String, Value)>>,
    bad_signatures: Mutex<u32>,
}

/// The Standard Webhooks check a receiver does (as in tests/delivery.rs).
fn verify(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sig) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if id.is_empty() || ts.parse::<u64>().ok()?.abs_diff(now) > 300 {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    sig.split(' ').any(|s| s == want).then(|| id.to_owned())
}

async fn receive(State(r): State<Arc<Received>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(id) = verify(&headers, &body) else {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    r.alerts.lock().unwrap().push((id, v));
    StatusCode::NO_CONTENT
}

/// Starts the receiver on its own runtime thread; returns its address.
fn start_receiver(received: Arc<Received>) -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(received);
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rt)
}

fn health(url: &str) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["health", "--url", url])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn daemonset_style_agent_delivers_a_signed_alert_for_sshd_in_a_container() {
    if !kernel_tests_enabled(
        "daemonset_style_agent_delivers_a_signed_alert_for_sshd_in_a_container",
    ) {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");

    // The host root, laid out as the DaemonSet mounts it under /host.
    let host = tempdir();
    let root = host.path();
    std::os::unix::fs::symlink("/proc", root.join("proc")).unwrap();
    std::os::unix::fs::symlink("/sys", root.join("sys")).unwrap();
    for d in ["run/containerd", "run/containers", "var/lib/containers"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let state = root.join("var/lib/docker/containers").join(ID);
    std::fs::create_dir_all(&state).unwrap();
    let fixture = repo
        .join("monitor/testdata/runtime/host/var/lib/docker/containers")
        .join(ID);
    for f in ["config.v2.json", "hostconfig.json"] {
        std::fs::copy(fixture.join(f), state.join(f)).unwrap();
    }

    // Secrets as the Secret volume holds them, and the configuration.
    let received = Arc::new(Received::default());
    let (addr, _rt) = start_receiver(received.clone());
    let etc = tempdir();
    let secrets = etc.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("webhook-url"), format!("http://{addr}/hook\n")).unwrap();
    std::fs::write(
        secrets.join("webhook-signing-key"),
        format!("whsec_{}\n", B64.encode(KEY)),
    )
    .unwrap();
    let watched = TestCgroup::new(&format!("system.slice/docker-{ID}.scope"));
    let scope = watched.path.parent().unwrap().parent().unwrap();
    let config = etc.path().join("monitor.yaml");
    std::fs::write(
        &config,
        format!(
            "# As deploy/kubernetes/monitor.yaml, with the host root, the port and the scope of this test.
host_root: {root}
rules: [{rules}]
listen: 127.0.0.1:0
spool_dir: {spool}
log: info
webhook:
  - {{file: secrets/webhook-url}}
webhook_secret_file: secrets/webhook-signing-key
dedup_window: 1s
# This machine is shared: watch this test's cgroups only.
cgroup: [{scope}]
",
            root = root.display(),
            rules = repo.join("rules").display(),
            spool = etc.path().join("spool").display(),
            scope = scope.display(),
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // The agent in a cgroup of its own and a private cgroup namespace, as in a pod.
    let pod = TestCgroup::new("agent-pod");
    let mut cmd = pod.command("/usr/bin/unshare");
    cmd.args(["--cgroup", env!("CARGO_BIN_EXE_monitor"), "run", "--config"])
        .arg(&config);
    let mut m = Monitor::start_with(&mut cmd, "running; alerts go to");
    let stderr = m.stderr();
    assert!(
        stderr.contains("joined the host's cgroup namespace"),
        "the agent must leave the pod's cgroup namespace:\n{stderr}"
    );
    let health_addr = stderr
        .lines()
        .find(|l| l.contains("metrics and health endpoints up"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no listen address in:\n{stderr}"))
        .to_owned();
    let (ok, body) = health(&format!("http://{health_addr}/readyz"));
    assert!(ok, "/readyz: {body}");

    // sshd, run from a directory that looks like an image's /usr/sbin.
    let bin = tempdir();
    let sshd = bin.path().join("usr/sbin/sshd");
    std::fs::create_dir_all(sshd.parent().unwrap()).unwrap();
    std::fs::copy("/bin/true", &sshd).unwrap();
    let pid = watched.run(sshd.to_str().unwrap(), &["-D"], None);

    // On stdout (the pod's log)...
    let line = m.expect(
        "the ssh-server alert on stdout",
        Duration::from_secs(15),
        |v| v["rule"] == "ssh-server" && v["process"]["pid"] == pid,
    );
    // ...and at the webhook, signed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (hook_id, alert) = loop {
        let found = received
            .alerts
            .lock()
            .unwrap()
            .iter()
            .find(|(_, a)| a["rule"] == "ssh-server" && a["process"]["pid"] == pid)
            .cloned();
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no signed ssh-server alert at the webhook; bad signatures: {}; stderr:\n{}",
            received.bad_signatures.lock().unwrap(),
            m.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(*received.bad_signatures.lock().unwrap(), 0);
    assert_eq!(
        hook_id,
        alert["id"].as_str().unwrap(),
        "webhook-id is the alert id"
    );
    assert_eq!(alert["id"], line["id"], "the same alert on both sinks");
    assert_eq!(alert["schema"], "monitor.alert/v1");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["process"]["exe"], sshd.to_str().unwrap());
    let c = &alert["container"];
    assert_eq!(c["id"], ID);
    assert_eq!(c["runtime"], "docker");
    assert_eq!(c["name"], "debug", "read from the host root's Docker state");
    assert_eq!(c["image"], "alpine:3.20");
    // The cgroup path is the host's, not relative to the agent's namespace.
    assert_eq!(c["cgroup"], watched.rel.as_str());

    let (ok, body) = health(&format!("http://{health_addr}/healthz"));
    assert!(ok, "/healthz: {body}");
    let (ok, body) = health(&format!("http://{health_addr}/readyz"));
    assert!(ok, "/readyz: {body}");
    let stderr = m.stop();
    assert!(!stderr.contains("ERROR"), "{stderr}");
}
