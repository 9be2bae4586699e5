//! Window features. Per metric of a node's window: mean, std, min, max,
//! median, slope (per sample), and the mean, std and largest magnitude of
//! the first differences; `peer`, the node against the median of its
//! peers' means as a symmetric relative difference in [-1, 1]; and against
//! the node's own reference period just before the window, a robust z-score
//! (`base_z`, median/MAD, clipped to ±50) and a relative change (`base_rel`)
//! of the window's median and mean, and the robust z-score of the median of
//! the window's last samples (`tail_z`, as many as an onset window's fault
//! covers at least, [`super::labels::onset_min_ms`]).
//! A metric a node lacks gives NaN features (XGBoost's "missing").
//!
//! `tail_z` is there for a fault's first seconds: the window's median, and
//! with it `base_z`, moves only once a fault covers half of the window, so
//! an onset window looked unlike the fault's later windows in every feature
//! read against the reference. Measured in docs/performance.md.

use super::{finite, median_of, median_without, Frame, WindowConfig};

/// Feature names per metric, in vector order.
pub const STATS: [&str; 13] = [
    "mean", "std", "min", "max", "median", "slope", "dmean", "dstd", "dmax", "peer", "base_z",
    "base_rel", "tail_z",
];

/// Positions in [`STATS`] of the features read across nodes or periods.
const PEER: usize = 9;
const BASE_Z: usize = 10;
const BASE_REL: usize = 11;
const TAIL_Z: usize = 12;

/// `metric|stat` for every metric, in vector order.
pub fn feature_names(metrics: &[String]) -> Vec<String> {
    metrics.iter().flat_map(|m| STATS.iter().map(move |s| format!("{m}|{s}"))).collect()
}

/// The metric of a feature name.
pub fn metric_of(feature: &str) -> &str {
    feature.rsplit_once('|').map_or(feature, |(m, _)| m)
}

/// The nine statistics of one series (NaN values skipped); all NaN when
/// fewer than one finite value. No allocation for windows up to 64 samples.
pub fn series_stats(values: &[f64]) -> [f64; 9] {
    let (mut n, mut sum, mut sx) = (0usize, 0.0, 0.0);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, v) in values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
        n += 1;
        sum += v;
        sx += i as f64;
        min = min.min(*v);
        max = max.max(*v);
    }
    if n == 0 {
        return [f64::NAN; 9];
    }
    let nf = n as f64;
    let (mean, xm) = (sum / nf, sx / nf);
    let (mut var, mut sxx, mut sxy) = (0.0, 0.0, 0.0);
    let (mut dn, mut dsum, mut dsq, mut dmax) = (0usize, 0.0, 0.0, 0.0f64);
    let mut prev: Option<f64> = None;
    let mut stack = [0f64; 64];
    let mut heap = Vec::new();
    let mut k = 0;
    for (i, v) in values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
        var += (v - mean).powi(2);
        sxx += (i as f64 - xm).powi(2);
        sxy += (i as f64 - xm) * (v - mean);
        if let Some(p) = prev {
            let d = v - p;
            dn += 1;
            dsum += d;
            dsq += d * d;
            dmax = dmax.max(d.abs());
        }
        prev = Some(*v);
        if n <= stack.len() {
            stack[k] = *v;
            k += 1;
        } else {
            heap.push(*v);
        }
    }
    let median = if n <= stack.len() { median_of(&mut stack[..k]) } else { median_of(&mut heap) };
    let slope = if n < 2 || sxx == 0.0 { 0.0 } else { sxy / sxx };
    let (dmean, dstd) = if dn == 0 {
        (0.0, 0.0)
    } else {
        let dm = dsum / dn as f64;
        (dm, (dsq / dn as f64 - dm * dm).max(0.0).sqrt())
    };
    [mean, (var / nf).sqrt(), min, max, median, slope, dmean, dstd, dmax]
}

/// Symmetric relative difference of `a` against `b`, in [-1, 1].
pub fn rel_diff(a: f64, b: f64) -> f64 {
    let d = a.abs() + b.abs();
    if !a.is_finite() || !b.is_finite() {
        f64::NAN
    } else if d < 1e-12 {
        0.0
    } else {
        (a - b) / d
    }
}

/// Median and MAD of the finite values of a reference sample; None with
/// fewer than 3.
pub fn median_mad(reference: &[f64]) -> Option<(f64, f64)> {
    median_mad_in(&mut finite(reference))
}

/// [`median_mad`] of finite values, reordering and overwriting them.
fn median_mad_in(r: &mut [f64]) -> Option<(f64, f64)> {
    if r.len() < 3 {
        return None;
    }
    let med = median_of(r);
    for v in r.iter_mut() {
        *v = (*v - med).abs();
    }
    Some((med, median_of(r)))
}

/// Median of the finite values of a slice (of its last 64 at most); NaN
/// when none.
fn finite_median(values: &[f64]) -> f64 {
    let mut buf = [0f64; 64];
    let mut k = 0;
    for v in values.iter().rev().filter(|v| v.is_finite()).take(buf.len()) {
        buf[k] = *v;
        k += 1;
    }
    median_of(&mut buf[..k])
}

fn z_from(x: f64, med: f64, mad: f64) -> f64 {
    let scale = 1.4826 * mad + 1e-3 * med.abs() + 1e-9;
    ((x - med) / scale).clamp(-50.0, 50.0)
}

/// Robust z-score of `x` against a reference sample, clipped to ±50; NaN
/// when the reference has fewer than 3 values.
pub fn robust_z(x: f64, reference: &[f64]) -> f64 {
    match median_mad(reference) {
        Some((med, mad)) if x.is_finite() => z_from(x, med, mad),
        _ => f64::NAN,
    }
}

/// Features of every node's window ending (exclusively) at sample `end`,
/// over `metrics`; one vector per node of `frame`, in node order. The
/// window is `[end - samples, end)`, the reference period the
/// `baseline_ms` before it.
pub fn window_features(
    frame: &Frame,
    end: usize,
    cfg: &WindowConfig,
    metrics: &[String],
) -> Vec<Vec<f32>> {
    window_features_of(&frame.columns(metrics), end, cfg, metrics.len(), None)
}

/// [`window_features`] over series already looked up ([`Frame::columns`]).
/// With `needed` (one flag per feature, in vector order), the flagged
/// features are as without it and the others may be NaN: a metric with no
/// flagged feature is skipped, and its reference period is read only for a
/// flagged `base_z` or `base_rel`.
pub fn window_features_of(
    cols: &[Vec<Option<&[f64]>>],
    end: usize,
    cfg: &WindowConfig,
    n_metrics: usize,
    needed: Option<&[bool]>,
) -> Vec<Vec<f32>> {
    let needed = needed.filter(|f| f.len() == n_metrics * STATS.len());
    // Metrics are independent: split them over the cores, join per node.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads < 2 || n_metrics * cols.len() < 2_000 {
        return features_of(cols, end, cfg, 0..n_metrics, needed);
    }
    let chunk = n_metrics.div_ceil(threads);
    let ranges: Vec<std::ops::Range<usize>> =
        (0..n_metrics).step_by(chunk).map(|a| a..(a + chunk).min(n_metrics)).collect();
    let parts: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|r| s.spawn(move || features_of(cols, end, cfg, r.clone(), needed)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(n_metrics * STATS.len()); cols.len()];
    for part in parts {
        for (row, p) in out.iter_mut().zip(part) {
            row.extend(p);
        }
    }
    out
}

/// At most this many evenly spaced samples of the reference period enter
/// its median and MAD.
const REFERENCE_POINTS: usize = 40;

fn features_of(
    cols: &[Vec<Option<&[f64]>>],
    end: usize,
    cfg: &WindowConfig,
    metrics: std::ops::Range<usize>,
    needed: Option<&[bool]>,
) -> Vec<Vec<f32>> {
    let w = cfg.samples();
    let b = (cfg.baseline_ms / cfg.step_ms.max(1)).max(1) as usize;
    let start = end.saturating_sub(w);
    let base_start = start.saturating_sub(b);
    let every = (start - base_start).div_ceil(REFERENCE_POINTS).max(1);
    let tail = (super::labels::onset_min_ms(cfg) / cfg.step_ms.max(1)).max(1) as usize;
    let tail_start = end.saturating_sub(tail).max(start);
    let mut reference = Vec::with_capacity(REFERENCE_POINTS);
    let (n, width) = (cols.len(), metrics.len());
    // Node by node first (a node's series lie together in memory): every
    // feature but the contrast with the peers, whose means are kept.
    let mut means = vec![f64::NAN; n * width];
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(n);
    for (i, col) in cols.iter().enumerate() {
        let mut row = Vec::with_capacity(width * STATS.len());
        for (at, k) in metrics.clone().enumerate() {
            let flags = needed.map(|f| &f[k * STATS.len()..][..STATS.len()]);
            let (Some(v), true) = (col[k], flags.is_none_or(|f| f.contains(&true))) else {
                row.extend([f32::NAN; STATS.len()]);
                continue;
            };
            let s = series_stats(&v[start.min(v.len())..end.min(v.len())]);
            means[at * n + i] = s[0];
            reference.clear();
            if base_start < start && flags.is_none_or(|f| f[BASE_Z] || f[BASE_REL] || f[TAIL_Z]) {
                reference.extend(
                    v[base_start.min(v.len())..start.min(v.len())]
                        .iter()
                        .step_by(every)
                        .copied()
                        .filter(|x| x.is_finite()),
                );
            }
            let (base_z, base_rel, tail_z) = match median_mad_in(&mut reference) {
                Some((med, mad)) => {
                    let z = |x: f64| if x.is_finite() { z_from(x, med, mad) } else { f64::NAN };
                    let last = finite_median(&v[tail_start.min(v.len())..end.min(v.len())]);
                    (z(s[4]), rel_diff(s[0], med), z(last))
                }
                None => (f64::NAN, f64::NAN, f64::NAN),
            };
            row.extend(s.iter().map(|x| *x as f32));
            row.extend([f32::NAN, base_z as f32, base_rel as f32, tail_z as f32]);
        }
        out.push(row);
    }
    // Then metric by metric, each node's mean against the median of its
    // peers' means; without a mean of its own (NaN) there is nothing to
    // contrast and the feature stays NaN.
    let mut sorted: Vec<(f64, usize)> = Vec::with_capacity(n);
    let mut values: Vec<f64> = Vec::with_capacity(n);
    for at in 0..width {
        sorted.clear();
        sorted.extend(
            means[at * n..][..n]
                .iter()
                .enumerate()
                .filter(|(_, m)| m.is_finite())
                .map(|(i, m)| (*m, i)),
        );
        // Unstable is enough: removing any one of equal means leaves the same
        // multiset, so the peers' median does not depend on tie order.
        sorted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        values.clear();
        values.extend(sorted.iter().map(|x| x.0));
        for (r, &(mean, i)) in sorted.iter().enumerate() {
            out[i][at * STATS.len() + PEER] = rel_diff(mean, median_without(&values, r)) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSeries;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn stats_of_a_known_series() {
        // 1, 3, 5, 7: mean 4, population std sqrt(5), slope 2, differences all 2.
        let s = series_stats(&[1.0, 3.0, 5.0, 7.0]);
        let want = [4.0, 5f64.sqrt(), 1.0, 7.0, 4.0, 2.0, 2.0, 0.0, 2.0];
        for (a, b) in s.iter().zip(want) {
            assert!(close(*a, b), "{s:?}");
        }
    }

    #[test]
    fn stats_skip_missing_values_and_keep_positions() {
        // The slope is over sample positions: 0 → 0, 2 → 4, 3 → 6: slope 2.
        let s = series_stats(&[0.0, f64::NAN, 4.0, 6.0]);
        assert!(close(s[0], 10.0 / 3.0));
        assert!(close(s[5], 2.0), "{s:?}");
        assert!(close(s[4], 4.0));
        assert!(series_stats(&[f64::NAN, f64::NAN]).iter().all(|x| x.is_nan()));
        let one = series_stats(&[5.0]);
        assert_eq!(one[..6], [5.0, 0.0, 5.0, 5.0, 5.0, 0.0]);
    }

    #[test]
    fn relative_difference_and_robust_z() {
        assert!(close(rel_diff(3.0, 1.0), 0.5));
        assert!(close(rel_diff(0.0, 0.0), 0.0));
        assert!(close(rel_diff(-1.0, 1.0), -1.0));
        // Reference 1..=5: median 3, MAD 1 → scale 1.4826 + 0.003.
        let z = robust_z(6.0, &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(close(z, 3.0 / (1.4826 + 0.003 + 1e-9)), "{z}");
        assert!(robust_z(6.0, &[1.0, 2.0]).is_nan());
        assert_eq!(robust_z(1e9, &[1.0, 1.0, 1.0]), 50.0);
    }

    #[test]
    fn window_features_contrast_peers_and_baseline() {
        // Nodes of one metric "cpu", 1 s apart: `jumped(len, from)` is 1
        // until sample `from`, 10 from there.
        let mk = |node: &str, v: Vec<f64>| NodeSeries {
            node: node.into(),
            metrics: [("cpu".to_string(), v)].into(),
        };
        let jumped = |len: usize, from: usize| {
            (0..len).map(|i| if i < from { 1.0 } else { 10.0 }).collect::<Vec<f64>>()
        };
        let frame_of = |nodes: Vec<NodeSeries>| Frame {
            start_ms: 0,
            step_ms: 1000,
            len: nodes[0].metrics["cpu"].len(),
            nodes,
        };
        // Three nodes; node b jumps to 10 in the last 4 samples.
        let frame = frame_of(vec![
            mk("a", jumped(12, 12)),
            mk("b", jumped(12, 8)),
            mk("c", jumped(12, 12)),
        ]);
        let cfg =
            WindowConfig { window_ms: 4000, stride_ms: 1000, step_ms: 1000, baseline_ms: 8000 };
        let f = window_features(&frame, 12, &cfg, &["cpu".to_string()]);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].len(), STATS.len());
        assert_eq!(feature_names(&["cpu".to_string()])[9], "cpu|peer");
        // b: mean 10 against peers' median 1 → 9/11.
        assert!((f[1][9] as f64 - 9.0 / 11.0).abs() < 1e-6);
        assert!((f[0][9] as f64 - rel_diff(1.0, 5.5)).abs() < 1e-6);
        // b against its own flat past: clipped z, relative change 9/11.
        assert_eq!(f[1][10], 50.0);
        assert!((f[1][11] as f64 - 9.0 / 11.0).abs() < 1e-6);
        assert_eq!(f[0][10], 0.0);
        assert_eq!((f[1][TAIL_Z], f[0][TAIL_Z]), (50.0, 0.0));
        // A window of 8 whose last 3 samples jumped (an onset window): its
        // median, and so base_z, has not moved; tail_z has (3 samples, as
        // onset_min_ms is 3 steps here).
        let cfg8 = WindowConfig { window_ms: 8000, ..cfg };
        let frame8 = frame_of(vec![mk("a", jumped(20, 20)), mk("b", jumped(20, 17))]);
        let f8 = window_features(&frame8, 20, &cfg8, &["cpu".to_string()]);
        assert_eq!((f8[1][BASE_Z], f8[1][TAIL_Z], f8[0][TAIL_Z]), (0.0, 50.0, 0.0));
        let f8 = window_features(&frame8, 18, &cfg8, &["cpu".to_string()]);
        assert_eq!(f8[1][TAIL_Z], 0.0, "one of the last three samples is the jump: no median");
        let f8 = window_features(&frame8, 19, &cfg8, &["cpu".to_string()]);
        assert_eq!(f8[1][TAIL_Z], 50.0, "two of the last three are");
        // The flagged features as before; a metric without a flag is NaN,
        // and so is the reference's part unless flagged.
        // The same series twice: flags only on the first copy.
        let two = vec!["cpu".to_string(), "cpu".to_string()];
        let cols = frame.columns(&two);
        let mut needed = vec![false; 2 * STATS.len()];
        needed[BASE_Z] = true;
        let some = window_features_of(&cols, 12, &cfg, 2, Some(&needed));
        let all = window_features_of(&cols, 12, &cfg, 2, None);
        for (s, a) in some.iter().zip(&all) {
            for (j, (x, y)) in s.iter().zip(a).enumerate() {
                let skipped = j >= STATS.len();
                assert!(
                    if skipped { x.is_nan() && !y.is_nan() } else { x.to_bits() == y.to_bits() },
                    "feature {j}: {x} against {y}"
                );
            }
        }
        needed[BASE_Z] = false;
        needed[PEER] = true;
        let peer = window_features_of(&cols, 12, &cfg, 2, Some(&needed));
        assert_eq!(peer[1][PEER], all[1][PEER]);
        assert!(peer[1][BASE_REL].is_nan() && peer[1][0].to_bits() == all[1][0].to_bits());
        // A missing metric is NaN throughout.
        let g = window_features(&frame, 12, &cfg, &["absent".to_string()]);
        assert!(g[0].iter().all(|x| x.is_nan()));
        assert_eq!(metric_of("disk.read_bytes|mean"), "disk.read_bytes");
    }
}
