//! Host facts and capabilities sent in the hello.

use distdiag_common::proto::{Capabilities, HostFacts};

use crate::collect::{detect_cgroup_version, Roots};

fn first_line(roots: &Roots, rel: &str) -> String {
    std::fs::read_to_string(roots.proc.join(rel)).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Reads the host facts through the configured roots.
pub fn host_facts(roots: &Roots) -> HostFacts {
    let stat = std::fs::read_to_string(roots.proc.join("stat")).unwrap_or_default();
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    let boot_time_s = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string(roots.proc.join("meminfo")).unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    HostFacts {
        hostname: first_line(roots, "sys/kernel/hostname"),
        kernel: first_line(roots, "sys/kernel/osrelease"),
        cpus,
        mem_total_bytes: mem_kb * 1024,
        boot_time_s,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// What this agent can do here: the cgroup layout, CAP_NET_ADMIN, and the
/// fault types its fault engine can apply, and why not the others.
pub fn capabilities(
    roots: &Roots,
    fault_backends: Vec<distdiag_common::proto::FaultBackend>,
    missing: Vec<distdiag_common::proto::MissingBackend>,
) -> Capabilities {
    Capabilities {
        cgroup: detect_cgroup_version(&roots.cgroup),
        net_admin: crate::fault::has_net_admin(),
        fault_backends,
        missing,
    }
}
