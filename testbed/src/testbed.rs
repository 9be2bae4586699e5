//! A real N-node cluster on one machine. Each node is a network namespace
//! (a veth pair to a host bridge, its own address) plus a cgroup v1 group
//! (CPU quota, memory limit) that runs a database server and a
//! `distdiag-agent`; the coordinator runs on the host, where the bridge has
//! the first address of the subnet. Database choices: MariaDB standalone on
//! every node, a MariaDB Galera cluster across the nodes, seekdb on every
//! node, or none. A light OLTP workload over every database runs
//! throughout.
//!
//! Everything the testbed creates is written to `<dir>/testbed.json` before
//! it is created, so [`teardown`] removes it completely (processes,
//! cgroups, namespaces, bridge, files) from a partial bring-up, from a
//! crashed run, or from another process (`distdiag-testbed down`).
//! Processes enter a node's namespace with `nsenter --net` (not `ip netns
//! exec`, which remounts /sys and would hide the cgroup hierarchies).

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use distdiag_api::nodes::NodeKind;
use distdiag_api::workload::{Options as WorkloadOptions, Phase, RandType, WorkloadRequest};
use distdiag_api::Client;
use serde::{Deserialize, Serialize};

use crate::{agent_config, bin, make_certs};

const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const GALERA: &str = "/usr/lib/galera/libgalera_smm.so";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    None,
    Mariadb,
    Galera,
    Seekdb,
}

impl std::str::FromStr for DbKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(DbKind::None),
            "mariadb" => Ok(DbKind::Mariadb),
            "galera" => Ok(DbKind::Galera),
            "seekdb" => Ok(DbKind::Seekdb),
            other => Err(format!("database {other:?} is not one of none, mariadb, galera, seekdb")),
        }
    }
}

/// How to build the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// 1 ..= 5 nodes.
    pub nodes: usize,
    pub db: DbKind,
    /// Working directory (data, logs, certificates, state file).
    pub dir: PathBuf,
    /// Third octet of the subnet 10.231.<net>.0/24, and part of every name,
    /// so two testbeds can coexist.
    pub net: u8,
    /// CPU quota per node in percent of one core.
    pub cpu_percent: u32,
    /// Memory limit per node (MiB).
    pub memory_mb: u64,
    /// Agent sampling interval.
    pub interval_ms: u32,
    /// REST API address of the coordinator (port 0: a free one).
    pub api: SocketAddr,
    /// Threads of the background OLTP workload per database (0: none).
    pub workload_threads: usize,
    /// Rows per table of that workload (two tables).
    pub table_size: u64,
    /// More coordinator configuration (TOML sections), e.g. `[faults]`.
    pub coordinator_toml: String,
}

impl Options {
    pub fn new(dir: &Path, db: DbKind) -> Options {
        Options {
            nodes: 3,
            db,
            dir: dir.to_owned(),
            net: 1,
            cpu_percent: 60,
            memory_mb: if db == DbKind::Seekdb { 3072 } else { 1536 },
            interval_ms: 1000,
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            workload_threads: 1,
            table_size: 20_000,
            coordinator_toml: String::new(),
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=5).contains(&self.nodes) {
            bail!("nodes = {} is outside 1..=5", self.nodes);
        }
        if self.db == DbKind::Galera && self.nodes < 2 {
            bail!("a Galera cluster needs at least two nodes");
        }
        if !(10..=400).contains(&self.cpu_percent) {
            bail!("cpu_percent = {} is outside 10..=400", self.cpu_percent);
        }
        if self.memory_mb < 256 {
            bail!("memory_mb = {} is below 256", self.memory_mb);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub netns: String,
    pub veth: String,
    pub addr: Ipv4Addr,
    /// `<parent>/<name>` under each cgroup v1 controller.
    pub cgroup: String,
    pub db_port: Option<u16>,
    pub database: Option<String>,
}

/// What exists, written before each thing is created.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub dir: PathBuf,
    pub db: Option<DbKind>,
    pub bridge: Option<String>,
    pub bridge_addr: Option<Ipv4Addr>,
    pub cgroup_parent: Option<String>,
    pub nodes: Vec<NodeState>,
    /// (what, pid) of every process started, in start order.
    pub pids: Vec<(String, u32)>,
    pub api: Option<SocketAddr>,
    pub ingest: Option<SocketAddr>,
    pub workload: Option<String>,
    /// The process that owns the testbed (`distdiag-testbed up`).
    pub owner: Option<u32>,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("testbed.json")
    }

    pub fn load(dir: &Path) -> Result<State> {
        let p = State::path(dir);
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("no testbed state at {}", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a testbed state", p.display()))
    }

    pub fn save(&self) -> Result<()> {
        let p = State::path(&self.dir);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    }
}

/// Runs a program with an argument vector; a failure carries its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cg_dir(controller: &str, path: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(controller).join(path)
}

/// Moves a process (all its threads) into a node's cgroups.
fn enter_cgroup(path: &str, pid: u32) -> Result<()> {
    for c in CONTROLLERS {
        std::fs::write(cg_dir(c, path).join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("cannot move {pid} into {c}:{path}"))?;
    }
    Ok(())
}

fn pids_in(path: &str) -> Vec<u32> {
    let mut all: Vec<u32> = CONTROLLERS
        .iter()
        .flat_map(|c| {
            std::fs::read_to_string(cg_dir(c, path).join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL.
fn stop_pids(pids: &[u32], grace: Duration) {
    for &p in pids {
        signal(p, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        signal(p, rustix::process::Signal::KILL);
    }
    // Reap our own children (others answer ECHILD).
    for &p in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(p as i32) {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG),
                Ok(None)
            ) && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Removes everything `state` records; returns what could not be removed.
/// Safe to run twice and on a partial bring-up.
pub fn teardown(state: &State, keep_files: bool) -> Vec<String> {
    let mut problems = Vec::new();
    // Agents and the coordinator first (agents revert their faults on
    // SIGTERM), then database servers, then whatever is left in a node's
    // cgroup (stressors of a killed agent).
    let me = std::process::id();
    // A pid from an old state file may belong to someone else by now.
    let ours = |pid: u32| {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        ["distdiag-coordinator", "distdiag-agent", "mariadbd", "seekdb"]
            .iter()
            .any(|p| cmd.contains(p))
    };
    let pids = |db: bool| -> Vec<u32> {
        state
            .pids
            .iter()
            .filter(|(what, p)| *p != me && what.starts_with("db") == db && ours(*p))
            .map(|(_, p)| *p)
            .collect()
    };
    stop_pids(&pids(false), Duration::from_secs(8));
    stop_pids(&pids(true), Duration::from_secs(15));
    for n in &state.nodes {
        let left = pids_in(&n.cgroup);
        stop_pids(&left, Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pids_in(&n.cgroup).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for c in CONTROLLERS {
            let d = cg_dir(c, &n.cgroup);
            if d.exists() {
                if let Err(e) = std::fs::remove_dir(&d) {
                    problems.push(format!("cgroup {}: {e}", d.display()));
                }
            }
        }
    }
    if let Some(parent) = &state.cgroup_parent {
        for c in CONTROLLERS {
            let d = cg_dir(c, parent);
            if d.exists() {
                if let Err(e) = std::fs::remove_dir(&d) {
                    problems.push(format!("cgroup {}: {e}", d.display()));
                }
            }
        }
    }
    let existing = run("ip", &["netns", "list"]).unwrap_or_default();
    for n in &state.nodes {
        if existing.split_whitespace().any(|w| w == n.netns) {
            if let Err(e) = run("ip", &["netns", "del", &n.netns]) {
                problems.push(e.to_string());
            }
        }
        // The host end of the veth normally goes with the namespace.
        if Path::new("/sys/class/net").join(&n.veth).exists() {
            let _ = run("ip", &["link", "del", &n.veth]);
        }
    }
    if let Some(br) = &state.bridge {
        if Path::new("/sys/class/net").join(br).exists() {
            if let Err(e) = run("ip", &["link", "del", br]) {
                problems.push(e.to_string());
            }
        }
    }
    if !keep_files && state.dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&state.dir) {
            problems.push(format!("{}: {e}", state.dir.display()));
        }
    }
    problems
}

/// A running testbed; dropping it tears everything down.
pub struct Testbed {
    pub state: State,
    pub token: String,
    keep_files: bool,
    torn_down: bool,
}

/// Why a testbed with `db` cannot come up on this machine, if it cannot:
/// not root, no cgroup v1 cpu hierarchy, the database server missing.
pub fn prerequisites(db: DbKind) -> std::result::Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root (namespaces and cgroups)".into());
    }
    if !Path::new("/sys/fs/cgroup/cpu/cgroup.procs").exists() {
        return Err("no cgroup v1 cpu hierarchy".into());
    }
    let kind = match db {
        DbKind::Mariadb | DbKind::Galera => Some(distdiag_workload::db::DialectKind::Mysql),
        DbKind::Seekdb => Some(distdiag_workload::db::DialectKind::Oceanbase),
        DbKind::None => None,
    };
    match kind.and_then(crate::db::missing) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

impl Testbed {
    /// Brings the cluster up; on any failure, removes what it had made.
    pub async fn up(opts: &Options) -> Result<Testbed> {
        opts.validate()?;
        preflight(opts)?;
        std::fs::create_dir_all(&opts.dir)?;
        let mut state =
            State { dir: opts.dir.canonicalize()?, db: Some(opts.db), ..State::default() };
        match build(opts, &mut state).await {
            Ok(token) => Ok(Testbed { state, token, keep_files: false, torn_down: false }),
            Err(e) => {
                let problems = teardown(&state, true);
                Err(e.context(if problems.is_empty() { format!("testbed bring-up failed; everything it made is removed but its directory {} (logs)", state.dir.display()) } else { format!("testbed bring-up failed; could not remove: {}", problems.join("; ")) }))
            }
        }
    }

    /// Keep the working directory (logs, data) after teardown.
    pub fn keep_files(&mut self, keep: bool) {
        self.keep_files = keep;
    }

    pub fn api(&self) -> SocketAddr {
        self.state.api.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api())
    }

    /// The typed API client of the testbed's coordinator, with its token.
    pub fn client(&self) -> Client {
        Client::new(&self.url("")).with_token(self.token.clone())
    }

    pub fn node_names(&self) -> Vec<String> {
        self.state.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn coordinator_log(&self) -> String {
        std::fs::read_to_string(self.state.dir.join("coordinator.log")).unwrap_or_default()
    }

    /// Tears down now; returns what could not be removed.
    pub fn down(mut self) -> Vec<String> {
        self.torn_down = true;
        teardown(&self.state, self.keep_files)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if !self.torn_down {
            let problems = teardown(&self.state, self.keep_files);
            if !problems.is_empty() {
                eprintln!("testbed teardown left: {}", problems.join("; "));
            }
        }
    }
}

/// Checks what the testbed needs before it creates anything.
fn preflight(opts: &Options) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the testbed creates namespaces and cgroups: run it as root");
    }
    for c in CONTROLLERS {
        if !Path::new(CGROUP_ROOT).join(c).join("cgroup.procs").exists() {
            bail!("no cgroup v1 {c} hierarchy under {CGROUP_ROOT}");
        }
    }
    for p in ["ip", "nsenter"] {
        run("which", &[p]).with_context(|| format!("{p} is missing (iproute2, util-linux)"))?;
    }
    match opts.db {
        DbKind::Mariadb | DbKind::Galera => {
            run("which", &["mariadbd"])
                .context("mariadbd is missing (scripts/install-deps.sh installs mariadb-server)")?;
            if opts.db == DbKind::Galera && !Path::new(GALERA).exists() {
                bail!("{GALERA} is missing (scripts/install-deps.sh installs galera-4)");
            }
        }
        DbKind::Seekdb => {
            crate::db::seekdb_binary();
        }
        DbKind::None => {}
    }
    let existing = run("ip", &["netns", "list"])?;
    let prefix = format!("ddtb{}-", opts.net);
    if existing.split_whitespace().any(|w| w.starts_with(&prefix)) {
        bail!("namespaces {prefix}* exist already: another testbed uses net {} (distdiag-testbed down --dir DIR removes one)", opts.net);
    }
    Ok(())
}

fn free_udp(ip: Ipv4Addr) -> Result<SocketAddr> {
    Ok(UdpSocket::bind((ip, 0))?.local_addr()?)
}

fn free_tcp(addr: SocketAddr) -> Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    Ok(std::net::TcpListener::bind(addr)?.local_addr()?)
}

/// Spawns `args` inside a node's network namespace and cgroup, output to `log`.
fn spawn_in(
    state: &mut State,
    what: &str,
    node: &NodeState,
    args: &[String],
    log: &Path,
) -> Result<u32> {
    let log = std::fs::File::create(log)?;
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", node.netns))
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let pid = child.id();
    state.pids.push((what.to_owned(), pid));
    state.save()?;
    // nsenter execs the program: the pid is the program's. Dropping the
    // handle neither kills nor waits; teardown stops it by pid.
    drop(child);
    enter_cgroup(&node.cgroup, pid)?;
    Ok(pid)
}

async fn build(opts: &Options, state: &mut State) -> Result<String> {
    let net = opts.net;
    let host_ip = Ipv4Addr::new(10, 231, net, 1);
    let bridge = format!("ddtb{net}");
    state.bridge = Some(bridge.clone());
    state.bridge_addr = Some(host_ip);
    state.save()?;
    run("ip", &["link", "add", &bridge, "type", "bridge"])?;
    run("ip", &["addr", "add", &format!("{host_ip}/24"), "dev", &bridge])?;
    run("ip", &["link", "set", &bridge, "up"])?;

    let parent = format!("distdiag-tb{net}");
    state.cgroup_parent = Some(parent.clone());
    for i in 1..=opts.nodes {
        let name = format!("n{i}");
        let node = NodeState {
            name: name.clone(),
            netns: format!("ddtb{net}-{name}"),
            veth: format!("ddtb{net}v{i}"),
            addr: Ipv4Addr::new(10, 231, net, 10 + i as u8),
            cgroup: format!("{parent}/{name}"),
            db_port: None,
            database: None,
        };
        state.nodes.push(node.clone());
        state.save()?;
        run("ip", &["netns", "add", &node.netns])?;
        run(
            "ip",
            &[
                "link",
                "add",
                &node.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ],
        )?;
        run("ip", &["link", "set", &node.veth, "master", &bridge, "up"])?;
        run(
            "ip",
            &["-n", &node.netns, "addr", "add", &format!("{}/24", node.addr), "dev", "eth0"],
        )?;
        run("ip", &["-n", &node.netns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &node.netns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", &node.netns, "route", "add", "default", "via", &host_ip.to_string()])?;
        for c in CONTROLLERS {
            std::fs::create_dir_all(cg_dir(c, &node.cgroup))
                .with_context(|| format!("cgroup {c}:{}", node.cgroup))?;
        }
        std::fs::write(cg_dir("cpu", &node.cgroup).join("cpu.cfs_period_us"), "100000")?;
        std::fs::write(
            cg_dir("cpu", &node.cgroup).join("cpu.cfs_quota_us"),
            (opts.cpu_percent * 1000).to_string(),
        )?;
        std::fs::write(
            cg_dir("memory", &node.cgroup).join("memory.limit_in_bytes"),
            (opts.memory_mb << 20).to_string(),
        )?;
        std::fs::create_dir_all(state.dir.join(&name))?;
    }

    start_databases(opts, state).await?;

    // Coordinator on the host: API on loopback, QUIC on the bridge address.
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let coord_dir = state.dir.join("coordinator");
    std::fs::create_dir_all(&coord_dir)?;
    let certs = make_certs(&coord_dir.join("certs"), &name_refs);
    let api = free_tcp(opts.api)?;
    let ingest = free_udp(host_ip)?;
    state.api = Some(api);
    state.ingest = Some(ingest);
    let mut cfg = String::from("[probe]\ninterval_ms = 1000\n\n");
    for n in &state.nodes {
        if let (Some(port), Some(db)) = (n.db_port, &n.database) {
            let dialect = if opts.db == DbKind::Seekdb { "oceanbase" } else { "mysql" };
            cfg.push_str(&format!("[[databases]]\nname = \"{db}\"\ndialect = \"{dialect}\"\nhost = \"{}\"\nport = {port}\nuser = \"root\"\nschema = \"distdiag\"\nhost_node = \"{}\"\n\n", n.addr, n.name));
        }
    }
    cfg.push_str(&opts.coordinator_toml);
    let cfg_path = state.dir.join("coordinator.toml");
    std::fs::write(&cfg_path, &cfg)?;
    let log = std::fs::File::create(state.dir.join("coordinator.log"))?;
    let child = Command::new(bin("distdiag-coordinator"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("--data-dir")
        .arg(&coord_dir)
        .arg("--api-listen")
        .arg(api.to_string())
        .arg("--ingest-listen")
        .arg(ingest.to_string())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start distdiag-coordinator")?;
    let pid = child.id();
    state.pids.push(("coordinator".into(), pid));
    state.save()?;
    drop(child);
    wait_for(Duration::from_secs(30), "the coordinator's API", || {
        TcpStream::connect(api).is_ok() || !alive(pid)
    })?;
    if !alive(pid) {
        bail!(
            "the coordinator exited while starting: {}",
            std::fs::read_to_string(state.dir.join("coordinator.log"))
                .unwrap_or_default()
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let token = std::fs::read_to_string(coord_dir.join("token"))?.trim().to_owned();

    // One agent per node, in the node's namespace and cgroup.
    for n in state.nodes.clone() {
        let ndir = state.dir.join(&n.name);
        let mut a =
            agent_config(&n.name, &certs, ingest, &ndir.join("agent-state"), opts.interval_ms);
        a.collect.cgroup_path = Some(n.cgroup.clone());
        a.fault.cgroup_path = Some(n.cgroup.clone());
        a.fault.disk_dir = Some(ndir.join("disk"));
        // Every node's server runs on this one host: found by name, each
        // agent would sum all of them (the same `proc.*` on every node).
        // A pid file points each agent at its own node's server.
        if let Some((_, pid)) =
            state.pids.iter().find(|(what, _)| *what == format!("db-{}", n.name))
        {
            let pid_file = ndir.join("db.pid");
            std::fs::write(&pid_file, format!("{pid}\n"))?;
            a.collect.process_pid_file = Some(pid_file);
        }
        let path = ndir.join("agent.toml");
        std::fs::write(&path, toml::to_string(&a)?)?;
        let args = vec![
            bin("distdiag-agent").display().to_string(),
            "--config".into(),
            path.display().to_string(),
            "run".into(),
        ];
        spawn_in(state, &format!("agent-{}", n.name), &n, &args, &ndir.join("agent.log"))?;
    }
    let client = Client::new(&format!("http://{api}")).with_token(token.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = client.nodes().await?.nodes;
        let up: Vec<&str> = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Agent && n.connected)
            .map(|n| n.node.as_str())
            .collect();
        if up.len() == state.nodes.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} agents connected within 30 s: {}",
                up.len(),
                state.nodes.len(),
                up.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    if opts.workload_threads > 0 && opts.db != DbKind::None {
        state.workload = Some(start_workload(&client, opts, state).await?);
        state.save()?;
    }
    Ok(token)
}

fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} did not come up within {timeout:?}")
}

/// A coordinator target for root on a server at `addr:port` (the testbed's
/// servers let root in from the host without a password).
pub fn sql_target(
    addr: Ipv4Addr,
    port: u16,
    dialect: distdiag_workload::db::DialectKind,
) -> distdiag_workload::db::DbTarget {
    distdiag_workload::db::DbTarget {
        name: "testbed".into(),
        dialect,
        host: addr.to_string(),
        port,
        user: "root".into(),
        password: None,
        password_env: None,
        schema: "distdiag".into(),
        host_node: None,
    }
}

/// Waits until a server in a node's namespace answers MySQL from the host.
async fn wait_sql(
    addr: Ipv4Addr,
    port: u16,
    timeout: Duration,
    what: &str,
    pid: u32,
) -> Result<()> {
    let target = sql_target(addr, port, distdiag_workload::db::DialectKind::Mysql);
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        if !alive(pid) {
            bail!("{what} exited while starting");
        }
        match target.connect(false, Duration::from_secs(2)).await {
            Ok(c) => {
                let _ = c.disconnect().await;
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("{what} at {addr}:{port} did not answer within {timeout:?}: {last}")
}

fn mariadb_args(node: &NodeState, dir: &Path, port: u16) -> Vec<String> {
    [
        "mariadbd".to_owned(),
        "--no-defaults".into(),
        format!("--datadir={}", dir.join("data").display()),
        format!("--port={port}"),
        format!("--bind-address={}", node.addr),
        format!("--socket={}", dir.join("mysql.sock").display()),
        format!("--pid-file={}", dir.join("mysql.pid").display()),
        "--user=root".into(),
        "--skip-name-resolve".into(),
        "--skip-log-bin".into(),
        "--innodb-buffer-pool-size=128M".into(),
        "--innodb-log-file-size=48M".into(),
        "--max-connections=300".into(),
        "--innodb-lock-wait-timeout=5".into(),
        "--performance-schema=ON".into(),
    ]
    .into()
}

fn install_mariadb(dir: &Path, user: &str) -> Result<()> {
    run(
        "mariadb-install-db",
        &[
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            &format!("--user={user}"),
            &format!("--datadir={}", dir.join("data").display()),
        ],
    )
    .map(|_| ())
}

/// Makes `dir` and its parents up to the testbed's directory traversable
/// and gives `dir` to `user`.
fn hand_over(state: &State, dir: &Path, user: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Some(dir);
    while let Some(d) = p {
        if !d.starts_with(&state.dir) {
            break;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        p = d.parent();
    }
    run("chown", &["-R", &format!("{user}:{user}"), &dir.display().to_string()]).map(|_| ())
}

/// Lets root connect over TCP from the host (the coordinator). Constant
/// SQL through the server's local socket.
fn open_root(dir: &Path) -> Result<()> {
    let sock = dir.join("mysql.sock");
    run("mariadb", &["--no-defaults", &format!("--socket={}", sock.display()), "-uroot", "-e", "CREATE USER IF NOT EXISTS 'root'@'%'; GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS distdiag"]).map(|_| ())
}

async fn start_databases(opts: &Options, state: &mut State) -> Result<()> {
    let nodes = state.nodes.clone();
    match opts.db {
        DbKind::None => {}
        DbKind::Mariadb | DbKind::Galera => {
            let galera = opts.db == DbKind::Galera;
            let what = if galera { "Galera node" } else { "MariaDB on" };
            let members: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
            let address = format!("gcomm://{}", members.join(","));
            for (i, n) in nodes.iter().enumerate() {
                let what = format!("{what} {}", n.name);
                let dir = state.dir.join(&n.name).join("mariadb");
                std::fs::create_dir_all(&dir)?;
                let mut args = mariadb_args(n, &dir, 3306);
                if galera {
                    // As user mysql: the joiner's rsync daemon, started by
                    // the server, would otherwise drop to nobody and be
                    // refused the data directory.
                    hand_over(state, &dir, "mysql")?;
                    install_mariadb(&dir, "mysql")?;
                    args.retain(|a| a != "--skip-log-bin" && a != "--user=root");
                    args.extend([
                        "--user=mysql".to_owned(),
                        "--wsrep-on=ON".into(),
                        format!("--wsrep-provider={GALERA}"),
                        format!("--wsrep-cluster-address={address}"),
                        "--wsrep-cluster-name=distdiag".into(),
                        format!("--wsrep-node-address={}", n.addr),
                        format!("--wsrep-node-name={}", n.name),
                        "--wsrep-sst-method=rsync".into(),
                        "--binlog-format=ROW".into(),
                        "--default-storage-engine=InnoDB".into(),
                        "--innodb-autoinc-lock-mode=2".into(),
                    ]);
                    if i == 0 {
                        args.push("--wsrep-new-cluster".into());
                    }
                } else {
                    install_mariadb(&dir, "root")?;
                }
                let pid =
                    spawn_in(state, &format!("db-{}", n.name), n, &args, &dir.join("mariadb.log"))?;
                let sock = dir.join("mysql.sock");
                let start_timeout = Duration::from_secs(if galera { 120 } else { 60 });
                wait_for(start_timeout, &what, || sock.exists() && alive(pid))?;
                // Galera joiners receive the grants with their state transfer.
                if !galera || i == 0 {
                    // The socket file appears before the server accepts.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while let Err(e) = open_root(&dir) {
                        if Instant::now() > deadline || !alive(pid) {
                            return Err(e.context(what));
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
                wait_sql(n.addr, 3306, start_timeout, &what, pid).await?;
                set_db(state, &n.name, 3306);
            }
        }
        DbKind::Seekdb => {
            let exe = crate::db::seekdb_binary();
            for n in &nodes {
                let dir = state.dir.join(&n.name).join("seekdb");
                std::fs::create_dir_all(&dir)?;
                let args: Vec<String> = vec![
                    exe.display().to_string(),
                    "--nodaemon".into(),
                    "--port".into(),
                    "2881".into(),
                    "--base-dir".into(),
                    dir.join("base").display().to_string(),
                    "--parameter".into(),
                    "datafile_size=1G".into(),
                    "--parameter".into(),
                    "log_disk_size=2G".into(),
                ];
                let pid =
                    spawn_in(state, &format!("db-{}", n.name), n, &args, &dir.join("seekdb.out"))?;
                wait_sql(
                    n.addr,
                    2881,
                    Duration::from_secs(180),
                    &format!("seekdb on {}", n.name),
                    pid,
                )
                .await?;
                set_db(state, &n.name, 2881);
            }
        }
    }
    Ok(())
}

fn set_db(state: &mut State, node: &str, port: u16) {
    if let Some(n) = state.nodes.iter_mut().find(|n| n.name == node) {
        n.db_port = Some(port);
        n.database = Some(format!("db-{node}"));
    }
    let _ = state.save();
}

/// Prepares OLTP tables on every database (once on Galera, which
/// replicates them) and starts a run over all of them until stopped.
async fn start_workload(client: &Client, opts: &Options, state: &State) -> Result<String> {
    let dbs: Vec<String> = state.nodes.iter().filter_map(|n| n.database.clone()).collect();
    let prepare_on: Vec<String> =
        if opts.db == DbKind::Galera { dbs[..1].to_vec() } else { dbs.clone() };
    // One statement at a time, as an application (and sysbench) sends
    // them: the background load the faults are measured against, the same
    // in every recording whatever the workload client's default.
    let options = WorkloadOptions {
        tables: 2,
        table_size: opts.table_size,
        rand_type: RandType::Uniform,
        pipeline: false,
        ..WorkloadOptions::default()
    };
    let req = WorkloadRequest {
        kind: Some("oltp_read_write".into()),
        options: Some(WorkloadOptions { databases: prepare_on, ..options.clone() }),
        ..WorkloadRequest::default()
    };
    let id = client.prepare_workload(&req).await.context("preparing the workload")?.workload_id;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = client.workload(&id).await?;
        match r.phase {
            Phase::Preparing if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Phase::Prepared => break,
            other => {
                bail!("preparing the workload failed ({other:?}): {}", r.error.unwrap_or_default())
            }
        }
    }
    let req = WorkloadRequest {
        kind: Some("oltp_read_write".into()),
        threads: Some((opts.workload_threads * dbs.len()) as i64),
        options: Some(WorkloadOptions { databases: dbs, ..options }),
        ..WorkloadRequest::default()
    };
    Ok(client.start_workload(&req).await.context("starting the workload")?.workload_id)
}
