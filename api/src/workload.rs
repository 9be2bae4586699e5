//! `/api/workload/*`: prepare (a background job with progress), start,
//! stop, stop-all, active and stored runs with their per-interval figures,
//! and the benchmarks' validation checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A benchmark.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    OltpReadWrite,
    OltpReadOnly,
    OltpWriteOnly,
    OltpPointSelect,
    Tpcc,
    Tpch,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 6] = [
        Self::OltpReadWrite,
        Self::OltpReadOnly,
        Self::OltpWriteOnly,
        Self::OltpPointSelect,
        Self::Tpcc,
        Self::Tpch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OltpReadWrite => "oltp_read_write",
            Self::OltpReadOnly => "oltp_read_only",
            Self::OltpWriteOnly => "oltp_write_only",
            Self::OltpPointSelect => "oltp_point_select",
            Self::Tpcc => "tpcc",
            Self::Tpch => "tpch",
        }
    }

    /// Parses a type name; `sysbench` (the seeds' name) means `oltp_read_write`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "sysbench" {
            return Ok(Self::OltpReadWrite);
        }
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown workload type {s:?}; one of {} (or sysbench)", names.join(", "))
        })
    }
}

/// sysbench's `--rand-type`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RandType {
    Uniform,
    Gaussian,
    /// sysbench 1.0's default: 1 % of the values get 75 % of the draws.
    #[default]
    Special,
    Pareto,
}

/// Options of prepare and run; each benchmark reads the ones it knows.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Target database; default the first configured.
    pub database: Option<String>,
    /// Several targets (a cluster): workers are spread over them in turn.
    pub databases: Vec<String>,
    /// OLTP: number of `sbtestN` tables (1..=64).
    pub tables: u32,
    /// OLTP: rows per table (1..=100000000).
    pub table_size: u64,
    pub rand_type: RandType,
    /// OLTP: rows per range query (1..=table_size).
    pub range_size: u64,
    /// OLTP: write a transaction's statements at once and read their
    /// answers after (same statements, order and transactions; the client
    /// no longer waits between them). False: one at a time, as sysbench does.
    pub pipeline: bool,
    /// Seconds to run; 0 runs until stopped.
    pub duration_s: u64,
    /// Seconds per report interval (1..=3600).
    pub report_interval_s: u64,
    /// TPC-C warehouses (1..=1000).
    pub warehouses: u32,
    /// TPC-H scale factor (0.001..=10).
    pub scale_factor: f64,
    /// TPC-C: below 1 shrinks items, customers and orders per district
    /// (floors 100 and 30) for quick tests; 1 is the specification.
    pub tpcc_scale: f64,
    /// Seed of the random streams (fixed for reproducible data and runs).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            database: None,
            databases: Vec::new(),
            tables: 1,
            table_size: 10_000,
            rand_type: RandType::default(),
            range_size: 100,
            pipeline: true,
            duration_s: 0,
            report_interval_s: 1,
            warehouses: 1,
            scale_factor: 0.01,
            tpcc_scale: 1.0,
            seed: 1,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<(), String> {
        let bad = |m: String| Err(m);
        if !(1..=64).contains(&self.tables) {
            return bad(format!("tables = {} is outside 1..=64", self.tables));
        }
        if !(1..=100_000_000).contains(&self.table_size) {
            return bad(format!("table_size = {} is outside 1..=100000000", self.table_size));
        }
        if !(1..=self.table_size.max(1)).contains(&self.range_size) {
            return bad(format!("range_size = {} is outside 1..=table_size", self.range_size));
        }
        if !(1..=3600).contains(&self.report_interval_s) {
            return bad(format!(
                "report_interval_s = {} is outside 1..=3600",
                self.report_interval_s
            ));
        }
        if !(1..=1000).contains(&self.warehouses) {
            return bad(format!("warehouses = {} is outside 1..=1000", self.warehouses));
        }
        if !(0.001..=10.0).contains(&self.scale_factor) {
            return bad(format!("scale_factor = {} is outside 0.001..=10", self.scale_factor));
        }
        if !(0.001..=1.0).contains(&self.tpcc_scale) {
            return bad(format!("tpcc_scale = {} is outside 0.001..=1", self.tpcc_scale));
        }
        if self.database.is_some() && !self.databases.is_empty() {
            return bad("give database or databases, not both".into());
        }
        Ok(())
    }
}

/// Where a run (or a prepare job) stands.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Preparing,
    Prepared,
    Running,
    Stopped,
    Finished,
    Failed,
}

/// Body of prepare, start and check. The seeds' `workload_type` is taken
/// as well as `type`; the default type is `oltp_read_write`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRequest {
    /// `oltp_read_write`, `oltp_read_only`, `oltp_write_only`,
    /// `oltp_point_select`, `tpcc`, `tpch` (`sysbench` = `oltp_read_write`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_type: Option<String>,
    /// Start: concurrent workers, 1..=64 (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub threads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// Prepare: answer when the job ends (or after a minute with 202, still preparing).
    #[serde(default)]
    pub wait: bool,
}

impl WorkloadRequest {
    /// The benchmark asked for.
    pub fn workload_kind(&self) -> Result<WorkloadKind, String> {
        let name = match (&self.kind, &self.workload_type) {
            (Some(a), Some(b)) if a != b => return Err("type and workload_type disagree".into()),
            (Some(a), _) | (None, Some(a)) => a.as_str(),
            (None, None) => "oltp_read_write",
        };
        WorkloadKind::parse(name)
    }
}

/// Latency percentiles in milliseconds (HDR histogram).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One report interval of a run.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Interval {
    /// End of the interval (ms).
    pub timestamp: i64,
    pub seconds: f64,
    pub threads: usize,
    pub tps: f64,
    pub qps: f64,
    pub errors_per_s: f64,
    pub reconnects: u64,
    /// Null when no transaction finished in the interval.
    pub latency_ms: Option<Latency>,
    /// Transactions by type.
    pub by_type: BTreeMap<String, u64>,
}

/// A run's totals.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
pub struct Totals {
    pub transactions: u64,
    pub queries: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub by_type: BTreeMap<String, u64>,
    pub latency_ms: Option<Latency>,
}

/// A run's (or a prepare job's) report.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct WorkloadReport {
    pub workload_id: String,
    #[serde(rename = "type")]
    pub kind: WorkloadKind,
    pub phase: Phase,
    pub running: bool,
    pub error: Option<String>,
    pub threads: usize,
    pub databases: Vec<String>,
    pub options: Options,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub elapsed_s: f64,
    pub totals: Totals,
    /// The last closed interval.
    pub current: Option<Interval>,
    /// When the last transaction finished (ms); with `current.tps` = 0 it
    /// says how long the run has been stalled.
    #[serde(default)]
    pub last_event_ms: Option<i64>,
    /// Prepare jobs: 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Every interval (`GET /api/workload/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<Interval>>,
}

/// The answer of `POST /api/workload/prepare`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct PrepareAnswer {
    pub workload_id: String,
    /// `preparing` (202), or how the job ended (with `wait`).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// With `wait`: the job's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<WorkloadReport>,
}

/// The answer of `POST /api/workload/start`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct WorkloadStarted {
    pub workload_id: String,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: WorkloadKind,
    pub threads: i64,
}

/// The answer of `POST /api/workload/{id}/stop`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct WorkloadStopped {
    pub workload_id: String,
    pub status: String,
    pub report: WorkloadReport,
}

/// The answer of `POST /api/workload/stop-all`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct WorkloadsStopped {
    /// `all`.
    pub workload_id: String,
    pub status: String,
    pub stopped: Vec<String>,
}

/// `GET /api/workload/active` and `GET /api/workload/runs` (the latter
/// without intervals, oldest first).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct WorkloadList {
    pub workloads: Vec<WorkloadReport>,
}

/// One TPC-C consistency condition's outcome.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct ConsistencyCheck {
    pub condition: u32,
    pub description: String,
    pub passed: bool,
    /// The rows that break it (warehouse, district, details).
    pub violations: Vec<String>,
}

/// One TPC-H query's result in a validation run.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct QueryRun {
    pub query: String,
    pub rows: usize,
    pub ms: f64,
    pub error: Option<String>,
}

/// The answer of `POST /api/workload/check`: TPC-C's consistency
/// conditions 1–4 (`checks`) or the 22 TPC-H queries run once (`queries`).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct CheckAnswer {
    #[serde(rename = "type")]
    pub kind: WorkloadKind,
    pub database: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<ConsistencyCheck>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<Vec<QueryRun>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_unknown_ones_are_named() {
        assert_eq!(WorkloadKind::parse("sysbench"), Ok(WorkloadKind::OltpReadWrite));
        for k in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::parse(k.as_str()), Ok(k));
        }
        let e = WorkloadKind::parse("oltp_insert").unwrap_err();
        assert!(e.contains("oltp_read_write") && e.contains("tpch"), "{e}");
        let req = WorkloadRequest {
            kind: Some("tpcc".into()),
            workload_type: Some("tpch".into()),
            ..Default::default()
        };
        assert!(req.workload_kind().unwrap_err().contains("disagree"));
        assert_eq!(WorkloadRequest::default().workload_kind(), Ok(WorkloadKind::OltpReadWrite));
    }

    #[test]
    fn options_are_validated() {
        assert!(Options::default().validate().is_ok());
        assert!(Options { tables: 0, ..Options::default() }.validate().is_err());
        assert!(Options { tables: 65, ..Options::default() }.validate().is_err());
        assert!(Options { scale_factor: 100.0, ..Options::default() }.validate().is_err());
        let both = Options {
            database: Some("a".into()),
            databases: vec!["b".into()],
            ..Options::default()
        };
        assert!(both.validate().is_err());
        assert!(serde_json::from_str::<Options>(r#"{"tabels": 2}"#).is_err());
    }
}
