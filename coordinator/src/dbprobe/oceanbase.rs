//! OceanBase and seekdb. GV$SYSSTAT is the richest source where the server
//! has it. Without it (seekdb 1.4 has none of the V$SYSSTAT family) every
//! rate comes from a counter that survives plan-cache eviction:
//!
//! | field | source |
//! |---|---|
//! | qps | `__all_virtual_plan_cache_stat.access_count`: every statement that passes the plan cache (SELECT, INSERT, UPDATE, DELETE, REPLACE, text or prepared); BEGIN, COMMIT, SET and SHOW do not, so a sysbench `oltp_read_write` event counts 18 of its 20 statements |
//! | tps | `__all_virtual_id_service` (service 1, transaction ids): `last_id` grows by one per transaction that takes an id: explicit transactions, read-only ones too, and autocommit writes; an autocommit SELECT takes none |
//! | sql_response_time, cache_hit_ratio, slow_queries | `V$OB_PLAN_CACHE_PLAN_STAT`, as increases per plan id, summed: a plan that leaves the cache loses only its last interval, instead of its whole history turning the sum back |
//! | deadlocks | `DBA_OB_DEADLOCK_EVENT_HISTORY`, victims newer than the last one counted |
//! | connection_count, active_sessions | `V$OB_PROCESSLIST` |
//! | disk_iops | `V$OB_GROUP_IO_STAT` |
//! | memory_usage | `V$OB_MEMORY` |
//! | series `db.cache_used`, `db.cache_freezes`, `db.memtables` | `__all_virtual_tablet_memstore_info`: `mem_used` of every memtable, active or frozen, summed; the largest `freeze_clock` (one per freeze); the memtables (one per tablet written since its dump: new indexes add theirs) |
//! | series `db.cache_limit` | `__all_virtual_memstore_info.memstore_limit`, the limit the server applies (`memstore_memory_limit`, or its share of the memory budget when that is `0M`), first row only: on seekdb 1.4 a scan of the whole view fails with "Size overflow" once the memstore has frozen, `LIMIT 1` does not (10.1 GB → 128 MiB → 10.1 GB through a `cache_bottleneck`, read every 2 s) |
//!
//! Measured on seekdb 1.4 with sysbench-style `oltp_read_write` (2 threads,
//! 2 × 1,000 rows): the sum of `EXECUTIONS` over the plan cache fell each
//! time plans were evicted (a re-prepare drops and re-creates the tables),
//! which the derivation took for a reset: one interval read 32,009 qps on a
//! 10,000 qps load and the next 2.5. The remaining swings are the server's:
//! two workers deadlock on rows (sysbench's `special` distribution piles
//! draws on a few rows of a small table), and seekdb's detector (LCL,
//! `_lcl_op_interval` 5 s) or else `ob_query_timeout` (10 s) breaks the cycle
//! only after seconds; every transaction waits meanwhile, the workload's own
//! count shows the same stall, and `__all_virtual_lock_wait_stat` shows the
//! two sessions waiting on each other. See docs/seekdb-probe.md.
//! Which views exist is read from information_schema at connect time; the
//! missing ones are reported.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::{BoxFuture, Dialect, Discovery, Sample, TenantMetrics, M};
use distdiag_workload::db::{col_f64, col_string, DialectKind};

const PLAN_STAT: &str = "V$OB_PLAN_CACHE_PLAN_STAT";
const PLAN_CACHE: &str = "__ALL_VIRTUAL_PLAN_CACHE_STAT";
const ID_SERVICE: &str = "__ALL_VIRTUAL_ID_SERVICE";
const DEADLOCKS: &str = "DBA_OB_DEADLOCK_EVENT_HISTORY";
const MEMTABLES: &str = "__ALL_VIRTUAL_TABLET_MEMSTORE_INFO";
const MEMSTORE: &str = "__ALL_VIRTUAL_MEMSTORE_INFO";

/// Views the dialect can use, in the `oceanbase` schema (upper case, as
/// compared).
const VIEWS: &[&str] = &[
    "GV$SYSSTAT",
    PLAN_STAT,
    PLAN_CACHE,
    ID_SERVICE,
    DEADLOCKS,
    MEMTABLES,
    MEMSTORE,
    "V$OB_PROCESSLIST",
    "V$OB_GROUP_IO_STAT",
    "V$OB_MEMORY",
    "V$OB_SERVER_STAT",
    "DBA_OB_TENANTS",
];

/// GV$SYSSTAT statistic names summed into each series.
const SYSSTAT: &[(M, &[&str])] = &[
    (
        M::Queries,
        &[
            "sql select count",
            "sql insert count",
            "sql update count",
            "sql delete count",
            "sql replace count",
            "sql other count",
        ],
    ),
    (M::Transactions, &["trans commit count", "trans rollback count"]),
    (
        M::SqlExecutions,
        &[
            "sql select count",
            "sql insert count",
            "sql update count",
            "sql delete count",
            "sql replace count",
            "sql other count",
        ],
    ),
    (
        M::SqlTime,
        &[
            "sql select time",
            "sql insert time",
            "sql update time",
            "sql delete time",
            "sql replace time",
            "sql other time",
        ],
    ),
    (M::IoReadBytes, &["io read bytes"]),
    (M::IoWriteBytes, &["io write bytes"]),
    (M::IoOps, &["io read count", "io write count"]),
    (M::CacheRequests, &["row cache hit", "row cache miss", "block cache hit", "block cache miss"]),
    (M::CacheMisses, &["row cache miss", "block cache miss"]),
    (M::SessionsActive, &["active sessions"]),
    (M::MemoryUsed, &["memory usage"]),
];

/// Per-plan figures read from the plan cache, in this order.
const PLAN_COLS: usize = 5; // executions, elapsed µs, buffer gets, disk reads, slow count

/// Counters the dialect keeps itself where the server's vanish.
#[derive(Default)]
struct Counters {
    /// Last reading per plan id.
    plans: HashMap<i64, [f64; PLAN_COLS]>,
    /// Sum of every plan's increases since the probe started.
    totals: [f64; PLAN_COLS],
    /// Deadlock victims counted, and the newest report time among them (µs).
    deadlocks: f64,
    deadlock_seen_us: i64,
    /// Whether the first reading has been taken. It only sets the baseline:
    /// the counters start at 0 from there, so that after a coordinator
    /// restart the first interval is not the plan cache's (or the deadlock
    /// history's) whole past read as one interval's increase.
    primed: bool,
}

impl Counters {
    /// One sample's plan-cache rows and new deadlock victims (count, newest
    /// report time) in; the counters out. The first reading sets the
    /// baseline and reads 0.
    fn reading(
        &mut self,
        plans: Option<Vec<(i64, [f64; PLAN_COLS])>>,
        victims: Option<(f64, Option<i64>)>,
    ) -> (Option<[f64; PLAN_COLS]>, Option<f64>) {
        let totals = plans.map(|p| {
            self.fold_plans(p);
            if !self.primed {
                self.totals = [0.0; PLAN_COLS];
            }
            self.totals
        });
        let deadlocks = victims.map(|(n, newest)| {
            if self.primed {
                self.deadlocks += n;
            }
            if let Some(t) = newest {
                self.deadlock_seen_us = self.deadlock_seen_us.max(t);
            }
            self.deadlocks
        });
        self.primed = true;
        (totals, deadlocks)
    }

    /// Folds a plan-cache reading in: a plan seen before adds its increase
    /// (never negative), a new plan all it has done (it was created since
    /// the last reading), and a plan that is gone adds nothing more.
    fn fold_plans(&mut self, rows: impl IntoIterator<Item = (i64, [f64; PLAN_COLS])>) {
        let mut next = HashMap::with_capacity(self.plans.len());
        for (id, cur) in rows {
            let prev = self.plans.get(&id);
            for (i, v) in cur.iter().enumerate() {
                let before = prev.map_or(0.0, |p| p[i]);
                // A plan id reused after a server restart reads lower: count it afresh.
                self.totals[i] += if *v >= before { v - before } else { *v };
            }
            next.insert(id, cur);
        }
        self.plans = next;
    }
}

#[derive(Default)]
pub(super) struct OceanBase {
    views: BTreeSet<String>,
    counters: Mutex<Counters>,
}

impl OceanBase {
    fn has(&self, v: &str) -> bool {
        self.views.contains(v)
    }
}

fn sum_of(stats: &HashMap<String, f64>, names: &[&str]) -> Option<f64> {
    let vals: Option<Vec<f64>> = names.iter().map(|n| stats.get(*n).copied()).collect();
    vals.map(|v| v.iter().sum())
}

impl OceanBase {
    /// The rates of a server without GV$SYSSTAT, from counters that do not
    /// vanish (see the module's table).
    async fn sample_counters(
        &self,
        c: &mut Conn,
        s: &mut Sample,
    ) -> Result<(), mysql_async::Error> {
        // The two rate counters first, in one round trip: the sample's
        // timestamp is taken just before it, and qps and tps are compared
        // second by second with what clients counted.
        let accesses_sql =
            "(SELECT SUM(access_count) FROM oceanbase.__all_virtual_plan_cache_stat)";
        let txids_sql = "(SELECT MAX(last_id) FROM oceanbase.__all_virtual_id_service WHERE id_service_type = 1)";
        let (accesses, txids): (Option<f64>, Option<f64>) =
            match (self.has(PLAN_CACHE), self.has(ID_SERVICE)) {
                (false, false) => (None, None),
                (a, t) => {
                    let sql = format!(
                        "SELECT {}, {}",
                        if a { accesses_sql } else { "NULL" },
                        if t { txids_sql } else { "NULL" }
                    );
                    let (r, at) = super::timed(c.query_first::<Row, _>(sql)).await;
                    s.read_ms = Some(at);
                    r?.map_or((None, None), |r| (col_f64(&r, 0), col_f64(&r, 1)))
                }
            };
        let plans: Option<Vec<(i64, [f64; PLAN_COLS])>> = if self.has(PLAN_STAT) {
            let rows: Vec<Row> = c
                .query("SELECT PLAN_ID, EXECUTIONS, ELAPSED_TIME, BUFFER_GETS, DISK_READS, SLOW_COUNT FROM oceanbase.V$OB_PLAN_CACHE_PLAN_STAT")
                .await?;
            Some(
                rows.iter()
                    .filter_map(|r| {
                        let id = col_f64(r, 0)? as i64;
                        let mut v = [0.0; PLAN_COLS];
                        for (i, x) in v.iter_mut().enumerate() {
                            *x = col_f64(r, i + 1).unwrap_or(0.0);
                        }
                        Some((id, v))
                    })
                    .collect(),
            )
        } else {
            None
        };
        let seen = lock(&self.counters).deadlock_seen_us;
        let victims: Option<(f64, Option<i64>)> = if self.has(DEADLOCKS) {
            let r: Option<Row> = c
                .exec_first("SELECT COUNT(*), MAX(REPORT_TIME) FROM oceanbase.DBA_OB_DEADLOCK_EVENT_HISTORY WHERE ROLE = 'victim' AND REPORT_TIME > ?", (seen,))
                .await?;
            r.map(|r| (col_f64(&r, 0).unwrap_or(0.0), col_f64(&r, 1).map(|t| t as i64)))
        } else {
            None
        };
        let (totals, deadlocks) = lock(&self.counters).reading(plans, victims);
        if let Some(t) = totals {
            s.set(M::SqlExecutions, Some(t[0]));
            s.set(M::SqlTime, Some(t[1]));
            s.set(M::CacheRequests, Some(t[2]));
            s.set(M::CacheMisses, Some(t[3]));
            s.set(M::SlowQueries, Some(t[4]));
            s.set(M::Queries, Some(t[0]));
        }
        // The server's own count of plan-cache lookups, where it has one.
        if accesses.is_some() {
            s.set(M::Queries, accesses);
        }
        s.set(M::Transactions, txids);
        s.set(M::Deadlocks, deadlocks);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dialect for OceanBase {
    fn kind(&self) -> DialectKind {
        DialectKind::Oceanbase
    }

    fn discover<'a>(
        &'a mut self,
        c: &'a mut Conn,
    ) -> BoxFuture<'a, Result<Discovery, mysql_async::Error>> {
        Box::pin(async move {
            let version: Option<String> = c.query_first("SELECT VERSION()").await?;
            let rows: Vec<Row> = c.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'oceanbase'").await?;
            let present: BTreeSet<String> = rows
                .iter()
                .filter_map(|r| col_string(r, 0))
                .map(|s| s.to_ascii_uppercase())
                .collect();
            self.views =
                VIEWS.iter().filter(|v| present.contains(**v)).map(|v| (*v).to_owned()).collect();
            let mut d = Discovery { version: version.unwrap_or_default(), ..Discovery::default() };
            d.missing_views =
                VIEWS.iter().filter(|v| !self.has(v)).map(|v| format!("oceanbase.{v}")).collect();
            let mut na = |f: &str, why: &str| {
                d.unavailable.insert(f.to_owned(), why.to_owned());
            };
            let mut src: Vec<(&str, &str)> = Vec::new();
            if self.has("GV$SYSSTAT") {
                src.extend([
                    ("qps", "GV$SYSSTAT sql select/insert/update/delete/replace/other count"),
                    ("tps", "GV$SYSSTAT trans commit count + trans rollback count"),
                    ("sql_response_time", "GV$SYSSTAT sql * time / sql * count"),
                    ("disk_io_bytes", "GV$SYSSTAT io read bytes + io write bytes"),
                    ("disk_iops", "GV$SYSSTAT io read count + io write count"),
                    ("cache_hit_ratio", "GV$SYSSTAT row/block cache hit and miss"),
                    ("active_sessions", "GV$SYSSTAT active sessions"),
                    ("memory_usage", "GV$SYSSTAT memory usage"),
                ]);
            } else {
                na("disk_io_bytes", "GV$SYSSTAT is missing (io read/write bytes)");
                if self.has(PLAN_CACHE) {
                    src.push(("qps", "__all_virtual_plan_cache_stat.access_count (statements through the plan cache; not BEGIN/COMMIT/SET)"));
                } else if self.has(PLAN_STAT) {
                    src.push(("qps", "V$OB_PLAN_CACHE_PLAN_STAT EXECUTIONS, increases per plan"));
                }
                if self.has(PLAN_STAT) {
                    src.extend([
                        ("sql_response_time", "V$OB_PLAN_CACHE_PLAN_STAT ELAPSED_TIME / EXECUTIONS, increases per plan"),
                        ("cache_hit_ratio", "V$OB_PLAN_CACHE_PLAN_STAT DISK_READS / BUFFER_GETS, increases per plan"),
                        ("slow_queries", "V$OB_PLAN_CACHE_PLAN_STAT SLOW_COUNT, increases per plan"),
                    ]);
                } else {
                    for f in ["sql_response_time", "cache_hit_ratio", "slow_queries"] {
                        na(f, "neither GV$SYSSTAT nor V$OB_PLAN_CACHE_PLAN_STAT exists");
                    }
                    if !self.has(PLAN_CACHE) {
                        na("qps", "neither GV$SYSSTAT nor the plan cache views exist");
                    }
                }
                if self.has(ID_SERVICE) {
                    src.push(("tps", "__all_virtual_id_service last_id of the transaction id service (one id per transaction that takes one; autocommit SELECTs take none)"));
                } else {
                    na("tps", "neither GV$SYSSTAT nor __all_virtual_id_service exists");
                }
                if self.has("V$OB_GROUP_IO_STAT") {
                    src.push(("disk_iops", "V$OB_GROUP_IO_STAT REAL_IOPS"));
                } else {
                    na("disk_iops", "neither GV$SYSSTAT nor V$OB_GROUP_IO_STAT exists");
                }
                if self.has("V$OB_MEMORY") {
                    src.push(("memory_usage", "V$OB_MEMORY HOLD"));
                } else {
                    na("memory_usage", "neither GV$SYSSTAT nor V$OB_MEMORY exists");
                }
            }
            if self.has("V$OB_PROCESSLIST") {
                src.push(("connection_count", "V$OB_PROCESSLIST rows"));
                if !self.has("GV$SYSSTAT") {
                    src.push((
                        "active_sessions",
                        "V$OB_PROCESSLIST rows not in Sleep, less the probe's",
                    ));
                }
            } else {
                na("connection_count", "V$OB_PROCESSLIST is missing");
                if !self.has("GV$SYSSTAT") {
                    na("active_sessions", "neither GV$SYSSTAT nor V$OB_PROCESSLIST exists");
                }
            }
            if self.has(DEADLOCKS) {
                src.push(("deadlocks", "DBA_OB_DEADLOCK_EVENT_HISTORY rows with ROLE = 'victim'"));
            } else {
                na("deadlocks", "DBA_OB_DEADLOCK_EVENT_HISTORY is missing");
            }
            na(
                "replication_lag",
                "replicas are kept by Paxos; per-replica lag is not exposed as seconds",
            );
            d.sources = src.into_iter().map(|(f, v)| (f.to_owned(), v.to_owned())).collect();
            Ok(d)
        })
    }

    fn sample<'a>(&'a self, c: &'a mut Conn) -> BoxFuture<'a, Result<Sample, mysql_async::Error>> {
        Box::pin(async move {
            let mut s = Sample::empty();
            if self.has("GV$SYSSTAT") {
                let (rows, at) = super::timed(c.query::<Row, _>(
                    "SELECT NAME, SUM(VALUE) FROM oceanbase.GV$SYSSTAT GROUP BY NAME",
                ))
                .await;
                let rows = rows?;
                s.read_ms = Some(at);
                let stats: HashMap<String, f64> =
                    rows.iter().filter_map(|r| Some((col_string(r, 0)?, col_f64(r, 1)?))).collect();
                for (m, names) in SYSSTAT {
                    s.set(*m, sum_of(&stats, names));
                }
            } else {
                self.sample_counters(c, &mut s).await?;
            }
            if self.has("V$OB_PROCESSLIST") {
                let r: Option<Row> = c.query_first("SELECT COUNT(*), SUM(CASE WHEN COMMAND <> 'Sleep' THEN 1 ELSE 0 END) FROM oceanbase.V$OB_PROCESSLIST").await?;
                if let Some(r) = r {
                    s.set(M::Connections, col_f64(&r, 0));
                    if s.get(M::SessionsActive).is_none() {
                        // Minus the probe's own session.
                        s.set(M::SessionsActive, col_f64(&r, 1).map(|a| (a - 1.0).max(0.0)));
                    }
                }
            }
            if !self.has("GV$SYSSTAT") {
                if self.has("V$OB_GROUP_IO_STAT") {
                    let r: Option<Option<f64>> = c
                        .query_first("SELECT SUM(REAL_IOPS) FROM oceanbase.V$OB_GROUP_IO_STAT")
                        .await?;
                    s.set(M::Iops, r.flatten());
                }
                if self.has("V$OB_MEMORY") {
                    let r: Option<Option<f64>> =
                        c.query_first("SELECT SUM(HOLD) FROM oceanbase.V$OB_MEMORY").await?;
                    // seekdb lists its memory contexts with zero holdings: that is no figure.
                    s.set(M::MemoryUsed, r.flatten().filter(|v| *v > 0.0));
                }
            }
            if self.has(MEMTABLES) {
                // A virtual table of the storage layer: if it fails, only
                // its three series miss the sample; every field is kept.
                let r: Option<Row> = c
                    .query_first("SELECT SUM(mem_used), MAX(freeze_clock), COUNT(*) FROM oceanbase.__all_virtual_tablet_memstore_info")
                    .await
                    .unwrap_or(None);
                if let Some(r) = r {
                    s.set(M::CacheUsed, col_f64(&r, 0));
                    s.set(M::CacheFreezes, col_f64(&r, 1));
                    s.set(M::Memtables, col_f64(&r, 2));
                }
            }
            if self.has(MEMSTORE) {
                // One row: the whole view fails after a freeze (module doc).
                let r: Option<Option<f64>> = c
                    .query_first(
                        "SELECT memstore_limit FROM oceanbase.__all_virtual_memstore_info LIMIT 1",
                    )
                    .await
                    .unwrap_or(None);
                s.set(M::CacheLimit, r.flatten());
            }
            Ok(s)
        })
    }

    fn tenant<'a>(
        &'a self,
        c: &'a mut Conn,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Option<TenantMetrics>, mysql_async::Error>> {
        Box::pin(async move {
            let mut m = super::mysql::schema_tenant(
                c,
                tenant,
                "this server has no DBA_OB_TENANTS (single tenant)",
            )
            .await?;
            if let Some(m) = m.as_mut() {
                if self.has("DBA_OB_TENANTS") {
                    m.unavailable.insert("scope".into(), "multi-tenant clusters: per-tenant units (GV$OB_UNITS) are not read yet; these figures are per schema".into());
                }
            }
            Ok(m)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan cache as a table of (plan id, executions): eviction, new
    /// plans and a server restart move the total only forward, by what ran.
    #[test]
    fn plan_counters_survive_eviction() {
        let plan = |id: i64, n: f64| (id, [n, 10.0 * n, 0.0, 0.0, 0.0]);
        let mut k = Counters::default();
        k.fold_plans([plan(1, 100.0), plan(2, 50.0)]);
        assert_eq!(k.totals[0], 150.0);
        // Plan 1 ran 10 more and plan 2 was evicted; plan 3 is new with 5.
        k.fold_plans([plan(1, 110.0), plan(3, 5.0)]);
        assert_eq!(k.totals[0], 165.0);
        assert_eq!(k.totals[1], 1650.0);
        // Everything evicted: nothing is subtracted.
        k.fold_plans([]);
        assert_eq!(k.totals[0], 165.0);
        // A restarted server reuses id 1 with a lower count: counted afresh.
        k.fold_plans([plan(1, 4.0)]);
        assert_eq!(k.totals[0], 169.0);
        k.fold_plans([plan(1, 6.0)]);
        assert_eq!(k.totals[0], 171.0);
    }

    /// The first reading is the baseline: a probe that starts (or a
    /// coordinator that restarts) beside a plan cache with a long past and a
    /// deadlock history reads 0, then only what happens after.
    #[test]
    fn the_first_reading_is_the_baseline() {
        let plan = |id: i64, n: f64| (id, [n, 0.0, 0.0, 0.0, 2.0]);
        let mut k = Counters::default();
        let (t, d) = k.reading(Some(vec![plan(1, 5_000.0)]), Some((7.0, Some(1_000))));
        assert_eq!((t.map(|t| t[0]), d), (Some(0.0), Some(0.0)));
        let (t, d) =
            k.reading(Some(vec![plan(1, 5_040.0), plan(2, 3.0)]), Some((1.0, Some(2_000))));
        assert_eq!((t.map(|t| t[0]), t.map(|t| t[4]), d), (Some(43.0), Some(2.0), Some(1.0)));
        assert_eq!(k.deadlock_seen_us, 2_000);
        // Views the server lacks stay absent.
        assert_eq!(k.reading(None, None), (None, None));
    }
}
