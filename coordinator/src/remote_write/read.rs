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
//! catalog of a node comes from the local store, which every agent's hello
//! updates, or — for a node that only the TSDB knows, on a standby
//! coordinator without agents — from the `distdiag_catalog_info` series
//! that the remote write sends beside the samples ([`RemoteRead::catalogs`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use distdiag_common::catalog::MetricKind;
use distdiag_common::MetricDesc;
use serde::{Deserialize, Serialize};

use super::{prometheus_name, CATALOG_INFO};

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
struct Answer<T> {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default = "Option::default")]
    data: Option<Data<T>>,
}

#[derive(Deserialize)]
struct Data<T> {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<T>,
}

#[derive(Deserialize)]
struct Instant {
    metric: HashMap<String, String>,
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
        let mut matchers =
            vec![format!("node={}", quoted(node)), format!("__name__!={}", quoted(CATALOG_INFO))];
        matchers.extend(self.matchers());
        // A range selector is open on the left: (to - d, to].
        let query = format!("{{{}}}[{}ms]", matchers.join(","), to_ms - from_ms + 1);
        let data: Vec<Matrix> = self.query(node, &query, to_ms, "matrix").await?;
        let mut rows: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for s in data {
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

    /// The nodes whose catalog info series have a sample in
    /// `(at_ms - lookback_ms, at_ms]`, each with its catalog (sorted by name).
    pub async fn catalogs(
        &self,
        at_ms: i64,
        lookback_ms: i64,
    ) -> Result<BTreeMap<String, Vec<MetricDesc>>, String> {
        let mut matchers = vec![format!("__name__={}", quoted(CATALOG_INFO))];
        matchers.extend(self.matchers());
        let query = format!("last_over_time({{{}}}[{}ms])", matchers.join(","), lookback_ms.max(1));
        let data: Vec<Instant> = self.query("catalogs", &query, at_ms, "vector").await?;
        let mut out: BTreeMap<String, Vec<MetricDesc>> = BTreeMap::new();
        for s in data {
            let get = |k: &str| s.metric.get(k).cloned();
            let (Some(node), Some(name), Some(kind), Some(unit)) =
                (get("node"), get("metric"), get("kind"), get("unit"))
            else {
                continue;
            };
            let kind = match kind.as_str() {
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                _ => continue,
            };
            if distdiag_common::catalog::validate_metric_name(&name).is_err() {
                continue;
            }
            out.entry(node).or_default().push(MetricDesc { name, kind, unit });
        }
        for catalog in out.values_mut() {
            catalog.sort_by(|a, b| a.name.cmp(&b.name));
            catalog.dedup_by(|a, b| a.name == b.name);
        }
        Ok(out)
    }

    /// The configured label matchers, as PromQL.
    fn matchers(&self) -> impl Iterator<Item = String> + '_ {
        self.cfg.labels.iter().map(|(k, v)| format!("{k}={}", quoted(v)))
    }

    /// An instant query at `at_ms` whose answer must be of `kind`.
    async fn query<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        query: &str,
        at_ms: i64,
        kind: &str,
    ) -> Result<Vec<T>, String> {
        let url = format!("{}/api/v1/query", self.cfg.url.trim_end_matches('/'));
        let mut req = self.client.get(url).query(&[
            ("query", query),
            ("time", &format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000))),
            ("nocache", "1"),
        ]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("remote read {what}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("remote read {what}: {e}"))?;
        let answer: Answer<T> = serde_json::from_str(&text).map_err(|e| {
            format!(
                "remote read {what}: {status}: {e}: {}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        if answer.status != "success" {
            return Err(format!("remote read {what}: {}", answer.error.unwrap_or(answer.status)));
        }
        let data = answer.data.ok_or_else(|| format!("remote read {what}: no data"))?;
        if data.result_type != kind {
            return Err(format!("remote read {what}: a {} answer", data.result_type));
        }
        Ok(data.result)
    }
}
