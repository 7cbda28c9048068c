//! The syslog sink against a real rsyslog (Debian's `rsyslog` and
//! `rsyslog-gnutls`), started by the test on loopback with its own
//! configuration and working directory (never the system's): RFC 5424 over
//! UDP, TCP and TLS (a certificate from a CA made at test time), octet-counted
//! framing on the streams. rsyslog parses each message (`pmrfc5424`, and
//! `mmpstrucdata` for the structured data) and writes what it parsed; the
//! test holds that against what the agent sent. The TLS and TCP sinks start
//! while rsyslog is down, so their alerts come from the spool after retries.
mod common;

use std::{
    net::{TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::delivery::{TestCa, alert, free_port, ids, need_tool, start, wait_until};
use monitor::{
    alert::Alert,
    metrics::Metrics,
    sink::{HttpConfig, HttpSinkConfig, RetryConfig, SinkConfig, SinkKind, SpoolConfig, TlsConfig},
};
use serde_json::Value;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const GTLS: &str = "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so";

struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, ca: &TestCa, udp: u16, tcp: u16, tls: u16) -> Rsyslog {
        let server = ca.server();
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"global(workDirectory="{work}"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="20")
module(load="mmpstrucdata")
template(name="parsed" type="string"
         string="%pri%\t%hostname%\t%app-name%\t%procid%\t%msgid%\t%$!rfc5424-sd%\t%msg%\n")
ruleset(name="udp") {{ action(type="mmpstrucdata") action(type="omfile" file="{d}/udp.log" template="parsed") }}
ruleset(name="tcp") {{ action(type="mmpstrucdata") action(type="omfile" file="{d}/tcp.log" template="parsed") }}
ruleset(name="tls") {{ action(type="mmpstrucdata") action(type="omfile" file="{d}/tls.log" template="parsed") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"#,
            work = work.display(),
            ca = ca.ca_file.display(),
            cert = server.cert_file.display(),
            key = server.key_file.display(),
        );
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, conf).unwrap();
        let check = Command::new(RSYSLOGD)
            .args(["-N1", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "rsyslogd -N1: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        for port in [tcp, tls] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < end, "rsyslogd did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Rsyslog {
            child,
            dir: dir.to_owned(),
        }
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sink(name: &str, url: String, spool: PathBuf, tls: TlsConfig) -> SinkConfig {
    SinkConfig::new(
        name,
        SinkKind::Syslog(HttpSinkConfig {
            http: HttpConfig {
                url,
                tls,
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
            batch_size: Some(7),
            spool: SpoolConfig {
                dir: Some(spool),
                ..Default::default()
            },
            retry: RetryConfig {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(300),
            },
            ..Default::default()
        }),
    )
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What rsyslog parsed out of one message, checked against the alert.
fn check(line: &str, sent: &Alert, transport: &str) {
    let f: Vec<&str> = line.splitn(7, '\t').collect();
    assert_eq!(f.len(), 7, "{transport}: {line}");
    // local0 (16) * 8 + err (3): a `high` alert.
    assert_eq!(f[0], "131", "{transport}: PRI in {line}");
    assert_eq!(f[1], "test-node", "{transport}: HOSTNAME");
    assert_eq!(f[2], "monitor", "{transport}: APP-NAME");
    assert_eq!(f[3], std::process::id().to_string(), "{transport}: PROCID");
    assert_eq!(f[4], "alert", "{transport}: MSGID");
    let sd: Value = serde_json::from_str(f[5]).unwrap_or_else(|e| panic!("{e}: SD {}", f[5]));
    let ours = &sd["monitor@32473"];
    assert_eq!(ours["id"], sent.id.as_str(), "{transport}: {sd}");
    assert_eq!(ours["rule"], sent.rule.as_str(), "{transport}: {sd}");
    assert_eq!(ours["severity"], "high", "{transport}: {sd}");
    assert_eq!(ours["kind"], "process", "{transport}: {sd}");
    let c = sent.container.as_ref().unwrap();
    assert_eq!(
        ours["container"],
        c.name.as_deref().unwrap(),
        "{transport}: {sd}"
    );
    assert_eq!(ours["pod"], c.pod.as_deref().unwrap(), "{transport}: {sd}");
    assert_eq!(
        ours["namespace"],
        c.namespace.as_deref().unwrap(),
        "{transport}: {sd}"
    );
    let msg: Value = serde_json::from_str(f[6].trim_start())
        .unwrap_or_else(|e| panic!("{transport}: {e}: MSG {}", f[6]));
    assert_eq!(msg, serde_json::to_value(sent).unwrap(), "{transport}: MSG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_parses_alerts_over_udp_tcp_and_tls() {
    if !need_tool(RSYSLOGD, "rsyslog") || !need_tool(GTLS, "rsyslog-gnutls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "syslog");
    let (udp, tcp, tls) = (free_udp_port(), free_port().port(), free_port().port());
    let metrics = Metrics::new(Duration::from_secs(10));
    let tls_config = TlsConfig {
        ca_file: Some(ca.ca_file.clone()),
        ..Default::default()
    };
    let streams = start(
        vec![
            sink(
                "tcp",
                format!("tcp://127.0.0.1:{tcp}"),
                dir.path().join("s-tcp"),
                TlsConfig::default(),
            ),
            sink(
                "tls",
                format!("tls://127.0.0.1:{tls}"),
                dir.path().join("s-tls"),
                tls_config,
            ),
        ],
        &metrics,
        dir.path(),
    );
    // Quotes, brackets and backslashes in the record (escaped in the SD),
    // escaped newlines in its JSON (the framing counts octets, not lines).
    let sent: Vec<Alert> = (0..40)
        .map(|i| {
            let mut a = alert(i);
            a.summary = format!("line one\nline two \"quoted\" ]bracket[ \\ {i}");
            a
        })
        .collect();
    for a in &sent {
        streams.dispatch(a);
    }
    // rsyslog is down: the stream sinks spool and retry.
    let (mt, ms) = (metrics.sink("tcp"), metrics.sink("tls"));
    wait_until(
        Duration::from_secs(10),
        "retries while rsyslog is down",
        || mt.retried_total() >= 2 && ms.retried_total() >= 2,
    )
    .await;
    assert_eq!(mt.spooled_now(), 40);
    let rsyslog = Rsyslog::start(dir.path(), &ca, udp, tcp, tls);
    let datagrams = start(
        vec![sink(
            "udp",
            format!("udp://127.0.0.1:{udp}"),
            dir.path().join("s-udp"),
            TlsConfig::default(),
        )],
        &metrics,
        dir.path(),
    );
    for a in &sent {
        datagrams.dispatch(a);
    }
    let mu = metrics.sink("udp");
    wait_until(Duration::from_secs(30), "every sink delivered", || {
        mt.delivered_total() == 40 && ms.delivered_total() == 40 && mu.delivered_total() == 40
    })
    .await;
    wait_until(
        Duration::from_secs(20),
        "rsyslog wrote every message",
        || {
            ["udp", "tcp", "tls"]
                .iter()
                .all(|t| rsyslog.lines(t).len() >= 40)
        },
    )
    .await;
    streams.shutdown(Duration::from_secs(1)).await;
    datagrams.shutdown(Duration::from_secs(1)).await;
    for transport in ["udp", "tcp", "tls"] {
        let lines = rsyslog.lines(transport);
        assert_eq!(
            lines.len(),
            40,
            "{transport}: one line per alert, none split"
        );
        for (line, a) in lines.iter().zip(&sent) {
            check(line, a, transport);
        }
        let got: Vec<String> = lines
            .iter()
            .map(|l| {
                let msg: Value =
                    serde_json::from_str(l.splitn(7, '\t').nth(6).unwrap().trim_start()).unwrap();
                msg["id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(got, ids(&sent), "{transport}: in order");
    }
    assert_eq!(mt.failed_total() + ms.failed_total() + mu.failed_total(), 0);
}

/// A receiver whose certificate the configured CA did not sign is refused:
/// nothing is sent in the clear or to an impostor; the alerts wait in the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_receiver_of_another_ca_is_refused_and_spooled() {
    if !need_tool(RSYSLOGD, "rsyslog") || !need_tool(GTLS, "rsyslog-gnutls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = TestCa::new(dir.path(), "impostor");
    let ours = TestCa::new(dir.path(), "ours");
    let (udp, tcp, tls) = (free_udp_port(), free_port().port(), free_port().port());
    let rsyslog = Rsyslog::start(dir.path(), &theirs, udp, tcp, tls);
    let metrics = Metrics::new(Duration::from_secs(10));
    let sinks = start(
        vec![sink(
            "tls",
            format!("tls://127.0.0.1:{tls}"),
            dir.path().join("s"),
            TlsConfig {
                ca_file: Some(ours.ca_file.clone()),
                ..Default::default()
            },
        )],
        &metrics,
        dir.path(),
    );
    for a in (0..5).map(alert) {
        sinks.dispatch(&a);
    }
    let m = metrics.sink("tls");
    wait_until(
        Duration::from_secs(10),
        "handshakes refused and retried",
        || m.retried_total() >= 3,
    )
    .await;
    assert_eq!(m.delivered_total(), 0);
    assert_eq!(m.spooled_now(), 5);
    sinks.shutdown(Duration::from_millis(200)).await;
    assert!(rsyslog.lines("tls").is_empty());
}
