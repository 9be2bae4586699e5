//! The distdiag agent: samples the host (procfs, sysfs, cgroups, the database
//! server process) every interval and ships the rows to the coordinator over
//! QUIC, keeping whatever is not yet acknowledged (in memory, spilling to
//! disk) and replaying it after a reconnect. `main.rs` is a thin shell over
//! [`start`]; tests run agents in-process through the same function.

pub mod backoff;
pub mod buffer;
pub mod collect;
pub mod config;
pub mod facts;
pub mod fault;
pub mod uplink;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use distdiag_common::fault::{FaultSpec, FaultState};
use distdiag_common::{AgentMsg, MetricDesc, Row};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tracing::warn;

use crate::buffer::Buffer;
use crate::collect::{Collectors, Sink};
use crate::config::Config;
use crate::fault::{deadman_due, FaultEngine};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Setup(String),
}

/// Connection state, for logs, tests and `collect-once`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    pub connected: bool,
    pub sessions: u64,
    pub acked_seq: u64,
    pub last_error: Option<String>,
    /// When the coordinator was last heard from (any message).
    pub last_contact_ms: Option<i64>,
}

/// A fault command from the coordinator.
#[derive(Debug)]
pub enum FaultCmd {
    Apply { id: String, spec: FaultSpec, deadline_ms: i64 },
    Revert { id: String },
    RevertAll,
}

/// Messages for the coordinator that are not rows (fault status), kept
/// until a session can send them. Bounded: the oldest go first.
const OUTBOX_MAX: usize = 1024;

/// State shared by the sampler and the uplink.
pub struct Shared {
    buffer: Mutex<Buffer>,
    catalog: Mutex<Vec<MetricDesc>>,
    status: Mutex<Status>,
    outbox: Mutex<VecDeque<AgentMsg>>,
    faults: mpsc::Sender<FaultCmd>,
    fault_backends: Vec<distdiag_common::proto::FaultBackend>,
    missing_backends: Vec<distdiag_common::proto::MissingBackend>,
    /// Woken when rows or messages are added, or rows acknowledged.
    pub wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn buffer(&self) -> MutexGuard<'_, Buffer> {
        lock(&self.buffer)
    }
    pub fn catalog(&self) -> Vec<MetricDesc> {
        lock(&self.catalog).clone()
    }
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }
    pub fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }
    /// Queues a message for the coordinator.
    pub fn post(&self, msg: AgentMsg) {
        let mut o = lock(&self.outbox);
        if o.len() >= OUTBOX_MAX {
            o.pop_front();
        }
        o.push_back(msg);
        drop(o);
        self.wake.notify_one();
    }
    /// Takes every queued message.
    pub fn take_outbox(&self) -> Vec<AgentMsg> {
        lock(&self.outbox).drain(..).collect()
    }
    pub fn outbox_len(&self) -> usize {
        lock(&self.outbox).len()
    }
    /// Hands a fault command to the fault task; a full queue is a refusal.
    pub fn fault_command(&self, cmd: FaultCmd) {
        if let Err(e) = self.faults.try_send(cmd) {
            let id = match e.into_inner() {
                FaultCmd::Apply { id, .. } | FaultCmd::Revert { id } => id,
                FaultCmd::RevertAll => String::new(),
            };
            self.post(fault_status(
                id,
                FaultState::Refused,
                "the agent's fault queue is full".into(),
            ));
        }
    }
    pub fn fault_backends(&self) -> Vec<distdiag_common::proto::FaultBackend> {
        self.fault_backends.clone()
    }

    /// The fault types this agent cannot apply, with why.
    pub fn missing_backends(&self) -> Vec<distdiag_common::proto::MissingBackend> {
        self.missing_backends.clone()
    }
}

fn fault_status(id: String, state: FaultState, detail: String) -> AgentMsg {
    AgentMsg::FaultStatus { id, state, detail }
}

fn catalog_path(state: &Path) -> PathBuf {
    state.join("catalog.json")
}

fn load_catalog(state: &Path) -> Result<Vec<MetricDesc>, AgentError> {
    match std::fs::read(catalog_path(state)) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| AgentError::Setup(format!("{}: {e}", catalog_path(state).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AgentError::Setup(format!("{}: {e}", catalog_path(state).display()))),
    }
}

fn save_catalog(state: &Path, catalog: &[MetricDesc]) -> std::io::Result<()> {
    let tmp = state.join("catalog.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(catalog).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, catalog_path(state))
}

/// A running agent.
pub struct Agent {
    pub shared: Arc<Shared>,
    stop_sampling: watch::Sender<bool>,
    stop_faults: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    sampler: tokio::task::JoinHandle<()>,
    fault_task: tokio::task::JoinHandle<()>,
    uplink: tokio::task::JoinHandle<()>,
}

/// Starts sampling and the uplink. `tap`, when given, receives a copy of
/// every row collected (tests use it to check that everything arrives).
pub async fn start(
    cfg: Config,
    tap: Option<mpsc::UnboundedSender<Row>>,
) -> Result<Agent, AgentError> {
    cfg.validate().map_err(|e| AgentError::Setup(e.to_string()))?;
    let client = uplink::client_config(&cfg).map_err(|e| AgentError::Setup(e.to_string()))?;
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| AgentError::Setup(format!("{}: {e}", cfg.state_dir.display())))?;
    let catalog = load_catalog(&cfg.state_dir)?;
    let buffer = Buffer::open(&cfg.state_dir.join("spill"), cfg.buffer_limits())
        .map_err(|e| AgentError::Setup(e.to_string()))?;
    // Network faults never touch the connection to the coordinator.
    let mut fault_cfg = cfg.fault.clone();
    fault_cfg.cgroup_root = cfg.collect.cgroup_root.clone();
    fault_cfg.control = std::net::ToSocketAddrs::to_socket_addrs(cfg.uplink.coordinator.as_str())
        .ok()
        .and_then(|mut a| a.next());
    // Reverts whatever a crashed earlier run left behind, before anything else.
    let (engine, leftovers) =
        FaultEngine::open(fault_cfg, &cfg.state_dir, &cfg.collect.procfs_root)
            .map_err(|e| AgentError::Setup(e.to_string()))?;
    let (fault_tx, fault_rx) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        buffer: Mutex::new(buffer),
        catalog: Mutex::new(catalog.clone()),
        status: Mutex::new(Status::default()),
        outbox: Mutex::new(VecDeque::new()),
        faults: fault_tx,
        fault_backends: engine.backends(),
        missing_backends: engine.missing(),
        wake: Notify::new(),
    });
    for id in leftovers {
        shared.post(fault_status(
            id,
            FaultState::Reverted,
            "reverted at agent start: left by an earlier run".into(),
        ));
    }
    let (stop_sampling, sampling_rx) = watch::channel(false);
    let (stop_faults, faults_rx) = watch::channel(false);
    let (shutdown, rx) = watch::channel(false);
    let sampler = tokio::spawn(sample(
        cfg.clone(),
        shared.clone(),
        Sink::with_catalog(catalog),
        tap,
        sampling_rx,
    ));
    let fault_task = tokio::spawn(run_faults(
        engine,
        fault_rx,
        shared.clone(),
        cfg.fault.deadman_grace_ms,
        faults_rx,
    ));
    let uplink = tokio::spawn(uplink::run(cfg, client, shared.clone(), rx));
    Ok(Agent { shared, stop_sampling, stop_faults, shutdown, sampler, fault_task, uplink })
}

/// Applies and reverts faults; every 200 ms enforces deadlines, notices
/// stressors that died, and fires the dead-man switch when the coordinator
/// has been silent too long. Reverts everything when stopped.
async fn run_faults(
    mut engine: FaultEngine,
    mut rx: mpsc::Receiver<FaultCmd>,
    shared: Arc<Shared>,
    grace_ms: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(FaultCmd::Apply { id, spec, deadline_ms }) => {
                    let msg = match engine.apply(&id, &spec, deadline_ms, now_ms()) {
                        Ok(()) => fault_status(id, FaultState::Applied, format!("{} until {deadline_ms}", spec.kind())),
                        Err(e @ fault::FaultError::Spawn(_)) | Err(e @ fault::FaultError::Journal(_)) => fault_status(id, FaultState::Failed, e.to_string()),
                        Err(e) => fault_status(id, FaultState::Refused, e.to_string()),
                    };
                    shared.post(msg);
                }
                Some(FaultCmd::Revert { id }) => {
                    let msg = match engine.revert(&id) {
                        Ok(true) => fault_status(id, FaultState::Reverted, "reverted on request".into()),
                        Ok(false) => fault_status(id, FaultState::Refused, "no such active fault".into()),
                        Err(e) => fault_status(id, FaultState::Failed, e.to_string()),
                    };
                    shared.post(msg);
                }
                Some(FaultCmd::RevertAll) => {
                    for id in engine.revert_all() {
                        shared.post(fault_status(id, FaultState::Reverted, "reverted on request (all)".into()));
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let now = now_ms();
                for id in engine.expire(now) {
                    shared.post(fault_status(id, FaultState::Expired, "deadline reached".into()));
                }
                for (id, why) in engine.reap() {
                    shared.post(fault_status(id, FaultState::Failed, why));
                }
                if !engine.is_idle() && deadman_due(shared.status().last_contact_ms, now, grace_ms) {
                    warn!(grace_ms, "no word from the coordinator; dead-man switch reverts every fault");
                    for id in engine.revert_all() {
                        shared.post(fault_status(id, FaultState::Reverted, format!("dead-man switch: the coordinator was silent for more than {grace_ms} ms")));
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    for id in engine.revert_all() {
        shared.post(fault_status(
            id,
            FaultState::Reverted,
            "reverted because the agent is stopping".into(),
        ));
    }
}

async fn sample(
    cfg: Config,
    shared: Arc<Shared>,
    mut sink: Sink,
    tap: Option<mpsc::UnboundedSender<Row>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut collectors = Collectors::new(&cfg.collect);
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(cfg.interval_ms)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut known = sink.catalog().len();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        collectors.collect(&mut sink);
        let row = sink.row(now_ms());
        let refused = sink.take_refused();
        if !refused.is_empty() {
            warn!(?refused, "metrics not recorded (invalid name or catalog full)");
        }
        if sink.catalog().len() > known {
            known = sink.catalog().len();
            *lock(&shared.catalog) = sink.catalog().to_vec();
            if let Err(error) = save_catalog(&cfg.state_dir, sink.catalog()) {
                warn!(%error, "cannot persist the metric catalog");
            }
        }
        if let Some(t) = &tap {
            let _ = t.send(row.clone());
        }
        shared.buffer().push(row);
        shared.wake.notify_one();
    }
}

impl Agent {
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    pub fn pending_rows(&self) -> usize {
        self.shared.buffer().pending_rows()
    }

    /// Stops sampling and reverts every fault, gives the uplink up to `drain`
    /// to deliver what is buffered, then stops it and writes whatever is still
    /// unacknowledged to the spill directory for the next run.
    pub async fn stop(self, drain: Duration) {
        let _ = self.stop_sampling.send(true);
        let _ = self.stop_faults.send(true);
        let _ = self.sampler.await;
        let _ = self.fault_task.await;
        let deadline = tokio::time::Instant::now() + drain;
        while (self.shared.buffer().pending_rows() > 0 || self.shared.outbox_len() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.uplink.await;
        self.shared.buffer().spill_all();
    }
}
