//! Training collection, models, datasets and rankings:
//! `/api/training/*`, `/api/anomaly/train`, `/api/anomaly/ranks`,
//! `/api/models/*`, `/api/datasets/*`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::metrics::parse_time;
use super::{ApiError, ApiState};
use crate::models::ModelsError;
use crate::training::TrainingError;
use distdiag_dataset::Dataset;
use distdiag_diagnose::graph::to_graphml;
use distdiag_diagnose::model::TrainParams;
use distdiag_diagnose::WindowConfig;
use distdiag_store::now_ms;

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

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

pub(super) async fn normal_start(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let p = state.training.start_normal(now_ms()).map_err(training_error)?;
    Ok(Json(json!({ "status": "success", "message": "Normal collection started", "period": p })))
}

pub(super) async fn normal_stop(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let p = state.training.stop_normal(now_ms()).map_err(training_error)?;
    Ok(Json(json!({ "status": "success", "message": "Normal collection stopped", "period": p })))
}

pub(super) async fn collect(State(state): State<ApiState>) -> Json<Value> {
    state.training.set_collect_all(true);
    Json(
        json!({ "status": "success", "message": "Faults started from now on are recorded as training cases", "collecting": true }),
    )
}

pub(super) async fn collect_stop(State(state): State<ApiState>) -> Json<Value> {
    state.training.set_collect_all(false);
    Json(
        json!({ "status": "success", "message": "Training case collection stopped", "collecting": false }),
    )
}

pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let t = state.training.clone();
    let s = blocking(move || t.stats(now_ms()).map_err(training_error)).await?;
    let mut v = serde_json::to_value(&s).map_err(internal)?;
    v["collecting_cases"] = json!(state.training.collect_all());
    Ok(Json(v))
}

pub(super) async fn cases(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let t = state.training.clone();
    let cases = blocking(move || t.resolved_cases(now_ms()).map_err(internal)).await?;
    let cases: Vec<Value> =
        cases.into_iter().map(|(c, events)| json!({ "case": c, "faults": events })).collect();
    Ok(Json(
        json!({ "cases": cases, "normal_periods": state.training.normal_periods().map_err(internal)? }),
    ))
}

/// The collected data (normal periods and cases) as a dataset.
fn collected(state: &ApiState, window: Option<WindowConfig>) -> Result<Dataset, ApiError> {
    let window = window.unwrap_or(state.diagnosis.window);
    window.validate().map_err(ApiError::bad_request)?;
    state.training.dataset(window, &state.diagnosis_merge, now_ms()).map_err(training_error)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TrainRequest {
    /// An imported dataset's name; default: the collected data.
    dataset: Option<String>,
    params: Option<TrainParams>,
    window: Option<WindowConfig>,
    /// Activate the new version when done (default true).
    activate: Option<bool>,
}

pub(super) async fn train(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: TrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("train request: {e}")))?
    };
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
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "status": "accepted", "job": job, "url": format!("/api/anomaly/train/{job}") }),
        ),
    ))
}

pub(super) async fn train_job(
    State(state): State<ApiState>,
    Path(job): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let j = state
        .models
        .job(&job)
        .ok_or_else(|| ApiError::not_found(format!("unknown training job {job:?}")))?;
    Ok(Json(serde_json::to_value(j).map_err(internal)?))
}

pub(super) async fn models(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let m = state.models.clone();
    let list = blocking(move || m.list().map_err(models_error)).await?;
    Ok(Json(json!({ "models": list, "active": state.models.active_id() })))
}

pub(super) async fn model(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(state.models.describe(&id).map_err(models_error)?)
            .map_err(internal)?,
    ))
}

/// The whole version, boosters included (for `distdiag eval --model`).
pub(super) async fn export_model(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<crate::models::ModelDoc>, ApiError> {
    Ok(Json(state.models.get(&id).map_err(models_error)?))
}

/// One type's booster as XGBoost JSON (loads in Python: `Booster(model_file=...)`).
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

pub(super) async fn activate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = state.models.clone();
    let s = blocking(move || m.activate(&id).map_err(models_error)).await?;
    Ok(Json(json!({ "status": "success", "model": s })))
}

pub(super) async fn rollback(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let m = state.models.clone();
    let s = blocking(move || m.rollback().map_err(models_error)).await?;
    Ok(Json(json!({ "status": "success", "model": s })))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct EvaluateRequest {
    dataset: Option<String>,
    seed: Option<u64>,
}

pub(super) async fn evaluate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: EvaluateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        EvaluateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("evaluate request: {e}")))?
    };
    let st = state.clone();
    let e = blocking(move || {
        let doc = st.models.get(&id).map_err(models_error)?;
        let ds = match &req.dataset {
            Some(name) => st.models.dataset(name).map_err(models_error)?,
            None => collected(&st, Some(doc.set.window))?,
        };
        st.models.evaluate(&id, &ds, req.seed.unwrap_or(doc.set.params.seed)).map_err(models_error)
    })
    .await?;
    Ok(Json(
        json!({ "evaluation": e, "markdown": distdiag_diagnose::evaluate::evaluation_markdown(&e) }),
    ))
}

pub(super) async fn datasets(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "datasets": state.models.datasets().map_err(models_error)? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WindowQuery {
    window_ms: Option<i64>,
    stride_ms: Option<i64>,
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

pub(super) async fn import_dataset(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<Dataset>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(ds) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if name == "collected" {
        return Err(ApiError::bad_request("\"collected\" is the name of the collected data"));
    }
    let m = state.models.clone();
    let n = name.clone();
    let (cases, labels) = (ds.cases.len(), ds.labels.len());
    blocking(move || m.save_dataset(&n, &ds).map_err(models_error)).await?;
    Ok(Json(json!({ "status": "success", "dataset": name, "cases": cases, "labels": labels })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RanksQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

fn trimmed(d: &crate::online::Diagnosis, limit: usize) -> Value {
    json!({
        "timestamp": d.timestamp,
        "method": d.method,
        "model_id": d.model_id,
        "note": d.note,
        "window_ms": d.window_ms,
        "ranks": d.ranks.iter().take(limit).collect::<Vec<_>>(),
    })
}

pub(super) async fn ranks(
    State(state): State<ApiState>,
    q: Result<Query<RanksQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(20).clamp(1, 10_000);
    let now = now_ms();
    if q.from.is_none() && q.to.is_none() {
        return Ok(Json(match state.online.latest() {
            Some(d) => trimmed(&d, limit),
            None => {
                json!({ "timestamp": null, "ranks": [], "note": "no ranking yet: it needs one window of samples from at least one node" })
            }
        }));
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
    let h: Vec<Value> = state.online.history(from, to).iter().map(|d| trimmed(d, limit)).collect();
    Ok(Json(json!({ "from": from, "to": to, "history": h })))
}

/// Server-sent events: one `ranks` event per new ranking.
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
                    let ev = Event::default().event("ranks").data(trimmed(&d, 20).to_string());
                    return Some((Ok(ev), (rx, stop)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GraphQuery {
    format: Option<String>,
}

/// The latest ranking's node graph, JSON or GraphML.
pub(super) async fn ranks_graph(
    State(state): State<ApiState>,
    q: Result<Query<GraphQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
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
    match q.format.as_deref().unwrap_or("json") {
        "graphml" => {
            Ok(([(header::CONTENT_TYPE, "application/graphml+xml")], to_graphml(&d.graph, &attrs))
                .into_response())
        }
        "json" => {
            let nodes: Vec<Value> = d
                .graph
                .nodes
                .iter()
                .zip(&attrs)
                .map(|(n, a)| json!({ "id": n, "pagerank": a.0, "score": a.1, "type": a.2 }))
                .collect();
            let edges: Vec<Value> = d.graph.edges.iter().map(|(a, b, w)| json!({ "source": d.graph.nodes[*a], "target": d.graph.nodes[*b], "weight": w })).collect();
            Ok(Json(json!({ "timestamp": d.timestamp, "method": d.method, "nodes": nodes, "edges": edges })).into_response())
        }
        other => Err(ApiError::bad_request(format!("format {other:?}: json or graphml"))),
    }
}
