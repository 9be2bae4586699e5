//! Network faults in real network namespaces: two namespaces joined by a
//! veth pair; the fault engine runs inside one of them (`ip netns exec …
//! distdiag-agent fault-run`); loss and bandwidth are measured by traffic
//! between the two. Traffic goes only to these namespaces' own addresses.
//! Where `ip`, `iptables`, `tc` or root are missing the tests fail under
//! `make test` and are skipped with the reason elsewhere (`support::skip`).

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::skip;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_distdiag-agent")
}

fn ok(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn out(cmd: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&Command::new(cmd).args(args).output().unwrap().stdout).into_owned()
}

/// Two namespaces `a` and `b` with a veth pair between them.
struct Pair {
    a: String,
    b: String,
    va: String,
    ip_b: String,
}

impl Pair {
    fn create(tag: &str) -> Option<Pair> {
        for (cmd, arg) in [("ip", "-V"), ("iptables", "-V"), ("tc", "-V"), ("python3", "--version")]
        {
            if !ok(cmd, &[arg]) {
                skip(&format!("{cmd} is not available"));
                return None;
            }
        }
        let n = std::process::id() % 10_000;
        let p = Pair {
            a: format!("dd{tag}a{n}"),
            b: format!("dd{tag}b{n}"),
            va: format!("v{tag}a{n}"),
            ip_b: format!("10.231.{}.2", n % 250),
        };
        if !ok("ip", &["netns", "add", &p.a]) {
            skip("cannot create network namespaces (not root?)");
            return None;
        }
        let vb = format!("v{tag}b{n}");
        let ip_a = format!("10.231.{}.1/24", n % 250);
        let ip_b = format!("{}/24", p.ip_b);
        must("ip", &["netns", "add", &p.b]);
        must("ip", &["link", "add", &p.va, "type", "veth", "peer", "name", &vb]);
        must("ip", &["link", "set", &p.va, "netns", &p.a]);
        must("ip", &["link", "set", &vb, "netns", &p.b]);
        must("ip", &["-n", &p.a, "addr", "add", &ip_a, "dev", &p.va]);
        must("ip", &["-n", &p.b, "addr", "add", &ip_b, "dev", &vb]);
        for (ns, dev) in [(&p.a, &p.va), (&p.b, &vb)] {
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        Some(p)
    }

    fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }

    /// Fraction of 2000 UDP datagrams from `a` that arrive in `b`.
    fn delivery(&self) -> f64 {
        const N: usize = 2000;
        let recv = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],9999));print('ready',flush=True)\ns.settimeout(5);n=0\ntry:\n  while True:\n    s.recv(64);n+=1;s.settimeout(1.0)\nexcept socket.timeout:\n  pass\nprint(n,flush=True)";
        let send = "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(int(sys.argv[2])):\n  s.sendto(b'x'*32,(sys.argv[1],9999))\n  if i%20==0: time.sleep(0.001)";
        let got: usize = self.exchange(recv, send, &[&N.to_string()]).parse().unwrap();
        got as f64 / N as f64
    }

    /// Runs Python `recv` in `b` (it prints `ready`, then one result line)
    /// and `send` in `a`, both given `b`'s address (`send` also `args`);
    /// returns the receiver's result.
    fn exchange(&self, recv: &str, send: &str, args: &[&str]) -> String {
        let mut r = self
            .cmd(&self.b, &["python3", "-c", recv, &self.ip_b])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(r.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let mut send_args = vec!["python3", "-c", send, &self.ip_b];
        send_args.extend(args);
        assert!(self.cmd(&self.a, &send_args).status().unwrap().success());
        let result = lines.next().unwrap().unwrap().trim().to_owned();
        r.wait().unwrap();
        result
    }

    /// TCP throughput from `a` to `b` over about two seconds, in bytes/s.
    fn throughput(&self) -> f64 {
        let recv = "import socket,sys,time\nl=socket.socket();l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);l.bind((sys.argv[1],9998));l.listen();print('ready',flush=True)\nc,_=l.accept();n=0;t0=None\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  if t0 is None: t0=time.time()\n  n+=len(d)\nprint(n/(time.time()-t0),flush=True)";
        let send = "import socket,sys,time\ns=socket.create_connection((sys.argv[1],9998));b=b'x'*16384;end=time.time()+2\nwhile time.time()<end: s.sendall(b)\ns.close()";
        self.exchange(recv, send, &[]).parse().unwrap()
    }

    /// A paced TCP send from `a` to `b`: 1000 bytes every millisecond for
    /// two seconds, slow enough that the link itself never drops.
    fn paced_send(&self) {
        let recv = "import socket,sys\nl=socket.socket();l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);l.bind((sys.argv[1],9996));l.listen();print('ready',flush=True)\nc,_=l.accept();n=0\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\nprint(n,flush=True)";
        let send = "import socket,sys,time\ns=socket.create_connection((sys.argv[1],9996));s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\nfor i in range(2000):\n  s.sendall(b'x'*1000);time.sleep(0.001)\ns.close()";
        let got: usize = self.exchange(recv, send, &[]).parse().unwrap();
        assert_eq!(got, 2_000_000, "TCP delivers everything, loss or not");
    }

    /// Median TCP round-trip time from `a` to an echo server in `b`, in ms.
    fn rtt_ms(&self) -> f64 {
        let server = "import socket,sys\nl=socket.socket();l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);l.bind((sys.argv[1],9997));l.listen();print('ready',flush=True)\nc,_=l.accept();c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\nwhile True:\n  d=c.recv(16)\n  if not d: break\n  c.sendall(d)";
        let client = "import socket,sys,time\ns=socket.create_connection((sys.argv[1],9997));s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1);r=[]\nfor i in range(25):\n  t=time.perf_counter();s.sendall(b'x');s.recv(16);r.append((time.perf_counter()-t)*1000)\ns.close();r.sort();print(r[len(r)//2])";
        let mut srv = self
            .cmd(&self.b, &["python3", "-c", server, &self.ip_b])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(srv.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let out = self.cmd(&self.a, &["python3", "-c", client, &self.ip_b]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        srv.wait().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// `distdiag-agent fault-run` inside namespace `a`; returns once applied.
    fn fault(&self, state: &Path, id: &str, spec: &str, duration_ms: u64) -> Child {
        self.fault_with(state, id, spec, duration_ms, None)
    }

    /// The same with a delay backend forced through a config file.
    fn fault_with(
        &self,
        state: &Path,
        id: &str,
        spec: &str,
        duration_ms: u64,
        delay_backend: Option<&str>,
    ) -> Child {
        let mut args = vec![exe().to_owned()];
        if let Some(b) = delay_backend {
            let cfg = state.join("agent.toml");
            std::fs::write(&cfg, format!("[fault]\ndelay_backend = \"{b}\"\n")).unwrap();
            args.extend(["-c".to_owned(), cfg.display().to_string()]);
        }
        args.extend(
            [
                "--state-dir",
                state.to_str().unwrap(),
                "fault-run",
                "--id",
                id,
                "--duration-ms",
                &duration_ms.to_string(),
                "--spec",
                spec,
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c =
            self.cmd(&self.a, &refs).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(id), "fault-run did not apply {id}: {line:?}");
        c
    }

    /// The mangle table of namespace `a`.
    fn mangle(&self) -> String {
        out("ip", &["netns", "exec", &self.a, "iptables", "-t", "mangle", "-S"])
    }

    /// Whether a loss fault's chain is jumped to after routing.
    fn has_loss(&self) -> bool {
        self.mangle().contains(&format!("-A POSTROUTING -o {} -j DD-", self.va))
    }

    /// TCP segments namespace `a` has retransmitted.
    fn retransmitted(&self) -> u64 {
        let snmp = out("ip", &["netns", "exec", &self.a, "cat", "/proc/net/snmp"]);
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
            panic!("no Tcp lines in {snmp}")
        };
        let at = names.split_whitespace().position(|n| n == "RetransSegs").unwrap();
        values.split_whitespace().nth(at).unwrap().parse().unwrap()
    }

    fn root_qdisc(&self) -> String {
        out("tc", &["-n", &self.a, "qdisc", "show", "dev", &self.va, "root"])
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = ok("ip", &["netns", "del", &self.a]);
        let _ = ok("ip", &["netns", "del", &self.b]);
    }
}

fn term(mut c: Child) {
    assert!(ok("kill", &["-TERM", &c.id().to_string()]));
    let s = c.wait().unwrap();
    assert!(s.success(), "fault-run exited with {s}");
}

#[test]
fn measured_network_loss_drops_the_requested_share_silently_and_leaves_no_chain() {
    let Some(p) = Pair::create("l") else { return };
    let state = tempfile::tempdir().unwrap();
    assert!(p.delivery() > 0.99, "the link loses packets before any fault");
    let quiet = p.retransmitted();
    p.paced_send();
    let clean = p.retransmitted() - quiet;
    let f = p.fault(
        state.path(),
        "loss30",
        &format!(
            r#"{{"network_loss":{{"percent":30.0,"interface":"{}","peers":[],"ports":[]}}}}"#,
            p.va
        ),
        60_000,
    );
    assert!(p.has_loss(), "{}", p.mangle());
    let lost = 1.0 - p.delivery();
    println!("network_loss 30 %: measured {:.1} % lost", lost * 100.0);
    assert!((lost - 0.30).abs() <= 0.05, "lost {lost:.3}, asked for 0.30");
    // As on a lossy link, the sending TCP is not told: it finds out from
    // missing acknowledgements and retransmits. (A drop reported back to
    // the socket would be re-sent at once and never counted.)
    let before = p.retransmitted();
    p.paced_send();
    let retransmitted = p.retransmitted() - before;
    println!("network_loss 30 %: a paced 2 s TCP send (2000 writes) retransmitted {retransmitted} segments ({clean} without the fault)");
    assert!(
        retransmitted >= 200 && retransmitted > 10 * clean.max(1),
        "{retransmitted} retransmissions under 30 % loss, {clean} without"
    );
    term(f);
    assert!(!p.mangle().contains("DD-"), "chain left after SIGTERM: {}", p.mangle());
    assert!(p.delivery() > 0.99);
}

#[test]
fn measured_network_delay_adds_the_configured_latency_through_nfqueue() {
    let Some(p) = Pair::create("d") else { return };
    let state = tempfile::tempdir().unwrap();
    let before = p.rtt_ms();
    let f = p.fault_with(state.path(), "delay", &format!(r#"{{"network_delay":{{"latency_ms":100,"jitter_ms":0,"interface":"{}","peers":[],"ports":[]}}}}"#, p.va), 60_000, Some("nfqueue"));
    assert!(out("ip", &["netns", "exec", &p.a, "iptables", "-t", "mangle", "-S", "OUTPUT"])
        .contains("-j DD-"));
    let during = p.rtt_ms();
    let added = during - before;
    println!(
        "network_delay 100 ms (NFQUEUE): TCP RTT {before:.2} ms -> {during:.2} ms (+{added:.1} ms)"
    );
    assert!((added - 100.0).abs() <= 20.0, "RTT rose by {added:.1} ms, asked for 100");
    term(f);
    let mangle = out("ip", &["netns", "exec", &p.a, "iptables", "-t", "mangle", "-S"]);
    assert!(!mangle.contains("DD-"), "chain left after SIGTERM: {mangle}");
    let after = p.rtt_ms();
    assert!(after < before + 20.0, "RTT after revert {after:.1} ms, before {before:.1} ms");
}

#[test]
fn measured_network_delay_through_netem_where_the_kernel_has_it() {
    let Some(p) = Pair::create("n") else { return };
    let probe = tempfile::tempdir().unwrap();
    let ns = format!("ddnetem{}", std::process::id());
    let has_netem = ok("ip", &["netns", "add", &ns])
        && ok("ip", &["-n", &ns, "link", "set", "lo", "up"])
        && ok("tc", &["-n", &ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]);
    let _ = ok("ip", &["netns", "del", &ns]);
    if !has_netem {
        // Not a missing prerequisite: a kernel without the module, on which
        // the agent probes the same way and picks NFQUEUE (tested above).
        println!("not applicable: this kernel has no sch_netem; network_delay uses the NFQUEUE backend (tested above)");
        return;
    }
    let before = p.rtt_ms();
    let f = p.fault_with(probe.path(), "netem", &format!(r#"{{"network_delay":{{"latency_ms":100,"jitter_ms":0,"interface":"{}","peers":[],"ports":[]}}}}"#, p.va), 60_000, Some("netem"));
    assert!(p.root_qdisc().contains("7a01:"));
    let added = p.rtt_ms() - before;
    println!("network_delay 100 ms (netem): TCP RTT +{added:.1} ms");
    assert!((added - 100.0).abs() <= 20.0, "RTT rose by {added:.1} ms, asked for 100");
    term(f);
    assert!(!p.root_qdisc().contains("7a01:"));
}

#[test]
fn measured_network_bandwidth_limits_throughput_and_leaves_no_qdisc() {
    let Some(p) = Pair::create("w") else { return };
    let state = tempfile::tempdir().unwrap();
    let before = p.throughput();
    let f = p.fault(
        state.path(),
        "bw",
        &format!(r#"{{"network_bandwidth":{{"rate_kbit":8000,"interface":"{}"}}}}"#, p.va),
        60_000,
    );
    assert!(p.root_qdisc().contains("7a01:"));
    let limited = p.throughput();
    println!(
        "network_bandwidth 8000 kbit/s: {:.0} kB/s (unlimited: {:.0} kB/s)",
        limited / 1e3,
        before / 1e3
    );
    assert!(
        (limited / 1e6 - 1.0).abs() <= 0.25,
        "measured {limited:.0} bytes/s, asked for 1000000"
    );
    term(f);
    assert!(!p.root_qdisc().contains("7a01:"), "qdisc left: {}", p.root_qdisc());
}

#[test]
fn network_faults_end_at_their_deadline_and_after_a_crash_at_the_next_start() {
    let Some(p) = Pair::create("c") else { return };
    let state = tempfile::tempdir().unwrap();
    // The deadline ends it by itself.
    let spec = format!(
        r#"{{"network_loss":{{"percent":50.0,"interface":"{}","peers":["10.231.0.0/16"],"ports":[]}}}}"#,
        p.va
    );
    let f = p.fault(state.path(), "short", &spec, 700);
    assert!(p.has_loss());
    let s = f.wait_with_output().unwrap();
    assert!(s.status.success());
    assert!(!p.mangle().contains("DD-"), "{}", p.mangle());
    // One agent per state directory: a second one is refused.
    let f = p.fault(state.path(), "crash", &spec, 60_000);
    let second = p
        .cmd(
            &p.a,
            &[
                exe(),
                "--state-dir",
                state.path().to_str().unwrap(),
                "fault-run",
                "--duration-ms",
                "1000",
                "--spec",
                &spec,
            ],
        )
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another agent"));
    assert!(p.has_loss(), "the refused second run touched the first one's fault");
    // SIGKILL: the rules survive the agent...
    let state_bw = tempfile::tempdir().unwrap();
    let bw = p.fault(
        state_bw.path(),
        "crashbw",
        &format!(r#"{{"network_bandwidth":{{"rate_kbit":1000,"interface":"{}"}}}}"#, p.va),
        60_000,
    );
    let state_delay = tempfile::tempdir().unwrap();
    let delay = p.fault(state_delay.path(), "crashdelay", &format!(r#"{{"network_delay":{{"latency_ms":50,"jitter_ms":10,"interface":"{}","peers":[],"ports":[]}}}}"#, p.va), 60_000);
    for mut c in [f, bw, delay] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    assert!(p.has_loss());
    assert!(p.root_qdisc().contains("7a01:"));
    assert!(p.mangle().contains(&format!("-A OUTPUT -o {} -j DD-", p.va)));
    // With nobody on the queues, traffic bypasses them instead of stalling.
    assert!(p.delivery() > 0.2, "a dead agent's delay and loss queues must not blackhole traffic");
    // ...until the next start reverts what the journal names.
    let started = Instant::now();
    for st in [state.path(), state_bw.path(), state_delay.path()] {
        term(p.fault(st, "next", r#"{"cpu_stress":{"workers":1,"load_percent":1}}"#, 60_000));
        let left = std::fs::read_dir(st.join("faults"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count();
        assert_eq!(left, 0);
    }
    assert!(!p.root_qdisc().contains("7a01:"), "{}", p.root_qdisc());
    assert!(!p.mangle().contains("DD-"), "{}", p.mangle());
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// What a fault run left behind: journal entries, files, stressors, rules.
fn leftovers(p: &Pair, state: &Path, runner: u32) -> Vec<String> {
    let mut left = Vec::new();
    let journal = std::fs::read_dir(state.join("faults"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0);
    if journal > 0 {
        left.push(format!("{journal} journal entries"));
    }
    if std::fs::read_dir(state.join("fault-disk")).is_ok_and(|mut d| d.next().is_some()) {
        left.push("disk stress files".into());
    }
    let me = runner.to_string();
    let workers = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.iter().any(|a| *a == b"stress-worker")
                && args.windows(2).any(|w| w[0] == b"--parent" && w[1] == me.as_bytes())
        })
        .count();
    if workers > 0 {
        left.push(format!("{workers} stressor processes"));
    }
    if p.mangle().contains("DD-") {
        left.push("iptables chain".into());
    }
    if p.root_qdisc().contains("7a01:") {
        left.push("qdisc".into());
    }
    left
}

#[test]
fn every_fault_leaves_nothing_behind_on_every_local_exit_path() {
    let Some(p) = Pair::create("m") else { return };
    let va = p.va.clone();
    let faults = [
        ("cpu_stress", r#"{"cpu_stress":{"workers":2,"load_percent":20}}"#.to_owned()),
        ("memory_stress", r#"{"memory_stress":{"size":{"bytes":33554432}}}"#.to_owned()),
        ("disk_stress", r#"{"disk_stress":{"workers":1,"bytes":4194304,"path":null}}"#.to_owned()),
        (
            "network_loss",
            format!(
                r#"{{"network_loss":{{"percent":20.0,"interface":"{va}","peers":[],"ports":[]}}}}"#
            ),
        ),
        (
            "network_bandwidth",
            format!(r#"{{"network_bandwidth":{{"rate_kbit":4000,"interface":"{va}"}}}}"#),
        ),
        (
            "network_delay",
            format!(
                r#"{{"network_delay":{{"latency_ms":30,"jitter_ms":5,"interface":"{va}","peers":[],"ports":[]}}}}"#
            ),
        ),
    ];
    let mut rows = Vec::new();
    for (kind, spec) in &faults {
        for path in ["deadline", "SIGTERM", "SIGKILL + restart"] {
            let state = tempfile::tempdir().unwrap();
            let f = p.fault(state.path(), "m", spec, if path == "deadline" { 600 } else { 60_000 });
            let runner = f.id();
            match path {
                "deadline" => assert!(f.wait_with_output().unwrap().status.success()),
                "SIGTERM" => term(f),
                _ => {
                    let mut f = f;
                    f.kill().unwrap();
                    f.wait().unwrap();
                    // Stressors die with the agent; the next start reverts the rest.
                    let end = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < end
                        && leftovers(&p, state.path(), runner)
                            .iter()
                            .any(|l| l.contains("stressor"))
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    term(p.fault(
                        state.path(),
                        "next",
                        r#"{"cpu_stress":{"workers":1,"load_percent":1}}"#,
                        60_000,
                    ));
                }
            }
            let left = leftovers(&p, state.path(), runner);
            rows.push(format!(
                "| {kind} | {path} | {} |",
                if left.is_empty() { "none".to_owned() } else { left.join(", ") }
            ));
        }
    }
    println!("| fault | exit path | left behind |\n|---|---|---|\n{}", rows.join("\n"));
    assert!(rows.iter().all(|r| r.ends_with("| none |")), "leftovers:\n{}", rows.join("\n"));
}
