//! Collectors: one file per source, each a pure parser plus a thin reader.
//!
//! Every read goes through [`Roots`], so tests run the collectors against
//! fixture trees instead of the live host. Values go into a [`Sink`], which
//! keeps the agent's append-only metric catalog and the row being built.
//! Adding a collector is one file plus one line in [`registry`].

mod cgroup;
mod cpu;
mod disk;
mod fd;
mod load;
mod memory;
mod network;
mod process;
mod psi;
mod tcp;
mod vmstat;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use distdiag_common::catalog::{validate_metric_name, MAX_CATALOG_LEN};
use distdiag_common::{MetricDesc, MetricKind, Row};
use serde::{Deserialize, Serialize};

pub use cgroup::detect_version as detect_cgroup_version;
pub use tcp::TcpStates;

/// Where the host's pseudo-filesystems are mounted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub cgroup: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            cgroup: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// What the collectors are asked to look at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    pub procfs_root: PathBuf,
    pub sysfs_root: PathBuf,
    pub cgroup_root: PathBuf,
    /// Process names (as in /proc/PID/comm) of the database server.
    pub process_names: Vec<String>,
    /// A pid file naming the database server; takes precedence over names.
    pub process_pid_file: Option<PathBuf>,
    /// The database's cgroup, relative to the cgroup root (e.g.
    /// `system.slice/mariadb.service`); the cgroup collector is off without it.
    pub cgroup_path: Option<String>,
    /// Count TCP sockets per state: `netlink` (sock_diag, falls back to
    /// procfs), `procfs` (/proc/net/tcp{,6}, slow on large socket tables) or `off`.
    pub tcp_states: tcp::TcpStates,
    /// Count every TCP state once in this many collections; the rows in
    /// between count listening sockets only (a full count walks the kernel's
    /// socket hash, see the tcp collector). 1 = every collection.
    pub tcp_states_every: u32,
    /// Block devices whose name starts with one of these are skipped.
    pub disk_exclude_prefixes: Vec<String>,
    /// Network interfaces whose name starts with one of these are skipped.
    pub net_exclude_prefixes: Vec<String>,
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            procfs_root: PathBuf::from("/proc"),
            sysfs_root: PathBuf::from("/sys"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            process_names: ["observer", "seekdb", "mariadbd", "mysqld"].map(String::from).to_vec(),
            process_pid_file: None,
            cgroup_path: None,
            tcp_states: tcp::TcpStates::Netlink,
            tcp_states_every: 10,
            disk_exclude_prefixes: ["loop", "ram", "fd", "sr"].map(String::from).to_vec(),
            net_exclude_prefixes: Vec::new(),
        }
    }
}

impl CollectConfig {
    pub fn roots(&self) -> Roots {
        Roots {
            proc: self.procfs_root.clone(),
            sys: self.sysfs_root.clone(),
            cgroup: self.cgroup_root.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
}

impl CollectError {
    pub(crate) fn parse(path: &Path, detail: impl Into<String>) -> Self {
        CollectError::Parse { path: path.to_owned(), detail: detail.into() }
    }
}

/// Reads a file under a root.
pub(crate) fn read(root: &Path, rel: &str) -> Result<String, CollectError> {
    let path = root.join(rel);
    std::fs::read_to_string(&path).map_err(|error| CollectError::Io { path, error })
}

/// Parses a whitespace field as an unsigned counter.
pub(crate) fn num(s: &str) -> Option<f64> {
    s.parse::<u64>().ok().map(|v| v as f64)
}

/// Kernel clock ticks per second for /proc times.
pub(crate) fn user_hz() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// The append-only catalog and the row being built.
#[derive(Debug, Default)]
pub struct Sink {
    catalog: Vec<MetricDesc>,
    index: HashMap<String, usize>,
    values: Vec<f64>,
    refused: Vec<String>,
}

impl Sink {
    /// Starts from a catalog persisted by an earlier run (indices stay stable).
    pub fn with_catalog(catalog: Vec<MetricDesc>) -> Self {
        let index = catalog.iter().enumerate().map(|(i, m)| (m.name.clone(), i)).collect();
        let values = vec![f64::NAN; catalog.len()];
        Sink { catalog, index, values, refused: Vec::new() }
    }

    pub fn catalog(&self) -> &[MetricDesc] {
        &self.catalog
    }

    /// Names refused since the last call (invalid, or the catalog is full).
    pub fn take_refused(&mut self) -> Vec<String> {
        std::mem::take(&mut self.refused)
    }

    /// Clears values before a collection.
    pub fn begin(&mut self) {
        self.values.iter_mut().for_each(|v| *v = f64::NAN);
    }

    pub fn gauge(&mut self, name: &str, unit: &str, v: f64) {
        self.put(name, MetricKind::Gauge, unit, v);
    }

    pub fn counter(&mut self, name: &str, unit: &str, v: f64) {
        self.put(name, MetricKind::Counter, unit, v);
    }

    fn put(&mut self, name: &str, kind: MetricKind, unit: &str, v: f64) {
        let idx = match self.index.get(name) {
            Some(&i) => i,
            None => {
                if self.catalog.len() >= MAX_CATALOG_LEN || validate_metric_name(name).is_err() {
                    if self.refused.len() < 64 {
                        self.refused.push(name.to_owned());
                    }
                    return;
                }
                self.catalog.push(MetricDesc {
                    name: name.to_owned(),
                    kind,
                    unit: unit.to_owned(),
                });
                self.index.insert(name.to_owned(), self.catalog.len() - 1);
                self.values.push(f64::NAN);
                self.catalog.len() - 1
            }
        };
        self.values[idx] = v;
    }

    /// The row collected since [`Sink::begin`]; trailing missing values are cut.
    pub fn row(&self, ts_ms: i64) -> Row {
        let end = self.values.iter().rposition(|v| !v.is_nan()).map_or(0, |i| i + 1);
        Row { ts_ms, values: self.values[..end].to_vec() }
    }

    /// Value of a metric in the current row (for tests and `collect-once`).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.index.get(name).map(|&i| self.values[i]).filter(|v| !v.is_nan())
    }
}

/// One source of metrics.
pub trait Collector: Send {
    fn name(&self) -> &'static str;
    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError>;
}

/// Every collector, one line each.
fn registry(cfg: &CollectConfig) -> Vec<Box<dyn Collector>> {
    let mut v: Vec<Box<dyn Collector>> = vec![
        Box::new(cpu::Cpu),
        Box::new(load::Load),
        Box::new(memory::Memory),
        Box::new(vmstat::Vmstat),
        Box::new(disk::Disk::new(cfg.disk_exclude_prefixes.clone())),
        Box::new(network::Network::new(cfg.net_exclude_prefixes.clone())),
        Box::new(tcp::Tcp::new(cfg.tcp_states, cfg.tcp_states_every)),
        Box::new(fd::Fd),
        Box::new(psi::Psi),
        Box::new(process::Process::new(cfg.process_names.clone(), cfg.process_pid_file.clone())),
    ];
    if let Some(path) = &cfg.cgroup_path {
        v.push(Box::new(cgroup::Cgroup::new(path.clone())));
    }
    v
}

/// Runs and times every collector.
pub struct Collectors {
    roots: Roots,
    list: Vec<(Box<dyn Collector>, Stats)>,
}

/// Run statistics of one collector.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub runs: u64,
    pub failures: u64,
    /// Time spent, in nanoseconds. Summed as integers and reported as
    /// `nanos / 1e9`, the series is a decimal of 9 places that the store
    /// packs as integers; summed as f64 seconds it had a float's full
    /// mantissa, and these 10 counters took 42 % of a host's stored bytes.
    pub nanos: u64,
}

impl Stats {
    pub fn seconds(&self) -> f64 {
        self.nanos as f64 / 1e9
    }
}

impl Collectors {
    pub fn new(cfg: &CollectConfig) -> Self {
        Collectors {
            roots: cfg.roots(),
            list: registry(cfg).into_iter().map(|c| (c, Stats::default())).collect(),
        }
    }

    /// Runs all collectors into `sink`. A failing collector is counted and
    /// logged; the others still run. Each collector's own duration and failure
    /// count are part of the row (`agent.collector_seconds:NAME`, ...).
    pub fn collect(&mut self, sink: &mut Sink) {
        sink.begin();
        for (c, stats) in &mut self.list {
            let started = Instant::now();
            let res = c.collect(&self.roots, sink);
            stats.runs += 1;
            stats.nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if let Err(error) = res {
                stats.failures += 1;
                if stats.failures.is_power_of_two() {
                    tracing::warn!(collector = c.name(), %error, failures = stats.failures, "collect failed");
                }
            }
            sink.counter(
                &format!("agent.collector_seconds:{}", c.name()),
                "seconds",
                stats.seconds(),
            );
            sink.counter(
                &format!("agent.collector_failures:{}", c.name()),
                "count",
                stats.failures as f64,
            );
        }
    }

    pub fn stats(&self) -> Vec<(&'static str, Stats)> {
        self.list.iter().map(|(c, s)| (c.name(), *s)).collect()
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use std::path::PathBuf;

    pub(crate) fn dir() -> PathBuf {
        PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("fixtures/host1")
    }

    pub(crate) fn text(rel: &str) -> String {
        std::fs::read_to_string(dir().join(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
    }

    pub(crate) fn roots() -> super::Roots {
        super::Roots {
            proc: dir().join("proc"),
            sys: dir().join("sys"),
            cgroup: dir().join("cgroup-v1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_keeps_indices_stable_and_cuts_trailing_gaps() {
        let mut s = Sink::with_catalog(vec![MetricDesc::gauge("a", "count")]);
        s.begin();
        s.gauge("b", "count", 2.0);
        s.gauge("a", "count", 1.0);
        assert_eq!(s.row(5).values, vec![1.0, 2.0]);
        s.begin();
        s.gauge("a", "count", 3.0);
        assert_eq!(s.row(6).values, vec![3.0]);
        s.gauge("Not Valid", "count", 1.0);
        assert_eq!(s.take_refused(), vec!["Not Valid".to_string()]);
        assert_eq!(s.catalog().len(), 2);
    }

    /// The whole catalog a collection of the fixture host gives — every
    /// metric name with its kind and unit — against the committed list.
    /// Trained models are keyed by metric names: a rename must show up as a
    /// diff here. `DISTDIAG_BLESS=1` rewrites the list after an intended change.
    #[test]
    fn the_catalog_of_the_fixture_host_is_the_committed_one() {
        let cfg = CollectConfig {
            procfs_root: fixture::dir().join("proc"),
            sysfs_root: fixture::dir().join("sys"),
            cgroup_root: fixture::dir().join("cgroup-v1"),
            cgroup_path: Some("system.slice/mariadb.service".into()),
            tcp_states: tcp::TcpStates::Procfs,
            ..CollectConfig::default()
        };
        let mut c = Collectors::new(&cfg);
        let mut sink = Sink::default();
        c.collect(&mut sink);
        // A second collection adds nothing: the catalog is the host's, not the moment's.
        let before = sink.catalog().len();
        c.collect(&mut sink);
        assert_eq!(sink.catalog().len(), before);
        let mut text =
            String::from("# The agent's catalog over agent/fixtures/host1: name kind unit\n");
        for m in sink.catalog() {
            let kind = match m.kind {
                MetricKind::Gauge => "gauge",
                MetricKind::Counter => "counter",
            };
            text.push_str(&format!("{} {kind} {}\n", m.name, m.unit));
        }
        let golden = fixture::dir().join("catalog.txt");
        if std::env::var_os("DISTDIAG_BLESS").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&golden).unwrap_or_default();
        if committed != text {
            let old: std::collections::BTreeSet<&str> = committed.lines().collect();
            let new: std::collections::BTreeSet<&str> = text.lines().collect();
            let gone: Vec<&&str> = old.difference(&new).collect();
            let added: Vec<&&str> = new.difference(&old).collect();
            panic!("the catalog changed (trained models read metrics by name); gone: {gone:?}; new: {added:?}. After an intended change: DISTDIAG_BLESS=1 cargo test -p distdiag-agent the_catalog");
        }
        assert!(sink.catalog().len() > 100, "{}", sink.catalog().len());
        for name in ["cpu.user", "mem.available", "proc.rss", "cg.cpu_usage", "tcp.retrans_segs"] {
            assert!(text.contains(&format!("\n{name} ")), "{name} is missing");
        }
    }

    #[test]
    fn a_failing_collector_is_counted_and_the_rest_still_run() {
        let mut cfg = CollectConfig {
            procfs_root: fixture::dir().join("proc"),
            sysfs_root: fixture::dir().join("sys"),
            ..CollectConfig::default()
        };
        cfg.cgroup_path = Some("does/not/exist".into());
        cfg.cgroup_root = fixture::dir().join("cgroup-v1");
        let mut c = Collectors::new(&cfg);
        let mut sink = Sink::default();
        c.collect(&mut sink);
        assert_eq!(sink.value("agent.collector_failures:cgroup"), Some(1.0));
        assert_eq!(sink.value("agent.collector_failures:cpu"), Some(0.0));
        assert!(sink.value("cpu.user").is_some());
    }
}
