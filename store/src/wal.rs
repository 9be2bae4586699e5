//! Write-ahead log of rows not yet sealed into blocks.
//!
//! Appended batches go here (not into sled), so sled only ever holds sealed,
//! well-compressed blocks and is not left with the garbage of short-lived hot
//! values. The log is a directory of numbered segment files; a record is
//! `[u32 length][u32 crc32][node length u8][node][block]`, little endian.
//! `sync` makes every record appended so far durable (fdatasync). A segment is
//! deleted once no node has unsealed rows in it and the blocks that sealed
//! them are flushed — the store decides when; this module only writes,
//! replays and removes files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

const HEADER: usize = 8;
/// Largest accepted record payload (a batch can be big, but not this big).
const MAX_RECORD: usize = 256 << 20;

/// One replayed record.
#[derive(Debug, PartialEq)]
pub(super) struct Record {
    pub(super) segment: u64,
    pub(super) node: String,
    pub(super) block: Vec<u8>,
}

pub(super) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    current: u64,
    file: BufWriter<File>,
    size: u64,
    dirty: bool,
    /// Records appended since opening.
    appends: u64,
    /// A write or sync failed: the current segment may end in a partial
    /// record, so the next append starts a new segment (replay stops at a
    /// torn record, and must not lose records written after it).
    broken: bool,
    /// Segment ids on disk, oldest first (the current one last).
    segments: Vec<u64>,
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.wal"))
}

/// Parses the records of one segment; stops at the first torn or corrupt
/// record and returns the byte length of the good prefix.
pub(super) fn parse_segment(segment: u64, bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut off = 0;
    while off + HEADER <= bytes.len() {
        let len = u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
            as usize;
        let crc =
            u32::from_le_bytes([bytes[off + 4], bytes[off + 5], bytes[off + 6], bytes[off + 7]]);
        let Some(payload) = bytes.get(off + HEADER..off + HEADER + len) else { break };
        if len == 0 || len > MAX_RECORD || crc32fast::hash(payload) != crc {
            break;
        }
        let nlen = usize::from(payload[0]);
        let Some(node) = payload.get(1..1 + nlen).and_then(|n| std::str::from_utf8(n).ok()) else {
            break;
        };
        out.push(Record { segment, node: node.to_owned(), block: payload[1 + nlen..].to_vec() });
        off += HEADER + len;
    }
    (out, off)
}

impl Wal {
    /// Opens the log under `dir`, returning every intact record of the
    /// existing segments, oldest first. A torn tail (a crash mid-write) is cut
    /// off. New records go to a fresh segment.
    pub(super) fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<Record>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let mut records = Vec::new();
        for &id in &ids {
            let path = seg_path(dir, id);
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| io(&path, e))?;
            let (recs, good) = parse_segment(id, &bytes);
            if good < bytes.len() {
                tracing::warn!(segment = %path.display(), kept = good, dropped = bytes.len() - good, "write-ahead log ends in a torn or corrupt record; cut it off");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(good as u64))
                    .map_err(|e| io(&path, e))?;
            }
            records.extend(recs);
        }
        let current = ids.last().map_or(1, |l| l + 1);
        let path = seg_path(dir, current);
        let file =
            OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        super::sync_dir(dir)?;
        ids.push(current);
        let wal = Wal {
            dir: dir.to_owned(),
            segment_bytes,
            current,
            file: BufWriter::with_capacity(1 << 20, file),
            size: 0,
            dirty: false,
            appends: 0,
            broken: false,
            segments: ids,
        };
        Ok((wal, records))
    }

    /// Appends a record; returns the segment it went to.
    pub(super) fn append(&mut self, node: &str, block: &[u8]) -> Result<u64, StoreError> {
        let nlen = u8::try_from(node.len())
            .map_err(|_| StoreError::Io("node name too long for the log".into()))?;
        let len = 1 + node.len() + block.len();
        if len > MAX_RECORD {
            return Err(StoreError::Io(format!("a batch of {len} bytes is too large for the log")));
        }
        if self.broken {
            self.start_segment()?;
        } else if self.size > 0 && self.size + (HEADER + len) as u64 > self.segment_bytes {
            self.rotate()?;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&[nlen]);
        h.update(node.as_bytes());
        h.update(block);
        let path = seg_path(&self.dir, self.current);
        let w = &mut self.file;
        let res = w
            .write_all(&(len as u32).to_le_bytes())
            .and_then(|()| w.write_all(&h.finalize().to_le_bytes()))
            .and_then(|()| w.write_all(&[nlen]))
            .and_then(|()| w.write_all(node.as_bytes()))
            .and_then(|()| w.write_all(block));
        if let Err(e) = res {
            self.broken = true;
            return Err(io(&path, e));
        }
        self.size += (HEADER + len) as u64;
        self.dirty = true;
        self.appends += 1;
        Ok(self.current)
    }

    /// Starts a new segment.
    pub(super) fn rotate(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        self.start_segment()
    }

    fn start_segment(&mut self) -> Result<(), StoreError> {
        // The number moves on only with the file open and its name durable:
        // records appended after a failure here must not go to the old file
        // under the new number (the store would then remove the old file
        // while rows in it are unsealed). The next append tries again.
        let next = self.current + 1;
        let path = seg_path(&self.dir, next);
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))
            .and_then(|f| super::sync_dir(&self.dir).map(|()| f));
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        self.current = next;
        // Dropping the old writer flushes what it buffered; after a failure
        // that is at worst a torn record, which replay cuts off.
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.size = 0;
        self.broken = false;
        self.segments.push(self.current);
        Ok(())
    }

    /// Makes every appended record durable.
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
        if self.dirty {
            let path = seg_path(&self.dir, self.current);
            if let Err(e) = self.file.flush().and_then(|()| self.file.get_ref().sync_data()) {
                self.broken = true;
                return Err(io(&path, e));
            }
            self.dirty = false;
        }
        Ok(())
    }

    pub(super) fn current(&self) -> u64 {
        self.current
    }

    /// Records appended since the log was opened.
    pub(super) fn appends(&self) -> u64 {
        self.appends
    }

    /// Bytes appended to the current segment.
    pub(super) fn current_bytes(&self) -> u64 {
        self.size
    }

    /// Deletes every segment older than `keep_from` (never the current one).
    pub(super) fn remove_below(&mut self, keep_from: u64) -> Result<usize, StoreError> {
        let keep_from = keep_from.min(self.current);
        let mut removed = 0;
        while let Some(&id) = self.segments.first().filter(|id| **id < keep_from) {
            let path = seg_path(&self.dir, id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
            self.segments.remove(0);
            removed += 1;
        }
        Ok(removed)
    }

    /// Segments on disk, the current one included.
    pub(super) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of every segment on disk.
    pub(super) fn disk_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|id| std::fs::metadata(seg_path(&self.dir, *id)).ok())
            .map(|m| m.len())
            .sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_replay_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, recs) = Wal::open(dir.path(), 64).unwrap();
            assert!(recs.is_empty());
            for i in 0..5u8 {
                w.append(&format!("n{i}"), &[i; 20]).unwrap();
            }
            w.sync().unwrap();
            assert!(w.segment_count() >= 3, "segments rotate at the size limit");
        }
        let (w, recs) = Wal::open(dir.path(), 64).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            vec!["n0", "n1", "n2", "n3", "n4"]
        );
        assert_eq!(recs[3].block, vec![3; 20]);
        assert!(recs.windows(2).all(|p| p[0].segment <= p[1].segment));
        assert!(w.current() > recs[4].segment);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _) = Wal::open(dir.path(), 1 << 20).unwrap();
            w.append("a", b"first").unwrap();
            w.append("b", b"second").unwrap();
            w.sync().unwrap();
        }
        let seg = seg_path(dir.path(), 1);
        let len = std::fs::metadata(&seg).unwrap().len();
        // Crash in the middle of the second record.
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 3).unwrap();
        let (_, recs) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recs, vec![Record { segment: 1, node: "a".into(), block: b"first".to_vec() }]);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), (HEADER + 1 + 1 + 5) as u64);
        // A flipped bit is caught by the checksum.
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[HEADER + 3] ^= 1;
        assert!(parse_segment(1, &bytes).0.is_empty());
    }

    #[test]
    fn after_a_failed_write_records_go_to_a_new_segment_and_all_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _) = Wal::open(dir.path(), 1 << 20).unwrap();
            w.append("a", b"one").unwrap();
            w.sync().unwrap();
            // As after an I/O error: the segment may end in a partial record.
            w.file.write_all(&[9, 0, 0, 0, 1]).unwrap();
            w.broken = true;
            let before = w.current();
            assert_eq!(w.append("b", b"two").unwrap(), before + 1);
            w.sync().unwrap();
        }
        let (_, recs) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recs.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn a_segment_that_cannot_be_started_keeps_the_number_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 32).unwrap();
        assert_eq!(w.append("a", &[1; 20]).unwrap(), 1);
        // Segment 2's name is taken by a directory: starting it fails.
        std::fs::create_dir(seg_path(dir.path(), 2)).unwrap();
        assert!(w.append("b", &[2; 20]).is_err());
        assert_eq!(w.current(), 1, "the number moves on only with a segment to write to");
        std::fs::remove_dir(seg_path(dir.path(), 2)).unwrap();
        assert_eq!(w.append("c", &[3; 20]).unwrap(), 2);
        w.sync().unwrap();
        drop(w);
        let (_, recs) = Wal::open(dir.path(), 32).unwrap();
        let got: Vec<(u64, &str)> = recs.iter().map(|r| (r.segment, r.node.as_str())).collect();
        assert_eq!(got, vec![(1, "a"), (2, "c")]);
    }

    #[test]
    fn old_segments_are_removed_but_never_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 32).unwrap();
        for _ in 0..4 {
            w.append("n", &[0; 20]).unwrap();
        }
        let cur = w.current();
        assert_eq!(w.remove_below(u64::MAX).unwrap(), (cur - 1) as usize);
        assert_eq!(w.segment_count(), 1);
        assert!(seg_path(dir.path(), cur).exists());
    }
}
