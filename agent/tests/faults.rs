//! Fault injection on the real host: real stressor processes, real cgroups,
//! real files. Each fault's effect is measured, and every exit path is checked
//! for leftovers (processes, files, journal entries). Tests whose name starts
//! with `measured_` run alone (see .config/nextest.toml) so other tests do not
//! skew what they measure.

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::skip;

use distdiag_agent::fault::{FaultConfig, FaultEngine};
use distdiag_common::fault::{FaultSpec, MemorySize};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distdiag-agent"))
}

fn now_ms() -> i64 {
    distdiag_agent::now_ms()
}

fn engine(state: &Path, cgroup_path: Option<String>) -> FaultEngine {
    let cfg = FaultConfig { worker_exe: Some(exe()), cgroup_path, ..FaultConfig::default() };
    FaultEngine::open(cfg, state, Path::new("/proc")).unwrap().0
}

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_ascii_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Journal entries (the directory also holds the state-directory lock).
fn journal_len(state: &Path) -> usize {
    std::fs::read_dir(state.join("faults"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

fn status_field(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn io_write_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A throwaway cgroup: on v2 one directory; on v1 the same path in the
/// cpuacct and memory hierarchies.
struct TestCgroup {
    name: String,
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl TestCgroup {
    fn create(name: &str) -> Option<TestCgroup> {
        let root = Path::new("/sys/fs/cgroup");
        let v2 = root.join("cgroup.controllers").exists();
        let dirs: Vec<PathBuf> = if v2 {
            vec![root.join(name)]
        } else {
            vec![root.join("cpuacct").join(name), root.join("memory").join(name)]
        };
        for d in &dirs {
            std::fs::create_dir(d).ok()?;
        }
        Some(TestCgroup { name: name.to_owned(), dirs, v2 })
    }

    fn procs(&self, i: usize) -> String {
        std::fs::read_to_string(self.dirs[i].join("cgroup.procs")).unwrap_or_default()
    }

    /// CPU seconds used by the group so far.
    fn usage(&self) -> f64 {
        if self.v2 {
            let s = std::fs::read_to_string(self.dirs[0].join("cpu.stat")).unwrap();
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .trim()
                .parse::<f64>()
                .unwrap()
                / 1e6
        } else {
            std::fs::read_to_string(self.dirs[0].join("cpuacct.usage"))
                .unwrap()
                .trim()
                .parse::<f64>()
                .unwrap()
                / 1e9
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for (i, d) in self.dirs.iter().enumerate() {
            let _ = wait_until(Duration::from_secs(2), || self.procs(i).trim().is_empty());
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn measured_cpu_stress_loads_its_cgroup_as_requested() {
    let Some(cg) = TestCgroup::create(&format!("distdiag-test-{}", std::process::id())) else {
        return skip("cannot create a cgroup here (not root, or no cpuacct controller)");
    };
    let state = tempfile::tempdir().unwrap();
    let mut e = engine(state.path(), Some(cg.name.clone()));
    e.apply(
        "cpu",
        &FaultSpec::CpuStress { workers: 1, load_percent: 50 },
        now_ms() + 30_000,
        now_ms(),
    )
    .unwrap();
    // The stressor joined the cgroup in every hierarchy (v1) or the one directory (v2).
    let pid = e.pids("cpu")[0].to_string();
    for i in 0..cg.dirs.len() {
        assert!(cg.procs(i).lines().any(|l| l == pid), "stressor not in {}", cg.dirs[i].display());
    }
    std::thread::sleep(Duration::from_millis(300));
    let (u0, i0, t0) = (cg.usage(), idle_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let secs = t0.elapsed().as_secs_f64();
    let rate = (cg.usage() - u0) / secs;
    // Other work on this host (a parallel build) may leave the stressor
    // less than the half core it asks for: it must take at least most of
    // what it could have had (its own use plus what stayed idle).
    let idle = (idle_seconds() - i0) / secs;
    let could = (rate + idle).min(0.5);
    println!(
        "cpu_stress load 50 %: cgroup used {:.1} % of a core ({:.1} % idle beside it)",
        rate * 100.0,
        idle * 100.0
    );
    assert!(
        rate <= 0.7 && rate >= 0.6 * could && could > 0.2,
        "cgroup used {rate:.2} cores, asked for 0.5, {idle:.2} cores stayed idle"
    );
    let pids = e.pids("cpu");
    assert!(e.revert("cpu").unwrap());
    assert!(pids.iter().all(|p| !alive(*p)));
    assert_eq!(journal_len(state.path()), 0);
    // A cgroup that does not exist is refused before anything starts.
    drop(e);
    let mut e = engine(state.path(), Some("distdiag-no-such-cgroup".into()));
    assert!(e
        .apply(
            "x",
            &FaultSpec::CpuStress { workers: 1, load_percent: 5 },
            now_ms() + 5_000,
            now_ms()
        )
        .is_err());
    assert_eq!(journal_len(state.path()), 0);
}

#[test]
fn measured_memory_stress_makes_its_size_resident() {
    let state = tempfile::tempdir().unwrap();
    let mut e = engine(state.path(), None);
    let size = 96u64 << 20;
    e.apply(
        "mem",
        &FaultSpec::MemoryStress { size: MemorySize::Bytes(size) },
        now_ms() + 30_000,
        now_ms(),
    )
    .unwrap();
    let pid = e.pids("mem")[0];
    let resident =
        wait_until(Duration::from_secs(10), || status_field(pid, "VmRSS:") * 1024 >= size);
    println!("memory_stress 96 MiB: stressor RSS {} MiB", status_field(pid, "VmRSS:") >> 10);
    assert!(resident, "RSS {} kB never reached {size} bytes", status_field(pid, "VmRSS:"));
    assert!(e.revert("mem").unwrap());
    assert!(wait_until(Duration::from_secs(2), || !alive(pid)));
}

#[test]
fn measured_disk_stress_writes_and_cleans_up_its_directory() {
    let state = tempfile::tempdir().unwrap();
    let mut e = engine(state.path(), None);
    let spec = FaultSpec::DiskStress {
        workers: 1,
        bytes: 16 << 20,
        path: Some(state.path().join("target").display().to_string()),
    };
    std::fs::create_dir(state.path().join("target")).unwrap();
    e.apply("disk", &spec, now_ms() + 30_000, now_ms()).unwrap();
    let pid = e.pids("disk")[0];
    let dir = state.path().join("target/distdiag-disk");
    assert!(dir.is_dir());
    std::thread::sleep(Duration::from_millis(300));
    let (w0, t0) = (io_write_bytes(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let rate = (io_write_bytes(pid) - w0) as f64 / t0.elapsed().as_secs_f64();
    println!("disk_stress: {:.1} MiB/s written with fsync", rate / 1048576.0);
    assert!(rate > 1048576.0, "only {rate:.0} bytes/s written");
    assert!(e.revert("disk").unwrap());
    assert!(!dir.exists(), "disk stress directory left behind");
    assert!(state.path().join("target").is_dir(), "the directory the request named must stay");
    assert_eq!(journal_len(state.path()), 0);
}

#[test]
fn deadlines_revert_faults_by_themselves() {
    let state = tempfile::tempdir().unwrap();
    let mut e = engine(state.path(), None);
    e.apply(
        "short",
        &FaultSpec::CpuStress { workers: 2, load_percent: 10 },
        now_ms() + 300,
        now_ms(),
    )
    .unwrap();
    e.apply(
        "long",
        &FaultSpec::DiskStress { workers: 1, bytes: 1 << 20, path: None },
        now_ms() + 60_000,
        now_ms(),
    )
    .unwrap();
    let pids = e.pids("short");
    assert_eq!(pids.len(), 2);
    assert!(e.expire(now_ms()).is_empty());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(e.expire(now_ms()), vec!["short".to_string()]);
    assert!(pids.iter().all(|p| !alive(*p)));
    assert_eq!(e.active().len(), 1);
    assert_eq!(journal_len(state.path()), 1);
    assert_eq!(e.revert_all(), vec!["long".to_string()]);
    assert_eq!(journal_len(state.path()), 0);
    assert!(!state.path().join("fault-disk/distdiag-long").exists());
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let state = tempfile::tempdir().unwrap();
    let mut e = engine(state.path(), None);
    let now = now_ms();
    let cpu = FaultSpec::CpuStress { workers: 1, load_percent: 10 };
    let cases: Vec<(&str, FaultSpec, i64)> = vec![
        ("zero-load", FaultSpec::CpuStress { workers: 1, load_percent: 0 }, now + 10_000),
        (
            "too-much-memory",
            FaultSpec::MemoryStress { size: MemorySize::Bytes(1 << 50) },
            now + 10_000,
        ),
        ("past", cpu.clone(), now - 1),
        ("too-long", cpu.clone(), now + 10 * 3_600_000),
        ("bad/id", cpu.clone(), now + 10_000),
        (
            "jitter-above-latency",
            FaultSpec::NetworkDelay {
                latency_ms: 10,
                jitter_ms: 20,
                interface: Some("lo".into()),
                peers: vec![],
                ports: vec![],
            },
            now + 10_000,
        ),
        (
            "v6-delay-peer",
            FaultSpec::NetworkDelay {
                latency_ms: 10,
                jitter_ms: 0,
                interface: Some("lo".into()),
                peers: vec!["fd00::1".into()],
                ports: vec![],
            },
            now + 10_000,
        ),
        (
            "no-such-iface",
            FaultSpec::NetworkBandwidth { rate_kbit: 1000, interface: Some("ddnosuch0".into()) },
            now + 10_000,
        ),
        (
            "bad-peer",
            FaultSpec::NetworkLoss {
                percent: 5.0,
                interface: Some("lo".into()),
                peers: vec!["10.0.0.1; flush ruleset".into()],
                ports: vec![],
            },
            now + 10_000,
        ),
    ];
    for (id, spec, deadline) in cases {
        let err = e.apply(id, &spec, deadline, now).unwrap_err();
        println!("{id}: {err}");
        assert!(e.active().is_empty(), "{id} left an active fault");
        assert_eq!(journal_len(state.path()), 0, "{id} left a journal entry");
    }
    e.apply("dup", &cpu, now + 10_000, now).unwrap();
    assert!(e.apply("dup", &cpu, now + 10_000, now).is_err());
    assert_eq!(e.active().len(), 1);
    assert!(!e.revert("nope").unwrap());
    e.revert_all();
}

/// Kills the child if the test fails before it does.
struct Reaper(Option<std::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `distdiag-agent fault-run` in the background; returns the child and the stressor pids.
#[test]
fn a_network_fault_naming_no_interface_takes_the_configured_one() {
    let state = tempfile::tempdir().unwrap();
    let cfg = FaultConfig {
        worker_exe: Some(exe()),
        network_interface: Some("ddnosuch0".into()),
        ..FaultConfig::default()
    };
    let mut e = FaultEngine::open(cfg, state.path(), Path::new("/proc")).unwrap().0;
    let now = now_ms();
    let spec = FaultSpec::NetworkBandwidth { rate_kbit: 1000, interface: None };
    let err = e.apply("cfg-iface", &spec, now + 10_000, now).unwrap_err().to_string();
    assert!(err.contains("ddnosuch0"), "{err}");
    assert!(e.active().is_empty());
    assert_eq!(journal_len(state.path()), 0);
}

fn fault_run(state: &Path, spec: &str) -> (Reaper, Vec<u32>) {
    let mut child = Command::new(exe())
        .args([
            "--state-dir",
            state.to_str().unwrap(),
            "fault-run",
            "--id",
            "crash",
            "--duration-ms",
            "60000",
            "--spec",
            spec,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let pids = v["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u32).collect();
    (Reaper(Some(child)), pids)
}

#[test]
fn a_killed_agent_leaves_nothing_running_and_its_next_start_cleans_up() {
    let state = tempfile::tempdir().unwrap();
    let (mut reaper, pids) =
        fault_run(state.path(), r#"{"disk_stress":{"workers":2,"bytes":4194304,"path":null}}"#);
    let dir = state.path().join("fault-disk/distdiag-crash");
    assert!(dir.is_dir());
    assert!(pids.iter().all(|p| alive(*p)), "stressors not running");
    let mut child = reaper.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The stressors die with the agent (PDEATHSIG)...
    assert!(
        wait_until(Duration::from_secs(3), || pids.iter().all(|p| !alive(*p))),
        "stressors outlived a SIGKILLed agent"
    );
    // ...but its files and journal entry remain until the next start.
    assert!(dir.is_dir());
    assert_eq!(journal_len(state.path()), 1);
    let cfg = FaultConfig { worker_exe: Some(exe()), ..FaultConfig::default() };
    let (_e, reverted) = FaultEngine::open(cfg, state.path(), Path::new("/proc")).unwrap();
    assert_eq!(reverted, vec!["crash".to_string()]);
    assert!(!dir.exists());
    assert_eq!(journal_len(state.path()), 0);
}

#[test]
fn sigterm_reverts_before_the_agent_exits() {
    let state = tempfile::tempdir().unwrap();
    let (mut reaper, pids) =
        fault_run(state.path(), r#"{"cpu_stress":{"workers":1,"load_percent":20}}"#);
    let child = reaper.0.take().unwrap();
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(pids.iter().all(|p| !alive(*p)));
    assert_eq!(journal_len(state.path()), 0);
}

/// Idle CPU seconds of the whole host so far (/proc/stat: idle + iowait).
fn idle_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    (cpu[3] + cpu[4]) / hz
}
