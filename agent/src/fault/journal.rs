//! The fault journal: one JSON file per fault in `state_dir/faults/`, written
//! and fsynced (file and directory) before the fault is applied and updated
//! with what was started. Whatever is found here at start-up was left by a
//! run that did not finish its faults, and is reverted.

use std::io::Write;
use std::path::{Path, PathBuf};

use distdiag_common::fault::FaultSpec;
use serde::{Deserialize, Serialize};

use super::FaultError;

/// What a fault changed, recorded so any later run can undo it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: String,
    pub spec: FaultSpec,
    pub deadline_ms: i64,
    /// Process group of the stressor processes, once started.
    pub pgid: Option<i32>,
    /// Files and directories the fault created (removed on revert).
    pub paths: Vec<PathBuf>,
    /// nftables tables ("netdev distdiag-ID") of loss faults written by
    /// earlier versions; still reverted when a journal names one.
    #[serde(default)]
    pub nft_tables: Vec<String>,
    /// Interfaces on which the fault installs this agent's root qdisc.
    #[serde(default)]
    pub qdiscs: Vec<String>,
    /// iptables chains of the fault, as "IFACE CHAIN HOOK" (earlier
    /// versions: "IFACE CHAIN", an OUTPUT jump).
    #[serde(default)]
    pub iptables: Vec<String>,
}

pub struct Journal {
    dir: PathBuf,
    /// Held for the journal's lifetime: one agent per state directory.
    _lock: std::fs::File,
}

fn io(path: &Path, e: std::io::Error) -> FaultError {
    FaultError::Journal(format!("{}: {e}", path.display()))
}

impl Journal {
    /// Opens the journal, locking it: a second agent (or `fault-run`) on the
    /// same state directory would take the first one's live faults for
    /// leftovers and revert them.
    pub fn open(dir: &Path) -> Result<Self, FaultError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                FaultError::Journal(format!(
                    "{} is in use by another agent; one agent per state directory",
                    dir.display()
                ))
            },
        )?;
        Ok(Journal { dir: dir.to_owned(), _lock: lock })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn sync_dir(&self) -> Result<(), FaultError> {
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io(&self.dir, e))
    }

    /// Durably writes (or replaces) an entry.
    pub fn write(&self, e: &Entry) -> Result<(), FaultError> {
        let path = self.path(&e.id);
        let tmp = self.dir.join(format!("{}.json.tmp", e.id));
        let body =
            serde_json::to_vec_pretty(e).map_err(|err| FaultError::Journal(err.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|err| io(&tmp, err))?;
        f.write_all(&body).and_then(|()| f.sync_all()).map_err(|err| io(&tmp, err))?;
        std::fs::rename(&tmp, &path).map_err(|err| io(&path, err))?;
        self.sync_dir()
    }

    /// Durably removes an entry (after its fault is reverted).
    pub fn remove(&self, id: &str) -> Result<(), FaultError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Every entry on disk; unreadable files are reported and skipped.
    pub fn entries(&self) -> Result<Vec<Entry>, FaultError> {
        let mut out = Vec::new();
        for item in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = item.map_err(|e| io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".json.tmp") {
                // A write that did not finish: its fault was never applied.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok()) {
                Some(e) => out.push(e),
                None => {
                    tracing::error!(path = %path.display(), "unreadable fault journal entry; check this host by hand")
                }
            }
        }
        Ok(out)
    }
}
