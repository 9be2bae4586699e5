//! Diagnosis end to end: a real coordinator, three real agents (each with
//! its own cgroup, so its stressors and its cgroup metrics are its own),
//! normal collection, CPU and disk faults on different nodes recorded as
//! training cases, a model trained from Rust, and a new fault found at rank
//! 1 of `/api/anomaly/ranks` with p ≥ 0.5 within 10 s (ranked on every new
//! sample by a model trained on onset windows: about 2 s here; ranked every
//! 5 s stride by a model of whole windows it took 13 s or more). The model
//! also loads in Python's xgboost with the same predictions.

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use distdiag_api::faults::{DurationArg, StartAnswer, StartRequest};
use distdiag_api::models::{JobState, TrainParams, TrainRequest};
use distdiag_api::ranks::{Method, RanksQuery};
use distdiag_api::Client;
use distdiag_diagnose::evaluate::DatasetExt;
use distdiag_diagnose::model::Scorer;
use distdiag_testbed::*;
use serde_json::json;

const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];

/// A cgroup per node under a test-owned parent, removed on drop.
struct Cgroups {
    parent: String,
}

impl Cgroups {
    fn new(nodes: &[&str]) -> Option<Cgroups> {
        let parent = format!("distdiag-test-{}", std::process::id());
        for c in CONTROLLERS {
            let base = PathBuf::from("/sys/fs/cgroup").join(c);
            if !base.is_dir() {
                return None;
            }
            for n in nodes {
                std::fs::create_dir_all(base.join(&parent).join(n)).ok()?;
            }
        }
        Some(Cgroups { parent })
    }

    fn path(&self, node: &str) -> String {
        format!("{}/{node}", self.parent)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for c in CONTROLLERS {
            let dir = PathBuf::from("/sys/fs/cgroup").join(c).join(&self.parent);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Starts a fault of `kind` on `node` for `secs` as a training case of scenario A.
async fn fault(c: &Client, kind: &str, node: &str, secs: u64) -> StartAnswer {
    let params = if kind == "cpu_stress" {
        json!({"workers": 1, "load_percent": 100})
    } else {
        json!({"workers": 1, "bytes": 16 << 20})
    };
    let req = StartRequest {
        kind: kind.into(),
        node: Some(node.into()),
        params: serde_json::from_value(params).unwrap(),
        duration: Some(DurationArg::Seconds(secs as f64)),
        collect_training_data: Some(true),
        pre_s: Some(10),
        post_s: Some(10),
        scenario: Some("A".into()),
        ..StartRequest::default()
    };
    let v = c.start_fault(&req).await.unwrap();
    assert!(v.case.is_some(), "{v:?}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_train_and_rank_a_new_fault_first() {
    let nodes = ["n1", "n2", "n3"];
    let Some(cgroups) = Cgroups::new(&nodes) else {
        return skip(
            "no cgroup v1 cpu/cpuacct/memory/blkio hierarchies to give each node its own cgroup",
        );
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    std::fs::create_dir_all(&data).unwrap();
    let certs = make_certs(&data.join("certs"), &nodes);
    let config = tmp.path().join("coordinator.toml");
    std::fs::write(
        &config,
        "[diagnosis.window]\nwindow_ms = 10000\nstride_ms = 5000\nbaseline_ms = 30000\n",
    )
    .unwrap();
    let (api, quic) = free_ports();
    let coord = Coordinator::start(&data, api, quic, &["--config", config.to_str().unwrap()]);
    let mut agents = Vec::new();
    for n in nodes {
        let mut cfg = agent_config(n, &certs, quic, &tmp.path().join(n), 1000);
        cfg.collect.cgroup_path = Some(cgroups.path(n));
        cfg.fault.cgroup_path = Some(cgroups.path(n));
        cfg.fault.disk_dir = Some(tmp.path().join(format!("{n}-disk")));
        agents.push(distdiag_agent::start(cfg, None).await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(10), || agents.iter().all(|a| a.status().connected)).await
    );
    let c = coord.client();

    // Without a model the statistical scorer ranks, and says so (once one
    // window of samples is in).
    let r = poll_until(
        Duration::from_secs(30),
        || c.ranks(20),
        |r| r.as_ref().is_ok_and(|r| r.timestamp.is_some()),
    )
    .await
    .expect("no ranking within 30 s")
    .unwrap();
    assert_eq!(r.method, Some(Method::Statistical), "{r:?}");
    assert!(r.note.contains("no active model"));

    // Normal data, then three rounds of a CPU fault and a disk fault on
    // different nodes at once, each a training case (the sleeps are the
    // periods being recorded).
    c.normal_start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(25)).await;
    c.normal_stop().await.unwrap();
    for (cpu, disk) in [("n1", "n2"), ("n2", "n3"), ("n3", "n1")] {
        fault(&c, "cpu_stress", cpu, 20).await;
        fault(&c, "disk_stress", disk, 20).await;
        assert!(
            eventually(Duration::from_secs(30), || stressors_of(std::process::id()).is_empty())
                .await,
            "faults end at their deadline"
        );
        // The case keeps 10 s of normal data after its fault.
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    let stats = c.training_stats().await.unwrap();
    assert_eq!(stats.cases, 6, "{stats:?}");
    assert!(stats.per_type["cpu_stress"] >= 50, "{stats:?}");
    assert!(stats.per_type["disk_stress"] >= 50, "{stats:?}");
    assert!(stats.normal_samples > stats.anomaly_samples);

    // Train from Rust through the XGBoost C library.
    let req = TrainRequest {
        params: Some(TrainParams { validation_fraction: 0.34, ..TrainParams::default() }),
        ..TrainRequest::default()
    };
    let job = c.train(&req).await.unwrap().job;
    let mut j = c.train_job(&job).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while j.state == JobState::Running && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        j = c.train_job(&job).await.unwrap();
    }
    assert_eq!(j.state, JobState::Done, "{j:?}");
    let model_id = j.model_id.clone().unwrap();
    let m = c.model(&model_id).await.unwrap();
    assert_eq!(m.types, ["cpu_stress", "disk_stress"], "{m:?}");
    eprintln!("model {model_id}: held-out evaluation {:?}", m.evaluation);

    // A new fault: its node and type at rank 1, sure of it within 10 s.
    let v = fault(&c, "cpu_stress", "n2", 30).await;
    let applied = v.anomalies[0].applied_ms.unwrap();
    let t0 = Instant::now();
    let mut first = None;
    while t0.elapsed() < Duration::from_secs(25) {
        let r = c.ranks(20).await.unwrap();
        let top = r.ranks.first();
        if r.method == Some(Method::Model)
            && top.is_some_and(|t| t.node == "n2" && t.kind == "cpu_stress")
            && r.timestamp.unwrap_or(0) > applied
        {
            first = Some((t0.elapsed(), r));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (after, r) = first.expect("n2 cpu_stress never reached rank 1");
    eprintln!("rank 1 after {after:?}: {:?}", r.ranks[0]);
    assert!(!r.ranks[0].top_metrics.is_empty());
    let mut sure = None;
    while t0.elapsed() < Duration::from_secs(25) {
        let r = c.ranks(20).await.unwrap();
        if r.ranks
            .first()
            .is_some_and(|t| t.node == "n2" && t.kind == "cpu_stress" && t.probability >= 0.5)
        {
            sure = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sure = sure.expect("the model never gave n2 cpu_stress p >= 0.5");
    eprintln!("rank 1 with p >= 0.5 after {sure:?}");
    assert!(after <= sure);
    assert!(sure <= Duration::from_secs(10), "p >= 0.5 only after {sure:?}");
    let g = c.get_text("/api/anomaly/ranks/graph?format=graphml").await.unwrap();
    assert!(g.contains("<graphml") && g.contains("id=\"n2\""), "{g}");
    let hist = c
        .rank_history(&RanksQuery { from: Some("-5m".into()), ..RanksQuery::default() })
        .await
        .unwrap();
    assert!(hist.history.len() >= 3);
    c.stop_fault(None).await.unwrap();
    // That fault is a training case too, whose period runs on for its 10 s
    // after the fault: exported before that ends, two exports a few
    // seconds apart would hold different windows.
    tokio::time::sleep(Duration::from_secs(11)).await;

    // Export the collected data with the CLI, then the same rows through
    // Rust and through Python's xgboost.
    let out = tmp.path().join("dataset");
    let status = std::process::Command::new(bin("distdiag"))
        .args([
            "--url",
            &coord.url(""),
            "--data-dir",
            data.to_str().unwrap(),
            "dataset",
            "export",
            "--out",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let doc = c.export_model(&model_id).await.unwrap();
    let ds = distdiag_dataset::Dataset::import(&out).unwrap();
    let windows = ds.windows(Some(&doc.set.metrics));
    assert!(windows.rows.len() > 100);
    let scorer = Scorer::load(&doc.set).unwrap();
    let rust = scorer.predict(&windows.x, windows.rows.len()).unwrap();
    let rows_csv = tmp.path().join("rows.csv");
    let mut text = String::new();
    for i in 0..windows.rows.len() {
        let row: Vec<String> = windows
            .row(i)
            .iter()
            .map(|x| if x.is_nan() { "nan".into() } else { format!("{x}") })
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    std::fs::write(&rows_csv, text).unwrap();
    let booster = tmp.path().join("cpu.json");
    std::fs::write(&booster, &doc.set.types[0].booster).unwrap();
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys, numpy as np, xgboost as xgb\nx = np.loadtxt(sys.argv[1], delimiter=',', dtype=np.float32, ndmin=2)\nb = xgb.Booster(model_file=sys.argv[2])\nfor p in b.predict(xgb.DMatrix(x, missing=np.nan)): print(repr(float(p)))")
        .arg(&rows_csv)
        .arg(&booster)
        .output()
        .unwrap();
    assert!(py.status.success(), "python xgboost: {}", String::from_utf8_lossy(&py.stderr));
    let python: Vec<f64> =
        String::from_utf8_lossy(&py.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(python.len(), rust[0].len());
    let max_diff =
        python.iter().zip(&rust[0]).map(|(p, r)| (p - f64::from(*r)).abs()).fold(0.0, f64::max);
    eprintln!("Rust vs Python xgboost on {} rows: max |diff| = {max_diff:e}", python.len());
    assert!(max_diff < 1e-6, "max |diff| {max_diff}");

    // The same windows as Parquet, read by pandas through pyarrow: the
    // CSV's columns with a 0/1 target per fault type after `edge`, the
    // same rows, the same values (nulls where the CSV is empty).
    let pq = tmp.path().join("dataset-parquet");
    let status = std::process::Command::new(bin("distdiag"))
        .args(["--url", &coord.url(""), "--data-dir", data.to_str().unwrap()])
        .args(["dataset", "export", "--format", "parquet", "--out", pq.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!pq.join("windows.csv").exists());
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(PARQUET_CHECK)
        .arg(pq.join("windows.parquet"))
        .arg(out.join("windows.csv"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "pandas/pyarrow: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    let said = String::from_utf8_lossy(&py.stdout);
    eprintln!("parquet: {said}");
    assert!(said.contains("label_cpu_stress"), "{said}");
    drop(agents);
}

/// Compares `windows.parquet` (argv 1) with `windows.csv` (argv 2).
const PARQUET_CHECK: &str = r#"
import sys, numpy as np, pandas as pd, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
p = t.to_pandas()
c = pd.read_csv(sys.argv[2], keep_default_na=False, na_values=[""], dtype={"labels": str, "case": str, "node": str})
c["labels"] = c["labels"].fillna("")
lead = ["case", "node", "end_ms", "labels", "edge"]
targets = [k for k in p.columns if k.startswith("label_")]
types = sorted({x for l in c["labels"] for x in l.split(";") if x})
assert targets == ["label_" + x for x in types], (targets, types)
assert list(p.columns) == lead + targets + list(c.columns[5:]), list(p.columns)[:12]
assert len(p) == len(c) and len(p) > 100, (len(p), len(c))
assert (p["case"] == c["case"]).all() and (p["node"] == c["node"]).all()
assert (p["end_ms"] == c["end_ms"]).all() and (p["labels"] == c["labels"]).all()
assert (p["edge"] == (c["edge"] == 1)).all()
for x in types:
    want = c["labels"].map(lambda l: int(x in l.split(";")))
    assert (p["label_" + x] == want).all(), x
f = list(c.columns[5:])
assert str(t.schema.field(f[0]).type) == "float", t.schema.field(f[0]).type
a = p[f].to_numpy(dtype=np.float32)
b = c[f].to_numpy(dtype=np.float32)
assert np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True)
print(len(p), "rows", len(p.columns), "columns", " ".join(targets), int(np.isnan(a).sum()), "nulls")
"#;
