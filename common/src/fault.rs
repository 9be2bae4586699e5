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
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum MemorySize {
    Bytes(u64),
    PercentOfAvailable(f32),
}

/// A host-level fault the agent knows how to inject and revert. Externally
/// tagged (serde's default): bincode cannot decode internally tagged enums.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum FaultSpec {
    CpuStress {
        workers: u32,
        load_percent: u8,
    },
    MemoryStress {
        size: MemorySize,
    },
    DiskStress {
        workers: u32,
        bytes: u64,
        path: Option<String>,
    },
    NetworkDelay {
        latency_ms: u32,
        jitter_ms: u32,
        interface: Option<String>,
        peers: Vec<String>,
        ports: Vec<u16>,
    },
    NetworkLoss {
        percent: f32,
        interface: Option<String>,
        peers: Vec<String>,
        ports: Vec<u16>,
    },
    NetworkBandwidth {
        rate_kbit: u64,
        interface: Option<String>,
    },
}

/// Life-cycle state of a fault on an agent.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum FaultState {
    Applied,
    Reverted,
    Expired,
    Refused,
    Failed,
}

/// Default parameters of the seeds' fault types, and the checks every spec
/// passes before anything is changed.
impl FaultSpec {
    /// Every type name [`FaultSpec::kind`] returns.
    pub const KINDS: [&'static str; 6] = [
        "cpu_stress",
        "memory_stress",
        "disk_stress",
        "network_delay",
        "network_loss",
        "network_bandwidth",
    ];

    /// The type name used in the API (`cpu_stress`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::CpuStress { .. } => "cpu_stress",
            FaultSpec::MemoryStress { .. } => "memory_stress",
            FaultSpec::DiskStress { .. } => "disk_stress",
            FaultSpec::NetworkDelay { .. } => "network_delay",
            FaultSpec::NetworkLoss { .. } => "network_loss",
            FaultSpec::NetworkBandwidth { .. } => "network_bandwidth",
        }
    }

    /// Structural checks that need no knowledge of the host.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            FaultSpec::CpuStress { workers, load_percent } => {
                if !(1..=256).contains(workers) {
                    return Err(format!("cpu_stress: workers = {workers} is outside 1..=256"));
                }
                if !(1..=100).contains(load_percent) {
                    return Err(format!(
                        "cpu_stress: load_percent = {load_percent} is outside 1..=100"
                    ));
                }
            }
            FaultSpec::MemoryStress { size } => match size {
                MemorySize::Bytes(b) if *b < 1 << 20 => {
                    return Err(format!("memory_stress: {b} bytes is below 1 MiB"))
                }
                MemorySize::PercentOfAvailable(p) if !(*p > 0.0 && *p <= 90.0) => {
                    return Err(format!(
                        "memory_stress: percent_of_available = {p} is outside (0, 90]"
                    ));
                }
                _ => {}
            },
            FaultSpec::DiskStress { workers, bytes, path } => {
                if !(1..=64).contains(workers) {
                    return Err(format!("disk_stress: workers = {workers} is outside 1..=64"));
                }
                if !(1 << 20..=1 << 40).contains(bytes) {
                    return Err(format!("disk_stress: bytes = {bytes} is outside 1 MiB ..= 1 TiB"));
                }
                if let Some(p) = path {
                    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                        return Err(format!(
                            "disk_stress: path {p:?} must be absolute and must not contain '..'"
                        ));
                    }
                }
            }
            FaultSpec::NetworkDelay { latency_ms, jitter_ms, .. } => {
                if !(1..=60_000).contains(latency_ms) || jitter_ms > latency_ms {
                    return Err(format!("network_delay: latency {latency_ms} ms must be 1..=60000 and jitter {jitter_ms} ms at most the latency"));
                }
            }
            FaultSpec::NetworkLoss { percent, .. } => {
                if !(*percent > 0.0 && *percent <= 100.0) {
                    return Err(format!("network_loss: percent = {percent} is outside (0, 100]"));
                }
            }
            FaultSpec::NetworkBandwidth { rate_kbit, .. } => {
                if *rate_kbit < 8 {
                    return Err(format!("network_bandwidth: rate_kbit = {rate_kbit} is below 8"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_validated() {
        assert!(FaultSpec::CpuStress { workers: 1, load_percent: 100 }.validate().is_ok());
        assert!(FaultSpec::CpuStress { workers: 0, load_percent: 100 }.validate().is_err());
        assert!(FaultSpec::CpuStress { workers: 1, load_percent: 101 }.validate().is_err());
        assert!(FaultSpec::MemoryStress { size: MemorySize::Bytes(256 << 20) }.validate().is_ok());
        assert!(FaultSpec::MemoryStress { size: MemorySize::PercentOfAvailable(95.0) }
            .validate()
            .is_err());
        assert!(FaultSpec::DiskStress { workers: 1, bytes: 64 << 20, path: Some("../x".into()) }
            .validate()
            .is_err());
        assert!(FaultSpec::NetworkDelay {
            latency_ms: 100,
            jitter_ms: 200,
            interface: None,
            peers: vec![],
            ports: vec![]
        }
        .validate()
        .is_err());
        assert_eq!(
            FaultSpec::NetworkLoss { percent: 5.0, interface: None, peers: vec![], ports: vec![] }
                .kind(),
            "network_loss"
        );
    }
}
