//! Remote-write out against real receivers the test starts: Debian's
//! VictoriaMetrics (single node) and Prometheus with its remote-write
//! receiver. A real agent feeds a real coordinator; what the receivers
//! answer to PromQL is compared with what the coordinator stored.

// End-to-end tests start the programs they test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use distdiag_api::metrics::MetricsQuery;
use distdiag_common::catalog::MetricKind;
use distdiag_coordinator::remote_write::{prometheus_name, CATALOG_INFO, CATALOG_INFO_EVERY_MS};
use distdiag_testbed::tsdb::{Kind, Receiver, SeriesSet};
use distdiag_testbed::*;

fn write_config(path: &Path, text: &str) {
    std::fs::File::create(path).unwrap().write_all(text.as_bytes()).unwrap();
}

/// What the coordinator stored for `node`, as the receivers should hold
/// it: Prometheus labels → [(ms, value in base units)]; the catalog info
/// series with no points (their times depend on the batches, see [`same`]).
async fn stored_as_prometheus(
    coord: &Coordinator,
    node: &str,
    extra: &[(&str, &str)],
) -> SeriesSet {
    let client = coord.client();
    let catalog = client.node(node).await.unwrap().catalog.unwrap();
    let mut out = BTreeMap::new();
    for desc in catalog {
        let (name, device, scale) = prometheus_name(&desc);
        let mut labels: BTreeMap<String, String> =
            extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut info = labels.clone();
        info.insert("__name__".into(), CATALOG_INFO.into());
        info.insert("node".into(), node.into());
        info.insert("metric".into(), desc.name.clone());
        info.insert("unit".into(), desc.unit.clone());
        let kind = if desc.kind == MetricKind::Counter { "counter" } else { "gauge" };
        info.insert("kind".into(), kind.into());
        out.insert(info, Vec::new());
        labels.insert("__name__".into(), name);
        labels.insert("node".into(), node.into());
        if let Some((k, v)) = device {
            labels.insert(k.into(), v);
        }
        let q = MetricsQuery {
            node: Some(node.into()),
            metric: Some(desc.name.clone()),
            from: Some("-1h".into()),
            to: Some("now".into()),
            step: None,
            rate: Some(false),
        };
        let points: Vec<(i64, f64)> = client
            .series(&q)
            .await
            .unwrap()
            .points
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| (t, v * scale))
            .collect();
        if !points.is_empty() {
            out.insert(labels, points);
        }
    }
    out
}

/// Equal series, values within `rel` (VictoriaMetrics keeps 12 significant
/// decimal digits; Prometheus keeps the float exactly).
fn same(what: &str, got: &SeriesSet, want: &SeriesSet, rel: f64) -> Result<(), String> {
    let names = |m: &SeriesSet| m.keys().cloned().collect::<Vec<_>>();
    if names(got) != names(want) {
        return Err(format!("{what}: series differ: {:?} vs {:?}", names(got), names(want)));
    }
    for (labels, want_points) in want {
        let got_points = &got[labels];
        if labels["__name__"] == CATALOG_INFO {
            // 1 at the first row, then at least 30 s apart.
            let ok = !got_points.is_empty()
                && got_points.iter().all(|p| p.1 == 1.0)
                && got_points.windows(2).all(|w| w[1].0 - w[0].0 >= CATALOG_INFO_EVERY_MS);
            if !ok {
                return Err(format!("{what}: catalog info {labels:?}: {got_points:?}"));
            }
            continue;
        }
        let times = |p: &[(i64, f64)]| p.iter().map(|x| x.0).collect::<Vec<_>>();
        if times(got_points) != times(want_points) {
            return Err(format!("{what}: timestamps of {labels:?} differ"));
        }
        for ((t, g), (_, w)) in got_points.iter().zip(want_points) {
            let ok = if rel == 0.0 { g == w } else { (g - w).abs() <= rel * w.abs().max(1e-300) };
            if !ok {
                return Err(format!("{what}: {labels:?} at {t}: got {g}, stored {w}"));
            }
        }
    }
    Ok(())
}

/// Polls `receiver` until it holds `want` (see [`same`]), then asserts it.
async fn assert_holds(what: &str, receiver: &Receiver, want: &SeriesSet, rel: f64) {
    let got = poll_until(
        Duration::from_secs(30),
        || receiver.node_series("n1"),
        |g| same(what, g, want, rel).is_ok(),
    )
    .await
    .unwrap_or_else(|g| g);
    if let Err(e) = same(what, &got, want, rel) {
        panic!("{e}");
    }
}

/// `name{labels}` value from the coordinator's `/metrics`.
async fn metric(coord: &Coordinator, series: &str) -> f64 {
    let text = reqwest::get(coord.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A coordinator with this configuration and a real agent `n1` sampling
/// every `interval_ms`, under `dir`.
async fn coordinator_and_agent(
    dir: &Path,
    config: &str,
    interval_ms: u32,
) -> (Coordinator, distdiag_agent::Agent) {
    let data = dir.join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let path = dir.join("coordinator.toml");
    write_config(&path, config);
    let (api, quic) = free_ports();
    let coord = Coordinator::start(&data, api, quic, &["--config", path.to_str().unwrap()]);
    let cfg = agent_config("n1", &certs, quic, &dir.join("n1"), interval_ms);
    (coord, distdiag_agent::start(cfg, None).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_reach_victoriametrics_and_prometheus_as_the_agent_sent_them() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = Receiver::start(Kind::Victoria, &tmp.path().join("vm"));
    let prom = Receiver::start(Kind::Prometheus, &tmp.path().join("prom"));
    let config = format!(
        "[[remote_write]]\nurl = \"{}\"\nname = \"vm\"\nbatch_wait_ms = 200\nlabels = {{ cluster = \"lab\" }}\n\n\
         [[remote_write]]\nurl = \"{}\"\nname = \"prom\"\nbatch_wait_ms = 200\n",
        vm.write_url(),
        prom.write_url()
    );
    let (coord, agent) = coordinator_and_agent(tmp.path(), &config, 200).await;
    assert!(
        eventually(Duration::from_secs(20), || agent.status().acked_seq >= 25).await,
        "the agent got no acknowledgements"
    );
    agent.stop(Duration::from_secs(5)).await;

    let want_vm = stored_as_prometheus(&coord, "n1", &[("cluster", "lab")]).await;
    let want_prom = stored_as_prometheus(&coord, "n1", &[]).await;
    let samples: usize = want_prom.values().map(Vec::len).sum();
    assert!(want_prom.len() > 20 && samples > 500, "{} series, {samples} samples", want_prom.len());
    // The receivers have it all once their queues are empty and each
    // counted every sample as sent.
    for name in ["vm", "prom"] {
        let sent = format!("distdiag_remote_write_sent_samples_total{{endpoint=\"{name}\"}}");
        let got = poll_until(
            Duration::from_secs(30),
            || metric(&coord, &sent),
            |n| *n as usize == samples,
        )
        .await;
        assert!(got.is_ok(), "{name}: {got:?} samples sent of {samples}");
    }
    assert_holds("VictoriaMetrics", &vm, &want_vm, 1e-11).await;
    assert_holds("Prometheus", &prom, &want_prom, 0.0).await;
    // The conventions, on two series every Linux host has.
    assert!(want_prom.keys().any(|l| l["__name__"] == "distdiag_mem_available_bytes"));
    assert!(want_prom.keys().any(|l| l["__name__"] == "distdiag_cpu_user_seconds_total"
        && l.get("cpu").is_some_and(|c| c.starts_with("cpu"))));
}

/// Answers every request with 400, as a receiver refusing the data.
async fn refusing_receiver() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut seen = Vec::new();
                // Read the head and the body (Content-Length), then refuse.
                loop {
                    let Ok(n) = sock.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0usize);
                    if seen.len() < head_end + 4 + len {
                        continue;
                    }
                    seen.drain(..head_end + 4 + len);
                    let body = "out of bounds";
                    let reply = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_minute_loses_nothing_and_a_refusing_one_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut vm = Receiver::start(Kind::Victoria, &tmp.path().join("vm"));
    let refuser = refusing_receiver().await;
    let config = format!(
        "[[remote_write]]\nurl = \"{}\"\nname = \"vm\"\nbatch_wait_ms = 200\nmax_backoff_ms = 2000\n\n\
         [[remote_write]]\nurl = \"http://{refuser}/api/v1/write\"\nname = \"refuser\"\nbatch_wait_ms = 200\n",
        vm.write_url()
    );
    let (coord, agent) = coordinator_and_agent(tmp.path(), &config, 500).await;
    assert!(eventually(Duration::from_secs(20), || agent.status().acked_seq >= 4).await);

    // VictoriaMetrics away for a minute; the agent goes on being
    // acknowledged all along (forwarding never holds ingest up).
    vm.stop();
    let acked_before = agent.status().acked_seq;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let acked_during = agent.status().acked_seq - acked_before;
    assert!(
        acked_during >= 60,
        "only {acked_during} batches acknowledged while the receiver was down"
    );
    let failed =
        metric(&coord, "distdiag_remote_write_failed_requests_total{endpoint=\"vm\"}").await;
    assert!(failed >= 5.0, "{failed} failed requests retried in a minute");
    vm.spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.stop(Duration::from_secs(5)).await;

    let want = stored_as_prometheus(&coord, "n1", &[]).await;
    let samples: usize = want.values().map(Vec::len).sum();
    let sent = poll_until(
        Duration::from_secs(60),
        || metric(&coord, "distdiag_remote_write_sent_samples_total{endpoint=\"vm\"}"),
        |n| *n as usize == samples,
    )
    .await;
    assert!(sent.is_ok(), "{sent:?} samples sent of {samples} stored");
    assert_holds("VictoriaMetrics after its outage", &vm, &want, 1e-11).await;
    let dropped = metric(
        &coord,
        "distdiag_remote_write_dropped_samples_total{endpoint=\"vm\",reason=\"queue_full\"}",
    )
    .await;
    assert_eq!(dropped, 0.0);

    // The refusing receiver: every sample dropped, counted under http_400,
    // none sent, none retried.
    let refused = poll_until(
        Duration::from_secs(30),
        || {
            metric(
                &coord,
                "distdiag_remote_write_dropped_samples_total{endpoint=\"refuser\",reason=\"http_400\"}",
            )
        },
        |n| *n as usize == samples,
    )
    .await;
    assert!(refused.is_ok(), "{refused:?} samples refused of {samples}");
    assert_eq!(
        metric(&coord, "distdiag_remote_write_sent_samples_total{endpoint=\"refuser\"}").await,
        0.0
    );
    assert_eq!(
        metric(&coord, "distdiag_remote_write_failed_requests_total{endpoint=\"refuser\"}").await,
        0.0
    );
    assert!(coord.log_text().contains("remote write refused"), "the refusal is not logged");
}

/// Six nodes over 400 s at 1 s from `start`, n4 with a CPU fault in the
/// last minute; series in several units (cores, bytes, seconds,
/// microseconds), some per device. Only the rows of the last `keep_s`
/// seconds are stored (a store with a short window).
fn fault_store(
    dir: &Path,
    start: i64,
    keep_s: i64,
) -> std::sync::Arc<dyn distdiag_store::SeriesStore> {
    use distdiag_common::{MetricDesc, Row};
    use distdiag_store::{SeriesStore, SledStore, StoreConfig};
    let store = SledStore::open(dir, StoreConfig::default()).unwrap();
    let catalog = vec![
        MetricDesc::gauge("cg.cpu_usage", "cores"),
        MetricDesc::counter("cpu.user:cpu0", "seconds"),
        MetricDesc::gauge("mem.available", "bytes"),
        MetricDesc::counter("disk.read_bytes:vda", "bytes"),
        MetricDesc::counter("net.rx_bytes:eth0", "bytes"),
        MetricDesc::counter("db.sql_time", "microseconds"),
    ];
    for k in 0..6 {
        let node = format!("n{k}");
        store
            .upsert_node(
                &node,
                Default::default(),
                Default::default(),
                catalog.clone(),
                1000,
                start,
            )
            .unwrap();
        let (mut cpu, mut disk, mut net, mut sql) = (100.0, 5e9, 7e9, 3e6);
        let rows: Vec<Row> = (0..400)
            .map(|i| {
                let noise = ((i * (k + 3)) % 7) as f64 / 7.0;
                let fault = k == 4 && i >= 340;
                let usage = 0.4 + 0.1 * noise + if fault { 1.5 } else { 0.0 };
                cpu += usage;
                disk += 1e6 * (1.0 + noise);
                net += 3e5 * (1.0 + noise);
                sql += 1234.5 * (1.0 + noise);
                let mem = 8e9 - 1e6 * noise;
                Row {
                    ts_ms: start + i as i64 * 1000,
                    values: vec![usage, cpu, mem, disk, net, sql],
                }
            })
            .filter(|r| r.ts_ms >= start + (400 - keep_s) * 1000)
            .collect();
        store.append(&node, &rows).unwrap();
    }
    store.flush().unwrap();
    std::sync::Arc::new(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnosis_ranks_from_victoriametrics_as_from_the_local_store() {
    use distdiag_coordinator::online::Online;
    use distdiag_coordinator::remote_write::{
        RemoteRead, RemoteReadConfig, RemoteWrite, RemoteWriteConfig,
    };
    let tmp = tempfile::tempdir().unwrap();
    let vm = Receiver::start(Kind::Victoria, &tmp.path().join("vm"));
    let start = distdiag_store::now_ms() / 1000 * 1000 - 400_000;
    let now = start + 400_000;
    let store = fault_store(&tmp.path().join("store"), start, 400);
    // A coordinator whose own store keeps only the last 2 s (the catalogs
    // and that the nodes are alive).
    let short = fault_store(&tmp.path().join("short"), start, 2);

    // The same rows into VictoriaMetrics, through the remote write.
    let cfg = RemoteWriteConfig { url: vm.write_url(), batch_wait_ms: 100, ..Default::default() };
    let rw = RemoteWrite::new(store.clone(), &[cfg]).unwrap().unwrap();
    let mut total = 0u64;
    for node in store.nodes() {
        let (_, rows) = store.range(&node.node, 0, now).unwrap();
        for (ts_ms, values) in rows {
            total += values.len() as u64;
            rw.forward(&node.node, &[distdiag_common::Row { ts_ms, values }]);
        }
    }
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _senders = rw.spawn(stop.clone());
    assert!(
        eventually(Duration::from_secs(60), || rw.sent_samples() == total).await,
        "{} of {total} samples sent",
        rw.sent_samples()
    );

    let online = |store: &std::sync::Arc<dyn distdiag_store::SeriesStore>, remote: bool| {
        let store = store.clone();
        let stop = stop.clone();
        let url = format!("http://{}", vm.addr);
        async move {
            tokio::task::spawn_blocking(move || {
                let models = distdiag_coordinator::models::Models::new(store.clone());
                let cfg = distdiag_coordinator::config::DiagnosisConfig::default();
                let o = Online::new(store, models, cfg, Default::default(), stop);
                if remote {
                    o.read_from(
                        RemoteRead::new(&RemoteReadConfig { url, ..Default::default() }).unwrap(),
                    );
                }
                o.diagnose_once(now).unwrap()
            })
            .await
            .unwrap()
        }
    };
    let local = online(&store, false).await.expect("a ranking from the local store");
    // From its 2 s alone the short store cannot rank like that...
    let alone = online(&short, false).await;
    assert!(
        alone.as_ref().is_none_or(|d| by_key(d)
            .iter()
            .zip(by_key(&local))
            .any(|(a, b)| (a.1 .0 - b.1 .0).abs() > 1e-3)),
        "the short store alone ranked like the full one: the comparison below would prove nothing"
    );
    // ... from VictoriaMetrics it does; and so does a standby whose store
    // is empty, from the nodes and catalogs the catalog info series give.
    // (VictoriaMetrics makes what it took searchable within a few seconds.)
    let empty: std::sync::Arc<dyn distdiag_store::SeriesStore> = std::sync::Arc::new(
        distdiag_store::SledStore::open(&tmp.path().join("empty"), Default::default()).unwrap(),
    );
    assert!(online(&empty, false).await.is_none());
    for (what, store) in [("short store", &short), ("standby", &empty)] {
        let remote = poll_until(
            Duration::from_secs(30),
            || online(store, true),
            |d| d.as_ref().is_some_and(|d| d.ranks.len() == local.ranks.len()),
        )
        .await
        .unwrap_or_else(|d| d)
        .unwrap_or_else(|| panic!("{what}: no ranking from VictoriaMetrics"));
        same_ranking(what, &remote, &local);
    }
}

/// A ranking's (node, type) → (probability, score).
fn by_key(d: &distdiag_coordinator::online::Diagnosis) -> BTreeMap<(String, String), (f64, f64)> {
    d.ranks.iter().map(|e| ((e.node.clone(), e.kind.clone()), (e.probability, e.score))).collect()
}

/// Same top entry; every (node, type) with the same probability and score
/// within 1e-6 (VictoriaMetrics keeps 12 significant digits, so entries
/// tied to 1e-10 may swap places: the order is compared by score).
fn same_ranking(
    what: &str,
    remote: &distdiag_coordinator::online::Diagnosis,
    local: &distdiag_coordinator::online::Diagnosis,
) {
    assert_eq!(
        (&local.ranks[0].node, local.ranks[0].kind.as_str()),
        (&"n4".to_string(), "cpu_stress")
    );
    assert_eq!(
        (&remote.ranks[0].node, &remote.ranks[0].kind),
        (&local.ranks[0].node, &local.ranks[0].kind),
        "{what}"
    );
    assert_eq!(remote.ranks.len(), local.ranks.len(), "{what}");
    let (r, l) = (by_key(remote), by_key(local));
    assert_eq!(r.keys().collect::<Vec<_>>(), l.keys().collect::<Vec<_>>(), "{what}");
    for (k, (rp, rs)) in &r {
        let (lp, ls) = l[k];
        assert!(
            (rp - lp).abs() <= 1e-6 && (rs - ls).abs() <= 1e-6,
            "{what}: {k:?}: {rp} {rs} vs {lp} {ls}"
        );
    }
    for (re, le) in remote.ranks.iter().zip(&local.ranks) {
        assert!((re.score - le.score).abs() <= 1e-6, "{what}: the order differs: {re:?} vs {le:?}");
    }
    assert_eq!(remote.graph.nodes, local.graph.nodes, "{what}");
    for (r, l) in remote.pagerank.iter().zip(&local.pagerank) {
        assert!((r - l).abs() <= 1e-6, "{what}: PageRank {r} vs {l}");
    }
}
