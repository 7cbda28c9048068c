//! TLS and timeouts of the HTTP sinks against real loopback endpoints: an
//! HTTPS receiver whose certificates come from a CA made at test time
//! (rcgen), one that requires client certificates (mutual TLS), and
//! endpoints that refuse, drop or never answer.
//!
//! What matters each time is that an alert is never lost to a TLS or network
//! problem: it stays in the spool, is retried, and arrives once the problem
//! is fixed. Assertions are on counters and on what the receiver got, never
//! on how long something took.
mod common;

use std::{
    process::{Command, Stdio},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use common::delivery::{
    Hook, Receiver, Seen, SilentPort, TestCa, UnreachablePort, alert, assert_clean, ids,
    secret_file, server_tls, start, wait_until,
};
use monitor::{
    alert::Alert,
    metrics::Metrics,
    sink::{Format, HttpTarget, Outcome, SinkError, Sinks, SinksOptions, TlsConfig, http::Deliver},
};

/// Generous: the machine is shared; waits end as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(30);

/// One attempt to deliver `alert(0)` with `hook`'s settings, outside any sink.
async fn one_attempt(hook: &Hook) -> Outcome {
    let target = HttpTarget::new(
        &hook.http(),
        Format::Generic(monitor::sink::AlertFormat::Native),
        None,
        1,
    )
    .expect("valid settings");
    let record = Bytes::from(serde_json::to_vec(&alert(0)).unwrap());
    target.send(vec![record]).await
}

fn retry_reason(outcome: Outcome) -> String {
    match outcome {
        Outcome::Retry { reason, .. } => reason,
        other => panic!("a transport failure is retried, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_test_ca_in_ca_file_delivers_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test");
    let key: Vec<u8> = (100..132u8).collect();
    let seen = Seen::signed(&key);
    let tls = server_tls(&ca.server(), None);
    let r = Receiver::start_tls(seen.clone(), "127.0.0.1:0".parse().unwrap(), tls).await;
    assert!(r.url().starts_with("https://127.0.0.1:"));
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h = Hook::new(r.url(), dir.path().join("s"));
    h.secret = Some(secret_file(dir.path(), &key));
    h.tls.ca_file = Some(ca.ca_file.clone());
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..20).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(WAIT, "20 deliveries over HTTPS", || {
        m.delivered_total() == 20
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen.ids(), ids(&sent), "every alert once, in order");
    assert_eq!(seen.bad_signatures(), 0);
    assert_eq!(
        *seen.message_ids.lock().unwrap(),
        ids(&sent),
        "webhook-id is the alert id"
    );
    assert_eq!(m.retried_total(), 0);
    assert!(seen.tls_failures().is_empty(), "{:?}", seen.tls_failures());
    assert_clean(&m);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate_is_retried_and_spooled_until_the_ca_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test");
    let seen = Arc::new(Seen::default());
    let tls = server_tls(&ca.server(), None);
    let r = Receiver::start_tls(seen.clone(), "127.0.0.1:0".parse().unwrap(), tls).await;
    let spool = dir.path().join("s");
    let mut h = Hook::new(r.url(), spool.clone());

    // Without the CA the server's certificate is unknown: a certificate
    // error, retried like any transport failure (the operator may be about
    // to install the CA), never a permanent refusal that drops the alert.
    let reason = retry_reason(one_attempt(&h).await);
    assert!(
        reason.contains("certificate") && reason.contains("UnknownIssuer"),
        "{reason}"
    );

    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..10).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(WAIT, "all 10 spooled and 3 retries", || {
        m.spooled_now() == 10 && m.queued_now() == 0 && m.retried_total() >= 3
    })
    .await;
    sinks.shutdown(Duration::from_millis(200)).await;
    assert_eq!(m.delivered_total(), 0);
    assert_clean(&m);
    assert_eq!(
        seen.requests(),
        0,
        "no request crossed an untrusted connection"
    );
    assert!(
        !seen.tls_failures().is_empty(),
        "the server saw the client abort the handshake"
    );

    // The operator adds the CA and restarts: the same spool delivers all.
    h.tls.ca_file = Some(ca.ca_file.clone());
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let m = metrics.sink("hook");
    wait_until(WAIT, "10 deliveries once the CA is set", || {
        m.delivered_total() == 10
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen.ids(), ids(&sent), "every alert once, in order");
    assert_eq!(m.spooled_now(), 0);
    assert_clean(&m);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_the_server_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test");
    let stranger = TestCa::new(dir.path(), "stranger");
    let seen = Arc::new(Seen::default());
    let tls = server_tls(&ca.server(), Some(&ca));
    let r = Receiver::start_tls(seen.clone(), "127.0.0.1:0".parse().unwrap(), tls).await;
    let spool = dir.path().join("s");
    let mut h = Hook::new(r.url(), spool.clone());
    h.tls.ca_file = Some(ca.ca_file.clone());

    // No client certificate, then one from a CA the server does not trust:
    // the server refuses both handshakes, the sink retries.
    let foreign = stranger.client("agent");
    for (what, cert) in [("none", None), ("a stranger's", Some(&foreign))] {
        h.tls.client_cert = cert.map(|c| c.cert_file.clone());
        h.tls.client_key = cert.map(|c| c.key_file.clone());
        let before = seen.tls_failures().len();
        let reason = retry_reason(one_attempt(&h).await);
        // The server records its refusal after sending it.
        wait_until(
            WAIT,
            &format!("{what}: the server refused ({reason})"),
            || seen.tls_failures().len() > before,
        )
        .await;
        let failures = seen.tls_failures();
        eprintln!("client certificate {what}: agent: {reason}; server: {failures:?}");
    }
    assert_eq!(seen.requests(), 0);

    // Through a sink: spooled and retried, not dropped.
    h.tls.client_cert = None;
    h.tls.client_key = None;
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..5).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(WAIT, "5 spooled and 3 retries", || {
        m.spooled_now() == 5 && m.retried_total() >= 3
    })
    .await;
    sinks.shutdown(Duration::from_millis(200)).await;
    assert_eq!(m.delivered_total(), 0);
    assert_eq!(
        seen.requests(),
        0,
        "no request without a client certificate"
    );
    assert_clean(&m);

    // With the certificate the server's CA signed, everything arrives.
    let mine = ca.client("agent");
    h.tls.client_cert = Some(mine.cert_file.clone());
    h.tls.client_key = Some(mine.key_file.clone());
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let m = metrics.sink("hook");
    wait_until(WAIT, "5 deliveries with the client certificate", || {
        m.delivered_total() == 5
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen.ids(), ids(&sent));
    assert_clean(&m);
    r.stop().await;
}

/// Each endpoint holds the first attempt forever unless the right timeout
/// ends it; the other timeout is set far beyond the wait, so only the one
/// under test can make the retry counter grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_endpoints_are_bounded_by_the_connect_and_request_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let never = Duration::from_secs(3600);
    let short = Duration::from_millis(200);
    // SYNs dropped: the TCP connect never completes.
    let unreachable = UnreachablePort::new();
    // Accepts and never says a word: no HTTP answer, no TLS server hello.
    let silent = SilentPort::new();
    let cases = [
        (
            "connect",
            format!("http://{}/hook", unreachable.addr),
            short,
            never,
        ),
        (
            "request",
            format!("http://{}/hook", silent.addr),
            never,
            short,
        ),
        (
            "tls-handshake",
            format!("https://{}/hook", silent.addr),
            short,
            never,
        ),
    ];
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut configs = Vec::new();
    for (name, url, connect, request) in &cases {
        let mut h = Hook::new(url.clone(), dir.path().join(name));
        h.connect_timeout = *connect;
        h.request_timeout = *request;
        configs.push(h.config(name));
    }
    let sinks = start(configs, &metrics, dir.path());
    let a = alert(0);
    sinks.dispatch(&a);
    for (name, ..) in &cases {
        let m = metrics.sink(name);
        wait_until(WAIT, &format!("{name}: 3 attempts cut short"), || {
            m.retried_total() >= 3
        })
        .await;
        assert_eq!(m.delivered_total(), 0, "{name}");
        assert_eq!(m.spooled_now(), 1, "{name}: the alert waits in the spool");
        assert_clean(&m);
    }
    assert!(silent.accepted.load(Ordering::SeqCst) >= 6);
    sinks.shutdown(Duration::from_millis(100)).await;

    // What the agent logs says which limit ended the attempt.
    for (name, url, connect, request) in &cases {
        let mut h = Hook::new(url.clone(), dir.path().join("probe"));
        h.connect_timeout = *connect;
        h.request_timeout = *request;
        let reason = retry_reason(one_attempt(&h).await);
        // hyper's connector says "deadline has elapsed", reqwest "timed out".
        assert!(
            reason.contains("timed out") || reason.contains("deadline has elapsed"),
            "{name}: {reason}"
        );
        eprintln!("{name}: {reason}");
    }
}

fn start_err(h: &Hook, dir: &std::path::Path) -> String {
    let metrics = Metrics::new(Duration::from_secs(10));
    match Sinks::start(
        vec![h.config("hook")],
        SinksOptions {
            host: "test-node".into(),
            spool_dir: dir.to_owned(),
        },
        metrics,
    ) {
        Ok(_) => panic!("the sink started with {:?}", h.tls),
        Err(e @ SinkError::Config(_)) => e.to_string(),
        Err(e) => panic!("not a configuration error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test");
    let client = ca.client("agent");
    let other = ca.client("other");
    let mut h = Hook::new("https://127.0.0.1:9/hook".into(), dir.path().join("s"));

    // A CA file with no certificate in it (a key, a DER file, an empty
    // file) would trust nothing extra, silently.
    for (what, file) in [
        ("a key", client.key_file.clone()),
        ("an empty file", dir.path().join("empty.pem")),
    ] {
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        h.tls = TlsConfig {
            ca_file: Some(file.clone()),
            ..Default::default()
        };
        let e = start_err(&h, dir.path());
        assert!(
            e.contains(file.to_str().unwrap()) && e.contains("no certificate"),
            "{what}: {e}"
        );
    }
    h.tls = TlsConfig {
        ca_file: Some(dir.path().join("missing.pem")),
        ..Default::default()
    };
    assert!(start_err(&h, dir.path()).contains("missing.pem"));

    // Half a client identity, and a key that is not the certificate's.
    h.tls = TlsConfig {
        client_cert: Some(client.cert_file.clone()),
        ..Default::default()
    };
    assert!(start_err(&h, dir.path()).contains("client_key"));
    h.tls = TlsConfig {
        client_cert: Some(client.cert_file.clone()),
        client_key: Some(other.key_file.clone()),
        ..Default::default()
    };
    let e = start_err(&h, dir.path());
    assert!(
        e.contains(&format!(
            "tls.client_key {} is not the private key of tls.client_cert {}",
            other.key_file.display(),
            client.cert_file.display()
        )),
        "{e}"
    );

    // The right pair starts.
    h.tls = TlsConfig {
        ca_file: Some(ca.ca_file.clone()),
        client_cert: Some(client.cert_file.clone()),
        client_key: Some(client.key_file.clone()),
    };
    let metrics = Metrics::new(Duration::from_secs(10));
    start(vec![h.config("hook")], &metrics, dir.path()).abort();
}

const NO_ROOTS_CHILD: &str = "MONITOR_DELIVERY_TLS_TEST_NO_ROOTS_CHILD";

/// The child of `a_machine_without_ca_certificates_still_delivers_over_http`
/// (a no-op otherwise): runs with `SSL_CERT_FILE` naming an empty file, as
/// on a minimal image without a CA bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_roots_child_process() {
    let Ok(dir) = std::env::var(NO_ROOTS_CHILD) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let ca = TestCa::new(&dir, "test");
    let seen = Arc::new(Seen::default());
    let plain = Receiver::start(seen.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let tls = server_tls(&ca.server(), None);
    let secure = Receiver::start_tls(seen.clone(), "127.0.0.1:0".parse().unwrap(), tls).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut https = Hook::new(secure.url(), dir.join("https"));
    https.tls.ca_file = Some(ca.ca_file.clone());
    let sinks = start(
        vec![
            Hook::new(plain.url(), dir.join("http")).config("http"),
            https.config("https"),
        ],
        &metrics,
        &dir,
    );
    let sent: Vec<Alert> = (0..3).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let (h, s) = (metrics.sink("http"), metrics.sink("https"));
    wait_until(WAIT, "3 deliveries on each sink", || {
        h.delivered_total() == 3 && s.delivered_total() == 3
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    // HTTPS with neither system roots nor a CA file cannot verify anything:
    // refused at start, saying what to change.
    let e = start_err(&Hook::new(secure.url(), dir.join("none")), &dir);
    assert!(e.contains("ca_file") && e.contains("CA"), "{e}");
    println!("NO ROOTS OK: {e}");
    plain.stop().await;
    secure.stop().await;
}

#[test]
fn a_machine_without_ca_certificates_still_delivers_over_http() {
    if std::env::var(NO_ROOTS_CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-roots.pem");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_roots_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NO_ROOTS_CHILD, dir.path())
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("NO ROOTS OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
