//! REST API (axum). Only this module knows HTTP and JSON request shapes.
//!
//! Reads are open; every mutating request under `/api` needs
//! `Authorization: Bearer <token>`. Errors are JSON `{"error": "..."}` with a
//! 4xx/5xx status.

mod anomaly;
mod database;
pub(crate) mod diagnosis;
mod metrics;
mod prom;
mod workload;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::FaultsConfig;
use crate::dbfault::DbFaults;
use crate::dbprobe::DbProbes;
use crate::faults::Faults;
use crate::ingest::Registry;
use crate::telemetry::Telemetry;
use distdiag_store::{SeriesStore, StoreError};
use distdiag_workload::Workloads;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn SeriesStore>,
    pub registry: Registry,
    pub faults: Arc<Faults>,
    pub fault_limits: FaultsConfig,
    pub telemetry: Arc<Telemetry>,
    pub token: Arc<str>,
    pub probes: Arc<DbProbes>,
    pub probe_interval_ms: u64,
    pub workloads: Arc<Workloads>,
    pub dbfaults: Arc<DbFaults>,
    pub training: Arc<crate::training::Training>,
    pub models: Arc<crate::models::Models>,
    pub online: Arc<crate::online::Online>,
    pub diagnosis: crate::config::DiagnosisConfig,
    /// Database store nodes merged into their host node for diagnosis.
    pub diagnosis_merge: std::collections::BTreeMap<String, String>,
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: m.into() }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, message: m.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::UnknownNode(_) | StoreError::UnknownMetric { .. } => StatusCode::NOT_FOUND,
            StoreError::Catalog { .. } => StatusCode::BAD_REQUEST,
            StoreError::Io(_) | StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, message: e.to_string() }
    }
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/metrics", get(prom::render))
        .route("/api/nodes", get(list_nodes))
        .route("/api/nodes/{node}", get(get_node).delete(delete_node))
        .route("/api/metrics", get(metrics::get_metrics))
        .route("/api/databases", get(database::databases))
        .route("/api/metrics/database", get(database::database_metrics))
        .route("/api/metrics/tenant", get(database::tenant_metrics))
        .route("/api/workload/prepare", post(workload::prepare))
        .route("/api/workload/start", post(workload::start))
        .route("/api/workload/check", post(workload::check))
        .route("/api/workload/stop-all", post(workload::stop_all))
        .route("/api/workload/active", get(workload::active))
        .route("/api/workload/runs", get(workload::runs))
        .route("/api/workload/{id}", get(workload::get_one))
        .route("/api/workload/{id}/stop", post(workload::stop))
        .route("/api/anomaly/start", axum::routing::post(anomaly::start))
        .route("/api/anomaly/stop", axum::routing::post(anomaly::stop))
        .route("/api/anomaly/active", get(anomaly::active))
        .route("/api/anomaly/history", get(anomaly::history))
        .route("/api/anomaly/train", post(diagnosis::train))
        .route("/api/anomaly/train/{job}", get(diagnosis::train_job))
        .route("/api/anomaly/ranks", get(diagnosis::ranks))
        .route("/api/anomaly/ranks/stream", get(diagnosis::ranks_stream))
        .route("/api/anomaly/ranks/graph", get(diagnosis::ranks_graph))
        .route("/api/training/normal/start", post(diagnosis::normal_start))
        .route("/api/training/normal/stop", post(diagnosis::normal_stop))
        .route("/api/training/collect", post(diagnosis::collect))
        .route("/api/training/stop", post(diagnosis::collect_stop))
        .route("/api/training/stats", get(diagnosis::stats))
        .route("/api/training/cases", get(diagnosis::cases))
        .route("/api/models", get(diagnosis::models))
        .route("/api/models/rollback", post(diagnosis::rollback))
        .route("/api/models/{id}", get(diagnosis::model))
        .route("/api/models/{id}/activate", post(diagnosis::activate))
        .route("/api/models/{id}/evaluate", post(diagnosis::evaluate))
        .route("/api/models/{id}/booster/{type}", get(diagnosis::booster))
        .route("/api/models/{id}/export", get(diagnosis::export_model))
        .route("/api/datasets", get(diagnosis::datasets))
        .route("/api/datasets/{name}", get(diagnosis::dataset).post(diagnosis::import_dataset))
        .route("/api/datasets/{name}/windows.csv", get(diagnosis::dataset_windows))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if read_only || !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if same_secret(t.trim().as_bytes(), state.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError { status: StatusCode::UNAUTHORIZED, message: "invalid bearer token".into() }.into_response(),
        None => ApiError { status: StatusCode::UNAUTHORIZED, message: "this endpoint needs 'Authorization: Bearer <token>' (the token is in the coordinator's data directory)".into() }
            .into_response(),
    }
}

/// The dashboard page, embedded in the binary.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../../web/index.html"))
}

async fn health(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let stats = state.store.stats();
    Json(json!({
        "status": "ok",
        "connected_agents": state.registry.len(),
        "nodes": stats.nodes,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

fn node_json(
    state: &ApiState,
    rec: &distdiag_store::NodeRecord,
    with_catalog: bool,
) -> serde_json::Value {
    let conn = state.registry.get(&rec.node);
    let latest_ts = state.store.latest(&rec.node).and_then(|l| l.rows.first().map(|r| r.0));
    let mut v = json!({
        "node": rec.node,
        "connected": conn.is_some(),
        "remote": conn.as_ref().map(|c| c.remote.to_string()),
        "connected_since_ms": conn.as_ref().map(|c| c.connected_since_ms),
        "host": rec.host,
        "capabilities": rec.capabilities,
        "interval_ms": rec.interval_ms,
        "metric_count": rec.catalog.len(),
        "first_seen_ms": rec.first_seen_ms,
        "last_sample_ms": latest_ts,
    });
    if with_catalog {
        v["catalog"] = json!(rec.catalog);
    }
    v
}

async fn list_nodes(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let nodes: Vec<_> = state.store.nodes().iter().map(|r| node_json(&state, r, false)).collect();
    Json(json!({ "nodes": nodes }))
}

async fn get_node(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rec = state
        .store
        .node(&node)
        .ok_or_else(|| ApiError::not_found(format!("unknown node {node:?}")))?;
    Ok(Json(node_json(&state, &rec, true)))
}

async fn delete_node(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state.registry.get(&node).is_some() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("node {node:?} is connected; stop its agent before deleting its data"),
        });
    }
    let store = state.store.clone();
    let n = node.clone();
    let deleted =
        tokio::task::spawn_blocking(move || store.delete_node(&n)).await.map_err(|e| {
            ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() }
        })??;
    if !deleted {
        return Err(ApiError::not_found(format!("unknown node {node:?}")));
    }
    Ok(Json(json!({ "node": node, "status": "deleted" })))
}

#[cfg(test)]
mod tests;
