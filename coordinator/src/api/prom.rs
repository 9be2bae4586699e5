//! `GET /metrics`: the coordinator's own figures in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;

fn line(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
}

/// The coordinator's own figures in Prometheus text format: ingest rate and
/// totals, connected agents, handshake and frame errors, store size, sealed
/// bytes and values, flush time.
#[utoipa::path(
    operation_id = "self_metrics",
    get, path = "/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String))
)]
pub(super) async fn render(State(state): State<ApiState>) -> impl IntoResponse {
    let t = &state.telemetry;
    let s = state.store.stats();
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut out = String::with_capacity(2048);
    line(
        &mut out,
        "distdiag_connected_agents",
        "gauge",
        "Agents connected over QUIC.",
        state.registry.len() as f64,
    );
    line(
        &mut out,
        "distdiag_ingest_connections_total",
        "counter",
        "Agent connections accepted.",
        c(&t.connections_accepted),
    );
    line(
        &mut out,
        "distdiag_ingest_handshake_failures_total",
        "counter",
        "TLS handshakes refused (bad or missing client certificate).",
        c(&t.handshakes_failed),
    );
    line(
        &mut out,
        "distdiag_ingest_connections_refused_total",
        "counter",
        "Connections closed for a protocol error.",
        c(&t.connections_refused),
    );
    line(
        &mut out,
        "distdiag_ingest_frame_errors_total",
        "counter",
        "Frames that could not be decoded.",
        c(&t.frame_errors),
    );
    line(
        &mut out,
        "distdiag_ingest_batches_total",
        "counter",
        "Batches stored and acknowledged.",
        c(&t.batches),
    );
    line(&mut out, "distdiag_ingest_rows_total", "counter", "Rows stored.", c(&t.rows));
    line(&mut out, "distdiag_ingest_values_total", "counter", "Values stored.", c(&t.values));
    line(
        &mut out,
        "distdiag_ingest_values_per_second",
        "gauge",
        "Values stored per second over the last sampling period.",
        f64::from_bits(t.values_per_second_bits.load(Ordering::Relaxed)),
    );
    line(
        &mut out,
        "distdiag_ingest_duplicate_rows_total",
        "counter",
        "Replayed rows that were already stored.",
        c(&t.duplicate_rows),
    );
    line(
        &mut out,
        "distdiag_store_errors_total",
        "counter",
        "Batches the store could not take.",
        c(&t.store_errors),
    );
    line(&mut out, "distdiag_store_flushes_total", "counter", "Group commits.", c(&t.flushes));
    line(
        &mut out,
        "distdiag_store_flush_seconds_total",
        "counter",
        "Time spent flushing.",
        c(&t.flush_seconds_micros) / 1e6,
    );
    line(
        &mut out,
        "distdiag_store_retention_deleted_blocks_total",
        "counter",
        "Blocks deleted by retention.",
        c(&t.retention_deleted_blocks),
    );
    line(&mut out, "distdiag_store_nodes", "gauge", "Nodes known to the store.", s.nodes as f64);
    line(
        &mut out,
        "distdiag_store_writable",
        "gauge",
        "1 when the store takes writes, 0 while they fail (a full disk); /health says why.",
        if state.store.storage_fault().is_none() { 1.0 } else { 0.0 },
    );
    line(
        &mut out,
        "distdiag_store_size_bytes",
        "gauge",
        "Size of the store on disk (sled and write-ahead log).",
        s.size_on_disk as f64,
    );
    line(
        &mut out,
        "distdiag_store_sealed_blocks",
        "gauge",
        "Sealed blocks.",
        s.sealed_blocks as f64,
    );
    line(
        &mut out,
        "distdiag_store_sealed_values",
        "gauge",
        "Values in sealed blocks.",
        s.sealed_values as f64,
    );
    line(
        &mut out,
        "distdiag_store_sealed_bytes",
        "gauge",
        "Encoded bytes of sealed blocks.",
        s.sealed_bytes as f64,
    );
    line(&mut out, "distdiag_store_hot_rows", "gauge", "Rows not yet sealed.", s.hot_rows as f64);
    line(
        &mut out,
        "distdiag_store_wal_segments",
        "gauge",
        "Write-ahead log segments on disk.",
        s.wal_segments as f64,
    );
    line(
        &mut out,
        "distdiag_store_wal_bytes",
        "gauge",
        "Write-ahead log bytes on disk.",
        s.wal_bytes as f64,
    );
    if let Some(rw) = &state.remote_write {
        rw.render_metrics(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
