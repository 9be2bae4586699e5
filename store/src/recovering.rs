//! A [`SledStore`] that comes back by itself after its disk was full.
//!
//! sled keeps the first I/O error it meets and answers every later write
//! with it, for the life of the `Db`: measured on an 8 MB tmpfs filled to
//! the last block, 100 appends after the filler was deleted all still
//! failed with "No space left on device" (the log alone recovers: a failed
//! write starts a new segment). Nothing acknowledged is at risk — an
//! acknowledgement follows the log's fdatasync, and a log segment is only
//! removed after sled flushed the blocks that sealed its rows — so the way
//! back is to reopen: drop the store, open it again (the log replays what
//! sled had not made durable) and go on.
//!
//! This wrapper notes the first I/O error of any operation, keeps serving
//! reads from the old store meanwhile (sled reads still work), and
//! [`RecoveringStore::recover`], called periodically by the coordinator,
//! reopens once the filesystem has room for a whole log segment again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use distdiag_common::proto::{Capabilities, HostFacts, Row};
use distdiag_common::MetricDesc;

use super::{
    now_ms, AppendOutcome, FaultRecord, Latest, NodeRecord, Rows, SeriesStore, SledStore,
    StorageFault, StoreConfig, StoreError, StoreStats,
};

/// Room asked for beyond one log segment before reopening: sled rewrites
/// its own segments (64 KiB each) as it recovers and compacts.
const SLED_HEADROOM: u64 = 8 << 20;

pub struct RecoveringStore {
    dir: PathBuf,
    cfg: StoreConfig,
    /// None only between a reopen's close and a successful open.
    inner: RwLock<Option<SledStore>>,
    fault: Mutex<Option<StorageFault>>,
    reopens: AtomicU64,
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

impl RecoveringStore {
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<Self, StoreError> {
        let inner = SledStore::open(dir, cfg.clone())?;
        Ok(RecoveringStore {
            dir: dir.to_owned(),
            cfg,
            inner: RwLock::new(Some(inner)),
            fault: Mutex::new(None),
            reopens: AtomicU64::new(0),
        })
    }

    /// Times the store was reopened after a failure.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    fn needed_free(&self) -> u64 {
        self.cfg.wal_segment_bytes + SLED_HEADROOM
    }

    fn fault_slot(&self) -> std::sync::MutexGuard<'_, Option<StorageFault>> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note(&self, error: &StoreError) {
        let StoreError::Io(text) = error else { return };
        let mut slot = self.fault_slot();
        if slot.is_none() {
            tracing::warn!(error = %text, "store write failed: ingest is refused until the store reopens (when its filesystem has room again)");
            *slot = Some(StorageFault {
                since_ms: now_ms(),
                error: text.clone(),
                free_bytes: free_bytes(&self.dir),
            });
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<SledStore>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open store, noting an I/O error.
    fn with<T>(
        &self,
        f: impl FnOnce(&SledStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.read();
        let Some(s) = guard.as_ref() else {
            let why = self.fault_slot().as_ref().map(|f| f.error.clone()).unwrap_or_default();
            return Err(StoreError::Io(format!("the store is closed while it reopens ({why})")));
        };
        let r = f(s);
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }

    /// Runs an infallible read on the open store, or answers `empty`.
    fn peek<T>(&self, empty: T, f: impl FnOnce(&SledStore) -> T) -> T {
        self.read().as_ref().map_or(empty, f)
    }
}

impl SeriesStore for RecoveringStore {
    fn upsert_node(
        &self,
        node: &str,
        host: HostFacts,
        caps: Capabilities,
        catalog: Vec<MetricDesc>,
        interval_ms: u32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with(|s| s.upsert_node(node, host, caps, catalog, interval_ms, now_ms))
    }

    fn append(&self, node: &str, rows: &[Row]) -> Result<AppendOutcome, StoreError> {
        self.with(|s| s.append(node, rows))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // sled's error sticks, but a flush that writes nothing to sled can
        // still succeed: while a failure is noted nothing is acknowledged,
        // so a batch cannot be answered "durable" by a store whose blocks
        // cannot be written.
        if let Some(f) = self.fault_slot().as_ref() {
            return Err(StoreError::Io(format!(
                "storage unavailable since {}: {}",
                f.since_ms, f.error
            )));
        }
        self.with(SledStore::flush)
    }

    fn nodes(&self) -> Vec<NodeRecord> {
        self.peek(Vec::new(), SledStore::nodes)
    }

    fn node(&self, node: &str) -> Option<NodeRecord> {
        self.peek(None, |s| s.node(node))
    }

    fn query(
        &self,
        node: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        self.with(|s| s.query(node, metric, from_ms, to_ms))
    }

    fn range(&self, node: &str, from_ms: i64, to_ms: i64) -> Result<Rows, StoreError> {
        self.with(|s| s.range(node, from_ms, to_ms))
    }

    fn latest(&self, node: &str) -> Option<Latest> {
        self.peek(None, |s| s.latest(node))
    }

    fn stats(&self) -> StoreStats {
        self.peek(StoreStats::default(), SledStore::stats)
    }

    fn enforce_retention(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.with(|s| s.enforce_retention(cutoff_ms))
    }

    fn delete_node(&self, node: &str) -> Result<bool, StoreError> {
        self.with(|s| s.delete_node(node))
    }

    fn save_fault(&self, rec: &FaultRecord) -> Result<(), StoreError> {
        self.with(|s| s.save_fault(rec))
    }

    fn faults(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FaultRecord>, StoreError> {
        self.with(|s| s.faults(from_ms, to_ms))
    }

    fn put_doc(&self, collection: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.with(|s| s.put_doc(collection, key, value))
    }

    fn get_doc(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|s| s.get_doc(collection, key))
    }

    fn docs(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with(|s| s.docs(collection))
    }

    fn delete_doc(&self, collection: &str, key: &str) -> Result<(), StoreError> {
        self.with(|s| s.delete_doc(collection, key))
    }

    fn docs_range(
        &self,
        collection: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with(|s| s.docs_range(collection, from, to))
    }

    fn delete_docs_before(&self, collection: &str, before: &str) -> Result<usize, StoreError> {
        self.with(|s| s.delete_docs_before(collection, before))
    }

    fn seal_all(&self) -> Result<(), StoreError> {
        self.with(SledStore::seal_all)
    }

    fn maintain(&self) -> Result<usize, StoreError> {
        self.with(SledStore::maintain)
    }

    fn storage_fault(&self) -> Option<StorageFault> {
        self.fault_slot().clone()
    }

    /// Reopens the store after a noted failure once its filesystem has
    /// room for a log segment and sled's headroom; true when it did.
    fn recover(&self) -> Result<bool, StoreError> {
        let free = free_bytes(&self.dir);
        {
            let mut slot = self.fault_slot();
            let Some(fault) = slot.as_mut() else { return Ok(false) };
            fault.free_bytes = free;
            if free.is_some_and(|f| f < self.needed_free()) {
                return Ok(false);
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        // Whatever the old store still holds in memory is either in its log
        // (and replayed) or was never acknowledged.
        drop(inner.take());
        // sled's flusher thread releases the directory lock up to a tick
        // after the drop.
        let mut last = None;
        for _ in 0..50 {
            match SledStore::open(&self.dir, self.cfg.clone()) {
                Ok(s) => {
                    *inner = Some(s);
                    let fault = self.fault_slot().take();
                    self.reopens.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        since_ms = fault.map(|f| f.since_ms),
                        "store reopened: ingest is accepted again"
                    );
                    return Ok(true);
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let e = last.unwrap_or_else(|| StoreError::Io("cannot reopen".into()));
        if let Some(f) = self.fault_slot().as_mut() {
            f.error = format!("reopening failed: {e}");
        }
        Err(e)
    }
}
