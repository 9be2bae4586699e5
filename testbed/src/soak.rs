//! The soak (`distdiag-bench soak`): N simulated agents, each a real QUIC +
//! mTLS connection with its own node certificate, send one row of M metrics
//! a second, live, to a coordinator process — first for a steady period
//! (its RSS, CPU, ingest rate and acknowledgement latency are measured),
//! then while the coordinator is killed with SIGKILL at random moments and
//! restarted. Each simulated agent keeps every row until it is
//! acknowledged and sends the unacknowledged ones again on every new
//! connection, as the real agent does from its spill. At the end the store
//! is opened and every row every agent made is looked up: acknowledged
//! ones must be there, the rest must have arrived by replay, every value
//! bit for bit, nothing else.
//!
//! Values are a function of (agent, metric, second), so the check needs no
//! copy of what was sent: counters at steady rates with a little noise,
//! two-decimal gauges, constants — a quarter each, as a host's series.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use distdiag_common::codec::{decode_payload, encode_frame};
use distdiag_common::proto::*;
use distdiag_common::{FrameDecoder, MetricDesc, Row};
use distdiag_store::{SeriesStore, SledStore, StoreConfig};
use rand::{Rng, SeedableRng};
use tokio::sync::{watch, Notify};

use crate::{agent_config, free_ports, make_certs, Coordinator};

pub struct SoakSpec {
    pub agents: usize,
    pub metrics: usize,
    /// The steady period, before any kill.
    pub steady: Duration,
    /// SIGKILLs after the steady period, each 3-10 s after the previous
    /// restart, each followed by a restart 0.5-3 s later.
    pub kills: usize,
    pub seed: u64,
    /// A coordinator configuration file to run with (default: none).
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Default)]
pub struct SoakReport {
    pub agents: usize,
    pub metrics: usize,
    pub steady_s: f64,
    /// Coordinator during the steady period.
    pub rss_peak_bytes: u64,
    pub rss_end_bytes: u64,
    pub cpu_cores: f64,
    pub values_per_s: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub acks_measured: usize,
    /// The kills: how many, the rows acknowledged and the rows waiting
    /// for an acknowledgement at each (summed), the rows sent from the
    /// agents' backlogs on reconnecting and those of them sent before
    /// (unacknowledged when the coordinator died), and the slowest return
    /// of every agent after a restart.
    pub kills: usize,
    pub acked_at_kills: u64,
    pub unacked_at_kills: u64,
    pub backlog_rows: u64,
    pub resent_rows: u64,
    pub slowest_reconnect_s: f64,
    /// The final count.
    pub rows_made: u64,
    pub rows_found: u64,
    pub rows_lost: u64,
    pub values_wrong: u64,
    pub rows_extra: u64,
}

impl SoakReport {
    /// Every row made is stored exactly, nothing else is.
    pub fn lossless(&self) -> bool {
        self.rows_lost == 0 && self.values_wrong == 0 && self.rows_extra == 0 && self.rows_made > 0
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value of metric `j` of agent `agent` at `ts_ms`.
pub fn value(agent: u64, j: usize, ts_ms: i64) -> f64 {
    let s = ts_ms.div_euclid(1000);
    let key = mix(agent << 20 ^ j as u64);
    let noise = mix(key ^ s as u64);
    match j % 4 {
        0 | 1 => {
            let (base, rate) = ((key % 1_000_000_000) as i64, (key >> 40) as i64 % 10_000);
            (base + rate * (s % 100_000_000) + (noise % 7) as i64) as f64
        }
        2 => ((key % 10_000) as i64 * 100 + (noise % 1000) as i64 - 500) as f64 / 100.0,
        _ => (key % 100_000) as f64,
    }
}

struct Pending {
    frame: Arc<Vec<u8>>,
    sends: u32,
    last_send: Instant,
}

#[derive(Default)]
struct Book {
    pending: BTreeMap<u64, Pending>,
    made: Vec<i64>,
    next_seq: u64,
}

#[derive(Default)]
struct Shared {
    acked_rows: AtomicU64,
    /// Rows waiting when a connection after the first one opened: sent from
    /// the backlog, as the real agent sends its spill.
    backlog_rows: AtomicU64,
    /// Rows sent on one connection and again on a later one (their
    /// acknowledgement never came).
    resent_rows: AtomicU64,
    connected: AtomicUsize,
    record_latency: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes a row a second until `stop`, from a phase of its own.
async fn generate(
    agent: u64,
    metrics: usize,
    book: Arc<Mutex<Book>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let phase = Duration::from_millis(mix(agent) % 1000);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = distdiag_agent::now_ms().div_euclid(1000) * 1000;
        let mut b = lock(&book);
        let ts = b.made.last().map_or(now, |&last| now.max(last + 1000));
        let values = (0..metrics).map(|j| value(agent, j, ts)).collect();
        b.next_seq += 1;
        let seq = b.next_seq;
        let batch = AgentMsg::Batch(Batch { seq, rows: vec![Row { ts_ms: ts, values }] });
        let Ok(frame) = encode_frame(&batch, DEFAULT_MAX_FRAME) else { return };
        b.pending
            .insert(seq, Pending { frame: Arc::new(frame), sends: 0, last_send: Instant::now() });
        b.made.push(ts);
        drop(b);
        wake.notify_one();
    }
}

/// Reads a connection's answers: acknowledgements clear rows.
async fn read_acks(
    mut recv: quinn::RecvStream,
    book: Arc<Mutex<Book>>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
) {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut welcomed = false;
    loop {
        while let Ok(Some(p)) = dec.next_frame() {
            match decode_payload::<CoordMsg>(&p, DEFAULT_MAX_FRAME) {
                Ok(CoordMsg::Ack { seq }) => {
                    let done = lock(&book).pending.remove(&seq);
                    if let Some(p) = done {
                        shared.acked_rows.fetch_add(1, Ordering::Relaxed);
                        if p.sends == 1 && shared.record_latency.load(Ordering::Relaxed) {
                            let us = p.last_send.elapsed().as_micros().min(u32::MAX as u128);
                            lock(&shared.latencies_us).push(us as u32);
                        }
                    }
                    wake.notify_one();
                }
                Ok(CoordMsg::Welcome { .. }) if !welcomed => {
                    welcomed = true;
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                }
                Ok(CoordMsg::Refused(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        match recv.read_chunk(1 << 16, true).await {
            Ok(Some(c)) => dec.push(&c.bytes),
            _ => break,
        }
    }
    if welcomed {
        shared.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One simulated agent's connections: (re)connect, hello, send every
/// unacknowledged row again, then each new one, until nothing is left to
/// send and `finish` is set.
#[allow(clippy::too_many_arguments)]
async fn connect_loop(
    name: String,
    client: quinn::ClientConfig,
    ep: quinn::Endpoint,
    quic: SocketAddr,
    hello: Arc<Vec<u8>>,
    book: Arc<Mutex<Book>>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    finish: watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(name.len() as u64 ^ hello.len() as u64));
    let done = |book: &Mutex<Book>| *finish.borrow() && lock(book).pending.is_empty();
    let mut connections = 0u32;
    while !done(&book) {
        let connected = async {
            let conn = ep.connect_with(client.clone(), quic, "localhost").ok()?.await.ok()?;
            let (send, recv) = conn.open_bi().await.ok()?;
            Some((conn, send, recv))
        };
        let Ok(Some((conn, mut send, recv))) =
            tokio::time::timeout(Duration::from_secs(5), connected).await
        else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
            continue;
        };
        let mut reader = tokio::spawn(read_acks(recv, book.clone(), shared.clone(), wake.clone()));
        let mut sent_upto = 0u64;
        let mut ok = send.write_all(&hello).await.is_ok();
        connections += 1;
        let mut backlog = connections > 1;
        while ok && !done(&book) {
            let frames: Vec<(u64, Arc<Vec<u8>>)> = {
                let mut b = lock(&book);
                let now = Instant::now();
                b.pending
                    .range_mut(sent_upto + 1..)
                    .map(|(seq, p)| {
                        if p.sends == 1 {
                            shared.resent_rows.fetch_add(1, Ordering::Relaxed);
                        }
                        p.sends += 1;
                        p.last_send = now;
                        (*seq, p.frame.clone())
                    })
                    .collect()
            };
            if std::mem::take(&mut backlog) {
                shared.backlog_rows.fetch_add(frames.len() as u64, Ordering::Relaxed);
            }
            for (seq, frame) in frames {
                if send.write_all(&frame).await.is_err() {
                    ok = false;
                    break;
                }
                sent_upto = seq;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = &mut reader => ok = false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let _ = send.finish();
        conn.close(0u32.into(), b"bye");
        reader.abort();
        if !done(&book) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
        }
    }
}

/// (VmRSS, VmHWM) bytes and utime+stime seconds of a process.
fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> =
        stat.rsplit_once(')').map(|p| p.1).unwrap_or("").split_ascii_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / rustix::param::clock_ticks_per_second() as f64;
    (kb("VmRSS:"), kb("VmHWM:"), cpu)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Runs the soak in `dir` (the coordinator's data, the certificates) and
/// counts. Progress goes to stderr.
pub fn run(spec: &SoakSpec, dir: &std::path::Path) -> SoakReport {
    let data = dir.join("coord");
    let names: Vec<String> = (0..spec.agents).map(|i| format!("soak{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let certs = make_certs(&data.join("certs"), &refs);
    let (api, quic) = free_ports();
    let config = spec.config.as_ref().map(|p| p.display().to_string());
    let extra: Vec<&str> = config.iter().flat_map(|c| ["--config", c.as_str()]).collect();
    let mut coord = Coordinator::start(&data, api, quic, &extra);
    let pid = coord.pid().unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (finish_tx, finish_rx) = watch::channel(false);
    let catalog: Vec<MetricDesc> = (0..spec.metrics)
        .map(|j| match j % 4 {
            0 | 1 => MetricDesc::counter(format!("m{j}"), "count"),
            _ => MetricDesc::gauge(format!("m{j}"), "count"),
        })
        .collect();
    let endpoints: Vec<quinn::Endpoint> = rt.block_on(async {
        (0..4)
            .map(|_| {
                quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint")
            })
            .collect()
    });
    let mut books = Vec::new();
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let cfg = agent_config(name, &certs, quic, &dir.join("state"), 1000);
        let client = distdiag_agent::uplink::client_config(&cfg).expect("client config");
        let hello = AgentMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            node: name.clone(),
            host: HostFacts::default(),
            capabilities: Capabilities::default(),
            catalog: catalog.clone(),
            interval_ms: 1000,
        });
        let hello = Arc::new(encode_frame(&hello, DEFAULT_MAX_FRAME).expect("hello"));
        let book = Arc::new(Mutex::new(Book::default()));
        let wake = Arc::new(Notify::new());
        books.push(book.clone());
        let agent = (i as u64) ^ spec.seed;
        tasks.push(rt.spawn(generate(
            agent,
            spec.metrics,
            book.clone(),
            wake.clone(),
            stop_rx.clone(),
        )));
        tasks.push(rt.spawn(connect_loop(
            name.clone(),
            client,
            endpoints[i % endpoints.len()].clone(),
            quic,
            hello,
            book,
            shared.clone(),
            wake,
            finish_rx.clone(),
        )));
    }
    let mut report =
        SoakReport { agents: spec.agents, metrics: spec.metrics, ..SoakReport::default() };

    // Steady: measured once every agent is connected.
    let up = Instant::now();
    while shared.connected.load(Ordering::Relaxed) < spec.agents
        && up.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "soak: {} of {} agents connected after {:.1} s; steady for {:.0} s",
        shared.connected.load(Ordering::Relaxed),
        spec.agents,
        up.elapsed().as_secs_f64(),
        spec.steady.as_secs_f64()
    );
    shared.record_latency.store(true, Ordering::Relaxed);
    let (_, _, cpu0) = usage(pid);
    let acked0 = shared.acked_rows.load(Ordering::Relaxed);
    let t0 = Instant::now();
    while t0.elapsed() < spec.steady {
        std::thread::sleep(Duration::from_secs(1).min(spec.steady.saturating_sub(t0.elapsed())));
        if t0.elapsed().as_secs().is_multiple_of(60) {
            let (rss, _, _) = usage(pid);
            eprintln!(
                "soak: {:.0} s, coordinator RSS {:.0} MB, {} rows acknowledged",
                t0.elapsed().as_secs_f64(),
                rss as f64 / 1e6,
                shared.acked_rows.load(Ordering::Relaxed)
            );
        }
    }
    shared.record_latency.store(false, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let (rss, hwm, cpu1) = usage(pid);
    let acked = shared.acked_rows.load(Ordering::Relaxed) - acked0;
    let mut lat = std::mem::take(&mut *lock(&shared.latencies_us));
    lat.sort_unstable();
    report.steady_s = secs;
    report.rss_end_bytes = rss;
    report.rss_peak_bytes = hwm;
    report.cpu_cores = (cpu1 - cpu0) / secs;
    report.values_per_s = (acked * spec.metrics as u64) as f64 / secs;
    report.ack_p50_ms = percentile(&lat, 0.5);
    report.ack_p99_ms = percentile(&lat, 0.99);
    report.acks_measured = lat.len();

    // Kills at random moments under the same load.
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    for k in 0..spec.kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(3000..10_000)));
        report.acked_at_kills += shared.acked_rows.load(Ordering::Relaxed);
        report.unacked_at_kills += books.iter().map(|b| lock(b).pending.len() as u64).sum::<u64>();
        coord.kill9();
        std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
        let restarted = Instant::now();
        coord.restart();
        while shared.connected.load(Ordering::Relaxed) < spec.agents
            && restarted.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let back = restarted.elapsed().as_secs_f64();
        report.slowest_reconnect_s = report.slowest_reconnect_s.max(back);
        report.kills += 1;
        eprintln!(
            "soak: kill {} of {}: every agent back {back:.1} s after the restart",
            k + 1,
            spec.kills
        );
    }

    // Stop making rows, let every agent empty its book, stop cleanly.
    std::thread::sleep(Duration::from_secs(5));
    let _ = stop_tx.send(true);
    let _ = finish_tx.send(true);
    let drained = Instant::now();
    while books.iter().any(|b| !lock(b).pending.is_empty())
        && drained.elapsed() < Duration::from_secs(180)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    });
    report.backlog_rows = shared.backlog_rows.load(Ordering::Relaxed);
    report.resent_rows = shared.resent_rows.load(Ordering::Relaxed);
    let stopped = coord.stop();
    if !stopped.success() {
        eprintln!("soak: the coordinator exited with {stopped}; log:\n{}", coord.log_text());
    }
    drop(rt);

    // The count.
    let store = loop {
        match SledStore::open(&data.join("store"), StoreConfig::default()) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    for (i, (name, book)) in names.iter().zip(&books).enumerate() {
        let agent = (i as u64) ^ spec.seed;
        let made = lock(book).made.clone();
        report.rows_made += made.len() as u64;
        let stored: BTreeMap<i64, Vec<f64>> = match store.range(name, 0, i64::MAX) {
            Ok((_, rows)) => rows.into_iter().collect(),
            Err(_) => BTreeMap::new(),
        };
        for ts in &made {
            match stored.get(ts) {
                None => report.rows_lost += 1,
                Some(values) => {
                    report.rows_found += 1;
                    report.values_wrong += (0..spec.metrics)
                        .filter(|&j| {
                            values.get(j).map(|v| v.to_bits())
                                != Some(value(agent, j, *ts).to_bits())
                        })
                        .count() as u64;
                }
            }
        }
        let made: std::collections::HashSet<i64> = made.into_iter().collect();
        report.rows_extra += stored.keys().filter(|ts| !made.contains(ts)).count() as u64;
    }
    report
}
