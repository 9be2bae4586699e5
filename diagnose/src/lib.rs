//! Diagnosis, pure: windows and features, labels, grouped splits, the
//! XGBoost classifiers, the node graph and PageRank, the statistical
//! scorer, ranking and evaluation. No I/O and no async: callers read the
//! store, build a [`Frame`] and run this under `spawn_blocking`.
//!
//! The method is DistDiagnosis': one binary classifier per anomaly type
//! gives p(type | node) for every node's latest window; a graph over the
//! nodes weighted by the mean |Pearson r| of their series gives PageRank;
//! score(node, type) = p(type | node) × PR(node), with one change of ours:
//! p enters as its excess over the other nodes' median p of the type, so
//! that what every node shows names no node (see [`rank`]).

pub mod eval;
pub mod features;
pub mod graph;
pub mod labels;
pub mod model;
pub mod rank;
pub mod split;
pub mod stat;

pub mod evaluate;

pub use distdiag_dataset::{FaultEvent, Frame, NodeSeries, Period, Truth, WindowConfig};
pub use evaluate::DatasetExt;

/// Median (NaN of an empty slice). Reorders `v` (selection, not a sort).
pub(crate) fn median_of(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (lo, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        let below = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (below + mid) / 2.0
    }
}

/// Median of a sorted slice without element `skip`.
pub(crate) fn median_without(sorted: &[f64], skip: usize) -> f64 {
    let n = sorted.len().saturating_sub(1);
    if n == 0 {
        return f64::NAN;
    }
    let at = |k: usize| if k < skip { sorted[k] } else { sorted[k + 1] };
    if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    }
}

/// Finite values of a slice.
pub(crate) fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median_of(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median_of(&mut []).is_nan());
        let sorted = [1.0, 2.0, 3.0, 10.0];
        assert_eq!(median_without(&sorted, 3), 2.0);
        assert_eq!(median_without(&sorted, 0), 3.0);
        assert_eq!(median_without(&sorted[..3], 1), 2.0);
        assert!(median_without(&[5.0], 0).is_nan());
    }
}
