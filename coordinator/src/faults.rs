//! Agent faults as the coordinator sees them: sends `ApplyFault` /
//! `RevertFault` to a connected agent, waits for its `FaultStatus`, and keeps
//! every fault as a stored [`FaultRecord`] — the ground-truth labels that
//! training and evaluation use. Status changes the agent reports on its own
//! (deadline, dead-man switch, revert at start) update the record too.
//! With the Chaos Mesh injector configured, faults on nodes that run a
//! discovered database pod go to Chaos Mesh instead ([`crate::chaos`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use distdiag_common::fault::{FaultSpec, FaultState};
use distdiag_common::proto::CoordMsg;
use tokio::sync::oneshot;

use crate::chaos::ChaosMesh;
use crate::ingest::{now_ms, Registry};
use distdiag_store::{FaultPhase, FaultRecord, RecordSpec, SeriesStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FaultsError {
    #[error("node {0:?} is not connected")]
    NotConnected(String),
    #[error("no active fault {0:?}")]
    Unknown(String),
    #[error("the agent on {node} refused: {detail}")]
    Refused { node: String, detail: String },
    #[error("the agent on {node} failed: {detail}")]
    Failed { node: String, detail: String },
    #[error("the agent on {0} did not answer in time")]
    Timeout(String),
    #[error("Chaos Mesh: {0}")]
    Chaos(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Waiter = oneshot::Sender<(FaultState, String)>;

pub struct Faults {
    store: Arc<dyn SeriesStore>,
    registry: Registry,
    live: Mutex<BTreeMap<String, FaultRecord>>,
    waiters: Mutex<HashMap<String, Waiter>>,
    seq: AtomicU64,
    answer_timeout: Duration,
    chaos: Option<Arc<ChaosMesh>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Faults {
    /// Picks up the agent faults a previous run left live (their agents still
    /// hold them). Database faults are [`crate::dbfault`]'s.
    pub fn new(
        store: Arc<dyn SeriesStore>,
        registry: Registry,
        answer_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let live = store
            .faults(i64::MIN, i64::MAX)?
            .into_iter()
            .filter(|r| r.state.is_live() && matches!(r.spec, RecordSpec::Agent(_)))
            .map(|r| (r.id.clone(), r))
            .collect();
        Ok(Faults {
            store,
            registry,
            live: Mutex::new(live),
            waiters: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            answer_timeout,
            chaos: None,
        })
    }

    /// Sends the faults Chaos Mesh can apply to it.
    pub fn with_chaos(mut self, chaos: Arc<ChaosMesh>) -> Self {
        self.chaos = Some(chaos);
        self
    }

    /// Whether a fault on `node` would go to Chaos Mesh (then its agent
    /// need not be connected).
    pub fn via_chaos(&self, node: &str, spec: &FaultSpec) -> bool {
        self.chaos
            .as_ref()
            .and_then(|c| c.object("probe", node, spec, 1000))
            .is_some_and(|r| r.is_ok())
    }

    fn new_id(&self, now: i64) -> String {
        format!("f{now}-{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    fn save(&self, rec: &FaultRecord) -> Result<(), FaultsError> {
        self.store.save_fault(rec)?;
        Ok(())
    }

    async fn ask(
        &self,
        node: &str,
        id: &str,
        msg: CoordMsg,
    ) -> Result<(FaultState, String), FaultsError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(id.to_owned(), tx);
        if !self.registry.send(node, msg).await {
            lock(&self.waiters).remove(id);
            return Err(FaultsError::NotConnected(node.to_owned()));
        }
        match tokio::time::timeout(self.answer_timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&self.waiters).remove(id);
                Err(FaultsError::Timeout(node.to_owned()))
            }
        }
    }

    /// Applies a fault on a node until `duration_ms` from now.
    pub async fn apply(
        &self,
        node: &str,
        spec: FaultSpec,
        duration_ms: u64,
    ) -> Result<FaultRecord, FaultsError> {
        let now = now_ms();
        let id = self.new_id(now);
        let deadline_ms = now.saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX));
        if let Some(chaos) = &self.chaos {
            match chaos.object(&id, node, &spec, duration_ms) {
                Some(Ok((res, object))) => {
                    return self
                        .apply_chaos(chaos, id, node, spec, now, deadline_ms, res, object)
                        .await
                }
                Some(Err(why)) => {
                    tracing::info!(%node, kind = spec.kind(), %why, "left to the agent, not Chaos Mesh")
                }
                None => {}
            }
        }
        if self.registry.get(node).is_none() {
            return Err(FaultsError::NotConnected(node.to_owned()));
        }
        let mut rec = FaultRecord {
            id: id.clone(),
            node: node.to_owned(),
            kind: spec.kind().to_owned(),
            spec: RecordSpec::Agent(spec.clone()),
            requested_ms: now,
            applied_ms: None,
            deadline_ms,
            ended_ms: None,
            state: FaultPhase::Pending,
            detail: String::new(),
            chaos: None,
        };
        // Recorded before it is sent: a label exists for anything that may run.
        self.save(&rec)?;
        lock(&self.live).insert(id.clone(), rec.clone());
        let answer =
            self.ask(node, &id, CoordMsg::ApplyFault { id: id.clone(), spec, deadline_ms }).await;
        let (state, detail) = match answer {
            Ok(a) => a,
            Err(e) => {
                // Unknown outcome: ask the agent to revert, record the failure.
                let _ = self.registry.send(node, CoordMsg::RevertFault { id: id.clone() }).await;
                self.finish(&id, FaultPhase::Failed, e.to_string());
                return Err(e);
            }
        };
        match state {
            FaultState::Applied => {
                rec.state = FaultPhase::Applied;
                rec.applied_ms = Some(now_ms());
                rec.detail = detail;
                lock(&self.live).insert(id, rec.clone());
                self.save(&rec)?;
                Ok(rec)
            }
            FaultState::Refused => {
                self.finish(&id, FaultPhase::Refused, detail.clone());
                Err(FaultsError::Refused { node: node.to_owned(), detail })
            }
            other => {
                self.finish(&id, other.into(), detail.clone());
                Err(FaultsError::Failed { node: node.to_owned(), detail })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_chaos(
        &self,
        chaos: &ChaosMesh,
        id: String,
        node: &str,
        spec: FaultSpec,
        now: i64,
        deadline_ms: i64,
        res: distdiag_api::faults::ChaosResource,
        object: serde_json::Value,
    ) -> Result<FaultRecord, FaultsError> {
        let mut rec = FaultRecord {
            id: id.clone(),
            node: node.to_owned(),
            kind: spec.kind().to_owned(),
            spec: RecordSpec::Agent(spec),
            requested_ms: now,
            applied_ms: None,
            deadline_ms,
            ended_ms: None,
            state: FaultPhase::Pending,
            detail: String::new(),
            chaos: Some(res.clone()),
        };
        self.save(&rec)?;
        lock(&self.live).insert(id.clone(), rec.clone());
        if let Err(e) = chaos.create(&res, object).await {
            // Unknown outcome (a timeout may still have created it): delete.
            let _ = chaos.delete(&res).await;
            self.finish(&id, FaultPhase::Failed, format!("Chaos Mesh: {e}"));
            return Err(FaultsError::Chaos(e.to_string()));
        }
        rec.state = FaultPhase::Applied;
        rec.applied_ms = Some(now_ms());
        rec.detail = format!("Chaos Mesh {} {}/{}", res.kind, res.namespace, res.name);
        lock(&self.live).insert(id, rec.clone());
        self.save(&rec)?;
        Ok(rec)
    }

    /// Live Chaos Mesh faults past their deadline: their resources are
    /// deleted and the records closed as expired (a failed deletion is
    /// retried at the next call).
    pub async fn expire_chaos(&self, now: i64) {
        let Some(chaos) = &self.chaos else { return };
        let due: Vec<(String, distdiag_api::faults::ChaosResource)> = lock(&self.live)
            .values()
            .filter(|r| r.deadline_ms <= now)
            .filter_map(|r| r.chaos.clone().map(|c| (r.id.clone(), c)))
            .collect();
        for (id, res) in due {
            match chaos.delete(&res).await {
                Ok(()) => {
                    self.finish(
                        &id,
                        FaultPhase::Expired,
                        format!("deadline: deleted {} {}/{}", res.kind, res.namespace, res.name),
                    );
                }
                Err(error) => {
                    tracing::warn!(fault = %id, %error, "cannot delete an expired Chaos Mesh resource; retrying")
                }
            }
        }
    }

    /// At start: deletes every chaos resource of this coordinator whose
    /// fault is over, past its deadline or unknown (left by a crash), and
    /// closes live records whose resource is gone.
    pub async fn recover_chaos(&self) -> Result<usize, FaultsError> {
        let Some(chaos) = &self.chaos else { return Ok(0) };
        let now = now_ms();
        let found = chaos.managed().await.map_err(|e| FaultsError::Chaos(e.to_string()))?;
        let mut deleted = 0;
        for (res, id) in &found {
            let keep = id.as_ref().is_some_and(|id| {
                lock(&self.live)
                    .get(id)
                    .is_some_and(|r| r.deadline_ms > now && r.chaos.as_ref() == Some(res))
            });
            if keep {
                continue;
            }
            chaos.delete(res).await.map_err(|e| FaultsError::Chaos(e.to_string()))?;
            deleted += 1;
            tracing::info!(kind = %res.kind, name = %res.name, fault = ?id, "deleted a Chaos Mesh resource left by a previous run");
            if let Some(id) = id {
                self.finish(
                    id,
                    FaultPhase::Expired,
                    "the coordinator restarted after its deadline; resource deleted".into(),
                );
            }
        }
        let gone: Vec<String> = lock(&self.live)
            .values()
            .filter(|r| r.chaos.as_ref().is_some_and(|c| !found.iter().any(|(f, _)| f == c)))
            .map(|r| r.id.clone())
            .collect();
        for id in gone {
            self.finish(&id, FaultPhase::Expired, "its Chaos Mesh resource is gone".into());
        }
        Ok(deleted)
    }

    /// Ends a live fault's record.
    fn finish(&self, id: &str, phase: FaultPhase, detail: String) -> Option<FaultRecord> {
        let mut rec = lock(&self.live).remove(id)?;
        rec.state = phase;
        rec.ended_ms = Some(now_ms());
        rec.detail = detail;
        if let Err(error) = self.save(&rec) {
            tracing::error!(fault = %id, %error, "cannot store the end of a fault");
        }
        Some(rec)
    }

    /// Reverts one live fault.
    pub async fn revert(&self, id: &str) -> Result<FaultRecord, FaultsError> {
        let (node, via) = lock(&self.live)
            .get(id)
            .map(|r| (r.node.clone(), r.chaos.clone()))
            .ok_or_else(|| FaultsError::Unknown(id.to_owned()))?;
        if let (Some(res), Some(chaos)) = (via, &self.chaos) {
            chaos.delete(&res).await.map_err(|e| FaultsError::Chaos(e.to_string()))?;
            let detail = format!("deleted {} {}/{}", res.kind, res.namespace, res.name);
            return self
                .finish(id, FaultPhase::Reverted, detail)
                .ok_or_else(|| FaultsError::Unknown(id.to_owned()));
        }
        let (state, detail) =
            self.ask(&node, id, CoordMsg::RevertFault { id: id.to_owned() }).await?;
        let phase = match state {
            // The agent no longer had it (reverted at its start, say): it is over.
            FaultState::Refused => FaultPhase::Reverted,
            other => other.into(),
        };
        self.finish(id, phase, detail).ok_or_else(|| FaultsError::Unknown(id.to_owned()))
    }

    /// Reverts every live fault on connected nodes; returns what ended and
    /// what could not be reached.
    pub async fn revert_all(&self) -> (Vec<FaultRecord>, Vec<(String, String)>) {
        let ids: Vec<String> = lock(&self.live).keys().cloned().collect();
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for id in ids {
            match self.revert(&id).await {
                Ok(r) => done.push(r),
                Err(FaultsError::Unknown(_)) => {}
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        (done, failed)
    }

    /// Deletes the resources of every live Chaos Mesh fault (at a clean
    /// shutdown: no agent's dead-man switch ends them).
    pub async fn revert_chaos(&self) {
        let ids: Vec<String> =
            lock(&self.live).values().filter(|r| r.chaos.is_some()).map(|r| r.id.clone()).collect();
        for id in ids {
            if let Err(error) = self.revert(&id).await {
                tracing::warn!(fault = %id, %error, "Chaos Mesh fault not deleted at shutdown; the next start deletes it");
            }
        }
    }

    /// A status the agent sent: answers a waiting request, or records a
    /// change the agent made on its own.
    pub fn on_status(&self, node: &str, id: &str, state: FaultState, detail: String) {
        if let Some(w) = lock(&self.waiters).remove(id) {
            let _ = w.send((state, detail));
            return;
        }
        let known = lock(&self.live).get(id).map(|r| r.node == node).unwrap_or(false);
        if !known {
            tracing::info!(%node, fault = %id, ?state, %detail, "status of a fault this coordinator does not hold");
            return;
        }
        match state {
            FaultState::Applied => {}
            FaultState::Refused => {
                self.finish(id, FaultPhase::Reverted, detail);
            }
            other => {
                tracing::info!(%node, fault = %id, ?other, %detail, "fault ended on the agent");
                self.finish(id, other.into(), detail);
            }
        }
    }

    /// Live faults whose deadline passed long ago without a word from their
    /// agent are closed as expired (the agent enforces deadlines itself).
    pub fn sweep(&self, now: i64, slack_ms: i64) {
        let stale: Vec<String> = lock(&self.live)
            .values()
            .filter(|r| {
                r.deadline_ms + slack_ms < now && (r.chaos.is_none() || self.chaos.is_none())
            })
            .map(|r| r.id.clone())
            .collect();
        for id in stale {
            self.finish(
                &id,
                FaultPhase::Expired,
                "deadline passed; the agent did not report the revert".into(),
            );
        }
    }

    pub fn active(&self) -> Vec<FaultRecord> {
        lock(&self.live).values().cloned().collect()
    }

    pub fn history(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FaultRecord>, FaultsError> {
        Ok(self.store.faults(from_ms, to_ms)?)
    }
}
