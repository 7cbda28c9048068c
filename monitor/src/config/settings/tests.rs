//! The precedence merge without the binary: command lines parsed by the
//! table's clap arguments, files parsed by its schema.
use std::{path::Path, sync::Mutex};

use clap::{Args as _, FromArgMatches as _};

use super::*;
use crate::config::parse;

/// Parsing reads the process's MONITOR_* variables: tests that parse hold
/// this, and the one that sets a variable holds it across set, parse and remove.
static ENV: Mutex<()> = Mutex::new(());

fn parse_args(args: &[&str]) -> CommandLine {
    let cmd = CommandLine::augment_args(clap::Command::new("run"));
    let m = cmd
        .try_get_matches_from(std::iter::once("run").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    CommandLine::from_arg_matches(&m).unwrap()
}

fn command_line(args: &[&str]) -> CommandLine {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    parse_args(args)
}

fn file(dir: &Path, text: &str) -> ConfigFile {
    parse(&dir.join("monitor.yaml"), text).unwrap_or_else(|d| panic!("{d:#?}"))
}

fn source(r: &Resolved, key: &str) -> &'static str {
    r.sources
        .iter()
        .find(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("no source for {key}"))
        .1
}

#[test]
fn the_table_makes_valid_clap_arguments_and_every_default_parses() {
    let cmd = CommandLine::augment_args(clap::Command::new("run"));
    cmd.clone().debug_assert();
    SourceSettings::augment_args(clap::Command::new("trace")).debug_assert();
    // A plain type without a default would panic here.
    let r = resolve(command_line(&[]), None).unwrap();
    assert_eq!(r.settings.source.host_root, Path::new("/"));
    assert_eq!(r.settings.source.ring_buffer_bytes, 8 << 20);
    assert_eq!(r.settings.source.fair_rate, Fairness::DEFAULT_RATE);
    assert_eq!(r.settings.spool_dir, Path::new("/var/lib/monitor/spool"));
    assert_eq!(r.settings.dedup_window, Duration::from_secs(60));
    assert_eq!(r.settings.log, "info");
    assert!(!r.settings.no_stdout && r.settings.webhook.is_empty());
    // Every key the file may give has a source, and only those.
    let keys: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.in_file)
        .map(|s| s.key)
        .collect();
    let mut sourced: Vec<&str> = r.sources.iter().map(|(k, _)| *k).collect();
    assert_eq!(sourced.len(), keys.len());
    sourced.retain(|k| !keys.contains(k));
    assert!(sourced.is_empty(), "{sourced:?}");
    assert!(r.sources.iter().all(|(_, o)| *o == "default"));
}

#[test]
fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(
        dir.path(),
        "spool_dir: /file/spool\nrules: [rules]\nno_stdout: true\ncgroup: [a]\n",
    );
    let r = resolve(
        command_line(&["--spool-dir", "/flag/spool", "--cgroup", "b,c"]),
        Some(f),
    )
    .unwrap();
    let s = &r.settings;
    assert_eq!(s.spool_dir, Path::new("/flag/spool"));
    assert_eq!(source(&r, "spool_dir"), "flag");
    assert_eq!(s.source.cgroup, [Path::new("b"), Path::new("c")]);
    assert_eq!(source(&r, "cgroup"), "flag");
    // The file's relative paths are relative to its directory.
    assert_eq!(s.rules, [dir.path().join("rules")]);
    assert_eq!(source(&r, "rules"), "file");
    assert!(s.no_stdout);
    assert_eq!(source(&r, "no_stdout"), "file");
    assert_eq!(s.shutdown_grace, Duration::from_secs(5));
    assert_eq!(source(&r, "shutdown_grace"), "default");
}

#[test]
fn the_environment_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path(), "shutdown_grace: 30s\n");
    let cli = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: every test that reads the environment through clap holds ENV.
        unsafe { std::env::set_var("MONITOR_SHUTDOWN_GRACE", "7s") };
        let cli = parse_args(&[]);
        // SAFETY: as above.
        unsafe { std::env::remove_var("MONITOR_SHUTDOWN_GRACE") };
        cli
    };
    let r = resolve(cli, Some(f)).unwrap();
    assert_eq!(r.settings.shutdown_grace, Duration::from_secs(7));
    assert_eq!(source(&r, "shutdown_grace"), "env");
}

#[test]
fn only_the_secrets_the_file_wins_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slack"), "https://hooks.slack.com/x\n").unwrap();
    let text =
        "webhook: {file: missing}\nslack_webhook: {file: slack}\nalertmanager: {file: gone}\n";
    // The flags replace the file's webhook and Alertmanager: their files are never opened.
    let r = resolve(
        command_line(&["--webhook", "http://w/1", "--alertmanager", "http://am"]),
        Some(file(dir.path(), text)),
    )
    .unwrap();
    assert_eq!(r.settings.webhook, ["http://w/1"]);
    assert_eq!(
        r.settings.slack_webhook.as_deref(),
        Some("https://hooks.slack.com/x")
    );
    assert_eq!(source(&r, "slack_webhook"), "file");
    // Without them, the missing files are errors with their positions.
    let e = resolve(command_line(&[]), Some(file(dir.path(), text))).unwrap_err();
    let e: Vec<String> = e.iter().map(|d| d.to_string()).collect();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("monitor.yaml:1:10: error: cannot read"),
        "{e:#?}"
    );
    assert!(
        e[1].contains("monitor.yaml:3:15: error: cannot read"),
        "{e:#?}"
    );
}

#[test]
fn the_file_schema_is_the_tables_keys() {
    let e = parse(Path::new("/m.yaml"), "bogus: 1\n").unwrap_err();
    let hint = &e[0].hint;
    for s in SETTINGS {
        assert_eq!(
            hint.contains(&format!(" {},", s.key)),
            s.in_file,
            "{} in {hint}",
            s.key
        );
    }
    assert!(hint.ends_with(" sinks"), "{hint}");
}

/// deploy/README.md's table of keys says each key's flag and variable as the
/// table does.
#[test]
fn the_deploy_readme_lists_every_key_with_its_flag_and_variable() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    for s in SETTINGS.iter().filter(|s| s.in_file) {
        let flag = s.flag.map_or("no flag".to_owned(), |f| format!("`--{f}`"));
        let row = format!("| `{}` | {flag} / `{}`", s.key, s.env.unwrap_or("-"));
        assert!(readme.contains(&row), "deploy/README.md lacks `{row}`");
    }
}
