//! Database-level faults, executed by the coordinator through the database:
//! `cache_bottleneck` (OceanBase's memstore limit, MySQL
//! `innodb_buffer_pool_size`), `too_many_indexes`, `workload_surge` and
//! `lock_contention`. As with agent faults, the recovery data is stored
//! *before* anything changes (a document per fault), the fault is a labelled
//! [`FaultRecord`], and the coordinator reverts on request, at the deadline,
//! at shutdown and — from the stored recovery data — at its next start after
//! a crash. Values are bound as statement parameters; the two places SQL
//! cannot take one (`ALTER SYSTEM SET`, DDL names) get integers the code
//! formats and identifiers that passed [`check_ident`].
//!
//! OceanBase's memstore limit: seekdb (1.4) sizes the memstore by
//! `memstore_memory_limit` (bytes; `0M` = half of `memory_budget`, itself 80 %
//! of the host's memory) and keeps `_memstore_limit_percentage` only as a
//! "deprecated compatibility parameter ... ignored by memstore sizing": the
//! earlier fault set that one to 10 and, on the testbed, nothing froze. So the
//! fault sets the first of `memstore_memory_limit` (`bytes`, default 128 MiB),
//! `memstore_limit_percentage`, `_memstore_limit_percentage` (`percent`,
//! default 10) that the server has. The default was measured on one seekdb
//! (4 sysbench `oltp_read_write` threads, 4 × 10,000 rows, about 500 TPS, the
//! memstore at 30-80 MB): 256 MiB changed nothing within 30 s; 128 MiB froze
//! the memstore at once and again every few seconds, and writes stalled in
//! bursts (TPS 330 → 0-120); 96 MiB stopped writes for the whole fault; 64 MiB
//! failed them ("Server runtime memory limit exceeded"). TPS was back to
//! normal within 10 s of the restore.
//!
//! A smaller limit bites only once the memstore holds its freeze trigger
//! (`freeze_trigger_percentage`, 20 %: about 26 MB of 128 MiB). On the seekdb
//! testbed 3 of 12 faults found the memstore at 8-29 MB, just after a dump,
//! and nothing froze in their 25 s: labelled faults with no symptom. So the
//! fault also asks for `ALTER SYSTEM MINOR FREEZE` once the limit is set (no
//! undo needed: the dump is what the limit would have done). Measured on a
//! fresh seekdb at 50 TPS `oltp_read_write`, memstore 4 MB: 128 MiB alone froze
//! nothing; with the freeze, one freeze, writes stalled about 5 s (latency up
//! to 3.6 s), then normal under the smaller limit. With the memstore at 54 MB
//! the limit alone froze twice and stopped writes for the rest of the fault.
//! On the testbed recordings made with the freeze (the latest is
//! `tests/fixtures/campaign-seekdb`) all 12 faults froze at their start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Row;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use distdiag_api::faults::{DbFaultParams, DbFaultSpec, FaultPhase, FaultRecord, RecordSpec};
use distdiag_store::now_ms;
use distdiag_store::{SeriesStore, StoreError};
use distdiag_workload::db::{check_ident, col_f64, col_string, DbError, DbTarget, DialectKind};
use distdiag_workload::Workloads;

/// Collection of recovery documents.
const RECOVERY: &str = "dbfault_recovery";

#[derive(Debug, thiserror::Error)]
pub enum DbFaultError {
    #[error("{0}")]
    Invalid(String),
    #[error("no active database fault {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("database {target}: {reason}")]
    Sql { target: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What it takes to undo a fault, stored before it is applied.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// An OceanBase parameter (`ALTER SYSTEM`) or a MySQL global variable, and its previous value.
    ObParameter {
        name: String,
        previous: String,
    },
    MysqlVariable {
        name: String,
        previous: u64,
    },
    /// Indexes (table, index) this fault creates; dropped if they exist.
    Indexes {
        indexes: Vec<(String, String)>,
    },
    /// The run and its concurrency before the surge.
    Surge {
        workload_id: String,
        previous_threads: usize,
    },
    /// Sessions holding row locks end with their connections: nothing to restore.
    Sessions,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct RecoveryDoc {
    fault_id: String,
    database: String,
    recovery: Recovery,
}

struct Live {
    rec: FaultRecord,
    target: Option<DbTarget>,
    recovery: Recovery,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub struct DbFaults {
    store: Arc<dyn SeriesStore>,
    targets: Vec<DbTarget>,
    workloads: Arc<Workloads>,
    live: Mutex<BTreeMap<String, Live>>,
    seq: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sql_err(t: &DbTarget, e: impl std::fmt::Display) -> DbFaultError {
    DbFaultError::Sql { target: t.name.clone(), reason: e.to_string() }
}

impl DbFaults {
    pub fn new(
        store: Arc<dyn SeriesStore>,
        targets: Vec<DbTarget>,
        workloads: Arc<Workloads>,
    ) -> Arc<Self> {
        Arc::new(DbFaults {
            store,
            targets,
            workloads,
            live: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    fn target(&self, name: Option<&str>) -> Result<DbTarget, DbFaultError> {
        Ok(distdiag_workload::db::find(&self.targets, name, true)?.clone())
    }

    /// Turns a request into a spec, with defaults, checking names and ranges.
    pub fn spec_from(&self, kind: &str, p: DbFaultParams) -> Result<DbFaultSpec, DbFaultError> {
        let bad = |m: String| Err(DbFaultError::Invalid(m));
        match kind {
            "cache_bottleneck" => {
                let t = self.target(p.database.as_deref())?;
                let (percent, bytes) = match t.dialect {
                    // Which of the two applies depends on the server's
                    // parameters, read when the fault starts.
                    DialectKind::Oceanbase => {
                        if p.percent.is_some() && p.bytes.is_some() {
                            return bad("cache_bottleneck: give percent or bytes, not both".into());
                        }
                        (p.percent, p.bytes)
                    }
                    DialectKind::Mysql => {
                        if p.percent.is_some() {
                            return bad("cache_bottleneck: a MySQL buffer pool is sized in bytes, not percent".into());
                        }
                        (None, Some(p.bytes.unwrap_or(8 << 20)))
                    }
                };
                if let Some(pc) = percent {
                    if !(1..=99).contains(&pc) {
                        return bad(format!("cache_bottleneck: percent = {pc} is outside 1..=99"));
                    }
                }
                if let Some(b) = bytes {
                    if !(1 << 20..=1 << 40).contains(&b) {
                        return bad(format!(
                            "cache_bottleneck: bytes = {b} is outside 1 MiB ..= 1 TiB"
                        ));
                    }
                }
                Ok(DbFaultSpec::CacheBottleneck { database: t.name, percent, bytes })
            }
            "too_many_indexes" => {
                let t = self.target(p.database.as_deref())?;
                let count = p.count.unwrap_or(10);
                if !(1..=64).contains(&count) {
                    return bad(format!("too_many_indexes: count = {count} is outside 1..=64"));
                }
                let tables =
                    if p.tables.is_empty() { vec!["sbtest1".to_owned()] } else { p.tables };
                for tb in &tables {
                    check_ident(tb).map_err(|e| {
                        DbFaultError::Invalid(format!("too_many_indexes: table {e}"))
                    })?;
                }
                Ok(DbFaultSpec::TooManyIndexes { database: t.name, count, tables })
            }
            "workload_surge" => {
                let id = match p.workload_id {
                    Some(id) => id,
                    None => {
                        let running: Vec<_> = self
                            .workloads
                            .active()
                            .into_iter()
                            .filter(|r| r.phase() == distdiag_workload::Phase::Running)
                            .collect();
                        match running.as_slice() {
                            [one] => one.id.clone(),
                            [] => return bad("workload_surge: no workload is running".into()),
                            _ => return bad("workload_surge: several workloads run; name one in params.workload_id".into()),
                        }
                    }
                };
                let run = self
                    .workloads
                    .get(&id)
                    .filter(|r| r.phase() == distdiag_workload::Phase::Running)
                    .ok_or_else(|| {
                        DbFaultError::Invalid(format!(
                            "workload_surge: workload {id:?} is not running"
                        ))
                    })?;
                let threads =
                    p.threads.unwrap_or((run.threads() * 4).min(distdiag_workload::MAX_THREADS));
                if threads <= run.threads() || threads > distdiag_workload::MAX_THREADS {
                    return bad(format!("workload_surge: threads = {threads} must be above the current {} and at most {}", run.threads(), distdiag_workload::MAX_THREADS));
                }
                Ok(DbFaultSpec::WorkloadSurge { workload_id: id, threads })
            }
            "lock_contention" => {
                let t = self.target(p.database.as_deref())?;
                let table = p.table.unwrap_or_else(|| "sbtest1".into());
                check_ident(&table)
                    .map_err(|e| DbFaultError::Invalid(format!("lock_contention: table {e}")))?;
                let (rows, sessions, hold_ms) =
                    (p.rows.unwrap_or(4), p.sessions.unwrap_or(8), p.hold_ms.unwrap_or(200));
                if !(1..=1000).contains(&rows)
                    || !(1..=64).contains(&sessions)
                    || !(1..=10_000).contains(&hold_ms)
                {
                    return bad(format!("lock_contention: rows {rows} (1..=1000), sessions {sessions} (1..=64), hold_ms {hold_ms} (1..=10000)"));
                }
                Ok(DbFaultSpec::LockContention { database: t.name, table, rows, sessions, hold_ms })
            }
            other => bad(format!("{other:?} is not a database fault")),
        }
    }

    fn save_recovery(
        &self,
        id: &str,
        database: &str,
        recovery: &Recovery,
    ) -> Result<(), DbFaultError> {
        let doc = RecoveryDoc {
            fault_id: id.to_owned(),
            database: database.to_owned(),
            recovery: recovery.clone(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| DbFaultError::Invalid(e.to_string()))?;
        self.store.put_doc(RECOVERY, id, &bytes)?;
        Ok(())
    }

    /// Applies a fault until `duration_ms` from now.
    pub async fn apply(
        self: &Arc<Self>,
        spec: DbFaultSpec,
        duration_ms: u64,
    ) -> Result<FaultRecord, DbFaultError> {
        let now = now_ms();
        let id = format!("d{now}-{}", self.seq.fetch_add(1, Ordering::Relaxed));
        let (target, node) = match &spec {
            DbFaultSpec::WorkloadSurge { workload_id, .. } => {
                let run = self.workloads.get(workload_id).ok_or_else(|| {
                    DbFaultError::Invalid(format!("unknown workload {workload_id:?}"))
                })?;
                let node =
                    run.targets.first().map(|t| t.label_node()).unwrap_or_else(|| "cluster".into());
                // A surge on a run over several databases is a cluster-wide fault.
                let node = if run.targets.len() > 1 { "cluster".into() } else { node };
                (None, node)
            }
            DbFaultSpec::CacheBottleneck { database, .. }
            | DbFaultSpec::TooManyIndexes { database, .. }
            | DbFaultSpec::LockContention { database, .. } => {
                let t = self.target(Some(database))?;
                let node = t.label_node();
                (Some(t), node)
            }
        };
        let mut rec = FaultRecord {
            id: id.clone(),
            node,
            kind: spec.kind().to_owned(),
            spec: RecordSpec::Database(spec.clone()),
            requested_ms: now,
            applied_ms: None,
            deadline_ms: now.saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX)),
            ended_ms: None,
            state: FaultPhase::Pending,
            detail: String::new(),
            chaos: None,
        };
        self.store.save_fault(&rec)?;
        let (stop, _) = watch::channel(false);
        let applied = self.execute(&id, &spec, target.as_ref(), &stop).await;
        let (recovery, tasks, detail) = match applied {
            Ok(x) => x,
            Err(e) => {
                rec.state = FaultPhase::Failed;
                rec.ended_ms = Some(now_ms());
                rec.detail = e.to_string();
                self.store.save_fault(&rec)?;
                let _ = self.store.delete_doc(RECOVERY, &id);
                return Err(e);
            }
        };
        rec.state = FaultPhase::Applied;
        rec.applied_ms = Some(now_ms());
        rec.detail = detail;
        self.store.save_fault(&rec)?;
        info!(fault = %id, kind = rec.kind, node = %rec.node, "database fault applied");
        // The deadline.
        let this = self.clone();
        let fid = id.clone();
        let mut stopped = stop.subscribe();
        // Not among the tasks a revert waits for: the timer itself reverts
        // (waiting for itself would hold the revert up), and a revert from
        // elsewhere ends it through the stop signal.
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(duration_ms)) => {
                    let _ = this.revert_as(&fid, FaultPhase::Expired).await;
                }
                _ = stopped.changed() => {}
            }
        });
        lock(&self.live).insert(id, Live { rec: rec.clone(), target, recovery, stop, tasks });
        Ok(rec)
    }

    /// Does the change; returns the recovery, tasks that hold the fault, and a detail.
    async fn execute(
        &self,
        id: &str,
        spec: &DbFaultSpec,
        t: Option<&DbTarget>,
        stop: &watch::Sender<bool>,
    ) -> Result<(Recovery, Vec<tokio::task::JoinHandle<()>>, String), DbFaultError> {
        match (spec, t) {
            (DbFaultSpec::CacheBottleneck { percent, bytes, .. }, Some(t)) => {
                let mut c = t.connect(false, Duration::from_secs(5)).await?;
                let out = match t.dialect {
                    DialectKind::Oceanbase => {
                        let (name, previous) = memstore_parameter(&mut c, t).await?;
                        let value = match (name, percent, bytes) {
                            (MEMSTORE_BYTES, Some(_), _) => {
                                return Err(DbFaultError::Invalid(format!("cache_bottleneck: {} sizes its memstore by {MEMSTORE_BYTES}: give bytes, not percent", t.name)));
                            }
                            (MEMSTORE_BYTES, None, b) => {
                                format!("'{}M'", b.unwrap_or(128 << 20).div_ceil(1 << 20))
                            }
                            (_, _, Some(_)) => {
                                return Err(DbFaultError::Invalid(format!("cache_bottleneck: {} sizes its memstore by {name} (percent), not bytes", t.name)));
                            }
                            (_, p, None) => p.unwrap_or(10).to_string(),
                        };
                        let recovery = Recovery::ObParameter {
                            name: name.to_owned(),
                            previous: previous.clone(),
                        };
                        self.save_recovery(id, &t.name, &recovery)?;
                        // ALTER SYSTEM binds no parameters: the text holds a name from
                        // the list and a number the code formatted.
                        c.query_drop(format!("ALTER SYSTEM SET {name} = {value}"))
                            .await
                            .map_err(|e| sql_err(t, e))?;
                        let mut detail =
                            format!("{name}: {previous} -> {}", value.trim_matches('\''));
                        // The freeze the smaller limit would trigger once the
                        // memstore is full enough, now (the module doc says why).
                        // A server that refuses it still has the smaller limit.
                        match c.query_drop("ALTER SYSTEM MINOR FREEZE").await {
                            Ok(()) => detail.push_str(", minor freeze"),
                            Err(e) => {
                                warn!(target = %t.name, "cache_bottleneck: minor freeze refused: {e}");
                                detail.push_str(&format!(", minor freeze refused: {e}"));
                            }
                        }
                        (recovery, detail)
                    }
                    DialectKind::Mysql => {
                        let b = bytes.unwrap_or(8 << 20);
                        let prev: Option<u64> = c
                            .query_first("SELECT @@GLOBAL.innodb_buffer_pool_size")
                            .await
                            .map_err(|e| sql_err(t, e))?;
                        let prev =
                            prev.ok_or_else(|| sql_err(t, "innodb_buffer_pool_size is unknown"))?;
                        let recovery = Recovery::MysqlVariable {
                            name: "innodb_buffer_pool_size".into(),
                            previous: prev,
                        };
                        self.save_recovery(id, &t.name, &recovery)?;
                        c.exec_drop("SET GLOBAL innodb_buffer_pool_size = ?", (b,))
                            .await
                            .map_err(|e| sql_err(t, e))?;
                        let now: Option<u64> = c
                            .query_first("SELECT @@GLOBAL.innodb_buffer_pool_size")
                            .await
                            .map_err(|e| sql_err(t, e))?;
                        (
                            recovery,
                            format!("innodb_buffer_pool_size: {prev} -> {}", now.unwrap_or(b)),
                        )
                    }
                };
                let _ = c.disconnect().await;
                Ok((out.0, Vec::new(), out.1))
            }
            (DbFaultSpec::TooManyIndexes { count, tables, .. }, Some(t)) => {
                let mut c = t.connect(true, Duration::from_secs(5)).await?;
                // Columns of each table, to index in turn.
                let mut plan: Vec<(String, Vec<String>)> = Vec::new();
                let tag = id.trim_start_matches('d').replace('-', "_");
                for tb in tables {
                    let cols: Vec<String> = c
                        .exec("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", (t.schema.as_str(), tb.as_str()))
                        .await
                        .map_err(|e| sql_err(t, e))?;
                    if cols.is_empty() {
                        return Err(DbFaultError::Invalid(format!("too_many_indexes: table {}.{tb} does not exist (prepare a workload first)", t.schema)));
                    }
                    for col in &cols {
                        check_ident(col).map_err(|e| sql_err(t, format!("column {e}")))?;
                    }
                    plan.push((tb.clone(), cols));
                }
                let mut indexes = Vec::new();
                let mut ddl = Vec::new();
                for n in 0..*count as usize {
                    let (tb, cols) = &plan[n % plan.len()];
                    let round = n / plan.len();
                    // Single columns first, then pairs.
                    let a = &cols[round % cols.len()];
                    let b = &cols[(round / cols.len() + round + 1) % cols.len()];
                    let columns = if round < cols.len() { a.clone() } else { format!("{a}, {b}") };
                    let name = format!("dd{tag}_{n}");
                    indexes.push((tb.clone(), name.clone()));
                    ddl.push(format!("CREATE INDEX {name} ON {tb} ({columns})"));
                }
                let recovery = Recovery::Indexes { indexes };
                self.save_recovery(id, &t.name, &recovery)?;
                for stmt in &ddl {
                    if let Err(e) = c.query_drop(stmt.as_str()).await {
                        let _ = c.disconnect().await;
                        let _ = undo(t, &recovery).await;
                        return Err(sql_err(t, e));
                    }
                }
                let _ = c.disconnect().await;
                Ok((recovery, Vec::new(), format!("{count} indexes on {}", tables.join(", "))))
            }
            (DbFaultSpec::WorkloadSurge { workload_id, threads }, _) => {
                let run = self.workloads.get(workload_id).ok_or_else(|| {
                    DbFaultError::Invalid(format!("unknown workload {workload_id:?}"))
                })?;
                let recovery = Recovery::Surge {
                    workload_id: workload_id.clone(),
                    previous_threads: run.threads(),
                };
                self.save_recovery(id, "", &recovery)?;
                let before =
                    run.set_threads(*threads).map_err(|e| DbFaultError::Invalid(e.to_string()))?;
                Ok((recovery, Vec::new(), format!("{workload_id}: threads {before} -> {threads}")))
            }
            (DbFaultSpec::LockContention { table, rows, sessions, hold_ms, .. }, Some(t)) => {
                let mut c = t.connect(true, Duration::from_secs(5)).await?;
                let q = format!("SELECT MIN(id), MAX(id) FROM {table}");
                let r: Option<Row> = c.query_first(q).await.map_err(|e| sql_err(t, format!("{e} (lock_contention needs a table with an integer id and k column, e.g. a prepared OLTP table)")))?;
                let _ = c.disconnect().await;
                let (lo, hi) = r.map(|r| (col_f64(&r, 0), col_f64(&r, 1))).unwrap_or((None, None));
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    return Err(DbFaultError::Invalid(format!(
                        "lock_contention: table {table} is empty"
                    )));
                };
                // The hot rows sit in the middle, where sysbench's special distribution draws most.
                let mid = ((lo + hi) / 2.0) as u64;
                let first = mid.saturating_sub(u64::from(*rows) / 2).max(lo as u64);
                self.save_recovery(id, &t.name, &Recovery::Sessions)?;
                let sql = format!("UPDATE {table} SET k = k + 1 WHERE id BETWEEN ? AND ?");
                let mut tasks = Vec::new();
                for _ in 0..*sessions {
                    let (t, sql, mut stop_rx) = (t.clone(), sql.clone(), stop.subscribe());
                    let (hold, last) =
                        (Duration::from_millis(*hold_ms), first + u64::from(*rows) - 1);
                    tasks.push(tokio::spawn(async move {
                        let mut conn = None;
                        loop {
                            if *stop_rx.borrow() {
                                break;
                            }
                            if conn.is_none() {
                                conn = t.connect(true, Duration::from_secs(5)).await.ok();
                                if conn.is_none() {
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                    continue;
                                }
                            }
                            let Some(c) = conn.as_mut() else { continue };
                            let ok = async {
                                c.query_drop("BEGIN").await?;
                                c.exec_drop(sql.as_str(), (first, last)).await?;
                                Ok::<(), mysql_async::Error>(())
                            }
                            .await;
                            if ok.is_ok() {
                                // Hold the row locks.
                                tokio::select! {
                                    _ = tokio::time::sleep(hold) => {}
                                    _ = stop_rx.changed() => {}
                                }
                            }
                            if c.query_drop("COMMIT").await.is_err() {
                                conn = None;
                            }
                        }
                        if let Some(c) = conn {
                            let _ = c.disconnect().await;
                        }
                    }));
                }
                Ok((Recovery::Sessions, tasks, format!("{sessions} sessions holding rows {first}..={} of {table} for {hold_ms} ms at a time", first + u64::from(*rows) - 1)))
            }
            (_, None) => Err(DbFaultError::Invalid("no database for this fault".into())),
        }
    }

    pub fn is_db_fault(&self, id: &str) -> bool {
        lock(&self.live).contains_key(id)
    }

    pub async fn revert(&self, id: &str) -> Result<FaultRecord, DbFaultError> {
        self.revert_as(id, FaultPhase::Reverted).await
    }

    async fn revert_as(&self, id: &str, phase: FaultPhase) -> Result<FaultRecord, DbFaultError> {
        let live =
            lock(&self.live).remove(id).ok_or_else(|| DbFaultError::Unknown(id.to_owned()))?;
        let _ = live.stop.send(true);
        for t in live.tasks {
            if tokio::time::timeout(Duration::from_secs(15), t).await.is_err() {
                warn!(fault = %id, "a lock session did not end in time");
            }
        }
        let mut rec = live.rec;
        let result = match (&live.recovery, &live.target) {
            (Recovery::Surge { workload_id, previous_threads }, _) => {
                if let Some(run) = self.workloads.get(workload_id) {
                    if run.phase() == distdiag_workload::Phase::Running {
                        let _ = run.set_threads(*previous_threads);
                    }
                }
                Ok(())
            }
            (r, Some(t)) => undo(t, r).await,
            (_, None) => Ok(()),
        };
        rec.ended_ms = Some(now_ms());
        match result {
            Ok(()) => {
                rec.state = phase;
                let _ = self.store.delete_doc(RECOVERY, id);
            }
            Err(e) => {
                // The recovery document stays: the next start tries again.
                rec.state = FaultPhase::Failed;
                rec.detail = format!("revert failed: {e}");
                warn!(fault = %id, error = %e, "database fault revert failed; will retry at next start");
            }
        }
        self.store.save_fault(&rec)?;
        info!(fault = %id, state = ?rec.state, "database fault ended");
        Ok(rec)
    }

    pub async fn revert_all(&self) -> (Vec<FaultRecord>, Vec<(String, String)>) {
        let ids: Vec<String> = lock(&self.live).keys().cloned().collect();
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for id in ids {
            match self.revert(&id).await {
                Ok(r) => done.push(r),
                Err(DbFaultError::Unknown(_)) => {}
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        (done, failed)
    }

    pub fn active(&self) -> Vec<FaultRecord> {
        lock(&self.live).values().map(|l| l.rec.clone()).collect()
    }

    /// Undoes what a previous run left applied (its recovery documents), and
    /// closes those faults' records.
    pub async fn recover(&self) -> Vec<(String, Result<(), String>)> {
        let docs = self.store.docs(RECOVERY).unwrap_or_default();
        let mut out = Vec::new();
        for (id, bytes) in docs {
            if self.is_db_fault(&id) {
                // Applied by this run: its own revert handles it.
                continue;
            }
            let Ok(doc) = serde_json::from_slice::<RecoveryDoc>(&bytes) else {
                out.push((id, Err("unreadable recovery document".into())));
                continue;
            };
            let res = match (&doc.recovery, self.targets.iter().find(|t| t.name == doc.database)) {
                (Recovery::Surge { .. } | Recovery::Sessions, _) => Ok(()),
                (r, Some(t)) => undo(t, r).await.map_err(|e| e.to_string()),
                (_, None) => Err(format!("database {:?} is no longer configured", doc.database)),
            };
            if res.is_ok() {
                let _ = self.store.delete_doc(RECOVERY, &id);
                if let Ok(recs) = self.store.faults(i64::MIN, i64::MAX) {
                    if let Some(mut rec) = recs.into_iter().find(|r| r.id == doc.fault_id) {
                        // Live, or closed as failed by a revert that did not get through.
                        if rec.state.is_live() || rec.detail.starts_with("revert failed") {
                            rec.state = FaultPhase::Reverted;
                            rec.ended_ms = Some(now_ms());
                            rec.detail = "reverted at coordinator start (the previous run ended with it applied)".into();
                            let _ = self.store.save_fault(&rec);
                        }
                    }
                }
                info!(fault = %id, "database fault left by a previous run reverted");
            } else if let Err(e) = &res {
                warn!(fault = %id, error = %e, "cannot revert a database fault left by a previous run");
            }
            out.push((id, res));
        }
        out
    }
}

/// Restores what a recovery document describes.
async fn undo(t: &DbTarget, r: &Recovery) -> Result<(), DbFaultError> {
    let mut c = t.connect(true, Duration::from_secs(5)).await?;
    let res = async {
        match r {
            Recovery::ObParameter { name, previous } => {
                if !MEMSTORE_PARAMETERS.contains(&name.as_str()) {
                    return Err(sql_err(t, format!("refusing to set unexpected parameter {name:?}")));
                }
                let v = parameter_literal(name, previous).map_err(|e| sql_err(t, e))?;
                c.query_drop(format!("ALTER SYSTEM SET {name} = {v}")).await.map_err(|e| sql_err(t, e))
            }
            Recovery::MysqlVariable { name, previous } => {
                if name != "innodb_buffer_pool_size" {
                    return Err(sql_err(t, format!("refusing to set unexpected variable {name:?}")));
                }
                c.exec_drop("SET GLOBAL innodb_buffer_pool_size = ?", (previous,)).await.map_err(|e| sql_err(t, e))
            }
            Recovery::Indexes { indexes } => {
                for (table, index) in indexes {
                    check_ident(table).map_err(DbFaultError::Invalid)?;
                    check_ident(index).map_err(DbFaultError::Invalid)?;
                    let exists: Option<Option<String>> = c
                        .exec_first("SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = ? LIMIT 1", (t.schema.as_str(), table.as_str(), index.as_str()))
                        .await
                        .map_err(|e| sql_err(t, e))?;
                    if exists.is_some() {
                        c.query_drop(format!("DROP INDEX {index} ON {table}")).await.map_err(|e| sql_err(t, e))?;
                    }
                }
                Ok(())
            }
            Recovery::Surge { .. } | Recovery::Sessions => Ok(()),
        }
    }
    .await;
    let _ = c.disconnect().await;
    res
}

/// seekdb's memstore limit in bytes; the two below it are percentages.
const MEMSTORE_BYTES: &str = "memstore_memory_limit";
/// The parameters that can size an OceanBase memstore, in the order the
/// fault prefers them (the module doc says why).
const MEMSTORE_PARAMETERS: [&str; 3] =
    [MEMSTORE_BYTES, "memstore_limit_percentage", "_memstore_limit_percentage"];

/// The first of [`MEMSTORE_PARAMETERS`] the server has, and its value.
async fn memstore_parameter(
    c: &mut mysql_async::Conn,
    t: &DbTarget,
) -> Result<(&'static str, String), DbFaultError> {
    let rows: Vec<Row> = c
        .exec(
            "SELECT NAME, VALUE FROM oceanbase.V$OB_PARAMETERS WHERE NAME IN (?, ?, ?)",
            (MEMSTORE_PARAMETERS[0], MEMSTORE_PARAMETERS[1], MEMSTORE_PARAMETERS[2]),
        )
        .await
        .map_err(|e| sql_err(t, e))?;
    let found: BTreeMap<String, String> = rows
        .iter()
        .filter_map(|r| Some((col_string(r, 0)?, col_string(r, 1).unwrap_or_default())))
        .collect();
    for name in MEMSTORE_PARAMETERS {
        if let Some(v) = found.get(name) {
            let v = v.trim().to_owned();
            // Checked now, so that what is stored can be written back.
            parameter_literal(name, &v).map_err(|e| sql_err(t, e))?;
            return Ok((name, v));
        }
    }
    Err(sql_err(t, format!("none of {} exists", MEMSTORE_PARAMETERS.join(", "))))
}

/// The SQL literal that sets `name` to `value`, if `value` has the form the
/// parameter takes (digits; for the byte size, digits and one unit letter).
fn parameter_literal(name: &str, value: &str) -> Result<String, String> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    if name == MEMSTORE_BYTES {
        let (num, unit) = value.split_at(value.len().saturating_sub(1));
        if (digits(num) && matches!(unit, "K" | "M" | "G" | "T" | "k" | "m" | "g" | "t"))
            || digits(value)
        {
            return Ok(format!("'{value}'"));
        }
    } else if digits(value) && value.parse::<u32>().is_ok() {
        return Ok(value.to_owned());
    }
    Err(format!("{name} is {value:?}, not a value this fault can write back; not touching it"))
}

/// Current value of the setting a cache fault changes (for tests and checks).
pub async fn cache_setting(t: &DbTarget) -> Result<String, DbFaultError> {
    let mut c = t.connect(false, Duration::from_secs(5)).await?;
    let v = match t.dialect {
        DialectKind::Oceanbase => {
            let (name, value) = memstore_parameter(&mut c, t).await?;
            format!("{name}={value}")
        }
        DialectKind::Mysql => {
            let v: Option<u64> = c
                .query_first("SELECT @@GLOBAL.innodb_buffer_pool_size")
                .await
                .map_err(|e| sql_err(t, e))?;
            format!("innodb_buffer_pool_size={}", v.unwrap_or(0))
        }
    };
    let _ = c.disconnect().await;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_of_the_parameters_form_are_written_back() {
        assert_eq!(parameter_literal(MEMSTORE_BYTES, "0M").unwrap(), "'0M'");
        assert_eq!(parameter_literal(MEMSTORE_BYTES, "2G").unwrap(), "'2G'");
        assert_eq!(parameter_literal(MEMSTORE_BYTES, "1048576").unwrap(), "'1048576'");
        assert_eq!(parameter_literal("memstore_limit_percentage", "50").unwrap(), "50");
        for (name, bad) in [
            (MEMSTORE_BYTES, "0M'; DROP TABLE t; --"),
            (MEMSTORE_BYTES, "M"),
            (MEMSTORE_BYTES, "12MB"),
            (MEMSTORE_BYTES, ""),
            ("memstore_limit_percentage", "10M"),
            ("_memstore_limit_percentage", "99999999999"),
        ] {
            let e = parameter_literal(name, bad).unwrap_err();
            assert!(e.contains("not touching it"), "{name}={bad:?}: {e}");
        }
    }
}
