//! Reading the chain back from PostgreSQL: filtered queries in seq order with keyset pagination
//! (each line goes through the JSONL reader's matcher, so both stores answer a filter alike), and
//! verification of every line in seq order by the file verifier.
//!
//! The reading methods block, like the trait's: call them from a blocking thread (or a thread
//! outside the runtime), never from an async task.

use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::{PgPool, Row};
use tokio::runtime::Handle;

use crate::audit::query::matcher::{Facts, Matcher};
use crate::audit::query::{Filter, Page};
use crate::audit::verify::{verify_chunks, Report, VerifyOptions};

/// Rows per page when the filter looks at members the indexes do not cover.
const SCAN_PAGE: i64 = 2_000;
/// Rows per chunk handed to the verifier (about 20 MB of lines at 1 KB a record).
const VERIFY_PAGE: i64 = 20_000;

/// Reads the chain; cheap to clone.
#[derive(Clone)]
pub struct PgReader {
    pool: PgPool,
    runtime: Handle,
    timeout: Duration,
}

/// The statement for a page of lines after a seq, using the index that fits the filter.
fn page_statement(filter: &Filter) -> (&'static str, Option<String>) {
    if let Some(trace_id) = &filter.trace_id {
        (
            "SELECT seq, line FROM audit_records WHERE trace_id = $3 AND seq > $1 ORDER BY seq LIMIT $2",
            Some(trace_id.clone()),
        )
    } else if let Some(kind) = &filter.kind {
        // The column holds `kind` in lower case: the matcher compares it ignoring ASCII case.
        (
            "SELECT seq, line FROM audit_records WHERE kind = $3 AND seq > $1 ORDER BY seq LIMIT $2",
            Some(kind.trim().to_ascii_lowercase()),
        )
    } else {
        (
            "SELECT seq, line FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2",
            None,
        )
    }
}

/// Whether the statement alone selects exactly what the filter does (no member left to the matcher
/// but the ones it compares exactly).
fn statement_is_the_filter(filter: &Filter) -> bool {
    filter.actor.is_none()
        && filter.workflow.is_none()
        && filter.outcome.is_none()
        && filter.drag_mode.is_none()
        && filter.since.is_none()
        && filter.until.is_none()
        && (filter.trace_id.is_none() || filter.kind.is_none())
}

fn database_error(e: sqlx::Error) -> io::Error {
    io::Error::other(format!("PostgreSQL: {e}"))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgReader {
    /// A reader on `pool`, whose blocking methods run their queries on `runtime`; a query (one
    /// page) waits at most `timeout`.
    pub fn new(pool: PgPool, runtime: Handle, timeout: Duration) -> PgReader {
        PgReader {
            pool,
            runtime,
            timeout,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The head's seq.
    pub async fn head(&self) -> Result<u64, sqlx::Error> {
        let seq: i64 = tokio::time::timeout(
            self.timeout,
            sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1").fetch_one(&self.pool),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// Runs `work` to completion on this thread, within the timeout.
    fn block_on<T>(&self, work: impl Future<Output = Result<T, sqlx::Error>>) -> io::Result<T> {
        let timeout = self.timeout;
        self.runtime.block_on(async move {
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result.map_err(database_error),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "PostgreSQL did not answer within {} s",
                        timeout.as_secs_f64()
                    ),
                )),
            }
        })
    }

    /// Calls `visit` with the seq and line (without its newline) of every record matching
    /// `filter` with `seq > filter.after_seq`, in seq order, until it breaks. `page` rows are read
    /// at a time.
    fn scan(
        &self,
        filter: &Filter,
        page: i64,
        visit: &mut dyn FnMut(u64, &[u8]) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let matcher = Matcher::new(filter);
        let (statement, bound) = page_statement(filter);
        let mut after = to_i64(filter.after_seq.unwrap_or(0));
        loop {
            let mut query = sqlx::query_as::<_, (i64, Vec<u8>)>(statement)
                .bind(after)
                .bind(page);
            if let Some(bound) = &bound {
                query = query.bind(bound.as_str());
            }
            // The page is read whole within the timeout; the visitor (which may be slow: an
            // export to a pipe) runs after, with no connection held.
            let rows = self.block_on(query.fetch_all(&self.pool))?;
            let full = rows.len() as i64 >= page;
            for (seq, line) in &rows {
                after = *seq;
                // A row that is not a record is skipped, as a damaged line of a file is: judging
                // the chain is `verify`'s work.
                let Some(facts) = Facts::parse(line) else {
                    continue;
                };
                if matcher.matches(&facts)
                    && visit(u64::try_from(*seq).unwrap_or(0), line).is_break()
                {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Calls `visit` with every matching line (without its newline), in seq order.
    pub fn for_each_line(
        &self,
        filter: &Filter,
        visit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut failed = None;
        self.scan(filter, SCAN_PAGE, &mut |_, line| match visit(line) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// The records matching `filter` with `seq > filter.after_seq`, in seq order, at most `limit`.
    pub fn query(&self, filter: &Filter, limit: usize) -> io::Result<Page> {
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(Page {
                entries,
                next_cursor: None,
            });
        }
        let page = if statement_is_the_filter(filter) {
            i64::try_from(limit)
                .unwrap_or(SCAN_PAGE)
                .clamp(1, 10 * SCAN_PAGE)
        } else {
            SCAN_PAGE
        };
        let mut last = 0;
        self.scan(filter, page, &mut |seq, line| {
            if let Ok(record) = serde_json::from_slice::<Value>(line) {
                entries.push(record);
                last = seq;
            }
            if entries.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        let next_cursor = (entries.len() >= limit).then_some(last);
        Ok(Page {
            entries,
            next_cursor,
        })
    }

    /// Calls `visit` with every record matching `filter`, in seq order, keeping none of them.
    pub fn for_each(&self, filter: &Filter, visit: &mut dyn FnMut(Value)) -> io::Result<()> {
        self.scan(filter, SCAN_PAGE, &mut |_, line| {
            if let Ok(record) = serde_json::from_slice::<Value>(line) {
                visit(record);
            }
            ControlFlow::Continue(())
        })
    }

    /// Verifies the whole chain as `sustainbot audit verify` verifies a file: every line in seq
    /// order, pages read while the pages before are verified on the other cores. A problem's
    /// `line` counts records from the first one in the table.
    pub fn verify(&self, options: &VerifyOptions) -> io::Result<Report> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let mut after = 0i64;
        let mut done = false;
        let chunks = std::iter::from_fn(|| {
            if done {
                return None;
            }
            let read = self.block_on(async {
                let mut rows = sqlx::query(
                    "SELECT seq, line FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(VERIFY_PAGE)
                .fetch(&self.pool);
                let mut chunk = Vec::with_capacity(16 << 20);
                let mut count = 0;
                while let Some(row) = rows.try_next().await? {
                    count += 1;
                    after = row.try_get(0)?;
                    let line: &[u8] = row.try_get(1)?;
                    chunk.extend_from_slice(line);
                    chunk.push(b'\n');
                }
                Ok((chunk, count))
            });
            match read {
                Ok((chunk, count)) => {
                    done = count < VERIFY_PAGE;
                    (count > 0).then_some(Ok(chunk))
                }
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            }
        });
        verify_chunks(chunks, options, workers)
    }
}
