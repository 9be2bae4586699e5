//! Counters describing the coordinator itself, exported at `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Telemetry {
    pub connections_accepted: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connected_agents: AtomicI64,
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    pub values: AtomicU64,
    pub duplicate_rows: AtomicU64,
    pub frame_errors: AtomicU64,
    pub store_errors: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_seconds_micros: AtomicU64,
    pub retention_deleted_blocks: AtomicU64,
    /// f64 bits of the last measured ingest rate (values per second).
    pub values_per_second_bits: AtomicU64,
}

impl Telemetry {
    pub fn inc(c: &AtomicU64, by: u64) {
        c.fetch_add(by, Ordering::Relaxed);
    }
}
