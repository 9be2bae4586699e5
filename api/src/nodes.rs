//! `/health` and `/api/nodes`: the agents and probed databases the
//! coordinator knows, with their true state.

use distdiag_common::proto::{Capabilities, HostFacts};
use distdiag_common::MetricDesc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /health`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Health {
    /// Always `ok` when the coordinator answers.
    pub status: String,
    pub connected_agents: usize,
    /// Nodes known to the store (agents and probed databases).
    pub nodes: usize,
    pub version: String,
    /// Whether reads under /api need a read (or admin) token here.
    #[serde(default)]
    pub reads_need_token: bool,
    /// Whether the store takes writes, and why not.
    #[serde(default)]
    pub storage: StorageHealth,
}

/// The store's state: while it cannot write (a full disk), agents' batches
/// are refused with the storage-unavailable code and stay in their spill
/// until it can; reads go on.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Default)]
pub struct StorageHealth {
    /// False while writes fail.
    pub writable: bool,
    /// The first failing write's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Since when writes fail (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Free bytes on the store's filesystem (checked every second while
    /// writes fail); the store reopens by itself once there is room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
}

/// What sends a node's series.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A host with a distdiag agent (QUIC).
    Agent,
    /// A database the coordinator probes over SQL (`db:<name>`).
    Database,
}

/// Where a node stands now.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// An agent with a live connection.
    Connected,
    /// An agent without one (its data stays).
    Disconnected,
    /// A database whose probe is connected and sampling.
    Probing,
    /// A database the probe cannot reach (see `/api/databases`).
    Unreachable,
    /// A database no longer in the configuration (its data stays).
    Unconfigured,
}

/// One node.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub node: String,
    pub kind: NodeKind,
    pub state: NodeState,
    /// True for an agent with a live connection and for a database whose
    /// probe is connected.
    pub connected: bool,
    /// The agent's address, while connected.
    pub remote: Option<String>,
    pub connected_since_ms: Option<i64>,
    pub host: HostFacts,
    pub capabilities: Capabilities,
    pub interval_ms: u32,
    pub metric_count: usize,
    pub first_seen_ms: i64,
    pub last_sample_ms: Option<i64>,
    /// The metric catalog (`GET /api/nodes/{node}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<Vec<MetricDesc>>,
}

/// `GET /api/nodes`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct NodeList {
    pub nodes: Vec<NodeInfo>,
}

/// `DELETE /api/nodes/{node}`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct NodeDeleted {
    pub node: String,
    /// `deleted`.
    pub status: String,
}
