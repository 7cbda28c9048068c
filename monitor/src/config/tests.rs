//! Every class of configuration error, with its position and hint.
use std::path::Path;

use super::*;
use crate::sink::SinkKind;

fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("/etc/monitor/monitor.yaml"), text) {
        Ok(c) => panic!("expected errors, got {:?}", c.settings),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

fn ok(text: &str) -> FileSettings {
    parse(Path::new("/etc/monitor/monitor.yaml"), text)
        .unwrap_or_else(|d| panic!("{d:#?}"))
        .settings
}

#[test]
fn every_setting_parses() {
    let s = ok("
host_root: /host
cgroup: [/kubepods.slice]
ring_buffer_bytes: 16777216
fair_rate: 5000
fair_burst: 0
rules: [rules, /etc/monitor/rules.d]
webhook:
  - https://hooks.example.com/a
  - {file: secrets/url}
  - {env: HOOK_URL}
webhook_secret_file: secrets/key
slack_webhook: {file: /etc/monitor/secrets/slack}
alertmanager: http://am:9093
output_file: /var/log/monitor/alerts.jsonl
no_stdout: true
spool_dir: /var/lib/monitor/spool
listen: 0.0.0.0:9464
dedup_window: 2m
shutdown_grace: 10s
log: monitor=debug,info
");
    assert_eq!(s.host_root.as_deref(), Some(Path::new("/host")));
    assert_eq!(s.cgroup, Some(vec![PathBuf::from("/kubepods.slice")]));
    assert_eq!(s.ring_buffer_bytes, Some(16 << 20));
    assert_eq!((s.fair_rate, s.fair_burst), (Some(5000), Some(0)));
    // Relative paths are relative to the file's directory.
    assert_eq!(
        s.rules,
        Some(vec![
            PathBuf::from("/etc/monitor/rules"),
            PathBuf::from("/etc/monitor/rules.d")
        ])
    );
    let hooks = s.webhook.clone().unwrap();
    assert_eq!(
        hooks[0].source(),
        &TextSource::Inline("https://hooks.example.com/a".into())
    );
    assert_eq!(
        hooks[1].source(),
        &TextSource::File("/etc/monitor/secrets/url".into())
    );
    assert_eq!(hooks[2].source(), &TextSource::Env("HOOK_URL".into()));
    assert_eq!(
        s.webhook_secret_file.as_deref(),
        Some(Path::new("/etc/monitor/secrets/key"))
    );
    assert_eq!(s.no_stdout, Some(true));
    assert_eq!(s.listen, Some("0.0.0.0:9464".parse().unwrap()));
    assert_eq!(s.dedup_window, Some(Duration::from_secs(120)));
    assert_eq!(s.shutdown_grace, Some(Duration::from_secs(10)));
    assert_eq!(s.log.as_deref(), Some("monitor=debug,info"));
    assert_eq!(s.keys_set().len(), 17);
}

#[test]
fn a_fair_rate_beyond_u32_is_refused_with_its_position() {
    let e = one_error("fair_rate: 5000000000\n");
    assert!(
        e.starts_with("/etc/monitor/monitor.yaml:1:12: error: `fair_rate` is 5000000000"),
        "{e}"
    );
}

#[test]
fn single_values_stand_for_lists() {
    let s = ok("rules: /etc/monitor/rules\nwebhook: {file: /run/secrets/url}\n");
    assert_eq!(s.rules, Some(vec![PathBuf::from("/etc/monitor/rules")]));
    assert_eq!(
        s.webhook.unwrap()[0].source(),
        &TextSource::File("/run/secrets/url".into())
    );
}

#[test]
fn empty_file_sets_nothing() {
    assert!(ok("# nothing yet\n\n").keys_set().is_empty());
}

#[test]
fn unknown_key_names_the_allowed_ones() {
    let e = one_error("rules: [/r]\nspool_directory: /x\n");
    assert!(
        e.starts_with("/etc/monitor/monitor.yaml:2:1: error: unknown key `spool_directory`"),
        "{e}"
    );
    assert!(
        e.contains("allowed here:") && e.contains("spool_dir"),
        "{e}"
    );
}

#[test]
fn unknown_key_in_a_sink() {
    let e =
        one_error("sinks:\n  - name: a\n    type: webhook\n    url: http://x/\n    retries: 3\n");
    assert!(
        e.starts_with("/etc/monitor/monitor.yaml:5:5: error: unknown key `retries`"),
        "{e}"
    );
}

#[test]
fn unknown_key_in_a_secret_reference() {
    let e = one_error("slack_webhook: {path: /x}\n");
    assert!(e.starts_with("/etc/monitor/monitor.yaml:1:"), "{e}");
    assert!(e.contains("path") && e.contains("file"), "{e}");
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let e = one_error("rules: [/r\nlisten: x\n");
    assert!(e.starts_with("/etc/monitor/monitor.yaml:"), "{e}");
    assert!(
        !e.starts_with("/etc/monitor/monitor.yaml: error"),
        "no position: {e}"
    );
    assert!(e.contains("hint:"), "{e}");
}

#[test]
fn duplicate_key() {
    let e = one_error("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n");
    assert!(e.contains(":2:1: error: duplicate key `listen`"), "{e}");
}

#[test]
fn wrong_type() {
    let e = one_error("ring_buffer_bytes: lots\n");
    assert!(
        e.starts_with("/etc/monitor/monitor.yaml:1:20: error: invalid"),
        "{e}"
    );
    assert!(e.contains("check the value's type"), "{e}");
    let e = one_error("no_stdout: yes\n");
    assert!(
        e.contains(":1:12: error:") && e.contains("`true` or `false`"),
        "{e}"
    );
}

#[test]
fn bad_values_point_at_the_value() {
    let e = errors(
        "host_root: host\nring_buffer_bytes: 5000\nlisten: localhost\ndedup_window: soon\nlog: 'a=b=c'\nwebhook: [ftp://x/]\nalertmanager: not a url\nrules: []\n",
    );
    let want = [
        ":1:12: error: `host_root` must be absolute",
        ":2:20: error: `ring_buffer_bytes` is 5000",
        ":3:9: error: `listen`: `localhost` is not an address",
        ":4:15: error: `dedup_window`: `soon` is not a duration",
        ":5:6: error: `log`",
        ":6:11: error: `webhook`: `ftp:",
        ":7:15: error: `alertmanager` is not a URL",
        ":8:8: error: `rules` is an empty list",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.contains(w), "want {w} in {e:#?}");
        assert!(got.contains("\n  hint: "), "{got}");
    }
}

#[test]
fn inline_secrets_are_refused() {
    let e = one_error("slack_webhook: https://hooks.slack.com/services/T/B/X\n");
    assert!(
        e.contains(":1:16: error: `slack_webhook` is written inline"),
        "{e}"
    );
    assert!(e.contains("{file: /etc/monitor/secrets/"), "{e}");
    assert!(
        !e.contains("services/T/B/X"),
        "the secret is not echoed: {e}"
    );
    let e = one_error(
        "sinks:\n  - name: s\n    type: webhook\n    url: https://x/\n    headers:\n      Authorization: Bearer abc\n",
    );
    assert!(
        e.contains(":6:22: error: header `Authorization` carries a credential"),
        "{e}"
    );
    let e = one_error("sinks:\n  - name: s\n    type: slack\n    url: https://hooks.slack.com/x\n");
    assert!(
        e.contains(":4:10: error: a Slack webhook URL is written inline"),
        "{e}"
    );
}

#[test]
fn sink_fields_must_fit_the_type() {
    let e = errors(
        "sinks:\n  - name: out\n    type: stdout\n    url: http://x/\n  - name: f\n    type: file\n    batch_size: 3\n    path: /x\n  - name: 'bad name'\n    type: stdout\n  - name: q\n    type: pigeon\n  - name: h\n    type: slack\n    url: {file: /s}\n    secret: {file: /k}\n",
    );
    let want = [
        ":4:10: error: `url` does not apply to a `stdout` sink",
        ":7:17: error: `batch_size` does not apply to a `file` sink",
        ":9:11: error: sink name `bad name` is not allowed",
        ":12:11: error: unknown sink type `pigeon`",
        ":16:13: error: `secret` signs generic webhooks only",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.contains(w), "want {w} in {got}");
    }
}

#[test]
fn sink_names_are_unique_and_required_fields_present() {
    let e = errors(
        "sinks:\n  - {name: a, type: stdout}\n  - {name: a, type: stdout}\n  - {name: b, type: file}\n  - {name: c, type: webhook}\n",
    );
    assert!(
        e[0].contains(":3:12: error: sink name `a` is used twice"),
        "{e:#?}"
    );
    assert!(
        e[1].contains(":4:21: error: a `file` sink needs `path`"),
        "{e:#?}"
    );
    assert!(
        e[2].contains(":5:21: error: a `webhook` sink needs `url`"),
        "{e:#?}"
    );
    let e = one_error("sinks:\n  - {type: stdout}\n");
    assert!(e.contains("missing key `name`"), "{e}");
}

#[test]
fn sinks_resolve_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("url"), "https://siem.example.com/in\n").unwrap();
    std::fs::write(dir.path().join("auth"), "Bearer t0ken\n").unwrap();
    let path = dir.path().join("monitor.yaml");
    let c = parse(
        &path,
        "sinks:\n  - name: siem\n    type: webhook\n    url: {file: url}\n    headers: {Authorization: {file: auth}, X-Team: sec}\n    batch_size: 5\n    retry: {initial: 1s, max: 1m}\n    spool: {max_bytes: 1048576, dir: spool}\n    queue: 10\n",
    )
    .unwrap();
    let s = c.settings.sinks[0].resolve().unwrap();
    assert_eq!(s.name, "siem");
    assert_eq!(s.queue, 10);
    let SinkKind::Webhook(h) = s.kind else {
        panic!()
    };
    assert_eq!(h.http.url, "https://siem.example.com/in");
    assert_eq!(h.http.headers["Authorization"], "Bearer t0ken");
    assert_eq!(h.http.headers["X-Team"], "sec");
    assert_eq!(h.batch_size, Some(5));
    assert_eq!(h.retry.max, Duration::from_secs(60));
    assert_eq!(h.spool.dir, Some(dir.path().join("spool")));

    // A missing secret file is reported at the reference.
    std::fs::remove_file(dir.path().join("url")).unwrap();
    let d = c.settings.sinks[0].resolve().unwrap_err().to_string();
    assert!(d.contains("monitor.yaml:4:10: error: cannot read"), "{d}");
}

#[test]
fn redaction_keeps_only_scheme_and_authority() {
    assert_eq!(
        redact_url("https://hooks.slack.com/services/T/B/X?x=1"),
        "https://hooks.slack.com/..."
    );
    assert_eq!(redact_url("http://127.0.0.1:9093"), "http://127.0.0.1:9093");
    assert_eq!(redact_url("nonsense"), "(not a URL)");
}

#[test]
fn the_shipped_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitor.yaml");
    let c = load(&path).unwrap_or_else(|d| panic!("{d:#?}"));
    let s = c.settings;
    assert_eq!(s.host_root.as_deref(), Some(Path::new("/")));
    assert_eq!(s.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(
        s.spool_dir.as_deref(),
        Some(Path::new("/var/lib/monitor/spool"))
    );
    assert!(
        s.rules
            .unwrap()
            .contains(&PathBuf::from("/etc/monitor/rules"))
    );
}

#[test]
fn output_formats_top_level_and_per_sink() {
    let s = ok(
        "format: ocsf\nsinks:\n  - {name: out, type: stdout, format: ecs}\n  - {name: f, type: file, path: /x, format: ocsf}\n  - {name: h, type: webhook, url: 'https://h/', format: ecs}\n  - {name: s, type: syslog, url: 'tcp://h:514', format: ocsf}\n  - {name: plain, type: stdout}\n",
    );
    assert_eq!(s.format, Some(Ocsf));
    assert!(s.keys_set().contains(&"format"));
    let formats: Vec<AlertFormat> = s
        .sinks
        .iter()
        .map(|spec| spec.resolve().unwrap().format)
        .collect();
    use AlertFormat::*;
    assert_eq!(formats, [Ecs, Ocsf, Ecs, Ocsf, Native]);
}

#[test]
fn bad_output_formats_point_at_the_value() {
    let e = errors(
        "format: json\nsinks:\n  - name: s\n    type: slack\n    url: {file: /s}\n    format: ecs\n  - name: o\n    type: otlp\n    url: http://c:4318\n    format: ocsf\n  - name: w\n    type: webhook\n    url: https://h/\n    format: OCSF\n",
    );
    let want = [
        ":1:9: error: `format`: `json` is not an output format",
        ":6:13: error: `format` does not apply to a `slack` sink",
        ":10:13: error: `format` does not apply to a `otlp` sink",
        ":14:13: error: `format`: `OCSF` is not an output format",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.contains(w), "want {w} in {e:#?}");
        assert!(got.contains("\n  hint: "), "{got}");
    }
}
