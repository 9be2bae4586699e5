//! Faults through the coordinator's API: a real coordinator process, an
//! in-process agent, real stressor processes. Every fault ends up as a
//! labelled record, whatever ends it.

// End-to-end tests start the programs they test, and the tools they measure with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

use distdiag_api::faults::{DurationArg, FaultPhase, HistoryQuery, StartRequest};
use distdiag_api::{Client, ClientError};
use distdiag_testbed::*;
use serde_json::{json, Map, Value};

fn my_stressors() -> Vec<u32> {
    stressors_of(std::process::id())
}

/// A start request for `kind` with `params` (a JSON object).
fn start(kind: &str, params: Value) -> StartRequest {
    let params: Map<String, Value> = serde_json::from_value(params).unwrap();
    StartRequest { kind: kind.into(), params, ..StartRequest::default() }
}

fn status(e: ClientError) -> u16 {
    e.status().map_or(0, |s| s.as_u16())
}

/// Runs the `distdiag` CLI against the coordinator; (exit code, stdout+stderr).
async fn cli(coord: &Coordinator, args: &[&str]) -> (i32, String) {
    let mut full = vec![
        "--url".to_owned(),
        coord.url(""),
        "--data-dir".to_owned(),
        coord.data_dir.display().to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin("distdiag")).args(&full).output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_through_the_api_are_applied_reverted_and_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &[]);
    let mut cfg = agent_config("n1", &certs, quic, &tmp.path().join("agent"), 200);
    cfg.fault.deadman_grace_ms = 2_000;
    let agent = distdiag_agent::start(cfg, None).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || agent.status().connected).await);
    let c = coord.client();

    // The seeds' body: one agent connected, so it is the target; defaults apply.
    let v = c.start_fault(&start("cpu_stress", json!({"load_percent": 20}))).await.unwrap();
    assert_eq!(v.message, "Started cpu_stress anomaly");
    let rec = &v.anomalies[0];
    assert_eq!(
        (rec.node.as_str(), rec.state, rec.kind.as_str()),
        ("n1", FaultPhase::Applied, "cpu_stress")
    );
    let id = rec.id.clone();
    assert_eq!(my_stressors().len(), 1);
    assert_eq!(c.active_faults().await.unwrap().anomalies.len(), 1);

    // Stop it by id.
    c.stop_fault(Some(&id)).await.unwrap();
    assert!(my_stressors().is_empty());
    assert!(c.active_faults().await.unwrap().anomalies.is_empty());

    // The agent refuses what its host cannot take; nothing runs.
    let mut huge = start("memory_stress", json!({"bytes": 1u64 << 50}));
    huge.node = Some("n1".into());
    let e = c.start_fault(&huge).await.unwrap_err();
    assert!(e.to_string().contains("available"), "{e}");
    assert_eq!(status(e), 422);
    assert!(my_stressors().is_empty());
    let mut no_iface = start("network_bandwidth", json!({"interface": "ddnosuch0"}));
    no_iface.node = Some("n1".into());
    let e = c.start_fault(&no_iface).await.unwrap_err();
    assert_eq!(status(e), 422, "a limit on an interface the host lacks is refused");
    let mut elsewhere = start("cpu_stress", json!({}));
    elsewhere.node = Some("n9".into());
    assert_eq!(status(c.start_fault(&elsewhere).await.unwrap_err()), 409);

    // A short fault ends at its deadline on the agent; the label follows.
    let mut short = start("disk_stress", json!({"bytes": 1048576}));
    short.duration = Some(DurationArg::Seconds(1.0));
    let short = c.start_fault(&short).await.unwrap().anomalies[0].id.clone();
    assert!(eventually(Duration::from_secs(10), || my_stressors().is_empty()).await);
    assert!(
        eventually_async(Duration::from_secs(10), || async {
            c.active_faults().await.unwrap().anomalies.is_empty()
        })
        .await,
        "the expired fault is still listed as active"
    );

    // The same through the command line.
    let (code, out) = cli(
        &coord,
        &[
            "fault",
            "start",
            "cpu_stress",
            "--node",
            "n1",
            "--param",
            "load_percent=10",
            "--duration",
            "30s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied"), "{out}");
    assert_eq!(my_stressors().len(), 1);
    let (code, out) = cli(&coord, &["fault", "list"]).await;
    assert!(code == 0 && out.contains("cpu_stress"), "{out}");
    let (code, out) = cli(&coord, &["fault", "stop"]).await;
    assert!(code == 0 && out.contains("reverted"), "{out}");
    assert!(my_stressors().is_empty());
    let (code, out) = cli(&coord, &["fault", "start", "bogus"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown anomaly type"), "{out}");
    let (code, out) = cli(&coord, &["fault", "list", "--history", "--from", "-1h"]).await;
    assert!(code == 0 && out.matches("cpu_stress").count() >= 2, "{out}");

    // A fault outlives its coordinator only until the dead-man switch fires.
    let mut long = start("cpu_stress", json!({"load_percent": 10}));
    long.duration = Some(DurationArg::Text("10m".into()));
    let orphan = c.start_fault(&long).await.unwrap().anomalies[0].id.clone();
    coord.kill9();
    assert!(
        eventually(Duration::from_secs(8), || my_stressors().is_empty()).await,
        "dead-man switch did not fire"
    );
    coord.restart();
    // The agent reconnects and reports the revert; the label is closed.
    let all = HistoryQuery { from: Some("0".into()), to: None };
    let closed = async {
        for _ in 0..100 {
            let recs = c.fault_history(&all).await.unwrap().anomalies;
            if recs.iter().any(|r| r.id == orphan && r.state == FaultPhase::Reverted) {
                return recs;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the orphaned fault's record was never closed");
    }
    .await;
    let by_id = |id: &str| closed.iter().find(|r| r.id == id).cloned().unwrap();
    assert_eq!(by_id(&id).state, FaultPhase::Reverted);
    assert_eq!(by_id(&short).state, FaultPhase::Expired);
    assert!(by_id(&orphan).detail.contains("dead-man"), "{:?}", by_id(&orphan));
    for r in &closed {
        if matches!(r.state, FaultPhase::Reverted | FaultPhase::Expired) {
            assert!(r.applied_ms.unwrap() <= r.ended_ms.unwrap());
        }
    }
    assert!(closed.iter().any(|r| r.state == FaultPhase::Refused && r.kind == "memory_stress"));
    agent.stop(Duration::from_secs(2)).await;
}

/// An idle veth pair in the host's namespace (no addresses), for network
/// faults that must not touch real traffic. (This kernel has no dummy driver.)
struct Dummy(String);

impl Dummy {
    fn create() -> Option<Dummy> {
        let n = std::process::id() % 10_000;
        let (name, peer) = (format!("ddva{n}"), format!("ddvb{n}"));
        let ok = |args: &[&str]| {
            std::process::Command::new("ip").args(args).status().is_ok_and(|s| s.success())
        };
        (ok(&["link", "add", &name, "type", "veth", "peer", "name", &peer])
            && ok(&["link", "set", &name, "up"])
            && ok(&["link", "set", &peer, "up"]))
        .then_some(Dummy(name))
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What the host holds for a fault of `kind` with id `id`.
fn artifact(kind: &str, id: &str, iface: &str, state: &std::path::Path) -> bool {
    match kind {
        "network_loss" => sh("iptables", &["-t", "mangle", "-S", "POSTROUTING"])
            .contains(&format!("-o {iface} -j DD-")),
        "network_bandwidth" => sh("tc", &["qdisc", "show", "dev", iface, "root"]).contains("7a01:"),
        "network_delay" => sh("iptables", &["-t", "mangle", "-S", "OUTPUT"])
            .contains(&format!("-o {iface} -j DD-")),
        "disk_stress" => state.join(format!("fault-disk/distdiag-{id}")).exists(),
        _ => !my_stressors().is_empty(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_undone_by_api_stop_and_by_the_dead_man_switch() {
    let Some(dummy) = Dummy::create() else {
        return skip("cannot create a veth pair (not root?)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coord");
    let certs = make_certs(&data.join("certs"), &["n1"]);
    let (api, quic) = free_ports();
    let mut coord = Coordinator::start(&data, api, quic, &[]);
    let state = tmp.path().join("agent");
    let mut cfg = agent_config("n1", &certs, quic, &state, 200);
    cfg.fault.deadman_grace_ms = 1_500;
    let agent = distdiag_agent::start(cfg, None).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || agent.status().connected).await);
    let c: Client = coord.client();
    let iface = dummy.0.clone();
    let kinds: Vec<(&str, Value)> = vec![
        ("cpu_stress", json!({"load_percent": 10})),
        ("memory_stress", json!({"bytes": 33554432})),
        ("disk_stress", json!({"bytes": 4194304})),
        ("network_loss", json!({"percent": 20.0, "interface": iface})),
        ("network_bandwidth", json!({"rate_kbit": 4000, "interface": iface})),
        ("network_delay", json!({"latency_ms": 30, "interface": iface})),
    ];
    let mut rows = Vec::new();
    // API stop, one fault at a time.
    for (kind, params) in &kinds {
        let v = c.start_fault(&start(kind, params.clone())).await.unwrap();
        let id = v.anomalies[0].id.clone();
        assert!(artifact(kind, &id, &iface, &state), "{kind} not in effect");
        c.stop_fault(Some(&id)).await.unwrap();
        let left = artifact(kind, &id, &iface, &state);
        rows.push(format!("| {kind} | API stop | {} |", if left { "yes" } else { "none" }));
    }
    // All at once, then the coordinator dies: the dead-man switch reverts them.
    let mut ids = Vec::new();
    for (kind, params) in &kinds {
        let mut req = start(kind, params.clone());
        req.duration = Some(DurationArg::Text("10m".into()));
        ids.push((*kind, c.start_fault(&req).await.unwrap().anomalies[0].id.clone()));
    }
    coord.kill9();
    let undone = eventually(Duration::from_secs(10), || {
        ids.iter().all(|(k, id)| !artifact(k, id, &iface, &state))
    })
    .await;
    for (kind, id) in &ids {
        rows.push(format!(
            "| {kind} | coordinator killed (dead-man) | {} |",
            if artifact(kind, id, &iface, &state) { "yes" } else { "none" }
        ));
    }
    println!("| fault | exit path | left behind |\n|---|---|---|\n{}", rows.join("\n"));
    assert!(undone && rows.iter().all(|r| r.ends_with("| none |")), "{}", rows.join("\n"));
    agent.stop(Duration::ZERO).await;
}
