//! Coordinator configuration: a TOML file says what runs; command-line flags
//! override where the process keeps its data and which addresses it binds.
//! Every field is defaulted, so an empty file (or none) is a valid config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use distdiag_store::StoreConfig;
use distdiag_workload::db::DbTarget;

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
    /// Directory for the store (`store/`), certificates (`certs/`) and the API token (`token`).
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub ingest: IngestConfig,
    pub store: StoreSection,
    pub faults: FaultsConfig,
    pub probe: ProbeConfig,
    pub diagnosis: DiagnosisConfig,
    /// Kubernetes: database pods discovered by label, the Chaos Mesh injector.
    pub kubernetes: crate::kube::KubeConfig,
    /// Databases to probe, load with workloads and perturb (`[[databases]]`).
    pub databases: Vec<DbTarget>,
    /// Prometheus remote-write receivers every stored row goes to (`[[remote_write]]`).
    pub remote_write: Vec<crate::remote_write::RemoteWriteConfig>,
    /// The diagnosis reads its windows from this Prometheus-compatible API
    /// instead of the local store (`[remote_read]`; none by default).
    pub remote_read: Option<crate::remote_write::RemoteReadConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// How often each database is sampled (1 s ..= 5 min).
    pub interval_ms: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { interval_ms: 5_000 }
    }
}

/// Online diagnosis (`[diagnosis]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosisConfig {
    /// Rank the nodes online.
    pub enabled: bool,
    /// Rank as soon as every node has a new sample, at most this often
    /// (ms, 100..=3600000; default 1000, the agents' interval); at least
    /// every window stride in any case. A fault is named in the first
    /// seconds of its window, not at the next stride; set it to the
    /// stride to rank only then (less CPU on a large cluster).
    pub rank_interval_ms: i64,
    /// Window geometry of the statistical scorer and of new models
    /// (an active model brings its own).
    pub window: distdiag_diagnose::WindowConfig,
    /// Past rankings kept in memory, cut to their first 10 entries and
    /// without their graph (about 3 KB each), for the history when the
    /// store cannot be read; the latest one is kept whole besides.
    pub history_rankings: usize,
    /// Hours the store keeps past rankings for `GET /api/anomaly/ranks?from=&to=`
    /// and `/api/anomaly/incidents` (0: forever).
    pub history_retention_hours: u32,
    /// Alertmanager-compatible webhook (`POST` of an alert list); none by default.
    pub alert_webhook: Option<String>,
    /// Fire when the top entry's probability reaches this (0..=1).
    pub alert_threshold: f64,
    /// Known topology: `[[diagnosis.topology]] a = "n1", b = "n2", weight = 0.5`.
    pub topology: Vec<TopologyEdge>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopologyEdge {
    pub a: String,
    pub b: String,
    pub weight: f64,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        DiagnosisConfig {
            enabled: true,
            rank_interval_ms: 1_000,
            window: distdiag_diagnose::WindowConfig::default(),
            history_rankings: 2_160,
            history_retention_hours: 168,
            alert_webhook: None,
            alert_threshold: 0.8,
            topology: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Duration of a fault whose request names none.
    pub default_duration_ms: u64,
    /// Longest duration a request may ask for.
    pub max_duration_ms: u64,
    /// How long to wait for an agent to confirm or refuse.
    pub answer_timeout_ms: u64,
}

impl Default for FaultsConfig {
    fn default() -> Self {
        FaultsConfig {
            default_duration_ms: 60_000,
            max_duration_ms: 3_600_000,
            answer_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// HTTP listen address of the REST API.
    pub listen: SocketAddr,
    /// File holding the bearer token for mutating endpoints; default `<data_dir>/token`.
    /// Generated on first start when missing. `DISTDIAG_TOKEN` overrides it.
    pub token_file: Option<PathBuf>,
    /// Longest a `POST /api/workload/prepare` with `wait` is held open before
    /// it answers 202, still preparing (0 ..= 600000; keep it below your
    /// proxies' timeouts).
    pub prepare_wait_ms: u64,
    /// Whether every GET under /api (and /metrics) needs a `read` or `admin`
    /// token. Unset: yes when `listen` is not a loopback address. The
    /// dashboard page, /docs, /api/openapi.json and /health stay open.
    pub require_token_for_reads: Option<bool>,
    /// Scoped tokens (`distdiag-coordinator token create`), stored hashed;
    /// default `<data_dir>/tokens.json`.
    pub tokens_file: Option<PathBuf>,
    /// Serve the API (and the dashboard) over HTTPS instead of HTTP.
    pub tls: bool,
    /// Certificate chain and key of the HTTPS listener (PEM). Default: the
    /// cluster's server certificate (`ingest.server_cert`/`server_key`, made
    /// by `cert init` for the names given with `--server-name`), which
    /// clients trust through the cluster CA (`ca.pem`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// UDP listen address of the QUIC ingest.
    pub listen: SocketAddr,
    /// Cluster CA certificate (PEM); default `<data_dir>/certs/ca.pem`.
    pub ca_cert: Option<PathBuf>,
    /// Server certificate and key (PEM); default `<data_dir>/certs/server.{pem,key}`.
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    /// Largest accepted frame payload in bytes (4 KiB ..= 64 MiB).
    pub max_frame_bytes: u32,
    /// A connection silent for this long is closed (1 s ..= 10 min).
    pub idle_timeout_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Sealed blocks older than this are deleted (0 keeps everything).
    pub retention_hours: u32,
    #[serde(flatten)]
    pub tuning: StoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            api: ApiConfig::default(),
            ingest: IngestConfig::default(),
            store: StoreSection::default(),
            faults: FaultsConfig::default(),
            probe: ProbeConfig::default(),
            diagnosis: DiagnosisConfig::default(),
            kubernetes: crate::kube::KubeConfig::default(),
            databases: Vec::new(),
            remote_write: Vec::new(),
            remote_read: None,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            token_file: None,
            prepare_wait_ms: 60_000,
            require_token_for_reads: None,
            tokens_file: None,
            tls: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            ca_cert: None,
            server_cert: None,
            server_key: None,
            max_frame_bytes: distdiag_common::proto::DEFAULT_MAX_FRAME,
            idle_timeout_ms: 20_000,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection { retention_hours: 24 * 14, tuning: StoreConfig::default() }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_owned(), reason: e.to_string() })?;
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), reason: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for rw in &self.remote_write {
            rw.validate().map_err(ConfigError::Invalid)?;
        }
        if let Some(rr) = &self.remote_read {
            rr.validate().map_err(ConfigError::Invalid)?;
        }
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return bad("api.tls_cert and api.tls_key go together: give both or neither".into());
        }
        if !(4096..=64 << 20).contains(&self.ingest.max_frame_bytes) {
            return bad(format!(
                "ingest.max_frame_bytes = {} is outside 4096..=67108864",
                self.ingest.max_frame_bytes
            ));
        }
        if !(1_000..=600_000).contains(&self.ingest.idle_timeout_ms) {
            return bad(format!(
                "ingest.idle_timeout_ms = {} is outside 1000..=600000",
                self.ingest.idle_timeout_ms
            ));
        }
        if !(1_000..=86_400_000).contains(&self.store.tuning.block_span_ms) {
            return bad(format!(
                "store.block_span_ms = {} is outside 1000..=86400000",
                self.store.tuning.block_span_ms
            ));
        }
        if !(2..=100_000).contains(&self.store.tuning.block_rows) {
            return bad(format!(
                "store.block_rows = {} is outside 2..=100000",
                self.store.tuning.block_rows
            ));
        }
        if !(1 << 20..=1 << 36).contains(&self.store.tuning.hot_bytes) {
            return bad(format!(
                "store.hot_bytes = {} is outside 1048576..=68719476736",
                self.store.tuning.hot_bytes
            ));
        }
        if !(1 << 16..=1 << 32).contains(&self.store.tuning.wal_segment_bytes) {
            return bad(format!(
                "store.wal_segment_bytes = {} is outside 65536..=4294967296",
                self.store.tuning.wal_segment_bytes
            ));
        }
        if !(1 << 20..=1 << 36).contains(&self.store.tuning.block_file_bytes) {
            return bad(format!(
                "store.block_file_bytes = {} is outside 1048576..=68719476736",
                self.store.tuning.block_file_bytes
            ));
        }
        if self.store.tuning.cache_bytes < 1 << 20 {
            return bad("store.cache_bytes must be at least 1048576".into());
        }
        let d = &self.diagnosis;
        if let Err(e) = d.window.validate() {
            return bad(format!("diagnosis.window: {e}"));
        }
        if !(100..=3_600_000).contains(&d.rank_interval_ms) {
            return bad(format!(
                "diagnosis.rank_interval_ms must be 100..=3600000, not {}",
                d.rank_interval_ms
            ));
        }
        if !(0.0..=1.0).contains(&d.alert_threshold) || d.history_rankings > 1_000_000 {
            return bad(
                "diagnosis: alert_threshold must be in 0..=1 and history_rankings at most 1000000"
                    .into(),
            );
        }
        if let Some(url) = &d.alert_webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad(format!("diagnosis.alert_webhook = {url:?} is not an http(s) URL"));
            }
        }
        if d.topology.iter().any(|t| !(t.weight.is_finite() && t.weight >= 0.0)) {
            return bad("diagnosis.topology weights must be finite and >= 0".into());
        }
        let f = &self.faults;
        if !(1_000..=86_400_000).contains(&f.max_duration_ms)
            || f.default_duration_ms == 0
            || f.default_duration_ms > f.max_duration_ms
        {
            return bad(format!(
                "faults: need 0 < default_duration_ms ({}) <= max_duration_ms ({}) <= 86400000",
                f.default_duration_ms, f.max_duration_ms
            ));
        }
        if !(100..=600_000).contains(&f.answer_timeout_ms) {
            return bad(format!(
                "faults.answer_timeout_ms = {} is outside 100..=600000",
                f.answer_timeout_ms
            ));
        }
        if self.api.listen == self.ingest.listen {
            return bad("api.listen and ingest.listen must differ".into());
        }
        if self.api.prepare_wait_ms > 600_000 {
            return bad(format!(
                "api.prepare_wait_ms = {} is above 600000",
                self.api.prepare_wait_ms
            ));
        }
        if !(1_000..=300_000).contains(&self.probe.interval_ms) {
            return bad(format!(
                "probe.interval_ms = {} is outside 1000..=300000",
                self.probe.interval_ms
            ));
        }
        for (i, t) in self.databases.iter().enumerate() {
            t.validate().map_err(ConfigError::Invalid)?;
            if self.databases[..i].iter().any(|u| u.name == t.name) {
                return bad(format!("two databases are named {:?}", t.name));
            }
        }
        self.kubernetes.validate().map_err(ConfigError::Invalid)?;
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must not be empty".into());
        }
        Ok(())
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }
    pub fn token_file(&self) -> PathBuf {
        self.api.token_file.clone().unwrap_or_else(|| self.data_dir.join("token"))
    }
    pub fn tokens_file(&self) -> PathBuf {
        self.api.tokens_file.clone().unwrap_or_else(|| self.data_dir.join("tokens.json"))
    }
    /// `api.require_token_for_reads`, its default resolved.
    pub fn reads_need_token(&self) -> bool {
        self.api.require_token_for_reads.unwrap_or(!self.api.listen.ip().is_loopback())
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.ingest.ca_cert.clone().unwrap_or_else(|| self.certs_dir().join("ca.pem"))
    }
    pub fn server_cert(&self) -> PathBuf {
        self.ingest.server_cert.clone().unwrap_or_else(|| self.certs_dir().join("server.pem"))
    }
    pub fn server_key(&self) -> PathBuf {
        self.ingest.server_key.clone().unwrap_or_else(|| self.certs_dir().join("server.key"))
    }
    /// Certificate and key of the HTTPS API listener.
    pub fn api_tls_files(&self) -> (PathBuf, PathBuf) {
        (
            self.api.tls_cert.clone().unwrap_or_else(|| self.server_cert()),
            self.api.tls_key.clone().unwrap_or_else(|| self.server_key()),
        )
    }

    /// The default configuration as commented TOML.
    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!("# distdiag-coordinator configuration (all fields optional; these are the defaults)\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_parses_back_to_the_defaults() {
        let cfg: Config = toml::from_str(&Config::default_toml()).unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("data_dirr = 'x'").is_err());
        assert!(toml::from_str::<Config>("[api]\nlisten = 'nope'").is_err());
        let cfg: Config = toml::from_str("[ingest]\nmax_frame_bytes = 10").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("max_frame_bytes"));
        let cfg: Config = toml::from_str("[store]\nblock_rows = 1").unwrap();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn example_config_is_valid() {
        let path = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../examples/coordinator.toml");
        Config::load(&path).unwrap();
    }
}
