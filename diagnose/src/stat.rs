//! The statistical scorer, for when no model is active and as a baseline:
//! each metric's robust z-score against the node's own reference period
//! (median/MAD, NSigma/BARO style), grouped by the resource the metric
//! measures; a node's score for a type is the largest |z| of that type's
//! metric family, mapped to [0, 1] as |z| / 50.

/// Metric name prefixes per fault type. A type with no family never gets
/// a statistical score.
const FAMILIES: &[(&str, &[&str])] = &[
    ("cpu_stress", &["cpu.", "cg.cpu_", "load.", "proc.cpu_", "psi.cpu"]),
    (
        "memory_stress",
        &["mem.", "cg.mem_", "vm.swap", "vm.steal", "vm.oom", "psi.memory", "proc.rss"],
    ),
    (
        "disk_stress",
        &["disk.", "cg.io_", "vm.page_", "psi.io", "proc.read_bytes", "proc.write_bytes"],
    ),
    ("network_delay", &["net.", "tcp."]),
    ("network_loss", &["tcp.retrans", "tcp.timeouts", "tcp.syn_retrans", "net."]),
    ("network_bandwidth", &["net.", "tcp."]),
    ("cache_bottleneck", &["db.cache", "db.io_", "db.iops"]),
    ("too_many_indexes", &["db.io_write", "db.sql_time", "db.iops"]),
    ("workload_surge", &["db.queries", "db.transactions", "db.connections", "db.sessions"]),
    ("lock_contention", &["db.sessions_active", "db.deadlocks", "db.sql_time"]),
];

/// Whether `metric` measures what `kind` disturbs.
pub fn in_family(kind: &str, metric: &str) -> bool {
    FAMILIES
        .iter()
        .find(|(k, _)| *k == kind)
        .is_some_and(|(_, prefixes)| prefixes.iter().any(|p| metric.starts_with(p)))
}

/// Types the statistical scorer knows.
pub fn known_types() -> Vec<String> {
    FAMILIES.iter().map(|(k, _)| k.to_string()).collect()
}

/// Scores of one node's feature row (features as [`super::features`]
/// lays them out) for each of `types`: (score in [0, 1], metrics by |z|).
pub fn score_row(
    metrics: &[String],
    row: &[f32],
    types: &[String],
) -> Vec<(f64, Vec<(String, f64)>)> {
    let width = super::features::STATS.len();
    let z_at = super::features::STATS.iter().position(|s| *s == "base_z").unwrap_or(10);
    let zs: Vec<(usize, f64)> = metrics
        .iter()
        .enumerate()
        .map(|(i, _)| (i, row.get(i * width + z_at).map_or(f64::NAN, |v| f64::from(*v).abs())))
        .filter(|(_, z)| z.is_finite())
        .collect();
    types
        .iter()
        .map(|t| {
            let mut fam: Vec<(String, f64)> = zs
                .iter()
                .filter(|(i, _)| in_family(t, &metrics[*i]))
                .map(|(i, z)| (metrics[*i].clone(), *z))
                .collect();
            fam.sort_by(|a, b| b.1.total_cmp(&a.1));
            let best = fam.first().map_or(0.0, |f| f.1);
            fam.truncate(3);
            ((best / 50.0).clamp(0.0, 1.0), fam)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_pick_the_deviating_resource() {
        let metrics = vec!["cg.cpu_usage".to_string(), "disk.write_bytes".to_string()];
        let mut row = vec![0f32; 24];
        row[10] = 40.0; // cpu base_z
        row[12 + 10] = -5.0; // disk base_z
        let types = vec![
            "cpu_stress".to_string(),
            "disk_stress".to_string(),
            "lock_contention".to_string(),
        ];
        let s = score_row(&metrics, &row, &types);
        assert!((s[0].0 - 0.8).abs() < 1e-9);
        assert!((s[1].0 - 0.1).abs() < 1e-9);
        assert_eq!(s[2].0, 0.0);
        assert_eq!(s[0].1[0].0, "cg.cpu_usage");
        assert!(in_family("network_loss", "tcp.retrans_segs"));
        assert!(!in_family("cpu_stress", "mem.free"));
        assert!(known_types().contains(&"cache_bottleneck".to_string()));
    }
}
