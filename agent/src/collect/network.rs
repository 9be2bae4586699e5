//! Network interfaces from /proc/net/dev: bytes, packets, errors and drops.

use distdiag_common::catalog::sanitize_label;

use super::{num, read, CollectError, Collector, Roots, Sink};

/// Column index (after the interface name) and metric suffix.
const COLUMNS: [(usize, &str, &str); 8] = [
    (0, "rx_bytes", "bytes"),
    (1, "rx_packets", "packets"),
    (2, "rx_errors", "packets"),
    (3, "rx_drops", "packets"),
    (8, "tx_bytes", "bytes"),
    (9, "tx_packets", "packets"),
    (10, "tx_errors", "packets"),
    (11, "tx_drops", "packets"),
];

pub(crate) fn parse_net_dev(text: &str) -> Result<Vec<(String, [f64; 16])>, String> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else { continue };
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        if f.len() < 16 {
            return Err(format!("{}: {} fields, expected 16", name.trim(), f.len()));
        }
        let mut v = [0.0; 16];
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = num(f[i]).ok_or_else(|| format!("{}: bad field {i}", name.trim()))?;
        }
        out.push((name.trim().to_owned(), v));
    }
    Ok(out)
}

pub(crate) struct Network {
    exclude: Vec<String>,
}

impl Network {
    pub(crate) fn new(exclude: Vec<String>) -> Self {
        Network { exclude }
    }
}

impl Collector for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let devs = parse_net_dev(&read(&roots.proc, "net/dev")?)
            .map_err(|e| CollectError::parse(&roots.proc.join("net/dev"), e))?;
        for (name, v) in devs {
            if self.exclude.iter().any(|p| name.starts_with(p.as_str())) {
                continue;
            }
            let ifname = sanitize_label(&name);
            for (col, suffix, unit) in COLUMNS {
                sink.counter(&format!("net.{suffix}:{ifname}"), unit, v[col]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{fixture, Sink};

    #[test]
    fn parses_fixture_net_dev() {
        let d = parse_net_dev(&fixture::text("proc/net/dev")).unwrap();
        let eth0 = &d.iter().find(|(n, _)| n == "eth0").unwrap().1;
        assert_eq!(
            (eth0[0], eth0[1], eth0[8], eth0[9]),
            (114_719_484.0, 5268.0, 319_167.0, 3475.0)
        );
        assert!(parse_net_dev("h\nh\n eth0: 1 2 3\n").is_err());
    }

    #[test]
    fn excluded_interfaces_are_skipped() {
        let mut sink = Sink::default();
        Network::new(vec!["ifb".into()]).collect(&fixture::roots(), &mut sink).unwrap();
        assert_eq!(sink.value("net.rx_bytes:eth0"), Some(114_719_484.0));
        assert_eq!(sink.value("net.tx_packets:lo"), Some(29.0));
        assert_eq!(sink.value("net.rx_bytes:ifb0"), None);
    }
}
