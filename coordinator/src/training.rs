//! Training-data collection (seed 002): normal periods started and stopped
//! by hand, and fault cases opened by `POST /api/anomaly/start` with
//! `collect_training_data`: the normal data before the fault, the fault
//! period and the normal data after it. Cases are first-class documents
//! (collection `training` in the store); their fault times come from the
//! fault records, so a case is right even when its fault ended early.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use distdiag_api::training::{Case, NormalPeriod, Stats};

use distdiag_dataset::{CasePeriod, Dataset, DatasetError};
use distdiag_diagnose::{FaultEvent, WindowConfig};
use distdiag_store::{FaultRecord, SeriesStore, StoreError};

const COLLECTION: &str = "training";

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// A case's scenario label goes into CSV files: short, no commas or quotes.
pub fn check_scenario(s: &str) -> Result<(), String> {
    if s.contains([',', '"', '\n', '\r']) || s.len() > 100 {
        return Err("scenario: at most 100 characters, no commas or quotes".into());
    }
    Ok(())
}

pub struct Training {
    store: Arc<dyn SeriesStore>,
    lock: Mutex<()>,
    /// `POST /api/training/collect`: every fault started opens a case.
    collect_all: std::sync::atomic::AtomicBool,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Training {
    pub fn new(store: Arc<dyn SeriesStore>) -> Arc<Training> {
        Arc::new(Training {
            store,
            lock: Mutex::new(()),
            collect_all: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_collect_all(&self, on: bool) {
        self.collect_all.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn collect_all(&self) -> bool {
        self.collect_all.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn normal_periods(&self) -> Result<Vec<NormalPeriod>, StoreError> {
        Ok(self
            .store
            .docs(COLLECTION)?
            .into_iter()
            .filter(|(k, _)| k.starts_with("normal:"))
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    pub fn cases(&self) -> Result<Vec<Case>, StoreError> {
        Ok(self
            .store
            .docs(COLLECTION)?
            .into_iter()
            .filter(|(k, _)| k.starts_with("case:"))
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    pub fn start_normal(&self, now_ms: i64) -> Result<NormalPeriod, TrainingError> {
        let _g = self.guard();
        if let Some(open) = self.normal_periods()?.into_iter().find(|p| p.end_ms.is_none()) {
            return Err(TrainingError::Conflict(format!(
                "normal collection {} is already running since {}",
                open.id, open.start_ms
            )));
        }
        let p = NormalPeriod { id: format!("normal-{now_ms}"), start_ms: now_ms, end_ms: None };
        self.store.put_doc(COLLECTION, &format!("normal:{}", p.id), &encode(&p)?)?;
        Ok(p)
    }

    pub fn stop_normal(&self, now_ms: i64) -> Result<NormalPeriod, TrainingError> {
        let _g = self.guard();
        let mut open = self
            .normal_periods()?
            .into_iter()
            .find(|p| p.end_ms.is_none())
            .ok_or_else(|| TrainingError::Conflict("no normal collection is running".into()))?;
        open.end_ms = Some(now_ms.max(open.start_ms + 1));
        self.store.put_doc(COLLECTION, &format!("normal:{}", open.id), &encode(&open)?)?;
        Ok(open)
    }

    /// Opens a case for faults just started.
    pub fn open_case(
        &self,
        records: &[FaultRecord],
        scenario: &str,
        pre_ms: i64,
        post_ms: i64,
        now_ms: i64,
    ) -> Result<Case, TrainingError> {
        if records.is_empty() {
            return Err(TrainingError::Invalid("a case needs at least one fault".into()));
        }
        check_scenario(scenario).map_err(TrainingError::Invalid)?;
        let mut nodes: Vec<String> = records.iter().map(|r| r.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let mut types: Vec<String> = records.iter().map(|r| r.kind.clone()).collect();
        types.sort();
        types.dedup();
        let case = Case {
            id: format!(
                "case-{now_ms}-{}",
                &records[0].id.chars().rev().take(6).collect::<String>()
            ),
            scenario: scenario.to_owned(),
            fault_ids: records.iter().map(|r| r.id.clone()).collect(),
            nodes,
            types,
            requested_ms: records.iter().map(|r| r.requested_ms).min().unwrap_or(now_ms),
            pre_ms,
            post_ms,
            start_ms: None,
            end_ms: None,
        };
        let _g = self.guard();
        self.store.put_doc(COLLECTION, &format!("case:{}", case.id), &encode(&case)?)?;
        Ok(case)
    }

    /// A stored case by id.
    pub fn case(&self, id: &str) -> Result<Option<Case>, StoreError> {
        match self.store.get_doc(COLLECTION, &format!("case:{id}"))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Adds faults just started to an existing case (a compound case built
    /// from several requests, e.g. two fault types on one node).
    pub fn join_case(&self, id: &str, records: &[FaultRecord]) -> Result<Case, TrainingError> {
        let _g = self.guard();
        let mut case = self
            .case(id)?
            .ok_or_else(|| TrainingError::Invalid(format!("no training case {id:?}")))?;
        for r in records {
            case.fault_ids.push(r.id.clone());
            case.nodes.push(r.node.clone());
            case.types.push(r.kind.clone());
        }
        case.nodes.sort();
        case.nodes.dedup();
        case.types.sort();
        case.types.dedup();
        self.store.put_doc(COLLECTION, &format!("case:{}", case.id), &encode(&case)?)?;
        Ok(case)
    }

    /// Fault events of a case from its records, and the case with its times.
    fn resolve(&self, case: &Case, now_ms: i64) -> Result<(Case, Vec<FaultEvent>), StoreError> {
        let recs = self.store.faults(case.requested_ms - 1, now_ms)?;
        let mut events = Vec::new();
        for r in recs.iter().filter(|r| case.fault_ids.contains(&r.id)) {
            let Some(start) = r.applied_ms else { continue };
            let end = r.ended_ms.unwrap_or(now_ms).max(start + 1);
            events.push(FaultEvent {
                case: case.id.clone(),
                node: r.node.clone(),
                kind: r.kind.clone(),
                start_ms: start,
                end_ms: end,
            });
        }
        let mut c = case.clone();
        c.start_ms = events.iter().map(|e| e.start_ms).min();
        let live = recs.iter().any(|r| case.fault_ids.contains(&r.id) && r.state.is_live());
        c.end_ms = if live { None } else { events.iter().map(|e| e.end_ms).max() };
        Ok((c, events))
    }

    /// Cases with their times filled in.
    pub fn resolved_cases(&self, now_ms: i64) -> Result<Vec<(Case, Vec<FaultEvent>)>, StoreError> {
        self.cases()?.iter().map(|c| self.resolve(c, now_ms)).collect()
    }

    /// Everything collected so far as a dataset: finished normal periods and
    /// cases whose faults took effect (a live case up to now).
    pub fn dataset(
        &self,
        window: WindowConfig,
        merge: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Dataset, TrainingError> {
        let mut ds = Dataset::new(window.step_ms, window);
        for p in self.normal_periods()? {
            let end = p.end_ms.unwrap_or(now_ms);
            if end - p.start_ms >= window.window_ms {
                ds.cases.push(CasePeriod {
                    case: p.id.clone(),
                    scenario: "normal".into(),
                    start_ms: p.start_ms,
                    end_ms: end,
                    group: None,
                });
            }
        }
        for (c, events) in self.resolved_cases(now_ms)? {
            let Some(start) = c.start_ms else { continue };
            let end = c.end_ms.map_or(now_ms, |e| (e + c.post_ms).min(now_ms));
            ds.cases.push(CasePeriod {
                case: c.id.clone(),
                scenario: c.scenario.clone(),
                start_ms: start - c.pre_ms,
                end_ms: end.max(start + 1),
                group: None,
            });
            ds.labels.extend(events);
        }
        if ds.cases.is_empty() {
            return Err(TrainingError::Conflict("nothing collected yet: run a normal collection or start faults with collect_training_data".into()));
        }
        // Each case with the reference period before it.
        let spans: Vec<(i64, i64)> = ds
            .cases
            .iter()
            .map(|c| (c.start_ms - window.baseline_ms - window.window_ms, c.end_ms))
            .collect();
        for (a, b) in spans {
            add_from_store(&mut ds, self.store.as_ref(), a, b, merge)?;
        }
        Ok(ds)
    }

    /// Sample counts of the collected periods: a sample is one node's row;
    /// it is anomalous when a case's fault on that node covers it.
    pub fn stats(&self, now_ms: i64) -> Result<Stats, TrainingError> {
        let normal = self.normal_periods()?;
        let cases = self.resolved_cases(now_ms)?;
        let mut spans: Vec<(i64, i64, Vec<FaultEvent>)> =
            normal.iter().map(|p| (p.start_ms, p.end_ms.unwrap_or(now_ms), Vec::new())).collect();
        for (c, events) in &cases {
            if let Some(s) = c.start_ms {
                let end = c.end_ms.map_or(now_ms, |e| (e + c.post_ms).min(now_ms));
                spans.push((s - c.pre_ms, end, events.clone()));
            }
        }
        let (mut normal_n, mut anomaly_n) = (0u64, 0u64);
        let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
        for rec in self.store.nodes() {
            for (a, b, events) in &spans {
                let (_, rows) = self.store.range(&rec.node, *a, *b)?;
                for (ts, _) in rows {
                    let active: Vec<&FaultEvent> = events
                        .iter()
                        .filter(|e| e.node == rec.node && e.start_ms <= ts && ts < e.end_ms)
                        .collect();
                    if active.is_empty() {
                        normal_n += 1;
                    } else {
                        anomaly_n += 1;
                        for e in active {
                            *per_type.entry(e.kind.clone()).or_default() += 1;
                        }
                    }
                }
            }
        }
        let total = normal_n + anomaly_n;
        let (nr, ar) = if total == 0 {
            (0.0, 0.0)
        } else {
            (normal_n as f64 / total as f64, anomaly_n as f64 / total as f64)
        };
        Ok(Stats {
            collecting_cases: self.collect_all(),
            total_samples: total,
            normal_samples: normal_n,
            anomaly_samples: anomaly_n,
            per_type,
            normal_ratio: nr,
            anomaly_ratio: ar,
            is_balanced: total > 0 && nr.min(ar) >= 0.3,
            normal_periods: normal.len(),
            cases: cases.len(),
            collecting_normal: normal.iter().any(|p| p.end_ms.is_none()),
        })
    }
}

/// Adds every node's series of `[from, to]` from the store to a dataset;
/// database nodes (`db:<name>`) are merged into the node `merge` maps them to.
pub fn add_from_store(
    ds: &mut Dataset,
    store: &dyn SeriesStore,
    from_ms: i64,
    to_ms: i64,
    merge: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    for rec in store.nodes() {
        let (catalog, rows) = store.range(&rec.node, from_ms, to_ms)?;
        if rows.is_empty() {
            continue;
        }
        let target = merge.get(&rec.node).cloned().unwrap_or_else(|| rec.node.clone());
        let grid = distdiag_dataset::grid_series(&catalog, &rows, ds.manifest.step_ms);
        let node = ds.series.entry(target).or_default();
        for (metric, pts) in grid {
            let s = node.entry(metric).or_default();
            s.extend(pts);
            s.sort_by_key(|p| p.0);
            s.dedup_by_key(|p| p.0);
        }
    }
    Ok(())
}
