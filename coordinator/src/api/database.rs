//! `/api/metrics/database`, `/api/metrics/tenant` and `/api/databases`: the
//! database probe's figures in the seeds' shapes. Null fields carry their
//! reason under `unavailable`.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use distdiag_api::database::{
    DatabaseList, DatabaseMetrics, DatabaseSeries, DbFields, DbQuery, DbSample, TenantAnswer,
    TenantQuery,
};
use distdiag_api::ErrorBody;
use distdiag_workload::db::DbError;

use super::metrics::parse_time;
use super::{blocking, ApiError, ApiState};
use crate::dbprobe::{dialect_for, series};
use crate::ingest::now_ms;

pub(super) fn db_error(e: DbError) -> ApiError {
    match e {
        DbError::UnknownTarget(_) | DbError::NoneConfigured(_) => {
            ApiError::not_found(e.to_string())
        }
        DbError::Invalid(_) => ApiError::bad_request(e.to_string()),
        // The database, not this request, is at fault: a clear 4xx all the same.
        DbError::Connect { .. } | DbError::Query { .. } => {
            ApiError { status: StatusCode::FAILED_DEPENDENCY, message: e.to_string() }
        }
    }
}

/// Why each null field of `f` is null.
fn null_reasons(f: &DbFields, unavailable: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let v = serde_json::to_value(f).unwrap_or_default();
    let Some(o) = v.as_object() else { return BTreeMap::new() };
    o.iter()
        .filter(|(_, val)| val.is_null())
        .map(|(k, _)| {
            let why = unavailable.get(k).cloned().unwrap_or_else(|| {
                "no value in this interval (server down, idle, or fewer than two samples)".into()
            });
            (k.clone(), why)
        })
        .collect()
}

/// The seeds' fields per probe interval (default the last minute): `qps`,
/// `tps`, `active_sessions`, `sql_response_time` (ms), `disk_io_bytes`
/// (B/s), `disk_iops`, `memory_usage` (bytes), `cache_hit_ratio` (%),
/// `slow_queries` and `deadlocks` (in the interval), `replication_lag` (s),
/// `connection_count`.
#[utoipa::path(
    operation_id = "database_metrics",
    get, path = "/api/metrics/database", tag = "metrics", params(DbQuery),
    responses(
        (status = 200, body = DatabaseMetrics),
        (status = 400, body = ErrorBody, description = "Bad parameters"),
        (status = 404, body = ErrorBody, description = "Unknown database"),
    )
)]
pub(super) async fn database_metrics(
    State(state): State<ApiState>,
    q: Result<Query<DbQuery>, QueryRejection>,
) -> Result<Json<DatabaseMetrics>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = now_ms();
    let to =
        q.to.as_deref()
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(ApiError::bad_request)?
            .unwrap_or(now);
    let from = q
        .from
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or(to - 60_000);
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    if let Some(name) = &q.database {
        state.probes.target(Some(name)).map_err(db_error)?;
    }
    let mut dbs = Vec::new();
    let mut flat = Vec::new();
    for st in state
        .probes
        .status()
        .into_iter()
        .filter(|s| q.database.as_ref().is_none_or(|n| *n == s.name))
    {
        let lookback = i64::try_from(state.probe_interval_ms).unwrap_or(5_000) * 3;
        let store = state.store.clone();
        let node = st.node.clone();
        let rows = blocking(move || Ok(series(store.as_ref(), &node, from, to, lookback))).await?;
        let rows = match rows {
            Ok(r) => r,
            Err(distdiag_store::StoreError::UnknownNode(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let metrics: Vec<DbSample> = rows
            .into_iter()
            .map(|f| DbSample {
                unavailable: null_reasons(&f, &st.discovery.unavailable),
                fields: f,
                database: st.name.clone(),
            })
            .collect();
        flat.extend(metrics.iter().cloned());
        dbs.push(DatabaseSeries {
            name: st.name,
            node: st.node,
            dialect: st.dialect,
            addr: st.addr,
            connected: st.connected,
            last_error: st.last_error,
            last_sample_ms: st.last_sample_ms,
            version: st.discovery.version,
            missing_views: st.discovery.missing_views,
            unavailable: st.discovery.unavailable,
            metrics,
        });
    }
    flat.sort_by_key(|s| s.fields.timestamp);
    Ok(Json(DatabaseMetrics { from, to, metrics: flat, databases: dbs }))
}

/// A tenant's `cpu_percent`, `memory_used`, `disk_used`, `iops`,
/// `session_count`, `active_session_count`, read live. On MySQL and
/// single-tenant OceanBase (seekdb) a tenant is a schema.
#[utoipa::path(
    operation_id = "tenant_metrics",
    get, path = "/api/metrics/tenant", tag = "metrics", params(TenantQuery),
    responses(
        (status = 200, body = TenantAnswer),
        (status = 400, body = ErrorBody, description = "Bad parameters"),
        (status = 404, body = ErrorBody, description = "Unknown database or tenant"),
        (status = 424, body = ErrorBody, description = "The database is unreachable"),
    )
)]
pub(super) async fn tenant_metrics(
    State(state): State<ApiState>,
    q: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<TenantAnswer>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let t = state.probes.target(q.database.as_deref()).map_err(db_error)?.clone();
    let tenant = q.tenant_name.unwrap_or_else(|| t.schema.clone());
    if tenant.is_empty() || tenant.len() > 128 {
        return Err(ApiError::bad_request("tenant_name must be 1..=128 characters"));
    }
    let mut c = t.connect(false, std::time::Duration::from_secs(5)).await.map_err(db_error)?;
    let mut dialect = dialect_for(t.dialect);
    dialect.discover(&mut c).await.map_err(|e| db_error(t.query_error(e)))?;
    let m = dialect.tenant(&mut c, &tenant).await.map_err(|e| db_error(t.query_error(e)))?;
    let _ = c.disconnect().await;
    match m {
        Some(m) => Ok(Json(TenantAnswer { database: t.name, metrics: vec![m] })),
        None => Err(ApiError::not_found(format!(
            "database {} has no tenant (schema) {tenant:?}",
            t.name
        ))),
    }
}

/// Configured databases: probe connected, last error, server version, views
/// missing on this server, fields it cannot provide and why.
#[utoipa::path(
    operation_id = "databases",get, path = "/api/databases", tag = "nodes", responses((status = 200, body = DatabaseList)))]
pub(super) async fn databases(State(state): State<ApiState>) -> Json<DatabaseList> {
    Json(DatabaseList { databases: state.probes.status() })
}
