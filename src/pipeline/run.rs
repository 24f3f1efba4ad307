//! A run that passed the gate's checks: it waits for approval when its workflow asks for one, then
//! queues for a worker, writes its intent (durable before anything runs), runs, and writes its
//! outcome.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing::Instrument;

use super::approvals::Pending;
use super::records::{ruled, run_record, step_summaries};
use super::{ApprovalRequested, Finished, Gate, GateError, RunReport};
use crate::audit::{Outcome, Record};
use crate::auth::Principal;
use crate::cluster::changes;
use crate::db::Change;
use crate::governance::DragMode;
use crate::metrics::{Detection, Execution, ExecutionError, RunDuration};
use crate::runs::{Run, RunStatus};
use crate::trace::otel::SPANS;
use crate::workflow::{RunFailure, RunOutput, Workflow};

/// A governed request that passed every check, registered and waiting to run.
pub struct Prepared {
    pub(super) gate: Gate,
    pub(super) trace_id: String,
    pub(super) principal: Principal,
    /// `None` for a run of the ungoverned path.
    pub(super) drag_mode: Option<DragMode>,
    /// The accountable human's email: the AIM actor's (bound to the token), or the token's own
    /// on the ungoverned path.
    pub(super) requester: Option<String>,
    pub(super) definition: Arc<Workflow>,
    pub(super) parameters: Map<String, Value>,
    pub(super) readable: Value,
    pub(super) governance_summary: String,
    pub(super) live: Arc<Run>,
    /// A second human approved it (for workflows that require approval).
    pub(super) approved: bool,
    /// Admission decided before the caller was answered (asynchronous and approved runs).
    pub(super) ticket: Option<super::pool::Ticket>,
    /// The policy rule that allowed the run (0: the default; `None` without a policy file), named
    /// on each of its records.
    pub(super) policy_rule: Option<u32>,
    /// The run has a row in the shared store (accepted, approved or taken over), owned by this
    /// instance: its start and end change that row, guarded.
    pub(super) shared_row: bool,
}

impl Prepared {
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The workflow's approval policy, when a second human must approve before the run.
    pub fn approval(&self) -> Option<&crate::workflow::Approval> {
        self.definition.approval.as_ref().filter(|a| a.required)
    }

    /// Decides admission now (a slot, or a place in the queue) so that "queued" is the truth; false
    /// when the queue is full.
    pub(super) fn reserve(&mut self) -> bool {
        if self.ticket.is_none() {
            self.ticket = self
                .gate
                .pool
                .reserve(&self.definition.name, self.definition.max_concurrent_runs);
        }
        self.ticket.is_some()
    }

    /// Refuses the run after its checks passed (on the record; the run turns `rejected`, its
    /// shared row too).
    pub(super) async fn refuse_as(self, refusal: GateError) -> GateError {
        self.live
            .finish(RunStatus::Rejected, None, Some(refusal.to_string()));
        let change = self.end_change("queued", "rejected", None, Some(refusal.to_string()), None);
        self.gate
            .refuse_ruled(
                self.drag_mode.is_some(),
                &self.trace_id,
                &self.principal,
                &self.readable,
                refusal,
                self.policy_rule,
                change,
            )
            .await
    }

    /// Whether the run can wait for a second human: its workflow asks for one and it is governed
    /// (an ungoverned run is refused `APPROVAL_REQUIRED` instead).
    pub(super) fn may_wait_for_approval(&self) -> bool {
        self.drag_mode.is_some() && self.approval().is_some()
    }

    /// The DRAG mode as a metrics label.
    pub(super) fn mode_label(&self) -> &'static str {
        self.drag_mode.map_or("ungoverned", DragMode::as_str)
    }

    /// Records that the run waits for approval and parks it; a decision resumes or ends it.
    /// Returns when the request expires.
    pub async fn hold_for_approval(self) -> Result<DateTime<Utc>, GateError> {
        // Waiting runs are held in memory (and come back after a restart): bounded like the queue.
        if self.gate.waiting_for_approval() >= self.gate.approvals_max {
            self.live.finish(
                RunStatus::Rejected,
                None,
                Some(GateError::TooManyRuns.to_string()),
            );
            return Err(self
                .gate
                .refuse_ruled(
                    self.drag_mode.is_some(),
                    &self.trace_id,
                    &self.principal,
                    &self.readable,
                    GateError::TooManyRuns,
                    self.policy_rule,
                    None,
                )
                .await);
        }
        let expires_seconds = self.approval().map_or(3600, |a| a.expires_seconds);
        let expires_at = Utc::now()
            + chrono::Duration::seconds(
                i64::try_from(expires_seconds)
                    .unwrap_or(i64::MAX / 2)
                    .min(10 * 365 * 86_400),
            );
        let gate = self.gate.clone();
        let requested = ApprovalRequested {
            trace_id: self.trace_id.clone(),
            workflow_name: self.definition.name.clone(),
            requested_by: self.requester.clone(),
            approver_roles: self
                .approval()
                .map(|a| a.approver_roles.clone())
                .unwrap_or_default(),
            expires_at,
            request: self.readable.clone(),
        };
        let pending = Pending {
            prepared: self,
            expires_at,
            expiry_recorded: false,
        };
        let requester = pending.prepared.principal.clone();
        // Shared: the request waits in the database, where any instance decides it.
        let change = gate.cluster.as_ref().map(|_| {
            Arc::new(changes::ApprovalRequested {
                run: pending.prepared.meta(),
                expires_at,
            }) as Arc<dyn Change>
        });
        let rule = pending.prepared.policy_rule;
        match gate
            .record_decision(&pending, "requested", &requester, None, rule, change)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let taken = GateError::TraceInUse(pending.prepared.trace_id.clone());
                pending
                    .prepared
                    .live
                    .finish(RunStatus::Rejected, None, Some(taken.to_string()));
                return Err(taken);
            }
            Err(unavailable) => {
                pending.prepared.live.finish(
                    RunStatus::Rejected,
                    None,
                    Some(unavailable.to_string()),
                );
                return Err(unavailable);
            }
        }
        if let Some(pending) = gate.park(pending) {
            // Cancelled while its request was being recorded: withdrawn now, by whoever cancelled.
            let by = pending
                .prepared
                .live
                .canceller()
                .unwrap_or_else(Principal::server);
            gate.close_withdrawn(pending, &by).await?;
            return Err(GateError::Cancelled);
        }
        gate.tell(|listener| listener.approval_requested(&requested));
        Ok(expires_at)
    }

    /// Queues for a worker, writes the intent, runs, writes the outcome; then tells the gate's
    /// listeners how it ended.
    pub(super) async fn run(self) -> Result<RunReport, GateError> {
        let gate = self.gate.clone();
        let (trace_id, workflow_name) = (self.trace_id.clone(), self.definition.name.clone());
        let (actor, drag_mode) = (self.requester.clone(), self.mode_label());
        let span = tracing::info_span!(
            target: SPANS,
            "run",
            sustainbot.trace_id = %trace_id,
            sustainbot.workflow = %workflow_name,
            sustainbot.drag_mode = drag_mode,
            sustainbot.outcome = Empty,
            sustainbot.code = Empty,
            otel.status_code = Empty,
        );
        let result = self.run_to_the_end().instrument(span.clone()).await;
        let outcome = super::ended(&result);
        span.record("sustainbot.outcome", outcome);
        span.record(
            "sustainbot.code",
            match &result {
                Ok(report) => report.code,
                Err(refusal) => Some(refusal.code()),
            },
        );
        if outcome == "failure" {
            span.record("otel.status_code", "error");
        }
        gate.tell(|listener| {
            listener.finished(&Finished {
                trace_id: &trace_id,
                workflow_name: &workflow_name,
                actor: actor.as_deref(),
                drag_mode,
                result: &result,
            })
        });
        result
    }

    /// The run itself. A run that needs approval and has none is refused here, whatever the entry
    /// point.
    async fn run_to_the_end(self) -> Result<RunReport, GateError> {
        if let Some(approval) = self.approval().filter(|_| !self.approved) {
            let refusal = GateError::ApprovalRequired {
                roles: approval.approver_roles.join(", "),
            };
            self.live
                .finish(RunStatus::Rejected, None, Some(refusal.to_string()));
            // A run taken over with a row ends that row too (else it would lapse and be taken
            // over again).
            let change =
                self.end_change("queued", "rejected", None, Some(refusal.to_string()), None);
            return Err(self
                .gate
                .refuse_ruled(
                    self.drag_mode.is_some(),
                    &self.trace_id,
                    &self.principal,
                    &self.readable,
                    refusal,
                    self.policy_rule,
                    change,
                )
                .await);
        }
        let mode = self.mode_label();
        // With a shared store, the run's row changes with its records: `owned_row` is this
        // instance's queued row (accepted, approved or taken over) before the start.
        let cluster = self.gate.cluster.clone();
        let meta = cluster.as_ref().map(|_| self.meta());
        let owned_row = self.shared_row;
        let row_id = self.trace_id.clone();
        let instance = cluster.as_ref().map(|c| c.instance().to_owned());
        let ended = |from: &'static str,
                     status: &'static str,
                     outcome: Option<String>,
                     error: Option<String>,
                     steps: Option<Value>|
         -> Option<Arc<dyn Change>> {
            let has_row = owned_row || from == "running";
            let instance = instance.clone().filter(|_| has_row)?;
            Some(Arc::new(changes::Ended {
                trace_id: row_id.clone(),
                from,
                status,
                instance,
                outcome,
                error,
                steps,
            }))
        };
        let Prepared {
            gate,
            trace_id,
            principal,
            drag_mode,
            requester,
            definition,
            parameters,
            readable,
            governance_summary,
            live,
            approved: _,
            ticket,
            policy_rule,
            shared_row: _,
        } = self;
        let this = &gate;
        tracing::info!(
            trace_id,
            workflow = definition.name,
            actor = requester,
            mode,
            "run queued"
        );

        // A worker, within the workflow's own limit; a full queue is refused (429). A run cancelled
        // while it waits leaves the queue at once.
        let mut cancellation = live.cancellation();
        let admission = async {
            match ticket {
                Some(ticket) => ticket.wait().await,
                None => {
                    this.pool
                        .admit(&definition.name, definition.max_concurrent_runs)
                        .await
                }
            }
        };
        let admitted = async {
            tokio::select! {
                slot = admission => Some(slot),
                _ = cancellation.wait_for(|cancelled| *cancelled) => None,
            }
        }
        .instrument(tracing::info_span!(target: SPANS, "run.queue"))
        .await;
        let slot = match admitted {
            Some(Some(slot)) => Some(slot),
            Some(None) => {
                let full = GateError::TooManyRuns.to_string();
                live.finish(RunStatus::Rejected, None, Some(full.clone()));
                return Err(this
                    .refuse_ruled(
                        drag_mode.is_some(),
                        &trace_id,
                        &principal,
                        &readable,
                        GateError::TooManyRuns,
                        policy_rule,
                        ended("queued", "rejected", None, Some(full), None),
                    )
                    .await);
            }
            None => None,
        };
        if slot.is_none() || live.cancelled_by().is_some() {
            let error = "Cancelled while queued".to_owned();
            let record = run_record(
                drag_mode.is_some(),
                &trace_id,
                &principal,
                &readable,
                Outcome::Cancelled,
                Some(error.clone()),
                Some("CANCELLED"),
                None,
            );
            let record = ruled(record, policy_rule);
            let change = ended("queued", "cancelled", None, Some(error.clone()), None);
            let recorded = this
                .record_with(record, mode, change)
                .instrument(outcome_span(Outcome::Cancelled, Some("CANCELLED"), None))
                .await;
            live.finish(RunStatus::Cancelled, None, Some(error));
            recorded?;
            return Err(GateError::Cancelled);
        }
        // Durations count from admission: time in the queue is not the run's.
        let started = Instant::now();

        // Write-ahead: the intent is durable before anything runs.
        let intent = run_record(
            drag_mode.is_some(),
            &trace_id,
            &principal,
            &readable,
            Outcome::Started,
            None,
            None,
            None,
        );
        let intent = ruled(intent, policy_rule);
        let start = match (&cluster, meta.clone()) {
            (Some(cluster), Some(run)) => Some(Arc::new(changes::Started {
                run,
                instance: cluster.instance().to_owned(),
                lease_seconds: cluster.lease().as_secs_f64(),
                owned: owned_row,
            }) as Arc<dyn Change>),
            _ => None,
        };
        match this.record_with(intent, mode, start).await {
            Ok(true) => {}
            Ok(false) => {
                // The shared store says no: the trace id is another run's, or (for a run this
                // instance owned) another instance took the run over after this one's lease
                // lapsed. Either way it does not run here.
                let taken = GateError::TraceInUse(trace_id.clone());
                live.finish(RunStatus::Rejected, None, Some(taken.to_string()));
                if owned_row {
                    return Err(taken);
                }
                return Err(this
                    .refuse(drag_mode.is_some(), &trace_id, &principal, &readable, taken)
                    .await);
            }
            Err(unavailable) => {
                live.finish(RunStatus::Rejected, None, Some(unavailable.to_string()));
                return Err(unavailable);
            }
        }
        live.set_running();

        let result = this
            .runner
            .run(&definition, &parameters, &trace_id, drag_mode, Some(&*live));
        // A panic in the engine (a bug) still ends the run on the record.
        let result = AssertUnwindSafe(result)
            .catch_unwind()
            .await
            .unwrap_or_else(engine_panicked);
        let duration = started.elapsed().as_secs_f64();
        let mut failure_code = None;
        let (outcome, message, error, steps) = match result {
            Ok(output) => (Outcome::Success, Some(output.outcome), None, output.steps),
            Err(failure) if failure.cancelled => {
                (Outcome::Cancelled, None, Some(failure.error), failure.steps)
            }
            Err(failure) => {
                failure_code = failure.code;
                (Outcome::Failure, None, Some(failure.error), failure.steps)
            }
        };
        for found in steps.iter().flat_map(|s| &s.violations) {
            this.metrics
                .prescriptive_language_detections
                .inc(&Detection {
                    drag_mode: mode,
                    phrase_type: found.phrase.clone(),
                });
        }
        let status = match outcome {
            Outcome::Success => RunStatus::Succeeded,
            Outcome::Cancelled => RunStatus::Cancelled,
            _ => RunStatus::Failed,
        };

        let metrics = &this.metrics;
        let workflow_name = || definition.name.clone();
        metrics.workflow_executions.inc(&Execution {
            workflow_name: workflow_name(),
            outcome: outcome.as_str(),
        });
        let timing = RunDuration {
            workflow_name: workflow_name(),
            outcome: outcome.as_str(),
            drag_mode: mode,
        };
        metrics
            .governed_workflow_duration
            .observe(&timing, duration);
        if outcome == Outcome::Failure {
            metrics.workflow_execution_errors.inc(&ExecutionError {
                workflow_name: workflow_name(),
                error_type: "run_failed",
            });
        }
        let code = match outcome {
            Outcome::Success => None,
            Outcome::Cancelled => Some("CANCELLED"),
            _ => Some(failure_code.unwrap_or("WORKFLOW_FAILED")),
        };
        let mut record = ruled(
            run_record(
                drag_mode.is_some(),
                &trace_id,
                &principal,
                &readable,
                outcome,
                error.clone(),
                code,
                Some(duration),
            ),
            policy_rule,
        );
        if let Record::Run(run) = &mut record {
            run.steps = step_summaries(&steps);
        }
        let change = cluster.as_ref().and_then(|_| {
            let word = match status {
                RunStatus::Succeeded => "succeeded",
                RunStatus::Cancelled => "cancelled",
                _ => "failed",
            };
            let reports = serde_json::to_value(&steps).ok();
            ended("running", word, message.clone(), error.clone(), reports)
        });
        // The live status turns final only once the outcome is on the record.
        let recorded = this
            .record_with(record, mode, change)
            .instrument(outcome_span(outcome, code, Some(duration)))
            .await;
        if recorded.as_ref().is_ok_and(|appended| !appended) {
            // Another instance closed the run as lost while this one could not renew its lease.
            let lost = GateError::AuditUnavailable(format!(
                "The run finished but another instance had already closed it as INSTANCE_LOST (this instance lost the database for longer than its lease); trace {trace_id}"
            ));
            live.finish(RunStatus::Failed, message, Some(lost.to_string()));
            return Err(lost);
        }
        if recorded.is_err() {
            let unavailable = GateError::AuditUnavailable(format!(
                "The run finished but its outcome could not be recorded (its start is on the record as trace {trace_id}); check the run before retrying"
            ));
            live.finish(RunStatus::Failed, message, Some(unavailable.to_string()));
            return Err(unavailable);
        }
        live.finish(status, message.clone(), error.clone());
        Ok(RunReport {
            trace_id,
            workflow_name: definition.name.clone(),
            success: outcome == Outcome::Success,
            outcome: message,
            error,
            audit_logged: true,
            governance_summary,
            duration_seconds: duration,
            cancelled: outcome == Outcome::Cancelled,
            code,
            steps,
        })
    }
}

/// The trace's span of a run's outcome: what it was and how long the run took, around its record.
fn outcome_span(outcome: Outcome, code: Option<&str>, duration: Option<f64>) -> tracing::Span {
    tracing::info_span!(
        target: SPANS,
        "run.outcome",
        sustainbot.outcome = outcome.as_str(),
        sustainbot.code = code,
        sustainbot.duration_seconds = duration,
    )
}

/// What a run that the engine panicked in comes to: a failure with `INTERNAL_ERROR`, recorded as
/// its outcome like any other (its `started` record never stands alone; the step's child process
/// group is killed as its handle drops).
fn engine_panicked(_: Box<dyn std::any::Any + Send>) -> Result<RunOutput, RunFailure> {
    tracing::error!("the workflow engine panicked; the run is recorded as failed");
    Err(RunFailure {
        error: "Internal error in the workflow engine; the run was stopped".to_owned(),
        steps: Vec::new(),
        cancelled: false,
        code: Some("INTERNAL_ERROR"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_engine_becomes_a_failure_with_a_code() {
        let panicking = async {
            if true {
                panic!("a bug in a step kind");
            }
            Ok(RunOutput {
                outcome: String::new(),
                steps: Vec::new(),
            })
        };
        let result = AssertUnwindSafe(panicking)
            .catch_unwind()
            .await
            .unwrap_or_else(engine_panicked);
        let failure = result.unwrap_err();
        assert_eq!(failure.code, Some("INTERNAL_ERROR"));
        assert!(!failure.cancelled);
    }
}
