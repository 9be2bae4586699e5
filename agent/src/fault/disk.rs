//! `disk_stress`: `workers` processes writing 1 MiB chunks with an fsync
//! after each, cycling through `bytes` per worker, in a private directory
//! that is deleted on revert.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{FaultError, Plan};

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

/// Refuses a stress whose files (`need` bytes in all) would leave less
/// than `margin` free on the file system of `dir` (or of its nearest
/// existing ancestor, as the directory is made when the fault starts).
pub(super) fn check_room(dir: &Path, need: u64, margin: u64) -> Result<(), FaultError> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let st = rustix::fs::statvfs(existing).map_err(|e| {
        FaultError::Refused(format!("cannot read free space of {}: {e}", existing.display()))
    })?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if need.saturating_add(margin) > free {
        return Err(FaultError::Refused(format!(
            "disk_stress of {} MiB would leave less than {} MiB of the {} MiB free on {}",
            need >> 20,
            margin >> 20,
            free >> 20,
            existing.display()
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stress_that_would_fill_the_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("not/yet/made");
        check_room(&target, 1 << 20, 1 << 20).unwrap();
        let e = check_room(&target, 1 << 62, 1 << 30).unwrap_err();
        assert!(matches!(e, FaultError::Refused(ref m) if m.contains("would leave less")), "{e}");
    }
}
