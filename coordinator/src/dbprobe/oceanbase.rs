//! OceanBase and seekdb. GV$SYSSTAT is the richest source where the server
//! has it; without it (seekdb) the plan cache (`V$OB_PLAN_CACHE_PLAN_STAT`)
//! gives statement counts and times, `V$OB_PROCESSLIST` sessions and
//! `V$OB_GROUP_IO_STAT` I/O rates. Which views exist is read from
//! information_schema at connect time; the missing ones are reported.

use std::collections::{BTreeSet, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::{BoxFuture, Dialect, Discovery, Sample, TenantMetrics, M};
use distdiag_workload::db::{col_f64, col_string, DialectKind};

/// Views the dialect can use, in the `oceanbase` schema.
const VIEWS: &[&str] = &[
    "GV$SYSSTAT",
    "V$OB_PLAN_CACHE_PLAN_STAT",
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

#[derive(Default)]
pub(super) struct OceanBase {
    views: BTreeSet<String>,
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
            if !self.has("GV$SYSSTAT") {
                na("tps", "GV$SYSSTAT is missing (trans commit/rollback count)");
                na("disk_io_bytes", "GV$SYSSTAT is missing (io read/write bytes)");
                if !self.has("V$OB_PLAN_CACHE_PLAN_STAT") {
                    for f in ["qps", "sql_response_time", "cache_hit_ratio", "slow_queries"] {
                        na(f, "neither GV$SYSSTAT nor V$OB_PLAN_CACHE_PLAN_STAT exists");
                    }
                }
                if !self.has("V$OB_GROUP_IO_STAT") {
                    na("disk_iops", "neither GV$SYSSTAT nor V$OB_GROUP_IO_STAT exists");
                }
                if !self.has("V$OB_MEMORY") {
                    na("memory_usage", "neither GV$SYSSTAT nor V$OB_MEMORY exists");
                }
            }
            if !self.has("V$OB_PROCESSLIST") {
                na("connection_count", "V$OB_PROCESSLIST is missing");
                if !self.has("GV$SYSSTAT") {
                    na("active_sessions", "neither GV$SYSSTAT nor V$OB_PROCESSLIST exists");
                }
            }
            na("deadlocks", "OceanBase resolves deadlocks by detection and exposes no deadlock counter in these views");
            na(
                "replication_lag",
                "replicas are kept by Paxos; per-replica lag is not exposed as seconds",
            );
            Ok(d)
        })
    }

    fn sample<'a>(&'a self, c: &'a mut Conn) -> BoxFuture<'a, Result<Sample, mysql_async::Error>> {
        Box::pin(async move {
            let mut s = Sample::empty();
            if self.has("GV$SYSSTAT") {
                let rows: Vec<Row> = c
                    .query("SELECT NAME, SUM(VALUE) FROM oceanbase.GV$SYSSTAT GROUP BY NAME")
                    .await?;
                let stats: HashMap<String, f64> =
                    rows.iter().filter_map(|r| Some((col_string(r, 0)?, col_f64(r, 1)?))).collect();
                for (m, names) in SYSSTAT {
                    s.set(*m, sum_of(&stats, names));
                }
            } else if self.has("V$OB_PLAN_CACHE_PLAN_STAT") {
                let r: Option<Row> = c
                    .query_first("SELECT SUM(EXECUTIONS), SUM(ELAPSED_TIME), SUM(BUFFER_GETS), SUM(DISK_READS), SUM(SLOW_COUNT) FROM oceanbase.V$OB_PLAN_CACHE_PLAN_STAT")
                    .await?;
                if let Some(r) = r {
                    // An empty plan cache sums to NULL: nothing has run yet.
                    let z = |i| col_f64(&r, i).or(Some(0.0));
                    s.set(M::Queries, z(0));
                    s.set(M::SqlExecutions, z(0));
                    s.set(M::SqlTime, z(1));
                    s.set(M::CacheRequests, z(2));
                    s.set(M::CacheMisses, z(3));
                    s.set(M::SlowQueries, z(4));
                }
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
