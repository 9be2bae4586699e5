//! One binary XGBoost classifier per anomaly type, through the XGBoost C
//! library (`xgb`). Training: windows that straddle a fault edge are left
//! out; a validation side grouped by case (see [`super::split`]) drives
//! early stopping on log loss; positives are weighted by negatives /
//! positives; everything is seeded. With `refit`, each classifier is then
//! trained again on the training and validation cases together for the
//! rounds early stopping chose, so that no labelled case is left unused.
//! Boosters are kept as XGBoost JSON, which Python's xgboost loads as is.

use std::collections::BTreeMap;

use xgb::{parameters::BoosterParametersBuilder, Booster, DMatrix};

use super::labels::Windows;
use super::split::{held_out_cases, partition};
pub use distdiag_api::models::{ModelSet, TrainParams, TypeModel};
use distdiag_dataset::WindowConfig;

/// The XGBoost parameters of one type's booster (what Python gets too).
pub fn xgb_params(params: &TrainParams, scale_pos_weight: f64) -> Vec<(String, String)> {
    let mut out = vec![
        ("objective", "binary:logistic".to_string()),
        ("eval_metric", "logloss".to_string()),
        ("tree_method", "hist".to_string()),
        ("max_depth", params.max_depth.to_string()),
        ("eta", params.eta.to_string()),
        ("subsample", params.subsample.to_string()),
        ("colsample_bytree", params.colsample_bytree.to_string()),
        ("min_child_weight", params.min_child_weight.to_string()),
        ("scale_pos_weight", format!("{scale_pos_weight}")),
        ("seed", params.seed.to_string()),
        ("verbosity", "0".to_string()),
    ];
    if params.nthread > 0 {
        out.push(("nthread", params.nthread.to_string()));
    }
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn xgb_err(e: xgb::XGBError) -> String {
    format!("XGBoost: {e}")
}

/// A dense matrix of the windows at `idx`.
fn matrix(w: &Windows, idx: &[usize], kind: Option<&str>) -> Result<DMatrix, String> {
    let sub = w.subset(idx);
    let mut d = DMatrix::from_dense(&sub.x, idx.len()).map_err(xgb_err)?;
    if let Some(kind) = kind {
        let y: Vec<f32> = sub
            .rows
            .iter()
            .map(|r| if r.labels.iter().any(|l| l == kind) { 1.0 } else { 0.0 })
            .collect();
        d.set_labels(&y).map_err(xgb_err)?;
    }
    Ok(d)
}

/// A booster with `params` (nothing else set).
fn new_booster(cached: &[&DMatrix], params: &[(String, String)]) -> Result<Booster, String> {
    let defaults =
        BoosterParametersBuilder::default().verbose(false).build().map_err(|e| e.to_string())?;
    let mut b = Booster::new_with_cached_dmats(&defaults, cached).map_err(xgb_err)?;
    for (k, v) in params {
        b.set_param(k, v).map_err(xgb_err)?;
    }
    Ok(b)
}

/// Trains one classifier per type seen in the labels. `progress(done, of,
/// what)` is called before each type.
pub fn train(
    windows: &Windows,
    window: WindowConfig,
    params: &TrainParams,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ModelSet, String> {
    params.validate()?;
    let usable: Vec<usize> = (0..windows.rows.len()).filter(|&i| !windows.rows[i].edge).collect();
    if usable.is_empty() {
        return Err("no windows to train on (collect normal data and fault cases first)".into());
    }
    // Cases, stratified by the types they carry.
    let mut strata: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &i in &usable {
        let r = &windows.rows[i];
        let e = strata.entry(r.case.clone()).or_default();
        e.extend(r.labels.iter().cloned());
    }
    let strata: BTreeMap<String, String> = strata
        .into_iter()
        .map(|(c, mut t)| {
            t.sort();
            t.dedup();
            (c, t.join("+"))
        })
        .collect();
    let held = if params.validation_fraction > 0.0 {
        held_out_cases(&strata, params.validation_fraction, params.seed)
    } else {
        Vec::new()
    };
    let row_cases: Vec<&str> = usable.iter().map(|&i| windows.rows[i].case.as_str()).collect();
    let (keep, out) = partition(&row_cases, &held);
    let train_idx: Vec<usize> = keep.iter().map(|&k| usable[k]).collect();
    let valid_idx: Vec<usize> = out.iter().map(|&k| usable[k]).collect();
    let types = windows.types();
    let mut set = ModelSet {
        metrics: windows.metrics.clone(),
        feature_names: windows.feature_names.clone(),
        window,
        params: params.clone(),
        types: Vec::new(),
        train_cases: strata.keys().filter(|c| params.refit || !held.contains(c)).cloned().collect(),
        valid_cases: held.clone(),
        skipped: BTreeMap::new(),
        type_notes: BTreeMap::new(),
    };
    // With few cases of a type none can be held out (a stratum of one case
    // stays whole): the classifier then trains on all of them, and the
    // version says the type is not evaluated rather than leaving it out.
    for kind in windows.types() {
        let cases: Vec<&String> = strata
            .iter()
            .filter(|(_, t)| t.split('+').any(|x| x == kind))
            .map(|(c, _)| c)
            .collect();
        let held_n = cases.iter().filter(|c| held.contains(c)).count();
        let n = cases.len();
        let plural = if n == 1 { "case" } else { "cases" };
        let note = if held_n == 0 || params.refit {
            format!("{n} {plural}: trained on all, not evaluated")
        } else {
            format!("{n} {plural}: {} trained on, {held_n} held out to evaluate", n - held_n)
        };
        set.type_notes.insert(kind.clone(), note);
    }
    for (n, kind) in types.iter().enumerate() {
        progress(n, types.len(), kind);
        let has = |i: &usize| windows.rows[*i].labels.iter().any(|l| l == kind);
        let pos = train_idx.iter().filter(|i| has(i)).count();
        let neg = train_idx.len() - pos;
        if pos < params.min_positive_windows.max(1) || neg == 0 {
            set.skipped.insert(
                kind.clone(),
                format!(
                    "{pos} positive and {neg} negative training windows (need {} and 1)",
                    params.min_positive_windows.max(1)
                ),
            );
            continue;
        }
        let spw = neg as f64 / pos as f64;
        let dtrain = matrix(windows, &train_idx, Some(kind))?;
        let dvalid = if valid_idx.is_empty() {
            None
        } else {
            Some(matrix(windows, &valid_idx, Some(kind))?)
        };
        let mut cached = vec![&dtrain];
        if let Some(v) = &dvalid {
            cached.push(v);
        }
        let mut booster = new_booster(&cached, &xgb_params(params, spw))?;
        let (mut best, mut best_loss, mut run) = (0u32, f64::INFINITY, 0u32);
        for round in 0..params.rounds {
            booster.update(&dtrain, round as i32).map_err(xgb_err)?;
            run = round + 1;
            if let Some(v) = &dvalid {
                let loss = booster
                    .evaluate(v)
                    .map_err(xgb_err)?
                    .get("logloss")
                    .copied()
                    .map_or(f64::INFINITY, f64::from);
                if loss < best_loss - 1e-9 {
                    best_loss = loss;
                    best = round;
                } else if round - best >= params.early_stopping_rounds {
                    break;
                }
            } else {
                best = round;
            }
        }
        let (trimmed, fit_pos, fit_neg, spw) = if params.refit && !valid_idx.is_empty() {
            let apos = usable.iter().filter(|i| has(i)).count();
            let aspw = (usable.len() - apos) as f64 / apos as f64;
            let dall = matrix(windows, &usable, Some(kind))?;
            let mut b = new_booster(&[&dall], &xgb_params(params, aspw))?;
            for round in 0..=best {
                b.update(&dall, round as i32).map_err(xgb_err)?;
            }
            (b, apos, usable.len() - apos, aspw)
        } else if best + 1 < run {
            (booster.slice(0, best as i32 + 1).map_err(xgb_err)?, pos, neg, spw)
        } else {
            (booster, pos, neg, spw)
        };
        let json = trimmed.save_buffer(false).map_err(xgb_err)?;
        let vpos = valid_idx.iter().filter(|i| has(i)).count();
        set.types.push(TypeModel {
            kind: kind.clone(),
            booster: String::from_utf8(json)
                .map_err(|e| format!("XGBoost wrote a model that is not UTF-8: {e}"))?,
            best_iteration: best,
            rounds_run: run,
            scale_pos_weight: spw,
            train_positives: fit_pos,
            train_negatives: fit_neg,
            valid_positives: vpos,
            valid_negatives: valid_idx.len() - vpos,
            valid_logloss: best_loss.is_finite().then_some(best_loss),
        });
    }
    progress(types.len(), types.len(), "done");
    if set.types.is_empty() {
        return Err(format!(
            "no anomaly type has enough labelled windows to train on: {}",
            set.skipped.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(set)
}

/// Whether a stored model set reads the features this version computes
/// for its metrics (a set trained before a feature was added or moved
/// reads the columns by position and would score nonsense).
pub fn check_features(set: &ModelSet) -> Result<(), String> {
    let expected = crate::features::feature_names(&set.metrics);
    if set.feature_names == expected {
        return Ok(());
    }
    Err(format!(
        "the model reads {} features of its {} metrics where this version computes {} \
         ({} per metric): it was trained by another version of distdiag; train it again",
        set.feature_names.len(),
        set.metrics.len(),
        expected.len(),
        crate::features::STATS.join(", ")
    ))
}

/// A model set's boosters, loaded and ready to score.
pub struct Scorer {
    pub metrics: Vec<String>,
    pub feature_names: Vec<String>,
    pub window: WindowConfig,
    /// Per feature, whether any tree of any type splits on it. A feature
    /// no tree reads changes neither a prediction nor a SHAP value, so it
    /// need not be computed (all true when a model's JSON cannot be read).
    pub used: Vec<bool>,
    boosters: Vec<(String, Booster)>,
}

/// Per feature (of `width`), whether a split node of a tree in one of the
/// boosters' JSON reads it; all true when any JSON is not an XGBoost
/// tree model.
pub fn features_split_on<'a>(
    boosters: impl IntoIterator<Item = &'a str>,
    width: usize,
) -> Vec<bool> {
    /// Trees found under `v` (their splits marked), or None when one is malformed.
    fn walk(v: &serde_json::Value, used: &mut [bool]) -> Option<usize> {
        match v {
            serde_json::Value::Object(o) => {
                match (o.get("left_children"), o.get("split_indices")) {
                    (Some(left), Some(split)) => {
                        let (left, split) = (left.as_array()?, split.as_array()?);
                        if left.len() != split.len() {
                            return None;
                        }
                        for (l, f) in left.iter().zip(split) {
                            // A leaf's left child is -1; its split index means nothing.
                            if l.as_i64()? != -1 {
                                *used.get_mut(usize::try_from(f.as_u64()?).ok()?)? = true;
                            }
                        }
                        Some(1)
                    }
                    _ => o.values().map(|x| walk(x, used)).sum(),
                }
            }
            serde_json::Value::Array(a) => a.iter().map(|x| walk(x, used)).sum(),
            _ => Some(0),
        }
    }
    let mut used = vec![false; width];
    for json in boosters {
        let trees =
            serde_json::from_str::<serde_json::Value>(json).ok().and_then(|v| walk(&v, &mut used));
        if trees.is_none_or(|n| n == 0) {
            return vec![true; width];
        }
    }
    used
}

impl Scorer {
    /// A stored set's scorer (one read from a registry or a file): refused
    /// unless it reads the features this version computes
    /// ([`check_features`]).
    pub fn load_stored(set: &ModelSet) -> Result<Scorer, String> {
        check_features(set)?;
        Scorer::load(set)
    }

    pub fn load(set: &ModelSet) -> Result<Scorer, String> {
        let mut boosters = Vec::new();
        for t in &set.types {
            let mut b = Booster::load_buffer(t.booster.as_bytes())
                .map_err(|e| format!("model of {}: {e}", t.kind))?;
            // Scoring a few hundred rows is faster on the calling thread:
            // an OpenMP team would spin-wait on a core for milliseconds
            // after each call, taking it from the feature threads.
            b.set_param("nthread", "1").map_err(xgb_err)?;
            boosters.push((t.kind.clone(), b));
        }
        let used = features_split_on(
            set.types.iter().map(|t| t.booster.as_str()),
            set.feature_names.len(),
        );
        Ok(Scorer {
            metrics: set.metrics.clone(),
            feature_names: set.feature_names.clone(),
            window: set.window,
            used,
            boosters,
        })
    }

    pub fn types(&self) -> Vec<String> {
        self.boosters.iter().map(|(k, _)| k.clone()).collect()
    }

    /// p(type | row) for `rows` rows of `x` (row-major, feature order):
    /// one vector per type, in [`Scorer::types`] order.
    pub fn predict(&self, x: &[f32], rows: usize) -> Result<Vec<Vec<f32>>, String> {
        if rows == 0 {
            return Ok(vec![Vec::new(); self.boosters.len()]);
        }
        let d = self.matrix(x, rows)?;
        self.boosters.iter().map(|(_, b)| b.predict(&d).map_err(xgb_err)).collect()
    }

    /// `rows` rows of `x` as a DMatrix that holds only the features some
    /// tree reads (the rest are missing, which no tree can tell apart), so
    /// that a wide frame costs what the model reads, not its width.
    fn matrix(&self, x: &[f32], rows: usize) -> Result<DMatrix, String> {
        let width = self.used.len();
        if rows == 0 || width == 0 || x.len() != rows * width {
            return Err(format!("{} values are not {rows} rows of {width} features", x.len()));
        }
        let columns: Vec<usize> = (0..width).filter(|&f| self.used[f]).collect();
        if columns.len() == width {
            return DMatrix::from_dense(x, rows).map_err(xgb_err);
        }
        let (mut indptr, mut indices, mut data) =
            (Vec::with_capacity(rows + 1), Vec::new(), Vec::new());
        indptr.push(0);
        for row in x.chunks(width) {
            for &f in &columns {
                if !row[f].is_nan() {
                    indices.push(f);
                    data.push(row[f]);
                }
            }
            indptr.push(data.len());
        }
        DMatrix::from_csr(&indptr, &indices, &data, Some(width)).map_err(xgb_err)
    }

    /// Per metric, the summed |SHAP contribution| of one row to type `t`'s
    /// margin, largest first, at most `k`.
    pub fn top_metrics(
        &self,
        t: usize,
        row: &[f32],
        k: usize,
    ) -> Result<Vec<(String, f64)>, String> {
        Ok(self.top_metrics_rows(t, row, 1, k)?.into_iter().next().unwrap_or_default())
    }

    /// [`Scorer::top_metrics`] of several rows (row-major) in one call.
    pub fn top_metrics_rows(
        &self,
        t: usize,
        x: &[f32],
        rows: usize,
        k: usize,
    ) -> Result<Vec<Vec<(String, f64)>>, String> {
        let Some((_, b)) = self.boosters.get(t) else { return Ok(vec![Vec::new(); rows]) };
        if rows == 0 {
            return Ok(Vec::new());
        }
        let d = self.matrix(x, rows)?;
        let (c, _) = b.predict_contributions(&d).map_err(xgb_err)?;
        let width = self.feature_names.len() + 1;
        Ok(c.chunks(width)
            .map(|row| {
                let mut per: BTreeMap<&str, f64> = BTreeMap::new();
                // Most contributions are zero (features no tree reads):
                // they add nothing and skip the name lookup.
                for (name, v) in self.feature_names.iter().zip(row).filter(|(_, v)| **v != 0.0) {
                    *per.entry(super::features::metric_of(name)).or_default() += f64::from(v.abs());
                }
                let mut v: Vec<(String, f64)> = per
                    .into_iter()
                    .filter(|(_, x)| *x > 0.0)
                    .map(|(m, x)| (m.to_string(), x))
                    .collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                v.truncate(k);
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::WindowRow;

    /// Two features; type "hot" when feature 0 is high, per case.
    pub(crate) fn toy() -> Windows {
        let mut w = Windows {
            metrics: vec!["m".into()],
            feature_names: vec!["m|mean".into(), "m|std".into()],
            ..Windows::default()
        };
        for case in 0..12 {
            for k in 0..20 {
                let hot = case % 3 == 0 && k >= 10;
                let noise = ((case * 31 + k * 17) % 13) as f32 / 13.0;
                w.x.extend([if hot { 5.0 + noise } else { noise }, noise * 2.0]);
                w.rows.push(WindowRow {
                    case: format!("case{case}"),
                    node: "n".into(),
                    end_ms: k as i64,
                    labels: if hot { vec!["hot".into()] } else { vec![] },
                    edge: k == 10,
                });
            }
        }
        w
    }

    #[test]
    fn trains_a_separable_type_and_predicts_it() {
        let w = toy();
        let mut calls = Vec::new();
        let set = train(
            &w,
            WindowConfig::default(),
            &TrainParams { nthread: 1, ..TrainParams::default() },
            &mut |d, n, what| calls.push((d, n, what.to_string())),
        )
        .unwrap();
        assert_eq!(calls.first(), Some(&(0, 1, "hot".to_string())));
        assert_eq!(set.types.len(), 1);
        let t = &set.types[0];
        assert!(t.valid_logloss.unwrap() < 0.2, "{t:?}");
        assert!(t.best_iteration < t.rounds_run);
        // No case on both sides.
        for c in &set.valid_cases {
            assert!(!set.train_cases.contains(c));
        }
        assert!(!set.valid_cases.is_empty());
        let s = Scorer::load(&set).unwrap();
        let p = s.predict(&[5.5, 0.1, 0.2, 0.1], 2).unwrap();
        assert!(p[0][0] > 0.9 && p[0][1] < 0.1, "{p:?}");
        let top = s.top_metrics(0, &[5.5, 0.1], 3).unwrap();
        assert_eq!(top[0].0, "m");
        // Deterministic: the same seed gives the same booster.
        let again = train(
            &w,
            WindowConfig::default(),
            &TrainParams { nthread: 1, ..TrainParams::default() },
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!(again.types[0].booster, t.booster);
    }

    #[test]
    fn a_type_with_two_cases_is_trained_on_both_and_noted_not_evaluated() {
        // Only cases 0 and 3 are "hot"; the other ten normal.
        let mut w = toy();
        for r in &mut w.rows {
            if r.case != "case0" && r.case != "case3" {
                r.labels.clear();
            }
        }
        let params = TrainParams { nthread: 1, ..TrainParams::default() };
        let set = train(&w, WindowConfig::default(), &params, &mut |_, _, _| {}).unwrap();
        assert_eq!(set.type_notes["hot"], "2 cases: trained on all, not evaluated");
        for c in ["case0", "case3"] {
            assert!(
                set.train_cases.iter().any(|t| t == c) && !set.valid_cases.iter().any(|v| v == c)
            );
        }
        let t = &set.types[0];
        assert_eq!(t.train_positives, 2 * 9);
        assert_eq!(t.valid_positives, 0);
    }

    #[test]
    fn refit_trains_on_the_validation_cases_too() {
        let w = toy();
        let params = TrainParams { nthread: 1, ..TrainParams::default() };
        let plain = train(&w, WindowConfig::default(), &params, &mut |_, _, _| {}).unwrap();
        let refit = train(
            &w,
            WindowConfig::default(),
            &TrainParams { refit: true, ..params },
            &mut |_, _, _| {},
        )
        .unwrap();
        let (p, r) = (&plain.types[0], &refit.types[0]);
        // The same held-out cases chose the same number of rounds...
        assert_eq!(refit.valid_cases, plain.valid_cases);
        assert_eq!((r.best_iteration, r.valid_logloss), (p.best_iteration, p.valid_logloss));
        // ...and the final booster saw every usable window: 12 cases × 19 (edges left out).
        assert_eq!(r.train_positives + r.train_negatives, 12 * 19);
        assert_eq!(
            p.train_positives + p.train_negatives + p.valid_positives + p.valid_negatives,
            12 * 19
        );
        assert!(r.train_positives > p.train_positives);
        assert_ne!(r.booster, p.booster);
        for c in &refit.valid_cases {
            assert!(refit.train_cases.contains(c));
        }
        let s = Scorer::load(&refit).unwrap();
        let prob = s.predict(&[5.5, 0.1, 0.2, 0.1], 2).unwrap();
        assert!(prob[0][0] > 0.9 && prob[0][1] < 0.1, "{prob:?}");
    }

    #[test]
    fn a_set_of_other_features_is_refused() {
        let metrics = vec!["cpu".to_string(), "mem".to_string()];
        let mut set = ModelSet {
            feature_names: crate::features::feature_names(&metrics),
            metrics,
            window: WindowConfig::default(),
            params: TrainParams::default(),
            types: Vec::new(),
            train_cases: Vec::new(),
            valid_cases: Vec::new(),
            skipped: Default::default(),
            type_notes: Default::default(),
        };
        check_features(&set).unwrap();
        // A set of one statistic fewer per metric, as an older version wrote.
        set.feature_names.retain(|f| !f.ends_with("|tail_z"));
        let e = check_features(&set).unwrap_err();
        assert!(e.contains("24 features of its 2 metrics") && e.contains("computes 26"), "{e}");
    }

    #[test]
    fn only_the_features_trees_split_on_are_read() {
        // The toy's two features plus a constant one, which no tree can split on.
        let mut w = toy();
        w.feature_names.push("c|mean".into());
        w.x = w.x.chunks(2).flat_map(|r| [r[0], r[1], 1.0]).collect();
        let set = train(
            &w,
            WindowConfig::default(),
            &TrainParams { nthread: 1, ..TrainParams::default() },
            &mut |_, _, _| {},
        )
        .unwrap();
        let sparse = Scorer::load(&set).unwrap();
        assert_eq!(sparse.used.len(), 3);
        assert!(sparse.used[0] && !sparse.used[2], "{:?}", sparse.used);
        let mut dense = Scorer::load(&set).unwrap();
        dense.used = vec![true; 3];
        // What an unread feature holds changes nothing, to the last bit.
        let rows = [5.5, 0.1, 1.0, 0.2, 0.1, 1.0, 5.2, f32::NAN, 1.0];
        let mut blanked = rows;
        for r in blanked.chunks_mut(3) {
            r[2] = f32::NAN;
            if !sparse.used[1] {
                r[1] = 77.0;
            }
        }
        assert_eq!(sparse.predict(&blanked, 3).unwrap(), dense.predict(&rows, 3).unwrap());
        assert_eq!(
            sparse.top_metrics_rows(0, &blanked, 3, 3).unwrap(),
            dense.top_metrics_rows(0, &rows, 3, 3).unwrap()
        );
        assert!(sparse.predict(&rows[..4], 2).is_err());
        // A JSON that is not a tree model reads every feature.
        assert_eq!(features_split_on(["{}"], 2), vec![true, true]);
        assert_eq!(
            features_split_on(
                [r#"{"trees":[{"left_children":[1,-1,-1],"split_indices":[1,0,0]}]}"#],
                3
            ),
            vec![false, true, false]
        );
        assert_eq!(
            features_split_on(
                [r#"{"trees":[{"left_children":[1,-1,-1],"split_indices":[7,0,0]}]}"#],
                3
            ),
            vec![true; 3]
        );
    }

    #[test]
    fn refuses_what_it_cannot_train() {
        let mut w = toy();
        for r in &mut w.rows {
            r.labels.clear();
        }
        let err = train(&w, WindowConfig::default(), &TrainParams::default(), &mut |_, _, _| {})
            .unwrap_err();
        assert!(err.contains("no anomaly type"), "{err}");
        assert!(TrainParams { eta: 0.0, ..TrainParams::default() }.validate().is_err());
        assert!(train(
            &Windows::default(),
            WindowConfig::default(),
            &TrainParams::default(),
            &mut |_, _, _| {}
        )
        .unwrap_err()
        .contains("no windows"));
    }
}
