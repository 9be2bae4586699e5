//! Evaluation of rankings against known root causes, as the paper defines
//! it: for a case with root causes R and a ranking L of (node, type),
//! AC@k = |R ∩ L[..k]| / min(k, |R|), averaged over cases; Avg@5 is the
//! mean of AC@1..AC@5. Per-type precision, recall and F1 take the top |R|
//! entries as the prediction; the confusion matrix pairs each true cause
//! with the type the ranking gives its node first ("none" when its node is
//! not among the top |R|).

use std::collections::BTreeMap;

pub use distdiag_api::eval::{AcRow, CaseRow, Detection, Prf, Report};
pub use distdiag_dataset::Truth;

/// A ranking as (node, type), best first.
pub type Ranked = Vec<(String, String)>;

/// A case's truth with its ranking, borrowed.
type Scored<'a> = (&'a Truth, &'a [(String, String)]);
/// A case's AC@k: ranking, true causes, k.
type Hit = fn(&[(String, String)], &[(String, String)], usize) -> f64;

/// AC@k of one ranking.
pub fn ac_at_k(ranking: &[(String, String)], causes: &[(String, String)], k: usize) -> f64 {
    if causes.is_empty() || k == 0 {
        return 0.0;
    }
    let hits = ranking.iter().take(k).filter(|e| causes.contains(e)).count();
    hits as f64 / k.min(causes.len()) as f64
}

/// AC@k of the node alone: the ranking's distinct nodes, best first,
/// against the distinct cause nodes.
pub fn node_ac_at_k(ranking: &[(String, String)], causes: &[(String, String)], k: usize) -> f64 {
    let mut nodes: Vec<&str> = Vec::new();
    for (n, _) in ranking {
        if !nodes.contains(&n.as_str()) {
            nodes.push(n);
        }
    }
    let mut wanted: Vec<&str> = causes.iter().map(|c| c.0.as_str()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() || k == 0 {
        return 0.0;
    }
    let hits = nodes.iter().take(k).filter(|n| wanted.contains(n)).count();
    hits as f64 / k.min(wanted.len()) as f64
}

/// How much of each case's ranking a report keeps.
pub const CASE_TOP: usize = 3;

/// The mean of `hit` (a case's AC@k, by pair or by node) over the items.
fn row_by(items: &[Scored<'_>], hit: Hit) -> AcRow {
    let n = items.len();
    if n == 0 {
        return AcRow::default();
    }
    let mean = |k: usize| items.iter().map(|(t, r)| hit(r, &t.causes, k)).sum::<f64>() / n as f64;
    AcRow {
        cases: n,
        ac1: mean(1),
        ac3: mean(3),
        ac5: mean(5),
        avg5: (1..=5).map(mean).sum::<f64>() / 5.0,
    }
}

/// The figures of rankings (one per case, best first) against their truths.
pub fn evaluate(results: &[(Truth, Ranked)]) -> Report {
    let items: Vec<Scored<'_>> = results.iter().map(|(t, r)| (t, r.as_slice())).collect();
    let mut report = Report {
        overall: row_by(&items, ac_at_k),
        node: row_by(&items, node_ac_at_k),
        ..Report::default()
    };
    let mut scenarios: BTreeMap<&str, Vec<Scored<'_>>> = BTreeMap::new();
    for it in &items {
        scenarios.entry(it.0.scenario.as_str()).or_default().push(*it);
    }
    report.per_scenario =
        scenarios.into_iter().map(|(s, v)| (s.to_string(), row_by(&v, ac_at_k))).collect();
    report.per_case = results
        .iter()
        .map(|(t, r)| CaseRow {
            case: t.case.clone(),
            scenario: t.scenario.clone(),
            causes: t.causes.clone(),
            top: r.iter().take(CASE_TOP).cloned().collect(),
            ac1: ac_at_k(r, &t.causes, 1),
        })
        .collect();
    for (truth, ranking) in results {
        let k = truth.causes.len().max(1);
        let top: Vec<&(String, String)> = ranking.iter().take(k).collect();
        for e in &top {
            let prf = report.per_type.entry(e.1.clone()).or_default();
            if truth.causes.contains(e) {
                prf.tp += 1;
            } else {
                prf.fp += 1;
            }
        }
        for c in &truth.causes {
            if !top.contains(&c) {
                report.per_type.entry(c.1.clone()).or_default().fn_ += 1;
            }
            let predicted =
                top.iter().find(|e| e.0 == c.0).map_or("none".to_string(), |e| e.1.clone());
            *report.confusion.entry(c.1.clone()).or_default().entry(predicted).or_default() += 1;
        }
    }
    for p in report.per_type.values_mut() {
        p.finish();
    }
    let true_types: Vec<&String> = report.confusion.keys().collect();
    report.macro_f1 = if true_types.is_empty() {
        0.0
    } else {
        true_types.iter().map(|t| report.per_type.get(*t).map_or(0.0, |p| p.f1)).sum::<f64>()
            / true_types.len() as f64
    };
    report
}

/// How long after a case's start a detection may begin.
pub const DETECTION_HORIZON_MS: i64 = 30_000;
/// How long the top entry must stay right for a detection.
pub const DETECTION_HOLD_MS: i64 = 5_000;
/// The probability the top entry needs for a detection (the seeds' bar and
/// the default alert threshold).
pub const DETECTION_P: f64 = 0.5;

/// One case followed from its start (see [`crate::rank::detection_times`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    pub truth: Truth,
    /// When the detection began (ms after the start); None: not detected.
    pub at_ms: Option<i64>,
    /// A wrong entry was on top with p ≥ the threshold before.
    pub wrong_first: bool,
}

/// The [`Detection`] figures of followed cases.
pub fn detection(cases: &[Detected], horizon_ms: i64, hold_ms: i64, threshold: f64) -> Detection {
    let n = cases.len();
    // Undetected cases sort last, as never.
    let mut sorted: Vec<i64> = cases.iter().map(|c| c.at_ms.unwrap_or(i64::MAX)).collect();
    sorted.sort_unstable();
    // The value at or below which a share q of the cases lie.
    let quantile = |q: f64| {
        let k = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        sorted.get(k).copied().filter(|v| *v != i64::MAX)
    };
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let within = |ms: i64| share(sorted.iter().filter(|v| **v <= ms).count());
    Detection {
        cases: n,
        detected: share(sorted.iter().filter(|v| **v != i64::MAX).count()),
        wrong_first: share(cases.iter().filter(|c| c.wrong_first).count()),
        horizon_ms,
        hold_ms,
        threshold,
        median_ms: quantile(0.5),
        p90_ms: quantile(0.9),
        within_6s: within(6_000),
        within_10s: within(10_000),
        per_case: cases.iter().map(|c| (c.truth.case.clone(), c.at_ms)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: &str, t: &str) -> (String, String) {
        (n.into(), t.into())
    }

    #[test]
    fn detection_by_hand() {
        let c = |case: &str, at_ms: Option<i64>, wrong_first: bool| Detected {
            truth: Truth { case: case.into(), scenario: "s".into(), causes: vec![] },
            at_ms,
            wrong_first,
        };
        let cases = [
            c("a", Some(3_000), false),
            c("b", Some(7_000), true),
            c("c", None, true),
            c("d", Some(5_000), false),
        ];
        let d = detection(&cases, 30_000, 5_000, 0.5);
        assert_eq!((d.cases, d.detected, d.wrong_first), (4, 0.75, 0.5));
        // Sorted 3, 5, 7, never: the median is the 2nd, p90 the 4th (never).
        assert_eq!(d.median_ms, Some(5_000));
        assert_eq!(d.p90_ms, None);
        assert_eq!((d.within_6s, d.within_10s), (0.5, 0.75));
        assert_eq!(d.per_case[2], ("c".to_string(), None));
        let none = detection(&[], 30_000, 5_000, 0.5);
        assert_eq!((none.cases, none.median_ms, none.within_6s), (0, None, 0.0));
    }

    #[test]
    fn ac_at_k_by_hand() {
        let ranking = vec![e("n2", "cpu"), e("n1", "disk"), e("n1", "cpu"), e("n3", "cpu")];
        // One cause at rank 3.
        let one = [e("n1", "cpu")];
        assert_eq!(ac_at_k(&ranking, &one, 1), 0.0);
        assert_eq!(ac_at_k(&ranking, &one, 3), 1.0);
        assert_eq!(ac_at_k(&ranking, &one, 5), 1.0);
        // Two causes, at ranks 1 and 3: AC@1 = 1/1, AC@2 = 1/2, AC@3 = 2/2.
        let two = [e("n2", "cpu"), e("n1", "cpu")];
        assert_eq!(ac_at_k(&ranking, &two, 1), 1.0);
        assert_eq!(ac_at_k(&ranking, &two, 2), 0.5);
        assert_eq!(ac_at_k(&ranking, &two, 3), 1.0);
        assert_eq!(ac_at_k(&ranking, &[], 3), 0.0);
    }

    #[test]
    fn report_by_hand() {
        let t = |case: &str, scen: &str, causes: Vec<(String, String)>| Truth {
            case: case.into(),
            scenario: scen.into(),
            causes,
        };
        let results = vec![
            // Hit at rank 1.
            (t("c1", "A", vec![e("n1", "cpu")]), vec![e("n1", "cpu"), e("n2", "cpu")]),
            // Right node, wrong type first; cause at rank 2.
            (t("c2", "A", vec![e("n2", "disk")]), vec![e("n2", "cpu"), e("n2", "disk")]),
            // Two causes: one in the top 2, the other's node absent.
            (
                t("c3", "B", vec![e("n1", "cpu"), e("n3", "disk")]),
                vec![e("n1", "cpu"), e("n2", "disk"), e("n3", "disk")],
            ),
        ];
        let r = evaluate(&results);
        assert_eq!(r.overall.cases, 3);
        assert!((r.overall.ac1 - 2.0 / 3.0).abs() < 1e-12);
        // AC@3: c1 1, c2 1, c3 2/2 = 1.
        assert!((r.overall.ac3 - 1.0).abs() < 1e-12);
        // Avg@5: c1 1 at every k; c2 0,1,1,1,1; c3 1, 1/2, 1, 1, 1.
        let avg = (5.0 + 4.0 + 4.5) / 3.0 / 5.0;
        assert!((r.overall.avg5 - avg).abs() < 1e-12, "{}", r.overall.avg5);
        // Node AC@1: c1 n1 ✓, c2 n2 ✓, c3 n1 ✓ (n3 is third of the nodes n1, n2, n3).
        assert_eq!(r.node.ac1, 1.0);
        // Node AC@2: c3 has n1 and n2 in its top 2 nodes: 1 of its 2 cause nodes.
        assert!((node_ac_at_k(&results[2].1, &results[2].0.causes, 2) - 0.5).abs() < 1e-12);
        assert_eq!(node_ac_at_k(&results[1].1, &results[1].0.causes, 1), 1.0);
        assert_eq!(r.per_scenario["A"].cases, 2);
        assert_eq!(r.per_scenario["B"].ac1, 1.0);
        // cpu: predicted n1 cpu (tp), n2 cpu (fp), n1 cpu (tp) → P 2/3, R 1.
        let cpu = r.per_type["cpu"];
        assert_eq!((cpu.tp, cpu.fp, cpu.fn_), (2, 1, 0));
        // disk: n2 disk (fp, in c3's top 2), missed c2's and c3's causes.
        let disk = r.per_type["disk"];
        assert_eq!((disk.tp, disk.fp, disk.fn_), (0, 1, 2));
        assert_eq!(disk.f1, 0.0);
        assert!((r.macro_f1 - (0.8 / 2.0)).abs() < 1e-12, "{}", r.macro_f1);
        assert_eq!(r.confusion["disk"]["cpu"], 1);
        assert_eq!(r.confusion["disk"]["none"], 1);
        assert_eq!(r.confusion["cpu"]["cpu"], 2);
        assert_eq!(r.per_case.len(), 3);
        assert_eq!(r.per_case[1].top, vec![e("n2", "cpu"), e("n2", "disk")]);
        assert_eq!((r.per_case[1].ac1, r.per_case[2].ac1), (0.0, 1.0));
        assert_eq!(r.per_case[2].top.len(), CASE_TOP);
    }
}
