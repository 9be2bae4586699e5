//! Remote-write out: every stored row, agents' and database probes' alike,
//! forwarded to Prometheus remote-write receivers (VictoriaMetrics, Mimir,
//! Thanos Receive, Prometheus with `--web.enable-remote-write-receiver`).
//!
//! Rows are handed over after the store took them — after the group
//! commit's flush for agents — by a push into one bounded queue per
//! receiver that never waits: ingest and the agents' acknowledgements do
//! not depend on a receiver. A full queue drops its oldest rows, counted.
//! One task per receiver sends batches of at most `max_samples_per_send`
//! samples, one request at a time (so each series' samples arrive in
//! time order, which Prometheus requires), and retries a batch on a
//! connection error, a 5xx or a 429 (honouring `Retry-After`) with
//! doubling back-off; any other answer drops the batch and counts its
//! samples under the reason `http_<status>`.
//!
//! Protocol 1.0 (`prometheus.WriteRequest`, snappy block format). 2.0 is
//! not sent: neither receiver available to test against here (Debian 12's
//! Prometheus 2.42 and VictoriaMetrics) accepts it.
//!
//! Names follow Prometheus conventions: `disk.read_bytes:sda`, a counter in
//! bytes, becomes `distdiag_disk_read_bytes_total{device="sda"}`; the unit
//! is in the name (`_seconds`, `_bytes`; microseconds are converted to
//! seconds), counters end in `_total`, and every series carries `node`.
//! Beside them, each node's catalog as `distdiag_catalog_info{node,
//! metric, kind, unit} 1`, one series per catalog entry, a sample every
//! 30 s of the node's rows: from it a coordinator without agents of its
//! own finds the nodes and maps the series back (see [`RemoteRead`]).

mod proto;
mod read;

pub use read::{RemoteRead, RemoteReadConfig};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use distdiag_common::catalog::MetricKind;
use distdiag_common::{MetricDesc, Row};
use distdiag_store::SeriesStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

/// One receiver (`[[remote_write]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// The receiver's write URL, e.g. `http://vm:8428/api/v1/write` or
    /// `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Its name in logs and in `/metrics` (default: the URL's host:port).
    pub name: Option<String>,
    /// Labels added to every series (e.g. `cluster = "eu-1"`).
    pub labels: BTreeMap<String, String>,
    /// A file holding a bearer token to send (`Authorization: Bearer`).
    pub bearer_token_file: Option<PathBuf>,
    /// Samples waiting at most; beyond, the oldest rows are dropped. The
    /// default holds a minute of 330 nodes × 200 metrics at 1 Hz (about
    /// 10 bytes a sample).
    pub queue_samples: usize,
    /// Samples in one request at most.
    pub max_samples_per_send: usize,
    /// How long a batch waits to fill before it is sent anyway.
    pub batch_wait_ms: u64,
    /// Timeout of one request.
    pub timeout_ms: u64,
    /// Back-off before the first retry, doubled up to `max_backoff_ms`.
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: String::new(),
            name: None,
            labels: BTreeMap::new(),
            bearer_token_file: None,
            queue_samples: 4_000_000,
            max_samples_per_send: 10_000,
            batch_wait_ms: 1_000,
            timeout_ms: 10_000,
            min_backoff_ms: 100,
            max_backoff_ms: 10_000,
        }
    }
}

/// Labels distdiag sets itself; `labels` may not use them.
const OWN_LABELS: [&str; 8] =
    ["__name__", "node", "cpu", "device", "interface", "metric", "kind", "unit"];

/// The bearer token in `path`, trimmed; `section` names the setting.
fn read_token(section: &str, path: Option<&Path>) -> Result<Option<String>, String> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map(|t| t.trim().to_owned())
            .map_err(|e| format!("{section}.bearer_token_file {}: {e}", p.display()))
    })
    .transpose()
}

/// `url` parses as http(s) with a host; `what` names the setting.
fn check_url(what: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{what} {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{what} {url:?}: not an http(s) URL"));
    }
    Ok(())
}

impl RemoteWriteConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_url("remote_write.url", &self.url)?;
        for name in self.labels.keys() {
            let ok = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if name.is_empty() || !ok || name.starts_with("__") {
                return Err(format!("remote_write.labels: {name:?} is not a label name"));
            }
            if OWN_LABELS.contains(&name.as_str()) {
                return Err(format!("remote_write.labels: {name:?} is set by distdiag"));
            }
        }
        if self.max_samples_per_send == 0 || self.queue_samples < self.max_samples_per_send {
            return Err(format!(
                "remote_write {}: need 1 <= max_samples_per_send <= queue_samples",
                self.url
            ));
        }
        if self.timeout_ms == 0
            || self.min_backoff_ms == 0
            || self.max_backoff_ms < self.min_backoff_ms
        {
            return Err(format!(
                "remote_write {}: timeout_ms and min_backoff_ms must be > 0, max_backoff_ms >= min_backoff_ms",
                self.url
            ));
        }
        Ok(())
    }

    fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            reqwest::Url::parse(&self.url)
                .ok()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                .unwrap_or_else(|| self.url.clone())
        })
    }
}

/// The Prometheus name, the device label and the factor to base units of
/// one catalog entry.
pub fn prometheus_name(desc: &MetricDesc) -> (String, Option<(&'static str, String)>, f64) {
    let (base, device) = match desc.name.split_once(':') {
        Some((b, d)) => (b, Some(d)),
        None => (desc.name.as_str(), None),
    };
    let family = base.split('.').next().unwrap_or(base);
    let mut name = format!("distdiag_{}", base.replace('.', "_"));
    let (unit, scale) = match desc.unit.as_str() {
        "seconds" => (Some("seconds"), 1.0),
        "milliseconds" => (Some("seconds"), 1e-3),
        "microseconds" => (Some("seconds"), 1e-6),
        "bytes" => (Some("bytes"), 1.0),
        "percent" => (Some("percent"), 1.0),
        _ => (None, 1.0),
    };
    if let Some(unit) = unit {
        // `db.sql_time` in microseconds: `_time_seconds`; `proc.rss` in
        // bytes: `_rss_bytes`; a name that says its unit keeps it once.
        if !name.ends_with(&format!("_{unit}")) {
            name = format!("{name}_{unit}");
        }
    }
    if desc.kind == MetricKind::Counter {
        name.push_str("_total");
    }
    let label = device.map(|d| {
        let key = match family {
            "cpu" => "cpu",
            "net" => "interface",
            _ => "device",
        };
        (key, d.to_owned())
    });
    (name, label, scale)
}

/// The series that describes a node's catalog, one per entry:
/// `distdiag_catalog_info{node, metric, kind, unit} 1`, the way
/// `*_info` series carry facts in Prometheus. A coordinator that reads its
/// windows from the TSDB without agents of its own (a standby) learns the
/// nodes and their catalogs from it.
pub const CATALOG_INFO: &str = "distdiag_catalog_info";

/// How often a node's catalog info series get a sample (and at once when
/// its catalog changes). Not counted in the sent-samples figures.
pub const CATALOG_INFO_EVERY_MS: i64 = 30_000;

/// A node's series, one per catalog entry: encoded labels and unit factor,
/// and the catalog info series with the time of their last sample.
struct NodeSeries {
    series: Vec<(Vec<u8>, f64)>,
    info: Vec<Vec<u8>>,
    info_ms: std::sync::atomic::AtomicI64,
}

impl NodeSeries {
    fn new(node: &str, catalog: &[MetricDesc], extra: &BTreeMap<String, String>) -> NodeSeries {
        let encode = |pairs: Vec<(String, String)>| {
            let mut labels: Vec<(String, String)> =
                extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            labels.push(("node".into(), node.to_owned()));
            labels.extend(pairs);
            labels.sort();
            proto::encode_labels(&labels)
        };
        let series = catalog
            .iter()
            .map(|d| {
                let (name, label, scale) = prometheus_name(d);
                let mut pairs = vec![("__name__".to_owned(), name)];
                pairs.extend(label.map(|(k, v)| (k.to_owned(), v)));
                (encode(pairs), scale)
            })
            .collect();
        let info = catalog
            .iter()
            .map(|d| {
                let kind = match d.kind {
                    MetricKind::Counter => "counter",
                    MetricKind::Gauge => "gauge",
                };
                encode(vec![
                    ("__name__".into(), CATALOG_INFO.into()),
                    ("kind".into(), kind.into()),
                    ("metric".into(), d.name.clone()),
                    ("unit".into(), d.unit.clone()),
                ])
            })
            .collect();
        NodeSeries { series, info, info_ms: std::sync::atomic::AtomicI64::new(i64::MIN) }
    }

    /// The times among `rows` (sorted) at which the catalog info series
    /// are due a sample; moves the last one on. Never earlier than the
    /// last: Prometheus refuses a request with an out-of-order sample.
    fn info_due(&self, rows: &[&Row]) -> Vec<i64> {
        let mut last = self.info_ms.load(Ordering::Relaxed);
        let mut due = Vec::new();
        for r in rows {
            if last == i64::MIN || r.ts_ms >= last + CATALOG_INFO_EVERY_MS {
                due.push(r.ts_ms);
                last = r.ts_ms;
            }
        }
        self.info_ms.store(last, Ordering::Relaxed);
        due
    }
}

/// Rows of one node waiting to be sent.
struct Item {
    node: String,
    series: Arc<NodeSeries>,
    /// Shared by every receiver's queue.
    rows: Arc<Vec<Row>>,
    samples: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Arc<Item>>,
    samples: usize,
}

/// What one receiver did, for `/metrics`.
#[derive(Default)]
struct Stats {
    sent_samples: AtomicU64,
    sent_requests: AtomicU64,
    failed_requests: AtomicU64,
    /// Samples dropped, by reason (`queue_full`, `http_400`, `shutdown`, ...).
    dropped: Mutex<BTreeMap<String, u64>>,
}

struct Endpoint {
    name: String,
    cfg: RemoteWriteConfig,
    token: Option<String>,
    queue: Mutex<Queue>,
    notify: Notify,
    stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Endpoint {
    fn drop_samples(&self, reason: &str, n: u64) {
        if n > 0 {
            *lock(&self.stats.dropped).entry(reason.to_owned()).or_default() += n;
        }
    }

    fn push(&self, item: Arc<Item>) {
        let mut dropped = 0;
        {
            let mut q = lock(&self.queue);
            if item.samples > self.cfg.queue_samples {
                dropped = item.samples;
            } else {
                while q.samples + item.samples > self.cfg.queue_samples {
                    let Some(old) = q.items.pop_front() else { break };
                    q.samples -= old.samples;
                    dropped += old.samples;
                }
                q.samples += item.samples;
                q.items.push_back(item);
            }
        }
        self.drop_samples("queue_full", dropped as u64);
        self.notify.notify_one();
    }

    fn queued(&self) -> usize {
        lock(&self.queue).samples
    }

    /// Empties the queue; how many samples it held.
    fn take_all(&self) -> usize {
        let mut q = lock(&self.queue);
        q.items.clear();
        std::mem::take(&mut q.samples)
    }

    /// Items worth up to `max_samples_per_send` samples (at least one item).
    fn take(&self) -> Vec<Arc<Item>> {
        let mut q = lock(&self.queue);
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(front) = q.items.front() {
            if !out.is_empty() && n + front.samples > self.cfg.max_samples_per_send {
                break;
            }
            n += front.samples;
            q.samples -= front.samples;
            out.extend(q.items.pop_front());
        }
        out
    }
}

/// An encoded, compressed request and how many samples it carries.
fn encode(items: &[Arc<Item>]) -> (Vec<u8>, usize) {
    // A node's rows together, in time order: one TimeSeries per series.
    let mut by_node: BTreeMap<&str, (Arc<NodeSeries>, Vec<&Row>)> = BTreeMap::new();
    for it in items {
        let e = by_node.entry(&it.node).or_insert_with(|| (it.series.clone(), Vec::new()));
        // A catalog that grew meanwhile: the newest labels cover every row.
        if it.series.series.len() > e.0.series.len() {
            e.0 = it.series.clone();
        }
        e.1.extend(it.rows.iter());
    }
    let mut out = Vec::new();
    let mut count = 0;
    let mut samples = Vec::new();
    for (series, mut rows) in by_node.into_values() {
        rows.sort_by_key(|r| r.ts_ms);
        rows.dedup_by_key(|r| r.ts_ms);
        for (col, (labels, scale)) in series.series.iter().enumerate() {
            samples.clear();
            samples.extend(rows.iter().filter_map(|r| {
                let v = *r.values.get(col)?;
                v.is_finite().then_some((r.ts_ms, v * scale))
            }));
            if !samples.is_empty() {
                count += samples.len();
                proto::push_series(&mut out, labels, &samples);
            }
        }
        let due: Vec<(i64, f64)> = series.info_due(&rows).into_iter().map(|t| (t, 1.0)).collect();
        if !due.is_empty() {
            for labels in &series.info {
                proto::push_series(&mut out, labels, &due);
            }
        }
    }
    let compressed = snap::raw::Encoder::new().compress_vec(&out).unwrap_or_default();
    (compressed, count)
}

/// How a send ended.
enum Sent {
    Done,
    /// Retry after this long (a 429's `Retry-After`), or the back-off.
    Retry(Option<Duration>, String),
    Rejected(u16, String),
}

async fn post(ep: &Endpoint, client: &reqwest::Client, body: &[u8]) -> Sent {
    let mut req = client
        .post(&ep.cfg.url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", concat!("distdiag/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_millis(ep.cfg.timeout_ms))
        .body(body.to_vec());
    if let Some(t) = &ep.token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Err(e) => Sent::Retry(None, e.to_string()),
        Ok(resp) if resp.status().is_success() => Sent::Done,
        Ok(resp) => {
            let status = resp.status();
            let after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text: String = resp.text().await.unwrap_or_default().chars().take(300).collect();
            let why = format!("{status}: {}", text.trim());
            if status.as_u16() == 429 || status.is_server_error() {
                Sent::Retry(if status.as_u16() == 429 { after } else { None }, why)
            } else {
                Sent::Rejected(status.as_u16(), why)
            }
        }
    }
}

/// The receivers and the per-node series they share.
pub struct RemoteWrite {
    store: Arc<dyn SeriesStore>,
    endpoints: Vec<Arc<Endpoint>>,
    /// Per node and per receiver (their extra labels differ).
    nodes: Mutex<HashMap<String, Vec<Arc<NodeSeries>>>>,
}

impl RemoteWrite {
    /// None without receivers. Reads the token files now, so that a
    /// missing one stops the start with a clear error.
    pub fn new(
        store: Arc<dyn SeriesStore>,
        cfgs: &[RemoteWriteConfig],
    ) -> Result<Option<Arc<RemoteWrite>>, String> {
        if cfgs.is_empty() {
            return Ok(None);
        }
        let mut endpoints = Vec::new();
        for cfg in cfgs {
            cfg.validate()?;
            let token = read_token("remote_write", cfg.bearer_token_file.as_deref())?;
            endpoints.push(Arc::new(Endpoint {
                name: cfg.display_name(),
                cfg: cfg.clone(),
                token,
                queue: Mutex::new(Queue::default()),
                notify: Notify::new(),
                stats: Stats::default(),
            }));
        }
        Ok(Some(Arc::new(RemoteWrite { store, endpoints, nodes: Mutex::new(HashMap::new()) })))
    }

    /// Queues rows the store took; never waits.
    pub fn forward(&self, node: &str, rows: &[Row]) {
        let width = rows.iter().map(|r| r.values.len()).max().unwrap_or(0);
        if width == 0 {
            return;
        }
        let series = {
            let mut nodes = lock(&self.nodes);
            let known = nodes.get(node).filter(|s| s[0].series.len() >= width).cloned();
            match known {
                Some(s) => s,
                None => {
                    // A new node or a catalog that grew: the store knows it.
                    let Some(rec) = self.store.node(node) else { return };
                    let s: Vec<Arc<NodeSeries>> = self
                        .endpoints
                        .iter()
                        .map(|e| Arc::new(NodeSeries::new(node, &rec.catalog, &e.cfg.labels)))
                        .collect();
                    nodes.insert(node.to_owned(), s.clone());
                    s
                }
            }
        };
        let samples = rows.iter().flat_map(|r| &r.values).filter(|v| v.is_finite()).count();
        let rows = Arc::new(rows.to_vec());
        for (ep, series) in self.endpoints.iter().zip(series) {
            ep.push(Arc::new(Item { node: node.to_owned(), series, rows: rows.clone(), samples }));
        }
    }

    /// Forgets a node's series (its catalog was replaced or grew).
    pub fn forget(&self, node: &str) {
        lock(&self.nodes).remove(node);
    }

    /// One sending task per receiver; each ends when `stop` turns true.
    pub fn spawn(&self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        self.endpoints
            .iter()
            .map(|ep| tokio::spawn(send_loop(ep.clone(), client.clone(), stop.clone())))
            .collect()
    }

    /// Samples the receivers accepted, all together.
    pub fn sent_samples(&self) -> u64 {
        self.endpoints.iter().map(|e| e.stats.sent_samples.load(Ordering::Relaxed)).sum()
    }

    /// `distdiag_remote_write_*` in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let each = |out: &mut String, name: &str, v: &dyn Fn(&Endpoint) -> u64| {
            for ep in &self.endpoints {
                let _ = writeln!(out, "{name}{{endpoint=\"{}\"}} {}", escape(&ep.name), v(ep));
            }
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            out,
            "distdiag_remote_write_sent_samples_total",
            "counter",
            "Samples of stored series a receiver accepted (the catalog info series not counted).",
        );
        each(out, "distdiag_remote_write_sent_samples_total", &|e| load(&e.stats.sent_samples));
        family(
            out,
            "distdiag_remote_write_requests_total",
            "counter",
            "Requests a receiver accepted.",
        );
        each(out, "distdiag_remote_write_requests_total", &|e| load(&e.stats.sent_requests));
        family(
            out,
            "distdiag_remote_write_failed_requests_total",
            "counter",
            "Requests that failed and were retried (connection error, 5xx, 429).",
        );
        each(out, "distdiag_remote_write_failed_requests_total", &|e| {
            load(&e.stats.failed_requests)
        });
        family(out, "distdiag_remote_write_queued_samples", "gauge", "Samples waiting to be sent.");
        each(out, "distdiag_remote_write_queued_samples", &|e| e.queued() as u64);
        family(
            out,
            "distdiag_remote_write_dropped_samples_total",
            "counter",
            "Samples given up, by reason: queue_full, http_<status> (the receiver refused them), shutdown.",
        );
        for ep in &self.endpoints {
            for (reason, n) in lock(&ep.stats.dropped).iter() {
                let _ = writeln!(
                    out,
                    "distdiag_remote_write_dropped_samples_total{{endpoint=\"{}\",reason=\"{reason}\"}} {n}",
                    escape(&ep.name)
                );
            }
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn send_loop(ep: Arc<Endpoint>, client: reqwest::Client, mut stop: watch::Receiver<bool>) {
    info!(endpoint = %ep.name, url = %ep.cfg.url, "remote write on");
    let wait = Duration::from_millis(ep.cfg.batch_wait_ms);
    'outer: loop {
        if *stop.borrow() {
            break;
        }
        if ep.queued() == 0 {
            tokio::select! {
                _ = ep.notify.notified() => {}
                _ = stop.changed() => break,
            }
            continue;
        }
        // A partial batch waits a little for company.
        if ep.queued() < ep.cfg.max_samples_per_send {
            let deadline = tokio::time::Instant::now() + wait;
            while ep.queued() < ep.cfg.max_samples_per_send {
                tokio::select! {
                    _ = ep.notify.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed() => break 'outer,
                }
            }
        }
        let items = ep.take();
        if items.is_empty() {
            continue;
        }
        let (body, samples) = encode(&items);
        let mut backoff = Duration::from_millis(ep.cfg.min_backoff_ms);
        let mut logged = false;
        loop {
            match post(&ep, &client, &body).await {
                Sent::Done => {
                    ep.stats.sent_samples.fetch_add(samples as u64, Ordering::Relaxed);
                    ep.stats.sent_requests.fetch_add(1, Ordering::Relaxed);
                    if logged {
                        info!(endpoint = %ep.name, "remote write receiver back");
                    }
                    break;
                }
                Sent::Rejected(status, why) => {
                    warn!(endpoint = %ep.name, samples, %why, "remote write refused; samples dropped");
                    ep.drop_samples(&format!("http_{status}"), samples as u64);
                    break;
                }
                Sent::Retry(after, why) => {
                    ep.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                    if !logged {
                        warn!(endpoint = %ep.name, %why, "remote write failed; retrying with back-off");
                        logged = true;
                    }
                    let pause = after.unwrap_or(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(ep.cfg.max_backoff_ms));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {
                            ep.drop_samples("shutdown", samples as u64);
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    let left = ep.take_all();
    ep.drop_samples("shutdown", left as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let n = |d: MetricDesc| {
            let (name, label, scale) = prometheus_name(&d);
            (name, label.map(|(k, v)| format!("{k}={v}")), scale)
        };
        assert_eq!(
            n(MetricDesc::counter("disk.read_bytes:sda", "bytes")),
            ("distdiag_disk_read_bytes_total".into(), Some("device=sda".into()), 1.0)
        );
        assert_eq!(
            n(MetricDesc::counter("cpu.user:cpu3", "seconds")),
            ("distdiag_cpu_user_seconds_total".into(), Some("cpu=cpu3".into()), 1.0)
        );
        assert_eq!(
            n(MetricDesc::counter("net.rx_bytes:eth0", "bytes")),
            ("distdiag_net_rx_bytes_total".into(), Some("interface=eth0".into()), 1.0)
        );
        assert_eq!(
            n(MetricDesc::gauge("mem.available", "bytes")),
            ("distdiag_mem_available_bytes".into(), None, 1.0)
        );
        assert_eq!(
            n(MetricDesc::counter("db.sql_time", "microseconds")),
            ("distdiag_db_sql_time_seconds_total".into(), None, 1e-6)
        );
        assert_eq!(
            n(MetricDesc::gauge("load.runnable", "tasks")),
            ("distdiag_load_runnable".into(), None, 1.0)
        );
        assert_eq!(
            n(MetricDesc::counter("tcp.retrans_segs", "count")),
            ("distdiag_tcp_retrans_segs_total".into(), None, 1.0)
        );
    }

    fn endpoint(queue: usize, per_send: usize) -> Endpoint {
        Endpoint {
            name: "t".into(),
            cfg: RemoteWriteConfig {
                url: "http://127.0.0.1:1/api/v1/write".into(),
                queue_samples: queue,
                max_samples_per_send: per_send,
                ..RemoteWriteConfig::default()
            },
            token: None,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            stats: Stats::default(),
        }
    }

    fn item(node: &str, series: &Arc<NodeSeries>, rows: Vec<Row>) -> Arc<Item> {
        let samples = rows.iter().flat_map(|r| &r.values).filter(|v| v.is_finite()).count();
        Arc::new(Item { node: node.into(), series: series.clone(), rows: Arc::new(rows), samples })
    }

    #[test]
    fn a_full_queue_drops_its_oldest_rows_and_counts_them() {
        let ep = endpoint(10, 4);
        let cat = [MetricDesc::gauge("a", "count"), MetricDesc::gauge("b", "count")];
        let s = Arc::new(NodeSeries::new("n", &cat, &BTreeMap::new()));
        for t in 0..7 {
            ep.push(item("n", &s, vec![Row { ts_ms: t, values: vec![1.0, 2.0] }]));
        }
        // 7 rows of 2 samples into room for 10: the two oldest go.
        assert_eq!(ep.queued(), 10);
        assert_eq!(lock(&ep.stats.dropped).get("queue_full"), Some(&4));
        let first = ep.take();
        assert_eq!(first.iter().map(|i| i.rows[0].ts_ms).collect::<Vec<_>>(), vec![2, 3]);
        // Bigger than the whole queue: dropped at once.
        ep.push(item("n", &s, vec![Row { ts_ms: 9, values: vec![1.0; 2] }; 6]));
        assert_eq!(lock(&ep.stats.dropped).get("queue_full"), Some(&16));
    }

    #[test]
    fn a_request_holds_each_series_once_in_time_order_without_missing_values() {
        let cat =
            [MetricDesc::counter("disk.reads:sda", "ops"), MetricDesc::gauge("db.up", "bool")];
        let extra = BTreeMap::from([("cluster".to_string(), "eu".to_string())]);
        let s = Arc::new(NodeSeries::new("n1", &cat, &extra));
        let items = vec![
            item("n1", &s, vec![Row { ts_ms: 2000, values: vec![5.0, f64::NAN] }]),
            item("n1", &s, vec![Row { ts_ms: 1000, values: vec![4.0, 1.0] }]),
            item("n1", &s, vec![Row { ts_ms: 1000, values: vec![4.0, 1.0] }]),
        ];
        let (body, n) = encode(&items);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let series = proto::decode::write_request(&raw);
        assert_eq!(n, 3);
        let l = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        assert_eq!(
            series,
            vec![
                (
                    l(&[
                        ("__name__", "distdiag_disk_reads_total"),
                        ("cluster", "eu"),
                        ("device", "sda"),
                        ("node", "n1")
                    ]),
                    vec![(1000, 4.0), (2000, 5.0)]
                ),
                (
                    l(&[("__name__", "distdiag_db_up"), ("cluster", "eu"), ("node", "n1")]),
                    vec![(1000, 1.0)]
                ),
                // The catalog, at the first row.
                (
                    l(&[
                        ("__name__", CATALOG_INFO),
                        ("cluster", "eu"),
                        ("kind", "counter"),
                        ("metric", "disk.reads:sda"),
                        ("node", "n1"),
                        ("unit", "ops")
                    ]),
                    vec![(1000, 1.0)]
                ),
                (
                    l(&[
                        ("__name__", CATALOG_INFO),
                        ("cluster", "eu"),
                        ("kind", "gauge"),
                        ("metric", "db.up"),
                        ("node", "n1"),
                        ("unit", "bool")
                    ]),
                    vec![(1000, 1.0)]
                ),
            ]
        );
        // The next batch: the catalog again once 30 s have passed, not before.
        let rows = (0..40).map(|i| Row { ts_ms: 3000 + i * 1000, values: vec![1.0, 1.0] });
        let (body, n) = encode(&[item("n1", &s, rows.collect())]);
        assert_eq!(n, 80, "the info samples are not counted");
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let info: Vec<_> = proto::decode::write_request(&raw)
            .into_iter()
            .filter(|(labels, _)| labels[0].1 == CATALOG_INFO)
            .map(|(_, samples)| samples)
            .collect();
        assert_eq!(info, vec![vec![(31_000, 1.0)]; 2]);
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        let c = |f: &dyn Fn(&mut RemoteWriteConfig)| {
            let mut c = RemoteWriteConfig {
                url: "http://127.0.0.1:8428/api/v1/write".into(),
                ..RemoteWriteConfig::default()
            };
            f(&mut c);
            c.validate()
        };
        assert!(c(&|_| {}).is_ok());
        assert!(c(&|c| c.url = "vm:8428".into()).unwrap_err().contains("url"));
        assert!(c(&|c| c.url = "ftp://x/".into()).unwrap_err().contains("http"));
        let label = |k: &str| {
            let k = k.to_owned();
            c(&move |c| {
                c.labels.insert(k.clone(), "x".into());
            })
        };
        assert!(label("cluster").is_ok());
        assert!(label("node").unwrap_err().contains("set by distdiag"));
        assert!(label("metric").unwrap_err().contains("set by distdiag"), "the catalog info's");
        assert!(label("9x").unwrap_err().contains("not a label name"));
        assert!(label("__x").unwrap_err().contains("not a label name"));
        assert!(c(&|c| c.max_samples_per_send = 0).is_err());
        assert!(c(&|c| c.queue_samples = 10).is_err());
        assert!(c(&|c| c.max_backoff_ms = 1).is_err());
    }
}
