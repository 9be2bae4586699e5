//! End-to-end data path: real agents, a real coordinator process, real QUIC
//! with mutual TLS on loopback, real sled — through a coordinator crash and a
//! full disk (a tmpfs the test mounts under the store).

// End-to-end tests start the programs they test (and mount the filesystems they fill).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::Duration;

use distdiag_common::codec::{decode_payload, encode_frame, FrameDecoder};
use distdiag_common::proto::*;
use distdiag_common::Row;
use distdiag_store::{SeriesStore, SledStore, StoreConfig};
use distdiag_testbed::*;
use tokio::sync::mpsc;

fn drain(rx: &mut mpsc::UnboundedReceiver<Row>) -> Vec<Row> {
    let mut v = Vec::new();
    while let Ok(r) = rx.try_recv() {
        v.push(r);
    }
    v
}

fn open_store(dir: &std::path::Path) -> SledStore {
    for _ in 0..50 {
        if let Ok(s) = SledStore::open(dir, StoreConfig::default()) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    SledStore::open(dir, StoreConfig::default()).expect("open store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_lose_nothing_across_a_coordinator_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = ["n1", "n2", "n3"];
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &nodes);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &[]);

    let mut agents = Vec::new();
    let mut taps = Vec::new();
    for n in nodes {
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = agent_config(n, &certs, quic, &tmp.path().join(n), 100);
        agents.push(distdiag_agent::start(cfg, Some(tx)).await.unwrap());
        taps.push(rx);
    }
    assert!(
        eventually(Duration::from_secs(15), || agents.iter().all(|a| a.status().acked_seq >= 5))
            .await,
        "agents never got acks"
    );

    // Crash the coordinator mid-stream.
    coord.kill9();
    let killed_at = distdiag_agent::now_ms();
    let acked_at_kill: Vec<u64> = agents.iter().map(|a| a.status().acked_seq).collect();
    // Agents keep sampling and buffer while the coordinator is down (a
    // bounded wait rather than a fixed sleep: a loaded machine samples late).
    let buffered =
        eventually(Duration::from_secs(15), || agents.iter().all(|a| a.pending_rows() >= 10)).await;
    let pending: Vec<usize> = agents.iter().map(|a| a.pending_rows()).collect();
    assert!(buffered, "agents did not buffer while the coordinator was down: {pending:?}");
    assert!(
        agents.iter().zip(&acked_at_kill).all(|(a, before)| a.status().acked_seq == *before),
        "acks arrived from a dead coordinator"
    );
    let restarted_at = distdiag_agent::now_ms();
    coord.restart();

    // Every agent reconnects and backfills.
    let caught_up = eventually(Duration::from_secs(20), || {
        agents.iter().zip(&acked_at_kill).all(|(a, before)| {
            a.status().sessions >= 2 && a.status().acked_seq > *before && a.pending_rows() <= 2
        })
    })
    .await;
    assert!(caught_up, "agents did not backfill; coordinator log:\n{}", coord.log_text());
    tokio::time::sleep(Duration::from_millis(700)).await;
    for a in agents {
        let state_spill = a.status();
        a.stop(Duration::from_secs(20)).await;
        assert!(state_spill.sessions >= 2);
    }
    for n in nodes {
        let left = std::fs::read_dir(tmp.path().join(n).join("spill")).unwrap().count();
        assert_eq!(left, 0, "{n} still holds {left} unacknowledged batches");
    }
    let rows: Vec<Vec<Row>> = taps.iter_mut().map(drain).collect();

    // The REST path answers with one point per collected row.
    let client = coord.client();
    for (n, rows) in nodes.iter().zip(&rows) {
        let q = distdiag_api::metrics::MetricsQuery {
            node: Some((*n).into()),
            metric: Some("cpu.user".into()),
            from: Some("0".into()),
            rate: Some(false),
            ..Default::default()
        };
        let v = client.series(&q).await.unwrap();
        assert_eq!(v.points.len(), rows.len(), "{n}: {v:?}");
        assert!(
            rows.iter().any(|r| r.ts_ms > killed_at && r.ts_ms < restarted_at),
            "{n} collected nothing while the coordinator was down"
        );
    }
    assert!(coord.stop().success());

    // Every value of every row is stored, bit for bit; nothing else is.
    let checked = assert_stored_exactly(&data.join("store"), &nodes, &rows);
    assert!(checked > 3 * 100 * 20, "only {checked} values checked");
}

/// Every value of every collected row is stored, bit for bit, and nothing
/// else is; how many values were compared.
fn assert_stored_exactly(store_dir: &std::path::Path, nodes: &[&str], rows: &[Vec<Row>]) -> usize {
    let store = open_store(store_dir);
    let mut checked = 0usize;
    for (n, rows) in nodes.iter().zip(rows) {
        let rec = store.node(n).unwrap();
        for (j, m) in rec.catalog.iter().enumerate() {
            let stored: HashMap<i64, f64> =
                store.query(n, &m.name, 0, i64::MAX).unwrap().into_iter().collect();
            let mut expected = 0;
            for r in rows {
                match r.values.get(j).copied().filter(|v| !v.is_nan()) {
                    Some(v) => {
                        expected += 1;
                        let got = stored.get(&r.ts_ms).copied();
                        assert_eq!(
                            got.map(f64::to_bits),
                            Some(v.to_bits()),
                            "{n} {} at {}",
                            m.name,
                            r.ts_ms
                        );
                        checked += 1;
                    }
                    None => assert!(
                        !stored.contains_key(&r.ts_ms),
                        "{n} {} has a value that was never sent",
                        m.name
                    ),
                }
            }
            assert_eq!(
                stored.len(),
                expected,
                "{n} {}: stored points differ from collected ones",
                m.name
            );
        }
    }
    checked
}

/// A tmpfs mounted for one test, unmounted whatever happens.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem has no room left; its size.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    // The last partial chunk, byte by byte is too slow; 4 KiB at a time.
    while f.write_all(&chunk[..4096]).is_ok() {
        written += 4096;
    }
    let _ = f.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_ingest_and_everything_backfills_when_space_returns() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let nodes = ["n1", "n2"];
    let data = tmp.path().join("coord");
    // The store alone on a small filesystem; certificates, tokens and the
    // agents' spill on the ordinary disk.
    let _fs = match Tmpfs::mount(&data.join("store"), "64m") {
        Ok(fs) => fs,
        Err(why) => return skip(&why),
    };
    let certs = make_certs(&data.join("certs"), &nodes);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &[]);
    let client = coord.client();
    let mut agents = Vec::new();
    let mut taps = Vec::new();
    for n in nodes {
        let (tx, rx) = mpsc::unbounded_channel();
        let cfg = agent_config(n, &certs, quic, &tmp.path().join(n), 100);
        agents.push(distdiag_agent::start(cfg, Some(tx)).await.unwrap());
        taps.push(rx);
    }
    assert!(
        eventually(Duration::from_secs(15), || agents.iter().all(|a| a.status().acked_seq >= 5))
            .await,
        "agents never got acks"
    );
    assert!(client.health().await.unwrap().storage.writable);

    // Fill the store's filesystem to the last block.
    let filler = data.join("store").join("filler");
    let filled = fill(&filler);
    let full_at = distdiag_agent::now_ms();
    let mut health = client.health().await.unwrap();
    for _ in 0..150 {
        if !health.storage.writable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        health = client.health().await.unwrap();
    }
    assert!(!health.storage.writable, "writes did not fail on a full disk: {health:?}");
    let error = health.storage.error.clone().unwrap_or_default();
    assert!(error.contains("No space left on device"), "{health:?}");
    println!("filled {} MiB; /health: {:?}", filled >> 20, health.storage);
    // Refused, not acknowledged: the agents keep their batches.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked_when_full: Vec<u64> = agents.iter().map(|a| a.status().acked_seq).collect();
    let spilled =
        eventually(Duration::from_secs(15), || agents.iter().all(|a| a.pending_rows() >= 30)).await;
    let pending: Vec<usize> = agents.iter().map(|a| a.pending_rows()).collect();
    assert!(spilled, "agents did not keep their batches while the disk was full: {pending:?}");
    assert!(
        agents.iter().zip(&acked_when_full).all(|(a, before)| a.status().acked_seq == *before),
        "batches were acknowledged while the disk was full"
    );
    let refusals = agents
        .iter()
        .filter_map(|a| a.status().last_error)
        .filter(|e| e.contains("storage unavailable"))
        .count();
    assert!(refusals > 0, "no agent was told the storage is unavailable");
    // The API stays up and says why, in /health and in /metrics.
    assert_eq!(client.nodes().await.unwrap().nodes.len(), 2);
    let prom = reqwest::get(coord.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(prom.contains("distdiag_store_writable 0"), "{prom}");

    // Space returns: the store reopens, the agents backfill.
    std::fs::remove_file(&filler).unwrap();
    let freed_at = distdiag_agent::now_ms();
    let caught_up = eventually(Duration::from_secs(30), || {
        agents
            .iter()
            .zip(&acked_when_full)
            .all(|(a, before)| a.status().acked_seq > *before && a.pending_rows() <= 2)
    })
    .await;
    assert!(caught_up, "agents did not backfill; coordinator log:\n{}", coord.log_text());
    let health = client.health().await.unwrap();
    assert!(health.storage.writable, "{health:?}");
    println!(
        "full for {} ms, backfilled {} ms after the space returned",
        freed_at - full_at,
        distdiag_agent::now_ms() - freed_at
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for a in agents {
        a.stop(Duration::from_secs(20)).await;
    }
    for n in nodes {
        let left = std::fs::read_dir(tmp.path().join(n).join("spill")).unwrap().count();
        assert_eq!(left, 0, "{n} still holds {left} unacknowledged batches");
    }
    let log = coord.log_text();
    assert!(coord.stop().success(), "{log}");
    assert!(log.contains("store reopened"), "{log}");
    let rows: Vec<Vec<Row>> = taps.iter_mut().map(drain).collect();
    for (n, rows) in nodes.iter().zip(&rows) {
        assert!(
            rows.iter().any(|r| r.ts_ms > full_at + 1000 && r.ts_ms < freed_at),
            "{n} collected nothing while the disk was full"
        );
    }
    let checked = assert_stored_exactly(&data.join("store"), &nodes, &rows);
    println!("{checked} values stored exactly");
}

/// A bare QUIC client holding a valid node certificate.
async fn raw_connection(
    certs: &distdiag_coordinator::tls::CertPaths,
    node: &str,
    quic: std::net::SocketAddr,
    state: &std::path::Path,
) -> quinn::Connection {
    let cfg = agent_config(node, certs, quic, state, 1000);
    let client = distdiag_agent::uplink::client_config(&cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(client);
    ep.connect(quic, "localhost").unwrap().await.unwrap()
}

fn hello(node: &str, version: u16) -> AgentMsg {
    AgentMsg::Hello(Hello {
        version,
        node: node.into(),
        host: HostFacts::default(),
        capabilities: Capabilities::default(),
        catalog: vec![distdiag_common::MetricDesc::gauge("x", "count")],
        interval_ms: 1000,
    })
}

async fn closed_code(conn: &quinn::Connection) -> (u64, String) {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("connection not closed")
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            (c.error_code.into_inner(), String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => panic!("unexpected close: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_own_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["good", "evil"]);
    let (api, quic) = free_ports();
    let coord = Coordinator::start(&data, api, quic, &[]);
    let good = distdiag_agent::start(
        agent_config("good", &certs, quic, &tmp.path().join("good"), 100),
        None,
    )
    .await
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || good.status().acked_seq > 2).await);

    // Garbage instead of a hello.
    let conn = raw_connection(&certs, "evil", quic, &tmp.path().join("e1")).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut junk = 60u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0xff; 60]);
    send.write_all(&junk).await.unwrap();
    let (code, reason) = closed_code(&conn).await;
    assert_eq!(code, u64::from(ProtocolError::Malformed(String::new()).close_code()), "{reason}");
    assert!(reason.contains("malformed"), "{reason}");

    // A valid hello, then a frame header announcing 4 GiB.
    let conn = raw_connection(&certs, "evil", quic, &tmp.path().join("e2")).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode_frame(&hello("evil", PROTOCOL_VERSION), DEFAULT_MAX_FRAME).unwrap())
        .await
        .unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let welcome = loop {
        if let Some(p) = dec.next_frame().unwrap() {
            break decode_payload::<CoordMsg>(&p, DEFAULT_MAX_FRAME).unwrap();
        }
        dec.push(&recv.read_chunk(1024, true).await.unwrap().unwrap().bytes);
    };
    assert_eq!(welcome, CoordMsg::Welcome { node: "evil".into(), max_frame: DEFAULT_MAX_FRAME });
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let (code, reason) = closed_code(&conn).await;
    assert_eq!(code, 2, "{reason}");
    assert!(reason.contains("exceeds the limit"), "{reason}");

    // Another protocol version gets a typed refusal.
    let conn = raw_connection(&certs, "evil", quic, &tmp.path().join("e3")).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode_frame(&hello("evil", 99), DEFAULT_MAX_FRAME).unwrap()).await.unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let refused = loop {
        if let Some(p) = dec.next_frame().unwrap() {
            break decode_payload::<CoordMsg>(&p, DEFAULT_MAX_FRAME).unwrap();
        }
        dec.push(&recv.read_chunk(1024, true).await.unwrap().unwrap().bytes);
    };
    assert_eq!(
        refused,
        CoordMsg::Refused(ProtocolError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: 99 })
    );

    // A hello claiming another node's name than the certificate's.
    let conn = raw_connection(&certs, "evil", quic, &tmp.path().join("e4")).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode_frame(&hello("good", PROTOCOL_VERSION), DEFAULT_MAX_FRAME).unwrap())
        .await
        .unwrap();
    let (code, reason) = closed_code(&conn).await;
    assert_eq!(code, 5, "{reason}");

    // The well-behaved agent never noticed.
    let before = good.status().acked_seq;
    assert!(eventually(Duration::from_secs(5), || good.status().acked_seq > before + 3).await);
    assert_eq!(good.status().sessions, 1);
    let log = coord.log_text();
    for needle in [
        "malformed frame",
        "exceeds the limit",
        "protocol version 99 is not supported",
        "node name mismatch",
    ] {
        assert!(log.contains(needle), "coordinator log lacks {needle:?}:\n{log}");
    }

    // Mutating endpoints need the token; a connected node cannot be deleted.
    let client = reqwest::Client::new();
    let r = client.delete(coord.url("/api/nodes/good")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .delete(coord.url("/api/nodes/good"))
        .bearer_auth(coord.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    good.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_without_a_cluster_certificate_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let foreign = make_certs(&tmp.path().join("foreign"), &["n1"]);
    let (api, quic) = free_ports();
    let coord = Coordinator::start(&data, api, quic, &[]);

    // Trusts the real server, but its own certificate comes from another CA.
    let mut cfg = agent_config("n1", &foreign, quic, &tmp.path().join("a"), 100);
    cfg.uplink.ca_cert = certs.ca_cert();
    let agent = distdiag_agent::start(cfg, None).await.unwrap();

    // No client certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    for c in distdiag_common::pem::load_certs(&certs.ca_cert()).unwrap() {
        roots.add(c).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(qc)));
    let outcome = match ep.connect(quic, "localhost").unwrap().await {
        // TLS 1.3: the client may finish before the server checks; the server then closes.
        Ok(conn) => match conn.open_bi().await {
            Ok((mut s, _)) => {
                let _ = s.write_all(b"x").await;
                tokio::time::timeout(Duration::from_secs(5), conn.closed())
                    .await
                    .map(|e| e.to_string())
            }
            Err(e) => Ok(e.to_string()),
        },
        Err(e) => Ok(e.to_string()),
    };
    assert!(outcome.is_ok(), "a certificate-less client was not disconnected");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = agent.status();
    assert_eq!(
        (st.connected, st.sessions, st.acked_seq),
        (false, 0, 0),
        "foreign agent got in: {st:?}"
    );
    assert!(st.last_error.is_some());
    let client = coord.client();
    assert!(client.nodes().await.unwrap().nodes.is_empty());
    let prom = client.get_text("/metrics").await.unwrap();
    let failures: f64 = prom
        .lines()
        .find_map(|l| l.strip_prefix("distdiag_ingest_handshake_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 2.0, "{prom}");
    assert!(coord.log_text().contains("agent handshake refused"));
    agent.stop(Duration::ZERO).await;
}
