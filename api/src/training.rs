//! `/api/training/*`: normal collection periods, fault cases (opened by
//! `POST /api/anomaly/start` with `collect_training_data`) and the
//! statistics of what has been collected.

use std::collections::BTreeMap;

use distdiag_dataset::FaultEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A normal collection period.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct NormalPeriod {
    pub id: String,
    pub start_ms: i64,
    /// None while it runs.
    pub end_ms: Option<i64>,
}

/// A fault case: the normal data before the fault, the fault, the normal
/// data after it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    /// Free label (a campaign's scenario family); empty by default.
    pub scenario: String,
    pub fault_ids: Vec<String>,
    pub nodes: Vec<String>,
    pub types: Vec<String>,
    pub requested_ms: i64,
    /// Normal data kept before the first fault and after the last.
    pub pre_ms: i64,
    pub post_ms: i64,
    /// Filled from the fault records: first applied, last ended (None while live).
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// A case with its fault events (the labels it contributes).
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct CaseFaults {
    pub case: Case,
    pub faults: Vec<FaultEvent>,
}

/// `GET /api/training/cases`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct CaseList {
    pub cases: Vec<CaseFaults>,
    pub normal_periods: Vec<NormalPeriod>,
}

/// `GET /api/training/stats`: a sample is one node's row; it is anomalous
/// when a case's fault on that node covers it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct Stats {
    pub total_samples: u64,
    pub normal_samples: u64,
    pub anomaly_samples: u64,
    /// Samples (node × timestamp) per fault type.
    pub per_type: BTreeMap<String, u64>,
    pub normal_ratio: f64,
    pub anomaly_ratio: f64,
    /// The smaller of the two shares is at least 30 %.
    pub is_balanced: bool,
    pub normal_periods: usize,
    pub cases: usize,
    pub collecting_normal: bool,
    /// Every fault started opens a case (`POST /api/training/collect`).
    #[serde(default)]
    pub collecting_cases: bool,
}

/// The answer of `POST /api/training/normal/{start,stop}`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct NormalAnswer {
    pub status: String,
    pub message: String,
    pub period: NormalPeriod,
}

/// The answer of `POST /api/training/{collect,stop}`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct CollectAnswer {
    pub status: String,
    pub message: String,
    pub collecting: bool,
}
