//! Faults as the API shows them: the labelled record of every injected
//! fault (the training labels) and the database faults' specifications.

use distdiag_common::fault::{FaultSpec, FaultState};
use serde::{Deserialize, Serialize};

/// Where a fault stands, as the coordinator knows it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum RecordSpec {
    Agent(FaultSpec),
    Database(DbFaultSpec),
}

/// One injected fault: the ground-truth label of what was done where, when.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
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
}

/// A database fault as requested (stored in the fault record).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DbFaultSpec {
    /// OceanBase: memstore limit in percent; MySQL: buffer pool bytes.
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
