//! Native workloads of distdiag driven through mysql_async, with no external binaries:
//! sysbench-compatible OLTP ([`oltp`]), TPC-C ([`tpcc`]) and TPC-H
//! ([`tpch`]). Each benchmark is a [`Driver`]: it prepares its schema and
//! data and runs one transaction ("event") at a time on a worker's
//! connection. The engine here runs workers, counts transactions, queries and
//! errors, keeps latency in HDR histograms per report interval and stores
//! every run's report. Several runs may go at once; a run's concurrency can be
//! raised while it runs (the `workload_surge` fault does that).

pub mod db;
pub mod oltp;
pub mod rand;
pub mod tpcc;
pub mod tpch;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;
use tracing::{info, warn};

pub use distdiag_api::workload::{
    Interval, Latency, Options, Phase, RandType, Totals, WorkloadKind, WorkloadReport,
};

use self::rand::Rand;
use crate::db::{wire, DbError, DbTarget};
use distdiag_store::now_ms;
use distdiag_store::SeriesStore;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most workers a run may have (a surge may go this far).
pub const MAX_THREADS: usize = 256;
/// Most workers a start request may ask for.
pub const MAX_START_THREADS: usize = 64;
/// Tree of stored run reports.
pub const RUNS_TREE: &str = "workloads";

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown workload {0:?}")]
    Unknown(String),
    #[error("{0}")]
    NotPrepared(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Sql(String),
}

impl From<mysql_async::Error> for WorkloadError {
    fn from(e: mysql_async::Error) -> Self {
        WorkloadError::Sql(e.to_string())
    }
}

/// The driver of a benchmark.
fn driver(kind: WorkloadKind, o: &Options) -> Arc<dyn Driver> {
    match kind {
        WorkloadKind::OltpReadWrite
        | WorkloadKind::OltpReadOnly
        | WorkloadKind::OltpWriteOnly
        | WorkloadKind::OltpPointSelect => Arc::new(oltp::Oltp::new(kind, o)),
        WorkloadKind::Tpcc => Arc::new(tpcc::Tpcc::new(o)),
        WorkloadKind::Tpch => Arc::new(tpch::Tpch::new(o)),
    }
}

/// Progress of a prepare, shared with its job.
#[derive(Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    pub fn fraction(&self) -> f64 {
        let t = self.total.load(Ordering::Relaxed);
        if t == 0 {
            0.0
        } else {
            (self.done.load(Ordering::Relaxed) as f64 / t as f64).min(1.0)
        }
    }
}

/// A worker's database session.
pub enum Session {
    /// mysql_async (TPC-C, TPC-H).
    Mysql(Conn),
    /// The lean pipelining client (OLTP); blocking I/O on the worker's own thread.
    Wire(Box<wire::Conn>),
}

impl Session {
    pub fn mysql(&mut self) -> Result<&mut Conn, EventError> {
        match self {
            Session::Mysql(c) => Ok(c),
            Session::Wire(_) => {
                Err(EventError::Session("this benchmark runs on mysql_async sessions"))
            }
        }
    }

    pub fn wire(&mut self) -> Result<&mut wire::Conn, EventError> {
        match self {
            Session::Wire(c) => Ok(c),
            Session::Mysql(_) => {
                Err(EventError::Session("this benchmark runs on the pipelining client"))
            }
        }
    }

    async fn rollback(&mut self) {
        let _ = match self {
            Session::Mysql(c) => c.query_drop("ROLLBACK").await.map_err(EventError::from),
            Session::Wire(c) => {
                c.query("ROLLBACK").and_then(|()| c.finish()).map_err(EventError::from)
            }
        };
    }

    async fn close(self) {
        match self {
            Session::Mysql(c) => {
                let _ = c.disconnect().await;
            }
            Session::Wire(c) => c.close(),
        }
    }
}

/// How a benchmark's workers talk to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Mysql,
    /// The pipelining client; `autocommit: false` runs `SET autocommit=0`
    /// first, so that statements sent behind one that failed (a deadlock
    /// ends the transaction) stay in a transaction the rollback undoes.
    Wire {
        pipeline: bool,
        autocommit: bool,
    },
}

/// Why an event failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
    #[error(transparent)]
    Wire(#[from] wire::Error),
    #[error("{0}")]
    Session(&'static str),
}

impl EventError {
    /// The session is gone (reconnect) rather than one transaction refused.
    fn lost(&self) -> bool {
        match self {
            EventError::Mysql(e) => {
                matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
            }
            EventError::Wire(e) => e.lost(),
            EventError::Session(_) => true,
        }
    }
}

/// What one worker owns.
pub struct Worker {
    pub conn: Session,
    pub rand: Rand,
    /// 0-based worker index (TPC-C terminal, TPC-H stream).
    pub index: usize,
    /// Events this worker has run.
    pub events: u64,
}

/// One finished event: statements sent and the transaction type.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub queries: u32,
    pub kind: &'static str,
}

/// A benchmark.
pub trait Driver: Send + Sync {
    /// Creates the schema and loads the data, dropping what was there.
    fn prepare<'a>(
        &'a self,
        t: &'a DbTarget,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<(), WorkloadError>>;
    /// Tables that must exist before a run.
    fn tables(&self) -> Vec<String>;
    /// One transaction on the worker's connection.
    fn event<'a>(&'a self, w: &'a mut Worker) -> BoxFuture<'a, Result<Event, EventError>>;
    /// The session its workers need.
    fn session(&self) -> SessionKind {
        SessionKind::Mysql
    }
}

/// Checks that a prepare ran: every table the driver needs exists.
pub async fn check_prepared(t: &DbTarget, tables: &[String]) -> Result<(), WorkloadError> {
    let mut c = t.connect(false, Duration::from_secs(5)).await?;
    let mut missing = Vec::new();
    for name in tables {
        let found: Option<String> = c
            .exec_first("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", (t.schema.as_str(), name.as_str()))
            .await
            .map_err(|e| t.query_error(e))?;
        if found.is_none() {
            missing.push(name.clone());
        }
    }
    let _ = c.disconnect().await;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(WorkloadError::NotPrepared(format!(
            "database {}: schema {} lacks {}; run prepare first",
            t.name,
            t.schema,
            missing.join(", ")
        )))
    }
}

/// Microseconds from 1 µs to 1 h, 3 significant digits.
#[allow(clippy::expect_used)]
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

#[derive(Default, Clone)]
struct Counts {
    events: u64,
    queries: u64,
    errors: u64,
    reconnects: u64,
    by_kind: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.events += o.events;
        self.queries += o.queries;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
        for (k, v) in &o.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
    }
}

struct Acc {
    counts: Counts,
    hist: Histogram<u64>,
    since: Instant,
    /// When the last event finished (ms).
    last_event_ms: Option<i64>,
}

/// Latency percentiles in milliseconds (None of an empty histogram).
fn percentiles(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Some(Latency {
        min: ms(h.min()),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    })
}

/// One prepare job or run.
pub struct Run {
    pub id: String,
    pub kind: WorkloadKind,
    pub options: Options,
    pub targets: Vec<DbTarget>,
    driver: Arc<dyn Driver>,
    phase: Mutex<(Phase, Option<String>)>,
    pub started_ms: i64,
    ended_ms: Mutex<Option<i64>>,
    threads: AtomicUsize,
    spawned: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    progress: Progress,
    acc: Mutex<Acc>,
    totals: Mutex<(Counts, Histogram<u64>)>,
    intervals: Mutex<Vec<Interval>>,
}

fn by_type(m: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Run {
    fn new(
        id: String,
        kind: WorkloadKind,
        options: Options,
        targets: Vec<DbTarget>,
        phase: Phase,
    ) -> Arc<Run> {
        let (stop, _) = watch::channel(false);
        Arc::new(Run {
            id,
            kind,
            driver: driver(kind, &options),
            options,
            targets,
            phase: Mutex::new((phase, None)),
            started_ms: now_ms(),
            ended_ms: Mutex::new(None),
            threads: AtomicUsize::new(0),
            spawned: Mutex::new(Vec::new()),
            stop,
            progress: Progress::default(),
            acc: Mutex::new(Acc {
                counts: Counts::default(),
                hist: new_hist(),
                since: Instant::now(),
                last_event_ms: None,
            }),
            totals: Mutex::new((Counts::default(), new_hist())),
            intervals: Mutex::new(Vec::new()),
        })
    }

    pub fn phase(&self) -> Phase {
        lock(&self.phase).0
    }

    pub fn is_active(&self) -> bool {
        matches!(self.phase(), Phase::Running | Phase::Preparing)
    }

    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    fn end(&self, phase: Phase, error: Option<String>) {
        let mut p = lock(&self.phase);
        if matches!(p.0, Phase::Running | Phase::Preparing) {
            *p = (phase, error);
            *lock(&self.ended_ms) = Some(now_ms());
        }
    }

    fn record(&self, ev: Result<Event, ()>, latency: Duration, reconnect: bool) {
        let mut a = lock(&self.acc);
        match ev {
            Ok(e) => {
                a.last_event_ms = Some(now_ms());
                a.counts.events += 1;
                a.counts.queries += u64::from(e.queries);
                *a.counts.by_kind.entry(e.kind).or_default() += 1;
                let us =
                    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 3_600_000_000);
                let _ = a.hist.record(us);
            }
            Err(()) => a.counts.errors += 1,
        }
        if reconnect {
            a.counts.reconnects += 1;
        }
    }

    /// Closes the current interval into the report. `min_s`: an interval
    /// shorter than this stays open (a late tick must not close a sliver
    /// whose rate would read 0, or thousands, for a handful of events).
    fn close_interval(&self, min_s: f64) {
        let (counts, hist, secs) = {
            let mut a = lock(&self.acc);
            let secs = a.since.elapsed().as_secs_f64();
            if secs < min_s {
                return;
            }
            a.since = Instant::now();
            (std::mem::take(&mut a.counts), std::mem::replace(&mut a.hist, new_hist()), secs)
        };
        if secs <= 0.0 {
            return;
        }
        let row = Interval {
            timestamp: now_ms(),
            seconds: secs,
            threads: self.threads(),
            tps: counts.events as f64 / secs,
            qps: counts.queries as f64 / secs,
            errors_per_s: counts.errors as f64 / secs,
            reconnects: counts.reconnects,
            latency_ms: percentiles(&hist),
            by_type: by_type(&counts.by_kind),
        };
        {
            let mut t = lock(&self.totals);
            t.0.add(&counts);
            let _ = t.1.add(&hist);
        }
        let mut iv = lock(&self.intervals);
        iv.push(row);
        // A day of 1 s intervals at most; older ones are summarized in totals.
        if iv.len() > 86_400 {
            iv.remove(0);
        }
    }

    /// The run's report: totals, live figures and the intervals so far.
    pub fn report(&self, with_intervals: bool) -> WorkloadReport {
        let (phase, error) = lock(&self.phase).clone();
        let ended = *lock(&self.ended_ms);
        let elapsed_s = (ended.unwrap_or_else(now_ms) - self.started_ms) as f64 / 1000.0;
        let (totals, hist) = {
            let t = lock(&self.totals);
            (t.0.clone(), t.1.clone())
        };
        let last_event_ms = lock(&self.acc).last_event_ms;
        let intervals = lock(&self.intervals);
        WorkloadReport {
            workload_id: self.id.clone(),
            kind: self.kind,
            phase,
            running: phase == Phase::Running,
            error,
            threads: self.threads(),
            databases: self.targets.iter().map(|t| t.name.clone()).collect(),
            options: self.options.clone(),
            started_ms: self.started_ms,
            ended_ms: ended,
            elapsed_s,
            totals: Totals {
                transactions: totals.events,
                queries: totals.queries,
                errors: totals.errors,
                reconnects: totals.reconnects,
                by_type: by_type(&totals.by_kind),
                latency_ms: percentiles(&hist),
            },
            current: intervals.last().cloned(),
            last_event_ms,
            progress: matches!(phase, Phase::Preparing | Phase::Prepared)
                .then(|| self.progress.fraction()),
            intervals: with_intervals.then(|| intervals.clone()),
        }
    }

    /// Sets the number of workers, starting new ones when it grows.
    pub fn set_threads(self: &Arc<Self>, n: usize) -> Result<usize, WorkloadError> {
        if !(1..=MAX_THREADS).contains(&n) {
            return Err(WorkloadError::Invalid(format!(
                "threads = {n} is outside 1..={MAX_THREADS}"
            )));
        }
        if self.phase() != Phase::Running {
            return Err(WorkloadError::Invalid(format!("workload {} is not running", self.id)));
        }
        let before = self.threads.swap(n, Ordering::Relaxed);
        let mut spawned = lock(&self.spawned);
        while spawned.len() < n {
            let idx = spawned.len();
            // Each worker is an OS thread with its own single-threaded runtime,
            // as sysbench's threads are: no work stealing and no cross-thread
            // wake-ups between a statement and its answer.
            let run = self.clone();
            let handle = std::thread::Builder::new().name(format!("workload-{idx}")).spawn(move || {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(worker_loop(run, idx)),
                    Err(error) => warn!(workload = %run.id, worker = idx, %error, "cannot start a worker runtime"),
                }
            });
            match handle {
                Ok(h) => spawned.push(h),
                Err(e) => {
                    return Err(WorkloadError::Invalid(format!("cannot start worker {idx}: {e}")))
                }
            }
        }
        Ok(before)
    }

    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn connect_worker(run: &Run, idx: usize) -> Result<Session, DbError> {
    let t = &run.targets[idx % run.targets.len()];
    let timeout = Duration::from_secs(5);
    match run.driver.session() {
        SessionKind::Mysql => t.connect(true, timeout).await.map(Session::Mysql),
        SessionKind::Wire { pipeline, autocommit } => {
            let mut c = t.wire_connect(timeout).await?;
            if !autocommit {
                c.query("SET autocommit=0")
                    .and_then(|()| c.finish())
                    .map_err(|e| t.query_error(e))?;
            }
            c.set_pipeline(pipeline);
            // seekdb leaves Nagle on: see `set_quickack`.
            c.set_quickack(pipeline && t.dialect == crate::db::DialectKind::Oceanbase);
            Ok(Session::Wire(Box::new(c)))
        }
    }
}

async fn worker_loop(run: Arc<Run>, idx: usize) {
    let mut stop = run.stop.subscribe();
    let mut conn: Option<Session> = None;
    // Seed and worker index only: the same options replay the same streams.
    let seed = run.options.seed.wrapping_mul(1_000_003).wrapping_add(idx as u64);
    let mut rand = Some(Rand::new(run.options.rand_type, seed));
    let mut events = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            break;
        }
        if idx >= run.threads() {
            // Parked: the run's concurrency is below this worker's index.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = stop.changed() => break,
            }
        }
        let c = match conn.take() {
            Some(c) => c,
            None => match connect_worker(&run, idx).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    c
                }
                Err(e) => {
                    run.record(Err(()), Duration::ZERO, true);
                    warn!(workload = %run.id, worker = idx, error = %e, "worker cannot connect; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let mut w = Worker {
            conn: c,
            rand: rand.take().unwrap_or_else(|| Rand::new(run.options.rand_type, seed)),
            index: idx,
            events,
        };
        let t0 = Instant::now();
        let res = run.driver.event(&mut w).await;
        let elapsed = t0.elapsed();
        events = w.events + 1;
        rand = Some(w.rand);
        let mut c = w.conn;
        match res {
            Ok(ev) => {
                run.record(Ok(ev), elapsed, false);
                conn = Some(c);
            }
            Err(e) if e.lost() => {
                run.record(Err(()), elapsed, true);
                drop(c);
            }
            Err(_) => {
                // Deadlock, lock wait timeout and the like: the transaction is
                // lost, the connection is fine (as sysbench, count and go on).
                c.rollback().await;
                run.record(Err(()), elapsed, false);
                conn = Some(c);
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// Longest a stop request waits for a run's workers to finish their
/// transaction in flight (a worker stuck on a lock wait or a slow network
/// takes that long at most; the run ends on its own afterwards).
pub const STOP_WAIT: Duration = Duration::from_secs(5);

async fn wait_stopped(runs: &[Arc<Run>]) {
    let deadline = Instant::now() + STOP_WAIT;
    while runs.iter().any(|r| r.is_active()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// All runs of this coordinator.
pub struct Workloads {
    targets: Vec<DbTarget>,
    store: Arc<dyn SeriesStore>,
    runs: Mutex<BTreeMap<String, Arc<Run>>>,
    seq: AtomicU64,
}

impl Workloads {
    pub fn new(targets: Vec<DbTarget>, store: Arc<dyn SeriesStore>) -> Arc<Self> {
        Arc::new(Workloads {
            targets,
            store,
            runs: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    fn resolve(&self, o: &Options) -> Result<Vec<DbTarget>, WorkloadError> {
        if !o.databases.is_empty() {
            return o
                .databases
                .iter()
                .map(|n| Ok(crate::db::find(&self.targets, Some(n), false)?.clone()))
                .collect();
        }
        Ok(vec![crate::db::find(&self.targets, o.database.as_deref(), false)?.clone()])
    }

    fn new_id(&self, kind: &str) -> String {
        format!("{kind}-{}-{}", now_ms(), self.seq.fetch_add(1, Ordering::Relaxed))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        lock(&self.runs).get(id).cloned()
    }

    pub fn active(&self) -> Vec<Arc<Run>> {
        lock(&self.runs).values().filter(|r| r.is_active()).cloned().collect()
    }

    fn save(&self, run: &Run) {
        let doc = run.report(true);
        let bytes = match serde_json::to_vec(&doc) {
            Ok(b) => b,
            Err(_) => return,
        };
        if let Err(error) = self.store.put_doc(RUNS_TREE, &run.id, &bytes) {
            warn!(workload = %run.id, %error, "cannot store the workload report");
        }
    }

    /// A stored report of a run that is no longer in memory.
    pub fn stored(&self, id: &str) -> Option<WorkloadReport> {
        let bytes = self.store.get_doc(RUNS_TREE, id).ok().flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Reports of all stored runs, without intervals, oldest first.
    pub fn history(&self) -> Vec<WorkloadReport> {
        let docs = self.store.docs(RUNS_TREE).unwrap_or_default();
        let mut out: Vec<WorkloadReport> = docs
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice::<WorkloadReport>(&b).ok())
            .map(|mut r| {
                r.intervals = None;
                r
            })
            .collect();
        out.sort_by_key(|r| r.started_ms);
        out
    }

    /// Starts a prepare job; `done` resolves when it ends.
    pub fn prepare(
        self: &Arc<Self>,
        kind: WorkloadKind,
        options: Options,
    ) -> Result<(Arc<Run>, tokio::task::JoinHandle<()>), WorkloadError> {
        options.validate().map_err(WorkloadError::Invalid)?;
        let targets = self.resolve(&options)?;
        let busy = self.active().into_iter().find(|r| {
            r.targets.iter().any(|t| targets.iter().any(|u| u.name == t.name))
                && shares_tables(r.kind, kind)
        });
        if let Some(r) = busy {
            return Err(WorkloadError::Invalid(format!(
                "workload {} uses the same tables; stop it before preparing",
                r.id
            )));
        }
        let run = Run::new(
            self.new_id(&format!("prepare-{}", kind.as_str())),
            kind,
            options,
            targets,
            Phase::Preparing,
        );
        lock(&self.runs).insert(run.id.clone(), run.clone());
        let this = self.clone();
        let r = run.clone();
        let handle = tokio::spawn(async move {
            let mut outcome = Ok(());
            for t in &r.targets {
                info!(workload = %r.id, database = %t.name, "preparing");
                let res = async {
                    crate::db::ensure_schema(t).await?;
                    r.driver.prepare(t, &r.progress).await
                }
                .await;
                if let Err(e) = res {
                    outcome = Err(e);
                    break;
                }
            }
            match outcome {
                Ok(()) => {
                    info!(workload = %r.id, "prepared");
                    r.end(Phase::Prepared, None);
                }
                Err(e) => {
                    warn!(workload = %r.id, error = %e, "prepare failed");
                    r.end(Phase::Failed, Some(e.to_string()));
                }
            }
            this.save(&r);
        });
        Ok((run, handle))
    }

    /// Starts a run after checking that its database answers and is prepared.
    pub async fn start(
        self: &Arc<Self>,
        kind: WorkloadKind,
        threads: usize,
        options: Options,
    ) -> Result<Arc<Run>, WorkloadError> {
        options.validate().map_err(WorkloadError::Invalid)?;
        if !(1..=MAX_START_THREADS).contains(&threads) {
            return Err(WorkloadError::Invalid(format!(
                "threads = {threads} is outside 1..={MAX_START_THREADS}"
            )));
        }
        let targets = self.resolve(&options)?;
        let driver = driver(kind, &options);
        for t in &targets {
            check_prepared(t, &driver.tables()).await?;
        }
        let run = Run::new(self.new_id(kind.as_str()), kind, options, targets, Phase::Running);
        lock(&self.runs).insert(run.id.clone(), run.clone());
        run.set_threads(threads)?;
        info!(workload = %run.id, threads, "workload started");
        self.save(&run);
        let this = self.clone();
        let r = run.clone();
        tokio::spawn(async move { this.supervise(r).await });
        Ok(run)
    }

    /// Closes report intervals, enforces the duration, and on stop waits
    /// for the workers and stores the final report.
    async fn supervise(self: Arc<Self>, run: Arc<Run>) {
        let mut stop = run.stop.subscribe();
        let every = Duration::from_secs(run.options.report_interval_s);
        let mut tick = tokio::time::interval(every);
        // A tick delayed by a busy runtime is not followed by a burst of
        // catch-up ticks, each closing an empty sliver of an interval.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let deadline = (run.options.duration_s > 0)
            .then(|| tokio::time::Instant::now() + Duration::from_secs(run.options.duration_s));
        let mut finished = false;
        loop {
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => run.close_interval(every.as_secs_f64() / 2.0),
                _ = until_deadline => { finished = true; break; }
                _ = stop.changed() => break,
            }
        }
        run.request_stop();
        let handles: Vec<_> = std::mem::take(&mut *lock(&run.spawned));
        let joined = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        });
        if tokio::time::timeout(Duration::from_secs(30), joined).await.is_err() {
            warn!(workload = %run.id, "workers did not stop within 30 s");
        }
        run.close_interval(0.0);
        run.end(if finished { Phase::Finished } else { Phase::Stopped }, None);
        info!(workload = %run.id, "workload ended");
        self.save(&run);
    }

    /// Stops a run and waits (at most [`STOP_WAIT`]) until its workers are gone.
    pub async fn stop(&self, id: &str) -> Result<Arc<Run>, WorkloadError> {
        let run = self.get(id).ok_or_else(|| WorkloadError::Unknown(id.to_owned()))?;
        run.request_stop();
        wait_stopped(std::slice::from_ref(&run)).await;
        Ok(run)
    }

    /// Stops every running run at once, then waits (at most [`STOP_WAIT`]
    /// in all, not per run) until their workers are gone.
    pub async fn stop_all(&self) -> Vec<Arc<Run>> {
        let runs: Vec<Arc<Run>> =
            self.active().into_iter().filter(|r| r.phase() == Phase::Running).collect();
        runs.iter().for_each(|r| r.request_stop());
        wait_stopped(&runs).await;
        runs
    }

    /// Marks runs a previous coordinator left "running" as interrupted.
    pub fn recover(&self) {
        for (id, bytes) in self.store.docs(RUNS_TREE).unwrap_or_default() {
            let Ok(mut r) = serde_json::from_slice::<WorkloadReport>(&bytes) else { continue };
            if matches!(r.phase, Phase::Running | Phase::Preparing) {
                r.phase = Phase::Failed;
                r.running = false;
                r.error = Some("the coordinator stopped while this ran".into());
                if let Ok(b) = serde_json::to_vec(&r) {
                    let _ = self.store.put_doc(RUNS_TREE, &id, &b);
                }
            }
        }
    }
}

/// Whether two workload types use the same tables.
fn shares_tables(a: WorkloadKind, b: WorkloadKind) -> bool {
    let family = |k: WorkloadKind| match k {
        WorkloadKind::Tpcc => 1,
        WorkloadKind::Tpch => 2,
        _ => 0,
    };
    family(a) == family(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = new_hist();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = percentiles(&h).unwrap();
        let (p50, p99) = (p.p50, p.p99);
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert!((989.0..=991.0).contains(&p99), "{p99}");
        assert_eq!(percentiles(&new_hist()), None);
    }

    /// A tick that comes late is followed by one that comes early: the
    /// early one must not close a sliver that reads 0 TPS while the run
    /// is busy, and the report says when the last transaction finished.
    #[test]
    fn a_late_tick_closes_no_sliver() {
        let run = Run::new(
            "t".into(),
            WorkloadKind::OltpReadWrite,
            Options::default(),
            Vec::new(),
            Phase::Running,
        );
        let ev = || Ok(Event { queries: 20, kind: "transaction" });
        assert_eq!(run.report(false).last_event_ms, None);
        for _ in 0..50 {
            run.record(ev(), Duration::from_millis(2), false);
        }
        std::thread::sleep(Duration::from_millis(30));
        run.close_interval(0.02);
        let busy = run.report(false).current.unwrap();
        assert!(busy.tps > 100.0, "{busy:?}");
        // The catch-up tick right after: nothing to close yet.
        run.close_interval(0.02);
        let r = run.report(true);
        assert_eq!(r.intervals.unwrap().len(), 1);
        assert_eq!(r.current, Some(busy));
        assert!(r.last_event_ms.is_some_and(|t| t <= now_ms() && t > now_ms() - 10_000));
        // A real stall reads 0, and the report says since when.
        std::thread::sleep(Duration::from_millis(30));
        run.close_interval(0.02);
        let r = run.report(false);
        assert_eq!(r.current.map(|c| c.tps), Some(0.0));
        assert!(r.last_event_ms.is_some());
    }
}

/// Loads rows with multi-row INSERTs of `batch` rows, values as parameters.
pub async fn bulk_insert(
    c: &mut Conn,
    table: &str,
    columns: &[&str],
    rows: &[Vec<mysql_async::Value>],
    batch: usize,
) -> Result<(), mysql_async::Error> {
    let one = format!("({})", vec!["?"; columns.len()].join(","));
    for chunk in rows.chunks(batch.max(1)) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(","));
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&one);
        }
        let params: Vec<mysql_async::Value> = chunk.iter().flatten().cloned().collect();
        c.exec_drop(sql, params).await?;
    }
    Ok(())
}

/// Civil date of a day count since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A DATE value.
pub fn date_value(days: i64) -> mysql_async::Value {
    let (y, m, d) = civil_from_days(days);
    mysql_async::Value::Date(y as u16, m as u8, d as u8, 0, 0, 0, 0)
}

/// A DATETIME value for a Unix time in milliseconds.
pub fn datetime_value(ms: i64) -> mysql_async::Value {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    mysql_async::Value::Date(
        y as u16,
        m as u8,
        d as u8,
        (s / 3600) as u8,
        ((s % 3600) / 60) as u8,
        (s % 60) as u8,
        0,
    )
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(1992, 1, 1), 8035);
        assert_eq!(civil_from_days(days_from_civil(1998, 12, 31)), (1998, 12, 31));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        for d in -1000..30_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
