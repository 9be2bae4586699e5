//! Online diagnosis: every stride, every recently seen node's latest
//! window is ranked — by the active model, or by the statistical scorer
//! when there is none (and the ranking says so). Rankings are kept in
//! memory for the history endpoint, pushed to subscribers (SSE), and an
//! Alertmanager-compatible webhook fires when the top entry's probability
//! reaches the threshold.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use distdiag_api::ranks::Ranking;

use crate::config::DiagnosisConfig;
use crate::models::Models;
use distdiag_dataset::Dataset;
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
    history: Mutex<VecDeque<Arc<Diagnosis>>>,
    tx: broadcast::Sender<Arc<Diagnosis>>,
    /// (node, type) → when it fired and when last sent.
    firing: Mutex<BTreeMap<(String, String), (i64, i64)>>,
    /// Without a model: when the statistical scorer began to suspect a
    /// node (the start of the window that first scored ≥ [`SUSPECT`]); the
    /// reference stays frozen before it until every score falls below
    /// [`CLEAR`] against it or [`MAX_FREEZE_MS`] passes, so a fault that
    /// lasts longer than the baseline does not become its own reference.
    suspect_since: Mutex<Option<i64>>,
    http: reqwest::Client,
    stop: watch::Receiver<bool>,
}

/// The statistical score (excess over peers) from which a node is
/// suspected, and below which the suspicion ends.
pub const SUSPECT: f64 = 0.5;
pub const CLEAR: f64 = 0.3;
/// The longest a reference stays frozen (then what is, is the new normal).
pub const MAX_FREEZE_MS: i64 = 30 * 60_000;

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
            history: Mutex::new(VecDeque::new()),
            tx,
            firing: Mutex::new(BTreeMap::new()),
            suspect_since: Mutex::new(None),
            http,
            stop,
        })
    }

    /// New rankings, and a receiver that changes at shutdown (streams end then).
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Diagnosis>>, watch::Receiver<bool>) {
        (self.tx.subscribe(), self.stop.clone())
    }

    pub fn latest(&self) -> Option<Arc<Diagnosis>> {
        lock(&self.history).back().cloned()
    }

    pub fn history(&self, from_ms: i64, to_ms: i64) -> Vec<Arc<Diagnosis>> {
        lock(&self.history)
            .iter()
            .filter(|d| d.timestamp >= from_ms && d.timestamp <= to_ms)
            .cloned()
            .collect()
    }

    /// Ranks now. None when no node has a full window of recent data.
    pub fn diagnose_once(&self, now: i64) -> Result<Option<Diagnosis>, String> {
        let active = self.models.active();
        let window = match &active {
            Some(a) => lock(a).scorer.window,
            None => self.cfg.window,
        };
        // Nodes seen within two windows.
        let recent = now - 2 * window.window_ms.max(10_000);
        let mut ds = Dataset::new(window.step_ms, window);
        let frozen = match (&active, *lock(&self.suspect_since)) {
            (None, Some(t)) if now - t <= MAX_FREEZE_MS => Some(t),
            _ => None,
        };
        let from = now - window.baseline_ms - window.window_ms;
        let from = frozen.map_or(from, |t| from.min(t - window.baseline_ms));
        for rec in self.store.nodes() {
            let last = self
                .store
                .latest(&rec.node)
                .and_then(|l| l.rows.first().map(|r| r.0))
                .unwrap_or(i64::MIN);
            if last < recent {
                continue;
            }
            let (catalog, rows) = self
                .store
                .range(&rec.node, from - window.step_ms, now)
                .map_err(|e| e.to_string())?;
            let target = self.merge.get(&rec.node).cloned().unwrap_or_else(|| rec.node.clone());
            let node = ds.series.entry(target).or_default();
            for (m, pts) in distdiag_dataset::grid_series(&catalog, &rows, window.step_ms) {
                node.entry(m).or_default().extend(pts);
            }
        }
        if ds.series.is_empty() {
            return Ok(None);
        }
        // The window ends at the newest sample every node has.
        let newest = ds
            .series
            .values()
            .filter_map(|m| m.values().filter_map(|p| p.last().map(|x| x.0)).max())
            .min()
            .unwrap_or(now);
        let frame = ds.frame(from, newest);
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
                let mut since = lock(&self.suspect_since);
                *since = match frozen {
                    Some(t) if top >= CLEAR => Some(t),
                    _ if top >= SUSPECT => Some(frozen.unwrap_or(r.at_ms - window.window_ms)),
                    _ => None,
                };
                let note = match frozen {
                    Some(t) => format!("no active model: statistical scorer (median/MAD deviation from each node's past, against peers; reference frozen before {t}, when a node first stood out)"),
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

    fn publish(&self, d: Diagnosis) -> Arc<Diagnosis> {
        let d = Arc::new(d);
        {
            let mut h = lock(&self.history);
            h.push_back(d.clone());
            while h.len() > self.cfg.history_rankings.max(1) {
                h.pop_front();
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

    /// Runs until shutdown: one ranking per stride.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let stride = Duration::from_millis(self.cfg.window.stride_ms.max(100) as u64);
        let mut tick = tokio::time::interval(stride);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let me = self.clone();
            let result = tokio::task::spawn_blocking(move || me.diagnose_once(now_ms())).await;
            let d = match result {
                Ok(Ok(Some(d))) => self.publish(d),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!("diagnosis failed: {e}");
                    continue;
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

    /// Three nodes at 1 Hz; n2's cgroup CPU jumps at 300 s and stays.
    fn long_fault_store(dir: &std::path::Path) -> Arc<dyn SeriesStore> {
        use distdiag_common::proto::{Capabilities, HostFacts};
        use distdiag_common::{MetricDesc, Row};
        use distdiag_store::{SledStore, StoreConfig};
        let store = SledStore::open(dir, StoreConfig::default()).unwrap();
        for (k, node) in ["n1", "n2", "n3"].iter().enumerate() {
            let catalog = vec![MetricDesc::gauge("cg.cpu_usage", "cores")];
            store
                .upsert_node(node, HostFacts::default(), Capabilities::default(), catalog, 1000, 0)
                .unwrap();
            let rows: Vec<Row> = (0..700)
                .map(|i| {
                    let base = 10.0 + ((i * (k + 2)) % 7) as f64;
                    let hot = if *node == "n2" && i >= 300 { 80.0 } else { 0.0 };
                    Row { ts_ms: 1_000_000 + i as i64 * 1000, values: vec![base + hot] }
                })
                .collect();
            store.append(node, &rows).unwrap();
        }
        Arc::new(store)
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
}
