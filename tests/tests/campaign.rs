//! The testbed and the campaign runner end to end: a 3-node cluster in
//! network namespaces and cgroups (MariaDB and an agent per node, the
//! coordinator on the host, a workload over all three), a short campaign
//! through `distdiag campaign run` (host and database faults, one compound
//! case per scenario family C), and complete teardown. It checks the
//! pipeline, not accuracy: faults applied and cleaned, labels recorded,
//! windows produced, a model trained, the held-out cases ranked.
//!
//! Accuracy is asserted on a recorded campaign committed as a fixture
//! (`tests/fixtures/campaign-mariadb`), where training is deterministic.

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use distdiag_api::nodes::NodeKind;
use distdiag_dataset::Dataset;
use distdiag_diagnose::model::TrainParams;
use distdiag_testbed::campaign::{report, CampaignReport};
use distdiag_testbed::testbed::{sql_target, DbKind, Options, Testbed};
use distdiag_testbed::*;
use mysql_async::prelude::Queryable;

fn can_run() -> Result<(), String> {
    distdiag_testbed::testbed::prerequisites(DbKind::Mariadb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_campaign_on_a_three_node_testbed() {
    if let Err(why) = can_run() {
        return skip(&why);
    }
    let work = tempfile::Builder::new().prefix("distdiag-testbed").tempdir_in("/var/tmp").unwrap();
    let mut opts = Options::new(&work.path().join("tb"), DbKind::Mariadb);
    opts.net = 100 + (std::process::id() % 100) as u8;
    opts.table_size = 5000;
    let tb = Testbed::up(&opts).await.unwrap();
    let names = tb.node_names();
    assert_eq!(names, ["n1", "n2", "n3"]);
    let netns: Vec<String> = tb.state.nodes.iter().map(|n| n.netns.clone()).collect();
    let cgroups: Vec<String> = tb.state.nodes.iter().map(|n| n.cgroup.clone()).collect();

    // Each node is its own namespace with its own address and its database
    // answers there; the workload runs over all three.
    let c = tb.client();
    let dbs = c.databases().await.unwrap().databases;
    assert_eq!(dbs.len(), 3, "{dbs:?}");
    assert!(dbs.iter().all(|d| d.host_node.is_some()), "{dbs:?}");
    let nodes = c.nodes().await.unwrap().nodes;
    assert_eq!(nodes.iter().filter(|n| n.kind == NodeKind::Agent && n.connected).count(), 3);
    assert!(tb.state.workload.is_some());

    let out = work.path().join("campaign");
    let token_file = tb.state.dir.join("coordinator/token");
    let run = tokio::task::spawn_blocking({
        let (url, out, token_file) = (tb.url(""), out.clone(), token_file.clone());
        move || {
            Command::new(bin("distdiag"))
                .args(["--url", &url, "--token-file"])
                .arg(&token_file)
                .args(["campaign", "run", "--out"])
                .arg(&out)
                .args([
                    "--families",
                    "A,C",
                    "--types",
                    "cpu_stress,cache_bottleneck",
                    "--cases",
                    "2",
                    "--normal-s",
                    "5",
                    "--fault-s",
                    "20",
                    "--recovery-s",
                    "5",
                    "--warmup-s",
                    "10",
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stderr}");
    assert!(
        run.status.success(),
        "campaign failed: {stderr}\ncoordinator log:\n{}",
        tb.coordinator_log()
    );
    assert!(stderr.contains("[  6/6]"), "six cases ran: {stderr}");

    // Faults are cleaned: none active, no stressor left in a node's
    // cgroup, every buffer pool back at its size.
    let active = c.active_faults().await.unwrap().anomalies;
    assert!(active.is_empty(), "{active:?}");
    for cg in &cgroups {
        let procs =
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{cg}/cgroup.procs")).unwrap();
        for pid in procs.lines() {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmd).contains("stress-worker"),
                "stressor {pid} left in {cg}"
            );
        }
    }
    for n in &tb.state.nodes {
        let t = sql_target(n.addr, n.db_port.unwrap(), distdiag_workload::db::DialectKind::Mysql);
        let mut conn = t.connect(false, Duration::from_secs(5)).await.unwrap();
        let size: Option<u64> = conn.query_first("SELECT @@innodb_buffer_pool_size").await.unwrap();
        assert_eq!(size, Some(128 << 20), "{}: buffer pool restored", n.name);
        let _ = conn.disconnect().await;
    }

    // Labels recorded (compound cases carry two), windows produced, a
    // model trained and the held-out cases ranked beside the baselines.
    let ds = Dataset::import(&out.join("dataset")).unwrap();
    let fault_cases: Vec<_> = ds.cases.iter().filter(|c| c.scenario != "normal").collect();
    assert_eq!(fault_cases.len(), 6, "{:?}", ds.cases);
    assert_eq!(ds.labels.len(), 4 + 2 * 2, "{:?}", ds.labels);
    for l in &ds.labels {
        assert!(names.contains(&l.node), "{l:?}");
        assert!(l.end_ms - l.start_ms >= 19_000, "a 20 s fault: {l:?}");
    }
    // Each agent watched its own node's server, not every server on the
    // host: one process counted on every node, throughout.
    for n in &names {
        let count = &ds.series[n]["proc.count"];
        assert!(
            !count.is_empty() && count.iter().all(|&(_, v)| v == 1.0),
            "{n}: proc.count {:?}",
            &count[..count.len().min(5)]
        );
    }
    let compound: Vec<_> = ds
        .labels
        .iter()
        .filter(|l| ds.cases.iter().any(|c| c.case == l.case && c.scenario.starts_with("C:")))
        .collect();
    assert_eq!(compound.len(), 4);
    let windows = std::fs::read_to_string(out.join("dataset/windows.csv")).unwrap();
    // Six 30 s case periods on three nodes at a 5 s stride, and the normal period.
    assert!(windows.lines().count() > 80, "windows: {}", windows.lines().count());
    let r: CampaignReport =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(!r.types.is_empty(), "{:?}", r.skipped);
    assert!(r.evaluation.model.is_some());
    // Two folds, disjoint, together every fault case: each case was ranked
    // by a model that did not train on it.
    assert_eq!(r.dealings.len(), 1);
    assert_eq!(r.dealings[0].folds.len(), 2);
    let mut evaluated: Vec<&String> = r.dealings[0].folds.iter().flatten().collect();
    evaluated.sort();
    let mut all: Vec<&String> = fault_cases.iter().map(|c| &c.case).collect();
    all.sort();
    assert_eq!(evaluated, all, "folds partition the fault cases");
    assert_eq!(r.evaluation.cases, 6);
    assert!(r.families["dummy"].contains_key("A"));
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("| model | A |"));

    // Teardown removes everything.
    let problems = tb.down();
    assert!(problems.is_empty(), "{problems:?}");
    let ns = String::from_utf8_lossy(
        &Command::new("ip").args(["netns", "list"]).output().unwrap().stdout,
    )
    .into_owned();
    for n in &netns {
        assert!(!ns.contains(n.as_str()), "namespace {n} left");
    }
    for cg in &cgroups {
        assert!(!Path::new(&format!("/sys/fs/cgroup/cpu/{cg}")).exists(), "cgroup {cg} left");
    }
    assert!(!work.path().join("tb").exists());
}

#[test]
fn a_failed_bring_up_leaves_nothing() {
    if let Err(why) = can_run() {
        return skip(&why);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let work = tempfile::Builder::new().prefix("distdiag-testbed").tempdir_in("/var/tmp").unwrap();
    let mut opts = Options::new(&work.path().join("tb"), DbKind::None);
    opts.net = 200 + (std::process::id() % 50) as u8;
    opts.nodes = 2;
    // An API address that cannot be bound fails after the namespaces,
    // cgroups and bridge exist.
    opts.api = "192.0.2.1:9".parse().unwrap();
    let err = rt.block_on(Testbed::up(&opts)).err().expect("bring-up fails");
    assert!(format!("{err:#}").contains("removed"), "{err:#}");
    let ns = String::from_utf8_lossy(
        &Command::new("ip").args(["netns", "list"]).output().unwrap().stdout,
    )
    .into_owned();
    assert!(!ns.contains(&format!("ddtb{}-", opts.net)), "{ns}");
    assert!(!Path::new(&format!("/sys/class/net/ddtb{}", opts.net)).exists());
    assert!(!Path::new(&format!("/sys/fs/cgroup/cpu/distdiag-tb{}", opts.net)).exists());
    // Bad options are refused before anything is made.
    let mut bad = opts.clone();
    bad.nodes = 6;
    assert!(format!("{:#}", rt.block_on(Testbed::up(&bad)).err().unwrap()).contains("1..=5"));
}

#[test]
fn a_signal_during_bring_up_leaves_nothing() {
    if let Err(why) = can_run() {
        return skip(&why);
    }
    let work = tempfile::Builder::new().prefix("distdiag-testbed").tempdir_in("/var/tmp").unwrap();
    let dir = work.path().join("tb");
    let net = 150 + (std::process::id() % 40) as u8;
    let (api, _) = free_ports();
    let child = Command::new(bin("distdiag-testbed"))
        .args([
            "up",
            "--db",
            "none",
            "--nodes",
            "2",
            "--net",
            &net.to_string(),
            "--api",
            &api.to_string(),
            "--dir",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let netns = || {
        String::from_utf8_lossy(
            &Command::new("ip").args(["netns", "list"]).output().unwrap().stdout,
        )
        .into_owned()
    };
    let first = format!("ddtb{net}-n1");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !netns().contains(&first) {
        assert!(std::time::Instant::now() < deadline, "no namespace {first} within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted while coming up"), "{err}");
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!netns().contains(&format!("ddtb{net}-")), "{}", netns());
    assert!(!Path::new(&format!("/sys/class/net/ddtb{net}")).exists());
    assert!(!Path::new(&format!("/sys/fs/cgroup/cpu/distdiag-tb{net}")).exists());
    let mine = dir.display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&mine))
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(!dir.exists());
}

/// A recorded campaign of `tests/fixtures`, and deterministic training
/// (one thread) seeded with `seed`.
fn recorded(fixture: &str, seed: u64) -> (Dataset, TrainParams) {
    let dir =
        distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(fixture);
    (Dataset::import(&dir).unwrap(), TrainParams { nthread: 1, seed, ..TrainParams::default() })
}

/// A campaign recorded on the testbed (3 MariaDB nodes; families A, B, C
/// and W over CPU, memory, disk, packet loss and cache faults), trained
/// and evaluated deterministically, every case ranked by a model trained
/// on the other fold: the model holds the accuracy the README reports for
/// it (measured 1.000 pair and node AC@1 on this recording, 0.975 and
/// 0.988 before the cgroup's spend besides the server became series;
/// asserted at 0.95) and stays ahead of the statistical
/// scorer, which holds its goals untrained, and far ahead of Dummy.
#[test]
fn recorded_campaign_model_beats_the_baselines() {
    let (ds, params) = recorded("campaign-mariadb", 42);
    // Two dealings; the first is the single one again (deterministic).
    let r = report(&ds, 2, 2, &params, &mut |_, _, _| {}).unwrap();
    let once = report(&ds, 2, 1, &params, &mut |_, _, _| {}).unwrap();
    assert_eq!(once.dealings[..], r.dealings[..1], "training and evaluation are deterministic");
    assert_eq!(r.dealings[1].seed, 43);
    assert_ne!(r.dealings[1].folds, r.dealings[0].folds, "the second dealing deals anew");
    let e = &r.evaluation;
    let model = &e.model.as_ref().unwrap().at_fault;
    let (m, s, d) =
        (model.overall.ac1, e.statistical.at_fault.overall.ac1, e.dummy.at_fault.overall.ac1);
    let md = distdiag_testbed::campaign::markdown(&r);
    println!("{md}");
    assert_eq!(e.cases, 40, "every case counted once");
    assert_eq!(model.overall.cases, 40);
    assert_eq!(model.per_case.len(), 80, "a row per case and dealing");
    let mean = (r.dealings[0].model.ac1 + r.dealings[1].model.ac1) / 2.0;
    assert!((m - mean).abs() < 1e-9, "pooled AC@1 {m} is the mean of the dealings' ({mean})");
    assert_eq!(md.matches("\n| case-").count(), 40, "the case table has a row per case");
    assert!(md.contains("| 43 | "), "the dealings table");
    assert!(m >= 0.95, "model AC@1 {m:.3} is below 0.95");
    assert!(model.node.ac1 >= 0.95, "model node AC@1 {:.3} is below 0.95", model.node.ac1);
    for (family, rows) in &r.families["model"] {
        assert!(
            rows.at_fault.ac1 >= 0.85,
            "model AC@1 of family {family}: {:.3}",
            rows.at_fault.ac1
        );
    }
    assert!(model.macro_f1 >= 0.90, "model macro-F1 {:.3}", model.macro_f1);
    // The statistical scorer, with no training at all, holds its own goals
    // and what it measured here (0.925 pair and 0.975 node AC@1, asserted
    // with a margin of three cases in forty), and the model stays ahead.
    let stat_node = e.statistical.at_fault.node.ac1;
    assert!(s >= 0.85, "statistical AC@1 {s:.3} is below 0.85");
    assert!(stat_node >= 0.90, "statistical node AC@1 {stat_node:.3} is below 0.90");
    assert!(s > d + 0.6, "statistical AC@1 {s:.3} vs Dummy {d:.3}");
    assert!(m >= s, "model AC@1 {m:.3} vs statistical {s:.3}");
    assert!(m > d + 0.5, "model AC@1 {m:.3} vs Dummy {d:.3}");
}

/// The same on seekdb, the OceanBase kernel (`tests/fixtures/
/// campaign-seekdb`: 3 nodes, all seven fault types, 56 cases), one
/// dealing: the model and the untrained statistical scorer hold what they
/// measured on it, with a margin of three cases in fifty-six.
#[test]
fn recorded_seekdb_campaign_holds_its_figures() {
    let (ds, params) = recorded("campaign-seekdb", 61);
    let r = report(&ds, 2, 1, &params, &mut |_, _, _| {}).unwrap();
    let e = &r.evaluation;
    println!("{}", distdiag_testbed::campaign::markdown(&r));
    assert_eq!(e.cases, 56, "every case counted once");
    let model = &e.model.as_ref().unwrap().at_fault;
    let (m, s, d) =
        (model.overall.ac1, e.statistical.at_fault.overall.ac1, e.dummy.at_fault.overall.ac1);
    let stat_node = e.statistical.at_fault.node.ac1;
    // Measured: model 1.000 (macro-F1 1.000; 0.988 before `tail_z`),
    // statistical 0.750 (node 0.964), Dummy 0.071; issue 26's untrained
    // goals are 0.60 and 0.80.
    // The bars sit three cases below, except the node's, at its goal.
    assert!(m >= 0.94, "model AC@1 {m:.3} is below 0.94");
    assert!(model.macro_f1 >= 0.93, "model macro-F1 {:.3}", model.macro_f1);
    assert!(s >= 0.69, "statistical AC@1 {s:.3} is below 0.69");
    assert!(stat_node >= 0.80, "statistical node AC@1 {stat_node:.3} is below 0.80");
    // The memtables count, read by its direction, is what tells the two
    // database faults apart untrained (F1 0.526 and 0.857 here; on an
    // earlier recording by magnitude alone 0.444 and 0.111).
    let stat_f1 = |t: &str| e.statistical.at_fault.per_type[t].f1;
    let (tmi, cache) = (stat_f1("too_many_indexes"), stat_f1("cache_bottleneck"));
    assert!(tmi >= 0.5, "statistical too_many_indexes F1 {tmi:.3}");
    assert!(cache >= 0.75, "statistical cache_bottleneck F1 {cache:.3}");
    // cache_bottleneck is recorded with the memstore limit seekdb obeys, a
    // freeze at its start and the limit itself as a series (`db.cache_limit`):
    // 1.000 here; 0.593 on the recording before, which lacked the series.
    let cb = model.per_type["cache_bottleneck"].f1;
    assert!(cb >= 0.9, "model cache_bottleneck F1 {cb:.3}");
    assert!(m > d + 0.5 && s > d + 0.3, "model {m:.3}, statistical {s:.3}, Dummy {d:.3}");
}
