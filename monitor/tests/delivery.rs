//! Delivery against real receivers on loopback: a local HTTP receiver that
//! verifies every Standard Webhooks signature (`common::delivery`), a real
//! Prometheus Alertmanager, and `promtool check metrics`. TLS and timeouts
//! are in `delivery_tls.rs`, the agent-level tests in `kernel_delivery.rs`.
//!
//! The Alertmanager and promtool tests need the Debian packages
//! `prometheus-alertmanager` and `prometheus`; with `CI=true` they fail when
//! the binaries are missing, otherwise they skip loudly.
mod common;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use common::delivery::{
    Alertmanager, Hook, PROMTOOL, Receiver, Seen, alert, assert_clean, free_port, ids, need_tool,
    promtool_check, secret_file, start, wait_until,
};
use monitor::{
    alert::Alert,
    metrics::Metrics,
    sink::{HttpSinkConfig, SinkConfig, SinkKind},
};
use serde_json::Value;

fn seen_ids(seen: &Seen) -> Vec<String> {
    seen.ids()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_once_each_in_order_with_valid_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let key: Vec<u8> = (0..32u8).collect();
    let secret = secret_file(dir.path(), &key);
    let single = Arc::new(Seen::default());
    *single.key.lock().unwrap() = Some(key.clone());
    let batched = Arc::new(Seen::default());
    *batched.key.lock().unwrap() = Some(key.clone());
    let r1 = Receiver::start(single.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let r2 = Receiver::start(batched.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h1 = Hook::new(r1.url(), dir.path().join("s1"));
    h1.secret = Some(secret.clone());
    let mut h2 = Hook::new(r2.url(), dir.path().join("s2"));
    h2.secret = Some(secret);
    h2.batch = 25;
    let sinks = start(
        vec![h1.config("single"), h2.config("batched")],
        &metrics,
        dir.path(),
    );
    let sent: Vec<Alert> = (0..300).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let (m1, m2) = (metrics.sink("single"), metrics.sink("batched"));
    wait_until(
        Duration::from_secs(30),
        "300 deliveries on both sinks",
        || m1.delivered_total() == 300 && m2.delivered_total() == 300,
    )
    .await;
    sinks.shutdown(Duration::from_secs(2)).await;
    assert_eq!(seen_ids(&single), ids(&sent));
    assert_eq!(seen_ids(&batched), ids(&sent));
    assert_eq!(single.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(batched.bad_signatures.load(Ordering::SeqCst), 0);
    let requests = batched.requests.load(Ordering::SeqCst);
    assert!(
        (12..300).contains(&requests),
        "batches of at most 25: {requests}"
    );
    for b in batched.bodies.lock().unwrap().iter() {
        // A batch of one is the bare record, more a JSON array.
        let n = b.as_array().map_or(1, Vec::len);
        assert!((1..=25).contains(&n), "batch of {n}");
    }
    // The record is the schema, unchanged.
    let first = single.alerts.lock().unwrap()[0].clone();
    assert_eq!(first["schema"], "monitor.alert/v1");
    assert_eq!(first["container"]["namespace"], "shop");
    assert_eq!(first["count"], 1);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_clean(&m1);
    assert_clean(&m2);
    assert_eq!(m1.spooled_now(), 0);
    let text = metrics.encode();
    assert!(
        text.contains("monitor_alerts_total{rule=\"unexpected-process\",severity=\"high\"} 300"),
        "{text}"
    );
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_detected_and_counted_as_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    *seen.key.lock().unwrap() = Some(b"the receiver's key".to_vec());
    let r = Receiver::start(seen.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h = Hook::new(r.url(), dir.path().join("s"));
    h.secret = Some(secret_file(dir.path(), b"another key entirely"));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..5).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(Duration::from_secs(10), "5 permanent failures", || {
        m.failed_total() == 5
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen.bad_signatures.load(Ordering::SeqCst), 5);
    assert!(seen_ids(&seen).is_empty());
    assert_eq!(m.delivered_total(), 0);
    assert_eq!(m.retried_total(), 0, "401 is not retried");
    assert_eq!(m.spooled_now(), 0, "refused alerts leave the spool");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_answering_500_then_200_gets_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    seen.fail_first.store(4, Ordering::SeqCst);
    let r = Receiver::start(seen.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(
        vec![Hook::new(r.url(), dir.path().join("s")).config("hook")],
        &metrics,
        dir.path(),
    );
    let sent: Vec<Alert> = (0..20).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(Duration::from_secs(20), "20 deliveries", || {
        m.delivered_total() == 20
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen_ids(&seen), ids(&sent));
    assert_eq!(m.retried_total(), 4);
    assert!(
        seen.ever_unsigned.load(Ordering::SeqCst),
        "no secret, no signature"
    );
    assert_clean(&m);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_receiver_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    seen.slow_first.store(2, Ordering::SeqCst);
    seen.slow_ms.store(3_000, Ordering::SeqCst);
    let r = Receiver::start(seen.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h = Hook::new(r.url(), dir.path().join("s"));
    h.request_timeout = Duration::from_millis(300);
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..10).map(alert).collect();
    let t0 = Instant::now();
    for a in &sent {
        sinks.dispatch(a);
    }
    // The event path never waits for the endpoint.
    assert!(t0.elapsed() < Duration::from_millis(200));
    let m = metrics.sink("hook");
    wait_until(Duration::from_secs(20), "10 deliveries", || {
        m.delivered_total() == 10
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen_ids(&seen), ids(&sent));
    // Two forced timeouts; a loaded machine may add one more, never fewer.
    assert!(
        m.retried_total() >= 2,
        "two timeouts: {}",
        m.retried_total()
    );
    assert_clean(&m);
    r.stop().await;
}

/// The Done-when: 10,000 alerts while the receiver is down, all arrive in
/// order once it is back, and the metrics account for each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_for_a_burst_of_10000_then_everything_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let key = b"0123456789abcdef0123456789abcdef".to_vec();
    let seen = Arc::new(Seen::default());
    *seen.key.lock().unwrap() = Some(key.clone());
    let addr = free_port();
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h = Hook::new(format!("http://{addr}/hook"), dir.path().join("s"));
    h.secret = Some(secret_file(dir.path(), &key));
    h.batch = 100;
    h.queue = 16_384;
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..10_000).map(alert).collect();
    let t0 = Instant::now();
    for a in &sent {
        sinks.dispatch(a);
    }
    let dispatch_time = t0.elapsed();
    let m = metrics.sink("hook");
    wait_until(Duration::from_secs(30), "10,000 alerts spooled", || {
        m.spooled_now() == 10_000 && m.queued_now() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(m.delivered_total(), 0);
    assert!(m.retried_total() >= 1, "connect errors are retried");
    let r = Receiver::start(seen.clone(), addr).await;
    wait_until(Duration::from_secs(60), "10,000 deliveries", || {
        m.delivered_total() == 10_000
    })
    .await;
    sinks.shutdown(Duration::from_secs(2)).await;
    let got = seen_ids(&seen);
    assert_eq!(got.len(), 10_000);
    assert_eq!(got, ids(&sent), "every alert once, in order");
    assert_eq!(seen.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(m.spooled_now(), 0);
    assert_eq!(m.queued_now(), 0);
    assert_clean(&m);
    let text = metrics.encode();
    assert!(
        text.contains("monitor_sink_delivered_total{sink=\"hook\"} 10000"),
        "{text}"
    );
    assert!(
        text.contains("monitor_alerts_total{rule=\"unexpected-process\",severity=\"high\"} 10000")
    );
    eprintln!("dispatching 10,000 alerts took {dispatch_time:?}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_without_flush_then_reopened_spool_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("s");
    let addr = free_port();
    let metrics = Metrics::new(Duration::from_secs(10));
    let h = Hook::new(format!("http://{addr}/hook"), spool.clone());
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..500).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(Duration::from_secs(20), "500 spooled", || {
        m.spooled_now() == 500
    })
    .await;
    sinks.abort();

    let seen = Arc::new(Seen::default());
    let r = Receiver::start(seen.clone(), addr).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let m = metrics.sink("hook");
    wait_until(
        Duration::from_secs(20),
        "500 deliveries after restart",
        || m.delivered_total() == 500,
    )
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen_ids(&seen), ids(&sent));
    assert_clean(&m);
    r.stop().await;
}

/// Write-ahead: a spooled sink has no in-memory queue to overflow or to lose.
/// With room for one alert in memory (`queue: 1`, which a spooled sink now
/// ignores), a burst dispatched faster than any task could take it, and a
/// crash right after the last dispatch, every alert is on disk and arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_sink_writes_ahead_so_a_burst_then_a_crash_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h = Hook::new(format!("http://{addr}/hook"), dir.path().join("s"));
    h.queue = 1;
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..2000).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    // No waiting: whatever `dispatch` returned from must already be on disk.
    sinks.abort();
    let m = metrics.sink("hook");
    assert_eq!(m.dropped_total("queue_full"), 0);

    let seen = Arc::new(Seen::default());
    let r = Receiver::start(seen.clone(), addr).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let m = metrics.sink("hook");
    wait_until(
        Duration::from_secs(60),
        "2000 deliveries after restart",
        || m.delivered_total() >= 2000,
    )
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    let rules: Vec<String> = seen
        .alerts
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] != "agent")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, ids(&sent));
    assert_clean(&m);
    r.stop().await;
}

const CHILD_ENV: &str = "MONITOR_DELIVERY_TEST_CHILD_SPOOL";

/// Not a test on its own: the child process of
/// `sigkill_during_outage_loses_nothing_spooled` (a no-op otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child_process() {
    let Ok(spool) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("MONITOR_DELIVERY_TEST_CHILD_URL").unwrap();
    let metrics = Metrics::new(Duration::from_secs(10));
    let spool = PathBuf::from(spool);
    let h = Hook::new(url, spool.clone());
    let sinks = start(vec![h.config("hook")], &metrics, spool.parent().unwrap());
    let sent: Vec<Alert> = (0..1000).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(Duration::from_secs(20), "1000 spooled", || {
        m.spooled_now() == 1000
    })
    .await;
    println!("SPOOLED {}", ids(&sent).join(","));
    // Wait to be killed (bounded).
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(sinks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_outage_loses_nothing_spooled() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("s");
    let addr = free_port();
    let url = format!("http://{addr}/hook");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &spool)
        .env("MONITOR_DELIVERY_TEST_CHILD_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test NAME ... " before it on the same line.
            if let Some(ids) = line.split("SPOOLED ").nth(1) {
                let _ = tx.send(ids.split(',').map(str::to_owned).collect::<Vec<_>>());
                return;
            }
        }
    });
    let sent = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let sent = sent.expect("the child spooled its alerts");
    assert!(!status.success(), "killed, not exited");
    assert_eq!(sent.len(), 1000);

    let seen = Arc::new(Seen::default());
    let r = Receiver::start(seen.clone(), addr).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(
        vec![Hook::new(url, spool).config("hook")],
        &metrics,
        dir.path(),
    );
    let m = metrics.sink("hook");
    wait_until(
        Duration::from_secs(30),
        "1000 deliveries after SIGKILL",
        || m.delivered_total() == 1000,
    )
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(seen_ids(&seen), sent);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_oldest_counts_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut h = Hook::new(format!("http://{addr}/hook"), dir.path().join("s"));
    h.spool_bytes = 64 * 1024;
    let sinks = start(vec![h.config("hook")], &metrics, dir.path());
    let sent: Vec<Alert> = (0..2000).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let m = metrics.sink("hook");
    wait_until(
        Duration::from_secs(20),
        "the queue drained into the spool",
        || m.queued_now() == 0 && m.dropped_total("spool_full") > 0,
    )
    .await;
    // Let the once-a-second notice catch up with the last drops.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let dropped = m.dropped_total("spool_full");
    let spooled = m.spooled_now();
    assert!(
        dropped > 1000,
        "a 64 KiB spool holds far fewer than 2000 alerts"
    );

    let seen = Arc::new(Seen::default());
    let r = Receiver::start(seen.clone(), addr).await;
    wait_until(Duration::from_secs(30), "the spool delivered", || {
        m.delivered_total() == spooled
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    let alerts = seen.alerts.lock().unwrap().clone();
    let (notices, rules): (Vec<&Value>, Vec<&Value>) =
        alerts.iter().partition(|a| a["kind"] == "agent");
    let got: Vec<String> = rules
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    // Each one dropped is one of the oldest: what arrived is the newest, in order.
    let all = ids(&sent);
    assert_eq!(got, all[all.len() - got.len()..].to_vec());
    // Every record the spool took (2000 alerts + the notices it raised into
    // itself) was either delivered or dropped, and counted.
    let raised = counter(
        &metrics.encode(),
        "monitor_alerts_total{rule=\"sink-spool-full\",severity=\"high\"}",
    );
    assert!(raised >= 1);
    assert_eq!(
        got.len() as u64 + notices.len() as u64 + dropped,
        2000 + raised
    );
    assert_eq!(m.delivered_total(), got.len() as u64 + notices.len() as u64);
    let last = notices.last().expect("an agent alert reports the drops");
    assert_eq!(last["rule"], "sink-spool-full");
    let summary = last["summary"].as_str().unwrap();
    // The last notice counts every drop except those its own append caused.
    let reported: u64 = summary
        .split('(')
        .nth(2)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total in {summary}"));
    assert!(
        reported <= dropped && dropped - reported <= raised,
        "{summary} vs {dropped}"
    );
    r.stop().await;
}

fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_one_readable_message_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let r = Receiver::start(seen.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let mut c = Hook::new(r.url(), dir.path().join("s")).config("slack");
    let SinkKind::Webhook(hc) = c.kind else {
        unreachable!()
    };
    c.kind = SinkKind::Slack(HttpSinkConfig {
        batch_size: Some(50),
        ..hc
    });
    let sinks = start(vec![c], &metrics, dir.path());
    for a in (0..3).map(alert) {
        sinks.dispatch(&a);
    }
    let m = metrics.sink("slack");
    wait_until(Duration::from_secs(10), "3 messages", || {
        m.delivered_total() == 3
    })
    .await;
    sinks.shutdown(Duration::from_secs(1)).await;
    let bodies = seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "one message per alert");
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("[HIGH] unexpected-process on test-node"),
        "{text}"
    );
    assert!(
        bodies[0]["blocks"]
            .to_string()
            .contains("shop/web-7d9f (web)")
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_alerts_with_labels() {
    if !need_tool(common::delivery::ALERTMANAGER, "prometheus-alertmanager") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let am = tokio::task::block_in_place(|| Alertmanager::start(dir.path()));
    let base = am.base.clone();

    let metrics = Metrics::new(Duration::from_secs(10));
    let mut c = Hook::new(base.clone(), dir.path().join("s")).config("am");
    let SinkKind::Webhook(hc) = c.kind else {
        unreachable!()
    };
    c.kind = SinkKind::Alertmanager(HttpSinkConfig {
        generator_url: Some("http://monitor.invalid/alerts".into()),
        batch_size: None,
        ..hc
    });
    let sinks = start(vec![c], &metrics, dir.path());
    let mut sent = Vec::new();
    for (i, rule) in ["unexpected-process", "protected-write", "egress-denied"]
        .iter()
        .enumerate()
    {
        let mut a = alert(i);
        a.rule = (*rule).to_owned();
        sinks.dispatch(&a);
        sent.push(a);
    }
    let m = metrics.sink("am");
    let delivered = async {
        wait_until(Duration::from_secs(15), "3 alerts to alertmanager", || {
            m.delivered_total() == 3
        })
        .await
    };
    delivered.await;
    sinks.shutdown(Duration::from_secs(1)).await;
    let got = tokio::task::block_in_place(|| am.alerts());
    drop(am);
    assert_eq!(got.len(), 3, "{got:?}");
    for a in &sent {
        let found = got
            .iter()
            .find(|g| g["labels"]["alertname"] == a.rule.as_str())
            .unwrap_or_else(|| panic!("{} missing in {got:?}", a.rule));
        let l = &found["labels"];
        assert_eq!(l["severity"], "high");
        assert_eq!(l["container"], "web");
        assert_eq!(l["namespace"], "shop");
        assert_eq!(l["pod"], "web-7d9f");
        assert_eq!(l["host"], "test-node");
        // No process, file or network: the summary says what it is about.
        assert_eq!(l["subject"], a.summary.as_str());
        assert_eq!(found["annotations"]["summary"], a.summary.as_str());
        assert_eq!(found["annotations"]["alert_id"], a.id.as_str());
        assert_eq!(found["generatorURL"], "http://monitor.invalid/alerts");
        assert_eq!(found["status"]["state"], "active");
    }
    assert_clean(&m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_passes_promtool_and_health_flips() {
    let have_promtool = need_tool(PROMTOOL, "prometheus");
    let metrics = Metrics::new(Duration::from_millis(1_000));
    metrics.event("process");
    metrics.events_lost("file", "ring_buffer_full", 2);
    metrics.alert("unexpected-process", "high");
    metrics.alert_suppressed("dedup");
    metrics.set_rules_loaded(17);
    metrics.set_containers_tracked(3);
    metrics.set_processes_tracked(120);
    metrics.reload(true);
    metrics.reload(false);
    let s = metrics.sink("hook");
    s.delivered(5);
    s.failed(1);
    s.retried();
    s.set_queued(2);
    s.set_spooled(4, 1000);
    s.dropped("spool_full", 1);
    let listener = monitor::metrics::serve("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        let c = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "monitor_events_total",
        "monitor_events_lost_total",
        "monitor_alerts_total",
        "monitor_sink_delivered_total",
        "monitor_sink_failed_total",
        "monitor_sink_retries_total",
        "monitor_sink_queued",
        "monitor_sink_spooled",
        "monitor_sink_dropped_total",
        "monitor_rules_loaded",
        "monitor_containers_tracked",
        "monitor_processes_tracked",
        "monitor_reloads_total",
    ] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(get("/readyz").await.0, 503);
    metrics.set_programs_attached(true);
    assert_eq!(get("/readyz").await.0, 200);
    metrics.heartbeat();
    assert_eq!(get("/healthz").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(get("/healthz").await.0, 503, "stale heartbeat");
    metrics.heartbeat();
    assert_eq!(get("/healthz").await.0, 200);
    listener.shutdown().await.unwrap();

    if have_promtool {
        promtool_check(&text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_slow_other_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let r = Receiver::start(seen.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let metrics = Metrics::new(Duration::from_secs(10));
    let dead = Hook::new(format!("http://{}/hook", free_port()), dir.path().join("d"));
    let live = Hook::new(r.url(), dir.path().join("l"));
    let file = dir.path().join("alerts.jsonl");
    let sinks = start(
        vec![
            dead.config("dead"),
            live.config("live"),
            SinkConfig::new(
                "file",
                SinkKind::File(monitor::sink::FileConfig {
                    path: file.clone(),
                    max_bytes: 1 << 20,
                    keep: 2,
                }),
            ),
        ],
        &metrics,
        dir.path(),
    );
    let sent: Vec<Alert> = (0..200).map(alert).collect();
    for a in &sent {
        sinks.dispatch(a);
    }
    let (live_m, file_m) = (metrics.sink("live"), metrics.sink("file"));
    wait_until(Duration::from_secs(15), "the live sinks delivered", || {
        live_m.delivered_total() == 200 && file_m.delivered_total() == 200
    })
    .await;
    assert_eq!(metrics.sink("dead").delivered_total(), 0);
    sinks.shutdown(Duration::from_millis(300)).await;
    assert_eq!(seen_ids(&seen), ids(&sent));
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(lines, ids(&sent));
    r.stop().await;
}
