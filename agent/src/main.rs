//! `distdiag-agent`: run the agent, check its config, or take one sample.
//! Usage and configuration errors exit with 64 before anything starts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use distdiag_agent::collect::{Collectors, Sink};
use distdiag_agent::config::Config;

const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "distdiag-agent",
    version,
    about = "distdiag host agent: samples the host and ships rows to the coordinator"
)]
struct Cli {
    /// Configuration file (TOML). Without it the embedded defaults apply.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Node name (overrides `node`).
    #[arg(long, global = true)]
    node: Option<String>,
    /// Coordinator address host:port (overrides `uplink.coordinator`).
    #[arg(long, global = true)]
    coordinator: Option<String>,
    /// State directory (overrides `state_dir`).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Directory holding ca.pem and node-NAME.pem/.key, as written by
    /// `distdiag-coordinator cert` (overrides the uplink certificate paths).
    #[arg(long, global = true)]
    certs: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the configuration and the files it names, then exit.
    CheckConfig,
    /// Print the default configuration.
    PrintDefaultConfig,
    /// Collect once and print every metric as JSON.
    CollectOnce,
    /// Run N collections back to back and print the agent's own CPU time and
    /// peak RSS as JSON (used by `make bench`).
    CollectBench {
        #[arg(long, default_value_t = 1000)]
        count: u32,
    },
    /// Apply one fault on this host without a coordinator, until its
    /// duration ends or the command is stopped (Ctrl-C, SIGTERM); prints the
    /// fault's id and stressor pids as JSON once applied. Uses the state
    /// directory's fault journal, so a crash is repaired by the next start.
    FaultRun {
        /// The fault as JSON, e.g. '{"cpu_stress":{"workers":1,"load_percent":50}}'.
        #[arg(long)]
        spec: String,
        /// How long the fault lasts, in milliseconds.
        #[arg(long)]
        duration_ms: u64,
        #[arg(long, default_value = "local")]
        id: String,
    },
    /// A stressor process (started by the agent itself).
    #[command(hide = true)]
    StressWorker(distdiag_agent::fault::WorkerArgs),
    /// Runs probe steps (argument vectors as JSON) in order, inside the
    /// throwaway network namespace the agent starts it in.
    #[command(hide = true)]
    ProbeSteps {
        #[arg(long)]
        steps: String,
    },
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("distdiag-agent: {msg}");
    ExitCode::from(EX_USAGE)
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
    match cli.command {
        Some(Command::StressWorker(args)) => return distdiag_agent::fault::worker_main(args),
        Some(Command::ProbeSteps { steps }) => {
            let ok = distdiag_agent::fault::network::run_probe_steps(&steps);
            return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        _ => {}
    }
    let mut cfg = match &cli.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => return usage(e),
        },
        None => Config::default(),
    };
    if let Some(n) = cli.node {
        cfg.node = Some(n);
    }
    if let Some(c) = cli.coordinator {
        cfg.uplink.coordinator = c;
    }
    if let Some(d) = cli.state_dir {
        cfg.state_dir = d;
    }
    if let Some(dir) = cli.certs {
        let node = cfg.node_name();
        cfg.uplink.ca_cert = dir.join("ca.pem");
        cfg.uplink.cert = dir.join(format!("node-{node}.pem"));
        cfg.uplink.key = dir.join(format!("node-{node}.key"));
    }
    if let Err(e) = cfg.validate() {
        return usage(e);
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::PrintDefaultConfig => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match cfg.check_files() {
            Ok(()) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => usage(e),
        },
        Command::CollectOnce => {
            let mut c = Collectors::new(&cfg.collect);
            let mut sink = Sink::default();
            c.collect(&mut sink);
            let map: serde_json::Map<String, serde_json::Value> = sink
                .catalog()
                .iter()
                .map(|m| (m.name.clone(), serde_json::json!(sink.value(&m.name))))
                .collect();
            println!("{}", serde_json::to_string_pretty(&map).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::CollectBench { count } => collect_bench(&cfg, count),
        Command::FaultRun { spec, duration_ms, id } => fault_run(&cfg, &spec, duration_ms, &id),
        Command::StressWorker(_) | Command::ProbeSteps { .. } => ExitCode::from(EX_USAGE),
        Command::Run => run(cfg),
    }
}

/// utime+stime of this process in seconds and VmHWM in bytes, from procfs.
fn self_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|p| p.1).unwrap_or("");
    let f: Vec<&str> = after.split_ascii_whitespace().collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu / ticks, hwm_kb * 1024)
}

fn collect_bench(cfg: &Config, count: u32) -> ExitCode {
    let mut c = Collectors::new(&cfg.collect);
    let mut sink = Sink::default();
    let started = Instant::now();
    let mut frame_bytes = 0usize;
    for i in 0..count {
        c.collect(&mut sink);
        // Encode as the uplink would, so the figure covers the whole sample path.
        let batch = distdiag_common::Batch {
            seq: u64::from(i),
            rows: vec![sink.row(distdiag_agent::now_ms())],
        };
        frame_bytes += distdiag_common::codec::encode_frame(
            &distdiag_common::AgentMsg::Batch(batch),
            distdiag_common::proto::DEFAULT_MAX_FRAME,
        )
        .map(|f| f.len())
        .unwrap_or(0);
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu, hwm) = self_usage();
    let per_collector: serde_json::Map<String, serde_json::Value> = c
        .stats()
        .into_iter()
        .map(|(n, s)| (n.to_owned(), serde_json::json!(s.seconds())))
        .collect();
    let out = serde_json::json!({
        "collector_seconds": per_collector,
        "collections": count,
        "metrics": sink.catalog().len(),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "peak_rss_bytes": hwm,
        "frame_bytes_per_collection": frame_bytes as f64 / f64::from(count.max(1)),
    });
    println!("{out}");
    ExitCode::SUCCESS
}

fn fault_run(cfg: &Config, spec: &str, duration_ms: u64, id: &str) -> ExitCode {
    use distdiag_agent::fault::FaultEngine;
    let spec: distdiag_common::fault::FaultSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => return usage(format!("--spec is not a fault: {e}")),
    };
    init_logging();
    let mut fault_cfg = cfg.fault.clone();
    fault_cfg.cgroup_root = cfg.collect.cgroup_root.clone();
    let (mut engine, leftovers) =
        match FaultEngine::open(fault_cfg, &cfg.state_dir, &cfg.collect.procfs_root) {
            Ok(e) => e,
            Err(e) => return usage(e),
        };
    for l in leftovers {
        tracing::warn!(fault = %l, "reverted a fault left by an earlier run");
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("distdiag-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers first: a signal that arrives once the fault is applied must revert it.
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return usage("cannot install signal handlers");
        };
        let now = distdiag_agent::now_ms();
        let deadline = now.saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX));
        if let Err(e) = engine.apply(id, &spec, deadline, now) {
            return usage(e);
        }
        println!("{}", serde_json::json!({ "id": id, "pids": engine.pids(id), "deadline_ms": deadline }));
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    if !engine.expire(distdiag_agent::now_ms()).is_empty() || !engine.reap().is_empty() {
                        break;
                    }
                }
            }
        }
        engine.revert_all();
        ExitCode::SUCCESS
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(cfg: Config) -> ExitCode {
    if let Err(e) = cfg.check_files() {
        return usage(e);
    }
    init_logging();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("distdiag-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let node = cfg.node_name();
        let coordinator = cfg.uplink.coordinator.clone();
        let agent = match distdiag_agent::start(cfg, None).await {
            Ok(a) => a,
            Err(e) => return usage(e),
        };
        tracing::info!(%node, %coordinator, "agent running");
        systemd_ready_and_watchdog();
        wait_for_signal().await;
        tracing::info!(pending_rows = agent.pending_rows(), "shutting down");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        agent.stop(std::time::Duration::from_secs(2)).await;
        ExitCode::SUCCESS
    })
}

/// systemd (`Type=notify`): READY=1 once the collectors, the fault engine
/// and the uplink are started (connected or not: samples spill until the
/// coordinator is back), then WATCHDOG=1 at half the watchdog period from
/// the agent's runtime. Nothing happens when no `NOTIFY_SOCKET` is set.
fn systemd_ready_and_watchdog() {
    if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "cannot tell systemd the agent is ready");
    }
    if let Some(usec) = distdiag_common::systemd_watchdog_usec() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_micros(usec / 2));
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
