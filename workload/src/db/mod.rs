//! Database targets: the MySQL-protocol servers (OceanBase / seekdb, MySQL,
//! MariaDB) the coordinator probes, loads with workloads and perturbs with
//! database-level faults. Only this module and its users talk SQL; every
//! statement they send is a fixed text with `?` parameters, and the few
//! identifiers that must be spliced into DDL pass [`check_ident`] first.

mod lowat;
pub mod wire;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {target}: cannot connect to {addr}: {reason}")]
    Connect { target: String, addr: String, reason: String },
    #[error("database {target}: {reason}")]
    Query { target: String, reason: String },
    #[error("unknown database {0:?}")]
    UnknownTarget(String),
    /// A request that needs a database, on a coordinator with none.
    #[error("{0}")]
    NoneConfigured(String),
    #[error("{0}")]
    Invalid(String),
}

pub use distdiag_api::database::DialectKind;

/// One database server, as configured under `[[databases]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DbTarget {
    /// Name used by the API and CLI; the probe stores its series as node `db:<name>`.
    pub name: String,
    pub dialect: DialectKind,
    pub host: String,
    pub port: u16,
    #[serde(default = "default_user")]
    pub user: String,
    /// Password; prefer `password_env` so the config holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Schema the workloads use (created on prepare when missing).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// The agent node this server runs on: database faults are labelled with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_node: Option<String>,
}

fn default_user() -> String {
    "root".into()
}
fn default_schema() -> String {
    "distdiag".into()
}

impl DbTarget {
    /// The store node of this target's series.
    pub fn store_node(&self) -> String {
        format!("db:{}", self.name)
    }

    /// Node that labels of faults on this database carry.
    pub fn label_node(&self) -> String {
        self.host_node.clone().unwrap_or_else(|| self.store_node())
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "database name {:?} must be 1..=64 characters of [A-Za-z0-9_.-]",
                self.name
            ));
        }
        check_ident(&self.schema).map_err(|e| format!("database {}: schema: {e}", self.name))?;
        if self.host.is_empty() || self.port == 0 {
            return Err(format!("database {}: host and port are required", self.name));
        }
        if self.password.is_some() && self.password_env.is_some() {
            return Err(format!("database {}: give password or password_env, not both", self.name));
        }
        Ok(())
    }

    fn password_value(&self) -> Option<String> {
        match &self.password_env {
            Some(var) => std::env::var(var).ok(),
            None => self.password.clone(),
        }
    }

    /// Connection options; `with_schema` selects the workload schema.
    pub fn opts(&self, with_schema: bool) -> Opts {
        let mut b = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password_value())
            .prefer_socket(false)
            .tcp_nodelay(true)
            .stmt_cache_size(512);
        if with_schema {
            b = b.db_name(Some(self.schema.clone()));
        }
        Opts::from(b)
    }

    /// A pool of at most `max` connections.
    pub fn pool(&self, with_schema: bool, max: usize) -> Pool {
        let constraints = PoolConstraints::new(0, max.max(1)).unwrap_or_default();
        let opts = OptsBuilder::from_opts(self.opts(with_schema))
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        Pool::new(opts)
    }

    /// One connection, failing within `timeout`.
    pub async fn connect(&self, with_schema: bool, timeout: Duration) -> Result<Conn, DbError> {
        let err = |reason: String| DbError::Connect {
            target: self.name.clone(),
            addr: self.addr(),
            reason,
        };
        match tokio::time::timeout(timeout, Conn::new(self.opts(with_schema))).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(err(e.to_string())),
            Err(_) => Err(err(format!("no answer within {} ms", timeout.as_millis()))),
        }
    }

    /// A session of the lean pipelining client ([`wire`]) on the workload
    /// schema. Its I/O blocks the calling thread (an OLTP worker's own).
    /// When a caching_sha2_password server wants a full login, one
    /// mysql_async login (which can send the password safely) fills the
    /// server's cache and the fast login is tried again.
    pub async fn wire_connect(&self, timeout: Duration) -> Result<wire::Conn, DbError> {
        let err = |e: wire::Error| DbError::Connect {
            target: self.name.clone(),
            addr: self.addr(),
            reason: e.to_string(),
        };
        let (addr, password) = (self.addr(), self.password_value());
        let login = wire::Login {
            addr: &addr,
            user: &self.user,
            password: password.as_deref(),
            database: Some(&self.schema),
            timeout,
        };
        match wire::Conn::connect(&login) {
            Err(wire::Error::FullAuthRequired) => {
                let _ = self.connect(true, timeout).await?.disconnect().await;
                wire::Conn::connect(&login).map_err(err)
            }
            r => r.map_err(err),
        }
    }

    pub fn query_error(&self, e: impl std::fmt::Display) -> DbError {
        DbError::Query { target: self.name.clone(), reason: e.to_string() }
    }
}

const NONE_CONFIGURED: &str = "no database is configured ([[databases]] in the coordinator config)";

/// The target named `name`; without a name, the first one (`only = false`)
/// or the only one (`only = true`, so a request never picks among several).
pub fn find<'a>(
    targets: &'a [DbTarget],
    name: Option<&str>,
    only: bool,
) -> Result<&'a DbTarget, DbError> {
    match (name, targets) {
        (Some(n), _) => {
            targets.iter().find(|t| t.name == n).ok_or_else(|| DbError::UnknownTarget(n.to_owned()))
        }
        (None, []) => Err(DbError::NoneConfigured(NONE_CONFIGURED.into())),
        (None, [first, ..]) if !only || targets.len() == 1 => Ok(first),
        (None, _) => Err(DbError::Invalid(
            "several databases are configured; name one in params.database".into(),
        )),
    }
}

/// Creates the workload schema when missing.
pub async fn ensure_schema(t: &DbTarget) -> Result<(), DbError> {
    check_ident(&t.schema).map_err(DbError::Invalid)?;
    let mut c = t.connect(false, Duration::from_secs(10)).await?;
    c.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{}`", t.schema))
        .await
        .map_err(|e| t.query_error(e))?;
    let _ = c.disconnect().await;
    Ok(())
}

/// Checks an identifier before it is spliced into DDL: 1..=64 characters of
/// `[A-Za-z0-9_]`, not starting with a digit. Everything else is refused, so
/// quoting can never be escaped.
pub fn check_ident(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a plain identifier (1..=64 of [A-Za-z0-9_], not starting with a digit)"
        ))
    }
}

/// A column of a result row as a float, whatever its wire type.
pub fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::NULL => None,
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(d) => Some(*d),
        Value::Bytes(b) => std::str::from_utf8(b).ok().and_then(|s| s.trim().parse().ok()),
        _ => None,
    }
}

/// A column of a result row as text.
pub fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub fn col_f64(r: &Row, i: usize) -> Option<f64> {
    r.as_ref(i).and_then(value_f64)
}

pub fn col_string(r: &Row, i: usize) -> Option<String> {
    r.as_ref(i).and_then(value_string)
}

/// Server error code of a failed statement, if the server sent one.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_or_refused() {
        assert!(check_ident("sbtest1").is_ok());
        assert!(check_ident("_x").is_ok());
        for bad in ["", "1abc", "a`b", "a b", "a;drop", "x-y", &"a".repeat(65), "é"] {
            assert!(check_ident(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_convert() {
        assert_eq!(value_f64(&Value::Bytes(b"12.5".to_vec())), Some(12.5));
        assert_eq!(value_f64(&Value::Bytes(b"ON".to_vec())), None);
        assert_eq!(value_f64(&Value::NULL), None);
        assert_eq!(value_f64(&Value::UInt(7)), Some(7.0));
    }

    #[test]
    fn targets_are_found_by_name_or_default() {
        let t = |n: &str| DbTarget {
            name: n.into(),
            dialect: DialectKind::Mysql,
            host: "h".into(),
            port: 1,
            user: "u".into(),
            password: None,
            password_env: None,
            schema: "s".into(),
            host_node: None,
        };
        let two = [t("a"), t("b")];
        assert_eq!(find(&two, Some("b"), true).unwrap().name, "b");
        assert!(matches!(find(&two, Some("c"), false), Err(DbError::UnknownTarget(_))));
        assert_eq!(find(&two, None, false).unwrap().name, "a");
        assert!(find(&two, None, true).unwrap_err().to_string().contains("several"));
        assert_eq!(find(&two[..1], None, true).unwrap().name, "a");
        assert!(find(&[], None, false).unwrap_err().to_string().contains("no database"));
    }

    #[test]
    fn targets_are_validated() {
        let t = DbTarget {
            name: "m1".into(),
            dialect: DialectKind::Mysql,
            host: "127.0.0.1".into(),
            port: 3306,
            user: "root".into(),
            password: None,
            password_env: None,
            schema: "distdiag".into(),
            host_node: None,
        };
        assert!(t.validate().is_ok());
        assert_eq!(t.store_node(), "db:m1");
        assert!(DbTarget { schema: "x`; drop".into(), ..t.clone() }.validate().is_err());
        assert!(DbTarget { name: "a b".into(), ..t.clone() }.validate().is_err());
        assert!(DbTarget { password: Some("p".into()), password_env: Some("P".into()), ..t }
            .validate()
            .is_err());
    }
}
