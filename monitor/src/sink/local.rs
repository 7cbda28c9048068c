//! Local sinks: stdout and files, JSON lines. No spool: the line itself is the
//! durable copy (files) or the consumer owns it (stdout).
use std::{
    fs::{self, File},
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use serde::Deserialize;
use tokio::{io::AsyncWriteExt as _, sync::mpsc};

use super::SinkShared;

/// A JSON-lines file with size-based rotation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept: `path.1` (newest) ... `path.N`.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

impl FileConfig {
    /// A file at `path` with the default rotation (100 MiB, 5 kept).
    pub fn new(path: PathBuf) -> FileConfig {
        FileConfig {
            path,
            max_bytes: default_max_bytes(),
            keep: default_keep(),
        }
    }
}

fn default_max_bytes() -> u64 {
    100 << 20
}

fn default_keep() -> u32 {
    5
}

/// The file sink's writer.
pub struct RotatingFile {
    config: FileConfig,
    file: File,
    len: u64,
}

impl RotatingFile {
    pub fn open(config: FileConfig) -> io::Result<RotatingFile> {
        super::private::parents(&config.path)?;
        let file = super::private::append(&config.path, false)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile { config, file, len })
    }

    fn rotated(path: &Path, n: u32) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let path = self.config.path.clone();
        if self.config.keep == 0 {
            fs::remove_file(&path)?;
        } else {
            let _ = fs::remove_file(Self::rotated(&path, self.config.keep));
            for n in (1..self.config.keep).rev() {
                let from = Self::rotated(&path, n);
                if from.exists() {
                    fs::rename(&from, Self::rotated(&path, n + 1))?;
                }
            }
            fs::rename(&path, Self::rotated(&path, 1))?;
        }
        self.file = super::private::append(&path, false)?;
        self.len = 0;
        Ok(())
    }

    /// Writes whole lines (each record plus `\n`), rotating first when they
    /// would not fit.
    pub fn write_lines(&mut self, records: &[Bytes]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            let add = r.len() as u64 + 1;
            if self.len + (buf.len() as u64) + add > self.config.max_bytes
                && self.len + buf.len() as u64 > 0
            {
                self.file.write_all(&buf)?;
                self.len += buf.len() as u64;
                buf.clear();
                self.rotate()?;
            }
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

pub(super) enum LocalWriter {
    Stdout(tokio::io::Stdout),
    File(RotatingFile),
}

impl LocalWriter {
    async fn write(&mut self, records: &[Bytes]) -> io::Result<()> {
        match self {
            LocalWriter::Stdout(out) => {
                let mut buf = Vec::new();
                for r in records {
                    buf.extend_from_slice(r);
                    buf.push(b'\n');
                }
                out.write_all(&buf).await?;
                out.flush().await
            }
            // Local disk: a short blocking write on this sink's own task.
            LocalWriter::File(f) => f.write_lines(records),
        }
    }

    fn sync(&mut self) {
        if let LocalWriter::File(f) = self
            && let Err(e) = f.sync()
        {
            tracing::error!(error = %e, "fsync of the alert file failed");
        }
    }
}

pub(super) async fn run_local(
    shared: Arc<SinkShared>,
    mut rx: mpsc::Receiver<Bytes>,
    mut writer: LocalWriter,
    fsync_interval: Duration,
) {
    let mut tick = tokio::time::interval(fsync_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(first) = msg else { break };
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let n = batch.len() as u64;
                match writer.write(&batch).await {
                    Ok(()) => shared.metrics.delivered(n),
                    Err(e) => {
                        shared.metrics.failed(n);
                        tracing::error!(sink = %shared.name, error = %e, alerts = n, "writing alerts failed");
                    }
                }
                shared.metrics.set_queued(rx.len() as u64);
            }
            _ = tick.tick() => writer.sync(),
        }
    }
    writer.sync();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files_of_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut f = RotatingFile::open(FileConfig {
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
        })
        .unwrap();
        let recs: Vec<Bytes> = (0..20)
            .map(|i| Bytes::from(format!("{{\"id\":\"{i:02}\",\"p\":\"xxxxxxxxxx\"}}")))
            .collect();
        for r in &recs {
            f.write_lines(std::slice::from_ref(r)).unwrap();
        }
        let cur = fs::read_to_string(&path).unwrap();
        let one = fs::read_to_string(dir.path().join("alerts.jsonl.1")).unwrap();
        assert!(dir.path().join("alerts.jsonl.2").exists());
        assert!(!dir.path().join("alerts.jsonl.3").exists());
        assert!(cur.len() <= 100 && one.len() <= 100);
        assert!(
            cur.ends_with("\"id\":\"19\",\"p\":\"xxxxxxxxxx\"}\n"),
            "{cur}"
        );
        for line in cur.lines().chain(one.lines()) {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }
}
