//! Memory and swap from /proc/meminfo (values in bytes).

use super::{read, CollectError, Collector, Roots, Sink};

/// meminfo keys exported, with their metric names.
const KEYS: [(&str, &str); 17] = [
    ("MemTotal", "mem.total"),
    ("MemFree", "mem.free"),
    ("MemAvailable", "mem.available"),
    ("Buffers", "mem.buffers"),
    ("Cached", "mem.cached"),
    ("Dirty", "mem.dirty"),
    ("Writeback", "mem.writeback"),
    ("Shmem", "mem.shmem"),
    ("Slab", "mem.slab"),
    ("AnonPages", "mem.anon"),
    ("Mapped", "mem.mapped"),
    ("Committed_AS", "mem.committed"),
    ("CommitLimit", "mem.commit_limit"),
    ("SwapTotal", "mem.swap_total"),
    ("SwapFree", "mem.swap_free"),
    ("SwapCached", "mem.swap_cached"),
    ("HugePages_Total", "mem.hugepages_total"),
];

/// `key: value [kB]` lines; kB values are converted to bytes.
pub(crate) fn parse_meminfo(text: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(':') else { continue };
        let mut f = rest.split_ascii_whitespace();
        let v: f64 = f
            .next()
            .ok_or_else(|| format!("{k}: no value"))?
            .parse()
            .map_err(|_| format!("{k}: bad value"))?;
        let v = if f.next() == Some("kB") { v * 1024.0 } else { v };
        out.push((k.trim().to_owned(), v));
    }
    if out.is_empty() {
        return Err("no fields".into());
    }
    Ok(out)
}

pub(crate) struct Memory;

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let fields = parse_meminfo(&read(&roots.proc, "meminfo")?)
            .map_err(|e| CollectError::parse(&roots.proc.join("meminfo"), e))?;
        for (k, v) in fields {
            if let Some((_, name)) = KEYS.iter().find(|(key, _)| *key == k) {
                let unit = if k.starts_with("HugePages") { "count" } else { "bytes" };
                sink.gauge(name, unit, v);
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
    fn parses_fixture_meminfo_in_bytes() {
        let f = parse_meminfo(&fixture::text("proc/meminfo")).unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|p| p.1);
        assert_eq!(get("MemTotal"), Some(24_634_048.0 * 1024.0));
        assert_eq!(get("HugePages_Total"), Some(0.0));
        assert!(get("MemAvailable").is_some());
        assert!(parse_meminfo("MemTotal: lots kB\n").is_err());
    }
}
