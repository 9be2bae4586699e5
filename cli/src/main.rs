//! `distdiag`: the command line for a running coordinator's REST API, an
//! HTTP client that does not link XGBoost. The commands that train models
//! on this machine (`eval`, `campaign`) are `distdiag-lab`'s, which this
//! runs with the same global options. Usage errors exit with 64; an error
//! answer from the API exits with 1 and prints its message.

use std::path::PathBuf;
use std::process::ExitCode;

mod parquet_export;

use clap::{Parser, Subcommand, ValueEnum};
use distdiag_api::faults::{DurationArg, FaultRecord, HistoryQuery, StartRequest};
use distdiag_api::models::{JobState, TrainRequest, WindowQuery};
use distdiag_api::workload::{Options, Phase, WorkloadReport, WorkloadRequest};
use distdiag_api::{Client, ClientError};
use distdiag_dataset::Dataset;
use serde_json::{Map, Value};

const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "distdiag", version, about = "Drive a distdiag coordinator from the command line")]
struct Cli {
    /// Base URL of the coordinator's API.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000", env = "DISTDIAG_URL")]
    url: String,
    /// File holding the API token (default: <data-dir>/token); DISTDIAG_TOKEN overrides.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// The coordinator's data directory, where the token file lives.
    #[arg(long, global = true, default_value = "data")]
    data_dir: PathBuf,
    /// CA certificate (PEM) to trust for an https:// URL besides the
    /// system's (default: <data-dir>/certs/ca.pem when it exists).
    #[arg(long, global = true, env = "DISTDIAG_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Faults on agents and databases.
    #[command(subcommand)]
    Fault(FaultCommand),
    /// Benchmark workloads against the configured databases.
    #[command(subcommand)]
    Workload(WorkloadCommand),
    /// Labelled datasets: export the collected data, import external data.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Evaluate a model on a dataset directory, cross-validated (runs
    /// `distdiag-lab eval`, which links XGBoost; see `distdiag eval --help`).
    #[command(disable_help_flag = true)]
    Eval {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Train a model version from the collected data (or an imported dataset) and wait for it.
    Train {
        #[arg(long)]
        dataset: Option<String>,
        /// After choosing the number of rounds on held-out cases, train the
        /// version on every case (then none is left to evaluate it on): with
        /// one or two cases per type, the version learns from all of them.
        #[arg(long)]
        refit: bool,
    },
    /// Model versions.
    Models,
    /// Fault campaigns: record one through the coordinator, or report a
    /// recorded one (runs `distdiag-lab campaign`, which links XGBoost).
    #[command(disable_help_flag = true)]
    Campaign {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Nodes (agents and probed databases) with their state, and which
    /// faults each agent can apply here (and why not the others).
    Nodes,
    /// The current root-cause ranking.
    Ranks {
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Past incidents: which (node, type) the ranking named, from when to
    /// when (kept across restarts).
    Incidents {
        /// Start: ms, RFC 3339 or relative (`-24h`).
        #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
        from: String,
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Excess over peers from which a ranking names a node.
        #[arg(long, default_value_t = 0.5)]
        min_excess: f64,
    },
}

/// The file the labelled windows are written to.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WindowsFormat {
    Csv,
    Parquet,
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Write a dataset (default: the collected data) into a directory: its
    /// series and labels as CSV (importable again), and its labelled windows
    /// with every feature as `windows.csv` or, with `--format parquet`,
    /// `windows.parquet` (one `label_<type>` 0/1 column per fault type;
    /// docs/dataset-format.md).
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "collected")]
        name: String,
        #[arg(long, value_enum, default_value_t = WindowsFormat::Csv)]
        format: WindowsFormat,
    },
    /// Read a dataset directory and check it: a summary, and what is usable
    /// but doubtful (labels on nodes without series, overlapping cases,
    /// gaps). Errors name file and line. No coordinator needed.
    Check { dir: PathBuf },
    /// Read a dataset directory, check it and store it on the coordinator under a name.
    Import {
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Copy a dataset directory without the cases that have a fault of the
    /// given types (and their labels), e.g. to merge a recording with newer
    /// ones after a fault type's implementation changed. No coordinator needed.
    Filter {
        dir: PathBuf,
        #[arg(long = "without-type", required = true)]
        without: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum WorkloadCommand {
    /// Create and load a benchmark's tables, showing progress:
    /// `distdiag workload prepare oltp_read_write --option tables=4 --option table_size=100000`.
    Prepare {
        /// oltp_read_write, oltp_read_only, oltp_write_only, oltp_point_select, tpcc, tpch.
        kind: String,
        /// A workload option as key=value (tables, table_size, warehouses, scale_factor, database, ...). Repeatable.
        #[arg(long = "option", value_parser = parse_param)]
        options: Vec<(String, Value)>,
    },
    /// Start a run: `distdiag workload start oltp_read_write --threads 8 --option duration_s=60`.
    Start {
        kind: String,
        /// Concurrent workers, 1..=64.
        #[arg(long, default_value_t = 4)]
        threads: i64,
        #[arg(long = "option", value_parser = parse_param)]
        options: Vec<(String, Value)>,
    },
    /// Stop one run by id, or every run.
    Stop {
        #[arg(long)]
        id: Option<String>,
    },
    /// Active runs with their live figures; with --all, every stored run.
    List {
        #[arg(long)]
        all: bool,
    },
    /// One run's report (totals and per-interval TPS, QPS, errors, latency).
    Show { id: String },
}

#[derive(Subcommand)]
enum FaultCommand {
    /// Start a fault: `distdiag fault start cpu_stress --node db1 --param load_percent=50 --duration 2m`.
    Start {
        /// cpu_stress, memory_stress, disk_stress, network_delay, network_loss, network_bandwidth;
        /// database faults: cache_bottleneck, too_many_indexes, workload_surge, lock_contention.
        kind: String,
        /// Target node; repeat for several. Default: the only connected agent.
        #[arg(long)]
        node: Vec<String>,
        /// A parameter as key=value; numbers, true/false and JSON arrays
        /// (ports=[3306], peers=["10.0.0.0/24"]) are typed. Repeatable.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, Value)>,
        /// How long, e.g. 90s or 5m (default: the coordinator's).
        #[arg(long)]
        duration: Option<String>,
    },
    /// Stop one fault by id, or every fault.
    Stop {
        #[arg(long)]
        id: Option<String>,
    },
    /// List active faults, or with --history every fault since --from.
    List {
        #[arg(long)]
        history: bool,
        /// With --history: start of the period (ms, RFC 3339, or relative such as -24h).
        #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
        from: String,
    },
}

fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not key=value"))?;
    let v = serde_json::from_str::<Value>(v)
        .ok()
        .filter(|j| j.is_number() || j.is_boolean() || j.is_array())
        .unwrap_or_else(|| Value::String(v.to_owned()));
    Ok((k.to_owned(), v))
}

fn token(cli: &Cli) -> Result<String, String> {
    if let Ok(t) = std::env::var("DISTDIAG_TOKEN") {
        return Ok(t.trim().to_owned());
    }
    let path = cli.token_file.clone().unwrap_or_else(|| cli.data_dir.join("token"));
    std::fs::read_to_string(&path).map(|t| t.trim().to_owned()).map_err(|e| {
        format!(
            "cannot read the API token from {}: {e} (use --token-file or DISTDIAG_TOKEN)",
            path.display()
        )
    })
}

fn ms(v: Option<i64>) -> String {
    v.map_or("-".to_owned(), |v| v.to_string())
}

fn table(recs: &[FaultRecord]) {
    println!(
        "{:<24} {:<10} {:<16} {:<9} {:>14} {:>14}  detail",
        "id", "node", "type", "state", "applied_ms", "ended_ms"
    );
    for r in recs {
        let state = serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<24} {:<10} {:<16} {:<9} {:>14} {:>14}  {}",
            r.id,
            r.node,
            r.kind,
            state,
            ms(r.applied_ms),
            ms(r.ended_ms),
            r.detail
        );
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |x| format!("{x:.1}"))
}

fn phase(p: Phase) -> String {
    serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Seconds since the last transaction of a running run finished, when it
/// is long enough to matter: a TPS of 0.0 then says why.
fn stalled_for(r: &WorkloadReport, now_ms: i64) -> String {
    match r.last_event_ms {
        Some(t) if r.running && now_ms - t >= 2_000 => {
            format!("{:.0} s", (now_ms - t) as f64 / 1e3)
        }
        None if r.running && now_ms - r.started_ms >= 2_000 => "no txn yet".into(),
        _ => "-".into(),
    }
}

fn workload_table(runs: &[WorkloadReport]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    println!(
        "{:<40} {:<18} {:<9} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9} {:>11}",
        "workload_id",
        "type",
        "phase",
        "threads",
        "tps",
        "qps",
        "errors",
        "p95_ms",
        "txns",
        "stalled"
    );
    for r in runs {
        let cur = r.current.as_ref();
        println!(
            "{:<40} {:<18} {:<9} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9} {:>11}",
            r.workload_id,
            r.kind.as_str(),
            phase(r.phase),
            r.threads,
            num(cur.map(|c| c.tps)),
            num(cur.map(|c| c.qps)),
            r.totals.errors,
            num(cur.and_then(|c| c.latency_ms).map(|l| l.p95)),
            r.totals.transactions,
            stalled_for(r, now),
        );
    }
}

/// `--option k=v` pairs as the workload options they name (checked here,
/// so a misspelt option is named before anything is sent).
fn options(pairs: &[(String, Value)]) -> Result<Options, (u8, String)> {
    let map: Map<String, Value> = pairs.iter().cloned().collect();
    serde_json::from_value(Value::Object(map)).map_err(|e| (EX_USAGE, format!("--option: {e}")))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("distdiag: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            if !msg.is_empty() {
                eprintln!("distdiag: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// An API error as this command's failure (exit code 1).
fn failed(e: ClientError) -> (u8, String) {
    (1, e.to_string())
}

/// The client, with the token when the command changes something.
fn client(cli: &Cli, mutating: bool) -> Result<Client, (u8, String)> {
    let c = Client::new(&cli.url)
        .with_cluster_ca(cli.ca_cert.as_deref(), &cli.data_dir)
        .map_err(|e| (EX_USAGE, e.to_string()))?;
    if mutating {
        return Ok(c.with_token(token(cli).map_err(|e| (EX_USAGE, e))?));
    }
    // Reads send the token when there is one (a coordinator may require it).
    Ok(match token(cli) {
        Ok(t) => c.with_token(t),
        Err(_) => c,
    })
}

async fn run(cli: &Cli) -> Result<(), (u8, String)> {
    let read = || client(cli, false);
    let write = || client(cli, true);
    match &cli.command {
        Command::Fault(FaultCommand::Start { kind, node, params, duration }) => {
            let mut req = StartRequest {
                kind: kind.clone(),
                params: params.iter().cloned().collect(),
                duration: duration.clone().map(DurationArg::Text),
                ..StartRequest::default()
            };
            match node.as_slice() {
                [] => {}
                [one] => req.node = Some(one.clone()),
                many => req.nodes = Some(many.to_vec()),
            }
            let v = write()?.start_fault(&req).await.map_err(failed)?;
            table(&v.anomalies);
        }
        Command::Fault(FaultCommand::Stop { id }) => {
            let v = write()?.stop_fault(id.as_deref()).await.map_err(failed)?;
            table(&v.stopped);
            if !v.failed.is_empty() {
                let list: Vec<String> =
                    v.failed.iter().map(|f| format!("{}: {}", f.id, f.error)).collect();
                return Err((1, format!("not stopped: {}", list.join("; "))));
            }
        }
        Command::Fault(FaultCommand::List { history, from }) => {
            let recs = if *history {
                let q = HistoryQuery { from: Some(from.clone()), to: None };
                read()?.fault_history(&q).await.map_err(failed)?.anomalies
            } else {
                read()?.active_faults().await.map_err(failed)?.anomalies
            };
            table(&recs);
        }
        Command::Workload(WorkloadCommand::Prepare { kind, options: opts }) => {
            let c = write()?;
            let req = WorkloadRequest {
                kind: Some(kind.clone()),
                options: Some(options(opts)?),
                ..WorkloadRequest::default()
            };
            let v = c.prepare_workload(&req).await.map_err(failed)?;
            let id = v.workload_id;
            loop {
                let r = c.workload(&id).await.map_err(failed)?;
                let pct = r.progress.unwrap_or(0.0) * 100.0;
                match r.phase {
                    Phase::Preparing => eprint!("\rpreparing {kind}: {pct:5.1} %"),
                    Phase::Prepared => {
                        eprintln!("\rpreparing {kind}: 100.0 %");
                        println!("{id}: prepared");
                        break;
                    }
                    _ => {
                        eprintln!();
                        return Err((
                            1,
                            format!("prepare failed: {}", r.error.as_deref().unwrap_or("unknown")),
                        ));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        Command::Workload(WorkloadCommand::Start { kind, threads, options: opts }) => {
            let req = WorkloadRequest {
                kind: Some(kind.clone()),
                threads: Some(*threads),
                options: Some(options(opts)?),
                ..WorkloadRequest::default()
            };
            let v = write()?.start_workload(&req).await.map_err(failed)?;
            println!("{}", v.workload_id);
        }
        Command::Workload(WorkloadCommand::Stop { id }) => match id {
            Some(i) => {
                let v = write()?.stop_workload(i).await.map_err(failed)?;
                workload_table(std::slice::from_ref(&v.report));
            }
            None => {
                let v = write()?.stop_all_workloads().await.map_err(failed)?;
                println!("stopped: {}", v.stopped.join(", "));
            }
        },
        Command::Workload(WorkloadCommand::List { all }) => {
            let c = read()?;
            let v = if *all { c.workload_runs().await } else { c.active_workloads().await }
                .map_err(failed)?;
            workload_table(&v.workloads);
        }
        Command::Workload(WorkloadCommand::Show { id }) => {
            let r = read()?.workload(id).await.map_err(failed)?;
            workload_table(std::slice::from_ref(&r));
            println!(
                "\n{:>14} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
                "timestamp", "threads", "tps", "qps", "err/s", "p50_ms", "p95_ms", "p99_ms"
            );
            for i in r.intervals.unwrap_or_default() {
                let l = i.latency_ms;
                println!(
                    "{:>14} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
                    i.timestamp,
                    i.threads,
                    num(Some(i.tps)),
                    num(Some(i.qps)),
                    num(Some(i.errors_per_s)),
                    num(l.map(|l| l.p50)),
                    num(l.map(|l| l.p95)),
                    num(l.map(|l| l.p99))
                );
            }
        }
        Command::Dataset(DatasetCommand::Export { out, name, format }) => {
            let c = read()?;
            let ds = c.dataset(name, &WindowQuery::default()).await.map_err(failed)?;
            ds.export(out).map_err(|e| (1, e.to_string()))?;
            let csv = c.dataset_windows(name).await.map_err(failed)?;
            let windows = match format {
                WindowsFormat::Csv => {
                    std::fs::write(out.join("windows.csv"), &csv)
                        .map_err(|e| (1, format!("{}: {e}", out.display())))?;
                    format!("windows.csv: {} windows", csv.lines().count().saturating_sub(1))
                }
                WindowsFormat::Parquet => {
                    let w =
                        parquet_export::windows_csv_to_parquet(&csv, &out.join("windows.parquet"))
                            .map_err(|e| (1, e))?;
                    format!("windows.parquet: {} windows × {} columns", w.rows, w.columns)
                }
            };
            println!(
                "{}: {} nodes, {} cases, {} labels; {windows}",
                out.display(),
                ds.series.len(),
                ds.cases.len(),
                ds.labels.len()
            );
        }
        Command::Dataset(DatasetCommand::Check { dir }) => {
            let (ds, findings) =
                Dataset::import_checked(dir).map_err(|e| (1, format!("{}: {e}", dir.display())))?;
            let metrics: std::collections::BTreeSet<&String> =
                ds.series.values().flat_map(|m| m.keys()).collect();
            let mut types: std::collections::BTreeMap<&str, usize> = Default::default();
            for l in &ds.labels {
                *types.entry(l.kind.as_str()).or_default() += 1;
            }
            let groups: std::collections::BTreeSet<&str> =
                ds.cases.iter().filter_map(|c| c.group.as_deref()).collect();
            println!(
                "{}: {} nodes, {} metrics, {} cases ({} groups), {} labels",
                dir.display(),
                ds.series.len(),
                metrics.len(),
                ds.cases.len(),
                groups.len(),
                ds.labels.len()
            );
            for (kind, n) in types {
                println!("  {kind}: {n} labels");
            }
            for f in &findings {
                println!("warning: {f}");
            }
        }
        Command::Dataset(DatasetCommand::Import { dir, name }) => {
            let (ds, findings) =
                Dataset::import_checked(dir).map_err(|e| (1, format!("{}: {e}", dir.display())))?;
            for f in &findings {
                eprintln!("warning: {f}");
            }
            let v = write()?.import_dataset(name, &ds).await.map_err(failed)?;
            println!("{name}: {} cases, {} labels", v.cases, v.labels);
        }
        Command::Dataset(DatasetCommand::Filter { dir, without, out }) => {
            if out.exists() && std::fs::read_dir(out).map_or(true, |mut d| d.next().is_some()) {
                return Err((
                    EX_USAGE,
                    format!("{} exists and is not empty; give a new directory", out.display()),
                ));
            }
            let mut ds =
                Dataset::import(dir).map_err(|e| (1, format!("{}: {e}", dir.display())))?;
            let before = ds.cases.len();
            for kind in without {
                let n = ds.drop_cases_with(kind);
                println!("{kind}: {n} cases dropped");
            }
            ds.validate().map_err(|e| (1, e.to_string()))?;
            ds.export(out).map_err(|e| (1, e.to_string()))?;
            println!(
                "{}: {} of {before} cases, {} labels",
                out.display(),
                ds.cases.len(),
                ds.labels.len()
            );
        }
        Command::Eval { args } => return lab(cli, "eval", args),
        Command::Campaign { args } => return lab(cli, "campaign", args),
        Command::Train { dataset, refit } => {
            let c = write()?;
            let req = train_request(dataset.clone(), *refit);
            let job = c.train(&req).await.map_err(failed)?.job;
            loop {
                let j = c.train_job(&job).await.map_err(failed)?;
                match j.state {
                    JobState::Running => {
                        eprint!("\r{:5.1} % {:<60}", j.progress * 100.0, j.message)
                    }
                    JobState::Done => {
                        eprintln!();
                        let id = j.model_id.clone().unwrap_or_default();
                        println!("{id}");
                        if let Ok(m) = c.model(&id).await {
                            for (kind, note) in &m.type_notes {
                                println!("    {kind:<18} {note}");
                            }
                            for (kind, why) in &m.skipped {
                                println!("    {kind:<18} no classifier: {why}");
                            }
                        }
                        break;
                    }
                    JobState::Failed => {
                        eprintln!();
                        return Err((1, format!("training failed: {}", j.message)));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        Command::Nodes => {
            let v = read()?.nodes().await.map_err(failed)?;
            println!("{:<24} {:<9} {:<13} {:>8}  last sample", "node", "kind", "state", "metrics");
            for n in &v.nodes {
                let kind = serde_json::to_value(n.kind)
                    .ok()
                    .and_then(|k| k.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let state = serde_json::to_value(n.state)
                    .ok()
                    .and_then(|k| k.as_str().map(str::to_owned))
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<9} {:<13} {:>8}  {}",
                    n.node,
                    kind,
                    state,
                    n.metric_count,
                    ms(n.last_sample_ms)
                );
                for b in &n.capabilities.fault_backends {
                    println!("    can    {:<18} {}", b.kind, b.mechanism);
                }
                for m in &n.capabilities.missing {
                    println!("    cannot {:<18} {}", m.kind, m.reason);
                }
            }
        }
        Command::Models => {
            let v = read()?.models().await.map_err(failed)?;
            println!(
                "{:<22} {:<7} {:<12} {:>6} {:>6}  types",
                "id", "active", "source", "AC@1", "cases"
            );
            for m in &v.models {
                let e = m.evaluation.as_ref();
                let ac1 = e.and_then(|e| e.model.as_ref()).map(|r| r.at_fault.overall.ac1);
                println!(
                    "{:<22} {:<7} {:<12} {:>6} {:>6}  {}",
                    m.id,
                    m.active,
                    m.source,
                    ac1.map_or("-".into(), |x| format!("{x:.3}")),
                    e.map_or("-".into(), |e| e.cases.to_string()),
                    m.types.join(", ")
                );
            }
        }
        Command::Incidents { from, to, min_excess } => {
            let q = distdiag_api::ranks::IncidentsQuery {
                from: Some(from.clone()),
                to: to.clone(),
                min_excess: Some(*min_excess),
            };
            let v = read()?.incidents(&q).await.map_err(failed)?;
            let time = |ms: i64| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
                )
                .to_string()
            };
            println!(
                "{:<16} {:<18} {:<20} {:<20} {:>8} {:>6} {:>6}  top metrics",
                "node", "type", "start", "end", "rankings", "max p", "excess"
            );
            for i in &v.incidents {
                let top: Vec<&str> = i.top_metrics.iter().map(|m| m.0.as_str()).collect();
                println!(
                    "{:<16} {:<18} {:<20} {:<20} {:>8} {:>6.3} {:>6.3}  {}",
                    i.node,
                    i.kind,
                    time(i.start_ms),
                    time(i.end_ms),
                    i.rankings,
                    i.max_probability,
                    i.max_excess,
                    top.join(", ")
                );
            }
            if v.incidents.is_empty() {
                println!("(no incident between {} and {})", time(v.from), time(v.to));
            }
        }
        Command::Ranks { limit } => {
            let v = read()?.ranks(*limit).await.map_err(failed)?;
            println!("{} ({})", v.note, ms(v.timestamp));
            println!(
                "{:>4} {:<16} {:<18} {:>9} {:>6} {:>6} {:>8}  top metrics",
                "rank", "node", "type", "score", "p", "excess", "pagerank"
            );
            for (i, e) in v.ranks.iter().enumerate() {
                let top: Vec<&str> = e.top_metrics.iter().map(|m| m.0.as_str()).collect();
                println!(
                    "{:>4} {:<16} {:<18} {:>9.4} {:>6.3} {:>6.3} {:>8.4}  {}",
                    i + 1,
                    e.node,
                    e.kind,
                    e.score,
                    e.probability,
                    e.excess,
                    e.pagerank,
                    top.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Runs `distdiag-lab SUBCOMMAND ARGS` (beside this executable, else on
/// PATH) with this command's global options, and exits with its status.
fn lab(cli: &Cli, sub: &str, args: &[String]) -> Result<(), (u8, String)> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("distdiag-lab")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from("distdiag-lab"));
    // distdiag-lab, with an argument vector: the one program this CLI runs.
    #[allow(clippy::disallowed_methods)]
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("--url").arg(&cli.url).arg("--data-dir").arg(&cli.data_dir);
    if let Some(t) = &cli.token_file {
        cmd.arg("--token-file").arg(t);
    }
    if let Some(ca) = &cli.ca_cert {
        cmd.arg("--ca-cert").arg(ca);
    }
    let status = cmd.arg(sub).args(args).status().map_err(|e| {
        (1, format!("`distdiag {sub}` runs {}, which links XGBoost: {e} (build it with `cargo build -p distdiag-testbed`, or install it beside distdiag)", program.display()))
    })?;
    match status.code() {
        Some(0) => Ok(()),
        // distdiag-lab said why.
        Some(c) => Err((u8::try_from(c).unwrap_or(1), String::new())),
        None => Err((1, format!("distdiag-lab {sub} was killed by a signal"))),
    }
}

/// What `distdiag train` asks for: the server's default parameters, with
/// `refit` when asked.
fn train_request(dataset: Option<String>, refit: bool) -> TrainRequest {
    let params = refit.then(|| distdiag_api::models::TrainParams { refit, ..Default::default() });
    TrainRequest { dataset, params, ..TrainRequest::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_asks_for_refit_only_when_told() {
        let plain = train_request(Some("d".into()), false);
        assert_eq!((plain.dataset.as_deref(), plain.params), (Some("d"), None));
        let refit = train_request(None, true).params.expect("params");
        assert!(refit.refit);
        // Everything else as the server would default it.
        let d = distdiag_api::models::TrainParams::default();
        assert_eq!((refit.rounds, refit.validation_fraction), (d.rounds, d.validation_fraction));
    }

    #[test]
    fn parameters_are_typed() {
        assert_eq!(
            parse_param("load_percent=50").unwrap(),
            ("load_percent".into(), serde_json::json!(50))
        );
        assert_eq!(
            parse_param("ports=[3306,33060]").unwrap(),
            ("ports".into(), serde_json::json!([3306, 33060]))
        );
        assert_eq!(
            parse_param("interface=eth0").unwrap(),
            ("interface".into(), serde_json::json!("eth0"))
        );
        assert_eq!(
            parse_param("path=/var/tmp").unwrap(),
            ("path".into(), serde_json::json!("/var/tmp"))
        );
        assert!(parse_param("no-equals").is_err());
        let o = options(&[
            parse_param("table_size=500").unwrap(),
            parse_param("rand_type=uniform").unwrap(),
        ])
        .unwrap();
        assert_eq!((o.table_size, o.tables), (500, 1));
        assert!(options(&[parse_param("tabels=2").unwrap()]).unwrap_err().1.contains("tabels"));
    }
}
