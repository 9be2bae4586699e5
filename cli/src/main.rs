//! `distdiag`: the command line for a running coordinator's REST API, an
//! HTTP client that does not link XGBoost. The commands that train models
//! on this machine (`eval`, `campaign`) are `distdiag-lab`'s, which this
//! runs with the same global options. Usage errors exit with 64; an error
//! answer from the API exits with 1 and prints its message.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distdiag_dataset::Dataset;
use serde_json::{json, Map, Value};

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
    /// The current root-cause ranking.
    Ranks {
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Write a dataset (default: the collected data) as CSV files into a directory.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "collected")]
        name: String,
    },
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

fn table(recs: &[Value]) {
    println!(
        "{:<24} {:<10} {:<16} {:<9} {:>14} {:>14}  detail",
        "id", "node", "type", "state", "applied_ms", "ended_ms"
    );
    for r in recs {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let n = |k: &str| r[k].as_i64().map_or("-".to_owned(), |v| v.to_string());
        println!(
            "{:<24} {:<10} {:<16} {:<9} {:>14} {:>14}  {}",
            s("id"),
            s("node"),
            s("type"),
            s("state"),
            n("applied_ms"),
            n("ended_ms"),
            s("detail")
        );
    }
}

fn fmt_num(v: &Value) -> String {
    v.as_f64().map_or("-".to_owned(), |x| format!("{x:.1}"))
}

fn workload_table(runs: &[Value]) {
    println!(
        "{:<40} {:<18} {:<9} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9}",
        "workload_id", "type", "phase", "threads", "tps", "qps", "errors", "p95_ms", "txns"
    );
    for r in runs {
        let cur = &r["current"];
        println!(
            "{:<40} {:<18} {:<9} {:>7} {:>9} {:>10} {:>8} {:>9} {:>9}",
            r["workload_id"].as_str().unwrap_or("-"),
            r["type"].as_str().unwrap_or("-"),
            r["phase"].as_str().unwrap_or("-"),
            r["threads"],
            fmt_num(&cur["tps"]),
            fmt_num(&cur["qps"]),
            r["totals"]["errors"],
            fmt_num(&cur["latency_ms"]["p95"]),
            r["totals"]["transactions"],
        );
    }
}

fn options_map(options: &[(String, Value)]) -> Value {
    Value::Object(options.iter().cloned().collect::<Map<String, Value>>())
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

async fn run(cli: &Cli) -> Result<(), (u8, String)> {
    let client = reqwest::Client::new();
    let base = cli.url.trim_end_matches('/');
    let send = |req: reqwest::RequestBuilder| async move { answer(req.send().await, base).await };
    match &cli.command {
        Command::Fault(FaultCommand::Start { kind, node, params, duration }) => {
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let mut body = json!({ "type": kind, "params": params.iter().cloned().collect::<Map<String, Value>>() });
            match node.as_slice() {
                [] => {}
                [one] => body["node"] = json!(one),
                many => body["nodes"] = json!(many),
            }
            if let Some(d) = duration {
                body["duration"] = json!(d);
            }
            let v =
                send(client.post(format!("{base}/api/anomaly/start")).bearer_auth(tok).json(&body))
                    .await?;
            table(v["anomalies"].as_array().map(Vec::as_slice).unwrap_or_default());
        }
        Command::Fault(FaultCommand::Stop { id }) => {
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let body = id.as_ref().map_or(json!({}), |i| json!({ "id": i }));
            let v =
                send(client.post(format!("{base}/api/anomaly/stop")).bearer_auth(tok).json(&body))
                    .await?;
            table(v["stopped"].as_array().map(Vec::as_slice).unwrap_or_default());
            if let Some(f) = v["failed"].as_array().filter(|f| !f.is_empty()) {
                return Err((1, format!("not stopped: {}", Value::Array(f.clone()))));
            }
        }
        Command::Fault(FaultCommand::List { history, from }) => {
            let url = if *history {
                format!("{base}/api/anomaly/history?from={}", urlencode(from))
            } else {
                format!("{base}/api/anomaly/active")
            };
            let v = send(client.get(url)).await?;
            table(v["anomalies"].as_array().map(Vec::as_slice).unwrap_or_default());
        }
        Command::Workload(WorkloadCommand::Prepare { kind, options }) => {
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let body = json!({ "type": kind, "options": options_map(options) });
            let v = send(
                client.post(format!("{base}/api/workload/prepare")).bearer_auth(&tok).json(&body),
            )
            .await?;
            let id = v["workload_id"].as_str().unwrap_or_default().to_owned();
            loop {
                let r = send(client.get(format!("{base}/api/workload/{id}"))).await?;
                let pct = r["progress"].as_f64().unwrap_or(0.0) * 100.0;
                match r["phase"].as_str() {
                    Some("preparing") => eprint!("\rpreparing {kind}: {pct:5.1} %"),
                    Some("prepared") => {
                        eprintln!("\rpreparing {kind}: 100.0 %");
                        println!("{id}: prepared");
                        break;
                    }
                    _ => {
                        eprintln!();
                        return Err((
                            1,
                            format!("prepare failed: {}", r["error"].as_str().unwrap_or("unknown")),
                        ));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        Command::Workload(WorkloadCommand::Start { kind, threads, options }) => {
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let body = json!({ "type": kind, "threads": threads, "options": options_map(options) });
            let v = send(
                client.post(format!("{base}/api/workload/start")).bearer_auth(tok).json(&body),
            )
            .await?;
            println!("{}", v["workload_id"].as_str().unwrap_or("-"));
        }
        Command::Workload(WorkloadCommand::Stop { id }) => {
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let url = match id {
                Some(i) => format!("{base}/api/workload/{i}/stop"),
                None => format!("{base}/api/workload/stop-all"),
            };
            let v = send(client.post(url).bearer_auth(tok).json(&json!({}))).await?;
            match &v["report"] {
                Value::Null => println!("stopped: {}", v["stopped"]),
                r => workload_table(std::slice::from_ref(r)),
            }
        }
        Command::Workload(WorkloadCommand::List { all }) => {
            let url = if *all {
                format!("{base}/api/workload/runs")
            } else {
                format!("{base}/api/workload/active")
            };
            let v = send(client.get(url)).await?;
            workload_table(v["workloads"].as_array().map(Vec::as_slice).unwrap_or_default());
        }
        Command::Dataset(DatasetCommand::Export { out, name }) => {
            let v = send(client.get(format!("{base}/api/datasets/{}", urlencode(name)))).await?;
            let ds: Dataset = serde_json::from_value(v)
                .map_err(|e| (1, format!("bad dataset from {base}: {e}")))?;
            ds.export(out).map_err(|e| (1, e.to_string()))?;
            let windows = client
                .get(format!("{base}/api/datasets/{}/windows.csv", urlencode(name)))
                .send()
                .await
                .and_then(|r| r.error_for_status());
            let csv = match windows {
                Ok(r) => {
                    r.text().await.map_err(|e| (1, format!("windows.csv from {base}: {e}")))?
                }
                Err(e) => return Err((1, format!("windows.csv from {base}: {e}"))),
            };
            std::fs::write(out.join("windows.csv"), csv)
                .map_err(|e| (1, format!("{}: {e}", out.display())))?;
            println!(
                "{}: {} nodes, {} cases, {} labels",
                out.display(),
                ds.series.len(),
                ds.cases.len(),
                ds.labels.len()
            );
        }
        Command::Dataset(DatasetCommand::Import { dir, name }) => {
            let ds = Dataset::import(dir).map_err(|e| (1, e.to_string()))?;
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let v = send(
                client
                    .post(format!("{base}/api/datasets/{}", urlencode(name)))
                    .bearer_auth(tok)
                    .json(&ds),
            )
            .await?;
            println!("{name}: {} cases, {} labels", v["cases"], v["labels"]);
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
        Command::Train { dataset } => {
            let tok = token(cli).map_err(|e| (EX_USAGE, e))?;
            let body = dataset.as_ref().map_or(json!({}), |d| json!({ "dataset": d }));
            let v =
                send(client.post(format!("{base}/api/anomaly/train")).bearer_auth(tok).json(&body))
                    .await?;
            let job = v["job"].as_str().unwrap_or_default().to_owned();
            loop {
                let j = send(client.get(format!("{base}/api/anomaly/train/{job}"))).await?;
                match j["state"].as_str() {
                    Some("running") => eprint!(
                        "\r{:5.1} % {:<60}",
                        j["progress"].as_f64().unwrap_or(0.0) * 100.0,
                        j["message"].as_str().unwrap_or("")
                    ),
                    Some("done") => {
                        eprintln!();
                        println!("{}", j["model_id"].as_str().unwrap_or("-"));
                        break;
                    }
                    _ => {
                        eprintln!();
                        return Err((
                            1,
                            format!(
                                "training failed: {}",
                                j["message"].as_str().unwrap_or("unknown")
                            ),
                        ));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        Command::Campaign { args } => return lab(cli, "campaign", args),
        Command::Models => {
            let v = send(client.get(format!("{base}/api/models"))).await?;
            println!(
                "{:<22} {:<7} {:<12} {:>6} {:>6}  types",
                "id", "active", "source", "AC@1", "cases"
            );
            for m in v["models"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let ac1 = &m["evaluation"]["model"]["at_fault"]["ac1"];
                println!(
                    "{:<22} {:<7} {:<12} {:>6} {:>6}  {}",
                    m["id"].as_str().unwrap_or("-"),
                    m["active"],
                    m["source"].as_str().unwrap_or("-"),
                    ac1.as_f64().map_or("-".into(), |x| format!("{x:.3}")),
                    m["evaluation"]["cases"],
                    m["types"]
                );
            }
        }
        Command::Ranks { limit } => {
            let v = send(client.get(format!("{base}/api/anomaly/ranks?limit={limit}"))).await?;
            println!("{} ({})", v["note"].as_str().unwrap_or(""), v["timestamp"]);
            println!(
                "{:>4} {:<16} {:<18} {:>9} {:>6} {:>6} {:>8}  top metrics",
                "rank", "node", "type", "score", "p", "excess", "pagerank"
            );
            for (i, e) in
                v["ranks"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate()
            {
                let top: Vec<&str> = e["top_metrics"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m[0].as_str())
                    .collect();
                println!(
                    "{:>4} {:<16} {:<18} {:>9.4} {:>6.3} {:>6.3} {:>8.4}  {}",
                    i + 1,
                    e["node"].as_str().unwrap_or("-"),
                    e["type"].as_str().unwrap_or("-"),
                    e["score"].as_f64().unwrap_or(0.0),
                    e["probability"].as_f64().unwrap_or(0.0),
                    e["excess"].as_f64().unwrap_or(0.0),
                    e["pagerank"].as_f64().unwrap_or(0.0),
                    top.join(", ")
                );
            }
        }
        Command::Workload(WorkloadCommand::Show { id }) => {
            let v = send(client.get(format!("{base}/api/workload/{id}"))).await?;
            workload_table(std::slice::from_ref(&v));
            println!(
                "\n{:>14} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
                "timestamp", "threads", "tps", "qps", "err/s", "p50_ms", "p95_ms", "p99_ms"
            );
            for i in v["intervals"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let l = &i["latency_ms"];
                println!(
                    "{:>14} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
                    i["timestamp"],
                    i["threads"],
                    fmt_num(&i["tps"]),
                    fmt_num(&i["qps"]),
                    fmt_num(&i["errors_per_s"]),
                    fmt_num(&l["p50"]),
                    fmt_num(&l["p95"]),
                    fmt_num(&l["p99"])
                );
            }
        }
    }
    Ok(())
}

/// An API answer's JSON body, or the API's error message (exit code 1).
async fn answer(
    resp: Result<reqwest::Response, reqwest::Error>,
    base: &str,
) -> Result<Value, (u8, String)> {
    let resp = resp.map_err(|e| (1u8, format!("cannot reach {base}: {e}")))?;
    let status = resp.status();
    let body: Value =
        resp.json().await.map_err(|e| (1u8, format!("bad answer from {base}: {e}")))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err((1, format!("{status}: {}", body["error"].as_str().unwrap_or("(no message)"))))
    }
}

/// Runs `distdiag-lab SUBCOMMAND ARGS` (beside this executable, else on
/// PATH) with this command's global options, and exits with its status.
fn lab(cli: &Cli, sub: &str, args: &[String]) -> Result<(), (u8, String)> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("distdiag-lab")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from("distdiag-lab"));
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("--url").arg(&cli.url).arg("--data-dir").arg(&cli.data_dir);
    if let Some(t) = &cli.token_file {
        cmd.arg("--token-file").arg(t);
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

/// Percent-encodes a query value (times may contain ':' and '+').
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_typed() {
        assert_eq!(parse_param("load_percent=50").unwrap(), ("load_percent".into(), json!(50)));
        assert_eq!(
            parse_param("ports=[3306,33060]").unwrap(),
            ("ports".into(), json!([3306, 33060]))
        );
        assert_eq!(parse_param("interface=eth0").unwrap(), ("interface".into(), json!("eth0")));
        assert_eq!(parse_param("path=/var/tmp").unwrap(), ("path".into(), json!("/var/tmp")));
        assert!(parse_param("no-equals").is_err());
        assert_eq!(urlencode("-1h"), "-1h");
        assert_eq!(urlencode("2026-01-01T00:00:00+01:00"), "2026-01-01T00%3A00%3A00%2B01%3A00");
    }
}
