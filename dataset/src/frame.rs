//! The data the diagnosis reads: per-node series on a regular grid
//! ([`Frame`]), the faults that label them ([`FaultEvent`]), the periods
//! of cases and the window geometry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per-node series on one regular time grid: sample `i` is at
/// `start_ms + i * step_ms`. Values are NaN where nothing was sampled;
/// counters are already per-second rates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub start_ms: i64,
    pub step_ms: i64,
    pub len: usize,
    pub nodes: Vec<NodeSeries>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSeries {
    pub node: String,
    /// Metric name → `len` values.
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl Frame {
    /// Index of the first sample at or after `ts_ms` (may be `len`).
    pub fn index_at(&self, ts_ms: i64) -> usize {
        if ts_ms <= self.start_ms {
            return 0;
        }
        let i = (ts_ms - self.start_ms + self.step_ms - 1) / self.step_ms.max(1);
        (i as usize).min(self.len)
    }

    pub fn time_of(&self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.step_ms
    }

    /// Ends the frame at the slot of `to_ms` (a frame made up to a later
    /// time, cut to what [`Dataset::frame`](crate::Dataset::frame) up to
    /// `to_ms` holds): series and nodes left without a value go.
    pub fn truncate(&mut self, to_ms: i64) {
        let len = usize::try_from((to_ms - self.start_ms).div_euclid(self.step_ms.max(1)) + 1)
            .unwrap_or(0)
            .min(self.len);
        self.len = len;
        for n in &mut self.nodes {
            n.metrics.retain(|_, v| {
                v.truncate(len);
                v.iter().any(|x| !x.is_nan())
            });
        }
        self.nodes.retain(|n| !n.metrics.is_empty());
    }

    /// Each node's series of each of `metrics` (`[node][metric]`, None where
    /// a node lacks one). A sorted list is matched in one pass over each
    /// node's sorted map instead of one lookup per pair, which dominated
    /// ranking time at a few hundred metrics.
    pub fn columns(&self, metrics: &[String]) -> Vec<Vec<Option<&[f64]>>> {
        fn node_columns<'a>(
            n: &'a NodeSeries,
            metrics: &[String],
            sorted: bool,
        ) -> Vec<Option<&'a [f64]>> {
            if !sorted {
                return metrics.iter().map(|m| n.metrics.get(m).map(Vec::as_slice)).collect();
            }
            let mut out = Vec::with_capacity(metrics.len());
            let mut have = n.metrics.iter().peekable();
            for m in metrics {
                while have.peek().is_some_and(|(k, _)| k.as_str() < m.as_str()) {
                    have.next();
                }
                out.push(have.peek().filter(|(k, _)| *k == m).map(|(_, v)| v.as_slice()));
            }
            out
        }
        let sorted = metrics.windows(2).all(|w| w[0] < w[1]);
        // The lookups chase a pointer per metric name (a cache miss each in
        // a large frame): many nodes are split over the cores.
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
        if threads < 2 || self.nodes.len() * metrics.len() < 4096 {
            return self.nodes.iter().map(|n| node_columns(n, metrics, sorted)).collect();
        }
        let per = self.nodes.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = self
                .nodes
                .chunks(per)
                .map(|part| {
                    s.spawn(move || {
                        part.iter().map(|n| node_columns(n, metrics, sorted)).collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// Every metric name of any node, sorted.
    pub fn metric_names(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.nodes.iter().flat_map(|n| n.metrics.keys().cloned()).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// One injected fault: the ground truth of what was wrong where, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaultEvent {
    /// The case it belongs to (faults of one case share it).
    pub case: String,
    pub node: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Window geometry and feature settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length (default 10 s).
    pub window_ms: i64,
    /// Distance between window ends (default 5 s).
    pub stride_ms: i64,
    /// Sample spacing of the grid (default 1 s).
    pub step_ms: i64,
    /// The node's own reference period, just before the window (default 120 s).
    pub baseline_ms: i64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { window_ms: 10_000, stride_ms: 5_000, step_ms: 1_000, baseline_ms: 120_000 }
    }
}

impl WindowConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.step_ms < 100 || self.step_ms > 60_000 {
            return Err(format!("step_ms must be 100..60000, not {}", self.step_ms));
        }
        if self.window_ms < 3 * self.step_ms || self.window_ms > 3_600_000 {
            return Err(format!(
                "window_ms must hold at least 3 samples and be at most 1 h, not {}",
                self.window_ms
            ));
        }
        if self.stride_ms < self.step_ms || self.stride_ms > self.window_ms * 10 {
            return Err(format!(
                "stride_ms must be at least one step and at most 10 windows, not {}",
                self.stride_ms
            ));
        }
        if self.baseline_ms < self.window_ms || self.baseline_ms > 86_400_000 {
            return Err(format!(
                "baseline_ms must be at least one window and at most a day, not {}",
                self.baseline_ms
            ));
        }
        Ok(())
    }

    pub fn samples(&self) -> usize {
        (self.window_ms / self.step_ms).max(1) as usize
    }
}

/// A stretch of time that belongs to one case (a fault case with its
/// normal periods before and after, or a normal collection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub case: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A fault case's root causes: what a ranking must name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub case: String,
    /// Scenario family or name, for per-scenario rows.
    pub scenario: String,
    /// (node, type) root causes.
    pub causes: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough nodes × metrics for the lookups to be split over the cores,
    /// with gaps: every node's columns are its own series, in the asked
    /// order, sorted or not.
    #[test]
    fn columns_are_each_nodes_own_series() {
        let nodes: Vec<NodeSeries> = (0..40)
            .map(|i| NodeSeries {
                node: format!("n{i}"),
                metrics: (0..150)
                    .filter(|k| (i + k) % 7 != 0)
                    .map(|k| (format!("m{k:03}"), vec![f64::from(i * 1000 + k); 2]))
                    .collect(),
            })
            .collect();
        let frame = Frame { start_ms: 0, step_ms: 1000, len: 2, nodes };
        let mut metrics: Vec<String> = (0..152).map(|k| format!("m{k:03}")).collect();
        for sorted in [true, false] {
            if !sorted {
                metrics.reverse();
            }
            let cols = frame.columns(&metrics);
            assert_eq!(cols.len(), 40);
            assert!(cols.iter().flatten().any(Option::is_none), "the frame has gaps");
            for (i, node) in cols.iter().enumerate() {
                for (m, col) in metrics.iter().zip(node) {
                    assert_eq!(*col, frame.nodes[i].metrics.get(m).map(Vec::as_slice), "n{i} {m}");
                }
            }
        }
    }
}
