//! `distdiag-coordinator`: run the coordinator, check its config, or manage
//! the cluster's certificates. Usage and configuration errors exit with 64
//! before any port is bound.

/// mimalloc rather than glibc's malloc: with 1,000 agents and a ranking of
/// 1,000 nodes × 200 metrics every stride, glibc's arenas kept 1.5 GB of
/// freed memory (2.0 GB resident for 0.5 GB in use, measured with
/// malloc_stats in the soak); see docs/reliability.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distdiag_coordinator::app::{self, AppError};
use distdiag_coordinator::config::Config;
use distdiag_coordinator::tls::{self, CertPaths};

const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "distdiag-coordinator",
    version,
    about = "distdiag coordinator: QUIC ingest, series store and REST API"
)]
struct Cli {
    /// Configuration file (TOML). Without it the embedded defaults apply.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// REST API listen address (overrides `api.listen`).
    #[arg(long, global = true)]
    api_listen: Option<SocketAddr>,
    /// QUIC ingest listen address (overrides `ingest.listen`).
    #[arg(long, global = true)]
    ingest_listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator (the default).
    Run,
    /// Validate the configuration and the certificate files, then exit.
    CheckConfig,
    /// Print the default configuration.
    PrintDefaultConfig,
    /// Create the cluster CA and certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// API tokens with a scope (read or admin), stored hashed; a running
    /// coordinator picks changes up within a second.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    Create {
        /// A name to know it by (unique).
        #[arg(long)]
        name: String,
        /// read: every GET; admin: everything.
        #[arg(long, default_value = "read")]
        scope: distdiag_coordinator::tokens::Scope,
    },
    /// List the tokens (never the tokens themselves).
    List,
    /// Revoke a token by id or name.
    Revoke { id_or_name: String },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create the cluster CA and the coordinator's server certificate.
    Init {
        /// Directory for the files (default: <data_dir>/certs).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// DNS names or IP addresses agents use to reach the coordinator.
        #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        server_names: Vec<String>,
        /// Cluster name written into the CA's common name.
        #[arg(long, default_value = "cluster")]
        cluster: String,
    },
    /// Issue a client certificate for one node; its common name is the node name.
    Node {
        /// The node name agents will be known by.
        name: String,
        /// Directory holding ca.pem/ca.key (default: <data_dir>/certs).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
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

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("distdiag-coordinator: {msg}");
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
    let mut cfg = match &cli.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => return usage(e),
        },
        None => Config::default(),
    };
    if let Some(d) = cli.data_dir {
        cfg.data_dir = d;
    }
    if let Some(a) = cli.api_listen {
        cfg.api.listen = a;
    }
    if let Some(a) = cli.ingest_listen {
        cfg.ingest.listen = a;
    }
    if let Err(e) = cfg.validate() {
        return usage(e);
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::PrintDefaultConfig => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match app::preflight(&cfg) {
            Ok(_) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => usage(e),
        },
        Command::Cert(c) => cert(c, &cfg),
        Command::Token(c) => token(c, &cfg),
        Command::Run => run(cfg),
    }
}

fn cert(cmd: CertCommand, cfg: &Config) -> ExitCode {
    let result = match cmd {
        CertCommand::Init { dir, server_names, cluster } => {
            let paths = CertPaths { dir: dir.unwrap_or_else(|| cfg.certs_dir()) };
            tls::init_ca(&paths, &cluster)
                .and_then(|()| tls::issue_server(&paths, &server_names))
                .map(|()| {
                    println!(
                        "created {} and {}",
                        paths.ca_cert().display(),
                        paths.server_cert().display()
                    );
                })
        }
        CertCommand::Node { name, dir } => {
            let paths = CertPaths { dir: dir.unwrap_or_else(|| cfg.certs_dir()) };
            tls::issue_node(&paths, &name)
                .map(|(c, k)| println!("created {} and {}", c.display(), k.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(e),
    }
}

fn token(cmd: TokenCommand, cfg: &Config) -> ExitCode {
    use distdiag_coordinator::tokens;
    let path = cfg.tokens_file();
    let result = match cmd {
        TokenCommand::Create { name, scope } => {
            tokens::create(&path, &name, scope).map(|(r, t)| {
                eprintln!(
                    "created token {} ({}, scope {}); it is shown once:",
                    r.id,
                    r.name,
                    r.scope.as_str()
                );
                println!("{t}");
            })
        }
        TokenCommand::List => tokens::list(&path).map(|all| {
            println!("{:<14} {:<24} {:<6} created", "id", "name", "scope");
            for r in all {
                println!("{:<14} {:<24} {:<6} {}", r.id, r.name, r.scope.as_str(), r.created_ms);
            }
        }),
        TokenCommand::Revoke { id_or_name } => tokens::revoke(&path, &id_or_name)
            .map(|r| println!("revoked {} ({}, scope {})", r.id, r.name, r.scope.as_str())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(e),
    }
}

fn run(cfg: Config) -> ExitCode {
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("distdiag-coordinator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let running = match app::start(cfg).await {
            Ok(r) => r,
            Err(AppError::Setup(m)) => return usage(m),
            Err(AppError::Runtime(m)) => {
                eprintln!("distdiag-coordinator: {m}");
                return ExitCode::FAILURE;
            }
        };
        match &running.token_file {
            Some(p) => eprintln!(
                "API on {} — bearer token for mutating requests in {}",
                running.api_url,
                p.display()
            ),
            None => {
                eprintln!("API on {} — bearer token from DISTDIAG_TOKEN", running.api_url)
            }
        }
        tell_systemd(&running);
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// systemd (`Type=notify`): READY=1 once both listeners are bound, then
/// WATCHDOG=1 at half the watchdog period for as long as the store
/// answers within it, so a coordinator whose store hangs is restarted.
/// Nothing happens when no `NOTIFY_SOCKET` is set.
fn tell_systemd(running: &app::Running) {
    if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "cannot tell systemd the coordinator is ready");
    }
    let Some(usec) = distdiag_common::systemd_watchdog_usec() else { return };
    let period = std::time::Duration::from_micros(usec / 2);
    let store = running.store();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let s = store.clone();
            let answered =
                tokio::time::timeout(period, tokio::task::spawn_blocking(move || s.stats())).await;
            if matches!(answered, Ok(Ok(_))) {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the store did not answer within the watchdog period; not telling systemd we are alive");
            }
        }
    });
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
