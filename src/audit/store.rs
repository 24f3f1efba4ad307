//! The audit trail as the rest of the server sees it, behind one trait: the gate appends through it,
//! `/health` reads its status, the read API queries and verifies through it. [`AuditLog`] (a chained
//! JSONL file with one writer process) is one implementation; [`super::PgAuditStore`] (one chain in
//! PostgreSQL shared by several server instances, `DATABASE_URL`) is the other, with the same record
//! format and chain.

use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::query::{self, Filter, Page};
use super::verify::{verify_log, Report, VerifyOptions};
use crate::db::Change;

use super::{AuditError, AuditLog, Receipt, Record, SinkStatus};

/// A durable, chained, append-only audit store.
///
/// `append` resolves only once the record is durable (per the store's fsync mode); every other
/// method reads. The reading methods block (files, sockets): call them from a blocking thread.
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `record` after every record appended before it; its seq and hash once durable.
    fn append(&self, record: Record) -> BoxFuture<'_, Result<Receipt, AuditError>>;

    /// Appends `record` and applies `change` to the shared state in the same transaction: both
    /// or neither ([`AuditError::Conflict`] when the change's guard does not hold). A store
    /// without shared state (the JSONL file of one server) has nothing to change and appends.
    fn append_with(
        &self,
        record: Record,
        change: Arc<dyn Change>,
    ) -> BoxFuture<'_, Result<Receipt, AuditError>> {
        drop(change);
        self.append(record)
    }

    /// Whether several instances share this store (its runs, queue and approvals live in it).
    fn shared(&self) -> bool {
        false
    }

    /// Whether the store accepts records now, its head, and the last error.
    fn status(&self) -> SinkStatus;

    /// Takes no more records after those already appended (and signs a final checkpoint where the
    /// store signs).
    fn close(&self) -> BoxFuture<'_, ()>;

    /// The records matching `filter` with `seq > filter.after_seq`, in seq order, at most `limit`.
    fn query(&self, filter: &Filter, limit: usize) -> io::Result<Page>;

    /// Calls `visit` with every record matching `filter`, in seq order, keeping none of them.
    fn for_each(&self, filter: &Filter, visit: &mut dyn FnMut(Value)) -> io::Result<()>;

    /// Verifies the chain and checkpoints as they are now. `live`: the store is being written, so
    /// a record still being written is left out rather than reported as torn.
    fn verify(&self, options: &VerifyOptions) -> io::Result<Report>;
}

impl AuditStore for AuditLog {
    fn append(&self, record: Record) -> BoxFuture<'_, Result<Receipt, AuditError>> {
        Box::pin(AuditLog::append(self, record))
    }

    fn status(&self) -> SinkStatus {
        AuditLog::status(self)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(AuditLog::close(self))
    }

    fn query(&self, filter: &Filter, limit: usize) -> io::Result<Page> {
        query::query(&self.path(), filter, limit)
    }

    fn for_each(&self, filter: &Filter, visit: &mut dyn FnMut(Value)) -> io::Result<()> {
        // A log that is not a file (a device, as the failure tests configure) holds no records,
        // and reading /dev/full would never end.
        let path = self.path();
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file() || m.is_dir()) {
            return Ok(());
        }
        query::for_each(&path, filter, visit)
    }

    fn verify(&self, options: &VerifyOptions) -> io::Result<Report> {
        verify_log(&self.path(), options)
    }
}
