//! `/api/metrics/database`, `/api/metrics/tenant` and `/api/databases`: the
//! database probe's figures in the seeds' shapes. Null fields carry their
//! reason under `unavailable`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::metrics::parse_time;
use super::{ApiError, ApiState};
use crate::dbprobe::{dialect_for, series, DbFields};
use distdiag_store::now_ms;
use distdiag_workload::db::DbError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DbQuery {
    database: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub(super) fn db_error(e: DbError) -> ApiError {
    match e {
        DbError::UnknownTarget(_) => ApiError::not_found(e.to_string()),
        DbError::Invalid(_) => ApiError::bad_request(e.to_string()),
        // The database, not this request, is at fault: a clear 4xx all the same.
        DbError::Connect { .. } | DbError::Query { .. } => {
            ApiError { status: StatusCode::FAILED_DEPENDENCY, message: e.to_string() }
        }
    }
}

fn null_reasons(f: &DbFields, unavailable: &std::collections::BTreeMap<String, String>) -> Value {
    let v = serde_json::to_value(f).unwrap_or(Value::Null);
    let mut reasons = serde_json::Map::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if val.is_null() {
                let why = unavailable.get(k).cloned().unwrap_or_else(|| {
                    "no value in this interval (server down, idle, or fewer than two samples)"
                        .into()
                });
                reasons.insert(k.clone(), json!(why));
            }
        }
    }
    Value::Object(reasons)
}

pub(super) async fn database_metrics(
    State(state): State<ApiState>,
    q: Result<Query<DbQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let statuses = state.probes.status();
    if let Some(name) = &q.database {
        state.probes.target(Some(name)).map_err(db_error)?;
    }
    let mut dbs = Vec::new();
    let mut flat = Vec::new();
    for st in statuses.into_iter().filter(|s| q.database.as_ref().is_none_or(|n| *n == s.name)) {
        let lookback = i64::try_from(state.probe_interval_ms).unwrap_or(5_000) * 3;
        let store = state.store.clone();
        let node = st.node.clone();
        let rows =
            tokio::task::spawn_blocking(move || series(store.as_ref(), &node, from, to, lookback))
                .await
                .map_err(|e| ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: e.to_string(),
                })?;
        let rows = match rows {
            Ok(r) => r,
            Err(distdiag_store::StoreError::UnknownNode(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let metrics: Vec<Value> = rows
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
                v["database"] = json!(st.name);
                v["unavailable"] = null_reasons(f, &st.discovery.unavailable);
                v
            })
            .collect();
        flat.extend(metrics.iter().cloned());
        dbs.push(json!({
            "name": st.name,
            "node": st.node,
            "dialect": st.dialect,
            "addr": st.addr,
            "connected": st.connected,
            "last_error": st.last_error,
            "last_sample_ms": st.last_sample_ms,
            "version": st.discovery.version,
            "missing_views": st.discovery.missing_views,
            "unavailable": st.discovery.unavailable,
            "metrics": metrics,
        }));
    }
    flat.sort_by_key(|v| v["timestamp"].as_i64().unwrap_or(0));
    Ok(Json(json!({ "from": from, "to": to, "metrics": flat, "databases": dbs })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantQuery {
    tenant_name: Option<String>,
    database: Option<String>,
}

pub(super) async fn tenant_metrics(
    State(state): State<ApiState>,
    q: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
        Some(m) => Ok(Json(json!({ "database": t.name, "metrics": [m] }))),
        None => Err(ApiError::not_found(format!(
            "database {} has no tenant (schema) {tenant:?}",
            t.name
        ))),
    }
}

pub(super) async fn databases(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "databases": state.probes.status() }))
}
