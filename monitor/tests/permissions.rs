//! What the sinks keep on disk is the agent's alone, whatever the umask:
//! spool and output directories they create are 0700, their files 0600.
//! One test in its own binary: the umask is per process.
use std::{os::unix::fs::PermissionsExt as _, path::Path};

use bytes::Bytes;
use monitor::sink::{FileConfig, RotatingFile, Spool};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn spool_and_output_are_private_under_any_umask() {
    // 000 would leave everything world-readable; 277 would leave the agent
    // unable to write its own files. Neither may show.
    for umask in [0o000, 0o277, 0o022] {
        // SAFETY: umask(2) cannot fail; this binary runs this one test only.
        unsafe { libc::umask(umask) };
        let tmp = tempfile::tempdir().unwrap();
        let spool_dir = tmp.path().join("var/lib/monitor/spool/hook");
        let (mut spool, _) = Spool::open(&spool_dir, 1 << 20, 4096).unwrap();
        for i in 0..200 {
            spool
                .append(format!("{{\"id\":\"{i:04}\",\"pad\":\"{}\"}}", "x".repeat(40)).as_bytes())
                .unwrap();
        }
        let first = spool.peek(10).unwrap();
        spool.ack(first.last().unwrap().0).unwrap();
        for d in ["var", "var/lib", "var/lib/monitor", "var/lib/monitor/spool"] {
            assert_eq!(mode(&tmp.path().join(d)), 0o700, "umask {umask:o}: {d}");
        }
        assert_eq!(mode(&spool_dir), 0o700, "umask {umask:o}");
        let in_spool = files(&spool_dir);
        assert!(in_spool.len() > 2, "segments and ack: {in_spool:?}");
        for f in &in_spool {
            assert_eq!(mode(f), 0o600, "umask {umask:o}: {}", f.display());
        }

        let out = tmp.path().join("log/monitor/alerts.jsonl");
        let mut file = RotatingFile::open(FileConfig {
            path: out.clone(),
            max_bytes: 200,
            keep: 2,
        })
        .unwrap();
        for i in 0..10 {
            file.write_lines(&[Bytes::from(format!(
                "{{\"id\":\"{i:04}\",\"pad\":\"{}\"}}",
                "y".repeat(40)
            ))])
            .unwrap();
        }
        assert_eq!(mode(&tmp.path().join("log")), 0o700, "umask {umask:o}");
        assert_eq!(
            mode(&tmp.path().join("log/monitor")),
            0o700,
            "umask {umask:o}"
        );
        let logs = files(&tmp.path().join("log/monitor"));
        assert_eq!(logs.len(), 3, "the file and two rotated: {logs:?}");
        for f in &logs {
            assert_eq!(mode(f), 0o600, "umask {umask:o}: {}", f.display());
        }
    }
}
