//! The database's cgroup (v1 or v2): CPU usage and throttling, memory usage
//! and limit, block I/O. The cgroup path is configured relative to the
//! cgroup root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use distdiag_common::proto::CgroupVersion;

use super::{read, user_hz, CollectError, Collector, Roots, Sink};

/// A v1 memory limit at or above this means "no limit".
const V1_UNLIMITED: f64 = 4.6e18;

/// Which cgroup layout is mounted at `root`.
pub fn detect_version(root: &Path) -> CgroupVersion {
    if root.join("cgroup.controllers").exists() {
        return CgroupVersion::V2;
    }
    let v1 = ["cpuacct", "cpu,cpuacct", "memory", "blkio"].iter().any(|d| root.join(d).is_dir());
    match (v1, root.join("unified").is_dir()) {
        (true, true) => CgroupVersion::Hybrid,
        (true, false) => CgroupVersion::V1,
        _ => CgroupVersion::None,
    }
}

/// `key value` lines (cpu.stat, memory.stat, cpuacct.stat).
pub(crate) fn parse_kv(text: &str) -> HashMap<&str, f64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            Some((f.next()?, f.next()?.parse::<f64>().ok()?))
        })
        .collect()
}

/// v2 io.stat: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..` summed over devices.
pub(crate) fn parse_io_stat(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        for kv in line.split_ascii_whitespace().skip(1) {
            if let Some((k, v)) = kv.split_once('=') {
                if let Ok(v) = v.parse::<f64>() {
                    *out.entry(k.to_owned()).or_insert(0.0) += v;
                }
            }
        }
    }
    out
}

/// v1 blkio.throttle.*: `MAJ:MIN Read N` lines summed per operation (Total lines skipped).
pub(crate) fn parse_blkio(text: &str) -> (f64, f64) {
    let (mut r, mut w) = (0.0, 0.0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if let [_, op, v] = f.as_slice() {
            let v: f64 = v.parse().unwrap_or(0.0);
            match *op {
                "Read" => r += v,
                "Write" => w += v,
                _ => {}
            }
        }
    }
    (r, w)
}

pub(crate) struct Cgroup {
    path: String,
}

impl Cgroup {
    pub(crate) fn new(path: String) -> Self {
        Cgroup { path: path.trim_matches('/').to_owned() }
    }

    fn dir(&self, root: &Path, controller: &[&str]) -> Option<PathBuf> {
        controller.iter().map(|c| root.join(c).join(&self.path)).find(|p| p.is_dir())
    }

    fn v2(&self, root: &Path, sink: &mut Sink) -> Result<(), CollectError> {
        let rel = |f: &str| format!("{}/{f}", self.path);
        let cpu = read(root, &rel("cpu.stat"))?;
        let cpu = parse_kv(&cpu);
        let pairs = [
            ("usage_usec", "cg.cpu_usage"),
            ("user_usec", "cg.cpu_user"),
            ("system_usec", "cg.cpu_system"),
            ("throttled_usec", "cg.cpu_throttled_time"),
        ];
        for (k, name) in pairs {
            if let Some(v) = cpu.get(k) {
                sink.counter(name, "seconds", v / 1e6);
            }
        }
        for (k, name) in
            [("nr_periods", "cg.cpu_periods"), ("nr_throttled", "cg.cpu_throttled_periods")]
        {
            if let Some(v) = cpu.get(k) {
                sink.counter(name, "count", *v);
            }
        }
        if let Ok(v) = read(root, &rel("memory.current")) {
            if let Ok(v) = v.trim().parse::<f64>() {
                sink.gauge("cg.mem_usage", "bytes", v);
            }
        }
        if let Ok(v) = read(root, &rel("memory.max")) {
            if let Ok(v) = v.trim().parse::<f64>() {
                sink.gauge("cg.mem_limit", "bytes", v);
            }
        }
        if let Ok(text) = read(root, &rel("memory.stat")) {
            let m = parse_kv(&text);
            for (k, name) in [("anon", "cg.mem_anon"), ("file", "cg.mem_file")] {
                if let Some(v) = m.get(k) {
                    sink.gauge(name, "bytes", *v);
                }
            }
        }
        if let Ok(text) = read(root, &rel("io.stat")) {
            let io = parse_io_stat(&text);
            for (k, name, unit) in [
                ("rbytes", "cg.io_read_bytes", "bytes"),
                ("wbytes", "cg.io_write_bytes", "bytes"),
                ("rios", "cg.io_reads", "ops"),
                ("wios", "cg.io_writes", "ops"),
            ] {
                sink.counter(name, unit, io.get(k).copied().unwrap_or(0.0));
            }
        }
        Ok(())
    }

    fn v1(&self, root: &Path, sink: &mut Sink) -> Result<(), CollectError> {
        let acct = self.dir(root, &["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]).ok_or_else(|| {
            CollectError::parse(&root.join("cpuacct").join(&self.path), "no such cgroup")
        })?;
        let usage = read(&acct, "cpuacct.usage")?;
        let usage: f64 = usage
            .trim()
            .parse()
            .map_err(|_| CollectError::parse(&acct.join("cpuacct.usage"), "not a number"))?;
        sink.counter("cg.cpu_usage", "seconds", usage / 1e9);
        if let Ok(text) = read(&acct, "cpuacct.stat") {
            let s = parse_kv(&text);
            for (k, name) in [("user", "cg.cpu_user"), ("system", "cg.cpu_system")] {
                if let Some(v) = s.get(k) {
                    sink.counter(name, "seconds", v / user_hz());
                }
            }
        }
        if let Some(cpu) = self.dir(root, &["cpu", "cpu,cpuacct"]) {
            if let Ok(text) = read(&cpu, "cpu.stat") {
                let s = parse_kv(&text);
                if let Some(v) = s.get("nr_periods") {
                    sink.counter("cg.cpu_periods", "count", *v);
                }
                if let Some(v) = s.get("nr_throttled") {
                    sink.counter("cg.cpu_throttled_periods", "count", *v);
                }
                if let Some(v) = s.get("throttled_time") {
                    sink.counter("cg.cpu_throttled_time", "seconds", v / 1e9);
                }
            }
        }
        if let Some(mem) = self.dir(root, &["memory"]) {
            let num = |f: &str| read(&mem, f).ok().and_then(|t| t.trim().parse::<f64>().ok());
            if let Some(v) = num("memory.usage_in_bytes") {
                sink.gauge("cg.mem_usage", "bytes", v);
            }
            if let Some(v) = num("memory.limit_in_bytes").filter(|v| *v < V1_UNLIMITED) {
                sink.gauge("cg.mem_limit", "bytes", v);
            }
            if let Ok(text) = read(&mem, "memory.stat") {
                let m = parse_kv(&text);
                for (k, name) in [("rss", "cg.mem_anon"), ("cache", "cg.mem_file")] {
                    if let Some(v) = m.get(k) {
                        sink.gauge(name, "bytes", *v);
                    }
                }
            }
        }
        if let Some(blk) = self.dir(root, &["blkio"]) {
            if let Ok(text) = read(&blk, "blkio.throttle.io_service_bytes") {
                let (r, w) = parse_blkio(&text);
                sink.counter("cg.io_read_bytes", "bytes", r);
                sink.counter("cg.io_write_bytes", "bytes", w);
            }
            if let Ok(text) = read(&blk, "blkio.throttle.io_serviced") {
                let (r, w) = parse_blkio(&text);
                sink.counter("cg.io_reads", "ops", r);
                sink.counter("cg.io_writes", "ops", w);
            }
        }
        Ok(())
    }
}

impl Collector for Cgroup {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        match detect_version(&roots.cgroup) {
            CgroupVersion::V2 => self.v2(&roots.cgroup, sink),
            CgroupVersion::V1 | CgroupVersion::Hybrid => self.v1(&roots.cgroup, sink),
            CgroupVersion::None => {
                Err(CollectError::parse(&roots.cgroup, "no cgroup hierarchy mounted here"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{fixture, Sink};

    #[test]
    fn detects_versions() {
        assert_eq!(detect_version(&fixture::dir().join("cgroup-v1")), CgroupVersion::Hybrid);
        assert_eq!(detect_version(&fixture::dir().join("cgroup-v2")), CgroupVersion::V2);
        assert_eq!(detect_version(&fixture::dir().join("proc")), CgroupVersion::None);
    }

    #[test]
    fn reads_a_v1_cgroup() {
        let mut sink = Sink::default();
        let roots = fixture::roots();
        Cgroup::new("/system.slice/mariadb.service".into()).collect(&roots, &mut sink).unwrap();
        assert_eq!(sink.value("cg.cpu_usage"), Some(12.5));
        assert_eq!(sink.value("cg.cpu_user"), Some(1000.0 / user_hz()));
        assert_eq!(sink.value("cg.cpu_throttled_periods"), Some(4.0));
        assert_eq!(sink.value("cg.cpu_throttled_time"), Some(0.25));
        assert_eq!(sink.value("cg.mem_usage"), Some(104_857_600.0));
        assert_eq!(sink.value("cg.mem_limit"), Some(536_870_912.0));
        assert_eq!(sink.value("cg.io_write_bytes"), Some(4096.0 + 8192.0));
        assert_eq!(sink.value("cg.io_reads"), Some(3.0));
    }

    #[test]
    fn reads_a_v2_cgroup_and_treats_max_as_no_limit() {
        let mut sink = Sink::default();
        let roots = Roots { cgroup: fixture::dir().join("cgroup-v2"), ..fixture::roots() };
        Cgroup::new("system.slice/mariadb.service".into()).collect(&roots, &mut sink).unwrap();
        assert_eq!(sink.value("cg.cpu_usage"), Some(3.0));
        assert_eq!(sink.value("cg.cpu_throttled_time"), Some(0.5));
        assert_eq!(sink.value("cg.cpu_throttled_periods"), Some(7.0));
        assert_eq!(sink.value("cg.mem_usage"), Some(2_097_152.0));
        assert_eq!(sink.value("cg.mem_limit"), None);
        assert_eq!(sink.value("cg.io_read_bytes"), Some(1000.0 + 24.0));
        assert_eq!(sink.value("cg.io_writes"), Some(9.0));
    }

    #[test]
    fn a_missing_cgroup_is_an_error() {
        let mut sink = Sink::default();
        assert!(Cgroup::new("nope".into()).collect(&fixture::roots(), &mut sink).is_err());
    }
}
