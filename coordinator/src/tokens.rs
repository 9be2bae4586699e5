//! API tokens with scopes. The token in `<data_dir>/token` (or
//! `DISTDIAG_TOKEN`) is the admin token the coordinator makes on first
//! start. More tokens, each `read` or `admin`, are created and revoked with
//! `distdiag-coordinator token create|list|revoke`, which edit
//! `<data_dir>/tokens.json` while the coordinator runs. That file holds only
//! each token's SHA-256 (a token is 32 random bytes, so a fast hash is
//! enough: there is nothing to guess from it), its name, scope and creation
//! time; the token itself is printed once, at creation. The coordinator
//! reads the file again when its modification time changes (looked at most
//! once a second), so a revoked token stops working within a second.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

/// What a token may do.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every GET: metrics, rankings, fault history, database addresses.
    Read,
    /// Everything, including every mutating request.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}: read or admin")),
        }
    }
}

/// One stored token: never the token itself.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_ms: i64,
}

#[derive(Serialize, Deserialize, Default)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison, so a token cannot be guessed byte by byte.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn read_file(path: &Path) -> Result<Vec<TokenRecord>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<TokenFile>(&text)
            .map(|f| f.tokens)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the file whole (a temporary file renamed over it, mode 0600).
fn write_file(path: &Path, tokens: &[TokenRecord]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&TokenFile { tokens: tokens.to_vec() })
        .map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Creates a token; returns its record and the token, which is not kept.
pub fn create(path: &Path, name: &str, scope: Scope) -> Result<(TokenRecord, String), String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err("a token's name is 1 to 64 characters".into());
    }
    let mut tokens = read_file(path)?;
    if tokens.iter().any(|t| t.name == name) {
        return Err(format!("a token named {name:?} exists; revoke it first"));
    }
    let secret = random_hex(32)?;
    let rec = TokenRecord {
        id: random_hex(6)?,
        name: name.to_owned(),
        scope,
        sha256: sha256_hex(&secret),
        created_ms: distdiag_store::now_ms(),
    };
    tokens.push(rec.clone());
    write_file(path, &tokens)?;
    Ok((rec, secret))
}

/// Revokes the token with this id or name.
pub fn revoke(path: &Path, id_or_name: &str) -> Result<TokenRecord, String> {
    let mut tokens = read_file(path)?;
    let i = tokens
        .iter()
        .position(|t| t.id == id_or_name || t.name == id_or_name)
        .ok_or_else(|| format!("no token with id or name {id_or_name:?}"))?;
    let gone = tokens.remove(i);
    write_file(path, &tokens)?;
    Ok(gone)
}

pub fn list(path: &Path) -> Result<Vec<TokenRecord>, String> {
    read_file(path)
}

struct Loaded {
    modified: Option<SystemTime>,
    checked: Instant,
    tokens: Vec<TokenRecord>,
}

/// The tokens the API accepts: the admin token and the file's.
pub struct Tokens {
    master: String,
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

/// How often the file's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tokens {
    /// `master`: the admin token of `<data_dir>/token`; `path`: tokens.json.
    pub fn new(master: &str, path: PathBuf) -> Result<Tokens, String> {
        let tokens = read_file(&path)?;
        let loaded = Loaded { modified: modified(&path), checked: Instant::now(), tokens };
        Ok(Tokens { master: master.to_owned(), path, loaded: Mutex::new(loaded) })
    }

    /// The scope of a presented token, or None when it is unknown.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        if same_secret(presented.as_bytes(), self.master.as_bytes()) {
            return Some(Scope::Admin);
        }
        let hash = sha256_hex(presented);
        let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if l.checked.elapsed() >= RECHECK {
            l.checked = Instant::now();
            let m = modified(&self.path);
            if m != l.modified {
                match read_file(&self.path) {
                    Ok(t) => {
                        l.tokens = t;
                        l.modified = m;
                    }
                    // Keep the last good list: a half-edited file must not lock everyone out.
                    Err(error) => {
                        warn!(%error, "cannot reread the token file; keeping the last one read")
                    }
                }
            }
        }
        // Every record compared, in constant time each.
        let mut found = None;
        for t in &l.tokens {
            if same_secret(hash.as_bytes(), t.sha256.as_bytes()) {
                found = Some(t.scope);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_scoped_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let tokens = Tokens::new("master-token-0123456789", path.clone()).unwrap();
        assert_eq!(tokens.scope_of("master-token-0123456789"), Some(Scope::Admin));
        assert_eq!(tokens.scope_of("nope"), None);

        let (r, secret) = create(&path, "grafana", Scope::Read).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the token itself is not stored");
        assert!(text.contains(&r.sha256));
        assert!(create(&path, "grafana", Scope::Admin).is_err(), "names are unique");
        let (_, admin) = create(&path, "ops", Scope::Admin).unwrap();
        // Seen after the next look at the file (at most a second).
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(tokens.scope_of(&secret), Some(Scope::Read));
        assert_eq!(tokens.scope_of(&admin), Some(Scope::Admin));

        assert_eq!(revoke(&path, "grafana").unwrap().id, r.id);
        assert!(revoke(&path, "grafana").is_err());
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(tokens.scope_of(&secret), None);
        assert_eq!(tokens.scope_of(&admin), Some(Scope::Admin));
        assert_eq!(list(&path).unwrap().len(), 1);

        // A broken file keeps the last good list.
        std::fs::write(&path, "{not json").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(tokens.scope_of(&admin), Some(Scope::Admin));
        assert!(create(&path, "x", Scope::Read).is_err(), "a broken file is an error, not emptied");
    }
}
