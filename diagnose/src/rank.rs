//! Ranking at one moment: every node's latest window is scored per type —
//! by the classifiers, or by the statistical scorer without a model, or at
//! random (the Dummy baseline). A root cause is where a node stands out from
//! the others, so each p(type | node) is taken against its peers: the
//! excess e = max(0, p − median of the other nodes' p(type)), plus 10⁻³ p
//! to order what the peers share. A classifier that answers alike on every
//! node (a cluster-wide load, a host-wide signal) names no node. The excess
//! is multiplied by the node's PageRank on the window's correlation graph:
//! score = e(type | node) × PR(node). The walk teleports in proportion to
//! each node's highest excess, so PageRank spreads suspicion along
//! correlated nodes instead of favouring the most connected one.

use serde::Serialize;

pub use distdiag_api::ranks::{Method, RankEntry};

use super::features::window_features_of;
use super::graph::{correlation_graph_of, pagerank, NodeGraph};
use super::model::Scorer;
use super::split::SplitMix;
use super::{stat, Frame, WindowConfig};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    pub method: Method,
    /// End of the window (ms).
    pub at_ms: i64,
    pub entries: Vec<RankEntry>,
    pub graph: NodeGraph,
    pub pagerank: Vec<f64>,
}

/// How to rank.
pub enum Ranker<'a> {
    Model(&'a Scorer),
    /// Over these types (see [`stat::types_for`]); each node's reference
    /// is the `baseline_ms` before the window, or before sample
    /// `reference_end` when given (a reference frozen before a suspicion,
    /// which a fault that lasts cannot contaminate).
    Statistical {
        types: &'a [String],
        reference_end: Option<usize>,
    },
    /// Random order over these types, from this seed.
    Dummy(&'a [String], u64),
}

pub const DAMPING: f64 = 0.85;

/// Ranks every (node, type) for the window ending at sample `end` of
/// `frame`. `explain` entries (from the top) get their top metrics.
pub fn rank(
    frame: &Frame,
    end: usize,
    cfg: &WindowConfig,
    ranker: &Ranker<'_>,
    topology: &[(String, String, f64)],
    explain: usize,
) -> Result<Ranking, String> {
    let at_ms = frame.time_of(end);
    let n = frame.nodes.len();
    let metrics: Vec<String> = match ranker {
        Ranker::Model(s) => s.metrics.clone(),
        _ => frame.metric_names(),
    };
    let start = end.saturating_sub(cfg.samples());
    let cols = frame.columns(&metrics);
    let graph = correlation_graph_of(frame, &cols, start, end, topology);
    // p[node][type] and per entry explanation.
    // Types, p[node][type], feature rows, method.
    type Scores = (Vec<String>, Vec<Vec<f64>>, Vec<Vec<f32>>, Method);
    // The statistical scorer's metrics behind each [node][type].
    let mut explained: Vec<Vec<Vec<(String, f64)>>> = Vec::new();
    let (types, probs, feats, method): Scores = match ranker {
        Ranker::Model(s) => {
            let f = window_features_of(&cols, end, cfg, metrics.len(), Some(&s.used));
            let x: Vec<f32> = f.iter().flatten().copied().collect();
            let p = s.predict(&x, n)?;
            let probs =
                (0..n).map(|i| p.iter().map(|per_type| f64::from(per_type[i])).collect()).collect();
            (s.types(), probs, f, Method::Model)
        }
        Ranker::Statistical { types, reference_end } => {
            let types = stat::types_for(types, &metrics);
            let ref_end = reference_end.unwrap_or(start).min(start);
            let b = (cfg.baseline_ms / cfg.step_ms.max(1)).max(1) as usize;
            let reference = stat::Reference { start: ref_end.saturating_sub(b), end: ref_end };
            let scored = stat::score_window(&metrics, &cols, (start, end), reference, &types);
            let probs = scored.iter().map(|r| r.iter().map(|(p, _)| *p).collect()).collect();
            explained =
                scored.into_iter().map(|r| r.into_iter().map(|(_, top)| top).collect()).collect();
            (types, probs, Vec::new(), Method::Statistical)
        }
        Ranker::Dummy(types, seed) => {
            let mut rng = SplitMix(*seed ^ at_ms as u64);
            let probs = (0..n).map(|_| types.iter().map(|_| rng.next_f64()).collect()).collect();
            (types.to_vec(), probs, Vec::new(), Method::Dummy)
        }
    };
    let mut ranking = order(frame, end, &types, &probs, method, graph);
    let sorted = &mut ranking.entries;
    let node_index = |name: &str| frame.nodes.iter().position(|s| s.node == name).unwrap_or(0);
    let type_index = |kind: &str| types.iter().position(|k| k == kind).unwrap_or(0);
    match ranker {
        Ranker::Model(s) => {
            // One SHAP call per type over the explained entries' rows.
            for t in 0..types.len() {
                let which: Vec<usize> = (0..explain.min(sorted.len()))
                    .filter(|&e| type_index(&sorted[e].kind) == t)
                    .collect();
                if which.is_empty() {
                    continue;
                }
                let x: Vec<f32> = which
                    .iter()
                    .flat_map(|&e| feats[node_index(&sorted[e].node)].iter().copied())
                    .collect();
                for (e, top) in which.iter().zip(s.top_metrics_rows(t, &x, which.len(), 3)?) {
                    sorted[*e].top_metrics = top;
                }
            }
        }
        Ranker::Statistical { .. } => {
            for e in sorted.iter_mut().take(explain) {
                let (i, t) = (node_index(&e.node), type_index(&e.kind));
                e.top_metrics = explained[i][t].clone();
            }
        }
        Ranker::Dummy(..) => {}
    }
    Ok(ranking)
}

/// The ranking of scores `probs[node][type]` (in `frame`'s node order) on
/// `graph`: excess over peers, PageRank, score, best first; no top metrics.
pub fn order(
    frame: &Frame,
    end: usize,
    types: &[String],
    probs: &[Vec<f64>],
    method: Method,
    graph: NodeGraph,
) -> Ranking {
    let n = frame.nodes.len();
    // Dummy's random draws are its ranking as they are.
    let excess = if method == Method::Dummy { probs.to_vec() } else { against_peers(probs) };
    let teleport: Vec<f64> =
        excess.iter().map(|p| p.iter().copied().fold(0.0, f64::max) + 1e-6).collect();
    let pr = match method {
        Method::Dummy => vec![1.0 / n.max(1) as f64; n],
        _ => pagerank(&graph, DAMPING, Some(&teleport), 1e-10),
    };
    let mut entries = Vec::with_capacity(n * types.len());
    for (i, node) in frame.nodes.iter().enumerate() {
        for (t, kind) in types.iter().enumerate() {
            let (p, e) = (probs[i][t], excess[i][t]);
            entries.push(RankEntry {
                node: node.node.clone(),
                kind: kind.clone(),
                score: e * pr[i],
                probability: p,
                excess: e,
                pagerank: pr[i],
                top_metrics: Vec::new(),
            });
        }
    }
    let order: Vec<usize> = {
        let mut o: Vec<usize> = (0..entries.len()).collect();
        o.sort_by(|a, b| {
            entries[*b]
                .score
                .total_cmp(&entries[*a].score)
                .then(entries[*a].node.cmp(&entries[*b].node))
                .then(entries[*a].kind.cmp(&entries[*b].kind))
        });
        o
    };
    let sorted: Vec<RankEntry> = order.iter().map(|&k| entries[k].clone()).collect();
    Ranking { method, at_ms: frame.time_of(end), entries: sorted, graph, pagerank: pr }
}

/// Share of p added to the excess, so that what every node shows still
/// orders below what one node shows alone.
pub const SHARED_SHARE: f64 = 1e-3;

/// Each node's p(type) less the lower quartile of the other nodes' p(type)
/// (the lowest of up to four others), floored at zero, plus
/// [`SHARED_SHARE`] of p. What nearly every node shows (a cluster-wide
/// surge) is contrasted away; a fault on two nodes of three keeps its p,
/// where the median of the others would halve it. Probabilities are
/// `[node][type]`; a lone node keeps its p.
pub fn against_peers(probs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = probs.len();
    if n < 2 {
        return probs.to_vec();
    }
    let types = probs.first().map_or(0, Vec::len);
    let mut out = probs.to_vec();
    for t in 0..types {
        let mut col: Vec<(f64, usize)> = probs.iter().enumerate().map(|(i, p)| (p[t], i)).collect();
        col.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sorted: Vec<f64> = col.iter().map(|c| c.0).collect();
        for (r, &(p, i)) in col.iter().enumerate() {
            out[i][t] = (p - lower_quartile_without(&sorted, r)).max(0.0) + SHARED_SHARE * p;
        }
    }
    out
}

/// The lower quartile (the value at a quarter of the way, rounded down)
/// of sorted `v` without its element `skip`; NaN when nothing is left.
fn lower_quartile_without(v: &[f64], skip: usize) -> f64 {
    let others = v.len().saturating_sub(1);
    if others == 0 {
        return f64::NAN;
    }
    let q = (others - 1) / 4;
    v[if q < skip { q } else { q + 1 }]
}

/// When in a case's faults it is diagnosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum At {
    /// Halfway between the first fault's start and the last one's end.
    #[default]
    Middle,
    /// When the first fault starts (the window ending there barely sees it).
    Start,
    /// This many ms after the first fault starts.
    AfterStart(i64),
}

impl std::str::FromStr for At {
    type Err = String;
    /// `middle`, `start`, or `+30s` / `+1500ms` / `+30` (seconds).
    fn from_str(s: &str) -> Result<At, String> {
        match s {
            "middle" => Ok(At::Middle),
            "start" => Ok(At::Start),
            _ => {
                let bad = || format!("--at {s:?}: give middle, start or +N s (e.g. +30s, +1500ms)");
                let rest = s.strip_prefix('+').ok_or_else(bad)?;
                let (num, mult) = if let Some(n) = rest.strip_suffix("ms") {
                    (n, 1.0)
                } else {
                    (rest.strip_suffix('s').unwrap_or(rest), 1000.0)
                };
                let v: f64 = num.parse().map_err(|_| bad())?;
                if !(v.is_finite() && v >= 0.0 && v * mult <= 86_400_000.0) {
                    return Err(bad());
                }
                Ok(At::AfterStart((v * mult).round() as i64))
            }
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Middle => f.write_str("middle"),
            At::Start => f.write_str("start"),
            At::AfterStart(ms) => write!(f, "+{}s", *ms as f64 / 1000.0),
        }
    }
}

/// The first and last instant of a case's faults.
fn case_span(events: &[super::FaultEvent], case: &str) -> Option<(i64, i64)> {
    let span = events.iter().filter(|e| e.case == case);
    Some((span.clone().map(|e| e.start_ms).min()?, span.map(|e| e.end_ms).max()?))
}

/// Ranks each case at the point `at_point` of its faults plus `shift_ms`
/// (clamped to the case's frame): one (truth, ranking) per case whose
/// frame is in `periods`.
pub fn rank_cases(
    periods: &[(super::labels::Period, Frame)],
    truths: &[super::eval::Truth],
    events: &[super::FaultEvent],
    cfg: &WindowConfig,
    ranker: &Ranker<'_>,
    at_point: At,
    shift_ms: i64,
) -> Result<Vec<(super::eval::Truth, super::eval::Ranked)>, String> {
    let mut out = Vec::new();
    for truth in truths {
        let Some((_, frame)) = periods.iter().find(|(p, _)| p.case == truth.case) else { continue };
        let Some((s, e)) = case_span(events, &truth.case) else { continue };
        let at = match at_point {
            At::Middle => (s + e) / 2,
            At::Start => s,
            At::AfterStart(ms) => s + ms,
        } + shift_ms;
        let end = frame.index_at(at).clamp(cfg.samples().min(frame.len), frame.len);
        let r = rank(frame, end, cfg, ranker, &[], 0)?;
        out.push((truth.clone(), r.entries.into_iter().map(|e| (e.node, e.kind)).collect()));
    }
    Ok(out)
}

/// Each case's detection: its window ranked at every grid step from its
/// first fault's start, the first window end (ms after the start) from
/// which the top entry is one of its causes with p ≥ `threshold` for
/// `hold_ms` on end (every ranking in between), so that a ranking that
/// lands on a cause by chance once is not a detection; None when there is
/// none starting within `horizon_ms` (or the frame ends first). With it,
/// whether a wrong top entry with p ≥ `threshold` came before (a false
/// alarm an operator would have seen first). One entry per case whose
/// frame is in `periods`.
pub fn detection_times(
    periods: &[(super::labels::Period, Frame)],
    truths: &[super::eval::Truth],
    events: &[super::FaultEvent],
    cfg: &WindowConfig,
    ranker: &Ranker<'_>,
    (horizon_ms, hold_ms, threshold): (i64, i64, f64),
) -> Result<Vec<super::eval::Detected>, String> {
    let mut out = Vec::new();
    for truth in truths {
        let Some((_, frame)) = periods.iter().find(|(p, _)| p.case == truth.case) else { continue };
        let Some((start, _)) = case_span(events, &truth.case) else { continue };
        let (mut since, mut found, mut wrong_first) = (None, None, false);
        // The first window end at or after the start, then every step.
        let mut end = frame.index_at(start).max(cfg.samples());
        while end <= frame.len {
            let t = (frame.time_of(end) - start).max(0);
            if since.is_none() && t > horizon_ms {
                break;
            }
            let r = rank(frame, end, cfg, ranker, &[], 0)?;
            let top = r.entries.first().filter(|e| e.probability >= threshold);
            match top {
                Some(e) if truth.causes.iter().any(|c| c.0 == e.node && c.1 == e.kind) => {
                    let from = *since.get_or_insert(t);
                    if t - from >= hold_ms {
                        found = Some(from);
                        break;
                    }
                }
                Some(_) => {
                    since = None;
                    wrong_first = true;
                }
                None => since = None,
            }
            end += 1;
        }
        out.push(super::eval::Detected { truth: truth.clone(), at_ms: found, wrong_first });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSeries;

    /// Three nodes' `cg.cpu_usage` at 1 Hz for `len` s: a and c wobble, b
    /// wobbles too and jumps by 80 at `jump_at` s and stays there.
    fn cpu_jump_frame(len: usize, jump_at: usize) -> Frame {
        let wobble = |k: usize| (0..len).map(|i| 10.0 + ((i * k) % 7) as f64).collect::<Vec<f64>>();
        let mut hot = wobble(3);
        for x in &mut hot[jump_at..] {
            *x += 80.0;
        }
        let mk = |name: &str, v: Vec<f64>| NodeSeries {
            node: name.into(),
            metrics: [("cg.cpu_usage".to_string(), v)].into(),
        };
        Frame {
            start_ms: 0,
            step_ms: 1000,
            len,
            nodes: vec![mk("a", wobble(2)), mk("b", hot), mk("c", wobble(5))],
        }
    }

    #[test]
    fn detection_follows_a_case_from_its_start() {
        use crate::eval::Truth;
        use crate::labels::Period;
        use crate::FaultEvent;
        let frame = cpu_jump_frame(90, 50);
        let cfg = WindowConfig {
            window_ms: 10_000,
            stride_ms: 5_000,
            step_ms: 1000,
            baseline_ms: 30_000,
        };
        let periods = [(Period { case: "k".into(), start_ms: 0, end_ms: 90_000 }, frame)];
        let truth = |node: &str| Truth {
            case: "k".into(),
            scenario: "cpu".into(),
            causes: vec![(node.into(), "cpu_stress".into())],
        };
        let events = [FaultEvent {
            case: "k".into(),
            node: "b".into(),
            kind: "cpu_stress".into(),
            start_ms: 50_000,
            end_ms: 90_000,
        }];
        let types = vec!["cpu_stress".to_string()];
        let stat = Ranker::Statistical { types: &types, reference_end: None };
        // The scorer's p here: 0.12 at +3 s, 0.47 at +5 s, 0.52 from +6 to
        // +10 s, then falling as the baseline takes the fault in.
        let follow = |cause: &str, limits: (i64, i64, f64)| {
            detection_times(&periods, &[truth(cause)], &events, &cfg, &stat, limits).unwrap()
        };
        let d = follow("b", (30_000, 5_000, 0.3));
        assert_eq!(d[0].at_ms, Some(5_000), "named from +5 s, and held for 5 s");
        assert!(!d[0].wrong_first);
        // Above 0.5 for 5 rankings only: not held long enough.
        assert_eq!(follow("b", (30_000, 5_000, 0.5))[0].at_ms, None);
        assert_eq!(follow("b", (30_000, 4_000, 0.5))[0].at_ms, Some(6_000));
        // Had the cause been a, b on top is a wrong answer first, and never a detection.
        let wrong = follow("a", (30_000, 5_000, 0.3));
        assert_eq!((wrong[0].at_ms, wrong[0].wrong_first), (None, true));
        // A threshold no ranking reaches: not detected, nothing wrong first.
        let never = follow("b", (30_000, 5_000, 1.5));
        assert_eq!((never[0].at_ms, never[0].wrong_first), (None, false));
        // A horizon before the scorer is sure: not detected.
        assert_eq!(follow("b", (4_000, 5_000, 0.3))[0].at_ms, None);
    }

    #[test]
    fn statistical_ranking_finds_the_deviating_node() {
        let mk = |name: &str, v: Vec<f64>| NodeSeries {
            node: name.into(),
            metrics: [
                ("cg.cpu_usage".to_string(), v.clone()),
                ("disk.write_bytes".to_string(), v.iter().map(|x| x * 0.5 + 1.0).collect()),
            ]
            .into(),
        };
        let wobble = |k: usize| (0..60).map(|i| 10.0 + ((i * k) % 7) as f64).collect::<Vec<f64>>();
        let mut hot = wobble(3);
        for x in &mut hot[50..] {
            *x += 80.0;
        }
        let frame = Frame {
            start_ms: 0,
            step_ms: 1000,
            len: 60,
            nodes: vec![mk("a", wobble(2)), mk("b", hot), mk("c", wobble(5))],
        };
        let cfg = WindowConfig {
            window_ms: 10_000,
            stride_ms: 5_000,
            step_ms: 1000,
            baseline_ms: 40_000,
        };
        let types = vec!["cpu_stress".to_string(), "memory_stress".to_string()];
        let r = rank(
            &frame,
            60,
            &cfg,
            &Ranker::Statistical { types: &types, reference_end: None },
            &[],
            2,
        )
        .unwrap();
        assert_eq!(r.method, Method::Statistical);
        assert_eq!((r.entries[0].node.as_str(), r.entries[0].kind.as_str()), ("b", "cpu_stress"));
        // memory_stress has no series in this frame: it is not scored.
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[0].top_metrics[0].0, "cg.cpu_usage");
        assert!((r.pagerank.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(r.at_ms, 60_000);
        let d = rank(&frame, 60, &cfg, &Ranker::Dummy(&types, 3), &[], 0).unwrap();
        assert_eq!(d.entries.len(), 6);
        assert_eq!(d, rank(&frame, 60, &cfg, &Ranker::Dummy(&types, 3), &[], 0).unwrap());
    }

    #[test]
    fn a_frozen_reference_still_sees_a_long_fault() {
        let frame = cpu_jump_frame(60, 20);
        let cfg = WindowConfig {
            window_ms: 10_000,
            stride_ms: 5_000,
            step_ms: 1000,
            baseline_ms: 40_000,
        };
        let types = vec!["cpu_stress".to_string()];
        let p_of_b = |reference_end| {
            let r = rank(
                &frame,
                60,
                &cfg,
                &Ranker::Statistical { types: &types, reference_end },
                &[],
                0,
            )
            .unwrap();
            r.entries.iter().find(|e| e.node == "b").unwrap().probability
        };
        // The 40 s before the window are the fault itself: nothing deviates.
        assert!(p_of_b(None) < 0.2, "{}", p_of_b(None));
        // Frozen before the fault began, the reference still sees it.
        assert!(p_of_b(Some(20)) > 0.5, "{}", p_of_b(Some(20)));
    }

    #[test]
    fn excess_over_peers_by_hand() {
        // Type 0 high everywhere (shared), type 1 high on node 1 only; two
        // of four nodes share type 2. With three others the lower quartile
        // is the lowest of them.
        let p = vec![
            vec![0.9, 0.1, 0.8],
            vec![0.95, 0.8, 0.8],
            vec![0.9, 0.1, 0.1],
            vec![0.9, 0.2, 0.0],
        ];
        let e = against_peers(&p);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // Node 1, type 0: 0.95 − min(0.9, 0.9, 0.9) = 0.05.
        assert!(close(e[1][0], 0.05 + SHARED_SHARE * 0.95), "{e:?}");
        // Node 0, type 0: 0.9 − min(0.95, 0.9, 0.9) = 0 → only the shared share.
        assert!(close(e[0][0], SHARED_SHARE * 0.9));
        // Node 1, type 1: 0.8 − min(0.1, 0.1, 0.2) = 0.7.
        assert!(close(e[1][1], 0.7 + SHARED_SHARE * 0.8));
        // Nodes 0 and 1 share type 2: each 0.8 − min(0.8, 0.1, 0.0) = 0.8.
        assert!(close(e[0][2], 0.8 + SHARED_SHARE * 0.8) && close(e[1][2], e[0][2]));
        assert!(close(e[3][2], 0.0));
        // Two faulty nodes of three keep their p (the median of the
        // others, 0.45, would halve it).
        let two = against_peers(&[vec![0.9], vec![0.9], vec![0.0]]);
        assert!(close(two[0][0], 0.9 + SHARED_SHARE * 0.9) && close(two[2][0], 0.0), "{two:?}");
        // Nine nodes: eight others, the quartile is the second lowest. A
        // type on eight of nine is cluster-wide: 0.8 − 0.8 = 0.
        let mut wide = vec![vec![0.8]; 9];
        wide[4][0] = 0.0;
        assert!(close(against_peers(&wide)[0][0], SHARED_SHARE * 0.8));
        // On seven of nine it stays: 0.8 − second lowest of (0, 0, 0.8 ×6) = 0.8.
        wide[5][0] = 0.0;
        assert!(close(against_peers(&wide)[0][0], 0.8 + SHARED_SHARE * 0.8));
        // A lone node keeps its probabilities.
        assert_eq!(against_peers(&p[..1]), p[..1].to_vec());
        assert!(lower_quartile_without(&[0.5], 0).is_nan());
        assert_eq!(lower_quartile_without(&[0.1, 0.5], 0), 0.5);
    }

    #[test]
    fn a_type_every_node_shows_ranks_below_one_node_alone() {
        // The scorer's first type fires on all three nodes; the second only on b.
        let mk = |name: &str, v: Vec<f64>| NodeSeries {
            node: name.into(),
            metrics: [("m".to_string(), v)].into(),
        };
        let frame = Frame {
            start_ms: 0,
            step_ms: 1000,
            len: 30,
            nodes: vec![mk("a", vec![1.0; 30]), mk("b", vec![2.0; 30]), mk("c", vec![3.0; 30])],
        };
        let probs = vec![vec![0.99, 0.05], vec![0.99, 0.6], vec![0.99, 0.05]];
        let metrics = frame.metric_names();
        let graph = correlation_graph_of(&frame, &frame.columns(&metrics), 20, 30, &[]);
        let r = order(
            &frame,
            30,
            &["shared".to_string(), "alone".to_string()],
            &probs,
            Method::Model,
            graph,
        );
        assert_eq!((r.entries[0].node.as_str(), r.entries[0].kind.as_str()), ("b", "alone"));
        assert_eq!(r.entries[0].probability, 0.6);
        assert!((r.entries[0].excess - (0.55 + SHARED_SHARE * 0.6)).abs() < 1e-12);
        assert!(r
            .entries
            .iter()
            .filter(|e| e.kind == "shared")
            .all(|e| e.score < r.entries[0].score / 100.0));
    }
}
