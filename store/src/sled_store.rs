//! [`SeriesStore`] on sled plus a write-ahead log.
//!
//! Appended batches go to the write-ahead log ([`super::wal`]) and to each
//! node's in-memory hot rows. Sealing encodes a node's hot rows into blocks,
//! appends them to a block file ([`super::blockfile`]) and indexes them in
//! sled's `series` tree under `b <node> 0x00 <start_ts> <id>` (stores written
//! before block files hold the blocks themselves there, and still read);
//! `nodes` holds node → JSON [`NodeRecord`]. A log segment is deleted once the
//! entries of the blocks sealing its rows are flushed. Sealed blocks never
//! span more than `block_span_ms`, which bounds the key range a time query
//! has to scan.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use distdiag_common::proto::{Capabilities, HostFacts, Row};
use distdiag_common::MetricDesc;
use serde::{Deserialize, Serialize};

use super::block::{self, BlockView};
use super::blockfile::{BlockFiles, Entry};
use super::wal::Wal;
use super::{AppendOutcome, FaultRecord, Latest, NodeRecord, SeriesStore, StoreError, StoreStats};

/// Tuning of the sled store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Longest time span of one sealed block, in milliseconds.
    pub block_span_ms: i64,
    /// Most rows in one sealed block.
    pub block_rows: usize,
    /// sled page-cache size in bytes.
    pub cache_bytes: u64,
    /// Size at which the write-ahead log starts a new segment. A segment
    /// goes once none of its rows is unsealed, so the log on disk is about
    /// the unsealed rows plus one segment: with 16 MiB it was 15 MB of the
    /// 26 MB a running `make bench` store took, with 1 MiB about 1 MB.
    pub wal_segment_bytes: u64,
    /// Unsealed rows held in memory, all nodes together, at most (8 bytes a
    /// value): above it the upkeep seals the nodes holding the most until
    /// half is left, so memory stays bounded however many agents send (at
    /// 1,000 agents × 200 metrics, five minutes of rows are 480 MB). 128 MiB
    /// holds a whole 300 s block of up to 270 nodes × 200 metrics at 1 Hz;
    /// at 1,000 nodes the soak peaked at 1,010 MB resident with 256 MiB.
    /// The log keeps `hot_bytes / wal_segment_bytes` segments: nodes whose
    /// rows pin an older one are sealed.
    pub hot_bytes: u64,
    /// Size at which sealed blocks go to a new block file. Retention frees
    /// space a whole file at a time.
    pub block_file_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            block_span_ms: 300_000,
            block_rows: 600,
            cache_bytes: 64 << 20,
            wal_segment_bytes: 1 << 20,
            hot_bytes: 128 << 20,
            block_file_bytes: 64 << 20,
        }
    }
}

/// A sealed block as its `series` value describes it.
struct Meta {
    last_ts: i64,
    values: u64,
    bytes: u64,
    /// Its block file; None for a block stored inline in sled.
    file: Option<u64>,
}

struct NodeState {
    record: NodeRecord,
    index: HashMap<String, usize>,
    hot: BTreeMap<i64, Vec<f64>>,
    /// (latest timestamp, log segment) of every batch with rows still hot.
    hot_batches: Vec<(i64, u64)>,
    sealed_max_ts: i64,
    latest: Vec<(i64, Vec<f64>)>,
}

impl NodeState {
    /// Oldest log segment holding one of the hot rows.
    fn hot_segment(&self) -> Option<u64> {
        self.hot_batches.iter().map(|b| b.1).min()
    }

    fn hot_values(&self) -> usize {
        self.hot.values().map(Vec::len).sum()
    }

    fn new(record: NodeRecord) -> Self {
        let index = record.catalog.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
        NodeState {
            record,
            index,
            hot: BTreeMap::new(),
            hot_batches: Vec::new(),
            sealed_max_ts: i64::MIN,
            latest: Vec::new(),
        }
    }

    fn note_latest(&mut self, ts: i64, values: &[f64]) {
        if self.latest.first().is_some_and(|(t, _)| *t >= ts) {
            if self.latest.get(1).is_none_or(|(t, _)| *t < ts) && self.latest[0].0 != ts {
                self.latest.insert(1, (ts, values.to_vec()));
                self.latest.truncate(2);
            }
            return;
        }
        self.latest.insert(0, (ts, values.to_vec()));
        self.latest.truncate(2);
    }
}

/// The embedded store.
pub struct SledStore {
    db: sled::Db,
    nodes_tree: sled::Tree,
    series: sled::Tree,
    faults_tree: sled::Tree,
    docs_tree: sled::Tree,
    blocks: BlockFiles,
    wal: Mutex<Wal>,
    /// sled was written since its last flush. sled's log grows with every
    /// flush, so it is flushed only when something in it changed.
    sled_dirty: AtomicBool,
    cfg: StoreConfig,
    nodes: RwLock<HashMap<String, Arc<Mutex<NodeState>>>>,
    sealed_blocks: AtomicU64,
    sealed_values: AtomicU64,
    sealed_bytes: AtomicU64,
    hot_rows: AtomicU64,
    hot_values: AtomicU64,
}

fn lock(m: &Mutex<NodeState>) -> MutexGuard<'_, NodeState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn prefix(kind: u8, node: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(node.len() + 18);
    k.push(kind);
    k.extend_from_slice(node.as_bytes());
    k.push(0);
    k
}

fn ts_key(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn block_key(node: &str, start: i64, id: u64) -> Vec<u8> {
    let mut k = prefix(b'b', node);
    k.extend_from_slice(&ts_key(start));
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn node_of_key(key: &[u8]) -> Option<&str> {
    let rest = key.get(1..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

fn doc_key(collection: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(collection.len() + key.len() + 1);
    k.extend_from_slice(collection.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the store under `dir` (sled in `dir`, the log in
    /// `dir/wal`), loads node state and replays the log.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<Self, StoreError> {
        // sled holds block entries, node records, labels and documents: small
        // values, whose pages small segments let its cleaner reclaim sooner.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_bytes)
            .flush_every_ms(Some(1000))
            .mode(sled::Mode::LowSpace)
            .segment_size(64 << 10)
            .open()?;
        let nodes_tree = db.open_tree("nodes")?;
        let series = db.open_tree("series")?;
        let faults_tree = db.open_tree("faults")?;
        let docs_tree = db.open_tree("docs")?;
        let blocks = BlockFiles::open(&dir.join("blocks"), cfg.block_file_bytes)?;
        let (wal, records) = Wal::open(&dir.join("wal"), cfg.wal_segment_bytes)?;
        let store = SledStore {
            db,
            nodes_tree,
            series,
            faults_tree,
            docs_tree,
            blocks,
            wal: Mutex::new(wal),
            sled_dirty: AtomicBool::new(false),
            cfg,
            nodes: RwLock::new(HashMap::new()),
            sealed_blocks: AtomicU64::new(0),
            sealed_values: AtomicU64::new(0),
            sealed_bytes: AtomicU64::new(0),
            hot_rows: AtomicU64::new(0),
            hot_values: AtomicU64::new(0),
        };
        store.load(records)?;
        Ok(store)
    }

    fn load(&self, records: Vec<super::wal::Record>) -> Result<(), StoreError> {
        let mut map = HashMap::new();
        for item in self.nodes_tree.iter() {
            let (_, v) = item?;
            let rec: NodeRecord = serde_json::from_slice(&v).map_err(corrupt)?;
            map.insert(rec.node.clone(), NodeState::new(rec));
        }
        // One pass over the block entries; only each node's newest block is
        // read and decoded, for its latest rows.
        let mut newest: HashMap<String, sled::IVec> = HashMap::new();
        let mut live: HashMap<u64, u64> = HashMap::new();
        for item in self.series.scan_prefix([b'b']) {
            let (k, v) = item?;
            if let Some(e) = Entry::decode(&v) {
                *live.entry(e.file).or_default() += 1;
            }
            let Some((node, st)) = node_of_key(&k).and_then(|n| map.get_mut(n).map(|st| (n, st)))
            else {
                continue;
            };
            let m = self.meta(&v)?;
            if m.last_ts > st.sealed_max_ts {
                st.sealed_max_ts = m.last_ts;
                newest.insert(node.to_owned(), v.clone());
            }
            self.count_sealed(&m, 1);
        }
        self.blocks.set_live(live)?;
        for (node, v) in newest {
            if let Some(st) = map.get_mut(&node) {
                let width = st.record.catalog.len();
                let bytes = self.block_bytes(&v)?;
                let rows =
                    BlockView::parse(&bytes).and_then(|view| view.rows(width)).map_err(corrupt)?;
                for (ts, vals) in rows.iter().rev().take(2) {
                    st.note_latest(*ts, vals);
                }
            }
        }
        // Rows of the log that are not in a sealed block become hot again.
        for rec in records {
            let Some(st) = map.get_mut(&rec.node) else { continue };
            let width = st.record.catalog.len();
            let rows =
                BlockView::parse(&rec.block).and_then(|view| view.rows(width)).map_err(corrupt)?;
            let mut newest = None;
            for (ts, vals) in rows {
                if st.hot.contains_key(&ts)
                    || (ts <= st.sealed_max_ts && self.sealed_contains(&rec.node, ts)?)
                {
                    continue;
                }
                st.note_latest(ts, &vals);
                st.hot.insert(ts, vals);
                newest = newest.max(Some(ts));
            }
            if let Some(ts) = newest {
                st.hot_batches.push((ts, rec.segment));
            }
        }
        let hot: usize = map.values().map(|s| s.hot.len()).sum();
        self.hot_rows.store(hot as u64, Ordering::Relaxed);
        let values: usize = map.values().map(NodeState::hot_values).sum();
        self.hot_values.store(values as u64, Ordering::Relaxed);
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        *nodes = map.into_iter().map(|(k, v)| (k, Arc::new(Mutex::new(v)))).collect();
        Ok(())
    }

    /// Adds (`sign` 1) or subtracts (-1) a block in the sealed counters.
    fn count_sealed(&self, m: &Meta, sign: i8) {
        let (blocks, values, bytes) =
            (&self.sealed_blocks, &self.sealed_values, &self.sealed_bytes);
        if sign > 0 {
            blocks.fetch_add(1, Ordering::Relaxed);
            values.fetch_add(m.values, Ordering::Relaxed);
            bytes.fetch_add(m.bytes, Ordering::Relaxed);
        } else {
            blocks.fetch_sub(1, Ordering::Relaxed);
            values.fetch_sub(m.values, Ordering::Relaxed);
            bytes.fetch_sub(m.bytes, Ordering::Relaxed);
        }
    }

    /// What the store knows of a sealed block from its `series` value
    /// without reading a block file.
    fn meta(&self, v: &[u8]) -> Result<Meta, StoreError> {
        if let Some(e) = Entry::decode(v) {
            return Ok(Meta {
                last_ts: e.last_ts,
                values: e.values,
                bytes: u64::from(e.len),
                file: Some(e.file),
            });
        }
        let view = BlockView::parse(v).map_err(corrupt)?;
        Ok(Meta {
            last_ts: view.timestamps.last().copied().unwrap_or(i64::MIN),
            values: (view.timestamps.len() * view.column_count()) as u64,
            bytes: v.len() as u64,
            file: None,
        })
    }

    /// The bytes of a sealed block: read from its block file, or inline.
    fn block_bytes<'v>(&self, v: &'v [u8]) -> Result<std::borrow::Cow<'v, [u8]>, StoreError> {
        Ok(match Entry::decode(v) {
            Some(e) => std::borrow::Cow::Owned(self.blocks.read(&e)?),
            None => std::borrow::Cow::Borrowed(v),
        })
    }

    fn state(&self, node: &str) -> Result<Arc<Mutex<NodeState>>, StoreError> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.get(node).cloned().ok_or_else(|| StoreError::UnknownNode(node.to_owned()))
    }

    fn sealed_contains(&self, node: &str, ts: i64) -> Result<bool, StoreError> {
        let lo = block_key(node, ts.saturating_sub(self.cfg.block_span_ms), 0);
        let hi = block_key(node, ts, u64::MAX);
        for item in self.series.range(lo..=hi) {
            let (_, v) = item?;
            if self.meta(&v)?.last_ts < ts {
                continue;
            }
            let bytes = self.block_bytes(&v)?;
            let view = BlockView::parse(&bytes).map_err(corrupt)?;
            if view.timestamps.binary_search(&ts).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Seals a node's hot rows into blocks of at most `block_rows` rows and
    /// `block_span_ms`. With `all` false a last block short of both limits
    /// stays hot to grow: sealed every time the span is reached, rows at
    /// 1 s came out as one 300-row block and one of a single row, 0.958
    /// bytes a value where whole blocks take 0.93 (`make bench`).
    fn seal(&self, node: &str, st: &mut NodeState, all: bool) -> Result<(), StoreError> {
        if st.hot.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, &[f64])> = st.hot.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        // (first timestamp, last timestamp, values, bytes) of each block.
        let mut sealed = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let first = rows[start].0;
            let mut end = start + 1;
            while end < rows.len()
                && end - start < self.cfg.block_rows
                && rows[end].0 - first < self.cfg.block_span_ms
            {
                end += 1;
            }
            if !all && end == rows.len() && end - start < self.cfg.block_rows {
                break;
            }
            let bytes = block::encode(&rows[start..end]);
            // Values stored: columns wholly missing in the block are left out.
            let columns = BlockView::parse(&bytes).map_err(corrupt)?.column_count();
            sealed.push((first, rows[end - 1].0, ((end - start) * columns) as u64, bytes));
            start = end;
        }
        let Some(cut) = sealed.last().map(|s| s.1) else { return Ok(()) };
        // Durable in the block file before sled may make an entry durable.
        let bytes: Vec<Vec<u8>> = sealed.iter().map(|s| s.3.clone()).collect();
        let places = self.blocks.write(&bytes)?;
        let mut batch = sled::Batch::default();
        let mut metas = Vec::with_capacity(sealed.len());
        for ((first, last_ts, values, bytes), (file, offset, crc)) in sealed.into_iter().zip(places)
        {
            let e = Entry { file, offset, len: bytes.len() as u32, crc, last_ts, values };
            batch.insert(block_key(node, first, self.db.generate_id()?), &e.encode()[..]);
            metas.push(Meta { last_ts, values, bytes: u64::from(e.len), file: Some(file) });
        }
        if let Err(e) = self.series.apply_batch(batch) {
            for m in &metas {
                self.blocks.release(m.file.unwrap_or(0));
            }
            return Err(e.into());
        }
        self.mark_dirty();
        for m in &metas {
            self.count_sealed(m, 1);
        }
        st.sealed_max_ts = st.sealed_max_ts.max(cut);
        let kept = st.hot.split_off(&(cut + 1));
        self.hot_rows.fetch_sub(st.hot.len() as u64, Ordering::Relaxed);
        self.hot_values.fetch_sub(st.hot_values() as u64, Ordering::Relaxed);
        st.hot = kept;
        // A batch whose newest row is sealed has all its rows sealed.
        st.hot_batches.retain(|b| b.0 > cut);
        Ok(())
    }

    /// Notes a write to sled, after it is made: a flush that takes the
    /// mark then flushes it. Marked before the write, a flush of another
    /// node's batch could take the mark between the two, flush without
    /// the write, and leave it to sled's own timer: a node record written
    /// then, lost with a crash inside that second, took the rows of its
    /// acknowledged batches with it (the log replays rows only for known
    /// nodes).
    fn mark_dirty(&self) {
        self.sled_dirty.store(true, Ordering::SeqCst);
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn states(&self) -> Vec<(String, Arc<Mutex<NodeState>>)> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn should_seal(&self, st: &NodeState) -> bool {
        match (st.hot.first_key_value(), st.hot.last_key_value()) {
            (Some((a, _)), Some((b, _))) => {
                st.hot.len() >= self.cfg.block_rows || b - a >= self.cfg.block_span_ms
            }
            _ => false,
        }
    }
}

impl SledStore {
    /// Counts out blocks whose entries were removed, and deletes the block
    /// files left without entries once sled made the removals durable.
    fn forget_blocks(&self, gone: &[Meta]) -> Result<(), StoreError> {
        for m in gone {
            self.count_sealed(m, -1);
            if let Some(f) = m.file {
                self.blocks.release(f);
            }
        }
        if gone.iter().any(|m| m.file.is_some()) {
            self.sled_dirty.store(false, Ordering::SeqCst);
            if let Err(e) = self.db.flush() {
                self.sled_dirty.store(true, Ordering::SeqCst);
                return Err(e.into());
            }
            self.blocks.remove_dead()?;
        }
        Ok(())
    }

    /// Calls `f` with every sealed block of `node` that may hold samples in
    /// `[from_ms, to_ms]` (callers filter the samples themselves).
    fn each_block(
        &self,
        node: &str,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(&BlockView<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let lo = block_key(node, from_ms.saturating_sub(self.cfg.block_span_ms), 0);
        let hi = block_key(node, to_ms, u64::MAX);
        for item in self.series.range(lo..=hi) {
            let (_, v) = item?;
            if self.meta(&v)?.last_ts < from_ms {
                continue;
            }
            let bytes = self.block_bytes(&v)?;
            f(&BlockView::parse(&bytes).map_err(corrupt)?)?;
        }
        Ok(())
    }
}

impl SeriesStore for SledStore {
    fn upsert_node(
        &self,
        node: &str,
        host: HostFacts,
        caps: Capabilities,
        catalog: Vec<MetricDesc>,
        interval_ms: u32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let existing = self.nodes.read().unwrap_or_else(|p| p.into_inner()).get(node).cloned();
        let record = match &existing {
            Some(st) => {
                let st = lock(st);
                let old = &st.record.catalog;
                if catalog.len() < old.len() || catalog[..old.len()] != old[..] {
                    return Err(StoreError::Catalog {
                        node: node.to_owned(),
                        reason: format!(
                            "the stored catalog of {} metrics is not a prefix of the new one",
                            old.len()
                        ),
                    });
                }
                NodeRecord {
                    node: node.to_owned(),
                    host,
                    capabilities: caps,
                    catalog,
                    interval_ms,
                    first_seen_ms: st.record.first_seen_ms,
                    last_seen_ms: now_ms,
                }
            }
            None => NodeRecord {
                node: node.to_owned(),
                host,
                capabilities: caps,
                catalog,
                interval_ms,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
            },
        };
        let json = serde_json::to_vec(&record).map_err(corrupt)?;
        self.nodes_tree.insert(node.as_bytes(), json)?;
        self.mark_dirty();
        match existing {
            Some(st) => {
                let mut st = lock(&st);
                st.index =
                    record.catalog.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
                st.record = record;
            }
            None => {
                let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
                nodes.insert(node.to_owned(), Arc::new(Mutex::new(NodeState::new(record))));
            }
        }
        Ok(())
    }

    fn append(&self, node: &str, rows: &[Row]) -> Result<AppendOutcome, StoreError> {
        let st = self.state(node)?;
        let mut st = lock(&st);
        let width = st.record.catalog.len();
        let mut out = AppendOutcome::default();
        let mut fresh: BTreeMap<i64, &[f64]> = BTreeMap::new();
        for r in rows {
            if r.values.len() > width {
                return Err(StoreError::Catalog {
                    node: node.to_owned(),
                    reason: format!(
                        "a row has {} values but the catalog has {width}",
                        r.values.len()
                    ),
                });
            }
            if st.hot.contains_key(&r.ts_ms)
                || fresh.contains_key(&r.ts_ms)
                || (r.ts_ms <= st.sealed_max_ts && self.sealed_contains(node, r.ts_ms)?)
            {
                out.duplicates += 1;
                continue;
            }
            fresh.insert(r.ts_ms, &r.values);
        }
        if fresh.is_empty() {
            return Ok(out);
        }
        let rows: Vec<(i64, &[f64])> = fresh.into_iter().collect();
        let segment = self.wal().append(node, &block::encode(&rows))?;
        st.hot_batches.push((rows[rows.len() - 1].0, segment));
        for (ts, vals) in &rows {
            out.rows += 1;
            out.values += vals.len();
            st.note_latest(*ts, vals);
            st.hot.insert(*ts, vals.to_vec());
        }
        self.hot_rows.fetch_add(out.rows as u64, Ordering::Relaxed);
        self.hot_values.fetch_add(out.values as u64, Ordering::Relaxed);
        if self.should_seal(&st) {
            self.seal(node, &mut st, false)?;
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Which log segments are still needed is decided before the flush:
        // rows sealed since then are in blocks this flush makes durable, and
        // rows appended since then live in segment `current` or later.
        let (current, appends) = {
            let w = self.wal();
            (w.current(), w.appends())
        };
        let pinned = self.states().iter().filter_map(|(_, st)| lock(st).hot_segment()).min();
        if self.sled_dirty.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.db.flush() {
                self.sled_dirty.store(true, Ordering::SeqCst);
                return Err(e.into());
            }
        }
        let mut wal = self.wal();
        wal.sync()?;
        match pinned {
            Some(p) => {
                wal.remove_below(p.min(current))?;
            }
            // Nothing unsealed anywhere and nothing appended meanwhile: every
            // record on disk is in a durable block, the current segment too.
            None if wal.current() == current
                && wal.appends() == appends
                && wal.current_bytes() > 0 =>
            {
                wal.rotate()?;
                wal.remove_below(current + 1)?;
            }
            None => {
                wal.remove_below(current)?;
            }
        }
        Ok(())
    }

    fn nodes(&self) -> Vec<NodeRecord> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<NodeRecord> = nodes.values().map(|s| lock(s).record.clone()).collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    fn node(&self, node: &str) -> Option<NodeRecord> {
        self.state(node).ok().map(|s| lock(&s).record.clone())
    }

    fn query(
        &self,
        node: &str,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let st = self.state(node)?;
        // Hot rows first: a seal running after this copy moves rows into
        // blocks, where the scan below still finds them.
        let (idx, mut points) = {
            let st = lock(&st);
            let idx = *st.index.get(metric).ok_or_else(|| StoreError::UnknownMetric {
                node: node.to_owned(),
                metric: metric.to_owned(),
            })?;
            let pts: Vec<(i64, f64)> = st
                .hot
                .range(from_ms..=to_ms)
                .filter_map(|(t, v)| v.get(idx).copied().filter(|x| !x.is_nan()).map(|x| (*t, x)))
                .collect();
            (idx, pts)
        };
        self.each_block(node, from_ms, to_ms, |view| {
            if let Some(col) = view.column(idx).map_err(corrupt)? {
                points.extend(
                    view.timestamps
                        .iter()
                        .zip(col)
                        .filter(|(t, x)| **t >= from_ms && **t <= to_ms && !x.is_nan())
                        .map(|(t, x)| (*t, x)),
                );
            }
            Ok(())
        })?;
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        Ok(points)
    }

    fn range(&self, node: &str, from_ms: i64, to_ms: i64) -> Result<super::Rows, StoreError> {
        let st = self.state(node)?;
        let (catalog, mut rows) = {
            let st = lock(&st);
            let rows: Vec<(i64, Vec<f64>)> =
                st.hot.range(from_ms..=to_ms).map(|(t, v)| (*t, v.clone())).collect();
            (st.record.catalog.clone(), rows)
        };
        let width = catalog.len();
        self.each_block(node, from_ms, to_ms, |view| {
            rows.extend(
                view.rows(width)
                    .map_err(corrupt)?
                    .into_iter()
                    .filter(|(t, _)| *t >= from_ms && *t <= to_ms),
            );
            Ok(())
        })?;
        for r in &mut rows {
            r.1.resize(width, f64::NAN);
        }
        rows.sort_by_key(|r| r.0);
        rows.dedup_by_key(|r| r.0);
        Ok((catalog, rows))
    }

    fn latest(&self, node: &str) -> Option<Latest> {
        let st = self.state(node).ok()?;
        let st = lock(&st);
        Some(Latest { catalog: st.record.catalog.clone(), rows: st.latest.clone() })
    }

    fn stats(&self) -> StoreStats {
        let (wal_segments, wal_bytes) = {
            let w = self.wal();
            (w.segment_count() as u64, w.disk_bytes())
        };
        StoreStats {
            wal_segments,
            wal_bytes,
            nodes: self.nodes.read().unwrap_or_else(|p| p.into_inner()).len(),
            sealed_blocks: self.sealed_blocks.load(Ordering::Relaxed),
            sealed_values: self.sealed_values.load(Ordering::Relaxed),
            sealed_bytes: self.sealed_bytes.load(Ordering::Relaxed),
            hot_rows: self.hot_rows.load(Ordering::Relaxed),
            size_on_disk: self.db.size_on_disk().unwrap_or(0)
                + wal_bytes
                + self.blocks.disk_bytes(),
        }
    }

    fn enforce_retention(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let names: Vec<String> =
            self.nodes.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let mut gone = Vec::new();
        for node in names {
            let hi = block_key(&node, cutoff_ms, 0);
            let mut batch = sled::Batch::default();
            for item in self.series.range(prefix(b'b', &node)..hi) {
                let (k, v) = item?;
                let m = self.meta(&v)?;
                if m.last_ts < cutoff_ms {
                    batch.remove(k);
                    gone.push(m);
                }
            }
            self.series.apply_batch(batch)?;
            self.mark_dirty();
        }
        self.forget_blocks(&gone)?;
        Ok(gone.len())
    }

    fn delete_node(&self, node: &str) -> Result<bool, StoreError> {
        let Some(st) = self.nodes.write().unwrap_or_else(|p| p.into_inner()).remove(node) else {
            return Ok(false);
        };
        let st = lock(&st);
        let mut batch = sled::Batch::default();
        let mut gone = Vec::new();
        for item in self.series.scan_prefix(prefix(b'b', node)) {
            let (k, v) = item?;
            if let Ok(m) = self.meta(&v) {
                gone.push(m);
            }
            batch.remove(k);
        }
        self.series.apply_batch(batch)?;
        self.nodes_tree.remove(node.as_bytes())?;
        self.mark_dirty();
        self.forget_blocks(&gone)?;
        self.hot_rows.fetch_sub(st.hot.len() as u64, Ordering::Relaxed);
        self.hot_values.fetch_sub(st.hot_values() as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn save_fault(&self, rec: &FaultRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(rec).map_err(corrupt)?;
        // Keyed by request time then id, so a scan is in time order.
        let mut key = ts_key(rec.requested_ms).to_vec();
        key.extend_from_slice(rec.id.as_bytes());
        self.faults_tree.insert(key, json)?;
        // A label must not be lost: make it durable now.
        self.db.flush()?;
        Ok(())
    }

    fn faults(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FaultRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.faults_tree.range(..ts_key(to_ms.saturating_add(1)).to_vec()) {
            let (_, v) = item?;
            let rec: FaultRecord = serde_json::from_slice(&v).map_err(corrupt)?;
            if rec.ended_ms.is_none_or(|e| e >= from_ms) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn put_doc(&self, collection: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.docs_tree.insert(doc_key(collection, key), value)?;
        self.db.flush()?;
        Ok(())
    }

    fn get_doc(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.docs_tree.get(doc_key(collection, key))?.map(|v| v.to_vec()))
    }

    fn docs(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let p = doc_key(collection, "");
        let mut out = Vec::new();
        for item in self.docs_tree.scan_prefix(&p) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }

    fn docs_range(
        &self,
        collection: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let p = doc_key(collection, "").len();
        let mut out = Vec::new();
        for item in self.docs_tree.range(doc_key(collection, from)..doc_key(collection, to)) {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k[p..]).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    fn delete_docs_before(&self, collection: &str, before: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        let range = doc_key(collection, "")..doc_key(collection, before);
        for item in self.docs_tree.range(range) {
            let (k, _) = item?;
            self.docs_tree.remove(k)?;
            n += 1;
        }
        if n > 0 {
            self.db.flush()?;
        }
        Ok(n)
    }

    fn delete_doc(&self, collection: &str, key: &str) -> Result<(), StoreError> {
        self.docs_tree.remove(doc_key(collection, key))?;
        self.db.flush()?;
        Ok(())
    }

    fn seal_all(&self) -> Result<(), StoreError> {
        for (node, st) in self.states() {
            let mut st = lock(&st);
            self.seal(&node, &mut st, true)?;
        }
        Ok(())
    }

    fn maintain(&self) -> Result<usize, StoreError> {
        // Nodes whose hot rows keep an old log segment alive (slow or silent
        // agents) are sealed early, so the log does not grow without bound.
        // The log keeps as many segments as the memory budget holds rows
        // (sealing every node that pins any older segment sealed all 1,000
        // nodes of the soak every 10 s: 10-row blocks, 2.0 bytes a value).
        let current = self.wal().current();
        let keep = (self.cfg.hot_bytes / self.cfg.wal_segment_bytes.max(1)).max(1);
        let oldest_kept = current.saturating_sub(keep - 1);
        let mut sealed = 0;
        for (node, st) in self.states() {
            let mut st = lock(&st);
            if st.hot_segment().is_some_and(|s| s < oldest_kept) {
                self.seal(&node, &mut st, true)?;
                sealed += 1;
            }
        }
        // Over the memory budget: the nodes holding the most, until half is left.
        let budget = self.cfg.hot_bytes / 8;
        if self.hot_values.load(Ordering::Relaxed) > budget {
            let mut by_size: Vec<(usize, String, Arc<Mutex<NodeState>>)> = self
                .states()
                .into_iter()
                .map(|(node, st)| {
                    let size = lock(&st).hot_values();
                    (size, node, st)
                })
                .collect();
            by_size.sort_by_key(|e| std::cmp::Reverse(e.0));
            for (_, node, st) in by_size {
                if self.hot_values.load(Ordering::Relaxed) <= budget / 2 {
                    break;
                }
                self.seal(&node, &mut lock(&st), true)?;
                sealed += 1;
            }
        }
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(n: usize) -> Vec<MetricDesc> {
        (0..n).map(|i| MetricDesc::gauge(format!("m{i}"), "count")).collect()
    }

    /// sled's flusher thread releases the directory lock up to a tick after
    /// a drop, so an in-process reopen retries briefly.
    fn open(dir: &Path, cfg: StoreConfig) -> SledStore {
        for _ in 0..50 {
            match SledStore::open(dir, cfg.clone()) {
                Ok(s) => return s,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        SledStore::open(dir, cfg).unwrap()
    }

    fn row(ts: i64, n: usize) -> Row {
        Row { ts_ms: ts, values: (0..n).map(|j| (ts / 1000) as f64 + j as f64 * 0.5).collect() }
    }

    #[test]
    fn appended_rows_are_queryable_across_seal_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            block_span_ms: 10_000,
            block_rows: 8,
            cache_bytes: 8 << 20,
            wal_segment_bytes: 1 << 20,
            hot_bytes: 256 << 20,
            ..StoreConfig::default()
        };
        {
            let s = open(dir.path(), cfg.clone());
            s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(3), 1000, 0)
                .unwrap();
            for chunk in (0..25).collect::<Vec<i64>>().chunks(3) {
                let rows: Vec<Row> = chunk.iter().map(|i| row(1_000_000 + i * 1000, 3)).collect();
                s.append("n1", &rows).unwrap();
            }
            s.flush().unwrap();
            assert!(s.stats().sealed_blocks >= 2, "{:?}", s.stats());
            assert!(s.stats().hot_rows > 0);
        }
        let s = open(dir.path(), cfg);
        let pts = s.query("n1", "m2", 0, i64::MAX).unwrap();
        assert_eq!(pts.len(), 25);
        for (i, (t, v)) in pts.iter().enumerate() {
            assert_eq!(*t, 1_000_000 + i as i64 * 1000);
            assert_eq!(*v, (t / 1000) as f64 + 1.0);
        }
        let window = s.query("n1", "m0", 1_005_000, 1_009_000).unwrap();
        assert_eq!(
            window.iter().map(|p| p.0).collect::<Vec<_>>(),
            (5..=9).map(|i| 1_000_000 + i * 1000).collect::<Vec<_>>()
        );
        let latest = s.latest("n1").unwrap();
        assert_eq!(latest.rows[0].0, 1_024_000);
        assert_eq!(latest.rows[1].0, 1_023_000);
    }

    #[test]
    fn replayed_rows_are_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(
            dir.path(),
            StoreConfig { block_span_ms: 10_000, block_rows: 4, ..StoreConfig::default() },
        );
        s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(2), 1000, 0)
            .unwrap();
        let rows: Vec<Row> = (0..6).map(|i| row(i * 1000, 2)).collect();
        assert_eq!(s.append("n1", &rows).unwrap().rows, 6);
        // Same rows again: some now sealed, some hot; all are duplicates.
        let again = s.append("n1", &rows).unwrap();
        assert_eq!((again.rows, again.duplicates), (0, 6));
        assert_eq!(s.query("n1", "m0", 0, i64::MAX).unwrap().len(), 6);
    }

    #[test]
    fn catalog_may_only_grow_and_rows_must_fit() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), StoreConfig::default());
        s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(2), 1000, 0)
            .unwrap();
        assert!(s.append("n1", &[row(1, 3)]).is_err());
        s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(3), 1000, 1)
            .unwrap();
        s.append("n1", &[row(1, 3)]).unwrap();
        let mut other = catalog(3);
        other[0].name = "zz".into();
        assert!(matches!(
            s.upsert_node("n1", HostFacts::default(), Capabilities::default(), other, 1000, 2),
            Err(StoreError::Catalog { .. })
        ));
        assert!(matches!(s.append("nope", &[row(1, 1)]), Err(StoreError::UnknownNode(_))));
        assert!(matches!(s.query("n1", "nope", 0, 1), Err(StoreError::UnknownMetric { .. })));
    }

    #[test]
    fn retention_drops_old_blocks_and_delete_forgets_a_node() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(
            dir.path(),
            StoreConfig { block_span_ms: 5_000, block_rows: 5, ..StoreConfig::default() },
        );
        s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(1), 1000, 0)
            .unwrap();
        let rows: Vec<Row> = (0..20).map(|i| row(i * 1000, 1)).collect();
        s.append("n1", &rows).unwrap();
        s.seal_all().unwrap();
        let removed = s.enforce_retention(10_000).unwrap();
        assert_eq!(removed, 2);
        let pts = s.query("n1", "m0", 0, i64::MAX).unwrap();
        assert_eq!(pts.first().map(|p| p.0), Some(10_000));
        assert!(s.delete_node("n1").unwrap());
        assert!(s.nodes().is_empty());
        assert_eq!(s.stats().sealed_blocks, 0);
        assert!(!s.delete_node("n1").unwrap());
    }

    #[test]
    fn block_files_go_when_retention_drops_all_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        // Blocks of 5 rows, a new file after each seal.
        let cfg = StoreConfig {
            block_span_ms: 5_000,
            block_rows: 5,
            block_file_bytes: 1,
            ..StoreConfig::default()
        };
        let s = open(dir.path(), cfg.clone());
        s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(4), 1000, 0)
            .unwrap();
        for i in 0..4 {
            let rows: Vec<Row> = (i * 5..i * 5 + 5).map(|t| row(t * 1000, 4)).collect();
            s.append("n1", &rows).unwrap();
        }
        s.flush().unwrap();
        assert_eq!(s.stats().sealed_blocks, 4);
        // Four files of one block each, the last one current.
        assert_eq!(s.blocks.file_count(), 4);
        assert_eq!(s.enforce_retention(10_000).unwrap(), 2);
        assert_eq!(s.blocks.file_count(), 2);
        assert_eq!(s.query("n1", "m3", 0, i64::MAX).unwrap().len(), 10);
        let on_disk = s.stats().size_on_disk;
        assert!(on_disk >= s.blocks.disk_bytes() && s.blocks.disk_bytes() > 0);
        drop(s);
        let s = open(dir.path(), cfg);
        assert_eq!(s.stats().sealed_blocks, 2);
        assert_eq!(s.query("n1", "m3", 0, i64::MAX).unwrap().first().map(|p| p.0), Some(10_000));
        assert!(s.delete_node("n1").unwrap());
        // Reopened, a new current file; the node's two files go with it.
        assert_eq!(s.blocks.file_count(), 1, "only the current file is left");
    }

    #[test]
    fn a_crash_before_the_index_leaves_bytes_nothing_reads_and_no_row_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig { block_span_ms: 1_000_000, block_rows: 5, ..StoreConfig::default() };
        {
            let s = open(dir.path(), cfg.clone());
            s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(2), 1000, 0)
                .unwrap();
            s.append("n1", &(0..5).map(|t| row(t * 1000, 2)).collect::<Vec<_>>()).unwrap();
            s.append("n1", &(5..8).map(|t| row(t * 1000, 2)).collect::<Vec<_>>()).unwrap();
            s.flush().unwrap();
            // As if a seal wrote its block and the process died before sled
            // took the entry: bytes at the end of the current file.
            s.blocks.write(&[vec![2; 300]]).unwrap();
        }
        let s = open(dir.path(), cfg);
        // The rows were acknowledged from the log, which replays them.
        let pts = s.query("n1", "m1", 0, i64::MAX).unwrap();
        assert_eq!(
            pts.iter().map(|p| p.0).collect::<Vec<_>>(),
            (0..8).map(|t| t * 1000).collect::<Vec<_>>()
        );
        assert_eq!(s.stats().sealed_blocks, 1);
        assert_eq!(s.stats().hot_rows, 3);
    }

    #[test]
    fn blocks_stored_inline_by_an_older_store_still_read_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), StoreConfig { block_rows: 5, ..StoreConfig::default() });
        s.upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog(2), 1000, 0)
            .unwrap();
        let old: Vec<Row> = (0..5).map(|t| row(t * 1000, 2)).collect();
        let refs: Vec<(i64, &[f64])> = old.iter().map(|r| (r.ts_ms, r.values.as_slice())).collect();
        s.series.insert(block_key("n1", 0, 1), block::encode(&refs)).unwrap();
        s.append("n1", &(5..10).map(|t| row(t * 1000, 2)).collect::<Vec<_>>()).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = open(dir.path(), StoreConfig { block_rows: 5, ..StoreConfig::default() });
        assert_eq!(s.stats().sealed_blocks, 2);
        assert_eq!(s.query("n1", "m0", 0, i64::MAX).unwrap().len(), 10);
        assert_eq!(s.append("n1", &old).unwrap().duplicates, 5);
        assert_eq!(s.enforce_retention(5_000).unwrap(), 1);
        assert_eq!(s.query("n1", "m0", 0, i64::MAX).unwrap().first().map(|p| p.0), Some(5_000));
    }

    #[test]
    fn the_upkeep_keeps_unsealed_rows_within_the_memory_budget() {
        let dir = tempfile::tempdir().unwrap();
        // 10 nodes × 20 values; a budget of 400 values (3,200 bytes).
        let cfg = StoreConfig { hot_bytes: 3200, ..StoreConfig::default() };
        let s = open(dir.path(), cfg);
        for n in 0..10 {
            let node = format!("n{n}");
            s.upsert_node(
                &node,
                HostFacts::default(),
                Capabilities::default(),
                catalog(20),
                1000,
                0,
            )
            .unwrap();
            // More rows on later nodes: they are sealed first.
            let rows: Vec<Row> = (0..=n).map(|i| row(1_000_000 + i * 1000, 20)).collect();
            s.append(&node, &rows).unwrap();
        }
        s.flush().unwrap();
        assert_eq!(s.stats().hot_rows, 55);
        assert!(s.maintain().unwrap() > 0);
        let left = s.stats().hot_rows * 20;
        assert!(left <= 200, "{left} values still unsealed");
        // The biggest went, the smallest stayed; every row is still there.
        assert!(s.latest("n9").is_some());
        for n in 0..10i64 {
            assert_eq!(s.query(&format!("n{n}"), "m0", 0, i64::MAX).unwrap().len() as i64, n + 1);
        }
        // Within the budget, nothing more is sealed.
        let before = s.stats().sealed_blocks;
        s.maintain().unwrap();
        assert_eq!(s.stats().sealed_blocks, before);
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    fn rows(range: std::ops::Range<i64>) -> Vec<Row> {
        range.map(|i| Row { ts_ms: i * 1000, values: vec![i as f64] }).collect()
    }

    /// Registers `node` with one gauge, `m`.
    fn gauge_node(s: &SledStore, node: &str) {
        let catalog = vec![MetricDesc::gauge("m", "count")];
        s.upsert_node(node, HostFacts::default(), Capabilities::default(), catalog, 1000, 0)
            .unwrap();
    }

    fn open(dir: &Path, cfg: &StoreConfig) -> SledStore {
        for _ in 0..50 {
            if let Ok(s) = SledStore::open(dir, cfg.clone()) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        SledStore::open(dir, cfg.clone()).unwrap()
    }

    #[test]
    fn document_ranges_stay_in_their_collection_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::default();
        {
            let s = open(dir.path(), &cfg);
            for t in [5, 10, 15, 20] {
                s.put_doc("rk", &format!("{t:04}"), t.to_string().as_bytes()).unwrap();
            }
            s.put_doc("rj", "0012", b"other").unwrap();
            s.put_doc("rkz", "0012", b"other").unwrap();
        }
        let s = open(dir.path(), &cfg);
        let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(s.docs_range("rk", "0010", "0020").unwrap()), ["0010", "0015"]);
        assert_eq!(keys(s.docs_range("rk", "", "9999").unwrap()).len(), 4);
        assert_eq!(s.delete_docs_before("rk", "0015").unwrap(), 2);
        assert_eq!(keys(s.docs("rk").unwrap()), ["0015", "0020"]);
        assert_eq!(s.docs("rj").unwrap().len() + s.docs("rkz").unwrap().len(), 2);
    }

    #[test]
    fn unsealed_rows_come_back_from_the_log_and_sealed_ones_are_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            block_span_ms: 1_000_000,
            block_rows: 10,
            wal_segment_bytes: 1 << 20,
            hot_bytes: 256 << 20,
            ..StoreConfig::default()
        };
        {
            let s = open(dir.path(), &cfg);
            gauge_node(&s, "n");
            // 14 rows: a whole block of 10 sealed right away, 4 left to grow.
            s.append("n", &rows(0..14)).unwrap();
            s.append("n", &rows(14..17)).unwrap(); // hot
            s.flush().unwrap();
            assert_eq!((s.stats().sealed_blocks, s.stats().hot_rows), (1, 7));
        }
        let s = open(dir.path(), &cfg);
        assert_eq!((s.stats().sealed_blocks, s.stats().hot_rows), (1, 7));
        let pts = s.query("n", "m", 0, i64::MAX).unwrap();
        assert_eq!(pts.iter().map(|p| p.0 / 1000).collect::<Vec<_>>(), (0..17).collect::<Vec<_>>());
    }

    #[test]
    fn a_block_left_to_grow_pins_only_the_segments_of_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            block_span_ms: 1_000_000,
            block_rows: 10,
            wal_segment_bytes: 100,
            hot_bytes: 1 << 30,
            ..StoreConfig::default()
        };
        {
            let s = open(dir.path(), &cfg);
            gauge_node(&s, "n");
            // Batches of 3: the fourth completes the first block of 10 and
            // leaves 2 rows hot, which live in the fourth batch's segment.
            for i in 0..4 {
                s.append("n", &rows(i * 3..i * 3 + 3)).unwrap();
            }
            s.flush().unwrap();
            assert_eq!((s.stats().sealed_blocks, s.stats().hot_rows), (1, 2));
            let pinned = lock(&s.state("n").unwrap()).hot_segment().unwrap();
            let count = s.wal().segment_count() as u64;
            let current = s.wal().current();
            assert_eq!(count, current - pinned + 1);
            assert!(pinned > 1, "older segments are gone");
        }
        let s = open(dir.path(), &cfg);
        assert_eq!(s.stats().hot_rows, 2);
        assert_eq!(s.query("n", "m", 0, i64::MAX).unwrap().len(), 12);
    }

    #[test]
    fn log_segments_go_once_their_rows_are_sealed_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            block_span_ms: 1_000_000,
            block_rows: 1000,
            wal_segment_bytes: 200,
            // One segment kept: every older one is sealed away.
            hot_bytes: 200,
            ..StoreConfig::default()
        };
        let s = open(dir.path(), &cfg);
        for n in ["a", "b"] {
            gauge_node(&s, n);
        }
        for i in 0..20 {
            s.append("a", &rows(i * 2..i * 2 + 2)).unwrap();
        }
        s.append("b", &rows(0..2)).unwrap();
        s.flush().unwrap();
        let segments = s.wal().segment_count();
        assert!(segments > 3, "{segments}");
        // Unsealed rows pin their segments.
        assert_eq!(s.wal().segment_count(), segments);
        assert!(s.maintain().unwrap() >= 1);
        s.flush().unwrap();
        assert_eq!(s.wal().segment_count(), 1);
        assert_eq!(
            s.query("n", "m", 0, 1).map(|_| ()).unwrap_err().to_string(),
            "unknown node \"n\""
        );
        assert_eq!(s.query("a", "m", 0, i64::MAX).unwrap().len(), 40);
    }
}
