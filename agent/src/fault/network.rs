//! Network faults, egress only, built from validated values (never from
//! text a user typed):
//!
//! - `network_loss`: one iptables chain per fault in the mangle table,
//!   jumped to from POSTROUTING for the interface, whose rule sends a random
//!   share of matching IPv4 packets (`-m statistic --mode random`) to an
//!   NFQUEUE where the agent drops them. The drop is silent, as on a lossy
//!   link: the sender learns of it only from missing acknowledgements and
//!   retransmits. A drop anywhere on the local output path (an nftables or
//!   tc drop, a full qdisc) is reported back to the sending socket instead
//!   (`NET_XMIT_DROP`): TCP then re-sends at once without a retransmission
//!   or a timeout, and the "loss" acts as a throttle. POSTROUTING comes after
//!   the delay chain's OUTPUT, so loss and delay compose on one node.
//! - `network_bandwidth`: an htb root qdisc with this agent's handle `7a01:`
//!   on the interface, limiting everything but the control connection; revert
//!   is one `tc qdisc del`.
//! - `network_delay`: one iptables chain per fault in the mangle table, jumped
//!   to from OUTPUT for the interface, whose rule sends matching IPv4 packets
//!   to an NFQUEUE that the agent holds them in (see [`super::nfqueue`]).
//!   This kind of kernel has neither `sch_netem` nor nftables' `queue`, but
//!   has the xtables NFQUEUE target.
//!
//! The connection to the coordinator is always excluded, so a fault never
//! cuts the agent off from the revert that ends it.

// Runs tc, iptables, ip and unshare, each with an argument vector.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use super::FaultError;

/// The root qdisc handle this agent owns.
pub(super) const TC_HANDLE: &str = "7a01:";
/// Root qdiscs the kernel sets up by itself; replacing one loses nothing.
const DEFAULT_QDISCS: [&str; 5] = ["noqueue", "pfifo_fast", "fq_codel", "mq", "fq"];

/// Runs a program with an argument vector (and optional stdin); its stderr
/// becomes the error.
pub(super) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, FaultError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FaultError::Spawn(format!("{program}: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| FaultError::Spawn(format!("{program}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| FaultError::Spawn(format!("{program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FaultError::Spawn(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether this process may change network settings (CAP_NET_ADMIN).
pub fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// Runs `steps` (argument vectors, in order, until one fails) in a
/// throwaway network namespace, so the host's interfaces and rules are never
/// touched: this program's hidden `probe-steps` command, started in an
/// anonymous namespace (`unshare --net`) that goes away with the process
/// even if the agent is killed mid-probe; in a named one where `unshare`
/// is missing. No shell is involved: each step is run as a vector.
fn in_throwaway_netns(exe: &Path, steps: &[&[&str]]) -> bool {
    let Ok(json) = serde_json::to_string(steps) else { return false };
    let exe = exe.display().to_string();
    let argv = [exe.as_str(), "probe-steps", "--steps", json.as_str()];
    let mut unshare = vec!["--net", "--"];
    unshare.extend(argv);
    match Command::new("unshare")
        .args(&unshare)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) => s.success(),
        Err(_) => {
            let ns = format!("ddprobe{}", std::process::id());
            if run("ip", &["netns", "add", &ns], None).is_err() {
                return false;
            }
            let mut exec = vec!["netns", "exec", ns.as_str()];
            exec.extend(argv);
            let ok = run("ip", &exec, None).is_ok();
            let _ = run("ip", &["netns", "del", &ns], None);
            ok
        }
    }
}

/// The hidden `probe-steps` command: runs each argument vector of `steps`
/// (a JSON array of arrays) in order; success when all succeed.
pub fn run_probe_steps(steps: &str) -> bool {
    let Ok(steps) = serde_json::from_str::<Vec<Vec<String>>>(steps) else { return false };
    steps.iter().all(|step| match step.split_first() {
        Some((program, args)) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(program, &args, None).is_ok()
        }
        None => false,
    })
}

/// Whether the kernel has `sch_netem` (tried on a throwaway loopback).
pub(super) fn netem_available(exe: &Path) -> bool {
    in_throwaway_netns(
        exe,
        &[
            &["ip", "link", "set", "lo", "up"],
            &["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
        ],
    )
}

/// Whether iptables' `statistic` match works (tried in a throwaway namespace).
fn statistic_available(exe: &Path) -> bool {
    in_throwaway_netns(
        exe,
        &[&[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "POSTROUTING",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.5",
            "-j",
            "RETURN",
        ]],
    )
}

/// tc argument vectors for a delay with netem: a prio root qdisc with this
/// agent's handle whose priomap sends everything to band 1, netem on band 3,
/// and u32 filters steering what matches to band 3 — after one that keeps the
/// control connection on band 1. IPv4 only.
pub(super) fn netem_delay_steps(
    iface: &str,
    latency_ms: u32,
    jitter_ms: u32,
    peers: &[String],
    ports: &[u16],
    control: Option<SocketAddr>,
) -> Result<Vec<Vec<String>>, FaultError> {
    validate_iface(iface)?;
    let peers = peers.iter().map(|p| parse_peer(p)).collect::<Result<Vec<_>, _>>()?;
    if peers.iter().any(|(ip, _)| ip.is_ipv6()) {
        return Err(FaultError::Unsupported("network_delay for IPv6 peers".into()));
    }
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let mut steps = vec![s(&[
        "qdisc", "add", "dev", iface, "root", "handle", TC_HANDLE, "prio", "bands", "3", "priomap",
    ])];
    steps[0].extend(std::iter::repeat_n("0".to_owned(), 16));
    steps.push(s(&[
        "qdisc",
        "add",
        "dev",
        iface,
        "parent",
        "7a01:3",
        "handle",
        "7a02:",
        "netem",
        "delay",
        &format!("{latency_ms}ms"),
        &format!("{jitter_ms}ms"),
    ]));
    let filter = |prio: &str, matches: &[String], flow: &str| {
        let mut f = s(&[
            "filter", "add", "dev", iface, "parent", TC_HANDLE, "protocol", "ip", "prio", prio,
            "u32",
        ]);
        if matches.is_empty() {
            f.extend(s(&["match", "u32", "0", "0"]));
        }
        f.extend(matches.iter().cloned());
        f.extend(s(&["flowid", flow]));
        f
    };
    if let Some(SocketAddr::V4(c)) = control {
        steps.push(filter(
            "1",
            &s(&[
                "match",
                "ip",
                "dst",
                &format!("{}/32", c.ip()),
                "match",
                "ip",
                "dport",
                &c.port().to_string(),
                "0xffff",
            ]),
            "7a01:1",
        ));
    }
    let dests: Vec<Vec<String>> = if peers.is_empty() {
        vec![Vec::new()]
    } else {
        peers.iter().map(|(ip, l)| s(&["match", "ip", "dst", &format!("{ip}/{l}")])).collect()
    };
    let port_matches: Vec<Vec<String>> = if ports.is_empty() {
        vec![Vec::new()]
    } else {
        ports.iter().map(|p| s(&["match", "ip", "dport", &p.to_string(), "0xffff"])).collect()
    };
    for d in &dests {
        for p in &port_matches {
            let m: Vec<String> = d.iter().chain(p.iter()).cloned().collect();
            steps.push(filter("2", &m, "7a01:3"));
        }
    }
    Ok(steps)
}

/// tc argument vectors for a bandwidth limit: an htb root qdisc with this
/// agent's handle, the limit on the default class, and an unshaped class the
/// control connection is filtered into.
pub(super) fn bandwidth_steps(
    iface: &str,
    rate_kbit: u64,
    control: Option<SocketAddr>,
) -> Result<Vec<Vec<String>>, FaultError> {
    validate_iface(iface)?;
    let rate = format!("{rate_kbit}kbit");
    let mut v = vec![
        ["qdisc", "add", "dev", iface, "root", "handle", TC_HANDLE, "htb", "default", "10"]
            .map(String::from)
            .to_vec(),
        [
            "class", "add", "dev", iface, "parent", TC_HANDLE, "classid", "7a01:10", "htb", "rate",
            &rate, "ceil", &rate,
        ]
        .map(String::from)
        .to_vec(),
        [
            "class", "add", "dev", iface, "parent", TC_HANDLE, "classid", "7a01:20", "htb", "rate",
            "10gbit",
        ]
        .map(String::from)
        .to_vec(),
    ];
    if let Some(SocketAddr::V4(c)) = control {
        let dst = format!("{}/32", c.ip());
        let port = c.port().to_string();
        v.push(
            [
                "filter", "add", "dev", iface, "parent", TC_HANDLE, "protocol", "ip", "prio", "1",
                "u32", "match", "ip", "dst", &dst, "match", "ip", "dport", &port, "0xffff",
                "flowid", "7a01:20",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    Ok(v)
}

/// Runs tc steps on `iface`; on failure removes what was installed.
pub(super) fn apply_tc(iface: &str, steps: &[Vec<String>]) -> Result<(), FaultError> {
    for args in steps {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = run("tc", &refs, None) {
            let _ = remove_qdisc(iface);
            return Err(e);
        }
    }
    Ok(())
}

/// Each network fault type, and whether it works here (tools present,
/// CAP_NET_ADMIN, the kernel's pieces) or why not.
pub(super) fn probe(exe: &Path) -> Vec<(&'static str, Result<(), String>)> {
    const NET: [&str; 3] = ["network_delay", "network_loss", "network_bandwidth"];
    if !has_net_admin() {
        let why = "the agent lacks CAP_NET_ADMIN (run it as root, or grant the capability: systemd/distdiag-agent.service)";
        return NET.iter().map(|k| (*k, Err(why.to_owned()))).collect();
    }
    let iptables = if run("iptables", &["-V"], None).is_err() {
        Err("iptables is not installed (Debian: iptables; make demo and scripts/install-deps.sh install it)".to_owned())
    } else if !super::nfqueue::available() {
        Err("the kernel's NFQUEUE (nfnetlink_queue) cannot be bound".to_owned())
    } else {
        Ok(())
    };
    let loss = iptables.clone().and_then(|()| {
        if statistic_available(exe) {
            Ok(())
        } else {
            Err("iptables' statistic match does not work here (xt_statistic)".to_owned())
        }
    });
    let tc = if run("tc", &["-V"], None).is_ok() {
        Ok(())
    } else {
        Err("tc is not installed (Debian: iproute2)".to_owned())
    };
    vec![("network_delay", iptables), ("network_loss", loss), ("network_bandwidth", tc)]
}

/// Interface names: what the kernel accepts (1-15 characters, no '/', no space).
pub(crate) fn validate_iface(name: &str) -> Result<(), FaultError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(FaultError::Invalid(format!("interface name {name:?} is not valid")))
    }
}

/// A peer: an address or a prefix (`10.0.0.0/24`), normalised.
fn parse_peer(p: &str) -> Result<(IpAddr, u8), FaultError> {
    let (addr, len) = match p.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (p, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| FaultError::Invalid(format!("peer {p:?} is not an IP address or prefix")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len =
        match len {
            Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| {
                FaultError::Invalid(format!("peer {p:?} has a bad prefix length"))
            })?,
            None => max,
        };
    Ok((ip, len))
}

/// The iptables chain of a delay or loss fault (chain names are at most 28
/// characters, fault ids up to 64): `DD-` and a hash of the id.
pub(super) fn fault_chain(id: &str) -> String {
    let h = id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("DD-{h:016x}")
}

/// Where a queue fault's chain is jumped to from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    /// Delay: first on the output path.
    Output,
    /// Loss: after routing, so after a delay's OUTPUT chain.
    Postrouting,
}

impl Hook {
    fn chain(self) -> &'static str {
        match self {
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

/// What a queue fault's rules match and where they send it.
pub(super) struct QueueMatch<'a> {
    pub kind: &'static str,
    pub iface: &'a str,
    pub hook: Hook,
    pub queue: u16,
    /// Share of matching packets queued (loss); all of them when None.
    pub share: Option<f64>,
    pub peers: &'a [String],
    pub ports: &'a [u16],
    pub control: Option<SocketAddr>,
}

/// iptables argument vectors that install a delay or loss fault, in order:
/// a chain that returns the control connection and sends matching packets
/// (or a random share of them) to NFQUEUE `queue` — or lets them pass when
/// nothing listens — and the jump to it from the hook for `iface`. IPv4
/// only.
pub(super) fn queue_rules(chain: &str, m: &QueueMatch<'_>) -> Result<Vec<Vec<String>>, FaultError> {
    validate_iface(m.iface)?;
    if m.ports.len() > 15 {
        return Err(FaultError::Invalid(format!("{} takes at most 15 ports", m.kind)));
    }
    let peers = m.peers.iter().map(|p| parse_peer(p)).collect::<Result<Vec<_>, _>>()?;
    if peers.iter().any(|(ip, _)| ip.is_ipv6()) {
        return Err(FaultError::Unsupported(format!("{} for IPv6 peers", m.kind)));
    }
    let (ports, iface, control) = (m.ports, m.iface, m.control);
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let mut rules = vec![s(&["-t", "mangle", "-N", chain])];
    if let Some(SocketAddr::V4(c)) = control {
        rules.push(s(&[
            "-t",
            "mangle",
            "-A",
            chain,
            "-d",
            &format!("{}/32", c.ip()),
            "-p",
            "udp",
            "--dport",
            &c.port().to_string(),
            "-j",
            "RETURN",
        ]));
    }
    let mut target = Vec::new();
    if let Some(share) = m.share {
        if !(share > 0.0 && share <= 1.0) {
            return Err(FaultError::Invalid(format!("{} share {share} is not in (0, 1]", m.kind)));
        }
        target.extend(s(&[
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &format!("{share:.6}"),
        ]));
    }
    target.extend(s(&["-j", "NFQUEUE", "--queue-num", &m.queue.to_string(), "--queue-bypass"]));
    let dests: Vec<Option<String>> = if peers.is_empty() {
        vec![None]
    } else {
        peers.iter().map(|(ip, l)| Some(format!("{ip}/{l}"))).collect()
    };
    let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    for d in &dests {
        let protos: Vec<Option<&str>> =
            if ports.is_empty() { vec![None] } else { vec![Some("tcp"), Some("udp")] };
        for proto in protos {
            let mut r = s(&["-t", "mangle", "-A", chain]);
            if let Some(d) = d {
                r.extend(s(&["-d", d]));
            }
            if let Some(p) = proto {
                r.extend(s(&["-p", p, "-m", "multiport", "--dports", &list]));
            }
            r.extend(target.iter().cloned());
            rules.push(r);
        }
    }
    rules.push(s(&["-t", "mangle", "-A", m.hook.chain(), "-o", iface, "-j", chain]));
    Ok(rules)
}

/// `rules` sending to queue `number` instead of the one they were built with.
pub(super) fn with_queue(rules: &[Vec<String>], number: u16) -> Vec<Vec<String>> {
    rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(at) = r.iter().position(|a| a == "--queue-num") {
                if let Some(n) = r.get_mut(at + 1) {
                    *n = number.to_string();
                }
            }
            r
        })
        .collect()
}

/// How the journal records a queue fault's chain: "IFACE CHAIN HOOK".
pub(super) fn recorded_chain(iface: &str, chain: &str, hook: Hook) -> String {
    format!("{iface} {chain} {}", hook.chain())
}

/// Installs a queue fault's rules (see [`queue_rules`]); on failure removes
/// what was installed.
pub(super) fn apply_queue_rules(rules: &[Vec<String>], recorded: &str) -> Result<(), FaultError> {
    for r in rules {
        let args: Vec<&str> = r.iter().map(String::as_str).collect();
        if let Err(e) = run("iptables", &args, None) {
            let _ = remove_queue_rules(recorded);
            return Err(e);
        }
    }
    Ok(())
}

/// Removes a queue fault's jump and chain, recorded as "IFACE CHAIN HOOK"
/// (or "IFACE CHAIN", a delay's OUTPUT jump, as earlier versions wrote).
pub(super) fn remove_queue_rules(recorded: &str) -> Result<(), FaultError> {
    let bad = || FaultError::Journal(format!("not a chain of this agent: {recorded:?}"));
    let mut parts = recorded.split(' ');
    let (Some(iface), Some(chain)) = (parts.next(), parts.next().filter(|c| c.starts_with("DD-")))
    else {
        return Err(bad());
    };
    let hook = match parts.next() {
        None | Some("OUTPUT") => "OUTPUT",
        Some("POSTROUTING") => "POSTROUTING",
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    validate_iface(iface)?;
    let gone = |m: &str| {
        m.contains("No chain")
            || m.contains("does not exist")
            || m.contains("Bad rule")
            || m.contains("No such file")
    };
    for args in [
        vec!["-t", "mangle", "-D", hook, "-o", iface, "-j", chain],
        vec!["-t", "mangle", "-F", chain],
        vec!["-t", "mangle", "-X", chain],
    ] {
        match run("iptables", &args, None) {
            Ok(_) => {}
            Err(FaultError::Spawn(m)) if gone(&m) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes a table recorded as "FAMILY NAME": loss faults of earlier
/// versions were nftables tables, and a journal may still name one.
pub(super) fn remove_table(table: &str) -> Result<(), FaultError> {
    let (family, name) = table
        .split_once(' ')
        .filter(|(f, n)| *f == "netdev" && n.starts_with("distdiag-"))
        .ok_or_else(|| FaultError::Journal(format!("not a table of this agent: {table:?}")))?;
    match run("nft", &["delete", "table", family, name], None) {
        Ok(_) => Ok(()),
        Err(FaultError::Spawn(m)) if m.contains("No such file") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The interface of the default IPv4 route, from /proc/net/route text.
pub(super) fn default_iface(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        (f.get(1) == Some(&"00000000")).then(|| f[0].to_owned())
    })
}

/// Checks that a bandwidth limit may go on `iface`: it exists, has no
/// bandwidth fault yet, and its root qdisc is a kernel default (replacing a
/// configured one would lose its settings). Runs before anything is recorded.
pub(super) fn check_root(iface: &str) -> Result<(), FaultError> {
    validate_iface(iface)?;
    let root = run("tc", &["qdisc", "show", "dev", iface, "root"], None)
        .map_err(|e| FaultError::Refused(e.to_string()))?;
    let kind = root.split_ascii_whitespace().nth(1).unwrap_or("");
    if root.contains(&format!(" {TC_HANDLE} ")) {
        return Err(FaultError::Refused(format!("{iface} already has a bandwidth fault")));
    }
    if !kind.is_empty() && !DEFAULT_QDISCS.contains(&kind) {
        return Err(FaultError::Refused(format!(
            "{iface} has a configured root qdisc ({kind}); not replacing it"
        )));
    }
    Ok(())
}

pub(super) fn remove_qdisc(iface: &str) -> Result<(), FaultError> {
    match run("tc", &["qdisc", "del", "dev", iface, "root", "handle", TC_HANDLE], None) {
        Ok(_) => Ok(()),
        Err(FaultError::Spawn(m))
            if m.contains("No such file")
                || m.contains("Cannot find")
                || m.contains("Invalid handle") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m<'a>(
        kind: &'static str,
        iface: &'a str,
        hook: Hook,
        share: Option<f64>,
        peers: &'a [String],
        ports: &'a [u16],
        control: Option<SocketAddr>,
    ) -> QueueMatch<'a> {
        QueueMatch { kind, iface, hook, queue: 31_000, share, peers, ports, control }
    }

    #[test]
    fn delay_rules_return_the_control_connection_first_and_queue_the_rest() {
        let control = Some("10.1.2.3:7400".parse().unwrap());
        let chain = fault_chain(&"x".repeat(64));
        assert!(chain.len() <= 28 && chain.starts_with("DD-"));
        assert_ne!(fault_chain("a"), fault_chain("b"));
        let peers = ["10.0.0.0/24".to_string()];
        let r = queue_rules(
            &chain,
            &m("network_delay", "eth0", Hook::Output, None, &peers, &[3306, 33060], control),
        )
        .unwrap();
        let lines: Vec<String> = r.iter().map(|v| v.join(" ")).collect();
        assert_eq!(lines[0], format!("-t mangle -N {chain}"));
        assert_eq!(
            lines[1],
            format!("-t mangle -A {chain} -d 10.1.2.3/32 -p udp --dport 7400 -j RETURN")
        );
        assert_eq!(lines[2], format!("-t mangle -A {chain} -d 10.0.0.0/24 -p tcp -m multiport --dports 3306,33060 -j NFQUEUE --queue-num 31000 --queue-bypass"));
        assert_eq!(lines[3], format!("-t mangle -A {chain} -d 10.0.0.0/24 -p udp -m multiport --dports 3306,33060 -j NFQUEUE --queue-num 31000 --queue-bypass"));
        assert_eq!(lines.last().unwrap(), &format!("-t mangle -A OUTPUT -o eth0 -j {chain}"));
        let v6 = ["fd00::1".to_string()];
        assert!(matches!(
            queue_rules(&chain, &m("network_delay", "eth0", Hook::Output, None, &v6, &[], None)),
            Err(FaultError::Unsupported(_))
        ));
        assert!(queue_rules(
            &chain,
            &m("network_delay", "eth 0", Hook::Output, None, &[], &[], None)
        )
        .is_err());
    }

    #[test]
    fn loss_rules_queue_a_random_share_after_routing() {
        let control = Some("10.1.2.3:7400".parse().unwrap());
        let chain = fault_chain("f1");
        let r = queue_rules(
            &chain,
            &m("network_loss", "eth0", Hook::Postrouting, Some(0.125), &[], &[], control),
        )
        .unwrap();
        let lines: Vec<String> = r.iter().map(|v| v.join(" ")).collect();
        assert_eq!(
            lines[1],
            format!("-t mangle -A {chain} -d 10.1.2.3/32 -p udp --dport 7400 -j RETURN")
        );
        assert_eq!(lines[2], format!("-t mangle -A {chain} -m statistic --mode random --probability 0.125000 -j NFQUEUE --queue-num 31000 --queue-bypass"));
        assert_eq!(lines.last().unwrap(), &format!("-t mangle -A POSTROUTING -o eth0 -j {chain}"));
        let moved: Vec<String> = with_queue(&r, 31_007).iter().map(|v| v.join(" ")).collect();
        assert_eq!(moved[2], lines[2].replace("--queue-num 31000", "--queue-num 31007"));
        assert_eq!((&moved[..2], &moved[3..]), (&lines[..2], &lines[3..]));
        assert_eq!(
            recorded_chain("eth0", &chain, Hook::Postrouting),
            format!("eth0 {chain} POSTROUTING")
        );
        for bad in [0.0, 1.5, f64::NAN] {
            assert!(
                queue_rules(
                    &chain,
                    &m("network_loss", "eth0", Hook::Postrouting, Some(bad), &[], &[], None)
                )
                .is_err(),
                "{bad}"
            );
        }
        let injected = ["10.0.0.1; flush".to_string()];
        assert!(queue_rules(
            &chain,
            &m("network_loss", "eth0", Hook::Postrouting, Some(0.1), &injected, &[], None)
        )
        .is_err());
        let wide = ["10.0.0.0/33".to_string()];
        assert!(queue_rules(
            &chain,
            &m("network_loss", "eth0", Hook::Postrouting, Some(0.1), &wide, &[], None)
        )
        .is_err());
        // What the journal holds is checked before any iptables call.
        for recorded in
            ["eth0 INPUT", "eth0 DD-1 FORWARD", "eth0 DD-1 OUTPUT extra", "bad iface DD-1"]
        {
            assert!(remove_queue_rules(recorded).is_err(), "{recorded}");
        }
    }

    #[test]
    fn tc_steps_keep_the_control_connection_out_of_the_fault() {
        let control = Some("10.1.2.3:7400".parse().unwrap());
        let n: Vec<String> =
            netem_delay_steps("eth0", 100, 10, &["10.0.0.0/24".into()], &[3306], control)
                .unwrap()
                .iter()
                .map(|v| v.join(" "))
                .collect();
        assert!(
            n[0].starts_with("qdisc add dev eth0 root handle 7a01: prio bands 3 priomap 0 0"),
            "{n:?}"
        );
        assert_eq!(n[1], "qdisc add dev eth0 parent 7a01:3 handle 7a02: netem delay 100ms 10ms");
        assert_eq!(n[2], "filter add dev eth0 parent 7a01: protocol ip prio 1 u32 match ip dst 10.1.2.3/32 match ip dport 7400 0xffff flowid 7a01:1");
        assert_eq!(n[3], "filter add dev eth0 parent 7a01: protocol ip prio 2 u32 match ip dst 10.0.0.0/24 match ip dport 3306 0xffff flowid 7a01:3");
        let all: Vec<String> = netem_delay_steps("eth0", 5, 0, &[], &[], None)
            .unwrap()
            .iter()
            .map(|v| v.join(" "))
            .collect();
        assert_eq!(
            all.last().unwrap(),
            "filter add dev eth0 parent 7a01: protocol ip prio 2 u32 match u32 0 0 flowid 7a01:3"
        );
        assert!(netem_delay_steps("eth0", 5, 0, &["fd00::1".into()], &[], None).is_err());
        let b: Vec<String> =
            bandwidth_steps("eth0", 8000, control).unwrap().iter().map(|v| v.join(" ")).collect();
        assert_eq!(
            b[1],
            "class add dev eth0 parent 7a01: classid 7a01:10 htb rate 8000kbit ceil 8000kbit"
        );
        assert!(
            b[3].ends_with("match ip dst 10.1.2.3/32 match ip dport 7400 0xffff flowid 7a01:20"),
            "{b:?}"
        );
    }

    #[test]
    fn finds_the_default_route_interface() {
        let route = "Iface\tDestination\tGateway\tFlags\nveth1\t0A000000\t00000000\t0001\neth0\t00000000\t0100000A\t0003\n";
        assert_eq!(default_iface(route), Some("eth0".into()));
        assert_eq!(default_iface("Iface\tDestination\n"), None);
    }
}
