//! A typed async client of the REST API: one method per operation, each
//! returning the operation's answer type, or a [`ClientError`] that carries
//! the server's `{"error": ...}` message and status.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::database::{DatabaseList, DatabaseMetrics, DbQuery, TenantAnswer, TenantQuery};
use crate::faults::{
    FaultHistory, FaultList, HistoryQuery, StartAnswer, StartRequest, StopAnswer, StopRequest,
};
use crate::metrics::{Latest, MetricsQuery, Series};
use crate::models::{
    DatasetImported, DatasetList, EvaluateAnswer, EvaluateRequest, Job, ModelActivated, ModelDoc,
    ModelList, ModelSummary, TrainAccepted, TrainRequest, WindowQuery,
};
use crate::nodes::{Health, NodeDeleted, NodeInfo, NodeList};
use crate::ranks::{GraphAnswer, IncidentList, IncidentsQuery, RankHistory, Ranking, RanksQuery};
use crate::training::{CaseList, CollectAnswer, NormalAnswer, Stats};
use crate::workload::{
    CheckAnswer, PrepareAnswer, WorkloadList, WorkloadReport, WorkloadRequest, WorkloadStarted,
    WorkloadStopped, WorkloadsStopped,
};
use crate::{Dataset, ErrorBody};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator answered with an error status and its message.
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
    /// No answer (connection refused, timeout) or an answer that is not
    /// what the operation returns.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Transport(_) => None,
        }
    }
}

/// A coordinator's API at `base` (e.g. `http://127.0.0.1:8000`).
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(600))
}

impl Client {
    /// A client without a token: reads only (unless reads need one). An
    /// `https://` base is verified against the system's certificate
    /// authorities; [`Client::with_ca_cert`] adds the cluster's.
    pub fn new(base: &str) -> Client {
        let http = http_builder().build().unwrap_or_else(|_| reqwest::Client::new());
        Client { base: base.trim_end_matches('/').to_owned(), token: None, http }
    }

    /// Also trusts the certificate authorities of a PEM bundle (the
    /// cluster CA, `<data_dir>/certs/ca.pem`, for a coordinator that serves
    /// HTTPS with its cluster certificate).
    pub fn with_ca_cert(mut self, pem: &[u8]) -> Result<Client, ClientError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Transport(format!("not a PEM certificate bundle: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Transport("no certificate in the PEM bundle".into()));
        }
        let builder = certs.into_iter().fold(http_builder(), |b, c| b.add_root_certificate(c));
        self.http = builder.build().map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(self)
    }

    /// What the command-line tools do for an `https://` base: trust
    /// `ca_cert` if given, else the cluster CA in `<data_dir>/certs/ca.pem`
    /// if it is there (the system's authorities in any case).
    pub fn with_cluster_ca(
        self,
        ca_cert: Option<&std::path::Path>,
        data_dir: &std::path::Path,
    ) -> Result<Client, ClientError> {
        if !self.base.starts_with("https://") {
            return Ok(self);
        }
        let default = data_dir.join("certs").join("ca.pem");
        let Some(path) =
            ca_cert.map(ToOwned::to_owned).or_else(|| default.exists().then_some(default))
        else {
            return Ok(self);
        };
        let pem = std::fs::read(&path)
            .map_err(|e| ClientError::Transport(format!("cannot read {}: {e}", path.display())))?;
        self.with_ca_cert(&pem)
            .map_err(|e| ClientError::Transport(format!("{}: {e}", path.display())))
    }

    /// The same client sending `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` with the query's fields (`None`s left out).
    fn url<Q: Serialize>(&self, path: &str, query: Option<&Q>) -> Result<String, ClientError> {
        let mut url = format!("{}{path}", self.base);
        if let Some(q) = query {
            let v = serde_json::to_value(q).map_err(|e| ClientError::Transport(e.to_string()))?;
            let mut sep = '?';
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    let text = match v {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    url.push(sep);
                    url.push_str(&enc(k));
                    url.push('=');
                    url.push_str(&enc(&text));
                    sep = '&';
                }
            }
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: String) -> RequestBuilder {
        let r = self.http.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(format!("answer from {}: {e}", self.base)))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ClientError::Api { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Transport(format!("unexpected answer from {}: {e}", self.base))
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, format!("{}{path}", self.base))).await
    }

    async fn get_q<T: DeserializeOwned, Q: Serialize>(
        &self,
        path: &str,
        q: &Q,
    ) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, self.url(path, Some(q))?)).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.request(Method::POST, format!("{}{path}", self.base)).json(body)).await
    }

    /// Any operation as raw text (for the endpoints that are not JSON).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self
            .request(Method::GET, format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        if status.is_success() {
            Ok(text)
        } else {
            let message = serde_json::from_str::<ErrorBody>(&text).map(|b| b.error).unwrap_or(text);
            Err(ClientError::Api { status, message })
        }
    }

    // --- nodes and metrics

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/health").await
    }
    pub async fn nodes(&self) -> Result<NodeList, ClientError> {
        self.get("/api/nodes").await
    }
    pub async fn node(&self, node: &str) -> Result<NodeInfo, ClientError> {
        self.get(&format!("/api/nodes/{}", enc(node))).await
    }
    pub async fn delete_node(&self, node: &str) -> Result<NodeDeleted, ClientError> {
        let url = format!("{}/api/nodes/{}", self.base, enc(node));
        self.send(self.request(Method::DELETE, url)).await
    }
    /// The latest values of every node (`node: None`) or of one.
    pub async fn latest(&self, node: Option<&str>) -> Result<Latest, ClientError> {
        let q = MetricsQuery { node: node.map(str::to_owned), ..MetricsQuery::default() };
        self.get_q("/api/metrics", &q).await
    }
    /// One series; `q` must name `node` and `metric`.
    pub async fn series(&self, q: &MetricsQuery) -> Result<Series, ClientError> {
        self.get_q("/api/metrics", q).await
    }

    // --- databases

    pub async fn databases(&self) -> Result<DatabaseList, ClientError> {
        self.get("/api/databases").await
    }
    pub async fn database_metrics(&self, q: &DbQuery) -> Result<DatabaseMetrics, ClientError> {
        self.get_q("/api/metrics/database", q).await
    }
    pub async fn tenant_metrics(&self, q: &TenantQuery) -> Result<TenantAnswer, ClientError> {
        self.get_q("/api/metrics/tenant", q).await
    }

    // --- faults

    pub async fn start_fault(&self, req: &StartRequest) -> Result<StartAnswer, ClientError> {
        self.post("/api/anomaly/start", req).await
    }
    /// Stops one fault, or every fault with `id: None`.
    pub async fn stop_fault(&self, id: Option<&str>) -> Result<StopAnswer, ClientError> {
        self.post("/api/anomaly/stop", &StopRequest { id: id.map(str::to_owned) }).await
    }
    pub async fn active_faults(&self) -> Result<FaultList, ClientError> {
        self.get("/api/anomaly/active").await
    }
    pub async fn fault_history(&self, q: &HistoryQuery) -> Result<FaultHistory, ClientError> {
        self.get_q("/api/anomaly/history", q).await
    }

    // --- workloads

    pub async fn prepare_workload(
        &self,
        req: &WorkloadRequest,
    ) -> Result<PrepareAnswer, ClientError> {
        self.post("/api/workload/prepare", req).await
    }
    pub async fn start_workload(
        &self,
        req: &WorkloadRequest,
    ) -> Result<WorkloadStarted, ClientError> {
        self.post("/api/workload/start", req).await
    }
    pub async fn check_workload(&self, req: &WorkloadRequest) -> Result<CheckAnswer, ClientError> {
        self.post("/api/workload/check", req).await
    }
    pub async fn stop_workload(&self, id: &str) -> Result<WorkloadStopped, ClientError> {
        self.post(&format!("/api/workload/{}/stop", enc(id)), &serde_json::json!({})).await
    }
    pub async fn stop_all_workloads(&self) -> Result<WorkloadsStopped, ClientError> {
        self.post("/api/workload/stop-all", &serde_json::json!({})).await
    }
    pub async fn active_workloads(&self) -> Result<WorkloadList, ClientError> {
        self.get("/api/workload/active").await
    }
    pub async fn workload_runs(&self) -> Result<WorkloadList, ClientError> {
        self.get("/api/workload/runs").await
    }
    pub async fn workload(&self, id: &str) -> Result<WorkloadReport, ClientError> {
        self.get(&format!("/api/workload/{}", enc(id))).await
    }

    // --- training collection

    pub async fn normal_start(&self) -> Result<NormalAnswer, ClientError> {
        self.post("/api/training/normal/start", &serde_json::json!({})).await
    }
    pub async fn normal_stop(&self) -> Result<NormalAnswer, ClientError> {
        self.post("/api/training/normal/stop", &serde_json::json!({})).await
    }
    pub async fn collect_start(&self) -> Result<CollectAnswer, ClientError> {
        self.post("/api/training/collect", &serde_json::json!({})).await
    }
    pub async fn collect_stop(&self) -> Result<CollectAnswer, ClientError> {
        self.post("/api/training/stop", &serde_json::json!({})).await
    }
    pub async fn training_stats(&self) -> Result<Stats, ClientError> {
        self.get("/api/training/stats").await
    }
    pub async fn training_cases(&self) -> Result<CaseList, ClientError> {
        self.get("/api/training/cases").await
    }

    // --- models, datasets, rankings

    pub async fn train(&self, req: &TrainRequest) -> Result<TrainAccepted, ClientError> {
        self.post("/api/anomaly/train", req).await
    }
    pub async fn train_job(&self, job: &str) -> Result<Job, ClientError> {
        self.get(&format!("/api/anomaly/train/{}", enc(job))).await
    }
    pub async fn models(&self) -> Result<ModelList, ClientError> {
        self.get("/api/models").await
    }
    pub async fn model(&self, id: &str) -> Result<ModelSummary, ClientError> {
        self.get(&format!("/api/models/{}", enc(id))).await
    }
    pub async fn export_model(&self, id: &str) -> Result<ModelDoc, ClientError> {
        self.get(&format!("/api/models/{}/export", enc(id))).await
    }
    /// One type's classifier as XGBoost JSON.
    pub async fn booster(&self, id: &str, kind: &str) -> Result<String, ClientError> {
        self.get_text(&format!("/api/models/{}/booster/{}", enc(id), enc(kind))).await
    }
    pub async fn activate_model(&self, id: &str) -> Result<ModelActivated, ClientError> {
        self.post(&format!("/api/models/{}/activate", enc(id)), &serde_json::json!({})).await
    }
    pub async fn rollback_model(&self) -> Result<ModelActivated, ClientError> {
        self.post("/api/models/rollback", &serde_json::json!({})).await
    }
    pub async fn evaluate_model(
        &self,
        id: &str,
        req: &EvaluateRequest,
    ) -> Result<EvaluateAnswer, ClientError> {
        self.post(&format!("/api/models/{}/evaluate", enc(id)), req).await
    }
    pub async fn datasets(&self) -> Result<DatasetList, ClientError> {
        self.get("/api/datasets").await
    }
    pub async fn dataset(&self, name: &str, q: &WindowQuery) -> Result<Dataset, ClientError> {
        self.get_q(&format!("/api/datasets/{}", enc(name)), q).await
    }
    /// `windows.csv` of a dataset: every window's labels and features.
    pub async fn dataset_windows(&self, name: &str) -> Result<String, ClientError> {
        self.get_text(&format!("/api/datasets/{}/windows.csv", enc(name))).await
    }
    pub async fn import_dataset(
        &self,
        name: &str,
        ds: &Dataset,
    ) -> Result<DatasetImported, ClientError> {
        self.post(&format!("/api/datasets/{}", enc(name)), ds).await
    }
    /// The latest ranking, `limit` entries.
    pub async fn ranks(&self, limit: usize) -> Result<Ranking, ClientError> {
        let q = RanksQuery { limit: Some(limit), ..RanksQuery::default() };
        self.get_q("/api/anomaly/ranks", &q).await
    }
    /// The rankings of a period; `q` names `from` or `to`.
    pub async fn rank_history(&self, q: &RanksQuery) -> Result<RankHistory, ClientError> {
        self.get_q("/api/anomaly/ranks", q).await
    }
    /// Incidents of a period (consecutive rankings naming the same pair).
    pub async fn incidents(&self, q: &IncidentsQuery) -> Result<IncidentList, ClientError> {
        self.get_q("/api/anomaly/incidents", q).await
    }
    pub async fn rank_graph(&self) -> Result<GraphAnswer, ClientError> {
        self.get("/api/anomaly/ranks/graph").await
    }
}
