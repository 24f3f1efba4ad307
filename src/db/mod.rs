//! PostgreSQL, when `DATABASE_URL` is set: the pool, the embedded schema (applied at start-up under
//! an advisory lock, so several instances starting together are safe), and the shape of a state
//! change that commits with its audit record.

use std::borrow::Cow;
use std::str::FromStr;

use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};

use crate::config::DatabaseConfig;

#[cfg(test)]
pub(crate) mod testing;

/// The schema, in order. Each file is applied once (sqlx's `_sqlx_migrations` table says which).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "shared state",
        include_str!("../../migrations/0001_shared_state.sql"),
    ),
    (
        2,
        "api keys",
        include_str!("../../migrations/0002_api_keys.sql"),
    ),
    (
        3,
        "apply a batch's state changes in one call",
        include_str!("../../migrations/0003_apply_changes.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    Url(String),
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(String),
    #[error("cannot apply the database schema: {0}")]
    Migrate(String),
}

/// The migrations compiled into the binary.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Connection options from the URL: `DB_ECHO` logs statements at debug level; slow ones are
/// warned about either way.
pub fn connect_options(url: &str, echo: bool) -> Result<PgConnectOptions, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| DbError::Url(e.to_string()))?;
    // Notices such as "relation already exists, skipping" (every start applies the schema) are
    // not worth a log line; warnings still are.
    let options = options
        .application_name("sustainbot")
        .options([("client_min_messages", "warning")]);
    Ok(if echo {
        options.log_statements(log::LevelFilter::Debug)
    } else {
        options.log_statements(log::LevelFilter::Trace)
    })
}

/// Opens the pool (`DB_POOL_*`) and applies the schema. Fails when the database cannot be reached
/// within `DB_POOL_TIMEOUT`.
pub async fn open(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options = connect_options(config.url.expose(), config.echo)?;
    let pool = PgPoolOptions::new()
        .min_connections(config.pool_size.min(2))
        .max_connections(config.pool_size + config.max_overflow)
        .acquire_timeout(config.timeout)
        .max_lifetime(config.recycle)
        .idle_timeout(Some(std::time::Duration::from_secs(600)))
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect(e.to_string()))?;
    migrate(&pool).await?;
    Ok(pool)
}

/// A small pool on `url` for a command (`sustainbot audit export`, `import`, `verify`); waits at
/// most `timeout` for a connection. The schema is not applied: [`migrate`] does that.
pub async fn connect(url: &str, timeout: std::time::Duration) -> Result<PgPool, DbError> {
    // An import's inserts of a few MB each may take a second: only one as slow as the timeout
    // is worth a warning.
    let options = connect_options(url, false)?.log_slow_statements(log::LevelFilter::Warn, timeout);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect(e.to_string()))
}

/// Applies the embedded schema (under sqlx's advisory lock: instances starting together take turns).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let migrator = Migrator::new(Embedded)
        .await
        .map_err(|e| DbError::Migrate(e.to_string()))?;
    migrator
        .run(pool)
        .await
        .map_err(|e| DbError::Migrate(e.to_string()))
}

/// A change to the shared state that must commit with an audit record, or not at all. The audit
/// store applies it inside the transaction that appends the record, before the record takes its
/// place in the chain; when its guard does not hold (`Ok(false)`: the run is not in the state the
/// change expects, e.g. another instance took it over), the record is not appended and the caller
/// gets [`crate::audit::AuditError::Conflict`].
pub trait Change: Send + Sync + 'static {
    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    /// The same change as an element of the database's `sustainbot_apply` (the JSON text of
    /// `{"op": ..., its arguments}`, with the trace id it locks), which applies a whole batch's
    /// changes in one round trip; `None` for a change it does not know (applied with
    /// [`Change::apply`] instead).
    fn op(&self) -> Option<Op> {
        None
    }
}

/// A change as `sustainbot_apply` takes it.
pub struct Op {
    /// The run whose row it changes (a batch's changes lock rows in this order).
    pub trace_id: String,
    /// `{"op": ..., its arguments}` as JSON text.
    pub json: String,
}
