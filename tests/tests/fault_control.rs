//! Fault control over the real protocol: a stand-in coordinator (real QUIC
//! with mutual TLS, the real codec) sends ApplyFault and RevertFault to an
//! in-process agent and reads its FaultStatus replies; then it goes away and
//! the agent's dead-man switch reverts what is still applied.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use distdiag_common::codec::{decode_hello, decode_payload, encode_frame, FrameDecoder};
use distdiag_common::fault::{FaultSpec, FaultState};
use distdiag_common::proto::*;
use distdiag_testbed::*;

struct Peer {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    dec: FrameDecoder,
}

impl Peer {
    async fn send(&mut self, m: &CoordMsg) {
        self.send.write_all(&encode_frame(m, DEFAULT_MAX_FRAME).unwrap()).await.unwrap();
    }

    /// The next fault status, skipping rows and heartbeats.
    async fn status(&mut self) -> (String, FaultState, String) {
        loop {
            while let Some(p) = self.dec.next_frame().unwrap() {
                if let AgentMsg::FaultStatus { id, state, detail } =
                    decode_payload::<AgentMsg>(&p, DEFAULT_MAX_FRAME).unwrap()
                {
                    return (id, state, detail);
                }
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), self.recv.read_chunk(1 << 16, true))
                    .await
                    .expect("no status in time");
            self.dec.push(&chunk.unwrap().unwrap().bytes);
        }
    }
}

/// Stressor processes started by this test process (the in-process agent).
fn my_stressors() -> Vec<u32> {
    stressors_of(std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_revert_and_fall_to_the_dead_man_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certs(&tmp.path().join("certs"), &["n1"]);
    let server = distdiag_coordinator::tls::server_config(
        &certs.ca_cert(),
        &certs.server_cert(),
        &certs.server_key(),
        20_000,
    )
    .unwrap();
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();

    let mut cfg = agent_config("n1", &certs, addr, &tmp.path().join("agent"), 200);
    cfg.fault.deadman_grace_ms = 2_000;
    let agent = distdiag_agent::start(cfg, None).await.unwrap();

    let conn = endpoint.accept().await.unwrap().await.unwrap();
    let (send, recv) = conn.accept_bi().await.unwrap();
    let mut peer = Peer { send, recv, dec: FrameDecoder::new(DEFAULT_MAX_FRAME) };
    let hello = loop {
        if let Some(p) = peer.dec.next_frame().unwrap() {
            break decode_hello(&p, DEFAULT_MAX_FRAME).unwrap();
        }
        let c = peer.recv.read_chunk(1 << 16, true).await.unwrap().unwrap();
        peer.dec.push(&c.bytes);
    };
    assert!(
        hello.capabilities.fault_backends.iter().any(|b| b.kind == "cpu_stress"),
        "{:?}",
        hello.capabilities
    );
    assert!(hello.capabilities.net_admin, "tests run as root: {:?}", hello.capabilities);
    let delay = hello.capabilities.fault_backends.iter().find(|b| b.kind == "network_delay");
    assert!(delay.is_some_and(|b| b.mechanism.contains("NFQUEUE")), "{:?}", hello.capabilities);
    peer.send(&CoordMsg::Welcome { node: "n1".into(), max_frame: DEFAULT_MAX_FRAME }).await;

    let now = distdiag_agent::now_ms();
    let cpu = FaultSpec::CpuStress { workers: 1, load_percent: 10 };
    // Applied, then reverted on request.
    peer.send(&CoordMsg::ApplyFault {
        id: "f1".into(),
        spec: cpu.clone(),
        deadline_ms: now + 60_000,
    })
    .await;
    assert_eq!(peer.status().await.1, FaultState::Applied);
    assert_eq!(my_stressors().len(), 1);
    peer.send(&CoordMsg::RevertFault { id: "f1".into() }).await;
    assert_eq!(
        peer.status().await,
        ("f1".into(), FaultState::Reverted, "reverted on request".into())
    );
    assert!(my_stressors().is_empty());
    // A refusal carries the reason and changes nothing.
    peer.send(&CoordMsg::ApplyFault {
        id: "f2".into(),
        spec: FaultSpec::CpuStress { workers: 0, load_percent: 10 },
        deadline_ms: now + 60_000,
    })
    .await;
    let (id, state, detail) = peer.status().await;
    assert_eq!((id.as_str(), state), ("f2", FaultState::Refused));
    assert!(detail.contains("workers"), "{detail}");
    // Reverting an unknown fault is refused.
    peer.send(&CoordMsg::RevertFault { id: "nope".into() }).await;
    assert_eq!(peer.status().await.1, FaultState::Refused);

    // Applied, then the coordinator disappears: the dead-man switch reverts it.
    peer.send(&CoordMsg::ApplyFault {
        id: "f3".into(),
        spec: cpu,
        deadline_ms: distdiag_agent::now_ms() + 60_000,
    })
    .await;
    assert_eq!(peer.status().await.1, FaultState::Applied);
    let gone_at = std::time::Instant::now();
    conn.close(0u32.into(), b"coordinator gone");
    endpoint.close(0u32.into(), b"coordinator gone");
    drop(peer);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(my_stressors().len(), 1, "reverted before the grace period ended");
    assert!(
        eventually(Duration::from_secs(6), || my_stressors().is_empty()).await,
        "the dead-man switch did not fire"
    );
    let took = gone_at.elapsed();
    assert!(took >= Duration::from_millis(1500), "fired after {took:?}, before the 2 s grace");
    // The journal entry goes right after the stressor is reaped.
    let entries = || {
        std::fs::read_dir(tmp.path().join("agent/faults"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(2), || entries() == 0).await,
        "journal entries left: {}",
        entries()
    );
    agent.stop(Duration::ZERO).await;
}
