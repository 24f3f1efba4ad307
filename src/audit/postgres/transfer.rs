//! Moving a chain between a JSONL log and PostgreSQL, line for line: the same bytes, seqs and
//! hashes on both sides, so either verifies as the other does.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::runtime::Handle;

use super::PgReader;
use crate::audit::format::SUFFIX_LEN;
use crate::audit::query::Filter;
use crate::audit::verify::{verify_log_in_chunks, Problem, VerifyOptions};

/// Lines read, verified and inserted at a time by an import.
const IMPORT_CHUNK_BYTES: usize = 4 << 20;

/// Writes every record matching `filter`, in seq order, as its line and a newline: with the default
/// filter, the JSONL log of the same chain (one file that `sustainbot audit verify` accepts).
/// Returns how many records it wrote.
pub fn export(reader: &PgReader, filter: &Filter, out: &mut dyn Write) -> io::Result<u64> {
    let mut written = 0;
    reader.for_each_line(filter, &mut |line| {
        out.write_all(line)?;
        out.write_all(b"\n")?;
        written += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the database already holds an audit chain (head at seq {0}); import only into an empty one")]
    NotEmpty(u64),
    #[error("cannot read the log: {0}")]
    Read(#[from] io::Error),
    #[error("the log does not verify: {}{}: {}", .0.file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), format_args!("line {}", .0.line), .0.message)]
    Invalid(Problem),
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an import put into the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub records: u64,
    pub first_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// The seq of the last checkpoint record (0: none).
    pub checkpoint_seq: u64,
}

/// The members of a line the table keeps in columns of their own.
#[derive(Deserialize)]
struct Columns<'a> {
    seq: u64,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    instance: Option<Cow<'a, str>>,
}

impl<'a> Columns<'a> {
    /// As the matcher reads them: a member of another type than a string counts as absent.
    fn of(line: &'a [u8]) -> Option<Columns<'a>> {
        if let Ok(columns) = serde_json::from_slice(line) {
            return Some(columns);
        }
        let value: Value = serde_json::from_slice(line).ok()?;
        let text = |key: &str| value.get(key)?.as_str().map(|s| Cow::Owned(s.to_owned()));
        Some(Columns {
            seq: value.get("seq")?.as_u64()?,
            kind: text("kind"),
            trace_id: text("trace_id"),
            timestamp: text("timestamp"),
            instance: text("instance"),
        })
    }
}

/// Rows of an import, as arrays of columns.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    line: Vec<Vec<u8>>,
    hash: Vec<String>,
    kind: Vec<String>,
    trace_id: Vec<Option<String>>,
    recorded_at: Vec<String>,
    instance: Vec<Option<String>>,
}

/// What the import saw last, for the head.
#[derive(Default)]
struct Progress {
    records: u64,
    first_seq: Option<u64>,
    stamp: String,
    checkpoint_seq: u64,
}

impl Rows {
    /// Adds the verified lines of `chunk` (each ending in a newline).
    fn add(&mut self, chunk: &[u8], progress: &mut Progress) -> io::Result<()> {
        for line in chunk.split_inclusive(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let columns = Columns::of(line)
                .ok_or_else(|| io::Error::other("a verified line did not parse again"))?;
            // A verified line ends with `,"integrity_hash":"sha256:<64 hex>"}`.
            let hex = line
                .get(line.len().saturating_sub(SUFFIX_LEN)..)
                .and_then(|suffix| suffix.get(SUFFIX_LEN - 66..SUFFIX_LEN - 2))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let timestamp = columns.timestamp.as_deref().unwrap_or_default();
            // A record without a readable time (none the server writes) is filed at the epoch.
            let recorded_at = if DateTime::parse_from_rfc3339(timestamp).is_ok() {
                timestamp.to_owned()
            } else {
                "1970-01-01T00:00:00Z".to_owned()
            };
            let kind = columns.kind.as_deref().unwrap_or_default();
            if kind == "checkpoint" {
                progress.checkpoint_seq = columns.seq;
            }
            progress.first_seq.get_or_insert(columns.seq);
            progress.records += 1;
            progress.stamp = timestamp.to_owned();
            self.seq
                .push(i64::try_from(columns.seq).unwrap_or(i64::MAX));
            self.line.push(line.to_vec());
            self.hash.push(format!("sha256:{hex}"));
            self.kind.push(kind.to_ascii_lowercase());
            self.trace_id.push(columns.trace_id.map(Cow::into_owned));
            self.recorded_at.push(recorded_at);
            self.instance.push(columns.instance.map(Cow::into_owned));
        }
        Ok(())
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO audit_records (seq, line, hash, kind, trace_id, recorded_at, instance)
             SELECT seq, line, hash, kind, trace_id, recorded_at::timestamptz, instance
             FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                 AS r(seq, line, hash, kind, trace_id, recorded_at, instance)",
        )
        .bind(self.seq)
        .bind(self.line)
        .bind(self.hash)
        .bind(self.kind)
        .bind(self.trace_id)
        .bind(self.recorded_at)
        .bind(self.instance)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Copies the JSONL log at `path` (its active file or directory, with every rotated segment) into
/// an empty chain in the database, verifying it as it reads (with `options`' public key, every
/// checkpoint's signature too): the same lines with the same seqs and hashes, and the head after
/// the last one, so that servers on the database continue the chain. All in one transaction:
/// nothing is imported unless the whole log verifies. A log that no longer starts at seq 1
/// (retention) is imported from its first seq, as it is.
///
/// Blocks: call it outside the runtime `runtime` belongs to (a multi-threaded one).
pub fn import(
    runtime: &Handle,
    pool: &PgPool,
    path: &Path,
    options: &VerifyOptions,
) -> Result<Imported, ImportError> {
    // A connection returns to its pool through a task: whatever is dropped here must see the runtime.
    let _context = runtime.enter();
    let mut tx = runtime.block_on(async {
        let mut tx = pool.begin().await?;
        // The head is locked for the whole import: a server appending meanwhile waits, then
        // continues from the imported head.
        let (seq, any): (i64, bool) = sqlx::query_as(
            "SELECT seq, EXISTS (SELECT 1 FROM audit_records) FROM audit_head WHERE id = 1 FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await?;
        if seq != 0 || any {
            return Err(ImportError::NotEmpty(u64::try_from(seq).unwrap_or(0)));
        }
        Ok::<_, ImportError>(tx)
    })?;
    let mut progress = Progress::default();
    let mut refused = None;
    let report = verify_log_in_chunks(path, options, IMPORT_CHUNK_BYTES, |chunk| {
        let mut rows = Rows::default();
        rows.add(chunk, &mut progress)?;
        runtime.block_on(rows.insert(&mut tx)).map_err(|e| {
            let message = e.to_string();
            refused = Some(e);
            io::Error::other(message)
        })
    });
    let verified = match (refused, report) {
        (Some(e), _) => Err(ImportError::Database(e)),
        (None, Err(e)) => Err(ImportError::Read(e)),
        (None, Ok(report)) => match report.problem {
            Some(problem) => Err(ImportError::Invalid(problem)),
            None => Ok(report),
        },
    };
    let report = match verified {
        Ok(report) => report,
        Err(e) => {
            // Nothing of the log stays behind.
            let _ = runtime.block_on(tx.rollback());
            return Err(e);
        }
    };
    let imported = Imported {
        records: progress.records,
        first_seq: progress.first_seq.unwrap_or(0),
        head_seq: report.head_seq,
        head_hash: report.head_hash,
        checkpoint_seq: progress.checkpoint_seq,
    };
    runtime.block_on(async {
        sqlx::query(
            "UPDATE audit_head SET seq = $1, hash = $2, stamp = $3, checkpoint_seq = $4 WHERE id = 1",
        )
        .bind(i64::try_from(imported.head_seq).unwrap_or(i64::MAX))
        .bind(&imported.head_hash)
        .bind(&progress.stamp)
        .bind(i64::try_from(imported.checkpoint_seq).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    })?;
    Ok(imported)
}
