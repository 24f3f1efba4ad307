//! The audit trail: chained, durable records of every governed run.
//!
//! Requests hand records to [`AuditLog::append`], which resolves only once the record is on disk. One
//! writer thread owns the store; whatever records wait while it syncs go out together in the next
//! write and sync (group commit), so durability costs one sync per batch, not per request, and the
//! async runtime never blocks on the disk.

pub mod checkpoint;
pub mod format;
mod jsonl;
pub mod legacy;
pub(crate) mod lines;
mod lock;
pub mod postgres;
pub mod query;
mod record;
pub mod segments;
mod store;
mod tail;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::AuditMetrics;
use crate::sync::lock;
use tokio::sync::{mpsc, oneshot};

pub use format::PreEncoded;
pub use jsonl::{ChainHead, JsonlStore, StoreOptions, Written};
pub use postgres::{PgAuditStore, PgStoreOptions};
pub use record::{encode, encode_for, encode_generic, Outcome, Receipt, Record, RunRecord};
pub use store::AuditStore;
pub use tail::ForeignTails;

/// Most records written in one batch.
const MAX_BATCH: usize = 1024;
/// Records that may wait for the writer before `append` waits for room.
const QUEUE_DEPTH: usize = 8192;

/// When the writer forces data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// `fdatasync` after every batch, before any of its callers is answered (the default).
    Always,
    /// Never sync: records reach the OS page cache only and a power loss can lose acknowledged
    /// records. For benchmarks and development only.
    Never,
}

impl std::str::FromStr for FsyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncMode::Always),
            "never" | "off" => Ok(FsyncMode::Never),
            other => Err(format!(
                "AUDIT_FSYNC must be 'always' or 'never', not '{other}'"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {0} is locked by another process; only one server may write an audit log")]
    Locked(PathBuf),
    #[error("the last line of audit log {0} does not verify; run `sustainbot audit verify` and restore the file")]
    CorruptHead(PathBuf),
    #[error("audit write failed: {0}")]
    Write(String),
    #[error("the audit writer has stopped")]
    Stopped,
    /// The shared store (PostgreSQL) could not be opened.
    #[error("cannot open the audit chain in PostgreSQL: {0}")]
    Database(String),
    /// A state change that had to commit with the record did not hold (another instance changed
    /// the run first): nothing was appended.
    #[error("not appended: {0}")]
    Conflict(String),
}

/// What `/health` says about the audit sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub healthy: bool,
    pub path: PathBuf,
    pub head_seq: u64,
    pub last_error: Option<String>,
    pub signing: bool,
    /// Foreign tails cut since the server started (another process appended to the active file);
    /// each is on the trail as a `recovery` record. Non-zero keeps `/health` degraded until restart.
    pub foreign_tail_events: u64,
    pub last_foreign_tail: Option<String>,
}

/// Store options plus how often the writer signs and tidies up on its own.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub store: StoreOptions,
    /// Sign a checkpoint (when anything is new) and apply retention this often.
    pub maintenance_interval: Duration,
    /// Sync on a second thread while the writer writes on (with `FsyncMode::Always`); off, the
    /// writer writes and syncs each batch itself.
    pub pipelined: bool,
    /// Where appends, their latency and the group-commit batch sizes are counted.
    pub metrics: AuditMetrics,
}

impl AuditOptions {
    pub fn new(fsync: FsyncMode) -> AuditOptions {
        AuditOptions {
            store: StoreOptions::new(fsync),
            maintenance_interval: Duration::from_secs(60),
            pipelined: true,
            metrics: AuditMetrics::default(),
        }
    }
}

enum Job {
    Append {
        item: PreEncoded,
        done: oneshot::Sender<Result<Receipt, AuditError>>,
    },
    /// Periodic: a checkpoint if due, retention.
    Maintenance,
    /// Graceful shutdown: a final checkpoint, then the writer stops.
    Close { done: oneshot::Sender<()> },
}

/// A cloneable handle to the audit writer.
#[derive(Clone)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    status: Arc<Mutex<SinkStatus>>,
    metrics: AuditMetrics,
}

impl AuditLog {
    /// Opens the log with default options (durable per `fsync`, no rotation, unsigned).
    pub fn open(path: &Path, fsync: FsyncMode) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, AuditOptions::new(fsync))
    }

    /// Opens the store and starts its writer thread. A torn tail left by a crash is cut off and a
    /// `recovery` record is written before anything else; then retention runs once.
    pub fn open_with(path: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let signing = options.store.signer.is_some();
        let pipelined = options.pipelined && options.store.fsync == FsyncMode::Always;
        let (mut store, startup) = JsonlStore::open(path, options.store.clone())?;
        let write_err = |e: std::io::Error| AuditError::Write(e.to_string());
        if !startup.is_empty() {
            store.append_batch(&startup).map_err(write_err)?;
        }
        store.apply_retention().map_err(write_err)?;
        let status = Arc::new(Mutex::new(SinkStatus {
            healthy: true,
            path: path.to_owned(),
            head_seq: store.head().seq,
            last_error: None,
            signing,
            foreign_tail_events: 0,
            last_foreign_tail: None,
        }));
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer_status = Arc::clone(&status);
        let spawn_err = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let batches = options.metrics.batch_records.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer::write_loop(store, queue, writer_status, pipelined, batches))
            .map_err(spawn_err)?;
        // The ticker holds only a weak handle: it stops when the last `AuditLog` is dropped.
        let weak = jobs.downgrade();
        let interval = options.maintenance_interval;
        std::thread::Builder::new()
            .name("audit-ticker".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                match weak.upgrade() {
                    Some(jobs) if jobs.blocking_send(Job::Maintenance).is_ok() => {}
                    _ => break,
                }
            })
            .map_err(spawn_err)?;
        Ok(AuditLog {
            jobs,
            status,
            metrics: options.metrics,
        })
    }

    /// Appends a record; resolves once it is durable (per the fsync mode) or the write failed. The
    /// record is encoded here, on the caller's thread, so the single writer only chains and writes.
    pub async fn append(&self, record: Record) -> Result<Receipt, AuditError> {
        let started = Instant::now();
        let item = encode(&record);
        let (done, receipt) = oneshot::channel();
        let result = match self.jobs.send(Job::Append { item, done }).await {
            Ok(()) => receipt.await.unwrap_or(Err(AuditError::Stopped)),
            Err(_) => Err(AuditError::Stopped),
        };
        match &result {
            Ok(_) => {
                self.metrics.appended.inc();
                let waited = started.elapsed().as_secs_f64();
                self.metrics.append_duration.observe(waited);
            }
            Err(_) => {
                self.metrics.failed.inc();
            }
        }
        result
    }

    /// Signs a final checkpoint (when signing) and stops the writer. Appends after this fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Job::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }

    pub fn status(&self) -> SinkStatus {
        lock(&self.status).clone()
    }

    /// The active file's path (segments sit beside it).
    pub fn path(&self) -> PathBuf {
        lock(&self.status).path.clone()
    }
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;
