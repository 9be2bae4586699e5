//! Window features. Per metric of a node's window: mean, std, min, max,
//! median, slope (per sample), and the mean, std and largest magnitude of
//! the first differences; `peer`, the node against the median of its
//! peers' means as a symmetric relative difference in [-1, 1]; and against
//! the node's own reference period just before the window, a robust z-score
//! (`base_z`, median/MAD, clipped to ±50) and a relative change (`base_rel`).
//! A metric a node lacks gives NaN features (XGBoost's "missing").

use super::{finite, median_of, Frame, WindowConfig};

/// Feature names per metric, in vector order.
pub const STATS: [&str; 12] = ["mean", "std", "min", "max", "median", "slope", "dmean", "dstd", "dmax", "peer", "base_z", "base_rel"];

/// `metric|stat` for every metric, in vector order.
pub fn feature_names(metrics: &[String]) -> Vec<String> {
    metrics.iter().flat_map(|m| STATS.iter().map(move |s| format!("{m}|{s}"))).collect()
}

/// The metric of a feature name.
pub fn metric_of(feature: &str) -> &str {
    feature.rsplit_once('|').map_or(feature, |(m, _)| m)
}

/// The nine statistics of one series (NaN values skipped); all NaN when
/// fewer than one finite value.
pub fn series_stats(values: &[f64]) -> [f64; 9] {
    let pts: Vec<(f64, f64)> = values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, v)| (i as f64, *v)).collect();
    if pts.is_empty() {
        return [f64::NAN; 9];
    }
    let n = pts.len() as f64;
    let mean = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let var = pts.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / n;
    let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let median = median_of(&mut pts.iter().map(|p| p.1).collect::<Vec<_>>());
    let slope = if pts.len() < 2 {
        0.0
    } else {
        let xm = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let sxx: f64 = pts.iter().map(|p| (p.0 - xm).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - xm) * (p.1 - mean)).sum();
        sxy / sxx
    };
    let diffs: Vec<f64> = pts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let (dmean, dstd, dmax) = if diffs.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        let k = diffs.len() as f64;
        let dm = diffs.iter().sum::<f64>() / k;
        let dv = diffs.iter().map(|d| (d - dm).powi(2)).sum::<f64>() / k;
        (dm, dv.sqrt(), diffs.iter().map(|d| d.abs()).fold(0.0, f64::max))
    };
    [mean, var.sqrt(), min, max, median, slope, dmean, dstd, dmax]
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

/// Robust z-score of `x` against a reference sample, clipped to ±50; NaN
/// when the reference has fewer than 3 values.
pub fn robust_z(x: f64, reference: &[f64]) -> f64 {
    let mut r = finite(reference);
    if r.len() < 3 || !x.is_finite() {
        return f64::NAN;
    }
    let med = median_of(&mut r);
    let mut dev: Vec<f64> = r.iter().map(|v| (v - med).abs()).collect();
    let mad = median_of(&mut dev);
    let scale = 1.4826 * mad + 1e-3 * med.abs() + 1e-9;
    ((x - med) / scale).clamp(-50.0, 50.0)
}

/// Features of every node's window ending (exclusively) at sample `end`,
/// over `metrics`; one vector per node of `frame`, in node order. The
/// window is `[end - samples, end)`, the reference period the
/// `baseline_ms` before it.
pub fn window_features(frame: &Frame, end: usize, cfg: &WindowConfig, metrics: &[String]) -> Vec<Vec<f32>> {
    let w = cfg.samples();
    let b = (cfg.baseline_ms / cfg.step_ms.max(1)).max(1) as usize;
    let start = end.saturating_sub(w);
    let base_start = start.saturating_sub(b);
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(metrics.len() * STATS.len()); frame.nodes.len()];
    for m in metrics {
        let stats: Vec<[f64; 9]> = frame.nodes.iter().map(|n| n.metrics.get(m).map_or([f64::NAN; 9], |v| series_stats(&v[start..end.min(v.len())]))).collect();
        for (i, node) in frame.nodes.iter().enumerate() {
            let s = &stats[i];
            let mut peers: Vec<f64> = stats.iter().enumerate().filter(|(j, p)| *j != i && p[0].is_finite()).map(|(_, p)| p[0]).collect();
            let peer = if peers.is_empty() { f64::NAN } else { rel_diff(s[0], median_of(&mut peers)) };
            let (base_z, base_rel) = match node.metrics.get(m) {
                Some(v) if base_start < start => {
                    let reference = &v[base_start..start.min(v.len())];
                    let mut r = finite(reference);
                    let z = robust_z(s[4], reference);
                    let rel = if r.len() < 3 { f64::NAN } else { rel_diff(s[0], median_of(&mut r)) };
                    (z, rel)
                }
                _ => (f64::NAN, f64::NAN),
            };
            let row = &mut out[i];
            row.extend(s.iter().map(|x| *x as f32));
            row.extend([peer as f32, base_z as f32, base_rel as f32]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::NodeSeries;

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
        // Three nodes, one metric; node b jumps to 10 in the last 4 samples.
        let mk = |node: &str, v: Vec<f64>| NodeSeries { node: node.into(), metrics: [("cpu".to_string(), v)].into() };
        let flat = vec![1.0; 12];
        let mut jump = vec![1.0; 12];
        for x in &mut jump[8..] {
            *x = 10.0;
        }
        let frame = Frame { start_ms: 0, step_ms: 1000, len: 12, nodes: vec![mk("a", flat.clone()), mk("b", jump), mk("c", flat)] };
        let cfg = WindowConfig { window_ms: 4000, stride_ms: 1000, step_ms: 1000, baseline_ms: 8000 };
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
        // A missing metric is NaN throughout.
        let g = window_features(&frame, 12, &cfg, &["absent".to_string()]);
        assert!(g[0].iter().all(|x| x.is_nan()));
        assert_eq!(metric_of("disk.read_bytes|mean"), "disk.read_bytes");
    }
}
