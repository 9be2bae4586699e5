//! Messages exchanged on the one bidirectional QUIC stream an agent opens.
//!
//! Agent → coordinator: [`AgentMsg::Hello`] first, then batches of rows,
//! catalog growth, heartbeats and fault status. Coordinator → agent:
//! [`CoordMsg::Welcome`], acknowledgements (sent only once a batch is durable),
//! heartbeats, the fault control messages, or a typed refusal before the
//! connection is closed.
//!
//! The node identity a coordinator stores data under is taken from the client
//! certificate; [`Hello::node`] is only checked against it.

use serde::{Deserialize, Serialize};

use crate::catalog::MetricDesc;
use crate::fault::{FaultSpec, FaultState};

/// Version of this protocol; a peer with another version is refused.
/// 2: capabilities name each fault backend's mechanism and CAP_NET_ADMIN.
pub const PROTOCOL_VERSION: u16 = 3;
/// TLS ALPN identifier of the protocol.
pub const ALPN: &[u8] = b"distdiag/1";
/// Default hard limit for one frame's payload.
pub const DEFAULT_MAX_FRAME: u32 = 8 * 1024 * 1024;

/// Facts about the host an agent runs on, sent once per connection.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct HostFacts {
    pub hostname: String,
    pub kernel: String,
    pub cpus: u32,
    pub mem_total_bytes: u64,
    pub boot_time_s: u64,
    pub agent_version: String,
}

/// Control-group layout found on the host.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum CgroupVersion {
    #[default]
    None,
    V1,
    V2,
    Hybrid,
}

/// A fault type the agent can apply, and how it does it here.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FaultBackend {
    /// The fault type (`cpu_stress`, `network_delay`, ...).
    pub kind: String,
    /// The mechanism, e.g. `stress-worker processes`, `nfqueue (no sch_netem)`.
    pub mechanism: String,
}

/// A fault type the agent cannot apply here, and why (what to install or grant).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct MissingBackend {
    pub kind: String,
    pub reason: String,
}

/// What the agent found it can do on this host, probed at start.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Capabilities {
    pub cgroup: CgroupVersion,
    /// Whether the agent may change network settings (CAP_NET_ADMIN).
    pub net_admin: bool,
    /// The fault types the agent can apply (empty when it has none).
    pub fault_backends: Vec<FaultBackend>,
    /// The fault types it cannot, each with why.
    pub missing: Vec<MissingBackend>,
}

/// First message of every connection.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Hello {
    /// Must stay the first field: the coordinator reads it before decoding the rest.
    pub version: u16,
    pub node: String,
    pub host: HostFacts,
    pub capabilities: Capabilities,
    /// The agent's whole catalog. It only ever grows: index `i` names the same
    /// metric for the life of the agent's state directory.
    pub catalog: Vec<MetricDesc>,
    pub interval_ms: u32,
}

/// One sample instant: values aligned with the catalog (`NaN` = not collected).
/// A row may be shorter than the catalog; missing tail values are `NaN`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Row {
    pub ts_ms: i64,
    pub values: Vec<f64>,
}

/// Rows the agent wants acknowledged under one sequence number.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Batch {
    pub seq: u64,
    pub rows: Vec<Row>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AgentMsg {
    Hello(Hello),
    /// The whole catalog after it grew; the old catalog must be a prefix of it.
    Catalog(Vec<MetricDesc>),
    Batch(Batch),
    Heartbeat {
        ts_ms: i64,
    },
    FaultStatus {
        id: String,
        state: FaultState,
        detail: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum CoordMsg {
    /// Accepted; `node` is the identity taken from the certificate and
    /// `max_frame` the largest frame the coordinator takes.
    Welcome {
        node: String,
        max_frame: u32,
    },
    /// Batch `seq` is durable.
    Ack {
        seq: u64,
    },
    /// The connection is about to be closed for this reason.
    Refused(ProtocolError),
    Heartbeat {
        ts_ms: i64,
    },
    ApplyFault {
        id: String,
        spec: FaultSpec,
        deadline_ms: i64,
    },
    RevertFault {
        id: String,
    },
    RevertAll,
}

/// Why a peer was refused. Also the reason text of the QUIC close.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("protocol version {theirs} is not supported (this side speaks {ours})")]
    VersionMismatch { ours: u16, theirs: u16 },
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u32 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unexpected message: {0}")]
    Unexpected(String),
    #[error("node name mismatch: certificate says {cert:?}, hello says {hello:?}")]
    NodeMismatch { cert: String, hello: String },
    #[error("bad catalog: {0}")]
    BadCatalog(String),
    #[error("bad batch: {0}")]
    BadBatch(String),
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl ProtocolError {
    /// QUIC application close code for this error (stable, documented in ARCHITECTURE.md).
    pub fn close_code(&self) -> u32 {
        match self {
            ProtocolError::VersionMismatch { .. } => 1,
            ProtocolError::FrameTooLarge { .. } => 2,
            ProtocolError::Malformed(_) => 3,
            ProtocolError::Unexpected(_) => 4,
            ProtocolError::NodeMismatch { .. } => 5,
            ProtocolError::BadCatalog(_) => 6,
            ProtocolError::BadBatch(_) => 7,
            ProtocolError::Storage(_) => 8,
        }
    }
}

/// QUIC close code of an orderly shutdown.
pub const CLOSE_NORMAL: u32 = 0;
