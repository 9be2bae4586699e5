//! Host CPU from /proc/stat: time per mode (total and per core), context
//! switches, interrupts, forks, runnable and blocked tasks.

use super::{num, read, user_hz, CollectError, Collector, Roots, Sink};

/// Mode names in /proc/stat column order (guest time is already in user).
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// Parsed /proc/stat.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stat {
    /// `None` for the whole-host line, `Some(n)` for core n; times in ticks.
    pub(crate) cpus: Vec<(Option<u32>, [f64; 8])>,
    pub(crate) ctxt: Option<f64>,
    pub(crate) intr: Option<f64>,
    pub(crate) forks: Option<f64>,
    pub(crate) running: Option<f64>,
    pub(crate) blocked: Option<f64>,
    pub(crate) btime: Option<f64>,
}

pub(crate) fn parse_stat(text: &str) -> Result<Stat, String> {
    let mut s = Stat::default();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(key) = f.next() else { continue };
        if let Some(core) = key.strip_prefix("cpu") {
            let id = if core.is_empty() {
                None
            } else {
                Some(core.parse::<u32>().map_err(|_| format!("bad cpu line {key:?}"))?)
            };
            let mut t = [0.0; 8];
            for (i, slot) in t.iter_mut().enumerate() {
                // Old kernels have fewer columns; missing ones are zero.
                *slot = match f.next() {
                    Some(v) => num(v).ok_or_else(|| format!("bad {} value on {key}", MODES[i]))?,
                    None => 0.0,
                };
            }
            s.cpus.push((id, t));
            continue;
        }
        let first = f.next().and_then(num);
        match key {
            "ctxt" => s.ctxt = first,
            "intr" => s.intr = first,
            "processes" => s.forks = first,
            "procs_running" => s.running = first,
            "procs_blocked" => s.blocked = first,
            "btime" => s.btime = first,
            _ => {}
        }
    }
    if !s.cpus.iter().any(|c| c.0.is_none()) {
        return Err("no aggregate cpu line".into());
    }
    Ok(s)
}

pub(crate) struct Cpu;

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let stat = parse_stat(&read(&roots.proc, "stat")?)
            .map_err(|e| CollectError::parse(&roots.proc.join("stat"), e))?;
        let hz = user_hz();
        for (id, times) in &stat.cpus {
            for (mode, ticks) in MODES.iter().zip(times) {
                let name = match id {
                    None => format!("cpu.{mode}"),
                    Some(n) => format!("cpu.{mode}:cpu{n}"),
                };
                sink.counter(&name, "seconds", ticks / hz);
            }
        }
        let cores = stat.cpus.iter().filter(|c| c.0.is_some()).count();
        sink.gauge("cpu.cores", "count", cores as f64);
        let pairs = [
            ("cpu.context_switches", stat.ctxt),
            ("cpu.interrupts", stat.intr),
            ("proc.forks", stat.forks),
        ];
        for (name, v) in pairs {
            if let Some(v) = v {
                sink.counter(name, "count", v);
            }
        }
        if let Some(v) = stat.running {
            sink.gauge("proc.running", "count", v);
        }
        if let Some(v) = stat.blocked {
            sink.gauge("proc.blocked", "count", v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn parses_fixture_stat() {
        let s = parse_stat(&fixture::text("proc/stat")).unwrap();
        assert_eq!(s.cpus.len(), 3);
        assert_eq!(s.cpus[0], (None, [46504.0, 0.0, 5177.0, 116085.0, 420.0, 0.0, 47.0, 68.0]));
        assert_eq!(s.cpus[2].0, Some(1));
        assert_eq!(s.cpus[2].1[0], 23853.0);
        assert_eq!(s.ctxt, Some(458604.0));
        assert_eq!(s.intr, Some(368515.0));
        assert_eq!(s.forks, Some(15026.0));
        assert_eq!((s.running, s.blocked), (Some(1.0), Some(0.0)));
        assert_eq!(s.btime, Some(1795361735.0));
    }

    #[test]
    fn short_cpu_lines_pad_with_zero_and_garbage_is_an_error() {
        let s = parse_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!(s.cpus[0].1, [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(parse_stat("cpu 1 x 3\n").is_err());
        assert!(parse_stat("intr 5\n").is_err());
    }
}
