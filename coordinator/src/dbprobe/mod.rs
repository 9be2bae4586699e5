//! Database probe: every few seconds, each configured database is sampled
//! through its dialect and the raw values are stored as the series of node
//! `db:<name>` in the same store as agent metrics. The seeds' database fields
//! (qps, tps, response time, ...) are derived from two consecutive samples by
//! [`derive`], a pure function; a field the server cannot provide is `null`
//! with the reason the dialect found at connect time, never a zero.

mod mysql;
mod oceanbase;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use distdiag_common::catalog::counter_increase;
use distdiag_common::proto::{Capabilities, HostFacts, Row};
use distdiag_common::MetricDesc;
use mysql_async::Conn;

use crate::remote_write::RemoteWrite;
pub use distdiag_api::database::{DbFields, Discovery, ProbeStatus, TenantMetrics};
use tokio::sync::watch;
use tracing::{info, warn};

use distdiag_store::now_ms;
use distdiag_store::SeriesStore;
use distdiag_workload::db::{DbTarget, DialectKind};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Raw series of a database node, in catalog order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum M {
    Up,
    Queries,
    Transactions,
    SqlExecutions,
    SqlTime,
    SessionsActive,
    Connections,
    IoReadBytes,
    IoWriteBytes,
    IoOps,
    Iops,
    MemoryUsed,
    CacheRequests,
    CacheMisses,
    SlowQueries,
    Deadlocks,
    ReplicationLag,
    CacheLimit,
    CacheUsed,
    CacheFreezes,
    Memtables,
}

const ALL: [M; 21] = [
    M::Up,
    M::Queries,
    M::Transactions,
    M::SqlExecutions,
    M::SqlTime,
    M::SessionsActive,
    M::Connections,
    M::IoReadBytes,
    M::IoWriteBytes,
    M::IoOps,
    M::Iops,
    M::MemoryUsed,
    M::CacheRequests,
    M::CacheMisses,
    M::SlowQueries,
    M::Deadlocks,
    M::ReplicationLag,
    M::CacheLimit,
    M::CacheUsed,
    M::CacheFreezes,
    M::Memtables,
];

impl M {
    fn desc(self) -> MetricDesc {
        use MetricDesc as D;
        match self {
            M::Up => D::gauge("db.up", "bool"),
            M::Queries => D::counter("db.queries", "ops"),
            M::Transactions => D::counter("db.transactions", "ops"),
            M::SqlExecutions => D::counter("db.sql_executions", "ops"),
            M::SqlTime => D::counter("db.sql_time", "microseconds"),
            M::SessionsActive => D::gauge("db.sessions_active", "count"),
            M::Connections => D::gauge("db.connections", "count"),
            M::IoReadBytes => D::counter("db.io_read_bytes", "bytes"),
            M::IoWriteBytes => D::counter("db.io_write_bytes", "bytes"),
            M::IoOps => D::counter("db.io_ops", "ops"),
            M::Iops => D::gauge("db.iops", "ops/s"),
            M::MemoryUsed => D::gauge("db.memory_used", "bytes"),
            M::CacheRequests => D::counter("db.cache_requests", "ops"),
            M::CacheMisses => D::counter("db.cache_misses", "ops"),
            M::SlowQueries => D::counter("db.slow_queries", "count"),
            M::Deadlocks => D::counter("db.deadlocks", "count"),
            M::ReplicationLag => D::gauge("db.replication_lag", "seconds"),
            // The size the server gives its cache and how much of it is
            // filled: InnoDB's buffer pool; OceanBase's memstore, the write
            // cache that a freeze turns into frozen memtables to dump. A
            // `cache_bottleneck` changes the limit itself (on OceanBase the
            // freezes come sooner); see each dialect for its sources.
            M::CacheLimit => D::gauge("db.cache_limit", "bytes"),
            M::CacheUsed => D::gauge("db.cache_used", "bytes"),
            M::CacheFreezes => D::counter("db.cache_freezes", "count"),
            // OceanBase: memtables in the memstore, one per tablet written
            // since its last dump; every index is a tablet of its own.
            M::Memtables => D::gauge("db.memtables", "count"),
        }
    }
}

/// The catalog of every database node.
pub fn catalog() -> Vec<MetricDesc> {
    ALL.iter().map(|m| m.desc()).collect()
}

/// One sample: a value per raw series, NaN where the server gave none.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub values: Vec<f64>,
    /// When the server read its rate counters (the middle of that query's
    /// round trip), where the dialect knows; the sample is stored at this
    /// time, so that a reply delayed by a busy server does not shift one
    /// interval's count into the next.
    pub read_ms: Option<i64>,
}

impl Sample {
    pub fn empty() -> Self {
        Sample { values: vec![f64::NAN; ALL.len()], read_ms: None }
    }
    pub fn set(&mut self, m: M, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.values[m as usize] = v;
        }
    }
    pub fn get(&self, m: M) -> Option<f64> {
        self.values.get(m as usize).copied().filter(|v| v.is_finite())
    }
}

/// A SQL dialect: how to learn what a server offers and how to sample it.
pub trait Dialect: Send + Sync {
    fn kind(&self) -> DialectKind;
    /// Called after each (re)connect, before the first sample.
    fn discover<'a>(
        &'a mut self,
        c: &'a mut Conn,
    ) -> BoxFuture<'a, Result<Discovery, mysql_async::Error>>;
    fn sample<'a>(&'a self, c: &'a mut Conn) -> BoxFuture<'a, Result<Sample, mysql_async::Error>>;
    /// Live per-tenant figures (see [`TenantMetrics`]).
    fn tenant<'a>(
        &'a self,
        c: &'a mut Conn,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Option<TenantMetrics>, mysql_async::Error>>;
}

pub fn dialect_for(kind: DialectKind) -> Box<dyn Dialect> {
    match kind {
        DialectKind::Mysql => Box::new(mysql::Mysql::default()),
        DialectKind::Oceanbase => Box::new(oceanbase::OceanBase::default()),
    }
}

/// Runs a query and says when the server most likely ran it: the middle
/// of its round trip.
pub(super) async fn timed<T, F: Future<Output = T>>(f: F) -> (T, i64) {
    let before = now_ms();
    let out = f.await;
    (out, before + (now_ms() - before) / 2)
}

/// Derives the API fields from a sample and its predecessor.
pub fn derive(prev: (i64, &Sample), cur: (i64, &Sample)) -> DbFields {
    let dt = (cur.0 - prev.0) as f64 / 1000.0;
    let inc = |m: M| -> Option<f64> { counter_increase(prev.1.get(m)?, cur.1.get(m)?) };
    let rate = |m: M| -> Option<f64> { (dt > 0.0).then(|| inc(m).map(|d| d / dt)).flatten() };
    let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        _ => None,
    };
    let response = match (inc(M::SqlTime), inc(M::SqlExecutions)) {
        (Some(t), Some(n)) if n > 0.0 => Some(t / n / 1000.0),
        // No statement ran: no mean to report.
        _ => None,
    };
    let hit = match (inc(M::CacheRequests), inc(M::CacheMisses)) {
        (Some(r), Some(m)) if r > 0.0 => Some((100.0 * (1.0 - m / r)).clamp(0.0, 100.0)),
        _ => None,
    };
    let up = cur.1.get(M::Up) == Some(1.0);
    let gauge = |m: M| if up { cur.1.get(m) } else { None };
    DbFields {
        timestamp: cur.0,
        qps: rate(M::Queries),
        tps: rate(M::Transactions),
        active_sessions: gauge(M::SessionsActive),
        sql_response_time: response,
        disk_io_bytes: sum(rate(M::IoReadBytes), rate(M::IoWriteBytes)),
        disk_iops: rate(M::IoOps).or_else(|| gauge(M::Iops)),
        memory_usage: gauge(M::MemoryUsed),
        cache_hit_ratio: hit,
        slow_queries: inc(M::SlowQueries),
        deadlocks: inc(M::Deadlocks),
        replication_lag: gauge(M::ReplicationLag),
        connection_count: gauge(M::Connections),
    }
}

/// The configured databases and their probes' status.
pub struct DbProbes {
    pub targets: Vec<DbTarget>,
    status: Mutex<BTreeMap<String, ProbeStatus>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DbProbes {
    pub fn new(targets: Vec<DbTarget>) -> Self {
        let status = targets
            .iter()
            .map(|t| {
                let s = ProbeStatus {
                    name: t.name.clone(),
                    node: t.store_node(),
                    dialect: t.dialect,
                    addr: t.addr(),
                    host_node: t.host_node.clone(),
                    connected: false,
                    last_error: None,
                    last_sample_ms: None,
                    discovery: Discovery::default(),
                };
                (t.name.clone(), s)
            })
            .collect();
        DbProbes { targets, status: Mutex::new(status) }
    }

    pub fn target(&self, name: Option<&str>) -> Result<&DbTarget, distdiag_workload::db::DbError> {
        distdiag_workload::db::find(&self.targets, name, false)
    }

    pub fn status(&self) -> Vec<ProbeStatus> {
        lock(&self.status).values().cloned().collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ProbeStatus)) {
        if let Some(s) = lock(&self.status).get_mut(name) {
            f(s);
        }
    }

    /// Starts one probe task per database; stored samples also go to the
    /// remote-write receivers, if any.
    pub fn spawn(
        self: &Arc<Self>,
        store: Arc<dyn SeriesStore>,
        interval: Duration,
        stop: watch::Receiver<bool>,
        remote_write: Option<Arc<RemoteWrite>>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.targets
            .iter()
            .cloned()
            .map(|t| {
                let out = Sink { store: store.clone(), remote_write: remote_write.clone() };
                tokio::spawn(probe_loop(self.clone(), t, out, interval, stop.clone()))
            })
            .collect()
    }
}

/// Where samples go: the store, then the remote-write receivers.
struct Sink {
    store: Arc<dyn SeriesStore>,
    remote_write: Option<Arc<RemoteWrite>>,
}

async fn store_row(out: &Sink, node: &str, row: Row) {
    let s = out.store.clone();
    let rw = out.remote_write.clone();
    let node = node.to_owned();
    let res = tokio::task::spawn_blocking(move || {
        s.append(&node, std::slice::from_ref(&row)).and_then(|_| s.flush())?;
        if let Some(rw) = rw {
            rw.forward(&node, &[row]);
        }
        Ok::<(), distdiag_store::StoreError>(())
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!(%error, "cannot store a database sample"),
        Err(error) => warn!(%error, "database sample task failed"),
    }
}

async fn probe_loop(
    probes: Arc<DbProbes>,
    t: DbTarget,
    out: Sink,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let store = out.store.clone();
    let node = t.store_node();
    let facts = HostFacts {
        hostname: t.addr(),
        agent_version: format!("dbprobe/{}", t.dialect.as_str()),
        ..HostFacts::default()
    };
    {
        let (s, n) = (store.clone(), node.clone());
        let ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        match tokio::task::spawn_blocking(move || {
            s.upsert_node(&n, facts, Capabilities::default(), catalog(), ms, now_ms())
        })
        .await
        {
            Ok(Ok(())) => {}
            other => {
                warn!(database = %t.name, ?other, "cannot register the database node; its probe does not run");
                return;
            }
        }
    }
    let mut dialect = dialect_for(t.dialect);
    let mut conn: Option<Conn> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if conn.is_none() {
            match t.connect(false, Duration::from_secs(5)).await {
                Ok(mut c) => match dialect.discover(&mut c).await {
                    Ok(d) => {
                        info!(database = %t.name, version = %d.version, missing = ?d.missing_views, "database probe connected");
                        probes.update(&t.name, |s| {
                            s.connected = true;
                            s.last_error = None;
                            s.discovery = d;
                        });
                        conn = Some(c);
                    }
                    Err(e) => probes
                        .update(&t.name, |s| s.last_error = Some(format!("discovery failed: {e}"))),
                },
                Err(e) => {
                    let msg = e.to_string();
                    probes.update(&t.name, |s| {
                        if s.last_error.as_deref() != Some(msg.as_str()) {
                            warn!(database = %t.name, error = %msg, "database unreachable");
                        }
                        s.connected = false;
                        s.last_error = Some(msg);
                    });
                }
            }
        }
        let now = now_ms();
        let sample = match conn.as_mut() {
            Some(c) => {
                match tokio::time::timeout(interval.max(Duration::from_secs(2)), dialect.sample(c))
                    .await
                {
                    Ok(Ok(mut s)) => {
                        s.set(M::Up, Some(1.0));
                        probes.update(&t.name, |st| {
                            st.last_sample_ms = Some(now);
                            st.last_error = None;
                        });
                        s
                    }
                    failed => {
                        let msg = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "sample timed out".into(),
                        };
                        warn!(database = %t.name, error = %msg, "database sample failed; reconnecting");
                        probes.update(&t.name, |s| {
                            s.connected = false;
                            s.last_error = Some(msg);
                        });
                        conn = None;
                        let mut s = Sample::empty();
                        s.set(M::Up, Some(0.0));
                        s
                    }
                }
            }
            None => {
                let mut s = Sample::empty();
                s.set(M::Up, Some(0.0));
                s
            }
        };
        let at = sample.read_ms.unwrap_or(now);
        store_row(&out, &node, Row { ts_ms: at, values: sample.values }).await;
    }
    if let Some(c) = conn {
        let _ = c.disconnect().await;
    }
}

/// Reads the stored samples of a database node in `[from, to]` (plus one
/// before, so the first interval has a start) and derives the API fields.
pub fn series(
    store: &dyn SeriesStore,
    node: &str,
    from_ms: i64,
    to_ms: i64,
    lookback_ms: i64,
) -> Result<Vec<DbFields>, distdiag_store::StoreError> {
    let mut rows: BTreeMap<i64, Sample> = BTreeMap::new();
    for m in ALL {
        let desc = m.desc();
        for (ts, v) in store.query(node, &desc.name, from_ms - lookback_ms, to_ms)? {
            rows.entry(ts).or_insert_with(Sample::empty).values[m as usize] = v;
        }
    }
    let rows: Vec<(i64, Sample)> = rows.into_iter().collect();
    Ok(rows
        .windows(2)
        .filter(|w| w[1].0 >= from_ms)
        .map(|w| derive((w[0].0, &w[0].1), (w[1].0, &w[1].1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(M, f64)]) -> Sample {
        let mut s = Sample::empty();
        for (m, v) in pairs {
            s.set(*m, Some(*v));
        }
        s
    }

    #[test]
    fn fields_come_from_two_samples() {
        let a = sample(&[
            (M::Up, 1.0),
            (M::Queries, 1000.0),
            (M::Transactions, 100.0),
            (M::SqlExecutions, 1000.0),
            (M::SqlTime, 500_000.0),
            (M::CacheRequests, 10_000.0),
            (M::CacheMisses, 100.0),
            (M::IoReadBytes, 0.0),
            (M::IoWriteBytes, 0.0),
            (M::SlowQueries, 3.0),
        ]);
        let b = sample(&[
            (M::Up, 1.0),
            (M::Queries, 3000.0),
            (M::Transactions, 300.0),
            (M::SqlExecutions, 2000.0),
            (M::SqlTime, 1_500_000.0),
            (M::CacheRequests, 20_000.0),
            (M::CacheMisses, 600.0),
            (M::IoReadBytes, 4096.0),
            (M::IoWriteBytes, 4096.0),
            (M::SlowQueries, 5.0),
            (M::Connections, 7.0),
            (M::SessionsActive, 2.0),
        ]);
        let f = derive((0, &a), (2000, &b));
        assert_eq!(f.qps, Some(1000.0));
        assert_eq!(f.tps, Some(100.0));
        // 1 s of statement time over 1000 statements = 1 ms each.
        assert_eq!(f.sql_response_time, Some(1.0));
        assert_eq!(f.cache_hit_ratio, Some(95.0));
        assert_eq!(f.disk_io_bytes, Some(4096.0));
        assert_eq!(f.slow_queries, Some(2.0));
        assert_eq!(f.connection_count, Some(7.0));
        assert_eq!(f.active_sessions, Some(2.0));
        // What the server did not give stays null.
        assert_eq!(f.deadlocks, None);
        assert_eq!(f.replication_lag, None);
        assert_eq!(f.memory_usage, None);
    }

    #[test]
    fn a_down_server_has_no_fields() {
        let a = sample(&[(M::Up, 1.0), (M::Queries, 10.0), (M::Connections, 3.0)]);
        let b = sample(&[(M::Up, 0.0)]);
        let f = derive((0, &a), (1000, &b));
        assert_eq!(f.qps, None);
        assert_eq!(f.connection_count, None);
    }

    #[test]
    fn idle_intervals_report_no_response_time() {
        let a = sample(&[(M::Up, 1.0), (M::SqlExecutions, 5.0), (M::SqlTime, 10.0)]);
        let f = derive((0, &a), (1000, &a));
        assert_eq!(f.sql_response_time, None);
    }

    #[test]
    fn catalog_names_are_valid() {
        for d in catalog() {
            distdiag_common::catalog::validate_metric_name(&d.name).unwrap();
        }
    }
}
