//! Synthetic inputs shared by `cargo xtask bench` and the pipeline benchmark
//! (`monitor/benches/pipeline.rs` includes this file by path): rule sets of a
//! given size and Docker state files in the real format.
//!
//! Only `std` and `serde_json`, which both crates have, so one source serves
//! both and the memory figures and the pipeline figures use the same rules.
use std::{
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};

/// Rules per generated policy: process, file, egress.
pub const RULES_PER_POLICY: usize = 3;
/// Policies per generated rule file (a team's file, say).
const POLICIES_PER_FILE: usize = 100;

/// The image of generated workload `i`: the one image policy `i` selects
/// (`registry.example.com/team<i>/svc<i>:*`).
pub fn image_of(i: usize) -> String {
    format!("registry.example.com/team{i}/svc{i}:1.{}", i % 7)
}

/// The executable generated workload `i` is allowed to run.
pub fn exe_of(i: usize) -> String {
    format!("/usr/bin/svc{i}")
}

/// Writes `rules` rules into `dir` as `gen-NNN.yaml` files: policies of three
/// rules each (a process allow or deny list, protected paths with an
/// exception, an egress allowlist), each selecting the containers of one
/// image by a glob, so that a workload is selected by at most one of them and
/// every other policy's selector is checked and fails. Returns the number of
/// policies.
pub fn write_rules(dir: &Path, rules: usize) -> io::Result<usize> {
    fs::create_dir_all(dir)?;
    let policies = rules.div_ceil(RULES_PER_POLICY);
    let mut file_no = 0;
    let mut text = String::new();
    let mut left = rules;
    for i in 0..policies {
        if i % POLICIES_PER_FILE == 0 {
            if !text.is_empty() {
                fs::write(dir.join(format!("gen-{file_no:03}.yaml")), &text)?;
                file_no += 1;
            }
            text = "policies:\n".to_owned();
        }
        let n = left.min(RULES_PER_POLICY);
        left -= n;
        policy(&mut text, i, n);
    }
    if !text.is_empty() {
        fs::write(dir.join(format!("gen-{file_no:03}.yaml")), &text)?;
    }
    Ok(policies)
}

fn policy(out: &mut String, i: usize, rules: usize) {
    let exe = exe_of(i);
    let _ = write!(
        out,
        "  - name: gen/team{i}\n    description: Generated policy {i}.\n    selector:\n      image: [\"registry.example.com/team{i}/svc{i}:*\"]\n    rules:\n"
    );
    if rules >= 1 {
        if i.is_multiple_of(2) {
            let _ = write!(
                out,
                "      - name: processes\n        severity: high\n        process:\n          allow:\n            - exe: [\"{exe}\", \"/usr/local/bin/svc{i}-*\"]\n            - exe: [/bin/sh, /bin/busybox]\n              parents: [\"{exe}\"]\n"
            );
        } else {
            let _ = write!(
                out,
                "      - name: processes\n        severity: high\n        process:\n          deny:\n            - exe: [\"**/nc\", \"**/ncat\", \"**/svc{i}-debug\"]\n            - exe: [\"**/python3\"]\n              args: [\"-c\"]\n"
            );
        }
    }
    if rules >= 2 {
        let _ = write!(
            out,
            "      - name: files\n        severity: medium\n        file:\n          paths: [\"/etc/**\", \"/usr/**\", \"/srv/svc{i}/config/**\"]\n          allow: [\"/etc/svc{i}/**\"]\n          ops: [open, rename, unlink]\n"
        );
    }
    if rules >= 3 {
        let _ = write!(
            out,
            "      - name: egress\n        severity: low\n        egress:\n          allow:\n            - to: [127.0.0.0/8]\n            - to: [10.{}.0.0/16, 192.168.{}.0/24]\n              ports: [443, 5432, \"8000-8099\"]\n              protocols: [tcp]\n",
            i % 256,
            i % 256
        );
    }
}

/// Where Docker keeps a container's state below a host root.
pub fn docker_dir(host_root: &Path, id: &str) -> PathBuf {
    host_root.join("var/lib/docker/containers").join(id)
}

/// The Docker container whose state files (`monitor/testdata`) are copied.
const DOCKER_FIXTURE: &str = "8ad700d1f7115aba42de87ce088d3f16808a1ac54e2d7f562c499bdef8d0a0d4";

/// Docker's `config.v2.json` and `hostconfig.json` for a container, in the
/// real format: the repository's fixture (a real Docker 27 container) with
/// its id, name and image replaced.
pub struct DockerState {
    config: Value,
    host: Value,
}

impl DockerState {
    /// Reads the fixture from the repository at `repo`.
    pub fn fixture(repo: &Path) -> io::Result<DockerState> {
        let dir = repo
            .join("monitor/testdata/runtime/host/var/lib/docker/containers")
            .join(DOCKER_FIXTURE);
        let read = |name: &str| -> io::Result<Value> {
            let text = fs::read_to_string(dir.join(name))?;
            serde_json::from_str(&text).map_err(io::Error::other)
        };
        Ok(DockerState {
            config: read("config.v2.json")?,
            host: read("hostconfig.json")?,
        })
    }

    /// Writes the state of container `id` (64 hex digits) named `name`
    /// running `image` below `host_root`, each file renamed into place as
    /// dockerd does.
    pub fn write(&self, host_root: &Path, id: &str, name: &str, image: &str) -> io::Result<()> {
        let swap = |v: &Value| -> io::Result<Value> {
            let text = serde_json::to_string(v).map_err(io::Error::other)?;
            serde_json::from_str(&text.replace(DOCKER_FIXTURE, id)).map_err(io::Error::other)
        };
        let mut config = swap(&self.config)?;
        config["Name"] = json!(format!("/{name}"));
        config["Config"]["Image"] = json!(image);
        config["Config"]["Hostname"] = json!(id[..12]);
        let host = swap(&self.host)?;
        let dir = docker_dir(host_root, id);
        fs::create_dir_all(&dir)?;
        for (file, value) in [("hostconfig.json", &host), ("config.v2.json", &config)] {
            let tmp = dir.join(format!(".{file}.tmp"));
            fs::write(&tmp, serde_json::to_vec(value).map_err(io::Error::other)?)?;
            fs::rename(&tmp, dir.join(file))?;
        }
        Ok(())
    }
}

/// A container id (64 hex digits) from a seed and an index: distinct for
/// distinct inputs, the same on every call.
pub fn container_id(seed: u64, i: u64) -> String {
    let mut state = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(64);
    while out.len() < 64 {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let _ = write!(out, "{:016x}", z ^ (z >> 31));
    }
    out
}

/// The systemd driver's cgroup name for a Docker container.
pub fn docker_scope(id: &str) -> String {
    format!("docker-{id}.scope")
}
