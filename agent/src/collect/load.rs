//! Load averages and scheduler entity counts from /proc/loadavg.

use super::{read, CollectError, Collector, Roots, Sink};

#[derive(Debug, PartialEq)]
pub(crate) struct LoadAvg {
    pub(crate) avg: [f64; 3],
    pub(crate) runnable: f64,
    pub(crate) entities: f64,
}

pub(crate) fn parse_loadavg(text: &str) -> Result<LoadAvg, String> {
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    if f.len() < 4 {
        return Err("expected at least 4 fields".into());
    }
    let p = |s: &str| s.parse::<f64>().map_err(|_| format!("bad number {s:?}"));
    let (run, total) = f[3].split_once('/').ok_or("bad runnable/total field")?;
    Ok(LoadAvg { avg: [p(f[0])?, p(f[1])?, p(f[2])?], runnable: p(run)?, entities: p(total)? })
}

pub(crate) struct Load;

impl Collector for Load {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let l = parse_loadavg(&read(&roots.proc, "loadavg")?)
            .map_err(|e| CollectError::parse(&roots.proc.join("loadavg"), e))?;
        sink.gauge("load.avg1", "tasks", l.avg[0]);
        sink.gauge("load.avg5", "tasks", l.avg[1]);
        sink.gauge("load.avg15", "tasks", l.avg[2]);
        sink.gauge("load.runnable", "tasks", l.runnable);
        sink.gauge("load.entities", "tasks", l.entities);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn parses_fixture_loadavg() {
        let l = parse_loadavg(&fixture::text("proc/loadavg")).unwrap();
        assert_eq!(l, LoadAvg { avg: [0.65, 0.57, 0.40], runnable: 1.0, entities: 79.0 });
        assert!(parse_loadavg("0.1 0.2").is_err());
        assert!(parse_loadavg("a b c 1/2").is_err());
    }
}
