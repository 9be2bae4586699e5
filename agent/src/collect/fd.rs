//! System-wide file handles from /proc/sys/fs/file-nr.

use super::{num, read, CollectError, Collector, Roots, Sink};

/// (allocated, maximum)
pub(crate) fn parse_file_nr(text: &str) -> Result<(f64, f64), String> {
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    match f.as_slice() {
        [a, _, m] => Ok((num(a).ok_or("bad allocated")?, num(m).ok_or("bad max")?)),
        _ => Err("expected 3 fields".into()),
    }
}

pub(crate) struct Fd;

impl Collector for Fd {
    fn name(&self) -> &'static str {
        "fd"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let (alloc, max) = parse_file_nr(&read(&roots.proc, "sys/fs/file-nr")?)
            .map_err(|e| CollectError::parse(&roots.proc.join("sys/fs/file-nr"), e))?;
        sink.gauge("fd.allocated", "count", alloc);
        sink.gauge("fd.max", "count", max);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn parses_fixture_file_nr() {
        assert_eq!(parse_file_nr(&fixture::text("proc/sys/fs/file-nr")), Ok((303.0, 2_466_183.0)));
        assert!(parse_file_nr("1 2").is_err());
    }
}
