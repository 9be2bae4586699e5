//! Evaluation figures, as the paper defines them: AC@k, Avg@5, per-type
//! precision, recall and F1, the confusion matrix — for a model, the
//! statistical scorer and Dummy side by side. Computed by the diagnosis
//! crate; shown by `POST /api/models/{id}/evaluate` and with every model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Precision, recall and F1 of one type.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Prf {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// AC@1/3/5 and Avg@5 over a set of cases.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct AcRow {
    pub cases: usize,
    pub ac1: f64,
    pub ac3: f64,
    pub ac5: f64,
    pub avg5: f64,
}

/// One ranker's figures on a set of cases.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Report {
    #[serde(flatten)]
    pub overall: AcRow,
    /// AC@k of the root-cause node alone: the ranking's distinct nodes in
    /// order against the cases' cause nodes, whatever the type.
    #[serde(default)]
    pub node: AcRow,
    pub per_scenario: BTreeMap<String, AcRow>,
    pub per_type: BTreeMap<String, Prf>,
    /// Mean F1 over the types that are true causes somewhere.
    pub macro_f1: f64,
    /// true type → predicted type → count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Each case's truth beside the head of its ranking.
    #[serde(default)]
    pub per_case: Vec<CaseRow>,
}

/// One case of a [`Report`]: what was wrong and what the ranking put first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseRow {
    pub case: String,
    pub scenario: String,
    pub causes: Vec<(String, String)>,
    /// The first (node, type) entries of the ranking.
    pub top: Vec<(String, String)>,
    pub ac1: f64,
}

impl Prf {
    /// Fills precision, recall and F1 from the counts.
    pub fn finish(&mut self) {
        self.precision =
            if self.tp + self.fp > 0 { self.tp as f64 / (self.tp + self.fp) as f64 } else { 0.0 };
        self.recall =
            if self.tp + self.fn_ > 0 { self.tp as f64 / (self.tp + self.fn_) as f64 } else { 0.0 };
        self.f1 = if self.precision + self.recall > 0.0 {
            2.0 * self.precision * self.recall / (self.precision + self.recall)
        } else {
            0.0
        };
    }
}

/// The figures of one ranker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MethodReports {
    /// At the middle of each case's faults.
    pub at_fault: Report,
    /// With the diagnosis time 30 s earlier and later.
    pub shifted_minus_30s: Report,
    pub shifted_plus_30s: Report,
    /// How soon after each case's start the ranking names a cause.
    #[serde(default)]
    pub detection: Detection,
}

/// How soon the ranking names a fault: each case ranked every grid step
/// from its first fault's start, as an online diagnosis that ranks on every
/// new sample would; a case is detected from the first window end whose top
/// entry is one of its causes with p ≥ `threshold` and stays so for
/// `hold_ms`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Detection {
    pub cases: usize,
    /// Share of the cases detected within the horizon.
    pub detected: f64,
    /// Share of the cases in which a wrong top entry with p ≥ `threshold`
    /// came first.
    pub wrong_first: f64,
    /// How long after the start a detection may begin (ms).
    pub horizon_ms: i64,
    /// How long the top entry must stay right (ms).
    pub hold_ms: i64,
    pub threshold: f64,
    /// Median and 90th percentile of the detection time, an undetected case
    /// counting as never (null when that many cases were not detected).
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    /// Share of the cases detected within 6 s and within 10 s.
    pub within_6s: f64,
    pub within_10s: f64,
    /// Each case's detection time (ms after its start), null when not
    /// detected within the horizon; a case ranked by several
    /// cross-validation dealings appears once per dealing.
    pub per_case: Vec<(String, Option<i64>)>,
}

/// Model, statistical scorer and Dummy side by side on the same cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evaluation {
    pub cases: usize,
    pub case_ids: Vec<String>,
    pub model: Option<MethodReports>,
    pub statistical: MethodReports,
    pub dummy: MethodReports,
}
