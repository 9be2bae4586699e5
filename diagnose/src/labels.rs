//! Labelled windows. A node's window takes every fault type active on that
//! node for more than half of it (several at once for compound faults);
//! a window that a fault only partly covers straddles a fault edge and is
//! kept for evaluation but dropped from training.

use serde::{Deserialize, Serialize};

use super::features::{feature_names, window_features_of};
pub use super::Period;
use super::{FaultEvent, Frame, WindowConfig};

/// Types of `node` in the window `[start, end)`, sorted, and whether a
/// fault edge falls inside it.
pub fn window_labels(
    events: &[FaultEvent],
    node: &str,
    start: i64,
    end: i64,
) -> (Vec<String>, bool) {
    let len = (end - start).max(1);
    let mut types = Vec::new();
    let mut edge = false;
    for e in events.iter().filter(|e| e.node == node) {
        let overlap = (e.end_ms.min(end) - e.start_ms.max(start)).max(0);
        if overlap == 0 {
            continue;
        }
        if overlap < len {
            edge = true;
        }
        if overlap * 2 > len {
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
/// from one window after the period's start to its end. `metrics` fixes
/// the feature columns (a model's list); by default the union of the frames'.
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
    let mut out = Windows { feature_names: feature_names(&metrics), metrics, ..Windows::default() };
    for (period, frame) in periods {
        let cols = frame.columns(&out.metrics);
        let mut end = period.start_ms + cfg.window_ms;
        while end <= period.end_ms {
            let end_idx = frame.index_at(end);
            if end_idx >= cfg.samples() {
                let feats = window_features_of(&cols, end_idx, cfg, out.metrics.len(), None);
                for (node, f) in frame.nodes.iter().zip(feats) {
                    let (labels, edge) =
                        window_labels(events, &node.node, end - cfg.window_ms, end);
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
            end += cfg.stride_ms;
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
    fn majority_labels_and_edges() {
        let events = [
            ev("n1", "cpu_stress", 10_000, 40_000),
            ev("n1", "disk_stress", 20_000, 40_000),
            ev("n2", "memory_stress", 0, 100_000),
        ];
        // Entirely inside the cpu fault, before the disk one.
        assert_eq!(
            window_labels(&events, "n1", 10_000, 20_000),
            (vec!["cpu_stress".to_string()], false)
        );
        // Compound: both cover the window.
        assert_eq!(
            window_labels(&events, "n1", 25_000, 35_000),
            (vec!["cpu_stress".to_string(), "disk_stress".to_string()], false)
        );
        // Straddles the cpu start: 6 of 10 s → labelled, but an edge.
        assert!(window_labels(&events, "n1", 4_000, 14_000).1);
        assert_eq!(
            window_labels(&events, "n1", 4_000, 14_000).0,
            Vec::<String>::new(),
            "4 of 10 s is not a majority"
        );
        assert_eq!(
            window_labels(&events, "n1", 6_000, 16_000),
            (vec!["cpu_stress".to_string()], true)
        );
        // Exactly half is not a majority.
        assert_eq!(window_labels(&events, "n1", 5_000, 15_000), (vec![], true));
        // Other nodes' faults do not label this one; after the end it is normal.
        assert_eq!(window_labels(&events, "n1", 40_000, 50_000), (vec![], false));
        assert_eq!(
            window_labels(&events, "n2", 40_000, 50_000),
            (vec!["memory_stress".to_string()], false)
        );
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
        // Ends at 20, 25, 30 s × 2 nodes.
        assert_eq!(w.rows.len(), 6);
        assert_eq!(w.width(), 12);
        assert_eq!(w.x.len(), 6 * 12);
        let labelled: Vec<(&str, i64, bool)> = w
            .rows
            .iter()
            .filter(|r| !r.labels.is_empty())
            .map(|r| (r.node.as_str(), r.end_ms, r.edge))
            .collect();
        // The window ending at 25 s is half in the fault: an unlabelled edge.
        assert_eq!(labelled, vec![("b", 30_000, false)]);
        assert!(w
            .rows
            .iter()
            .any(|r| r.node == "b" && r.end_ms == 25_000 && r.edge && r.labels.is_empty()));
        assert_eq!(w.types(), vec!["cpu_stress".to_string()]);
        assert_eq!(w.row(1)[0], 2.0);
        let s = w.subset(&[5, 0]);
        assert_eq!(s.rows[0].end_ms, 30_000);
        assert_eq!(s.row(1)[0], 1.0);
    }
}
