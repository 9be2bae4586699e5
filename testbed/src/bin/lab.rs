//! `distdiag-lab`: the research commands that train XGBoost models on this
//! machine — `eval` (a model, or one trained here, on a dataset directory)
//! and `campaign run|report` (record a fault campaign through a
//! coordinator, and its cross-validated report). `distdiag eval` and
//! `distdiag campaign` run this program, so the `distdiag` CLI itself
//! needs no XGBoost. Usage errors exit with 64, failures with 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distdiag_api::models::ModelDoc;
use distdiag_api::Client;
use distdiag_dataset::Dataset;
use distdiag_diagnose::evaluate::{evaluation_markdown, DatasetExt};
use distdiag_diagnose::model::{ModelSet, Scorer, TrainParams};
use distdiag_diagnose::rank::At;
use distdiag_testbed::campaign::{
    check_folds, check_repeats, markdown, report_cv, CampaignConfig, CvOptions,
};
use distdiag_testbed::campaign_run::{self, failed, Failure, RunArgs};

const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "distdiag-lab",
    version,
    about = "Evaluate models on datasets and run fault campaigns (trains XGBoost here)"
)]
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
    /// Evaluate on a dataset directory (the export format, see
    /// docs/dataset-format.md): pair and node AC@1/3/5, Avg@5, per-type F1
    /// and the confusion table of a model beside the statistical scorer and
    /// Dummy, also with the diagnosis time shifted by ±30 s, and how soon
    /// after its start each case is named (ranked at every sample). Without
    /// --model, cross-validates: every fault case is ranked by a model
    /// trained on the other folds (or groups).
    Eval {
        #[arg(long)]
        dataset: PathBuf,
        /// Evaluate this model instead of cross-validating: a model id on
        /// the coordinator, or a file saved from `GET /api/models/{id}/export`.
        #[arg(long)]
        model: Option<String>,
        /// Cross-validation folds (2..=10), dealt stratified by each
        /// scenario's first fault type.
        #[arg(long, default_value_t = 5)]
        folds: u32,
        /// Cross-validation runs (1..=20), dealt anew each time (seeds
        /// SEED, SEED+1, ...); figures are their means.
        #[arg(long, default_value_t = 1)]
        repeats: u32,
        /// Leave one group out at a time (the `group` column of cases.csv)
        /// instead of folds.
        #[arg(long, conflicts_with_all = ["folds", "repeats"])]
        group: bool,
        /// When each case is diagnosed: `middle` of its faults, `start` of
        /// the first, or `+N` s after it starts (`+30s`, `+1500ms`).
        #[arg(long, default_value = "middle")]
        at: At,
        /// Length of the window the features are computed over (overrides the manifest).
        #[arg(long)]
        window_ms: Option<i64>,
        /// Length of each node's reference period before a window (overrides the manifest).
        #[arg(long)]
        baseline_ms: Option<i64>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Print the evaluation as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Fault campaigns: scenario families A (one fault, one node), B (one
    /// fault, two nodes), C (two faults, one node), W (a node fault during
    /// a cluster-wide workload surge), recorded and evaluated.
    #[command(subcommand)]
    Campaign(CampaignCommand),
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Run a campaign against the coordinator's agents and databases, then
    /// write OUT/dataset (export format), OUT/report.md and OUT/report.json.
    Run {
        #[arg(long)]
        out: PathBuf,
        /// Families, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "A,B,C,W")]
        families: Vec<String>,
        /// Fault types, comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "cpu_stress,memory_stress,disk_stress,network_delay,network_loss,cache_bottleneck,too_many_indexes"
        )]
        types: Vec<String>,
        /// Cases per scenario.
        #[arg(long, default_value_t = 10)]
        cases: u32,
        #[arg(long, default_value_t = 30)]
        normal_s: u32,
        #[arg(long, default_value_t = 40)]
        fault_s: u32,
        #[arg(long, default_value_t = 20)]
        recovery_s: u32,
        /// Normal collection before the first case.
        #[arg(long, default_value_t = 60)]
        warmup_s: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Cross-validation folds of the report (2..=10): every fault case
        /// is ranked by a model trained on the other folds.
        #[arg(long, default_value_t = 2)]
        folds: u32,
        /// Cross-validation runs (1..=20), the cases dealt into folds anew
        /// each time (seeds SEED, SEED+1, ...); figures are their means.
        #[arg(long, default_value_t = 1)]
        repeats: u32,
        /// The workload family W surges (default: the one running over several databases).
        #[arg(long)]
        workload: Option<String>,
    },
    /// The report of a recorded campaign dataset (export format), trained
    /// and evaluated here; several `--dataset`s (recordings of the same
    /// testbed at different times) are evaluated as one.
    Report {
        #[arg(long, required = true)]
        dataset: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Cross-validation folds (2..=10).
        #[arg(long, default_value_t = 2)]
        folds: u32,
        /// Cross-validation runs (1..=20), the cases dealt into folds anew
        /// each time (seeds SEED, SEED+1, ...); figures are their means.
        #[arg(long, default_value_t = 1)]
        repeats: u32,
        /// Seed of the first dealing and of training.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn token(cli: &Cli) -> Result<String, Failure> {
    if let Ok(t) = std::env::var("DISTDIAG_TOKEN") {
        return Ok(t.trim().to_owned());
    }
    let path = cli.token_file.clone().unwrap_or_else(|| cli.data_dir.join("token"));
    std::fs::read_to_string(&path).map(|t| t.trim().to_owned()).map_err(|e| {
        (
            EX_USAGE,
            format!(
                "cannot read the API token from {}: {e} (use --token-file or DISTDIAG_TOKEN)",
                path.display()
            ),
        )
    })
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
            eprintln!("distdiag-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("distdiag-lab: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let client = Client::new(&cli.url)
        .with_cluster_ca(cli.ca_cert.as_deref(), &cli.data_dir)
        .map_err(|e| (EX_USAGE, e.to_string()))?;
    match &cli.command {
        Command::Eval {
            dataset,
            model,
            folds,
            repeats,
            group,
            at,
            window_ms,
            baseline_ms,
            seed,
            json: as_json,
        } => {
            let (mut ds, findings) = Dataset::import_checked(dataset)
                .map_err(|e| (1, format!("{}: {e}", dataset.display())))?;
            for f in &findings {
                eprintln!("warning: {f}");
            }
            if let Some(w) = window_ms {
                ds.manifest.window.window_ms = *w;
            }
            if let Some(b) = baseline_ms {
                ds.manifest.window.baseline_ms = *b;
            }
            ds.manifest.window.validate().map_err(|e| (EX_USAGE, format!("window: {e}")))?;
            let set: Option<ModelSet> = match model {
                Some(m) if std::path::Path::new(m).is_file() => {
                    let text = std::fs::read_to_string(m).map_err(|e| (1, format!("{m}: {e}")))?;
                    Some(
                        serde_json::from_str::<ModelDoc>(&text)
                            .map_err(|e| (1, format!("{m} is not a model export: {e}")))?
                            .set,
                    )
                }
                Some(id) => Some(client.export_model(id).await.map_err(failed)?.set),
                None => None,
            };
            match set {
                Some(set) => {
                    let scorer = Scorer::load_stored(&set).map_err(|e| (1, e))?;
                    let e = ds
                        .rank(Some(&scorer), &set.train_cases, *seed, *at)
                        .map_err(|e| (1, e))?
                        .evaluation();
                    if *as_json {
                        println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
                    } else {
                        print!("{}", evaluation_markdown(&e));
                    }
                }
                None => {
                    let opts =
                        CvOptions { folds: *folds, repeats: *repeats, by_group: *group, at: *at };
                    let params = TrainParams { seed: *seed, ..TrainParams::default() };
                    let r = report_cv(&ds, &opts, &params, &mut |d, n, what| {
                        eprintln!("  training {d}/{n} {what}")
                    })
                    .map_err(|e| (EX_USAGE, e))?;
                    if *as_json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        let md = markdown(&r).replacen(
                            "# Campaign report",
                            &format!("# Evaluation of {}", dataset.display()),
                            1,
                        );
                        print!("{md}");
                    }
                }
            }
        }
        Command::Campaign(CampaignCommand::Run {
            out,
            families,
            types,
            cases,
            normal_s,
            fault_s,
            recovery_s,
            warmup_s,
            seed,
            folds,
            repeats,
            workload,
        }) => {
            let config = CampaignConfig {
                families: families.clone(),
                types: types.clone(),
                cases: *cases,
                normal_s: *normal_s,
                fault_s: *fault_s,
                recovery_s: *recovery_s,
                warmup_s: *warmup_s,
                seed: *seed,
                folds: *folds,
                repeats: *repeats,
            };
            config.validate().map_err(|e| (EX_USAGE, e))?;
            let api = client.with_token(token(cli)?);
            let params = TrainParams { seed: *seed, ..TrainParams::default() };
            campaign_run::run(&api, RunArgs { config, workload: workload.as_deref(), out, params })
                .await?;
        }
        Command::Campaign(CampaignCommand::Report { dataset, out, folds, repeats, seed }) => {
            check_folds(*folds).map_err(|e| (EX_USAGE, e))?;
            check_repeats(*repeats).map_err(|e| (EX_USAGE, e))?;
            let mut ds = Dataset::import(&dataset[0])
                .map_err(|e| (1, format!("{}: {e}", dataset[0].display())))?;
            for d in &dataset[1..] {
                let more = Dataset::import(d).map_err(|e| (1, format!("{}: {e}", d.display())))?;
                ds.merge(more).map_err(|e| (1, format!("{}: {e}", d.display())))?;
            }
            campaign_run::write_report(
                &ds,
                out,
                *folds,
                *repeats,
                &TrainParams { seed: *seed, ..TrainParams::default() },
                false,
            )?;
        }
    }
    Ok(())
}
