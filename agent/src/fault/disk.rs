//! `disk_stress`: `workers` processes writing 1 MiB chunks with an fsync
//! after each, cycling through `bytes` per worker, in a private directory
//! that is deleted on revert.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Plan;

const CHUNK: usize = 1 << 20;

pub(super) fn plan(workers: u32, bytes: u64, dir: &Path) -> Plan {
    let args = vec![
        "--kind".to_owned(),
        "disk".to_owned(),
        "--bytes".to_owned(),
        bytes.to_string(),
        "--dir".to_owned(),
        dir.display().to_string(),
    ];
    Plan {
        workers: (0..workers).map(|_| args.clone()).collect(),
        paths: vec![dir.to_owned()],
        qdisc: None,
        queue: None,
    }
}

/// The worker: write and fsync, over and over.
pub(super) fn work(bytes: u64, dir: PathBuf) -> ! {
    let path = dir.join(format!("stress-{}", std::process::id()));
    let Ok(mut f) = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path)
    else {
        std::process::exit(3)
    };
    // Not all zeros, so no file system can skip the work.
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut written = 0u64;
    loop {
        if written >= bytes {
            if f.seek(SeekFrom::Start(0)).is_err() {
                std::process::exit(3);
            }
            written = 0;
        }
        if f.write_all(&chunk).and_then(|()| f.sync_data()).is_err() {
            std::process::exit(3);
        }
        written += CHUNK as u64;
    }
}
