//! The audit trail: chained, durable records of every governed run.
//!
//! Requests hand records to [`AuditLog::append`], which resolves only once the record is on disk. One
//! writer thread owns the store; whatever records wait while it syncs go out together in the next
//! write and sync (group commit), so durability costs one sync per batch, not per request, and the
//! async runtime never blocks on the disk.

pub mod format;
mod jsonl;
mod record;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

pub use jsonl::{ChainHead, JsonlStore};
pub use record::{Outcome, Receipt, Record, RunRecord};

/// Most records written in one batch.
const MAX_BATCH: usize = 512;
/// Records that may wait for the writer before `append` waits for room.
const QUEUE_DEPTH: usize = 4096;

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
}

/// What `/health` says about the audit sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub healthy: bool,
    pub path: PathBuf,
    pub head_seq: u64,
    pub last_error: Option<String>,
}

struct Job {
    record: Record,
    done: oneshot::Sender<Result<Receipt, AuditError>>,
}

/// A cloneable handle to the audit writer.
#[derive(Clone)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    status: Arc<Mutex<SinkStatus>>,
}

impl AuditLog {
    /// Opens the store and starts its writer thread. A torn tail left by a crash is cut off and a
    /// `recovery` record is written before anything else.
    pub fn open(path: &Path, fsync: FsyncMode) -> Result<AuditLog, AuditError> {
        let (mut store, recovery) = JsonlStore::open(path, fsync)?;
        if let Some(record) = recovery {
            store
                .append_batch(std::slice::from_ref(&record))
                .map_err(|e| AuditError::Write(e.to_string()))?;
        }
        let status = Arc::new(Mutex::new(SinkStatus {
            healthy: true,
            path: path.to_owned(),
            head_seq: store.head().seq,
            last_error: None,
        }));
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer_status = Arc::clone(&status);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(store, queue, writer_status))
            .map_err(|source| AuditError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(AuditLog { jobs, status })
    }

    /// Appends a record; resolves once it is durable (per the fsync mode) or the write failed.
    pub async fn append(&self, record: Record) -> Result<Receipt, AuditError> {
        let (done, receipt) = oneshot::channel();
        self.jobs
            .send(Job { record, done })
            .await
            .map_err(|_| AuditError::Stopped)?;
        receipt.await.map_err(|_| AuditError::Stopped)?
    }

    pub fn status(&self) -> SinkStatus {
        lock(&self.status).clone()
    }
}

fn lock(status: &Mutex<SinkStatus>) -> std::sync::MutexGuard<'_, SinkStatus> {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_loop(
    mut store: JsonlStore,
    mut queue: mpsc::Receiver<Job>,
    status: Arc<Mutex<SinkStatus>>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<Record> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        records.clear();
        records.extend(batch.iter().map(|job| job.record.clone()));
        let result = store.append_batch(&records);
        {
            let mut status = lock(&status);
            match &result {
                Ok(_) => {
                    status.healthy = true;
                    status.head_seq = store.head().seq;
                    status.last_error = None;
                }
                Err(e) => {
                    tracing::error!(path = %store.path().display(), error = %e, "audit write failed; refusing runs until it succeeds");
                    status.healthy = false;
                    status.last_error = Some(e.to_string());
                }
            }
        }
        match result {
            Ok(receipts) => {
                for (job, receipt) in batch.drain(..).zip(receipts) {
                    let _ = job.done.send(Ok(receipt));
                }
            }
            Err(e) => {
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(AuditError::Write(e.to_string())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
