//! Simulated agents: a real QUIC + mTLS connection, a hello with a
//! synthetic catalog, and pipelined batches of rows shaped like a host's
//! (counters at steady rates, wandering gauges, constants), as fast as the
//! coordinator acknowledges them. The benchmark's ingest figures and the
//! dashboard's load test use them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use distdiag_common::codec::{decode_payload, encode_frame};
use distdiag_common::proto::*;
use distdiag_common::{MetricDesc, Row};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::agent_config;

/// A metric of a simulated agent: how its next value follows from the last.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Kernel-style counter: steady rate plus noise, integer.
    Counter { rate: f64 },
    /// Two-decimal gauge wandering around a level.
    Gauge { level: f64 },
    /// Often-constant value (error counters, limits).
    Constant,
}

pub fn shapes(n: usize, rng: &mut StdRng) -> Vec<Shape> {
    (0..n)
        .map(|i| match i % 4 {
            0 | 1 => Shape::Counter { rate: 10f64.powf(rng.random_range(0.0..6.0)).round() },
            2 => Shape::Gauge { level: rng.random_range(0.0..100.0) },
            _ => Shape::Constant,
        })
        .collect()
}

pub fn next_row(shapes: &[Shape], last: &mut [f64], rng: &mut StdRng) -> Vec<f64> {
    for (s, v) in shapes.iter().zip(last.iter_mut()) {
        *v = match *s {
            Shape::Counter { rate } => *v + (rate * rng.random_range(0.8..1.2)).round(),
            Shape::Gauge { level } => {
                ((level + rng.random_range(-5.0..5.0)) * 100.0).round() / 100.0
            }
            Shape::Constant => *v,
        };
    }
    last.to_vec()
}

pub struct SimSpec {
    /// Metrics per row (a quarter counters of each kind of shape).
    pub metrics: usize,
    pub rows_per_batch: usize,
    /// Batches in flight (unacknowledged) at most.
    pub window: usize,
    /// Timestamp of the first row; rows are 1 s apart.
    pub start_ts: i64,
    pub target_rows: usize,
    /// Rows sent after `target_rows`, one per batch and none before its
    /// timestamp, as a live agent does (0: none).
    pub live_rows: usize,
}

/// One [`agent`] task per name on `rt`, each with its state under `dir`.
pub fn spawn_agents(
    rt: &tokio::runtime::Handle,
    names: &[String],
    certs: &distdiag_coordinator::tls::CertPaths,
    quic: SocketAddr,
    spec: &Arc<SimSpec>,
    acked_values: &Arc<AtomicU64>,
    dir: &std::path::Path,
) -> Vec<tokio::task::JoinHandle<()>> {
    names
        .iter()
        .map(|n| {
            rt.spawn(agent(
                n.clone(),
                certs.clone(),
                quic,
                spec.clone(),
                acked_values.clone(),
                dir.join(n),
            ))
        })
        .collect()
}

/// One simulated agent: hello, then pipelined batches until `target_rows`
/// rows are acknowledged or time runs out. Returns acknowledged values.
pub async fn agent(
    name: String,
    certs: distdiag_coordinator::tls::CertPaths,
    quic: SocketAddr,
    spec: Arc<SimSpec>,
    acked_values: Arc<AtomicU64>,
    state: std::path::PathBuf,
) {
    let cfg = agent_config(&name, &certs, quic, &state, 1000);
    let client = distdiag_agent::uplink::client_config(&cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(client);
    let conn = ep.connect(quic, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let catalog: Vec<MetricDesc> = (0..spec.metrics)
        .map(|i| {
            if i % 4 < 2 {
                MetricDesc::counter(format!("m{i}"), "count")
            } else {
                MetricDesc::gauge(format!("m{i}"), "count")
            }
        })
        .collect();
    let hello = AgentMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        node: name.clone(),
        host: HostFacts::default(),
        capabilities: Capabilities::default(),
        catalog,
        interval_ms: 1000,
    });
    send.write_all(&encode_frame(&hello, DEFAULT_MAX_FRAME).unwrap()).await.unwrap();
    let permits = Arc::new(tokio::sync::Semaphore::new(spec.window));
    let per_batch = (spec.metrics * spec.rows_per_batch) as u64;
    let reader = {
        let permits = permits.clone();
        let acked = acked_values.clone();
        tokio::spawn(async move {
            let mut dec = distdiag_common::FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut n = 0u64;
            loop {
                while let Some(p) = dec.next_frame().unwrap() {
                    if let CoordMsg::Ack { .. } =
                        decode_payload::<CoordMsg>(&p, DEFAULT_MAX_FRAME).unwrap()
                    {
                        n += 1;
                        acked.fetch_add(per_batch, Ordering::Relaxed);
                        permits.add_permits(1);
                    }
                }
                match recv.read_chunk(1 << 16, true).await {
                    Ok(Some(c)) => dec.push(&c.bytes),
                    _ => return n,
                }
            }
        })
    };
    let mut rng = StdRng::seed_from_u64(name.bytes().map(u64::from).sum());
    let shapes = shapes(spec.metrics, &mut rng);
    let mut last: Vec<f64> =
        (0..spec.metrics).map(|_| rng.random_range(0.0..1e9f64).round()).collect();
    let mut ts = spec.start_ts;
    let batches = spec.target_rows.div_ceil(spec.rows_per_batch);
    for seq in 1..=batches as u64 {
        permits.acquire().await.unwrap().forget();
        let rows: Vec<Row> = (0..spec.rows_per_batch)
            .map(|_| {
                ts += 1000;
                Row { ts_ms: ts, values: next_row(&shapes, &mut last, &mut rng) }
            })
            .collect();
        let frame = encode_frame(&AgentMsg::Batch(Batch { seq, rows }), DEFAULT_MAX_FRAME).unwrap();
        send.write_all(&frame).await.unwrap();
    }
    for seq in batches as u64 + 1..=(batches + spec.live_rows) as u64 {
        permits.acquire().await.unwrap().forget();
        ts += 1000;
        let due = ts - distdiag_agent::now_ms();
        if due > 0 {
            tokio::time::sleep(Duration::from_millis(due as u64)).await;
        }
        let rows = vec![Row { ts_ms: ts, values: next_row(&shapes, &mut last, &mut rng) }];
        let frame = encode_frame(&AgentMsg::Batch(Batch { seq, rows }), DEFAULT_MAX_FRAME).unwrap();
        send.write_all(&frame).await.unwrap();
    }
    // Wait for the last acknowledgements.
    let _ = tokio::time::timeout(Duration::from_secs(60), permits.acquire_many(spec.window as u32))
        .await;
    let _ = send.finish();
    conn.close(0u32.into(), b"done");
    reader.abort();
}
