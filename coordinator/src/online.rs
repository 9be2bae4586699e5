//! Online diagnosis: as soon as every recently seen node has a new sample
//! (at most every `rank_interval_ms`), and at least every stride, every
//! node's latest window is ranked — by the active model, or by the
//! statistical scorer when there is none (and the ranking says so). Every
//! ranking is published (latest, SSE) and checked for alerts; the history
//! (store and memory) keeps one a stride, and any whose top entry changes,
//! so that it costs what it did when rankings came only every stride.
//! An Alertmanager-compatible webhook fires when the top entry's
//! probability reaches the threshold.
//!
//! Ranking on new samples instead of every 5 s stride is one of the two
//! changes that brought a fault's detection on the demo from about 13 s to
//! 3–5 s (the other: onset windows in training, `diagnose/src/labels.rs`);
//! measured in docs/performance.md.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use distdiag_api::ranks::{Incident, Ranking};

use crate::config::DiagnosisConfig;
use crate::models::Models;
use distdiag_dataset::{Dataset, Frame};
use distdiag_diagnose::graph::NodeGraph;
use distdiag_diagnose::rank::{rank, Method, RankEntry, Ranker};
use distdiag_diagnose::stat;
use distdiag_store::now_ms;
use distdiag_store::SeriesStore;

/// One published ranking.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub timestamp: i64,
    pub method: Method,
    pub model_id: Option<String>,
    /// What produced it, in words.
    pub note: String,
    pub window_ms: i64,
    pub ranks: Vec<RankEntry>,
    pub graph: NodeGraph,
    pub pagerank: Vec<f64>,
}

pub struct Online {
    store: Arc<dyn SeriesStore>,
    models: Arc<Models>,
    cfg: DiagnosisConfig,
    merge: BTreeMap<String, String>,
    /// The latest ranking whole (graph included: `/ranks/graph` draws it).
    latest: Mutex<Option<Arc<Diagnosis>>>,
    /// Past rankings cut to [`STORED_ENTRIES`] entries, without their
    /// graph, for when the store cannot be read. Keeping each whole cost
    /// 12 MB a ranking at 1,000 nodes (500,000 edges): the soak's
    /// coordinator grew 1.2 MB/s until it held `history_rankings` of them.
    history: Mutex<VecDeque<Ranking>>,
    tx: broadcast::Sender<Arc<Diagnosis>>,
    /// (node, type) → when it fired and when last sent.
    firing: Mutex<BTreeMap<(String, String), (i64, i64)>>,
    /// Without a model: when the statistical scorer began to suspect a
    /// node (the start of the window that first scored ≥ [`SUSPECT`]); the
    /// reference stays frozen before it until every score falls below
    /// [`CLEAR`] against it or [`MAX_FREEZE_MS`] passes, so a fault that
    /// lasts longer than the baseline does not become its own reference.
    suspect_since: Mutex<Option<i64>>,
    /// Where the windows come from, when not the local store (`[remote_read]`).
    remote: std::sync::OnceLock<crate::remote_write::RemoteRead>,
    http: reqwest::Client,
    stop: watch::Receiver<bool>,
    /// When the history last kept a ranking, and what its top said.
    kept: Mutex<Option<(i64, Kept)>>,
}

/// What a ranking's top entry says, as far as the history is concerned:
/// a change is kept at once, between strides.
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    node: String,
    kind: String,
    /// The excess from which an incident is named by default.
    named: bool,
    /// The probability from which the alert fires.
    alerting: bool,
}

/// The statistical score (excess over peers) from which a node is
/// suspected, and below which the suspicion ends.
pub const SUSPECT: f64 = 0.5;
pub const CLEAR: f64 = 0.3;
/// The longest a reference stays frozen (then what is, is the new normal).
pub const MAX_FREEZE_MS: i64 = 30 * 60_000;

/// Whether every node of `frame` was sampled at the slot of `from_ms` or
/// in the two after it (a sample may be late): at least half of its
/// series have a value there (not all: a device or a query's series may
/// come and go).
fn history_covers(frame: &Frame, from_ms: i64) -> bool {
    let i = frame.index_at(from_ms);
    frame.nodes.iter().all(|n| {
        let had = n.metrics.values().filter(|v| v.iter().skip(i).take(3).any(|x| x.is_finite()));
        2 * had.count() >= n.metrics.len()
    })
}

/// The excess from which a ranking names its top pair in an incident,
/// unless the request says otherwise (`min_excess`).
pub const DEFAULT_INCIDENT_EXCESS: f64 = 0.5;

/// The store collection of past rankings, keyed by [`history_key`].
pub const HISTORY: &str = "rankings";
/// Entries of each ranking kept in the store. About 200 bytes of JSON
/// each: at the default 5 s stride a week of rankings is some 120,000
/// documents, 240 MB, which is why the default retention is a week.
pub const STORED_ENTRIES: usize = 10;
/// Rankings between two retention passes.
const PRUNE_EVERY: u64 = 720;

/// How far back the remote API is asked for nodes' catalog info series (a
/// sample every 30 s): at least this, or the whole window and baseline.
const REMOTE_CATALOG_LOOKBACK_MS: i64 = 120_000;

/// A ranking's key: its time, zero-padded so that keys sort like times.
fn history_key(ms: i64) -> String {
    format!("{:016}", ms.max(0))
}

/// A ranking as the store keeps it: the API's form, plus every node's
/// PageRank (the summary of the node graph).
#[derive(Serialize, Deserialize)]
struct StoredRanking {
    ranking: Ranking,
    pagerank: BTreeMap<String, f64>,
}

/// Groups rankings (oldest first) into incidents: a ranking names its top
/// (node, type) when that entry's excess is at least `min_excess`;
/// consecutive rankings naming the same pair, no more than `max_gap_ms`
/// apart, are one incident. A ranking that names nobody or another pair
/// ends it.
pub fn incidents(history: &[Ranking], min_excess: f64, max_gap_ms: i64) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    let mut open = false;
    for r in history {
        let (Some(at), Some(top)) = (r.timestamp, r.ranks.first()) else {
            open = false;
            continue;
        };
        if top.excess < min_excess {
            open = false;
            continue;
        }
        match out.last_mut() {
            Some(i)
                if open
                    && i.node == top.node
                    && i.kind == top.kind
                    && at - i.end_ms <= max_gap_ms =>
            {
                i.end_ms = at;
                i.rankings += 1;
                i.max_probability = i.max_probability.max(top.probability);
                if top.excess > i.max_excess {
                    i.max_excess = top.excess;
                    i.top_metrics = top.top_metrics.clone();
                }
            }
            _ => {
                out.push(Incident {
                    node: top.node.clone(),
                    kind: top.kind.clone(),
                    start_ms: at,
                    end_ms: at,
                    rankings: 1,
                    max_probability: top.probability,
                    max_excess: top.excess,
                    method: r.method.unwrap_or(Method::Statistical),
                    model_id: r.model_id.clone(),
                    top_metrics: top.top_metrics.clone(),
                });
                open = true;
            }
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Diagnosis {
    /// As the API shows it: the first `limit` entries.
    pub fn ranking(&self, limit: usize) -> Ranking {
        Ranking {
            timestamp: Some(self.timestamp),
            method: Some(self.method),
            model_id: self.model_id.clone(),
            note: self.note.clone(),
            window_ms: Some(self.window_ms),
            ranks: self.ranks.iter().take(limit).cloned().collect(),
        }
    }
}

impl Online {
    pub fn new(
        store: Arc<dyn SeriesStore>,
        models: Arc<Models>,
        cfg: DiagnosisConfig,
        merge: BTreeMap<String, String>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Online> {
        let (tx, _) = broadcast::channel(64);
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Arc::new(Online {
            store,
            models,
            cfg,
            merge,
            latest: Mutex::new(None),
            remote: std::sync::OnceLock::new(),
            history: Mutex::new(VecDeque::new()),
            tx,
            firing: Mutex::new(BTreeMap::new()),
            suspect_since: Mutex::new(None),
            http,
            stop,
            kept: Mutex::new(None),
        })
    }

    /// New rankings, and a receiver that changes at shutdown (streams end then).
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Diagnosis>>, watch::Receiver<bool>) {
        (self.tx.subscribe(), self.stop.clone())
    }

    /// Reads the windows from a Prometheus-compatible API from now on. The
    /// nodes are those of the local store and those whose catalog info
    /// series the API holds (a standby without agents knows only these).
    /// Once only.
    pub fn read_from(&self, remote: crate::remote_write::RemoteRead) {
        let _ = self.remote.set(remote);
    }

    /// The runtime to wait for the remote API on (the caller is on a
    /// blocking thread of it).
    fn runtime() -> Result<tokio::runtime::Handle, String> {
        tokio::runtime::Handle::try_current().map_err(|e| e.to_string())
    }

    /// A node's rows over `from..=to`: from the local store, or from the
    /// remote API with `remote_catalog` or else the local one.
    fn rows(
        &self,
        node: &str,
        remote_catalog: Option<&Vec<distdiag_common::MetricDesc>>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<distdiag_store::Rows, String> {
        match self.remote.get() {
            None => self.store.range(node, from_ms, to_ms).map_err(|e| e.to_string()),
            Some(r) => {
                let catalog = match remote_catalog {
                    Some(c) => c.clone(),
                    None => self.store.node(node).map(|n| n.catalog).unwrap_or_default(),
                };
                let rows = Self::runtime()?.block_on(r.range(node, &catalog, from_ms, to_ms))?;
                Ok((catalog, rows))
            }
        }
    }

    pub fn latest(&self) -> Option<Arc<Diagnosis>> {
        lock(&self.latest).clone()
    }

    /// The rankings of `from_ms..=to_ms`, oldest first, each with its
    /// first `limit` entries: from the store (so they outlive a restart),
    /// or from memory if the store cannot be read.
    pub fn history(&self, from_ms: i64, to_ms: i64, limit: usize) -> Vec<Ranking> {
        let to_key = history_key(to_ms.saturating_add(1));
        match self.store.docs_range(HISTORY, &history_key(from_ms), &to_key) {
            Ok(docs) => docs
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_slice::<StoredRanking>(&v).ok())
                .map(|mut r| {
                    r.ranking.ranks.truncate(limit);
                    r.ranking
                })
                .collect(),
            Err(e) => {
                tracing::warn!("ranking history from the store: {e}; from memory instead");
                lock(&self.history)
                    .iter()
                    .filter(|r| r.timestamp.is_some_and(|t| t >= from_ms && t <= to_ms))
                    .map(|r| {
                        let mut r = r.clone();
                        r.ranks.truncate(limit);
                        r
                    })
                    .collect()
            }
        }
    }

    /// The incidents of `from_ms..=to_ms`: see [`incidents`].
    pub fn incidents(&self, from_ms: i64, to_ms: i64, min_excess: f64) -> Vec<Incident> {
        let gap = 3 * self.cfg.window.stride_ms.max(10_000);
        incidents(&self.history(from_ms, to_ms, 1), min_excess, gap)
    }

    /// Writes a ranking (its first [`STORED_ENTRIES`] entries and every
    /// node's PageRank) to the store.
    fn persist(&self, d: &Diagnosis) {
        let stored = StoredRanking {
            ranking: d.ranking(STORED_ENTRIES),
            pagerank: d.graph.nodes.iter().cloned().zip(d.pagerank.iter().copied()).collect(),
        };
        let put = serde_json::to_vec(&stored).map_err(|e| e.to_string()).and_then(|v| {
            self.store.put_doc(HISTORY, &history_key(d.timestamp), &v).map_err(|e| e.to_string())
        });
        if let Err(e) = put {
            tracing::warn!("ranking at {} not kept in the store: {e}", d.timestamp);
        }
    }

    /// Forgets stored rankings older than the retention; how many.
    fn prune(&self, now: i64) -> usize {
        let hours = i64::from(self.cfg.history_retention_hours);
        if hours == 0 {
            return 0;
        }
        self.store
            .delete_docs_before(HISTORY, &history_key(now - hours * 3_600_000))
            .unwrap_or_else(|e| {
                tracing::warn!("ranking history retention: {e}");
                0
            })
    }

    /// The window geometry rankings use with `active`: its model's, or the
    /// configured one.
    fn window(
        &self,
        active: Option<&Arc<Mutex<crate::models::Active>>>,
    ) -> distdiag_dataset::WindowConfig {
        active.map_or(self.cfg.window, |a| lock(a).scorer.window)
    }

    /// The newest sample every node seen within two windows has in the
    /// local store, by the node it is diagnosed as (merged ones together):
    /// where the next ranking's window would end. None without such a node,
    /// or when the windows come from a remote API (which is not asked
    /// between strides).
    pub fn newest_common(&self, now: i64) -> Option<i64> {
        if self.remote.get().is_some() {
            return None;
        }
        let recent = now - 2 * self.window(self.models.active().as_ref()).window_ms.max(10_000);
        let mut targets: BTreeMap<String, i64> = BTreeMap::new();
        for rec in self.store.nodes() {
            let Some(last) = self.store.latest(&rec.node).and_then(|l| l.rows.first().map(|r| r.0))
            else {
                continue;
            };
            if last >= recent {
                let t = self.merge.get(&rec.node).cloned().unwrap_or(rec.node);
                let e = targets.entry(t).or_insert(last);
                *e = (*e).max(last);
            }
        }
        targets.into_values().min()
    }

    /// Whether the history keeps `d`: a stride after the last one kept, or
    /// when its top entry says something else (another pair, or crossing
    /// the incident or alert line).
    fn keep(&self, d: &Diagnosis) -> bool {
        let top = d.ranks.first().map(|e| Kept {
            node: e.node.clone(),
            kind: e.kind.clone(),
            named: e.excess >= DEFAULT_INCIDENT_EXCESS,
            alerting: e.probability >= self.cfg.alert_threshold,
        });
        let mut kept = lock(&self.kept);
        let due = match &*kept {
            None => true,
            Some((at, was)) => {
                d.timestamp - at >= self.cfg.window.stride_ms
                    || d.timestamp < *at
                    || top.as_ref() != Some(was)
            }
        };
        if due {
            *kept = top.map(|t| (d.timestamp, t));
        }
        due
    }

    /// Ranks now. None when no node has a full window of recent data.
    pub fn diagnose_once(&self, now: i64) -> Result<Option<Diagnosis>, String> {
        let active = self.models.active();
        let window = self.window(active.as_ref());
        // Nodes seen within two windows.
        let recent = now - 2 * window.window_ms.max(10_000);
        let frozen = match (&active, *lock(&self.suspect_since)) {
            (None, Some(t)) if now - t <= MAX_FREEZE_MS => Some(t),
            _ => None,
        };
        let from = now - window.baseline_ms - window.window_ms;
        let from = frozen.map_or(from, |t| from.min(t - window.baseline_ms));
        // The store's nodes by the node they are diagnosed as (merged ones together).
        let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut target = |node: String| {
            let t = self.merge.get(&node).cloned().unwrap_or_else(|| node.clone());
            targets.entry(t).or_default().push(node);
        };
        let mut local = std::collections::HashSet::new();
        for rec in self.store.nodes() {
            let last = self
                .store
                .latest(&rec.node)
                .and_then(|l| l.rows.first().map(|r| r.0))
                .unwrap_or(i64::MIN);
            if last >= recent {
                local.insert(rec.node.clone());
                target(rec.node);
            }
        }
        // With a remote API, also the nodes only it has recent data of (a
        // standby's own store may know them from before), by their catalog
        // info series (sent every 30 s; alive if they have rows since `recent`).
        let remote_catalogs = match self.remote.get() {
            Some(r) => Self::runtime()?
                .block_on(r.catalogs(now, (now - from).max(REMOTE_CATALOG_LOOKBACK_MS)))?
                .into_iter()
                .filter(|(node, _)| !local.contains(node))
                .collect(),
            None => BTreeMap::new(),
        };
        for node in remote_catalogs.keys() {
            target(node.clone());
        }
        // One target at a time from the store into the frame, so that only
        // one node's points are held besides the frame (with every node's
        // points held first, 1,000 nodes × 200 metrics took the coordinator
        // to 3 GB).
        let mut frame =
            Frame { start_ms: from, step_ms: window.step_ms, len: 0, nodes: Vec::new() };
        let mut newest = i64::MAX;
        for (target, members) in targets {
            let mut one = Dataset::new(window.step_ms, window);
            let node = one.series.entry(target).or_default();
            for member in members {
                let remote_catalog = remote_catalogs.get(&member);
                let (catalog, rows) =
                    self.rows(&member, remote_catalog, from - window.step_ms, now)?;
                if remote_catalog.is_some() && rows.last().is_none_or(|r| r.0 < recent) {
                    continue;
                }
                for (m, pts) in distdiag_dataset::grid_series(&catalog, &rows, window.step_ms) {
                    node.entry(m).or_default().extend(pts);
                }
            }
            if node.is_empty() {
                // Only remote members, none with recent rows.
                continue;
            }
            if let Some(last) = node.values().filter_map(|p| p.last().map(|x| x.0)).max() {
                newest = newest.min(last);
            }
            let part = one.frame(from, now);
            (frame.start_ms, frame.len) = (part.start_ms, part.len);
            frame.nodes.extend(part.nodes);
        }
        if frame.nodes.is_empty() || newest == i64::MAX {
            return Ok(None);
        }
        // The window ends at the newest sample every node has: the frame
        // ends there too.
        frame.truncate(newest);
        let end = frame.index_at(newest + 1);
        if end < window.samples() {
            return Ok(None);
        }
        let topology: Vec<(String, String, f64)> =
            self.cfg.topology.iter().map(|t| (t.a.clone(), t.b.clone(), t.weight)).collect();
        let (ranking, model_id, note) = match &active {
            Some(a) => {
                let a = lock(a);
                let r = rank(&frame, end, &window, &Ranker::Model(&a.scorer), &topology, 5)?;
                (r, Some(a.id.clone()), format!("model {}", a.id))
            }
            None => {
                let types = stat::known_types();
                let reference_end = frozen.map(|t| frame.index_at(t));
                let ranker = Ranker::Statistical { types: &types, reference_end };
                let r = rank(&frame, end, &window, &ranker, &topology, 5)?;
                let top = r.entries.first().map_or(0.0, |e| e.excess);
                let window_start = r.at_ms - window.window_ms;
                // A reference is frozen only when it is whole: on the
                // demo, a node that stood out while its database warmed up
                // froze the seconds before anything was sampled, and the
                // database's series, which began later, were never
                // scored again (all NaN in the reference) for 30 minutes.
                let whole =
                    frozen.is_some() || history_covers(&frame, window_start - window.baseline_ms);
                let mut since = lock(&self.suspect_since);
                *since = match frozen {
                    Some(t) if top >= CLEAR => Some(t),
                    None if top >= SUSPECT && whole => Some(window_start),
                    _ => None,
                };
                let note = match frozen {
                    Some(t) => format!("no active model: statistical scorer (median/MAD deviation from each node's past, against peers; reference frozen before {}, when a node first stood out)", humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(t.max(0) as u64))),
                    None if !whole => "no active model: statistical scorer (median/MAD deviation from each node's recent past, against peers; less history than the reference period, so nothing is frozen yet)".to_string(),
                    None => "no active model: statistical scorer (median/MAD deviation from each node's recent past, against peers)".to_string(),
                };
                (r, None, note)
            }
        };
        Ok(Some(Diagnosis {
            timestamp: ranking.at_ms,
            method: ranking.method,
            model_id,
            note,
            window_ms: window.window_ms,
            ranks: ranking.entries,
            graph: ranking.graph,
            pagerank: ranking.pagerank,
        }))
    }

    /// Makes `d` the latest ranking, in the memory history too when
    /// `keep`, and sends it to the subscribers.
    fn publish(&self, d: Diagnosis, keep: bool) -> Arc<Diagnosis> {
        let d = Arc::new(d);
        {
            *lock(&self.latest) = Some(d.clone());
            if keep {
                let mut h = lock(&self.history);
                h.push_back(d.ranking(STORED_ENTRIES));
                while h.len() > self.cfg.history_rankings.max(1) {
                    h.pop_front();
                }
            }
        }
        let _ = self.tx.send(d.clone());
        d
    }

    /// Alerts to send for a ranking: newly crossing entries, resends every
    /// 5 minutes, and resolutions (with `endsAt`).
    fn alerts(&self, d: &Diagnosis) -> Vec<serde_json::Value> {
        let now = d.timestamp;
        let iso = |ms: i64| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
            )
            .to_string()
        };
        let over: Vec<&RankEntry> =
            d.ranks.iter().take(5).filter(|e| e.probability >= self.cfg.alert_threshold).collect();
        let mut firing = lock(&self.firing);
        let mut out = Vec::new();
        for e in &over {
            let key = (e.node.clone(), e.kind.clone());
            let (since, sent) =
                firing.get(&key).copied().map_or((now, None), |(a, b)| (a, Some(b)));
            if sent.is_none_or(|s| now - s >= 300_000) {
                out.push(json!({
                    "labels": { "alertname": "DistdiagRootCause", "node": e.node, "type": e.kind, "severity": "critical", "method": d.method },
                    "annotations": {
                        "summary": format!("{} on {} (score {:.3}, p {:.2})", e.kind, e.node, e.score, e.probability),
                        "top_metrics": e.top_metrics.iter().map(|m| m.0.clone()).collect::<Vec<_>>().join(", "),
                        "rank": (d.ranks.iter().position(|x| x.node == e.node && x.kind == e.kind).unwrap_or(0) + 1).to_string(),
                    },
                    "startsAt": iso(since),
                    "generatorURL": "/api/anomaly/ranks",
                }));
                firing.insert(key, (since, now));
            }
        }
        let ended: Vec<(String, String)> = firing
            .keys()
            .filter(|k| !over.iter().any(|e| e.node == k.0 && e.kind == k.1))
            .cloned()
            .collect();
        for k in ended {
            if let Some((since, _)) = firing.remove(&k) {
                out.push(json!({
                    "labels": { "alertname": "DistdiagRootCause", "node": k.0, "type": k.1, "severity": "critical", "method": d.method },
                    "annotations": { "summary": format!("{} on {} resolved", k.1, k.0) },
                    "startsAt": iso(since),
                    "endsAt": iso(now),
                    "generatorURL": "/api/anomaly/ranks",
                }));
            }
        }
        out
    }

    /// Runs until shutdown: a ranking when every node has a sample newer
    /// than the last ranking's and `rank_interval_ms` has passed since it,
    /// or a stride has.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let stride = Duration::from_millis(self.cfg.window.stride_ms.max(100) as u64);
        let every = Duration::from_millis(self.cfg.rank_interval_ms.max(100) as u64).min(stride);
        // Looked for new samples four times an interval (a store lookup per
        // node), so that one is ranked within a quarter interval of arriving.
        let poll = (every / 4).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        // When the last ranking ran, the newest common sample then, and how
        // long it took.
        let mut last: Option<(std::time::Instant, Option<i64>, Duration)> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let me = self.clone();
            let prune = n.is_multiple_of(PRUNE_EVERY);
            let seen = last;
            let result = tokio::task::spawn_blocking(move || {
                let now = now_ms();
                let newest = me.newest_common(now);
                let due = match seen {
                    None => true,
                    Some((at, before, took)) => {
                        let fresh = newest.zip(before).is_some_and(|(a, b)| a > b)
                            || (newest.is_some() && before.is_none());
                        // Between strides, at most a quarter of the time
                        // ranking: a large cluster falls back to the stride.
                        let gap = every.max(4 * took);
                        at.elapsed() >= stride || (fresh && at.elapsed() + poll >= gap)
                    }
                };
                if !due {
                    return None;
                }
                if prune {
                    me.prune(now);
                }
                let began = std::time::Instant::now();
                let d = me.diagnose_once(now).map(|d| {
                    d.map(|d| {
                        let keep = me.keep(&d);
                        if keep {
                            me.persist(&d);
                        }
                        (d, keep)
                    })
                });
                Some((began, newest, began.elapsed(), d))
            })
            .await;
            let d = match result {
                Ok(None) => continue,
                Ok(Some((began, newest, took, d))) => {
                    n += 1;
                    // A failure is retried on the next new sample or stride.
                    last = Some((began, newest, took));
                    match d {
                        Ok(Some((d, keep))) => self.publish(d, keep),
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!("diagnosis failed: {e}");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("diagnosis task: {e}");
                    continue;
                }
            };
            if let Some(url) = &self.cfg.alert_webhook {
                let alerts = self.alerts(&d);
                if !alerts.is_empty() {
                    if let Err(e) = self
                        .http
                        .post(url)
                        .json(&alerts)
                        .send()
                        .await
                        .and_then(|r| r.error_for_status())
                    {
                        tracing::warn!("alert webhook {url}: {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_fire_once_then_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SeriesStore> = Arc::new(
            distdiag_store::SledStore::open(dir.path(), distdiag_store::StoreConfig::default())
                .unwrap(),
        );
        let models = Models::new(store.clone());
        let (_stop_tx, stop) = watch::channel(false);
        let online = Online::new(
            store,
            models,
            DiagnosisConfig { alert_threshold: 0.5, ..DiagnosisConfig::default() },
            BTreeMap::new(),
            stop,
        );
        let entry = |p: f64| RankEntry {
            node: "n1".into(),
            kind: "cpu_stress".into(),
            score: p / 3.0,
            probability: p,
            excess: p,
            pagerank: 1.0 / 3.0,
            top_metrics: vec![("cg.cpu_usage".into(), 2.0)],
        };
        let d = |ts: i64, p: f64| Diagnosis {
            timestamp: ts,
            method: Method::Model,
            model_id: None,
            note: String::new(),
            window_ms: 10_000,
            ranks: vec![entry(p)],
            graph: NodeGraph { nodes: vec![], edges: vec![] },
            pagerank: vec![],
        };
        let a = online.alerts(&d(1_000, 0.9));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0]["labels"]["node"], "n1");
        assert_eq!(a[0]["annotations"]["top_metrics"], "cg.cpu_usage");
        assert!(a[0].get("endsAt").is_none());
        // Still firing 5 s later: not sent again; 5 minutes later: resent.
        assert!(online.alerts(&d(6_000, 0.9)).is_empty());
        assert_eq!(online.alerts(&d(301_000, 0.9)).len(), 1);
        // Below the threshold: resolved once.
        let r = online.alerts(&d(306_000, 0.1));
        assert_eq!(r.len(), 1);
        assert!(r[0]["endsAt"].is_string());
        assert!(online.alerts(&d(311_000, 0.1)).is_empty());
    }

    /// Three nodes at 1 Hz from 1,000 s, `secs` samples of `cg.cpu_usage`
    /// each; n2's is 80 higher in the seconds `hot` says.
    fn cpu_store(
        dir: &std::path::Path,
        secs: usize,
        hot: fn(usize) -> bool,
    ) -> Arc<dyn SeriesStore> {
        use distdiag_common::proto::{Capabilities, HostFacts};
        use distdiag_common::{MetricDesc, Row};
        use distdiag_store::{SledStore, StoreConfig};
        let store = SledStore::open(dir, StoreConfig::default()).unwrap();
        for (k, node) in ["n1", "n2", "n3"].iter().enumerate() {
            let catalog = vec![MetricDesc::gauge("cg.cpu_usage", "cores")];
            store
                .upsert_node(node, HostFacts::default(), Capabilities::default(), catalog, 1000, 0)
                .unwrap();
            let rows: Vec<Row> = (0..secs)
                .map(|i| {
                    let base = 10.0 + ((i * (k + 2)) % 7) as f64;
                    let extra = if *node == "n2" && hot(i) { 80.0 } else { 0.0 };
                    Row { ts_ms: 1_000_000 + i as i64 * 1000, values: vec![base + extra] }
                })
                .collect();
            store.append(node, &rows).unwrap();
        }
        Arc::new(store)
    }

    /// n2's cgroup CPU jumps at 300 s and stays.
    fn long_fault_store(dir: &std::path::Path) -> Arc<dyn SeriesStore> {
        cpu_store(dir, 700, |i| i >= 300)
    }

    #[test]
    fn without_a_model_no_reference_is_frozen_before_there_is_history() {
        // Sampled from t0; n2 stands out from 20 to 60 s (a warm-up, while
        // there is less history than a reference period) and from 200 s.
        let t0 = 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let store = cpu_store(dir.path(), 300, |i| (20..60).contains(&i) || i >= 200);
        let (_tx, stop) = watch::channel(false);
        let cfg = DiagnosisConfig::default();
        let whole_from = t0 + cfg.window.baseline_ms + cfg.window.window_ms;
        let online = Online::new(store.clone(), Models::new(store), cfg, BTreeMap::new(), stop);
        let (mut early, mut frozen_at) = (None, None);
        for now in (t0 + 15_000..t0 + 260_000).step_by(5000) {
            let d = online.diagnose_once(now).unwrap().unwrap();
            let top = &d.ranks[0];
            if now < t0 + 60_000 && top.node == "n2" && top.excess >= SUSPECT {
                early.get_or_insert(now - t0);
                assert!(d.note.contains("less history"), "{}", d.note);
            }
            if d.note.contains("reference frozen") {
                assert!(now > whole_from, "frozen at +{} ms: {}", now - t0, d.note);
                frozen_at.get_or_insert(now - t0);
            }
        }
        // Found during the warm-up against what history there was, and
        // the later fault froze a whole reference.
        assert!(early.is_some(), "n2 was not found during the warm-up");
        assert!(frozen_at.is_some_and(|t| t > 200_000), "frozen at {frozen_at:?}");
    }

    #[test]
    fn without_a_model_a_fault_longer_than_the_baseline_stays_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = long_fault_store(dir.path());
        let (_tx, stop) = watch::channel(false);
        let cfg = DiagnosisConfig::default();
        let baseline = cfg.window.baseline_ms;
        let online = Online::new(store.clone(), Models::new(store), cfg, BTreeMap::new(), stop);
        let top = |now: i64| {
            let d = online.diagnose_once(now).unwrap().unwrap();
            let e = d.ranks[0].clone();
            (e.node, e.kind, e.excess, d.note)
        };
        // Ranked every 5 s from before the fault until it has lasted twice
        // the baseline: n2 is found early and stays on top, against a
        // reference frozen before the fault began.
        let start = 1_000_000 + 300_000;
        let mut found = None;
        for now in (start - 20_000..start + 2 * baseline).step_by(5000) {
            let (node, kind, excess, note) = top(now);
            if found.is_none() && node == "n2" && excess >= SUSPECT {
                found = Some(now - start);
            }
            if let Some(after) = found {
                assert_eq!((node.as_str(), kind.as_str()), ("n2", "cpu_stress"), "at +{after} ms");
                assert!(excess >= CLEAR, "{excess} at {now}");
                if now - start > baseline {
                    assert!(note.contains("frozen"), "{note}");
                }
            }
        }
        assert!(found.is_some_and(|ms| ms <= 10_000), "found {found:?} ms after the start");
        // The same moment ranked by a fresh coordinator (no frozen
        // reference, the fault older than the baseline) finds nothing: the
        // freeze is what keeps it.
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = long_fault_store(dir2.path());
        let (_tx2, stop2) = watch::channel(false);
        let fresh = Online::new(
            store2.clone(),
            Models::new(store2),
            DiagnosisConfig::default(),
            BTreeMap::new(),
            stop2,
        );
        let d = fresh.diagnose_once(start + 2 * baseline - 5000).unwrap().unwrap();
        assert!(d.ranks[0].excess < SUSPECT, "{:?}", d.ranks[0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rankings_follow_new_samples_and_the_history_keeps_a_stride() {
        use distdiag_common::proto::{Capabilities, HostFacts};
        use distdiag_common::{MetricDesc, Row};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SeriesStore> = Arc::new(
            distdiag_store::SledStore::open(dir.path(), distdiag_store::StoreConfig::default())
                .unwrap(),
        );
        let nodes = ["n1", "n2", "n3"];
        let t0 = now_ms() - 136_000;
        let row = |k: usize, i: i64| Row {
            ts_ms: t0 + i * 1000,
            values: vec![10.0 + ((i as usize * (k + 2)) % 7) as f64],
        };
        for (k, node) in nodes.iter().enumerate() {
            let catalog = vec![MetricDesc::gauge("cg.cpu_usage", "cores")];
            store
                .upsert_node(node, HostFacts::default(), Capabilities::default(), catalog, 1000, 0)
                .unwrap();
            store.append(node, &(0..130).map(|i| row(k, i)).collect::<Vec<_>>()).unwrap();
        }
        // A stride far longer than the test: only new samples rank.
        let mut cfg = DiagnosisConfig { rank_interval_ms: 100, ..DiagnosisConfig::default() };
        cfg.window.stride_ms = 600_000;
        let (stop_tx, stop) = watch::channel(false);
        let online =
            Online::new(store.clone(), Models::new(store.clone()), cfg, BTreeMap::new(), stop);
        let (mut rx, _) = online.subscribe();
        let task = tokio::spawn(online.clone().run(stop_tx.subscribe()));
        let next = |rx: &mut broadcast::Receiver<Arc<Diagnosis>>| {
            let mut rx = rx.resubscribe();
            async move {
                tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .ok()
                    .map(|d| d.expect("a ranking").timestamp)
            }
        };
        // The first ranking comes at once.
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        let mut ends = vec![first.timestamp];
        // Nothing new: no new ranking.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(rx.try_recv().is_err(), "ranked again without a new sample");
        // Every node's new sample brings a ranking whose window ends later;
        // one node's alone does not.
        for i in 130..136 {
            let pending = next(&mut rx);
            store.append("n1", &[row(0, i)]).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(rx.try_recv().is_err(), "ranked before every node had sample {i}");
            for (k, node) in nodes.iter().enumerate().skip(1) {
                store.append(node, &[row(k, i)]).unwrap();
            }
            let at = pending.await.expect("a ranking after a new sample");
            assert!(at > *ends.last().unwrap(), "{at} after {ends:?}");
            ends.push(at);
            while rx.try_recv().is_ok() {}
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        // The history kept the first and what changed its top, not each.
        let kept = online.history(0, i64::MAX, 1);
        assert!(!kept.is_empty() && kept.len() < ends.len(), "{} of {}", kept.len(), ends.len());
    }

    #[test]
    fn rankings_outlive_a_restart_and_group_into_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let start = 1_000_000 + 300_000;
        let times: Vec<i64> = (start - 30_000..start + 60_000).step_by(5000).collect();
        {
            let store = long_fault_store(dir.path());
            let (_tx, stop) = watch::channel(false);
            let online = Online::new(
                store.clone(),
                Models::new(store.clone()),
                DiagnosisConfig::default(),
                BTreeMap::new(),
                stop,
            );
            for &now in &times {
                let d = online.diagnose_once(now).unwrap().unwrap();
                online.persist(&d);
            }
            store.flush().unwrap();
        }
        // A new coordinator on the same store.
        let store: Arc<dyn SeriesStore> = Arc::new(
            distdiag_store::SledStore::open(dir.path(), distdiag_store::StoreConfig::default())
                .unwrap(),
        );
        let (_tx, stop) = watch::channel(false);
        let online = Online::new(
            store.clone(),
            Models::new(store),
            DiagnosisConfig::default(),
            BTreeMap::new(),
            stop,
        );
        assert!(online.latest().is_none(), "nothing ranked since the restart");
        let h = online.history(0, i64::MAX, 3);
        assert_eq!(h.len(), times.len(), "every ranking is back");
        assert!(h.iter().all(|r| r.ranks.len() == 3));
        assert!(h.windows(2).all(|w| w[0].timestamp < w[1].timestamp), "oldest first");
        let (t2, t4) = (h[2].timestamp.unwrap(), h[4].timestamp.unwrap());
        assert_eq!(online.history(t2, t4, 1).len(), 3, "from and to are inclusive");
        // One incident: n2's CPU from shortly after the fault began.
        let inc = online.incidents(0, i64::MAX, 0.5);
        assert_eq!(inc.len(), 1, "{inc:?}");
        let i = &inc[0];
        assert_eq!((i.node.as_str(), i.kind.as_str()), ("n2", "cpu_stress"));
        assert!(i.start_ms > start && i.start_ms <= start + 10_000, "{i:?}");
        assert_eq!(Some(i.end_ms), h.last().unwrap().timestamp);
        assert_eq!(i.top_metrics[0].0, "cg.cpu_usage");
        // Retention drops what is older than its hours.
        assert_eq!(online.prune(start + 24 * 3_600_000), 0, "168 h by default");
        assert_eq!(online.prune(start + 169 * 3_600_000), times.len());
        assert!(online.history(0, i64::MAX, 1).is_empty());
    }

    #[test]
    fn incidents_split_on_gaps_other_pairs_and_quiet_rankings() {
        let r = |at: i64, node: &str, excess: f64| Ranking {
            timestamp: Some(at),
            method: Some(Method::Model),
            model_id: Some("m1".into()),
            note: String::new(),
            window_ms: Some(10_000),
            ranks: vec![RankEntry {
                node: node.into(),
                kind: "disk_stress".into(),
                score: excess,
                probability: excess,
                excess,
                pagerank: 0.5,
                top_metrics: vec![(format!("m{at}"), excess)],
            }],
        };
        let h = [
            r(0, "n1", 0.9),
            r(5_000, "n1", 0.95),
            r(10_000, "n1", 0.2), // quiet: ends it
            r(15_000, "n1", 0.8),
            r(20_000, "n2", 0.8), // another node
            r(25_000, "n2", 0.85),
            r(90_000, "n2", 0.9), // a gap longer than 30 s
        ];
        let inc = incidents(&h, 0.5, 30_000);
        let spans: Vec<(&str, i64, i64, usize)> =
            inc.iter().map(|i| (i.node.as_str(), i.start_ms, i.end_ms, i.rankings)).collect();
        assert_eq!(
            spans,
            [
                ("n1", 0, 5_000, 2),
                ("n1", 15_000, 15_000, 1),
                ("n2", 20_000, 25_000, 2),
                ("n2", 90_000, 90_000, 1)
            ]
        );
        assert_eq!(inc[0].max_excess, 0.95);
        assert_eq!(inc[0].top_metrics[0].0, "m5000", "the metrics of its strongest ranking");
        assert_eq!(inc[0].model_id.as_deref(), Some("m1"));
        assert!(incidents(&h, 0.99, 30_000).is_empty());
    }
}
