//! `/api/databases`, `/api/metrics/database` and `/api/metrics/tenant`:
//! the database probe's figures in the seeds' shapes. A null field carries
//! its reason under `unavailable`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// SQL dialect of a database.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DialectKind {
    /// OceanBase (and seekdb): GV$SYSSTAT / V$OB_* views where present.
    Oceanbase,
    /// MySQL and MariaDB: SHOW GLOBAL STATUS, information_schema, performance_schema.
    Mysql,
}

impl DialectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DialectKind::Oceanbase => "oceanbase",
            DialectKind::Mysql => "mysql",
        }
    }
}

/// What the probe learned about a server at connect time.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq)]
pub struct Discovery {
    pub version: String,
    /// Views the dialect looks for that this server does not have.
    pub missing_views: Vec<String>,
    /// API field → why it is null on this server.
    pub unavailable: BTreeMap<String, String>,
    /// API field → the server view or counter it is derived from here.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

/// Where a database's probe stands.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct ProbeStatus {
    pub name: String,
    /// The store node of its series (`db:<name>`).
    pub node: String,
    pub dialect: DialectKind,
    pub addr: String,
    /// The agent node this server runs on, if configured.
    pub host_node: Option<String>,
    pub connected: bool,
    pub last_error: Option<String>,
    pub last_sample_ms: Option<i64>,
    pub discovery: Discovery,
}

/// `GET /api/databases`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct DatabaseList {
    pub databases: Vec<ProbeStatus>,
}

/// The seeds' database fields between two probe samples.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq)]
pub struct DbFields {
    /// End of the interval (ms).
    pub timestamp: i64,
    pub qps: Option<f64>,
    pub tps: Option<f64>,
    pub active_sessions: Option<f64>,
    /// Mean statement time in milliseconds over the interval.
    pub sql_response_time: Option<f64>,
    /// Bytes read and written per second.
    pub disk_io_bytes: Option<f64>,
    pub disk_iops: Option<f64>,
    /// Bytes.
    pub memory_usage: Option<f64>,
    /// Percent of logical reads served from cache over the interval.
    pub cache_hit_ratio: Option<f64>,
    /// Slow statements during the interval.
    pub slow_queries: Option<f64>,
    /// Deadlocks during the interval.
    pub deadlocks: Option<f64>,
    /// Seconds.
    pub replication_lag: Option<f64>,
    pub connection_count: Option<f64>,
}

/// One probe interval of one database, with why each null field is null.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct DbSample {
    #[serde(flatten)]
    pub fields: DbFields,
    pub database: String,
    /// Field → why it is null.
    pub unavailable: BTreeMap<String, String>,
}

/// One database's probe status with its intervals.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct DatabaseSeries {
    pub name: String,
    pub node: String,
    pub dialect: DialectKind,
    pub addr: String,
    pub connected: bool,
    pub last_error: Option<String>,
    pub last_sample_ms: Option<i64>,
    pub version: String,
    pub missing_views: Vec<String>,
    pub unavailable: BTreeMap<String, String>,
    pub metrics: Vec<DbSample>,
}

/// Query of `GET /api/metrics/database`.
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DbQuery {
    /// One database (default: every one).
    pub database: Option<String>,
    /// Start; default one minute before `to`.
    pub from: Option<String>,
    /// End; default now.
    pub to: Option<String>,
}

/// `GET /api/metrics/database`: every interval of every database, flat
/// (`metrics`, oldest first) and per database.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct DatabaseMetrics {
    pub from: i64,
    pub to: i64,
    pub metrics: Vec<DbSample>,
    pub databases: Vec<DatabaseSeries>,
}

/// Query of `GET /api/metrics/tenant`.
#[derive(Serialize, Deserialize, IntoParams, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Default: the database's schema (1..=128 characters).
    pub tenant_name: Option<String>,
    /// Default: the only database.
    pub database: Option<String>,
}

/// The seeds' tenant fields, read live. Null fields come with a reason.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, Default, PartialEq)]
pub struct TenantMetrics {
    pub timestamp: i64,
    pub tenant: String,
    /// What a tenant is on this server (`tenant` on multi-tenant OceanBase, `schema` elsewhere).
    pub scope: String,
    pub cpu_percent: Option<f64>,
    pub memory_used: Option<f64>,
    pub disk_used: Option<f64>,
    pub iops: Option<f64>,
    pub session_count: Option<f64>,
    pub active_session_count: Option<f64>,
    pub unavailable: BTreeMap<String, String>,
}

/// `GET /api/metrics/tenant`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct TenantAnswer {
    pub database: String,
    pub metrics: Vec<TenantMetrics>,
}
