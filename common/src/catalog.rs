//! Metric catalog entries, the metric-name grammar and counter arithmetic.
//!
//! Names look like `cpu.user` or, for a per-device series, `disk.read_bytes:sda`
//! (the part after `:` is the device, interface or core). Counters travel raw;
//! [`counter_rates`] turns them into per-second rates and copes with counters
//! that wrap at 32 bits or restart from zero.

use serde::{Deserialize, Serialize};

/// Longest accepted metric name, in bytes.
pub const MAX_METRIC_NAME: usize = 160;
/// Most metrics one agent may declare.
pub const MAX_CATALOG_LEN: usize = 8192;

/// Whether a series is a level (gauge) or a monotonically increasing total (counter).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum MetricKind {
    Gauge,
    Counter,
}

/// One entry of an agent's metric catalog.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct MetricDesc {
    pub name: String,
    pub kind: MetricKind,
    /// Unit of the raw value: `seconds`, `bytes`, `ops`, `percent`, `count`, ...
    pub unit: String,
}

impl MetricDesc {
    pub fn gauge(name: impl Into<String>, unit: &str) -> Self {
        MetricDesc { name: name.into(), kind: MetricKind::Gauge, unit: unit.to_owned() }
    }
    pub fn counter(name: impl Into<String>, unit: &str) -> Self {
        MetricDesc { name: name.into(), kind: MetricKind::Counter, unit: unit.to_owned() }
    }
}

/// Checks a metric name against the grammar
/// `base(.part)*(:label)?` where `base` and `part` are `[a-z0-9_]+` (base starts
/// with a letter) and `label` is `[A-Za-z0-9_.@-]+`.
pub fn validate_metric_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_METRIC_NAME {
        return Err(format!("metric name must be 1..={MAX_METRIC_NAME} bytes long"));
    }
    let (base, label) = match name.split_once(':') {
        Some((b, l)) => (b, Some(l)),
        None => (name, None),
    };
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("metric name {name:?} must start with a lowercase letter"));
    }
    for part in base.split('.') {
        if part.is_empty()
            || !part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("metric name {name:?}: each dotted part must be [a-z0-9_]+"));
        }
    }
    if let Some(l) = label {
        if l.is_empty() || !l.chars().all(is_label_char) {
            return Err(format!(
                "metric name {name:?}: the label after ':' must be [A-Za-z0-9_.@-]+"
            ));
        }
    }
    Ok(())
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')
}

/// Turns a device or interface name into a valid label: characters outside
/// the label alphabet become `_`. Empty input becomes `_`.
pub fn sanitize_label(raw: &str) -> String {
    let s: String = raw.chars().map(|c| if is_label_char(c) { c } else { '_' }).collect();
    if s.is_empty() {
        "_".to_owned()
    } else {
        s
    }
}

/// Largest value of a 32-bit kernel counter plus one.
const WRAP_32: f64 = 4_294_967_296.0;

/// Increase of a counter between two readings, with wrap and reset handling:
/// a decrease from a value that fits in 32 bits to a smaller one is taken as a
/// 32-bit wrap when the implied increase is smaller than half the range;
/// any other decrease is a restart from zero, so the increase is `cur`.
/// Returns `None` when either reading is not finite.
pub fn counter_increase(prev: f64, cur: f64) -> Option<f64> {
    if !prev.is_finite() || !cur.is_finite() {
        return None;
    }
    if cur >= prev {
        return Some(cur - prev);
    }
    if prev < WRAP_32 && cur >= 0.0 {
        let wrapped = WRAP_32 - prev + cur;
        if wrapped < WRAP_32 / 2.0 {
            return Some(wrapped);
        }
    }
    Some(cur.max(0.0))
}

/// Per-second rates of a counter series given as `(ts_ms, raw)` points sorted
/// by time. Each output point carries the later timestamp of its pair. Pairs
/// with a non-finite value or a non-increasing timestamp yield no point.
pub fn counter_rates(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(points.len().saturating_sub(1));
    let mut prev: Option<(i64, f64)> = None;
    for &(ts, v) in points {
        if !v.is_finite() {
            continue;
        }
        if let Some((pts, pv)) = prev {
            if ts > pts {
                if let Some(inc) = counter_increase(pv, v) {
                    out.push((ts, inc * 1000.0 / (ts - pts) as f64));
                }
            }
        }
        prev = Some((ts, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in
            ["cpu.user", "disk.read_bytes:sda", "net.rx_bytes:veth0@if2", "load1", "cpu.user:cpu12"]
        {
            assert_eq!(validate_metric_name(ok), Ok(()), "{ok}");
        }
        for bad in
            ["", "Cpu.user", "cpu..user", "cpu.user:", "cpu user", "1cpu", "cpu.user:a b", "cpu/x"]
        {
            assert!(validate_metric_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_metric_name(&"a".repeat(MAX_METRIC_NAME + 1)).is_err());
    }

    #[test]
    fn labels_are_sanitized() {
        assert_eq!(sanitize_label("eth0"), "eth0");
        assert_eq!(sanitize_label("dm 0/x"), "dm_0_x");
        assert_eq!(sanitize_label(""), "_");
        assert!(validate_metric_name(&format!("disk.x:{}", sanitize_label("a:b c"))).is_ok());
    }

    #[test]
    fn increase_handles_monotonic_wrap_and_reset() {
        assert_eq!(counter_increase(10.0, 15.0), Some(5.0));
        // 32-bit wrap: 4294967290 -> 4 is an increase of 10.
        assert_eq!(counter_increase(4_294_967_290.0, 4.0), Some(10.0));
        // Reset: a 64-bit counter that went back to a small value restarted from zero.
        assert_eq!(counter_increase(10_000_000_000.0, 7.0), Some(7.0));
        // Reset of a small counter (not near the 32-bit edge) is a restart, not a wrap.
        assert_eq!(counter_increase(1000.0, 3.0), Some(3.0));
        assert_eq!(counter_increase(f64::NAN, 3.0), None);
    }

    #[test]
    fn rates_are_per_second_and_skip_gaps() {
        let pts = [
            (1000, 100.0),
            (2000, 300.0),
            (2000, 400.0),
            (4000, f64::NAN),
            (5000, 700.0),
            (6000, 5.0),
        ];
        let r = counter_rates(&pts);
        // 1000->2000: 200/s; a repeated timestamp yields no rate but replaces the
        // reading; NaN skipped; 2000->5000: (700-400)/3 s; then a reset -> 5/s.
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (2000, 200.0));
        assert!((r[1].1 - 100.0).abs() < 1e-9);
        assert_eq!(r[1].0, 5000);
        assert_eq!(r[2], (6000, 5.0));
    }
}
