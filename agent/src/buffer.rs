//! Rows waiting for the coordinator's acknowledgement.
//!
//! Rows are grouped into batches (one sequence number each). Batches live in
//! memory up to `memory_rows`; older ones spill to files in the spill
//! directory, up to `spill_bytes`, beyond which the oldest are dropped and
//! counted. A batch handed out for sending is sealed: it never takes more
//! rows, so an acknowledgement covers exactly what was sent. Spilled batches
//! survive an agent restart and are replayed first.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use distdiag_common::codec::{decode_payload, encode_frame, HEADER_LEN};
use distdiag_common::proto::DEFAULT_MAX_FRAME;
use distdiag_common::{Batch, Row};

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("spill directory {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// Limits of the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BufferLimits {
    pub max_rows_per_batch: usize,
    pub memory_rows: usize,
    pub spill_bytes: u64,
}

#[derive(Debug)]
struct Spilled {
    seq: u64,
    rows: usize,
    bytes: u64,
    path: PathBuf,
}

#[derive(Debug)]
pub struct Buffer {
    limits: BufferLimits,
    dir: PathBuf,
    spilled: VecDeque<Spilled>,
    spill_bytes: u64,
    mem: VecDeque<Batch>,
    mem_rows: usize,
    next_seq: u64,
    /// Batches below this sequence number are sealed.
    sealed_below: u64,
    dropped_rows: u64,
}

fn io(path: &Path, error: std::io::Error) -> BufferError {
    BufferError::Io { path: path.to_owned(), error }
}

impl Buffer {
    /// Opens the buffer, picking up batches an earlier run spilled.
    pub fn open(dir: &Path, limits: BufferLimits) -> Result<Self, BufferError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut spilled = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let path = entry.path();
            let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".batch"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            match std::fs::read(&path)
                .ok()
                .and_then(|b| decode_payload::<Batch>(b.get(HEADER_LEN..)?, DEFAULT_MAX_FRAME).ok())
            {
                Some(batch) if batch.seq == seq => spilled.push(Spilled {
                    seq,
                    rows: batch.rows.len(),
                    bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
                    path,
                }),
                _ => {
                    tracing::warn!(path = %path.display(), "unreadable spilled batch removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        spilled.sort_by_key(|s| s.seq);
        let next_seq = spilled.last().map_or(1, |s| s.seq + 1);
        let spill_bytes = spilled.iter().map(|s| s.bytes).sum();
        Ok(Buffer {
            limits,
            dir: dir.to_owned(),
            spilled: spilled.into(),
            spill_bytes,
            mem: VecDeque::new(),
            mem_rows: 0,
            next_seq,
            sealed_below: next_seq,
            dropped_rows: 0,
        })
    }

    /// Adds a freshly collected row.
    pub fn push(&mut self, row: Row) {
        match self.mem.back_mut() {
            Some(last)
                if last.seq >= self.sealed_below
                    && last.rows.len() < self.limits.max_rows_per_batch =>
            {
                last.rows.push(row)
            }
            _ => {
                self.mem.push_back(Batch { seq: self.next_seq, rows: vec![row] });
                self.next_seq += 1;
            }
        }
        self.mem_rows += 1;
        while self.mem_rows > self.limits.memory_rows && self.mem.len() > 1 {
            let Some(oldest) = self.mem.pop_front() else { break };
            self.mem_rows -= oldest.rows.len();
            self.spill(oldest);
        }
        self.enforce_spill_limit();
    }

    fn spill(&mut self, batch: Batch) {
        let path = self.dir.join(format!("{:020}.batch", batch.seq));
        let rows = batch.rows.len();
        let written =
            encode_frame(&batch, DEFAULT_MAX_FRAME).map_err(|e| e.to_string()).and_then(|frame| {
                std::fs::write(&path, &frame)
                    .map(|()| frame.len() as u64)
                    .map_err(|e| e.to_string())
            });
        match written {
            Ok(bytes) => {
                self.spill_bytes += bytes;
                self.spilled.push_back(Spilled { seq: batch.seq, rows, bytes, path });
            }
            Err(error) => {
                self.dropped_rows += rows as u64;
                tracing::warn!(%error, rows, "cannot spill a batch to disk; dropped it");
            }
        }
    }

    fn enforce_spill_limit(&mut self) {
        while self.spill_bytes > self.limits.spill_bytes {
            let Some(old) = self.spilled.pop_front() else { break };
            let _ = std::fs::remove_file(&old.path);
            self.spill_bytes -= old.bytes;
            self.dropped_rows += old.rows as u64;
            tracing::warn!(
                seq = old.seq,
                rows = old.rows,
                "spill limit reached; dropped the oldest unacknowledged batch"
            );
        }
    }

    /// Up to `max` batches with sequence number `>= from`, oldest first.
    /// They are sealed from now on.
    pub fn take_from(&mut self, from: u64, max: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        for s in self.spilled.iter().filter(|s| s.seq >= from) {
            if out.len() >= max {
                break;
            }
            match std::fs::read(&s.path)
                .ok()
                .and_then(|b| decode_payload::<Batch>(b.get(HEADER_LEN..)?, DEFAULT_MAX_FRAME).ok())
            {
                Some(b) => out.push(b),
                None => {
                    tracing::warn!(path = %s.path.display(), "spilled batch unreadable; skipped")
                }
            }
        }
        for b in self.mem.iter().filter(|b| b.seq >= from) {
            if out.len() >= max {
                break;
            }
            out.push(b.clone());
        }
        if let Some(last) = out.last() {
            self.sealed_below = self.sealed_below.max(last.seq + 1);
        }
        out
    }

    /// Forgets every batch up to and including `seq`.
    pub fn ack(&mut self, seq: u64) {
        while self.spilled.front().is_some_and(|s| s.seq <= seq) {
            if let Some(s) = self.spilled.pop_front() {
                let _ = std::fs::remove_file(&s.path);
                self.spill_bytes -= s.bytes;
            }
        }
        while self.mem.front().is_some_and(|b| b.seq <= seq) {
            if let Some(b) = self.mem.pop_front() {
                self.mem_rows -= b.rows.len();
            }
        }
    }

    /// Sequence number of the oldest unacknowledged batch.
    pub fn first_seq(&self) -> Option<u64> {
        self.spilled.front().map(|s| s.seq).or_else(|| self.mem.front().map(|b| b.seq))
    }

    pub fn pending_rows(&self) -> usize {
        self.mem_rows + self.spilled.iter().map(|s| s.rows).sum::<usize>()
    }

    pub fn dropped_rows(&self) -> u64 {
        self.dropped_rows
    }

    /// Writes every in-memory batch to the spill directory (at shutdown), so
    /// the next run replays them.
    pub fn spill_all(&mut self) {
        while let Some(b) = self.mem.pop_front() {
            self.mem_rows -= b.rows.len();
            self.spill(b);
        }
        self.sealed_below = self.next_seq;
        self.enforce_spill_limit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64) -> Row {
        Row { ts_ms: ts, values: vec![ts as f64, 1.5] }
    }

    fn limits(per_batch: usize, mem: usize, spill: u64) -> BufferLimits {
        BufferLimits { max_rows_per_batch: per_batch, memory_rows: mem, spill_bytes: spill }
    }

    fn all_ts(b: &mut Buffer) -> Vec<i64> {
        b.take_from(0, usize::MAX).iter().flat_map(|b| b.rows.iter().map(|r| r.ts_ms)).collect()
    }

    #[test]
    fn rows_group_into_batches_until_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), limits(3, 100, 1 << 20)).unwrap();
        for t in 0..4 {
            b.push(row(t));
        }
        let sent = b.take_from(1, 10);
        assert_eq!(sent.iter().map(|b| b.rows.len()).collect::<Vec<_>>(), vec![3, 1]);
        // The second batch is sealed now: a new row starts batch 3.
        b.push(row(4));
        assert_eq!(b.take_from(3, 10)[0].rows.len(), 1);
        b.ack(2);
        assert_eq!(b.first_seq(), Some(3));
        assert_eq!(b.pending_rows(), 1);
    }

    #[test]
    fn overflow_spills_to_disk_in_order_and_acks_delete_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), limits(1, 3, 1 << 20)).unwrap();
        for t in 0..10 {
            b.push(row(t));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 7);
        assert_eq!(all_ts(&mut b), (0..10).collect::<Vec<_>>());
        b.ack(5);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(all_ts(&mut b), (5..10).collect::<Vec<_>>());
    }

    #[test]
    fn spilled_batches_survive_a_restart_and_sequence_continues() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = Buffer::open(dir.path(), limits(2, 100, 1 << 20)).unwrap();
            for t in 0..5 {
                b.push(row(t));
            }
            b.ack(1);
            b.spill_all();
        }
        std::fs::write(dir.path().join("00000000000000000099.batch"), b"garbage").unwrap();
        let mut b = Buffer::open(dir.path(), limits(2, 100, 1 << 20)).unwrap();
        assert_eq!(b.first_seq(), Some(2));
        assert_eq!(b.pending_rows(), 3);
        b.push(row(5));
        let batches = b.take_from(0, 10);
        assert_eq!(batches.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(batches[2].rows[0].ts_ms, 5);
        assert!(!dir.path().join("00000000000000000099.batch").exists());
    }

    #[test]
    fn the_spill_limit_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), limits(1, 1, 200)).unwrap();
        for t in 0..20 {
            b.push(row(t));
        }
        assert!(b.dropped_rows() > 0);
        let ts = all_ts(&mut b);
        assert_eq!(*ts.last().unwrap(), 19);
        assert_eq!(ts.len() as u64 + b.dropped_rows(), 20);
        // What is kept is the newest, contiguous.
        assert!(ts.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
