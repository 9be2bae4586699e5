//! `memory_stress`: one process that allocates the requested size and writes
//! every page, so the memory is resident, not just reserved; it holds it
//! until reverted. Sizes that would leave less than the configured margin of
//! available memory are refused before anything starts.

use super::{FaultError, Plan};

const PAGE: usize = 4096;

/// MemAvailable in bytes, from /proc/meminfo text.
pub(super) fn available_bytes(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// What a cgroup's memory limit still leaves (limit − usage), when the
/// cgroup has a limit: v2 `memory.max`/`memory.current` in `root/path`,
/// v1 `memory.limit_in_bytes`/`memory.usage_in_bytes` in `root/memory/path`.
pub(super) fn cgroup_room(root: &std::path::Path, path: &str) -> Option<u64> {
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<u64>().ok())
    };
    let v2 = root.join(path.trim_start_matches('/'));
    let v1 = root.join("memory").join(path.trim_start_matches('/'));
    let (limit, usage) = match read(v2.join("memory.max")) {
        Some(l) => (l, read(v2.join("memory.current"))?),
        None => (read(v1.join("memory.limit_in_bytes"))?, read(v1.join("memory.usage_in_bytes"))?),
    };
    // v1 writes a huge number for "no limit"; v2 writes "max" (no number).
    (limit < 1 << 60).then(|| limit.saturating_sub(usage))
}

pub(super) fn plan(bytes: u64, available: u64, margin: u64) -> Result<Plan, FaultError> {
    if bytes.saturating_add(margin) > available {
        return Err(FaultError::Refused(format!(
            "memory_stress of {} MiB would leave less than {} MiB of the {} MiB available",
            bytes >> 20,
            margin >> 20,
            available >> 20
        )));
    }
    let args =
        vec!["--kind".to_owned(), "memory".to_owned(), "--bytes".to_owned(), bytes.to_string()];
    Ok(Plan { workers: vec![args], paths: Vec::new(), qdisc: None, queue: None })
}

/// The worker: allocate, touch every page, hold.
pub(super) fn work(bytes: u64) -> ! {
    let n = usize::try_from(bytes).unwrap_or(usize::MAX);
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(n).is_err() {
        std::process::exit(3);
    }
    v.resize(n, 0);
    for i in (0..n).step_by(PAGE) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_limit_bounds_the_room() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("memory/db");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "268435456\n").unwrap();
        assert_eq!(cgroup_room(dir.path(), "db"), Some(768 << 20));
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_room(dir.path(), "db"), None, "no limit");
        let v2 = dir.path().join("system.slice/x");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "536870912\n").unwrap();
        std::fs::write(v2.join("memory.current"), "1000\n").unwrap();
        assert_eq!(cgroup_room(dir.path(), "/system.slice/x"), Some(536870912 - 1000));
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_room(dir.path(), "system.slice/x"), None);
        assert_eq!(cgroup_room(dir.path(), "nowhere"), None);
    }

    #[test]
    fn reads_available_memory_and_refuses_oom_sizes() {
        let mi = "MemTotal: 1000 kB\nMemAvailable:     2097152 kB\n";
        assert_eq!(available_bytes(mi), Some(2 << 30));
        assert!(plan(1 << 30, 2 << 30, 256 << 20).is_ok());
        assert!(matches!(plan(2 << 30, 2 << 30, 256 << 20), Err(FaultError::Refused(_))));
    }
}
