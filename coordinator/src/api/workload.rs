//! `/api/workload/*`: prepare (a background job with progress), start, stop,
//! stop-all, active, one run's live report, stored runs, and validation
//! checks (TPC-C consistency, the 22 TPC-H queries). Bodies accept the seeds'
//! `workload_type` as well as `type`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use distdiag_api::workload::{
    CheckAnswer, ConsistencyCheck, Phase, PrepareAnswer, QueryRun, WorkloadKind, WorkloadList,
    WorkloadReport, WorkloadRequest, WorkloadStarted, WorkloadStopped, WorkloadsStopped,
};
use distdiag_api::ErrorBody;
use distdiag_workload::WorkloadError;

use super::database::db_error;
use super::{ApiError, ApiState};

pub(super) fn workload_error(e: WorkloadError) -> ApiError {
    match e {
        WorkloadError::Invalid(m) => ApiError::bad_request(m),
        WorkloadError::Unknown(_) => ApiError::not_found(e.to_string()),
        WorkloadError::NotPrepared(m) => ApiError::conflict(m),
        WorkloadError::Db(d) => db_error(d),
        WorkloadError::Sql(m) => ApiError { status: StatusCode::FAILED_DEPENDENCY, message: m },
    }
}

fn body(
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<(WorkloadRequest, WorkloadKind), ApiError> {
    let req = b.map(|Json(r)| r).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let kind = req.workload_kind().map_err(ApiError::bad_request)?;
    Ok((req, kind))
}

/// Creates and loads the benchmark's tables as a background job (202 with
/// `workload_id`; `GET /api/workload/{id}` shows `progress`); `"wait": true`
/// answers when it is done, or with 202 after `api.prepare_wait_ms` (a
/// minute) if it is not.
#[utoipa::path(
    operation_id = "prepare_workload",
    post, path = "/api/workload/prepare", tag = "workloads",
    request_body = WorkloadRequest,
    responses(
        (status = 200, body = PrepareAnswer, description = "Prepared (with wait)"),
        (status = 202, body = PrepareAnswer, description = "Preparing (with wait: still, after a minute)"),
        (status = 400, body = ErrorBody, description = "Bad request, or another run uses the tables"),
        (status = 404, body = ErrorBody, description = "Unknown database"),
        (status = 424, body = ErrorBody, description = "The prepare failed in the database (with wait)"),
    )
)]
pub(super) async fn prepare(
    State(state): State<ApiState>,
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<PrepareAnswer>), ApiError> {
    let (req, kind) = body(b)?;
    let (run, job) =
        state.workloads.prepare(kind, req.options.unwrap_or_default()).map_err(workload_error)?;
    // Waits at most `api.prepare_wait_ms` (a minute): a proxy or client
    // would give up on a longer request, and a large prepare takes longer.
    // Still preparing: 202.
    if req.wait && tokio::time::timeout(state.prepare_wait, job).await.is_ok() {
        let report = run.report(false);
        let ok = report.phase == Phase::Prepared;
        let status = if ok {
            "Database prepared successfully".to_owned()
        } else {
            format!("prepare failed: {}", report.error.as_deref().unwrap_or("unknown"))
        };
        let code = if ok { StatusCode::OK } else { StatusCode::FAILED_DEPENDENCY };
        let answer = PrepareAnswer {
            workload_id: run.id.clone(),
            status,
            progress: None,
            report: Some(report),
        };
        return Ok((code, Json(answer)));
    }
    let answer = PrepareAnswer {
        workload_id: run.id.clone(),
        status: "preparing".into(),
        progress: Some(0.0),
        report: None,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Starts a run: `threads` workers (1..=64) until stopped or `duration_s`.
#[utoipa::path(
    operation_id = "start_workload",
    post, path = "/api/workload/start", tag = "workloads",
    request_body = WorkloadRequest,
    responses(
        (status = 200, body = WorkloadStarted),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 404, body = ErrorBody, description = "Unknown database"),
        (status = 409, body = ErrorBody, description = "Not prepared"),
        (status = 424, body = ErrorBody, description = "The database is unreachable"),
    )
)]
pub(super) async fn start(
    State(state): State<ApiState>,
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<Json<WorkloadStarted>, ApiError> {
    let (req, kind) = body(b)?;
    let threads = req.threads.unwrap_or(4);
    if !(1..=64).contains(&threads) {
        return Err(ApiError::bad_request(format!("threads = {threads} is outside 1..=64")));
    }
    let run = state
        .workloads
        .start(kind, threads as usize, req.options.unwrap_or_default())
        .await
        .map_err(workload_error)?;
    Ok(Json(WorkloadStarted {
        workload_id: run.id.clone(),
        status: "Workload started successfully".into(),
        kind,
        threads,
    }))
}

/// Stops one run (it keeps its report).
#[utoipa::path(
    operation_id = "stop_workload",
    post, path = "/api/workload/{id}/stop", tag = "workloads",
    params(("id" = String, Path, description = "Workload id")),
    responses(
        (status = 200, body = WorkloadStopped),
        (status = 404, body = ErrorBody, description = "Unknown workload"),
    )
)]
pub(super) async fn stop(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<WorkloadStopped>, ApiError> {
    let run = state.workloads.stop(&id).await.map_err(workload_error)?;
    Ok(Json(WorkloadStopped {
        workload_id: id,
        status: "Workload stopped successfully".into(),
        report: run.report(false),
    }))
}

/// Stops every run.
#[utoipa::path(
    operation_id = "stop_all_workloads",
    post, path = "/api/workload/stop-all", tag = "workloads",
    responses(
        (status = 200, body = WorkloadsStopped),
    )
)]
pub(super) async fn stop_all(State(state): State<ApiState>) -> Json<WorkloadsStopped> {
    let stopped = state.workloads.stop_all().await.iter().map(|r| r.id.clone()).collect();
    Json(WorkloadsStopped {
        workload_id: "all".into(),
        status: "All workloads stopped successfully".into(),
        stopped,
    })
}

/// Live runs and prepare jobs with their figures.
#[utoipa::path(
    operation_id = "active_workloads",get, path = "/api/workload/active", tag = "workloads", responses((status = 200, body = WorkloadList)))]
pub(super) async fn active(State(state): State<ApiState>) -> Json<WorkloadList> {
    Json(WorkloadList {
        workloads: state.workloads.active().iter().map(|r| r.report(false)).collect(),
    })
}

/// One run with its per-interval TPS, QPS, errors and latency percentiles.
#[utoipa::path(
    operation_id = "workload",
    get, path = "/api/workload/{id}", tag = "workloads",
    params(("id" = String, Path, description = "Workload id")),
    responses((status = 200, body = WorkloadReport), (status = 404, body = ErrorBody, description = "Unknown workload"))
)]
pub(super) async fn get_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<WorkloadReport>, ApiError> {
    if let Some(run) = state.workloads.get(&id) {
        return Ok(Json(run.report(true)));
    }
    state
        .workloads
        .stored(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown workload {id:?}")))
}

/// Every stored run, without intervals, oldest first.
#[utoipa::path(
    operation_id = "workload_runs",get, path = "/api/workload/runs", tag = "workloads", responses((status = 200, body = WorkloadList)))]
pub(super) async fn runs(State(state): State<ApiState>) -> Json<WorkloadList> {
    Json(WorkloadList { workloads: state.workloads.history() })
}

/// Validation of a prepared benchmark: TPC-C consistency conditions 1–4,
/// or the 22 TPC-H queries run once (rows and time each).
#[utoipa::path(
    operation_id = "check_workload",
    post, path = "/api/workload/check", tag = "workloads",
    request_body = WorkloadRequest,
    responses(
        (status = 200, body = CheckAnswer),
        (status = 400, body = ErrorBody, description = "Bad request, or a benchmark without a check"),
        (status = 404, body = ErrorBody, description = "Unknown database"),
        (status = 424, body = ErrorBody, description = "The database is unreachable or refused"),
    )
)]
pub(super) async fn check(
    State(state): State<ApiState>,
    b: Result<Json<WorkloadRequest>, JsonRejection>,
) -> Result<Json<CheckAnswer>, ApiError> {
    let (req, kind) = body(b)?;
    let options = req.options.unwrap_or_default();
    options.validate().map_err(ApiError::bad_request)?;
    let t = state.probes.target(options.database.as_deref()).map_err(db_error)?.clone();
    match kind {
        WorkloadKind::Tpcc => {
            let checks: Vec<ConsistencyCheck> = distdiag_workload::tpcc::consistency(&t)
                .await
                .map_err(workload_error)?
                .into_iter()
                .map(|c| ConsistencyCheck {
                    condition: c.condition,
                    description: c.description.to_owned(),
                    passed: c.passed,
                    violations: c.violations,
                })
                .collect();
            let passed = checks.iter().all(|c| c.passed);
            Ok(Json(CheckAnswer {
                kind,
                database: t.name,
                passed,
                checks: Some(checks),
                queries: None,
            }))
        }
        WorkloadKind::Tpch => {
            let queries: Vec<QueryRun> = distdiag_workload::tpch::run_all(&t, options.scale_factor)
                .await
                .map_err(workload_error)?
                .into_iter()
                .map(|r| QueryRun {
                    query: r.query.to_owned(),
                    rows: r.rows,
                    ms: r.ms,
                    error: r.error,
                })
                .collect();
            let passed = queries.iter().all(|r| r.error.is_none());
            Ok(Json(CheckAnswer {
                kind,
                database: t.name,
                passed,
                checks: None,
                queries: Some(queries),
            }))
        }
        other => Err(ApiError::bad_request(format!(
            "no check for {}; checks exist for tpcc and tpch",
            other.as_str()
        ))),
    }
}
