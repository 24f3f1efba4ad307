//! The run state several instances share in PostgreSQL (`DATABASE_URL`): the `runs` table holds
//! every run that was accepted (queued), started, or waits for approval, with the instance that
//! owns it and the lease that instance renews while it lives.
//!
//! The gate (see `pipeline/shared.rs`) changes a run's row in the transaction that appends the
//! record saying so ([`changes`]), so the table and the chain never disagree; this module holds the
//! rows, the leases, the claims of a dead instance's runs (`FOR UPDATE SKIP LOCKED`) and the
//! notifications between instances (`LISTEN/NOTIFY`: cancel requests and live run events).

pub mod changes;
mod listen;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use crate::runs::{RunStatus, RunView};
use crate::sync::lock;

pub use listen::{Notice, CANCEL_CHANNEL, EVENTS_CHANNEL, WATCH_CHANNEL};

/// What an accepted run is: enough to check and run it again on any instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunMeta {
    #[serde(skip)]
    pub trace_id: String,
    pub workflow_name: String,
    /// The DRAG mode, or `ungoverned`.
    pub drag_mode: String,
    /// The accountable human's email.
    pub actor: Option<String>,
    /// Who asked (the token's identity), as the audit trail writes it.
    pub principal: Value,
    /// The request as it will run (workflow, AIM, mode, parameters), as the audit trail shows it.
    pub request: Value,
    pub governed: bool,
}

/// A run's row.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub trace_id: String,
    pub workflow_name: String,
    pub drag_mode: String,
    pub actor: Option<String>,
    pub principal: Value,
    pub request: Value,
    pub governed: bool,
    pub status: String,
    pub approved: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    pub cancel_requested_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub steps: Option<Value>,
}

const COLUMNS: &str = "trace_id, workflow_name, drag_mode, actor, principal, request, governed, \
    status, approved, expires_at, owner, cancel_requested_by, created_at, started_at, finished_at, \
    outcome, error, steps";

impl RunRow {
    fn from_row(row: &PgRow) -> Result<RunRow, sqlx::Error> {
        Ok(RunRow {
            trace_id: row.try_get("trace_id")?,
            workflow_name: row.try_get("workflow_name")?,
            drag_mode: row.try_get("drag_mode")?,
            actor: row.try_get("actor")?,
            principal: row.try_get("principal")?,
            request: row.try_get("request")?,
            governed: row.try_get("governed")?,
            status: row.try_get("status")?,
            approved: row.try_get("approved")?,
            expires_at: row.try_get("expires_at")?,
            owner: row.try_get("owner")?,
            cancel_requested_by: row.try_get("cancel_requested_by")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            outcome: row.try_get("outcome")?,
            error: row.try_get("error")?,
            steps: row.try_get("steps")?,
        })
    }

    /// Its status as the API says it (an unknown word reads as `failed`).
    pub fn status(&self) -> RunStatus {
        status_from(&self.status)
    }

    /// The run as `GET /runs` shows it (without steps).
    pub fn view(&self) -> RunView {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        RunView {
            trace_id: self.trace_id.clone(),
            workflow_name: self.workflow_name.clone(),
            drag_mode: self.drag_mode.clone(),
            actor: self.actor.clone(),
            status: self.status(),
            created_at: time(&self.created_at),
            started_at: self.started_at.as_ref().map(time),
            finished_at: self.finished_at.as_ref().map(time),
            current_step: None,
            outcome: self.outcome.clone(),
            error: self.error.clone(),
            cancelled_by: self.cancel_requested_by.clone(),
            steps: None,
        }
    }

    /// The run as `GET /runs/{trace_id}` shows it: with its steps' reports (`[]` until it ends;
    /// the instance running it has them live).
    pub fn view_with_steps(&self) -> Value {
        let mut view = serde_json::to_value(self.view()).unwrap_or(Value::Null);
        if let Some(object) = view.as_object_mut() {
            let steps = self.steps.clone().filter(Value::is_array);
            object.insert("steps".into(), steps.unwrap_or(Value::Array(Vec::new())));
        }
        view
    }
}

/// The status column's words.
pub fn status_from(word: &str) -> RunStatus {
    match word {
        "pending_approval" => RunStatus::PendingApproval,
        "queued" => RunStatus::Queued,
        "running" => RunStatus::Running,
        "succeeded" => RunStatus::Succeeded,
        "cancelled" => RunStatus::Cancelled,
        "rejected" => RunStatus::Rejected,
        _ => RunStatus::Failed,
    }
}

/// What the instances share, from this instance's side.
pub struct Cluster {
    pool: PgPool,
    /// The heartbeat's own connection: requests holding every connection of `pool` (or a slow
    /// sweep) never delay the renewal of this instance's leases.
    beat: PgPool,
    instance: String,
    lease: Duration,
    /// Since when every heartbeat succeeded (`None`: the last one failed). An instance takes
    /// over others' runs only after a whole lease of good heartbeats, so that after an outage of
    /// the database every living instance has renewed its leases first.
    healthy_since: Mutex<Option<Instant>>,
    /// Approval requests waiting now, and when the first expires (refreshed every tick).
    approvals: Mutex<(usize, Option<DateTime<Utc>>)>,
    notices: listen::Notices,
}

impl Cluster {
    /// Call from within the runtime (the heartbeat's connection is opened lazily on it).
    pub fn new(pool: PgPool, instance: String, lease: Duration) -> Arc<Cluster> {
        // Every wait of a heartbeat well within the lease.
        let bound = (lease / 3).max(Duration::from_millis(500));
        let options = (*pool.connect_options())
            .clone()
            .options([("statement_timeout", bound.as_millis().to_string())]);
        let beat = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(bound)
            .connect_lazy_with(options);
        Arc::new(Cluster {
            pool,
            beat,
            instance,
            lease,
            healthy_since: Mutex::new(None),
            approvals: Mutex::new((0, None)),
            notices: listen::Notices::default(),
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lease_seconds(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Records an asynchronous run as accepted (queued, owned by this instance): once this
    /// returns `Ok(true)`, the run will run once on some instance even if this one dies. `false`:
    /// the trace id is taken.
    pub async fn accept(&self, run: &RunMeta) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO runs (trace_id, workflow_name, drag_mode, actor, principal, request, \
             governed, status, owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, clock_timestamp() + make_interval(secs => $9)) \
             ON CONFLICT (trace_id) DO NOTHING",
        )
        .bind(&run.trace_id)
        .bind(&run.workflow_name)
        .bind(&run.drag_mode)
        .bind(&run.actor)
        .bind(&run.principal)
        .bind(&run.request)
        .bind(run.governed)
        .bind(&self.instance)
        .bind(self.lease_seconds())
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// A run's row.
    pub async fn load(&self, trace_id: &str) -> Result<Option<RunRow>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM runs WHERE trace_id = $1"))
            .bind(trace_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// The newest runs, filtered like `GET /runs` (the actor ignoring case; the caller compares
    /// identities exactly).
    pub async fn list(
        &self,
        status: Option<&str>,
        workflow: Option<&str>,
        actor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::text IS NULL OR workflow_name = $2) \
             AND ($3::text IS NULL OR lower(trim(actor)) = lower(trim($3))) \
             ORDER BY created_at DESC LIMIT $4"
        ))
        .bind(status)
        .bind(workflow)
        .bind(actor)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Asks the instance that owns a queued or running run to stop it (it hears at once; a dead
    /// owner's successor sees the request when it takes the run over). `false`: not active.
    pub async fn request_cancel(
        &self,
        trace_id: &str,
        by: &str,
        principal: &Value,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE runs SET cancel_requested_by = $2 WHERE trace_id = $1 \
             AND status IN ('queued', 'running')",
        )
        .bind(trace_id)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        let notice = serde_json::json!({ "trace_id": trace_id, "by": by, "principal": principal });
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CANCEL_CHANNEL)
            .bind(notice.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The heartbeat: this instance is alive, and still owns the runs it is working on (`active`:
    /// their trace ids). Runs it owns but no longer works on (their outcome could not be recorded)
    /// are left to lapse, and are then closed by whoever sweeps. Answers the renewed runs whose
    /// cancel was requested (a notice can be missed: the row is the truth).
    pub async fn heartbeat(&self, active: &[String]) -> Result<Vec<(String, String)>, sqlx::Error> {
        let result = async {
            sqlx::query(
                "INSERT INTO instances (id) VALUES ($1) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
            )
            .bind(&self.instance)
            .execute(&self.beat)
            .await?;
            let mut cancels = Vec::new();
            if !active.is_empty() {
                // Rows a batch transaction holds right now are skipped (renewed next beat): the
                // renewal never waits for a row lock, so it can be in no deadlock.
                let renewed: Vec<(String, Option<String>)> = sqlx::query_as(
                    "UPDATE runs SET lease_until = clock_timestamp() + make_interval(secs => $2) \
                     WHERE trace_id IN (SELECT trace_id FROM runs WHERE owner = $1 \
                       AND status IN ('queued', 'running') AND trace_id = ANY($3) \
                       FOR UPDATE SKIP LOCKED) \
                     RETURNING trace_id, cancel_requested_by",
                )
                .bind(&self.instance)
                .bind(self.lease_seconds())
                .bind(active)
                .fetch_all(&self.beat)
                .await?;
                cancels = renewed
                    .into_iter()
                    .filter_map(|(trace_id, by)| by.map(|by| (trace_id, by)))
                    .collect();
            }
            let (waiting, first): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT count(*), min(expires_at) FROM runs WHERE status = 'pending_approval'",
            )
            .fetch_one(&self.beat)
            .await?;
            *lock(&self.approvals) = (usize::try_from(waiting).unwrap_or(0), first);
            Ok::<_, sqlx::Error>(cancels)
        }
        .await;
        let mut since = lock(&self.healthy_since);
        match &result {
            Ok(_) => {
                since.get_or_insert_with(Instant::now);
            }
            Err(_) => *since = None,
        }
        result
    }

    /// Whether this instance may take over others' runs now: its heartbeats have succeeded for a
    /// whole lease.
    pub fn may_sweep(&self) -> bool {
        lock(&self.healthy_since).is_some_and(|since| since.elapsed() >= self.lease)
    }

    /// Approval requests waiting now, and when the first expires (as of the last heartbeat).
    pub fn approvals_outlook(&self) -> (usize, Option<DateTime<Utc>>) {
        *lock(&self.approvals)
    }

    /// Takes over up to `limit` queued runs whose owner's lease lapsed (a dead instance's), oldest
    /// first. Each is this instance's now; run them.
    pub async fn claim_lapsed(
        &self,
        limit: usize,
        active: &[String],
    ) -> Result<Vec<RunRow>, sqlx::Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "UPDATE runs SET owner = $1, lease_until = clock_timestamp() + make_interval(secs => $2) \
             WHERE trace_id IN (SELECT trace_id FROM runs WHERE status = 'queued' \
               AND lease_until < now() AND NOT (trace_id = ANY($4)) \
               ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}"
        ))
        .bind(&self.instance)
        .bind(self.lease_seconds())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(active)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Gives back a run this instance took over but cannot run now (no room, or the audit trail
    /// is unavailable): its lease lapses at once, for whoever has room.
    pub async fn release(&self, trace_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE runs SET lease_until = clock_timestamp() \
             WHERE trace_id = $1 AND owner = $2 AND status = 'queued'",
        )
        .bind(trace_id)
        .bind(&self.instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Running runs whose owner's lease lapsed: started on an instance that died (or lost the
    /// database for longer than a lease), never to be run again; each is closed by
    /// [`changes::Lost`] with its record, once.
    pub async fn lost(&self, limit: usize) -> Result<Vec<RunRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs WHERE status = 'running' AND lease_until < now() \
             ORDER BY created_at LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Approval requests whose time is up.
    pub async fn expired_approvals(&self, limit: usize) -> Result<Vec<RunRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM runs WHERE status = 'pending_approval' AND expires_at < now() \
             ORDER BY expires_at LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Ends a queued run of this instance's that will not run: one it took over whose request no
    /// longer passes (the refusal is on the record), or one whose acceptance the database did not
    /// confirm (the caller was told nothing was queued). Nothing to do when there is no such row.
    pub async fn reject_queued(&self, trace_id: &str, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE runs SET status = 'rejected', error = $3, finished_at = now(), owner = NULL, \
             lease_until = NULL WHERE trace_id = $1 AND owner = $2 AND status = 'queued'",
        )
        .bind(trace_id)
        .bind(&self.instance)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notices from the other instances (cancel requests, watch requests, live run events).
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Listens for the other instances' notices until the process ends (reconnecting as needed).
    pub fn start_listening(self: &Arc<Self>) {
        listen::spawn(Arc::clone(self));
    }

    /// Asks whichever instance runs `trace_id` to publish its live events.
    pub async fn watch(&self, trace_id: &str) -> Result<(), sqlx::Error> {
        self.notify(WATCH_CHANNEL, trace_id).await
    }

    /// Publishes one live event of a run this instance runs (for another instance's watcher).
    pub async fn publish(&self, trace_id: &str, name: &str, data: &str) -> Result<(), sqlx::Error> {
        let payload = listen::event_payload(trace_id, name, data);
        self.notify(EVENTS_CHANNEL, &payload).await
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
