//! REST API (axum). Only this module knows HTTP; the request and response
//! types are the `distdiag-api` crate's, and the OpenAPI 3.1 document
//! served at `/api/openapi.json` (viewer at `/docs`) is generated from
//! them and from the handlers' `#[utoipa::path]` attributes: each route is
//! registered through its attribute (`utoipa_axum::routes!`), so a handler
//! cannot exist without its description.
//!
//! Reads are open; every mutating request under `/api` needs
//! `Authorization: Bearer <token>`. Errors are JSON `{"error": "..."}` with a
//! 4xx/5xx status.

mod anomaly;
mod database;
pub(crate) mod diagnosis;
mod metrics;
mod prom;
pub mod reference;
mod workload;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use distdiag_api::nodes::{Health, NodeDeleted, NodeInfo, NodeKind, NodeList, NodeState};
use distdiag_api::ErrorBody;
use distdiag_store::{NodeRecord, SeriesStore, StoreError};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::FaultsConfig;
use crate::dbfault::DbFaults;
use crate::dbprobe::DbProbes;
use crate::faults::Faults;
use crate::ingest::Registry;
use crate::telemetry::Telemetry;
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
    pub fn conflict(m: impl Into<String>) -> Self {
        ApiError { status: StatusCode::CONFLICT, message: m.into() }
    }
    pub fn internal(m: impl std::fmt::Display) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: m.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message })).into_response()
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

/// Runs blocking work (the store, training, evaluation) off the runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

/// The document's frame: title, version, the bearer scheme, the tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "distdiag",
        description = "Root-cause diagnosis of distributed database clusters: agents' host series, database probes, fault injection, benchmark workloads, training and online ranking. Reads are open; every mutating request under /api needs `Authorization: Bearer <token>` (the token is in the coordinator's data directory). Errors are `{\"error\": \"...\"}` with a 4xx/5xx status."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "system", description = "Liveness and the coordinator's own figures"),
        (name = "nodes", description = "Agents and probed databases"),
        (name = "metrics", description = "Host and database series"),
        (name = "faults", description = "Faults on agents and databases; the labelled fault records"),
        (name = "workloads", description = "Benchmark workloads (sysbench-style OLTP, TPC-C, TPC-H)"),
        (name = "training", description = "Training-data collection"),
        (name = "models", description = "Model versions and training jobs"),
        (name = "datasets", description = "Collected and imported datasets"),
        (name = "diagnosis", description = "Root-cause rankings"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The documented routes (everything but the dashboard and the viewer).
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(prom::render))
        .routes(routes!(list_nodes))
        .routes(routes!(get_node, delete_node))
        .routes(routes!(metrics::get_metrics))
        .routes(routes!(database::databases))
        .routes(routes!(database::database_metrics))
        .routes(routes!(database::tenant_metrics))
        .routes(routes!(workload::prepare))
        .routes(routes!(workload::start))
        .routes(routes!(workload::check))
        .routes(routes!(workload::stop_all))
        .routes(routes!(workload::active))
        .routes(routes!(workload::runs))
        .routes(routes!(workload::get_one))
        .routes(routes!(workload::stop))
        .routes(routes!(anomaly::start))
        .routes(routes!(anomaly::stop))
        .routes(routes!(anomaly::active))
        .routes(routes!(anomaly::history))
        .routes(routes!(diagnosis::train))
        .routes(routes!(diagnosis::train_job))
        .routes(routes!(diagnosis::ranks))
        .routes(routes!(diagnosis::ranks_stream))
        .routes(routes!(diagnosis::ranks_graph))
        .routes(routes!(diagnosis::normal_start))
        .routes(routes!(diagnosis::normal_stop))
        .routes(routes!(diagnosis::collect))
        .routes(routes!(diagnosis::collect_stop))
        .routes(routes!(diagnosis::stats))
        .routes(routes!(diagnosis::cases))
        .routes(routes!(diagnosis::models))
        .routes(routes!(diagnosis::rollback))
        .routes(routes!(diagnosis::model))
        .routes(routes!(diagnosis::activate))
        .routes(routes!(diagnosis::evaluate))
        .routes(routes!(diagnosis::booster))
        .routes(routes!(diagnosis::export_model))
        .routes(routes!(diagnosis::datasets))
        .routes(routes!(diagnosis::dataset, diagnosis::import_dataset))
        .routes(routes!(diagnosis::dataset_windows))
}

/// The OpenAPI document, as `/api/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    let json_doc = doc.clone();
    api.route("/", get(dashboard))
        .route("/api/openapi.json", get(move || async move { Json(json_doc.as_ref().clone()) }))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs").config(
                utoipa_swagger_ui::Config::from("/api/openapi.json").try_it_out_enabled(true),
            ),
        )
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
        Some(_) => ApiError { status: StatusCode::UNAUTHORIZED, message: "invalid bearer token".into() }
            .into_response(),
        None => ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "this endpoint needs 'Authorization: Bearer <token>' (the token is in the coordinator's data directory)".into(),
        }
        .into_response(),
    }
}

/// The dashboard page, embedded in the binary.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../../web/index.html"))
}

/// Liveness, connected agents and known nodes.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
async fn health(State(state): State<ApiState>) -> Json<Health> {
    let stats = state.store.stats();
    Json(Health {
        status: "ok".into(),
        connected_agents: state.registry.len(),
        nodes: stats.nodes,
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

fn node_info(state: &ApiState, rec: &NodeRecord, with_catalog: bool) -> NodeInfo {
    let conn = state.registry.get(&rec.node);
    let latest_ts = state.store.latest(&rec.node).and_then(|l| l.rows.first().map(|r| r.0));
    let probe = state.probes.status().into_iter().find(|p| p.node == rec.node);
    let (kind, state_now, connected) = match (rec.node.starts_with("db:"), &probe) {
        (true, Some(p)) if p.connected => (NodeKind::Database, NodeState::Probing, true),
        (true, Some(_)) => (NodeKind::Database, NodeState::Unreachable, false),
        (true, None) => (NodeKind::Database, NodeState::Unconfigured, false),
        (false, _) if conn.is_some() => (NodeKind::Agent, NodeState::Connected, true),
        (false, _) => (NodeKind::Agent, NodeState::Disconnected, false),
    };
    NodeInfo {
        node: rec.node.clone(),
        kind,
        state: state_now,
        connected,
        remote: conn.as_ref().map(|c| c.remote.to_string()),
        connected_since_ms: conn.as_ref().map(|c| c.connected_since_ms),
        host: rec.host.clone(),
        capabilities: rec.capabilities.clone(),
        interval_ms: rec.interval_ms,
        metric_count: rec.catalog.len(),
        first_seen_ms: rec.first_seen_ms,
        last_sample_ms: latest_ts,
        catalog: with_catalog.then(|| rec.catalog.clone()),
    }
}

/// Nodes with host facts, capabilities, state and last sample time.
#[utoipa::path(get, path = "/api/nodes", tag = "nodes", responses((status = 200, body = NodeList)))]
async fn list_nodes(State(state): State<ApiState>) -> Json<NodeList> {
    let nodes = state.store.nodes().iter().map(|r| node_info(&state, r, false)).collect();
    Json(NodeList { nodes })
}

/// One node, with its metric catalog.
#[utoipa::path(
    get, path = "/api/nodes/{node}", tag = "nodes",
    params(("node" = String, Path, description = "Node name")),
    responses((status = 200, body = NodeInfo), (status = 404, body = ErrorBody, description = "Unknown node"))
)]
async fn get_node(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeInfo>, ApiError> {
    let rec = state
        .store
        .node(&node)
        .ok_or_else(|| ApiError::not_found(format!("unknown node {node:?}")))?;
    Ok(Json(node_info(&state, &rec, true)))
}

/// Forgets a node and all its data (refused while its agent is connected).
#[utoipa::path(
    delete, path = "/api/nodes/{node}", tag = "nodes", security(("bearer" = [])),
    params(("node" = String, Path, description = "Node name")),
    responses(
        (status = 200, body = NodeDeleted),
        (status = 401, body = ErrorBody, description = "No or a wrong bearer token"),
        (status = 404, body = ErrorBody, description = "Unknown node"),
        (status = 409, body = ErrorBody, description = "The node's agent is connected"),
    )
)]
async fn delete_node(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeDeleted>, ApiError> {
    if state.registry.get(&node).is_some() {
        return Err(ApiError::conflict(format!(
            "node {node:?} is connected; stop its agent before deleting its data"
        )));
    }
    let store = state.store.clone();
    let n = node.clone();
    let deleted = blocking(move || store.delete_node(&n).map_err(ApiError::from)).await?;
    if !deleted {
        return Err(ApiError::not_found(format!("unknown node {node:?}")));
    }
    Ok(Json(NodeDeleted { node, status: "deleted".into() }))
}

#[cfg(test)]
mod tests;
