//! Which tests run, decided on the host before any guest boots: the test
//! executables built (`cargo test --no-run`) and pinned, their tests listed,
//! and those a guest cannot run left out by name. Apart from the guest run
//! and its report, which only consume the chosen cases.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::{super::kernel, SOAK, TestArgs};

/// One test to run: `suite::name` in executable `exe`.
#[derive(Clone, Debug)]
pub(super) struct Case {
    pub(super) suite: String,
    pub(super) name: String,
    pub(super) exe: PathBuf,
}

/// A test left out, and why.
pub(super) struct LeftOut {
    pub(super) suite: String,
    pub(super) name: String,
    pub(super) why: String,
}

/// What `cargo test --no-run` built: the test executables by target name,
/// and the agent binary they run.
pub(super) struct Built {
    tests: BTreeMap<String, PathBuf>,
    monitor: PathBuf,
}

pub(super) fn build(suites: &[String]) -> anyhow::Result<Built> {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--no-run", "--message-format=json", "-p", "monitor"]);
    for s in suites {
        cmd.args(["--test", s]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed ({})", out.status);
    }
    let mut tests = BTreeMap::new();
    let mut monitor = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        let kinds = v["target"]["kind"].as_array().cloned().unwrap_or_default();
        let name = v["target"]["name"].as_str().unwrap_or_default().to_owned();
        if kinds.iter().any(|k| k == "test") {
            tests.insert(name, PathBuf::from(exe));
        } else if kinds.iter().any(|k| k == "bin") && name == "monitor" {
            monitor = Some(PathBuf::from(exe));
        }
    }
    for s in suites {
        if !tests.contains_key(s) {
            bail!("cargo test --no-run built no test executable {s}");
        }
    }
    let monitor = match monitor {
        Some(m) => m,
        None => crate::target_dir()?.join("debug/monitor"),
    };
    Ok(Built { tests, monitor })
}

/// Hard links (or copies) of the executables, so that a build in this tree
/// while the guests run does not change what they test. The tests start the
/// pinned agent through `MONITOR_BIN`.
pub(super) struct Pinned {
    dir: PathBuf,
    tests: BTreeMap<String, PathBuf>,
    pub(super) monitor: PathBuf,
}

impl Pinned {
    pub(super) fn new(built: &Built) -> anyhow::Result<Pinned> {
        let dir = kernel::cache_root()?
            .join("runs")
            .join(format!("{}-bin", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let pin = |from: &Path, name: &str| -> anyhow::Result<PathBuf> {
            let to = dir.join(name);
            if fs::hard_link(from, &to).is_err() {
                fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
            }
            Ok(to)
        };
        let mut tests = BTreeMap::new();
        for (name, exe) in &built.tests {
            tests.insert(name.clone(), pin(exe, name)?);
        }
        let monitor = pin(&built.monitor, "monitor")?;
        Ok(Pinned {
            dir,
            tests,
            monitor,
        })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Lists every test of every suite and picks the ones to run.
pub(super) fn choose(
    args: &TestArgs,
    root: &Path,
    pinned: &Pinned,
) -> anyhow::Result<(Vec<Case>, Vec<LeftOut>)> {
    let mut cases = Vec::new();
    let mut left_out = Vec::new();
    for (suite, exe) in &pinned.tests {
        let list = crate::output(Command::new(exe).args(["--list", "--format", "terse"]))?;
        let source = fs::read_to_string(root.join("monitor/tests").join(format!("{suite}.rs")))
            .unwrap_or_default();
        let docker = tests_using(&source, "Dockerd");
        for line in list.lines() {
            let Some(name) = line.strip_suffix(": test") else {
                continue;
            };
            let why = if docker.iter().any(|d| d == name) {
                "needs a Docker engine (starts dockerd), which the guest does not have"
            } else if name == SOAK && !args.soak {
                "the memory soak (3,000 containers) is too slow under emulation; --soak runs it"
            } else if args.skip.iter().any(|s| s == name) {
                "--skip"
            } else if !args.only.is_empty() && !args.only.iter().any(|s| s == name) {
                // Not chosen with --only: not a test left out either.
                continue;
            } else {
                ""
            };
            match why {
                "" => cases.push(Case {
                    suite: suite.clone(),
                    name: name.to_owned(),
                    exe: exe.clone(),
                }),
                why => left_out.push(LeftOut {
                    suite: suite.clone(),
                    name: name.to_owned(),
                    why: why.to_owned(),
                }),
            }
        }
    }
    for o in &args.only {
        if !cases.iter().any(|c| &c.name == o) {
            bail!("--only {o}: no such test (or it is left out)");
        }
    }
    Ok((cases, left_out))
}

/// The `#[test]` functions whose body mentions `word`.
fn tests_using(source: &str, word: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in source.split("#[test]").skip(1) {
        let Some(fn_at) = chunk.find("fn ") else {
            continue;
        };
        let name: String = chunk[fn_at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = chunk.find('{') else {
            continue;
        };
        // The body: up to the brace that closes the first one.
        let mut depth = 0usize;
        let mut end = chunk.len();
        for (i, c) in chunk[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        if chunk[open..end].contains(word) {
            out.push(name);
        }
    }
    out
}
