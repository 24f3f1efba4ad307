//! Where API keys are kept, behind one trait: the command line and the server write through it,
//! the server reads it whole (every second, when its version changed) into memory. A JSON file
//! ([`super::FileKeyStore`]) for one server; a PostgreSQL table ([`super::PgKeyStore`]) shared by
//! every server on the database when `DATABASE_URL` is set.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::{ApiKey, KeyId};
use crate::auth::Principal;
use crate::db::Change;

/// Something about a key the audit trail must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyEvent {
    Created,
    Revoked,
}

impl KeyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEvent::Created => "created",
            KeyEvent::Revoked => "revoked",
        }
    }
}

/// Changes whenever the stored keys change (an opaque value: compare for equality only).
pub type StoreVersion = u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyStoreError {
    #[error("no API key {0}")]
    NotFound(KeyId),
    #[error("invalid API key request: {0}")]
    Invalid(String),
    #[error("the API key store is busy (another writer holds its lock)")]
    Busy,
    #[error("the API key store {0}")]
    Io(String),
}

/// A store of API keys (their hashes, never the keys).
///
/// Writes are atomic and durable when they resolve, and serialized across processes (the command
/// line and the server may write at the same time). The server never calls a method on a
/// request's path: it reads [`ApiKeyStore::load`] into memory when [`ApiKeyStore::version`]
/// changes, and writes last uses back in batches.
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The stored keys' version now; cheap (asked every second).
    fn version(&self) -> BoxFuture<'_, Result<StoreVersion, KeyStoreError>>;

    /// Every stored key (revoked and expired ones too), and the version they were read at.
    fn load(&self) -> BoxFuture<'_, Result<(Vec<ApiKey>, StoreVersion), KeyStoreError>>;

    /// Adds a new key (its id must be new).
    fn insert(&self, key: ApiKey) -> BoxFuture<'_, Result<(), KeyStoreError>>;

    /// Marks a key revoked at `at` by `by` and returns it; a key already revoked is returned as it
    /// is (its first revocation stands).
    fn revoke(
        &self,
        id: KeyId,
        by: Principal,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<ApiKey, KeyStoreError>>;

    /// Notes that these events are on the audit trail (unknown ids are skipped).
    fn mark_recorded(
        &self,
        events: Vec<(KeyId, KeyEvent)>,
    ) -> BoxFuture<'_, Result<(), KeyStoreError>>;

    /// Sets keys' last use (only forward in time; unknown ids are skipped).
    fn record_uses(
        &self,
        uses: Vec<(KeyId, DateTime<Utc>)>,
    ) -> BoxFuture<'_, Result<(), KeyStoreError>>;

    /// For a store several servers share: the change that notes `event` of key `id` recorded, to
    /// commit with its audit record (`AuditStore::append_with`), holding only while the event is
    /// not noted yet, so that one server records it and the others' appends do not commit
    /// (`AuditError::Conflict`). `None` (a store of one server): the record is appended, then
    /// [`ApiKeyStore::mark_recorded`] notes it.
    fn marking(&self, id: &KeyId, event: KeyEvent) -> Option<Arc<dyn Change>> {
        let _ = (id, event);
        None
    }
}
