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
pub mod uplink;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use distdiag_common::{MetricDesc, Row};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tracing::warn;

use crate::buffer::Buffer;
use crate::collect::{Collectors, Sink};
use crate::config::Config;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
}

/// State shared by the sampler and the uplink.
pub struct Shared {
    buffer: Mutex<Buffer>,
    catalog: Mutex<Vec<MetricDesc>>,
    status: Mutex<Status>,
    /// Woken when rows are added or acknowledged.
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
}

fn catalog_path(state: &Path) -> PathBuf {
    state.join("catalog.json")
}

fn load_catalog(state: &Path) -> Result<Vec<MetricDesc>, AgentError> {
    match std::fs::read(catalog_path(state)) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| AgentError::Setup(format!("{}: {e}", catalog_path(state).display()))),
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
    shutdown: watch::Sender<bool>,
    sampler: tokio::task::JoinHandle<()>,
    uplink: tokio::task::JoinHandle<()>,
}

/// Starts sampling and the uplink. `tap`, when given, receives a copy of
/// every row collected (tests use it to check that everything arrives).
pub async fn start(cfg: Config, tap: Option<mpsc::UnboundedSender<Row>>) -> Result<Agent, AgentError> {
    cfg.validate().map_err(|e| AgentError::Setup(e.to_string()))?;
    let client = uplink::client_config(&cfg).map_err(|e| AgentError::Setup(e.to_string()))?;
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| AgentError::Setup(format!("{}: {e}", cfg.state_dir.display())))?;
    let catalog = load_catalog(&cfg.state_dir)?;
    let buffer = Buffer::open(&cfg.state_dir.join("spill"), cfg.buffer_limits()).map_err(|e| AgentError::Setup(e.to_string()))?;
    let shared = Arc::new(Shared { buffer: Mutex::new(buffer), catalog: Mutex::new(catalog.clone()), status: Mutex::new(Status::default()), wake: Notify::new() });
    let (stop_sampling, sampling_rx) = watch::channel(false);
    let (shutdown, rx) = watch::channel(false);
    let sampler = tokio::spawn(sample(cfg.clone(), shared.clone(), Sink::with_catalog(catalog), tap, sampling_rx));
    let uplink = tokio::spawn(uplink::run(cfg, client, shared.clone(), rx));
    Ok(Agent { shared, stop_sampling, shutdown, sampler, uplink })
}

async fn sample(cfg: Config, shared: Arc<Shared>, mut sink: Sink, tap: Option<mpsc::UnboundedSender<Row>>, mut stop: watch::Receiver<bool>) {
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

    /// Stops sampling, gives the uplink up to `drain` to deliver what is
    /// buffered, then stops it and writes whatever is still unacknowledged to
    /// the spill directory for the next run.
    pub async fn stop(self, drain: Duration) {
        let _ = self.stop_sampling.send(true);
        let _ = self.sampler.await;
        let deadline = tokio::time::Instant::now() + drain;
        while self.shared.buffer().pending_rows() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.uplink.await;
        self.shared.buffer().spill_all();
    }
}
