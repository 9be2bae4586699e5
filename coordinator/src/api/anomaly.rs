//! `/api/anomaly/*`: start and stop faults on agents, list active ones and
//! the history (the labels). The seeds' body `{"type": "cpu_stress"}` works
//! with defaults when exactly one agent is connected; otherwise the request
//! names `node` or `nodes`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use distdiag_api::faults::{
    CpuParams, DbFaultParams, DiskParams, DurationArg, FaultHistory, FaultList, FaultRecord,
    HistoryQuery, MemoryParams, NetParams, StartAnswer, StartRequest, StopAnswer, StopFailure,
    StopRequest, AGENT_KINDS, DB_KINDS,
};
use distdiag_api::training::Case;
use distdiag_api::ErrorBody;
use distdiag_common::fault::{FaultSpec, MemorySize};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::metrics::parse_time;
use super::{blocking, ApiError, ApiState};
use crate::faults::FaultsError;
use crate::ingest::now_ms;

/// Opens the training case of faults just started, if asked to.
fn maybe_case(
    state: &ApiState,
    req: &StartRequest,
    recs: &[FaultRecord],
) -> Result<Option<Case>, ApiError> {
    if let Some(id) = &req.case {
        return state
            .training
            .join_case(id, recs)
            .map(Some)
            .map_err(super::diagnosis::training_error);
    }
    if !req.collect_training_data.unwrap_or_else(|| state.training.collect_all()) {
        return Ok(None);
    }
    let (pre, post) = (req.pre_s.unwrap_or(30), req.post_s.unwrap_or(30));
    state
        .training
        .open_case(
            recs,
            req.scenario.as_deref().unwrap_or(""),
            i64::from(pre) * 1000,
            i64::from(post) * 1000,
            now_ms(),
        )
        .map(Some)
        .map_err(super::diagnosis::training_error)
}

fn params<T: DeserializeOwned>(kind: &str, p: &Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(p.clone()))
        .map_err(|e| ApiError::bad_request(format!("{kind} params: {e}")))
}

/// The fault a request asks for, with the seeds' defaults filled in.
pub(super) fn spec_from(kind: &str, p: &Map<String, Value>) -> Result<FaultSpec, ApiError> {
    let spec = match kind {
        "cpu_stress" => {
            let c: CpuParams = params(kind, p)?;
            FaultSpec::CpuStress { workers: c.workers, load_percent: c.load_percent }
        }
        "memory_stress" => {
            let m: MemoryParams = params(kind, p)?;
            let size = match (m.bytes, m.percent_of_available) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::bad_request(
                        "memory_stress: give bytes or percent_of_available, not both",
                    ))
                }
                (None, Some(pct)) => MemorySize::PercentOfAvailable(pct),
                (b, None) => MemorySize::Bytes(b.unwrap_or(256 << 20)),
            };
            FaultSpec::MemoryStress { size }
        }
        "disk_stress" => {
            let d: DiskParams = params(kind, p)?;
            FaultSpec::DiskStress { workers: d.workers, bytes: d.bytes, path: d.path }
        }
        "network_delay" | "network_loss" | "network_bandwidth" => {
            let n: NetParams = params(kind, p)?;
            match kind {
                "network_delay" => FaultSpec::NetworkDelay {
                    latency_ms: n.latency_ms.unwrap_or(100),
                    jitter_ms: n.jitter_ms,
                    interface: n.interface,
                    peers: n.peers,
                    ports: n.ports,
                },
                "network_loss" => FaultSpec::NetworkLoss {
                    percent: n.percent.unwrap_or(10.0),
                    interface: n.interface,
                    peers: n.peers,
                    ports: n.ports,
                },
                _ => FaultSpec::NetworkBandwidth {
                    rate_kbit: n.rate_kbit.unwrap_or(1000),
                    interface: n.interface,
                },
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown anomaly type {other:?}; one of {}, {}",
                AGENT_KINDS.join(", "),
                DB_KINDS.join(", ")
            )))
        }
    };
    spec.validate().map_err(ApiError::bad_request)?;
    Ok(spec)
}

fn duration_ms(v: Option<&DurationArg>, default_ms: u64, max_ms: u64) -> Result<u64, ApiError> {
    let ms = match v {
        None => default_ms,
        Some(DurationArg::Seconds(s)) if s.is_finite() && *s > 0.0 => (s * 1000.0) as u64,
        Some(DurationArg::Seconds(_)) => {
            return Err(ApiError::bad_request("duration must be a positive number of seconds"))
        }
        Some(DurationArg::Text(s)) => humantime::parse_duration(s)
            .map_err(|e| ApiError::bad_request(format!("bad duration {s:?}: {e}")))?
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
    };
    if ms == 0 || ms > max_ms {
        return Err(ApiError::bad_request(format!(
            "duration {} s is outside 1 ms ..= {} s (faults.max_duration_ms)",
            ms / 1000,
            max_ms / 1000
        )));
    }
    Ok(ms)
}

fn dbfault_error(e: crate::dbfault::DbFaultError) -> ApiError {
    use crate::dbfault::DbFaultError as E;
    match e {
        E::Invalid(m) => ApiError::bad_request(m),
        E::Unknown(_) => ApiError::not_found(e.to_string()),
        E::Db(d) => super::database::db_error(d),
        E::Sql { .. } => ApiError { status: StatusCode::FAILED_DEPENDENCY, message: e.to_string() },
        E::Store(_) => ApiError::internal(e),
    }
}

fn faults_error(e: FaultsError) -> ApiError {
    let status = match e {
        FaultsError::NotConnected(_) => StatusCode::CONFLICT,
        FaultsError::Unknown(_) => StatusCode::NOT_FOUND,
        FaultsError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        FaultsError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        FaultsError::Chaos(_) => StatusCode::BAD_GATEWAY,
        FaultsError::Failed { .. } | FaultsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError { status, message: e.to_string() }
}

/// Starts a fault on agents (all or nothing) or on a database; with
/// `collect_training_data` (or while collection is on) it also opens a
/// training case, or joins `case`.
#[utoipa::path(
    operation_id = "start_fault",
    post, path = "/api/anomaly/start", tag = "faults",
    request_body = StartRequest,
    responses(
        (status = 200, body = StartAnswer),
        (status = 400, body = ErrorBody, description = "Bad request (type, parameters, duration, nodes)"),
        (status = 404, body = ErrorBody, description = "Unknown training case or database"),
        (status = 409, body = ErrorBody, description = "A node is not connected, or several are and none is named"),
        (status = 422, body = ErrorBody, description = "Refused by the agent (e.g. memory the host does not have)"),
        (status = 424, body = ErrorBody, description = "The database is unreachable or refused"),
        (status = 504, body = ErrorBody, description = "No answer from the agent"),
        (status = 502, body = ErrorBody, description = "Chaos Mesh (through the Kubernetes API) failed"),
    )
)]
pub(super) async fn start(
    State(state): State<ApiState>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Json<StartAnswer>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Everything a training case needs is checked before any fault starts.
    if req.pre_s.unwrap_or(0) > 3600 || req.post_s.unwrap_or(0) > 3600 {
        return Err(ApiError::bad_request("pre_s and post_s are at most 3600"));
    }
    if let Some(s) = &req.scenario {
        crate::training::check_scenario(s).map_err(ApiError::bad_request)?;
    }
    if let Some(id) = &req.case {
        if req.pre_s.is_some()
            || req.post_s.is_some()
            || req.scenario.is_some()
            || req.collect_training_data == Some(false)
        {
            return Err(ApiError::bad_request("case joins an existing training case: pre_s, post_s and scenario are the case's, and collect_training_data cannot be false"));
        }
        let known = state.training.case(id).map_err(ApiError::internal)?;
        if known.is_none() {
            return Err(ApiError::not_found(format!("no training case {id:?}")));
        }
    }
    let limits = &state.fault_limits;
    let duration =
        duration_ms(req.duration.as_ref(), limits.default_duration_ms, limits.max_duration_ms)?;
    let message = format!("Started {} anomaly", req.kind);
    if DB_KINDS.contains(&req.kind.as_str()) {
        if req.node.is_some() || req.nodes.is_some() {
            return Err(ApiError::bad_request(format!(
                "{} acts on a database: name it in params.database, not node",
                req.kind
            )));
        }
        let p: DbFaultParams = params(&req.kind, &req.params)?;
        let spec = state.dbfaults.spec_from(&req.kind, p).map_err(dbfault_error)?;
        let rec = state.dbfaults.apply(spec, duration).await.map_err(dbfault_error)?;
        let case = maybe_case(&state, &req, std::slice::from_ref(&rec))?;
        return Ok(Json(StartAnswer {
            status: "success".into(),
            message,
            anomalies: vec![rec],
            case,
        }));
    }
    let spec = spec_from(&req.kind, &req.params)?;
    let nodes = match (req.node.clone(), req.nodes.clone()) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give node or nodes, not both")),
        (Some(n), None) => vec![n],
        (None, Some(ns)) if !ns.is_empty() => ns,
        (None, Some(_)) => return Err(ApiError::bad_request("nodes is empty")),
        (None, None) => {
            let connected = state.registry.snapshot();
            match connected.as_slice() {
                [one] => vec![one.node.clone()],
                [] => return Err(ApiError::conflict("no agent is connected")),
                many => {
                    let names: Vec<&str> = many.iter().map(|a| a.node.as_str()).collect();
                    return Err(ApiError::conflict(format!(
                        "several agents are connected ({}); name the node",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    for n in &nodes {
        if state.registry.get(n).is_none() && !state.faults.via_chaos(n, &spec) {
            return Err(ApiError::conflict(format!("node {n:?} is not connected")));
        }
    }
    let mut started = Vec::new();
    for n in &nodes {
        match state.faults.apply(n, spec.clone(), duration).await {
            Ok(rec) => started.push(rec),
            Err(e) => {
                // All or nothing: undo what this request already started.
                for rec in &started {
                    let _ = state.faults.revert(&rec.id).await;
                }
                return Err(faults_error(e));
            }
        }
    }
    let case = maybe_case(&state, &req, &started)?;
    Ok(Json(StartAnswer { status: "success".into(), message, anomalies: started, case }))
}

/// Stops one fault (`{"id": ...}`), or every fault (an empty body or no id).
#[utoipa::path(
    operation_id = "stop_fault",
    post, path = "/api/anomaly/stop", tag = "faults",
    request_body(content = Option<StopRequest>, description = "May be empty: stop everything"),
    responses(
        (status = 200, body = StopAnswer),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 404, body = ErrorBody, description = "No active fault with that id"),
        (status = 424, body = ErrorBody, description = "The database refused the revert"),
        (status = 504, body = ErrorBody, description = "No answer from the agent"),
        (status = 502, body = ErrorBody, description = "Chaos Mesh (through the Kubernetes API) failed"),
    )
)]
pub(super) async fn stop(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Json<StopAnswer>, ApiError> {
    let req: StopRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StopRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("stop request: {e}")))?
    };
    let one = |rec: FaultRecord, id: &str| StopAnswer {
        status: "success".into(),
        message: format!("Stopped anomaly {id}"),
        stopped: vec![rec],
        failed: Vec::new(),
    };
    match req.id {
        Some(id) if state.dbfaults.is_db_fault(&id) => {
            let rec = state.dbfaults.revert(&id).await.map_err(dbfault_error)?;
            Ok(Json(one(rec, &id)))
        }
        Some(id) => {
            let rec = state.faults.revert(&id).await.map_err(faults_error)?;
            Ok(Json(one(rec, &id)))
        }
        None => {
            let (mut done, mut failed) = state.faults.revert_all().await;
            let (db_done, db_failed) = state.dbfaults.revert_all().await;
            done.extend(db_done);
            failed.extend(db_failed);
            let status = if failed.is_empty() { "success" } else { "partial" };
            Ok(Json(StopAnswer {
                status: status.into(),
                message: "Stopped all anomalies".into(),
                stopped: done,
                failed: failed.into_iter().map(|(id, error)| StopFailure { id, error }).collect(),
            }))
        }
    }
}

/// Faults that may still be in effect.
#[utoipa::path(
    operation_id = "active_faults",get, path = "/api/anomaly/active", tag = "faults", responses((status = 200, body = FaultList)))]
pub(super) async fn active(State(state): State<ApiState>) -> Json<FaultList> {
    let mut all = state.faults.active();
    all.extend(state.dbfaults.active());
    Json(FaultList { anomalies: all })
}

/// Every fault whose lifetime overlaps the period (the training labels):
/// node, type, spec, requested/applied/deadline/ended times, final state and why.
#[utoipa::path(
    operation_id = "fault_history",
    get, path = "/api/anomaly/history", tag = "faults", params(HistoryQuery),
    responses((status = 200, body = FaultHistory), (status = 400, body = ErrorBody, description = "Bad time"))
)]
pub(super) async fn history(
    State(state): State<ApiState>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<FaultHistory>, ApiError> {
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
        .unwrap_or(to - 24 * 3_600_000);
    let faults = state.faults.clone();
    let recs = blocking(move || faults.history(from, to).map_err(faults_error)).await?;
    Ok(Json(FaultHistory { from, to, anomalies: recs }))
}
