//! `GET /api/metrics`: either one series over a time range
//! (`?node=&metric=&from=&to=&step=&rate=`) or, without `metric`, the latest
//! values of every node (or of `node`) with a summary of CPU, memory, disk and
//! network in the seeds' spirit.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use distdiag_api::metrics::{
    DiskSummary, Latest as LatestAnswer, MetricsAnswer, MetricsQuery, NodeLatest, Series, Summary,
};
use distdiag_api::ErrorBody;
use distdiag_common::catalog::{counter_increase, counter_rates};
use distdiag_common::MetricKind;

use super::{ApiError, ApiState};
use distdiag_store::now_ms;
use distdiag_store::Latest;

/// Most points one series answer may carry.
const MAX_POINTS: usize = 200_000;

/// Parses a time: `now`, a negative duration relative to now (`-15m`),
/// milliseconds since the epoch, or RFC 3339 (`2026-11-22T14:02:00Z`).
pub(super) fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d =
            humantime::parse_duration(rel).map_err(|e| format!("bad relative time {s:?}: {e}"))?;
        return Ok(now - d.as_millis() as i64);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|e| format!("bad timestamp {s:?}: {e}"));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("bad time {s:?} (use ms since epoch, RFC 3339, 'now' or '-15m'): {e}")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("time {s:?} is before 1970"))?
        .as_millis();
    Ok(ms as i64)
}

/// Parses a step: milliseconds or a duration such as `10s`, `1m`.
pub(super) fn parse_step(s: &str) -> Result<i64, String> {
    let ms = if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i64>().map_err(|e| format!("bad step {s:?}: {e}"))?
    } else {
        humantime::parse_duration(s).map_err(|e| format!("bad step {s:?}: {e}"))?.as_millis() as i64
    };
    if ms <= 0 {
        return Err("step must be positive".into());
    }
    Ok(ms)
}

/// Averages points into buckets `[k·step, (k+1)·step)`, stamped at the bucket start.
pub(super) fn downsample(points: &[(i64, f64)], step: i64) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64, u32)> = Vec::new();
    for &(t, v) in points {
        let b = t.div_euclid(step) * step;
        match out.last_mut() {
            Some(last) if last.0 == b => {
                last.1 += v;
                last.2 += 1;
            }
            _ => out.push((b, v, 1)),
        }
    }
    out.into_iter().map(|(b, s, n)| (b, s / f64::from(n))).collect()
}

/// One series (`node` and `metric`), or the latest values of every node
/// (or of `node`) with a summary: CPU, memory, disk and network rates,
/// per-disk IOPS/await/utilisation, TCP retransmits, database process CPU/RSS.
#[utoipa::path(
    operation_id = "metrics",
    get, path = "/api/metrics", tag = "metrics", params(MetricsQuery),
    responses(
        (status = 200, body = MetricsAnswer, description = "A Series with `metric`, else Latest"),
        (status = 400, body = ErrorBody, description = "Bad parameters"),
        (status = 404, body = ErrorBody, description = "Unknown node or metric"),
    )
)]
pub(super) async fn get_metrics(
    State(state): State<ApiState>,
    q: Result<Query<MetricsQuery>, QueryRejection>,
) -> Result<Json<MetricsAnswer>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = now_ms();
    match (q.node.clone(), q.metric.clone()) {
        (Some(node), Some(metric)) => {
            series(&state, q, node, metric, now).await.map(|s| Json(MetricsAnswer::Series(s)))
        }
        (None, Some(_)) => Err(ApiError::bad_request("'metric' needs 'node'")),
        (node, None) => {
            if q.from.is_some() || q.to.is_some() || q.step.is_some() || q.rate.is_some() {
                return Err(ApiError::bad_request(
                    "from/to/step/rate need both 'node' and 'metric'",
                ));
            }
            latest(&state, node, now).map(|l| Json(MetricsAnswer::Latest(l)))
        }
    }
}

async fn series(
    state: &ApiState,
    q: MetricsQuery,
    node: String,
    metric: String,
    now: i64,
) -> Result<Series, ApiError> {
    let to =
        q.to.as_deref()
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(ApiError::bad_request)?
            .unwrap_or(now);
    let from = q
        .from
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::bad_request(format!("from ({from}) is after to ({to})")));
    }
    let step = q.step.as_deref().map(parse_step).transpose().map_err(ApiError::bad_request)?;
    let rec = state
        .store
        .node(&node)
        .ok_or_else(|| ApiError::not_found(format!("unknown node {node:?}")))?;
    let desc =
        rec.catalog.iter().find(|m| m.name == metric).cloned().ok_or_else(|| {
            ApiError::not_found(format!("node {node:?} has no metric {metric:?}"))
        })?;
    if q.rate == Some(true) && desc.kind != MetricKind::Counter {
        return Err(ApiError::bad_request(format!(
            "{metric:?} is a gauge; rate applies to counters only"
        )));
    }
    let rate = desc.kind == MetricKind::Counter && q.rate.unwrap_or(true);
    if let Some(s) = step {
        if (to - from) / s > MAX_POINTS as i64 {
            return Err(ApiError::bad_request(format!(
                "the range holds more than {MAX_POINTS} steps; use a larger step"
            )));
        }
    }
    // For rates, read a little before `from` so the first point has a predecessor.
    let lookback = if rate { i64::from(rec.interval_ms).max(1000) * 3 } else { 0 };
    let store = state.store.clone();
    let (n, m) = (node.clone(), metric.clone());
    let raw = tokio::task::spawn_blocking(move || store.query(&n, &m, from - lookback, to))
        .await
        .map_err(|e| ApiError {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        })??;
    let mut points =
        if rate { counter_rates(&raw).into_iter().filter(|p| p.0 >= from).collect() } else { raw };
    if let Some(s) = step {
        points = downsample(&points, s);
    }
    if points.len() > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "{} points exceed the limit of {MAX_POINTS}; narrow the range or set a step",
            points.len()
        )));
    }
    let unit = if rate { format!("{}/s", desc.unit) } else { desc.unit.clone() };
    // A NaN has no JSON form: a value the store lacks is a gap, not a point.
    points.retain(|p| p.1.is_finite());
    Ok(Series { node, metric, kind: desc.kind, unit, rate, from, to, step_ms: step, points })
}

/// Latest value of each metric: gauges as they are, counters as per-second
/// rates over the last two rows (null until two rows exist).
pub(super) fn latest_values(l: &Latest) -> (Option<i64>, BTreeMap<String, Option<f64>>) {
    let mut out = BTreeMap::new();
    let Some((ts, cur)) = l.rows.first() else { return (None, out) };
    let prev = l.rows.get(1);
    for (i, m) in l.catalog.iter().enumerate() {
        let v = cur.get(i).copied().filter(|v| !v.is_nan());
        let v = match m.kind {
            MetricKind::Gauge => v,
            MetricKind::Counter => match (v, prev) {
                (Some(c), Some((pts, pv))) if ts > pts => pv
                    .get(i)
                    .copied()
                    .and_then(|p| counter_increase(p, c))
                    .map(|inc| inc * 1000.0 / (ts - pts) as f64),
                _ => None,
            },
        };
        out.insert(m.name.clone(), v);
    }
    (Some(*ts), out)
}

fn sum_prefix(values: &BTreeMap<String, Option<f64>>, prefix: &str, skip: &[&str]) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for (k, v) in values.range(prefix.to_owned()..) {
        let Some(label) = k.strip_prefix(prefix) else { break };
        if skip.contains(&label) {
            continue;
        }
        if let Some(v) = v {
            total += v;
            any = true;
        }
    }
    any.then_some(total)
}

/// The headline figures operators look at first.
pub(super) fn summary(values: &BTreeMap<String, Option<f64>>) -> Summary {
    let get = |k: &str| values.get(k).copied().flatten();
    let cpu_parts = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
    // Parts a kernel does not report count as zero; idle must be there.
    let cpu_total: f64 = cpu_parts.iter().filter_map(|p| get(&format!("cpu.{p}"))).sum();
    let (cpu_percent, iowait_percent) = match get("cpu.idle") {
        Some(idle) if cpu_total > 0.0 => {
            let io = get("cpu.iowait").unwrap_or(0.0);
            (Some((cpu_total - idle - io) / cpu_total * 100.0), Some(io / cpu_total * 100.0))
        }
        _ => (None, None),
    };
    let mem_used_percent = match (get("mem.total"), get("mem.available")) {
        (Some(t), Some(a)) if t > 0.0 => Some((t - a) / t * 100.0),
        _ => None,
    };
    let mut disks = BTreeMap::new();
    for (k, _) in values.range("disk.reads:".to_owned()..) {
        let Some(dev) = k.strip_prefix("disk.reads:") else { break };
        let g = |m: &str| get(&format!("disk.{m}:{dev}"));
        let ops = match (g("reads"), g("writes")) {
            (Some(r), Some(w)) => Some(r + w),
            _ => None,
        };
        let busy = match (g("read_time"), g("write_time")) {
            (Some(r), Some(w)) => Some(r + w),
            _ => None,
        };
        let await_ms = match (busy, ops) {
            (Some(b), Some(o)) if o > 0.0 => Some(b / o * 1000.0),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        disks.insert(
            dev.to_owned(),
            DiskSummary {
                read_bytes_per_s: g("read_bytes"),
                write_bytes_per_s: g("write_bytes"),
                iops: ops,
                await_ms,
                util_percent: g("io_time").map(|t| (t * 100.0).min(100.0)),
            },
        );
    }
    Summary {
        cpu_percent,
        iowait_percent,
        load1: get("load.avg1"),
        memory_used_percent: mem_used_percent,
        memory_available_bytes: get("mem.available"),
        swap_used_bytes: get("mem.swap_total").zip(get("mem.swap_free")).map(|(t, f)| t - f),
        disk_read_bytes_per_s: sum_prefix(values, "disk.read_bytes:", &[]),
        disk_write_bytes_per_s: sum_prefix(values, "disk.write_bytes:", &[]),
        disk_iops: sum_prefix(values, "disk.reads:", &[])
            .zip(sum_prefix(values, "disk.writes:", &[]))
            .map(|(r, w)| r + w),
        net_rx_bytes_per_s: sum_prefix(values, "net.rx_bytes:", &["lo"]),
        net_tx_bytes_per_s: sum_prefix(values, "net.tx_bytes:", &["lo"]),
        tcp_retransmits_per_s: get("tcp.retrans_segs"),
        tcp_established: get("tcp.curr_estab"),
        db_process_cpu_percent: get("proc.cpu_user")
            .zip(get("proc.cpu_system"))
            .map(|(u, s)| (u + s) * 100.0),
        db_process_rss_bytes: get("proc.rss"),
        disks,
    }
}

fn latest(state: &ApiState, node: Option<String>, now: i64) -> Result<LatestAnswer, ApiError> {
    let records = match &node {
        Some(n) => vec![state
            .store
            .node(n)
            .ok_or_else(|| ApiError::not_found(format!("unknown node {n:?}")))?],
        None => state.store.nodes(),
    };
    let probes = state.probes.status();
    let nodes = records
        .iter()
        .map(|rec| {
            let (ts, values) =
                state.store.latest(&rec.node).map(|l| latest_values(&l)).unwrap_or_default();
            let connected = state.registry.get(&rec.node).is_some()
                || probes.iter().any(|p| p.node == rec.node && p.connected);
            NodeLatest {
                node: rec.node.clone(),
                connected,
                ts_ms: ts,
                age_ms: ts.map(|t| now - t),
                summary: summary(&values),
                metrics: values,
            }
        })
        .collect();
    let stamp = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(now.max(0) as u64),
    )
    .to_string();
    Ok(LatestAnswer { timestamp: stamp, nodes })
}
