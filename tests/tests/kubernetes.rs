//! Kubernetes discovery and the Chaos Mesh injector against a local fake
//! Kubernetes API server: it answers the pod list with the recorded
//! `tests/fixtures/kube/observer-pods.json`, keeps the chaos resources it is
//! sent (starting with one a crashed coordinator left), and records every
//! request. The coordinator is the real binary with a kubeconfig pointing
//! at the fake; no agent is connected, so nothing but Chaos Mesh can apply
//! the faults.
//!
//! Shown: the running OBServer pods become databases with their Kubernetes
//! node as `host_node` (the pending one is left out); StressChaos and
//! NetworkChaos are created with the right selector, stressors, action and
//! duration; they are deleted on stop, at the deadline, at start for a
//! leftover of a previous run and for a fault whose deadline passed while
//! the coordinator was down — but a fault still within its deadline
//! survives a restart; a fault Chaos Mesh cannot express goes to the agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use distdiag_api::faults::{DurationArg, FaultPhase, HistoryQuery, StartRequest};
use distdiag_testbed::*;
use serde_json::{json, Value};

#[derive(Default)]
struct Fake {
    /// (method, path?query, body)
    requests: Vec<(String, String, Value)>,
    /// (plural, namespace, name) -> object
    chaos: BTreeMap<(String, String, String), Value>,
}

type Shared = Arc<Mutex<Fake>>;

fn fixture(name: &str) -> Value {
    let p =
        distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("fixtures/kube").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn status(code: u16, reason: &str, message: String) -> (StatusCode, axum::Json<Value>) {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}),
        ),
    )
}

async fn serve(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut f = fake.lock().unwrap();
    f.requests.push((method.to_string(), format!("{path}?{query}"), body_json.clone()));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["api", "v1", "pods"]) => {
            let mut list = fixture("observer-pods.json");
            if !query.contains("labelSelector=ref-obcluster") {
                list["items"] = json!([]);
            }
            (StatusCode::OK, axum::Json(list))
        }
        ("GET", ["apis", "chaos-mesh.org", "v1alpha1", "namespaces", ns, plural]) => {
            let items: Vec<Value> = f
                .chaos
                .iter()
                .filter(|((p, n, _), _)| p == plural && n == ns)
                .map(|(_, o)| o.clone())
                .collect();
            let kind =
                if *plural == "stresschaos" { "StressChaosList" } else { "NetworkChaosList" };
            (
                StatusCode::OK,
                axum::Json(json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind,
                    "metadata": {"resourceVersion": "50000"}, "items": items})),
            )
        }
        ("POST", ["apis", "chaos-mesh.org", "v1alpha1", "namespaces", ns, plural]) => {
            let name = body_json["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let key = (plural.to_string(), ns.to_string(), name.clone());
            if f.chaos.contains_key(&key) {
                return status(409, "AlreadyExists", format!("{plural} {name:?} already exists"));
            }
            let mut obj = body_json.clone();
            obj["metadata"]["uid"] = json!(format!("uid-{}", f.requests.len()));
            obj["metadata"]["resourceVersion"] = json!(format!("{}", 50000 + f.requests.len()));
            obj["metadata"]["creationTimestamp"] = json!("2026-12-05T12:00:00Z");
            f.chaos.insert(key, obj.clone());
            (StatusCode::CREATED, axum::Json(obj))
        }
        ("DELETE", ["apis", "chaos-mesh.org", "v1alpha1", "namespaces", ns, plural, name]) => {
            match f.chaos.remove(&(plural.to_string(), ns.to_string(), name.to_string())) {
                Some(obj) => (StatusCode::OK, axum::Json(obj)),
                None => status(404, "NotFound", format!("{plural} {name:?} not found")),
            }
        }
        _ => status(404, "NotFound", format!("the fake has no {method} {path}")),
    }
}

fn requests(fake: &Shared, method: &str, needle: &str) -> Vec<(String, Value)> {
    fake.lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(m, p, _)| m == method && p.contains(needle))
        .map(|(_, p, b)| (p.clone(), b.clone()))
        .collect()
}

fn start_req(kind: &str, node: &str, params: Value, secs: f64) -> StartRequest {
    StartRequest {
        kind: kind.into(),
        node: Some(node.into()),
        params: serde_json::from_value(params).unwrap(),
        duration: Some(DurationArg::Seconds(secs)),
        ..StartRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_discovered_and_faults_go_through_chaos_mesh() {
    let fake: Shared = Arc::default();
    {
        let left = fixture("leftover-stresschaos.json");
        let name = left["metadata"]["name"].as_str().unwrap().to_owned();
        fake.lock().unwrap().chaos.insert(("stresschaos".into(), "distdiag".into(), name), left);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kube_addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(serve).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{kube_addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\n\
             current-context: fake\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let cfg = tmp.path().join("coordinator.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kubernetes]\ndiscover = true\nkubeconfig = {:?}\npassword_env = \"OB_PW\"\n\n\
             [kubernetes.chaos_mesh]\nenabled = true\nnamespace = \"distdiag\"\n",
            kubeconfig.display().to_string()
        ),
    )
    .unwrap();
    let data = tmp.path().join("coord");
    make_certs(&data.join("certs"), &["k8s-node-1"]);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &["--config", cfg.to_str().unwrap()]);
    let c = coord.client();
    let log_path = coord.log.clone();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Discovery: three running OBServer pods, each on its Kubernetes node.
    let dbs = c.databases().await.unwrap().databases;
    let found: Vec<(String, Option<String>, String)> =
        dbs.iter().map(|d| (d.name.clone(), d.host_node.clone(), d.addr.clone())).collect();
    assert_eq!(
        found,
        [
            (
                "obcluster-1-zone1-7c2f0d1b5e9a".to_owned(),
                Some("k8s-node-1".to_owned()),
                "10.244.1.17:2881".to_owned()
            ),
            (
                "obcluster-1-zone2-a41e6b0c3d77".to_owned(),
                Some("k8s-node-2".to_owned()),
                "10.244.2.9:2881".to_owned()
            ),
            (
                "obcluster-1-zone3-5d90e2f1c8b4".to_owned(),
                Some("k8s-node-3".to_owned()),
                "10.244.3.21:2881".to_owned()
            ),
        ],
        "{}",
        log()
    );
    let listed = requests(&fake, "GET", "/api/v1/pods?");
    assert!(listed.iter().any(|(p, _)| p.contains("labelSelector=ref-obcluster")), "{listed:?}");
    // The leftover of a crashed run was deleted at start.
    let deleted = requests(&fake, "DELETE", "/stresschaos/distdiag-f1764000000000-0");
    assert_eq!(deleted.len(), 1, "the leftover StressChaos was not deleted:\n{}", log());

    // cpu_stress on node 1: a StressChaos at its OBServer pod.
    let rec = c
        .start_fault(&start_req(
            "cpu_stress",
            "k8s-node-1",
            json!({"load_percent": 70, "workers": 2}),
            60.0,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log()))
        .anomalies
        .remove(0);
    let res = rec.chaos.clone().expect("the record names its Chaos Mesh resource");
    assert_eq!((res.kind.as_str(), res.namespace.as_str()), ("StressChaos", "distdiag"));
    assert_eq!(rec.state, FaultPhase::Applied);
    let posted =
        requests(&fake, "POST", "/apis/chaos-mesh.org/v1alpha1/namespaces/distdiag/stresschaos");
    assert_eq!(posted.len(), 1);
    let body = &posted[0].1;
    assert_eq!(body["metadata"]["name"], res.name.as_str());
    assert_eq!(body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "distdiag");
    assert_eq!(body["metadata"]["labels"]["distdiag.io/fault-id"], rec.id.as_str());
    assert_eq!(
        body["spec"],
        json!({"mode": "all", "duration": "60s",
            "selector": {"namespaces": ["oceanbase"], "pods": {"oceanbase": ["obcluster-1-zone1-7c2f0d1b5e9a"]}},
            "stressors": {"cpu": {"workers": 2, "load": 70}}})
    );
    // Stopped through the API: deleted, the record reverted.
    c.stop_fault(Some(&rec.id)).await.unwrap();
    assert_eq!(requests(&fake, "DELETE", &format!("/stresschaos/{}", res.name)).len(), 1);

    // network_delay for 3 s on node 2: a NetworkChaos, deleted at its deadline.
    let short = c
        .start_fault(&start_req(
            "network_delay",
            "k8s-node-2",
            json!({"latency_ms": 80, "jitter_ms": 5}),
            3.0,
        ))
        .await
        .unwrap()
        .anomalies
        .remove(0);
    let posted = requests(&fake, "POST", "/namespaces/distdiag/networkchaos");
    assert_eq!(posted.len(), 1);
    let spec = &posted[0].1["spec"];
    assert_eq!(
        (&spec["action"], &spec["delay"]["latency"], &spec["duration"]),
        (&json!("delay"), &json!("80ms"), &json!("3s"))
    );
    assert_eq!(spec["selector"]["pods"]["oceanbase"][0], "obcluster-1-zone2-a41e6b0c3d77");
    let name = short.chaos.unwrap().name;
    let gone = poll_until(
        Duration::from_secs(20),
        || async { requests(&fake, "DELETE", &format!("/networkchaos/{name}")).len() },
        |n| *n == 1,
    )
    .await;
    assert!(gone.is_ok(), "the NetworkChaos was not deleted at its deadline:\n{}", log());

    // disk_stress has no Chaos Mesh form: it goes to the agent, which is not connected.
    let err =
        c.start_fault(&start_req("disk_stress", "k8s-node-3", json!({}), 10.0)).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(409), "{err}");

    // A crash with two faults live: the one whose deadline passes while the
    // coordinator is down is deleted at the next start; the other stays
    // until it is stopped.
    let brief = c
        .start_fault(&start_req("network_loss", "k8s-node-3", json!({"percent": 20}), 2.0))
        .await
        .unwrap()
        .anomalies
        .remove(0);
    let long = c
        .start_fault(&start_req("memory_stress", "k8s-node-1", json!({"bytes": 268435456}), 300.0))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log()))
        .anomalies
        .remove(0);
    coord.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    coord.restart();
    let c = coord.client();
    let (brief_name, long_name) = (brief.chaos.unwrap().name, long.chaos.unwrap().name);
    assert_eq!(
        requests(&fake, "DELETE", &format!("/networkchaos/{brief_name}")).len(),
        1,
        "{}",
        log()
    );
    assert!(requests(&fake, "DELETE", &format!("/stresschaos/{long_name}")).is_empty());
    let active = c.active_faults().await.unwrap().anomalies;
    assert_eq!(active.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [long.id.as_str()]);
    let history =
        c.fault_history(&HistoryQuery { from: Some("-1h".into()), to: None }).await.unwrap();
    let state_of = |id: &str| history.anomalies.iter().find(|r| r.id == id).map(|r| r.state);
    assert_eq!(state_of(&rec.id), Some(FaultPhase::Reverted));
    assert_eq!(state_of(&brief.id), Some(FaultPhase::Expired));
    // A clean stop deletes what is still live.
    assert!(coord.stop().success());
    assert_eq!(
        requests(&fake, "DELETE", &format!("/stresschaos/{long_name}")).len(),
        1,
        "{}",
        log()
    );
    assert!(
        fake.lock().unwrap().chaos.is_empty(),
        "resources left: {:?}",
        fake.lock().unwrap().chaos.keys()
    );
}
