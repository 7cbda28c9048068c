//! The on-disk spool of one sink: alerts not yet acknowledged by its endpoint.
//!
//! Layout under the sink's directory:
//!
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: append-only segment files of JSON lines (the
//!   alert records exactly as sent; compact JSON never contains a newline).
//!   A new segment starts when the current one reaches `segment_bytes`.
//! - `ack`: `"<segment> <offset>\n"`, the position of the oldest record not
//!   yet acknowledged, replaced atomically (write `ack.tmp`, rename).
//!
//! Durability (fsync policy): every record is `write(2)`-ten to its segment
//! before anything else happens to it, so a crash of the process (SIGKILL
//! included) loses nothing the spool accepted; the kernel has it. Segments
//! are `fdatasync`-ed by [`Spool::sync`], which the sink task calls every
//! `fsync_interval` (1 s by default) and on shutdown, so a power loss can lose
//! at most that interval. The `ack` file is never fsynced: losing an ack only
//! means records are delivered again, which at-least-once allows (receivers
//! de-duplicate on `id`).
//!
//! Bound: the unacknowledged records never exceed `max_bytes`; appending past
//! it drops the oldest records first and reports how many. Disk use is at most
//! `max_bytes` plus one segment (the acknowledged head of the oldest segment).
//!
//! Recovery: on open, segments before the ack position are deleted, a torn
//! last line (a crash in the middle of a write) is cut off, and lines that are
//! not JSON are skipped and counted as corrupt.
use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File},
    io::{self, Write as _},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use bytes::Bytes;

/// A record's sequence number, assigned on append (restarts at 0 on open).
pub type Seq = u64;

struct Entry {
    seq: Seq,
    segment: u64,
    offset: u64,
    len: u32,
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Records waiting for delivery.
    pub records: u64,
    /// Lines that were not JSON, skipped.
    pub corrupt: u64,
    /// Bytes of a torn last line, cut off.
    pub torn_bytes: u64,
}

/// One sink's spool; see the module docs.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: BTreeMap<u64, File>,
    active: u64,
    active_len: u64,
    index: VecDeque<Entry>,
    bytes: u64,
    next_seq: Seq,
    dirty: bool,
}

fn segment_name(n: u64) -> String {
    format!("{n:020}.seg")
}

impl Spool {
    /// Opens (or creates) the spool in `dir`.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<(Spool, Recovered)> {
        super::private::dir(dir)?;
        let segment_bytes = segment_bytes.clamp(4096, max_bytes.max(4096));
        let (ack_seg, ack_off) = read_ack(&dir.join("ack"));
        let mut numbers = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            segments: BTreeMap::new(),
            active: 0,
            active_len: 0,
            index: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            dirty: false,
        };
        let mut rec = Recovered::default();
        for n in numbers {
            let path = dir.join(segment_name(n));
            if n < ack_seg {
                fs::remove_file(&path)?;
                continue;
            }
            let file = super::private::append(&path, true)?;
            let data = fs::read(&path)?;
            let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete < data.len() {
                rec.torn_bytes += (data.len() - complete) as u64;
                file.set_len(complete as u64)?;
            }
            let start = if n == ack_seg {
                (ack_off as usize).min(complete)
            } else {
                0
            };
            let mut off = start;
            while off < complete {
                let end = off
                    + data[off..complete]
                        .iter()
                        .position(|&b| b == b'\n')
                        .expect("complete");
                let line = &data[off..end];
                if !line.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
                {
                    spool.push_entry(n, off as u64, line.len() as u32);
                } else if !line.is_empty() {
                    rec.corrupt += 1;
                }
                off = end + 1;
            }
            spool.active = n;
            spool.active_len = complete as u64;
            spool.segments.insert(n, file);
        }
        if spool.segments.is_empty() {
            spool.active = ack_seg;
            spool.new_segment(ack_seg)?;
        }
        rec.records = spool.index.len() as u64;
        Ok((spool, rec))
    }

    fn push_entry(&mut self, segment: u64, offset: u64, len: u32) {
        self.index.push_back(Entry {
            seq: self.next_seq,
            segment,
            offset,
            len,
        });
        self.next_seq += 1;
        self.bytes += len as u64 + 1;
    }

    fn new_segment(&mut self, n: u64) -> io::Result<()> {
        let file = super::private::append(&self.dir.join(segment_name(n)), true)?;
        self.segments.insert(n, file);
        self.active = n;
        self.active_len = 0;
        Ok(())
    }

    /// Appends one record (one alert as compact JSON, no newline). Returns how
    /// many of the oldest records were dropped to make room (the record
    /// itself counts when it alone is larger than the spool).
    pub fn append(&mut self, record: &[u8]) -> io::Result<u64> {
        debug_assert!(!record.contains(&b'\n'));
        let need = record.len() as u64 + 1;
        if need > self.max_bytes {
            return Ok(1);
        }
        let mut dropped = 0;
        while self.bytes + need > self.max_bytes {
            let Some(e) = self.index.pop_front() else {
                break;
            };
            self.bytes -= e.len as u64 + 1;
            dropped += 1;
        }
        if dropped > 0 {
            self.persist_ack()?;
        }
        if self.active_len >= self.segment_bytes {
            self.new_segment(self.active + 1)?;
        }
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record);
        line.push(b'\n');
        let file = self.segments.get_mut(&self.active).expect("active segment");
        file.write_all(&line)?;
        let (active, offset) = (self.active, self.active_len);
        self.active_len += need;
        self.push_entry(active, offset, record.len() as u32);
        self.dirty = true;
        Ok(dropped)
    }

    /// Up to `n` of the oldest unacknowledged records, oldest first.
    pub fn peek(&self, n: usize) -> io::Result<Vec<(Seq, Bytes)>> {
        let mut out = Vec::with_capacity(n.min(self.index.len()));
        for e in self.index.iter().take(n) {
            let mut buf = vec![0u8; e.len as usize];
            self.segments
                .get(&e.segment)
                .ok_or_else(|| io::Error::other("spool segment missing"))?
                .read_exact_at(&mut buf, e.offset)?;
            out.push((e.seq, Bytes::from(buf)));
        }
        Ok(out)
    }

    /// Acknowledges every record up to and including `upto`; deletes the
    /// segments left with nothing unacknowledged.
    pub fn ack(&mut self, upto: Seq) -> io::Result<()> {
        let mut moved = false;
        while let Some(e) = self.index.front() {
            if e.seq > upto {
                break;
            }
            self.bytes -= e.len as u64 + 1;
            self.index.pop_front();
            moved = true;
        }
        if moved {
            self.persist_ack()?;
        }
        Ok(())
    }

    /// Records the position of the oldest record left and deletes the
    /// segments before it.
    fn persist_ack(&mut self) -> io::Result<()> {
        let (seg, off) = match self.index.front() {
            Some(e) => (e.segment, e.offset),
            None => (self.active, self.active_len),
        };
        let tmp = self.dir.join("ack.tmp");
        super::private::write(&tmp, format!("{seg} {off}\n").as_bytes())?;
        fs::rename(&tmp, self.dir.join("ack"))?;
        let done: Vec<u64> = self.segments.range(..seg).map(|(n, _)| *n).collect();
        for n in done {
            self.segments.remove(&n);
            fs::remove_file(self.dir.join(segment_name(n)))?;
        }
        Ok(())
    }

    /// `fdatasync`s the active segment if anything was written since the last call.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            // Rolled-over segments were synced when they were active, except
            // for the writes between the last sync and the roll: sync all.
            for f in self.segments.values() {
                f.sync_data()?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Unacknowledged records.
    pub fn len(&self) -> u64 {
        self.index.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of unacknowledged records (with their newlines).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn read_ack(path: &Path) -> (u64, u64) {
    let Ok(text) = fs::read_to_string(path) else {
        return (0, 0);
    };
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(s)), Some(Ok(o))) => (s, o),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn rec(i: u32) -> Vec<u8> {
        format!("{{\"id\":\"{i:08}\",\"pad\":\"{}\"}}", "x".repeat(50)).into_bytes()
    }

    fn ids(s: &Spool) -> Vec<String> {
        s.peek(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, b)| String::from_utf8(b[7..15].to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn append_peek_ack_and_reopen_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, r) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        assert_eq!(r, Recovered::default());
        for i in 0..200 {
            assert_eq!(s.append(&rec(i)).unwrap(), 0);
        }
        assert!(s.segments.len() > 1, "rolled over");
        let first = s.peek(50).unwrap();
        assert_eq!(first.len(), 50);
        s.ack(first.last().unwrap().0).unwrap();
        assert_eq!(s.len(), 150);
        drop(s);
        let (s, r) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        assert_eq!(r.records, 150);
        let got = ids(&s);
        assert_eq!(got.first().unwrap(), "00000050");
        assert_eq!(got.last().unwrap(), "00000199");
        let want: Vec<String> = (50..200).map(|i| format!("{i:08}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn acked_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        for i in 0..500 {
            s.append(&rec(i)).unwrap();
        }
        let all = s.peek(usize::MAX).unwrap();
        s.ack(all.last().unwrap().0).unwrap();
        let segs = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segs, 1, "only the active segment is left");
        drop(s);
        let (s, r) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        assert_eq!(r.records, 0);
        assert!(s.is_empty());
    }

    #[test]
    fn full_spool_drops_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let len = rec(0).len() as u64 + 1;
        let (mut s, _) = Spool::open(dir.path(), len * 10, 4096).unwrap();
        let mut dropped = 0;
        for i in 0..25 {
            dropped += s.append(&rec(i)).unwrap();
        }
        assert_eq!(dropped, 15);
        assert_eq!(s.len(), 10);
        assert!(s.bytes() <= len * 10);
        assert_eq!(ids(&s).first().unwrap(), "00000015");
    }

    #[test]
    fn torn_and_corrupt_lines_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
        for i in 0..3 {
            s.append(&rec(i)).unwrap();
        }
        drop(s);
        let seg = dir.path().join(segment_name(0));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"not json\n{\"id\":\"0000").unwrap();
        drop(f);
        let (mut s, r) = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
        assert_eq!(r.records, 3);
        assert_eq!(r.corrupt, 1);
        assert_eq!(r.torn_bytes, 11);
        s.append(&rec(3)).unwrap();
        drop(s);
        let (s, _) = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
        assert_eq!(
            ids(&s),
            vec!["00000000", "00000001", "00000002", "00000003"]
        );
    }
}
