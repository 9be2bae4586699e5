//! The group-commit writer: one thread appends every queued batch, flushes
//! the store once, then answers each batch. An acknowledgement therefore never
//! precedes durability, and many agents share each flush.

use std::sync::Arc;
use std::time::Instant;

use distdiag_common::Row;
use tokio::sync::{mpsc, oneshot};

use crate::remote_write::RemoteWrite;
use crate::telemetry::Telemetry;
use distdiag_store::{AppendOutcome, SeriesStore, StoreError};

/// Most batches applied before one flush.
const GROUP_MAX: usize = 1024;

pub struct WriteJob {
    pub node: String,
    pub rows: Vec<Row>,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// Starts the writer thread. It ends when every sender is dropped, after
/// finishing what was queued. Rows made durable go on to the remote-write
/// receivers, if any, before their batch is answered.
pub fn spawn_writer(
    store: Arc<dyn SeriesStore>,
    telemetry: Arc<Telemetry>,
    queue: usize,
    remote_write: Option<Arc<RemoteWrite>>,
) -> std::io::Result<(mpsc::Sender<WriteJob>, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<WriteJob>(queue);
    let handle = std::thread::Builder::new().name("store-writer".into()).spawn(move || {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let results: Vec<_> = jobs.iter().map(|j| store.append(&j.node, &j.rows)).collect();
            let started = Instant::now();
            let flushed = store.flush();
            Telemetry::inc(&telemetry.flushes, 1);
            Telemetry::inc(&telemetry.flush_seconds_micros, started.elapsed().as_micros() as u64);
            for (job, res) in jobs.into_iter().zip(results) {
                let res = match (&flushed, res) {
                    (Err(e), Ok(_)) => Err(StoreError::Io(format!("flush failed: {e}"))),
                    (_, r) => r,
                };
                // Replays of rows already stored are not sent again.
                if let (Some(rw), Ok(outcome)) = (&remote_write, &res) {
                    if outcome.rows > 0 {
                        rw.forward(&job.node, &job.rows);
                    }
                }
                let _ = job.reply.send(res);
            }
        }
    })?;
    Ok((tx, handle))
}
