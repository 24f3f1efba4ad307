//! The audit chain in PostgreSQL (`DATABASE_URL`): one chain shared by every server instance on the
//! database, with the same lines, hashes and signed checkpoints as the JSONL log (an export is one
//! JSONL file that `sustainbot audit verify` accepts).
//!
//! Each instance has one writer task. Whatever appends wait while its transaction commits go out
//! together in the next one (group commit). A batch's transaction applies the state changes that
//! must commit with its records, then locks the chain head (`audit_head`, one row: instances take
//! turns there), seals its records after it, inserts them with one statement, signs a checkpoint
//! when one is due, moves the head and commits (synchronously: the server's default). Callers are
//! answered only after the commit.
//!
//! Retention and rotation do not apply: the table is kept, backed up and pruned with PostgreSQL's
//! own tools (`pg_dump`, partitioning, an archive), not by the server.

mod read;
mod transfer;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Signer;
use super::query::{Filter, Page};
use super::record::encode_for;
use super::verify::{Report, VerifyOptions};
use super::{AuditError, AuditOptions, AuditStore, Receipt, Record, SinkStatus, QUEUE_DEPTH};
use crate::db::Change;
use crate::metrics::AuditMetrics;
use crate::sync::lock;

pub use read::PgReader;
pub use transfer::{export, import, ImportError, Imported};

use writer::{Append, Job, Writer};

/// What `/health` shows as the store's file: the chain is a table, not a file.
pub const STORE_NAME: &str = "postgresql";

/// How the PostgreSQL store signs, tidies up and waits.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Sign a checkpoint every `checkpoint_every` records (0: only on the maintenance tick and at
    /// close) with this key. Every instance on one database must use the same key.
    pub signer: Option<Signer>,
    pub checkpoint_every: u64,
    /// Sign a checkpoint when anything is new since the last one, this often.
    pub maintenance_interval: Duration,
    /// The longest one batch may take, from taking a connection to its commit, and one read; the
    /// database aborts a statement (and ends a transaction left idle) after it too, so that a
    /// vanished instance never holds the chain head (`DB_POOL_TIMEOUT`).
    pub timeout: Duration,
    /// Where appends, their latency and the group-commit batch sizes are counted.
    pub metrics: AuditMetrics,
}

impl PgStoreOptions {
    /// Unsigned, a checkpoint tick every minute, 30 s for the database to answer.
    pub fn new() -> PgStoreOptions {
        PgStoreOptions {
            signer: None,
            checkpoint_every: 0,
            maintenance_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            metrics: AuditMetrics::default(),
        }
    }

    /// The signing and checkpoint settings of the file store's options (`AUDIT_*`), and `timeout`.
    pub fn from_audit(options: &AuditOptions, timeout: Duration) -> PgStoreOptions {
        PgStoreOptions {
            signer: options.store.signer.clone(),
            checkpoint_every: options.store.checkpoint_every,
            maintenance_interval: options.maintenance_interval,
            timeout,
            metrics: options.metrics.clone(),
        }
    }
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions::new()
    }
}

/// A cloneable handle to this instance's writer of the shared chain, and its reader.
#[derive(Clone)]
pub struct PgAuditStore {
    jobs: mpsc::Sender<Job>,
    status: Arc<Mutex<SinkStatus>>,
    metrics: AuditMetrics,
    instance: Arc<str>,
    reader: PgReader,
}

impl PgAuditStore {
    /// Reads the chain head (the schema must be applied: [`crate::db::open`] does) and starts this
    /// instance's writer task and maintenance tick on the current runtime. `instance` names this
    /// server in every record it appends (member `instance`).
    pub async fn open(
        pool: PgPool,
        instance: String,
        options: PgStoreOptions,
    ) -> Result<PgAuditStore, AuditError> {
        let reader = PgReader::new(
            pool.clone(),
            tokio::runtime::Handle::current(),
            options.timeout,
        );
        let head = reader
            .head()
            .await
            .map_err(|e| AuditError::Database(e.to_string()))?;
        let status = Arc::new(Mutex::new(SinkStatus {
            healthy: true,
            path: PathBuf::from(STORE_NAME),
            head_seq: head,
            last_error: None,
            signing: options.signer.is_some(),
            foreign_tail_events: 0,
            last_foreign_tail: None,
        }));
        let instance: Arc<str> = Arc::from(instance);
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        // The writer runs on a thread of its own, with connections of its own: a batch's round
        // trips are not queued behind the request handlers' tasks on the server's runtime, so a
        // transaction holds the chain head for its round trips and its WAL flush only.
        let connect = (*pool.connect_options()).clone();
        let (writer_instance, writer_status) = (Arc::clone(&instance), Arc::clone(&status));
        let writer_options = options.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the audit writer's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let own = PgPoolOptions::new()
                        .max_connections(writer::CONNECTIONS)
                        .min_connections(0)
                        .acquire_timeout(writer_options.timeout)
                        .connect_lazy_with(connect);
                    let writer = Writer::new(own, writer_instance, &writer_options, writer_status);
                    writer::write_loop(writer, queue).await;
                });
            });
        if let Err(e) = spawned {
            return Err(AuditError::Database(format!(
                "cannot start the audit writer: {e}"
            )));
        }
        // The tick holds only a weak handle: it stops when the last handle to the store is dropped.
        let weak = jobs.downgrade();
        let interval = options.maintenance_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match weak.upgrade() {
                    Some(jobs) if jobs.send(Job::Maintenance).await.is_ok() => {}
                    _ => break,
                }
            }
        });
        Ok(PgAuditStore {
            jobs,
            status,
            metrics: options.metrics,
            instance,
            reader,
        })
    }

    /// Appends a record after every record committed before it (by any instance); resolves once
    /// its transaction committed.
    pub async fn append(&self, record: Record) -> Result<Receipt, AuditError> {
        self.submit(record, None).await
    }

    /// Applies `change`, then appends `record`, in one transaction: both or neither. `Ok(false)`
    /// from the change is [`AuditError::Conflict`] (nothing appended, the change rolled back).
    pub async fn append_with(
        &self,
        record: Record,
        change: Arc<dyn Change>,
    ) -> Result<Receipt, AuditError> {
        self.submit(record, Some(change)).await
    }

    async fn submit(
        &self,
        record: Record,
        change: Option<Arc<dyn Change>>,
    ) -> Result<Receipt, AuditError> {
        let started = Instant::now();
        // Encoded here, on the caller's task: the writer only seals.
        let (done, receipt) = oneshot::channel();
        let job = Job::Append(Append {
            item: encode_for(&record, Some(&self.instance)),
            kind: record.kind(),
            trace_id: record.trace_id().map(str::to_owned),
            change,
            done,
        });
        let result = match self.jobs.send(job).await {
            Ok(()) => receipt.await.unwrap_or(Err(AuditError::Stopped)),
            Err(_) => Err(AuditError::Stopped),
        };
        match &result {
            Ok(_) => {
                self.metrics.appended.inc();
                let waited = started.elapsed().as_secs_f64();
                self.metrics.append_duration.observe(waited);
            }
            // Refused by the state, not by the trail: the trail is fine.
            Err(AuditError::Conflict(_)) => {}
            Err(_) => {
                self.metrics.failed.inc();
            }
        }
        result
    }

    /// Commits what is queued, signs a final checkpoint when anything is new (and a key is set),
    /// and stops the writer. Appends after this fail with [`AuditError::Stopped`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Job::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }

    pub fn status(&self) -> SinkStatus {
        lock(&self.status).clone()
    }

    /// This server's name in the records it appends.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The pool the store writes through (shared with the rest of the server's state).
    pub fn pool(&self) -> &PgPool {
        self.reader.pool()
    }

    pub fn reader(&self) -> &PgReader {
        &self.reader
    }
}

impl AuditStore for PgAuditStore {
    fn append(&self, record: Record) -> BoxFuture<'_, Result<Receipt, AuditError>> {
        Box::pin(PgAuditStore::append(self, record))
    }

    fn append_with(
        &self,
        record: Record,
        change: Arc<dyn Change>,
    ) -> BoxFuture<'_, Result<Receipt, AuditError>> {
        Box::pin(PgAuditStore::append_with(self, record, change))
    }

    fn shared(&self) -> bool {
        true
    }

    fn status(&self) -> SinkStatus {
        PgAuditStore::status(self)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(PgAuditStore::close(self))
    }

    fn query(&self, filter: &Filter, limit: usize) -> std::io::Result<Page> {
        self.reader.query(filter, limit)
    }

    fn for_each(&self, filter: &Filter, visit: &mut dyn FnMut(Value)) -> std::io::Result<()> {
        self.reader.for_each(filter, visit)
    }

    fn verify(&self, options: &VerifyOptions) -> std::io::Result<Report> {
        self.reader.verify(options)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;
