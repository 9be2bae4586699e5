//! Datasets: labelled series of several nodes, cut into the periods of
//! cases. Built from the store (collected normal periods and fault cases),
//! or imported from the export format, which is a directory of CSV files:
//!
//! - `manifest.json`: `{"format": "distdiag-dataset", "version": 1, "step_ms": 1000, "window": {...}}`
//! - `series.csv`: `node,metric,timestamp_ms,value` — one row per finite
//!   sample, counters already per-second rates, devices summed per metric;
//! - `labels.csv`: `case,node,type,start_ms,end_ms` — the faults;
//! - `cases.csv`: `case,scenario,start_ms,end_ms[,group]` — the periods
//!   (normal collections are cases without labels); the optional group
//!   keeps cases together in cross-validation;
//! - `windows.csv` (written, not read): the labelled windows with every
//!   feature, for external tools.
//!
//! The CSV files are read and written by a CSV parser (RFC 4180 quoting);
//! every error names its file and line. Times are Unix ms. The full format,
//! with a worked conversion, is `docs/dataset-format.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use distdiag_common::{MetricDesc, MetricKind};
use serde::{Deserialize, Serialize};

mod frame;

pub use frame::{FaultEvent, Frame, NodeSeries, Period, Truth, WindowConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub step_ms: i64,
    pub window: WindowConfig,
}

/// A case's period with its scenario.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CasePeriod {
    pub case: String,
    pub scenario: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Cases of one group (a run, a recording, a service) stay together
    /// when cases are dealt into cross-validation folds (`cases.csv`'s
    /// optional fifth column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A CSV field, quoted when it has to be (RFC 4180).
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Series per node and metric, as `(timestamp_ms, value)` on the step grid.
pub type SeriesMap = BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dataset {
    pub manifest: Manifest,
    /// node → metric → `[timestamp_ms, value]` points on the step grid.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, Vec<Vec<f64>>>>)]
    pub series: SeriesMap,
    pub labels: Vec<FaultEvent>,
    pub cases: Vec<CasePeriod>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {error}")]
    Io { path: String, error: String },
}

fn invalid(m: impl Into<String>) -> DatasetError {
    DatasetError::Invalid(m.into())
}

/// The records of a CSV file after its header, each with its line number.
/// The header must be `want`, of which the last `optional` columns may be
/// left out (then every record has the header's width).
fn csv_rows(
    file: &str,
    text: &str,
    want: &[&str],
    optional: usize,
) -> Result<Vec<(u64, Vec<String>)>, DatasetError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| invalid(format!("{file}:1: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let ok = (want.len() - optional..=want.len())
        .any(|n| header.len() == n && header.iter().zip(want).all(|(a, b)| a == b));
    if !ok {
        return Err(invalid(format!(
            "{file}:1: the header must be {:?} (the last {optional} optional), not {:?}",
            want.join(","),
            header.join(",")
        )));
    }
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            match e.kind() {
                csv::ErrorKind::UnequalLengths { len, expected_len, .. } => {
                    invalid(format!("{file}:{line}: {len} fields, want {expected_len}"))
                }
                _ => invalid(format!("{file}:{line}: {e}")),
            }
        })?;
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        out.push((line, rec.iter().map(str::to_owned).collect()));
    }
    Ok(out)
}

fn int(file: &str, line: u64, what: &str, s: &str) -> Result<i64, DatasetError> {
    s.parse::<i64>().map_err(|_| invalid(format!("{file}:{line}: {what} {s:?} is not an integer")))
}

/// The metric a catalog name aggregates into: labels (`:sda`) dropped.
pub fn base_metric(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// One node's stored rows as grid series: counters become per-second rates
/// (resets give a gap), each row lands on the nearest grid slot, two rows
/// of one metric on the same slot (a late sample, then a prompt one) give
/// their mean, and metrics of several devices are summed (percent gauges
/// take the largest).
pub fn grid_series(
    catalog: &[MetricDesc],
    rows: &[(i64, Vec<f64>)],
    step_ms: i64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    // Sorted vectors, not maps per slot: the coordinator grids every node's
    // window and reference at every ranking (once a second), and maps made
    // this function and their allocations a fifth of its CPU time there.
    let mut per: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    // One device's (slot, value) in row order, then its mean per slot.
    let mut own: Vec<(i64, f64)> = Vec::with_capacity(rows.len());
    let mut means: Vec<(i64, f64)> = Vec::with_capacity(rows.len());
    for (j, desc) in catalog.iter().enumerate() {
        let max_not_sum = desc.unit == "percent";
        own.clear();
        device_points(desc, j, rows, step_ms, &mut own);
        // Rows come in time order; a stable sort keeps a slot's rows in it.
        if !own.is_sorted_by_key(|p| p.0) {
            own.sort_by_key(|p| p.0);
        }
        means.clear();
        for same in own.chunk_by(|a, b| a.0 == b.0) {
            let sum = same.iter().fold(0.0, |acc, p| acc + p.1);
            means.push((same[0].0, sum / same.len() as f64));
        }
        let slot = per.entry(base_metric(&desc.name)).or_default();
        if slot.is_empty() {
            slot.extend_from_slice(&means);
        } else {
            *slot = merge_slots(slot, &means, max_not_sum);
        }
    }
    per.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Column `j` of `rows` (one device of `desc`) as (grid slot, value) in
/// row order: a counter as its per-second rate since the previous finite
/// row (none after a gap or a reset), a gauge as it is.
fn device_points(
    desc: &MetricDesc,
    j: usize,
    rows: &[(i64, Vec<f64>)],
    step_ms: i64,
    out: &mut Vec<(i64, f64)>,
) {
    let mut prev: Option<(i64, f64)> = None;
    for (ts, vals) in rows {
        let Some(v) = vals.get(j).copied().filter(|v| v.is_finite()) else {
            prev = None;
            continue;
        };
        let value = match desc.kind {
            MetricKind::Gauge => Some(v),
            MetricKind::Counter => {
                let r = prev.and_then(|(pt, pv)| {
                    (ts > &pt && v >= pv).then(|| (v - pv) * 1000.0 / (ts - pt) as f64)
                });
                prev = Some((*ts, v));
                r
            }
        };
        if let Some(x) = value {
            out.push((((*ts as f64 / step_ms as f64).round() as i64) * step_ms, x));
        }
    }
}

/// Two devices' slot-sorted series as one: summed where both have a slot,
/// or the larger of the two with `max_not_sum`.
fn merge_slots(acc: &[(i64, f64)], add: &[(i64, f64)], max_not_sum: bool) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(acc.len().max(add.len()));
    let (mut i, mut k) = (0, 0);
    while i < acc.len() || k < add.len() {
        match (acc.get(i), add.get(k)) {
            (Some(&(ga, xa)), Some(&(gb, xb))) if ga == gb => {
                out.push((ga, if max_not_sum { xa.max(xb) } else { xa + xb }));
                (i, k) = (i + 1, k + 1);
            }
            (Some(&a), Some(&b)) if a.0 < b.0 => {
                out.push(a);
                i += 1;
            }
            (Some(&a), None) => {
                out.push(a);
                i += 1;
            }
            (_, Some(&b)) => {
                out.push(b);
                k += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Series computed from others in every frame, live and from recordings
/// alike (a recording made before one was added gets it too; exports keep
/// the recorded series only). Each is the work the database does per unit
/// of load, which a fault in the database changes and a heavier or lighter
/// workload does not:
///
/// - `db.cache_requests_per_query`: buffer-pool page requests per
///   statement. Every extra index a write maintains adds page requests to
///   it; a smaller buffer pool does not.
/// - `db.write_bytes_per_query`: bytes the storage engine wrote per
///   statement. Extra indexes and a pool too small to hold the dirty pages
///   raise it; a surge of the same statements does not.
/// - `db.cache_miss_share`: page requests that had to read from disk, in
///   [0, 1]. A buffer pool too small for the working set raises it; extra
///   indexes that fit do not.
///
/// A sample where the denominator is below one per second is NaN (no
/// load, no ratio).
///
/// And what the node's cgroup spends besides the database server process
/// (the cgroup's figure less the `proc.*` one of the server): about zero
/// while the server is all the node runs, the stressor's share when a
/// host fault runs beside it, and unmoved when the server itself changes
/// (a smaller cache, an index build), which moves both alike:
///
/// - `cg.cpu_other`: CPU seconds per second, `cg.cpu_usage` less
///   `proc.cpu_user` and `proc.cpu_system`. Under a CPU quota the
///   cgroup's total barely moves when a stressor joins (it was near the
///   quota already); this moves by the stressor's whole share.
/// - `cg.cpu_other_user`, `cg.cpu_other_system`: the same, split as the
///   kernel accounts it (`cg.cpu_user` less `proc.cpu_user`, and so for
///   system time). A CPU stressor spends user time; a disk writer spends
///   system time (its copies into the page cache, its syncs), and reads
///   as a CPU stressor on the total alone.
/// - `cg.mem_anon_other`: bytes, `cg.mem_anon` less `proc.rss` (a
///   constant offset from the server's file-backed pages, which RSS counts
///   and anonymous memory does not).
pub const DERIVED: [&str; 7] = [
    "db.cache_requests_per_query",
    "db.write_bytes_per_query",
    "db.cache_miss_share",
    "cg.cpu_other",
    "cg.cpu_other_user",
    "cg.cpu_other_system",
    "cg.mem_anon_other",
];

/// Adds the [`DERIVED`] series a node's metrics allow.
fn add_derived(metrics: &mut BTreeMap<String, Vec<f64>>) {
    let ratio = |num: &str, den: &str, cap: f64| -> Option<Vec<f64>> {
        let (n, d) = (metrics.get(num)?, metrics.get(den)?);
        Some(
            n.iter()
                .zip(d)
                .map(|(n, d)| {
                    if n.is_finite() && d.is_finite() && *d >= 1.0 {
                        (n / d).clamp(0.0, cap)
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
        )
    };
    // `total` less every one of `parts`, NaN where any is missing.
    let less = |total: &str, parts: &[&str]| -> Option<Vec<f64>> {
        let total = metrics.get(total)?;
        let parts: Vec<&Vec<f64>> = parts.iter().map(|p| metrics.get(*p)).collect::<Option<_>>()?;
        Some(
            total
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    parts.iter().fold(*t, |acc, p| acc - p.get(i).copied().unwrap_or(f64::NAN))
                })
                .collect(),
        )
    };
    let series = [
        ratio("db.cache_requests", "db.queries", f64::MAX),
        ratio("db.io_write_bytes", "db.queries", f64::MAX),
        ratio("db.cache_misses", "db.cache_requests", 1.0),
        less("cg.cpu_usage", &["proc.cpu_user", "proc.cpu_system"]),
        less("cg.cpu_user", &["proc.cpu_user"]),
        less("cg.cpu_system", &["proc.cpu_system"]),
        less("cg.mem_anon", &["proc.rss"]),
    ];
    for (name, v) in DERIVED.iter().zip(series) {
        if let Some(v) = v.filter(|v| v.iter().any(|x| x.is_finite())) {
            metrics.insert((*name).to_string(), v);
        }
    }
}

impl Dataset {
    pub fn new(step_ms: i64, window: WindowConfig) -> Dataset {
        Dataset {
            manifest: Manifest { format: "distdiag-dataset".into(), version: 1, step_ms, window },
            series: SeriesMap::new(),
            labels: Vec::new(),
            cases: Vec::new(),
        }
    }

    /// Checks names, times and references.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let m = &self.manifest;
        if m.format != "distdiag-dataset" || m.version != 1 {
            return Err(invalid(format!(
                "manifest: format {:?} version {} is not distdiag-dataset 1",
                m.format, m.version
            )));
        }
        if m.step_ms != m.window.step_ms {
            return Err(invalid("manifest: step_ms differs from window.step_ms"));
        }
        m.window.validate().map_err(invalid)?;
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 200 && !s.contains(['"', '\n', '\r']);
        for (node, metrics) in &self.series {
            if !name_ok(node) {
                return Err(invalid(format!("bad node name {node:?}")));
            }
            for metric in metrics.keys() {
                if !name_ok(metric) || metric.contains('|') {
                    return Err(invalid(format!("bad metric name {metric:?}")));
                }
            }
        }
        for c in &self.cases {
            if c.group.as_deref().is_some_and(|g| !name_ok(g)) {
                return Err(invalid(format!("case {:?}: bad group name", c.case)));
            }
            if !name_ok(&c.case)
                || !(c.scenario.is_empty() || name_ok(&c.scenario))
                || c.end_ms <= c.start_ms
            {
                return Err(invalid(format!(
                    "bad case {:?}: names without commas, end after start",
                    c.case
                )));
            }
        }
        for l in &self.labels {
            if !name_ok(&l.node) || !name_ok(&l.kind) || l.end_ms <= l.start_ms {
                return Err(invalid(format!(
                    "bad label {} {} {}..{}",
                    l.node, l.kind, l.start_ms, l.end_ms
                )));
            }
            if !self.cases.iter().any(|c| c.case == l.case) {
                return Err(invalid(format!(
                    "label of {} names case {:?}, which cases.csv lacks",
                    l.node, l.case
                )));
            }
        }
        if self.cases.is_empty() {
            return Err(invalid("the dataset has no cases"));
        }
        Ok(())
    }

    /// The grid frame of `[from, to]` over every node with data there.
    pub fn frame(&self, from_ms: i64, to_ms: i64) -> Frame {
        let step = self.manifest.step_ms.max(1);
        let start = from_ms.div_euclid(step) * step;
        let len = ((to_ms - start) / step + 1).max(0) as usize;
        let mut nodes = Vec::new();
        for (node, metrics) in &self.series {
            let mut ns = NodeSeries { node: node.clone(), metrics: BTreeMap::new() };
            for (metric, pts) in metrics {
                let lo = pts.partition_point(|p| p.0 < start);
                let mut v = vec![f64::NAN; len];
                let mut any = false;
                for (t, x) in &pts[lo..] {
                    if *t > to_ms {
                        break;
                    }
                    let i = ((t - start) / step) as usize;
                    if i < len {
                        v[i] = *x;
                        any = true;
                    }
                }
                if any {
                    ns.metrics.insert(metric.clone(), v);
                }
            }
            add_derived(&mut ns.metrics);
            if !ns.metrics.is_empty() {
                nodes.push(ns);
            }
        }
        Frame { start_ms: start, step_ms: step, len, nodes }
    }

    /// Each case's frame, from one reference period before it to its end.
    pub fn period_frames(&self) -> Vec<(Period, Frame)> {
        let w = self.manifest.window;
        self.cases
            .iter()
            .map(|c| {
                (
                    Period { case: c.case.clone(), start_ms: c.start_ms, end_ms: c.end_ms },
                    self.frame(c.start_ms - w.baseline_ms - w.window_ms, c.end_ms),
                )
            })
            .collect()
    }

    /// Fault cases with their root causes. A fault on no node of the
    /// dataset (a cluster-wide workload surge, labelled `cluster`) is a
    /// disturbance, not a root cause a ranking of nodes can name.
    pub fn truths(&self) -> Vec<Truth> {
        self.cases
            .iter()
            .filter_map(|c| {
                let mut causes: Vec<(String, String)> = self
                    .labels
                    .iter()
                    .filter(|l| l.case == c.case && self.series.contains_key(&l.node))
                    .map(|l| (l.node.clone(), l.kind.clone()))
                    .collect();
                causes.sort();
                causes.dedup();
                (!causes.is_empty()).then(|| Truth {
                    case: c.case.clone(),
                    scenario: c.scenario.clone(),
                    causes,
                })
            })
            .collect()
    }

    /// Removes the cases with a fault of type `kind`, and their labels
    /// (e.g. a type whose fault was implemented differently when this was
    /// recorded); returns how many. The series stay: only cases make
    /// windows.
    pub fn drop_cases_with(&mut self, kind: &str) -> usize {
        let gone: std::collections::BTreeSet<String> =
            self.labels.iter().filter(|l| l.kind == kind).map(|l| l.case.clone()).collect();
        self.cases.retain(|c| !gone.contains(&c.case));
        self.labels.retain(|l| !gone.contains(&l.case));
        gone.len()
    }

    /// Writes the export format into `dir` (created if needed).
    pub fn export(&self, dir: &Path) -> Result<(), DatasetError> {
        let q = csv_field;
        let io = |p: &Path, e: std::io::Error| DatasetError::Io {
            path: p.display().to_string(),
            error: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let write = |name: &str, text: String| -> Result<(), DatasetError> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| io(&p, e))
        };
        write(
            "manifest.json",
            serde_json::to_string_pretty(&self.manifest).map_err(|e| invalid(e.to_string()))?
                + "\n",
        )?;
        let mut s = String::from("node,metric,timestamp_ms,value\n");
        for (node, metrics) in &self.series {
            for (metric, pts) in metrics {
                for (t, v) in pts {
                    let _ = writeln!(s, "{},{},{t},{v}", q(node), q(metric));
                }
            }
        }
        write("series.csv", s)?;
        let mut s = String::from("case,node,type,start_ms,end_ms\n");
        for l in &self.labels {
            let _ = writeln!(
                s,
                "{},{},{},{},{}",
                q(&l.case),
                q(&l.node),
                q(&l.kind),
                l.start_ms,
                l.end_ms
            );
        }
        write("labels.csv", s)?;
        let grouped = self.cases.iter().any(|c| c.group.is_some());
        let mut s = String::from(if grouped {
            "case,scenario,start_ms,end_ms,group\n"
        } else {
            "case,scenario,start_ms,end_ms\n"
        });
        for c in &self.cases {
            let _ = write!(s, "{},{},{},{}", q(&c.case), q(&c.scenario), c.start_ms, c.end_ms);
            if grouped {
                let _ = write!(s, ",{}", q(c.group.as_deref().unwrap_or("")));
            }
            s.push('\n');
        }
        write("cases.csv", s)
    }

    /// Adds another recording's cases, labels and series (several
    /// campaigns evaluated as one). Both must use the same windows and
    /// grid, no case id may repeat, and a node's series of the two may not
    /// overlap in time (they would interleave into one).
    pub fn merge(&mut self, other: Dataset) -> Result<(), DatasetError> {
        if other.manifest != self.manifest {
            return Err(invalid(format!(
                "the datasets were built with different windows or steps: {:?} and {:?}",
                self.manifest, other.manifest
            )));
        }
        if let Some(c) = other.cases.iter().find(|c| self.cases.iter().any(|s| s.case == c.case)) {
            return Err(invalid(format!("case {:?} is in both datasets", c.case)));
        }
        let span = |m: &BTreeMap<String, Vec<(i64, f64)>>| {
            let first = m.values().filter_map(|p| p.first()).map(|p| p.0).min();
            let last = m.values().filter_map(|p| p.last()).map(|p| p.0).max();
            first.zip(last)
        };
        for (node, metrics) in &other.series {
            if let (Some((a0, a1)), Some((b0, b1))) =
                (self.series.get(node).and_then(span), span(metrics))
            {
                if a0 <= b1 && b0 <= a1 {
                    return Err(invalid(format!("node {node}: the datasets' series overlap in time ({a0}..{a1} and {b0}..{b1})")));
                }
            }
        }
        for (node, metrics) in other.series {
            let mine = self.series.entry(node).or_default();
            for (metric, pts) in metrics {
                let s = mine.entry(metric).or_default();
                s.extend(pts);
                s.sort_by_key(|p| p.0);
            }
        }
        self.labels.extend(other.labels);
        self.cases.extend(other.cases);
        self.validate()
    }

    /// Reads the export format from `dir` and validates it.
    pub fn import(dir: &Path) -> Result<Dataset, DatasetError> {
        Self::import_checked(dir).map(|(ds, _)| ds)
    }

    /// Reads the export format from `dir`, validates it, and lists what is
    /// usable but doubtful ([`Dataset::findings`]).
    pub fn import_checked(dir: &Path) -> Result<(Dataset, Vec<String>), DatasetError> {
        let io = |p: &Path, e: std::io::Error| DatasetError::Io {
            path: p.display().to_string(),
            error: e.to_string(),
        };
        let read = |name: &str| -> Result<String, DatasetError> {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| io(&p, e))
        };
        // The raw series may come gzip-compressed (series.csv.gz).
        let series = if !dir.join("series.csv").exists() && dir.join("series.csv.gz").exists() {
            let p = dir.join("series.csv.gz");
            let file = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text)
                .map_err(|e| io(&p, e))?;
            text
        } else {
            read("series.csv")?
        };
        Self::from_texts(
            &read("manifest.json")?,
            &series,
            &read("labels.csv")?,
            &read("cases.csv")?,
        )
    }

    /// Parses the export format's four files (their text), validates the
    /// dataset, and lists what is usable but doubtful. Every error names
    /// the file and line. CSV is read by a CSV parser: fields may be quoted.
    pub fn from_texts(
        manifest: &str,
        series: &str,
        labels: &str,
        cases: &str,
    ) -> Result<(Dataset, Vec<String>), DatasetError> {
        let manifest: Manifest =
            serde_json::from_str(manifest).map_err(|e| invalid(format!("manifest.json: {e}")))?;
        let mut ds =
            Dataset { manifest, series: SeriesMap::new(), labels: Vec::new(), cases: Vec::new() };
        for (line, f) in
            csv_rows("series.csv", series, &["node", "metric", "timestamp_ms", "value"], 0)?
        {
            let t = int("series.csv", line, "timestamp_ms", &f[2])?;
            let v: f64 = f[3].parse().map_err(|_| {
                invalid(format!("series.csv:{line}: value {:?} is not a number", f[3]))
            })?;
            if v.is_finite() {
                ds.series
                    .entry(f[0].clone())
                    .or_default()
                    .entry(f[1].clone())
                    .or_default()
                    .push((t, v));
            }
        }
        for metrics in ds.series.values_mut() {
            for pts in metrics.values_mut() {
                pts.sort_by_key(|p| p.0);
                pts.dedup_by_key(|p| p.0);
            }
        }
        let mut label_lines = Vec::new();
        for (line, f) in
            csv_rows("labels.csv", labels, &["case", "node", "type", "start_ms", "end_ms"], 0)?
        {
            ds.labels.push(FaultEvent {
                case: f[0].clone(),
                node: f[1].clone(),
                kind: f[2].clone(),
                start_ms: int("labels.csv", line, "start_ms", &f[3])?,
                end_ms: int("labels.csv", line, "end_ms", &f[4])?,
            });
            label_lines.push(line);
        }
        let mut case_lines = Vec::new();
        for (line, f) in
            csv_rows("cases.csv", cases, &["case", "scenario", "start_ms", "end_ms", "group"], 1)?
        {
            ds.cases.push(CasePeriod {
                case: f[0].clone(),
                scenario: f[1].clone(),
                start_ms: int("cases.csv", line, "start_ms", &f[2])?,
                end_ms: int("cases.csv", line, "end_ms", &f[3])?,
                group: f.get(4).filter(|g| !g.is_empty()).cloned(),
            });
            case_lines.push(line);
        }
        // Each entry's own checks, with its line.
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 200 && !s.contains(['"', '\n', '\r']);
        for (c, line) in ds.cases.iter().zip(&case_lines) {
            if !name_ok(&c.case) || c.end_ms <= c.start_ms {
                return Err(invalid(format!(
                    "cases.csv:{line}: case {:?} needs a name and an end after its start",
                    c.case
                )));
            }
            if let Some(dup) =
                ds.cases.iter().zip(&case_lines).find(|(d, l)| d.case == c.case && *l < line)
            {
                return Err(invalid(format!(
                    "cases.csv:{line}: case {:?} is also on line {}",
                    c.case, dup.1
                )));
            }
        }
        for (l, line) in ds.labels.iter().zip(&label_lines) {
            if l.end_ms <= l.start_ms {
                return Err(invalid(format!("labels.csv:{line}: the label ends before it starts")));
            }
            if !ds.cases.iter().any(|c| c.case == l.case) {
                return Err(invalid(format!(
                    "labels.csv:{line}: case {:?} is not in cases.csv",
                    l.case
                )));
            }
        }
        ds.validate()?;
        let findings = ds.findings();
        Ok((ds, findings))
    }

    /// What a dataset holds that is usable but doubtful: labels on nodes
    /// that have no series (they name no root cause a ranking of nodes can
    /// find), cases that overlap in time (their windows mix), and gaps in
    /// a node's series inside a case (longer than three steps).
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut unknown: BTreeMap<&str, usize> = BTreeMap::new();
        for l in &self.labels {
            if !self.series.contains_key(&l.node) {
                *unknown.entry(l.node.as_str()).or_default() += 1;
            }
        }
        for (node, n) in unknown {
            out.push(format!("{n} label(s) on node {node:?}, which has no series: not a root cause a ranking of nodes can name (e.g. a cluster-wide disturbance)"));
        }
        let mut cases: Vec<&CasePeriod> = self.cases.iter().collect();
        cases.sort_by_key(|c| c.start_ms);
        for w in cases.windows(2) {
            if w[1].start_ms < w[0].end_ms {
                out.push(format!(
                    "cases {:?} and {:?} overlap by {} ms",
                    w[0].case,
                    w[1].case,
                    w[0].end_ms - w[1].start_ms
                ));
            }
        }
        let step = self.manifest.step_ms.max(1);
        for (node, metrics) in &self.series {
            let mut ts: Vec<i64> = metrics.values().flat_map(|p| p.iter().map(|x| x.0)).collect();
            ts.sort_unstable();
            ts.dedup();
            for c in &self.cases {
                let inside: Vec<i64> =
                    ts.iter().copied().filter(|t| *t >= c.start_ms && *t <= c.end_ms).collect();
                let edges = std::iter::once(c.start_ms)
                    .chain(inside.iter().copied())
                    .chain(std::iter::once(c.end_ms));
                let longest =
                    edges.clone().zip(edges.skip(1)).map(|(a, b)| b - a).max().unwrap_or(0);
                if longest > 3 * step {
                    out.push(format!(
                        "node {node:?} has no sample for {} ms in case {:?}",
                        longest, c.case
                    ));
                }
            }
        }
        out
    }
}

/// Small datasets for the tests of this crate and of the crates that read
/// datasets (`features = ["testing"]`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::{CasePeriod, Dataset, FaultEvent, WindowConfig};

    /// Two nodes for 60 s with one CPU series; n2 jumps from about 11 to
    /// 90 at 40 s, labelled `cpu_stress` in case `c1` (20 s .. 59 s).
    pub fn two_node_cpu_case() -> Dataset {
        let mut d = Dataset::new(
            1000,
            WindowConfig { window_ms: 5000, stride_ms: 5000, step_ms: 1000, baseline_ms: 10_000 },
        );
        for node in ["n1", "n2"] {
            let pts: Vec<(i64, f64)> = (0..60)
                .map(|i| {
                    (i * 1000, if node == "n2" && i >= 40 { 90.0 } else { 10.0 + (i % 3) as f64 })
                })
                .collect();
            d.series.entry(node.into()).or_default().insert("cg.cpu_usage".into(), pts);
        }
        d.cases.push(CasePeriod {
            case: "c1".into(),
            scenario: "A".into(),
            start_ms: 20_000,
            end_ms: 59_000,
            group: None,
        });
        d.labels.push(FaultEvent {
            case: "c1".into(),
            node: "n2".into(),
            kind: "cpu_stress".into(),
            start_ms: 40_000,
            end_ms: 60_000,
        });
        d
    }

    /// The same recording `by` ms later, its one case renamed `id`.
    pub fn shifted(d: &Dataset, by: i64, id: &str) -> Dataset {
        let mut o = d.clone();
        for pts in o.series.values_mut().flat_map(|m| m.values_mut()) {
            for p in pts.iter_mut() {
                p.0 += by;
            }
        }
        for c in &mut o.cases {
            (c.case, c.start_ms, c.end_ms) = (id.into(), c.start_ms + by, c.end_ms + by);
        }
        for l in &mut o.labels {
            (l.case, l.start_ms, l.end_ms) = (id.into(), l.start_ms + by, l.end_ms + by);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_cut_is_the_frame_made_to_that_time() {
        let d = testing::two_node_cpu_case();
        for to in [0, 999, 1000, 20_500, 41_000, 59_000] {
            let mut cut = d.frame(-3000, 70_000);
            cut.truncate(to);
            // NaN is not equal to itself: compare what the frames print.
            assert_eq!(format!("{cut:?}"), format!("{:?}", d.frame(-3000, to)), "to {to}");
        }
    }

    #[test]
    fn counters_become_rates_and_devices_sum() {
        let catalog = vec![
            MetricDesc::counter("disk.write_bytes:sda", "bytes"),
            MetricDesc::counter("disk.write_bytes:sdb", "bytes"),
            MetricDesc::gauge("cpu.util:0", "percent"),
            MetricDesc::gauge("cpu.util:1", "percent"),
        ];
        let rows = vec![
            (1000, vec![100.0, 10.0, 5.0, 7.0]),
            (2010, vec![300.0, 30.0, 6.0, 2.0]),
            (3000, vec![50.0, 50.0, 1.0, 1.0]),
        ];
        let g = grid_series(&catalog, &rows, 1000);
        // 200 B over 1.01 s + 20 B over 1.01 s, on slot 2000; the reset at 3000 s gives only sdb's 20/0.99.
        let w = &g["disk.write_bytes"];
        assert_eq!(w[0].0, 2000);
        assert!((w[0].1 - 220.0 * 1000.0 / 1010.0).abs() < 1e-9);
        assert_eq!(w[1].0, 3000);
        assert!((w[1].1 - 20.0 * 1000.0 / 990.0).abs() < 1e-9);
        assert_eq!(g["cpu.util"], vec![(1000, 7.0), (2000, 6.0), (3000, 1.0)]);
        // A sample 400 ms late, then one on time: both land on slot 2000.
        // Each is the one process (not two): the slot holds 1, and the
        // counter's two rates give their mean, not their sum.
        let catalog = vec![
            MetricDesc::gauge("proc.count", "count"),
            MetricDesc::counter("proc.cpu_user", "seconds"),
            MetricDesc::counter("disk.reads:sda", "count"),
            MetricDesc::counter("disk.reads:sdb", "count"),
        ];
        let rows = vec![
            (1000, vec![1.0, 10.0, 0.0, 0.0]),
            (1600, vec![1.0, 10.6, 60.0, 6.0]),
            (2400, vec![1.0, 10.8, 220.0, 22.0]),
            (3000, vec![1.0, 11.4, 280.0, 28.0]),
        ];
        let g = grid_series(&catalog, &rows, 1000);
        assert_eq!(g["proc.count"], vec![(1000, 1.0), (2000, 1.0), (3000, 1.0)]);
        let cpu = &g["proc.cpu_user"];
        assert_eq!(cpu.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2000, 3000]);
        assert!((cpu[0].1 - 0.625).abs() < 1e-9 && (cpu[1].1 - 1.0).abs() < 1e-9, "{cpu:?}");
        // Devices still sum, each after its own mean: (100 + 200) / 2 + (10 + 20) / 2.
        assert_eq!(g["disk.reads"], vec![(2000, 165.0), (3000, 110.0)]);
    }

    /// Rows at jittered times (some late, some twice on a slot, a few out
    /// of order), with gaps and counter resets, over several devices of a
    /// base: the slots' means and the devices' sums (or maxima) are what a
    /// map per slot gives, which says those rules of [`grid_series`] most
    /// plainly (the rates and slots of each device are `device_points`',
    /// checked by hand above).
    #[test]
    fn the_grid_is_what_a_map_per_slot_gives() {
        fn by_maps(
            catalog: &[MetricDesc],
            rows: &[(i64, Vec<f64>)],
            step: i64,
        ) -> BTreeMap<String, Vec<(i64, f64)>> {
            let mut per: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
            for (j, desc) in catalog.iter().enumerate() {
                let mut points = Vec::new();
                device_points(desc, j, rows, step, &mut points);
                let mut own: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
                for (g, x) in points {
                    let e = own.entry(g).or_insert((0.0, 0));
                    *e = (e.0 + x, e.1 + 1);
                }
                let slot = per.entry(base_metric(&desc.name).to_owned()).or_default();
                for (g, (sum, n)) in own {
                    let x = sum / f64::from(n);
                    let max = desc.unit == "percent";
                    slot.entry(g)
                        .and_modify(|a| *a = if max { a.max(x) } else { *a + x })
                        .or_insert(x);
                }
            }
            per.into_iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(k, m)| (k, m.into_iter().collect()))
                .collect()
        }
        let catalog = vec![
            MetricDesc::counter("disk.reads:sda", "count"),
            MetricDesc::counter("disk.reads:sdb", "count"),
            MetricDesc::counter("disk.reads:sdc", "count"),
            MetricDesc::gauge("cpu.util:0", "percent"),
            MetricDesc::gauge("cpu.util:1", "percent"),
            MetricDesc::gauge("mem.used", "bytes"),
            MetricDesc::gauge("never", "count"),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..200 {
            let mut ts = 0i64;
            let mut counters = [0.0f64; 3];
            let mut rows = Vec::new();
            for _ in 0..next(60) {
                ts += [1000, 1000, 1000, 400, 1600, 2000, 0][next(7) as usize];
                let mut vals = Vec::new();
                for c in &mut counters {
                    *c = if next(25) == 0 { 0.0 } else { *c + next(500) as f64 };
                    vals.push(if next(20) == 0 { f64::NAN } else { *c });
                }
                for _ in 0..3 {
                    vals.push(if next(15) == 0 { f64::NAN } else { next(1000) as f64 / 7.0 });
                }
                vals.push(f64::NAN);
                rows.push((ts, vals));
            }
            if case % 5 == 0 && rows.len() > 3 {
                rows.swap(1, 2);
            }
            let (got, want) = (grid_series(&catalog, &rows, 1000), by_maps(&catalog, &rows, 1000));
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "case {case}: {rows:?}");
        }
    }

    /// An empty dataset sampled once a second.
    fn one_hz() -> Dataset {
        Dataset::new(
            1000,
            WindowConfig { window_ms: 5000, stride_ms: 5000, step_ms: 1000, baseline_ms: 10_000 },
        )
    }

    /// Sets `node`'s `metric` to `v`, one value a second from 0.
    fn put(d: &mut Dataset, node: &str, metric: &str, v: &[f64]) {
        d.series.entry(node.into()).or_default().insert(
            metric.into(),
            v.iter().enumerate().map(|(i, x)| (i as i64 * 1000, *x)).collect(),
        );
    }

    #[test]
    fn frames_carry_what_the_cgroup_spends_besides_the_server() {
        let mut d = one_hz();
        // n1: the server alone, then a stressor beside it under a quota of
        // 0.6 (the cgroup's total barely moves, the server's share halves);
        // the last second lacks the server's system time.
        put(&mut d, "n1", "cg.cpu_usage", &[0.4, 0.6, 0.6]);
        put(&mut d, "n1", "proc.cpu_user", &[0.3, 0.15, 0.15]);
        put(&mut d, "n1", "proc.cpu_system", &[0.1, 0.05]);
        // The cgroup's own split: the stressor's 0.4 is 0.3 user, 0.1 system.
        put(&mut d, "n1", "cg.cpu_user", &[0.3, 0.45, 0.45]);
        put(&mut d, "n1", "cg.cpu_system", &[0.1, 0.15, 0.15]);
        // The server's RSS counts 100 of file-backed pages: a constant
        // offset, then 500 of anonymous memory that is not the server's.
        put(&mut d, "n1", "cg.mem_anon", &[900.0, 900.0, 1400.0]);
        put(&mut d, "n1", "proc.rss", &[1000.0, 1000.0, 1000.0]);
        // n2 has no server process found: nothing to take away.
        put(&mut d, "n2", "cg.cpu_usage", &[0.5, 0.5, 0.5]);
        let f = d.frame(0, 2000);
        let n1 = &f.nodes[0].metrics;
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9 || (x.is_nan() && y.is_nan()))
        };
        assert!(close(&n1["cg.cpu_other"], &[0.0, 0.4, f64::NAN]), "{:?}", n1["cg.cpu_other"]);
        assert!(close(&n1["cg.cpu_other_user"], &[0.0, 0.3, 0.3]), "{:?}", n1["cg.cpu_other_user"]);
        assert!(close(&n1["cg.cpu_other_system"], &[0.0, 0.1, f64::NAN]));
        assert!(close(&n1["cg.mem_anon_other"], &[-100.0, -100.0, 400.0]));
        let n2 = &f.nodes[1].metrics;
        assert!(!n2.keys().any(|k| k.starts_with("cg.cpu_other") || k == "cg.mem_anon_other"));
    }

    #[test]
    fn frames_carry_the_ratios_their_inputs_allow() {
        let mut d = one_hz();
        // n1: 100 statements a second, then a surge to 200, then none.
        put(&mut d, "n1", "db.queries", &[100.0, 200.0, 0.0, 100.0]);
        put(&mut d, "n1", "db.cache_requests", &[1000.0, 2000.0, 0.0]);
        put(&mut d, "n1", "db.cache_misses", &[0.0, 500.0, 0.0]);
        put(&mut d, "n1", "db.io_write_bytes", &[4096.0, 8192.0, 0.0, 4096.0]);
        // n2 has no buffer-pool counters: only the bytes per statement.
        put(&mut d, "n2", "db.queries", &[50.0]);
        put(&mut d, "n2", "db.io_write_bytes", &[5000.0]);
        let f = d.frame(0, 3000);
        let n1 = &f.nodes[0].metrics;
        let nan_eq = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
        };
        let nan = f64::NAN;
        // The surge doubles the statements, not the pages per statement.
        assert!(
            nan_eq(&n1["db.cache_requests_per_query"], &[10.0, 10.0, nan, nan]),
            "{:?}",
            n1["db.cache_requests_per_query"]
        );
        assert!(nan_eq(&n1["db.write_bytes_per_query"], &[40.96, 40.96, nan, 40.96]));
        assert!(nan_eq(&n1["db.cache_miss_share"], &[0.0, 0.25, nan, nan]));
        let n2 = &f.nodes[1].metrics;
        assert!(nan_eq(&n2["db.write_bytes_per_query"], &[100.0, nan, nan, nan]));
        assert!(
            !n2.contains_key("db.cache_requests_per_query")
                && !n2.contains_key("db.cache_miss_share")
        );
        // Exports keep what was recorded; the ratios are made again on import.
        d.cases.push(CasePeriod {
            case: "c1".into(),
            scenario: "A".into(),
            start_ms: 0,
            end_ms: 3000,
            group: None,
        });
        let dir = tempfile::tempdir().unwrap();
        d.export(dir.path()).unwrap();
        let series = std::fs::read_to_string(dir.path().join("series.csv")).unwrap();
        assert!(DERIVED.iter().all(|m| !series.contains(m)));
        // (NaN is not equal to itself, so the frames compare as text.)
        assert_eq!(
            format!("{:?}", Dataset::import(dir.path()).unwrap().frame(0, 3000)),
            format!("{f:?}")
        );
    }

    #[test]
    fn export_import_round_trip() {
        let d = testing::two_node_cpu_case();
        d.validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        d.export(dir.path()).unwrap();
        let back = Dataset::import(dir.path()).unwrap();
        assert_eq!(back, d);
        // The same series gzip-compressed import alike.
        let gz = tempfile::tempdir().unwrap();
        for f in ["manifest.json", "labels.csv", "cases.csv"] {
            std::fs::copy(dir.path().join(f), gz.path().join(f)).unwrap();
        }
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(gz.path().join("series.csv.gz")).unwrap(),
            flate2::Compression::default(),
        );
        std::io::Write::write_all(&mut enc, &std::fs::read(dir.path().join("series.csv")).unwrap())
            .unwrap();
        enc.finish().unwrap();
        assert_eq!(Dataset::import(gz.path()).unwrap(), d);
        assert_eq!(d.truths()[0].causes, vec![("n2".to_string(), "cpu_stress".to_string())]);
        // Bad input: a broken line and a label of an unknown case.
        std::fs::write(
            dir.path().join("labels.csv"),
            "case,node,type,start_ms,end_ms\nc9,n1,cpu_stress,1,2\n",
        )
        .unwrap();
        assert!(Dataset::import(dir.path()).unwrap_err().to_string().contains("c9"));
        std::fs::write(
            dir.path().join("labels.csv"),
            "case,node,type,start_ms,end_ms\nc1,n1,cpu_stress,1\n",
        )
        .unwrap();
        let err = Dataset::import(dir.path()).unwrap_err().to_string();
        assert!(err.contains("labels.csv:2"), "{err}");
    }

    #[test]
    fn quoted_names_groups_and_findings_round_trip() {
        let mut d = testing::two_node_cpu_case();
        d.cases[0].case = "run 1, case \u{e9}".into();
        d.cases[0].group = Some("run,1".into());
        for l in &mut d.labels {
            l.case = d.cases[0].case.clone();
        }
        // A label on a node without series, and a second case overlapping the first.
        let mut extra = d.labels[0].clone();
        extra.node = "cluster".into();
        d.labels.push(extra);
        let mut second = d.cases[0].clone();
        second.case = "c2".into();
        second.start_ms += 1000;
        d.cases.push(second);
        let dir = tempfile::tempdir().unwrap();
        d.export(dir.path()).unwrap();
        let (back, findings) = Dataset::import_checked(dir.path()).unwrap();
        assert_eq!(back.cases, d.cases);
        assert_eq!(back.labels, d.labels);
        assert!(
            findings.iter().any(|f| f.contains("node \"cluster\", which has no series")),
            "{findings:?}"
        );
        assert!(findings.iter().any(|f| f.contains("overlap")), "{findings:?}");
        // Hand-written quoting, and a case line without its end.
        let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
        let (ds, _) = Dataset::from_texts(
            &manifest,
            "node,metric,timestamp_ms,value\n\"n,1\",\"cpu, x\",1000,2.5\n",
            "case,node,type,start_ms,end_ms\n",
            "case,scenario,start_ms,end_ms\nc1,normal,0,5000\n",
        )
        .unwrap();
        assert_eq!(ds.series["n,1"]["cpu, x"], vec![(1000, 2.5)]);
        let err = Dataset::from_texts(
            &manifest,
            "node,metric,timestamp_ms,value\n",
            "case,node,type,start_ms,end_ms\n",
            "case,scenario,start_ms,end_ms\nc1,normal,0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cases.csv:2"), "{err}");
    }

    #[test]
    fn recordings_merge_when_disjoint() {
        let mut d = testing::two_node_cpu_case();
        d.merge(testing::shifted(&testing::two_node_cpu_case(), 3_600_000, "c2")).unwrap();
        assert_eq!(d.cases.len(), 2);
        assert_eq!(d.series["n2"]["cg.cpu_usage"].len(), 120);
        assert_eq!(d.truths().len(), 2);
        // Refused: the same case again, overlapping series, other windows.
        let err = |o: Dataset| testing::two_node_cpu_case().merge(o).unwrap_err().to_string();
        assert!(err(testing::shifted(&testing::two_node_cpu_case(), 3_600_000, "c1"))
            .contains("in both"));
        assert!(
            err(testing::shifted(&testing::two_node_cpu_case(), 30_000, "c2")).contains("overlap")
        );
        let mut other = testing::shifted(&testing::two_node_cpu_case(), 3_600_000, "c2");
        other.manifest.window.baseline_ms = 20_000;
        assert!(err(other).contains("different windows"));
        // Dropping a type's cases takes their labels and windows with them.
        d.labels.push(FaultEvent {
            case: "c2".into(),
            node: "n1".into(),
            kind: "disk_stress".into(),
            start_ms: 3_640_000,
            end_ms: 3_660_000,
        });
        assert_eq!(d.drop_cases_with("network_loss"), 0);
        assert_eq!(d.drop_cases_with("disk_stress"), 1);
        assert_eq!(d.cases.iter().map(|c| c.case.as_str()).collect::<Vec<_>>(), ["c1"]);
        assert!(d.labels.iter().all(|l| l.case == "c1"));
        d.validate().unwrap();
    }
}
