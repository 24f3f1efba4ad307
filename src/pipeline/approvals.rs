//! Humans in charge: runs that wait for a second human's decision, their expiry, and their return
//! after a restart (the `requested` records on the audit trail hold the whole request).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{lock, Gate, GateError, Prepared, RequestBody, RunRequest};
use crate::audit::Record;
use crate::auth::{may, Action, Principal, Target};
use crate::cluster::changes;
use crate::db::Change;
use crate::metrics::mode_label;
use crate::runs::RunStatus;
use crate::trace::TraceId;

/// A run parked until a second human decides.
pub(super) struct Pending {
    pub(super) prepared: Prepared,
    pub(super) expires_at: DateTime<Utc>,
    /// The expiry is on the record (by the sweep or a late decision); the entry stays a while so
    /// that late deciders hear "expired" rather than "not pending".
    pub(super) expiry_recorded: bool,
}

/// Whether two callers are the same account whatever their names say: the same `user_id` (a
/// token's, or a Slack team and user), so that an email changed in between does not make a
/// requester a second human.
fn same_account(a: &Principal, b: &Principal) -> bool {
    matches!((&a.user_id, &b.user_id), (Some(x), Some(y)) if !x.is_null() && x == y)
}

/// How long an expired request is remembered after its expiry was recorded.
const EXPIRED_KEPT: chrono::Duration = chrono::Duration::hours(1);

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Gate {
    /// Audits an approval decision about a parked run; `requested` carries the request itself.
    /// `policy_rule` is the policy rule that decided (see `docs/audit-format.md`).
    pub(super) async fn record_decision(
        &self,
        pending: &Pending,
        decision: &str,
        actor: &Principal,
        reason: Option<String>,
        policy_rule: Option<u32>,
        change: Option<Arc<dyn Change>>,
    ) -> Result<bool, GateError> {
        let prepared = &pending.prepared;
        let record = Record::Approval {
            trace_id: prepared.trace_id.clone(),
            workflow_name: prepared.definition.name.clone(),
            decision: decision.to_owned(),
            actor: actor.clone(),
            requested_by: prepared.requester.clone(),
            reason,
            expires_at: rfc3339(pending.expires_at),
            request: (decision == "requested").then(|| prepared.readable.clone()),
            policy_rule,
        };
        self.record_with(record, prepared.mode_label(), change)
            .await
    }

    /// With a shared store: the change a decision makes to the waiting run's row (`None` for a
    /// refused attempt, which changes nothing).
    pub(super) fn decided(
        &self,
        trace_id: &str,
        decision: &str,
        why: Option<&str>,
    ) -> Option<Arc<dyn Change>> {
        let cluster = self.cluster.as_ref()?;
        let (status, owner) = match decision {
            "approved" => ("queued", Some(cluster.instance().to_owned())),
            "denied" | "expired" => ("rejected", None),
            "withdrawn" => ("cancelled", None),
            _ => return None,
        };
        Some(Arc::new(changes::Decided {
            trace_id: trace_id.to_owned(),
            status,
            owner,
            lease_seconds: cluster.lease().as_secs_f64(),
            error: why.map(str::to_owned),
        }))
    }

    /// Runs waiting for a decision now.
    pub(super) fn waiting_for_approval(&self) -> usize {
        if let Some(cluster) = &self.cluster {
            return cluster.approvals_outlook().0;
        }
        lock(&self.approvals)
            .values()
            .filter(|p| !p.expiry_recorded)
            .count()
    }

    /// Runs waiting for a decision now, and when the first of their requests expires.
    pub(super) fn approvals_outlook(&self) -> (usize, Option<DateTime<Utc>>) {
        if let Some(cluster) = &self.cluster {
            return cluster.approvals_outlook();
        }
        let approvals = lock(&self.approvals);
        let waiting = approvals.values().filter(|p| !p.expiry_recorded);
        waiting.fold((0, None), |(count, first), p| {
            let first = first.map_or(p.expires_at, |t: DateTime<Utc>| t.min(p.expires_at));
            (count + 1, Some(first))
        })
    }

    /// Parks a run until a decision; gives it back when it was cancelled meanwhile. The check and
    /// the insertion happen under the lock [`Gate::withdraw`] takes, so a cancel is never missed.
    pub(super) fn park(&self, pending: Pending) -> Option<Pending> {
        let mut approvals = lock(&self.approvals);
        if pending.prepared.live.cancelled_by().is_some() {
            return Some(pending);
        }
        if self.cluster.is_some() {
            // Shared: the request waits in the database, where any instance decides it; what
            // this instance registered of it is forgotten (its state is read there).
            self.runs.forget(&pending.prepared.live);
            return None;
        }
        pending.prepared.live.set_status(RunStatus::PendingApproval);
        let trace_id = pending.prepared.trace_id.clone();
        approvals.insert(trace_id, pending);
        None
    }

    /// A second human's decision on a run waiting for approval. Approved: the run is queued and
    /// runs in a task of the gate's. A refusal (not an approver, no named human, self-approval) leaves the run
    /// waiting; an expired request ends it. Every decision and refusal is audited, the decider as actor.
    pub async fn decide(
        &self,
        trace_id: &str,
        approver: &Principal,
        approve: bool,
        reason: Option<String>,
    ) -> Result<(), GateError> {
        if self.tasks.is_closed() {
            // Draining: an approval would start a run; the request waits for the next start.
            return Err(GateError::ShuttingDown);
        }
        // Shared: one decision at a time per run on this instance (the database settles those of
        // different instances).
        let _deciding = match &self.cluster {
            Some(_) => Some(self.begin_deciding(trace_id)?),
            None => None,
        };
        let pending = lock(&self.approvals).remove(trace_id);
        let mut pending = match (pending, &self.cluster) {
            (Some(pending), _) => pending,
            (None, Some(_)) => self.load_pending(trace_id).await?,
            (None, None) => {
                return Err(GateError::NotPending(format!(
                    "Run {trace_id} is not waiting for approval"
                )))
            }
        };
        let prepared = &pending.prepared;
        let roles = prepared
            .approval()
            .map(|a| a.approver_roles.clone())
            .unwrap_or_default();
        let requester = prepared.requester.as_deref();
        let same_human = |other: Option<&str>| matches!((approver.actor.as_deref(), other), (Some(a), Some(b)) if crate::identity::same(a, b));
        let expired = Utc::now() > pending.expires_at;
        let verdict = may(
            &self.policy(),
            approver,
            Action::Decide {
                target: Target {
                    workflow: &prepared.definition.name,
                    drag_mode: prepared.drag_mode,
                },
                approver_roles: &roles,
            },
        )
        .and_then(|granted| {
            crate::auth::apikey::in_person(approver, "decide a run").map(|()| granted)
        });
        let policy_rule = match &verdict {
            Ok(granted) => granted.policy_rule(),
            Err(forbidden) => forbidden.policy_rule(),
        };
        let refusal = if expired {
            Some(GateError::ApprovalExpired(rfc3339(pending.expires_at)))
        } else if let Err(forbidden) = verdict {
            // The policy's refusal names its action and rule (`FORBIDDEN_ROLE`); the workflow's
            // own `approver_roles` and the named-human rule refuse as they always have.
            Some(if forbidden.by_policy {
                GateError::ForbiddenRole(forbidden)
            } else {
                GateError::ApprovalRefused(forbidden.message)
            })
        } else if same_human(requester)
            || same_human(prepared.principal.actor.as_deref())
            || same_account(approver, &prepared.principal)
        {
            Some(GateError::ApprovalRefused(
                "Self-approval is refused: a different human must decide".to_owned(),
            ))
        } else {
            None
        };
        // An approval that could not be queued would be used up on a refused run: with the queue
        // full the run keeps waiting and the decider is told to try again (nothing recorded).
        if refusal.is_none() && approve && !pending.prepared.reserve() {
            self.park_again(pending).await?;
            return Err(GateError::TooManyRuns);
        }
        let decision = match (&refusal, approve) {
            // The expiry itself is the server's finding, recorded once; a later attempt is refused.
            (Some(_), _) if expired && !pending.expiry_recorded => "expired",
            (Some(_), _) => "refused",
            (None, true) => "approved",
            (None, false) => "denied",
        };
        let (actor, why, policy_rule) = if decision == "expired" {
            let who = approver
                .actor
                .clone()
                .unwrap_or_else(|| approver.role.to_string());
            (
                Principal::server(),
                Some(format!(
                    "nobody decided before the request expired (found when {who} tried to decide)"
                )),
                None,
            )
        } else {
            (
                approver.clone(),
                reason
                    .clone()
                    .or_else(|| refusal.as_ref().map(ToString::to_string)),
                policy_rule,
            )
        };
        let change = self.decided(trace_id, decision, why.as_deref());
        let recorded = self
            .record_decision(&pending, decision, &actor, why, policy_rule, change)
            .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                // Another instance decided (or the request was withdrawn) first.
                self.runs.forget(&pending.prepared.live);
                return Err(GateError::NotPending(format!(
                    "Run {trace_id} is not waiting for approval"
                )));
            }
            Err(unavailable) => {
                // A parked run holds no place in the queue.
                pending.prepared.ticket = None;
                self.park_again(pending).await?;
                return Err(unavailable);
            }
        }
        match refusal {
            Some(refusal) if expired => {
                pending
                    .prepared
                    .live
                    .finish(RunStatus::Rejected, None, Some(refusal.to_string()));
                self.tell_ended(&pending.prepared, refusal.clone());
                pending.expiry_recorded = true;
                self.park_as_is(pending);
                Err(refusal)
            }
            Some(refusal) => {
                // Still waiting, unless it was cancelled while this decision was being recorded.
                self.park_again(pending).await?;
                Err(refusal)
            }
            None if approve => {
                let mut prepared = pending.prepared;
                prepared.live.set_status(RunStatus::Queued);
                prepared.approved = true;
                // Shared: the decision queued the run on this instance.
                prepared.shared_row = self.cluster.is_some();
                self.spawn_run(prepared);
                Ok(())
            }
            None => {
                let why = format!(
                    "Denied by {}: {}",
                    approver.actor.as_deref().unwrap_or("?"),
                    reason.unwrap_or_default()
                );
                pending
                    .prepared
                    .live
                    .finish(RunStatus::Rejected, None, Some(why.clone()));
                self.tell_ended(&pending.prepared, GateError::ApprovalRefused(why));
                Ok(())
            }
        }
    }

    /// Tells the listeners that a run waiting for approval ended without running (denied or
    /// expired), so that its requester hears of it where they asked.
    fn tell_ended(&self, prepared: &Prepared, why: GateError) {
        let result = Err(why);
        self.tell(|listener| {
            listener.finished(&super::Finished {
                trace_id: &prepared.trace_id,
                workflow_name: &prepared.definition.name,
                actor: prepared.requester.as_deref(),
                drag_mode: prepared.mode_label(),
                result: &result,
            })
        });
    }

    /// Ends a run that waits for approval without a decision (it was cancelled), on the record.
    /// Nothing to do for a run that is not waiting (or whose expiry is already on the record).
    pub async fn withdraw(&self, trace_id: &str, by: &Principal) -> Result<(), GateError> {
        let pending = {
            let mut approvals = lock(&self.approvals);
            match approvals.get(trace_id) {
                Some(pending) if !pending.expiry_recorded => approvals.remove(trace_id),
                _ => None,
            }
        };
        match pending {
            Some(pending) => self.close_withdrawn(pending, by).await,
            None => Ok(()),
        }
    }

    /// Records that a parked run was withdrawn and ends it; when the record cannot be written the
    /// run waits on (still cancelled), so that nothing ends off the record.
    pub(super) async fn close_withdrawn(
        &self,
        pending: Pending,
        by: &Principal,
    ) -> Result<(), GateError> {
        let reason = "cancelled while waiting for approval".to_owned();
        let change = self.decided(&pending.prepared.trace_id, "withdrawn", Some(&reason));
        let rule = pending.prepared.live.cancel_rule();
        if let Err(unavailable) = self
            .record_decision(&pending, "withdrawn", by, Some(reason), rule, change)
            .await
        {
            self.park_as_is(pending);
            return Err(unavailable);
        }
        pending.prepared.live.finish(
            RunStatus::Cancelled,
            None,
            Some("Cancelled while waiting for approval".to_owned()),
        );
        Ok(())
    }

    /// Parks a run again after a decision that did not end it; one cancelled meanwhile is
    /// withdrawn instead (on the record, by whoever cancelled it).
    async fn park_again(&self, pending: Pending) -> Result<(), GateError> {
        match self.park(pending) {
            None => Ok(()),
            Some(cancelled) => {
                let by = cancelled
                    .prepared
                    .live
                    .canceller()
                    .unwrap_or_else(Principal::server);
                self.close_withdrawn(cancelled, &by).await
            }
        }
    }

    /// Ends the approval requests whose time is up: each gets an `expired` record by the server
    /// (role `system`) and its run turns `rejected`. Requests expired long ago are forgotten.
    /// Returns how many expired now.
    pub async fn expire_approvals(&self) -> usize {
        if self.cluster.is_some() {
            return self.expire_shared().await;
        }
        let now = Utc::now();
        let due: Vec<Pending> = {
            let mut approvals = lock(&self.approvals);
            approvals.retain(|_, p| !(p.expiry_recorded && now - p.expires_at > EXPIRED_KEPT));
            let ids: Vec<String> = approvals
                .iter()
                .filter(|(_, p)| !p.expiry_recorded && now > p.expires_at)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| approvals.remove(id)).collect()
        };
        let mut expired = 0;
        for mut pending in due {
            let refusal = GateError::ApprovalExpired(rfc3339(pending.expires_at));
            let reason = "nobody decided before the request expired".to_owned();
            if self
                .record_decision(
                    &pending,
                    "expired",
                    &Principal::server(),
                    Some(reason),
                    None,
                    None,
                )
                .await
                .is_ok()
            {
                pending.expiry_recorded = true;
                pending
                    .prepared
                    .live
                    .finish(RunStatus::Rejected, None, Some(refusal.to_string()));
                self.tell_ended(&pending.prepared, refusal);
                expired += 1;
            }
            // Not recorded (audit unavailable): stays due for the next sweep.
            self.park_as_is(pending);
        }
        expired
    }

    /// Puts an entry back as it is (no cancel check, status untouched): an expired request kept
    /// for late deciders, or a request whose record could not be written.
    fn park_as_is(&self, pending: Pending) {
        if self.cluster.is_some() {
            // Shared: the database keeps the request.
            self.runs.forget(&pending.prepared.live);
            return;
        }
        let trace_id = pending.prepared.trace_id.clone();
        lock(&self.approvals).insert(trace_id, pending);
    }

    /// After a restart: parks again every approval request the audit trail shows as requested and
    /// not yet decided, approved, denied, expired or withdrawn, checked again against the current
    /// workflow definitions. A request that no longer passes is refused (audited) and withdrawn on
    /// the record; one whose time ran out while the server was down is recorded as expired.
    /// Returns how many wait again.
    pub async fn restore_approvals(&self) -> Result<usize, GateError> {
        // First, who owns the trace ids already on the record (finished runs included).
        let (audit, owners) = (Arc::clone(&self.audit), Arc::clone(&self.trace_owners));
        let known = tokio::task::spawn_blocking(move || owners.load(audit.as_ref()))
            .await
            .map_err(|e| GateError::AuditUnavailable(e.to_string()))?
            .map_err(|e| GateError::AuditUnavailable(format!("cannot read the audit log: {e}")))?;
        tracing::debug!(known, "trace ids on the audit trail");
        if self.cluster.is_some() {
            // Shared: waiting requests are rows of the database, decided from there.
            return Ok(0);
        }
        let audit = Arc::clone(&self.audit);
        let filter = crate::audit::query::Filter {
            kind: Some("approval".to_owned()),
            ..Default::default()
        };
        // The last word on each trace, folded as the log is read: a request stays open until a
        // decision other than `refused`. Only the open ones are kept in memory.
        let open = tokio::task::spawn_blocking(move || {
            let mut open: HashMap<String, (u64, Value)> = HashMap::new();
            audit
                .for_each(&filter, &mut |record: Value| {
                    let Some(trace_id) = record["trace_id"].as_str().map(str::to_owned) else {
                        return;
                    };
                    match record["decision"].as_str() {
                        Some("requested") => {
                            let seq = record["seq"].as_u64().unwrap_or_default();
                            open.insert(trace_id, (seq, record));
                        }
                        Some("refused") => {}
                        _ => {
                            open.remove(&trace_id);
                        }
                    }
                })
                .map(|()| open)
        })
        .await
        .map_err(|e| GateError::AuditUnavailable(e.to_string()))?
        .map_err(|e| GateError::AuditUnavailable(format!("cannot read the audit log: {e}")))?;
        let mut open: Vec<(String, (u64, Value))> = open.into_iter().collect();
        open.sort_by_key(|(_, (seq, _))| *seq);
        let mut restored = 0;
        for (trace_id, (_, record)) in open {
            let expires_at = record["expires_at"]
                .as_str()
                .and_then(|t| crate::audit::query::parse_timestamp(t).ok());
            let principal = serde_json::from_value::<Principal>(record["actor"].clone());
            let (Some(expires_at), Ok(principal), Some(request)) =
                (expires_at, principal, record.get("request").cloned())
            else {
                tracing::warn!(trace_id, "approval request on the record cannot be restored (written by an older version)");
                continue;
            };
            let Ok(parsed_id) = TraceId::parse(&trace_id) else {
                tracing::warn!(
                    trace_id,
                    "approval request on the record has an invalid trace id"
                );
                continue;
            };
            let mode = request["drag_mode"].as_str().unwrap_or_default().to_owned();
            let prepared = match self
                .prepare_counted(
                    RunRequest {
                        trace_id: parsed_id,
                        principal,
                        body: RequestBody::Governed(Ok(Some(request))),
                        approvable: true,
                    },
                    false,
                )
                .await
            {
                Ok(prepared) if prepared.approval().is_none() => {
                    // The workflow no longer asks for approval: a stale request does not run.
                    let why = "the workflow no longer requires approval; request the run again";
                    prepared
                        .live
                        .finish(RunStatus::Rejected, None, Some(why.to_owned()));
                    self.close_restored(&record, &trace_id, expires_at, &mode, why)
                        .await?;
                    continue;
                }
                Ok(prepared) => prepared,
                Err(GateError::AuditUnavailable(why)) => {
                    return Err(GateError::AuditUnavailable(why))
                }
                Err(refusal) => {
                    // The refusal is audited; close the request on the record too.
                    let why = refusal.to_string();
                    self.close_restored(&record, &trace_id, expires_at, &mode, &why)
                        .await?;
                    continue;
                }
            };
            // Nobody can have cancelled a run that exists only since this start-up.
            let _ = self.park(Pending {
                prepared,
                expires_at,
                expiry_recorded: false,
            });
            restored += 1;
        }
        // Those whose time ran out while the server was down end now, on the record.
        self.expire_approvals().await;
        Ok(restored)
    }

    /// Closes a restored request that no longer passes, as `withdrawn` by the server.
    async fn close_restored(
        &self,
        requested: &Value,
        trace_id: &str,
        expires_at: DateTime<Utc>,
        mode: &str,
        why: &str,
    ) -> Result<(), GateError> {
        let record = Record::Approval {
            trace_id: trace_id.to_owned(),
            workflow_name: requested["workflow_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            decision: "withdrawn".to_owned(),
            actor: Principal::server(),
            requested_by: requested["requested_by"].as_str().map(str::to_owned),
            reason: Some(format!(
                "after a restart the request no longer passes: {why}"
            )),
            expires_at: rfc3339(expires_at),
            request: None,
            policy_rule: None,
        };
        self.record(record, mode_label(mode)).await
    }
}
