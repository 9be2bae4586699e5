//! Append-only block files: the bytes of sealed blocks, outside sled.
//!
//! Why: as sled values, sealed blocks cost 1.20 bytes a value on disk after
//! a clean stop for 0.96 encoded (the `make bench` synthetic set): sled 0.34
//! rewrites a leaf page of up to 16 blocks with each insert and keeps the
//! superseded pages and blobs until its segment cleaner reaches them, which
//! neither a stop nor a reopen triggers (docs/performance.md, "Store: block
//! files"). Here sled keeps only an [`Entry`] of 41 bytes a block.
//!
//! Crash contract: [`BlockFiles::write`] appends the blocks to the current
//! file and syncs it before the store inserts their entries into sled, so an
//! entry sled made durable always points at synced bytes. A crash in between
//! leaves bytes no entry points at, which nothing reads; their rows are still
//! in the write-ahead log (a log segment is removed only after sled flushed
//! the entries that sealed its rows). Every open starts a new file, and files
//! no entry points into are deleted then and whenever the store drops
//! entries ([`BlockFiles::remove_dead`], called only after sled made the
//! removals durable). A file some of whose blocks are still referenced stays
//! whole: retention removes the oldest blocks first and files fill in time
//! order, so they go whole; a deleted node's blocks free their space when
//! the rest of their files expire.
//!
//! Files are named `<16-digit number>.blk`; a block is read with one
//! positioned read and checked against the crc32 in its entry.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::StoreError;

/// First byte of an entry. Sealed blocks stored inline in sled (before
/// block files) begin with their format byte (1 or 2), never this.
const ENTRY_TAG: u8 = 0xE1;
pub(super) const ENTRY_LEN: usize = 1 + 8 + 8 + 4 + 4 + 8 + 8;

/// Where a sealed block lives and what the store needs to know of it
/// without reading it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Entry {
    pub(super) file: u64,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) crc: u32,
    /// Timestamp of the block's last row.
    pub(super) last_ts: i64,
    /// Rows × columns of the block.
    pub(super) values: u64,
}

impl Entry {
    pub(super) fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = ENTRY_TAG;
        b[1..9].copy_from_slice(&self.file.to_le_bytes());
        b[9..17].copy_from_slice(&self.offset.to_le_bytes());
        b[17..21].copy_from_slice(&self.len.to_le_bytes());
        b[21..25].copy_from_slice(&self.crc.to_le_bytes());
        b[25..33].copy_from_slice(&self.last_ts.to_le_bytes());
        b[33..41].copy_from_slice(&self.values.to_le_bytes());
        b
    }

    /// The entry in `v`, or None when `v` is an inline block.
    pub(super) fn decode(v: &[u8]) -> Option<Entry> {
        if v.len() != ENTRY_LEN || v[0] != ENTRY_TAG {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap_or([0; 4]));
        Some(Entry {
            file: u64_at(1),
            offset: u64_at(9),
            len: u32_at(17),
            crc: u32_at(21),
            last_ts: u64_at(25) as i64,
            values: u64_at(33),
        })
    }
}

struct Writer {
    current: u64,
    file: File,
    size: u64,
    /// A write or sync failed: the file may end in a partial block, so the
    /// next write starts a new file.
    broken: bool,
}

pub(super) struct BlockFiles {
    dir: PathBuf,
    file_bytes: u64,
    writer: Mutex<Writer>,
    readers: RwLock<HashMap<u64, Arc<File>>>,
    /// Entries pointing into each file.
    live: Mutex<HashMap<u64, u64>>,
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

fn file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.blk"))
}

fn list(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".blk")?.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Creates file `id`, its name durable before any entry can point into it.
fn create(dir: &Path, id: u64) -> Result<File, StoreError> {
    let path = file_path(dir, id);
    let f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
    super::sync_dir(dir)?;
    Ok(f)
}

impl BlockFiles {
    /// Opens the directory and starts a new file; the files there stay
    /// until [`BlockFiles::set_live`] says which are referenced.
    pub(super) fn open(dir: &Path, file_bytes: u64) -> Result<BlockFiles, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let current = list(dir)?.last().map_or(1, |l| l + 1);
        let file = create(dir, current)?;
        Ok(BlockFiles {
            dir: dir.to_owned(),
            file_bytes: file_bytes.max(1),
            writer: Mutex::new(Writer { current, file, size: 0, broken: false }),
            readers: RwLock::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets how many entries point into each file (from the index at open)
    /// and deletes the files none points into.
    pub(super) fn set_live(&self, counts: HashMap<u64, u64>) -> Result<usize, StoreError> {
        *self.live() = counts;
        self.remove_dead()
    }

    /// Appends `blocks` and makes them durable; returns each one's file,
    /// offset and crc32, in order.
    pub(super) fn write(&self, blocks: &[Vec<u8>]) -> Result<Vec<(u64, u64, u32)>, StoreError> {
        let mut w = self.writer();
        if w.broken || (w.size > 0 && w.size >= self.file_bytes) {
            let next = w.current + 1;
            w.file = create(&self.dir, next)?;
            w.current = next;
            w.size = 0;
            w.broken = false;
        }
        let path = file_path(&self.dir, w.current);
        let mut out = Vec::with_capacity(blocks.len());
        let mut buf = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
        let mut offset = w.size;
        for b in blocks {
            out.push((w.current, offset, crc32fast::hash(b)));
            buf.extend_from_slice(b);
            offset += b.len() as u64;
        }
        if let Err(e) = w.file.write_all(&buf).and_then(|()| w.file.sync_data()) {
            w.broken = true;
            return Err(io(&path, e));
        }
        w.size = offset;
        let mut live = self.live();
        *live.entry(w.current).or_default() += blocks.len() as u64;
        Ok(out)
    }

    fn reader(&self, id: u64) -> Result<Arc<File>, StoreError> {
        if let Some(f) = self.readers.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(f.clone());
        }
        let path = file_path(&self.dir, id);
        let f = Arc::new(File::open(&path).map_err(|e| io(&path, e))?);
        self.readers.write().unwrap_or_else(|p| p.into_inner()).insert(id, f.clone());
        Ok(f)
    }

    /// The bytes of the block `e` points at, checked against its crc32.
    pub(super) fn read(&self, e: &Entry) -> Result<Vec<u8>, StoreError> {
        let f = self.reader(e.file)?;
        let mut buf = vec![0u8; e.len as usize];
        let path = file_path(&self.dir, e.file);
        f.read_exact_at(&mut buf, e.offset).map_err(|err| {
            StoreError::Corrupt(format!(
                "{}: block of {} bytes at {}: {err}",
                path.display(),
                e.len,
                e.offset
            ))
        })?;
        if crc32fast::hash(&buf) != e.crc {
            return Err(StoreError::Corrupt(format!(
                "{}: block of {} bytes at {} fails its checksum",
                path.display(),
                e.len,
                e.offset
            )));
        }
        Ok(buf)
    }

    /// Notes that an entry into file `id` is gone (its file is deleted by
    /// the next [`BlockFiles::remove_dead`]).
    pub(super) fn release(&self, id: u64) {
        if let Some(n) = self.live().get_mut(&id) {
            *n = n.saturating_sub(1);
        }
    }

    /// Deletes every file (but the current one) that no entry points into.
    /// Call it only once the removal of their entries is durable.
    pub(super) fn remove_dead(&self) -> Result<usize, StoreError> {
        // Held throughout: a write meanwhile could start a file that the
        // counts taken here do not know yet.
        let writer = self.writer();
        let current = writer.current;
        let live = self.live().clone();
        let mut removed = 0;
        for id in list(&self.dir)? {
            if id == current || live.get(&id).is_some_and(|n| *n > 0) {
                continue;
            }
            let path = file_path(&self.dir, id);
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
            self.readers.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
            self.live().remove(&id);
        }
        Ok(removed)
    }

    /// Bytes of every block file on disk.
    pub(super) fn disk_bytes(&self) -> u64 {
        list(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|id| std::fs::metadata(file_path(&self.dir, *id)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Block files on disk, the current one included.
    #[cfg(test)]
    pub(super) fn file_count(&self) -> usize {
        list(&self.dir).map_or(0, |l| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_roundtrip_and_inline_blocks_are_not_entries() {
        let e = Entry {
            file: 7,
            offset: 1 << 40,
            len: 65_000,
            crc: 0xDEAD_BEEF,
            last_ts: -5,
            values: 12,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        // An inline block of either format is not taken for an entry, even at
        // the entry's length.
        let mut inline = e.encode();
        for format in [1u8, 2] {
            inline[0] = format;
            assert_eq!(Entry::decode(&inline), None);
        }
        assert_eq!(Entry::decode(&e.encode()[..ENTRY_LEN - 1]), None);
    }

    #[test]
    fn blocks_read_back_files_rotate_and_unreferenced_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let f = BlockFiles::open(dir.path(), 100).unwrap();
        let mut entries = Vec::new();
        for i in 0..4u8 {
            let blocks = vec![vec![i; 60], vec![i + 100; 10]];
            for ((file, offset, crc), b) in f.write(&blocks).unwrap().into_iter().zip(&blocks) {
                entries.push((
                    Entry { file, offset, len: b.len() as u32, crc, last_ts: 0, values: 1 },
                    b.clone(),
                ));
            }
        }
        // 70 bytes a write, 100 a file: a new file every two writes.
        assert_eq!(f.file_count(), 2);
        for (e, b) in &entries {
            assert_eq!(&f.read(e).unwrap(), b);
        }
        // A flipped byte is caught.
        let (e, _) = entries[2];
        let path = file_path(dir.path(), e.file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[e.offset as usize] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(f.read(&e), Err(StoreError::Corrupt(m)) if m.contains("checksum")));
        // The first file loses its entries: it goes; the current one never.
        for (e, _) in &entries[..4] {
            f.release(e.file);
        }
        assert_eq!(f.remove_dead().unwrap(), 1);
        assert!(!file_path(dir.path(), entries[0].0.file).exists());
        assert_eq!(f.read(&entries[6].0).unwrap(), entries[6].1);
        drop(f);
        // Reopened: a new file; only the referenced ones are kept.
        let f = BlockFiles::open(dir.path(), 100).unwrap();
        assert_eq!(f.file_count(), 2);
        assert_eq!(f.set_live(HashMap::new()).unwrap(), 1);
        assert_eq!(f.file_count(), 1);
    }
}
