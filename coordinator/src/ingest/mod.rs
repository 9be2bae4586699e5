//! QUIC ingest. Only this module (and the agent's uplink) knows QUIC.
//!
//! Each agent connects with a client certificate signed by the cluster CA;
//! the node name is the certificate's common name. On its one bidirectional
//! stream the agent sends a hello, then batches; every batch goes to the
//! single writer thread, which appends a group of batches, flushes sled once
//! and only then lets the connection acknowledge them (group commit). A
//! connection that sends an oversized or undecodable frame is closed with a
//! typed reason; other connections are unaffected.

mod registry;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use distdiag_common::codec::encode_frame;
use distdiag_common::inbound::Inbound;
use distdiag_common::proto::{AgentMsg, CoordMsg, ProtocolError, CLOSE_NORMAL};
use distdiag_common::{FrameDecoder, MetricDesc};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn, Instrument};

use crate::faults::Faults;
use crate::telemetry::Telemetry;
use distdiag_store::{AppendOutcome, SeriesStore, StoreError};

pub use registry::{AgentInfo, Registry};
pub use writer::{spawn_writer, WriteJob};

/// Shared state of the ingest.
pub struct Ingest {
    pub store: Arc<dyn SeriesStore>,
    pub writer: mpsc::Sender<WriteJob>,
    pub registry: Registry,
    pub faults: Arc<Faults>,
    pub telemetry: Arc<Telemetry>,
    pub max_frame: u32,
    pub remote_write: Option<Arc<crate::remote_write::RemoteWrite>>,
}

enum SessionEnd {
    Protocol(ProtocolError),
    Lost(String),
}

impl From<ProtocolError> for SessionEnd {
    fn from(e: ProtocolError) -> Self {
        SessionEnd::Protocol(e)
    }
}

pub use distdiag_store::now_ms;

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    endpoint: quinn::Endpoint,
    ingest: Arc<Ingest>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                tokio::spawn(handle(ingest.clone(), incoming));
            }
            _ = shutdown.changed() => break,
        }
    }
    endpoint.close(CLOSE_NORMAL.into(), b"coordinator shutting down");
}

async fn handle(ingest: Arc<Ingest>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(error) => {
            Telemetry::inc(&ingest.telemetry.handshakes_failed, 1);
            warn!(%remote, %error, "agent handshake refused");
            return;
        }
    };
    let node = match peer_node(&conn) {
        Ok(n) => n,
        Err(reason) => {
            Telemetry::inc(&ingest.telemetry.connections_refused, 1);
            warn!(%remote, %reason, "agent certificate refused");
            conn.close(
                ProtocolError::Unexpected(reason.clone()).close_code().into(),
                reason.as_bytes(),
            );
            return;
        }
    };
    Telemetry::inc(&ingest.telemetry.connections_accepted, 1);
    let span = tracing::info_span!("agent", node = %node, %remote);
    async move {
        let result = session(&ingest, &conn, &node).await;
        ingest.registry.remove(&node, conn.stable_id());
        match result {
            Ok(()) => info!("agent closed its stream"),
            Err(SessionEnd::Protocol(e)) => {
                Telemetry::inc(&ingest.telemetry.connections_refused, 1);
                warn!(reason = %e, "closing agent connection");
                conn.close(e.close_code().into(), e.to_string().as_bytes());
            }
            Err(SessionEnd::Lost(reason)) => info!(%reason, "agent connection ended"),
        }
    }
    .instrument(span)
    .await
}

fn peer_node(conn: &quinn::Connection) -> Result<String, String> {
    let identity = conn.peer_identity().ok_or("no client certificate")?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| "unexpected peer identity type".to_owned())?;
    let leaf = certs.first().ok_or("empty certificate chain")?;
    crate::tls::node_name(leaf).map_err(|e| e.to_string())
}

async fn read_frame(
    recv: &mut quinn::RecvStream,
    dec: &mut FrameDecoder,
) -> Result<Option<Vec<u8>>, SessionEnd> {
    loop {
        if let Some(f) = dec.next_frame().map_err(ProtocolError::from)? {
            return Ok(Some(f));
        }
        match recv.read_chunk(256 * 1024, true).await {
            Ok(Some(chunk)) => dec.push(&chunk.bytes),
            Ok(None) if dec.buffered() == 0 => return Ok(None),
            Ok(None) => {
                return Err(ProtocolError::Malformed("stream ended inside a frame".into()).into())
            }
            Err(e) => return Err(SessionEnd::Lost(e.to_string())),
        }
    }
}

async fn write_msg(
    send: &mut quinn::SendStream,
    msg: &CoordMsg,
    max: u32,
) -> Result<(), SessionEnd> {
    let frame = encode_frame(msg, max).map_err(ProtocolError::from)?;
    send.write_all(&frame).await.map_err(|e| SessionEnd::Lost(e.to_string()))
}

async fn upsert(
    ingest: &Ingest,
    node: &str,
    hello: &distdiag_common::Hello,
    catalog: Vec<MetricDesc>,
) -> Result<(), ProtocolError> {
    let store = ingest.store.clone();
    let (name, host, caps, interval) =
        (node.to_owned(), hello.host.clone(), hello.capabilities.clone(), hello.interval_ms);
    let res = tokio::task::spawn_blocking(move || {
        store
            .upsert_node(&name, host, caps, catalog, interval, now_ms())
            .and_then(|()| store.flush())
    })
    .await
    .map_err(|e| ProtocolError::Storage(e.to_string()))?;
    // The remote write names this node's series from the catalog it has now.
    if let Some(rw) = &ingest.remote_write {
        rw.forget(node);
    }
    res.map_err(|e| match e {
        StoreError::Catalog { reason, .. } => ProtocolError::BadCatalog(reason),
        other => ProtocolError::Storage(other.to_string()),
    })
}

enum Outgoing {
    Ack { seq: u64, rows: usize, done: oneshot::Receiver<Result<AppendOutcome, StoreError>> },
    Msg(CoordMsg),
}

async fn session(
    ingest: &Arc<Ingest>,
    conn: &quinn::Connection,
    node: &str,
) -> Result<(), SessionEnd> {
    let max = ingest.max_frame;
    let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
        .await
        .map_err(|_| ProtocolError::Unexpected("no stream opened within 10 s".into()))?
        .map_err(|e| SessionEnd::Lost(e.to_string()))?;
    let mut dec = FrameDecoder::new(max);
    let first = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut recv, &mut dec))
        .await
        .map_err(|_| ProtocolError::Unexpected("no hello within 10 s".into()))??
        .ok_or_else(|| ProtocolError::Unexpected("stream closed before hello".into()))?;
    let mut inbound = Inbound::new(node, max);
    let hello = match inbound.hello(&first) {
        Ok(h) => h,
        Err(e) => {
            // Tell the agent why before closing; it logs this and does not retry blindly.
            let _ = write_msg(&mut send, &CoordMsg::Refused(e.clone()), max).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
            return Err(e.into());
        }
    };
    upsert(ingest, node, &hello, hello.catalog.clone()).await?;
    write_msg(&mut send, &CoordMsg::Welcome { node: node.to_owned(), max_frame: max }, max).await?;
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(4096);
    // Control messages (faults) from the API reach the agent through the same writer.
    let (control_tx, mut control_rx) = mpsc::channel::<CoordMsg>(64);
    let forward = out_tx.clone();
    tokio::spawn(async move {
        while let Some(m) = control_rx.recv().await {
            if forward.send(Outgoing::Msg(m)).await.is_err() {
                return;
            }
        }
    });
    if let Some(old) = ingest.registry.insert(node, conn.clone(), control_tx) {
        old.close(CLOSE_NORMAL.into(), b"replaced by a newer connection of the same node");
    }
    let faults: Vec<&str> =
        hello.capabilities.fault_backends.iter().map(|b| b.kind.as_str()).collect();
    info!(metrics = inbound.width(), interval_ms = hello.interval_ms, ?faults, "agent connected");

    let sender = tokio::spawn(send_loop(ingest.clone(), conn.clone(), send, out_rx));
    let result = loop {
        let payload = match read_frame(&mut recv, &mut dec).await {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let msg = match inbound.message(&payload, now_ms()) {
            Ok(m) => m,
            Err(e) => {
                if matches!(e, ProtocolError::Malformed(_) | ProtocolError::FrameTooLarge { .. }) {
                    Telemetry::inc(&ingest.telemetry.frame_errors, 1);
                }
                break Err(e.into());
            }
        };
        match msg {
            AgentMsg::Batch(b) => {
                let (tx, rx) = oneshot::channel();
                let (seq, rows) = (b.seq, b.rows.len());
                if ingest
                    .writer
                    .send(WriteJob { node: node.to_owned(), rows: b.rows, reply: tx })
                    .await
                    .is_err()
                {
                    break Err(ProtocolError::Storage("coordinator is shutting down".into()).into());
                }
                if out_tx.send(Outgoing::Ack { seq, rows, done: rx }).await.is_err() {
                    break Err(SessionEnd::Lost("acknowledgement task ended".into()));
                }
            }
            AgentMsg::Catalog(new) => {
                let from = hello.catalog.len();
                if let Err(e) = upsert(ingest, node, &hello, new.clone()).await {
                    break Err(e.into());
                }
                debug!(from, to = new.len(), "catalog grew");
            }
            AgentMsg::Heartbeat { .. } => {
                let _ = out_tx.send(Outgoing::Msg(CoordMsg::Heartbeat { ts_ms: now_ms() })).await;
            }
            AgentMsg::FaultStatus { id, state, detail } => {
                debug!(fault = %id, ?state, %detail, "fault status");
                ingest.faults.on_status(node, &id, state, detail);
            }
            // A second hello never gets here: `inbound.message` refuses it.
            AgentMsg::Hello(_) => {}
        }
    };
    // Leaving the registry drops the control sender, which ends the control
    // forwarder and with it the last other handle on the writer's queue.
    ingest.registry.remove(node, conn.stable_id());
    drop(out_tx);
    // Let acknowledgements of batches already handed to the writer go out.
    let _ = sender.await;
    result
}

async fn send_loop(
    ingest: Arc<Ingest>,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let max = ingest.max_frame;
    while let Some(out) = rx.recv().await {
        let msg = match out {
            Outgoing::Msg(m) => m,
            Outgoing::Ack { seq, rows, done } => match done.await {
                Ok(Ok(outcome)) => {
                    let t = &ingest.telemetry;
                    Telemetry::inc(&t.batches, 1);
                    Telemetry::inc(&t.rows, outcome.rows as u64);
                    Telemetry::inc(&t.values, outcome.values as u64);
                    Telemetry::inc(&t.duplicate_rows, outcome.duplicates as u64);
                    debug!(seq, rows, "batch durable");
                    CoordMsg::Ack { seq }
                }
                Ok(Err(e)) => {
                    Telemetry::inc(&ingest.telemetry.store_errors, 1);
                    let e = match e {
                        StoreError::Catalog { reason, .. } => ProtocolError::BadBatch(reason),
                        other => ProtocolError::Storage(other.to_string()),
                    };
                    warn!(seq, reason = %e, "batch not stored; closing so the agent keeps it and retries");
                    conn.close(e.close_code().into(), e.to_string().as_bytes());
                    return;
                }
                Err(_) => return,
            },
        };
        let Ok(frame) = encode_frame(&msg, max) else { return };
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
