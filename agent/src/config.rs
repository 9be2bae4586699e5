//! Agent configuration (TOML). Every field is defaulted; `check-config`
//! validates a file and the certificate paths it names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::buffer::BufferLimits;
use crate::collect::CollectConfig;
use crate::fault::FaultConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Node name; must equal the common name of the node certificate.
    /// Default: the host name.
    pub node: Option<String>,
    /// Sampling interval in milliseconds (100 ..= 60000).
    pub interval_ms: u32,
    /// Persistent state: the metric catalog and spilled batches.
    pub state_dir: PathBuf,
    pub uplink: UplinkConfig,
    pub collect: CollectConfig,
    pub fault: FaultConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Coordinator QUIC address, `host:port`.
    pub coordinator: String,
    /// Name the coordinator's server certificate must carry.
    pub server_name: String,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Rows grouped into one batch while the coordinator is unreachable.
    pub max_rows_per_batch: usize,
    /// Unacknowledged rows kept in memory before older batches spill to disk.
    pub memory_buffer_rows: usize,
    /// Disk space for spilled batches; beyond it the oldest are dropped.
    pub spill_limit_bytes: u64,
    /// Batches sent and not yet acknowledged at most.
    pub max_in_flight: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Fraction of each delay drawn at random (0 ..= 1).
    pub backoff_jitter: f64,
    /// Heartbeat period while idle.
    pub heartbeat_ms: u64,
    pub connect_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: None,
            interval_ms: 1000,
            state_dir: PathBuf::from("/var/lib/distdiag-agent"),
            uplink: UplinkConfig::default(),
            collect: CollectConfig::default(),
            fault: FaultConfig::default(),
        }
    }
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            coordinator: "127.0.0.1:7400".into(),
            server_name: "localhost".into(),
            ca_cert: PathBuf::from("/etc/distdiag/ca.pem"),
            cert: PathBuf::from("/etc/distdiag/node.pem"),
            key: PathBuf::from("/etc/distdiag/node.key"),
            max_rows_per_batch: 60,
            memory_buffer_rows: 3600,
            spill_limit_bytes: 256 << 20,
            max_in_flight: 64,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            backoff_jitter: 0.2,
            heartbeat_ms: 5_000,
            connect_timeout_ms: 5_000,
        }
    }
}

fn invalid<T>(m: String) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(m))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_owned(), reason: e.to_string() })?;
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), reason: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The node name in effect.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            std::fs::read_to_string(self.collect.procfs_root.join("sys/kernel/hostname"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into())
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=60_000).contains(&self.interval_ms) {
            return invalid(format!("interval_ms = {} is outside 100..=60000", self.interval_ms));
        }
        if !(1..=3600).contains(&self.collect.tcp_states_every) {
            return invalid(format!(
                "collect.tcp_states_every = {} is outside 1..=3600",
                self.collect.tcp_states_every
            ));
        }
        let node = self.node_name();
        let node_ok = !node.is_empty()
            && node.len() <= 64
            && !node.starts_with(['.', '-'])
            && node.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !node_ok {
            return invalid(format!(
                "node name {node:?} must be 1-64 characters of [A-Za-z0-9._-]"
            ));
        }
        let u = &self.uplink;
        match u.coordinator.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => {
                return invalid(format!(
                    "uplink.coordinator = {:?} must be host:port",
                    u.coordinator
                ))
            }
        }
        if u.server_name.is_empty() {
            return invalid("uplink.server_name must not be empty".into());
        }
        if u.max_rows_per_batch == 0 || u.max_rows_per_batch > 10_000 {
            return invalid(format!(
                "uplink.max_rows_per_batch = {} is outside 1..=10000",
                u.max_rows_per_batch
            ));
        }
        if u.memory_buffer_rows == 0 {
            return invalid("uplink.memory_buffer_rows must be positive".into());
        }
        if !(1..=4096).contains(&u.max_in_flight) {
            return invalid(format!(
                "uplink.max_in_flight = {} is outside 1..=4096",
                u.max_in_flight
            ));
        }
        if u.heartbeat_ms < 100 || u.connect_timeout_ms < 100 {
            return invalid(
                "uplink.heartbeat_ms and uplink.connect_timeout_ms must be at least 100".into(),
            );
        }
        self.backoff().map_err(|e| ConfigError::Invalid(format!("uplink backoff: {e}")))?;
        let f = &self.fault;
        if !(1_000..=86_400_000).contains(&f.max_duration_ms) {
            return invalid(format!(
                "fault.max_duration_ms = {} is outside 1000..=86400000",
                f.max_duration_ms
            ));
        }
        if !(1_000..=3_600_000).contains(&f.deadman_grace_ms) {
            return invalid(format!(
                "fault.deadman_grace_ms = {} is outside 1000..=3600000",
                f.deadman_grace_ms
            ));
        }
        if let Some(i) = &f.network_interface {
            if let Err(e) = crate::fault::network::validate_iface(i) {
                return invalid(format!("fault.network_interface: {e}"));
            }
        }
        for (field, p) in [
            ("collect.cgroup_path", &self.collect.cgroup_path),
            ("fault.cgroup_path", &self.fault.cgroup_path),
        ] {
            if let Some(p) = p {
                if p.split('/').any(|c| c == "..") {
                    return invalid(format!("{field} {p:?} must not contain '..'"));
                }
            }
        }
        Ok(())
    }

    /// Also checks that the files the config names are there.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        for (what, p) in [
            ("uplink.ca_cert", &self.uplink.ca_cert),
            ("uplink.cert", &self.uplink.cert),
            ("uplink.key", &self.uplink.key),
        ] {
            if !p.is_file() {
                return invalid(format!("{what} = {} does not exist", p.display()));
            }
        }
        if !self.collect.procfs_root.join("stat").is_file() {
            return invalid(format!(
                "collect.procfs_root = {} has no stat file",
                self.collect.procfs_root.display()
            ));
        }
        Ok(())
    }

    pub fn backoff(&self) -> Result<Backoff, crate::backoff::BackoffError> {
        Backoff::new(
            Duration::from_millis(self.uplink.backoff_base_ms),
            Duration::from_millis(self.uplink.backoff_max_ms),
            self.uplink.backoff_jitter,
        )
    }

    pub fn buffer_limits(&self) -> BufferLimits {
        BufferLimits {
            max_rows_per_batch: self.uplink.max_rows_per_batch,
            memory_rows: self.uplink.memory_buffer_rows,
            spill_bytes: self.uplink.spill_limit_bytes,
        }
    }

    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!(
            "# distdiag-agent configuration (all fields optional; these are the defaults)\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_roundtrip_and_validate() {
        let cfg: Config = toml::from_str(&Config::default_toml()).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        for (text, field) in [
            ("interval_ms = 10", "interval_ms"),
            ("node = 'a b'", "node name"),
            ("[uplink]\ncoordinator = 'nohost'", "uplink.coordinator"),
            ("[uplink]\nbackoff_jitter = 2.0", "backoff"),
            ("[uplink]\nmax_in_flight = 0", "max_in_flight"),
            ("[collect]\ncgroup_path = '../../etc'", "cgroup_path"),
            ("[collect]\ntcp_states_every = 0", "tcp_states_every"),
            ("[fault]\nnetwork_interface = 'eth0; reboot'", "fault.network_interface"),
        ] {
            let cfg: Config = toml::from_str(text).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        assert!(toml::from_str::<Config>("unknown = 1").is_err());
    }

    #[test]
    fn example_config_is_valid() {
        let path = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../examples/agent.toml");
        Config::load(&path).unwrap();
    }
}
