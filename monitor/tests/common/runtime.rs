//! A fake host root for `--host-root`: the container runtimes' state files in
//! their real formats (the fixtures under `testdata/runtime/host`, edited to
//! the test's ids, names and images), and `proc` linking to the real `/proc`
//! so the agent reads the machine's processes through it.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{Value, json};

/// The fixture containers whose files are copied and edited.
const DOCKER_FIXTURE: &str = "8ad700d1f7115aba42de87ce088d3f16808a1ac54e2d7f562c499bdef8d0a0d4";
const CONTAINERD_FIXTURE: &str = "7be7ca56452ce0f69575654683e3b8cdc61d8898d06caf92fbf5ffffcd856bd7";
const CRIO_FIXTURE: &str = "438e2ba9d5970597608a7df68ae72f6085a1460f976f964ed5f369c793eaa4fe";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/runtime/host")
}

fn docker_dir(id: &str) -> String {
    format!("var/lib/docker/containers/{id}")
}

fn containerd_dir(id: &str) -> String {
    format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}")
}

fn crio_dir(id: &str) -> String {
    format!("run/containers/storage/overlay-containers/{id}/userdata")
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// `n` lowercase hex digits, different on every call (and in every process).
pub fn unique_hex(n: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut state =
        nanos ^ (u64::from(std::process::id()) << 40) ^ NEXT.fetch_add(1, Ordering::Relaxed);
    let mut out = String::with_capacity(n + 16);
    while out.len() < n {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    out.truncate(n);
    out
}

/// A fresh 64-hex-digit container id.
pub fn container_id() -> String {
    unique_hex(64)
}

/// A fresh pod UID (`01b4b887-7635-4346-9c20-58a294bbb034`).
pub fn pod_uid() -> String {
    let h = unique_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
}

impl Runtime {
    /// As the trace's `container.runtime` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
        }
    }
}

/// The Kubernetes pod of a CRI container.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// A container as a test describes it; its files say exactly this.
#[derive(Clone, Debug)]
pub struct Container {
    pub runtime: Runtime,
    pub id: String,
    pub name: String,
    pub image: String,
    /// Required for containerd and CRI-O (their metadata is complete only with it).
    pub pod: Option<Pod>,
    /// Extra labels, Docker's or CRI-O's (to make an entry weigh something in
    /// memory tests; containerd's annotations are not kept).
    pub labels: Vec<(String, String)>,
}

impl Container {
    pub fn docker(name: &str, image: &str) -> Container {
        Container {
            runtime: Runtime::Docker,
            id: container_id(),
            name: name.to_owned(),
            image: image.to_owned(),
            pod: None,
            labels: Vec::new(),
        }
    }

    /// A containerd (`runtime` Containerd) or CRI-O container in a fresh pod.
    pub fn cri(runtime: Runtime, name: &str, image: &str, pod: &str, namespace: &str) -> Container {
        Container {
            runtime,
            id: container_id(),
            name: name.to_owned(),
            image: image.to_owned(),
            pod: Some(Pod {
                name: pod.to_owned(),
                namespace: namespace.to_owned(),
                uid: pod_uid(),
            }),
            labels: Vec::new(),
        }
    }

    /// The trace's `container` object for this container in cgroup `cgroup`.
    pub fn expected(&self, cgroup: &str) -> Value {
        json!({
            "id": self.id,
            "runtime": self.runtime.as_str(),
            "name": self.name,
            "image": self.image,
            "pod": self.pod.as_ref().map(|p| p.name.clone()),
            "namespace": self.pod.as_ref().map(|p| p.namespace.clone()),
            "cgroup": cgroup,
        })
    }
}

/// A temporary host root. Removed when dropped.
pub struct HostRoot {
    dir: tempfile::TempDir,
}

impl Default for HostRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl HostRoot {
    pub fn new() -> HostRoot {
        let dir = super::tempdir();
        std::os::unix::fs::symlink("/proc", dir.path().join("proc")).unwrap();
        HostRoot { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Writes the runtime's state files for `c` (see [`write_state`]).
    pub fn write(&self, c: &Container) {
        write_state(self.path(), c);
    }

    /// Removes `c`'s state, as the runtime does when the container is removed.
    pub fn remove(&self, c: &Container) {
        let dir = match c.runtime {
            Runtime::Docker => self.path().join(docker_dir(&c.id)),
            Runtime::Containerd => self.path().join(containerd_dir(&c.id)),
            // The container's directory, above `userdata`.
            Runtime::Crio => self
                .path()
                .join(crio_dir(&c.id))
                .parent()
                .unwrap()
                .to_owned(),
        };
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("rm -r {}: {e}", dir.display()));
    }
}

/// Writes the state files a runtime keeps for `c` below `host_root`, in the
/// real formats (the fixtures, with the id, name, image and pod changed),
/// each atomically (a temporary file renamed into place), as the runtimes
/// do. Every test that needs a container's metadata writes it here.
pub fn write_state(host_root: &Path, c: &Container) {
    match c.runtime {
        Runtime::Docker => {
            let from = fixtures().join(docker_dir(DOCKER_FIXTURE));
            let mut config = fixture_json(&from.join("config.v2.json"), DOCKER_FIXTURE, &c.id);
            config["Name"] = json!(format!("/{}", c.name));
            config["Config"]["Image"] = json!(c.image);
            config["Config"]["Hostname"] = json!(c.id[..12]);
            for (k, v) in &c.labels {
                config["Config"]["Labels"][k] = json!(v);
            }
            let host = fixture_json(&from.join("hostconfig.json"), DOCKER_FIXTURE, &c.id);
            let dir = host_root.join(docker_dir(&c.id));
            write_atomically(&dir.join("hostconfig.json"), &host);
            write_atomically(&dir.join("config.v2.json"), &config);
        }
        Runtime::Containerd => {
            let pod = c.pod.as_ref().expect("a containerd container needs a pod");
            let from = fixtures().join(containerd_dir(CONTAINERD_FIXTURE));
            let mut spec = fixture_json(&from.join("config.json"), CONTAINERD_FIXTURE, &c.id);
            let a = &mut spec["annotations"];
            a["io.kubernetes.cri.container-name"] = json!(c.name);
            a["io.kubernetes.cri.image-name"] = json!(c.image);
            a["io.kubernetes.cri.sandbox-name"] = json!(pod.name);
            a["io.kubernetes.cri.sandbox-namespace"] = json!(pod.namespace);
            a["io.kubernetes.cri.sandbox-uid"] = json!(pod.uid);
            let dir = host_root.join(containerd_dir(&c.id));
            write_atomically(&dir.join("config.json"), &spec);
        }
        Runtime::Crio => {
            let pod = c.pod.as_ref().expect("a CRI-O container needs a pod");
            let from = fixtures().join(crio_dir(CRIO_FIXTURE));
            let mut spec = fixture_json(&from.join("config.json"), CRIO_FIXTURE, &c.id);
            let mut labels = json!({
                "io.kubernetes.container.name": c.name,
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
            });
            for (k, v) in &c.labels {
                labels[k] = json!(v);
            }
            let a = &mut spec["annotations"];
            a["io.kubernetes.container.name"] = json!(c.name);
            a["io.kubernetes.cri-o.ImageName"] = json!(c.image);
            a["io.kubernetes.cri-o.Labels"] = json!(labels.to_string());
            a["io.kubernetes.cri-o.Metadata"] = json!(json!({"name": c.name}).to_string());
            a["io.kubernetes.cri-o.Name"] = json!(format!(
                "k8s_{}_{}_{}_{}_0",
                c.name, pod.name, pod.namespace, pod.uid
            ));
            a["io.kubernetes.pod.name"] = json!(pod.name);
            a["io.kubernetes.pod.namespace"] = json!(pod.namespace);
            a["io.kubernetes.pod.uid"] = json!(pod.uid);
            let dir = host_root.join(crio_dir(&c.id));
            write_atomically(&dir.join("config.json"), &spec);
        }
    }
}

/// Writes the state of a fresh Docker container `name` running `image`
/// below `host_root`; returns its id.
pub fn write_docker(host_root: &Path, name: &str, image: &str) -> String {
    let c = Container::docker(name, image);
    write_state(host_root, &c);
    c.id
}

/// A fixture file with the fixture container's id replaced by `id` throughout.
fn fixture_json(path: &Path, fixture_id: &str, id: &str) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text.replace(fixture_id, id)).unwrap()
}

fn write_atomically(path: &Path, value: &Value) {
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&tmp, serde_json::to_vec(value).unwrap()).unwrap();
    fs::rename(&tmp, path).unwrap();
}
