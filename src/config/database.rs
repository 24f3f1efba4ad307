//! `DATABASE_URL` and the pool: with it, PostgreSQL holds the audit chain, the runs, the queue and
//! the approvals that several server instances share. The pool variables are the original's
//! (`DB_POOL_*`, `DB_ECHO` in its phase 4 `.env.example`).

use std::time::Duration;

use super::{Reader, Secret};

/// The shared store, when `DATABASE_URL` is set.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database` (secret: it may hold a password).
    pub url: Secret,
    /// `DB_POOL_SIZE`: connections kept open.
    pub pool_size: u32,
    /// `DB_POOL_MAX_OVERFLOW`: connections opened beyond `pool_size` under load (closed when idle).
    pub max_overflow: u32,
    /// `DB_POOL_TIMEOUT`: how long a caller waits for a connection (and a new connection for the
    /// server) before the request fails closed, in seconds.
    pub timeout: Duration,
    /// `DB_POOL_RECYCLE`: a connection older than this is closed and replaced, in seconds (0: never).
    pub recycle: Option<Duration>,
    /// `DB_ECHO`: log every statement (at debug level, target `sqlx`).
    pub echo: bool,
    /// `SUSTAINBOT_INSTANCE_ID`: this server's name in the records it appends and the runs it owns
    /// (default: host name and process id).
    pub instance_id: String,
    /// `RUN_LEASE_SECONDS`: how long an instance's claim on its queued and running runs lasts
    /// without renewal; after that a surviving instance takes them over.
    pub lease: Duration,
}

impl DatabaseConfig {
    /// `None` without `DATABASE_URL` (the embedded JSONL store).
    pub fn read(reader: &mut Reader<'_>) -> Option<DatabaseConfig> {
        let url = reader.secret("DATABASE_URL")?;
        let scheme_ok = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.expose().starts_with(scheme));
        if !scheme_ok {
            reader.problems.push(
                "DATABASE_URL must be a PostgreSQL URL (postgres://user@host:port/database)"
                    .to_owned(),
            );
        }
        let pool_size = u32::try_from(reader.count("DB_POOL_SIZE", 10)).unwrap_or(10);
        if pool_size == 0 {
            reader
                .problems
                .push("DB_POOL_SIZE must be at least 1".to_owned());
        }
        let max_overflow = u32::try_from(reader.count("DB_POOL_MAX_OVERFLOW", 20)).unwrap_or(20);
        let timeout = Duration::from_secs(reader.count("DB_POOL_TIMEOUT", 30).max(1));
        let recycle = match reader.count("DB_POOL_RECYCLE", 3600) {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        };
        let lease_seconds = reader.count("RUN_LEASE_SECONDS", 15);
        if lease_seconds < 2 {
            reader
                .problems
                .push("RUN_LEASE_SECONDS must be at least 2".to_owned());
        }
        let instance_id = reader
            .text("SUSTAINBOT_INSTANCE_ID")
            .unwrap_or_else(default_instance_id);
        Some(DatabaseConfig {
            url,
            pool_size: pool_size.max(1),
            max_overflow,
            timeout,
            recycle,
            echo: reader.flag("DB_ECHO", false),
            instance_id,
            lease: Duration::from_secs(lease_seconds.max(2)),
        })
    }
}

/// `<host name>-<pid>`: unique among the instances running at once.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sustainbot".to_owned());
    format!("{host}-{}", std::process::id())
}
