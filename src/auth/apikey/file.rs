//! The API keys as one JSON file (`API_KEYS_PATH`, by default `api_keys.json` beside the audit
//! log). Every write takes an exclusive `flock` on `<file>.lock` (the command line and the server,
//! or two command lines, never interleave a read-modify-write), writes `<file>.tmp` (mode 0600),
//! syncs it, renames it over the file and syncs the directory: a reader sees the old file or the
//! new one, never half of one, and a crash keeps one of them.

use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::store::{ApiKeyStore, KeyEvent, KeyStoreError, StoreVersion};
use super::{ApiKey, KeyId};
use crate::auth::Principal;

/// What the file says it is (its first member).
const FORMAT: &str = "sustainbot-api-keys-v1";

/// How long a writer waits for another's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    keys: Vec<ApiKey>,
}

/// The key store as a JSON file.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    path: PathBuf,
}

impl FileKeyStore {
    pub fn new(path: &Path) -> FileKeyStore {
        FileKeyStore {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> KeyStoreError {
        KeyStoreError::Io(format!("{}: {what}: {e}", self.path.display()))
    }

    /// The file's identity and size now (device, inode, modification time, length): a rename over
    /// it or a write changes it. `0` when there is no file.
    pub fn version_now(&self) -> Result<StoreVersion, KeyStoreError> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (
                    meta.dev(),
                    meta.ino(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.len(),
                )
                    .hash(&mut hasher);
                Ok(hasher.finish() | 1)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.error("cannot read its metadata", e)),
        }
    }

    /// Every key and the version read (none when there is no file). A rename between the stat and
    /// the read only makes the next version check differ, and the keys are read again then.
    pub fn read(&self) -> Result<(Vec<ApiKey>, StoreVersion), KeyStoreError> {
        let version = self.version_now()?;
        Ok((self.read_keys()?, version))
    }

    fn read_keys(&self) -> Result<Vec<ApiKey>, KeyStoreError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error("cannot read it", e)),
        };
        let file: KeyFile = serde_json::from_slice(&text)
            .map_err(|e| self.error("is not a valid API key file", e))?;
        if file.format != FORMAT {
            return Err(self.error("unknown format", &file.format));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = file.keys.iter().find(|key| !seen.insert(&key.id)) {
            return Err(self.error("a key id twice", &twice.id));
        }
        Ok(file.keys)
    }

    /// Reads the keys under the writers' lock, lets `change` edit them, and writes them back when
    /// it returns `Ok` (even unchanged: simpler than comparing, and writes are rare).
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<ApiKey>) -> Result<T, KeyStoreError>,
    ) -> Result<T, KeyStoreError> {
        let _lock = self.lock()?;
        let mut keys = self.read_keys()?;
        let result = change(&mut keys)?;
        self.write(&keys)?;
        Ok(result)
    }

    /// The writers' lock: an exclusive `flock` on `<file>.lock`, waited for up to [`LOCK_WAIT`].
    fn lock(&self) -> Result<File, KeyStoreError> {
        let path = sibling(&self.path, ".lock");
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error("cannot create its directory", e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.error("cannot open its lock file", e))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(KeyStoreError::Busy),
                Err(std::fs::TryLockError::Error(e)) => return Err(self.error("cannot lock", e)),
            }
        }
    }

    /// Writes `keys` atomically and durably (the caller holds the lock).
    fn write(&self, keys: &[ApiKey]) -> Result<(), KeyStoreError> {
        let file = KeyFile {
            format: FORMAT.to_owned(),
            keys: keys.to_vec(),
        };
        let mut text =
            serde_json::to_vec_pretty(&file).map_err(|e| self.error("cannot encode", e))?;
        text.push(b'\n');
        let temporary = sibling(&self.path, ".tmp");
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| self.error("cannot create its temporary file", e))?;
        out.write_all(&text)
            .and_then(|()| out.sync_all())
            .map_err(|e| self.error("cannot write its temporary file", e))?;
        std::fs::rename(&temporary, &self.path)
            .map_err(|e| self.error("cannot rename its temporary file over it", e))?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.error("cannot sync its directory", e))
    }

    pub fn insert_now(&self, key: ApiKey) -> Result<(), KeyStoreError> {
        self.update(|keys| {
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeyStoreError::Invalid(format!("key id {} exists", key.id)));
            }
            keys.push(key);
            Ok(())
        })
    }

    pub fn revoke_now(
        &self,
        id: &KeyId,
        by: Principal,
        at: DateTime<Utc>,
    ) -> Result<ApiKey, KeyStoreError> {
        self.update(|keys| {
            let key = keys
                .iter_mut()
                .find(|k| &k.id == id)
                .ok_or_else(|| KeyStoreError::NotFound(id.clone()))?;
            if key.revoked_at.is_none() {
                key.revoked_at = Some(at);
                key.revoked_by = Some(by);
            }
            Ok(key.clone())
        })
    }

    pub fn mark_recorded_now(&self, events: &[(KeyId, KeyEvent)]) -> Result<(), KeyStoreError> {
        self.update(|keys| {
            for (id, event) in events {
                if let Some(key) = keys.iter_mut().find(|k| &k.id == id) {
                    match event {
                        KeyEvent::Created => key.creation_recorded = true,
                        KeyEvent::Revoked => key.revocation_recorded = true,
                    }
                }
            }
            Ok(())
        })
    }

    pub fn record_uses_now(&self, uses: &[(KeyId, DateTime<Utc>)]) -> Result<(), KeyStoreError> {
        self.update(|keys| {
            for (id, at) in uses {
                if let Some(key) = keys.iter_mut().find(|k| &k.id == id) {
                    if key.last_used_at.is_none_or(|last| last < *at) {
                        key.last_used_at = Some(*at);
                    }
                }
            }
            Ok(())
        })
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Runs blocking file work off the async runtime.
fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KeyStoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, KeyStoreError>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(KeyStoreError::Io(format!("a store task failed: {e}"))))
    })
}

impl ApiKeyStore for FileKeyStore {
    fn version(&self) -> BoxFuture<'_, Result<StoreVersion, KeyStoreError>> {
        let store = self.clone();
        blocking(move || store.version_now())
    }

    fn load(&self) -> BoxFuture<'_, Result<(Vec<ApiKey>, StoreVersion), KeyStoreError>> {
        let store = self.clone();
        blocking(move || store.read())
    }

    fn insert(&self, key: ApiKey) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        let store = self.clone();
        blocking(move || store.insert_now(key))
    }

    fn revoke(
        &self,
        id: KeyId,
        by: Principal,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<ApiKey, KeyStoreError>> {
        let store = self.clone();
        blocking(move || store.revoke_now(&id, by, at))
    }

    fn mark_recorded(
        &self,
        events: Vec<(KeyId, KeyEvent)>,
    ) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        let store = self.clone();
        blocking(move || store.mark_recorded_now(&events))
    }

    fn record_uses(
        &self,
        uses: Vec<(KeyId, DateTime<Utc>)>,
    ) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        let store = self.clone();
        blocking(move || store.record_uses_now(&uses))
    }
}
