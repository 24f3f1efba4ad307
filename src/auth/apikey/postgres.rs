//! The API keys in PostgreSQL (`DATABASE_URL`): the `api_keys` table of `migrations/0002`, shared
//! by every instance on the database and by the command line. Its version is a counter row that a
//! trigger bumps in the transaction of every change to the table (whoever makes it), so a server
//! asks one row a second and reads the keys only when they changed.
//!
//! Several servers read the same keys, so a creation or revocation the command line made would be
//! recorded by each of them: here its record is appended together with the change that notes it
//! recorded ([`ApiKeyStore::marking`]), guarded by "not recorded yet", and only the first server's
//! append commits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};

use super::store::{ApiKeyStore, KeyEvent, KeyStoreError, StoreVersion};
use super::{ApiKey, KeyId};
use crate::auth::{Principal, Role};
use crate::db::Change;

const COLUMNS: &str = "id, name, owner, role, workflows, created_at, created_by, expires_at, \
    revoked_at, revoked_by, last_used_at, hash, creation_recorded, revocation_recorded";

/// The key store as a table.
#[derive(Debug, Clone)]
pub struct PgKeyStore {
    pool: PgPool,
    /// The longest any one operation may take (`DB_POOL_TIMEOUT`): a database that does not
    /// answer is an error the registry logs and retries, never a refresh that hangs.
    timeout: Duration,
}

impl PgKeyStore {
    /// The store on `pool`, whose schema is applied ([`crate::db::open`] or [`crate::db::migrate`]).
    pub fn new(pool: PgPool, timeout: Duration) -> PgKeyStore {
        PgKeyStore { pool, timeout }
    }

    /// Runs `work` within the timeout, its errors as the store's.
    fn bounded<'a, T: Send + 'a>(
        &'a self,
        what: &'static str,
        work: impl std::future::Future<Output = Result<T, KeyStoreError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, KeyStoreError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(KeyStoreError::Io(format!(
                    "in PostgreSQL: cannot {what}: no answer within {:?}",
                    self.timeout
                ))),
            }
        })
    }
}

fn failed(what: &'static str) -> impl Fn(sqlx::Error) -> KeyStoreError {
    move |e| KeyStoreError::Io(format!("in PostgreSQL: cannot {what}: {e}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, KeyStoreError> {
    serde_json::to_value(value).map_err(|e| KeyStoreError::Io(format!("cannot encode: {e}")))
}

/// A row as a key; a row that does not make one (edited by hand into nonsense) is an error, as a
/// broken key file is.
fn key_of(row: &PgRow) -> Result<ApiKey, KeyStoreError> {
    let bad = |e: &dyn std::fmt::Display| {
        let id: String = row.try_get("id").unwrap_or_default();
        KeyStoreError::Io(format!("in PostgreSQL: key {id:?} is not a valid row: {e}"))
    };
    let column = |e: sqlx::Error| bad(&e);
    let principal = |value: Value| serde_json::from_value::<Principal>(value).map_err(|e| bad(&e));
    let id: String = row.try_get("id").map_err(column)?;
    let workflows: Option<Value> = row.try_get("workflows").map_err(column)?;
    let revoked_by: Option<Value> = row.try_get("revoked_by").map_err(column)?;
    Ok(ApiKey {
        id: KeyId::try_from(id).map_err(|e| bad(&e))?,
        name: row.try_get("name").map_err(column)?,
        owner: row.try_get("owner").map_err(column)?,
        role: Role::from(row.try_get::<String, _>("role").map_err(column)?),
        workflows: workflows
            .map(serde_json::from_value::<Vec<String>>)
            .transpose()
            .map_err(|e| bad(&e))?,
        created_at: row.try_get("created_at").map_err(column)?,
        created_by: principal(row.try_get("created_by").map_err(column)?)?,
        expires_at: row.try_get("expires_at").map_err(column)?,
        revoked_at: row.try_get("revoked_at").map_err(column)?,
        revoked_by: revoked_by.map(principal).transpose()?,
        last_used_at: row.try_get("last_used_at").map_err(column)?,
        hash: row.try_get("hash").map_err(column)?,
        creation_recorded: row.try_get("creation_recorded").map_err(column)?,
        revocation_recorded: row.try_get("revocation_recorded").map_err(column)?,
    })
}

/// The counter as a version (it only grows, from 0).
fn version_of(counter: i64) -> StoreVersion {
    counter as StoreVersion
}

/// Which flag notes `event` recorded.
fn flag(event: KeyEvent) -> &'static str {
    match event {
        KeyEvent::Created => "creation_recorded",
        KeyEvent::Revoked => "revocation_recorded",
    }
}

impl ApiKeyStore for PgKeyStore {
    fn version(&self) -> BoxFuture<'_, Result<StoreVersion, KeyStoreError>> {
        self.bounded("read the keys' version", async move {
            let counter: i64 =
                sqlx::query_scalar("SELECT version FROM api_keys_version WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(failed("read the keys' version"))?;
            Ok(version_of(counter))
        })
    }

    fn load(&self) -> BoxFuture<'_, Result<(Vec<ApiKey>, StoreVersion), KeyStoreError>> {
        self.bounded("read the keys", async move {
            let error = failed("read the keys");
            // One snapshot for both: the version read is the keys' version.
            let mut tx = self.pool.begin().await.map_err(&error)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(&error)?;
            let counter: i64 =
                sqlx::query_scalar("SELECT version FROM api_keys_version WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&error)?;
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY seq"))
                .fetch_all(&mut *tx)
                .await
                .map_err(&error)?;
            tx.commit().await.map_err(&error)?;
            let keys = rows.iter().map(key_of).collect::<Result<Vec<_>, _>>()?;
            Ok((keys, version_of(counter)))
        })
    }

    fn insert(&self, key: ApiKey) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        self.bounded("add the key", async move {
            let workflows = key.workflows.as_ref().map(to_json).transpose()?;
            let revoked_by = key.revoked_by.as_ref().map(to_json).transpose()?;
            let inserted = sqlx::query(&format!(
                "INSERT INTO api_keys ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(key.id.as_str())
            .bind(&key.name)
            .bind(&key.owner)
            .bind(key.role.as_str())
            .bind(workflows)
            .bind(key.created_at)
            .bind(to_json(&key.created_by)?)
            .bind(key.expires_at)
            .bind(key.revoked_at)
            .bind(revoked_by)
            .bind(key.last_used_at)
            .bind(&key.hash)
            .bind(key.creation_recorded)
            .bind(key.revocation_recorded)
            .execute(&self.pool)
            .await
            .map_err(failed("add the key"))?;
            if inserted.rows_affected() == 0 {
                return Err(KeyStoreError::Invalid(format!("key id {} exists", key.id)));
            }
            Ok(())
        })
    }

    fn revoke(
        &self,
        id: KeyId,
        by: Principal,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<ApiKey, KeyStoreError>> {
        self.bounded("revoke the key", async move {
            // One statement: a revocation racing this one is waited for and then stands (the row
            // is re-read after the wait), and the answer is the row as it is then.
            let row = sqlx::query(&format!(
                "UPDATE api_keys SET \
                     revoked_by = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoked_by END, \
                     revoked_at = COALESCE(revoked_at, $2) \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ))
            .bind(id.as_str())
            .bind(at)
            .bind(to_json(&by)?)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("revoke the key"))?;
            match row {
                Some(row) => key_of(&row),
                None => Err(KeyStoreError::NotFound(id)),
            }
        })
    }

    fn mark_recorded(
        &self,
        events: Vec<(KeyId, KeyEvent)>,
    ) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        self.bounded("note recorded changes", async move {
            let ids = |wanted: KeyEvent| -> Vec<String> {
                events
                    .iter()
                    .filter(|(_, event)| *event == wanted)
                    .map(|(id, _)| id.to_string())
                    .collect()
            };
            let error = failed("note recorded changes");
            let mut tx = self.pool.begin().await.map_err(&error)?;
            for event in [KeyEvent::Created, KeyEvent::Revoked] {
                let ids = ids(event);
                if ids.is_empty() {
                    continue;
                }
                let column = flag(event);
                // Rows already noted are left alone: no change, no new version.
                sqlx::query(&format!(
                    "UPDATE api_keys SET {column} = TRUE WHERE id = ANY($1) AND NOT {column}"
                ))
                .bind(ids)
                .execute(&mut *tx)
                .await
                .map_err(&error)?;
            }
            tx.commit().await.map_err(&error)
        })
    }

    fn record_uses(
        &self,
        uses: Vec<(KeyId, DateTime<Utc>)>,
    ) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        self.bounded("write last uses", async move {
            let (ids, times): (Vec<String>, Vec<DateTime<Utc>>) = uses
                .into_iter()
                .map(|(id, at)| (id.to_string(), at))
                .unzip();
            sqlx::query(
                "UPDATE api_keys AS k SET last_used_at = u.at \
                 FROM (SELECT id, max(at) AS at FROM UNNEST($1::text[], $2::timestamptz[]) \
                       AS t(id, at) GROUP BY id) AS u \
                 WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
            )
            .bind(ids)
            .bind(times)
            .execute(&self.pool)
            .await
            .map_err(failed("write last uses"))?;
            Ok(())
        })
    }

    fn marking(&self, id: &KeyId, event: KeyEvent) -> Option<std::sync::Arc<dyn Change>> {
        Some(std::sync::Arc::new(MarkRecorded {
            id: id.to_string(),
            event,
        }))
    }
}

/// Notes a key's creation or revocation recorded, in the transaction that appends its record;
/// holds only while it is not noted yet (another server may have recorded it first).
struct MarkRecorded {
    id: String,
    event: KeyEvent,
}

impl Change for MarkRecorded {
    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let column = flag(self.event);
            let noted = sqlx::query(&format!(
                "UPDATE api_keys SET {column} = TRUE WHERE id = $1 AND NOT {column}"
            ))
            .bind(&self.id)
            .execute(conn)
            .await?;
            Ok(noted.rows_affected() == 1)
        })
    }
}
