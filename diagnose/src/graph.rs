//! The node graph and weighted PageRank. Edge weight between two nodes is
//! the mean |Pearson r| of their metric series over the window (the paper's
//! Eq. 2), over the metrics that vary on both; known topology edges add
//! their weight. PageRank runs on a petgraph graph with weight-proportional
//! transitions; the teleport vector may be personalised.

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use super::Frame;

/// Pearson correlation of two equally long series (pairs with a NaN are
/// skipped); None when either side is constant or fewer than 3 pairs remain.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (ma, mb) =
        (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    let d = (saa * sbb).sqrt();
    if d <= 1e-12 * (1.0 + ma.abs() + mb.abs()) || !d.is_finite() {
        return None;
    }
    Some((sab / d).clamp(-1.0, 1.0))
}

/// A weighted undirected graph over a frame's nodes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeGraph {
    pub nodes: Vec<String>,
    /// (i, j, weight) with i < j and weight > 0.
    pub edges: Vec<(usize, usize, f64)>,
}

/// A window centred and scaled to unit norm (missing values as 0), into a
/// reused buffer; false (buffer unspecified) when the window has fewer
/// than 3 finite values or is constant.
fn normalise_into(v: &[f64], out: &mut Vec<f64>) -> bool {
    let (mut count, mut sum) = (0usize, 0.0);
    for x in v.iter().filter(|x| x.is_finite()) {
        count += 1;
        sum += x;
    }
    if count < 3 {
        return false;
    }
    let m = sum / count as f64;
    out.clear();
    out.extend(v.iter().map(|x| if x.is_finite() { x - m } else { 0.0 }));
    let norm = out.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm <= 1e-12 * (1.0 + m.abs()) * (count as f64).sqrt() || !norm.is_finite() {
        return false;
    }
    for x in out.iter_mut() {
        *x /= norm;
    }
    true
}

/// The correlation graph of the window `[start, end)` over `metrics`, plus
/// `topology` edges (node names, extra weight). Each metric window is
/// centred and scaled to unit norm (zeros where a metric is constant or
/// absent, with a mask). A node's windows are laid out sample-major
/// (`[sample][metric]`), so a pair's correlations accumulate as a few
/// element-wise passes over all its metrics at once, which the compiler
/// vectorises; pairs are split over the cores.
pub fn correlation_graph(
    frame: &Frame,
    start: usize,
    end: usize,
    metrics: &[String],
    topology: &[(String, String, f64)],
) -> NodeGraph {
    correlation_graph_of(frame, &frame.columns(metrics), start, end, topology)
}

/// [`correlation_graph`] over series already looked up ([`Frame::columns`]).
pub fn correlation_graph_of(
    frame: &Frame,
    cols: &[Vec<Option<&[f64]>>],
    start: usize,
    end: usize,
    topology: &[(String, String, f64)],
) -> NodeGraph {
    let n = frame.nodes.len();
    let m = cols.first().map_or(0, Vec::len);
    let w = end.saturating_sub(start);
    // f32 halves the memory the pair loop streams and doubles its SIMD
    // width; unit-norm windows of a few dozen samples lose nothing that
    // matters to a correlation.
    let mut data = vec![0.0f32; n * w * m];
    let mut valid = vec![0.0f32; n * m];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
    // Each node's block of `data` and `valid` is its own: nodes are laid
    // out in parallel, a contiguous share of them per core.
    let lay_out = |nodes: &[Vec<Option<&[f64]>>], data: &mut [f32], valid: &mut [f32]| {
        let mut z = Vec::with_capacity(w);
        for ((node_cols, block), ok) in
            nodes.iter().zip(data.chunks_mut((w * m).max(1))).zip(valid.chunks_mut(m.max(1)))
        {
            for (k, col) in node_cols.iter().enumerate() {
                if let Some(v) = col {
                    if normalise_into(&v[start.min(v.len())..end.min(v.len())], &mut z) {
                        for (s, x) in z.iter().enumerate() {
                            block[s * m + k] = *x as f32;
                        }
                        ok[k] = 1.0;
                    }
                }
            }
        }
    };
    if threads < 2 || n < 16 || w * m == 0 {
        lay_out(cols, &mut data, &mut valid);
    } else {
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for ((nodes, d), v) in
                cols.chunks(per).zip(data.chunks_mut(per * w * m)).zip(valid.chunks_mut(per * m))
            {
                s.spawn(move || lay_out(nodes, d, v));
            }
        });
    }
    let pair_weight = |i: usize, j: usize, acc: &mut Vec<f32>| -> f64 {
        acc.clear();
        acc.resize(m, 0.0);
        for s in 0..w {
            let a = &data[(i * w + s) * m..][..m];
            let b = &data[(j * w + s) * m..][..m];
            for ((r, x), y) in acc.iter_mut().zip(a).zip(b) {
                *r += x * y;
            }
        }
        // A metric missing on either side has r = 0 and does not count.
        let count: f32 =
            valid[i * m..][..m].iter().zip(&valid[j * m..][..m]).map(|(x, y)| x * y).sum();
        let sum: f32 = acc.iter().map(|r| r.abs().min(1.0)).sum();
        let mut wgt = if count > 0.0 { f64::from(sum / count) } else { 0.0 };
        for (a, b, extra) in topology {
            let (na, nb) = (&frame.nodes[i].node, &frame.nodes[j].node);
            if (a == na && b == nb) || (a == nb && b == na) {
                wgt += extra.max(0.0);
            }
        }
        wgt
    };
    let rows: Vec<usize> = (0..n).collect();
    let edges_of = |is: &[usize]| -> Vec<(usize, usize, f64)> {
        let mut acc = Vec::with_capacity(m);
        let mut out = Vec::new();
        for &i in is {
            for j in i + 1..n {
                let wgt = pair_weight(i, j, &mut acc);
                if wgt > 0.0 {
                    out.push((i, j, wgt));
                }
            }
        }
        out
    };
    let mut edges: Vec<(usize, usize, f64)> = if threads < 2 || n < 16 {
        edges_of(&rows)
    } else {
        // Interleave rows so the triangular work is even.
        let parts: Vec<Vec<usize>> = (0..threads)
            .map(|t| rows.iter().copied().filter(|i| i % threads == t).collect())
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = parts.iter().map(|p| s.spawn(|| edges_of(p))).collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    edges.sort_by_key(|e| (e.0, e.1));
    NodeGraph { nodes: frame.nodes.iter().map(|s| s.node.clone()).collect(), edges }
}

/// Weighted PageRank: from each node the walk follows an edge with
/// probability proportional to its weight, and with probability
/// `1 - damping` (or from a node without edges) jumps by `teleport`
/// (uniform when None; normalised). Power iteration until the L1 change is
/// below `tol` or 200 rounds. Sums to 1.
pub fn pagerank(g: &NodeGraph, damping: f64, teleport: Option<&[f64]>, tol: f64) -> Vec<f64> {
    let n = g.nodes.len();
    if n == 0 {
        return Vec::new();
    }
    let mut graph: UnGraph<usize, f64> = UnGraph::with_capacity(n, g.edges.len());
    let ids: Vec<NodeIndex> = (0..n).map(|i| graph.add_node(i)).collect();
    for &(a, b, w) in &g.edges {
        graph.add_edge(ids[a], ids[b], w);
    }
    let tele: Vec<f64> = match teleport {
        Some(t)
            if t.len() == n
                && t.iter().all(|x| x.is_finite() && *x >= 0.0)
                && t.iter().sum::<f64>() > 0.0 =>
        {
            let s: f64 = t.iter().sum();
            t.iter().map(|x| x / s).collect()
        }
        _ => vec![1.0 / n as f64; n],
    };
    let strength: Vec<f64> =
        ids.iter().map(|&v| graph.edges(v).map(|e| *e.weight()).sum()).collect();
    let mut pr = tele.clone();
    for _ in 0..200 {
        let mut next = vec![0.0; n];
        let mut dangling = 0.0;
        for (i, &v) in ids.iter().enumerate() {
            if strength[i] <= 0.0 {
                dangling += pr[i];
                continue;
            }
            for e in graph.edges(v) {
                let j = graph[e.target()];
                let j = if j == i { graph[e.source()] } else { j };
                next[j] += damping * pr[i] * e.weight() / strength[i];
            }
        }
        for (j, x) in next.iter_mut().enumerate() {
            *x += ((1.0 - damping) + damping * dangling) * tele[j];
        }
        let total: f64 = next.iter().sum();
        for x in &mut next {
            *x /= total;
        }
        let change: f64 = next.iter().zip(&pr).map(|(a, b)| (a - b).abs()).sum();
        pr = next;
        if change < tol {
            break;
        }
    }
    pr
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// GraphML of a graph with per-node attributes (`pagerank`, `score`, `type`).
pub fn to_graphml(g: &NodeGraph, node_attrs: &[(f64, f64, String)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n");
    s.push_str(
        "  <key id=\"pagerank\" for=\"node\" attr.name=\"pagerank\" attr.type=\"double\"/>\n",
    );
    s.push_str("  <key id=\"score\" for=\"node\" attr.name=\"score\" attr.type=\"double\"/>\n");
    s.push_str("  <key id=\"type\" for=\"node\" attr.name=\"type\" attr.type=\"string\"/>\n");
    s.push_str("  <key id=\"weight\" for=\"edge\" attr.name=\"weight\" attr.type=\"double\"/>\n");
    s.push_str("  <graph id=\"diagnosis\" edgedefault=\"undirected\">\n");
    for (i, name) in g.nodes.iter().enumerate() {
        s.push_str(&format!("    <node id=\"{}\">", xml_escape(name)));
        if let Some((pr, score, kind)) = node_attrs.get(i) {
            s.push_str(&format!("<data key=\"pagerank\">{pr}</data><data key=\"score\">{score}</data><data key=\"type\">{}</data>", xml_escape(kind)));
        }
        s.push_str("</node>\n");
    }
    for (a, b, w) in &g.edges {
        s.push_str(&format!(
            "    <edge source=\"{}\" target=\"{}\"><data key=\"weight\">{w}</data></edge>\n",
            xml_escape(&g.nodes[*a]),
            xml_escape(&g.nodes[*b])
        ));
    }
    s.push_str("  </graph>\n</graphml>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeSeries;

    #[test]
    fn pearson_of_known_series() {
        assert!(
            (pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12
        );
        assert!(
            (pearson(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12
        );
        // x = 1..5, y = 1,3,2,5,4: r = 0.8.
        assert!(
            (pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 3.0, 2.0, 5.0, 4.0]).unwrap() - 0.8).abs()
                < 1e-12
        );
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(
            pearson(&[1.0, f64::NAN, 3.0, 4.0], &[1.0, 5.0, 3.0, 4.0]).map(|r| (r * 1e9).round()),
            Some(1e9)
        );
    }

    #[test]
    fn pagerank_of_hand_computed_graphs() {
        // A symmetric triangle: uniform.
        let tri = NodeGraph {
            nodes: vec!["a".into(), "b".into(), "c".into()],
            edges: vec![(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0)],
        };
        for p in pagerank(&tri, 0.85, None, 1e-12) {
            assert!((p - 1.0 / 3.0).abs() < 1e-9);
        }
        // A star a–b, a–c: with d = 0.85, PR(a) = (1 + d) / (3 (1 + d/2) ) ... solved:
        // PR(a) = 0.15/3 + 0.85 (PR(b) + PR(c)), PR(b) = 0.15/3 + 0.85 PR(a)/2.
        // → PR(b) = (0.05 + 0.425 PR(a)), PR(a) = 0.05 + 1.7 (0.05 + 0.425 PR(a))
        // → PR(a) (1 - 0.7225) = 0.135 → PR(a) = 0.486486...
        let star = NodeGraph {
            nodes: vec!["a".into(), "b".into(), "c".into()],
            edges: vec![(0, 1, 1.0), (0, 2, 1.0)],
        };
        let p = pagerank(&star, 0.85, None, 1e-14);
        assert!((p[0] - 0.135 / 0.2775).abs() < 1e-9, "{p:?}");
        assert!((p[1] - p[2]).abs() < 1e-12);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Weights matter: a path a–b (weight 3), b–c (weight 1): b gets all of a's walk.
        let w = NodeGraph {
            nodes: vec!["a".into(), "b".into(), "c".into()],
            edges: vec![(0, 1, 3.0), (1, 2, 1.0)],
        };
        let p = pagerank(&w, 0.85, None, 1e-14);
        assert!(p[0] > p[2], "{p:?}");
        // A node without edges keeps only its teleport share; personalisation moves mass.
        let lone = NodeGraph { nodes: vec!["a".into(), "b".into()], edges: vec![] };
        assert_eq!(pagerank(&lone, 0.85, None, 1e-12), vec![0.5, 0.5]);
        let p = pagerank(&lone, 0.85, Some(&[3.0, 1.0]), 1e-12);
        assert!((p[0] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_graph_of_many_nodes_is_the_mean_pearson_pair_by_pair() {
        // 20 nodes (laid out and paired in parallel), 6 metrics: one
        // constant on some nodes, one absent on others.
        let mut rng = crate::split::SplitMix(7);
        let nodes: Vec<NodeSeries> = (0..20)
            .map(|i| {
                let mut metrics: std::collections::BTreeMap<String, Vec<f64>> = (0..6)
                    .map(|k| (format!("m{k}"), (0..30).map(|_| rng.next_f64() * 10.0).collect()))
                    .collect();
                if i % 3 == 0 {
                    metrics.insert("m2".into(), vec![4.0; 30]);
                }
                if i % 4 == 1 {
                    metrics.remove("m5");
                }
                NodeSeries { node: format!("n{i:02}"), metrics }
            })
            .collect();
        let frame = Frame { start_ms: 0, step_ms: 1000, len: 30, nodes };
        let metrics: Vec<String> = (0..6).map(|k| format!("m{k}")).collect();
        let g = correlation_graph(&frame, 18, 30, &metrics, &[]);
        let mut want = Vec::new();
        for i in 0..20 {
            for j in i + 1..20 {
                let rs: Vec<f64> = metrics
                    .iter()
                    .filter_map(|m| {
                        let (a, b) =
                            (frame.nodes[i].metrics.get(m)?, frame.nodes[j].metrics.get(m)?);
                        // A constant side counts as a metric that does not vary: left out.
                        pearson(&a[18..30], &b[18..30]).map(f64::abs)
                    })
                    .collect();
                want.push((i, j, rs.iter().sum::<f64>() / rs.len() as f64));
            }
        }
        assert_eq!(g.edges.len(), want.len());
        for ((a, b, w), (i, j, x)) in g.edges.iter().zip(&want) {
            assert_eq!((a, b), (i, j));
            assert!((w - x).abs() < 1e-5, "{a}–{b}: {w} against {x}");
        }
    }

    #[test]
    fn correlation_graph_weights_and_graphml() {
        let node = |name: &str, m1: Vec<f64>, m2: Vec<f64>| NodeSeries {
            node: name.into(),
            metrics: [("m1".to_string(), m1), ("m2".to_string(), m2)].into(),
        };
        let frame = Frame {
            start_ms: 0,
            step_ms: 1000,
            len: 4,
            nodes: vec![
                node("a", vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 1.0, 1.0, 1.0]),
                node("b", vec![4.0, 3.0, 2.0, 1.0], vec![1.0, 2.0, 1.0, 2.0]),
                node("c", vec![1.0, 2.0, 3.0, 4.0], vec![2.0, 1.0, 2.0, 1.0]),
            ],
        };
        let metrics = vec!["m1".to_string(), "m2".to_string()];
        let g = correlation_graph(&frame, 0, 4, &metrics, &[]);
        // a–b: only m1 varies on both, |r| = 1; a–c likewise; b–c: m1 |r| = 1, m2 |r| = 1.
        assert_eq!(g.edges.len(), 3);
        for (_, _, w) in &g.edges {
            assert!((w - 1.0).abs() < 1e-12);
        }
        let g2 = correlation_graph(&frame, 0, 4, &metrics, &[("a".into(), "b".into(), 0.5)]);
        assert!((g2.edges[0].2 - 1.5).abs() < 1e-12);
        let xml = to_graphml(&g, &[(0.3, 0.2, "cpu_stress".into())]);
        assert!(xml.contains("<node id=\"a\"><data key=\"pagerank\">0.3</data>"));
        assert_eq!(xml.matches("<edge ").count(), 3);
    }
}
