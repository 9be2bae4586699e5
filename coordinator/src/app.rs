//! Wires the coordinator together: store, writer, QUIC ingest, REST API and
//! housekeeping tasks, and shuts them down in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::dbfault::DbFaults;
use crate::dbprobe::DbProbes;
use crate::faults::Faults;
use crate::ingest::{self, Ingest, Registry};
use crate::telemetry::Telemetry;
use distdiag_store::{RecoveringStore, SeriesStore};
use distdiag_workload::Workloads;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration or the files it names are unusable (exit code 64).
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Runtime(String),
}

/// A running coordinator.
pub struct Running {
    pub api_addr: SocketAddr,
    /// `http://addr` or `https://addr`.
    pub api_url: String,
    pub ingest_addr: SocketAddr,
    pub token_file: Option<PathBuf>,
    store: Arc<dyn SeriesStore>,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    workloads: Arc<Workloads>,
    dbfaults: Arc<DbFaults>,
    faults: Arc<Faults>,
}

fn generate_token() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::Runtime(format!("no randomness for the API token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The bearer token: `DISTDIAG_TOKEN`, else the token file, created on first start.
fn load_token(path: &Path) -> Result<(String, Option<PathBuf>), AppError> {
    if let Ok(t) = std::env::var("DISTDIAG_TOKEN") {
        if t.trim().len() < 16 {
            return Err(AppError::Setup("DISTDIAG_TOKEN must be at least 16 characters".into()));
        }
        return Ok((t.trim().to_owned(), None));
    }
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), Some(path.to_owned()))),
        Ok(_) => return Err(AppError::Setup(format!("token file {} is empty", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(AppError::Setup(format!("cannot read token file {}: {e}", path.display())))
        }
    }
    let token = generate_token()?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
            |e| AppError::Setup(format!("cannot create token file {}: {e}", path.display())),
        )?;
    writeln!(f, "{token}")
        .map_err(|e| AppError::Setup(format!("cannot write token file {}: {e}", path.display())))?;
    info!(path = %path.display(), "generated the API bearer token");
    Ok((token, Some(path.to_owned())))
}

/// Checks everything that can be checked before a port is bound.
/// What start-up needs from the certificates: the QUIC server's TLS
/// (mutual), and the API's when it serves HTTPS.
pub struct Listeners {
    pub quic: quinn::ServerConfig,
    pub https: Option<Arc<rustls::ServerConfig>>,
}

pub fn preflight(cfg: &Config) -> Result<Listeners, AppError> {
    cfg.validate().map_err(|e| AppError::Setup(e.to_string()))?;
    let (api_cert, api_key) = cfg.api_tls_files();
    let api_files = if cfg.api.tls { vec![api_cert.clone(), api_key.clone()] } else { vec![] };
    for p in [cfg.ca_cert(), cfg.server_cert(), cfg.server_key()].into_iter().chain(api_files) {
        if !p.exists() {
            return Err(AppError::Setup(format!(
                "{} does not exist; create the cluster certificates with `distdiag-coordinator --data-dir {} cert init`",
                p.display(),
                cfg.data_dir.display()
            )));
        }
    }
    let quic = crate::tls::server_config(
        &cfg.ca_cert(),
        &cfg.server_cert(),
        &cfg.server_key(),
        cfg.ingest.idle_timeout_ms,
    )
    .map_err(|e| AppError::Setup(e.to_string()))?;
    let https = match cfg.api.tls {
        true => Some(
            crate::tls::https_config(&api_cert, &api_key)
                .map_err(|e| AppError::Setup(format!("api.tls: {e}")))?,
        ),
        false => None,
    };
    Ok(Listeners { quic, https })
}

/// Starts the coordinator; returns once both listeners are bound.
pub async fn start(cfg: Config) -> Result<Running, AppError> {
    let Listeners { quic: server_config, https } = preflight(&cfg)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| AppError::Setup(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
    let (token, token_file) = load_token(&cfg.token_file())?;
    let tokens = crate::tokens::Tokens::new(&token, cfg.tokens_file()).map_err(AppError::Setup)?;
    let store_dir = cfg.store_dir();
    let tuning = cfg.store.tuning.clone();
    let store: Arc<dyn SeriesStore> = Arc::new(
        tokio::task::spawn_blocking(move || RecoveringStore::open(&store_dir, tuning))
            .await
            .map_err(|e| AppError::Runtime(e.to_string()))?
            .map_err(|e| AppError::Runtime(format!("cannot open the store: {e}")))?,
    );
    let telemetry = Arc::new(Telemetry::default());
    let remote_write = crate::remote_write::RemoteWrite::new(store.clone(), &cfg.remote_write)
        .map_err(AppError::Setup)?;
    let (writer, _writer_thread) =
        ingest::spawn_writer(store.clone(), telemetry.clone(), 8192, remote_write.clone())
            .map_err(|e| AppError::Runtime(e.to_string()))?;
    let registry = Registry::default();
    let mut faults = Faults::new(
        store.clone(),
        registry.clone(),
        Duration::from_millis(cfg.faults.answer_timeout_ms),
    )
    .map_err(|e| AppError::Runtime(format!("cannot read fault records: {e}")))?;
    let mut databases = cfg.databases.clone();
    if cfg.kubernetes.discover {
        let (all, pods, client) = crate::kube::discover(&cfg.kubernetes, &cfg.databases)
            .await
            .map_err(|e| AppError::Runtime(format!("Kubernetes discovery: {e}")))?;
        info!(pods = pods.len(), databases = all.len(), "Kubernetes discovery done");
        databases = all;
        if cfg.kubernetes.chaos_mesh.enabled {
            faults = faults.with_chaos(Arc::new(crate::chaos::ChaosMesh::new(
                client,
                &cfg.kubernetes.chaos_mesh,
                &pods,
            )));
        }
    }
    let faults = Arc::new(faults);
    let leftovers = faults
        .recover_chaos()
        .await
        .map_err(|e| AppError::Runtime(format!("Chaos Mesh resources of a previous run: {e}")))?;
    if leftovers > 0 {
        info!(leftovers, "deleted Chaos Mesh resources a previous run left");
    }

    let endpoint = quinn::Endpoint::server(server_config, cfg.ingest.listen).map_err(|e| {
        AppError::Runtime(format!("cannot bind QUIC ingest on {}: {e}", cfg.ingest.listen))
    })?;
    let ingest_addr = endpoint.local_addr().map_err(|e| AppError::Runtime(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(cfg.api.listen).await.map_err(|e| {
        AppError::Runtime(format!("cannot bind the API on {}: {e}", cfg.api.listen))
    })?;
    let api_addr = listener.local_addr().map_err(|e| AppError::Runtime(e.to_string()))?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let ingest_state = Arc::new(Ingest {
        store: store.clone(),
        writer,
        registry: registry.clone(),
        faults: faults.clone(),
        telemetry: telemetry.clone(),
        max_frame: cfg.ingest.max_frame_bytes,
        remote_write: remote_write.clone(),
    });
    let mut tasks =
        vec![tokio::spawn(ingest::serve(endpoint.clone(), ingest_state, shutdown_rx.clone()))];
    if let Some(rw) = &remote_write {
        tasks.extend(rw.spawn(shutdown_rx.clone()));
    }

    let probes = Arc::new(DbProbes::new(databases.clone()));
    tasks.extend(probes.spawn(
        store.clone(),
        Duration::from_millis(cfg.probe.interval_ms),
        shutdown_rx.clone(),
        remote_write.clone(),
    ));
    let workloads = Workloads::new(databases.clone(), store.clone());
    workloads.recover();
    let dbfaults = DbFaults::new(store.clone(), databases.clone(), workloads.clone());
    for (id, res) in dbfaults.recover().await {
        if let Err(error) = res {
            warn!(fault = %id, %error, "a database fault from the previous run is still applied; retrying every minute");
        }
    }
    let merge: std::collections::BTreeMap<String, String> =
        databases.iter().filter_map(|t| t.host_node.clone().map(|h| (t.store_node(), h))).collect();
    let training = crate::training::Training::new(store.clone());
    let models = crate::models::Models::new(store.clone());
    let online = crate::online::Online::new(
        store.clone(),
        models.clone(),
        cfg.diagnosis.clone(),
        merge.clone(),
        shutdown_rx.clone(),
    );
    if let Some(rr) = &cfg.remote_read {
        online.read_from(crate::remote_write::RemoteRead::new(rr).map_err(AppError::Setup)?);
        info!(url = %rr.url, "the diagnosis reads its windows from the remote API");
    }
    if cfg.diagnosis.enabled {
        tasks.push(tokio::spawn(online.clone().run(shutdown_rx.clone())));
    }
    let app = api::router(ApiState {
        store: store.clone(),
        registry,
        faults: faults.clone(),
        fault_limits: cfg.faults.clone(),
        telemetry: telemetry.clone(),
        tokens: Arc::new(tokens),
        reads_need_token: cfg.reads_need_token(),
        probes,
        probe_interval_ms: cfg.probe.interval_ms,
        prepare_wait: Duration::from_millis(cfg.api.prepare_wait_ms),
        workloads: workloads.clone(),
        dbfaults: dbfaults.clone(),
        training,
        models,
        online,
        diagnosis: cfg.diagnosis.clone(),
        diagnosis_merge: merge,
        remote_write,
    });
    let api_url = format!("{}://{api_addr}", if https.is_some() { "https" } else { "http" });
    let mut rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let graceful = async move {
            let _ = rx.changed().await;
        };
        let served = match https {
            Some(tls) => match crate::https::TlsListener::new(listener, tls) {
                Ok(l) => axum::serve(l, app).with_graceful_shutdown(graceful).await,
                Err(e) => Err(e),
            },
            None => axum::serve(listener, app).with_graceful_shutdown(graceful).await,
        };
        if let Err(error) = served {
            warn!(%error, "API server ended");
        }
    }));
    tasks.push(tokio::spawn(reopen_when_writable(store.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(housekeeping(
        store.clone(),
        faults.clone(),
        dbfaults.clone(),
        telemetry,
        cfg.store.retention_hours,
        shutdown_rx,
    )));
    info!(api = %api_url, ingest = %ingest_addr, data = %cfg.data_dir.display(), databases = databases.len(), "coordinator running");
    Ok(Running {
        api_addr,
        api_url,
        ingest_addr,
        token_file,
        store,
        endpoint,
        shutdown,
        tasks,
        workloads,
        dbfaults,
        faults,
    })
}

/// Every second while the store cannot write: reopens it once its
/// filesystem has room again (see [`RecoveringStore`]).
async fn reopen_when_writable(store: Arc<dyn SeriesStore>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if store.storage_fault().is_none() {
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.recover()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => warn!(%error, "the store could not be reopened; trying again"),
            Err(error) => warn!(%error, "store reopen task failed"),
        }
    }
}

/// Every 5 s: measures the ingest rate and seals nodes that pin old log
/// segments; every minute: applies retention.
async fn housekeeping(
    store: Arc<dyn SeriesStore>,
    faults: Arc<Faults>,
    dbfaults: Arc<DbFaults>,
    t: Arc<Telemetry>,
    retention_hours: u32,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last = t.values.load(Ordering::Relaxed);
    let mut last_at = std::time::Instant::now();
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = t.values.load(Ordering::Relaxed);
        let secs = last_at.elapsed().as_secs_f64();
        if secs > 0.0 {
            t.values_per_second_bits
                .store(((now - last) as f64 / secs).to_bits(), Ordering::Relaxed);
        }
        (last, last_at) = (now, std::time::Instant::now());
        faults.sweep(ingest::now_ms(), 30_000);
        faults.expire_chaos(ingest::now_ms()).await;
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.maintain()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(sealed)) => tracing::debug!(sealed, "sealed nodes holding old log segments"),
            Ok(Err(error)) => warn!(%error, "store upkeep failed"),
            Err(error) => warn!(%error, "store upkeep task failed"),
        }
        n += 1;
        if n.is_multiple_of(12) {
            // Database faults a previous run could not revert at start.
            dbfaults.recover().await;
        }
        if retention_hours > 0 && n % 12 == 1 {
            let cutoff = ingest::now_ms() - i64::from(retention_hours) * 3_600_000;
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.enforce_retention(cutoff)).await {
                Ok(Ok(removed)) => Telemetry::inc(&t.retention_deleted_blocks, removed as u64),
                Ok(Err(error)) => warn!(%error, "retention failed"),
                Err(error) => warn!(%error, "retention task failed"),
            }
        }
    }
}

impl Running {
    /// The store, for health checks.
    pub fn store(&self) -> Arc<dyn SeriesStore> {
        self.store.clone()
    }

    /// Stops accepting, closes agent connections, stops the API and flushes.
    pub async fn shutdown(self) {
        // Database faults, Chaos Mesh faults and workloads end with the
        // coordinator (agents end theirs by their dead-man switch).
        self.faults.revert_chaos().await;
        let (_, failed) = self.dbfaults.revert_all().await;
        for (id, error) in failed {
            warn!(fault = %id, %error, "database fault not reverted at shutdown; the next start retries");
        }
        self.workloads.stop_all().await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        // Seal what is still hot so the write-ahead log can go; the next start
        // begins with an empty log. Two flushes: the first makes the blocks
        // durable, the second lets the log drop the segments they replace.
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || {
            store.seal_all().and_then(|()| store.flush()).and_then(|()| store.flush())
        })
        .await
        {
            Ok(Ok(())) => info!("store sealed and flushed; coordinator stopped"),
            Ok(Err(error)) => warn!(%error, "final flush failed"),
            Err(error) => warn!(%error, "final flush task failed"),
        }
    }
}
