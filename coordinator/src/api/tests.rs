use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use distdiag_common::proto::{Capabilities, HostFacts};
use distdiag_common::{MetricDesc, Row};
use tower::ServiceExt;

use super::metrics::{downsample, latest_values, parse_step, parse_time, summary};
use super::*;
use distdiag_store::{SeriesStore, SledStore, StoreConfig};

fn state(dir: &std::path::Path) -> ApiState {
    let store = SledStore::open(dir, StoreConfig::default()).unwrap();
    let catalog = vec![
        MetricDesc::counter("cpu.user", "seconds"),
        MetricDesc::counter("cpu.idle", "seconds"),
        MetricDesc::gauge("mem.total", "bytes"),
        MetricDesc::gauge("mem.available", "bytes"),
        MetricDesc::counter("net.rx_bytes:eth0", "bytes"),
        MetricDesc::counter("net.rx_bytes:lo", "bytes"),
    ];
    store
        .upsert_node("n1", HostFacts::default(), Capabilities::default(), catalog, 1000, 0)
        .unwrap();
    let rows: Vec<Row> = (0..10)
        .map(|i| Row {
            ts_ms: 1_000_000 + i * 1000,
            values: vec![i as f64, 3.0 * i as f64, 1000.0, 250.0, 100.0 * i as f64, 7.0 * i as f64],
        })
        .collect();
    store.append("n1", &rows).unwrap();
    let store: Arc<dyn SeriesStore> = Arc::new(store);
    let registry = Registry::default();
    let faults = Arc::new(
        crate::faults::Faults::new(
            store.clone(),
            registry.clone(),
            std::time::Duration::from_secs(1),
        )
        .unwrap(),
    );
    // One database nobody listens on: the API must answer clearly, not hang or crash.
    let unreachable = distdiag_workload::db::DbTarget {
        name: "nowhere".into(),
        dialect: distdiag_workload::db::DialectKind::Mysql,
        host: "127.0.0.1".into(),
        port: 9,
        user: "root".into(),
        password: None,
        password_env: None,
        schema: "distdiag".into(),
        host_node: None,
    };
    let targets = vec![unreachable];
    let workloads = distdiag_workload::Workloads::new(targets.clone(), store.clone());
    let dbfaults = crate::dbfault::DbFaults::new(store.clone(), targets.clone(), workloads.clone());
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let training = crate::training::Training::new(store.clone());
    let models = crate::models::Models::new(store.clone());
    let online = crate::online::Online::new(
        store.clone(),
        models.clone(),
        crate::config::DiagnosisConfig::default(),
        Default::default(),
        stop,
    );
    ApiState {
        training,
        models,
        online,
        diagnosis: crate::config::DiagnosisConfig::default(),
        diagnosis_merge: Default::default(),
        store,
        registry,
        faults,
        fault_limits: crate::config::FaultsConfig::default(),
        telemetry: Arc::new(Telemetry::default()),
        tokens: Arc::new(
            crate::tokens::Tokens::new("secret-token-123456", dir.join("tokens.json")).unwrap(),
        ),
        reads_need_token: false,
        probes: Arc::new(crate::dbprobe::DbProbes::new(targets)),
        probe_interval_ms: 5000,
        prepare_wait: std::time::Duration::from_secs(60),
        workloads,
        dbfaults,
        remote_write: None,
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn series_of_a_counter_is_a_rate_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let (s, v) =
        call(&app, get("/api/metrics?node=n1&metric=net.rx_bytes:eth0&from=1000000&to=1009000"))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["unit"], "bytes/s");
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 9);
    assert!(pts.iter().all(|p| p[1] == 100.0));
    let (_, raw) = call(
        &app,
        get("/api/metrics?node=n1&metric=net.rx_bytes:eth0&from=1000000&to=1009000&rate=false"),
    )
    .await;
    assert_eq!(raw["points"].as_array().unwrap().len(), 10);
    assert_eq!(raw["points"][9][1], 900.0);
    let (_, stepped) = call(
        &app,
        get("/api/metrics?node=n1&metric=mem.available&from=1000000&to=1009999&step=5s"),
    )
    .await;
    assert_eq!(stepped["points"], serde_json::json!([[1000000, 250.0], [1005000, 250.0]]));
}

#[tokio::test]
async fn latest_shape_has_summary_and_rates() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let (s, v) = call(&app, get("/api/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    let n = &v["nodes"][0];
    assert_eq!(n["node"], "n1");
    assert_eq!(n["ts_ms"], 1_009_000);
    assert_eq!(n["metrics"]["cpu.user"], 1.0);
    assert_eq!(n["metrics"]["mem.available"], 250.0);
    assert_eq!(n["summary"]["memory_used_percent"], 75.0);
    // lo is excluded from the network total.
    assert_eq!(n["summary"]["net_rx_bytes_per_s"], 100.0);
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    for (uri, status) in [
        ("/api/metrics?node=nope&metric=cpu.user", StatusCode::NOT_FOUND),
        ("/api/metrics?node=n1&metric=nope", StatusCode::NOT_FOUND),
        ("/api/metrics?metric=cpu.user", StatusCode::BAD_REQUEST),
        ("/api/metrics?node=n1&metric=cpu.user&from=yesterday", StatusCode::BAD_REQUEST),
        ("/api/metrics?node=n1&metric=cpu.user&from=10&to=5", StatusCode::BAD_REQUEST),
        ("/api/metrics?node=n1&metric=cpu.user&step=0", StatusCode::BAD_REQUEST),
        ("/api/metrics?node=n1&metric=mem.total&rate=true", StatusCode::BAD_REQUEST),
        ("/api/metrics?bogus=1", StatusCode::BAD_REQUEST),
        ("/api/nodes/nope", StatusCode::NOT_FOUND),
        ("/api/anomaly/incidents?min_excess=2", StatusCode::BAD_REQUEST),
        ("/api/anomaly/incidents?from=10&to=5", StatusCode::BAD_REQUEST),
        ("/api/anomaly/incidents?from=yesterday", StatusCode::BAD_REQUEST),
        ("/api/nowhere", StatusCode::NOT_FOUND),
    ] {
        let (s, v) = call(&app, get(uri)).await;
        assert_eq!(s, status, "{uri}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{uri}: {v}");
    }
}

#[tokio::test]
async fn mutating_requests_need_the_token_and_change_nothing_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let app = router(st.clone());
    let del = |auth: Option<&str>| {
        let mut b = Request::delete("/api/nodes/n1");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(call(&app, del(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, del(Some("Bearer wrong"))).await.0, StatusCode::UNAUTHORIZED);
    assert!(st.store.node("n1").is_some());
    assert_eq!(call(&app, del(Some("Bearer secret-token-123456"))).await.0, StatusCode::OK);
    assert!(st.store.node("n1").is_none());
    assert_eq!(call(&app, del(Some("Bearer secret-token-123456"))).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn prometheus_exposition_lists_the_coordinator_figures() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let resp = app.oneshot(get("/metrics")).await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text =
        String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec())
            .unwrap();
    for name in [
        "distdiag_connected_agents 0",
        "distdiag_ingest_values_total 0",
        "distdiag_store_nodes 1",
        "distdiag_store_size_bytes ",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    assert!(text.lines().filter(|l| l.starts_with("# TYPE")).count() >= 15);
}

#[test]
fn times_and_steps_parse() {
    let now = 1_700_000_000_000;
    assert_eq!(parse_time("now", now), Ok(now));
    assert_eq!(parse_time("-15m", now), Ok(now - 900_000));
    assert_eq!(parse_time("1234", now), Ok(1234));
    assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000_000));
    assert!(parse_time("soon", now).is_err());
    assert_eq!(parse_step("10s"), Ok(10_000));
    assert_eq!(parse_step("250"), Ok(250));
    assert!(parse_step("0").is_err());
}

#[test]
fn downsampling_averages_per_bucket() {
    let pts = [(0, 1.0), (400, 3.0), (1000, 10.0), (2500, 4.0), (2600, 6.0)];
    assert_eq!(downsample(&pts, 1000), vec![(0, 2.0), (1000, 10.0), (2000, 5.0)]);
}

#[test]
fn summary_uses_counter_rates_with_reset_handling() {
    let catalog = vec![
        MetricDesc::counter("cpu.user", "seconds"),
        MetricDesc::counter("cpu.idle", "seconds"),
        MetricDesc::counter("cpu.iowait", "seconds"),
        MetricDesc::counter("disk.reads:sda", "ops"),
        MetricDesc::counter("disk.writes:sda", "ops"),
        MetricDesc::counter("disk.read_time:sda", "seconds"),
        MetricDesc::counter("disk.write_time:sda", "seconds"),
        MetricDesc::counter("disk.io_time:sda", "seconds"),
    ];
    // Newest first. The io_time counter wrapped at 32 bits.
    let l = distdiag_store::Latest {
        catalog,
        rows: vec![
            (2000, vec![10.5, 21.0, 0.5, 150.0, 50.0, 2.2, 0.8, 5.0]),
            (1000, vec![10.0, 20.0, 0.0, 100.0, 0.0, 1.0, 1.0, 4_294_967_295.5]),
        ],
    };
    let (ts, v) = latest_values(&l);
    assert_eq!(ts, Some(2000));
    let s = summary(&v);
    assert_eq!(s.cpu_percent, Some(25.0));
    assert_eq!(s.iowait_percent, Some(25.0));
    let sda = &s.disks["sda"];
    assert_eq!(sda.iops, Some(100.0));
    // write_time went backwards (a reset): its increase is its new value 0.8.
    assert!((sda.await_ms.unwrap() - (1.2 + 0.8) / 100.0 * 1000.0).abs() < 1e-9);
    assert_eq!(sda.util_percent, Some(100.0));
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let resp = app.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let text =
        String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec())
            .unwrap();
    assert!(text.contains("<script type=\"module\"") && text.contains("/app.js"), "{text}");
    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let resp = app.clone().oneshot(get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
    }
}

fn post(uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn anomaly_requests_are_validated_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let tok = Some("secret-token-123456");
    assert_eq!(
        call(&app, post("/api/anomaly/start", r#"{"type":"cpu_stress"}"#, None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    for (body, status, needle) in [
        (r#"{"type":"cpu_stress"}"#, StatusCode::CONFLICT, "no agent is connected"),
        (r#"{"type":"cpu_stress","node":"n1"}"#, StatusCode::CONFLICT, "not connected"),
        (r#"{"type":"fork_bomb","node":"n1"}"#, StatusCode::BAD_REQUEST, "unknown anomaly type"),
        (
            r#"{"type":"cpu_stress","node":"n1","params":{"workers":0}}"#,
            StatusCode::BAD_REQUEST,
            "workers",
        ),
        (
            r#"{"type":"cpu_stress","node":"n1","params":{"cores":2}}"#,
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            r#"{"type":"memory_stress","node":"n1","params":{"bytes":1,"percent_of_available":5}}"#,
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (
            r#"{"type":"cpu_stress","node":"n1","duration":"3h"}"#,
            StatusCode::BAD_REQUEST,
            "max_duration_ms",
        ),
        (r#"{"type":"cpu_stress","node":"n1","duration":-4}"#, StatusCode::BAD_REQUEST, "positive"),
        (
            r#"{"type":"cpu_stress","node":"n1","nodes":["n2"]}"#,
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (r#"{"kind":"cpu_stress"}"#, StatusCode::BAD_REQUEST, "type"),
        ("not json", StatusCode::BAD_REQUEST, ""),
    ] {
        let (s, v) = call(&app, post("/api/anomaly/start", body, tok)).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(needle)), "{body}: {v}");
    }
    let (s, v) = call(&app, post("/api/anomaly/stop", r#"{"id":"f1"}"#, tok)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = call(&app, post("/api/anomaly/stop", "", tok)).await;
    assert_eq!((s, v["stopped"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{v}");
    let (s, v) = call(&app, post("/api/anomaly/stop", r#"{"ids":[]}"#, tok)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = call(&app, get("/api/anomaly/active")).await;
    assert_eq!(v["anomalies"], serde_json::json!([]));
    let (s, v) = call(&app, get("/api/anomaly/history?from=-1h")).await;
    assert_eq!((s, v["anomalies"].as_array().unwrap().len()), (StatusCode::OK, 0));
}

#[test]
fn seed_defaults_fill_in_missing_parameters() {
    use distdiag_common::fault::{FaultSpec, MemorySize};
    let empty = serde_json::Map::new();
    assert_eq!(
        super::anomaly::spec_from("cpu_stress", &empty).unwrap(),
        FaultSpec::CpuStress { workers: 1, load_percent: 100 }
    );
    assert_eq!(
        super::anomaly::spec_from("memory_stress", &empty).unwrap(),
        FaultSpec::MemoryStress { size: MemorySize::Bytes(256 << 20) }
    );
    assert!(matches!(
        super::anomaly::spec_from("network_delay", &empty).unwrap(),
        FaultSpec::NetworkDelay { latency_ms: 100, .. }
    ));
}

#[tokio::test]
async fn bad_workload_requests_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let tok = Some("secret-token-123456");
    for (body, want, needle) in [
        (r#"{"type":"oltp_read_write","threads":0}"#, StatusCode::BAD_REQUEST, "threads = 0"),
        (r#"{"type":"oltp_read_write","threads":65}"#, StatusCode::BAD_REQUEST, "threads = 65"),
        (r#"{"type":"oltp_insert","threads":4}"#, StatusCode::BAD_REQUEST, "unknown workload type"),
        (r#"{"type":"tpcc","options":{"warehouses":0}}"#, StatusCode::BAD_REQUEST, "warehouses"),
        (r#"{"type":"oltp_read_write","options":{"tabels":2}}"#, StatusCode::BAD_REQUEST, "tabels"),
        (
            r#"{"type":"oltp_read_write","options":{"database":"other"}}"#,
            StatusCode::NOT_FOUND,
            "unknown database",
        ),
    ] {
        let (s, v) = call(&app, post("/api/workload/start", body, tok)).await;
        assert_eq!(s, want, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let (s, v) = call(&app, post("/api/workload/no-such-run/stop", "", tok)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = call(&app, get("/api/workload/no-such-run")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) =
        call(&app, post("/api/workload/start", r#"{"type":"oltp_read_write"}"#, None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreachable_database_gets_a_4xx_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let tok = Some("secret-token-123456");
    let (s, v) =
        call(&app, post("/api/workload/start", r#"{"type":"oltp_read_write","threads":2}"#, tok))
            .await;
    assert_eq!(s, StatusCode::FAILED_DEPENDENCY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cannot connect"), "{v}");
    let (s, v) =
        call(&app, post("/api/anomaly/start", r#"{"type":"cache_bottleneck"}"#, tok)).await;
    assert_eq!(s, StatusCode::FAILED_DEPENDENCY, "{v}");
    let (s, v) = call(&app, get("/api/metrics/tenant?tenant_name=distdiag")).await;
    assert_eq!(s, StatusCode::FAILED_DEPENDENCY, "{v}");
    let (s, v) =
        call(&app, post("/api/workload/prepare", r#"{"type":"oltp_read_write","wait":true}"#, tok))
            .await;
    assert_eq!(s, StatusCode::FAILED_DEPENDENCY, "{v}");
    assert!(v["status"].as_str().unwrap().contains("cannot connect"), "{v}");
    // The failed fault is a closed record, not a live one.
    let (_, v) = call(&app, get("/api/anomaly/active")).await;
    assert_eq!(v["anomalies"].as_array().unwrap().len(), 0, "{v}");
    let (s, v) = call(&app, get("/api/metrics/database")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["databases"][0]["name"], "nowhere");
    let (s, v) = call(
        &app,
        post(
            "/api/anomaly/start",
            r#"{"type":"too_many_indexes","params":{"tables":["x`y"]}}"#,
            tok,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("plain identifier"), "{v}");
}

/// Three nodes with a CPU counter and a memory gauge; node `n{hot}` burns
/// CPU during each fault in `faults` (start s, end s, case id), which are
/// recorded as fault records and cases.
fn seed_training(state: &ApiState, faults: &[(i64, i64, &str, &str, &str)]) {
    let catalog = vec![
        MetricDesc::counter("cg.cpu_usage", "seconds"),
        MetricDesc::gauge("mem.used", "bytes"),
    ];
    let base = 2_000_000_000i64;
    for n in ["a", "b", "c"] {
        state
            .store
            .upsert_node(
                n,
                HostFacts::default(),
                Capabilities::default(),
                catalog.clone(),
                1000,
                base,
            )
            .unwrap();
        let mut cpu = 0.0;
        let rows: Vec<Row> = (0..900i64)
            .map(|i| {
                let t = base + i * 1000;
                let hot = faults.iter().any(|(s, e, node, kind, _)| {
                    *node == n && *kind == "cpu_stress" && i >= *s && i < *e
                });
                let mem_hot = faults.iter().any(|(s, e, node, kind, _)| {
                    *node == n && *kind == "memory_stress" && i >= *s && i < *e
                });
                cpu += if hot { 0.95 } else { 0.1 + 0.02 * ((i * 7 + n.len() as i64) % 5) as f64 };
                Row {
                    ts_ms: t,
                    values: vec![cpu, if mem_hot { 9e9 } else { 1e9 + 1e7 * ((i * 3) % 7) as f64 }],
                }
            })
            .collect();
        state.store.append(n, &rows).unwrap();
    }
    for (k, (s, e, node, kind, _)) in faults.iter().enumerate() {
        let rec = distdiag_store::FaultRecord {
            id: format!("f{k}"),
            node: node.to_string(),
            kind: kind.to_string(),
            spec: distdiag_store::RecordSpec::Agent(distdiag_common::fault::FaultSpec::CpuStress {
                workers: 1,
                load_percent: 100,
            }),
            requested_ms: base + s * 1000,
            applied_ms: Some(base + s * 1000),
            deadline_ms: base + e * 1000,
            ended_ms: Some(base + e * 1000),
            state: distdiag_store::FaultPhase::Reverted,
            detail: String::new(),
            chaos: None,
        };
        state.store.save_fault(&rec).unwrap();
        state.training.open_case(&[rec], "A", 30_000, 30_000, base + s * 1000 + k as i64).unwrap();
    }
}

#[tokio::test]
async fn training_collection_models_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let app = router(st.clone());
    let tok = Some("secret-token-123456");
    // Nothing collected: training is refused with a clear message; unknowns are 404.
    let (s, v) = call(&app, post("/api/anomaly/train", "", tok)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nothing collected"), "{v}");
    assert_eq!(call(&app, get("/api/anomaly/train/nope")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, get("/api/models/nope")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, post("/api/models/rollback", "", tok)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&app, post("/api/anomaly/train", r#"{"params":{"eta":0}}"#, tok)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&app, post("/api/anomaly/train", r#"{"bogus":1}"#, tok)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(call(&app, post("/api/anomaly/train", "", None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, get("/api/anomaly/ranks/graph")).await.0, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, get("/api/anomaly/ranks")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["note"].as_str().unwrap().contains("no ranking yet"));
    // A training case's settings are checked before any fault starts.
    let (s, v) = call(
        &app,
        post(
            "/api/anomaly/start",
            r#"{"type":"cpu_stress","collect_training_data":true,"pre_s":5000}"#,
            tok,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = call(
        &app,
        post(
            "/api/anomaly/start",
            r#"{"type":"cpu_stress","collect_training_data":true,"scenario":"a,b"}"#,
            tok,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) =
        call(&app, post("/api/anomaly/start", r#"{"type":"cpu_stress","case":"case-nope"}"#, tok))
            .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = call(
        &app,
        post("/api/anomaly/start", r#"{"type":"cpu_stress","case":"case-nope","pre_s":5}"#, tok),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(st.faults.active().is_empty());
    // Normal collection: a second start conflicts, a stop without a start too.
    assert_eq!(call(&app, post("/api/training/normal/start", "", tok)).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, post("/api/training/normal/start", "", tok)).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(call(&app, post("/api/training/normal/stop", "", tok)).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, post("/api/training/normal/stop", "", tok)).await.0,
        StatusCode::CONFLICT
    );

    // Six CPU cases on rotating nodes, two memory cases.
    let faults = [
        (100, 160, "a", "cpu_stress", "k1"),
        (200, 260, "b", "cpu_stress", "k2"),
        (300, 360, "c", "cpu_stress", "k3"),
        (400, 460, "a", "cpu_stress", "k4"),
        (500, 560, "b", "memory_stress", "k5"),
        (600, 660, "c", "memory_stress", "k6"),
        (700, 760, "c", "cpu_stress", "k7"),
        (800, 860, "a", "memory_stress", "k8"),
    ];
    seed_training(&st, &faults);
    let (s, v) = call(&app, get("/api/training/stats")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["cases"], 8);
    // 8 faults × 60 s on one node each.
    assert_eq!(v["anomaly_samples"], 480, "{v}");
    assert_eq!(v["per_type"]["cpu_stress"], 300);
    assert!(v["normal_samples"].as_u64().unwrap() > 480);
    let (s, v) = call(
        &app,
        post("/api/anomaly/train", r#"{"params":{"nthread":1,"validation_fraction":0.3}}"#, tok),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let job = v["job"].as_str().unwrap().to_string();
    let mut done = serde_json::Value::Null;
    for _ in 0..300 {
        let (_, j) = call(&app, get(&format!("/api/anomaly/train/{job}"))).await;
        if j["state"] != "running" {
            done = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done["state"], "done", "{done}");
    let id = done["model_id"].as_str().unwrap().to_string();
    let (_, m) = call(&app, get(&format!("/api/models/{id}"))).await;
    assert_eq!(m["active"], true);
    assert_eq!(m["types"], serde_json::json!(["cpu_stress", "memory_stress"]));
    // Evaluated on cases it did not train on, beside the baselines.
    let e = &m["evaluation"];
    assert!(e["cases"].as_u64().unwrap() >= 2, "{m}");
    assert!(e["model"]["at_fault"]["ac1"].as_f64().unwrap() >= 0.99, "{e}");
    assert!(e["dummy"]["at_fault"]["ac1"].is_number());
    let (s, ev) = call(&app, post(&format!("/api/models/{id}/evaluate"), "", tok)).await;
    assert_eq!(s, StatusCode::OK, "{ev}");
    assert!(ev["markdown"].as_str().unwrap().contains("| model | at fault |"));
    let (s, b) = call(&app, get(&format!("/api/models/{id}/booster/cpu_stress"))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["learner"].is_object());
    // The collected data exports as a dataset, and imports under a name.
    let (s, ds) = call(&app, get("/api/datasets/collected")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ds["labels"].as_array().unwrap().len(), 8);
    assert_eq!(
        call(&app, post("/api/datasets/bad%20name", &ds.to_string(), tok)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&app, post("/api/datasets/copy", &ds.to_string(), tok)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, post("/api/datasets/broken", r#"{"manifest":1}"#, tok)).await.0,
        StatusCode::BAD_REQUEST
    );
    // Beyond the 2 MB an extractor takes by default (real recordings are
    // tens of MB): the same dataset with 3 MB of white space after it.
    let big = format!("{ds}{}", " ".repeat(3 << 20));
    assert_eq!(call(&app, post("/api/datasets/big", &big, tok)).await.0, StatusCode::OK);
    // A second version from the imported copy; rollback returns to the first.
    let (s, v) = call(
        &app,
        post("/api/anomaly/train", r#"{"dataset":"copy","params":{"nthread":1,"seed":7}}"#, tok),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let job = v["job"].as_str().unwrap().to_string();
    for _ in 0..300 {
        let (_, j) = call(&app, get(&format!("/api/anomaly/train/{job}"))).await;
        if j["state"] != "running" {
            assert_eq!(j["state"], "done", "{j}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, list) = call(&app, get("/api/models")).await;
    assert_eq!(list["models"].as_array().unwrap().len(), 2);
    assert_ne!(list["active"].as_str().unwrap(), id);
    let (s, r) = call(&app, post("/api/models/rollback", "", tok)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["model"]["id"], id.as_str());
    assert_eq!(st.models.active_id().as_deref(), Some(id.as_str()));
    // A version stored by a distdiag whose features were one fewer per
    // metric is refused with what to do, and the active one stays.
    let mut old: serde_json::Value =
        serde_json::from_slice(&st.store.get_doc("models", &id).unwrap().unwrap()).unwrap();
    let names = old["set"]["feature_names"].as_array_mut().unwrap();
    names.retain(|f| !f.as_str().unwrap().ends_with("|tail_z"));
    old["id"] = "m-old".into();
    st.store.put_doc("models", "m-old", old.to_string().as_bytes()).unwrap();
    let (s, e) = call(&app, post("/api/models/m-old/activate", "", tok)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("train it again"), "{e}");
    let (s, e) = call(&app, post("/api/models/m-old/evaluate", "", tok)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(st.models.active_id().as_deref(), Some(id.as_str()));
    // Active in a registry an upgrade finds: set aside at start, and the
    // registry says none is active, as the rankings do.
    let meta = st.store.get_doc("models_meta", "meta").unwrap().unwrap();
    let mut stale: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    stale["active"] = "m-old".into();
    st.store.put_doc("models_meta", "meta", stale.to_string().as_bytes()).unwrap();
    let reopened = crate::models::Models::new(st.store.clone());
    assert_eq!(reopened.active_id(), None);
    assert!(reopened.list().unwrap().iter().all(|m| !m.active));
    st.store.put_doc("models_meta", "meta", &meta).unwrap();
    st.store.delete_doc("models", "m-old").unwrap();

    // A compound case: a second fault joins the first case; its label
    // counts under that case, and the case lists both nodes and types.
    let first = st.training.cases().unwrap().into_iter().find(|c| c.fault_ids == ["f0"]).unwrap();
    let mut extra =
        st.store.faults(0, i64::MAX).unwrap().into_iter().find(|r| r.id == "f0").unwrap();
    extra.id = "f-extra".into();
    extra.node = "b".into();
    extra.kind = "memory_stress".into();
    st.store.save_fault(&extra).unwrap();
    let joined = st.training.join_case(&first.id, std::slice::from_ref(&extra)).unwrap();
    assert_eq!(joined.nodes, ["a", "b"]);
    assert_eq!(joined.types, ["cpu_stress", "memory_stress"]);
    let (_, ds) = call(&app, get("/api/datasets/collected")).await;
    let in_case: Vec<&serde_json::Value> = ds["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["case"] == first.id.as_str())
        .collect();
    assert_eq!(in_case.len(), 2, "{in_case:?}");
    assert!(st.training.join_case("case-nope", &[extra]).is_err());
}

/// Every path of the OpenAPI document is served by a handler (none falls
/// through to "no such endpoint"), every `/api` route the router has is in
/// the document, mutating operations declare the bearer token, and the
/// document is the committed one (`docs/openapi.json`): a changed API is a
/// visible diff. `DISTDIAG_BLESS=1` rewrites the committed files.
/// A documented path with its parameters filled by a value no handler knows.
fn concrete_path(path: &str) -> String {
    ["{node}", "{id}", "{job}", "{name}", "{type}"]
        .iter()
        .fold(path.to_owned(), |p, k| p.replace(k, "nosuch"))
}

/// Scoped tokens on every documented operation, with reads requiring a
/// token: a read token may GET everything and is refused (403) on every
/// mutating operation; no token is refused (401) everywhere under /api
/// but the document; the admin token passes everywhere; refusals never
/// reach a handler.
#[tokio::test]
async fn scoped_tokens_on_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let (_, read) = crate::tokens::create(
        &dir.path().join("tokens.json"),
        "viewer",
        crate::tokens::Scope::Read,
    )
    .unwrap();
    let mut st = state(dir.path());
    st.reads_need_token = true;
    let app = router(st);
    let doc = openapi();
    let (s, _) = call(&app, get("/api/openapi.json")).await;
    assert_eq!(s, StatusCode::OK, "the document stays open");
    let (s, _) = call(&app, get("/health")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, get("/metrics")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "/metrics is data");
    let mut checked = 0;
    for (path, item) in &doc.paths.paths {
        let concrete = concrete_path(path);
        for (method, op) in [("GET", &item.get), ("POST", &item.post), ("DELETE", &item.delete)] {
            if op.is_none() || path.ends_with("/stream") || !path.starts_with("/api/") {
                continue;
            }
            let req = |token: Option<&str>| {
                let mut b = Request::builder()
                    .method(method)
                    .uri(&concrete)
                    .header("content-type", "application/json");
                if let Some(t) = token {
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                b.body(Body::from("{}")).unwrap()
            };
            let (none, body) = call(&app, req(None)).await;
            assert_eq!(none, StatusCode::UNAUTHORIZED, "{method} {path} without a token: {body}");
            let (wrong, _) = call(&app, req(Some("not-a-token-at-all"))).await;
            assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{method} {path} with a wrong token");
            let (with_read, body) = call(&app, req(Some(&read))).await;
            if method == "GET" {
                assert!(
                    ![401, 403].contains(&with_read.as_u16()),
                    "{method} {path} read: {with_read} {body}"
                );
            } else {
                assert_eq!(with_read, StatusCode::FORBIDDEN, "{method} {path} read: {body}");
                assert!(body["error"].as_str().unwrap().contains("'admin'"), "{body}");
            }
            if method == "GET" {
                let (admin, body) = call(&app, req(Some("secret-token-123456"))).await;
                assert!(
                    ![401, 403].contains(&admin.as_u16()),
                    "{method} {path} admin: {admin} {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
    // The event stream takes the token in its query (EventSource sends no headers).
    let (s, _) = call(&app, get("/api/anomaly/ranks/stream")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .uri(format!("/api/anomaly/ranks/stream?access_token={read}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_matches_the_handlers_and_the_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let (s, served) = call(&app, get("/api/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    let doc = openapi();
    assert_eq!(served, openapi_json(&doc));
    assert_eq!(served["openapi"], "3.1.0");
    let mut n = 0;
    for (path, item) in &doc.paths.paths {
        let concrete = concrete_path(path);
        let ops = [("GET", &item.get), ("POST", &item.post), ("DELETE", &item.delete)];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            n += 1;
            if path.ends_with("/stream") {
                continue; // an event stream that stays open
            }
            let req = Request::builder()
                .method(method)
                .uri(&concrete)
                .header("authorization", "Bearer secret-token-123456")
                .header("content-type", "application/json")
                .body(Body::from("{\"dataset\": \"nosuch\", \"id\": \"nosuch\"}"))
                .unwrap();
            let (status, body) = call(&app, req).await;
            assert_ne!(
                body["error"], "no such endpoint",
                "{method} {path} is documented but not routed"
            );
            assert!(
                status.as_u16() < 500 || status.as_u16() == 504,
                "{method} {path}: {status} {body}"
            );
            // Mutating operations need the bearer token and document both
            // refusals; reads take it optionally (`{}` is "none") and
            // document 401 (when reads need a token); the page and the
            // document need none.
            let security = &served["paths"][path][method.to_lowercase()]["security"];
            let codes: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
            let guarded = path.starts_with("/api/") || path == "/metrics";
            match (guarded, method) {
                (false, _) => {
                    assert!(security.is_null(), "{method} {path}: {security}");
                    assert!(!codes.contains(&"401"), "{method} {path}: {codes:?}");
                }
                (true, "GET") => {
                    assert_eq!(
                        security,
                        &serde_json::json!([{}, {"bearer": []}]),
                        "{method} {path}"
                    );
                    assert!(
                        codes.contains(&"401") && !codes.contains(&"403"),
                        "{method} {path}: {codes:?}"
                    );
                }
                (true, _) => {
                    assert_eq!(security, &serde_json::json!([{"bearer": []}]), "{method} {path}");
                    assert!(
                        codes.contains(&"401") && codes.contains(&"403"),
                        "{method} {path}: {codes:?}"
                    );
                }
            }
            assert!(op.responses.responses.keys().all(|k| k.len() == 3), "{method} {path}");
        }
    }
    assert!(n >= 40, "{n} operations");
    // Every reference resolves, every link names an operation that exists.
    let text = served.to_string();
    let schemas = served["components"]["schemas"].as_object().unwrap();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(schemas.contains_key(name), "unresolvable reference to {name}");
    }
    let ids: Vec<String> = doc
        .paths
        .paths
        .values()
        .flat_map(|i| [&i.get, &i.post, &i.delete])
        .flatten()
        .filter_map(|o| o.operation_id.clone())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat");
    for r in text.split("\"operationId\":\"").skip(1) {
        let id = &r[..r.find('"').unwrap()];
        assert!(ids.iter().any(|i| i == id), "a link names no operation {id}");
    }
    for p in [
        "/api/nodes",
        "/api/metrics",
        "/api/anomaly/start",
        "/api/anomaly/ranks",
        "/api/models/{id}/evaluate",
        "/api/datasets/{name}/windows.csv",
        "/api/workload/{id}/stop",
        "/health",
        "/metrics",
    ] {
        assert!(doc.paths.paths.contains_key(p), "{p} is not documented");
    }
    // A route the document lacks would answer; one it has not, 404s (checked above).
    let (s, v) = call(&app, get("/api/nosuch")).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("no such endpoint")));

    // As cargo says when it runs the test: a build reused from a checkout
    // at another path has that path in its `env!`.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), Into::into)
        .join("..");
    let json = serde_json::to_string_pretty(&served).unwrap() + "\n";
    let md = reference::markdown(&doc) + "\n";
    for (file, text) in [("docs/openapi.json", &json), ("docs/api.md", &md)] {
        let path = root.join(file);
        if std::env::var_os("DISTDIAG_BLESS").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == *text, "{file} differs from the API; rewrite it with DISTDIAG_BLESS=1 cargo test -p distdiag-coordinator the_openapi_document");
    }
}

#[tokio::test]
async fn the_docs_viewer_is_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(state(dir.path()));
    let resp = app.clone().oneshot(get("/docs/")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html =
        String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec())
            .unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in
        ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"]
    {
        let resp = app.clone().oneshot(get(asset)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
        assert!(bytes.len() > 100, "{asset}");
        if asset.ends_with("initializer.js") {
            assert!(String::from_utf8_lossy(&bytes).contains("/api/openapi.json"));
        }
    }
}
