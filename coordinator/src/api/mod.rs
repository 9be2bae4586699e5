//! REST API (axum). Only this module knows HTTP; the request and response
//! types are the `distdiag-api` crate's, and the OpenAPI 3.1 document
//! served at `/api/openapi.json` (viewer at `/docs`) is generated from
//! them and from the handlers' `#[utoipa::path]` attributes: each route is
//! registered through its attribute (`utoipa_axum::routes!`), so a handler
//! cannot exist without its description.
//!
//! Every mutating request under `/api` needs `Authorization: Bearer <token>`
//! with an admin token (403 with a read token); reads under `/api` and
//! `/metrics` need a read or admin token when `api.require_token_for_reads`
//! is on (the default when the API listens beyond loopback). Errors are JSON `{"error": "..."}` with a
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
use distdiag_api::nodes::{
    Health, NodeDeleted, NodeInfo, NodeKind, NodeList, NodeState, StorageHealth,
};
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
use crate::tokens::Scope;
use distdiag_workload::Workloads;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn SeriesStore>,
    pub registry: Registry,
    pub faults: Arc<Faults>,
    pub fault_limits: FaultsConfig,
    pub telemetry: Arc<Telemetry>,
    /// The admin token and the scoped ones.
    pub tokens: Arc<crate::tokens::Tokens>,
    /// `api.require_token_for_reads`, resolved.
    pub reads_need_token: bool,
    pub probes: Arc<DbProbes>,
    pub probe_interval_ms: u64,
    /// Longest a prepare request with `wait` is held open.
    pub prepare_wait: std::time::Duration,
    pub workloads: Arc<Workloads>,
    pub dbfaults: Arc<DbFaults>,
    pub training: Arc<crate::training::Training>,
    pub models: Arc<crate::models::Models>,
    pub online: Arc<crate::online::Online>,
    pub diagnosis: crate::config::DiagnosisConfig,
    /// Database store nodes merged into their host node for diagnosis.
    pub diagnosis_merge: std::collections::BTreeMap<String, String>,
    /// The remote-write receivers, for `/metrics`.
    pub remote_write: Option<Arc<crate::remote_write::RemoteWrite>>,
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
        description = "Root-cause diagnosis of distributed database clusters: agents' host series, database probes, fault injection, benchmark workloads, training and online ranking. Every mutating request under /api needs `Authorization: Bearer <token>` with an admin token (the admin token is in the coordinator's data directory; `distdiag-coordinator token create --scope read|admin` makes more); a read token gets 403 there. When the coordinator's `api.require_token_for_reads` is on (the default when it listens beyond loopback) every read under /api and /metrics needs a read or admin token too (401 without). Errors are `{\"error\": \"...\"}` with a 4xx/5xx status."
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

/// OpenAPI links from an answer to the operations that take what it names
/// (a started workload's id to its report and its stop, a training job to
/// its model, ...): clients and stateful testers (schemathesis) follow them.
struct Links;

/// (from operation, status, link name, to operation, parameters, request body).
type LinkRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const LINKS: &[LinkRow] = &[
    ("start_workload", "200", "Report", "workload", &[("id", "$response.body#/workload_id")], None),
    (
        "start_workload",
        "200",
        "Stop",
        "stop_workload",
        &[("id", "$response.body#/workload_id")],
        None,
    ),
    (
        "prepare_workload",
        "202",
        "Progress",
        "workload",
        &[("id", "$response.body#/workload_id")],
        None,
    ),
    (
        "active_workloads",
        "200",
        "Report",
        "workload",
        &[("id", "$response.body#/workloads/0/workload_id")],
        None,
    ),
    (
        "workload_runs",
        "200",
        "Report",
        "workload",
        &[("id", "$response.body#/workloads/0/workload_id")],
        None,
    ),
    ("start_fault", "200", "Stop", "stop_fault", &[], Some("/anomalies/0/id")),
    ("active_faults", "200", "Stop", "stop_fault", &[], Some("/anomalies/0/id")),
    ("train", "202", "Job", "train_job", &[("job", "$response.body#/job")], None),
    ("train_job", "200", "Model", "model", &[("id", "$response.body#/model_id")], None),
    ("train_job", "200", "Export", "export_model", &[("id", "$response.body#/model_id")], None),
    ("train_job", "200", "Activate", "activate_model", &[("id", "$response.body#/model_id")], None),
    ("train_job", "200", "Evaluate", "evaluate_model", &[("id", "$response.body#/model_id")], None),
    ("models", "200", "Model", "model", &[("id", "$response.body#/models/0/id")], None),
    ("nodes", "200", "Node", "node", &[("node", "$response.body#/nodes/0/node")], None),
    ("import_dataset", "200", "Dataset", "dataset", &[("name", "$response.body#/dataset")], None),
    (
        "import_dataset",
        "200",
        "Windows",
        "dataset_windows",
        &[("name", "$response.body#/dataset")],
        None,
    ),
];

impl utoipa::Modify for Links {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::link::LinkBuilder;
        use utoipa::openapi::RefOr;
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                let Some(id) = op.operation_id.clone() else { continue };
                for (from, status, name, to, params, body) in LINKS {
                    if *from != id {
                        continue;
                    }
                    let Some(RefOr::T(resp)) = op.responses.responses.get_mut(*status) else {
                        continue;
                    };
                    let mut link = LinkBuilder::new().operation_id(*to);
                    for (k, v) in *params {
                        link = link.parameter(*k, *v);
                    }
                    if let Some(ptr) = body {
                        link = link.request_body(Some(
                            serde_json::json!({ "id": format!("$response.body#{ptr}") }),
                        ));
                    }
                    resp.links.insert((*name).to_owned(), RefOr::T(link.build()));
                }
            }
        }
    }
}

/// The refusals of [`require_token`] on every operation it guards, from the
/// same rule ([`scope_needed`]): 401 and 403 on mutating operations (which
/// need the bearer token), 401 on reads (whose token is optional unless
/// `api.require_token_for_reads` is on). Written once here so that no
/// operation's own annotation can forget them.
struct Access;

impl utoipa::Modify for Access {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityRequirement;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let refusal = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::PUT, &mut item.put),
                (Method::DELETE, &mut item.delete),
            ] {
                let Some(op) = op.as_mut() else { continue };
                let responses = &mut op.responses.responses;
                match scope_needed(&method, path, true) {
                    None => {}
                    Some(Scope::Admin) => {
                        responses.insert("401".into(), refusal("No or a wrong bearer token"));
                        responses.insert(
                            "403".into(),
                            refusal("The token's scope is 'read'; this operation needs 'admin'"),
                        );
                        op.security =
                            Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                    }
                    Some(Scope::Read) => {
                        responses.insert(
                            "401".into(),
                            refusal("No or a wrong bearer token, when the coordinator's api.require_token_for_reads is on"),
                        );
                        op.security = Some(vec![
                            SecurityRequirement::default(),
                            SecurityRequirement::new("bearer", Vec::<String>::new()),
                        ]);
                    }
                }
            }
        }
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
        .routes(routes!(diagnosis::incidents))
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

/// The routes and the finished document (links need the paths in place).
fn routes_and_doc() -> (axum::Router<ApiState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = api_routes().split_for_parts();
    utoipa::Modify::modify(&Links, &mut doc);
    utoipa::Modify::modify(&Access, &mut doc);
    (routes, doc)
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes_and_doc().1
}

/// The document as `/api/openapi.json` serves it. utoipa 5 writes a link's
/// fields in snake case (`operation_id`); OpenAPI spells them in camel
/// case, so they are renamed here.
pub fn openapi_json(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut v = serde_json::to_value(doc).unwrap_or_default();
    if let Some(paths) = v.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for op in paths.values_mut().filter_map(|i| i.as_object_mut()).flat_map(|i| i.values_mut())
        {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for links in responses
                .values_mut()
                .filter_map(|r| r.get_mut("links"))
                .filter_map(|l| l.as_object_mut())
            {
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(x) = link.remove(from) {
                            link.insert(to.to_owned(), x);
                        }
                    }
                }
            }
        }
    }
    v
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let (api, doc) = routes_and_doc();
    let json_doc = Arc::new(openapi_json(&doc));
    api.route("/", get(dashboard))
        .route(
            "/app.js",
            get(|| async {
                asset("text/javascript; charset=utf-8", include_str!("../../web/dist/app.js"))
            }),
        )
        .route(
            "/app.css",
            get(|| async {
                asset("text/css; charset=utf-8", include_str!("../../web/dist/app.css"))
            }),
        )
        .route("/api/openapi.json", get(move || async move { Json(json_doc.as_ref().clone()) }))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs").config(
                utoipa_swagger_ui::Config::from("/api/openapi.json").try_it_out_enabled(true),
            ),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// Error answers are JSON everywhere: axum's own rejections (a path it
/// cannot decode, a method a route lacks) come as text and become
/// `{"error": text}` with their status (and `Allow` kept).
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = (status, Json(ErrorBody { error })).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// What a request needs: mutating requests under /api an admin token;
/// reads under /api and /metrics a read (or admin) token when
/// `reads_need_token`; the page, its assets, /docs, the OpenAPI document and
/// /health nothing.
fn scope_needed(method: &Method, path: &str, reads_need_token: bool) -> Option<Scope> {
    let read_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let data = (path.starts_with("/api/") && path != "/api/openapi.json") || path == "/metrics";
    match (data, read_only) {
        (false, _) => None,
        (true, false) => Some(Scope::Admin),
        (true, true) => reads_need_token.then_some(Scope::Read),
    }
}

/// A browser's EventSource cannot send headers: the event streams (reads)
/// also take the token as `?access_token=`.
fn stream_token(req: &Request) -> Option<&str> {
    if !req.uri().path().ends_with("/stream") {
        return None;
    }
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("access_token="))
}

async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(need) = scope_needed(req.method(), req.uri().path(), state.reads_need_token) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| stream_token(&req));
    let scope = presented.and_then(|t| state.tokens.scope_of(t));
    let refusal = match (presented, scope) {
        (_, Some(s)) if s >= need => return next.run(req).await,
        (_, Some(s)) => ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("this token's scope is '{}'; this request needs '{}'", s.as_str(), need.as_str()),
        },
        (Some(_), None) => ApiError { status: StatusCode::UNAUTHORIZED, message: "invalid bearer token".into() },
        (None, None) => ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: format!("this endpoint needs 'Authorization: Bearer <token>' with scope '{}' (the admin token is in the coordinator's data directory; `distdiag-coordinator token create` makes scoped ones)", need.as_str()),
        },
    };
    // Never the token itself.
    tracing::warn!(method = %req.method(), path = %req.uri().path(), status = refusal.status.as_u16(), reason = %refusal.message, "API request refused");
    let mut resp = refusal.into_response();
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The dashboard page, embedded in the binary: built from
/// `coordinator/web/src` into `coordinator/web/dist` (committed, so the Rust
/// build needs no network; a test rebuilds it and compares).
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../../web/dist/index.html"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

/// Liveness, connected agents and known nodes.
#[utoipa::path(
    operation_id = "health",get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
async fn health(State(state): State<ApiState>) -> Json<Health> {
    let stats = state.store.stats();
    let fault = state.store.storage_fault();
    Json(Health {
        status: "ok".into(),
        connected_agents: state.registry.len(),
        nodes: stats.nodes,
        version: env!("CARGO_PKG_VERSION").into(),
        reads_need_token: state.reads_need_token,
        storage: StorageHealth {
            writable: fault.is_none(),
            since_ms: fault.as_ref().map(|f| f.since_ms),
            free_bytes: fault.as_ref().and_then(|f| f.free_bytes),
            error: fault.map(|f| f.error),
        },
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
#[utoipa::path(
    operation_id = "nodes",get, path = "/api/nodes", tag = "nodes", responses((status = 200, body = NodeList)))]
async fn list_nodes(State(state): State<ApiState>) -> Json<NodeList> {
    let nodes = state.store.nodes().iter().map(|r| node_info(&state, r, false)).collect();
    Json(NodeList { nodes })
}

/// One node, with its metric catalog.
#[utoipa::path(
    operation_id = "node",
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
    operation_id = "delete_node",
    delete, path = "/api/nodes/{node}", tag = "nodes",
    params(("node" = String, Path, description = "Node name")),
    responses(
        (status = 200, body = NodeDeleted),
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
