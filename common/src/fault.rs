//! Fault specifications carried by the control messages of the protocol.
//!
//! The coordinator validates a request, turns it into one of these and sends
//! it to the agent that owns the host; the agent applies it, enforces its
//! deadline and reports status changes. Adding a fault kind adds a variant
//! here; every `match` over [`FaultSpec`] is exhaustive, so the compiler names
//! each place that still has to handle it.

use serde::{Deserialize, Serialize};

/// How much memory a memory stressor holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum MemorySize {
    Bytes(u64),
    PercentOfAvailable(f32),
}

/// A host-level fault the agent knows how to inject and revert. Externally
/// tagged (serde's default): bincode cannot decode internally tagged enums.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FaultSpec {
    CpuStress { workers: u32, load_percent: u8 },
    MemoryStress { size: MemorySize },
    DiskStress { workers: u32, bytes: u64, path: Option<String> },
    NetworkDelay { latency_ms: u32, jitter_ms: u32, interface: Option<String>, peers: Vec<String>, ports: Vec<u16> },
    NetworkLoss { percent: f32, interface: Option<String>, peers: Vec<String>, ports: Vec<u16> },
    NetworkBandwidth { rate_kbit: u64, interface: Option<String> },
}

/// Life-cycle state of a fault on an agent.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultState {
    Applied,
    Reverted,
    Expired,
    Refused,
    Failed,
}
