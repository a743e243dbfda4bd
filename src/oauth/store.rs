//! `oauth_tokens.json`, beside the server config: what the proxy holds as an OAuth client. Client
//! registrations keyed by the authorization server's issuer (the spec: credentials are bound to the
//! server that issued them), and each server's tokens with what refreshing them needs.
//!
//! The file holds secrets: it is written with mode 0600, atomically (`files::write_atomically`), and
//! changed only under an exclusive `flock` of a lock file beside it, so that `login` (its own
//! process) and the running proxy (refreshing) never lose each other's writes. Refresh tokens may be
//! single-use (rotated): only one holder may use one, which the lock and a re-read before each
//! refresh ensure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use crate::config::OAUTH_TOKENS_FILE as FILE_NAME;

/// The file's contents.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stored {
    #[serde(default)]
    pub registrations: BTreeMap<String, Registration>,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerTokens>,
}

/// A client registered at an authorization server (dynamically, or configured).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// One server's tokens, and what refreshing them needs without asking anyone where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTokens {
    pub issuer: String,
    /// The resource the tokens are for: the server's URL or a parent of it.
    pub resource: String,
    pub token_endpoint: String,
    pub client: Registration,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds; `None`: the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The lifetime the server gave the access token, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Scopes the server asked for beyond those granted (`403 insufficient_scope`): the next login asks
    /// for them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_scope: Option<String>,
}

/// Reading or writing the store failed; the message names the file.
#[derive(Debug)]
pub struct StoreError {
    path: PathBuf,
    problem: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for StoreError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The store beside a server config file.
    pub fn beside(config: &Path) -> TokenStore {
        TokenStore::at(config.with_file_name(FILE_NAME))
    }

    pub fn at(path: PathBuf) -> TokenStore {
        TokenStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents; an absent file is an empty store.
    pub fn read(&self) -> Result<Stored, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.error(format!("not a token store: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Stored::default()),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// When the file last changed, to notice another process's writes cheaply.
    pub fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }

    /// Reads, changes and writes the store under the lock; `change` returns what the caller wants
    /// back. Nothing is written when it leaves the contents as they were.
    pub fn update<T>(&self, change: impl FnOnce(&mut Stored) -> T) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        let mut stored = self.read()?;
        let before = serde_json::to_vec(&stored).map_err(|e| self.error(e.to_string()))?;
        let result = change(&mut stored);
        let after = serde_json::to_vec_pretty(&stored).map_err(|e| self.error(e.to_string()))?;
        if serde_json::to_vec(&stored).map_err(|e| self.error(e.to_string()))? != before {
            // No `.bak`: a logout or a refresh must not leave the old tokens beside the file.
            crate::files::write_atomically_without_backup(&self.path, &after).map_err(|e| self.error(format!("cannot write: {e}")))?;
        }
        Ok(result)
    }

    /// An exclusive lock for refreshing one server's tokens, across processes, held until the value is
    /// dropped: one refresh at a time per server, while other servers' go on.
    pub fn lock_server(&self, key: &str) -> Result<File, StoreError> {
        self.lock_file(&format!("server-{}", super::short_hash(key)))
    }

    /// An exclusive lock on `.oauth_tokens.json.lock` (not the store itself: each write replaces that
    /// file, and a lock on the replaced one would guard nothing), held until the value is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        self.lock_file("store")
    }

    fn lock_file(&self, what: &str) -> Result<File, StoreError> {
        let name = format!(".{}.{what}.lock", self.path.file_name().map_or_else(|| FILE_NAME.into(), |n| n.to_string_lossy()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.path.with_file_name(name))
            .map_err(|e| self.error(format!("cannot lock: {e}")))?;
        // SAFETY: the descriptor is open for as long as `file` lives; flock only changes its lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(self.error(format!("cannot lock: {}", io::Error::last_os_error())));
        }
        Ok(file)
    }

    fn error(&self, problem: String) -> StoreError {
        StoreError { path: self.path.clone(), problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store(label: &str) -> (TokenStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("mcp-proxy-store-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (TokenStore::beside(&dir.join("mcp_server.json")), dir)
    }

    fn tokens(access: &str) -> ServerTokens {
        ServerTokens {
            issuer: "https://as.example".into(),
            resource: "https://mcp.example/mcp".into(),
            token_endpoint: "https://as.example/token".into(),
            client: Registration { client_id: "c1".into(), client_secret: None },
            access_token: access.into(),
            refresh_token: Some("r1".into()),
            expires_at: Some(1),
            lifetime: Some(300),
            scope: None,
            wanted_scope: None,
        }
    }

    #[test]
    fn an_absent_store_is_empty() {
        let (store, dir) = store("absent");
        assert!(store.read().unwrap().servers.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn what_is_written_is_read_back_from_a_file_only_its_owner_can_read() {
        let (store, dir) = store("roundtrip");
        store.update(|s| s.servers.insert("remote".into(), tokens("a1"))).unwrap();
        assert_eq!(store.read().unwrap().servers["remote"], tokens("a1"));
        let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn forgotten_tokens_leave_no_backup_behind() {
        let (store, dir) = store("nobak");
        store.update(|s| s.servers.insert("remote".into(), tokens("a1"))).unwrap();
        store.update(|s| s.servers.remove("remote")).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.ends_with(".bak")), "{names:?}");
        assert!(!std::fs::read_to_string(store.path()).unwrap().contains("a1"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_store_that_is_not_json_is_an_error_naming_the_file() {
        let (store, dir) = store("garbage");
        std::fs::write(store.path(), "{").unwrap();
        let err = store.read().unwrap_err().to_string();
        assert!(err.contains("oauth_tokens.json: not a token store"), "{err}");
        assert!(store.update(|s| s.servers.clear()).is_err(), "a broken store is not overwritten");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn updates_from_two_threads_both_land() {
        let (store, dir) = store("concurrent");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || store.update(|s| s.servers.insert(format!("s{i}"), tokens("a"))).unwrap())
            })
            .collect();
        threads.into_iter().for_each(|t| drop(t.join()));
        assert_eq!(store.read().unwrap().servers.len(), 8);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
