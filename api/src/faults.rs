//! `/api/anomaly/{start,stop,active,history}`: faults on agents and
//! databases, and the labelled record of every injected fault (the
//! training labels).

use distdiag_common::fault::{FaultSpec, FaultState};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::training::Case;

/// Agent fault types (the agent applies them).
pub const AGENT_KINDS: [&str; 6] = distdiag_common::fault::FaultSpec::KINDS;
/// Database fault types (the coordinator applies them through SQL).
pub const DB_KINDS: [&str; 4] =
    ["cache_bottleneck", "too_many_indexes", "workload_surge", "lock_contention"];

/// Where a fault stands, as the coordinator knows it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultPhase {
    /// Sent to the agent, no answer yet.
    Pending,
    Applied,
    Reverted,
    Expired,
    Refused,
    Failed,
}

impl From<FaultState> for FaultPhase {
    fn from(s: FaultState) -> Self {
        match s {
            FaultState::Applied => FaultPhase::Applied,
            FaultState::Reverted => FaultPhase::Reverted,
            FaultState::Expired => FaultPhase::Expired,
            FaultState::Refused => FaultPhase::Refused,
            FaultState::Failed => FaultPhase::Failed,
        }
    }
}

impl FaultPhase {
    /// Whether the fault can still be in effect.
    pub fn is_live(self) -> bool {
        matches!(self, FaultPhase::Pending | FaultPhase::Applied)
    }
}

/// What was injected: an agent fault or a database fault. Untagged: the
/// two enums' variant names differ, and records written before database
/// faults existed read back as `Agent`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum RecordSpec {
    Agent(FaultSpec),
    Database(DbFaultSpec),
}

/// One injected fault: the ground-truth label of what was done where, when.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct FaultRecord {
    pub id: String,
    pub node: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub spec: RecordSpec,
    pub requested_ms: i64,
    pub applied_ms: Option<i64>,
    pub deadline_ms: i64,
    pub ended_ms: Option<i64>,
    pub state: FaultPhase,
    pub detail: String,
    /// Set when Chaos Mesh applied the fault instead of the node's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosResource>,
}

/// A Chaos Mesh resource (`chaos-mesh.org/v1alpha1`) that applies a fault.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct ChaosResource {
    /// `StressChaos` or `NetworkChaos`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// A database fault as requested (stored in the fault record).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DbFaultSpec {
    /// OceanBase: the memstore limit, in bytes (seekdb's
    /// `memstore_memory_limit`) or percent (`memstore_limit_percentage`),
    /// whichever the server has, then a minor freeze; MySQL: the buffer pool
    /// in bytes.
    CacheBottleneck {
        database: String,
        percent: Option<u8>,
        bytes: Option<u64>,
    },
    TooManyIndexes {
        database: String,
        count: u32,
        tables: Vec<String>,
    },
    WorkloadSurge {
        workload_id: String,
        threads: usize,
    },
    LockContention {
        database: String,
        table: String,
        rows: u32,
        sessions: u32,
        hold_ms: u64,
    },
}

impl DbFaultSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            DbFaultSpec::CacheBottleneck { .. } => "cache_bottleneck",
            DbFaultSpec::TooManyIndexes { .. } => "too_many_indexes",
            DbFaultSpec::WorkloadSurge { .. } => "workload_surge",
            DbFaultSpec::LockContention { .. } => "lock_contention",
        }
    }
}

/// How long a fault lasts: seconds, or a duration such as `"90s"`, `"5m"`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum DurationArg {
    Seconds(f64),
    Text(String),
}

/// `POST /api/anomaly/start`. The seeds' `{"type": "cpu_stress"}` works
/// with defaults when exactly one agent is connected; otherwise name `node`
/// or `nodes`. Database faults name their database in `params.database`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// An agent fault (`cpu_stress`, `memory_stress`, `disk_stress`,
    /// `network_delay`, `network_loss`, `network_bandwidth`) or a database
    /// fault (`cache_bottleneck`, `too_many_indexes`, `workload_surge`,
    /// `lock_contention`).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// The type's parameters: [`CpuParams`], [`MemoryParams`], [`DiskParams`],
    /// [`NetParams`] or [`DbFaultParams`]; defaults fill what is left out.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// Default: the coordinator's `faults.default_duration_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationArg>,
    /// Record this fault as a training case (default: on while
    /// `POST /api/training/collect` is in effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_training_data: Option<bool>,
    /// Normal data kept before and after the fault (seconds, default 30, at most 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_s: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_s: Option<u32>,
    /// Scenario label of the case (at most 100 characters, no commas or quotes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Add this fault to an existing training case instead of opening one
    /// (a compound case: several requests, one case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
}

/// Parameters of `cpu_stress`: `workers` busy `load_percent` of every 100 ms.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CpuParams {
    pub workers: u32,
    pub load_percent: u8,
}

impl Default for CpuParams {
    fn default() -> Self {
        CpuParams { workers: 1, load_percent: 100 }
    }
}

/// Parameters of `memory_stress`: `bytes` (default 256 MiB) or `percent_of_available`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MemoryParams {
    pub bytes: Option<u64>,
    pub percent_of_available: Option<f32>,
}

/// Parameters of `disk_stress`: write + fsync loops.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskParams {
    pub workers: u32,
    pub bytes: u64,
    /// Directory to write in (default: the agent's state directory).
    pub path: Option<String>,
}

impl Default for DiskParams {
    fn default() -> Self {
        DiskParams { workers: 1, bytes: 256 << 20, path: None }
    }
}

/// Parameters of `network_delay` (`latency_ms`, default 100, `jitter_ms`),
/// `network_loss` (`percent`, default 10) and `network_bandwidth`
/// (`rate_kbit`, default 1000). Egress of `interface` (default: the default
/// route's), optionally only towards `peers` (CIDR) and `ports`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NetParams {
    pub latency_ms: Option<u32>,
    pub jitter_ms: u32,
    pub percent: Option<f32>,
    pub rate_kbit: Option<u64>,
    pub interface: Option<String>,
    pub peers: Vec<String>,
    pub ports: Vec<u16>,
}

/// Parameters of the database faults: `database` (default: the only one),
/// `cache_bottleneck` (OceanBase: memstore limit in `bytes`, default 128 MiB,
/// or `percent`, default 10, by the parameter the server has, then a minor
/// freeze; MySQL: buffer
/// pool `bytes`, default 8 MiB), `too_many_indexes` (`count`, `tables`),
/// `workload_surge` (`workload_id`, `threads`), `lock_contention` (`table`,
/// `rows`, `sessions`, `hold_ms`).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DbFaultParams {
    pub database: Option<String>,
    pub percent: Option<u8>,
    pub bytes: Option<u64>,
    pub count: Option<u32>,
    pub tables: Vec<String>,
    pub workload_id: Option<String>,
    pub threads: Option<usize>,
    pub table: Option<String>,
    pub rows: Option<u32>,
    pub sessions: Option<u32>,
    pub hold_ms: Option<u64>,
}

/// The answer of `POST /api/anomaly/start`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct StartAnswer {
    /// `success`.
    pub status: String,
    pub message: String,
    /// One record per node the fault started on.
    pub anomalies: Vec<FaultRecord>,
    /// The training case the fault opened or joined.
    pub case: Option<Case>,
}

/// `POST /api/anomaly/stop`: one fault by id; an empty body (or no id) stops all.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A fault a stop-all could not revert.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct StopFailure {
    pub id: String,
    pub error: String,
}

/// The answer of `POST /api/anomaly/stop`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct StopAnswer {
    /// `success`, or `partial` when some fault could not be reverted.
    pub status: String,
    pub message: String,
    pub stopped: Vec<FaultRecord>,
    #[serde(default)]
    pub failed: Vec<StopFailure>,
}

/// `GET /api/anomaly/active`: faults that may still be in effect.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct FaultList {
    pub anomalies: Vec<FaultRecord>,
}

/// Query of `GET /api/anomaly/history`.
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Start (ms, RFC 3339, `now` or relative such as `-24h`); default 24 h before `to`.
    pub from: Option<String>,
    /// End; default now.
    pub to: Option<String>,
}

/// `GET /api/anomaly/history`: every fault whose lifetime overlaps the period.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct FaultHistory {
    pub from: i64,
    pub to: i64,
    pub anomalies: Vec<FaultRecord>,
}
