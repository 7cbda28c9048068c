//! deploy/Dockerfile, checked statically (no image can be built here: the
//! base images come from a registry this machine cannot reach).
use std::path::Path;

/// One instruction: its keyword (upper case) and its arguments, with line
/// continuations joined and comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
    line: usize,
}

fn instructions() -> Vec<Instruction> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if current.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if current.is_some() && line.starts_with('#') {
            continue;
        }
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        match line.strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                acc.push(' ');
                current = Some((start, acc));
            }
            None => {
                acc.push_str(line);
                let (kw, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
                out.push(Instruction {
                    keyword: kw.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                    line: start,
                });
            }
        }
    }
    assert!(
        current.is_none(),
        "the Dockerfile ends inside a continuation"
    );
    out
}

fn all(kw: &str) -> Vec<Instruction> {
    instructions()
        .into_iter()
        .filter(|i| i.keyword == kw)
        .collect()
}

#[test]
fn multi_stage_with_bases_pinned_by_digest() {
    let froms = all("FROM");
    assert!(froms.len() >= 2, "a build stage and a runtime stage");
    for f in &froms {
        let image = f.args.split_whitespace().next().unwrap();
        let Some((_, digest)) = image.split_once("@sha256:") else {
            panic!("line {}: {image} is not pinned by digest", f.line);
        };
        assert_eq!(digest.len(), 64, "line {}: a full sha256 digest", f.line);
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    }
    // The runtime stage copies the build's output, nothing else from it.
    let last = froms.last().unwrap();
    assert!(
        !last.args.contains(" AS build"),
        "the last stage is the runtime"
    );
    let runtime_copies: Vec<_> = all("COPY")
        .into_iter()
        .filter(|c| c.line > last.line)
        .collect();
    assert!(
        runtime_copies
            .iter()
            .all(|c| c.args.starts_with("--from=build ")),
        "{runtime_copies:?}"
    );
    // Nothing is installed in the runtime stage: no RUN at all.
    assert!(
        all("RUN").iter().all(|r| r.line < last.line),
        "the runtime stage runs nothing (no package manager, no shell)"
    );
}

#[test]
fn build_stage_sets_up_the_toolchain_like_xtask() {
    let runs: String = all("RUN")
        .iter()
        .map(|r| r.args.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(runs.contains("nightly"), "nightly for the eBPF target");
    assert!(
        runs.contains("cargo xtask setup"),
        "rust-src and bpf-linker via xtask"
    );
    assert!(runs.contains("--locked"), "the lock file is honoured");
}

#[test]
fn copy_never_add() {
    assert!(
        all("ADD").is_empty(),
        "use COPY: ADD fetches URLs and unpacks archives"
    );
}

#[test]
fn healthcheck_uses_the_agent_itself() {
    let h = all("HEALTHCHECK");
    assert_eq!(h.len(), 1);
    assert!(h[0].args.contains("CMD"), "{:?}", h[0]);
    assert!(
        h[0].args.contains("\"health\"") && h[0].args.contains("/healthz"),
        "monitor health --url .../healthz: {:?}",
        h[0]
    );
}

#[test]
fn oci_labels_for_source_and_version() {
    let labels: String = all("LABEL").iter().map(|l| l.args.clone()).collect();
    for key in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels.contains(key), "LABEL {key}");
    }
}

#[test]
fn no_secrets_in_env_or_args() {
    let words = [
        "secret",
        "token",
        "password",
        "passwd",
        "key",
        "credential",
        "webhook",
    ];
    for i in instructions()
        .into_iter()
        .filter(|i| i.keyword == "ENV" || i.keyword == "ARG")
    {
        let lower = i.args.to_ascii_lowercase();
        let name = lower.split(['=', ' ']).next().unwrap_or("");
        assert!(
            !words.iter().any(|w| name.contains(w)),
            "line {}: {} {} looks like a secret; secrets are mounted at run time",
            i.line,
            i.keyword,
            i.args
        );
    }
    // No MONITOR_* setting baked in: it would override the mounted configuration file.
    assert!(
        all("ENV").iter().all(|e| !e.args.contains("MONITOR_")),
        "an ENV MONITOR_* would win over the configuration file"
    );
}

#[test]
fn runs_the_configuration_the_image_ships() {
    let cmd = all("CMD");
    assert_eq!(cmd.len(), 1);
    assert!(cmd[0].args.contains("--config"), "{:?}", cmd[0]);
    let entry = all("ENTRYPOINT");
    assert_eq!(entry.len(), 1);
    assert!(entry[0].args.contains("/usr/local/bin/monitor"));
    // The image's default configuration is the DaemonSet's, which must load.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/monitor.yaml"),
    )
    .unwrap();
    monitor::config::parse(Path::new("/etc/monitor/config/monitor.yaml"), &text).unwrap();
    let runs: String = all("RUN").iter().map(|r| r.args.clone()).collect();
    assert!(runs.contains("deploy/kubernetes/monitor.yaml /out/etc/monitor/config/monitor.yaml"));
}
