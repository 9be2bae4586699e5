//! Paging and swapping counters from /proc/vmstat.

use super::{num, read, CollectError, Collector, Roots, Sink};

const KEYS: [(&str, &str, &str); 9] = [
    ("pgfault", "vm.page_faults", "count"),
    ("pgmajfault", "vm.major_faults", "count"),
    ("pgpgin", "vm.page_in", "kbytes"),
    ("pgpgout", "vm.page_out", "kbytes"),
    ("pswpin", "vm.swap_in", "pages"),
    ("pswpout", "vm.swap_out", "pages"),
    ("oom_kill", "vm.oom_kills", "count"),
    ("pgsteal_kswapd", "vm.steal_kswapd", "pages"),
    ("pgsteal_direct", "vm.steal_direct", "pages"),
];

pub(crate) fn parse_vmstat(text: &str) -> Vec<(&str, f64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, num(v.trim())?))
        })
        .collect()
}

pub(crate) struct Vmstat;

impl Collector for Vmstat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let text = read(&roots.proc, "vmstat")?;
        let fields = parse_vmstat(&text);
        if fields.is_empty() {
            return Err(CollectError::parse(&roots.proc.join("vmstat"), "no fields"));
        }
        for (k, v) in fields {
            if let Some((_, name, unit)) = KEYS.iter().find(|(key, _, _)| *key == k) {
                sink.counter(name, unit, v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn parses_fixture_vmstat() {
        let text = fixture::text("proc/vmstat");
        let f = parse_vmstat(&text);
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|p| p.1);
        assert_eq!(get("pgfault"), Some(5_000_123.0));
        assert_eq!(get("pgmajfault"), Some(321.0));
        assert_eq!(get("oom_kill"), Some(0.0));
    }
}
