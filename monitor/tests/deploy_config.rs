//! The configuration file through the real binary: precedence flag > env >
//! file > default (`monitor run --print-config` shows the settings in force
//! and where each came from), `monitor config check`, and `monitor health`.
use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

/// `monitor <args>` with only the given environment (none of the caller's MONITOR_*).
fn monitor(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run monitor")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn print_config(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["run", "--print-config"];
    all.extend_from_slice(args);
    let o = monitor(&all, env);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn defaults_alone() {
    let c = print_config(&["--rules", "/r"], &[]);
    assert_eq!(c["spool_dir"], "/var/lib/monitor/spool");
    assert_eq!(c["host_root"], "/");
    assert_eq!(c["listen"], Value::Null);
    assert_eq!(c["dedup_window"], "1m");
    assert_eq!(c["log"], "info");
    assert_eq!(c["sources"]["rules"], "flag");
    assert_eq!(c["sources"]["spool_dir"], "default");
    assert_eq!(c["sinks"][0]["type"], "stdout");
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "monitor.yaml",
        "rules: [rules-from-file]\nspool_dir: /file/spool\nlisten: 127.0.0.1:1111\ndedup_window: 30s\nlog: debug\nhost_root: /file-root\n",
    );
    let c = print_config(
        &[
            "--config",
            &config,
            "--spool-dir",
            "/flag/spool",
            "--host-root",
            "/flag-root",
        ],
        &[
            ("MONITOR_SPOOL_DIR", "/env/spool"),
            ("MONITOR_LISTEN", "127.0.0.1:2222"),
            ("MONITOR_HOST_ROOT", "/env-root"),
        ],
    );
    // flag over env and file
    assert_eq!(c["spool_dir"], "/flag/spool");
    assert_eq!(c["sources"]["spool_dir"], "flag");
    assert_eq!(c["host_root"], "/flag-root");
    // env over file
    assert_eq!(c["listen"], "127.0.0.1:2222");
    assert_eq!(c["sources"]["listen"], "env");
    // file over default; relative paths from the file's directory
    assert_eq!(c["dedup_window"], "30s");
    assert_eq!(c["sources"]["dedup_window"], "file");
    assert_eq!(c["log"], "debug");
    assert_eq!(
        c["rules"][0],
        dir.path().join("rules-from-file").to_str().unwrap()
    );
    // default where nobody says anything
    assert_eq!(c["shutdown_grace"], "5s");
    assert_eq!(c["sources"]["shutdown_grace"], "default");
}

#[test]
fn env_names_the_config_file_and_booleans_follow_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "url", "http://127.0.0.1:9/hook/secret-path\n");
    write(dir.path(), "key", "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=\n");
    let config = write(
        dir.path(),
        "monitor.yaml",
        "rules: /r\nno_stdout: true\nwebhook: {file: url}\nwebhook_secret_file: key\n",
    );
    let c = print_config(&[], &[("MONITOR_CONFIG", &config)]);
    let sinks = c["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 1, "no stdout: {c}");
    assert_eq!(sinks[0]["type"], "webhook");
    // The URL was read from its file; the path (a credential) is never shown.
    assert_eq!(sinks[0]["target"], "http://127.0.0.1:9/...");
    assert_eq!(sinks[0]["signed"], true);
    assert!(!c.to_string().contains("secret-path"));

    // The environment turns stdout back on over the file.
    let c = print_config(
        &[],
        &[("MONITOR_CONFIG", &config), ("MONITOR_NO_STDOUT", "false")],
    );
    assert_eq!(c["sources"]["no_stdout"], "env");
    assert_eq!(c["sinks"][0]["type"], "stdout");
    // And so does... nothing on the command line: a flag can only turn it off.
    let c = print_config(&["--no-stdout"], &[("MONITOR_CONFIG", &config)]);
    assert_eq!(c["sources"]["no_stdout"], "flag");
}

#[test]
fn file_sinks_join_the_flag_sinks() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "auth", "Bearer abc\n");
    let config = write(
        dir.path(),
        "monitor.yaml",
        "sinks:\n  - name: siem\n    type: webhook\n    url: https://siem.example.com/in\n    headers: {Authorization: {file: auth}}\n  - {name: log, type: file, path: alerts.jsonl}\n",
    );
    let c = print_config(&["--config", &config, "--rules", "/r"], &[]);
    let names: Vec<&str> = c["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stdout", "siem", "log"]);
}

#[test]
fn a_secret_file_that_is_missing_stops_the_start_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "monitor.yaml",
        "rules: /r\nwebhook:\n  - {file: nope}\n",
    );
    let o = monitor(&["run", "--config", &config], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{config}:3:5: error: cannot read")),
        "{err}"
    );
}

#[test]
fn config_check_reports_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "listen: nowhere\nspool_dir: /x\nslack_webhook: https://hooks.slack.com/services/T/B/C\n",
    );
    let o = monitor(&["config", "check", &bad], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{bad}:1:9: error: `listen`")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{bad}:3:16: error: `slack_webhook` is written inline"
        )),
        "{err}"
    );
    assert_eq!(err.matches("\n  hint: ").count(), 2, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("2 errors in {bad}")
    );

    let unknown = write(dir.path(), "unknown.yaml", "rulez: [/r]\n");
    let o = monitor(&["config", "check", &unknown], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(&format!("{unknown}:1:1: error: unknown key `rulez`")),
        "{}",
        text(&o)
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitor.yaml");
    let o = monitor(&["config", "check", example.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: "));
}

#[test]
fn run_without_rules_says_where_to_give_them() {
    let o = monitor(&["run", "--print-config"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--rules DIR, MONITOR_RULES=DIR, or `rules:`"),
        "{}",
        text(&o)
    );
}

/// A one-shot HTTP server answering `status` to the first request.
fn answer_once(status: &str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let status = status.to_owned();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = "from the test\n";
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/healthz")
}

#[test]
fn health_exits_0_on_2xx_only() {
    let o = monitor(&["health", "--url", &answer_once("200 OK")], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("200 from the test"));
    let o = monitor(
        &["health", "--url", &answer_once("503 Service Unavailable")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = monitor(
        &[
            "health",
            "--url",
            &format!("http://127.0.0.1:{port}/healthz"),
            "--timeout",
            "2s",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// The Slack URL is the credential: no argument takes it (every user reads
/// `/proc/*/cmdline`); a file flag, the environment or the file do.
#[test]
fn slack_webhook_comes_from_a_file_or_the_environment_never_an_argument() {
    let url = "https://hooks.slack.com/services/T0/B0/SeCrEt";
    let o = monitor(
        &[
            "run",
            "--print-config",
            "--rules",
            "/r",
            "--slack-webhook",
            url,
        ],
        &[],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--slack-webhook-file"), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "slack-url", &format!("{url}\n"));
    let slack = |c: &Value| {
        c["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == "slack")
            .cloned()
            .unwrap_or_else(|| panic!("no slack sink: {c}"))
    };
    let c = print_config(&["--rules", "/r", "--slack-webhook-file", &file], &[]);
    assert_eq!(slack(&c)["target"], "https://hooks.slack.com/...");
    assert_eq!(c["sources"]["slack_webhook_file"], "flag");
    assert!(!c.to_string().contains("SeCrEt"), "{c}");

    let c = print_config(&["--rules", "/r"], &[("MONITOR_SLACK_WEBHOOK", url)]);
    assert_eq!(slack(&c)["target"], "https://hooks.slack.com/...");
    assert_eq!(c["sources"]["slack_webhook"], "env");

    let config = write(
        dir.path(),
        "monitor.yaml",
        "rules: /r\nslack_webhook_file: slack-url\n",
    );
    let c = print_config(&["--config", &config], &[]);
    assert_eq!(slack(&c)["target"], "https://hooks.slack.com/...");
    assert_eq!(c["sources"]["slack_webhook_file"], "file");
    let o = monitor(&["config", "check", &config], &[]);
    assert!(o.status.success(), "{}", text(&o));

    // Given twice is an error, not a silent choice.
    let o = monitor(
        &[
            "run",
            "--print-config",
            "--rules",
            "/r",
            "--slack-webhook-file",
            &file,
        ],
        &[("MONITOR_SLACK_WEBHOOK", url)],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("given twice"), "{}", text(&o));
}

/// `listen_ip` (the DaemonSet's pod IP) replaces the address of `listen`,
/// keeps its port, and is refused without it.
#[test]
fn listen_ip_binds_the_given_address_on_the_listen_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "monitor.yaml",
        "rules: /r\nlisten: 0.0.0.0:9464\n",
    );
    let c = print_config(&["--config", &config], &[("MONITOR_LISTEN_IP", "10.1.2.3")]);
    assert_eq!(c["listen"], "10.1.2.3:9464");
    assert_eq!(c["sources"]["listen_ip"], "env");
    let c = print_config(&["--config", &config, "--listen-ip", "fd00::5"], &[]);
    assert_eq!(c["listen"], "[fd00::5]:9464");
    let o = monitor(
        &[
            "run",
            "--print-config",
            "--rules",
            "/r",
            "--listen-ip",
            "10.1.2.3",
        ],
        &[],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("listen"), "{}", text(&o));
    let bad = write(dir.path(), "bad.yaml", "listen_ip: 10.1.2.3:80\n");
    let o = monitor(&["config", "check", &bad], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{bad}:1:12: error: `listen_ip`: `10.1.2.3:80` is not an IP address"
        )),
        "{}",
        text(&o)
    );
}

/// `--syslog URL` (and `syslog:`) adds a syslog sink; a URL that is not
/// `udp://`, `tcp://` or `tls://host:port` is an error with its position.
#[test]
fn syslog_flag_and_key() {
    let c = print_config(
        &["--rules", "/r", "--syslog", "tls://siem.example.com:6514"],
        &[],
    );
    let s = c["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "syslog")
        .cloned()
        .unwrap_or_else(|| panic!("no syslog sink: {c}"));
    assert_eq!(s["target"], "tls://siem.example.com:6514");
    assert_eq!(c["sources"]["syslog"], "flag");
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "syslog: https://siem.example.com/\nsinks:\n  - {name: s, type: syslog, url: \"tcp://siem\", generator_url: x}\n",
    );
    let o = monitor(&["config", "check", &bad], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "{bad}:1:9: error: `syslog`: `https://siem.example.com` is not a syslog URL"
        )),
        "{t}"
    );
    assert!(
        t.contains("`generator_url` does not apply to a `syslog` sink"),
        "{t}"
    );
}

/// `--otlp URL` adds an OTLP sink; `encoding` takes `protobuf` or `json`.
#[test]
fn otlp_flag_and_encoding() {
    let c = print_config(&["--rules", "/r", "--otlp", "http://collector:4318"], &[]);
    assert!(
        c["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["type"] == "otlp"),
        "{c}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "sinks:\n  - {name: o, type: otlp, url: \"http://c:4318\", encoding: xml}\n",
    );
    let o = monitor(&["config", "check", &bad], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("`encoding`: `xml` is not an OTLP encoding"),
        "{}",
        text(&o)
    );
    let good = write(
        dir.path(),
        "good.yaml",
        "sinks:\n  - {name: o, type: otlp, url: \"http://c:4318\", encoding: json}\n",
    );
    let o = monitor(&["config", "check", &good], &[]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn format_applies_to_stdout_and_the_output_file_flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "monitor.yaml",
        "rules: /r\noutput_file: /tmp/alerts.jsonl\nformat: ocsf\nsinks:\n  - {name: hook, type: webhook, url: 'https://h.example/x', format: ecs}\n",
    );
    let formats = |c: &Value| -> Vec<(String, String)> {
        c["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["format"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let c = print_config(&["--config", &config], &[]);
    assert_eq!(c["sources"]["format"], "file");
    assert_eq!(
        formats(&c),
        pairs(&[("stdout", "ocsf"), ("file", "ocsf"), ("hook", "ecs")])
    );
    let c = print_config(&["--config", &config], &[("MONITOR_FORMAT", "ecs")]);
    assert_eq!(c["sources"]["format"], "env");
    assert_eq!(formats(&c)[0].1, "ecs");
    let c = print_config(
        &["--config", &config, "--format", "native"],
        &[("MONITOR_FORMAT", "ecs")],
    );
    assert_eq!(c["sources"]["format"], "flag");
    assert_eq!(
        formats(&c),
        pairs(&[("stdout", "native"), ("file", "native"), ("hook", "ecs")])
    );
    let o = monitor(
        &["run", "--print-config", "--rules", "/r", "--format", "json"],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`json` is not an output format"),
        "{}",
        text(&o)
    );
}
