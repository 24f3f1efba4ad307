//! The writer thread (and, when syncs are pipelined, the syncer thread) behind [`AuditLog`]: group
//! commit. Records that arrive while a batch is written or synced go out together in the next one.
//!
//! [`AuditLog`]: super::AuditLog

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{
    AuditError, ChainHead, Job, JsonlStore, PreEncoded, Receipt, SinkStatus, Written, MAX_BATCH,
};
use crate::metrics::Histogram;
use crate::sync::lock;

/// Records the outcome of a write or sync in the sink status.
pub(super) fn note(
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

/// Copies the store's count of foreign tails into the sink status (`/health`).
fn note_foreign_tails(status: &Mutex<SinkStatus>, store: &JsonlStore) {
    let tails = store.foreign_tails();
    let mut status = lock(status);
    if status.foreign_tail_events != tails.count {
        status.foreign_tail_events = tails.count;
        status.last_foreign_tail = tails.last.clone();
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
fn sync_loop(
    pipeline: Arc<Pipeline>,
    status: Arc<Mutex<SinkStatus>>,
    path: PathBuf,
    batch_records: Histogram,
) {
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
                let records: usize = batches.iter().map(|b| b.acks.len()).sum();
                batch_records.observe(records as f64);
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
/// `AUDIT_FSYNC=never`, is not waited for. `batch_records` counts the records of each group commit:
/// those one sync made durable (pipelined), else those written (and synced) together.
pub(super) fn write_loop(
    mut store: JsonlStore,
    mut queue: mpsc::Receiver<Job>,
    status: Arc<Mutex<SinkStatus>>,
    pipelined: bool,
    batch_records: Histogram,
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
        let batch_records = batch_records.clone();
        std::thread::Builder::new()
            .name("audit-syncer".into())
            .spawn(move || sync_loop(pipeline, status, path, batch_records))
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
    let write_batch = |store: &mut JsonlStore, items: &mut Vec<PreEncoded>, acks: &mut Vec<Ack>| {
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
                    batch_records.observe(receipts.len() as f64);
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
    let write = |store: &mut JsonlStore, items: &mut Vec<PreEncoded>, acks: &mut Vec<Ack>| {
        if items.is_empty() {
            return;
        }
        write_batch(store, items, acks);
        note_foreign_tails(&status, store);
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
                    note_foreign_tails(&status, &store);
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
