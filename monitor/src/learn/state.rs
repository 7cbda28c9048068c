//! What `monitor learn` keeps between runs, beside the rule files it
//! writes (`DIR/.monitor-learn.json`): each workload's sightings with their
//! counts, and the text it last wrote, so that a later run merges into a
//! file only when nobody has edited it since.
use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Egress, Learned, Seen, Workload, render};

/// The state file's name in the output directory.
pub const STATE_FILE: &str = ".monitor-learn.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    workloads: Vec<WorkloadState>,
}

/// One workload, in lists (JSON maps take only string keys).
#[derive(Debug, Serialize, Deserialize)]
struct WorkloadState {
    workload: Workload,
    processes: Vec<(String, Option<String>, Seen)>,
    writes: Vec<(String, Seen)>,
    egress: Vec<(Egress, Seen)>,
    listening: Vec<(String, u16, Seen)>,
    containers: Vec<(String, Seen)>,
    events: u64,
    /// The rule file as this tool last wrote it.
    written: String,
}

impl WorkloadState {
    fn learned(&self) -> Learned {
        Learned {
            processes: self
                .processes
                .iter()
                .map(|(e, p, s)| ((e.clone(), p.clone()), s.clone()))
                .collect(),
            writes: self.writes.iter().cloned().collect(),
            egress: self.egress.iter().cloned().collect(),
            listening: self
                .listening
                .iter()
                .map(|(p, n, s)| ((p.clone(), *n), s.clone()))
                .collect(),
            containers: self.containers.iter().cloned().collect(),
            events: self.events,
        }
    }

    fn of(workload: &Workload, l: &Learned, written: String) -> WorkloadState {
        WorkloadState {
            workload: workload.clone(),
            processes: l
                .processes
                .iter()
                .map(|((e, p), s)| (e.clone(), p.clone(), s.clone()))
                .collect(),
            writes: l
                .writes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            egress: l
                .egress
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            listening: l
                .listening
                .iter()
                .map(|((p, n), s)| (p.clone(), *n, s.clone()))
                .collect(),
            containers: l
                .containers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            events: l.events,
            written,
        }
    }
}

/// What one [`write`] did with a workload's file.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written (new, or merged into a file this tool wrote and nobody edited).
    File(PathBuf),
    /// The file was edited since: the merged policy is beside it, `.new`.
    Beside(PathBuf),
}

/// Merges `learned` with the earlier runs' state in `dir` and writes each
/// workload's rule file and the state. An edited file is never overwritten.
pub fn write(dir: &Path, learned: &BTreeMap<Workload, Learned>) -> io::Result<Vec<Written>> {
    fs::create_dir_all(dir)?;
    let state_path = dir.join(STATE_FILE);
    let mut state: StateFile = match fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {e}; move it away to start learning afresh",
                    state_path.display()
                ),
            )
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => StateFile::default(),
        Err(e) => return Err(e),
    };
    let mut done = Vec::new();
    for (workload, new) in learned {
        let index = state.workloads.iter().position(|w| &w.workload == workload);
        let mut merged = index
            .map(|i| state.workloads[i].learned())
            .unwrap_or_default();
        merged.merge(new);
        let text = render::policy_file(workload, &merged);
        let path = dir.join(workload.file_name());
        let edited = match fs::read_to_string(&path) {
            Ok(existing) => index.is_none_or(|i| state.workloads[i].written != existing),
            Err(_) => false,
        };
        let written = if edited {
            let beside = path.with_extension("yaml.new");
            write_atomically(&beside, &text)?;
            Written::Beside(beside)
        } else {
            write_atomically(&path, &text)?;
            Written::File(path)
        };
        // An edited file stays edited: what this tool wrote last is still
        // what it compares with (nothing, for a file it never wrote).
        let compare = if edited {
            index
                .map(|i| state.workloads[i].written.clone())
                .unwrap_or_default()
        } else {
            text
        };
        let entry = WorkloadState::of(workload, &merged, compare);
        match index {
            Some(i) => state.workloads[i] = entry,
            None => state.workloads.push(entry),
        }
        done.push(written);
    }
    let json = serde_json::to_vec_pretty(&state).map_err(io::Error::other)?;
    write_atomically(
        &state_path,
        std::str::from_utf8(&json).expect("JSON is UTF-8"),
    )?;
    Ok(done)
}

/// Written to a temporary file and renamed: a crash leaves the old file or
/// the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}
