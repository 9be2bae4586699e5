//! TCP: segment, retransmit, reset and open counters from /proc/net/snmp,
//! listen-queue and timeout counters from /proc/net/netstat, socket counts
//! from /proc/net/sockstat, and (optionally) sockets per state from
//! /proc/net/tcp and /proc/net/tcp6.

use std::collections::HashMap;

use super::{read, CollectError, Collector, Roots, Sink};

const SNMP: [(&str, &str, bool); 10] = [
    ("ActiveOpens", "tcp.active_opens", true),
    ("PassiveOpens", "tcp.passive_opens", true),
    ("AttemptFails", "tcp.attempt_fails", true),
    ("EstabResets", "tcp.estab_resets", true),
    ("CurrEstab", "tcp.curr_estab", false),
    ("InSegs", "tcp.in_segs", true),
    ("OutSegs", "tcp.out_segs", true),
    ("RetransSegs", "tcp.retrans_segs", true),
    ("InErrs", "tcp.in_errs", true),
    ("OutRsts", "tcp.out_rsts", true),
];

const NETSTAT: [(&str, &str); 6] = [
    ("ListenOverflows", "tcp.listen_overflows"),
    ("ListenDrops", "tcp.listen_drops"),
    ("TCPTimeouts", "tcp.timeouts"),
    ("TCPSynRetrans", "tcp.syn_retrans"),
    ("TCPAbortOnTimeout", "tcp.abort_on_timeout"),
    ("TCPAbortOnData", "tcp.abort_on_data"),
];

/// Socket states in /proc/net/tcp's hex `st` column order (1..=11).
const STATES: [&str; 11] = ["established", "syn_sent", "syn_recv", "fin_wait1", "fin_wait2", "time_wait", "close", "close_wait", "last_ack", "listen", "closing"];

/// Header/value line pairs (`Tcp: A B` / `Tcp: 1 2`) of /proc/net/snmp and
/// /proc/net/netstat, for one prefix.
pub(crate) fn parse_pairs(text: &str, prefix: &str) -> Result<HashMap<String, f64>, String> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(head), Some(vals)) = (lines.next(), lines.next()) else { return Err(format!("no {prefix} lines")) };
    let h: Vec<&str> = head.split_ascii_whitespace().skip(1).collect();
    let v: Vec<&str> = vals.split_ascii_whitespace().skip(1).collect();
    if h.len() != v.len() {
        return Err(format!("{prefix} header has {} fields, values {}", h.len(), v.len()));
    }
    // Values can be negative (MaxConn = -1).
    h.iter().zip(v).map(|(k, x)| x.parse::<f64>().map(|x| ((*k).to_owned(), x)).map_err(|_| format!("{prefix} {k}: bad value {x:?}"))).collect()
}

/// `TCP: inuse N orphan N tw N alloc N mem N` of /proc/net/sockstat.
pub(crate) fn parse_sockstat(text: &str) -> Result<HashMap<String, f64>, String> {
    let line = text.lines().find(|l| l.starts_with("TCP:")).ok_or("no TCP line")?;
    let f: Vec<&str> = line.split_ascii_whitespace().skip(1).collect();
    f.chunks(2)
        .map(|c| match c {
            [k, v] => v.parse::<f64>().map(|v| ((*k).to_owned(), v)).map_err(|_| format!("bad {k} value")),
            _ => Err("odd field count".into()),
        })
        .collect()
}

/// Adds the sockets of one /proc/net/tcp{,6} file to `counts` by state.
pub(crate) fn count_states(text: &str, counts: &mut [f64; 11]) -> Result<(), String> {
    for line in text.lines().skip(1) {
        let st = line.split_ascii_whitespace().nth(3).ok_or("short socket line")?;
        let n = u8::from_str_radix(st, 16).map_err(|_| format!("bad state {st:?}"))?;
        if (1..=11).contains(&n) {
            counts[usize::from(n) - 1] += 1.0;
        }
    }
    Ok(())
}

pub(crate) struct Tcp {
    states: bool,
}

impl Tcp {
    pub(crate) fn new(states: bool) -> Self {
        Tcp { states }
    }
}

impl Collector for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn collect(&mut self, roots: &Roots, sink: &mut Sink) -> Result<(), CollectError> {
        let p = &roots.proc;
        let snmp = parse_pairs(&read(p, "net/snmp")?, "Tcp:").map_err(|e| CollectError::parse(&p.join("net/snmp"), e))?;
        for (key, name, counter) in SNMP {
            if let Some(&v) = snmp.get(key) {
                if counter {
                    sink.counter(name, "count", v);
                } else {
                    sink.gauge(name, "count", v);
                }
            }
        }
        let ext = parse_pairs(&read(p, "net/netstat")?, "TcpExt:").map_err(|e| CollectError::parse(&p.join("net/netstat"), e))?;
        for (key, name) in NETSTAT {
            if let Some(&v) = ext.get(key) {
                sink.counter(name, "count", v);
            }
        }
        let sock = parse_sockstat(&read(p, "net/sockstat")?).map_err(|e| CollectError::parse(&p.join("net/sockstat"), e))?;
        for (key, name) in [("inuse", "tcp.sockets_inuse"), ("orphan", "tcp.sockets_orphan"), ("tw", "tcp.sockets_time_wait"), ("alloc", "tcp.sockets_alloc")] {
            if let Some(&v) = sock.get(key) {
                sink.gauge(name, "count", v);
            }
        }
        if self.states {
            let mut counts = [0.0; 11];
            for file in ["net/tcp", "net/tcp6"] {
                match read(p, file) {
                    Ok(text) => count_states(&text, &mut counts).map_err(|e| CollectError::parse(&p.join(file), e))?,
                    // No IPv6 on this host: fine.
                    Err(CollectError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound && file == "net/tcp6" => {}
                    Err(e) => return Err(e),
                }
            }
            for (state, n) in STATES.iter().zip(counts) {
                sink.gauge(&format!("tcp.state.{state}"), "count", n);
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
    fn parses_fixture_snmp_netstat_sockstat() {
        let snmp = parse_pairs(&fixture::text("proc/net/snmp"), "Tcp:").unwrap();
        assert_eq!(snmp["RetransSegs"], 12.0);
        assert_eq!(snmp["EstabResets"], 7.0);
        assert_eq!(snmp["MaxConn"], -1.0);
        let ext = parse_pairs(&fixture::text("proc/net/netstat"), "TcpExt:").unwrap();
        assert_eq!(ext["ListenOverflows"], 3.0);
        assert_eq!(ext["TCPTimeouts"], 5.0);
        let s = parse_sockstat(&fixture::text("proc/net/sockstat")).unwrap();
        assert_eq!((s["inuse"], s["tw"]), (4.0, 2.0));
        assert!(parse_pairs("Tcp: A B\nTcp: 1\n", "Tcp:").is_err());
    }

    #[test]
    fn counts_sockets_by_state_over_v4_and_v6() {
        let mut sink = Sink::default();
        Tcp::new(true).collect(&fixture::roots(), &mut sink).unwrap();
        // Fixture: tcp has 2 listen + 1 established + 1 time_wait; tcp6 has 1 listen + 1 established.
        assert_eq!(sink.value("tcp.state.listen"), Some(3.0));
        assert_eq!(sink.value("tcp.state.established"), Some(2.0));
        assert_eq!(sink.value("tcp.state.time_wait"), Some(1.0));
        assert_eq!(sink.value("tcp.state.close_wait"), Some(0.0));
        assert_eq!(sink.value("tcp.retrans_segs"), Some(12.0));
        assert_eq!(sink.value("tcp.curr_estab"), Some(2.0));
    }
}
