//! `GET /api/metrics`: one series over a time range, or the latest values
//! of every node with a summary in the seeds' spirit.

use std::collections::BTreeMap;

use distdiag_common::MetricKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query of `GET /api/metrics`. With `node` and `metric`: one series;
/// without `metric`: the latest values (of `node`, or of every node).
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    pub node: Option<String>,
    pub metric: Option<String>,
    /// Start: ms since the epoch, RFC 3339, `now` or relative (`-15m`); default one hour before `to`.
    pub from: Option<String>,
    /// End, as `from`; default now.
    pub to: Option<String>,
    /// Average into buckets of this width: `10s`, `1m` or milliseconds.
    pub step: Option<String>,
    /// Counters as per-second rates (default true); false gives raw values.
    pub rate: Option<bool>,
}

/// One metric of one node over a time range.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Series {
    pub node: String,
    pub metric: String,
    pub kind: MetricKind,
    /// The catalog unit, `/s` appended for rates.
    pub unit: String,
    /// Whether the points are per-second rates of a counter.
    pub rate: bool,
    pub from: i64,
    pub to: i64,
    pub step_ms: Option<i64>,
    /// `[timestamp_ms, value]`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// Per-disk headline figures.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq)]
pub struct DiskSummary {
    pub read_bytes_per_s: Option<f64>,
    pub write_bytes_per_s: Option<f64>,
    pub iops: Option<f64>,
    pub await_ms: Option<f64>,
    pub util_percent: Option<f64>,
}

/// The headline figures operators look at first; null where the node
/// does not report the inputs (or fewer than two rows exist for a rate).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub cpu_percent: Option<f64>,
    pub iowait_percent: Option<f64>,
    pub load1: Option<f64>,
    pub memory_used_percent: Option<f64>,
    pub memory_available_bytes: Option<f64>,
    pub swap_used_bytes: Option<f64>,
    pub disk_read_bytes_per_s: Option<f64>,
    pub disk_write_bytes_per_s: Option<f64>,
    pub disk_iops: Option<f64>,
    pub net_rx_bytes_per_s: Option<f64>,
    pub net_tx_bytes_per_s: Option<f64>,
    pub tcp_retransmits_per_s: Option<f64>,
    pub tcp_established: Option<f64>,
    pub db_process_cpu_percent: Option<f64>,
    pub db_process_rss_bytes: Option<f64>,
    pub disks: BTreeMap<String, DiskSummary>,
}

/// The latest values of one node.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct NodeLatest {
    pub node: String,
    pub connected: bool,
    pub ts_ms: Option<i64>,
    pub age_ms: Option<i64>,
    pub summary: Summary,
    /// Every metric: gauges as they are, counters as per-second rates over
    /// the last two rows (null until two rows exist).
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// The latest values of every node (or of one).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Latest {
    /// RFC 3339 time of the answer.
    pub timestamp: String,
    pub nodes: Vec<NodeLatest>,
}

/// The answer of `GET /api/metrics`: a [`Series`] when `metric` is given,
/// else [`Latest`].
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum MetricsAnswer {
    Series(Series),
    Latest(Latest),
}
