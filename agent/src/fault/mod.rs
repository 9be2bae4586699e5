//! Fault injection on this host, safe by construction.
//!
//! Every fault is written to the [journal] (fsynced) before anything is
//! changed, carries a mandatory deadline that this engine enforces itself,
//! and is reverted by whoever finds it in the journal later: a normal revert,
//! the deadline, the dead-man switch, SIGTERM, or the next start after a
//! crash. Stressors are separate processes (this binary's `stress-worker`
//! mode) in a process group of their own that die with the agent
//! (PDEATHSIG). Dispatch over [`FaultSpec`] is an exhaustive `match`; adding a
//! fault is one file here plus its arm.

mod cpu;
mod disk;
pub mod journal;
mod memory;
pub mod network;

pub use network::has_net_admin;
mod nfqueue;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use distdiag_common::fault::{FaultSpec, MemorySize};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use journal::{Entry, Journal};

/// Fault settings of the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Whether this agent accepts faults at all.
    pub enabled: bool,
    /// Longest deadline a fault may have, from the moment it is applied.
    pub max_duration_ms: u64,
    /// Faults are reverted when the coordinator has been silent this long.
    pub deadman_grace_ms: u64,
    /// memory_stress never leaves less than this much memory available
    /// (on the host, and in `cgroup_path` when that has a memory limit).
    pub memory_margin_bytes: u64,
    /// disk_stress never leaves less than this much free on the file
    /// system it writes to (its files grow to `workers × bytes`).
    pub disk_margin_bytes: u64,
    /// Where disk_stress writes when the request names no path
    /// (default: `<state_dir>/fault-disk`).
    pub disk_dir: Option<PathBuf>,
    /// A cgroup for stressor processes, relative to the cgroup root — e.g.
    /// the database's, `system.slice/mariadb.service`. On cgroup v2 it is one
    /// directory; on v1 the process joins it in every hierarchy (cpu,
    /// cpuacct, memory, blkio, ...) where that path exists.
    pub cgroup_path: Option<String>,
    /// Where cgroups are mounted.
    pub cgroup_root: PathBuf,
    /// The executable started as `stress-worker` (default: this program).
    #[serde(skip)]
    pub worker_exe: Option<PathBuf>,
    /// How `network_delay` is done: `auto` (netem where the kernel has it,
    /// else NFQUEUE), `netem` or `nfqueue`.
    pub delay_backend: DelayBackend,
    /// The interface a network fault acts on when the request names none
    /// (default: the default route's). A one-host set-up whose database is
    /// reached over loopback (`make demo`) sets `lo`: on the default
    /// route's interface such a fault would change nothing it can see.
    pub network_interface: Option<String>,
    /// The coordinator's address: network faults never touch this traffic.
    #[serde(skip)]
    pub control: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DelayBackend {
    Auto,
    Netem,
    Nfqueue,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            enabled: true,
            max_duration_ms: 3_600_000,
            deadman_grace_ms: 30_000,
            memory_margin_bytes: 256 << 20,
            disk_margin_bytes: 1 << 30,
            disk_dir: None,
            cgroup_path: None,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            worker_exe: None,
            delay_backend: DelayBackend::Auto,
            network_interface: None,
            control: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("invalid fault: {0}")]
    Invalid(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("no backend for {0} on this agent")]
    Unsupported(String),
    #[error("fault {0:?} is already active")]
    Duplicate(String),
    #[error("fault journal: {0}")]
    Journal(String),
    #[error("cannot start the stressor: {0}")]
    Spawn(String),
}

/// What a fault starts and creates.
pub(crate) struct Plan {
    /// Arguments of each stressor process after `stress-worker --parent PID`.
    workers: Vec<Vec<String>>,
    paths: Vec<PathBuf>,
    /// A root qdisc of this agent: (interface, tc argument vectors).
    qdisc: Option<(String, Vec<Vec<String>>)>,
    /// A delay or a loss: the queue, what is done with its packets, its rules.
    queue: Option<QueuePlan>,
}

/// The queue number is chosen when the fault starts: the first from
/// [`nfqueue::QUEUE_BASE`] that this engine does not use and no other
/// program in the network namespace holds.
struct QueuePlan {
    action: nfqueue::Action,
    /// The chain as the journal records it ([`network::recorded_chain`]).
    recorded: String,
    /// Built for queue [`nfqueue::QUEUE_BASE`]; see [`network::with_queue`].
    rules: Vec<Vec<String>>,
}

struct Active {
    entry: Entry,
    children: Vec<Child>,
    queue: Option<u16>,
    queue_thread: Option<nfqueue::Queue>,
}

/// A fault as reported to the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveFault {
    pub id: String,
    pub spec: FaultSpec,
    pub deadline_ms: i64,
}

pub struct FaultEngine {
    cfg: FaultConfig,
    journal: Journal,
    exe: PathBuf,
    disk_root: PathBuf,
    proc_root: PathBuf,
    net_backends: Vec<&'static str>,
    /// Fault types this engine cannot apply, with why.
    missing: BTreeMap<&'static str, String>,
    /// Delay with netem rather than NFQUEUE.
    netem: bool,
    active: BTreeMap<String, Active>,
}

/// Fault ids name journal files: 1-64 characters of `[A-Za-z0-9._-]`.
fn validate_id(id: &str) -> Result<(), FaultError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(FaultError::Invalid(format!(
            "fault id {id:?} must be 1-64 characters of [A-Za-z0-9._-]"
        )))
    }
}

/// Whether the dead-man switch should fire: faults are active and the
/// coordinator has been silent for longer than the grace period.
pub fn deadman_due(last_contact_ms: Option<i64>, now_ms: i64, grace_ms: u64) -> bool {
    last_contact_ms.is_none_or(|t| now_ms.saturating_sub(t) > grace_ms as i64)
}

/// Processes of group `pgid` that are stressors of this program, found in procfs.
fn stressors_in_group(proc_root: &Path, pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat =
                std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).unwrap_or_default();
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_ascii_whitespace().nth(2)?.parse::<i32>().ok());
            let cmd = std::fs::read(proc_root.join(format!("{pid}/cmdline"))).unwrap_or_default();
            pgrp == Some(pgid) && cmd.split(|b| *b == 0).any(|a| a == b"stress-worker")
        })
        .collect()
}

fn remove_path(p: &Path) {
    let res = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
    match res {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::error!(path = %p.display(), %error, "cannot remove a fault's file; remove it by hand")
        }
    }
}

/// Removes the network changes an entry records; errors are logged, the
/// rest is still attempted.
fn remove_network(e: &Entry) {
    for t in &e.nft_tables {
        if let Err(error) = network::remove_table(t) {
            tracing::error!(fault = %e.id, table = %t, %error, "cannot delete a fault's nftables table; delete it by hand");
        }
    }
    for c in &e.iptables {
        if let Err(error) = network::remove_queue_rules(c) {
            tracing::error!(fault = %e.id, chain = %c, %error, "cannot delete a fault's iptables chain; delete it by hand");
        }
    }
    for i in &e.qdiscs {
        if let Err(error) = network::remove_qdisc(i) {
            tracing::error!(fault = %e.id, iface = %i, %error, "cannot delete a fault's qdisc; delete it by hand");
        }
    }
}

/// Kills leftover stressors of a journal entry and waits until they are gone.
fn kill_leftovers(proc_root: &Path, pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = stressors_in_group(proc_root, pgid);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Some(p) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        if Instant::now() > deadline {
            tracing::error!(pgid, "stressor processes survive SIGKILL");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl FaultEngine {
    /// Opens the journal under `state_dir` and reverts whatever an earlier
    /// run left in it; returns the engine and the ids it reverted.
    pub fn open(
        cfg: FaultConfig,
        state_dir: &Path,
        proc_root: &Path,
    ) -> Result<(Self, Vec<String>), FaultError> {
        let journal = Journal::open(&state_dir.join("faults"))?;
        let exe = match &cfg.worker_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| FaultError::Spawn(e.to_string()))?,
        };
        let disk_root = cfg.disk_dir.clone().unwrap_or_else(|| state_dir.join("fault-disk"));
        let mut reverted = Vec::new();
        for e in journal.entries()? {
            tracing::warn!(fault = %e.id, kind = e.spec.kind(), "reverting a fault left by an earlier run");
            if let Some(pg) = e.pgid {
                kill_leftovers(proc_root, pg);
            }
            e.paths.iter().for_each(|p| remove_path(p));
            remove_network(&e);
            journal.remove(&e.id)?;
            reverted.push(e.id);
        }
        // probe() says of each network fault whether it works; network_delay
        // there is the NFQUEUE backend, netem is tried on its own.
        let probed = if cfg.enabled { network::probe(&exe) } else { Vec::new() };
        let works = |k: &str| probed.iter().any(|(kind, r)| *kind == k && r.is_ok());
        let nfqueue = works("network_delay");
        let netem = cfg.delay_backend != DelayBackend::Nfqueue
            && works("network_bandwidth")
            && network::netem_available(&exe);
        let delay = match cfg.delay_backend {
            DelayBackend::Netem => netem,
            DelayBackend::Nfqueue => nfqueue,
            DelayBackend::Auto => netem || nfqueue,
        };
        if cfg.delay_backend == DelayBackend::Netem && !netem {
            tracing::warn!("fault.delay_backend = netem, but this kernel has no sch_netem; network_delay is unavailable");
        }
        let mut net_backends: Vec<&'static str> = Vec::new();
        let mut missing: BTreeMap<&'static str, String> = BTreeMap::new();
        for (kind, r) in probed {
            match (kind, r) {
                ("network_delay", _) if delay => net_backends.push(kind),
                ("network_delay", _) if cfg.delay_backend == DelayBackend::Netem => {
                    missing.insert(
                        kind,
                        "fault.delay_backend = netem, but this kernel has no sch_netem".into(),
                    );
                }
                (_, Ok(())) => net_backends.push(kind),
                (_, Err(why)) => {
                    missing.insert(kind, why);
                }
            }
        }
        if !cfg.enabled {
            for kind in FaultSpec::KINDS {
                missing.insert(
                    kind,
                    "fault injection is disabled in this agent's configuration (fault.enabled)"
                        .into(),
                );
            }
        }
        Ok((
            FaultEngine {
                cfg,
                journal,
                exe,
                disk_root,
                proc_root: proc_root.to_owned(),
                net_backends,
                missing,
                netem,
                active: BTreeMap::new(),
            },
            reverted,
        ))
    }

    /// Fault types this engine can apply, with the mechanism behind each.
    pub fn backends(&self) -> Vec<distdiag_common::proto::FaultBackend> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let b = |kind: &str, mechanism: &str| distdiag_common::proto::FaultBackend {
            kind: kind.to_owned(),
            mechanism: mechanism.to_owned(),
        };
        let mut v = vec![
            b("cpu_stress", "stress-worker processes"),
            b("memory_stress", "stress-worker processes"),
            b("disk_stress", "stress-worker processes"),
        ];
        for kind in &self.net_backends {
            v.push(match *kind {
                "network_loss" => b(kind, "iptables statistic + NFQUEUE, dropped in the agent (silent, as on a lossy link)"),
                "network_bandwidth" => b(kind, "tc htb"),
                _ if self.netem => b(kind, "tc netem"),
                _ => b(kind, "iptables NFQUEUE held in the agent (no sch_netem)"),
            });
        }
        v
    }

    /// The interface a network fault acts on: the one asked for, else the
    /// configured one, else the default route's.
    fn iface(&self, asked: Option<&str>) -> Result<String, FaultError> {
        match asked.or(self.cfg.network_interface.as_deref()) {
            Some(i) => Ok(i.to_owned()),
            None => std::fs::read_to_string(self.proc_root.join("net/route"))
                .ok()
                .and_then(|r| network::default_iface(&r))
                .ok_or_else(|| {
                    FaultError::Refused(
                        "no interface given and no default route to take one from".into(),
                    )
                }),
        }
    }

    /// Fault types this engine cannot apply here, each with why.
    pub fn missing(&self) -> Vec<distdiag_common::proto::MissingBackend> {
        self.missing
            .iter()
            .map(|(k, why)| distdiag_common::proto::MissingBackend {
                kind: (*k).to_owned(),
                reason: why.clone(),
            })
            .collect()
    }

    fn require(&self, kind: &'static str) -> Result<(), FaultError> {
        if self.net_backends.contains(&kind) {
            Ok(())
        } else {
            let why = self.missing.get(kind).map_or("not probed on this agent", String::as_str);
            Err(FaultError::Unsupported(format!("{kind}: {why}")))
        }
    }

    pub fn active(&self) -> Vec<ActiveFault> {
        self.active
            .values()
            .map(|a| ActiveFault {
                id: a.entry.id.clone(),
                spec: a.entry.spec.clone(),
                deadline_ms: a.entry.deadline_ms,
            })
            .collect()
    }

    pub fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Process ids of a fault's stressors (for tests and status).
    pub fn pids(&self, id: &str) -> Vec<u32> {
        self.active.get(id).map(|a| a.children.iter().map(Child::id).collect()).unwrap_or_default()
    }

    /// The plan of a delay or loss through a queue (its number is chosen at start).
    fn queue_plan(
        id: &str,
        m: network::QueueMatch<'_>,
        action: nfqueue::Action,
    ) -> Result<Plan, FaultError> {
        let chain = network::fault_chain(id);
        let rules = network::queue_rules(&chain, &m)?;
        let recorded = network::recorded_chain(m.iface, &chain, m.hook);
        Ok(Plan {
            workers: Vec::new(),
            paths: Vec::new(),
            qdisc: None,
            queue: Some(QueuePlan { action, recorded, rules }),
        })
    }

    fn plan(&self, id: &str, spec: &FaultSpec) -> Result<Plan, FaultError> {
        match spec {
            FaultSpec::CpuStress { workers, load_percent } => {
                Ok(cpu::plan(*workers, *load_percent))
            }
            FaultSpec::NetworkLoss { percent, interface, peers, ports } => {
                self.require("network_loss")?;
                let iface = self.iface(interface.as_deref())?;
                let m = network::QueueMatch {
                    kind: "network_loss",
                    iface: &iface,
                    hook: network::Hook::Postrouting,
                    queue: nfqueue::QUEUE_BASE,
                    share: Some(f64::from(*percent) / 100.0),
                    peers,
                    ports,
                    control: self.cfg.control,
                };
                Self::queue_plan(id, m, nfqueue::Action::Drop)
            }
            FaultSpec::NetworkDelay { latency_ms, jitter_ms, interface, peers, ports }
                if self.netem =>
            {
                self.require("network_delay")?;
                let iface = self.iface(interface.as_deref())?;
                network::check_root(&iface)?;
                let steps = network::netem_delay_steps(
                    &iface,
                    *latency_ms,
                    *jitter_ms,
                    peers,
                    ports,
                    self.cfg.control,
                )?;
                Ok(Plan {
                    workers: Vec::new(),
                    paths: Vec::new(),
                    qdisc: Some((iface, steps)),
                    queue: None,
                })
            }
            FaultSpec::NetworkDelay { latency_ms, jitter_ms, interface, peers, ports } => {
                self.require("network_delay")?;
                let iface = self.iface(interface.as_deref())?;
                let m = network::QueueMatch {
                    kind: "network_delay",
                    iface: &iface,
                    hook: network::Hook::Output,
                    queue: nfqueue::QUEUE_BASE,
                    share: None,
                    peers,
                    ports,
                    control: self.cfg.control,
                };
                let action = nfqueue::Action::Hold {
                    latency: Duration::from_millis(u64::from(*latency_ms)),
                    jitter: Duration::from_millis(u64::from(*jitter_ms)),
                };
                Self::queue_plan(id, m, action)
            }
            FaultSpec::NetworkBandwidth { rate_kbit, interface } => {
                self.require("network_bandwidth")?;
                let iface = self.iface(interface.as_deref())?;
                network::check_root(&iface)?;
                let steps = network::bandwidth_steps(&iface, *rate_kbit, self.cfg.control)?;
                Ok(Plan {
                    workers: Vec::new(),
                    paths: Vec::new(),
                    qdisc: Some((iface, steps)),
                    queue: None,
                })
            }
            FaultSpec::MemoryStress { size } => {
                let meminfo = std::fs::read_to_string(self.proc_root.join("meminfo"))
                    .map_err(|e| FaultError::Refused(format!("cannot read meminfo: {e}")))?;
                let host = memory::available_bytes(&meminfo)
                    .ok_or_else(|| FaultError::Refused("meminfo has no MemAvailable".into()))?;
                // Stressors placed in a cgroup with a memory limit can use
                // only what the limit leaves (else the cgroup's OOM killer
                // picks a victim, perhaps the database).
                let available = match &self.cfg.cgroup_path {
                    Some(path) => memory::cgroup_room(&self.cfg.cgroup_root, path)
                        .map_or(host, |room| host.min(room)),
                    None => host,
                };
                let bytes = match size {
                    MemorySize::Bytes(b) => *b,
                    MemorySize::PercentOfAvailable(p) => {
                        (available as f64 * f64::from(*p) / 100.0) as u64
                    }
                };
                memory::plan(bytes, available, self.cfg.memory_margin_bytes)
            }
            FaultSpec::DiskStress { workers, bytes, path } => {
                let base =
                    path.as_ref().map(PathBuf::from).unwrap_or_else(|| self.disk_root.clone());
                let need = u64::from(*workers).saturating_mul(*bytes);
                disk::check_room(&base, need, self.cfg.disk_margin_bytes)?;
                Ok(disk::plan(*workers, *bytes, &base.join(format!("distdiag-{id}"))))
            }
        }
    }

    /// Applies a fault until `deadline_ms`. Nothing is changed when it is refused.
    pub fn apply(
        &mut self,
        id: &str,
        spec: &FaultSpec,
        deadline_ms: i64,
        now_ms: i64,
    ) -> Result<(), FaultError> {
        if !self.cfg.enabled {
            return Err(FaultError::Refused(
                "fault injection is disabled in this agent's configuration".into(),
            ));
        }
        validate_id(id)?;
        spec.validate().map_err(FaultError::Invalid)?;
        if self.active.contains_key(id) {
            return Err(FaultError::Duplicate(id.to_owned()));
        }
        if deadline_ms <= now_ms {
            return Err(FaultError::Invalid(format!(
                "the deadline {deadline_ms} is not in the future"
            )));
        }
        if deadline_ms - now_ms > self.cfg.max_duration_ms as i64 {
            return Err(FaultError::Invalid(format!(
                "the deadline is {} s away; this agent allows at most {} s",
                (deadline_ms - now_ms) / 1000,
                self.cfg.max_duration_ms / 1000
            )));
        }
        let plan = self.plan(id, spec)?;
        let cgroups = if plan.workers.is_empty() { Vec::new() } else { self.cgroup_procs_files()? };
        let mut entry = Entry {
            id: id.to_owned(),
            spec: spec.clone(),
            deadline_ms,
            pgid: None,
            paths: plan.paths.clone(),
            nft_tables: Vec::new(),
            qdiscs: plan.qdisc.iter().map(|(i, _)| i.clone()).collect(),
            iptables: plan.queue.iter().map(|q| q.recorded.clone()).collect(),
        };
        // Journal first: from here on, any later run knows how to undo this.
        self.journal.write(&entry)?;
        let mut active =
            Active { entry: entry.clone(), children: Vec::new(), queue: None, queue_thread: None };
        let started = self.start(&plan, &cgroups, &mut entry, &mut active);
        if let Err(e) = started {
            if let Err(undo) = self.undo(active) {
                tracing::error!(fault = %id, error = %undo, "cleanup after a failed start failed");
            }
            return Err(e);
        }
        active.entry = entry;
        tracing::info!(fault = %id, kind = spec.kind(), deadline_ms, workers = active.children.len(), "fault applied");
        self.active.insert(id.to_owned(), active);
        Ok(())
    }

    fn start(
        &self,
        plan: &Plan,
        cgroups: &[PathBuf],
        entry: &mut Entry,
        active: &mut Active,
    ) -> Result<(), FaultError> {
        // The queue listens before any packet is sent to it.
        if let Some(q) = &plan.queue {
            let used: Vec<u16> = self.active.values().filter_map(|a| a.queue).collect();
            let candidates =
                (nfqueue::QUEUE_BASE..nfqueue::QUEUE_BASE + 999).filter(|n| !used.contains(n));
            let (thread, number) = nfqueue::Queue::start_first_free(candidates, q.action)?;
            active.queue_thread = Some(thread);
            active.queue = Some(number);
            network::apply_queue_rules(&network::with_queue(&q.rules, number), &q.recorded)?;
        }
        if let Some((iface, steps)) = &plan.qdisc {
            network::apply_tc(iface, steps)?;
        }
        for p in &plan.paths {
            std::fs::create_dir_all(p)
                .map_err(|e| FaultError::Spawn(format!("{}: {e}", p.display())))?;
        }
        for args in &plan.workers {
            // This program's own stress-worker, with an argument vector.
            #[allow(clippy::disallowed_methods)]
            let child = Command::new(&self.exe)
                .arg("stress-worker")
                .arg("--parent")
                .arg(std::process::id().to_string())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(entry.pgid.unwrap_or(0))
                .spawn()
                .map_err(|e| FaultError::Spawn(format!("{}: {e}", self.exe.display())))?;
            let pid = child.id();
            active.children.push(child);
            if entry.pgid.is_none() {
                entry.pgid = i32::try_from(pid).ok();
                active.entry.pgid = entry.pgid;
                self.journal.write(entry)?;
            }
            for procs in cgroups {
                std::fs::write(procs, pid.to_string()).map_err(|e| {
                    FaultError::Spawn(format!(
                        "cannot move stressor {pid} into {}: {e}",
                        procs.display()
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files stressors are written to (none without a
    /// configured cgroup path).
    fn cgroup_procs_files(&self) -> Result<Vec<PathBuf>, FaultError> {
        let Some(rel) = &self.cfg.cgroup_path else { return Ok(Vec::new()) };
        let rel = rel.trim_matches('/');
        let root = &self.cfg.cgroup_root;
        let files: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
            vec![root.join(rel).join("cgroup.procs")]
        } else {
            std::fs::read_dir(root)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.path().join(rel).join("cgroup.procs"))
                        .filter(|p| p.exists())
                        .collect()
                })
                .unwrap_or_default()
        };
        if files.is_empty() || !files.iter().all(|f| f.exists()) {
            return Err(FaultError::Refused(format!(
                "cgroup {rel:?} does not exist under {}",
                root.display()
            )));
        }
        Ok(files)
    }

    /// Stops a fault's processes, removes its files and its journal entry.
    /// Only the engine's own children are signalled (never a process group
    /// by number, which could belong to someone else once they are gone).
    fn undo(&self, mut a: Active) -> Result<(), FaultError> {
        for c in &mut a.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        a.entry.paths.iter().for_each(|p| remove_path(p));
        remove_network(&a.entry);
        // No packet reaches the queue now; release what it still holds.
        drop(a.queue_thread.take());
        self.journal.remove(&a.entry.id)
    }

    /// Reverts one fault; false if it is not active.
    pub fn revert(&mut self, id: &str) -> Result<bool, FaultError> {
        match self.active.remove(id) {
            Some(a) => {
                self.undo(a)?;
                tracing::info!(fault = %id, "fault reverted");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reverts every active fault; returns their ids.
    pub fn revert_all(&mut self) -> Vec<String> {
        let ids: Vec<String> = self.active.keys().cloned().collect();
        for id in &ids {
            if let Err(error) = self.revert(id) {
                tracing::error!(fault = %id, %error, "revert failed");
            }
        }
        ids
    }

    /// Reverts faults whose deadline has passed; returns their ids.
    pub fn expire(&mut self, now_ms: i64) -> Vec<String> {
        let due: Vec<String> = self
            .active
            .values()
            .filter(|a| a.entry.deadline_ms <= now_ms)
            .map(|a| a.entry.id.clone())
            .collect();
        for id in &due {
            if let Err(error) = self.revert(id) {
                tracing::error!(fault = %id, %error, "revert at the deadline failed");
            }
        }
        due
    }

    /// Faults one of whose stressors exited on its own (killed by the OOM
    /// killer, say): they are reverted; returns (id, reason).
    pub fn reap(&mut self) -> Vec<(String, String)> {
        let mut dead = Vec::new();
        for a in self.active.values_mut() {
            for c in &mut a.children {
                if let Ok(Some(status)) = c.try_wait() {
                    dead.push((
                        a.entry.id.clone(),
                        format!("stressor {} exited: {status}", c.id()),
                    ));
                    break;
                }
            }
        }
        for (id, reason) in &dead {
            tracing::warn!(fault = %id, %reason, "fault ended early");
            if let Err(error) = self.revert(id) {
                tracing::error!(fault = %id, %error, "revert failed");
            }
        }
        dead
    }
}

/// An engine that goes away takes its faults with it (the journal covers the
/// cases where this cannot run: SIGKILL, power loss).
impl Drop for FaultEngine {
    fn drop(&mut self) {
        if !self.active.is_empty() {
            let ids = self.revert_all();
            tracing::warn!(?ids, "fault engine dropped with faults applied; reverted them");
        }
    }
}

/// The arguments of a stressor process.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The agent that started this worker; the worker exits when it is gone.
    #[arg(long)]
    pub parent: u32,
    #[arg(long)]
    pub kind: String,
    #[arg(long)]
    pub load: Option<u8>,
    #[arg(long)]
    pub bytes: Option<u64>,
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Entry point of `stress-worker`: dies with its parent, then works until killed.
pub fn worker_main(a: WorkerArgs) -> ExitCode {
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err() {
        return ExitCode::from(2);
    }
    // The parent may have died before the signal was armed.
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(a.parent) {
        return ExitCode::from(2);
    }
    match (a.kind.as_str(), a.load, a.bytes, a.dir) {
        ("cpu", Some(load), _, _) => cpu::work(load),
        ("memory", _, Some(bytes), _) => memory::work(bytes),
        ("disk", _, Some(bytes), Some(dir)) => disk::work(bytes, dir),
        _ => ExitCode::from(64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_deadman() {
        assert!(validate_id("f-1.a_b").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(!deadman_due(Some(1000), 2000, 5000));
        assert!(deadman_due(Some(1000), 7001, 5000));
        assert!(deadman_due(None, 0, 5000));
    }
}
