//! Labelled windows. A node's window takes every fault type active on that
//! node for more than half of it (several at once for compound faults), or
//! whose fault began inside it and still runs at its end for at least
//! [`onset_min_ms`] (an onset window: what an online diagnosis sees in the
//! first seconds of a fault). Besides the windows every stride, each
//! fault's onset windows are added at every grid step, so that a model
//! learns a fault from a window it only partly covers. Any other window a
//! fault only partly covers straddles a fault edge (an end, or a start too
//! recent to say) and is kept for evaluation but dropped from training.
//!
//! Measured on the MariaDB recording (`distdiag eval --folds 2 --repeats
//! 3`, its detection table): without onset windows a fault was named (top
//! entry, p ≥ 0.5, held 5 s) a median 6 s after it started and within 6 s
//! in 47 % of the cases; see docs/performance.md for the figures with them.

use serde::{Deserialize, Serialize};

use super::features::{feature_names, window_features_of};
pub use super::Period;
use super::{FaultEvent, Frame, WindowConfig};

/// How much of a window's end a fault that began inside it must cover for
/// the window to carry its type: a quarter of the window, at least three
/// samples (one or two samples of a rate are as likely a blip).
pub fn onset_min_ms(cfg: &WindowConfig) -> i64 {
    (cfg.window_ms / 4).max(3 * cfg.step_ms)
}

/// Types of `node` in the window `[start, end)`, sorted, and whether a
/// fault edge falls inside it that leaves it out of training: a type
/// counts when its fault covers more than half of the window, or began
/// inside it and covers at least `onset_min` ms up to its end.
pub fn window_labels(
    events: &[FaultEvent],
    node: &str,
    start: i64,
    end: i64,
    onset_min: i64,
) -> (Vec<String>, bool) {
    let len = (end - start).max(1);
    let mut types = Vec::new();
    let mut edge = false;
    for e in events.iter().filter(|e| e.node == node) {
        let overlap = (e.end_ms.min(end) - e.start_ms.max(start)).max(0);
        if overlap == 0 {
            continue;
        }
        let onset = e.start_ms > start && e.end_ms >= end && overlap >= onset_min;
        if overlap < len && !onset {
            edge = true;
        }
        if overlap * 2 > len || onset {
            types.push(e.kind.clone());
        }
    }
    types.sort();
    types.dedup();
    (types, edge)
}

/// One node's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    pub case: String,
    pub node: String,
    pub end_ms: i64,
    /// Fault types; empty is normal.
    pub labels: Vec<String>,
    /// A fault edge falls inside: not for training.
    pub edge: bool,
}

/// Labelled windows with their feature matrix (row-major).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Windows {
    pub metrics: Vec<String>,
    pub feature_names: Vec<String>,
    pub rows: Vec<WindowRow>,
    pub x: Vec<f32>,
}

impl Windows {
    pub fn width(&self) -> usize {
        self.feature_names.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        let w = self.width();
        &self.x[i * w..(i + 1) * w]
    }

    /// The windows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Windows {
        let mut x = Vec::with_capacity(idx.len() * self.width());
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Windows {
            metrics: self.metrics.clone(),
            feature_names: self.feature_names.clone(),
            rows: idx.iter().map(|&i| self.rows[i].clone()).collect(),
            x,
        }
    }

    /// Keeps the windows whose case passes `keep` (a split by case).
    pub fn retain_cases(&mut self, keep: impl Fn(&str) -> bool) {
        let idx: Vec<usize> = (0..self.rows.len()).filter(|&i| keep(&self.rows[i].case)).collect();
        *self = self.subset(&idx);
    }

    /// Every type that labels some window, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut t: Vec<String> = self.rows.iter().flat_map(|r| r.labels.iter().cloned()).collect();
        t.sort();
        t.dedup();
        t
    }
}

/// Windows of every node of each period's frame, ending every `stride`
/// from one window after the period's start to its end, and at every grid
/// step in the onset of each fault inside the period (see the module).
/// `metrics` fixes the feature columns (a model's list); by default the
/// union of the frames'.
pub fn build_windows(
    periods: &[(Period, Frame)],
    events: &[FaultEvent],
    cfg: &WindowConfig,
    metrics: Option<&[String]>,
) -> Windows {
    let metrics: Vec<String> = match metrics {
        Some(m) => m.to_vec(),
        None => {
            let mut all: Vec<String> = periods.iter().flat_map(|(_, f)| f.metric_names()).collect();
            all.sort();
            all.dedup();
            all
        }
    };
    let onset_min = onset_min_ms(cfg);
    let mut out = Windows { feature_names: feature_names(&metrics), metrics, ..Windows::default() };
    for (period, frame) in periods {
        let cols = frame.columns(&out.metrics);
        let mut ends: Vec<i64> = Vec::new();
        let mut end = period.start_ms + cfg.window_ms;
        while end <= period.end_ms {
            ends.push(end);
            end += cfg.stride_ms;
        }
        // Onset windows: the fault's first `onset_min` up to a window less
        // a step, on the grid.
        let step = cfg.step_ms.max(1);
        for e in events.iter().filter(|e| frame.nodes.iter().any(|n| n.node == e.node)) {
            let first = e.start_ms + onset_min;
            let mut end = frame.start_ms + (first - frame.start_ms).div_euclid(step) * step;
            if end < first {
                end += step;
            }
            while end < e.start_ms + cfg.window_ms && end <= e.end_ms {
                if end - cfg.window_ms >= period.start_ms && end <= period.end_ms {
                    ends.push(end);
                }
                end += step;
            }
        }
        ends.sort_unstable();
        ends.dedup();
        for end in ends {
            let end_idx = frame.index_at(end);
            if end_idx < cfg.samples() {
                continue;
            }
            let feats = window_features_of(&cols, end_idx, cfg, out.metrics.len(), None);
            for (node, f) in frame.nodes.iter().zip(feats) {
                let (labels, edge) =
                    window_labels(events, &node.node, end - cfg.window_ms, end, onset_min);
                out.rows.push(WindowRow {
                    case: period.case.clone(),
                    node: node.node.clone(),
                    end_ms: end,
                    labels,
                    edge,
                });
                out.x.extend(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSeries;

    fn ev(node: &str, kind: &str, s: i64, e: i64) -> FaultEvent {
        FaultEvent {
            case: "c1".into(),
            node: node.into(),
            kind: kind.into(),
            start_ms: s,
            end_ms: e,
        }
    }

    #[test]
    fn majority_onset_labels_and_edges() {
        let events = [
            ev("n1", "cpu_stress", 10_000, 40_000),
            ev("n1", "disk_stress", 20_000, 40_000),
            ev("n2", "memory_stress", 0, 100_000),
        ];
        let l = |node: &str, s: i64| window_labels(&events, node, s, s + 10_000, 3_000);
        let cpu = || vec!["cpu_stress".to_string()];
        let both = || vec!["cpu_stress".to_string(), "disk_stress".to_string()];
        // Entirely inside the cpu fault, before the disk one.
        assert_eq!(l("n1", 10_000), (cpu(), false));
        // Compound: both cover the window.
        assert_eq!(l("n1", 25_000), (both(), false));
        // The cpu fault began inside and covers the last 4 s, then 5 s:
        // onset windows, labelled and for training.
        assert_eq!(l("n1", 4_000), (cpu(), false));
        assert_eq!(l("n1", 5_000), (cpu(), false));
        // The last 2 s only: too recent to say, an unlabelled edge.
        assert_eq!(l("n1", 2_000), (vec![], true));
        // Covered by cpu, while disk began 2 s before the end: too recent,
        // so an edge (labelled cpu, not for training).
        assert_eq!(l("n1", 12_000), (cpu(), true));
        // The end of both faults: 7 s of 10 is a majority but an edge;
        // 5 s is neither (an end is not an onset).
        assert_eq!(l("n1", 33_000), (both(), true));
        assert_eq!(l("n1", 35_000), (vec![], true));
        // A fault shorter than the onset length inside a window is an edge.
        let short = [ev("n1", "cpu_stress", 12_000, 16_000)];
        assert_eq!(window_labels(&short, "n1", 10_000, 20_000, 3_000), (vec![], true));
        // Other nodes' faults do not label this one; after the end it is normal.
        assert_eq!(l("n1", 40_000), (vec![], false));
        assert_eq!(l("n2", 40_000), (vec!["memory_stress".to_string()], false));
        let cfg = WindowConfig::default();
        assert_eq!(onset_min_ms(&cfg), 3_000);
        assert_eq!(onset_min_ms(&WindowConfig { window_ms: 60_000, ..cfg }), 15_000);
    }

    #[test]
    fn windows_over_periods() {
        let series = |v: f64| NodeSeries {
            node: String::new(),
            metrics: [("m".to_string(), vec![v; 30])].into(),
        };
        let mut a = series(1.0);
        a.node = "a".into();
        let mut b = series(2.0);
        b.node = "b".into();
        let frame = Frame { start_ms: 0, step_ms: 1000, len: 30, nodes: vec![a, b] };
        let cfg = WindowConfig {
            window_ms: 10_000,
            stride_ms: 5_000,
            step_ms: 1000,
            baseline_ms: 10_000,
        };
        let period = Period { case: "k".into(), start_ms: 10_000, end_ms: 30_000 };
        let events = [ev("b", "cpu_stress", 20_000, 30_000)];
        let w = build_windows(&[(period, frame)], &events, &cfg, None);
        // Ends every stride (20, 25, 30 s) and in the fault's onset every
        // step, from 3 s in to a window less a step (23..=29 s) × 2 nodes.
        let mut ends: Vec<i64> = w.rows.iter().map(|r| r.end_ms).collect();
        ends.dedup();
        assert_eq!(ends, [20, 23, 24, 25, 26, 27, 28, 29, 30].map(|s| s * 1000));
        assert_eq!(w.rows.len(), 18);
        assert_eq!(w.width(), crate::features::STATS.len());
        assert_eq!(w.x.len(), 18 * crate::features::STATS.len());
        let labelled: Vec<(&str, i64, bool)> = w
            .rows
            .iter()
            .filter(|r| !r.labels.is_empty())
            .map(|r| (r.node.as_str(), r.end_ms, r.edge))
            .collect();
        // Every window of b from 3 s into the fault is labelled, none an edge.
        let want: Vec<(&str, i64, bool)> = (23..=30).map(|s| ("b", s * 1000, false)).collect();
        assert_eq!(labelled, want);
        assert!(w.rows.iter().all(|r| !r.edge));
        assert_eq!(w.types(), vec!["cpu_stress".to_string()]);
        assert_eq!(w.row(1)[0], 2.0);
        let s = w.subset(&[17, 0]);
        assert_eq!(s.rows[0].end_ms, 30_000);
        assert_eq!(s.row(1)[0], 1.0);
    }
}
