//! The userspace pipeline on one core: `cargo bench -p monitor --bench
//! pipeline` (criterion; decode + enrich + match over recorded events with
//! 10 to 10,000 generated rules and the shipped pack), its output parsed
//! here. A `perf` profile of the 1,000-rule case says where the time goes.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{Ctx, process::check_interrupt, profile};

/// Events per second per core with 1,000 rules.
pub const TARGET_EPS: f64 = 1_000_000.0;
pub const TARGET_RULES: usize = 1000;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Case {
    /// Criterion's id: `pipeline/rules/1000`, `pipeline/default-pack/14`.
    pub id: String,
    pub rules: usize,
    pub policies: usize,
    /// Records per batch, findings per batch, and how many records came
    /// from a container whose metadata was read.
    pub events: u64,
    pub findings: u64,
    pub container_events: u64,
    /// Loading and compiling the rule files (ms).
    pub load_ms: Option<f64>,
    /// Events per second: criterion's lower bound, estimate, upper bound.
    pub eps_low: Option<f64>,
    pub eps: Option<f64>,
    pub eps_high: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hot {
    pub percent: f64,
    pub symbol: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pipeline {
    pub command: String,
    pub cases: Vec<Case>,
    /// Seconds the benchmark ran (build excluded).
    pub run_secs: f64,
    /// Where a 1,000-rule batch spends its time (perf, self time).
    pub profile: Vec<Hot>,
    /// Shares of the stages (inclusive: with what they call).
    pub stages: Vec<Hot>,
    pub profile_note: Option<String>,
}

impl Pipeline {
    pub fn case(&self, rules: usize) -> Option<&Case> {
        self.cases
            .iter()
            .find(|c| c.id == format!("pipeline/rules/{rules}"))
    }
}

/// `1.23 Kelem/s` as events per second.
fn rate(value: &str, unit: &str) -> Option<f64> {
    let v: f64 = value.parse().ok()?;
    let scale = match unit {
        "elem/s" => 1.0,
        "Kelem/s" => 1e3,
        "Melem/s" => 1e6,
        "Gelem/s" => 1e9,
        _ => return None,
    };
    Some(v * scale)
}

/// Reads the benchmark's `pipeline-case` lines and criterion's `thrpt:`
/// lines (the first after each id; a second one is the change since the
/// last run).
pub fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut current: Option<usize> = None;
    let mut have_thrpt = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pipeline-case ") {
            let mut words = rest.split_whitespace();
            let label = words.next().unwrap_or_default();
            let mut c = Case {
                id: format!("pipeline/{label}"),
                ..Case::default()
            };
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    continue;
                };
                match k {
                    "rules" => c.rules = v.parse().unwrap_or(0),
                    "policies" => c.policies = v.parse().unwrap_or(0),
                    "events" => c.events = v.parse().unwrap_or(0),
                    "findings" => c.findings = v.parse().unwrap_or(0),
                    "container_events" => c.container_events = v.parse().unwrap_or(0),
                    "load_ms" => c.load_ms = v.parse().ok(),
                    _ => {}
                }
            }
            cases.push(c);
            continue;
        }
        if line.starts_with("pipeline/") {
            let id = line.split_whitespace().next().unwrap_or_default();
            current = cases.iter().position(|c| c.id == id);
            have_thrpt = false;
        }
        if let Some(at) = line.find("thrpt:")
            && let Some(i) = current
            && !have_thrpt
        {
            let inner = line[at + 6..]
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let w: Vec<&str> = inner.split_whitespace().collect();
            if w.len() == 6 {
                cases[i].eps_low = rate(w[0], w[1]);
                cases[i].eps = rate(w[2], w[3]);
                cases[i].eps_high = rate(w[4], w[5]);
                have_thrpt = true;
            }
        }
    }
    cases
}

/// Builds the benchmark; returns its executable.
fn build(repo: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("cargo")
        .args(["bench", "-p", "monitor", "--bench", "pipeline", "--no-run"])
        .current_dir(repo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("starting cargo bench --no-run")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "cargo bench --no-run failed:\n{}",
            super::process::tail(&err, 20)
        );
    }
    let exe = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Executable benches/pipeline.rs ("))
        .filter_map(|l| l.strip_suffix(')'))
        .next_back()
        .context("cargo bench --no-run named no executable for benches/pipeline.rs")?;
    Ok(repo.join(exe))
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Pipeline> {
    eprintln!("bench: pipeline: building the criterion benchmark");
    let exe = build(&ctx.repo)?;
    check_interrupt()?;
    let p = &ctx.plan;
    let args = vec![
        "--bench".to_owned(),
        "--warm-up-time".into(),
        format!("{}", p.pipeline_warmup_secs),
        "--measurement-time".into(),
        format!("{}", p.pipeline_measure_secs),
        "--sample-size".into(),
        if p.quick { "10" } else { "20" }.into(),
    ];
    let command = format!(
        "cargo bench -p monitor --bench pipeline -- {}",
        args[1..].join(" ")
    );
    eprintln!("bench: pipeline: {command}");
    let t0 = Instant::now();
    let out = Command::new(&exe)
        .args(&args)
        .current_dir(&ctx.repo)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let run_secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the pipeline benchmark failed ({}):\n{}\n{}",
            out.status,
            super::process::tail(&text, 10),
            super::process::tail(&String::from_utf8_lossy(&out.stderr), 10)
        );
    }
    let cases = parse(&text);
    for c in &cases {
        eprintln!(
            "bench: pipeline: {} {:.0} events/s",
            c.id,
            c.eps.unwrap_or(f64::NAN)
        );
    }
    let mut result = Pipeline {
        command,
        cases,
        run_secs,
        profile: Vec::new(),
        stages: Vec::new(),
        profile_note: None,
    };
    // Profiled whether the target is met or not: a few seconds, and the
    // report then says what an event's time is spent on either way.
    check_interrupt()?;
    if let Err(e) = hot_spots(ctx, &exe, &mut result) {
        result.profile_note = Some(format!("no profile: {e:#}"));
    }
    Ok(result)
}

/// Self time grouped by what the code does, first match wins. Self time,
/// not call graphs: the release build has no frame pointers, so callers are
/// not reliable, but every sample's own symbol is.
const GROUPS: [(&str, &[&str]); 8] = [
    (
        "rule loading (setup, in the recording)",
        &[
            "aho_corasick::dfa::Builder",
            "aho_corasick::nfa",
            "determinize",
            "regex_syntax",
            "regex_automata::nfa",
            "globset::glob",
            "GlobSetBuilder",
            "serde_saphyr",
            "saphyr",
            "monitor::policy::compile",
            "monitor::policy::load",
        ],
    ),
    (
        "allocator",
        &[
            "malloc",
            "_int_free",
            "cfree",
            "realloc",
            "__rdl_",
            "__rust_",
        ],
    ),
    ("memmove, memset", &["memmove", "memset", "memcpy"]),
    (
        "hashing (map lookups)",
        &["hash_one", "sip::Hasher", "hashbrown"],
    ),
    (
        "building strings (clone, lossy UTF-8, format, join)",
        &[
            "as core::clone::Clone>::clone",
            "from_utf8_lossy",
            "Utf8Chunks",
            "format",
            "join_generic",
            "CharSearcher",
        ],
    ),
    ("decode", &["monitor::event::decode"]),
    ("enrich", &["monitor::context::"]),
    (
        "match",
        &[
            "monitor::policy::",
            "globset::",
            "aho_corasick::",
            "regex_automata::",
            "memchr::",
        ],
    ),
];

/// `perf record` of the 1,000-rule case alone (criterion's `--profile-time`:
/// the loop with no analysis), self time by symbol and the stages' shares.
fn hot_spots(ctx: &Ctx, exe: &Path, result: &mut Pipeline) -> anyhow::Result<()> {
    if !profile::perf_works() {
        bail!("`perf record` does not work here (apt-get install linux-perf)");
    }
    let data = ctx.shm.join("pipeline.perf");
    let filter = format!("^pipeline/rules/{TARGET_RULES}$");
    let status = Command::new("perf")
        .args(["record", "-g", "-e", "cpu-clock", "-F", "1999", "-o"])
        .arg(&data)
        .arg("--")
        .arg(exe)
        .args(["--bench", "--profile-time", "5", &filter])
        .current_dir(&ctx.repo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running perf record")?;
    if !status.success() {
        bail!("perf record of the pipeline benchmark failed ({status})");
    }
    // Setup (writing and compiling every rule set) is in the recording too;
    // it is small next to 5 s of the loop, and its symbols (globset, regex
    // and aho-corasick builders) are easy to tell apart.
    let flat = profile::report(&data, false)?;
    result.profile = flat
        .iter()
        .take(15)
        .map(|s| Hot {
            percent: s.percent,
            symbol: s.symbol.clone(),
        })
        .collect();
    let mut stages: Vec<Hot> = GROUPS
        .iter()
        .map(|(label, _)| Hot {
            percent: 0.0,
            symbol: (*label).to_owned(),
        })
        .collect();
    let mut other = 0.0;
    for sym in &flat {
        match GROUPS
            .iter()
            .position(|(_, pats)| pats.iter().any(|p| sym.symbol.contains(p)))
        {
            Some(i) => stages[i].percent += sym.percent,
            None => other += sym.percent,
        }
    }
    stages.push(Hot {
        percent: other,
        symbol: "other".into(),
    });
    result.stages = stages;
    let _ = std::fs::remove_file(&data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_output() {
        let text = "pipeline-case rules/1000 load_ms=74 rules=1000 policies=334 events=4096 findings=60 container_events=3305\n\
Benchmarking pipeline/rules/1000: Warming up for 1.0000 s\n\
pipeline/rules/1000     time:   [4.4276 ms 4.4488 ms 4.5037 ms]\n\
                        thrpt:  [909.47 Kelem/s 920.71 Kelem/s 1.0251 Melem/s]\n\
                 change:\n\
                        thrpt:  [+10842% +11742% +12719%]\n\
pipeline-case default-pack/14 load_ms=0 rules=14 policies=6 events=4096 findings=165 container_events=3305\n\
pipeline/default-pack/14\n\
                        time:   [5.4366 ms 5.4512 ms 5.4709 ms]\n\
                        thrpt:  [748.69 Kelem/s 751.40 Kelem/s 753.41 Kelem/s]\n";
        let cases = parse(text);
        assert_eq!(cases.len(), 2);
        let c = &cases[0];
        assert_eq!(
            (c.rules, c.policies, c.events, c.findings),
            (1000, 334, 4096, 60)
        );
        assert_eq!(c.load_ms, Some(74.0));
        assert!((c.eps.unwrap() - 920_710.0).abs() < 1e-6);
        assert!((c.eps_high.unwrap() - 1_025_100.0).abs() < 1e-6);
        assert_eq!(cases[1].id, "pipeline/default-pack/14");
        assert!((cases[1].eps.unwrap() - 751_400.0).abs() < 1e-6);
        let p = Pipeline {
            command: String::new(),
            cases,
            run_secs: 0.0,
            profile: vec![],
            stages: vec![],
            profile_note: None,
        };
        assert!(p.case(1000).is_some() && p.case(10).is_none());
    }
}
