//! Block devices from /proc/diskstats: operations, bytes, time spent, I/O
//! time (utilisation) and queue. Only whole disks (those under /sys/block)
//! are reported; partitions and excluded prefixes are skipped. IOPS, await
//! and utilisation are derived from these counters by the coordinator.

use distdiag_common::catalog::sanitize_label;

use super::{num, read, CollectError, Collector, Roots, Sink};

/// Sector size /proc/diskstats counts in, whatever the device's own.
const SECTOR: f64 = 512.0;

#[derive(Debug, PartialEq)]
pub(crate) struct DiskStat {
    pub(crate) name: String,
    pub(crate) reads: f64,
    pub(crate) read_sectors: f64,
    pub(crate) read_ms: f64,
    pub(crate) writes: f64,
    pub(crate) write_sectors: f64,
    pub(crate) write_ms: f64,
    pub(crate) in_flight: f64,
    pub(crate) io_ms: f64,
    pub(crate) weighted_ms: f64,
}

pub(crate) fn parse_diskstats(text: &str) -> Result<Vec<DiskStat>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 14 {
            return Err(format!("line with {} fields: {line:?}", f.len()));
        }
        let n = |i: usize| num(f[i]).ok_or_else(|| format!("bad field {i} on {}", f[2]));
        out.push(DiskStat {
            name: f[2].to_owned(),
            reads: n(3)?,
            read_sectors: n(5)?,
            read_ms: n(6)?,
            writes: n(7)?,
            write_sectors: n(9)?,
            write_ms: n(10)?,
            in_flight: n(11)?,
            io_ms: n(12)?,
            weighted_ms: n(13)?,
        });
    }
    Ok(out)
}

pub(crate) struct Disk {
    exclude: Vec<String>,
}

impl Disk {
    pub(crate) fn new(exclude: Vec<String>) -> Self {
        Disk { exclude }
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let stats = parse_diskstats(&read(&roots.proc, "diskstats")?)
            .map_err(|e| CollectError::parse(&roots.proc.join("diskstats"), e))?;
        for d in stats {
            if self.exclude.iter().any(|p| d.name.starts_with(p.as_str()))
                || !roots.sys.join("block").join(&d.name).exists()
            {
                continue;
            }
            let dev = sanitize_label(&d.name);
            sink.counter(&format!("disk.reads:{dev}"), "ops", d.reads);
            sink.counter(&format!("disk.writes:{dev}"), "ops", d.writes);
            sink.counter(&format!("disk.read_bytes:{dev}"), "bytes", d.read_sectors * SECTOR);
            sink.counter(&format!("disk.write_bytes:{dev}"), "bytes", d.write_sectors * SECTOR);
            sink.counter(&format!("disk.read_time:{dev}"), "seconds", d.read_ms / 1000.0);
            sink.counter(&format!("disk.write_time:{dev}"), "seconds", d.write_ms / 1000.0);
            sink.counter(&format!("disk.io_time:{dev}"), "seconds", d.io_ms / 1000.0);
            sink.counter(
                &format!("disk.weighted_io_time:{dev}"),
                "seconds",
                d.weighted_ms / 1000.0,
            );
            sink.gauge(&format!("disk.in_flight:{dev}"), "ops", d.in_flight);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{fixture, Sink};

    #[test]
    fn parses_fixture_diskstats() {
        let d = parse_diskstats(&fixture::text("proc/diskstats")).unwrap();
        let vda = d.iter().find(|s| s.name == "vda").unwrap();
        assert_eq!((vda.reads, vda.read_sectors, vda.read_ms), (5123.0, 401_234.0, 2_311.0));
        assert_eq!((vda.writes, vda.write_sectors, vda.write_ms), (8_765.0, 1_923_456.0, 9_876.0));
        assert_eq!((vda.in_flight, vda.io_ms, vda.weighted_ms), (2.0, 7_654.0, 12_345.0));
        assert!(parse_diskstats("8 0 sda 1 2 3").is_err());
    }

    #[test]
    fn only_whole_disks_not_excluded_are_reported() {
        let mut sink = Sink::default();
        Disk::new(vec!["loop".into()]).collect(&fixture::roots(), &mut sink).unwrap();
        assert_eq!(sink.value("disk.read_bytes:vda"), Some(401_234.0 * 512.0));
        assert_eq!(sink.value("disk.io_time:vda"), Some(7.654));
        // vda1 is a partition (not under /sys/block), loop0 is excluded.
        assert_eq!(sink.value("disk.reads:vda1"), None);
        assert_eq!(sink.value("disk.reads:loop0"), None);
    }
}
