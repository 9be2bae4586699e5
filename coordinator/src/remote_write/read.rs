//! Read back (`[remote_read]`): the online diagnosis takes its windows from
//! a Prometheus-compatible HTTP API (VictoriaMetrics, Prometheus, Mimir,
//! Thanos Query) instead of the local store, so that the local store can
//! keep a short window (`store.retention_hours`) while the cluster TSDB
//! keeps the history.
//!
//! One instant query per node and ranking, `{node="n1"}[<window>ms]`,
//! answers the raw samples of every series of the node; each series is
//! matched to the node's catalog entry by the names remote write gives
//! (see [`prometheus_name`]) and converted back to the catalog's unit. The
//! catalog itself comes from the local store, which every agent's hello
//! updates.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use distdiag_common::MetricDesc;
use serde::{Deserialize, Serialize};

use super::prometheus_name;

/// Where the diagnosis reads its windows from (`[remote_read]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteReadConfig {
    /// Base URL of the Prometheus HTTP API: `http://vm:8428`,
    /// `http://prometheus:9090`, `http://mimir:8080/prometheus`.
    pub url: String,
    /// Label matchers added to every query: the `labels` the remote write
    /// into that TSDB adds (e.g. `cluster = "eu-1"`).
    pub labels: BTreeMap<String, String>,
    pub bearer_token_file: Option<PathBuf>,
    /// Timeout of one query.
    pub timeout_ms: u64,
}

impl Default for RemoteReadConfig {
    fn default() -> Self {
        RemoteReadConfig {
            url: String::new(),
            labels: BTreeMap::new(),
            bearer_token_file: None,
            timeout_ms: 10_000,
        }
    }
}

impl RemoteReadConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::check_url("remote_read.url", &self.url)?;
        if self.timeout_ms == 0 {
            return Err("remote_read.timeout_ms must be > 0".into());
        }
        Ok(())
    }
}

/// A series' `__name__` and device label, as [`prometheus_name`] gives them.
type SeriesName = (String, Option<(&'static str, String)>);

/// A PromQL string literal.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Matrix>,
}

#[derive(Deserialize)]
struct Matrix {
    metric: HashMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

pub struct RemoteRead {
    cfg: RemoteReadConfig,
    token: Option<String>,
    client: reqwest::Client,
}

impl RemoteRead {
    pub fn new(cfg: &RemoteReadConfig) -> Result<RemoteRead, String> {
        cfg.validate()?;
        let token = super::read_token("remote_read", cfg.bearer_token_file.as_deref())?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(RemoteRead { cfg: cfg.clone(), token, client })
    }

    /// The rows of `node` with `from_ms <= ts <= to_ms`, oldest first,
    /// values aligned with `catalog` (NaN where a series has no sample).
    pub async fn range(
        &self,
        node: &str,
        catalog: &[MetricDesc],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Vec<f64>)>, String> {
        if catalog.is_empty() || to_ms < from_ms {
            return Ok(Vec::new());
        }
        // (name, device label) → column and factor back to the catalog unit.
        let mut columns: HashMap<SeriesName, (usize, f64)> = HashMap::new();
        for (i, d) in catalog.iter().enumerate() {
            let (name, device, scale) = prometheus_name(d);
            columns.insert((name, device), (i, scale));
        }
        let mut matchers = vec![format!("node={}", quoted(node))];
        matchers.extend(self.cfg.labels.iter().map(|(k, v)| format!("{k}={}", quoted(v))));
        // A range selector is open on the left: (to - d, to].
        let query = format!("{{{}}}[{}ms]", matchers.join(","), to_ms - from_ms + 1);
        let url = format!("{}/api/v1/query", self.cfg.url.trim_end_matches('/'));
        let mut req = self.client.get(url).query(&[
            ("query", query.as_str()),
            ("time", &format!("{}.{:03}", to_ms.div_euclid(1000), to_ms.rem_euclid(1000))),
            ("nocache", "1"),
        ]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("remote read {node}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("remote read {node}: {e}"))?;
        let answer: Answer = serde_json::from_str(&text).map_err(|e| {
            format!(
                "remote read {node}: {status}: {e}: {}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        if answer.status != "success" {
            return Err(format!("remote read {node}: {}", answer.error.unwrap_or(answer.status)));
        }
        let data = answer.data.ok_or_else(|| format!("remote read {node}: no data"))?;
        if data.result_type != "matrix" {
            return Err(format!("remote read {node}: a {} answer", data.result_type));
        }
        let mut rows: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for s in data.result {
            let Some(name) = s.metric.get("__name__") else { continue };
            let device = ["cpu", "interface", "device"]
                .into_iter()
                .find_map(|k| s.metric.get(k).map(|v| (k, v.clone())));
            let Some(&(col, scale)) = columns.get(&(name.clone(), device)) else { continue };
            for (t, v) in s.values {
                let Ok(v) = v.parse::<f64>() else { continue };
                let ts = (t * 1000.0).round() as i64;
                let row = rows.entry(ts).or_insert_with(|| vec![f64::NAN; catalog.len()]);
                row[col] = if scale == 1.0 { v } else { v / scale };
            }
        }
        Ok(rows.into_iter().filter(|(t, _)| (from_ms..=to_ms).contains(t)).collect())
    }
}
