//! The database server process (OBServer, seekdb, mysqld, ...), found by pid
//! file or by name: CPU time, RSS, threads, faults, I/O bytes, open files and
//! context switches, summed over every matching process. `proc.count` says
//! how many were found (0 when the server is down).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{num, read, user_hz, CollectError, Collector, Roots, Sink};

/// How often the process table is searched again while the known pids live.
const RESCAN: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Default)]
pub(crate) struct PidStat {
    pub(crate) comm: String,
    pub(crate) minflt: f64,
    pub(crate) majflt: f64,
    pub(crate) utime: f64,
    pub(crate) stime: f64,
    pub(crate) threads: f64,
    pub(crate) starttime: f64,
    pub(crate) rss_pages: f64,
}

/// Parses /proc/PID/stat. The command name sits in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_pid_stat(text: &str) -> Result<PidStat, String> {
    let open = text.find('(').ok_or("no '('")?;
    let close = text.rfind(')').ok_or("no ')'")?;
    if close < open {
        return Err("bad command name".into());
    }
    let f: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let get =
        |n: usize| f.get(n - 3).and_then(|s| num(s)).ok_or_else(|| format!("missing field {n}"));
    Ok(PidStat {
        comm: text[open + 1..close].to_owned(),
        minflt: get(10)?,
        majflt: get(12)?,
        utime: get(14)?,
        stime: get(15)?,
        threads: get(20)?,
        starttime: get(22)?,
        rss_pages: get(24)?,
    })
}

/// `key: value` lines of /proc/PID/status or `key: value` of /proc/PID/io.
pub(crate) fn field(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').and_then(|v| num(v.trim())))
}

pub(crate) struct Process {
    names: Vec<String>,
    pid_file: Option<PathBuf>,
    pids: Vec<(u32, f64)>,
    scanned: Option<Instant>,
}

impl Process {
    pub(crate) fn new(names: Vec<String>, pid_file: Option<PathBuf>) -> Self {
        Process { names, pid_file, pids: Vec::new(), scanned: None }
    }

    fn stat(roots: &Roots, pid: u32) -> Option<PidStat> {
        read(&roots.proc, &format!("{pid}/stat")).ok().and_then(|t| parse_pid_stat(&t).ok())
    }

    fn find(&mut self, roots: &Roots) -> Result<(), CollectError> {
        if let Some(pf) = &self.pid_file {
            self.pids.clear();
            let text = std::fs::read_to_string(pf)
                .map_err(|error| CollectError::Io { path: pf.clone(), error })?;
            let pid: u32 = text.trim().parse().map_err(|_| CollectError::parse(pf, "not a pid"))?;
            if let Some(s) = Self::stat(roots, pid) {
                self.pids.push((pid, s.starttime));
            }
            return Ok(());
        }
        let alive = !self.pids.is_empty()
            && self
                .pids
                .iter()
                .all(|&(pid, start)| Self::stat(roots, pid).is_some_and(|s| s.starttime == start));
        if alive && self.scanned.is_some_and(|t| t.elapsed() < RESCAN) {
            return Ok(());
        }
        // Nothing found last time: look again only every few seconds.
        if self.pids.is_empty() && self.scanned.is_some_and(|t| t.elapsed() < RESCAN / 3) {
            return Ok(());
        }
        self.pids.clear();
        self.scanned = Some(Instant::now());
        let dir = std::fs::read_dir(&roots.proc)
            .map_err(|error| CollectError::Io { path: roots.proc.clone(), error })?;
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(comm) = read(&roots.proc, &format!("{pid}/comm")) else { continue };
            if self.names.iter().any(|n| n == comm.trim()) {
                if let Some(s) = Self::stat(roots, pid) {
                    self.pids.push((pid, s.starttime));
                }
            }
        }
        self.pids.sort_unstable_by_key(|p| p.0);
        Ok(())
    }
}

impl Collector for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        self.find(roots)?;
        let hz = user_hz();
        let page = rustix::param::page_size() as f64;
        let mut totals = [0.0f64; 12];
        let mut have_io = false;
        let mut count = 0.0;
        for &(pid, _) in &self.pids {
            let Some(s) = Self::stat(roots, pid) else { continue };
            count += 1.0;
            totals[0] += s.utime / hz;
            totals[1] += s.stime / hz;
            totals[2] += s.rss_pages * page;
            totals[3] += s.threads;
            totals[4] += s.minflt;
            totals[5] += s.majflt;
            if let Ok(status) = read(&roots.proc, &format!("{pid}/status")) {
                totals[6] += field(&status, "voluntary_ctxt_switches").unwrap_or(0.0);
                totals[7] += field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0.0);
            }
            // /proc/PID/io needs the same user or CAP_SYS_PTRACE.
            if let Ok(io) = read(&roots.proc, &format!("{pid}/io")) {
                have_io = true;
                totals[8] += field(&io, "read_bytes").unwrap_or(0.0);
                totals[9] += field(&io, "write_bytes").unwrap_or(0.0);
                totals[10] += field(&io, "rchar").unwrap_or(0.0);
            }
            if let Ok(fds) = std::fs::read_dir(roots.proc.join(format!("{pid}/fd"))) {
                totals[11] += fds.count() as f64;
            }
        }
        sink.gauge("proc.count", "count", count);
        if count == 0.0 {
            return Ok(());
        }
        sink.counter("proc.cpu_user", "seconds", totals[0]);
        sink.counter("proc.cpu_system", "seconds", totals[1]);
        sink.gauge("proc.rss", "bytes", totals[2]);
        sink.gauge("proc.threads", "count", totals[3]);
        sink.counter("proc.minor_faults", "count", totals[4]);
        sink.counter("proc.major_faults", "count", totals[5]);
        sink.counter("proc.ctx_voluntary", "count", totals[6]);
        sink.counter("proc.ctx_involuntary", "count", totals[7]);
        if have_io {
            sink.counter("proc.read_bytes", "bytes", totals[8]);
            sink.counter("proc.write_bytes", "bytes", totals[9]);
            sink.counter("proc.read_chars", "bytes", totals[10]);
        }
        sink.gauge("proc.open_fds", "count", totals[11]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{fixture, Sink};

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let s = parse_pid_stat(&fixture::text("proc/4242/stat")).unwrap();
        assert_eq!(s.comm, "mariadbd");
        assert_eq!((s.minflt, s.majflt, s.utime, s.stime), (12_345.0, 67.0, 1_500.0, 250.0));
        assert_eq!((s.threads, s.starttime, s.rss_pages), (37.0, 98_765.0, 25_600.0));
        let odd = "7 (a) b (c) S 1 1 1 0 -1 0 10 0 20 0 30 40 0 0 20 0 5 0 99 1000 50 0";
        let s = parse_pid_stat(odd).unwrap();
        assert_eq!((s.comm.as_str(), s.utime, s.threads), ("a) b (c", 30.0, 5.0));
        assert!(parse_pid_stat("7 (x) S 1").is_err());
    }

    #[test]
    fn finds_the_server_by_name_and_sums_its_figures() {
        let mut sink = Sink::default();
        let mut p = Process::new(vec!["mariadbd".into()], None);
        p.collect(&fixture::roots(), &mut sink).unwrap();
        assert_eq!(sink.value("proc.count"), Some(1.0));
        assert_eq!(sink.value("proc.cpu_user"), Some(1_500.0 / user_hz()));
        assert_eq!(sink.value("proc.rss"), Some(25_600.0 * rustix::param::page_size() as f64));
        assert_eq!(sink.value("proc.ctx_voluntary"), Some(900.0));
        assert_eq!(sink.value("proc.write_bytes"), Some(8_192_000.0));
        assert_eq!(sink.value("proc.open_fds"), Some(3.0));
    }

    #[test]
    fn a_missing_server_reports_zero_processes() {
        let mut sink = Sink::default();
        Process::new(vec!["observer".into()], None).collect(&fixture::roots(), &mut sink).unwrap();
        assert_eq!(sink.value("proc.count"), Some(0.0));
        assert_eq!(sink.value("proc.cpu_user"), None);
    }
}
