//! `/api/anomaly/ranks`: the root-cause rankings, live and past, and the
//! node graph behind the latest one.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Model,
    Statistical,
    Dummy,
}

/// One (node, type) of a ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RankEntry {
    pub node: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub score: f64,
    /// p(type | node) as the scorer gives it.
    pub probability: f64,
    /// p above the lower quartile of the other nodes' p of the type.
    #[serde(default)]
    pub excess: f64,
    pub pagerank: f64,
    /// Metrics that weigh most in this entry (model: |SHAP|; statistical: |z|).
    pub top_metrics: Vec<(String, f64)>,
}

/// One published ranking (`timestamp` null before the first one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ranking {
    /// End of the ranked window (ms).
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// What produced it, in words.
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<i64>,
    pub ranks: Vec<RankEntry>,
}

/// Rankings of a period, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RankHistory {
    pub from: i64,
    pub to: i64,
    pub history: Vec<Ranking>,
}

/// The answer of `GET /api/anomaly/ranks`: the latest [`Ranking`], or
/// with `from`/`to` a [`RankHistory`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RanksAnswer {
    History(RankHistory),
    Latest(Ranking),
}

/// Query of `GET /api/anomaly/ranks`.
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RanksQuery {
    /// With `from` or `to`: the rankings of that period.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Entries per ranking (1..=10000, default 20).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Query of `GET /api/anomaly/incidents`.
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentsQuery {
    /// Start of the period (ms, RFC 3339 or relative like `-24h`; default 24 h before `to`).
    pub from: Option<String>,
    /// End of the period (default now).
    pub to: Option<String>,
    /// The excess over peers from which a ranking's top entry names a
    /// node (0..=1, default 0.5).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub min_excess: Option<f64>,
}

/// Consecutive rankings whose top entry named the same (node, type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    pub node: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The first and the last ranking that named it (window ends, ms).
    pub start_ms: i64,
    pub end_ms: i64,
    /// How many rankings named it.
    pub rankings: usize,
    pub max_probability: f64,
    pub max_excess: f64,
    /// What ranked at its start.
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The top metrics of the ranking with the largest excess.
    pub top_metrics: Vec<(String, f64)>,
}

/// `GET /api/anomaly/incidents`: incidents of a period, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub from: i64,
    pub to: i64,
    pub incidents: Vec<Incident>,
}

/// Query of `GET /api/anomaly/ranks/graph`.
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GraphQuery {
    /// `json` (default) or `graphml`.
    #[param(inline)]
    pub format: Option<GraphFormat>,
}

/// How `GET /api/anomaly/ranks/graph` answers.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum GraphFormat {
    #[default]
    Json,
    Graphml,
}

/// A node of the ranking graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphNode {
    pub id: String,
    pub pagerank: f64,
    /// The node's best score and its type.
    pub score: f64,
    #[serde(rename = "type")]
    pub kind: String,
}

/// An edge: mean |Pearson r| of the two nodes' series in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphEdge {
    pub source: String,
    pub target: String,
    pub weight: f64,
}

/// `GET /api/anomaly/ranks/graph` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphAnswer {
    pub timestamp: i64,
    pub method: Method,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}
