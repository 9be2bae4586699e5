//! MySQL and MariaDB: SHOW GLOBAL STATUS, performance_schema (statement
//! times, when it is on), SHOW SLAVE STATUS and information_schema.

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::{BoxFuture, Dialect, Discovery, Sample, TenantMetrics, M};
use distdiag_store::now_ms;
use distdiag_workload::db::{col_f64, col_string, DialectKind};

#[derive(Default)]
pub(super) struct Mysql {
    perf_schema: bool,
    /// InnoDB's page size in bytes (a start-up setting), read at connect.
    page_size: Option<f64>,
}

/// Status counters and the series they feed; a sum when several are named.
const STATUS: &[(M, &[&str])] = &[
    (M::Queries, &["Questions"]),
    (M::Transactions, &["Com_commit", "Com_rollback"]),
    (M::SessionsActive, &["Threads_running"]),
    (M::Connections, &["Threads_connected"]),
    (M::IoReadBytes, &["Innodb_data_read"]),
    (M::IoWriteBytes, &["Innodb_data_written"]),
    (M::IoOps, &["Innodb_data_reads", "Innodb_data_writes"]),
    (M::MemoryUsed, &["Memory_used"]),
    (M::CacheRequests, &["Innodb_buffer_pool_read_requests"]),
    (M::CacheMisses, &["Innodb_buffer_pool_reads"]),
    (M::SlowQueries, &["Slow_queries"]),
    (M::Deadlocks, &["Innodb_deadlocks"]),
];

async fn global_status(c: &mut Conn) -> Result<HashMap<String, f64>, mysql_async::Error> {
    let rows: Vec<Row> = c.query("SHOW GLOBAL STATUS").await?;
    Ok(rows.iter().filter_map(|r| Some((col_string(r, 0)?, col_f64(r, 1)?))).collect())
}

fn field_of(m: M) -> &'static str {
    match m {
        M::Queries => "qps",
        M::Transactions => "tps",
        M::SessionsActive => "active_sessions",
        M::Connections => "connection_count",
        M::IoReadBytes | M::IoWriteBytes => "disk_io_bytes",
        M::IoOps | M::Iops => "disk_iops",
        M::MemoryUsed => "memory_usage",
        M::CacheRequests | M::CacheMisses => "cache_hit_ratio",
        M::SlowQueries => "slow_queries",
        M::Deadlocks => "deadlocks",
        M::ReplicationLag => "replication_lag",
        M::SqlExecutions | M::SqlTime => "sql_response_time",
        M::Up => "up",
        // Series without an API field (not in STATUS; read below).
        M::CacheLimit | M::CacheUsed | M::CacheFreezes | M::Memtables => "none",
    }
}

impl Dialect for Mysql {
    fn kind(&self) -> DialectKind {
        DialectKind::Mysql
    }

    fn discover<'a>(
        &'a mut self,
        c: &'a mut Conn,
    ) -> BoxFuture<'a, Result<Discovery, mysql_async::Error>> {
        Box::pin(async move {
            let version: Option<String> = c.query_first("SELECT VERSION()").await?;
            let status = global_status(c).await?;
            let mut d = Discovery { version: version.unwrap_or_default(), ..Discovery::default() };
            for (m, names) in STATUS {
                let missing: Vec<&str> =
                    names.iter().copied().filter(|n| !status.contains_key(*n)).collect();
                if missing.is_empty() {
                    let f = field_of(*m);
                    let from = format!("SHOW GLOBAL STATUS {}", names.join(" + "));
                    d.sources
                        .entry(f.into())
                        .and_modify(|s| *s = format!("{s}; {}", names.join(" + ")))
                        .or_insert(from);
                } else {
                    d.unavailable.insert(
                        field_of(*m).into(),
                        format!("SHOW GLOBAL STATUS has no {}", missing.join(", ")),
                    );
                }
            }
            let page: Option<u64> =
                c.query_first("SELECT @@innodb_page_size").await.unwrap_or(None);
            self.page_size = page.map(|p| p as f64);
            let ps: Option<i64> =
                c.query_first("SELECT @@performance_schema").await.unwrap_or(None);
            self.perf_schema = ps == Some(1);
            if self.perf_schema {
                d.sources.insert("sql_response_time".into(), "performance_schema.events_statements_summary_global_by_event_name (SUM_TIMER_WAIT / COUNT_STAR)".into());
            } else {
                d.missing_views.push(
                    "performance_schema.events_statements_summary_global_by_event_name".into(),
                );
                d.unavailable.insert(
                    "sql_response_time".into(),
                    "performance_schema is off on this server (statement times come from it)"
                        .into(),
                );
            }
            d.sources
                .insert("replication_lag".into(), "SHOW SLAVE STATUS Seconds_Behind_Master".into());
            d.unavailable.insert(
                "replication_lag".into(),
                "this server is not a replica (SHOW SLAVE STATUS is empty); checked every sample"
                    .into(),
            );
            Ok(d)
        })
    }

    fn sample<'a>(&'a self, c: &'a mut Conn) -> BoxFuture<'a, Result<Sample, mysql_async::Error>> {
        Box::pin(async move {
            let (status, at) = super::timed(global_status(c)).await;
            let status = status?;
            let mut s = Sample::empty();
            s.read_ms = Some(at);
            for (m, names) in STATUS {
                let vals: Option<Vec<f64>> =
                    names.iter().map(|n| status.get(*n).copied()).collect();
                s.set(*m, vals.map(|v| v.iter().sum()));
            }
            // The buffer pool in bytes: its pages by the page size.
            let pages = |n: &str| Some(status.get(n)? * self.page_size?);
            s.set(M::CacheLimit, pages("Innodb_buffer_pool_pages_total"));
            s.set(M::CacheUsed, pages("Innodb_buffer_pool_pages_data"));
            // The probe's own statement is running too.
            if let Some(r) = s.get(M::SessionsActive) {
                s.set(M::SessionsActive, Some((r - 1.0).max(0.0)));
            }
            if self.perf_schema {
                let row: Option<Row> = c
                    .query_first("SELECT SUM(COUNT_STAR), SUM(SUM_TIMER_WAIT) / 1000000 FROM performance_schema.events_statements_summary_global_by_event_name")
                    .await?;
                if let Some(r) = row {
                    s.set(M::SqlExecutions, col_f64(&r, 0));
                    s.set(M::SqlTime, col_f64(&r, 1));
                }
            }
            let replica: Vec<Row> = c.query("SHOW SLAVE STATUS").await.unwrap_or_default();
            if let Some(r) = replica.first() {
                let idx = r
                    .columns_ref()
                    .iter()
                    .position(|col| col.name_str() == "Seconds_Behind_Master");
                s.set(M::ReplicationLag, idx.and_then(|i| col_f64(r, i)));
            }
            Ok(s)
        })
    }

    fn tenant<'a>(
        &'a self,
        c: &'a mut Conn,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<Option<TenantMetrics>, mysql_async::Error>> {
        Box::pin(schema_tenant(c, tenant, "MySQL has no tenants"))
    }
}

/// A schema standing in for a tenant: sessions using it and its size.
pub(super) async fn schema_tenant(
    c: &mut Conn,
    schema: &str,
    why: &str,
) -> Result<Option<TenantMetrics>, mysql_async::Error> {
    let exists: Option<String> = c
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (schema,),
        )
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let sessions: Option<Row> = c
        .exec_first("SELECT COUNT(*), SUM(CASE WHEN COMMAND <> 'Sleep' THEN 1 ELSE 0 END) FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()", (schema,))
        .await?;
    let size: Option<Row> = c.exec_first("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", (schema,)).await?;
    let per_server =
        format!("{why}; a tenant is a schema here, and the server does not split this by schema");
    let mut unavailable = BTreeMap::new();
    for f in ["cpu_percent", "memory_used", "iops"] {
        unavailable.insert(f.to_owned(), per_server.clone());
    }
    Ok(Some(TenantMetrics {
        timestamp: now_ms(),
        tenant: schema.to_owned(),
        scope: "schema".into(),
        cpu_percent: None,
        memory_used: None,
        disk_used: size.as_ref().and_then(|r| col_f64(r, 0)).or(Some(0.0)),
        iops: None,
        session_count: sessions.as_ref().and_then(|r| col_f64(r, 0)),
        active_session_count: sessions.as_ref().and_then(|r| col_f64(r, 1)).or(Some(0.0)),
        unavailable,
    }))
}
