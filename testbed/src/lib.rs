//! The distdiag testbed and lab: a real N-node cluster on one machine
//! ([`testbed`]: network namespaces, cgroups, a database server and an agent
//! per node), private database servers on loopback ([`db`]), fault
//! campaigns recorded through a coordinator's API and their cross-validated
//! reports ([`campaign`], [`campaign_run`]), and the helpers the end-to-end
//! tests and the benchmark share: locating the built binaries, issuing
//! certificates, running a coordinator as a child process (so it can be
//! killed with SIGKILL) and configuring in-process agents.

// The testbed runs ip, nsenter, database servers, agents and the coordinator: programs are what it is made of.
#![allow(clippy::disallowed_methods)]
// Set-up helpers: a failed set-up step panics with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod campaign;
pub mod campaign_run;
pub mod db;
pub mod sim;
pub mod soak;
pub mod testbed;
pub mod tsdb;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distdiag_agent::config::Config as AgentConfig;
use distdiag_coordinator::tls::{self, CertPaths};

/// The directory of the package whose test is running. Cargo and nextest
/// set `CARGO_MANIFEST_DIR` when they run a test; `compiled` (its `env!`
/// value) is where the test was built. The two differ when a checkout at
/// another path reuses a shared target directory's build (cargo fingerprints
/// a path package by its place in the workspace, not its absolute path), and
/// a test must read its own checkout's files, not another's.
pub fn package_dir(compiled: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(compiled), PathBuf::from)
}

/// Directory of the workspace's built binaries (next to the test executable,
/// or `DISTDIAG_BIN_DIR`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DISTDIAG_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    // target/<profile>/deps/test-binary or target/<profile>/bench-binary
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_owned()
    } else {
        dir.to_owned()
    }
}

/// Path of a workspace binary; panics with instructions when it is not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (make test does)",
        p.display()
    );
    p
}

/// A free loopback TCP port and a free loopback UDP port.
pub fn free_ports() -> (SocketAddr, SocketAddr) {
    let t = TcpListener::bind("127.0.0.1:0").expect("tcp port");
    let u = UdpSocket::bind("127.0.0.1:0").expect("udp port");
    (t.local_addr().expect("addr"), u.local_addr().expect("addr"))
}

/// Creates a CA, a server certificate for 127.0.0.1/localhost, and one node
/// certificate per name, in `dir`.
pub fn make_certs(dir: &Path, nodes: &[&str]) -> CertPaths {
    let paths = CertPaths { dir: dir.to_owned() };
    tls::init_ca(&paths, "test").expect("ca");
    tls::issue_server(&paths, &["localhost".into(), "127.0.0.1".into()]).expect("server cert");
    for n in nodes {
        tls::issue_node(&paths, n).expect("node cert");
    }
    paths
}

/// Agent settings for tests: fast sampling, fast failure detection.
pub fn agent_config(
    node: &str,
    certs: &CertPaths,
    coordinator: SocketAddr,
    state: &Path,
    interval_ms: u32,
) -> AgentConfig {
    let mut cfg = AgentConfig {
        node: Some(node.to_owned()),
        interval_ms,
        state_dir: state.to_owned(),
        ..AgentConfig::default()
    };
    cfg.uplink.coordinator = coordinator.to_string();
    cfg.uplink.server_name = "localhost".into();
    cfg.uplink.ca_cert = certs.ca_cert();
    cfg.uplink.cert = certs.node_cert(node);
    cfg.uplink.key = certs.node_key(node);
    cfg.uplink.heartbeat_ms = 500;
    cfg.uplink.backoff_base_ms = 100;
    cfg.uplink.backoff_max_ms = 1000;
    cfg.uplink.connect_timeout_ms = 1000;
    cfg.fault.worker_exe = Some(bin("distdiag-agent"));
    cfg
}

/// A coordinator running as a child process.
pub struct Coordinator {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub api: SocketAddr,
    pub ingest: SocketAddr,
    pub log: PathBuf,
    extra: Vec<String>,
}

impl Coordinator {
    /// Starts `distdiag-coordinator` on the given data dir and ports; waits until `/health` answers.
    pub fn start(
        data_dir: &Path,
        api: SocketAddr,
        ingest: SocketAddr,
        extra: &[&str],
    ) -> Coordinator {
        let mut c = Coordinator {
            child: None,
            data_dir: data_dir.to_owned(),
            api,
            ingest,
            log: data_dir.join("coordinator.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin("distdiag-coordinator"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-listen")
            .arg(self.api.to_string())
            .arg("--ingest-listen")
            .arg(self.ingest.to_string())
            .args(&self.extra)
            .env("RUST_LOG", "info,distdiag_coordinator=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn coordinator");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.api).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("coordinator exited with {status}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("coordinator did not come up; log:\n{}", self.log_text());
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        c.wait().expect("wait")
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill it first");
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("token")).expect("token").trim().to_owned()
    }

    /// The typed API client of this coordinator, with its token.
    pub fn client(&self) -> distdiag_api::Client {
        distdiag_api::Client::new(&self.url("")).with_token(self.token())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether every prerequisite of every test must be there
/// (`DISTDIAG_REQUIRE_ALL=1`, which `make test` sets).
pub fn require_all() -> bool {
    std::env::var_os("DISTDIAG_REQUIRE_ALL").is_some_and(|v| v == "1")
}

/// A test cannot run here (no root, no cgroup v1, no database server...).
/// Under `make test` that is a failure, so CI is never green for want of a
/// prerequisite; in a quick `cargo nextest run` on a plain checkout the
/// test says what it skips and returns.
#[track_caller]
pub fn skip(why: &str) {
    assert!(!require_all(), "a prerequisite is missing (DISTDIAG_REQUIRE_ALL=1): {why}");
    println!("SKIP: {why}");
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

/// Polls an async check until it holds or `timeout` passes.
pub async fn eventually_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f().await
}

/// Calls `f` until its value satisfies `done` or `timeout` passes; the
/// last value either way (`Err` when it never did).
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    mut f: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let v = f().await;
        if done(&v) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stressor processes (`stress-worker`) whose parent is `parent`.
pub fn stressors_of(parent: u32) -> Vec<u32> {
    let me = parent.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.iter().any(|a| *a == b"stress-worker")
                && args.windows(2).any(|w| w[0] == b"--parent" && w[1] == me.as_bytes())
        })
        .collect()
}
