//! Pressure stall information from /proc/pressure/{cpu,memory,io}, where the
//! kernel has it: total stall time counters, "some" and "full".

use super::{read, CollectError, Collector, Roots, Sink};

/// (some_total_us, full_total_us) of one pressure file.
pub(crate) fn parse_pressure(text: &str) -> Result<(Option<f64>, Option<f64>), String> {
    let mut out = (None, None);
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let kind = f.next();
        let total = f
            .find_map(|kv| kv.strip_prefix("total="))
            .map(|v| v.parse::<f64>().map_err(|_| format!("bad total {v:?}")))
            .transpose()?;
        match kind {
            Some("some") => out.0 = total,
            Some("full") => out.1 = total,
            _ => {}
        }
    }
    if out.0.is_none() {
        return Err("no 'some' line".into());
    }
    Ok(out)
}

pub(crate) struct Psi;

impl Collector for Psi {
    fn name(&self) -> &'static str {
        "psi"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        if !roots.proc.join("pressure").is_dir() {
            // Kernel without PSI: nothing to report, and nothing wrong.
            return Ok(());
        }
        for res in ["cpu", "memory", "io"] {
            let rel = format!("pressure/{res}");
            let (some, full) = parse_pressure(&read(&roots.proc, &rel)?)
                .map_err(|e| CollectError::parse(&roots.proc.join(&rel), e))?;
            if let Some(v) = some {
                sink.counter(&format!("psi.{res}_some"), "seconds", v / 1e6);
            }
            if let Some(v) = full {
                sink.counter(&format!("psi.{res}_full"), "seconds", v / 1e6);
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
    fn parses_fixture_pressure() {
        assert_eq!(
            parse_pressure(&fixture::text("proc/pressure/io")),
            Ok((Some(1_234_567.0), Some(1_000_000.0)))
        );
        assert_eq!(
            parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"),
            Ok((Some(5.0), None))
        );
        assert!(parse_pressure("full total=1\n").is_err());
    }
}
