//! `/api/workload/*`: prepare (a background job with progress), start, stop,
//! stop-all, active, one run's live report, stored runs, and validation
//! checks (TPC-C consistency, the 22 TPC-H queries). Bodies accept the seeds'
//! `workload_type` as well as `type`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::database::db_error;
use super::{ApiError, ApiState};
use distdiag_workload::{Options, WorkloadError, WorkloadKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkloadRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    workload_type: Option<String>,
    threads: Option<i64>,
    #[serde(default)]
    options: Option<Options>,
    /// Prepare: answer only when the job ends.
    #[serde(default)]
    wait: bool,
}

impl WorkloadRequest {
    fn kind(&self) -> Result<WorkloadKind, ApiError> {
        let name = match (&self.kind, &self.workload_type) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::bad_request("type and workload_type disagree"))
            }
            (Some(a), _) | (None, Some(a)) => a.as_str(),
            (None, None) => "oltp_read_write",
        };
        WorkloadKind::parse(name).map_err(workload_error)
    }
}

pub(super) fn workload_error(e: WorkloadError) -> ApiError {
    match e {
        WorkloadError::Invalid(m) => ApiError::bad_request(m),
        WorkloadError::Unknown(_) => ApiError::not_found(e.to_string()),
        WorkloadError::NotPrepared(m) => ApiError { status: StatusCode::CONFLICT, message: m },
        WorkloadError::Db(d) => db_error(d),
        WorkloadError::Sql(m) => ApiError { status: StatusCode::FAILED_DEPENDENCY, message: m },
    }
}

fn body(b: Result<Json<WorkloadRequest>, JsonRejection>) -> Result<WorkloadRequest, ApiError> {
    b.map(|Json(r)| r).map_err(|e| ApiError::bad_request(e.body_text()))
}

pub(super) async fn prepare(
    State(state): State<ApiState>,
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body(b)?;
    let kind = req.kind()?;
    let (run, job) =
        state.workloads.prepare(kind, req.options.unwrap_or_default()).map_err(workload_error)?;
    if req.wait {
        let _ = job.await;
        let report = run.report(false);
        let ok = report["phase"] == "prepared";
        let status = if ok {
            "Database prepared successfully".to_owned()
        } else {
            format!("prepare failed: {}", report["error"].as_str().unwrap_or("unknown"))
        };
        let code = if ok { StatusCode::OK } else { StatusCode::FAILED_DEPENDENCY };
        return Ok((
            code,
            Json(json!({ "workload_id": run.id, "status": status, "report": report })),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "workload_id": run.id, "status": "preparing", "progress": 0.0 })),
    ))
}

pub(super) async fn start(
    State(state): State<ApiState>,
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = body(b)?;
    let kind = req.kind()?;
    let threads = req.threads.unwrap_or(4);
    if !(1..=64).contains(&threads) {
        return Err(ApiError::bad_request(format!("threads = {threads} is outside 1..=64")));
    }
    let run = state
        .workloads
        .start(kind, threads as usize, req.options.unwrap_or_default())
        .await
        .map_err(workload_error)?;
    Ok(Json(
        json!({ "workload_id": run.id, "status": "Workload started successfully", "type": kind.as_str(), "threads": threads }),
    ))
}

pub(super) async fn stop(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = state.workloads.stop(&id).await.map_err(workload_error)?;
    Ok(Json(
        json!({ "workload_id": id, "status": "Workload stopped successfully", "report": run.report(false) }),
    ))
}

pub(super) async fn stop_all(State(state): State<ApiState>) -> Json<Value> {
    let stopped: Vec<String> =
        state.workloads.stop_all().await.iter().map(|r| r.id.clone()).collect();
    Json(
        json!({ "workload_id": "all", "status": "All workloads stopped successfully", "stopped": stopped }),
    )
}

pub(super) async fn active(State(state): State<ApiState>) -> Json<Value> {
    let list: Vec<Value> = state.workloads.active().iter().map(|r| r.report(false)).collect();
    Json(json!({ "workloads": list }))
}

pub(super) async fn get_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(run) = state.workloads.get(&id) {
        return Ok(Json(run.report(true)));
    }
    state
        .workloads
        .stored(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown workload {id:?}")))
}

pub(super) async fn runs(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "workloads": state.workloads.history() }))
}

/// Validation of a prepared benchmark: TPC-C consistency conditions, or the 22 TPC-H queries.
pub(super) async fn check(
    State(state): State<ApiState>,
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = body(b)?;
    let kind = req.kind()?;
    let options = req.options.unwrap_or_default();
    options.validate().map_err(workload_error)?;
    let t = state.probes.target(options.database.as_deref()).map_err(db_error)?.clone();
    match kind {
        WorkloadKind::Tpcc => {
            let checks = distdiag_workload::tpcc::consistency(&t).await.map_err(workload_error)?;
            let passed = checks.iter().all(|c| c.passed);
            Ok(Json(
                json!({ "type": "tpcc", "database": t.name, "passed": passed, "checks": checks }),
            ))
        }
        WorkloadKind::Tpch => {
            let runs = distdiag_workload::tpch::run_all(&t, options.scale_factor)
                .await
                .map_err(workload_error)?;
            let passed = runs.iter().all(|r| r.error.is_none());
            Ok(Json(
                json!({ "type": "tpch", "database": t.name, "passed": passed, "queries": runs }),
            ))
        }
        other => Err(ApiError::bad_request(format!(
            "no check for {}; checks exist for tpcc and tpch",
            other.as_str()
        ))),
    }
}
