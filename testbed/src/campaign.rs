//! Fault campaigns: the DistDiagnosis paper's scenario families turned into
//! a seeded plan of cases, and the accuracy report of a recorded campaign.
//! Pure: planning and reporting take plain data; driving a coordinator
//! through its API is the `distdiag campaign` command's job.
//!
//! Families (scenario labels are `family:types`, e.g. `B:disk_stress`):
//!
//! - `A`: one fault on one node, one scenario per fault type;
//! - `B`: the same fault on two nodes;
//! - `C`: two different faults on one node (each type paired with the next);
//! - `W`: a node fault while a cluster-wide workload surge runs. The surge is
//!   labelled on node `cluster`: a disturbance every node sees, not a root
//!   cause (see [`distdiag_dataset::Dataset::truths`]).
//!
//! Nodes rotate through the cases from a seeded offset, so every node
//! carries every kind of fault about equally often.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use distdiag_dataset::Dataset;
use distdiag_diagnose::eval::AcRow;
use distdiag_diagnose::evaluate::{
    evaluation_markdown, CaseRankings, DatasetExt, Evaluation, MethodReports, Rankings,
};
use distdiag_diagnose::model::{train, Scorer, TrainParams};
use distdiag_diagnose::rank::At;
use distdiag_diagnose::split::{case_folds, SplitMix};

pub const FAMILIES: [&str; 4] = ["A", "B", "C", "W"];
/// Faults an agent injects on its host.
pub const HOST_TYPES: [&str; 6] = [
    "cpu_stress",
    "memory_stress",
    "disk_stress",
    "network_delay",
    "network_loss",
    "network_bandwidth",
];
/// Faults the coordinator injects into a node's database.
pub const DB_TYPES: [&str; 3] = ["cache_bottleneck", "too_many_indexes", "lock_contention"];

/// What to run; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignConfig {
    pub families: Vec<String>,
    /// Fault types the families are built from.
    pub types: Vec<String>,
    /// Cases per scenario.
    pub cases: u32,
    /// Seconds of normal data before each case's faults, of fault, and of
    /// recovery after them.
    pub normal_s: u32,
    pub fault_s: u32,
    pub recovery_s: u32,
    /// Normal collection before the first case (seconds; 0: none).
    pub warmup_s: u32,
    pub seed: u64,
    /// Cross-validation folds of the report: the fault cases are dealt
    /// into this many folds (grouped by [`lead_type`], so every type keeps
    /// training cases in every fold) and each fold is ranked by a model trained on the
    /// other folds only, so every case is evaluated exactly once, by a model
    /// that never saw it.
    pub folds: u32,
    /// Times the cross-validation is run, each with the cases dealt into
    /// folds anew (dealing seeds `seed`, `seed + 1`, ...): the report's
    /// figures are means over the dealings, and a table shows each one.
    /// With a few cases per type, which fold a case lands in moves AC@1 by
    /// more than most changes to the method do.
    pub repeats: u32,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        CampaignConfig {
            families: FAMILIES.iter().map(|s| (*s).to_owned()).collect(),
            types: [
                "cpu_stress",
                "memory_stress",
                "disk_stress",
                "network_delay",
                "network_loss",
                "cache_bottleneck",
                "too_many_indexes",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            cases: 10,
            normal_s: 30,
            fault_s: 40,
            recovery_s: 20,
            warmup_s: 60,
            seed: 42,
            folds: 2,
            repeats: 1,
        }
    }
}

impl CampaignConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.families.is_empty() {
            return Err("families: give at least one of A, B, C, W".into());
        }
        for f in &self.families {
            if !FAMILIES.contains(&f.as_str()) {
                return Err(format!("family {f:?} is not one of A, B, C, W"));
            }
        }
        if self.types.is_empty() {
            return Err("types: give at least one fault type".into());
        }
        for t in &self.types {
            if !HOST_TYPES.contains(&t.as_str()) && !DB_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "type {t:?} is not a node fault ({}, {})",
                    HOST_TYPES.join(", "),
                    DB_TYPES.join(", ")
                ));
            }
        }
        if !(1..=1000).contains(&self.cases) {
            return Err(format!("cases = {} is outside 1..=1000", self.cases));
        }
        if !(5..=3600).contains(&self.fault_s)
            || self.normal_s > 3600
            || self.recovery_s > 3600
            || self.warmup_s > 3600
        {
            return Err(
                "fault_s must be 5..=3600 and normal_s, recovery_s, warmup_s at most 3600".into()
            );
        }
        check_folds(self.folds)?;
        check_repeats(self.repeats)?;
        Ok(())
    }
}

/// The cluster a plan is made for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// Nodes with a connected agent.
    pub nodes: Vec<String>,
    /// Node → the database that runs on it (database faults need one).
    pub databases: BTreeMap<String, String>,
    /// A running workload over all the databases, for family W's surge.
    pub workload: Option<String>,
}

/// One fault request of a case: the body of `POST /api/anomaly/start`
/// without the case fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFault {
    #[serde(rename = "type")]
    pub kind: String,
    /// Target node of a host fault (`None` for database and cluster faults).
    pub node: Option<String>,
    pub params: Map<String, Value>,
    /// The node the fault's label will carry.
    pub label_node: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCase {
    pub scenario: String,
    pub faults: Vec<PlannedFault>,
}

impl PlannedCase {
    pub fn family(&self) -> &str {
        family_of(&self.scenario)
    }
}

/// `A` of `A:cpu_stress`.
pub fn family_of(scenario: &str) -> &str {
    scenario.split(':').next().unwrap_or(scenario)
}

/// The fault of type `kind` on `node`, with parameters sized for a node of
/// the testbed (a cgroup with a CPU quota and a memory limit).
fn fault_on(kind: &str, node: &str, cluster: &Cluster) -> Result<PlannedFault, String> {
    let mut params = Map::new();
    let host = |params: Map<String, Value>| {
        Ok(PlannedFault {
            kind: kind.to_owned(),
            node: Some(node.to_owned()),
            params,
            label_node: node.to_owned(),
        })
    };
    match kind {
        "cpu_stress" => {
            params.insert("workers".into(), json!(1));
            params.insert("load_percent".into(), json!(100));
            host(params)
        }
        "memory_stress" => {
            params.insert("bytes".into(), json!(384u64 << 20));
            host(params)
        }
        "disk_stress" => {
            params.insert("workers".into(), json!(1));
            params.insert("bytes".into(), json!(64u64 << 20));
            host(params)
        }
        "network_delay" => {
            params.insert("latency_ms".into(), json!(50));
            host(params)
        }
        "network_loss" => {
            params.insert("percent".into(), json!(20.0));
            host(params)
        }
        "network_bandwidth" => {
            params.insert("rate_kbit".into(), json!(2000));
            host(params)
        }
        "cache_bottleneck" | "too_many_indexes" | "lock_contention" => {
            let db = cluster
                .databases
                .get(node)
                .ok_or_else(|| format!("{kind} on {node}: no database on that node"))?;
            params.insert("database".into(), json!(db));
            if kind == "too_many_indexes" {
                params.insert("count".into(), json!(8));
            }
            Ok(PlannedFault {
                kind: kind.to_owned(),
                node: None,
                params,
                label_node: node.to_owned(),
            })
        }
        other => Err(format!("{other:?} is not a node fault")),
    }
}

fn surge(cluster: &Cluster) -> Result<PlannedFault, String> {
    let id = cluster
        .workload
        .as_ref()
        .ok_or("family W needs a workload running over every database (none given)")?;
    let mut params = Map::new();
    params.insert("workload_id".into(), json!(id));
    Ok(PlannedFault {
        kind: "workload_surge".into(),
        node: None,
        params,
        label_node: "cluster".into(),
    })
}

/// The cases of a campaign, in the order they run: scenarios interleaved
/// (round robin) so a drift of the machine over the run touches all of
/// them alike.
pub fn plan(cfg: &CampaignConfig, cluster: &Cluster) -> Result<Vec<PlannedCase>, String> {
    cfg.validate()?;
    let mut nodes = cluster.nodes.clone();
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return Err("no nodes: no agent is connected".into());
    }
    let wants_two = cfg.families.iter().any(|f| f == "B");
    if wants_two && nodes.len() < 2 {
        return Err("family B needs at least two nodes".into());
    }
    let mut rng = SplitMix(cfg.seed);
    // Scenario name and the faults of its k-th case.
    type Maker<'a> = Box<dyn Fn(usize) -> Result<Vec<PlannedFault>, String> + 'a>;
    let mut scenarios: Vec<(String, Maker)> = Vec::new();
    let n = nodes.len();
    for fam in FAMILIES.iter().filter(|f| cfg.families.iter().any(|g| g == *f)) {
        for (ti, t) in cfg.types.iter().enumerate() {
            let offset = (rng.next_u64() % n as u64) as usize;
            let nodes = &nodes;
            let t = t.as_str();
            match *fam {
                "A" => scenarios.push((
                    format!("A:{t}"),
                    Box::new(move |k| Ok(vec![fault_on(t, &nodes[(offset + k) % n], cluster)?])),
                )),
                "B" => scenarios.push((
                    format!("B:{t}"),
                    Box::new(move |k| {
                        let a = (offset + k) % n;
                        // The partner steps through the other nodes too.
                        let b = (a + 1 + k / n % (n - 1)) % n;
                        Ok(vec![fault_on(t, &nodes[a], cluster)?, fault_on(t, &nodes[b], cluster)?])
                    }),
                )),
                "C" => {
                    if cfg.types.len() < 2 {
                        return Err("family C needs at least two fault types".into());
                    }
                    let u = cfg.types[(ti + 1) % cfg.types.len()].as_str();
                    // With two types the pairs (a, b) and (b, a) are one scenario.
                    if scenarios.iter().any(|(s, _)| *s == format!("C:{u}+{t}")) {
                        continue;
                    }
                    scenarios.push((
                        format!("C:{t}+{u}"),
                        Box::new(move |k| {
                            let node = &nodes[(offset + k) % n];
                            Ok(vec![fault_on(t, node, cluster)?, fault_on(u, node, cluster)?])
                        }),
                    ));
                }
                _ => scenarios.push((
                    format!("W:{t}+workload_surge"),
                    Box::new(move |k| {
                        Ok(vec![fault_on(t, &nodes[(offset + k) % n], cluster)?, surge(cluster)?])
                    }),
                )),
            }
        }
    }
    let mut out = Vec::new();
    for k in 0..cfg.cases as usize {
        for (name, make) in &scenarios {
            out.push(PlannedCase { scenario: name.clone(), faults: make(k)? });
        }
    }
    Ok(out)
}

/// AC figures per scenario family, from the per-scenario rows (AC@k is a
/// mean over cases, so the family's is the case-weighted mean).
pub fn per_family(per_scenario: &BTreeMap<String, AcRow>) -> BTreeMap<String, AcRow> {
    let mut out: BTreeMap<String, AcRow> = BTreeMap::new();
    for (s, r) in per_scenario {
        let f = out.entry(family_of(s).to_owned()).or_default();
        let (a, b) = (f.cases as f64, r.cases as f64);
        if a + b == 0.0 {
            continue;
        }
        let mix = |x: f64, y: f64| (x * a + y * b) / (a + b);
        *f = AcRow {
            cases: f.cases + r.cases,
            ac1: mix(f.ac1, r.ac1),
            ac3: mix(f.ac3, r.ac3),
            ac5: mix(f.ac5, r.ac5),
            avg5: mix(f.avg5, r.avg5),
        };
    }
    out
}

/// A campaign's accuracy, cross-validated: each fold's cases ranked by a
/// model trained on the other folds, and that repeated with the cases dealt
/// anew. `evaluation` and `families` pool every dealing's rankings, so each
/// AC figure is the mean over the dealings; their `cases` count each case
/// once, while `per_case` has a row per case and dealing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    /// Each cross-validation run, in order.
    pub dealings: Vec<Dealing>,
    /// Types that got a classifier (in every fold), and those skipped in
    /// some fold with why.
    pub types: Vec<String>,
    pub skipped: BTreeMap<String, String>,
    pub evaluation: Evaluation,
    /// method → family → AC row, at the fault and shifted by ±30 s.
    pub families: BTreeMap<String, BTreeMap<String, FamilyRows>>,
    /// The groups, one fold each, when one group was left out at a time.
    #[serde(default)]
    pub groups: Vec<String>,
    /// When in its faults each case was diagnosed (`middle`, `start`, `+30s`).
    #[serde(default = "middle")]
    pub at: String,
}

fn middle() -> String {
    "middle".into()
}

/// One cross-validation run: how the cases were dealt and what the model
/// scored on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dealing {
    /// Seed of the dealing (the classifiers keep the training seed).
    pub seed: u64,
    /// The fault cases of each fold (disjoint; together every fault case).
    pub folds: Vec<Vec<String>>,
    /// The model at the fault: overall, and AC@1 per family.
    pub model: AcRow,
    pub model_macro_f1: f64,
    pub model_families: BTreeMap<String, f64>,
}

pub fn check_repeats(repeats: u32) -> Result<(), String> {
    if (1..=20).contains(&repeats) {
        Ok(())
    } else {
        Err(format!("repeats = {repeats} is outside 1..=20"))
    }
}

pub fn check_folds(folds: u32) -> Result<(), String> {
    if (2..=10).contains(&folds) {
        Ok(())
    } else {
        Err(format!("folds = {folds} is outside 2..=10"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyRows {
    pub at_fault: AcRow,
    pub shifted_minus_30s: AcRow,
    pub shifted_plus_30s: AcRow,
}

fn family_rows(m: &MethodReports) -> BTreeMap<String, FamilyRows> {
    let (a, b, c) = (
        per_family(&m.at_fault.per_scenario),
        per_family(&m.shifted_minus_30s.per_scenario),
        per_family(&m.shifted_plus_30s.per_scenario),
    );
    a.into_iter()
        .map(|(f, r)| {
            (
                f.clone(),
                FamilyRows {
                    at_fault: r,
                    shifted_minus_30s: b.get(&f).copied().unwrap_or_default(),
                    shifted_plus_30s: c.get(&f).copied().unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// The fault type a scenario's cases are dealt into folds by: its first
/// fault ("C:cpu_stress+memory_stress" → "cpu_stress"). Dealing by type
/// rather than by scenario name keeps every type in every fold's training
/// share: with one case per scenario, scenarios taken in name order put
/// all of a type's cases into one fold whenever the type count is even.
/// A name without a family prefix is its own stratum.
pub fn lead_type(scenario: &str) -> &str {
    scenario.split_once(':').map_or(scenario, |(_, rest)| rest.split('+').next().unwrap_or(rest))
}

/// Deals the fault cases into `folds` folds (stratified by [`lead_type`]); for
/// each fold trains a model on every other case (normal periods included)
/// and ranks the fold's cases with it, the statistical scorer and Dummy;
/// does that `repeats` times, dealing with seeds `params.seed`,
/// `params.seed + 1`, ...; the pooled rankings make the report.
pub fn report(
    ds: &Dataset,
    folds: u32,
    repeats: u32,
    params: &TrainParams,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<CampaignReport, String> {
    report_cv(ds, &CvOptions { folds, repeats, ..CvOptions::default() }, params, progress)
}

/// How cross-validation deals the cases, and when each case is diagnosed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CvOptions {
    pub folds: u32,
    pub repeats: u32,
    /// One fold per `group` of `cases.csv` (leave one group out: each
    /// group's cases, normal periods included, are ranked by a model
    /// trained on the other groups); `folds` and `repeats` are then unused.
    pub by_group: bool,
    pub at: At,
}

impl Default for CvOptions {
    fn default() -> Self {
        CvOptions { folds: 2, repeats: 1, by_group: false, at: At::Middle }
    }
}

/// [`report`] with the dealing and diagnosis time of `opts`.
pub fn report_cv(
    ds: &Dataset,
    opts: &CvOptions,
    params: &TrainParams,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<CampaignReport, String> {
    let truths = ds.truths();
    let strata: BTreeMap<String, String> =
        truths.iter().map(|t| (t.case.clone(), lead_type(&t.scenario).to_owned())).collect();
    let group_of: BTreeMap<String, String> =
        ds.cases.iter().filter_map(|c| Some((c.case.clone(), c.group.clone()?))).collect();
    let groups: Vec<String> = if opts.by_group {
        if let Some(c) = strata.keys().find(|c| !group_of.contains_key(*c)) {
            return Err(format!("case {c:?} has no group (cases.csv's fifth column)"));
        }
        let mut g: Vec<String> = strata.keys().map(|c| group_of[c].clone()).collect();
        g.sort();
        g.dedup();
        if g.len() < 2 {
            return Err(format!(
                "leaving one group out needs two groups of fault cases, not {}",
                g.len()
            ));
        }
        g
    } else {
        Vec::new()
    };
    let (folds, repeats) = if opts.by_group {
        (groups.len() as u32, 1)
    } else {
        check_folds(opts.folds)?;
        check_repeats(opts.repeats)?;
        (opts.folds, opts.repeats)
    };
    if strata.len() < folds as usize {
        return Err(format!("{} fault cases cannot fill {folds} folds", strata.len()));
    }
    let mut pooled = CaseRankings { model: Some(Rankings::default()), ..CaseRankings::default() };
    let mut dealings = Vec::new();
    let mut types: Option<Vec<String>> = None;
    let mut skipped = BTreeMap::new();
    // The fold's own test cases are what it is evaluated on, so the cases
    // early stopping held out are trained on afterwards too.
    let fold_params = TrainParams { refit: true, ..params.clone() };
    // Features once; each fold keeps the windows of its training cases.
    let all_windows = ds.windows(None);
    for rep in 0..u64::from(repeats) {
        let seed = params.seed.wrapping_add(rep);
        let fold_of: BTreeMap<String, usize> = if opts.by_group {
            strata
                .keys()
                .map(|c| (c.clone(), groups.iter().position(|g| *g == group_of[c]).unwrap_or(0)))
                .collect()
        } else {
            case_folds(&strata, folds as usize, seed)
        };
        let mut this = CaseRankings { model: Some(Rankings::default()), ..CaseRankings::default() };
        let mut fold_cases = Vec::new();
        for f in 0..folds as usize {
            let test: Vec<String> =
                fold_of.iter().filter(|(_, &k)| k == f).map(|(c, _)| c.clone()).collect();
            // Left out of training: the fold's fault cases, and with groups
            // every case of the group (its normal periods too).
            let held = |c: &str| {
                test.iter().any(|t| t == c)
                    || (opts.by_group && group_of.get(c).is_some_and(|g| *g == groups[f]))
            };
            let mut windows = all_windows.clone();
            windows.retain_cases(|c| !held(c));
            let what = |f: usize| {
                if opts.by_group {
                    format!("group {} ({}/{folds})", groups[f], f + 1)
                } else if repeats > 1 {
                    format!("dealing {}/{repeats}, fold {}/{folds}", rep + 1, f + 1)
                } else {
                    format!("fold {}/{folds}", f + 1)
                }
            };
            let set = train(&windows, ds.manifest.window, &fold_params, &mut |d, n, w| {
                progress(d, n, &format!("{}: {w}", what(f)))
            })?;
            let scorer = Scorer::load(&set)?;
            let exclude: Vec<String> =
                ds.cases.iter().map(|c| c.case.clone()).filter(|c| !test.contains(c)).collect();
            let r = ds.rank(Some(&scorer), &exclude, params.seed, opts.at)?;
            this.case_ids.extend(r.case_ids);
            if let (Some(p), Some(m)) = (this.model.as_mut(), r.model) {
                p.append(m);
            }
            this.statistical.append(r.statistical);
            this.dummy.append(r.dummy);
            let trained: Vec<String> = set.types.iter().map(|t| t.kind.clone()).collect();
            types = Some(match types {
                None => trained.clone(),
                Some(t) => t.into_iter().filter(|k| trained.contains(k)).collect(),
            });
            for (t, why) in &set.skipped {
                skipped.insert(t.clone(), format!("{}: {why}", what(f)));
            }
            // A type this fold is tested on but no training window carries.
            for t in truths
                .iter()
                .filter(|t| test.contains(&t.case))
                .flat_map(|t| t.causes.iter().map(|c| &c.1))
            {
                if !trained.contains(t) && !set.skipped.contains_key(t) {
                    skipped.insert(t.clone(), format!("{}: no training case has it", what(f)));
                }
            }
            fold_cases.push(test);
        }
        let model =
            this.model.as_ref().map(Rankings::report).map(|m| m.at_fault).unwrap_or_default();
        dealings.push(Dealing {
            seed,
            folds: fold_cases,
            model: model.overall,
            model_macro_f1: model.macro_f1,
            model_families: per_family(&model.per_scenario)
                .into_iter()
                .map(|(f, r)| (f, r.ac1))
                .collect(),
        });
        pooled.case_ids.extend(this.case_ids);
        if let (Some(p), Some(m)) = (pooled.model.as_mut(), this.model) {
            p.append(m);
        }
        pooled.statistical.append(this.statistical);
        pooled.dummy.append(this.dummy);
    }
    let mut evaluation = pooled.evaluation();
    count_cases_once(&mut evaluation, repeats as usize);
    let mut families = BTreeMap::new();
    if let Some(m) = &evaluation.model {
        families.insert("model".to_owned(), family_rows(m));
    }
    families.insert("statistical".to_owned(), family_rows(&evaluation.statistical));
    families.insert("dummy".to_owned(), family_rows(&evaluation.dummy));
    Ok(CampaignReport {
        dealings,
        types: types.unwrap_or_default(),
        skipped,
        evaluation,
        families,
        groups,
        at: opts.at.to_string(),
    })
}

/// Every dealing ranks every case once, so the pooled rows hold each case
/// `repeats` times: their AC figures are already the means over the
/// dealings, and their counts become counts of cases again.
fn count_cases_once(e: &mut Evaluation, repeats: usize) {
    if repeats <= 1 {
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    e.case_ids.retain(|c| seen.insert(c.clone()));
    e.cases = e.case_ids.len();
    let methods = e.model.iter_mut().chain([&mut e.statistical, &mut e.dummy]);
    for m in methods {
        for r in [&mut m.at_fault, &mut m.shifted_minus_30s, &mut m.shifted_plus_30s] {
            r.overall.cases /= repeats;
            r.node.cases /= repeats;
            for row in r.per_scenario.values_mut() {
                row.cases /= repeats;
            }
        }
        // Its shares and times are over every dealing's rankings already.
        m.detection.cases /= repeats;
    }
}

/// The report as Markdown: families first, then the evaluation's tables.
pub fn markdown(r: &CampaignReport) -> String {
    let folds = r.dealings.first().map_or(&[][..], |d| &d.folds[..]);
    let sizes: Vec<String> = folds.iter().map(|f| f.len().to_string()).collect();
    let repeated = if r.dealings.len() > 1 {
        format!(" That was done {} times, the cases dealt anew each time (seeds {}); every figure below is the mean over the dealings.", r.dealings.len(), r.dealings.iter().map(|d| d.seed.to_string()).collect::<Vec<_>>().join(", "))
    } else {
        String::new()
    };
    let how = if r.groups.is_empty() {
        format!(
            "cross-validated in {} folds ({} cases): each fold ranked by a model trained on the other folds (normal periods included), the cases dealt stratified by their scenario's first fault type",
            folds.len(),
            sizes.join(" + ")
        )
    } else {
        format!(
            "one group left out at a time ({} groups: {}; {} cases): each group ranked by a model trained on the other groups",
            r.groups.len(),
            r.groups.join(", "),
            sizes.join(" + ")
        )
    };
    let at = match r.at.as_str() {
        "middle" => "the middle of its faults".to_owned(),
        "start" => "the start of its first fault".to_owned(),
        other => format!("{} after its first fault started", other.trim_start_matches('+')),
    };
    let mut s = format!(
        "# Campaign report\n\n{} fault cases, {how}.{repeated} Each case is diagnosed at {at} (and 30 s before and after). Classifiers: {}.\n",
        r.evaluation.cases,
        r.types.join(", ")
    );
    for (t, why) in &r.skipped {
        let _ = writeln!(s, "- no classifier for {t}: {why}");
    }
    s.push_str("\n## Per scenario family\n\n| method | family | cases | AC@1 | AC@3 | AC@5 | Avg@5 | AC@1 −30 s | AC@1 +30 s |\n|---|---|---|---|---|---|---|---|---|\n");
    for m in ["model", "statistical", "dummy"] {
        for (f, rows) in r.families.get(m).into_iter().flatten() {
            let o = &rows.at_fault;
            let _ = writeln!(
                s,
                "| {m} | {f} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                o.cases,
                o.ac1,
                o.ac3,
                o.ac5,
                o.avg5,
                rows.shifted_minus_30s.ac1,
                rows.shifted_plus_30s.ac1
            );
        }
    }
    if r.dealings.len() > 1 {
        s.push_str("\n## Model per dealing\n\n| dealing seed | AC@1 | AC@3 | macro-F1 | AC@1 A / B / C / W |\n|---|---|---|---|---|\n");
        for d in &r.dealings {
            let fam: Vec<String> = FAMILIES
                .iter()
                .map(|f| d.model_families.get(*f).map_or("-".to_owned(), |v| format!("{v:.2}")))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} | {} |",
                d.seed,
                d.model.ac1,
                d.model.ac3,
                d.model_macro_f1,
                fam.join(" / ")
            );
        }
        let ac1: Vec<f64> = r.dealings.iter().map(|d| d.model.ac1).collect();
        let (lo, hi) =
            ac1.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let _ = writeln!(s, "\nModel AC@1 ranges over {lo:.3}..{hi:.3} across the dealings.");
    }
    s.push_str("\n## Overall and per scenario\n\n");
    s.push_str(&evaluation_markdown(&r.evaluation));
    if let Some(m) = &r.evaluation.model {
        let n = r.dealings.len().max(1);
        let (top, ac1) = if n > 1 {
            ("top 3 (first dealing)", format!("AC@1 (mean of {n})"))
        } else {
            ("top 3", "AC@1".to_owned())
        };
        let _ = write!(s, "\n## Model, case by case\n\n| case | scenario | root causes | {top} | {ac1} |\n|---|---|---|---|---|\n");
        let pairs = |v: &[(String, String)]| {
            v.iter().map(|(n, t)| format!("{t}@{n}")).collect::<Vec<_>>().join(", ")
        };
        // Rows come dealing by dealing; the first dealing's order and top 3.
        let rows = &m.at_fault.per_case;
        for c in &rows[..rows.len() / n] {
            let mean =
                rows.iter().filter(|x| x.case == c.case).map(|x| x.ac1).sum::<f64>() / n as f64;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} |",
                c.case,
                c.scenario,
                pairs(&c.causes),
                pairs(&c.top),
                mean
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: usize) -> Cluster {
        let nodes: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        Cluster {
            databases: nodes.iter().map(|x| (x.clone(), format!("db{}", &x[1..]))).collect(),
            nodes,
            workload: Some("w1".into()),
        }
    }

    #[test]
    fn folds_keep_every_type_in_every_training_share() {
        assert_eq!(lead_type("C:cpu_stress+memory_stress"), "cpu_stress");
        assert_eq!(lead_type("W:disk_stress+workload_surge"), "disk_stress");
        assert_eq!(lead_type("A:cache_bottleneck"), "cache_bottleneck");
        assert_eq!(lead_type("imported"), "imported");
        // Six types, one case per scenario: the layout that once put every
        // memory_stress case into one fold.
        let types: Vec<String> = [
            "cpu_stress",
            "memory_stress",
            "disk_stress",
            "network_delay",
            "network_loss",
            "cache_bottleneck",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let cfg = CampaignConfig { types: types.clone(), cases: 1, ..CampaignConfig::default() };
        let p = plan(&cfg, &cluster(3)).unwrap();
        let strata: BTreeMap<String, String> = p
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("case{i:02}"), lead_type(&c.scenario).to_owned()))
            .collect();
        for seed in [1, 42, 7] {
            let folds = case_folds(&strata, 2, seed);
            for f in 0..2 {
                for t in &types {
                    let trained = p
                        .iter()
                        .enumerate()
                        .filter(|(i, c)| {
                            folds[&format!("case{i:02}")] != f
                                && c.faults.iter().any(|x| &x.kind == t)
                        })
                        .count();
                    assert!(
                        trained >= 2,
                        "seed {seed}, fold {f}: {t} has {trained} training cases"
                    );
                }
            }
        }
    }

    #[test]
    fn plans_every_family_with_rotating_nodes() {
        let cfg = CampaignConfig {
            types: vec!["cpu_stress".into(), "cache_bottleneck".into()],
            cases: 3,
            ..CampaignConfig::default()
        };
        let p = plan(&cfg, &cluster(3)).unwrap();
        // (A, B, W: 2 types; C: the one pair) × 3 cases.
        assert_eq!(p.len(), 21);
        let a: Vec<&PlannedCase> = p.iter().filter(|c| c.scenario == "A:cpu_stress").collect();
        let mut nodes: Vec<&str> = a.iter().map(|c| c.faults[0].node.as_deref().unwrap()).collect();
        nodes.sort();
        assert_eq!(nodes, ["n1", "n2", "n3"], "three cases visit three nodes");
        for c in p.iter().filter(|c| c.family() == "B") {
            assert_eq!(c.faults.len(), 2);
            assert_ne!(c.faults[0].label_node, c.faults[1].label_node, "{c:?}");
            assert_eq!(c.faults[0].kind, c.faults[1].kind);
        }
        for c in p.iter().filter(|c| c.family() == "C") {
            assert_eq!(c.faults[0].label_node, c.faults[1].label_node);
            assert_ne!(c.faults[0].kind, c.faults[1].kind);
        }
        let w = p.iter().find(|c| c.family() == "W").unwrap();
        assert_eq!(w.faults[1].kind, "workload_surge");
        assert_eq!(w.faults[1].label_node, "cluster");
        // A database fault names the node's database, not the node.
        let db = p.iter().find(|c| c.scenario == "A:cache_bottleneck").unwrap();
        assert!(db.faults[0].node.is_none());
        assert_eq!(
            db.faults[0].params["database"],
            format!("db{}", &db.faults[0].label_node[1..]).as_str()
        );
        // Same seed, same plan; another seed moves the nodes.
        assert_eq!(plan(&cfg, &cluster(3)).unwrap(), p);
        let other = plan(&CampaignConfig { seed: 7, ..cfg.clone() }, &cluster(3)).unwrap();
        assert_ne!(other, p);
    }

    #[test]
    fn refuses_what_cannot_run() {
        let cfg = CampaignConfig::default();
        assert!(plan(&cfg, &Cluster::default()).unwrap_err().contains("no nodes"));
        assert!(plan(&CampaignConfig { families: vec!["B".into()], ..cfg.clone() }, &cluster(1))
            .unwrap_err()
            .contains("two nodes"));
        let no_work = Cluster { workload: None, ..cluster(3) };
        assert!(plan(&CampaignConfig { families: vec!["W".into()], ..cfg.clone() }, &no_work)
            .unwrap_err()
            .contains("workload"));
        let no_db = Cluster { databases: BTreeMap::new(), ..cluster(3) };
        assert!(plan(&cfg, &no_db).unwrap_err().contains("no database"));
        assert!(CampaignConfig { families: vec!["Z".into()], ..cfg.clone() }.validate().is_err());
        assert!(CampaignConfig { types: vec!["reboot".into()], ..cfg.clone() }.validate().is_err());
        assert!(CampaignConfig { folds: 1, ..cfg.clone() }.validate().is_err());
        assert!(CampaignConfig { folds: 11, ..cfg.clone() }.validate().is_err());
        assert!(CampaignConfig { repeats: 0, ..cfg.clone() }.validate().is_err());
        assert!(CampaignConfig { repeats: 21, ..cfg.clone() }.validate().is_err());
        assert!(CampaignConfig { fault_s: 1, ..cfg }.validate().is_err());
    }

    #[test]
    fn family_rows_are_case_weighted() {
        let mut per = BTreeMap::new();
        per.insert(
            "A:cpu_stress".to_owned(),
            AcRow { cases: 3, ac1: 1.0, ac3: 1.0, ac5: 1.0, avg5: 1.0 },
        );
        per.insert(
            "A:disk_stress".to_owned(),
            AcRow { cases: 1, ac1: 0.0, ac3: 1.0, ac5: 1.0, avg5: 0.6 },
        );
        per.insert(
            "B:cpu_stress".to_owned(),
            AcRow { cases: 2, ac1: 0.5, ac3: 1.0, ac5: 1.0, avg5: 0.9 },
        );
        let f = per_family(&per);
        assert_eq!(f["A"].cases, 4);
        assert!((f["A"].ac1 - 0.75).abs() < 1e-12);
        assert!((f["A"].avg5 - 0.9).abs() < 1e-12);
        assert_eq!(f["B"], per["B:cpu_stress"]);
    }
}
