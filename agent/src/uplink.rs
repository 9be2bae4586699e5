//! The QUIC uplink to the coordinator. Only this module (and the
//! coordinator's ingest) knows QUIC.
//!
//! One session = one connection with mutual TLS and one bidirectional stream:
//! hello, welcome, then every unacknowledged batch from the oldest on, then
//! new ones as they come, at most `max_in_flight` unacknowledged. Acks remove
//! batches from the buffer. A lost connection ends the session; the next one
//! starts after an exponential backoff with jitter and replays from the oldest
//! unacknowledged batch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distdiag_common::codec::{decode_payload, encode_frame};
use distdiag_common::proto::{
    AgentMsg, CoordMsg, Hello, ProtocolError, ALPN, CLOSE_NORMAL, DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
};
use distdiag_common::FrameDecoder;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::{FaultCmd, Shared};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("connection: {0}")]
    Connection(String),
    #[error("the coordinator refused this agent: {0}")]
    Refused(ProtocolError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the coordinator went silent for {0:?}")]
    Silent(Duration),
}

/// Builds the client TLS configuration (fails early on bad files).
pub fn client_config(cfg: &Config) -> Result<quinn::ClientConfig, UplinkError> {
    use distdiag_common::pem;
    let u = &cfg.uplink;
    let tls_err = |e: pem::PemError| UplinkError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem::load_certs(&u.ca_cert).map_err(tls_err)? {
        roots.add(c).map_err(|e| UplinkError::Tls(format!("{}: {e}", u.ca_cert.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| UplinkError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            pem::load_certs(&u.cert).map_err(tls_err)?,
            pem::load_key(&u.key).map_err(tls_err)?,
        )
        .map_err(|e| UplinkError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| UplinkError::Tls(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    let idle = (u.heartbeat_ms * 4).clamp(1_000, 60_000);
    transport.max_idle_timeout(Some(
        Duration::from_millis(idle)
            .try_into()
            .map_err(|_| UplinkError::Tls("idle timeout".into()))?,
    ));
    transport.keep_alive_interval(Some(Duration::from_millis(u.heartbeat_ms)));
    cc.transport_config(Arc::new(transport));
    Ok(cc)
}

/// Runs sessions until `shutdown` turns true.
pub async fn run(
    cfg: Config,
    client: quinn::ClientConfig,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = match cfg.backoff() {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "bad backoff settings");
            return;
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut established = false;
        let result = session(&cfg, &client, &shared, &mut shutdown, &mut established).await;
        shared.set_status(|s| s.connected = false);
        match result {
            Ok(()) => return,
            Err(e) => {
                match &e {
                    UplinkError::Refused(_) => warn!(error = %e, "refused by the coordinator"),
                    _ => info!(error = %e, "uplink session ended"),
                }
                shared.set_status(|s| s.last_error = Some(e.to_string()));
            }
        }
        if established {
            backoff.reset();
        }
        let delay = backoff.next_delay(rand::random::<f64>());
        debug!(?delay, "reconnecting after backoff");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, UplinkError> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| UplinkError::Resolve(format!("{addr}: {e}")))?
        .next()
        .ok_or_else(|| UplinkError::Resolve(addr.to_owned()))
}

async fn read_msg(
    recv: &mut quinn::RecvStream,
    dec: &mut FrameDecoder,
) -> Result<Option<CoordMsg>, UplinkError> {
    loop {
        if let Some(p) = dec.next_frame().map_err(|e| UplinkError::Protocol(e.to_string()))? {
            return decode_payload::<CoordMsg>(&p, DEFAULT_MAX_FRAME)
                .map(Some)
                .map_err(|e| UplinkError::Protocol(e.to_string()));
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => dec.push(&c.bytes),
            Ok(None) => return Ok(None),
            Err(e) => return Err(UplinkError::Connection(e.to_string())),
        }
    }
}

async fn send_msg(
    send: &mut quinn::SendStream,
    msg: &AgentMsg,
    max: u32,
) -> Result<(), UplinkError> {
    let frame = encode_frame(msg, max).map_err(|e| UplinkError::Protocol(e.to_string()))?;
    send.write_all(&frame).await.map_err(|e| UplinkError::Connection(e.to_string()))
}

/// Reads the coordinator's messages; acknowledgements shrink the buffer and
/// fault commands go to the fault task.
async fn reader(
    mut recv: quinn::RecvStream,
    mut dec: FrameDecoder,
    shared: Arc<Shared>,
    heard: Arc<std::sync::Mutex<Instant>>,
) -> Result<(), UplinkError> {
    loop {
        let msg = read_msg(&mut recv, &mut dec).await?;
        *heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        shared.set_status(|s| s.last_contact_ms = Some(crate::now_ms()));
        match msg {
            None => {
                return Err(UplinkError::Connection("the coordinator closed the stream".into()))
            }
            Some(CoordMsg::Ack { seq }) => {
                shared.buffer().ack(seq);
                shared.set_status(|s| s.acked_seq = s.acked_seq.max(seq));
                shared.wake.notify_one();
            }
            Some(CoordMsg::Heartbeat { .. }) => {}
            Some(CoordMsg::Refused(e)) => return Err(UplinkError::Refused(e)),
            Some(CoordMsg::ApplyFault { id, spec, deadline_ms }) => {
                shared.fault_command(FaultCmd::Apply { id, spec, deadline_ms })
            }
            Some(CoordMsg::RevertFault { id }) => shared.fault_command(FaultCmd::Revert { id }),
            Some(CoordMsg::RevertAll) => shared.fault_command(FaultCmd::RevertAll),
            Some(CoordMsg::Welcome { .. }) => {
                return Err(UplinkError::Protocol("second welcome".into()))
            }
        }
    }
}

fn close_reason(e: &quinn::ConnectionError) -> UplinkError {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => UplinkError::Connection(format!(
            "closed by the coordinator (code {}): {}",
            c.error_code,
            String::from_utf8_lossy(&c.reason)
        )),
        other => UplinkError::Connection(other.to_string()),
    }
}

async fn session(
    cfg: &Config,
    client: &quinn::ClientConfig,
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<bool>,
    established: &mut bool,
) -> Result<(), UplinkError> {
    let u = &cfg.uplink;
    let addr = resolve(&u.coordinator).await?;
    let bind: SocketAddr =
        if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let mut endpoint =
        quinn::Endpoint::client(bind).map_err(|e| UplinkError::Connect(e.to_string()))?;
    endpoint.set_default_client_config(client.clone());
    let connecting =
        endpoint.connect(addr, &u.server_name).map_err(|e| UplinkError::Connect(e.to_string()))?;
    let conn = tokio::time::timeout(Duration::from_millis(u.connect_timeout_ms), connecting)
        .await
        .map_err(|_| {
            UplinkError::Connect(format!(
                "no answer from {addr} within {} ms",
                u.connect_timeout_ms
            ))
        })?
        .map_err(|e| UplinkError::Connect(e.to_string()))?;
    let result = stream(cfg, &conn, shared, shutdown, established).await;
    match &result {
        Ok(()) => conn.close(CLOSE_NORMAL.into(), b"agent shutting down"),
        Err(_) => conn.close(CLOSE_NORMAL.into(), b"session error"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

async fn stream(
    cfg: &Config,
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<bool>,
    established: &mut bool,
) -> Result<(), UplinkError> {
    let u = &cfg.uplink;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| close_reason(&e))?;
    let mut max_frame = DEFAULT_MAX_FRAME;
    let catalog = shared.catalog();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        node: cfg.node_name(),
        host: crate::facts::host_facts(&cfg.collect.roots()),
        capabilities: crate::facts::capabilities(
            &cfg.collect.roots(),
            shared.fault_backends(),
            shared.missing_backends(),
        ),
        catalog: catalog.clone(),
        interval_ms: cfg.interval_ms,
    };
    send_msg(&mut send, &AgentMsg::Hello(hello), max_frame).await?;
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let welcome = tokio::time::timeout(
        Duration::from_millis(u.connect_timeout_ms),
        read_msg(&mut recv, &mut dec),
    )
    .await
    .map_err(|_| UplinkError::Protocol("no welcome".into()))?;
    match welcome {
        Ok(Some(CoordMsg::Welcome { node, max_frame: m })) => {
            max_frame = m.min(DEFAULT_MAX_FRAME);
            info!(%node, "connected to the coordinator");
        }
        Ok(Some(CoordMsg::Refused(e))) => return Err(UplinkError::Refused(e)),
        Ok(Some(other)) => {
            return Err(UplinkError::Protocol(format!("expected a welcome, got {other:?}")))
        }
        Ok(None) => {
            return Err(conn
                .close_reason()
                .map(|e| close_reason(&e))
                .unwrap_or_else(|| UplinkError::Protocol("stream closed before welcome".into())))
        }
        Err(e) => return Err(conn.close_reason().map(|e| close_reason(&e)).unwrap_or(e)),
    }
    *established = true;
    shared.set_status(|s| {
        s.connected = true;
        s.sessions += 1;
    });

    let heard = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut reader = tokio::spawn(reader(recv, dec, shared.clone(), heard.clone()));
    let mut sent_catalog = catalog.len();
    let mut next = shared.buffer().first_seq().unwrap_or(0);
    // Acks count from here: earlier sequence numbers were acknowledged or
    // dropped before this session (also across an agent restart).
    let session_first = next;
    let heartbeat = Duration::from_millis(u.heartbeat_ms);
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        for msg in shared.take_outbox() {
            send_msg(&mut send, &msg, max_frame).await?;
        }
        // Send what the window allows: batches first taken, then the catalog
        // they may need (it only grows, and is updated before rows that use it).
        let acked = shared.status().acked_seq;
        let in_flight = next.saturating_sub(acked.saturating_add(1).max(session_first)) as usize;
        if in_flight < u.max_in_flight {
            let batches = shared.buffer().take_from(next, u.max_in_flight - in_flight);
            if !batches.is_empty() {
                let catalog = shared.catalog();
                if catalog.len() > sent_catalog {
                    send_msg(&mut send, &AgentMsg::Catalog(catalog.clone()), max_frame).await?;
                    sent_catalog = catalog.len();
                }
                for b in batches {
                    next = b.seq + 1;
                    send_msg(&mut send, &AgentMsg::Batch(b), max_frame).await?;
                }
                continue;
            }
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tick.tick() => {
                let silent = heard.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                if silent > heartbeat * 3 {
                    reader.abort();
                    return Err(UplinkError::Silent(silent));
                }
                send_msg(&mut send, &AgentMsg::Heartbeat { ts_ms: crate::now_ms() }, max_frame).await?;
            }
            r = &mut reader => {
                return Err(match r {
                    Ok(Err(e)) => conn.close_reason().map(|c| close_reason(&c)).unwrap_or(e),
                    Ok(Ok(())) => UplinkError::Connection("reader ended".into()),
                    Err(e) => UplinkError::Connection(e.to_string()),
                });
            }
            _ = shutdown.changed() => {
                // The caller drained the buffer first; unacknowledged batches stay buffered.
                let _ = send.finish();
                reader.abort();
                return Ok(());
            }
        }
    }
}
