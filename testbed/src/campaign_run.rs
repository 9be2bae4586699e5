//! `distdiag-lab campaign run|report` (also run as `distdiag campaign`): drives a fault campaign through a
//! coordinator's API (normal period, faults with the collect-training-data
//! flag, recovery, case after case), then writes the collected dataset and
//! the accuracy report (model trained on some cases, evaluated with the
//! statistical scorer and Dummy on the others).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::campaign::{
    markdown, plan, report, CampaignConfig, CampaignReport, Cluster, PlannedCase,
};
use distdiag_api::faults::{DurationArg, HistoryQuery, StartRequest};
use distdiag_api::models::WindowQuery;
use distdiag_api::nodes::NodeKind;
use distdiag_api::workload::Phase;
use distdiag_api::{Client, ClientError};
use distdiag_dataset::Dataset;
use distdiag_diagnose::evaluate::DatasetExt;
use distdiag_diagnose::model::TrainParams;
use serde_json::json;

pub type Failure = (u8, String);

/// An API error as a campaign failure (exit code 1).
pub fn failed(e: ClientError) -> Failure {
    (1, e.to_string())
}

/// Connected agents, databases by host node, and the workload for family W.
async fn cluster(api: &Client, workload: Option<&str>) -> Result<Cluster, Failure> {
    let nodes = api.nodes().await.map_err(failed)?.nodes;
    let nodes: Vec<String> = nodes
        .into_iter()
        .filter(|n| n.kind == NodeKind::Agent && n.connected)
        .map(|n| n.node)
        .collect();
    let databases = api
        .databases()
        .await
        .map_err(failed)?
        .databases
        .into_iter()
        .filter_map(|d| Some((d.host_node?, d.name)))
        .collect();
    let workload = match workload {
        Some(w) => Some(w.to_owned()),
        None => {
            // The one running workload over more than one database.
            let runs: Vec<String> = api
                .active_workloads()
                .await
                .map_err(failed)?
                .workloads
                .into_iter()
                .filter(|w| w.phase == Phase::Running && w.databases.len() > 1)
                .map(|w| w.workload_id)
                .collect();
            (runs.len() == 1).then(|| runs[0].clone())
        }
    };
    Ok(Cluster { nodes, databases, workload })
}

fn human(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Starts one case's faults: the first opens the training case, the others
/// join it. On a refusal, what already started is stopped.
async fn start_case(
    api: &Client,
    cfg: &CampaignConfig,
    case: &PlannedCase,
) -> Result<Vec<String>, Failure> {
    let mut case_id: Option<String> = None;
    let mut ids = Vec::new();
    for f in &case.faults {
        let mut req = StartRequest {
            kind: f.kind.clone(),
            node: f.node.clone(),
            params: f.params.clone(),
            duration: Some(DurationArg::Seconds(f64::from(cfg.fault_s))),
            ..StartRequest::default()
        };
        match &case_id {
            None => {
                req.collect_training_data = Some(true);
                req.pre_s = Some(cfg.normal_s);
                req.post_s = Some(cfg.recovery_s);
                req.scenario = Some(case.scenario.clone());
            }
            Some(c) => req.case = Some(c.clone()),
        }
        match api.start_fault(&req).await {
            Ok(v) => {
                if case_id.is_none() {
                    case_id = v.case.map(|c| c.id);
                }
                ids.extend(v.anomalies.into_iter().map(|a| a.id));
            }
            Err(e) => {
                for id in &ids {
                    let _ = api.stop_fault(Some(id)).await;
                }
                return Err((1, format!("{} {}: {e}", f.kind, f.label_node)));
            }
        }
    }
    if case_id.is_none() {
        return Err((1, "the coordinator opened no training case".to_owned()));
    }
    Ok(ids)
}

/// Waits until every fault of `ids` has ended (they end at their deadline):
/// its record carries an end time, so its revert is done, not just begun.
async fn wait_ended(api: &Client, ids: &[String], timeout: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    let q = HistoryQuery { from: Some("-24h".into()), to: None };
    loop {
        let records = api.fault_history(&q).await.map_err(failed)?.anomalies;
        let ended = |id: &str| records.iter().any(|r| r.id == id && r.ended_ms.is_some());
        let live: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !ended(id)).collect();
        if live.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err((
                1,
                format!(
                    "faults {} have not ended {timeout:?} after their deadline",
                    live.join(", ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub struct RunArgs<'a> {
    pub config: CampaignConfig,
    pub workload: Option<&'a str>,
    pub out: &'a Path,
    pub params: TrainParams,
}

/// Runs the campaign; Ctrl-C stops every fault and ends it (what was
/// collected stays on the coordinator).
pub async fn run(api: &Client, args: RunArgs<'_>) -> Result<(), Failure> {
    let cfg = &args.config;
    let cl = cluster(api, args.workload).await?;
    let cases = plan(cfg, &cl).map_err(|e| (64, e))?;
    let per_case = u64::from(cfg.normal_s + cfg.fault_s + cfg.recovery_s);
    let total = u64::from(cfg.warmup_s) + per_case * cases.len() as u64;
    eprintln!(
        "campaign: {} cases on {} ({} databases{}), about {}",
        cases.len(),
        cl.nodes.join(", "),
        cl.databases.len(),
        cl.workload.as_ref().map(|w| format!(", surge on {w}")).unwrap_or_default(),
        human(total)
    );
    std::fs::create_dir_all(args.out).map_err(|e| (1, format!("{}: {e}", args.out.display())))?;
    std::fs::write(args.out.join("plan.json"), serde_json::to_vec_pretty(&json!({"config": cfg, "cluster": {"nodes": cl.nodes, "databases": cl.databases, "workload": cl.workload}, "cases": cases})).unwrap_or_default()).map_err(|e| (1, e.to_string()))?;
    let interrupted = tokio::select! {
        r = drive(api, cfg, &cases, total) => { r?; false }
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        let _ = api.stop_fault(None).await;
        let _ = api.normal_stop().await;
        return Err((130, "interrupted: every fault is stopped; the cases so far stay collected on the coordinator".into()));
    }
    let ds = api.dataset("collected", &WindowQuery::default()).await.map_err(failed)?;
    write_report(&ds, args.out, cfg.folds, cfg.repeats, &args.params, true)
}

async fn drive(
    api: &Client,
    cfg: &CampaignConfig,
    cases: &[PlannedCase],
    total: u64,
) -> Result<(), Failure> {
    let t0 = Instant::now();
    if cfg.warmup_s > 0 {
        eprintln!("normal collection for {} s", cfg.warmup_s);
        api.normal_start().await.map_err(failed)?;
        tokio::time::sleep(Duration::from_secs(cfg.warmup_s.into())).await;
        api.normal_stop().await.map_err(failed)?;
    }
    let mut refused = 0usize;
    for (i, case) in cases.iter().enumerate() {
        let targets: Vec<String> =
            case.faults.iter().map(|f| format!("{}@{}", f.kind, f.label_node)).collect();
        let left = total.saturating_sub(t0.elapsed().as_secs());
        eprintln!(
            "[{:>3}/{}] {:<36} {}  (~{} left)",
            i + 1,
            cases.len(),
            case.scenario,
            targets.join(" + "),
            human(left)
        );
        tokio::time::sleep(Duration::from_secs(cfg.normal_s.into())).await;
        match start_case(api, cfg, case).await {
            Ok(ids) => {
                tokio::time::sleep(Duration::from_secs(cfg.fault_s.into())).await;
                wait_ended(api, &ids, Duration::from_secs(60)).await?;
                refused = 0;
            }
            Err((_, msg)) => {
                eprintln!("          skipped: {msg}");
                refused += 1;
                if refused >= 3 {
                    return Err((1, format!("three cases in a row could not start; last: {msg}")));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(cfg.recovery_s.into())).await;
    }
    Ok(())
}

/// Writes `out/report.{json,md}` (and, with `export`, the dataset into
/// `out/dataset`).
pub fn write_report(
    ds: &Dataset,
    out: &Path,
    folds: u32,
    repeats: u32,
    params: &TrainParams,
    export: bool,
) -> Result<(), Failure> {
    std::fs::create_dir_all(out).map_err(|e| (1, format!("{}: {e}", out.display())))?;
    if export {
        let dir = out.join("dataset");
        ds.export(&dir).map_err(|e| (1, e.to_string()))?;
        std::fs::write(dir.join("windows.csv"), ds.windows_csv())
            .map_err(|e| (1, format!("{}: {e}", dir.display())))?;
        eprintln!(
            "dataset: {} ({} cases, {} labels)",
            dir.display(),
            ds.cases.len(),
            ds.labels.len()
        );
    }
    let r: CampaignReport = report(ds, folds, repeats, params, &mut |d, n, what| {
        eprintln!("  training {d}/{n} {what}")
    })
    .map_err(|e| (1, e))?;
    let md = markdown(&r);
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&r).unwrap_or_default())
        .map_err(|e| (1, e.to_string()))?;
    std::fs::write(out.join("report.md"), &md).map_err(|e| (1, e.to_string()))?;
    print!("{md}");
    Ok(())
}
