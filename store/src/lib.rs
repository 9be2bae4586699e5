//! Series storage of distdiag. Only this crate touches sled.
//!
//! The [`SeriesStore`] trait is what ingest and the API use; [`SledStore`] is
//! the embedded implementation. Rows arrive per node as batches, are appended
//! at once to a write-ahead log (so an acknowledgement can follow a flush) and
//! kept in memory, and are sealed into compressed per-node blocks (see
//! [`block`]) in sled once they span `block_span` or reach `block_rows`. No key
//! is ever written per sample, and sled holds only sealed blocks.

pub mod block;
mod blockfile;
mod recovering;
mod sled_store;
mod wal;

use distdiag_common::proto::{Capabilities, HostFacts, Row};
use distdiag_common::MetricDesc;
use serde::{Deserialize, Serialize};

pub use distdiag_api::faults::{FaultPhase, FaultRecord, RecordSpec};
pub use recovering::{free_bytes, RecoveringStore};
pub use sled_store::{SledStore, StoreConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("node {node:?} has no metric {metric:?}")]
    UnknownMetric { node: String, metric: String },
    #[error("catalog of node {node:?} cannot change that way: {reason}")]
    Catalog { node: String, reason: String },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// What the store keeps about a node.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub node: String,
    pub host: HostFacts,
    pub capabilities: Capabilities,
    pub catalog: Vec<MetricDesc>,
    pub interval_ms: u32,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendOutcome {
    /// Rows written.
    pub rows: usize,
    /// Values written (present or missing, as sent).
    pub values: usize,
    /// Rows skipped because a row with the same (node, timestamp) is stored.
    pub duplicates: usize,
}

/// Size and content figures of the store.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StoreStats {
    pub nodes: usize,
    pub sealed_blocks: u64,
    pub sealed_values: u64,
    pub sealed_bytes: u64,
    pub hot_rows: u64,
    /// Write-ahead log segments on disk and their bytes.
    pub wal_segments: u64,
    pub wal_bytes: u64,
    /// sled and the log together.
    pub size_on_disk: u64,
}

/// The latest two rows of a node (the second for rates), newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub catalog: Vec<MetricDesc>,
    pub rows: Vec<(i64, Vec<f64>)>,
}

/// Why the store cannot write now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageFault {
    /// When the first failing write was seen (ms since the epoch).
    pub since_ms: i64,
    /// That write's error (for a full disk: "No space left on device").
    pub error: String,
    /// Free bytes on the store's filesystem at the last check.
    pub free_bytes: Option<u64>,
}

/// A node's catalog and its rows `(timestamp_ms, values)`.
pub type Rows = (Vec<MetricDesc>, Vec<(i64, Vec<f64>)>);

/// Storage of per-node metric series.
pub trait SeriesStore: Send + Sync {
    /// Records or refreshes a node and its catalog. A catalog may only grow:
    /// the stored catalog must be a prefix of the new one.
    fn upsert_node(
        &self,
        node: &str,
        host: HostFacts,
        caps: Capabilities,
        catalog: Vec<MetricDesc>,
        interval_ms: u32,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Appends rows (values aligned with the node's catalog). Not durable until [`SeriesStore::flush`].
    fn append(&self, node: &str, rows: &[Row]) -> Result<AppendOutcome, StoreError>;
    /// Makes every append so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    fn nodes(&self) -> Vec<NodeRecord>;
    fn node(&self, node: &str) -> Option<NodeRecord>;
    /// Points of one metric with `from <= ts <= to`, sorted by time.
    fn query(
        &self,
        node: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError>;
    /// Every row of a node with `from <= ts <= to`, sorted by time, values
    /// aligned with the returned catalog (NaN where missing).
    fn range(&self, node: &str, from_ms: i64, to_ms: i64) -> Result<Rows, StoreError>;
    fn latest(&self, node: &str) -> Option<Latest>;
    fn stats(&self) -> StoreStats;
    /// Deletes sealed blocks that end before `cutoff_ms`; returns how many.
    fn enforce_retention(&self, cutoff_ms: i64) -> Result<usize, StoreError>;
    /// Forgets a node and all its data; false if it was unknown.
    fn delete_node(&self, node: &str) -> Result<bool, StoreError>;
    /// Stores (or replaces) a fault record.
    fn save_fault(&self, rec: &FaultRecord) -> Result<(), StoreError>;
    /// Fault records whose lifetime overlaps `[from_ms, to_ms]`, oldest first.
    fn faults(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FaultRecord>, StoreError>;
    /// Stores a document (a workload report, a database fault's recovery
    /// data, ...) under `key` in the named collection, durably.
    fn put_doc(&self, collection: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn get_doc(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every document of a collection, in key order.
    fn docs(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    fn delete_doc(&self, collection: &str, key: &str) -> Result<(), StoreError>;
    /// The documents of a collection with `from <= key < to`, in key order
    /// (keys that sort like what they index: zero-padded times).
    fn docs_range(
        &self,
        collection: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Deletes the documents of a collection whose key sorts before
    /// `before`, durably in one flush; how many.
    fn delete_docs_before(&self, collection: &str, before: &str) -> Result<usize, StoreError>;
    /// Seals every node's hot rows now (used at shutdown and by tests).
    fn seal_all(&self) -> Result<(), StoreError>;
    /// Periodic upkeep: seals nodes whose unsealed rows keep a log segment
    /// beyond the budget alive, and the nodes holding the most rows when
    /// unsealed rows exceed the memory budget; returns how many were sealed.
    fn maintain(&self) -> Result<usize, StoreError>;
    /// Why writes fail now, if they do.
    fn storage_fault(&self) -> Option<StorageFault> {
        None
    }
    /// Tries to come back after a failure (see [`RecoveringStore`]); true
    /// when the store is writable again.
    fn recover(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// Makes a directory's entries durable. A file created in it is found
/// after a power loss only once the directory is synced; the file's own
/// fdatasync makes its bytes durable, not its name.
fn sync_dir(dir: &std::path::Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))
}

/// Milliseconds since the Unix epoch: the clock of stored timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
