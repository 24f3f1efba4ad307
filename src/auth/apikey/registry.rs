//! The keys as a running server holds them: in memory, so a request's key is checked without I/O;
//! read again from the store within a second of any change (the command line's creations and
//! revocations take effect without a restart); every creation and revocation put on the audit
//! trail once; last uses kept in memory and written back once a minute (and at shutdown).
//!
//! Creations and revocations reach the audit trail two ways. Through the server (`/apikeys`) the
//! record is appended at once. Through the command line, which cannot write the log while a server
//! holds it, the store keeps the change marked unrecorded and the server records it when it reads
//! the store (at start-up, before it serves, and within a second while it runs), then marks it
//! recorded. A key is accepted only once its creation is on the trail; a revocation takes effect
//! at once and its record follows. With the key file, recording is at least once: a crash between
//! the append and the mark records the change again at the next start. In PostgreSQL, where every
//! server on the database reads the same keys, the mark commits with the record (see
//! [`ApiKeyStore::marking`]): each change is recorded exactly once, by whichever server is first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::store::{ApiKeyStore, KeyEvent, KeyStoreError, StoreVersion};
use super::{matches, now, presented_id, rfc3339, ApiKey, KeyId, KeyRequest, KeyStatus};
use crate::audit::{AuditError, AuditStore, Record};
use crate::auth::Principal;
use crate::config::Secret;
use crate::sync::{lock, read, write};

/// How often the store is checked for changes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// How often last uses are written back to the store.
pub const USES_EVERY: Duration = Duration::from_secs(60);

/// Why a presented key is refused (all 401 `INVALID_API_KEY`). Revoked, expired and pending are
/// told only to a caller who presented the right secret; an unknown id or a wrong secret is
/// [`Refusal::Invalid`] alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid,
    Revoked,
    Expired,
    Pending,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Invalid => "Invalid API key",
            Refusal::Revoked => "API key revoked",
            Refusal::Expired => "API key expired",
            Refusal::Pending => "API key not active yet: its creation is not on the audit trail",
        }
    }
}

/// Why a creation or revocation did not happen as asked.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    /// The change could not be recorded: a creation is undone (revoked, both recorded later), a
    /// revocation stands and is recorded later.
    #[error("the audit trail cannot record: {0}")]
    Audit(#[from] AuditError),
}

/// The server's keys. Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys(Arc<Inner>);

struct Inner {
    store: Arc<dyn ApiKeyStore>,
    audit: Arc<dyn AuditStore>,
    snapshot: RwLock<Snapshot>,
    /// Last uses not yet written back.
    uses: Mutex<HashMap<KeyId, DateTime<Utc>>>,
    /// Held by whoever reads the store or records a change, so a change is recorded once; holds
    /// the events appended to the trail but not yet marked recorded in the store.
    recording: tokio::sync::Mutex<HashSet<(KeyId, KeyEvent)>>,
    /// Whether the last refresh failed (logged once, not every second).
    failing: AtomicBool,
    /// Whether the last try to record a change failed (logged once, not every second).
    unrecordable: AtomicBool,
}

#[derive(Default)]
struct Snapshot {
    version: Option<StoreVersion>,
    keys: HashMap<KeyId, Arc<ApiKey>>,
    /// The ids in the store's order (the order of creation).
    order: Vec<KeyId>,
}

impl Snapshot {
    fn put(&mut self, key: ApiKey) {
        if !self.keys.contains_key(&key.id) {
            self.order.push(key.id.clone());
        }
        self.keys.insert(key.id.clone(), Arc::new(key));
    }
}

impl ApiKeys {
    pub fn new(store: Arc<dyn ApiKeyStore>, audit: Arc<dyn AuditStore>) -> ApiKeys {
        ApiKeys(Arc::new(Inner {
            store,
            audit,
            snapshot: RwLock::default(),
            uses: Mutex::default(),
            recording: tokio::sync::Mutex::default(),
            failing: AtomicBool::new(false),
            unrecordable: AtomicBool::new(false),
        }))
    }

    /// The caller a presented key speaks for, or why it is refused. No I/O: memory only.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, Refusal> {
        let id = presented_id(presented).ok_or(Refusal::Invalid)?;
        let key = read(&self.0.snapshot)
            .keys
            .get(&id)
            .cloned()
            .ok_or(Refusal::Invalid)?;
        if !matches(&key.hash, presented) {
            return Err(Refusal::Invalid);
        }
        match key.status(Utc::now()) {
            KeyStatus::Active => {}
            KeyStatus::Revoked => return Err(Refusal::Revoked),
            KeyStatus::Expired => return Err(Refusal::Expired),
            KeyStatus::Pending => return Err(Refusal::Pending),
        }
        lock(&self.0.uses).insert(id, now());
        Ok(key.principal())
    }

    /// Every key (never a key's text), with last uses not yet written back, oldest first.
    pub fn list(&self) -> Vec<ApiKey> {
        let uses = lock(&self.0.uses).clone();
        let snapshot = read(&self.0.snapshot);
        snapshot
            .order
            .iter()
            .filter_map(|id| snapshot.keys.get(id))
            .map(|key| {
                let mut key = ApiKey::clone(key);
                if let Some(used) = uses.get(&key.id) {
                    key.last_used_at = key.last_used_at.max(Some(*used));
                }
                key
            })
            .collect()
    }

    /// Reads the store when it changed, and records what is not on the trail yet.
    pub async fn refresh(&self) -> Result<(), KeyStoreError> {
        let mut appended = self.0.recording.lock().await;
        let version = self.0.store.version().await?;
        if read(&self.0.snapshot).version != Some(version) {
            let (keys, version) = self.0.store.load().await?;
            let mut snapshot = Snapshot {
                version: Some(version),
                ..Snapshot::default()
            };
            for key in keys {
                snapshot.put(key);
            }
            warn_of_hand_edits(&read(&self.0.snapshot), &snapshot);
            *write(&self.0.snapshot) = snapshot;
        }
        let mut unrecorded: Vec<(DateTime<Utc>, KeyEvent, Arc<ApiKey>)> = Vec::new();
        {
            let snapshot = read(&self.0.snapshot);
            for key in snapshot.order.iter().filter_map(|id| snapshot.keys.get(id)) {
                if !key.creation_recorded
                    && !appended.contains(&(key.id.clone(), KeyEvent::Created))
                {
                    unrecorded.push((key.created_at, KeyEvent::Created, Arc::clone(key)));
                }
                if let Some(at) = key.revoked_at {
                    if !key.revocation_recorded
                        && !appended.contains(&(key.id.clone(), KeyEvent::Revoked))
                    {
                        unrecorded.push((at, KeyEvent::Revoked, Arc::clone(key)));
                    }
                }
            }
        }
        // In the order they happened (times are to the second; ties in the store's order), a key's
        // creation before its revocation.
        unrecorded.sort_by_key(|(at, event, _)| (*at, *event == KeyEvent::Revoked));
        for (_, event, key) in unrecorded {
            match self.append(&key, event).await {
                Ok(by_us) => {
                    if by_us {
                        tracing::info!(key_id = %key.id, action = event.as_str(), "API key change recorded");
                    }
                    appended.insert((key.id.clone(), event));
                    self.0.unrecordable.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    if !self.0.unrecordable.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, key_id = %key.id, "cannot record an API key change yet; trying every second");
                    }
                    break;
                }
            }
        }
        self.mark(&mut appended).await;
        Ok(())
    }

    /// Appends the record of `key`'s `event`; with a store several servers share, together with
    /// the change noting it recorded, so that it is recorded once whichever server gets there
    /// first. `Ok(true)`: appended now; `Ok(false)`: another server had recorded it.
    async fn append(&self, key: &ApiKey, event: KeyEvent) -> Result<bool, AuditError> {
        let record = record(key, event);
        let appended = match self.0.store.marking(&key.id, event) {
            Some(change) => self.0.audit.append_with(record, change).await,
            None => self.0.audit.append(record).await,
        };
        match appended {
            Ok(_) => Ok(true),
            Err(AuditError::Conflict(_)) => {
                tracing::debug!(key_id = %key.id, action = event.as_str(), "API key change recorded by another server");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Notes the appended events in the store (kept for the next try when the store cannot be
    /// written) and in memory, where a creation now on the record makes its key usable.
    async fn mark(&self, appended: &mut HashSet<(KeyId, KeyEvent)>) {
        if appended.is_empty() {
            return;
        }
        let events: Vec<(KeyId, KeyEvent)> = appended.iter().cloned().collect();
        {
            let mut snapshot = write(&self.0.snapshot);
            for (id, event) in &events {
                if let Some(key) = snapshot.keys.get_mut(id) {
                    let key = Arc::make_mut(key);
                    match event {
                        KeyEvent::Created => key.creation_recorded = true,
                        KeyEvent::Revoked => key.revocation_recorded = true,
                    }
                }
            }
        }
        match self.0.store.mark_recorded(events).await {
            Ok(()) => appended.clear(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot note recorded API key changes in the store yet")
            }
        }
    }

    /// Creates a key for `by` (a person with the right to): stored, on the trail, usable at once.
    /// The key's text is returned once and kept nowhere.
    pub async fn create(
        &self,
        request: &KeyRequest,
        by: Principal,
    ) -> Result<(ApiKey, Secret), ManageError> {
        let (mut key, text) = request.issue(by)?;
        let mut appended = self.0.recording.lock().await;
        self.0.store.insert(key.clone()).await?;
        if let Err(e) = self.append(&key, KeyEvent::Created).await {
            // Nobody gets a key whose creation is not on the record: it is revoked, and both are
            // recorded once the trail can record.
            let revoked = self
                .0
                .store
                .revoke(key.id.clone(), Principal::server(), now())
                .await;
            if let Err(store) = revoked {
                tracing::error!(error = %store, key_id = %key.id, "cannot revoke an unrecorded API key");
            }
            return Err(ManageError::Audit(e));
        }
        key.creation_recorded = true;
        write(&self.0.snapshot).put(key.clone());
        appended.insert((key.id.clone(), KeyEvent::Created));
        self.mark(&mut appended).await;
        Ok((key, text))
    }

    /// Revokes a key: refused from now on, on the trail. Revoking a revoked key changes nothing.
    pub async fn revoke(&self, id: KeyId, by: Principal) -> Result<ApiKey, ManageError> {
        let mut appended = self.0.recording.lock().await;
        let mut key = self.0.store.revoke(id, by, now()).await?;
        write(&self.0.snapshot).put(key.clone());
        let event = (key.id.clone(), KeyEvent::Revoked);
        if key.revocation_recorded || appended.contains(&event) {
            return Ok(key);
        }
        self.append(&key, KeyEvent::Revoked).await?;
        key.revocation_recorded = true;
        appended.insert(event);
        self.mark(&mut appended).await;
        Ok(key)
    }

    /// Writes the last uses seen since the last time back to the store.
    pub async fn flush_uses(&self) {
        let uses = std::mem::take(&mut *lock(&self.0.uses));
        if uses.is_empty() {
            return;
        }
        let list: Vec<(KeyId, DateTime<Utc>)> = uses.clone().into_iter().collect();
        if let Err(e) = self.0.store.record_uses(list).await {
            tracing::warn!(error = %e, "cannot write API keys' last uses yet");
            let mut pending = lock(&self.0.uses);
            for (id, at) in uses {
                let entry = pending.entry(id).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
    }

    /// Refreshes every [`REFRESH_EVERY`] and writes last uses back every [`USES_EVERY`], for ever.
    pub async fn watch(self) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flushed = Instant::now();
        loop {
            tick.tick().await;
            match self.refresh().await {
                Ok(()) => {
                    if self.0.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("API keys read again");
                    }
                }
                Err(e) => {
                    if !self.0.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, "cannot read the API keys; keeping the last ones read");
                    }
                }
            }
            if flushed.elapsed() >= USES_EVERY {
                self.flush_uses().await;
                flushed = Instant::now();
            }
        }
    }
}

/// Logs what changed in the store other than through `sustainbot` (which only adds keys, revokes
/// them and notes records and uses): a key gone, or its owner, role, workflows, expiry or hash
/// edited. Such a change takes effect, but no audit record says so.
fn warn_of_hand_edits(before: &Snapshot, after: &Snapshot) {
    if before.version.is_none() {
        return;
    }
    for (id, old) in &before.keys {
        match after.keys.get(id) {
            None => {
                tracing::warn!(key_id = %id, "API key removed from the store by hand (not revoked): refused from now on, with no audit record")
            }
            Some(new) => {
                let grant = |k: &ApiKey| {
                    (
                        k.owner.clone(),
                        k.role.clone(),
                        k.workflows.clone(),
                        k.expires_at,
                        k.hash.clone(),
                        k.created_at,
                    )
                };
                if grant(old) != grant(new)
                    || (old.revoked_at.is_some() && new.revoked_at.is_none())
                {
                    tracing::warn!(key_id = %id, "API key edited in the store by hand: in effect now, with no audit record");
                }
            }
        }
    }
}

/// The audit record of a key's creation or revocation: never the key or its hash.
fn record(key: &ApiKey, event: KeyEvent) -> Record {
    let (at, by) = match event {
        KeyEvent::Created => (key.created_at, key.created_by.clone()),
        KeyEvent::Revoked => (
            key.revoked_at.unwrap_or(key.created_at),
            key.revoked_by.clone().unwrap_or_else(Principal::server),
        ),
    };
    Record::ApiKey {
        action: event.as_str().to_owned(),
        key_id: key.id.to_string(),
        name: key.name.clone(),
        owner: key.owner.clone(),
        role: key.role.to_string(),
        workflows: key.workflows.clone(),
        expires_at: key.expires_at.map(rfc3339),
        at: rfc3339(at),
        principal: by,
    }
}
