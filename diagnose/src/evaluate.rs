//! A dataset as the diagnosis sees it: labelled windows, and its fault
//! cases ranked by a model, the statistical scorer and Dummy side by side,
//! at the fault and with the diagnosis time shifted by ±30 s, and followed
//! from each fault's start for how soon they are named.

use std::fmt::Write as _;

use distdiag_dataset::{Dataset, Frame, Period, Truth};

pub use distdiag_api::eval::{Evaluation, MethodReports};

use crate::eval::{
    detection, evaluate, Detected, Ranked, DETECTION_HOLD_MS, DETECTION_HORIZON_MS, DETECTION_P,
};
use crate::labels::{build_windows, Windows};
use crate::model::Scorer;
use crate::rank::{detection_times, rank_cases, At, Ranker};

/// One method's ranked cases, at the fault and with the diagnosis time
/// shifted by ±30 s: the raw material of a [`MethodReports`], so that
/// rankings made by different models (one per cross-validation fold) can
/// be pooled before they are scored.
#[derive(Debug, Clone, Default)]
pub struct Rankings {
    pub at_fault: Vec<(Truth, Ranked)>,
    pub minus_30s: Vec<(Truth, Ranked)>,
    pub plus_30s: Vec<(Truth, Ranked)>,
    /// Each case's detection time (see [`detection_times`]).
    pub detection: Vec<Detected>,
}

impl Rankings {
    pub fn append(&mut self, mut other: Rankings) {
        self.at_fault.append(&mut other.at_fault);
        self.minus_30s.append(&mut other.minus_30s);
        self.plus_30s.append(&mut other.plus_30s);
        self.detection.append(&mut other.detection);
    }

    pub fn report(&self) -> MethodReports {
        MethodReports {
            at_fault: evaluate(&self.at_fault),
            shifted_minus_30s: evaluate(&self.minus_30s),
            shifted_plus_30s: evaluate(&self.plus_30s),
            detection: detection(
                &self.detection,
                DETECTION_HORIZON_MS,
                DETECTION_HOLD_MS,
                DETECTION_P,
            ),
        }
    }
}

/// Model, statistical scorer and Dummy rankings of the same cases.
#[derive(Debug, Clone, Default)]
pub struct CaseRankings {
    pub case_ids: Vec<String>,
    pub model: Option<Rankings>,
    pub statistical: Rankings,
    pub dummy: Rankings,
}

impl CaseRankings {
    pub fn evaluation(&self) -> Evaluation {
        Evaluation {
            cases: self.case_ids.len(),
            case_ids: self.case_ids.clone(),
            model: self.model.as_ref().map(Rankings::report),
            statistical: self.statistical.report(),
            dummy: self.dummy.report(),
        }
    }
}

/// What the diagnosis does with a dataset: its labelled windows, its
/// windows as CSV for other tools, and its fault cases ranked and scored.
pub trait DatasetExt {
    /// Labelled windows of every case.
    fn windows(&self, metrics: Option<&[String]>) -> Windows;
    /// `windows.csv` of the export format: every window's labels and features.
    fn windows_csv(&self) -> String;
    /// Evaluates the fault cases of this dataset except `exclude` (the
    /// cases a model trained on) with `scorer`, the statistical scorer and
    /// Dummy (seeded).
    fn evaluate(
        &self,
        scorer: Option<&Scorer>,
        exclude: &[String],
        seed: u64,
    ) -> Result<Evaluation, String>;
    /// Ranks the fault cases of this dataset except `exclude` with
    /// `scorer`, the statistical scorer and Dummy (seeded), at the point
    /// `at` of each case's faults and 30 s before and after it.
    fn rank(
        &self,
        scorer: Option<&Scorer>,
        exclude: &[String],
        seed: u64,
        at: At,
    ) -> Result<CaseRankings, String>;
}

impl DatasetExt for Dataset {
    fn windows(&self, metrics: Option<&[String]>) -> Windows {
        build_windows(&self.period_frames(), &self.labels, &self.manifest.window, metrics)
    }

    fn windows_csv(&self) -> String {
        let w = self.windows(None);
        let mut s = String::from("case,node,end_ms,labels,edge");
        for f in &w.feature_names {
            s.push(',');
            s.push_str(&distdiag_dataset::csv_field(f));
        }
        s.push('\n');
        for (i, r) in w.rows.iter().enumerate() {
            let _ = write!(
                s,
                "{},{},{},{},{}",
                distdiag_dataset::csv_field(&r.case),
                distdiag_dataset::csv_field(&r.node),
                r.end_ms,
                distdiag_dataset::csv_field(&r.labels.join(";")),
                u8::from(r.edge)
            );
            for x in w.row(i) {
                if x.is_nan() {
                    s.push(',');
                } else {
                    let _ = write!(s, ",{x}");
                }
            }
            s.push('\n');
        }
        s
    }

    fn evaluate(
        &self,
        scorer: Option<&Scorer>,
        exclude: &[String],
        seed: u64,
    ) -> Result<Evaluation, String> {
        Ok(self.rank(scorer, exclude, seed, At::Middle)?.evaluation())
    }

    fn rank(
        &self,
        scorer: Option<&Scorer>,
        exclude: &[String],
        seed: u64,
        at: At,
    ) -> Result<CaseRankings, String> {
        let truths: Vec<Truth> =
            self.truths().into_iter().filter(|t| !exclude.contains(&t.case)).collect();
        if truths.is_empty() {
            return Err("no fault cases to evaluate (every case was used for training, or the dataset has none)".into());
        }
        let periods: Vec<(Period, Frame)> = self
            .period_frames()
            .into_iter()
            .filter(|(p, _)| truths.iter().any(|t| t.case == p.case))
            .collect();
        let cfg = scorer.map_or(self.manifest.window, |s| s.window);
        let mut types: Vec<String> =
            truths.iter().flat_map(|t| t.causes.iter().map(|c| c.1.clone())).collect();
        if let Some(s) = scorer {
            types.extend(s.types());
        }
        types.sort();
        types.dedup();
        let run = |ranker: &Ranker<'_>| -> Result<Rankings, String> {
            Ok(Rankings {
                at_fault: rank_cases(&periods, &truths, &self.labels, &cfg, ranker, at, 0)?,
                minus_30s: rank_cases(&periods, &truths, &self.labels, &cfg, ranker, at, -30_000)?,
                plus_30s: rank_cases(&periods, &truths, &self.labels, &cfg, ranker, at, 30_000)?,
                detection: detection_times(
                    &periods,
                    &truths,
                    &self.labels,
                    &cfg,
                    ranker,
                    (DETECTION_HORIZON_MS, DETECTION_HOLD_MS, DETECTION_P),
                )?,
            })
        };
        Ok(CaseRankings {
            case_ids: truths.iter().map(|t| t.case.clone()).collect(),
            model: scorer.map(|s| run(&Ranker::Model(s))).transpose()?,
            statistical: run(&Ranker::Statistical { types: &types, reference_end: None })?,
            dummy: run(&Ranker::Dummy(&types, seed))?,
        })
    }
}

/// A Markdown table of an evaluation: AC@1/3/5, Avg@5 and macro-F1 per
/// method, at the fault and shifted, then per scenario.
pub fn evaluation_markdown(e: &Evaluation) -> String {
    let mut s = format!("{} cases. AC@k of the (node, type) pairs; node AC@k of the node alone.\n\n| method | time | AC@1 | AC@3 | AC@5 | Avg@5 | node AC@1 | node AC@3 | macro-F1 |\n|---|---|---|---|---|---|---|---|---|\n", e.cases);
    let mut methods: Vec<(&str, &MethodReports)> = Vec::new();
    if let Some(m) = &e.model {
        methods.push(("model", m));
    }
    methods.push(("statistical", &e.statistical));
    methods.push(("dummy", &e.dummy));
    for (name, m) in &methods {
        for (when, r) in [
            ("at fault", &m.at_fault),
            ("-30 s", &m.shifted_minus_30s),
            ("+30 s", &m.shifted_plus_30s),
        ] {
            let o = &r.overall;
            let _ = writeln!(
                s,
                "| {name} | {when} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                o.ac1, o.ac3, o.ac5, o.avg5, r.node.ac1, r.node.ac3, r.macro_f1
            );
        }
    }
    let _ = write!(s, "\nDetection: each case ranked at every sample from its first fault's start; detected from when the top entry is a cause with p >= {DETECTION_P} and stays so for {} s; wrong first: a wrong top entry with p >= {DETECTION_P} came before.\n\n| method | cases | detected (from within {} s) | median | p90 | within 6 s | within 10 s | wrong first |\n|---|---|---|---|---|---|---|---|\n", DETECTION_HOLD_MS / 1000, DETECTION_HORIZON_MS / 1000);
    let secs =
        |ms: Option<i64>| ms.map_or("never".to_string(), |v| format!("{:.0} s", v as f64 / 1000.0));
    for (name, m) in &methods {
        let d = &m.detection;
        let _ = writeln!(
            s,
            "| {name} | {} | {:.3} | {} | {} | {:.3} | {:.3} | {:.3} |",
            d.cases,
            d.detected,
            secs(d.median_ms),
            secs(d.p90_ms),
            d.within_6s,
            d.within_10s,
            d.wrong_first
        );
    }
    s.push_str("\n| method | type | precision | recall | F1 |\n|---|---|---|---|---|\n");
    for (name, m) in &methods {
        for (kind, p) in &m.at_fault.per_type {
            let _ = writeln!(
                s,
                "| {name} | {kind} | {:.3} | {:.3} | {:.3} |",
                p.precision, p.recall, p.f1
            );
        }
    }
    // Confusion at the fault: rows the true type, columns what the ranking
    // gave the cause's node first among its top |causes| entries.
    for (name, m) in &methods {
        let c = &m.at_fault.confusion;
        let mut cols: Vec<&String> = c.values().flat_map(|r| r.keys()).collect();
        cols.sort();
        cols.dedup();
        let _ = write!(s, "\nConfusion, {name} (rows: true type; columns: the type given to its node; none: node not in the top):\n\n| true \\ given |");
        for col in &cols {
            let _ = write!(s, " {col} |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(cols.len()));
        s.push('\n');
        for (t, row) in c {
            let _ = write!(s, "| {t} |");
            for col in &cols {
                let _ = write!(s, " {} |", row.get(*col).copied().unwrap_or(0));
            }
            s.push('\n');
        }
    }
    s.push_str("\n| method | scenario | cases | AC@1 | AC@3 | AC@5 | Avg@5 |\n|---|---|---|---|---|---|---|\n");
    for (name, m) in &methods {
        for (scen, o) in &m.at_fault.per_scenario {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                if scen.is_empty() { "-" } else { scen },
                o.cases,
                o.ac1,
                o.ac3,
                o.ac5,
                o.avg5
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use distdiag_dataset::testing::{shifted, two_node_cpu_case};

    use super::*;

    #[test]
    fn windows_and_evaluation_of_a_small_case() {
        let d = two_node_cpu_case();
        let w = d.windows(None);
        assert_eq!(
            w.rows.len(),
            2 * (7 + 2),
            "ends 25..=55 s by 5 s and the fault's onset at 43 and 44 s, two nodes"
        );
        assert!(w
            .rows
            .iter()
            .any(|r| r.node == "n2" && r.labels == vec!["cpu_stress".to_string()]));
        let csv = d.windows_csv();
        assert!(csv.starts_with("case,node,end_ms,labels,edge,cg.cpu_usage|mean,"));
        assert_eq!(csv.lines().count(), 1 + 18);
        // The statistical scorer finds n2 (it jumps against its own past); Dummy is there too.
        let e = d.evaluate(None, &[], 1).unwrap();
        assert_eq!(e.cases, 1);
        assert_eq!(e.statistical.at_fault.overall.ac1, 1.0);
        assert_eq!(e.dummy.at_fault.overall.cases, 1);
        // Each method's detection is reported on the same case.
        assert_eq!(e.statistical.detection.cases, 1);
        assert_eq!(e.dummy.detection.per_case[0].0, "c1");
        assert!(evaluation_markdown(&e).contains("| dummy | 1 |"));
        assert!(evaluation_markdown(&e).contains("| statistical | at fault | 1.000 |"));
        assert!(d.evaluate(None, &["c1".to_string()], 1).is_err());
    }

    #[test]
    fn merged_recordings_keep_each_cases_windows() {
        let mut d = two_node_cpu_case();
        d.merge(shifted(&two_node_cpu_case(), 3_600_000, "c2")).unwrap();
        assert_eq!(d.windows(None).rows.len(), 2 * 2 * 9);
        assert_eq!(d.drop_cases_with("cpu_stress"), 2);
        assert!(d.windows(None).rows.is_empty());
    }
}
