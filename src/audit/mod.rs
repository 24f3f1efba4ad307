//! The audit trail: chained, durable records of every governed run.
//!
//! Requests hand records to [`AuditLog::append`], which resolves only once the record is on disk. One
//! writer thread owns the store; whatever records wait while it syncs go out together in the next
//! write and sync (group commit), so durability costs one sync per batch, not per request, and the
//! async runtime never blocks on the disk.

pub mod checkpoint;
pub mod format;
mod jsonl;
pub mod query;
mod record;
pub mod segments;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use format::PreEncoded;
pub use jsonl::{encode, ChainHead, JsonlStore, StoreOptions};
pub use record::{Outcome, Receipt, Record, RunRecord};

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
}

/// What `/health` says about the audit sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub healthy: bool,
    pub path: PathBuf,
    pub head_seq: u64,
    pub last_error: Option<String>,
    pub signing: bool,
}

/// Store options plus how often the writer signs and tidies up on its own.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub store: StoreOptions,
    /// Sign a checkpoint (when anything is new) and apply retention this often.
    pub maintenance_interval: Duration,
}

impl AuditOptions {
    pub fn new(fsync: FsyncMode) -> AuditOptions {
        AuditOptions {
            store: StoreOptions::new(fsync),
            maintenance_interval: Duration::from_secs(60),
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
        }));
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer_status = Arc::clone(&status);
        let spawn_err = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(store, queue, writer_status))
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
        Ok(AuditLog { jobs, status })
    }

    /// Appends a record; resolves once it is durable (per the fsync mode) or the write failed. The
    /// record is encoded here, on the caller's thread, so the single writer only chains and writes.
    pub async fn append(&self, record: Record) -> Result<Receipt, AuditError> {
        let item = encode(&record);
        let (done, receipt) = oneshot::channel();
        self.jobs
            .send(Job::Append { item, done })
            .await
            .map_err(|_| AuditError::Stopped)?;
        receipt.await.map_err(|_| AuditError::Stopped)?
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
}

fn lock(status: &Mutex<SinkStatus>) -> std::sync::MutexGuard<'_, SinkStatus> {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn note(status: &Mutex<SinkStatus>, store: &JsonlStore, result: Result<(), &std::io::Error>) {
    let mut status = lock(status);
    match result {
        Ok(()) => {
            status.healthy = true;
            status.head_seq = store.head().seq;
            status.last_error = None;
        }
        Err(e) => {
            if status.healthy {
                tracing::error!(path = %store.path().display(), error = %e, "audit write failed; refusing runs until it succeeds");
            }
            status.healthy = false;
            status.last_error = Some(e.to_string());
        }
    }
}

fn write_loop(
    mut store: JsonlStore,
    mut queue: mpsc::Receiver<Job>,
    status: Arc<Mutex<SinkStatus>>,
) {
    let mut items: Vec<PreEncoded> = Vec::with_capacity(MAX_BATCH);
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    type Waiting = Vec<oneshot::Sender<Result<Receipt, AuditError>>>;
    let flush = |store: &mut JsonlStore, items: &mut Vec<PreEncoded>, waiting: &mut Waiting| {
        if items.is_empty() {
            return;
        }
        let result = store.append_encoded(items);
        note(&status, store, result.as_ref().map(|_| ()));
        match result {
            Ok(receipts) => {
                for (done, receipt) in waiting.drain(..).zip(receipts) {
                    let _ = done.send(Ok(receipt));
                }
            }
            Err(e) => {
                for done in waiting.drain(..) {
                    let _ = done.send(Err(AuditError::Write(e.to_string())));
                }
            }
        }
        items.clear();
    };
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append { item, done } => {
                    items.push(item);
                    waiting.push(done);
                    if items.len() < MAX_BATCH {
                        next = queue.try_recv().ok();
                    }
                }
                Job::Maintenance => {
                    flush(&mut store, &mut items, &mut waiting);
                    let result = store
                        .checkpoint_now()
                        .and_then(|_| store.apply_retention())
                        .map(|_| ());
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "audit maintenance failed; will retry");
                    }
                    next = queue.try_recv().ok();
                }
                Job::Close { done } => {
                    flush(&mut store, &mut items, &mut waiting);
                    if let Err(e) = store.checkpoint_now() {
                        tracing::error!(error = %e, "final audit checkpoint failed");
                    }
                    let _ = done.send(());
                    return;
                }
            }
        }
        flush(&mut store, &mut items, &mut waiting);
    }
}

#[cfg(test)]
mod tests;
