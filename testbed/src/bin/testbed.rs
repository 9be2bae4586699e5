//! `distdiag-testbed`: a real N-node cluster on this machine (network
//! namespaces, cgroups, a database server and an agent per node, the
//! coordinator on the host).
//!
//! `distdiag-testbed up --db galera` brings it up and keeps it until Ctrl-C
//! or SIGTERM, then removes everything; `distdiag-testbed down --dir DIR`
//! removes a testbed from another terminal or after a crash.

// Brings up and tears down processes and namespaces.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distdiag_testbed::testbed::{teardown, DbKind, Options, State, Testbed};

#[derive(Parser)]
#[command(
    name = "distdiag-testbed",
    about = "A multi-node database cluster in network namespaces and cgroups, with agents and a coordinator"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring a cluster up and keep it until interrupted.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// none, mariadb (standalone per node), galera, seekdb.
        #[arg(long, default_value = "mariadb")]
        db: DbKind,
        #[arg(long, default_value = "/var/tmp/distdiag-testbed")]
        dir: PathBuf,
        /// Subnet 10.231.NET.0/24 and name suffix.
        #[arg(long, default_value_t = 1)]
        net: u8,
        /// CPU quota per node (% of one core).
        #[arg(long, default_value_t = 60)]
        cpu_percent: u32,
        /// Memory limit per node (MiB; default 1536, 3072 for seekdb).
        #[arg(long)]
        memory_mb: Option<u64>,
        /// The coordinator's REST API and dashboard.
        #[arg(long, default_value = "127.0.0.1:8000")]
        api: SocketAddr,
        /// Threads of the background OLTP workload per database (0: none).
        #[arg(long, default_value_t = 1)]
        workload_threads: usize,
        /// Keep logs and data after teardown.
        #[arg(long)]
        keep_files: bool,
    },
    /// Remove a testbed: processes, cgroups, namespaces, bridge, files.
    Down {
        #[arg(long, default_value = "/var/tmp/distdiag-testbed")]
        dir: PathBuf,
        #[arg(long)]
        keep_files: bool,
    },
}

/// Interrupted while coming up: bring-up stops at its next await (its
/// blocking steps are short), then whatever it recorded is removed.
async fn interrupted(
    up: tokio::task::JoinHandle<anyhow::Result<Testbed>>,
    dir: &std::path::Path,
    keep_files: bool,
) -> ExitCode {
    eprintln!("interrupted while coming up; removing what was made");
    up.abort();
    let problems = match up.await {
        Ok(Ok(mut tb)) => {
            tb.keep_files(keep_files);
            tb.down()
        }
        // It failed and removed what it made, or stopped half-way.
        _ => match State::load(dir) {
            Ok(state) => teardown(&state, keep_files),
            Err(_) => Vec::new(),
        },
    };
    if problems.is_empty() {
        ExitCode::from(130)
    } else {
        eprintln!("could not remove: {}", problems.join("; "));
        ExitCode::FAILURE
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up {
            nodes,
            db,
            dir,
            net,
            cpu_percent,
            memory_mb,
            api,
            workload_threads,
            keep_files,
        } => {
            let mut opts = Options::new(&dir, db);
            opts.nodes = nodes;
            opts.net = net;
            opts.cpu_percent = cpu_percent;
            if let Some(m) = memory_mb {
                opts.memory_mb = m;
            }
            opts.api = api;
            opts.workload_threads = workload_threads;
            // Signals are watched from the start: one during bring-up stops
            // it and removes what it made (the state file records each
            // part before it is created).
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            eprintln!("bringing up {nodes} nodes ({db:?}) in {}", dir.display());
            let mut up = tokio::spawn(async move { Testbed::up(&opts).await });
            let done = tokio::select! {
                r = &mut up => Some(r),
                _ = tokio::signal::ctrl_c() => None,
                _ = term.recv() => None,
            };
            let Some(done) = done else { return interrupted(up, &dir, keep_files).await };
            let mut tb = match done {
                Ok(Ok(tb)) => tb,
                Ok(Err(e)) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("error: bring-up stopped: {e}");
                    return ExitCode::FAILURE;
                }
            };
            tb.keep_files(keep_files);
            tb.state.owner = Some(std::process::id());
            if let Err(e) = tb.state.save() {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
            println!(
                "coordinator: http://{}/ (token in {})",
                tb.api(),
                tb.state.dir.join("coordinator/token").display()
            );
            for n in &tb.state.nodes {
                println!(
                    "{}: {} netns {} cgroup {} database {}",
                    n.name,
                    n.addr,
                    n.netns,
                    n.cgroup,
                    n.database.as_deref().unwrap_or("-")
                );
            }
            if let Some(w) = &tb.state.workload {
                println!("workload: {w}");
            }
            println!("Ctrl-C or `distdiag-testbed down --dir {}` removes it", dir.display());
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("tearing down");
            let problems = tb.down();
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("could not remove: {}", problems.join("; "));
                ExitCode::FAILURE
            }
        }
        Cmd::Down { dir, keep_files } => {
            let state = match State::load(&dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(64);
                }
            };
            // A running `up` tears down itself on SIGTERM; what it leaves
            // (or a crashed one left) goes next.
            if let Some(owner) = state.owner.filter(|p| {
                *p != std::process::id() && std::path::Path::new(&format!("/proc/{p}")).exists()
            }) {
                let _ =
                    std::process::Command::new("kill").arg("-TERM").arg(owner.to_string()).status();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
                while std::path::Path::new(&format!("/proc/{owner}")).exists()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
            let state = State::load(&dir).unwrap_or(state);
            let problems = teardown(&state, keep_files);
            if problems.is_empty() {
                eprintln!("removed");
                ExitCode::SUCCESS
            } else {
                eprintln!("could not remove: {}", problems.join("; "));
                ExitCode::FAILURE
            }
        }
    }
}
