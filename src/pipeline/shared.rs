//! The gate with a shared store (PostgreSQL, several instances): runs another instance owns,
//! seen, cancelled and decided from here; the heartbeat that keeps this instance's leases; and the
//! takeover of a dead instance's runs: queued ones run here once, started ones are closed as
//! `INSTANCE_LOST`, never run again.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::approvals::Pending;
use super::records::run_record;
use super::{Finished, Gate, GateError, Prepared, RequestBody, RunRequest};
use crate::audit::{Outcome, Record};
use crate::auth::{may, Action, Principal, Target};
use crate::cluster::{changes, RunMeta, RunRow};
use crate::db::Change;
use crate::metrics::mode_label;
use crate::runs::{Run, RunFilter, RunStatus, RunView};
use crate::sync::lock;
use crate::trace::TraceId;

/// Where a run the caller may see is.
pub enum Found {
    /// In this instance's registry (it runs here, or ran here recently): live.
    Here(Arc<Run>),
    /// Only in the shared store (another instance owns it, or it waits for approval).
    Shared(Box<RunRow>),
}

fn unavailable(e: sqlx::Error) -> GateError {
    tracing::error!(error = %e, "the shared run state cannot be read");
    GateError::AuditUnavailable(
        "The shared run state cannot be read right now. Try again later.".to_owned(),
    )
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A shared approval request being decided here: removed from the gate's set when dropped.
pub(super) struct Deciding {
    set: Arc<std::sync::Mutex<HashSet<String>>>,
    trace_id: String,
}

impl Drop for Deciding {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.trace_id);
    }
}

/// Whether `principal` is the row's accountable human.
fn owns_row(principal: &Principal, row: &RunRow) -> bool {
    match (&principal.actor, &row.actor) {
        (Some(who), Some(actor)) => crate::identity::same(who, actor),
        _ => false,
    }
}

impl Gate {
    /// A run the caller may see, here or (with a shared store) on any instance. With a shared
    /// store the local entry is preferred while the run is live here, or when its row agrees
    /// (the local entry has the steps' outputs); a local entry the row contradicts (the run was
    /// taken over, or decided elsewhere) gives way to the row.
    pub async fn find_run(
        &self,
        principal: &Principal,
        trace_id: &str,
    ) -> Result<Found, GateError> {
        let local = self.visible_run(principal, trace_id);
        let Some(cluster) = &self.cluster else {
            return local.map(Found::Here);
        };
        if let Ok(run) = &local {
            if run.status().is_active() {
                return Ok(Found::Here(Arc::clone(run)));
            }
        }
        let row = match cluster.load(trace_id).await {
            Ok(row) => row,
            Err(_) if local.is_ok() => return local.map(Found::Here),
            Err(e) => return Err(unavailable(e)),
        };
        let row = row.filter(|row| {
            let own = owns_row(principal, row);
            may(&self.policy(), principal, Action::SeeRun { own }).is_ok()
        });
        match (local, row) {
            (Ok(run), Some(row)) if row.status() == run.status() => Ok(Found::Here(run)),
            (_, Some(row)) => Ok(Found::Shared(Box::new(row))),
            (Ok(run), None) => Ok(Found::Here(run)),
            (Err(_), None) => Err(GateError::RunNotFound(trace_id.to_owned())),
        }
    }

    /// Runs for `GET /runs`, newest first: this instance's live ones and, with a shared store,
    /// every instance's.
    pub async fn list_runs(&self, filter: &RunFilter, limit: usize) -> Vec<RunView> {
        let mut views = self.runs.list(filter, limit);
        let Some(cluster) = &self.cluster else {
            return views;
        };
        let rows = cluster
            .list(
                filter.status.as_deref(),
                filter.workflow.as_deref(),
                filter.actor.as_deref(),
                limit,
            )
            .await;
        match rows {
            Ok(rows) => {
                let here: HashSet<String> = views.iter().map(|v| v.trace_id.clone()).collect();
                views.extend(
                    rows.iter()
                        .filter(|row| !here.contains(&row.trace_id))
                        .filter(|row| {
                            filter.actor.as_deref().is_none_or(|a| {
                                row.actor
                                    .as_deref()
                                    .is_some_and(|actor| crate::identity::same(actor, a))
                            })
                        })
                        .map(RunRow::view),
                );
                views.sort_by(|a, b| b.created_at.cmp(&a.created_at));
                views.truncate(limit);
            }
            Err(e) => tracing::warn!(error = %e, "listing runs from this instance only"),
        }
        views
    }

    /// Cancels a run another instance owns (it hears at once), or withdraws one waiting for
    /// approval (on the record, here).
    pub(super) async fn cancel_shared(
        &self,
        principal: &Principal,
        row: RunRow,
    ) -> Result<String, GateError> {
        let target = Target {
            workflow: &row.workflow_name,
            drag_mode: row.drag_mode.parse().ok(),
        };
        let own = owns_row(principal, &row);
        let granted = may(&self.policy(), principal, Action::CancelRun { own, target })?;
        let by = principal
            .actor
            .clone()
            .unwrap_or_else(|| principal.role.to_string());
        let Some(cluster) = &self.cluster else {
            return Err(GateError::RunNotFound(row.trace_id));
        };
        match row.status() {
            RunStatus::PendingApproval => {
                let reason = "cancelled while waiting for approval";
                let rule = granted.policy_rule();
                if self
                    .close_shared(&row, "withdrawn", principal, reason, rule)
                    .await?
                {
                    Ok(by)
                } else {
                    Err(GateError::RunFinished(row.trace_id))
                }
            }
            RunStatus::Queued | RunStatus::Running => {
                let who = serde_json::to_value(principal).unwrap_or(Value::Null);
                match cluster.request_cancel(&row.trace_id, &by, &who).await {
                    Ok(true) => {
                        tracing::info!(trace_id = row.trace_id, by, owner = ?row.owner, "run cancellation requested from its instance");
                        Ok(by)
                    }
                    Ok(false) => Err(GateError::RunFinished(row.trace_id)),
                    Err(e) => Err(unavailable(e)),
                }
            }
            _ => Err(GateError::RunFinished(row.trace_id)),
        }
    }

    /// Ends a request waiting for approval without running it (`withdrawn`, `expired`), on the
    /// record and in its row together. `false`: it was not waiting any more.
    async fn close_shared(
        &self,
        row: &RunRow,
        decision: &str,
        actor: &Principal,
        reason: &str,
        policy_rule: Option<u32>,
    ) -> Result<bool, GateError> {
        let record = Record::Approval {
            trace_id: row.trace_id.clone(),
            workflow_name: row.workflow_name.clone(),
            decision: decision.to_owned(),
            actor: actor.clone(),
            requested_by: row.actor.clone(),
            reason: Some(reason.to_owned()),
            expires_at: rfc3339(row.expires_at.unwrap_or_else(Utc::now)),
            request: None,
            policy_rule,
        };
        let change = self.decided(&row.trace_id, decision, Some(reason));
        self.record_with(record, mode_label(&row.drag_mode), change)
            .await
    }

    /// The run a row describes, as a request to check again (its principal, its request as the
    /// record shows it).
    fn request_of(row: &RunRow) -> Result<RunRequest, String> {
        let principal: Principal = serde_json::from_value(row.principal.clone())
            .map_err(|e| format!("its principal cannot be read: {e}"))?;
        let trace_id = TraceId::parse(&row.trace_id).map_err(|e| e.to_string())?;
        let body = if row.governed {
            RequestBody::Governed(Ok(Some(row.request.clone())))
        } else {
            RequestBody::Ungoverned {
                workflow_name: row.workflow_name.clone(),
                parameters: Ok(row.request.get("parameters").cloned()),
            }
        };
        Ok(RunRequest {
            trace_id,
            principal,
            body,
            approvable: true,
        })
    }

    /// Marks `trace_id` as being decided here until the guard drops; refused (nothing recorded)
    /// while another decision on it is under way here.
    pub(super) fn begin_deciding(&self, trace_id: &str) -> Result<Deciding, GateError> {
        if !lock(&self.deciding).insert(trace_id.to_owned()) {
            return Err(GateError::NotPending(format!(
                "Run {trace_id} is being decided right now; try again"
            )));
        }
        Ok(Deciding {
            set: Arc::clone(&self.deciding),
            trace_id: trace_id.to_owned(),
        })
    }

    /// A request waiting for approval in the shared store, checked again against the current
    /// workflow definitions (as after a restart). One that no longer passes is withdrawn on the
    /// record.
    pub(super) async fn load_pending(&self, trace_id: &str) -> Result<Pending, GateError> {
        let not_pending =
            || GateError::NotPending(format!("Run {trace_id} is not waiting for approval"));
        let Some(cluster) = &self.cluster else {
            return Err(not_pending());
        };
        let row = cluster
            .load(trace_id)
            .await
            .map_err(unavailable)?
            .filter(|row| row.status() == RunStatus::PendingApproval)
            .ok_or_else(not_pending)?;
        let expires_at = row.expires_at.unwrap_or_else(Utc::now);
        let request = Self::request_of(&row).map_err(|why| {
            tracing::warn!(
                trace_id,
                why,
                "an approval request in the database cannot be read"
            );
            not_pending()
        })?;
        let why = match self.prepare_counted(request, false).await {
            Ok(prepared) if prepared.approval().is_some() => {
                return Ok(Pending {
                    prepared,
                    expires_at,
                    expiry_recorded: false,
                })
            }
            Ok(prepared) => {
                prepared.live.finish(RunStatus::Rejected, None, None);
                self.runs.forget(&prepared.live);
                "the workflow no longer requires approval; request the run again".to_owned()
            }
            Err(GateError::AuditUnavailable(why)) => return Err(GateError::AuditUnavailable(why)),
            // The run is live here (a decision or a takeover under way): not a reason to withdraw.
            Err(GateError::TraceInUse(_)) => {
                return Err(GateError::NotPending(format!(
                    "Run {trace_id} is being decided or run right now; try again"
                )))
            }
            Err(refusal) => refusal.to_string(),
        };
        let reason = format!("the request no longer passes: {why}");
        self.close_shared(&row, "withdrawn", &Principal::server(), &reason, None)
            .await?;
        Err(GateError::NotPending(format!(
            "Run {trace_id} no longer passes its checks and was withdrawn: {why}"
        )))
    }

    /// Ends the shared approval requests whose time is up (any instance may: each is recorded
    /// once). Returns how many expired now.
    pub(super) async fn expire_shared(&self) -> usize {
        let Some(cluster) = &self.cluster else {
            return 0;
        };
        let rows = match cluster.expired_approvals(100).await {
            Ok(rows) => rows,
            Err(_) => return 0,
        };
        let mut expired = 0;
        for row in rows {
            let reason = "nobody decided before the request expired";
            if let Ok(true) = self
                .close_shared(&row, "expired", &Principal::server(), reason, None)
                .await
            {
                expired += 1;
                let refusal =
                    GateError::ApprovalExpired(rfc3339(row.expires_at.unwrap_or_else(Utc::now)));
                let result = Err(refusal);
                self.tell(|listener| {
                    listener.finished(&Finished {
                        trace_id: &row.trace_id,
                        workflow_name: &row.workflow_name,
                        actor: row.actor.as_deref(),
                        drag_mode: mode_label(&row.drag_mode),
                        result: &result,
                    })
                });
            }
        }
        expired
    }

    /// The runs this instance works on now (queued or running here).
    fn working_ids(&self) -> Vec<String> {
        self.runs
            .working()
            .iter()
            .map(|run| run.trace_id.clone())
            .collect()
    }

    /// The heartbeat (every second, on a connection of its own): renews this instance's leases,
    /// and stops the runs whose cancel was requested in their row (a notice may have been missed).
    pub async fn heartbeat_shared(&self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        match cluster.heartbeat(&self.working_ids()).await {
            Ok(cancels) => {
                for (trace_id, by) in cancels {
                    if let Some(run) = self.runs.get(&trace_id) {
                        if run.cancelled_by().is_none() && run.cancel(&by) {
                            tracing::info!(trace_id, by, "run cancellation found in its row");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed: this instance's leases are not renewed")
            }
        }
    }

    /// The takeover (every second, beside the heartbeat), once the heartbeat has held for a whole
    /// lease: a dead instance's started runs are closed as `INSTANCE_LOST`, its queued ones run
    /// here.
    pub async fn sweep_shared(&self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        if self.tasks.is_closed() || !cluster.may_sweep() {
            return;
        }
        match cluster.lost(20).await {
            Ok(rows) => {
                for row in rows {
                    self.close_lost(row).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for lost runs"),
        }
        let (workers, queue) = self.pool.limits();
        let busy = self.pool.queued() + self.pool.executing();
        let room = (workers + queue).saturating_sub(busy).min(20);
        match cluster.claim_lapsed(room, &self.working_ids()).await {
            Ok(rows) => {
                for row in rows {
                    self.resume_claimed(row).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot take over lapsed runs"),
        }
    }

    /// Closes a run whose instance died while it ran: `failure` with `INSTANCE_LOST`, once (the
    /// change is guarded), and never run again.
    async fn close_lost(&self, row: RunRow) {
        let owner = row.owner.as_deref().unwrap_or("unknown");
        let error = format!(
            "The instance running it ({owner}) stopped, or lost the database for longer than its lease, before its outcome was recorded; the run was not repeated"
        );
        let principal = serde_json::from_value::<Principal>(row.principal.clone())
            .unwrap_or_else(|_| Principal::server());
        let record = run_record(
            row.governed,
            &row.trace_id,
            &principal,
            &row.request,
            Outcome::Failure,
            Some(error.clone()),
            Some("INSTANCE_LOST"),
            None,
        );
        let change = Arc::new(changes::Lost {
            trace_id: row.trace_id.clone(),
            error,
        });
        match self
            .record_with(record, mode_label(&row.drag_mode), Some(change))
            .await
        {
            Ok(true) => {
                tracing::warn!(
                    trace_id = row.trace_id,
                    owner,
                    "closed a run of a lost instance as INSTANCE_LOST"
                )
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(trace_id = row.trace_id, error = %e, "cannot close a lost run yet")
            }
        }
    }

    /// Runs a queued run taken over from a dead instance (checked again first; one that no
    /// longer passes is refused on the record). A cancel requested meanwhile is honoured.
    async fn resume_claimed(&self, row: RunRow) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        tracing::info!(trace_id = row.trace_id, from = ?row.owner, "took over a queued run of an instance that stopped");
        let refused = match Self::request_of(&row) {
            Ok(request) => match self.prepare_counted(request, false).await {
                Ok(mut prepared) => {
                    prepared.approved = row.approved;
                    prepared.shared_row = true;
                    if let Some(by) = &row.cancel_requested_by {
                        prepared.live.cancel(by);
                    }
                    if prepared.reserve() {
                        self.spawn_run(prepared);
                        return;
                    }
                    // No room after all: given back, for whoever has room.
                    prepared.live.finish(RunStatus::Rejected, None, None);
                    self.runs.forget(&prepared.live);
                    if let Err(e) = cluster.release(&row.trace_id).await {
                        tracing::warn!(trace_id = row.trace_id, error = %e, "cannot give back a takeover");
                    }
                    return;
                }
                // Not refused, only not recordable now: given back, to be tried again.
                Err(GateError::AuditUnavailable(_)) => {
                    if let Err(e) = cluster.release(&row.trace_id).await {
                        tracing::warn!(trace_id = row.trace_id, error = %e, "cannot give back a takeover");
                    }
                    return;
                }
                Err(refusal) => refusal.to_string(),
            },
            Err(why) => why,
        };
        if let Err(e) = cluster.reject_queued(&row.trace_id, &refused).await {
            tracing::warn!(trace_id = row.trace_id, error = %e, "cannot mark a refused takeover");
        }
    }
}

/// A run's place in the shared store.
impl Prepared {
    /// What the shared store keeps of the run.
    pub(super) fn meta(&self) -> RunMeta {
        RunMeta {
            trace_id: self.trace_id.clone(),
            workflow_name: self.definition.name.clone(),
            drag_mode: self.mode_label().to_owned(),
            actor: self.requester.clone(),
            principal: serde_json::to_value(&self.principal).unwrap_or(Value::Null),
            request: self.readable.clone(),
            governed: self.drag_mode.is_some(),
        }
    }

    /// With a shared store: records the run as accepted (queued, this instance's) before the
    /// caller hears so. Without one, nothing to do.
    pub(super) async fn accept_shared(&mut self) -> Result<(), GateError> {
        let Some(cluster) = self.gate.cluster.clone() else {
            return Ok(());
        };
        match cluster.accept(&self.meta()).await {
            Ok(true) => {
                self.shared_row = true;
                Ok(())
            }
            Ok(false) => Err(GateError::TraceInUse(self.trace_id.clone())),
            Err(e) => {
                tracing::error!(error = %e, "cannot record an accepted run in the database");
                // The insert may have committed with its answer lost: the caller hears "nothing
                // was queued", so such a row is rejected before its lease could lapse (tried
                // within half a lease; nothing to do when there is no row).
                let (trace_id, lease) = (self.trace_id.clone(), cluster.lease());
                tokio::spawn(async move {
                    let mut pause = std::time::Duration::from_millis(200);
                    let deadline = std::time::Instant::now() + lease / 2;
                    while std::time::Instant::now() < deadline {
                        let why = "not accepted: the database did not confirm the queueing";
                        if cluster.reject_queued(&trace_id, why).await.is_ok() {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(std::time::Duration::from_secs(2));
                    }
                });
                Err(GateError::AuditUnavailable(
                    "The shared run queue cannot accept runs right now; nothing was queued. Try again later.".to_owned(),
                ))
            }
        }
    }

    /// The change of the run's shared row at its end (`from` the status it must be in), when it
    /// has a row.
    pub(super) fn end_change(
        &self,
        from: &'static str,
        status: &'static str,
        outcome: Option<String>,
        error: Option<String>,
        steps: Option<Value>,
    ) -> Option<Arc<dyn Change>> {
        let cluster = self.gate.cluster.as_ref().filter(|_| self.shared_row)?;
        Some(Arc::new(changes::Ended {
            trace_id: self.trace_id.clone(),
            from,
            status,
            instance: cluster.instance().to_owned(),
            outcome,
            error,
            steps,
        }))
    }
}
