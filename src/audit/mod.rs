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
mod lines;
pub mod query;
mod record;
pub mod segments;
mod store;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::lock;
use tokio::sync::{mpsc, oneshot};

pub use format::PreEncoded;
pub use jsonl::{ChainHead, JsonlStore, StoreOptions, Written};
pub use record::{encode, encode_generic, Outcome, Receipt, Record, RunRecord};
pub use store::AuditStore;

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
    /// Sync on a second thread while the writer writes on (with `FsyncMode::Always`); off, the
    /// writer writes and syncs each batch itself.
    pub pipelined: bool,
}

impl AuditOptions {
    pub fn new(fsync: FsyncMode) -> AuditOptions {
        AuditOptions {
            store: StoreOptions::new(fsync),
            maintenance_interval: Duration::from_secs(60),
            pipelined: true,
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
        }));
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer_status = Arc::clone(&status);
        let spawn_err = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(store, queue, writer_status, pipelined))
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

    /// The active file's path (segments sit beside it).
    pub fn path(&self) -> PathBuf {
        lock(&self.status).path.clone()
    }
}

/// Records the outcome of a write or sync in the sink status.
fn note(
    status: &Mutex<SinkStatus>,
    path: &Path,
    head_seq: u64,
    result: Result<(), &std::io::Error>,
) {
    let mut status = lock(status);
    match result {
        Ok(()) => {
            if !status.healthy {
                tracing::info!(path = %path.display(), "audit writes succeed again");
            }
            status.healthy = true;
            status.head_seq = head_seq;
            status.last_error = None;
        }
        Err(e) => {
            if status.healthy {
                tracing::error!(path = %path.display(), error = %e, "audit write failed; refusing runs until it succeeds");
            }
            status.healthy = false;
            status.last_error = Some(e.to_string());
        }
    }
}

type Ack = oneshot::Sender<Result<Receipt, AuditError>>;

fn fail_all(acks: impl IntoIterator<Item = Ack>, error: &str) {
    for done in acks {
        let _ = done.send(Err(AuditError::Write(error.to_owned())));
    }
}

/// A batch written but not yet synced.
struct Pending {
    written: Written,
    acks: Vec<Ack>,
}

/// What the writer and the syncer share.
struct SyncState {
    /// Batches written, oldest first, waiting for a sync.
    pending: Vec<Pending>,
    /// A sync is running (its batches are out of `pending`).
    syncing: bool,
    /// The durable point: file length and chain head.
    synced_len: u64,
    synced_head: ChainHead,
    /// Set by a failed sync; the writer cuts the file back to the durable point before writing on.
    failure: Option<String>,
    closing: bool,
}

struct Pipeline {
    state: Mutex<SyncState>,
    changed: std::sync::Condvar,
}

impl Pipeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        crate::sync::lock(&self.state)
    }

    fn wait<'a>(
        &self,
        guard: std::sync::MutexGuard<'a, SyncState>,
    ) -> std::sync::MutexGuard<'a, SyncState> {
        self.changed
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The syncer: syncs whatever the writer has written since the last sync, then answers every
/// caller whose records that sync made durable. While it syncs, the writer writes the next batch,
/// so the disk is never idle under load and each sync covers everything that arrived meanwhile.
fn sync_loop(pipeline: Arc<Pipeline>, status: Arc<Mutex<SinkStatus>>, path: PathBuf) {
    loop {
        let mut state = pipeline.lock();
        while state.pending.is_empty() && !state.closing {
            state = pipeline.wait(state);
        }
        if state.pending.is_empty() {
            return;
        }
        let batches = std::mem::take(&mut state.pending);
        state.syncing = true;
        drop(state);

        let last = batches.len() - 1;
        let result = batches[last].written.file.sync_data();
        let mut state = pipeline.lock();
        state.syncing = false;
        match result {
            Ok(()) => {
                state.synced_len = batches[last].written.end;
                state.synced_head = batches[last].written.head.clone();
                note(&status, &path, state.synced_head.seq, Ok(()));
                pipeline.changed.notify_all();
                drop(state);
                for batch in batches {
                    for (done, receipt) in batch.acks.into_iter().zip(batch.written.receipts) {
                        let _ = done.send(Ok(receipt));
                    }
                }
            }
            Err(e) => {
                // Everything after the durable point is lost, including batches written on top.
                note(&status, &path, state.synced_head.seq, Err(&e));
                let error = e.to_string();
                state.failure = Some(error.clone());
                let later = std::mem::take(&mut state.pending);
                pipeline.changed.notify_all();
                drop(state);
                fail_all(
                    batches.into_iter().chain(later).flat_map(|b| b.acks),
                    &error,
                );
            }
        }
    }
}

/// The writer: chains and writes batches; durability comes from the syncer (pipelined) or, with
/// `AUDIT_FSYNC=never`, is not waited for.
fn write_loop(
    mut store: JsonlStore,
    mut queue: mpsc::Receiver<Job>,
    status: Arc<Mutex<SinkStatus>>,
    pipelined: bool,
) {
    let path = store.path().to_owned();
    let pipeline = Arc::new(Pipeline {
        state: Mutex::new(SyncState {
            pending: Vec::new(),
            syncing: false,
            synced_len: store.len(),
            synced_head: store.head().clone(),
            failure: None,
            closing: false,
        }),
        changed: std::sync::Condvar::new(),
    });
    let syncer = pipelined.then(|| {
        let (pipeline, status, path) = (Arc::clone(&pipeline), Arc::clone(&status), path.clone());
        std::thread::Builder::new()
            .name("audit-syncer".into())
            .spawn(move || sync_loop(pipeline, status, path))
    });
    let syncer = match syncer {
        Some(Ok(handle)) => Some(handle),
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot start the audit syncer; syncing on the writer thread");
            None
        }
        None => None,
    };
    let pipelined = syncer.is_some();

    // Lets every pending sync finish and applies a failed one's rollback: afterwards the file holds
    // exactly the durable records, and the store may sync on its own.
    let settle = |store: &mut JsonlStore| {
        let mut state = pipeline.lock();
        while !state.pending.is_empty() || state.syncing {
            state = pipeline.wait(state);
        }
        apply_failure(&mut state, store);
    };

    let mut items: Vec<PreEncoded> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<Ack> = Vec::with_capacity(MAX_BATCH);
    let write = |store: &mut JsonlStore, items: &mut Vec<PreEncoded>, acks: &mut Vec<Ack>| {
        if items.is_empty() {
            return;
        }
        if !pipelined {
            let result = store.append_encoded(items);
            note(
                &status,
                &path,
                store.head().seq,
                result.as_ref().map(|_| ()),
            );
            match result {
                Ok(receipts) => {
                    for (done, receipt) in acks.drain(..).zip(receipts) {
                        let _ = done.send(Ok(receipt));
                    }
                }
                Err(e) => fail_all(acks.drain(..), &e.to_string()),
            }
            items.clear();
            return;
        }
        // Rotation is a step of its own, with nothing pending: the old file is synced whole, so the
        // durable point becomes the start of the new file whatever happens to the write after it.
        let now = chrono::Utc::now();
        if store.rotation_due(now) {
            settle(store);
            match store.rotate_if_due(now) {
                Ok(rotated) => {
                    if rotated {
                        let mut state = pipeline.lock();
                        state.synced_len = 0;
                        state.synced_head = store.head().clone();
                    }
                }
                Err(e) => {
                    note(&status, &path, store.head().seq, Err(&e));
                    fail_all(acks.drain(..), &e.to_string());
                    items.clear();
                    return;
                }
            }
        }
        apply_failure(&mut pipeline.lock(), store);
        match store.write_encoded(items) {
            Ok(written) => {
                let mut state = pipeline.lock();
                if let Some(error) = apply_failure(&mut state, store) {
                    // A sync failed while we wrote: this batch sits on lost records.
                    drop(state);
                    fail_all(acks.drain(..), &error);
                } else {
                    state.pending.push(Pending {
                        written,
                        acks: std::mem::take(acks),
                    });
                    pipeline.changed.notify_all();
                }
            }
            Err(e) => {
                note(&status, &path, store.head().seq, Err(&e));
                fail_all(acks.drain(..), &e.to_string());
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
                    acks.push(done);
                    if items.len() < MAX_BATCH {
                        next = queue.try_recv().ok();
                    }
                }
                Job::Maintenance => {
                    write(&mut store, &mut items, &mut acks);
                    settle(&mut store);
                    let result = store
                        .checkpoint_now()
                        .and_then(|_| store.apply_retention())
                        .map(|_| ());
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "audit maintenance failed; will retry");
                    }
                    sync_point(&pipeline, &store);
                    next = queue.try_recv().ok();
                }
                Job::Close { done } => {
                    write(&mut store, &mut items, &mut acks);
                    settle(&mut store);
                    if let Err(e) = store.checkpoint_now() {
                        tracing::error!(error = %e, "final audit checkpoint failed");
                    }
                    pipeline.lock().closing = true;
                    pipeline.changed.notify_all();
                    let _ = done.send(());
                    return;
                }
            }
        }
        write(&mut store, &mut items, &mut acks);
    }
    pipeline.lock().closing = true;
    pipeline.changed.notify_all();
}

/// After a failed sync: cuts the store back to the durable point (once), and says why.
fn apply_failure(state: &mut SyncState, store: &mut JsonlStore) -> Option<String> {
    let error = state.failure.take()?;
    store.rollback(state.synced_len, state.synced_head.clone());
    Some(error)
}

/// After the store wrote and synced on its own (checkpoint, retention), its end is the durable point.
fn sync_point(pipeline: &Pipeline, store: &JsonlStore) {
    let mut state = pipeline.lock();
    state.synced_len = store.len();
    state.synced_head = store.head().clone();
}

#[cfg(test)]
mod tests;
