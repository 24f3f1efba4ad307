//! The writer task behind [`super::PgAuditStore`]: group commit, one transaction per batch, the
//! chain head locked in it so that every instance's records form one chain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::PgStoreOptions;
use crate::audit::checkpoint::Signer;
use crate::audit::format::PreEncoded;
use crate::audit::record::encode_for;
use crate::audit::{AuditError, Receipt, Record, SinkStatus, MAX_BATCH};
use crate::db::Change;
use crate::metrics::Histogram;
use crate::sync::lock;

/// While the store is unhealthy, the writer checks the database this often (so that `/health`
/// recovers without traffic).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Batch transactions one instance may have in flight at once.
const IN_FLIGHT: usize = 2;
/// The writer's own connections: the batches in flight, and one for maintenance.
pub(super) const CONNECTIONS: u32 = IN_FLIGHT as u32 + 1;

/// The chain head, locked for the rest of the transaction: instances take turns here.
const LOCK_HEAD: &str =
    "SELECT seq, hash, stamp, checkpoint_seq FROM audit_head WHERE id = 1 FOR UPDATE";

/// One statement for a batch: its rows (the columns as arrays) and the head after them.
const APPEND: &str = "WITH appended AS (
    INSERT INTO audit_records (seq, line, hash, kind, trace_id, recorded_at, instance)
    SELECT r.seq, r.line, r.hash, r.kind, r.trace_id, $6::timestamptz, $7
    FROM UNNEST($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::text[])
        AS r(seq, line, hash, kind, trace_id)
)
UPDATE audit_head SET seq = $8, hash = $9, stamp = $10, checkpoint_seq = $11 WHERE id = 1";

type Ack = oneshot::Sender<Result<Receipt, AuditError>>;

/// A record on its way to the chain, with the state change that must commit with it.
pub(super) struct Append {
    pub item: PreEncoded,
    pub kind: &'static str,
    pub trace_id: Option<String>,
    pub change: Option<Arc<dyn Change>>,
    pub done: Ack,
}

pub(super) enum Job {
    Append(Append),
    /// Periodic: a checkpoint when anything is new since the last one.
    Maintenance,
    /// Graceful shutdown: what is queued, a final checkpoint, then the writer stops.
    Close {
        done: oneshot::Sender<()>,
    },
}

/// The chain head as read (and locked) in a transaction.
struct Head {
    seq: u64,
    hash: String,
    /// The last record's timestamp: the next one is never earlier.
    stamp: String,
    checkpoint_seq: u64,
}

impl Head {
    async fn lock(conn: &mut PgConnection) -> Result<Head, sqlx::Error> {
        let (seq, hash, stamp, checkpoint_seq): (i64, String, String, i64) =
            sqlx::query_as(LOCK_HEAD).fetch_one(conn).await?;
        Ok(Head {
            seq: u64::try_from(seq).unwrap_or(0),
            hash,
            stamp,
            checkpoint_seq: u64::try_from(checkpoint_seq).unwrap_or(0),
        })
    }
}

/// The rows of one batch, sealed one after the other on the locked head.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    line: Vec<Vec<u8>>,
    hash: Vec<String>,
    kind: Vec<&'static str>,
    trace_id: Vec<Option<String>>,
}

impl Rows {
    fn seal(
        &mut self,
        head: &mut Head,
        item: &PreEncoded,
        kind: &'static str,
        trace_id: Option<String>,
        stamp: &str,
    ) -> Receipt {
        let seq = head.seq + 1;
        let mut line = Vec::with_capacity(1024);
        let hash = item.seal(seq, &head.hash, stamp, &mut line);
        // The table holds the line without its newline (an export writes one back).
        line.pop();
        head.seq = seq;
        head.hash.clone_from(&hash);
        self.seq.push(i64::try_from(seq).unwrap_or(i64::MAX));
        self.line.push(line);
        self.hash.push(hash.clone());
        self.kind.push(kind);
        self.trace_id.push(trace_id);
        Receipt { seq, hash }
    }

    async fn insert(
        self,
        conn: &mut PgConnection,
        head: &Head,
        stamp: &str,
        instance: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(APPEND)
            .bind(self.seq)
            .bind(self.line)
            .bind(self.hash)
            .bind(self.kind)
            .bind(self.trace_id)
            .bind(stamp)
            .bind(instance)
            .bind(i64::try_from(head.seq).unwrap_or(i64::MAX))
            .bind(&head.hash)
            .bind(stamp)
            .bind(i64::try_from(head.checkpoint_seq).unwrap_or(i64::MAX))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// The timestamp of records sealed after a head stamped `previous`: now, or `previous` when this
/// machine's clock is behind the instance that wrote it, so timestamps never go back along the chain.
fn stamp_after(previous: &str) -> String {
    let now = Utc::now();
    let at = DateTime::parse_from_rfc3339(previous)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t > now)
        .unwrap_or(now);
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What a batch's transaction answers each of its callers.
type Answers = Vec<Option<Result<Receipt, AuditError>>>;

pub(super) struct Writer {
    pool: PgPool,
    instance: Arc<str>,
    signer: Option<Signer>,
    checkpoint_every: u64,
    timeout: Duration,
    /// `BEGIN` with the transaction's own limits: the database aborts a statement that runs, or a
    /// transaction left idle, past the timeout (a vanished instance does not keep the head locked).
    begin: String,
    status: Arc<Mutex<SinkStatus>>,
    batch_records: Histogram,
}

impl Writer {
    pub(super) fn new(
        pool: PgPool,
        instance: Arc<str>,
        options: &PgStoreOptions,
        status: Arc<Mutex<SinkStatus>>,
    ) -> Writer {
        let ms = options.timeout.as_millis().max(1);
        Writer {
            pool,
            instance,
            signer: options.signer.clone(),
            checkpoint_every: options.checkpoint_every,
            timeout: options.timeout,
            begin: format!(
                "BEGIN; SET LOCAL statement_timeout = {ms}; \
                 SET LOCAL idle_in_transaction_session_timeout = {ms}"
            ),
            status,
            batch_records: options.metrics.batch_records.clone(),
        }
    }

    fn healthy(&self) -> bool {
        lock(&self.status).healthy
    }

    /// Records a transaction's outcome in the sink status (`/health`).
    fn note(&self, result: Result<u64, &str>) {
        let mut status = lock(&self.status);
        match result {
            Ok(head_seq) => {
                if !status.healthy {
                    tracing::info!("audit writes to PostgreSQL succeed again");
                }
                status.healthy = true;
                // Two transactions in flight may finish out of order: the head only moves on.
                status.head_seq = status.head_seq.max(head_seq);
                status.last_error = None;
            }
            Err(error) => {
                if status.healthy {
                    tracing::error!(
                        error,
                        "audit write to PostgreSQL failed; refusing runs until it succeeds"
                    );
                }
                status.healthy = false;
                status.last_error = Some(error.to_owned());
            }
        }
    }

    /// Commits `batch` (emptying it) and answers every caller.
    async fn commit(&self, jobs: Vec<Append>) {
        if jobs.is_empty() {
            return;
        }
        let attempt = async {
            match self.transact(&jobs, true).await {
                // A change the database refused fails the one call: the batch again, each change
                // alone in a savepoint, so that only that one is refused.
                Err(sqlx::Error::Database(e)) if jobs.iter().any(|j| j.change.is_some()) => {
                    tracing::warn!(error = %e, "a batch's state changes failed together; applying them one by one");
                    self.transact(&jobs, false).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok((answers, head_seq))) => {
                self.note(Ok(head_seq));
                let appended = answers.iter().filter(|a| matches!(a, Some(Ok(_)))).count();
                self.batch_records.observe(appended as f64);
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let answer = answer.unwrap_or(Err(AuditError::Stopped));
                    let _ = job.done.send(answer);
                }
            }
            // When the connection broke during the COMMIT itself, the records may have committed
            // all the same: the callers are told they did not (fail closed; as after a crash, the
            // trail may then hold a `started` record of a run that never ran), and the next batch
            // reads the head from the table, so the chain never forks.
            Ok(Err(e)) => self.fail(jobs, &e.to_string()),
            Err(_) => self.fail(
                jobs,
                &format!(
                    "PostgreSQL did not commit within {} s",
                    self.timeout.as_secs_f64()
                ),
            ),
        }
    }

    fn fail(&self, jobs: Vec<Append>, error: &str) {
        self.note(Err(error));
        for job in jobs {
            let _ = job.done.send(Err(AuditError::Write(error.to_owned())));
        }
    }

    /// One batch's transaction: the state changes, then the records on the locked head. Returns
    /// each job's answer and the head after the commit.
    async fn transact(
        &self,
        jobs: &[Append],
        one_call: bool,
    ) -> Result<(Answers, u64), sqlx::Error> {
        let mut tx = self.pool.begin_with(self.begin.clone()).await?;
        let mut answers: Answers = (0..jobs.len()).map(|_| None).collect();
        // The changes the database's `sustainbot_apply` knows go in one call (unless a call
        // failed: then each change goes alone, in a savepoint, below).
        let mut ops: Vec<(usize, crate::db::Op)> = if one_call {
            jobs.iter()
                .enumerate()
                .filter_map(|(i, job)| job.change.as_ref()?.op().map(|op| (i, op)))
                .collect()
        } else {
            Vec::new()
        };
        // Rows locked in one order by every transaction: two in flight never deadlock.
        ops.sort_by(|(_, a), (_, b)| a.trace_id.cmp(&b.trace_id));
        if !ops.is_empty() {
            let mut batch = String::from("[");
            for (n, (_, op)) in ops.iter().enumerate() {
                if n > 0 {
                    batch.push(',');
                }
                batch.push_str(&op.json);
            }
            batch.push(']');
            let verdicts: Vec<String> = sqlx::query_scalar("SELECT sustainbot_apply($1::jsonb)")
                .bind(batch)
                .fetch_one(&mut *tx)
                .await?;
            for ((i, _), verdict) in ops.iter().zip(verdicts) {
                if verdict != "applied" {
                    answers[*i] = Some(Err(AuditError::Conflict(
                        "the shared state changed before the record could be appended".to_owned(),
                    )));
                }
            }
        }
        let mut called = vec![false; jobs.len()];
        for (i, _) in &ops {
            called[*i] = true;
        }
        // Alone, the changes go in the same order as in one call (by trace id), so that two
        // transactions never lock two runs' rows in opposite orders.
        let mut order: Vec<usize> = (0..jobs.len()).filter(|i| !called[*i]).collect();
        let key = |i: &usize| {
            jobs[*i]
                .change
                .as_ref()
                .and_then(|c| c.op())
                .map(|op| op.trace_id)
        };
        order.sort_by_cached_key(key);
        for i in order {
            let (job, answer) = (&jobs[i], &mut answers[i]);
            let Some(change) = &job.change else {
                continue;
            };
            // Each change in a savepoint of its own: one that does not hold (or that the database
            // refuses) is undone alone, and the rest of the batch commits.
            let mut savepoint = Connection::begin(&mut *tx).await?;
            match change.apply(&mut savepoint).await {
                Ok(true) => savepoint.commit().await?,
                Ok(false) => {
                    savepoint.rollback().await?;
                    *answer = Some(Err(AuditError::Conflict(
                        "the shared state changed before the record could be appended".to_owned(),
                    )));
                }
                Err(sqlx::Error::Database(e)) => {
                    savepoint.rollback().await?;
                    *answer = Some(Err(AuditError::Write(format!(
                        "the state change was refused: {e}"
                    ))));
                }
                Err(e) => return Err(e),
            }
        }
        if answers.iter().all(Option::is_some) {
            // Nothing to append: every change was undone.
            tx.commit().await?;
            let head_seq = lock(&self.status).head_seq;
            return Ok((answers, head_seq));
        }
        let mut head = Head::lock(&mut tx).await?;
        let stamp = stamp_after(&head.stamp);
        let mut rows = Rows::default();
        for (job, answer) in jobs.iter().zip(answers.iter_mut()) {
            if answer.is_none() {
                let receipt =
                    rows.seal(&mut head, &job.item, job.kind, job.trace_id.clone(), &stamp);
                *answer = Some(Ok(receipt));
            }
        }
        let every = self.checkpoint_every;
        if every > 0 && head.seq.saturating_sub(head.checkpoint_seq) >= every {
            self.seal_checkpoint(&mut rows, &mut head, &stamp);
        }
        rows.insert(&mut tx, &head, &stamp, &self.instance).await?;
        tx.commit().await?;
        Ok((answers, head.seq))
    }

    /// Adds a checkpoint over `head` to `rows`, when a key is set.
    fn seal_checkpoint(&self, rows: &mut Rows, head: &mut Head, stamp: &str) {
        let Some(signer) = &self.signer else {
            return;
        };
        let checkpoint = Record::Checkpoint {
            covered_seq: head.seq,
            covered_hash: head.hash.clone(),
            signed_at: stamp.to_owned(),
            public_key: signer.public_hex(),
            signature: signer.sign(head.seq, &head.hash, stamp),
        };
        let item = encode_for(&checkpoint, Some(&self.instance));
        rows.seal(head, &item, checkpoint.kind(), None, stamp);
        head.checkpoint_seq = head.seq;
    }

    /// Under the head lock: a checkpoint when anything is new since the last one (and a key is
    /// set). Any instance may sign it. Also what tells an unhealthy store that the database is back.
    async fn maintain(&self) {
        let result = tokio::time::timeout(self.timeout, self.checkpoint_if_new()).await;
        match result {
            Ok(Ok(head_seq)) => self.note(Ok(head_seq)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "audit maintenance failed; will retry");
                self.note(Err(&e.to_string()));
            }
            Err(_) => self.note(Err(
                "PostgreSQL did not answer the maintenance tick in time",
            )),
        }
    }

    async fn checkpoint_if_new(&self) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin_with(self.begin.clone()).await?;
        let mut head = Head::lock(&mut tx).await?;
        if self.signer.is_some() && head.seq > head.checkpoint_seq {
            let stamp = stamp_after(&head.stamp);
            let mut rows = Rows::default();
            self.seal_checkpoint(&mut rows, &mut head, &stamp);
            rows.insert(&mut tx, &head, &stamp, &self.instance).await?;
        }
        tx.commit().await?;
        Ok(head.seq)
    }
}

/// The writer: takes whatever waits (up to a batch), commits it, answers, and goes on; checks the
/// database every second while the store is unhealthy.
pub(super) async fn write_loop(writer: Writer, mut queue: mpsc::Receiver<Job>) {
    let writer = Arc::new(writer);
    // Batches whose transactions are in flight: the next one applies its changes and waits for the
    // head's lock while the one before commits, so the WAL flush of one overlaps the round trips of
    // the next (the head's lock keeps them in order).
    let mut flying: JoinSet<()> = JoinSet::new();
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    loop {
        // While unhealthy, the database is probed every second (no append need come); a batch in
        // flight that ends may have changed that.
        let unhealthy = !writer.healthy();
        let first = tokio::select! {
            job = queue.recv() => job,
            Some(_) = flying.join_next(), if !flying.is_empty() => continue,
            () = tokio::time::sleep(PROBE_EVERY), if unhealthy => {
                while flying.join_next().await.is_some() {}
                writer.maintain().await;
                continue;
            }
        };
        let Some(first) = first else {
            while flying.join_next().await.is_some() {}
            return;
        };
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append(append) => {
                    batch.push(append);
                    if batch.len() < MAX_BATCH {
                        next = queue.try_recv().ok();
                    }
                }
                Job::Maintenance => {
                    while flying.join_next().await.is_some() {}
                    writer.commit(std::mem::take(&mut batch)).await;
                    writer.maintain().await;
                    next = queue.try_recv().ok();
                }
                Job::Close { done } => {
                    while flying.join_next().await.is_some() {}
                    writer.commit(std::mem::take(&mut batch)).await;
                    writer.maintain().await;
                    let _ = done.send(());
                    return;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        if flying.len() >= IN_FLIGHT {
            flying.join_next().await;
            // What arrived meanwhile joins this batch.
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(Job::Append(append)) => batch.push(append),
                    Ok(other) => {
                        // Maintenance or close: after this batch, in order.
                        while flying.join_next().await.is_some() {}
                        writer.commit(std::mem::take(&mut batch)).await;
                        match other {
                            Job::Close { done } => {
                                writer.maintain().await;
                                let _ = done.send(());
                                return;
                            }
                            _ => writer.maintain().await,
                        }
                        break;
                    }
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
        }
        let writer = Arc::clone(&writer);
        let appends = std::mem::take(&mut batch);
        flying.spawn(async move { writer.commit(appends).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_never_goes_back_behind_the_head() {
        let ahead = "2999-01-01T00:00:00.000001Z";
        assert_eq!(stamp_after(ahead), ahead);
        let now = stamp_after("");
        assert!(now.ends_with('Z') && now.len() == ahead.len(), "{now}");
        assert!(stamp_after("2001-01-01T00:00:00.000000Z").as_str() > "2002");
    }
}
