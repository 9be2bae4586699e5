//! `make bench`: the data path's performance figures, measured side by side
//! with the comparison tool in one run, printed as a Markdown table.
//!
//! (a) agent CPU and peak RSS for 1,000 collections vs Debian's
//!     prometheus-node-exporter serving 1,000 scrapes of the matching collectors;
//! (b) coordinator ingest rate with many simulated agents over real QUIC with
//!     mutual TLS, and bytes per stored value (synthetic series at 1 s spacing,
//!     and a real capture of this host at 1 s); the same synthetic series in
//!     Debian's Prometheus (promtool-written TSDB blocks) and VictoriaMetrics,
//!     bytes per sample on disk;
//! (c) reading one node's series over 1 h, from the store and through REST;
//! (d) the native `oltp_read_write` workload vs Debian's sysbench 1.0.20
//!     against the same MariaDB and the same seekdb: TPS and client CPU per
//!     transaction, equal tables, rows, threads and duration, runs taking
//!     turns in a rotating order after a warm-up run; native pipelined (the
//!     default) and one statement at a time;
//! (e) diagnosis: training the per-type XGBoost classifiers from Rust vs
//!     Python's xgboost on the same exported dataset (windows.csv) with the
//!     same parameters and rounds; ranking 100 nodes × 200 metrics;
//! (f) the dashboard's metrics page in Debian's Chromium over 10 simulated
//!     nodes × 60 metrics × 1 h of 1 s data seeded through ingest, fed live:
//!     time to an interactive chart and main-thread time per live update
//!     (Performance API, tests/web/dashboard.mjs perf);
//! (h) footprint: sysbench's oltp_read_write TPS on MariaDB with a real agent
//!     at 1 s and a coordinator probing it and ranking on every new sample on the
//!     same host (`FOOTPRINT_RANK=stride`: every 5 s stride only), against
//!     both frozen, in interleaved pairs (`FOOTPRINT_FREEZE=agent` or
//!     `coordinator` freezes only that one, the other running in both arms);
//! (i) detection: how soon after a fault's start its cause is ranked first
//!     with p ≥ 0.5, on the committed MariaDB recording, cross-validated,
//!     the model against the statistical scorer on the same dealings;
//! (g) `distdiag-bench soak` only: many simulated agents at 1 Hz for
//!     minutes, then kill -9 of the coordinator at random moments, and the
//!     count of every row afterwards (testbed/src/soak.rs).

// Runs the comparison tools (node_exporter, sysbench, python3) side by side.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use distdiag_agent::collect::{CollectConfig, Collectors, Sink};
use distdiag_diagnose::evaluate::DatasetExt;
use distdiag_store::{block, SeriesStore, SledStore, StoreConfig};
use distdiag_testbed::sim;
use distdiag_testbed::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Line {
    what: String,
    ours: String,
    theirs: String,
    ratio: String,
    goal: String,
}

fn line(what: &str, ours: String, theirs: String, ratio: String, goal: &str) -> Line {
    Line { what: what.into(), ours, theirs, ratio, goal: goal.into() }
}

/// (utime+stime seconds, VmHWM bytes) of a process.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> =
        stat.rsplit_once(')').map(|p| p.1).unwrap_or("").split_ascii_whitespace().collect();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let cpu = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, kb * 1024)
}

fn http_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// node_exporter's CPU seconds for `n` scrapes of the collectors matching
/// the agent's, and its peak RSS and bytes per scrape.
fn node_exporter_scrapes(ne: &str, n: u32) -> (f64, u64, usize) {
    let (port, _) = free_ports();
    let collectors = [
        "cpu",
        "stat",
        "loadavg",
        "meminfo",
        "vmstat",
        "diskstats",
        "netdev",
        "netstat",
        "sockstat",
        "tcpstat",
        "filefd",
        "pressure",
    ];
    let mut child = Command::new(ne)
        .arg(format!("--web.listen-address={port}"))
        .arg("--collector.disable-defaults")
        .args(collectors.iter().map(|c| format!("--collector.{c}")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(port).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (cpu0, _) = proc_usage(child.id());
    let mut bytes = 0;
    for _ in 0..n {
        bytes += http_get(port, "/metrics").len();
    }
    let (cpu1, rss) = proc_usage(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (cpu1 - cpu0, rss, bytes / n as usize)
}

/// `pairs` established loopback connections (two sockets each), held until
/// dropped: a database host's client connections, as the TCP collectors see them.
fn open_connections(pairs: usize) -> Vec<std::net::TcpStream> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let need = (pairs * 2 + 256) as u64;
    if lim.current.is_some_and(|c| c < need) {
        lim.current = Some(lim.maximum.map_or(need, |m| m.min(need)));
        let _ = setrlimit(Resource::Nofile, lim);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut v = Vec::with_capacity(pairs * 2);
    for _ in 0..pairs {
        let (Ok(c), Ok((s, _))) = (std::net::TcpStream::connect(addr), listener.accept()) else {
            break;
        };
        v.extend([c, s]);
    }
    v
}

fn agent_vs_node_exporter(lines: &mut Vec<Line>) {
    const N: u32 = 1000;
    // The agent as shipped (every TCP state once in 10 collections), and
    // with every state in every collection as node_exporter's tcpstat does.
    let run_agent = |config: Option<&std::path::Path>| -> serde_json::Value {
        let mut cmd = Command::new(bin("distdiag-agent"));
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let out =
            cmd.args(["collect-bench", "--count", &N.to_string()]).output().expect("run agent");
        serde_json::from_slice(&out.stdout).expect("agent bench JSON")
    };
    let tmp = tempfile::tempdir().unwrap();
    let every1 = tmp.path().join("agent.toml");
    std::fs::write(&every1, "[collect]\ntcp_states_every = 1\n").unwrap();
    let v = run_agent(None);
    let v1 = run_agent(Some(&every1));
    let (our_cpu, our_rss) =
        (v["cpu_seconds"].as_f64().unwrap(), v["peak_rss_bytes"].as_f64().unwrap());
    let cpu_every1 = v1["cpu_seconds"].as_f64().unwrap();
    let metrics = v["metrics"].as_u64().unwrap();

    let Some(ne) = ["/usr/bin/prometheus-node-exporter", "/usr/bin/node_exporter"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        lines.push(line(
            "agent CPU per 1,000 collections",
            format!("{our_cpu:.3} s"),
            "node_exporter not installed".into(),
            "-".into(),
            "≤ 0.10×",
        ));
        return;
    };
    let (ne_cpu, ne_rss, scrape_bytes) = node_exporter_scrapes(ne, N);
    lines.push(line(
        &format!("agent CPU per 1,000 collections ({metrics} metrics) vs node_exporter 1,000 scrapes ({} KB each)", scrape_bytes / 1024),
        format!("{our_cpu:.3} s"),
        format!("{ne_cpu:.3} s"),
        format!("{:.3}", our_cpu / ne_cpu),
        "≤ 0.10",
    ));
    lines.push(line(
        "  same, with every TCP state in every collection (tcp_states_every = 1)",
        format!("{cpu_every1:.3} s"),
        format!("{ne_cpu:.3} s"),
        format!("{:.3}", cpu_every1 / ne_cpu),
        "-",
    ));
    // Where the agent's time goes: each collector's time (wall, in the
    // agent) per 1,000 collections, against the same node_exporter total.
    if let Some(per) = v["collector_seconds"].as_object() {
        let mut per: Vec<(&String, f64)> =
            per.iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect();
        per.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, secs) in per {
            lines.push(line(
                &format!("  collector {name} per 1,000 collections (wall) vs node_exporter"),
                format!("{secs:.3} s"),
                format!("{ne_cpu:.3} s"),
                format!("{:.3}", secs / ne_cpu),
                "-",
            ));
        }
    }
    lines.push(line(
        "agent peak RSS vs node_exporter",
        format!("{:.1} MB", our_rss / 1e6),
        format!("{:.1} MB", ne_rss as f64 / 1e6),
        format!("{:.2}", our_rss / ne_rss as f64),
        "≤ 15 MB",
    ));
    // A busy database host: thousands of client connections, which every
    // per-state count walks and reports socket by socket.
    let held = open_connections(2000);
    let busy = run_agent(None)["cpu_seconds"].as_f64().unwrap();
    let (ne_busy, _, busy_bytes) = node_exporter_scrapes(ne, N);
    lines.push(line(
        &format!(
            "agent CPU per 1,000 collections vs node_exporter, {} TCP sockets open ({} KB per scrape)",
            held.len(),
            busy_bytes / 1024
        ),
        format!("{busy:.3} s"),
        format!("{ne_busy:.3} s"),
        format!("{:.3}", busy / ne_busy),
        "≤ 0.10",
    ));
}

fn real_capture_bytes_per_value(seconds: u32) -> (f64, usize) {
    let mut c = Collectors::new(&CollectConfig::default());
    let mut sink = Sink::default();
    let mut rows: Vec<(i64, Vec<f64>)> = Vec::new();
    let start = Instant::now();
    for i in 0..seconds {
        c.collect(&mut sink);
        rows.push((distdiag_agent::now_ms(), sink.row(0).values));
        let next = start + Duration::from_secs(u64::from(i) + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let width = sink.catalog().len();
    let refs: Vec<(i64, &[f64])> = rows.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let bytes = block::encode(&refs).len();
    let values: usize = rows.iter().map(|r| r.1.iter().filter(|v| !v.is_nan()).count()).sum();
    (bytes as f64 / values as f64, width)
}

fn ingest_and_reads(lines: &mut Vec<Line>) {
    const AGENTS: usize = 16;
    const METRICS: usize = 200;
    const ROWS: usize = 3700;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let names: Vec<String> = (0..AGENTS).map(|i| format!("sim{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let certs = make_certs(&data.join("certs"), &refs);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &[]);
    let start_ts = distdiag_agent::now_ms() - 2 * 3_600_000;
    let spec = Arc::new(sim::SimSpec {
        metrics: METRICS,
        rows_per_batch: 25,
        window: 16,
        start_ts,
        target_rows: ROWS,
        live_rows: 0,
    });
    let acked = Arc::new(AtomicU64::new(0));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pid = coord_pid(&data);
    let (cpu0, _) = proc_usage(pid);
    let started = Instant::now();
    rt.block_on(async {
        let tasks = sim::spawn_agents(
            &tokio::runtime::Handle::current(),
            &names,
            &certs,
            quic,
            &spec,
            &acked,
            tmp.path(),
        );
        for t in tasks {
            t.await.unwrap();
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let (cpu1, coord_rss) = proc_usage(pid);
    let values = acked.load(Ordering::Relaxed) as f64;
    let prom = String::from_utf8_lossy(&http_get(api, "/metrics")).into_owned();
    let gauge = |name: &str| {
        prom.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    lines.push(line(
        &format!(
            "ingest, {AGENTS} simulated agents × {METRICS} metrics over QUIC+mTLS, ack after flush"
        ),
        format!("{:.0} values/s", values / secs),
        format!(
            "coordinator CPU {:.2} cores, RSS {:.0} MB",
            (cpu1 - cpu0) / secs,
            coord_rss as f64 / 1e6
        ),
        "-".into(),
        "≥ 1,000,000 values/s",
    ));
    let live_disk = gauge("distdiag_store_size_bytes");
    let live_wal = gauge("distdiag_store_wal_bytes");
    let encoded = gauge("distdiag_store_sealed_bytes") / gauge("distdiag_store_sealed_values");

    // (c) 1 h of one metric of one node, through REST.
    let to = start_ts + 3_600_000;
    let path =
        format!("/api/metrics?node=sim3&metric=m17&from={}&to={to}&rate=false", start_ts + 1);
    let body = http_get(api, &path);
    let text = String::from_utf8_lossy(&body);
    let json = text.split_once("\r\n\r\n").map(|p| p.1).unwrap_or("");
    let points =
        serde_json::from_str::<distdiag_api::metrics::Series>(json).map_or(0, |s| s.points.len());
    let mut rest = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        http_get(api, &path);
        rest.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    assert!(coord.stop().success());
    // After a clean stop everything is sealed and the log is gone.
    let du = |p: &std::path::Path| -> f64 {
        let out = Command::new("du")
            .arg("-sb")
            .arg(p)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    let (disk, wal_left) = (du(&data.join("store")), du(&data.join("store/wal")));
    lines.push(line(
        &format!(
            "bytes per stored value at 1 s ({:.1} M synthetic values, 16 nodes × 1 h), after a clean stop",
            values / 1e6
        ),
        format!("{:.3} on disk ({encoded:.3} encoded)", disk / values),
        "-".into(),
        "-".into(),
        "≤ 1.0",
    ));
    lines.push(line(
        "same, while running (incl. the write-ahead log)",
        format!("{:.3} on disk incl. {:.1} MB log", live_disk / values, live_wal / 1e6),
        "-".into(),
        "-".into(),
        "≤ 1.2",
    ));
    assert!(wal_left < 1e5, "write-ahead log left after a clean stop: {wal_left} bytes");
    let store = loop {
        if let Ok(s) = SledStore::open(&data.join("store"), StoreConfig::default()) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut direct = Vec::new();
    let mut n = 0;
    for _ in 0..50 {
        let t = Instant::now();
        n = store.query("sim3", "m17", start_ts + 1, to).unwrap().len();
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    lines.push(line(
        &format!("1 h range read of one series ({n} points), store"),
        format!("{:.2} ms median", med(&mut direct)),
        "-".into(),
        "-".into(),
        "< 10 ms",
    ));
    lines.push(line(
        &format!("1 h range read via REST ({points} points as JSON)"),
        format!("{:.2} ms median", med(&mut rest)),
        "-".into(),
        "-".into(),
        "-",
    ));
    eprintln!("    the same series in Prometheus and VictoriaMetrics ...");
    let ours = disk / values;
    let theirs = other_tsdbs(&store, &names, start_ts, tmp.path());
    for (name, bytes, samples) in theirs {
        let per = bytes as f64 / samples as f64;
        lines.push(line(
            &format!("bytes per sample on disk, same synthetic set: distdiag after stop vs {name}"),
            format!("{ours:.3}"),
            format!("{per:.3} ({samples} samples)"),
            format!("{:.2}", ours / per),
            "≤ 1.0",
        ));
    }
}

/// The store's series (every node, every metric, every row) stored by
/// Prometheus and by VictoriaMetrics: (what, bytes on disk, samples).
/// Prometheus: `promtool tsdb create-blocks-from openmetrics`, which writes
/// the compacted blocks its TSDB keeps long-term (its head and write-ahead
/// log, which hold the last two hours, take more). VictoriaMetrics: the
/// text import, then a flush, a forced merge and a clean stop, its data
/// and index directories then. Every sample is checked to have arrived.
fn other_tsdbs(
    store: &SledStore,
    nodes: &[String],
    from: i64,
    dir: &std::path::Path,
) -> Vec<(String, u64, u64)> {
    use distdiag_testbed::tsdb::{Kind, Receiver};
    // metric → lines of text exposition, ms timestamps.
    let mut by_metric: Vec<(String, Vec<u8>)> = Vec::new();
    let mut samples = 0u64;
    for node in nodes {
        let (catalog, rows) = store.range(node, from, i64::MAX).unwrap();
        if by_metric.is_empty() {
            by_metric = catalog.iter().map(|m| (m.name.clone(), Vec::new())).collect();
        }
        for (j, (name, text)) in by_metric.iter_mut().enumerate() {
            for (ts, vals) in &rows {
                if let Some(v) = vals.get(j).filter(|v| !v.is_nan()) {
                    writeln!(text, "{name}{{node=\"{node}\"}} {v} {ts}").unwrap();
                    samples += 1;
                }
            }
        }
    }
    let du = |p: &std::path::Path| -> u64 {
        let out = Command::new("du").arg("-sb").arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let mut out = Vec::new();

    // Prometheus: OpenMetrics wants seconds, each family's samples together.
    let om = dir.join("series.om");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&om).unwrap());
        for (_, text) in &by_metric {
            for l in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let l = std::str::from_utf8(l).unwrap();
                let (head, ms) = l.rsplit_once(' ').unwrap();
                let ms: i64 = ms.parse().unwrap();
                writeln!(f, "{head} {}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000)).unwrap();
            }
        }
        writeln!(f, "# EOF").unwrap();
    }
    let blocks = dir.join("prom-blocks");
    let st = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&blocks)
        .stdout(Stdio::null())
        .status()
        .expect("promtool (scripts/install-deps.sh installs prometheus)");
    assert!(st.success(), "promtool tsdb create-blocks-from failed");
    let _ = std::fs::remove_file(&om);
    let dump = Command::new("promtool").args(["tsdb", "analyze"]).arg(&blocks).output().unwrap();
    let analyzed = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(analyzed.contains("Block ID"), "promtool tsdb analyze: {analyzed}");
    let prom_samples: u64 = std::fs::read_dir(&blocks)
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("meta.json")).ok())
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m).ok())
        .filter_map(|m| m["stats"]["numSamples"].as_u64())
        .sum();
    assert_eq!(prom_samples, samples, "Prometheus blocks hold another number of samples");
    out.push(("Prometheus 2.42 TSDB blocks".to_owned(), du(&blocks), samples));

    // VictoriaMetrics.
    let mut vm = Receiver::start(Kind::Victoria, &dir.join("vm"));
    for (_, text) in &by_metric {
        let resp = http_request(vm.addr, "POST", "/api/v1/import/prometheus", text);
        assert!(
            resp.starts_with(b"HTTP/1.1 204") || resp.starts_with(b"HTTP/1.0 204"),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    }
    http_request(vm.addr, "GET", "/internal/force_flush", b"");
    let query = format!(
        "/api/v1/query?query=sum(count_over_time(%7Bnode%3D~%22sim.*%22%7D%5B3h%5D))&time={}&nocache=1",
        distdiag_store::now_ms() / 1000 + 1
    );
    let resp = http_request(vm.addr, "GET", &query, b"");
    let body = String::from_utf8_lossy(&resp);
    let counted = body
        .split("\"value\":[")
        .nth(1)
        .and_then(|v| v.split('"').nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(counted, Some(samples), "VictoriaMetrics answered {body}");
    // Its best size: merged, and settled (no force merge running and its
    // parts' size unchanged over a second), however soon the merge starts.
    http_request(vm.addr, "GET", "/internal/force_merge", b"");
    let parts_bytes = || {
        let m = http_request(vm.addr, "GET", "/metrics", b"");
        let m = String::from_utf8_lossy(&m).into_owned();
        let idle = m.lines().any(|l| l == "vm_active_force_merges 0");
        let size: f64 = m
            .lines()
            .filter(|l| l.starts_with("vm_data_size_bytes{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        (idle, size)
    };
    let mut last = parts_bytes().1;
    for _ in 0..120 {
        std::thread::sleep(Duration::from_secs(1));
        let (idle, size) = parts_bytes();
        if idle && size == last {
            break;
        }
        last = size;
    }
    vm.stop();
    // Its `cache` directory (5 MB here, written at the stop) is left out:
    // rebuilt when lost, not stored data.
    let vm_bytes = du(&dir.join("vm/data/data")) + du(&dir.join("vm/data/indexdb"));
    out.push((
        "VictoriaMetrics 1.79 (data and index, not its caches)".to_owned(),
        vm_bytes,
        samples,
    ));
    out
}

/// How soon the ranking names each fault of the committed MariaDB
/// recording (40 cases), cross-validated as `distdiag eval --folds 2
/// --repeats 3` does: every case ranked at each sample from its start, the
/// model against the statistical scorer on the same dealings.
fn detection(lines: &mut Vec<Line>) {
    use distdiag_testbed::campaign::{report_cv, CvOptions};
    let rel = std::path::Path::new("tests/fixtures/campaign-mariadb");
    let dir = if rel.is_dir() {
        rel.to_owned()
    } else {
        distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    };
    let (ds, _) = distdiag_dataset::Dataset::import_checked(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let opts = CvOptions { folds: 2, repeats: 3, ..CvOptions::default() };
    let r = report_cv(&ds, &opts, &Default::default(), &mut |_, _, _| {}).unwrap();
    let model = r.evaluation.model.expect("a model was trained").detection;
    let stat = r.evaluation.statistical.detection;
    let secs =
        |ms: Option<i64>| ms.map_or("never".to_owned(), |m| format!("{:.1} s", m as f64 / 1e3));
    let show = |d: &distdiag_api::eval::Detection| {
        format!(
            "median {}, p90 {}, {:.0} % within 6 s",
            secs(d.median_ms),
            secs(d.p90_ms),
            d.within_6s * 100.0
        )
    };
    lines.push(line(
        &format!(
            "fault start → its cause ranked first with p ≥ 0.5 for 5 s ({} cases, MariaDB recording, 2 folds × 3): model vs statistical scorer",
            model.cases
        ),
        show(&model),
        show(&stat),
        match (model.median_ms, stat.median_ms) {
            (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
            _ => "-".into(),
        },
        "≤ 6 s",
    ));
}

/// One HTTP/1.0 request; the whole response.
fn http_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: bench\r\nContent-Length: {}\r\n\r\n", body.len())
        .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn coord_pid(data: &std::path::Path) -> u32 {
    // The coordinator is our only child running with this data dir.
    let needle = data.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("distdiag-coordinator") && cmd.contains(&needle) {
            return pid;
        }
    }
    panic!("coordinator process not found");
}

/// CPU seconds this process and its waited-for children have used.
fn self_and_children_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .rsplit_once(')')
        .map(|p| p.1)
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0))
        .collect();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    ((f[11] + f[12]) / hz, (f[13] + f[14]) / hz)
}

/// (transactions, seconds, client CPU seconds, errors) of one native run.
fn native_oltp(
    rt: &tokio::runtime::Runtime,
    w: &Arc<distdiag_workload::Workloads>,
    o: &distdiag_workload::Options,
    threads: usize,
) -> (f64, f64, f64, f64) {
    use distdiag_workload::{Phase, WorkloadKind};
    let cpu0 = self_and_children_cpu().0;
    let run = rt
        .block_on(w.start(WorkloadKind::OltpReadWrite, threads, o.clone()))
        .expect("start native run");
    while run.phase() == Phase::Running {
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = self_and_children_cpu().0 - cpu0;
    let r = run.report(false);
    (r.totals.transactions as f64, r.elapsed_s, cpu, r.totals.errors as f64)
}

/// The same with sysbench as a child process.
fn sysbench_oltp(
    port: u16,
    tables: u32,
    size: u64,
    threads: usize,
    secs: u64,
) -> (f64, f64, f64, f64) {
    let cpu0 = self_and_children_cpu().1;
    let out = Command::new("sysbench")
        .arg("oltp_read_write")
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-user=root",
            "--mysql-db=distdiag",
            "--report-interval=0",
            "--mysql-ignore-errors=1213,1205,1020,6002,4012,4038",
        ])
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--tables={tables}"))
        .arg(format!("--table-size={size}"))
        .arg(format!("--threads={threads}"))
        .arg(format!("--time={secs}"))
        .arg("run")
        .output()
        .expect("run sysbench");
    let cpu = self_and_children_cpu().1 - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sysbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let txns = field("transactions:");
    let time = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("total time:"))
        .and_then(|v| v.trim().trim_end_matches('s').parse().ok())
        .unwrap_or(secs as f64);
    (txns, time, cpu, field("ignored errors:"))
}

/// The database's price of being watched: sysbench's oltp_read_write TPS on
/// MariaDB with a real agent collecting at 1 s and a coordinator probing the
/// database and ranking on every new sample (once a second) on the same host, against the same
/// with both frozen (SIGSTOP). Interleaved pairs, in alternating order so a
/// drift of the server cancels; the loss is the mean of the pairs' losses.
/// `FOOTPRINT_RANK=stride` ranks every 5 s stride only;
/// `FOOTPRINT_FREEZE=agent|coordinator` freezes that process only, to tell
/// which one the loss follows.
fn footprint(lines: &mut Vec<Line>) {
    use distdiag_workload::db::DialectKind;
    use distdiag_workload::{Options, WorkloadKind, Workloads};
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (pairs, secs) = (env("FOOTPRINT_PAIRS", 6) as usize, env("FOOTPRINT_SECONDS", 20));
    // Before anything starts: a panic further on would leave the agent
    // running, collecting through whatever is measured next.
    if Command::new("sysbench").arg("--version").output().is_err() {
        lines.push(line(
            "sysbench TPS, agent + coordinator watching vs frozen",
            "-".into(),
            "sysbench not installed".into(),
            "-".into(),
            "loss ≤ 0.5 %",
        ));
        return;
    }
    let (tables, size, threads) = (4u32, 10_000u64, 4usize);
    let server = distdiag_testbed::db::DbServer::start(DialectKind::Mysql);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn SeriesStore> =
            Arc::new(SledStore::open(&tmp.path().join("prep"), StoreConfig::default()).unwrap());
        let w = Workloads::new(vec![server.target("bench")], store);
        let o = Options { tables, table_size: size, ..Options::default() };
        let _enter = rt.enter();
        let (_, job) = w.prepare(WorkloadKind::OltpReadWrite, o).unwrap();
        rt.block_on(job).unwrap();
    }
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let conf = tmp.path().join("coordinator.toml");
    // FOOTPRINT_RANK=stride ranks every 5 s stride only (the condition
    // issue 29 names) instead of on every new sample (the default).
    let stride_only = std::env::var("FOOTPRINT_RANK").is_ok_and(|v| v == "stride");
    let ranking = if stride_only { "every 5 s stride" } else { "on every new sample" };
    let diag = if stride_only { "[diagnosis]\nrank_interval_ms = 5000\n" } else { "" };
    std::fs::write(&conf, format!("{}host_node = \"n1\"\n{diag}", server.config_toml("db1")))
        .unwrap();
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &["--config", conf.to_str().unwrap()]);
    let agent_cfg = agent_config("n1", &certs, quic, &tmp.path().join("agent"), 1000);
    let agent_toml = tmp.path().join("agent.toml");
    std::fs::write(&agent_toml, toml::to_string(&agent_cfg).unwrap()).unwrap();
    let mut agent = Command::new(bin("distdiag-agent"))
        .arg("--config")
        .arg(&agent_toml)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    // Ranking under way: the latest ranking names the agent's node.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !String::from_utf8_lossy(&http_get(api, "/api/anomaly/ranks")).contains("\"n1\"") {
        assert!(Instant::now() < deadline, "no ranking of n1 after 90 s:\n{}", coord.log_text());
        std::thread::sleep(Duration::from_secs(1));
    }
    let pids = [agent.id(), coord.pid().expect("coordinator running")];
    let (frozen_name, toggled) = match std::env::var("FOOTPRINT_FREEZE").as_deref() {
        Ok("agent") => ("the agent frozen, the coordinator running in both", &pids[..1]),
        Ok("coordinator") => ("the coordinator frozen, the agent running in both", &pids[1..]),
        Ok("both") | Err(_) => ("both frozen", &pids[..]),
        Ok(other) => panic!("FOOTPRINT_FREEZE={other}: expected agent, coordinator or both"),
    };
    let signal = |sig: &str| {
        for pid in toggled {
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
        }
    };
    let warm = sysbench_oltp(server.port, tables, size, threads, 10);
    eprintln!("     warm-up: {:.0} txn", warm.0);
    let (mut losses, mut tps_on, mut tps_off) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_agent, mut cpu_coord, mut on_secs) = (0.0, 0.0, 0.0);
    for i in 0..pairs {
        let mut pair = [0.0; 2];
        for watched in if i % 2 == 0 { [false, true] } else { [true, false] } {
            signal(if watched { "CONT" } else { "STOP" });
            // Let the coordinator catch up on what it missed while frozen.
            std::thread::sleep(Duration::from_secs(if watched { 5 } else { 1 }));
            let before = pids.map(|p| proc_usage(p).0);
            let (txn, t, _, _) = sysbench_oltp(server.port, tables, size, threads, secs);
            let after = pids.map(|p| proc_usage(p).0);
            let tps = txn / t;
            if watched {
                cpu_agent += after[0] - before[0];
                cpu_coord += after[1] - before[1];
                on_secs += t;
            }
            eprintln!("    pair {i}, {}: {tps:.1} TPS", if watched { "watched" } else { "frozen" });
            pair[usize::from(watched)] = tps;
        }
        tps_off.push(pair[0]);
        tps_on.push(pair[1]);
        losses.push(1.0 - pair[1] / pair[0]);
    }
    signal("CONT");
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let _ = agent.wait();
    assert!(coord.stop().success(), "coordinator: {}", coord.log_text());
    let n = losses.len() as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let m = mean(&losses);
    let sd = (losses.iter().map(|l| (l - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    lines.push(line(
        &format!(
            "sysbench oltp_read_write TPS on MariaDB, agent at 1 s + coordinator ranking {ranking} vs {frozen_name} ({pairs} interleaved pairs of {secs} s, {threads} threads; agent {:.1} %, coordinator {:.1} % of a core)",
            100.0 * cpu_agent / on_secs,
            100.0 * cpu_coord / on_secs
        ),
        format!("{:.1}", mean(&tps_on)),
        format!("{:.1}", mean(&tps_off)),
        format!("{:.4}", mean(&tps_on) / mean(&tps_off)),
        "loss ≤ 0.5 %",
    ));
    lines.push(line(
        "  TPS lost, mean of the pairs ± standard error",
        format!("{:.2} % ± {:.2}", 100.0 * m, 100.0 * sd / n.sqrt()),
        "paper: 1.17 % of TPM".into(),
        "-".into(),
        "≤ 0.5 %",
    ));
}

fn oltp_vs_sysbench(lines: &mut Vec<Line>, kinds: &[distdiag_workload::db::DialectKind]) {
    use distdiag_workload::db::DialectKind;
    use distdiag_workload::{Options, WorkloadKind, Workloads};
    if Command::new("sysbench").arg("--version").output().is_err() {
        lines.push(line(
            "native oltp_read_write vs sysbench",
            "-".into(),
            "sysbench not installed".into(),
            "-".into(),
            "≥ 1.0",
        ));
        return;
    }
    let (tables, size, threads, secs, rounds) = (4u32, 10_000u64, 4usize, 15u64, 3);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for &kind in kinds {
        let name =
            if kind == DialectKind::Mysql { "MariaDB 10.11" } else { "seekdb 1.4 (OceanBase)" };
        eprintln!("(d) oltp_read_write on {name} ...");
        let server = distdiag_testbed::db::DbServer::start(kind);
        let t = server.target("bench");
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SeriesStore> =
            Arc::new(SledStore::open(dir.path(), StoreConfig::default()).unwrap());
        let w = Workloads::new(vec![t.clone()], store);
        let o = Options {
            tables,
            table_size: size,
            duration_s: secs,
            report_interval_s: 1,
            ..Options::default()
        };
        let _enter = rt.enter();
        let (_, job) = w.prepare(WorkloadKind::OltpReadWrite, o.clone()).unwrap();
        rt.block_on(job).unwrap();
        // Pipelined (the default), one statement at a time (sysbench's
        // round trips) and sysbench, each round in another order: a run
        // leaves the server with work (purge, flushing) that slows the next.
        let sequential = Options { pipeline: false, ..o.clone() };
        // Not counted: the first run after a load warms the server's caches.
        let warm = native_oltp(&rt, &w, &sequential, threads);
        eprintln!("     warm-up: {:.0} txn in {:.1} s", warm.0, warm.1);
        let mut sums = [(0.0, 0.0, 0.0, 0.0); 3];
        for round in 0..rounds {
            for k in 0..3 {
                let which = (k + round) % 3;
                let n = match which {
                    0 => native_oltp(&rt, &w, &o, threads),
                    1 => native_oltp(&rt, &w, &sequential, threads),
                    _ => sysbench_oltp(server.port, tables, size, threads, secs),
                };
                eprintln!(
                    "    {:>10}: {:.0} txn in {:.1} s ({:.2} s client CPU, {} errors)",
                    ["pipelined", "sequential", "sysbench"][which],
                    n.0,
                    n.1,
                    n.2,
                    n.3
                );
                let a = &mut sums[which];
                *a = (a.0 + n.0, a.1 + n.1, a.2 + n.2, a.3 + n.3);
            }
        }
        let [piped, seq, theirs] = sums;
        let tps = |r: (f64, f64, f64, f64)| r.0 / r.1;
        let cpu = |r: (f64, f64, f64, f64)| r.2 / r.0 * 1e6;
        let setup = format!("{tables} tables × {size} rows, {threads} threads, {rounds}×{secs} s each, order rotated");
        for (mode, r) in [("pipelined", piped), ("one statement at a time", seq)] {
            lines.push(line(
                &format!("oltp_read_write TPS on {name}, {mode} ({setup})"),
                format!("{:.0}", tps(r)),
                format!("{:.0} (sysbench 1.0.20)", tps(theirs)),
                format!("{:.2}", tps(r) / tps(theirs)),
                "≥ 1.0",
            ));
            lines.push(line(
                &format!("client CPU per transaction on {name}, {mode}"),
                format!("{:.0} µs", cpu(r)),
                format!("{:.0} µs", cpu(theirs)),
                format!("{:.2}", cpu(r) / cpu(theirs)),
                "≤ 0.5",
            ));
        }
    }
}

/// Sections to run: all by default, or those named on the command line
/// (`agent`, `ingest`, `capture`, `detection`, `oltp`, `footprint`, `dashboard`, `training`, `ranking`;
/// `diagnosis` is the last two; `oltp-mariadb` and `oltp-seekdb` are
/// `oltp` on one server).
fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let run = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let mut lines = Vec::new();
    if run("agent") {
        eprintln!("(a) agent vs node_exporter ...");
        agent_vs_node_exporter(&mut lines);
    }
    if run("ingest") {
        eprintln!("(b, c) ingest and range reads ...");
        ingest_and_reads(&mut lines);
    }
    if run("detection") {
        eprintln!("detection latency on the committed MariaDB recording ...");
        detection(&mut lines);
    }
    if run("capture") {
        eprintln!("real host capture at 1 s for 60 s ...");
        let (bpv, width) = real_capture_bytes_per_value(60);
        lines.push(line(&format!("bytes per value, this host's real series at 1 s ({width} metrics, one 60-row block)"), format!("{bpv:.3}"), "-".into(), "-".into(), "≤ 0.5"));
    }

    {
        use distdiag_workload::db::DialectKind;
        let kinds: Vec<DialectKind> =
            [(DialectKind::Mysql, "oltp-mariadb"), (DialectKind::Oceanbase, "oltp-seekdb")]
                .into_iter()
                .filter(|(_, one)| run("oltp") || only.iter().any(|o| o == one))
                .map(|(k, _)| k)
                .collect();
        if !kinds.is_empty() {
            oltp_vs_sysbench(&mut lines, &kinds);
        }
    }
    if run("footprint") {
        eprintln!("footprint on the database: sysbench TPS watched vs not ...");
        footprint(&mut lines);
    }
    if run("dashboard") {
        eprintln!("(f) dashboard in Chromium: 10 nodes × 60 metrics × 1 h ...");
        dashboard(&mut lines);
    }
    if run("diagnosis") || run("training") {
        eprintln!("(e) diagnosis: training vs Python xgboost ...");
        training(&mut lines);
    }
    if run("diagnosis") || run("ranking") {
        eprintln!("(e) diagnosis: ranking 100 nodes × 200 metrics ...");
        ranking(&mut lines);
    }

    if only.iter().any(|o| o == "remote-write") {
        eprintln!("remote write: overhead on ingest, delivery to VictoriaMetrics ...");
        remote_write(&mut lines);
    }
    // Not in the default run: it takes the steady period plus the kills.
    if only.iter().any(|o| o == "soak") && !soak(&mut lines) {
        print_lines(lines);
        eprintln!("soak: rows were lost or changed");
        std::process::exit(1);
    }
    print_lines(lines);
}

fn print_lines(lines: Vec<Line>) {
    println!("| measurement | distdiag | comparison | ratio | goal |");
    println!("|---|---|---|---|---|");
    for l in lines {
        println!("| {} | {} | {} | {} | {} |", l.what, l.ours, l.theirs, l.ratio, l.goal);
    }
}

/// `distdiag-bench soak`: simulated agents against a coordinator, steady
/// then under SIGKILLs (testbed/src/soak.rs). SOAK_AGENTS (1000),
/// SOAK_METRICS (200), SOAK_SECONDS of steady load (600), SOAK_KILLS (20);
/// SOAK_KEEP keeps the coordinator's directory (its log, its store);
/// SOAK_CONFIG names a coordinator configuration file to run with.
/// False when a row was lost, changed or made up.
fn soak(lines: &mut Vec<Line>) -> bool {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let spec = distdiag_testbed::soak::SoakSpec {
        agents: env("SOAK_AGENTS", 1000) as usize,
        metrics: env("SOAK_METRICS", 200) as usize,
        steady: Duration::from_secs(env("SOAK_SECONDS", 600)),
        kills: env("SOAK_KILLS", 20) as usize,
        seed: env("SOAK_SEED", 1),
        config: std::env::var_os("SOAK_CONFIG").map(Into::into),
    };
    eprintln!(
        "soak: {} agents × {} metrics at 1 Hz, {} s steady, then {} kills ...",
        spec.agents,
        spec.metrics,
        spec.steady.as_secs(),
        spec.kills
    );
    let tmp = tempfile::Builder::new().prefix("distdiag-soak").tempdir_in("/var/tmp").unwrap();
    let r = distdiag_testbed::soak::run(&spec, tmp.path());
    if std::env::var_os("SOAK_KEEP").is_some() {
        eprintln!("soak: kept {}", tmp.keep().display());
    }
    let load = format!("{} agents × {} metrics at 1 Hz", r.agents, r.metrics);
    lines.push(line(
        &format!("soak, {load}, {:.0} s steady: coordinator", r.steady_s),
        format!(
            "RSS {:.0} MB (peak {:.0} MB), CPU {:.2} cores",
            r.rss_end_bytes as f64 / 1e6,
            r.rss_peak_bytes as f64 / 1e6,
            r.cpu_cores
        ),
        "-".into(),
        "-".into(),
        "RSS < 1 GB",
    ));
    lines.push(line(
        &format!("soak, {load}: ingest and acknowledgement after fdatasync"),
        format!(
            "{:.0} values/s; ack p50 {:.1} ms, p99 {:.1} ms ({} acks)",
            r.values_per_s, r.ack_p50_ms, r.ack_p99_ms, r.acks_measured
        ),
        "-".into(),
        "-".into(),
        "-",
    ));
    lines.push(line(
        &format!("soak, {load}: kill -9 at random moments, restart", ),
        format!(
            "{} kills; {} rows unacknowledged at the kills; {} rows replayed from the agents' backlogs, {} of them sent before; every agent back ≤ {:.1} s",
            r.kills, r.unacked_at_kills, r.backlog_rows, r.resent_rows, r.slowest_reconnect_s
        ),
        "-".into(),
        "-".into(),
        "≥ 20 kills",
    ));
    lines.push(line(
        &format!("soak, {load}: rows stored afterwards"),
        format!(
            "{} of {} made; lost {}, values changed {}, rows made up {}",
            r.rows_found, r.rows_made, r.rows_lost, r.values_wrong, r.rows_extra
        ),
        "-".into(),
        "-".into(),
        "lost 0",
    ));
    r.lossless()
}

/// `distdiag-bench remote-write` (not in the default run; it starts
/// VictoriaMetrics): (1) the coordinator's CPU under the soak's simulated
/// agents (RW_AGENTS, default 300, × RW_METRICS 200 at 1 Hz for
/// RW_SECONDS 60) without and then with a `[[remote_write]]` to
/// VictoriaMetrics; (2) samples per second delivered to VictoriaMetrics: a
/// backlog of 1,000 nodes × 200 metrics × 30 rows queued, then the time
/// the sender takes to have it all accepted.
fn remote_write(lines: &mut Vec<Line>) {
    use distdiag_testbed::tsdb::{Kind, Receiver};
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let tmp = tempfile::Builder::new().prefix("distdiag-rw").tempdir_in("/var/tmp").unwrap();
    let vm = Receiver::start(Kind::Victoria, &tmp.path().join("vm"));
    let config = tmp.path().join("remote-write.toml");
    std::fs::write(
        &config,
        format!("[[remote_write]]\nurl = \"{}\"\nname = \"vm\"\n", vm.write_url()),
    )
    .unwrap();
    let (agents, metrics) = (env("RW_AGENTS", 300) as usize, env("RW_METRICS", 200) as usize);
    let run = |config: Option<std::path::PathBuf>, dir: &str| {
        let spec = distdiag_testbed::soak::SoakSpec {
            agents,
            metrics,
            steady: Duration::from_secs(env("RW_SECONDS", 60)),
            kills: 0,
            seed: 1,
            config,
        };
        distdiag_testbed::soak::run(&spec, &tmp.path().join(dir))
    };
    let without = run(None, "without");
    let with = run(Some(config), "with");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // What one simulated agent sent is in VictoriaMetrics.
    let one: usize = rt.block_on(vm.node_series("soak0000")).values().map(Vec::len).sum();
    assert!(one > 0, "the soak's rows did not reach VictoriaMetrics");
    lines.push(line(
        &format!("remote write on ingest, {agents} agents × {metrics} metrics at 1 Hz: coordinator CPU with / without"),
        format!(
            "{:.2} cores, ack p99 {:.1} ms ({one} samples of one agent in VictoriaMetrics)",
            with.cpu_cores, with.ack_p99_ms
        ),
        format!("{:.2} cores, ack p99 {:.1} ms", without.cpu_cores, without.ack_p99_ms),
        format!("{:.2}x", with.cpu_cores / without.cpu_cores.max(1e-9)),
        "≤ 1.3x",
    ));

    // (2) A backlog, then the sender alone.
    let store_dir = tmp.path().join("store");
    let store: std::sync::Arc<dyn distdiag_store::SeriesStore> = std::sync::Arc::new(
        distdiag_store::SledStore::open(&store_dir, distdiag_store::StoreConfig::default())
            .unwrap(),
    );
    let (nodes, width, rows) = (1000usize, 200usize, 30i64);
    let catalog: Vec<distdiag_common::MetricDesc> = (0..width)
        .map(|m| match m % 2 {
            0 => distdiag_common::MetricDesc::gauge(format!("bench.g{m}"), "bytes"),
            _ => {
                distdiag_common::MetricDesc::counter(format!("bench.c{m}:dev{}", m % 8), "seconds")
            }
        })
        .collect();
    let cfg = distdiag_coordinator::remote_write::RemoteWriteConfig {
        url: vm.write_url(),
        queue_samples: nodes * width * rows as usize,
        ..Default::default()
    };
    let rw = distdiag_coordinator::remote_write::RemoteWrite::new(store.clone(), &[cfg])
        .unwrap()
        .unwrap();
    let start_ms = distdiag_store::now_ms() - rows * 1000;
    for n in 0..nodes {
        let node = format!("bench{n:04}");
        store
            .upsert_node(
                &node,
                Default::default(),
                Default::default(),
                catalog.clone(),
                1000,
                start_ms,
            )
            .unwrap();
    }
    for t in 0..rows {
        for n in 0..nodes {
            let values = (0..width).map(|m| (n * width + m) as f64 + t as f64 * 0.5).collect();
            rw.forward(
                &format!("bench{n:04}"),
                &[distdiag_common::Row { ts_ms: start_ms + t * 1000, values }],
            );
        }
    }
    let total = (nodes * width) as u64 * rows as u64;
    let (cpu0, _) = self_and_children_cpu();
    let took = rt.block_on(async {
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let _tasks = rw.spawn(stop_rx);
        while rw.sent_samples() < total && started.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed().as_secs_f64()
    });
    let (cpu1, _) = self_and_children_cpu();
    let sent = rw.sent_samples();
    lines.push(line(
        &format!("remote write: a backlog of {total} samples ({nodes} nodes × {width} metrics × {rows} rows) delivered to VictoriaMetrics"),
        format!(
            "{:.0} samples/s ({sent} accepted in {took:.1} s; sender {:.2} cores)",
            sent as f64 / took,
            (cpu1 - cpu0) / took
        ),
        "-".into(),
        "-".into(),
        "-",
    ));
}

/// A dataset of `nodes` nodes × `metrics` gauges over `secs` seconds, with
/// a CPU-like and a disk-like fault on rotating nodes every 120 s.
fn synthetic_dataset(
    nodes: usize,
    metrics: usize,
    secs: i64,
    seed: u64,
) -> distdiag_dataset::Dataset {
    use distdiag_dataset::{CasePeriod, Dataset};
    use distdiag_diagnose::{FaultEvent, WindowConfig};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ds = Dataset::new(1000, WindowConfig::default());
    let t0 = 1_800_000_000_000i64;
    let mut k = 0;
    let mut start = 150;
    while start + 60 < secs {
        let (node, kind) = (k % nodes, if k % 2 == 0 { "cpu_stress" } else { "disk_stress" });
        let case = format!("case{k}");
        ds.cases.push(CasePeriod {
            case: case.clone(),
            scenario: "A".into(),
            start_ms: t0 + (start - 30) * 1000,
            end_ms: t0 + (start + 60) * 1000,
            group: None,
        });
        ds.labels.push(FaultEvent {
            case,
            node: format!("n{node}"),
            kind: kind.into(),
            start_ms: t0 + start * 1000,
            end_ms: t0 + (start + 30) * 1000,
        });
        k += 1;
        start += 120;
    }
    for n in 0..nodes {
        let node = ds.series.entry(format!("n{n}")).or_default();
        for m in 0..metrics {
            let base = rng.random_range(1.0..100.0);
            let pts: Vec<(i64, f64)> =
                (0..secs)
                    .map(|i| {
                        let t = t0 + i * 1000;
                        let mut v = base * (1.0 + 0.1 * rng.random_range(-1.0..1.0));
                        for l in ds.labels.iter().filter(|l| {
                            l.node == format!("n{n}") && t >= l.start_ms && t < l.end_ms
                        }) {
                            if (l.kind == "cpu_stress" && m % 7 == 0)
                                || (l.kind == "disk_stress" && m % 7 == 3)
                            {
                                v *= 3.0;
                            }
                        }
                        (t, v)
                    })
                    .collect();
            node.insert(format!("m{m:03}.x"), pts);
        }
    }
    ds
}

fn training(lines: &mut Vec<Line>) {
    use distdiag_diagnose::model::{train, TrainParams};
    // Training: same windows, same parameters, fixed rounds (no early stopping), one thread each.
    let ds = synthetic_dataset(5, 60, 3600, 11);
    let dir = tempfile::tempdir().unwrap();
    ds.export(dir.path()).unwrap();
    std::fs::write(dir.path().join("windows.csv"), ds.windows_csv()).unwrap();
    let windows = ds.windows(None);
    let params = TrainParams {
        rounds: 100,
        early_stopping_rounds: 1000,
        validation_fraction: 0.0,
        nthread: 1,
        ..TrainParams::default()
    };
    let t = Instant::now();
    let set = train(&windows, ds.manifest.window, &params, &mut |_, _, _| {}).unwrap();
    let rust_s = t.elapsed().as_secs_f64();
    let py_params: Vec<String> = set
        .types
        .iter()
        .map(|tm| {
            serde_json::to_string(
                &distdiag_diagnose::model::xgb_params(&params, tm.scale_pos_weight)
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap()
        })
        .collect();
    let script = r#"
import sys, json, time, numpy as np, xgboost as xgb
path, rounds, types, params = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(','), [json.loads(p) for p in sys.argv[4:]]
rows, labels, edge = [], [], []
with open(path) as f:
    header = f.readline()
    for line in f:
        p = line.rstrip('\n').split(',')
        labels.append(p[3].split(';') if p[3] else []); edge.append(p[4] == '1')
        rows.append([float(v) if v else np.nan for v in p[5:]])
x = np.array(rows, dtype=np.float32)
keep = ~np.array(edge)
x = x[keep]; labels = [l for l, k in zip(labels, keep) if k]
total = 0.0
for t, prm in zip(types, params):
    y = np.array([1.0 if t in l else 0.0 for l in labels], dtype=np.float32)
    d = xgb.DMatrix(x, label=y, missing=np.nan)
    s = time.perf_counter(); xgb.train(prm, d, rounds); total += time.perf_counter() - s
print(total)
"#;
    let types: Vec<String> = set.types.iter().map(|t| t.kind.clone()).collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("windows.csv"))
        .arg(params.rounds.to_string())
        .arg(types.join(","))
        .args(&py_params)
        .output()
        .expect("python3");
    let py_s: Option<f64> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    match py_s {
        Some(p) => lines.push(line(
            &format!(
                "training, {} types × {} rounds on {} windows × {} features (1 thread)",
                types.len(),
                params.rounds,
                windows.rows.len(),
                windows.width()
            ),
            format!("{rust_s:.2} s"),
            format!("{p:.2} s (Python xgboost 3.4.1, training calls only)"),
            format!("{:.2}", rust_s / p),
            "≈ 1 (same library)",
        )),
        None => lines.push(line(
            "training vs Python xgboost",
            format!("{rust_s:.2} s"),
            format!(
                "python failed: {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            ),
            "-".into(),
            "≈ 1",
        )),
    }
}

/// Ranking 100 nodes × 200 metrics: features, classifiers, graph, PageRank, top metrics.
fn ranking(lines: &mut Vec<Line>) {
    use distdiag_diagnose::model::{train, Scorer, TrainParams};
    use distdiag_diagnose::rank::{rank, Ranker};
    use distdiag_diagnose::stat;
    let big = synthetic_dataset(100, 200, 400, 5);
    let bw = big.manifest.window;
    let (from, to) = (big.cases[0].start_ms - bw.baseline_ms - bw.window_ms, big.cases[0].end_ms);
    let frame = big.frame(from, to);
    let small_windows =
        distdiag_diagnose::labels::build_windows(&big.period_frames()[..1], &big.labels, &bw, None);
    let small = train(
        &small_windows,
        bw,
        &TrainParams { rounds: 50, validation_fraction: 0.0, ..TrainParams::default() },
        &mut |_, _, _| {},
    )
    .unwrap();
    let scorer = Scorer::load(&small).unwrap();
    let end = frame.index_at(big.labels[0].start_ms + 20_000);
    // The median of 15 runs of `f`, in ms.
    let median_ms = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..15)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[7]
    };
    let rank_ms =
        |ranker: &Ranker<'_>| median_ms(&|| drop(rank(&frame, end, &bw, ranker, &[], 5).unwrap()));
    let r = rank(&frame, end, &bw, &Ranker::Model(&scorer), &[], 5).unwrap();
    assert_eq!(r.entries.len(), 100 * scorer.types().len());
    let model = rank_ms(&Ranker::Model(&scorer));
    if std::env::var("BENCH_DETAIL").is_ok() {
        // The two largest parts of a ranking, each the median of 15.
        let metrics = frame.metric_names();
        let features = median_ms(&|| {
            drop(distdiag_diagnose::features::window_features(&frame, end, &bw, &metrics))
        });
        let graph = median_ms(&|| {
            drop(distdiag_diagnose::graph::correlation_graph(&frame, end - 10, end, &metrics, &[]))
        });
        eprintln!("features {features:.1} ms, correlation graph {graph:.1} ms (medians of 15)");
    }
    // The same ranking with a model that would read every feature: the
    // cost when no feature can be skipped.
    let mut every = Scorer::load(&small).unwrap();
    every.used = vec![true; every.used.len()];
    let every_ms = rank_ms(&Ranker::Model(&every));
    // A model reading every feature of half the metrics: the share a
    // model trained on a real recording reads (69 of 145 metrics on the
    // standalone campaign), where the bench's synthetic model reads few.
    let mut half = Scorer::load(&small).unwrap();
    let names: std::collections::BTreeSet<&str> =
        half.feature_names.iter().map(|n| distdiag_diagnose::features::metric_of(n)).collect();
    let kept: std::collections::BTreeSet<&str> = names.iter().step_by(2).copied().collect();
    half.used = half
        .feature_names
        .iter()
        .map(|n| kept.contains(distdiag_diagnose::features::metric_of(n)))
        .collect();
    let half_ms = rank_ms(&Ranker::Model(&half));
    let read = scorer.used.iter().filter(|u| **u).count();
    let read_metrics: std::collections::BTreeSet<&str> = scorer
        .feature_names
        .iter()
        .zip(&scorer.used)
        .filter(|(_, u)| **u)
        .map(|(n, _)| distdiag_diagnose::features::metric_of(n))
        .collect();
    let types = stat::known_types();
    let stat_ms = rank_ms(&Ranker::Statistical { types: &types, reference_end: None });
    lines.push(line(
        &format!("ranking 100 nodes × 200 metrics, model reading {read} of {} features from {} metrics (median of 15)", scorer.used.len(), read_metrics.len()),
        format!("{model:.1} ms"),
        format!("every feature of half the metrics read {half_ms:.1} ms; every feature read {every_ms:.1} ms; statistical scorer {stat_ms:.1} ms"),
        "-".into(),
        "< 20 ms",
    ));
}

/// (f) The metrics page over 10 nodes × 60 metrics × 1 h at 1 s, seeded
/// through QUIC ingest and then fed live one row per second while Chromium
/// loads the page and takes six live updates.
fn dashboard(lines: &mut Vec<Line>) {
    const NODES: usize = 10;
    const METRICS: usize = 60;
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/web");
    if !web.join("node_modules").is_dir() {
        let ok = Command::new("npm")
            .current_dir(&web)
            .args(["ci", "--no-audit", "--no-fund"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm ci in tests/web failed (scripts/install-deps.sh test installs node)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let names: Vec<String> = (0..NODES).map(|i| format!("sim{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let certs = make_certs(&data.join("certs"), &refs);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &[]);
    let now = distdiag_agent::now_ms();
    let spec = Arc::new(sim::SimSpec {
        metrics: METRICS,
        rows_per_batch: 50,
        window: 8,
        start_ts: now - 3_600_000 - (now % 1000),
        target_rows: 3600,
        live_rows: 120,
    });
    let acked = Arc::new(AtomicU64::new(0));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let feeders = sim::spawn_agents(rt.handle(), &names, &certs, quic, &spec, &acked, tmp.path());
    // The hour is in once every node acknowledged its 3,600 rows.
    let seeded = (NODES * METRICS * 3600) as u64;
    let t = Instant::now();
    while acked.load(Ordering::Relaxed) < seeded && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(acked.load(Ordering::Relaxed) >= seeded, "seeding the hour did not finish in 5 min");
    let shots = tmp.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .current_dir(&web)
        .args(["dashboard.mjs", "perf", &format!("http://{api}"), "-"])
        .arg(&shots)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dashboard.mjs perf failed: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value =
        serde_json::from_str(said.lines().last().unwrap_or("{}")).unwrap();
    for f in feeders {
        f.abort();
    }
    drop(rt);
    assert!(coord.stop().success());
    let num = |k: &str| figures[k].as_f64().unwrap_or(f64::NAN);
    let updates: Vec<f64> = figures["update_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let worst = updates.iter().copied().fold(f64::NAN, f64::max);
    let long: Vec<f64> = figures["long_tasks_during_updates"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    lines.push(line(
        &format!(
            "dashboard metrics page, {NODES} nodes overlaid × 1 h at 1 s ({:.0} points of one metric; {NODES} × {METRICS} series stored), Chromium",
            num("points")
        ),
        format!(
            "interactive {:.0} ms after navigation (fetch + draw {:.0} ms)",
            num("interactive_ms"),
            num("fetch_and_draw_ms")
        ),
        "-".into(),
        "-".into(),
        "< 1,000 ms",
    ));
    lines.push(line(
        "dashboard live update (append the new second, redraw 10 series), main-thread time",
        format!("{:.1} ms worst of {} ({} long tasks ≥ 50 ms)", worst, updates.len(), long.len()),
        "-".into(),
        "-".into(),
        "< 16 ms",
    ));
}
