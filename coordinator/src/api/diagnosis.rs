//! Training collection, models, datasets and rankings:
//! `/api/training/*`, `/api/anomaly/train`, `/api/anomaly/ranks`,
//! `/api/models/*`, `/api/datasets/*`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use distdiag_api::models::{
    DatasetImported, DatasetList, EvaluateAnswer, EvaluateRequest, Job, ModelActivated, ModelDoc,
    ModelList, ModelSummary, TrainAccepted, TrainRequest, WindowQuery,
};
use distdiag_api::ranks::{
    GraphAnswer, GraphEdge, GraphFormat, GraphNode, GraphQuery, IncidentList, IncidentsQuery,
    RankHistory, Ranking, RanksAnswer, RanksQuery,
};
use distdiag_api::training::{CaseFaults, CaseList, CollectAnswer, NormalAnswer, Stats};
use distdiag_api::ErrorBody;
use distdiag_dataset::{Dataset, WindowConfig};
use distdiag_diagnose::graph::to_graphml;

use super::metrics::parse_time;
use super::{blocking, ApiError, ApiState};
use crate::ingest::now_ms;
use crate::models::ModelsError;
use crate::training::TrainingError;

pub(super) fn training_error(e: TrainingError) -> ApiError {
    let status = match e {
        TrainingError::Conflict(_) => StatusCode::CONFLICT,
        TrainingError::Invalid(_)
        | TrainingError::Dataset(distdiag_dataset::DatasetError::Invalid(_)) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError { status, message: e.to_string() }
}

fn models_error(e: ModelsError) -> ApiError {
    let status = match e {
        ModelsError::NotFound(_) => StatusCode::NOT_FOUND,
        ModelsError::Invalid(_) => StatusCode::BAD_REQUEST,
        ModelsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError { status, message: e.to_string() }
}

/// A body that may be empty (whatever its content type): the default then.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    b: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// Starts a normal collection period.
#[utoipa::path(
    operation_id = "normal_start",
    post, path = "/api/training/normal/start", tag = "training",
    responses(
        (status = 200, body = NormalAnswer),
        (status = 409, body = ErrorBody, description = "A normal collection already runs"),
    )
)]
pub(super) async fn normal_start(
    State(state): State<ApiState>,
) -> Result<Json<NormalAnswer>, ApiError> {
    let p = state.training.start_normal(now_ms()).map_err(training_error)?;
    Ok(Json(NormalAnswer {
        status: "success".into(),
        message: "Normal collection started".into(),
        period: p,
    }))
}

/// Ends the normal collection period.
#[utoipa::path(
    operation_id = "normal_stop",
    post, path = "/api/training/normal/stop", tag = "training",
    responses(
        (status = 200, body = NormalAnswer),
        (status = 409, body = ErrorBody, description = "No normal collection runs"),
    )
)]
pub(super) async fn normal_stop(
    State(state): State<ApiState>,
) -> Result<Json<NormalAnswer>, ApiError> {
    let p = state.training.stop_normal(now_ms()).map_err(training_error)?;
    Ok(Json(NormalAnswer {
        status: "success".into(),
        message: "Normal collection stopped".into(),
        period: p,
    }))
}

/// From now on every fault started is a training case.
#[utoipa::path(
    operation_id = "collect_start",
    post, path = "/api/training/collect", tag = "training",
    responses(
        (status = 200, body = CollectAnswer),
    )
)]
pub(super) async fn collect(State(state): State<ApiState>) -> Json<CollectAnswer> {
    state.training.set_collect_all(true);
    Json(CollectAnswer {
        status: "success".into(),
        message: "Faults started from now on are recorded as training cases".into(),
        collecting: true,
    })
}

/// Faults started from now on are no longer training cases (unless asked).
#[utoipa::path(
    operation_id = "collect_stop",
    post, path = "/api/training/stop", tag = "training",
    responses(
        (status = 200, body = CollectAnswer),
    )
)]
pub(super) async fn collect_stop(State(state): State<ApiState>) -> Json<CollectAnswer> {
    state.training.set_collect_all(false);
    Json(CollectAnswer {
        status: "success".into(),
        message: "Training case collection stopped".into(),
        collecting: false,
    })
}

/// Samples collected, per type, and whether normal and anomalous data are balanced.
#[utoipa::path(
    operation_id = "training_stats",get, path = "/api/training/stats", tag = "training", responses((status = 200, body = Stats)))]
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<Stats>, ApiError> {
    let t = state.training.clone();
    Ok(Json(blocking(move || t.stats(now_ms()).map_err(training_error)).await?))
}

/// Training cases with their fault events, and the normal periods.
#[utoipa::path(
    operation_id = "training_cases",get, path = "/api/training/cases", tag = "training", responses((status = 200, body = CaseList)))]
pub(super) async fn cases(State(state): State<ApiState>) -> Result<Json<CaseList>, ApiError> {
    let t = state.training.clone();
    let cases = blocking(move || t.resolved_cases(now_ms()).map_err(ApiError::internal)).await?;
    let cases = cases.into_iter().map(|(case, faults)| CaseFaults { case, faults }).collect();
    let normal_periods = state.training.normal_periods().map_err(ApiError::internal)?;
    Ok(Json(CaseList { cases, normal_periods }))
}

/// The collected data (normal periods and cases) as a dataset.
fn collected(state: &ApiState, window: Option<WindowConfig>) -> Result<Dataset, ApiError> {
    let window = window.unwrap_or(state.diagnosis.window);
    window.validate().map_err(ApiError::bad_request)?;
    state.training.dataset(window, &state.diagnosis_merge, now_ms()).map_err(training_error)
}

/// Trains a model version on the collected data (or an imported dataset)
/// as a background job; `GET /api/anomaly/train/{job}` follows it.
#[utoipa::path(
    operation_id = "train",
    post, path = "/api/anomaly/train", tag = "models",
    request_body(content = Option<TrainRequest>, description = "May be empty: the collected data, default parameters"),
    responses(
        (status = 202, body = TrainAccepted),
        (status = 400, body = ErrorBody, description = "Bad parameters"),
        (status = 404, body = ErrorBody, description = "Unknown dataset"),
        (status = 409, body = ErrorBody, description = "Nothing collected yet"),
    )
)]
pub(super) async fn train(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TrainAccepted>), ApiError> {
    let req: TrainRequest = optional_body(&body, "train request")?;
    let params = req.params.unwrap_or_default();
    params.validate().map_err(ApiError::bad_request)?;
    let st = state.clone();
    let (source, ds) = blocking(move || match &req.dataset {
        Some(name) => {
            let mut ds = st.models.dataset(name).map_err(models_error)?;
            if let Some(w) = req.window {
                w.validate().map_err(ApiError::bad_request)?;
                ds.manifest.window = w;
                ds.manifest.step_ms = w.step_ms;
            }
            Ok((name.clone(), ds))
        }
        None => Ok(("collected".to_string(), collected(&st, req.window)?)),
    })
    .await?;
    let job = state
        .models
        .start_training(source, ds, params, req.activate.unwrap_or(true), now_ms())
        .map_err(models_error)?;
    let url = format!("/api/anomaly/train/{job}");
    Ok((StatusCode::ACCEPTED, Json(TrainAccepted { status: "accepted".into(), job, url })))
}

/// A training job: state, progress 0..1, message, the model id when done.
#[utoipa::path(
    operation_id = "train_job",
    get, path = "/api/anomaly/train/{job}", tag = "models",
    params(("job" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody, description = "Unknown job"))
)]
pub(super) async fn train_job(
    State(state): State<ApiState>,
    Path(job): Path<String>,
) -> Result<Json<Job>, ApiError> {
    state
        .models
        .job(&job)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown training job {job:?}")))
}

/// Model versions: types, skipped types and why, features, window,
/// parameters, train/validation cases, held-out evaluation.
#[utoipa::path(
    operation_id = "models",get, path = "/api/models", tag = "models", responses((status = 200, body = ModelList)))]
pub(super) async fn models(State(state): State<ApiState>) -> Result<Json<ModelList>, ApiError> {
    let m = state.models.clone();
    let list = blocking(move || m.list().map_err(models_error)).await?;
    Ok(Json(ModelList { models: list, active: state.models.active_id() }))
}

/// One model version, without its boosters.
#[utoipa::path(
    operation_id = "model",
    get, path = "/api/models/{id}", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, body = ModelSummary), (status = 404, body = ErrorBody, description = "Unknown model"))
)]
pub(super) async fn model(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ModelSummary>, ApiError> {
    Ok(Json(state.models.describe(&id).map_err(models_error)?))
}

/// The whole version, boosters included (for `distdiag eval --model`).
#[utoipa::path(
    operation_id = "export_model",
    get, path = "/api/models/{id}/export", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, body = ModelDoc), (status = 404, body = ErrorBody, description = "Unknown model"))
)]
pub(super) async fn export_model(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ModelDoc>, ApiError> {
    Ok(Json(state.models.get(&id).map_err(models_error)?))
}

/// One type's booster as XGBoost JSON (Python: `xgboost.Booster(model_file=...)`).
#[utoipa::path(
    operation_id = "booster",
    get, path = "/api/models/{id}/booster/{type}", tag = "models",
    params(("id" = String, Path, description = "Model id"), ("type" = String, Path, description = "Anomaly type")),
    responses(
        (status = 200, content_type = "application/json", body = Object, description = "XGBoost JSON model"),
        (status = 404, body = ErrorBody, description = "Unknown model or type"),
    )
)]
pub(super) async fn booster(
    State(state): State<ApiState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let doc = state.models.get(&id).map_err(models_error)?;
    let t =
        doc.set.types.iter().find(|t| t.kind == kind).ok_or_else(|| {
            ApiError::not_found(format!("model {id} has no classifier for {kind:?}"))
        })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], t.booster.clone()))
}

/// Makes a version the active one (the previous one is kept for rollback).
#[utoipa::path(
    operation_id = "activate_model",
    post, path = "/api/models/{id}/activate", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses(
        (status = 200, body = ModelActivated),
        (status = 400, body = ErrorBody, description = "The version cannot be loaded (one trained by another version of distdiag: train again)"),
        (status = 404, body = ErrorBody, description = "Unknown model"),
    )
)]
pub(super) async fn activate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ModelActivated>, ApiError> {
    let m = state.models.clone();
    let s = blocking(move || m.activate(&id).map_err(models_error)).await?;
    Ok(Json(ModelActivated { status: "success".into(), model: s }))
}

/// Goes back to the previously active version.
#[utoipa::path(
    operation_id = "rollback_model",
    post, path = "/api/models/rollback", tag = "models",
    responses(
        (status = 200, body = ModelActivated),
        (status = 400, body = ErrorBody, description = "No earlier version"),
        (status = 404, body = ErrorBody, description = "The earlier version is gone"),
    )
)]
pub(super) async fn rollback(
    State(state): State<ApiState>,
) -> Result<Json<ModelActivated>, ApiError> {
    let m = state.models.clone();
    let s = blocking(move || m.rollback().map_err(models_error)).await?;
    Ok(Json(ModelActivated { status: "success".into(), model: s }))
}

/// AC@1/3/5, Avg@5, per-type P/R/F1 and confusion of the model, the
/// statistical scorer and Dummy, at the fault and ±30 s, on the cases the
/// version did not train on.
#[utoipa::path(
    operation_id = "evaluate_model",
    post, path = "/api/models/{id}/evaluate", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    request_body(content = Option<EvaluateRequest>, description = "May be empty: the collected data"),
    responses(
        (status = 200, body = EvaluateAnswer),
        (status = 400, body = ErrorBody, description = "Bad request, no case to evaluate on, or a version trained by another version of distdiag"),
        (status = 404, body = ErrorBody, description = "Unknown model or dataset"),
        (status = 409, body = ErrorBody, description = "Nothing collected yet"),
    )
)]
pub(super) async fn evaluate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<EvaluateAnswer>, ApiError> {
    let req: EvaluateRequest = optional_body(&body, "evaluate request")?;
    let st = state.clone();
    let evaluation = blocking(move || {
        let doc = st.models.get(&id).map_err(models_error)?;
        let ds = match &req.dataset {
            Some(name) => st.models.dataset(name).map_err(models_error)?,
            None => collected(&st, Some(doc.set.window))?,
        };
        st.models.evaluate(&id, &ds, req.seed.unwrap_or(doc.set.params.seed)).map_err(models_error)
    })
    .await?;
    let markdown = distdiag_diagnose::evaluate::evaluation_markdown(&evaluation);
    Ok(Json(EvaluateAnswer { evaluation, markdown }))
}

/// Imported datasets.
#[utoipa::path(
    operation_id = "datasets",get, path = "/api/datasets", tag = "datasets", responses((status = 200, body = DatasetList)))]
pub(super) async fn datasets(State(state): State<ApiState>) -> Result<Json<DatasetList>, ApiError> {
    Ok(Json(DatasetList { datasets: state.models.datasets().map_err(models_error)? }))
}

/// A dataset by name: `collected` is the data gathered so far (its windows
/// as asked), any other name an imported dataset.
fn named_dataset(state: &ApiState, name: &str, q: &WindowQuery) -> Result<Dataset, ApiError> {
    if name == "collected" {
        let mut w = state.diagnosis.window;
        w.window_ms = q.window_ms.unwrap_or(w.window_ms);
        w.stride_ms = q.stride_ms.unwrap_or(w.stride_ms);
        collected(state, Some(w))
    } else {
        state.models.dataset(name).map_err(models_error)
    }
}

/// A dataset: `collected` is the data gathered so far; any other name an imported one.
#[utoipa::path(
    operation_id = "dataset",
    get, path = "/api/datasets/{name}", tag = "datasets",
    params(("name" = String, Path, description = "`collected` or an imported dataset"), WindowQuery),
    responses(
        (status = 200, body = Dataset),
        (status = 400, body = ErrorBody, description = "Bad window"),
        (status = 404, body = ErrorBody, description = "Unknown dataset"),
        (status = 409, body = ErrorBody, description = "Nothing collected yet"),
    )
)]
pub(super) async fn dataset(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<WindowQuery>, QueryRejection>,
) -> Result<Json<Dataset>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let st = state.clone();
    Ok(Json(blocking(move || named_dataset(&st, &name, &q)).await?))
}

/// The dataset's labelled windows with every feature (`windows.csv` of the
/// export format), for tools outside distdiag.
#[utoipa::path(
    operation_id = "dataset_windows",
    get, path = "/api/datasets/{name}/windows.csv", tag = "datasets",
    params(("name" = String, Path, description = "`collected` or an imported dataset"), WindowQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody, description = "Bad window"),
        (status = 404, body = ErrorBody, description = "Unknown dataset"),
        (status = 409, body = ErrorBody, description = "Nothing collected yet"),
    )
)]
pub(super) async fn dataset_windows(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<WindowQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let st = state.clone();
    let csv = blocking(move || {
        named_dataset(&st, &name, &q)
            .map(|ds| distdiag_diagnose::evaluate::DatasetExt::windows_csv(&ds))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv))
}

/// The largest dataset `POST /api/datasets/{name}` reads, as JSON.
pub(super) const MAX_IMPORT_BYTES: usize = 1 << 30;

/// Stores a dataset (the export format as JSON) under a name.
#[utoipa::path(
    operation_id = "import_dataset",
    post, path = "/api/datasets/{name}", tag = "datasets",
    params(("name" = String, Path, description = "Name to store it under (not `collected`)")),
    request_body = Dataset,
    responses(
        (status = 200, body = DatasetImported),
        (status = 400, body = ErrorBody, description = "Invalid dataset or name"),
        (status = 413, body = ErrorBody, description = "More than 1 GiB of JSON"),
    )
)]
pub(super) async fn import_dataset(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> Result<Json<DatasetImported>, ApiError> {
    // Read here rather than by the `Json` extractor, whose 2 MB default
    // refused every real recording (the 40-case MariaDB one is some 20 MB
    // of JSON).
    let bytes = axum::body::to_bytes(body, MAX_IMPORT_BYTES).await.map_err(|e| ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "a dataset to import is at most {} MiB of JSON ({e}); split a larger one by cases (`distdiag dataset filter`)",
            MAX_IMPORT_BYTES >> 20
        ),
    })?;
    let ds: Dataset = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("not a dataset: {e}")))?;
    drop(bytes);
    if name == "collected" {
        return Err(ApiError::bad_request("\"collected\" is the name of the collected data"));
    }
    let m = state.models.clone();
    let n = name.clone();
    let (cases, labels) = (ds.cases.len(), ds.labels.len());
    blocking(move || m.save_dataset(&n, &ds).map_err(models_error)).await?;
    Ok(Json(DatasetImported { status: "success".into(), dataset: name, cases, labels }))
}

/// The latest ranking: (node, type) with score = excess × PageRank,
/// probability, excess and the top metrics; with `from`/`to` the history.
#[utoipa::path(
    operation_id = "ranks",
    get, path = "/api/anomaly/ranks", tag = "diagnosis", params(RanksQuery),
    responses((status = 200, body = RanksAnswer), (status = 400, body = ErrorBody, description = "Bad parameters"))
)]
pub(super) async fn ranks(
    State(state): State<ApiState>,
    q: Result<Query<RanksQuery>, QueryRejection>,
) -> Result<Json<RanksAnswer>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(20).clamp(1, 10_000);
    let now = now_ms();
    if q.from.is_none() && q.to.is_none() {
        return Ok(Json(RanksAnswer::Latest(match state.online.latest() {
            Some(d) => d.ranking(limit),
            None => Ranking {
                timestamp: None,
                method: None,
                model_id: None,
                note: "no ranking yet: it needs one window of samples from at least one node"
                    .into(),
                window_ms: None,
                ranks: Vec::new(),
            },
        })));
    }
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
        .unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    let online = state.online.clone();
    let history = blocking(move || Ok(online.history(from, to, limit))).await?;
    Ok(Json(RanksAnswer::History(RankHistory { from, to, history })))
}

/// Incidents: consecutive rankings whose top entry named the same (node,
/// type), with when it began and ended — "n3, disk_stress, 14:02–14:09".
/// Read from the stored rankings, so they outlive a restart.
#[utoipa::path(
    operation_id = "incidents",
    get, path = "/api/anomaly/incidents", tag = "diagnosis", params(IncidentsQuery),
    responses((status = 200, body = IncidentList), (status = 400, body = ErrorBody, description = "Bad parameters"))
)]
pub(super) async fn incidents(
    State(state): State<ApiState>,
    q: Result<Query<IncidentsQuery>, QueryRejection>,
) -> Result<Json<IncidentList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = now_ms();
    let to =
        q.to.as_deref().map(|s| parse_time(s, now)).transpose().map_err(ApiError::bad_request)?;
    let to = to.unwrap_or(now);
    let from =
        q.from.as_deref().map(|s| parse_time(s, now)).transpose().map_err(ApiError::bad_request)?;
    let from = from.unwrap_or(to - 24 * 3_600_000);
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    let min_excess = q.min_excess.unwrap_or(crate::online::DEFAULT_INCIDENT_EXCESS);
    if !(0.0..=1.0).contains(&min_excess) {
        return Err(ApiError::bad_request(format!(
            "min_excess must be in 0..=1, not {min_excess}"
        )));
    }
    let online = state.online.clone();
    let incidents = blocking(move || Ok(online.incidents(from, to, min_excess))).await?;
    Ok(Json(IncidentList { from, to, incidents }))
}

/// Server-sent events: one `ranks` event (a Ranking as JSON) per new ranking.
#[utoipa::path(
    operation_id = "ranks_stream",
    get, path = "/api/anomaly/ranks/stream", tag = "diagnosis",
    responses((status = 200, content_type = "text/event-stream", body = String, description = "`event: ranks` with a Ranking as data, until the coordinator stops"))
)]
pub(super) async fn ranks_stream(
    State(state): State<ApiState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let (rx, stop) = state.online.subscribe();
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            let got = tokio::select! {
                got = rx.recv() => got,
                _ = stop.changed() => return None,
            };
            match got {
                Ok(d) => {
                    let data = serde_json::to_string(&d.ranking(20)).unwrap_or_default();
                    let ev = Event::default().event("ranks").data(data);
                    return Some((Ok(ev), (rx, stop)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The latest ranking's node graph (edge weight = mean |Pearson r|) with
/// PageRank and scores, as JSON or GraphML.
#[utoipa::path(
    operation_id = "rank_graph",
    get, path = "/api/anomaly/ranks/graph", tag = "diagnosis", params(GraphQuery),
    responses(
        (status = 200, content(
            (GraphAnswer = "application/json"),
            (String = "application/graphml+xml"),
        )),
        (status = 400, body = ErrorBody, description = "Unknown format (json or graphml)"),
        (status = 404, body = ErrorBody, description = "No ranking yet"),
    )
)]
pub(super) async fn ranks_graph(
    State(state): State<ApiState>,
    q: Result<Query<GraphQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let format = q.format.unwrap_or_default();
    let d: Arc<crate::online::Diagnosis> =
        state.online.latest().ok_or_else(|| ApiError::not_found("no ranking yet"))?;
    // Per node: PageRank, best score and its type.
    let attrs: Vec<(f64, f64, String)> = d
        .graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let best = d.ranks.iter().find(|e| &e.node == n);
            (
                d.pagerank.get(i).copied().unwrap_or(0.0),
                best.map_or(0.0, |e| e.score),
                best.map_or(String::new(), |e| e.kind.clone()),
            )
        })
        .collect();
    if format == GraphFormat::Graphml {
        return Ok((
            [(header::CONTENT_TYPE, "application/graphml+xml")],
            to_graphml(&d.graph, &attrs),
        )
            .into_response());
    }
    let nodes = d
        .graph
        .nodes
        .iter()
        .zip(&attrs)
        .map(|(n, a)| GraphNode { id: n.clone(), pagerank: a.0, score: a.1, kind: a.2.clone() })
        .collect();
    let edges = d
        .graph
        .edges
        .iter()
        .map(|(a, b, w)| GraphEdge {
            source: d.graph.nodes[*a].clone(),
            target: d.graph.nodes[*b].clone(),
            weight: *w,
        })
        .collect();
    Ok(Json(GraphAnswer { timestamp: d.timestamp, method: d.method, nodes, edges }).into_response())
}
